// TLS through every adapter of the engine (blocking, epoll, io_uring):
// against nbdkit --tls=require (X.509 and PSK), qemu-nbd with tls-creds-x509
// and tls-creds-psk (which closes without close_notify after NBD_CMD_DISC:
// still a clean close), the engine's own server, and allow mode against a
// plaintext nbdkit.
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "adapters/connect/connect.h"
#include "adapters/server/epoll_server.h"
#include "adapters/server/memory_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/client/options.h"
#include "protocol/status.h"
#include "tests/adapters/interop/harness.h"
#include "tests/testing/servers.h"
#include "tests/testing/tls_certs.h"

namespace nbd::test {
namespace {

using ::testing::HasSubstr;

const TlsCredentials* creds = nullptr;

class AdaptersTlsTest : public ::testing::TestWithParam<AdapterKind> {
 protected:
  static void SetUpTestSuite() {
    auto c = SharedTlsCredentials();
    ASSERT_TRUE(c.ok()) << c.status();
    creds = *c;
  }
};

ClientOptions Require() {
  ClientOptions o;
  o.tls = TlsPolicy::kRequire;
  o.tls_credentials.certificates_dir = creds->good();
  return o;
}

ClientOptions RequirePsk() {
  ClientOptions o;
  o.tls = TlsPolicy::kRequire;
  o.tls_credentials.psk_file = creds->good_psk();
  o.tls_credentials.username = "alice";
  return o;
}

// Connects over TLS, writes and reads back 256 KiB in 4 commands at once
// (epoll, io_uring) or in turn (blocking), and disconnects: closed, not
// dead, whether the server answers our close_notify or just closes.
// Far beyond the test's own timeout on purpose: a loop that waits for a
// completion that never comes (as io_uring did when TLS delivered the
// handshake inside Prepare()) hangs the test instead of finishing late.
constexpr absl::Duration kNoStall = absl::Hours(1);

void ReadWriteDisconnect(const std::string& socket, AdapterKind kind,
                         const ClientOptions& options = Require(),
                         bool expect_tls = true) {
  auto fd = adapters::ConnectUnix(socket);
  ASSERT_TRUE(fd.ok()) << fd.status();
  auto h = Harness::Create(kind, nullptr);
  absl::Status connected = h->Connect(*fd, options, kNoStall);
  ASSERT_TRUE(connected.ok()) << connected;
  EXPECT_EQ(h->client().tls_negotiated(), expect_tls);
  std::vector<std::vector<uint8_t>> data(4), back(4);
  std::vector<Op> ops;
  for (size_t i = 0; i < 4; ++i) {
    data[i].assign(64 * 1024, static_cast<uint8_t>(i + 1));
    ops.push_back(WriteOp(i * 65536, data[i]));
  }
  ASSERT_TRUE(h->Run(ops, kNoStall).ok());
  for (const Op& op : ops) EXPECT_TRUE(op.status.ok()) << op.status;
  ops.clear();
  for (size_t i = 0; i < 4; ++i) {
    back[i].resize(64 * 1024);
    ops.push_back(ReadOp(i * 65536, back[i]));
  }
  // (qemu-nbd drops commands still in flight when NBD_CMD_DISC comes, so
  // the reads finish first.)
  ASSERT_TRUE(h->Run(ops, kNoStall).ok());
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(ops[i].status.ok()) << ops[i].status;
    EXPECT_TRUE(back[i] == data[i]) << i;
  }
  std::vector<Op> none;
  absl::Status end = h->RunThenDisconnect(none, kNoStall);
  ASSERT_TRUE(end.ok()) << end;
  EXPECT_EQ(h->client().phase(), ClientPhase::kClosed)
      << h->client().dead_reason();
}

TEST_P(AdaptersTlsTest, NbdkitX509) {
  if (!HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
  auto server = ServerProcess::StartNbdkit(
      {"--tls=require", "--tls-certificates=" + creds->good(), "memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  ReadWriteDisconnect((*server)->socket_path(), GetParam());
}

TEST_P(AdaptersTlsTest, NbdkitPsk) {
  if (!HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
  auto server = ServerProcess::StartNbdkit(
      {"--tls=require", "--tls-psk=" + creds->good_psk(), "memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  ReadWriteDisconnect((*server)->socket_path(), GetParam(), RequirePsk());
}

// Allow mode against a server without TLS: plaintext, through every
// adapter (the TLS layer is configured but never started).
TEST_P(AdaptersTlsTest, AllowFallsBackToPlaintext) {
  if (!HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions allow = Require();
  allow.tls = TlsPolicy::kAllow;
  ReadWriteDisconnect((*server)->socket_path(), GetParam(), allow,
                      /*expect_tls=*/false);
}

// qemu-nbd on a 1 MiB raw image with the TLS credentials object `object`
// (id tls0), then ReadWriteDisconnect with `options`.
void QemuNbdRoundTrip(const std::string& object, AdapterKind kind,
                      const ClientOptions& options) {
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  const std::string image = *dir + "/disk.raw";
  ASSERT_EQ(std::system(("truncate -s 1M " + image).c_str()), 0);
  auto server = ServerProcess::StartQemuNbd(
      image, "raw", {"--object", object, "--tls-creds", "tls0"});
  ASSERT_TRUE(server.ok()) << server.status();
  ReadWriteDisconnect((*server)->socket_path(), kind, options);
  std::system(("rm -rf " + *dir).c_str());
}

TEST_P(AdaptersTlsTest, QemuNbdX509) {
  if (!HaveProgram("qemu-nbd")) GTEST_SKIP() << "qemu-nbd not installed";
  QemuNbdRoundTrip(
      "tls-creds-x509,id=tls0,endpoint=server,verify-peer=off,dir=" +
          creds->good(),
      GetParam(), Require());
}

TEST_P(AdaptersTlsTest, QemuNbdPsk) {
  if (!HaveProgram("qemu-nbd")) GTEST_SKIP() << "qemu-nbd not installed";
  // tls-creds-psk reads DIR/keys.psk, which is where good_psk() lives.
  QemuNbdRoundTrip("tls-creds-psk,id=tls0,endpoint=server,dir=" + creds->root(),
                   GetParam(), RequirePsk());
}

// The engine's own server (the only TLS peer here with extended headers).
TEST_P(AdaptersTlsTest, EngineServerX509) {
  auto dir = MakeTempDir();
  ASSERT_TRUE(dir.ok());
  EpollServerOptions o;
  o.unix_path = *dir + "/sock";
  o.exports.push_back({"", "", std::make_shared<MemoryBackend>(1 << 20)});
  o.session.tls = ServerTlsMode::kRequire;
  o.session.tls_credentials.certificates_dir = creds->good();
  auto server = EpollServer::Create(std::move(o));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Start().ok());
  ReadWriteDisconnect((*server)->unix_path(), GetParam());
  server->reset();
  std::system(("rm -rf " + *dir).c_str());
}

INSTANTIATE_TEST_SUITE_P(Adapters, AdaptersTlsTest,
                         ::testing::Values(AdapterKind::kBlocking,
                                           AdapterKind::kEpoll,
                                           AdapterKind::kIoUring),
                         [](const auto& info) {
                           switch (info.param) {
                             case AdapterKind::kBlocking:
                               return "blocking";
                             case AdapterKind::kEpoll:
                               return "epoll";
                             default:
                               return "io_uring";
                           }
                         });

}  // namespace
}  // namespace nbd::test
