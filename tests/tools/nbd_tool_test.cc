// End-to-end tests of the `nbd` binary against nbdkit, qemu-nbd,
// nbd-server, the embedded server (`nbd serve`) and a fake server; nbdinfo
// is the reference for `info` and `map`.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "adapters/blocking/blocking_client.h"
#include "adapters/connect/connect.h"
#include "gtest/gtest.h"
#include "tests/testing/servers.h"
#include "tests/testing/tls_certs.h"
#include "tests/tools/hold_open_server.h"
#include "tests/tools/run_tool.h"

namespace nbd::test {
namespace {

// Generous bound for "it ends": commands must finish well within it.
constexpr absl::Duration kEnds = absl::Seconds(20);

// The raw value of the first `"key": value` in `json` (strings keep their
// quotes), or nullopt.
std::optional<std::string> JsonField(const std::string& json,
                                     const std::string& key) {
  const std::string needle = absl::StrCat("\"", key, "\": ");
  const size_t at = json.find(needle);
  if (at == std::string::npos) return std::nullopt;
  const size_t start = at + needle.size();
  const size_t end = json.find_first_of(",\n}", start);
  return std::string(
      absl::StripAsciiWhitespace(json.substr(start, end - start)));
}

// Asserts the run failed with exit 1 and exactly one "nbd: " line.
void ExpectOneErrorLine(const RunResult& r) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const std::vector<std::string> lines = Lines(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_TRUE(absl::StartsWith(lines[0], "nbd: ")) << r.err;
}

void ExpectValidJson(const std::string& text) {
  if (!HaveProgram("python3")) return;
  char path[] = "/tmp/nbd-tool-json.XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, text.data(), text.size()),
            static_cast<ssize_t>(text.size()));
  close(fd);
  RunResult r = RunProgram(
      {"python3", "-c", "import json,sys; json.load(open(sys.argv[1]))", path});
  unlink(path);
  EXPECT_EQ(r.exit_code, 0) << text << r.err;
}

// `nbd info --json` and `nbdinfo --json` agree on every field both show.
// `skip`: a field not to compare.
void ExpectInfoMatchesNbdinfo(const std::string& uri,
                              const std::string& skip = "") {
  RunResult ours = RunNbd({"info", "--json", uri});
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  ExpectValidJson(ours.out);
  RunResult ref = RunProgram({"nbdinfo", "--json", uri});
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  for (const char* key :
       {"protocol", "TLS", "export-name", "export-size", "is_read_only",
        "can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero",
        "can_df", "can_multi_conn", "can_cache", "is_rotational",
        "block_size_minimum", "block_size_preferred", "block_size_maximum",
        "description"}) {
    if (key == skip) continue;
    EXPECT_EQ(JsonField(ours.out, key), JsonField(ref.out, key))
        << key << "\nours:\n"
        << ours.out << "\nnbdinfo:\n"
        << ref.out;
  }
  // nbdinfo's "structured" is our "structured_replies".
  EXPECT_EQ(JsonField(ours.out, "structured_replies"),
            JsonField(ref.out, "structured"));
  ASSERT_TRUE(JsonField(ours.out, "extended_headers").has_value());
  EXPECT_TRUE(absl::StrContains(ours.out, "\"contexts\""));
}

// `nbd map` and `nbdinfo --map` print the same text and JSON.
void ExpectMapMatchesNbdinfo(const std::string& uri) {
  RunResult ours = RunNbd({"map", uri});
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  RunResult ref = RunProgram({"nbdinfo", "--map", uri});
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  EXPECT_EQ(ours.out, ref.out);
  RunResult ours_json = RunNbd({"map", "--json", uri});
  ASSERT_EQ(ours_json.exit_code, 0) << ours_json.err;
  ExpectValidJson(ours_json.out);
  RunResult ref_json = RunProgram({"nbdinfo", "--map", "--json", uri});
  ASSERT_EQ(ref_json.exit_code, 0) << ref_json.err;
  EXPECT_EQ(ours_json.out, ref_json.out);
}

#define REQUIRE_PROGRAM(p)                               \
  do {                                                   \
    if (!HaveProgram(p)) GTEST_SKIP() << p " not found"; \
  } while (0)

// ---- usage and errors -------------------------------------------------------

TEST(NbdToolTest, UsageErrorsExit2) {
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"frobnicate"},
      {"info"},
      {"info", "a", "b"},
      {"info", "--bogus", "nbd://x"},
      {"map"},
      {"--timeout", "soon", "info", "nbd://x"},
      {"info", "nbd://x", "--timeout"},
      {"serve", "--memory", "1M"},
      {"serve", "--memory", "1Q", "--socket", "/tmp/x"},
      {"serve", "--memory", "1M", "--null", "1M", "--socket", "/tmp/x"},
      {"serve", "--memory", "1M", "--socket", "/tmp/x", "--max-connections",
       "0"},
      {"serve", "--memory", "1M", "--socket", "/tmp/x", "--max-connections",
       "many"},
      {"serve", "--memory", "1M", "--socket", "/tmp/x", "--handshake-timeout",
       "-1"},
      {"serve", "--memory", "1M", "--socket", "/tmp/x", "--max-queued-replies",
       "0"},
      {"serve", "--memory", "1M", "--socket", "/tmp/x", "--max-queued-replies",
       "lots"},
      {"serve", "--memory", "1M", "--socket", "/tmp/x", "--tls=maybe"},
      {"serve", "--memory", "1M", "--socket", "/tmp/x", "--tls=require"},
      {"serve", "--memory", "1M", "--socket", "/tmp/x", "--tls-certificates",
       "/tmp"},
      {"serve", "--memory", "1M", "--socket", "/tmp/x", "--tls=on",
       "--tls-certificates", "/tmp", "--tls-psk", "/tmp/k"},
      {"serve", "--memory", "1M", "--socket", "/tmp/x", "--tls=on", "--tls-psk",
       "/tmp/k", "--tls-verify-peer"},
      {"demo", "--size", "3M"},
      {"--adapter", "epoll", "frobnicate", "a", "b"},
  };
  for (const auto& args : cases) {
    RunResult r = RunNbd(args);
    EXPECT_EQ(r.exit_code, 2) << absl::StrJoin(args, " ") << "\n" << r.err;
    EXPECT_TRUE(absl::StartsWith(r.err, "nbd: ")) << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "usage:")) << r.err;
  }
}

TEST(NbdToolTest, HelpExits0) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"info", "--help"}, {"--help", "serve"}}) {
    RunResult r = RunNbd(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(absl::StrContains(r.out, "usage: nbd")) << r.out;
  }
}

TEST(NbdToolTest, EveryCommandHasItsOwnHelp) {
  for (const char* cmd : {"info", "map", "copy", "bench", "serve", "demo"}) {
    RunResult r = RunNbd({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(absl::StartsWith(r.out, absl::StrCat("usage: nbd ", cmd, " ")))
        << cmd << ":\n"
        << r.out;
  }
}

// "Options may come before or after the positional arguments", also before
// the command name, including options that take a value.
TEST(NbdToolTest, CommandOptionsBeforeTheCommand) {
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  const std::string in = *dir + "/in";
  const std::string out = *dir + "/out";
  const std::string data(300000, 'x');
  {
    const int fd = open(in.c_str(), O_CREAT | O_WRONLY, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, data.data(), data.size()),
              static_cast<ssize_t>(data.size()));
    close(fd);
  }
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"--adapter", "epoll", "copy", in, out},
           {"--request-size", "4K", "--connections=2", "copy", in, out},
           {"--flush", "copy", "--adapter", "blocking", in, out}}) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    unlink(out.c_str());
    RunResult r = RunNbd(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    struct stat st = {};
    EXPECT_EQ(stat(out.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, static_cast<off_t>(data.size()));
  }
  unlink(in.c_str());
  unlink(out.c_str());
  rmdir(dir->c_str());
}

// nbds URIs in the tools: `nbd info` agrees with nbdinfo over TLS, `nbd
// copy` moves the bytes both ways (it picks the epoll adapter), and a
// certificate from the wrong CA is one clear error line.
TEST(NbdToolTest, TlsUris) {
  if (!HaveProgram("nbdkit") || !HaveProgram("nbdinfo")) {
    GTEST_SKIP() << "nbdkit/nbdinfo not installed";
  }
  auto creds = TlsCredentials::Make();
  ASSERT_TRUE(creds.ok()) << creds.status();
  auto server = ServerProcess::StartNbdkit(
      {"--tls=require", "--tls-certificates=" + (*creds)->good(), "memory",
       "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string uri = "nbds+unix:///?socket=" + (*server)->socket_path() +
                          "&tls-certificates=" + (*creds)->good();
  ExpectInfoMatchesNbdinfo(uri);
  EXPECT_EQ(JsonField(RunNbd({"info", "--json", uri}).out, "TLS"), "true");

  const std::string in = (*creds)->root() + "/in.img";
  const std::string out = (*creds)->root() + "/out.img";
  std::string data(1 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i / 7);
  {
    std::ofstream f(in, std::ios::binary);
    f << data;
  }
  RunResult up = RunNbd({"copy", in, uri});
  ASSERT_EQ(up.exit_code, 0) << up.err;
  RunResult down = RunNbd({"copy", uri, out});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  std::ifstream f(out, std::ios::binary);
  std::string back((std::istreambuf_iterator<char>(f)),
                   std::istreambuf_iterator<char>());
  EXPECT_TRUE(back == data);

  RunResult bad =
      RunNbd({"info", "nbds+unix:///?socket=" + (*server)->socket_path() +
                          "&tls-certificates=" + (*creds)->other_ca()});
  ExpectOneErrorLine(bad);
  EXPECT_TRUE(absl::StrContains(bad.err, "issuer is unknown")) << bad.err;
}

TEST(NbdToolTest, BadUriExits1WithOneLine) {
  for (const char* uri : {"bogus://x", "nbd+unix:///", "nbds://h/e"}) {
    for (const char* cmd : {"info", "map"}) {
      RunResult r = RunNbd({cmd, uri});
      SCOPED_TRACE(absl::StrCat(cmd, " ", uri));
      ExpectOneErrorLine(r);
      EXPECT_TRUE(absl::StrContains(r.err, uri)) << r.err;
    }
  }
}

TEST(NbdToolTest, UnreachableServerExits1WithOneLine) {
  RunResult r = RunNbd({"info", "nbd+unix:///?socket=/nonexistent/nbd.sock"});
  ExpectOneErrorLine(r);
  EXPECT_TRUE(absl::StrContains(r.err, "/nonexistent/nbd.sock")) << r.err;
  RunResult tcp = RunNbd({"--timeout", "5", "map", "nbd://127.0.0.1:1/"});
  ExpectOneErrorLine(tcp);
  EXPECT_TRUE(absl::StrContains(tcp.err, "127.0.0.1")) << tcp.err;
}

// ---- info -------------------------------------------------------------------

TEST(NbdToolTest, InfoMatchesNbdinfoOnNbdkit) {
  REQUIRE_PROGRAM("nbdkit");
  REQUIRE_PROGRAM("nbdinfo");
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  ExpectInfoMatchesNbdinfo((*server)->Uri());

  RunResult text = RunNbd({"--timeout", "5", "info", (*server)->Uri()});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_TRUE(absl::StrContains(text.out, "export-size: 1048576 (1M)"))
      << text.out;
  EXPECT_TRUE(absl::StrContains(text.out, "can_trim: true")) << text.out;
  EXPECT_TRUE(absl::StrContains(text.out, "base:allocation")) << text.out;
  EXPECT_TRUE(absl::StartsWith(text.out, "protocol: newstyle-fixed"))
      << text.out;
}

TEST(NbdToolTest, InfoMatchesNbdinfoOnReadOnlyNbdkitWithBlockSizes) {
  REQUIRE_PROGRAM("nbdkit");
  REQUIRE_PROGRAM("nbdinfo");
  auto server = ServerProcess::StartNbdkit(
      {"-r", "--filter=blocksize-policy", "memory", "1M",
       "blocksize-minimum=512", "blocksize-preferred=4096",
       "blocksize-maximum=65536"});
  if (!server.ok()) {
    server = ServerProcess::StartNbdkit({"-r", "memory", "1M"});
  }
  ASSERT_TRUE(server.ok()) << server.status();
  ExpectInfoMatchesNbdinfo((*server)->Uri());
}

TEST(NbdToolTest, InfoMatchesNbdinfoOnQemuNbd) {
  REQUIRE_PROGRAM("qemu-nbd");
  REQUIRE_PROGRAM("nbdinfo");
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  const std::string file = *dir + "/disk.raw";
  ASSERT_EQ(truncate(file.c_str(), 0), -1);  // does not exist yet
  const int fd = open(file.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 2 << 20), 0);
  close(fd);
  auto server = ServerProcess::StartQemuNbd(file, "raw");
  ASSERT_TRUE(server.ok()) << server.status();
  ExpectInfoMatchesNbdinfo((*server)->Uri());
  ExpectMapMatchesNbdinfo((*server)->Uri());
  server->reset();
  unlink(file.c_str());
  rmdir(dir->c_str());
}

TEST(NbdToolTest, InfoAndListOnNbdServer) {
  REQUIRE_PROGRAM("nbd-server");
  REQUIRE_PROGRAM("nbdinfo");
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  const std::string file = *dir + "/disk.raw";
  const int fd = open(file.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
  close(fd);
  auto server = ServerProcess::StartNbdServer(file, {"allowlist = true"});
  ASSERT_TRUE(server.ok()) << server.status();
  // nbdinfo asks with NBD_OPT_INFO, which nbd-server (3.24) answers with
  // size 0 before it has opened the file; we use NBD_OPT_GO, which gets
  // the real size.
  ExpectInfoMatchesNbdinfo((*server)->Uri("export"), "export-size");
  RunResult info = RunNbd({"info", "--json", (*server)->Uri("export")});
  EXPECT_EQ(JsonField(info.out, "export-size"), "1048576") << info.out;

  RunResult list = RunNbd({"info", "--list", (*server)->Uri()});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(absl::StrContains(list.out, "export=\"export\":")) << list.out;
  RunResult list_json = RunNbd({"info", "--list", "--json", (*server)->Uri()});
  ASSERT_EQ(list_json.exit_code, 0) << list_json.err;
  ExpectValidJson(list_json.out);
  RunResult ref = RunProgram({"nbdinfo", "--list", "--json", (*server)->Uri()});
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  EXPECT_EQ(JsonField(list_json.out, "export-name"),
            JsonField(ref.out, "export-name"));
  EXPECT_EQ(JsonField(list_json.out, "export-size"),
            JsonField(ref.out, "export-size"));
  server->reset();
  unlink(file.c_str());
  rmdir(dir->c_str());
}

TEST(NbdToolTest, ListOnNbdkitMatchesNbdinfo) {
  REQUIRE_PROGRAM("nbdkit");
  REQUIRE_PROGRAM("nbdinfo");
  auto server = ServerProcess::StartNbdkit({"memory", "2M"});
  ASSERT_TRUE(server.ok()) << server.status();
  RunResult ours = RunNbd({"--list", "info", "--json", (*server)->Uri()});
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  RunResult ref = RunProgram({"nbdinfo", "--list", "--json", (*server)->Uri()});
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  for (const char* key :
       {"export-name", "export-size", "can_trim", "is_read_only", "protocol"}) {
    EXPECT_EQ(JsonField(ours.out, key), JsonField(ref.out, key)) << key;
  }
}

TEST(NbdToolTest, DebugTracesToStderr) {
  REQUIRE_PROGRAM("nbdkit");
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  RunResult r = RunNbd({"info", (*server)->Uri(), "--debug"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The core's trace: every message both ways, options and replies.
  for (const char* want :
       {"nbd: debug: <- newstyle-fixed greeting", "nbd: debug: -> client flags",
        "nbd: debug: -> NBD_OPT_STRUCTURED_REPLY",
        "nbd: debug: <- NBD_REP_ACK to NBD_OPT_STRUCTURED_REPLY",
        "nbd: debug: -> NBD_OPT_LIST_META_CONTEXT",
        "nbd: debug: -> NBD_OPT_GO export=\"\"",
        "nbd: debug:    NBD_INFO_EXPORT size=1048576",
        "nbd: debug: <- NBD_REP_ACK to NBD_OPT_GO",
        "nbd: debug: -> NBD_CMD_DISC",
        "nbd: debug: closed: the server ended the connection cleanly"}) {
    EXPECT_TRUE(absl::StrContains(r.err, want)) << want << "\n" << r.err;
  }
  for (const std::string& line : Lines(r.err)) {
    EXPECT_TRUE(absl::StartsWith(line, "nbd: debug: ")) << line;
  }
}

// copy --debug traces commands and their replies through every adapter,
// naming the export and the connection.
TEST(NbdToolTest, DebugTracesCommandsAndRepliesThroughEveryAdapter) {
  REQUIRE_PROGRAM("nbdkit");
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string uri = (*server)->Uri();
  for (const char* adapter : {"blocking", "epoll", "io_uring"}) {
    SCOPED_TRACE(adapter);
    RunResult r = RunNbd({"copy", uri, "null:", "--adapter", adapter,
                          "--connections", "1", "--debug"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string prefix = absl::StrCat("nbd: debug: ", uri, " [0]: ");
    for (const std::string& want :
         {prefix + "-> NBD_OPT_GO", prefix + "-> NBD_CMD_BLOCK_STATUS cookie=",
          prefix + "<- NBD_REPLY_TYPE_BLOCK_STATUS cookie=",
          prefix + "-> NBD_CMD_DISC"}) {
      EXPECT_TRUE(absl::StrContains(r.err, want)) << want << "\n" << r.err;
    }
  }
}

// ---- map --------------------------------------------------------------------

TEST(NbdToolTest, MapMatchesNbdinfoOnNbdkitData) {
  REQUIRE_PROGRAM("nbdkit");
  REQUIRE_PROGRAM("nbdinfo");
  auto server = ServerProcess::StartNbdkit(
      {"data", "data=1 2 3 @1048576 1 @3145728 9", "size=4M"});
  ASSERT_TRUE(server.ok()) << server.status();
  ExpectMapMatchesNbdinfo((*server)->Uri());
  RunResult r = RunNbd({"map", (*server)->Uri()});
  ASSERT_EQ(r.exit_code, 0);
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_GE(lines.size(), 4u) << r.out;
  EXPECT_EQ(lines[0], "         0       32768    0  data");
  EXPECT_EQ(lines[1], "     32768     1015808    3  hole,zero");
}

// ---- serve (the embedded server as a subprocess) ---------------------------

TEST(NbdToolTest, ServeMemoryInfoMapAndStopOnSigterm) {
  REQUIRE_PROGRAM("nbdinfo");
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  const std::string sock = *dir + "/nbd.sock";
  const std::string uri = "nbd+unix:///?socket=" + sock;
  Child serve({NbdBinary(), "serve", "--socket", sock, "--memory", "4M"});
  ASSERT_TRUE(WaitForUnixSocket(sock, kEnds));

  ExpectInfoMatchesNbdinfo(uri);
  RunResult info = RunNbd({"info", uri});
  EXPECT_TRUE(absl::StrContains(info.out, "export-size: 4194304 (4M)"))
      << info.out;

  // Write two ranges (64 KiB pages), then map.
  {
    auto conn = adapters::ConnectUri(uri);
    ASSERT_TRUE(conn.ok()) << conn.status();
    auto client = adapters::BlockingClient::Connect(std::move(*conn), {});
    ASSERT_TRUE(client.ok()) << client.status();
    std::vector<uint8_t> data(128 * 1024, 0x5a);
    ASSERT_TRUE((*client)->Pwrite(data, 0).ok());
    ASSERT_TRUE((*client)->Pwrite(data, 2 << 20).ok());
    ASSERT_TRUE((*client)->Shutdown().ok());
  }
  ExpectMapMatchesNbdinfo(uri);
  RunResult map = RunNbd({"map", uri});
  EXPECT_EQ(map.out,
            "         0      131072    0  data\n"
            "    131072     1966080    3  hole,zero\n"
            "   2097152      131072    0  data\n"
            "   2228224     1966080    3  hole,zero\n");

  const int status = serve.Signal(SIGTERM, kEnds);
  ASSERT_NE(status, -1) << "nbd serve did not stop on SIGTERM";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_NE(access(sock.c_str(), F_OK), 0) << "socket file left behind";
  rmdir(dir->c_str());
}

// The whole file at `path` ("" if it cannot be read).
std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// `nbd [--debug] serve` with stderr in `err_path` (through sh, which execs
// nbd, so signals reach it).
std::unique_ptr<Child> ServeWithStderr(bool debug, const std::string& sock,
                                       const std::string& err_path) {
  return std::make_unique<Child>(std::vector<std::string>{
      "/bin/sh", "-c",
      absl::StrCat("exec '", NbdBinary(), "' ", debug ? "--debug " : "",
                   "serve --memory 1M --socket '", sock, "' 2>'", err_path,
                   "'")});
}

TEST(NbdToolTest, ServeDebugPrintsEachConnectionsTrace) {
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  const std::string sock = *dir + "/nbd.sock";
  const std::string err_path = *dir + "/serve.err";
  const std::string uri = "nbd+unix:///?socket=" + sock;
  std::unique_ptr<Child> serve = ServeWithStderr(true, sock, err_path);
  ASSERT_TRUE(WaitForUnixSocket(sock, kEnds));  // connection 1, no options
  RunResult info = RunNbd({"info", uri});       // connection 2
  ASSERT_EQ(info.exit_code, 0) << info.err;
  // The server traces the client's DISC after `nbd info` has gone, so
  // wait for the last line.
  const std::string closed = "nbd: debug: [conn 2]: closed: every reply sent\n";
  std::string err;
  for (absl::Time end = absl::Now() + kEnds; absl::Now() < end;
       absl::SleepFor(absl::Milliseconds(20))) {
    err = ReadWholeFile(err_path);
    if (absl::StrContains(err, closed)) break;
  }
  const int status = serve->Signal(SIGTERM, kEnds);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(absl::StrContains(err, closed)) << err;
  for (const char* line : {
           "nbd: debug: [conn 1]: -> fixed newstyle greeting: handshake "
           "flags 0x3\n",
           "nbd: debug: [conn 2]: <- client flags 0x3\n",
           "nbd: debug: [conn 2]: <- NBD_OPT_GO export=\"\"",
           "nbd: debug: [conn 2]: -> NBD_REP_ACK to NBD_OPT_GO, 0 bytes\n",
           "nbd: debug: [conn 2]: transmission: export \"\" size=1048576",
           "nbd: debug: [conn 2]: <- NBD_CMD_DISC cookie=",
       }) {
    EXPECT_TRUE(absl::StrContains(err, line)) << line << "\nin:\n" << err;
  }
  // Every trace line is one stderr line of its own.
  for (const std::string& line : Lines(err)) {
    if (!absl::StrContains(line, "[conn ")) continue;
    EXPECT_TRUE(absl::StartsWith(line, "nbd: debug: [conn ")) << line;
  }

  // Without --debug, nothing is traced.
  std::unique_ptr<Child> quiet = ServeWithStderr(false, sock, err_path);
  ASSERT_TRUE(WaitForUnixSocket(sock, kEnds));
  ASSERT_EQ(RunNbd({"info", uri}).exit_code, 0);
  EXPECT_NE(quiet->Signal(SIGTERM, kEnds), -1);
  EXPECT_FALSE(absl::StrContains(ReadWholeFile(err_path), "[conn "))
      << ReadWholeFile(err_path);
  unlink(err_path.c_str());
  rmdir(dir->c_str());
}

TEST(NbdToolTest, ServeNullAndReadOnlyFile) {
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  const std::string sock = *dir + "/nbd.sock";
  const std::string file = *dir + "/disk.raw";
  const int fd = open(file.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
  close(fd);
  {
    Child serve({NbdBinary(), "serve", "--file", file, "--read-only",
                 "--socket", sock});
    ASSERT_TRUE(WaitForUnixSocket(sock, kEnds));
    RunResult r = RunNbd({"info", "--json", "nbd+unix:///?socket=" + sock});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(JsonField(r.out, "is_read_only"), "true");
    EXPECT_EQ(JsonField(r.out, "export-size"), "1048576");
    EXPECT_NE(serve.Signal(SIGINT, kEnds), -1);
  }
  {
    Child serve({NbdBinary(), "serve", "--null", "1G", "--socket", sock});
    ASSERT_TRUE(WaitForUnixSocket(sock, kEnds));
    RunResult r = RunNbd({"map", "nbd+unix:///?socket=" + sock});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, "         0  1073741824    3  hole,zero\n");
    EXPECT_NE(serve.Signal(SIGTERM, kEnds), -1);
  }
  {
    // Read-only suits every backend, null too: writes are refused.
    Child serve({NbdBinary(), "serve", "--null", "1M", "--read-only",
                 "--socket", sock});
    ASSERT_TRUE(WaitForUnixSocket(sock, kEnds));
    const std::string uri = "nbd+unix:///?socket=" + sock;
    RunResult r = RunNbd({"info", "--json", uri});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(JsonField(r.out, "is_read_only"), "true");
    RunResult write = RunNbd({"copy", file, uri});
    ExpectOneErrorLine(write);
    EXPECT_TRUE(absl::StrContains(write.err, "read-only")) << write.err;
    EXPECT_NE(serve.Signal(SIGTERM, kEnds), -1);
  }
  unlink(file.c_str());
  rmdir(dir->c_str());
}

TEST(NbdToolTest, ServeMissingFileExits1) {
  RunResult r = RunNbd({"serve", "--file", "/nonexistent/disk", "--socket",
                        "/tmp/nbd-tool-test-never.sock"});
  ExpectOneErrorLine(r);
}

// ---- timeouts ---------------------------------------------------------------

TEST(NbdToolTest, ServerThatStopsAnsweringEndsWithErrorInBoundedTime) {
  REQUIRE_PROGRAM("nbdkit");
  auto server = ServerProcess::StartNbdkit(
      {"--filter=delay", "memory", "1M", "delay-extents=30", "delay-read=30"});
  ASSERT_TRUE(server.ok()) << server.status();
  RunResult r = RunNbd({"map", (*server)->Uri(), "--timeout", "1"}, kEnds);
  EXPECT_FALSE(r.timed_out) << "nbd map did not end";
  ExpectOneErrorLine(r);
  EXPECT_TRUE(absl::StrContains(r.err, "offset 0")) << r.err;
  EXPECT_LT(r.elapsed, kEnds);
}

TEST(NbdToolTest, HandshakeThatStallsEndsWithErrorInBoundedTime) {
  REQUIRE_PROGRAM("nbdkit");
  auto server = ServerProcess::StartNbdkit(
      {"--filter=delay", "memory", "1M", "delay-open=30"});
  ASSERT_TRUE(server.ok()) << server.status();
  RunResult r = RunNbd({"--timeout", "1", "info", (*server)->Uri()}, kEnds);
  EXPECT_FALSE(r.timed_out) << "nbd info did not end";
  ExpectOneErrorLine(r);
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"map", (*server)->Uri()},
           {"copy", "--adapter", "blocking", (*server)->Uri(), "null:"},
           {"copy", "--adapter", "epoll", (*server)->Uri(), "null:"},
           {"bench", "--adapter", "io_uring", (*server)->Uri()}}) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    std::vector<std::string> with_timeout = {"--timeout", "1"};
    with_timeout.insert(with_timeout.end(), args.begin(), args.end());
    RunResult stalled = RunNbd(with_timeout, kEnds);
    ExpectOneErrorLine(stalled);
    EXPECT_TRUE(absl::StrContains(stalled.err, (*server)->Uri()))
        << stalled.err;
    EXPECT_TRUE(absl::StrContains(stalled.err, "handshake: ")) << stalled.err;
    EXPECT_FALSE(absl::StrContains(stalled.err, "handshake: handshake"))
        << stalled.err;
  }
}

// The blocking adapter waits for its connections one after the other; a
// server that stops answering must still cost one --timeout in total, not
// one per connection (here 4, with multi-conn), for every adapter and both
// commands that open several connections.
TEST(NbdToolTest, StalledMultiConnServerCostsOneTimeout) {
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  HoldOpenServer::Options stall;
  stall.multi_conn = true;
  stall.stall = true;
  stall.connections = 4;
  for (const char* cmd : {"copy", "bench"}) {
    for (const char* adapter : {"blocking", "epoll", "io_uring"}) {
      SCOPED_TRACE(absl::StrCat(cmd, " ", adapter));
      auto server = HoldOpenServer::Start(*dir + "/stall.sock", 4 << 20, stall);
      ASSERT_TRUE(server.ok()) << server.status();
      std::vector<std::string> args = {
          "--timeout",     "1", cmd, "--adapter", adapter, "--connections", "4",
          (*server)->Uri()};
      args.push_back(std::string(cmd) == "copy" ? "null:" : "--seconds=5");
      RunResult r = RunNbd(args, kEnds);
      EXPECT_FALSE(r.timed_out);
      EXPECT_EQ((*server)->accepted(), 4);
      ExpectOneErrorLine(r);
      EXPECT_TRUE(
          absl::StrContains(r.err, (*server)->Uri() + ": read at offset "))
          << r.err;
      EXPECT_TRUE(absl::StrContains(r.err, "no reply from the server for 1s"))
          << r.err;
      EXPECT_LT(r.elapsed, absl::Milliseconds(3500)) << r.err;
    }
  }
  rmdir(dir->c_str());
}

TEST(NbdToolTest, ServerThatNeverClosesAfterDiscStillSucceeds) {
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  for (const char* cmd : {"info", "map"}) {
    SCOPED_TRACE(cmd);
    auto server = HoldOpenServer::Start(*dir + "/hold.sock", 1 << 20);
    ASSERT_TRUE(server.ok()) << server.status();
    RunResult r = RunNbd({"--timeout", "1", cmd, (*server)->Uri()}, kEnds);
    EXPECT_FALSE(r.timed_out);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE((*server)->saw_disc());
    EXPECT_TRUE((*server)->client_closed());
    EXPECT_TRUE(r.err.empty()) << r.err;
    if (std::string(cmd) == "info") {
      EXPECT_TRUE(absl::StrContains(r.out, "export-size: 1048576")) << r.out;
    } else {
      EXPECT_EQ(r.out, "         0     1048576    0  data\n");
    }
  }
  rmdir(dir->c_str());
}

// A server that never closes after NBD_CMD_DISC, with multi-conn: closing
// 4 connections waits one --timeout in total, not one per connection. (The
// bound below is a hang check with room for slow sanitizer builds: one wait
// per connection would take at least 4 s.)
TEST(NbdToolTest, MultiConnServerThatNeverClosesCostsOneTimeout) {
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  HoldOpenServer::Options hold;
  hold.multi_conn = true;
  hold.connections = 4;
  for (const char* cmd : {"copy", "bench"}) {
    for (const char* adapter : {"blocking", "epoll", "io_uring"}) {
      SCOPED_TRACE(absl::StrCat(cmd, " ", adapter));
      auto server = HoldOpenServer::Start(*dir + "/hold.sock", 1 << 20, hold);
      ASSERT_TRUE(server.ok()) << server.status();
      std::vector<std::string> args = {
          "--timeout",     "1", cmd, "--adapter", adapter, "--connections", "4",
          (*server)->Uri()};
      args.push_back(std::string(cmd) == "copy" ? "null:" : "--seconds=0.2");
      RunResult r = RunNbd(args, kEnds);
      EXPECT_FALSE(r.timed_out);
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_TRUE(r.err.empty()) << r.err;
      EXPECT_EQ((*server)->accepted(), 4);
      EXPECT_TRUE((*server)->WaitForDiscs(4));
      // bench runs 0.2 s before it disconnects.
      EXPECT_LT(r.elapsed, absl::Milliseconds(3500));
    }
  }
  rmdir(dir->c_str());
}

// ---- demo -------------------------------------------------------------------

TEST(NbdToolTest, DemoSucceedsThroughEveryAdapter) {
  RunResult r = RunNbd({"demo", "--timeout", "10"}, absl::Seconds(120));
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* adapter : {"blocking", "epoll", "io_uring"}) {
    EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat("== ", adapter, " ==")))
        << r.out;
  }
  size_t oks = 0;
  for (const std::string& line : Lines(r.out)) {
    if (absl::StrContains(line, "result     OK")) ++oks;
  }
  EXPECT_EQ(oks, 3u) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "demo: OK")) << r.out;
  EXPECT_FALSE(absl::StrContains(r.out, "fell back")) << r.out;
}

}  // namespace
}  // namespace nbd::test
