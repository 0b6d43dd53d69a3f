// Interop with qemu-nbd (raw and sparse qcow2), through every adapter.
#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "tests/adapters/interop/every_command.h"
#include "tests/adapters/interop/interop_fixture.h"

namespace nbd::test {
namespace {

using QemuNbdTest = InteropTest;

constexpr uint64_t kMiB = 1024 * 1024;

// Runs a shell command; true on exit status 0.
bool Sh(const std::string& command) {
  int r = std::system((command + " >/dev/null 2>&1").c_str());
  return r != -1 && WIFEXITED(r) && WEXITSTATUS(r) == 0;
}

class ScratchDir {
 public:
  ScratchDir() : path_(*MakeTempDir()) {}
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

TEST_P(QemuNbdTest, RawFileIntegrityAndCommands) {
  SkipUnless("qemu-nbd");
  ScratchDir dir;
  std::string file = dir.File("disk.raw");
  std::vector<uint8_t> initial = Pattern(kMiB, 11);
  std::ofstream(file, std::ios::binary)
      .write(reinterpret_cast<const char*>(initial.data()), initial.size());
  auto server = ServerProcess::StartQemuNbd(file, "raw");
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  const Client& c = h->client();
  EXPECT_EQ(c.export_size(), kMiB);
  // The file's content is what the server serves.
  std::vector<uint8_t> back(kMiB);
  std::vector<Op> read = {ReadOp(0, back)};
  ASSERT_TRUE(h->Run(read, kTimeout).ok());
  EXPECT_ALL_OK(read);
  EXPECT_EQ(back, initial);

  std::vector<uint8_t> data = Pattern(65536, 12);
  std::vector<Op> ops = {WriteOp(131072, data, c.can_fua() ? kCmdFlagFua : 0)};
  if (c.can_flush()) ops.push_back(SimpleOp(Op::kFlush));
  if (c.can_zero()) ops.push_back(SimpleOp(Op::kZero, 0, 65536));
  if (c.can_trim()) ops.push_back(SimpleOp(Op::kTrim, 262144, 65536));
  if (c.can_cache()) ops.push_back(SimpleOp(Op::kCache, 0, 65536));
  if (c.can_block_status()) {
    ops.push_back(SimpleOp(Op::kBlockStatus, 0, kMiB));
  }
  ASSERT_TRUE(h->Run(ops, kTimeout).ok());
  EXPECT_ALL_OK(ops);
  std::vector<uint8_t> a(65536), z(65536, 0xff);
  std::vector<Op> check = {ReadOp(131072, a), ReadOp(0, z)};
  ASSERT_TRUE(h->Run(check, kTimeout).ok());
  EXPECT_ALL_OK(check);
  EXPECT_EQ(a, data);
  if (c.can_zero()) {
    EXPECT_EQ(z, std::vector<uint8_t>(65536, 0));
  }
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
  EXPECT_EQ(h->client().phase(), ClientPhase::kClosed);
}

TEST_P(QemuNbdTest, SparseQcow2BlockStatus) {
  SkipUnless("qemu-nbd");
  SkipUnless("qemu-img");
  SkipUnless("qemu-io");
  ScratchDir dir;
  std::string file = dir.File("disk.qcow2");
  ASSERT_TRUE(Sh(absl::StrCat("qemu-img create -f qcow2 ", file, " 4M")));
  ASSERT_TRUE(
      Sh(absl::StrCat("qemu-io -f qcow2 -c 'write -P 0xab 1M 64k' ", file)));
  auto server = ServerProcess::StartQemuNbd(file, "qcow2");
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  ASSERT_TRUE(h->client().can_block_status());
  std::vector<uint8_t> data(65536);
  std::vector<Op> ops = {SimpleOp(Op::kBlockStatus, 0, 4 * kMiB),
                         ReadOp(kMiB, data)};
  ASSERT_TRUE(h->Run(ops, kTimeout).ok());
  EXPECT_ALL_OK(ops);
  EXPECT_EQ(data, std::vector<uint8_t>(65536, 0xab));
  const std::vector<Extent>& e = ops[0].extents;
  ASSERT_FALSE(e.empty());
  EXPECT_LE(TotalLength(e), 4 * kMiB);
  EXPECT_EQ(FlagsAt(e, 0, 0), 3u);  // unallocated: hole, zero
  if (TotalLength(e) > kMiB) {
    EXPECT_EQ(FlagsAt(e, 0, kMiB), 0u);  // written cluster: data
    EXPECT_EQ(FlagsAt(e, 0, kMiB + 65535), 0u);
  }
  if (TotalLength(e) == 4 * kMiB) {
    EXPECT_EQ(FlagsAt(e, 0, 3 * kMiB), 3u);
  }
  // Writing through NBD allocates. (Two batches: commands in flight
  // together may be served in any order.)
  std::vector<uint8_t> more = Pattern(65536, 13);
  std::vector<Op> write = {WriteOp(2 * kMiB, more)};
  ASSERT_TRUE(h->Run(write, kTimeout).ok());
  EXPECT_ALL_OK(write);
  std::vector<Op> status = {SimpleOp(Op::kBlockStatus, 2 * kMiB, 65536)};
  ASSERT_TRUE(h->Run(status, kTimeout).ok());
  EXPECT_ALL_OK(status);
  EXPECT_EQ(FlagsAt(status[0].extents, 2 * kMiB, 2 * kMiB), 0u);
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
}

TEST_P(QemuNbdTest, EveryAdvertisedCommandAndFlag) {
  SkipUnless("qemu-nbd");
  for (const char* format : {"raw", "qcow2"}) {
    SCOPED_TRACE(format);
    ScratchDir dir;
    std::string file = dir.File(std::string("disk.") + format);
    if (std::string(format) == "raw") {
      std::ofstream(file, std::ios::binary).close();
      std::filesystem::resize_file(file, 4 * kMiB);
    } else {
      if (!HaveProgram("qemu-img")) continue;
      ASSERT_TRUE(Sh(absl::StrCat("qemu-img create -f qcow2 ", file, " 4M")));
    }
    auto server = ServerProcess::StartQemuNbd(file, format);
    ASSERT_TRUE(server.ok()) << server.status();
    auto h = ConnectTo((*server)->socket_path());
    ASSERT_NE(h, nullptr);
    // What qemu-nbd advertises for a writable image.
    const Client& c = h->client();
    EXPECT_TRUE(c.can_flush() && c.can_fua() && c.can_trim() && c.can_zero() &&
                c.can_block_status());
    PrintWalk(ExerciseEveryAdvertisedCommand(*h, kTimeout));
    EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
    EXPECT_EQ(h->client().phase(), ClientPhase::kClosed);
  }
}

NBD_INSTANTIATE_FOR_ALL_ADAPTERS(QemuNbdTest);

}  // namespace
}  // namespace nbd::test
