// The three backends through the Backend interface: memory, file and null.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "adapters/server/file_backend.h"
#include "adapters/server/memory_backend.h"
#include "adapters/server/null_backend.h"
#include "gtest/gtest.h"
#include "protocol/status.h"

namespace nbd {
namespace {

constexpr uint64_t kHoleZero = kStateHole | kStateZero;

std::vector<uint8_t> Bytes(size_t n, uint8_t v) {
  return std::vector<uint8_t>(n, v);
}

std::vector<uint8_t> ReadAll(Backend& b, uint64_t off, size_t n,
                             std::vector<ReadRun>* runs = nullptr) {
  std::vector<uint8_t> buf(n, 0xcc);
  std::vector<ReadRun> local;
  if (runs == nullptr) runs = &local;
  EXPECT_TRUE(b.Read(off, absl::MakeSpan(buf), runs).ok());
  // Hole bytes may be left untouched: apply the runs.
  size_t pos = 0;
  for (const ReadRun& r : *runs) {
    if (r.hole) std::fill(buf.begin() + pos, buf.begin() + pos + r.length, 0);
    pos += r.length;
  }
  EXPECT_EQ(pos, n);
  return buf;
}

TEST(MemoryBackendTest, SparseWritesReadsAndFrees) {
  MemoryBackend b(1 << 20, 4096);
  EXPECT_EQ(b.Size(), 1u << 20);
  EXPECT_EQ(b.allocated_pages(), 0u);
  ASSERT_TRUE(b.Write(4000, Bytes(200, 7), false).ok());
  EXPECT_EQ(b.allocated_pages(), 2u);
  ASSERT_TRUE(b.Write(65536, Bytes(4096, 0), false).ok());  // stays sparse
  EXPECT_EQ(b.allocated_pages(), 2u);
  std::vector<ReadRun> runs;
  auto got = ReadAll(b, 0, 3 * 4096, &runs);
  EXPECT_EQ(runs, (std::vector<ReadRun>{{8192, false}, {4096, true}}));
  EXPECT_EQ(got[3999], 0);
  EXPECT_EQ(got[4000], 7);
  EXPECT_EQ(got[4199], 7);
  EXPECT_EQ(got[4200], 0);

  std::vector<Extent> e;
  ASSERT_TRUE(b.BlockStatus(0, 1 << 20, 100, &e).ok());
  EXPECT_EQ(e, (std::vector<Extent>{{8192, 0}, {(1 << 20) - 8192, kHoleZero}}));
  e.clear();
  ASSERT_TRUE(b.BlockStatus(0, 1 << 20, 1, &e).ok());
  EXPECT_EQ(e.size(), 1u);

  // Zeroing the written bytes frees both pages.
  ASSERT_TRUE(b.Zero(4000, 200, 0).ok());
  EXPECT_EQ(b.allocated_pages(), 0u);
  ASSERT_TRUE(b.Write(0, Bytes(8192, 1), false).ok());
  ASSERT_TRUE(b.Trim(0, 4096 + 10, false).ok());
  EXPECT_EQ(b.allocated_pages(), 1u);
  got = ReadAll(b, 0, 8192);
  EXPECT_EQ(got[4105], 0);
  EXPECT_EQ(got[4106], 1);
}

TEST(MemoryBackendTest, RangeAndReadOnlyErrors) {
  MemoryBackend b(4096);
  std::vector<ReadRun> runs;
  std::vector<uint8_t> buf(10);
  EXPECT_EQ(StatusErrno(b.Read(4090, absl::MakeSpan(buf), &runs)), ENOSPC);
  EXPECT_EQ(StatusErrno(b.Write(4095, buf, false)), ENOSPC);
  MemoryBackend ro(4096, 4096, true);
  EXPECT_TRUE(ro.Capabilities().read_only);
  EXPECT_EQ(StatusErrno(ro.Write(0, buf, false)), EPERM);
  EXPECT_EQ(StatusErrno(ro.Trim(0, 1, false)), EPERM);
}

TEST(MemoryBackendTest, ConcurrentWritersOnDistinctRanges) {
  MemoryBackend b(8 << 20);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&b, t] {
      for (int i = 0; i < 64; ++i) {
        const uint64_t off = uint64_t(t) * (1 << 20) + uint64_t(i) * 16384;
        ASSERT_TRUE(b.Write(off, Bytes(16384, uint8_t(t + 1)), false).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 8; ++t) {
    auto got = ReadAll(b, uint64_t(t) << 20, 1 << 20);
    EXPECT_EQ(got, Bytes(1 << 20, uint8_t(t + 1)));
  }
}

TEST(NullBackendTest, EverythingIsAHole) {
  NullBackend b(1 << 30);
  ASSERT_TRUE(b.Write(0, Bytes(100, 9), true).ok());
  std::vector<ReadRun> runs;
  auto got = ReadAll(b, 0, 100, &runs);
  EXPECT_EQ(runs, (std::vector<ReadRun>{{100, true}}));
  EXPECT_EQ(got, Bytes(100, 0));
  std::vector<Extent> e;
  ASSERT_TRUE(b.BlockStatus(5, 1000, 10, &e).ok());
  EXPECT_EQ(e, (std::vector<Extent>{{1000, kHoleZero}}));
  EXPECT_TRUE(b.Flush().ok());
  EXPECT_TRUE(b.Trim(0, 1 << 30, false).ok());
  EXPECT_EQ(StatusErrno(b.Zero(1 << 30, 1, 0)), ENOSPC);
}

class FileBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* dir = getenv("TEST_TMPDIR");
    path_ = std::string(dir != nullptr ? dir : "/tmp") + "/file_backend_XXXXXX";
    int fd = mkstemp(path_.data());
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, 4 << 20), 0);  // sparse
    close(fd);
  }
  void TearDown() override { unlink(path_.c_str()); }
  std::string path_;
};

TEST_F(FileBackendTest, ReadWriteHolesAndZeroes) {
  auto b = FileBackend::Open(path_);
  ASSERT_TRUE(b.ok()) << b.status();
  Backend& f = **b;
  EXPECT_EQ(f.Size(), 4u << 20);
  ASSERT_TRUE(f.Write(1 << 20, Bytes(65536, 3), true).ok());
  std::vector<ReadRun> runs;
  auto got = ReadAll(f, 0, 2 << 20, &runs);
  EXPECT_EQ(got[(1 << 20) - 1], 0);
  EXPECT_EQ(got[1 << 20], 3);
  EXPECT_EQ(got[(1 << 20) + 65535], 3);
  EXPECT_EQ(got[(1 << 20) + 65536], 0);
  // A filesystem with SEEK_HOLE reports the unwritten start as a hole.
  ASSERT_FALSE(runs.empty());
  std::vector<Extent> e;
  ASSERT_TRUE(f.BlockStatus(0, 4 << 20, 100, &e).ok());
  uint64_t total = 0;
  for (const Extent& x : e) total += x.length;
  EXPECT_EQ(total, 4u << 20);
  bool saw_data = false;
  for (const Extent& x : e) saw_data |= x.flags == 0;
  EXPECT_TRUE(saw_data);

  ASSERT_TRUE(f.Flush().ok());
  ASSERT_TRUE(f.Zero((1 << 20) + 100, 100, kZeroFua).ok());  // ZERO_RANGE
  ASSERT_TRUE(f.Zero((1 << 20) + 1000, 100, kZeroMayTrim).ok());
  ASSERT_TRUE(f.Trim((1 << 20) + 4096, 4096, false).ok());  // punches
  got = ReadAll(f, 1 << 20, 65536);
  EXPECT_EQ(got[99], 3);
  EXPECT_EQ(got[100], 0);
  EXPECT_EQ(got[199], 0);
  EXPECT_EQ(got[200], 3);
  EXPECT_EQ(got[1000], 0);
  EXPECT_EQ(got[4096], 0);
  EXPECT_EQ(got[8191], 0);
  EXPECT_EQ(got[8192], 3);
  EXPECT_TRUE(f.Cache(0, 4096).ok());
  EXPECT_EQ(StatusErrno(f.Write(4 << 20, Bytes(1, 1), false)), ENOSPC);
}

// FUA must reach the disk before the reply: every FUA write, trim and zero
// syncs once, the same calls without FUA do not.
TEST_F(FileBackendTest, FuaSyncs) {
  auto b = FileBackend::Open(path_);
  ASSERT_TRUE(b.ok()) << b.status();
  FileBackend& f = **b;
  EXPECT_EQ(f.syncs(), 0u);
  ASSERT_TRUE(f.Write(0, Bytes(4096, 1), false).ok());
  ASSERT_TRUE(f.Trim(0, 4096, false).ok());
  ASSERT_TRUE(f.Zero(0, 4096, kZeroMayTrim).ok());
  EXPECT_EQ(f.syncs(), 0u);
  ASSERT_TRUE(f.Write(0, Bytes(4096, 1), true).ok());
  EXPECT_EQ(f.syncs(), 1u);
  ASSERT_TRUE(f.Trim(0, 4096, true).ok());
  EXPECT_EQ(f.syncs(), 2u);
  ASSERT_TRUE(f.Zero(0, 4096, kZeroFua).ok());
  EXPECT_EQ(f.syncs(), 3u);
  ASSERT_TRUE(f.Zero(8192, 4096, kZeroFua | kZeroMayTrim).ok());
  EXPECT_EQ(f.syncs(), 4u);
  ASSERT_TRUE(f.Flush().ok());
  EXPECT_EQ(f.syncs(), 5u);
  // A failed write does not get as far as syncing.
  EXPECT_FALSE(f.Write(4 << 20, Bytes(1, 1), true).ok());
  EXPECT_EQ(f.syncs(), 5u);
}

TEST_F(FileBackendTest, ReadOnly) {
  auto b = FileBackend::Open(path_, /*read_only=*/true);
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE((*b)->Capabilities().read_only);
  EXPECT_EQ(StatusErrno((*b)->Write(0, Bytes(1, 1), false)), EPERM);
  EXPECT_EQ(StatusErrno((*b)->Zero(0, 1, 0)), EPERM);
}

TEST_F(FileBackendTest, MissingFile) {
  auto b = FileBackend::Open(path_ + ".missing");
  EXPECT_EQ(StatusErrno(b.status()), ENOENT);
}

}  // namespace
}  // namespace nbd
