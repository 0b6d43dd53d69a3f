// Interop with nbd-server driven by a config file, through every adapter.
#include <filesystem>
#include <fstream>

#include "tests/adapters/interop/every_command.h"
#include "tests/adapters/interop/interop_fixture.h"

namespace nbd::test {
namespace {

using NbdServerTest = InteropTest;

constexpr uint64_t kMiB = 1024 * 1024;

class NbdServerFixture {
 public:
  NbdServerFixture() {
    auto dir = MakeTempDir();
    if (!dir.ok()) return;
    dir_ = *dir;
    file_ = dir_ + "/disk";
    std::ofstream out(file_, std::ios::binary);
    std::vector<uint8_t> zeroes(kMiB);
    out.write(reinterpret_cast<const char*>(zeroes.data()), zeroes.size());
  }
  ~NbdServerFixture() {
    server_.reset();
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }
  absl::Status Start() {
    auto s = ServerProcess::StartNbdServer(
        file_, {"trim = true", "flush = true", "fua = true"});
    if (!s.ok()) return s.status();
    server_ = std::move(*s);
    return absl::OkStatus();
  }
  const std::string& socket() const { return server_->socket_path(); }

 private:
  std::string dir_, file_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_P(NbdServerTest, IntegrityAndCommands) {
  SkipUnless("nbd-server");
  NbdServerFixture fixture;
  ASSERT_TRUE(fixture.Start().ok());
  ClientOptions options;
  options.export_name = "export";
  auto h = ConnectTo(fixture.socket(), options);
  ASSERT_NE(h, nullptr);
  const Client& c = h->client();
  EXPECT_EQ(c.export_size(), kMiB);
  std::vector<uint8_t> a = Pattern(65536, 21), b = Pattern(4096, 22);
  std::vector<Op> ops = {WriteOp(0, a),
                         WriteOp(500000, b, c.can_fua() ? kCmdFlagFua : 0)};
  if (c.can_flush()) ops.push_back(SimpleOp(Op::kFlush));
  if (c.can_trim()) ops.push_back(SimpleOp(Op::kTrim, 700000, 4096));
  if (c.can_zero()) ops.push_back(SimpleOp(Op::kZero, 800000, 4096));
  ASSERT_TRUE(h->Run(ops, kTimeout).ok());
  EXPECT_ALL_OK(ops);
  std::vector<uint8_t> ra(65536), rb(4096);
  std::vector<Op> reads = {ReadOp(0, ra), ReadOp(500000, rb)};
  ASSERT_TRUE(h->Run(reads, kTimeout).ok());
  EXPECT_ALL_OK(reads);
  EXPECT_EQ(ra, a);
  EXPECT_EQ(rb, b);
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
  EXPECT_EQ(h->client().phase(), ClientPhase::kClosed);
}

TEST_P(NbdServerTest, EveryAdvertisedCommandAndFlag) {
  SkipUnless("nbd-server");
  NbdServerFixture fixture;
  ASSERT_TRUE(fixture.Start().ok());
  ClientOptions options;
  options.export_name = "export";
  auto h = ConnectTo(fixture.socket(), options);
  ASSERT_NE(h, nullptr);
  // Enabled in the config file.
  const Client& c = h->client();
  EXPECT_TRUE(c.can_flush() && c.can_fua() && c.can_trim());
  PrintWalk(ExerciseEveryAdvertisedCommand(*h, kTimeout));
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
  EXPECT_EQ(h->client().phase(), ClientPhase::kClosed);
}

// nbd-server answers NBD_OPT_INFO with size 0 (a server quirk); GO gives the
// real size.
TEST_P(NbdServerTest, OptionModeListInfoGo) {
  SkipUnless("nbd-server");
  NbdServerFixture fixture;
  ASSERT_TRUE(fixture.Start().ok());
  ClientOptions options;
  options.option_mode = true;
  auto h = ConnectTo(fixture.socket(), options);
  ASSERT_NE(h, nullptr);
  auto list = h->OptList(kTimeout);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list, std::vector<std::string>{"export"});
  EXPECT_TRUE(h->OptInfo("export", kTimeout).ok());
  ASSERT_TRUE(h->OptGo(kTimeout).ok());
  EXPECT_EQ(h->client().export_size(), kMiB);
  std::vector<uint8_t> back(4096, 1);
  std::vector<Op> read = {ReadOp(0, back)};
  ASSERT_TRUE(h->Run(read, kTimeout).ok());
  EXPECT_ALL_OK(read);
  EXPECT_EQ(back, std::vector<uint8_t>(4096, 0));
  EXPECT_TRUE(h->Shutdown(0, kTimeout).ok());
}

NBD_INSTANTIATE_FOR_ALL_ADAPTERS(NbdServerTest);

}  // namespace
}  // namespace nbd::test
