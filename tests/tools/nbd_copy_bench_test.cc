// End-to-end tests of the `nbd` binary's copy and bench against qemu-nbd,
// nbd-server and the embedded server (`nbd serve`): what a user runs,
// checked by the bytes that arrive and the numbers that come out.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/servers.h"
#include "tests/testing/tls_certs.h"
#include "tests/tools/run_tool.h"

namespace nbd::test {
namespace {

constexpr size_t kSize = 4 << 20;
// Generous bound for "it ends".
constexpr absl::Duration kEnds = absl::Seconds(60);

// Random-looking bytes with a zero run in the middle (so zero detection is
// part of every round trip).
std::string TestData(uint32_t seed) {
  std::string data(kSize, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : data) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  std::fill(data.begin() + kSize / 4, data.begin() + kSize / 2, '\0');
  return data;
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The number after "\"key\": " in bench's one-line JSON; -1 if absent.
double JsonNumber(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\": ";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return -1;
  std::string rest = json.substr(at + needle.size());
  rest = rest.substr(0, rest.find_first_of(",}"));
  double v = -1;
  return absl::SimpleAtod(rest, &v) ? v : -1;
}

// file -> `uri` -> file through each adapter (uploading with one, reading
// back with another), with the data verified. `disk`, if given, is the
// file the server writes to: after --flush it must hold the data too.
void ExpectCopyRoundTrips(const std::string& uri, const std::string& scratch,
                          const std::string& disk = "") {
  const std::vector<std::string> adapters = {"blocking", "epoll", "io_uring"};
  const std::string in = scratch + "/in";
  const std::string out = scratch + "/out";
  for (size_t i = 0; i < adapters.size(); ++i) {
    const std::string& up = adapters[i];
    const std::string& down = adapters[(i + 1) % adapters.size()];
    SCOPED_TRACE(absl::StrCat("up ", up, ", down ", down));
    const std::string data = TestData(static_cast<uint32_t>(i + 1));
    WriteFile(in, data);
    RunResult r = RunNbd(
        {"copy", in, uri, "--adapter", up, "--flush", "--connections", "2"},
        kEnds);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;
    if (!disk.empty()) {
      EXPECT_TRUE(ReadFile(disk) == data);
    }
    unlink(out.c_str());
    r = RunNbd({"copy", uri, out, "--adapter", down, "--request-size", "64K"},
               kEnds);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;
    // Not EXPECT_EQ: a 4 MiB diff would drown the log.
    EXPECT_EQ(ReadFile(out).size(), data.size());
    EXPECT_TRUE(ReadFile(out) == data);
  }
  unlink(in.c_str());
  unlink(out.c_str());
}

// A short read and write run of `nbd bench` through each adapter: it did
// work and reports it, CPU included.
void ExpectBenchWorks(const std::string& uri) {
  for (const char* adapter : {"blocking", "epoll", "io_uring"}) {
    for (const char* op : {"read", "write"}) {
      SCOPED_TRACE(absl::StrCat(op, " via ", adapter));
      RunResult r = RunNbd({"bench", uri, "--op", op, "--adapter", adapter,
                            "--seconds", "0.5", "--qd", "4", "--json"},
                           kEnds);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      const std::vector<std::string> lines = Lines(r.out);
      ASSERT_EQ(lines.size(), 1u) << r.out;
      const std::string& json = lines[0];
      EXPECT_TRUE(absl::StrContains(json, absl::StrCat("\"op\": \"", op)))
          << json;
      EXPECT_GT(JsonNumber(json, "ops"), 0) << json;
      EXPECT_EQ(JsonNumber(json, "bytes"), JsonNumber(json, "ops") * 4096)
          << json;
      EXPECT_GT(JsonNumber(json, "cpu_us_per_op"), 0) << json;
      EXPECT_GT(JsonNumber(json, "syscalls_per_op"), 0) << json;
    }
  }
}

// A file of kSize bytes for a server to export.
std::string MakeDisk(const std::string& dir) {
  const std::string disk = dir + "/disk.raw";
  WriteFile(disk, std::string(kSize, '\0'));
  return disk;
}

#define REQUIRE_PROGRAM(p)                               \
  do {                                                   \
    if (!HaveProgram(p)) GTEST_SKIP() << p " not found"; \
  } while (0)

TEST(NbdCopyBenchTest, QemuNbd) {
  REQUIRE_PROGRAM("qemu-nbd");
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  const std::string disk = MakeDisk(*dir);
  auto server = ServerProcess::StartQemuNbd(disk, "raw");
  ASSERT_TRUE(server.ok()) << server.status();
  ExpectCopyRoundTrips((*server)->Uri(), *dir, disk);
  ExpectBenchWorks((*server)->Uri());
  server->reset();
  std::filesystem::remove_all(*dir);
}

TEST(NbdCopyBenchTest, NbdServer) {
  REQUIRE_PROGRAM("nbd-server");
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  const std::string disk = MakeDisk(*dir);
  auto server = ServerProcess::StartNbdServer(disk);
  ASSERT_TRUE(server.ok()) << server.status();
  ExpectCopyRoundTrips((*server)->Uri("export"), *dir, disk);
  ExpectBenchWorks((*server)->Uri("export"));
  server->reset();
  std::filesystem::remove_all(*dir);
}

TEST(NbdCopyBenchTest, EmbeddedServer) {
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  const std::string sock = *dir + "/nbd.sock";
  Child serve({NbdBinary(), "serve", "--socket", sock, "--memory", "4M"});
  ASSERT_TRUE(WaitForUnixSocket(sock, kEnds));
  const std::string uri = "nbd+unix:///?socket=" + sock;
  ExpectCopyRoundTrips(uri, *dir);
  ExpectBenchWorks(uri);
  EXPECT_NE(serve.Signal(SIGTERM, kEnds), -1);
  std::filesystem::remove_all(*dir);
}

// `nbd serve --tls=require` (X.509 and PSK) with `nbd copy` through every
// adapter and `nbd bench`; a plaintext URI gets the server's refusal and a
// hint to use nbds.
TEST(NbdCopyBenchTest, EmbeddedServerOverTls) {
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  auto creds = TlsCredentials::Make();
  ASSERT_TRUE(creds.ok()) << creds.status();
  const std::string sock = *dir + "/nbd.sock";
  Child serve({NbdBinary(), "serve", "--socket", sock, "--memory", "4M",
               "--tls=require", "--tls-certificates", (*creds)->good()});
  ASSERT_TRUE(WaitForUnixSocket(sock, kEnds));
  const std::string uri =
      "nbds+unix:///?socket=" + sock + "&tls-certificates=" + (*creds)->good();
  ExpectCopyRoundTrips(uri, *dir);
  ExpectBenchWorks(uri);

  RunResult plain = RunNbd({"info", "nbd+unix:///?socket=" + sock}, kEnds);
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(plain.err, "NBD_REP_ERR_TLS_REQD"))
      << plain.err;
  EXPECT_TRUE(absl::StrContains(plain.err, "use an nbds")) << plain.err;
  EXPECT_NE(serve.Signal(SIGTERM, kEnds), -1);

  const std::string psk_sock = *dir + "/psk.sock";
  Child psk({NbdBinary(), "serve", "--socket", psk_sock, "--memory", "4M",
             "--tls=require", "--tls-psk", (*creds)->good_psk()});
  ASSERT_TRUE(WaitForUnixSocket(psk_sock, kEnds));
  const std::string psk_uri = "nbds+unix://alice@/?socket=" + psk_sock +
                              "&tls-psk-file=" + (*creds)->good_psk();
  const std::string in = *dir + "/in", out = *dir + "/out";
  WriteFile(in, TestData(5));
  RunResult up = RunNbd({"copy", in, psk_uri}, kEnds);
  ASSERT_EQ(up.exit_code, 0) << up.err;
  RunResult down = RunNbd({"copy", psk_uri, out}, kEnds);
  ASSERT_EQ(down.exit_code, 0) << down.err;
  EXPECT_TRUE(ReadFile(out) == TestData(5));
  EXPECT_NE(psk.Signal(SIGTERM, kEnds), -1);
  std::filesystem::remove_all(*dir);
}

// A credentials problem is found at startup: exit 1 with one line, not a
// failure at every connection.
TEST(NbdCopyBenchTest, ServeWithMissingCredentialsFailsAtStartup) {
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  RunResult r =
      RunNbd({"serve", "--socket", *dir + "/s", "--memory", "1M",
              "--tls=require", "--tls-certificates", *dir + "/nothing-here"},
             kEnds);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "TLS credentials")) << r.err;
  std::filesystem::remove_all(*dir);
}

// --progress draws a bar on stderr (which is not a terminal here, so
// without the flag there is none) and ends with the complete state.
TEST(NbdCopyBenchTest, ProgressGoesToStderr) {
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  const std::string sock = *dir + "/nbd.sock";
  Child serve({NbdBinary(), "serve", "--socket", sock, "--memory", "4M"});
  ASSERT_TRUE(WaitForUnixSocket(sock, kEnds));
  const std::string uri = "nbd+unix:///?socket=" + sock;
  const std::string in = *dir + "/in";
  WriteFile(in, TestData(9));

  RunResult quiet = RunNbd({"copy", in, uri}, kEnds);
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err, "");

  RunResult r = RunNbd({"copy", in, uri, "--progress"}, kEnds);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_TRUE(absl::StrContains(
      r.err, absl::StrCat("[", std::string(30, '#'), "] 100.0% 4.0/4.0 MiB")))
      << r.err;
  EXPECT_TRUE(absl::EndsWith(r.err, "\n")) << r.err;
  EXPECT_NE(serve.Signal(SIGTERM, kEnds), -1);
  std::filesystem::remove_all(*dir);
}

}  // namespace
}  // namespace nbd::test
