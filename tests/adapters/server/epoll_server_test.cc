// The epoll server on a Unix socket (and TCP), driven by libnbd's own
// tools as clients: nbdinfo, nbdcopy and nbdsh.
#include "adapters/server/epoll_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "adapters/server/file_backend.h"
#include "adapters/server/memory_backend.h"
#include "adapters/server/null_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/constants.h"
#include "protocol/endian.h"
#include "tests/testing/servers.h"

namespace nbd {
namespace {

using test::CommandResult;
using test::RunShell;

bool Have(const std::string& tool) {
  return access(("/usr/bin/" + tool).c_str(), X_OK) == 0;
}

// `s` without whitespace, for matching nbdinfo output loosely.
std::string Compact(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\n') out += c;
  }
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class EpollServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nbdsrv.XXXXXX";  // short: sun_path is 108 bytes
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/sock";
    memory_ = std::make_shared<MemoryBackend>(64 << 20);
  }
  void TearDown() override {
    server_.reset();
    RunShell("rm -rf " + dir_);
  }

  void StartServer(std::vector<ServedExport> exports, bool tcp = false) {
    EpollServerOptions o;
    if (!tcp) o.unix_path = socket_;
    o.exports = std::move(exports);
    o.on_trace = on_trace_;
    auto s = EpollServer::Create(std::move(o));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    ASSERT_TRUE(server_->Start().ok());
  }
  void StartMemory() {
    StartServer({{"mem", "memory disk", memory_},
                 {"null", "", std::make_shared<NullBackend>(1 << 30)}});
  }
  std::string Uri(const std::string& name = "") const {
    return "'nbd+unix:///" + name + "?socket=" + socket_ + "'";
  }

  // Connects to the Unix socket; -1 on failure.
  int Connect() const {
    const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, socket_.c_str(), sizeof(addr.sun_path) - 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  }

  std::string dir_, socket_;
  std::function<void(uint64_t, absl::string_view)> on_trace_;
  std::shared_ptr<MemoryBackend> memory_;
  std::unique_ptr<EpollServer> server_;
};

TEST_F(EpollServerTest, NbdinfoJson) {
  if (!Have("nbdinfo")) GTEST_SKIP() << "nbdinfo not installed";
  StartMemory();
  CommandResult r = RunShell("nbdinfo --json " + Uri("mem"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string compact = Compact(r.output);
  auto has = [&](const std::string& what) {
    return compact.find(Compact(what)) != std::string::npos;
  };
  EXPECT_TRUE(has(R"("export-size":67108864)")) << r.output;
  EXPECT_TRUE(has(R"("export-name":"mem")")) << r.output;
  EXPECT_TRUE(has(R"("description":"memory disk")")) << r.output;
  EXPECT_TRUE(has(R"("is_read_only":false)")) << r.output;
  EXPECT_TRUE(has(R"("can_trim":true)")) << r.output;
  EXPECT_TRUE(has(R"("can_zero":true)")) << r.output;
  EXPECT_TRUE(has(R"("can_flush":true)")) << r.output;
  EXPECT_TRUE(has(R"("can_fua":true)")) << r.output;
  EXPECT_TRUE(has(R"("can_multi_conn":true)")) << r.output;
  EXPECT_TRUE(has(R"("can_cache":true)")) << r.output;
  EXPECT_TRUE(has(R"("can_df":true)")) << r.output;
  EXPECT_TRUE(has(R"("can_fast_zero":true)")) << r.output;
  EXPECT_TRUE(has(R"("structured":true)")) << r.output;
  EXPECT_TRUE(has(R"("base:allocation")")) << r.output;
  EXPECT_TRUE(has(R"("block_size_preferred":4096)")) << r.output;
}

TEST_F(EpollServerTest, NbdinfoListAndMap) {
  if (!Have("nbdinfo")) GTEST_SKIP() << "nbdinfo not installed";
  StartMemory();
  CommandResult r = RunShell("nbdinfo --list " + Uri());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("export=\"mem\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("export=\"null\""), std::string::npos) << r.output;
  r = RunShell("nbdinfo --map " + Uri("null"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(Compact(r.output).find("010737418243hole,zero"), std::string::npos)
      << r.output;
}

TEST_F(EpollServerTest, NbdcopyRoundTrip) {
  if (!Have("nbdcopy")) GTEST_SKIP() << "nbdcopy not installed";
  StartMemory();
  // 8 MiB: random data with a zero stretch in the middle.
  std::string data(8 << 20, '\0');
  std::mt19937 rng(1);
  for (size_t i = 0; i < data.size(); ++i) {
    if (i < (3 << 20) || i >= (5 << 20)) data[i] = char(rng());
  }
  const std::string src = dir_ + "/src", dst = dir_ + "/dst";
  std::ofstream(src, std::ios::binary).write(data.data(), data.size());
  CommandResult r = RunShell("nbdcopy " + src + " " + Uri("mem"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = RunShell("nbdcopy " + Uri("mem") + " " + dst);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string back = ReadFile(dst);
  ASSERT_EQ(back.size(), 64u << 20);
  EXPECT_TRUE(back.compare(0, data.size(), data) == 0);
  EXPECT_EQ(back.find_first_not_of('\0', data.size()), std::string::npos);
  EXPECT_GT(server_->connections_accepted(), 2u);  // multi-conn copies
}

TEST_F(EpollServerTest, NbdshScript) {
  // nbdsh runs on the system Python, which has the libnbd bindings.
  if (!Have("nbdsh") ||
      RunShell("/usr/bin/python3 -c 'import nbd'").exit_code != 0) {
    GTEST_SKIP() << "nbdsh not installed (python3-libnbd)";
  }
  StartMemory();
  const std::string script = R"PY(
import nbd
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.connect_uri("nbd+unix:///mem?socket=SOCKET")
assert h.get_size() == 64 * 1024 * 1024
assert h.can_trim() and h.can_zero() and h.can_flush() and h.can_fua()
assert h.can_meta_context("base:allocation")
h.pwrite(b"hello, nbd" * 1000, 4096)
assert h.pread(10, 4096) == b"hello, nbd"
assert h.pread(10000, 4096) == b"hello, nbd" * 1000
h.pwrite(b"x" * 512, 1 << 20, nbd.CMD_FLAG_FUA)
h.flush()
h.zero(100, 4096 + 10)
assert h.pread(120, 4196) == b"\0" * 10 + b"hello, nbd" * 11
h.trim(1 << 20, 1 << 20)
assert h.pread(512, 1 << 20) == b"\0" * 512
h.zero(65536, 5 << 20, nbd.CMD_FLAG_FAST_ZERO)
entries = []
def cb(metacontext, offset, e, err):
    assert metacontext == "base:allocation"
    entries.extend(e)
h.block_status(2 << 20, 0, cb)
assert entries[0] == 65536 and entries[1] == 0, entries
assert entries[2] == (2 << 20) - 65536 and entries[3] == 3, entries
h.cache(4096, 0)
buf = bytearray(4096)
h.pread_structured(4096, 0, lambda *a: 0)
try:
    h.pread(10, 64 * 1024 * 1024)
    raise SystemExit("read past the end succeeded")
except nbd.Error:
    pass
h.shutdown()
print("nbdsh script OK")
)PY";
  std::string s = script;
  s.replace(s.find("SOCKET"), 6, socket_);
  const std::string path = dir_ + "/script.py";
  std::ofstream(path) << s;
  CommandResult r = RunShell("env PATH=/usr/bin:/bin nbdsh -c \"exec(open('" +
                             path + "').read())\"");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("nbdsh script OK"), std::string::npos) << r.output;
}

TEST_F(EpollServerTest, FileBackendThroughNbdcopy) {
  if (!Have("nbdcopy")) GTEST_SKIP() << "nbdcopy not installed";
  const std::string image = dir_ + "/image";
  ASSERT_EQ(truncate((image).c_str(), 0), -1);  // does not exist yet
  std::ofstream(image).close();
  ASSERT_EQ(truncate(image.c_str(), 4 << 20), 0);
  auto file = FileBackend::Open(image);
  ASSERT_TRUE(file.ok()) << file.status();
  StartServer({{"", "file", std::shared_ptr<Backend>(std::move(*file))}});
  std::string data(4 << 20, '\0');
  std::mt19937 rng(2);
  for (size_t i = 0; i < (1 << 20); ++i) data[i] = char(rng());
  const std::string src = dir_ + "/src";
  std::ofstream(src, std::ios::binary).write(data.data(), data.size());
  CommandResult r = RunShell("nbdcopy " + src + " " + Uri());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(ReadFile(image), data);
  if (Have("nbdinfo")) {
    r = RunShell("nbdinfo --map " + Uri());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("data"), std::string::npos) << r.output;
  }
}

TEST_F(EpollServerTest, Tcp) {
  if (!Have("nbdinfo")) GTEST_SKIP() << "nbdinfo not installed";
  StartServer({{"", "null", std::make_shared<NullBackend>(12345)}},
              /*tcp=*/true);
  ASSERT_NE(server_->port(), 0);
  CommandResult r = RunShell("nbdinfo --size " + server_->uri());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "12345\n");
}

TEST_F(EpollServerTest, StopsCleanlyWithClientsConnected) {
  StartMemory();
  int fds[3];
  for (int& fd : fds) {
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, socket_.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  char greeting[18];
  ASSERT_EQ(recv(fds[0], greeting, sizeof(greeting), MSG_WAITALL), 18);
  EXPECT_EQ(std::string(greeting, 8), "NBDMAGIC");
  // Garbage client flags: that connection is dropped (EOF).
  ASSERT_EQ(send(fds[1], "\xff\xff\xff\xff", 4, 0), 4);
  char buf[64];
  ssize_t n;
  while ((n = recv(fds[1], buf, sizeof(buf), 0)) > 0) {
  }
  EXPECT_EQ(n, 0);
  server_->Stop();
  EXPECT_EQ(server_->open_connections(), 0u);
  while ((n = recv(fds[2], buf, sizeof(buf), 0)) > 0) {
  }
  EXPECT_EQ(n, 0);  // closed by Stop()
  for (int fd : fds) close(fd);
  server_.reset();
  struct stat st;
  EXPECT_NE(stat(socket_.c_str(), &st), 0);  // socket file removed
}

// Reads until the server closes the connection.
void ReadToEof(int fd) {
  char buf[256];
  while (recv(fd, buf, sizeof(buf), 0) > 0) {
  }
}

TEST_F(EpollServerTest, TraceLinesNameTheirConnection) {
  std::mutex mu;
  std::map<uint64_t, std::vector<std::string>> lines;  // by connection
  on_trace_ = [&](uint64_t connection, absl::string_view message) {
    std::lock_guard<std::mutex> lock(mu);
    lines[connection].emplace_back(message);
  };
  StartMemory();
  // Connection 1 breaks the protocol at once: unknown client flags.
  const int bad = Connect();
  ASSERT_GE(bad, 0);
  ASSERT_EQ(send(bad, "\xff\xff\xff\xff", 4, 0), 4);
  ReadToEof(bad);
  close(bad);
  // Connection 2 leaves politely with NBD_OPT_ABORT.
  const int good = Connect();
  ASSERT_GE(good, 0);
  uint8_t in[20];
  StoreBe32(in, kClientFlagFixedNewstyle | kClientFlagNoZeroes);
  StoreBe64(in + 4, kIHaveOptMagic);
  StoreBe32(in + 12, static_cast<uint32_t>(Option::kAbort));
  StoreBe32(in + 16, 0);
  ASSERT_EQ(send(good, in, sizeof(in), 0), 20);
  ReadToEof(good);
  close(good);
  // The server calls on_trace before it closes a socket, so both
  // connections' lines are all there once the client saw EOF.
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(lines.size(), 2u);
  using ::testing::ElementsAre;
  using ::testing::StartsWith;
  EXPECT_THAT(lines[1],
              ElementsAre("-> fixed newstyle greeting: handshake flags 0x3",
                          StartsWith("dead: ")));
  EXPECT_THAT(lines[2],
              ElementsAre("-> fixed newstyle greeting: handshake flags 0x3",
                          "<- client flags 0x3", "<- NBD_OPT_ABORT",
                          "-> NBD_REP_ACK to NBD_OPT_ABORT, 0 bytes",
                          "closing: NBD_OPT_ABORT received; 0 request(s) in "
                          "flight",
                          "closed: every reply sent"));
}

}  // namespace
}  // namespace nbd
