// `nbd copy` (CopyCommand / RunCopy) against nbdkit, through every adapter.
#include "tools/nbd/copy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "adapters/blocking/blocking_client.h"
#include "adapters/connect/connect.h"
#include "gtest/gtest.h"
#include "tests/testing/servers.h"
#include "tests/tools/capture_fd.h"
#include "tests/tools/hold_open_server.h"
#include "tools/nbd/command.h"
#include "tools/nbd/progress.h"

namespace nbd::tool {
namespace {

using ::nbd::test::CaptureFd;
using ::nbd::test::HaveProgram;
using ::nbd::test::RedirectFd;
using ::nbd::test::ServerProcess;

constexpr uint64_t kMiB = 1 << 20;

GlobalOptions Globals() {
  GlobalOptions g;
  g.timeout = absl::Seconds(20);
  return g;
}

// Random-looking bytes with a run of zeros in the middle, so the zero
// detection path is part of every round trip.
std::vector<uint8_t> TestData(size_t size, uint32_t seed) {
  std::vector<uint8_t> data(size);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x = x * 1664525u + 1013904223u;
    data[i] = static_cast<uint8_t>(x >> 24);
  }
  size_t zero_from = size / 4;
  std::fill(data.begin() + zero_from, data.begin() + zero_from + size / 4, 0);
  return data;
}

void WriteFile(const std::string& path, const std::vector<uint8_t>& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data.data()), data.size());
}

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// The whole export, read with the blocking adapter (independent of copy).
std::vector<uint8_t> ReadExport(const std::string& uri) {
  auto conn = adapters::ConnectUri(uri);
  EXPECT_TRUE(conn.ok()) << conn.status();
  if (!conn.ok()) return {};
  auto client = adapters::BlockingClient::Connect(std::move(*conn), {});
  EXPECT_TRUE(client.ok()) << client.status();
  if (!client.ok()) return {};
  uint64_t size = *(*client)->client().export_size();
  std::vector<uint8_t> data(size);
  for (uint64_t at = 0; at < size; at += kMiB) {
    uint64_t n = std::min(kMiB, size - at);
    absl::Status s = (*client)->Pread(absl::MakeSpan(data.data() + at, n), at);
    EXPECT_TRUE(s.ok()) << s;
  }
  (*client)->Shutdown().IgnoreError();
  return data;
}

// Runs CopyCommand capturing stderr.
int Copy(const std::vector<std::string>& args, std::string* err = nullptr) {
  CaptureFd capture(STDERR_FILENO);
  int rc = CopyCommand(args, Globals());
  std::string text = capture.Finish();
  if (err != nullptr) *err = text;
  return rc;
}

std::vector<std::string> NonEmptyLines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

class CopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
  }
  std::unique_ptr<ServerProcess> Nbdkit(const std::vector<std::string>& args) {
    auto server = ServerProcess::StartNbdkit(args);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? std::move(*server) : nullptr;
  }
};

class CopyAdapterTest : public CopyTest,
                        public ::testing::WithParamInterface<const char*> {};

TEST_P(CopyAdapterTest, FileToNbdToFileRoundTrip) {
  auto server = Nbdkit({"memory", "8M"});
  ASSERT_NE(server, nullptr);
  std::vector<uint8_t> data = TestData(8 * kMiB, 1);
  std::string in = server->dir() + "/in";
  std::string out = server->dir() + "/out";
  WriteFile(in, data);

  std::string err;
  ASSERT_EQ(Copy({in, server->Uri(), "--adapter", GetParam(), "--request-size",
                  "64K", "--connections", "2", "--requests", "8", "--flush"},
                 &err),
            kExitOk)
      << err;
  EXPECT_EQ(ReadExport(server->Uri()), data);
  ASSERT_EQ(Copy({server->Uri(), out, "--adapter", GetParam()}, &err), kExitOk)
      << err;
  EXPECT_EQ(ReadFile(out), data);
}

TEST_P(CopyAdapterTest, OddSizedSourceKeepsItsTail) {
  // nbdkit pattern: every 8-byte word holds its own offset, big-endian, so
  // a misplaced or missing request shows.
  auto server = Nbdkit({"pattern", "1000003"});
  ASSERT_NE(server, nullptr);
  std::string out = server->dir() + "/out";
  std::string err;
  ASSERT_EQ(Copy({server->Uri(), out, "--adapter", GetParam(), "--request-size",
                  "4K", "--requests", "3"},
                 &err),
            kExitOk)
      << err;
  EXPECT_EQ(ReadFile(out), ReadExport(server->Uri()));
  EXPECT_EQ(ReadFile(out).size(), 1000003u);
}

TEST_P(CopyAdapterTest, SparseSourceSkipsHoles) {
  auto src = Nbdkit({"sparse-random", "64M", "percent=2", "seed=7"});
  auto dst = Nbdkit({"memory", "64M"});
  ASSERT_NE(src, nullptr);
  ASSERT_NE(dst, nullptr);
  CopyOptions o;
  o.source = src->Uri();
  o.destination = dst->Uri();
  o.adapter = *ParseAdapter(GetParam());
  o.timeout = absl::Seconds(20);
  absl::StatusOr<CopyStats> stats = RunCopy(o);
  ASSERT_TRUE(stats.ok()) << stats.status();
  std::vector<uint8_t> expected = ReadExport(src->Uri());
  EXPECT_EQ(ReadExport(dst->Uri()), expected);
  // About 2% is data: far less than the whole export was read and written.
  EXPECT_GT(stats->block_status, 0u);
  EXPECT_LT(stats->bytes_read, 16 * kMiB);
  EXPECT_GT(stats->bytes_zero, 48 * kMiB);
  EXPECT_GT(stats->zero_requests, 0u);
}

TEST_P(CopyAdapterTest, FileWithOddSizeIsCopiedByteExact) {
  // File reads run on a reader thread and finish out of step with the
  // network: every byte, the short last request included, must land where
  // it belongs, and nothing beyond the file's end may be written.
  auto server = Nbdkit({"memory", "8M"});
  ASSERT_NE(server, nullptr);
  std::vector<uint8_t> data = TestData(5 * kMiB + 12345, 9);
  std::string in = server->dir() + "/odd";
  WriteFile(in, data);
  std::string err;
  ASSERT_EQ(Copy({in, server->Uri(), "--adapter", GetParam(), "--request-size",
                  "64K", "--connections", "4", "--requests", "16"},
                 &err),
            kExitOk)
      << err;
  std::vector<uint8_t> back = ReadExport(server->Uri());
  ASSERT_EQ(back.size(), 8 * kMiB);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), back.begin()));
  EXPECT_TRUE(std::all_of(back.begin() + data.size(), back.end(),
                          [](uint8_t b) { return b == 0; }));
}

TEST_P(CopyAdapterTest, StdinOddSizedFileIsCopiedByteExact) {
  // `-` redirected from a regular file goes through the reader thread too
  // (without owning the descriptor); a pipe is covered by StdinPipeToNbd.
  auto server = Nbdkit({"memory", "4M"});
  ASSERT_NE(server, nullptr);
  std::vector<uint8_t> data = TestData(3 * kMiB + 777, 10);
  std::string in = server->dir() + "/stdin";
  WriteFile(in, data);
  int fd = ::open(in.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  int rc;
  std::string err;
  {
    RedirectFd redirect(STDIN_FILENO, fd);
    rc = Copy(
        {"-", server->Uri(), "--adapter", GetParam(), "--request-size", "256K"},
        &err);
  }
  ::close(fd);
  ASSERT_EQ(rc, kExitOk) << err;
  std::vector<uint8_t> back = ReadExport(server->Uri());
  ASSERT_EQ(back.size(), 4 * kMiB);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), back.begin()));
}

TEST_P(CopyAdapterTest, FileReadErrorNamesFileAndOffset) {
  // A sysfs attribute claims 4096 bytes but holds a few: the read hits end
  // of file early, as a file truncated during the copy would.
  const std::string src = "/sys/devices/system/cpu/online";
  struct stat st;
  if (::stat(src.c_str(), &st) != 0 || st.st_size != 4096) {
    GTEST_SKIP() << src << " is not a 4096-byte sysfs file here";
  }
  auto server = Nbdkit({"memory", "1M"});
  ASSERT_NE(server, nullptr);
  std::string err;
  EXPECT_EQ(Copy({src, server->Uri(), "--adapter", GetParam()}, &err),
            kExitError);
  std::vector<std::string> lines = NonEmptyLines(err);
  ASSERT_EQ(lines.size(), 1u) << err;
  EXPECT_EQ(lines[0], "nbd: copy: " + src +
                          ": read at offset 0: unexpected end of file "
                          "(truncated?)");
}

INSTANTIATE_TEST_SUITE_P(Adapters, CopyAdapterTest,
                         ::testing::Values("blocking", "epoll", "io_uring"));

TEST_F(CopyTest, SparseToNullReadsOnlyData) {
  auto src = Nbdkit({"sparse-random", "64M", "percent=2", "seed=3"});
  ASSERT_NE(src, nullptr);
  CopyOptions o;
  o.source = src->Uri();
  o.destination = "null:";
  absl::StatusOr<CopyStats> stats = RunCopy(o);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->size, 64 * kMiB);
  EXPECT_LT(stats->bytes_read, 16 * kMiB);
  EXPECT_EQ(stats->bytes_read + stats->bytes_zero, 64 * kMiB);
  EXPECT_EQ(stats->writes, 0u);
  EXPECT_EQ(stats->zero_requests, 0u);  // null: needs nothing for zeros
}

TEST_F(CopyTest, SparseToFileLeavesHoles) {
  auto src = Nbdkit({"sparse-random", "64M", "percent=2", "seed=5"});
  ASSERT_NE(src, nullptr);
  std::string out = src->dir() + "/sparse.img";
  std::string err;
  ASSERT_EQ(Copy({src->Uri(), out}, &err), kExitOk) << err;
  EXPECT_EQ(ReadFile(out), ReadExport(src->Uri()));
  struct stat st;
  ASSERT_EQ(::stat(out.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 64 * kMiB);
  // Holes were skipped, so most of the file is unallocated.
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 16 * kMiB);
}

TEST_F(CopyTest, StdinPipeToNbd) {
  auto server = Nbdkit({"memory", "4M"});
  ASSERT_NE(server, nullptr);
  std::vector<uint8_t> data = TestData(3 * kMiB + 123, 2);
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::thread writer([&] {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(p[1], data.data() + done, data.size() - done);
      if (n <= 0) break;
      done += n;
    }
    ::close(p[1]);
  });
  int rc;
  std::string err;
  {
    RedirectFd in(STDIN_FILENO, p[0]);
    rc = Copy({"-", server->Uri(), "--request-size", "100000"}, &err);
  }
  writer.join();
  ::close(p[0]);
  ASSERT_EQ(rc, kExitOk) << err;
  std::vector<uint8_t> back = ReadExport(server->Uri());
  back.resize(data.size());
  EXPECT_EQ(back, data);
}

TEST_F(CopyTest, StdinRegularFileToNbd) {
  auto server = Nbdkit({"memory", "2M"});
  ASSERT_NE(server, nullptr);
  std::vector<uint8_t> data = TestData(2 * kMiB, 4);
  std::string in = server->dir() + "/in";
  WriteFile(in, data);
  int fd = ::open(in.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  int rc;
  std::string err;
  {
    RedirectFd redirect(STDIN_FILENO, fd);
    rc = Copy({"-", server->Uri()}, &err);
  }
  ::close(fd);
  ASSERT_EQ(rc, kExitOk) << err;
  EXPECT_EQ(ReadExport(server->Uri()), data);
}

TEST_F(CopyTest, NbdToStdoutInOrder) {
  auto server = Nbdkit({"pattern", "3M"});
  ASSERT_NE(server, nullptr);
  std::string out = server->dir() + "/stdout";
  int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  int rc;
  std::string err;
  {
    // Many small requests over several connections complete out of order;
    // stdout must still get them in order.
    RedirectFd redirect(STDOUT_FILENO, fd);
    rc = Copy(
        {server->Uri(), "-", "--request-size", "16K", "--connections", "4"},
        &err);
  }
  ::close(fd);
  ASSERT_EQ(rc, kExitOk) << err;
  EXPECT_EQ(ReadFile(out), ReadExport(server->Uri()));
}

TEST_F(CopyTest, SparseNbdToStdoutWritesZeros) {
  auto server = Nbdkit({"sparse-random", "8M", "percent=10", "seed=9"});
  ASSERT_NE(server, nullptr);
  std::string out = server->dir() + "/stdout";
  int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  int rc;
  std::string err;
  {
    RedirectFd redirect(STDOUT_FILENO, fd);
    rc = Copy({server->Uri(), "-"}, &err);
  }
  ::close(fd);
  ASSERT_EQ(rc, kExitOk) << err;
  EXPECT_EQ(ReadFile(out), ReadExport(server->Uri()));
}

TEST_F(CopyTest, UnreachableUriIsOneErrorLine) {
  std::string err;
  std::string uri = "nbd+unix:///?socket=/nonexistent/dir/sock";
  EXPECT_EQ(Copy({uri, "null:"}, &err), kExitError);
  std::vector<std::string> lines = NonEmptyLines(err);
  ASSERT_EQ(lines.size(), 1u) << err;
  EXPECT_TRUE(absl::StartsWith(lines[0], "nbd: copy: ")) << err;
  EXPECT_TRUE(absl::StrContains(lines[0], uri)) << err;
}

TEST_F(CopyTest, MalformedUriIsOneErrorLine) {
  std::string err;
  EXPECT_EQ(Copy({"nbd://[::1/x", "null:"}, &err), kExitError);
  EXPECT_EQ(NonEmptyLines(err).size(), 1u) << err;
}

TEST_F(CopyTest, MissingSourceFile) {
  std::string err;
  EXPECT_EQ(Copy({"/nonexistent/file", "null:"}, &err), kExitError);
  ASSERT_EQ(NonEmptyLines(err).size(), 1u) << err;
  EXPECT_TRUE(absl::StrContains(err, "/nonexistent/file")) << err;
}

TEST_F(CopyTest, UsageErrors) {
  EXPECT_EQ(Copy({"only-one"}), kExitUsage);
  EXPECT_EQ(Copy({"a", "b", "c"}), kExitUsage);
  EXPECT_EQ(Copy({"a", "b", "--bogus"}), kExitUsage);
  EXPECT_EQ(Copy({"a", "b", "--adapter", "carrier-pigeon"}), kExitUsage);
  EXPECT_EQ(Copy({"a", "b", "--request-size", "lots"}), kExitUsage);
  EXPECT_EQ(Copy({"a", "b", "--connections", "0"}), kExitUsage);
  EXPECT_EQ(Copy({"a", "b", "--requests"}), kExitUsage);
  EXPECT_EQ(Copy({"null:", "b"}), kExitUsage);
}

TEST_F(CopyTest, ReadOnlyDestination) {
  auto server = Nbdkit({"-r", "memory", "1M"});
  ASSERT_NE(server, nullptr);
  std::string in = server->dir() + "/in";
  WriteFile(in, TestData(kMiB, 5));
  std::string err;
  EXPECT_EQ(Copy({in, server->Uri()}, &err), kExitError);
  ASSERT_EQ(NonEmptyLines(err).size(), 1u) << err;
  EXPECT_TRUE(absl::StrContains(err, server->Uri())) << err;
  EXPECT_TRUE(absl::StrContains(err, "read-only")) << err;
}

TEST_F(CopyTest, DestinationTooSmall) {
  auto server = Nbdkit({"memory", "1M"});
  ASSERT_NE(server, nullptr);
  std::string in = server->dir() + "/in";
  WriteFile(in, TestData(2 * kMiB, 6));
  std::string err;
  EXPECT_EQ(Copy({in, server->Uri()}, &err), kExitError);
  ASSERT_EQ(NonEmptyLines(err).size(), 1u) << err;
  EXPECT_TRUE(absl::StrContains(err, "smaller")) << err;
}

TEST_F(CopyTest, ServerWriteErrorNamesCommandAndOffset) {
  auto server = Nbdkit({"--filter=error", "memory", "4M", "error-pwrite=EIO",
                        "error-pwrite-rate=100%"});
  ASSERT_NE(server, nullptr);
  std::string in = server->dir() + "/in";
  WriteFile(in, TestData(4 * kMiB, 7));
  for (const char* adapter : {"blocking", "epoll", "io_uring"}) {
    std::string err;
    EXPECT_EQ(Copy({in, server->Uri(), "--adapter", adapter}, &err),
              kExitError);
    std::vector<std::string> lines = NonEmptyLines(err);
    ASSERT_EQ(lines.size(), 1u) << err;
    EXPECT_TRUE(absl::StartsWith(lines[0], "nbd: copy: " + server->Uri()))
        << err;
    EXPECT_TRUE(absl::StrContains(lines[0], "write at offset ")) << err;
  }
}

TEST(CopyShutdownTest, ServerThatNeverClosesStillSucceeds) {
  for (const char* adapter : {"blocking", "epoll", "io_uring"}) {
    SCOPED_TRACE(adapter);
    auto dir = test::MakeTempDir();
    ASSERT_TRUE(dir.ok()) << dir.status();
    auto server = test::HoldOpenServer::Start(*dir + "/sock", 1 << 20);
    ASSERT_TRUE(server.ok()) << server.status();
    GlobalOptions g;
    g.timeout = absl::Seconds(1);
    CaptureFd capture(STDERR_FILENO);
    absl::Time start = absl::Now();
    int rc = CopyCommand({(*server)->Uri(), "null:", "--adapter", adapter}, g);
    absl::Duration took = absl::Now() - start;
    std::string err = capture.Finish();
    EXPECT_EQ(rc, kExitOk) << err;
    EXPECT_TRUE((*server)->saw_disc());
    EXPECT_LT(took, absl::Seconds(15));  // bounded, not forever
    server->reset();
    std::filesystem::remove_all(*dir);
  }
}

// A destination that takes writes and never answers them: the error names
// the destination (not the source), the command, the stuck request's
// offset and the timeout.
TEST_F(CopyTest, StalledDestinationIsNamedWithCommandAndOffset) {
  auto src = Nbdkit({"pattern", "1M"});
  ASSERT_NE(src, nullptr);
  for (const char* adapter : {"blocking", "epoll", "io_uring"}) {
    SCOPED_TRACE(adapter);
    test::HoldOpenServer::Options stall;
    stall.stall = true;
    auto dst =
        test::HoldOpenServer::Start(src->dir() + "/dst.sock", 1 << 20, stall);
    ASSERT_TRUE(dst.ok()) << dst.status();
    GlobalOptions g;
    g.timeout = absl::Seconds(1);
    CaptureFd capture(STDERR_FILENO);
    // One request at a time, so the stuck one is the write at offset 0.
    int rc = CopyCommand({src->Uri(), (*dst)->Uri(), "--adapter", adapter,
                          "--connections", "1", "--requests", "1"},
                         g);
    std::string err = capture.Finish();
    EXPECT_EQ(rc, kExitError) << err;
    std::vector<std::string> lines = NonEmptyLines(err);
    ASSERT_EQ(lines.size(), 1u) << err;
    EXPECT_EQ(lines[0], "nbd: copy: " + (*dst)->Uri() +
                            ": write at offset 0: no reply from the server "
                            "for 1s");
  }
}

// With the blocking adapter, reads that complete after the destination
// timed out issue writes on its dead connection; their "the connection has
// ended" must not hide the timeout that caused it.
TEST_F(CopyTest, BlockingStalledDestinationReportsTheTimeout) {
  auto src = Nbdkit({"pattern", "4M"});
  ASSERT_NE(src, nullptr);
  test::HoldOpenServer::Options stall;
  stall.stall = true;
  stall.multi_conn = true;
  stall.connections = 4;
  auto dst =
      test::HoldOpenServer::Start(src->dir() + "/dst.sock", 4 << 20, stall);
  ASSERT_TRUE(dst.ok()) << dst.status();
  GlobalOptions g;
  g.timeout = absl::Seconds(1);
  CaptureFd capture(STDERR_FILENO);
  int rc = CopyCommand({src->Uri(), (*dst)->Uri(), "--adapter", "blocking",
                        "--connections", "4"},
                       g);
  std::string err = capture.Finish();
  EXPECT_EQ(rc, kExitError) << err;
  EXPECT_EQ((*dst)->accepted(), 4);
  std::vector<std::string> lines = NonEmptyLines(err);
  ASSERT_EQ(lines.size(), 1u) << err;
  EXPECT_TRUE(absl::StartsWith(
      lines[0], "nbd: copy: " + (*dst)->Uri() + ": write at offset 0: "))
      << err;
  EXPECT_TRUE(absl::EndsWith(lines[0], ": no reply from the server for 1s"))
      << err;
  EXPECT_FALSE(absl::StrContains(err, "has ended")) << err;
}

TEST(ProgressTest, Render) {
  std::string bar = Progress::Render(50 * kMiB, 100 * kMiB, absl::Seconds(2));
  EXPECT_TRUE(absl::StrContains(bar, " 50.0%")) << bar;
  EXPECT_TRUE(absl::StrContains(bar, "25.0 MiB/s")) << bar;
  EXPECT_TRUE(absl::StrContains(Progress::Render(kMiB, 0, absl::Seconds(1)),
                                "1.0 MiB"));
}

}  // namespace
}  // namespace nbd::tool
