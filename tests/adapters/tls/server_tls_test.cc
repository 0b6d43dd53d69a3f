// The engine's own server over TLS (EpollServer with ServerOptions::tls):
// libnbd's nbdinfo, nbdcopy and nbdsh as clients, the engine's client
// through the blocking and epoll adapters (extended headers over TLS, which
// no other server here offers), X.509 and PSK, client certificates, the
// require/on modes, and a man in the middle injecting plaintext after
// STARTTLS.
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "adapters/blocking/blocking_client.h"
#include "adapters/connect/connect.h"
#include "adapters/server/epoll_server.h"
#include "adapters/server/memory_backend.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/endian.h"
#include "protocol/status.h"
#include "protocol/wire.h"
#include "tests/testing/servers.h"
#include "tests/testing/tls_certs.h"

namespace nbd {
namespace {

using ::testing::HasSubstr;

const test::TlsCredentials* creds = nullptr;

using test::CommandResult;
using test::RunShell;

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + seed);
  return v;
}

class ServerTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = test::SharedTlsCredentials();
    ASSERT_TRUE(c.ok()) << c.status();
    creds = *c;
  }
  void SetUp() override {
    auto dir = test::MakeTempDir();
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
    socket_ = dir_ + "/sock";
  }
  void TearDown() override {
    server_.reset();
    RunShell("rm -rf " + dir_);
  }

  // Serves 64 MiB of memory as "" with `mode` and `credentials`.
  void Start(ServerTlsMode mode, TlsCredentials credentials) {
    EpollServerOptions o;
    o.unix_path = socket_;
    o.exports.push_back({"", "tls disk", memory_});
    o.session.tls = mode;
    o.session.tls_credentials = std::move(credentials);
    auto s = EpollServer::Create(std::move(o));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    ASSERT_TRUE(server_->Start().ok());
  }
  void StartX509(ServerTlsMode mode = ServerTlsMode::kRequire,
                 bool verify_clients = false) {
    TlsCredentials c;
    c.certificates_dir = creds->good();
    c.require_client_certificate = verify_clients;
    Start(mode, std::move(c));
  }
  void StartPsk() {
    TlsCredentials c;
    c.psk_file = creds->good_psk();
    Start(ServerTlsMode::kRequire, std::move(c));
  }

  std::string X509Uri(const std::string& client_dir) const {
    return "'nbds+unix:///?socket=" + socket_ +
           "&tls-certificates=" + client_dir + "'";
  }
  std::string PskUri() const {
    return "'nbds+unix://alice@/?socket=" + socket_ +
           "&tls-psk-file=" + creds->good_psk() + "'";
  }

  absl::StatusOr<std::unique_ptr<adapters::BlockingClient>> Connect(
      const ClientOptions& options) {
    auto fd = adapters::ConnectUnix(socket_);
    if (!fd.ok()) return fd.status();
    return adapters::BlockingClient::Connect(*fd, options, absl::Seconds(10));
  }
  static ClientOptions Certs(const std::string& dir,
                             TlsPolicy policy = TlsPolicy::kRequire) {
    ClientOptions o;
    o.tls = policy;
    o.tls_credentials.certificates_dir = dir;
    return o;
  }

  // A credentials directory that trusts CA A but has no client certificate.
  std::string CaOnlyDir() {
    const std::string d = dir_ + "/ca-only";
    RunShell("mkdir -p " + d + " && cp " + creds->good() + "/ca-cert.pem " + d);
    return d;
  }

  std::string dir_;
  std::string socket_;
  std::shared_ptr<MemoryBackend> memory_ =
      std::make_shared<MemoryBackend>(64 << 20);
  std::unique_ptr<EpollServer> server_;
};

// Writes 300 KiB (several TLS records), reads it back, and disconnects: the
// server's close_notify makes it a clean close.
void RoundTrip(adapters::BlockingClient& c) {
  const std::vector<uint8_t> data = Pattern(300 * 1024, 5);
  ASSERT_TRUE(c.Pwrite(data, 8192).ok());
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(c.Pread(absl::MakeSpan(back), 8192).ok());
  EXPECT_TRUE(back == data);
  ASSERT_TRUE(c.Shutdown().ok());
  EXPECT_EQ(c.client().phase(), ClientPhase::kClosed)
      << c.client().dead_reason();
}

TEST_F(ServerTlsTest, EngineClientGetsExtendedHeadersOverTls) {
  StartX509();
  auto c = Connect(Certs(creds->good()));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->client().tls_negotiated());
  EXPECT_TRUE((*c)->client().extended_headers());
  RoundTrip(**c);
}

TEST_F(ServerTlsTest, EngineClientWithPsk) {
  StartPsk();
  ClientOptions o;
  o.tls = TlsPolicy::kRequire;
  o.tls_credentials.psk_file = creds->good_psk();
  o.tls_credentials.username = "bob";
  auto c = Connect(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->client().tls_negotiated());
  RoundTrip(**c);
}

TEST_F(ServerTlsTest, NbdinfoSeesTls) {
  if (!test::HaveProgram("nbdinfo")) GTEST_SKIP() << "nbdinfo not installed";
  StartX509();
  CommandResult r = RunShell("nbdinfo " + X509Uri(creds->good()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("with TLS"));
  EXPECT_THAT(r.output, HasSubstr("67108864"));
  r = RunShell("nbdinfo " + PskUri());
  EXPECT_NE(r.exit_code, 0) << "a PSK client against an X.509 server";
}

TEST_F(ServerTlsTest, NbdinfoWithPsk) {
  if (!test::HaveProgram("nbdinfo")) GTEST_SKIP() << "nbdinfo not installed";
  StartPsk();
  CommandResult r = RunShell("nbdinfo " + PskUri());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("with TLS"));
}

TEST_F(ServerTlsTest, NbdcopyBothWays) {
  if (!test::HaveProgram("nbdcopy")) GTEST_SKIP() << "nbdcopy not installed";
  StartX509();
  const std::string in = dir_ + "/in", out = dir_ + "/out";
  const std::vector<uint8_t> data = Pattern(3 << 20, 9);
  std::ofstream(in, std::ios::binary)
      .write(reinterpret_cast<const char*>(data.data()), data.size());
  CommandResult r = RunShell("nbdcopy " + in + " " + X509Uri(creds->good()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = RunShell("nbdcopy " + X509Uri(creds->good()) + " " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream back(out, std::ios::binary);
  std::vector<uint8_t> got(data.size());
  back.read(reinterpret_cast<char*>(got.data()), got.size());
  EXPECT_TRUE(got == data);
  EXPECT_GT(server_->connections_accepted(), 2u);  // multi-conn, each TLS
}

TEST_F(ServerTlsTest, NbdshScript) {
  if (!test::HaveProgram("nbdsh") ||
      RunShell("/usr/bin/python3 -c 'import nbd'").exit_code != 0) {
    GTEST_SKIP() << "nbdsh not installed (python3-libnbd)";
  }
  StartPsk();
  const std::string script = absl::StrCat(R"PY(
import nbd
h = nbd.NBD()
h.set_tls(nbd.TLS_REQUIRE)
h.set_tls_psk_file(")PY",
                                          creds->good_psk(), R"PY(")
h.set_tls_username("alice")
h.connect_unix(")PY",
                                          socket_, R"PY(")
assert h.get_tls_negotiated()
assert h.get_size() == 64 * 1024 * 1024
h.pwrite(b"over tls" * 512, 65536)
assert h.pread(4096, 65536) == b"over tls" * 512
h.shutdown()
print("nbdsh tls OK")
)PY");
  const std::string path = dir_ + "/script.py";
  std::ofstream(path) << script;
  CommandResult r = RunShell("env PATH=/usr/bin:/bin nbdsh -c \"exec(open('" +
                             path + "').read())\"");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("nbdsh tls OK"));
}

TEST_F(ServerTlsTest, RequireRefusesAPlaintextClientWithTheReason) {
  StartX509();
  ClientOptions plain;
  plain.tls = TlsPolicy::kDisable;
  auto c = Connect(plain);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("TLS"))
      << c.status();
  if (test::HaveProgram("nbdinfo")) {
    CommandResult r = RunShell("nbdinfo 'nbd+unix:///?socket=" + socket_ + "'");
    EXPECT_NE(r.exit_code, 0) << r.output;
  }
}

TEST_F(ServerTlsTest, OnServesPlaintextAndTlsClients) {
  StartX509(ServerTlsMode::kOn);
  ClientOptions plain;
  plain.tls = TlsPolicy::kDisable;
  auto p = Connect(plain);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE((*p)->client().tls_negotiated());
  RoundTrip(**p);
  auto t = Connect(Certs(creds->good(), TlsPolicy::kAllow));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE((*t)->client().tls_negotiated());
  RoundTrip(**t);
}

TEST_F(ServerTlsTest, ClientOfAnotherCaIsRefused) {
  StartX509();
  auto c = Connect(Certs(creds->other_ca()));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(StatusErrno(c.status()), EACCES) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("issuer"));
  // The server is unharmed.
  auto ok = Connect(Certs(creds->good()));
  ASSERT_TRUE(ok.ok()) << ok.status();
}

TEST_F(ServerTlsTest, VerifyPeerNeedsAClientCertificate) {
  StartX509(ServerTlsMode::kRequire, /*verify_clients=*/true);
  auto without = Connect(Certs(CaOnlyDir()));
  ASSERT_FALSE(without.ok());
  auto with = Connect(Certs(creds->good()));
  ASSERT_TRUE(with.ok()) << with.status();
  RoundTrip(**with);
}

// A man in the middle appends plaintext options to the client's STARTTLS
// (CVE-2021-3716 against nbdkit). The server acknowledges the STARTTLS and
// hands everything after it to TLS, which rejects it: the injected GO is
// never answered, in plaintext or otherwise.
TEST_F(ServerTlsTest, PlaintextInjectedAfterStartTlsIsNeverServed) {
  StartX509();
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket_.c_str());
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  uint8_t greeting[kNewstyleGreetingSize];
  ASSERT_EQ(recv(fd, greeting, sizeof(greeting), MSG_WAITALL),
            static_cast<ssize_t>(sizeof(greeting)));

  Bytes out;
  auto append = [&out](absl::Span<const uint8_t> b) {
    out.insert(out.end(), b.begin(), b.end());
  };
  append(EncodeClientFlags(kClientFlagFixedNewstyle | kClientFlagNoZeroes));
  append(
      EncodeOptionRequestHeader({static_cast<uint32_t>(Option::kStartTls), 0}));
  Bytes go = EncodeInfoRequest({"", {}});
  append(EncodeOptionRequestHeader(
      {static_cast<uint32_t>(Option::kGo), static_cast<uint32_t>(go.size())}));
  append(go);
  ASSERT_EQ(send(fd, out.data(), out.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(out.size()));

  // Everything until the server hangs up.
  Bytes in;
  uint8_t buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
    in.insert(in.end(), buf, buf + n);
  close(fd);
  ASSERT_EQ(n, 0) << "the server did not end the connection";
  ASSERT_GE(in.size(), kOptionReplyHeaderSize);
  auto ack = DecodeOptionReplyHeader(
      absl::MakeConstSpan(in.data(), kOptionReplyHeaderSize));
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->option, static_cast<uint32_t>(Option::kStartTls));
  EXPECT_EQ(ack->type, static_cast<uint32_t>(OptionReplyType::kAck));
  // After the acknowledgement only TLS may follow: at most an alert record
  // (content type 21), never an option reply (whose magic starts 0x00 0x03).
  if (in.size() > kOptionReplyHeaderSize) {
    EXPECT_EQ(in[kOptionReplyHeaderSize], 21) << "not a TLS alert";
  }
  // The server is unharmed.
  auto ok = Connect(Certs(creds->good()));
  ASSERT_TRUE(ok.ok()) << ok.status();
}

// The mirror for the client: a fake server acknowledges STARTTLS and sends,
// in the same write, a plaintext NBD_REP_ACK as if for the client's next
// option. The client hands the bytes after the acknowledgement to TLS,
// which rejects them: the connection dies with a TLS error and never
// reaches transmission.
TEST_F(ServerTlsTest, ClientRejectsPlaintextInjectedAfterTheAcknowledgement) {
  const int listener = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", socket_.c_str());
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
            0);
  ASSERT_EQ(listen(listener, 1), 0);
  std::thread fake([listener] {
    const int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) return;
    auto append = [](Bytes* out, absl::Span<const uint8_t> b) {
      out->insert(out->end(), b.begin(), b.end());
    };
    Bytes greeting;
    append(&greeting,
           EncodeNewstyleGreeting({kFlagFixedNewstyle | kFlagNoZeroes}));
    send(fd, greeting.data(), greeting.size(), MSG_NOSIGNAL);
    uint8_t in[kClientFlagsSize + kOptionRequestHeaderSize];
    recv(fd, in, sizeof(in), MSG_WAITALL);  // flags + STARTTLS
    Bytes reply;
    append(&reply, EncodeOptionReplyHeader(
                       {static_cast<uint32_t>(Option::kStartTls),
                        static_cast<uint32_t>(OptionReplyType::kAck), 0}));
    append(&reply, EncodeOptionReplyHeader(
                       {static_cast<uint32_t>(Option::kGo),
                        static_cast<uint32_t>(OptionReplyType::kAck), 0}));
    send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
    uint8_t sink[4096];
    while (recv(fd, sink, sizeof(sink), 0) > 0) {
    }
    close(fd);
  });
  auto c = Connect(Certs(creds->good()));
  fake.join();
  close(listener);
  ASSERT_FALSE(c.ok()) << "a connection over injected plaintext";
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("TLS"))
      << c.status();
}

}  // namespace
}  // namespace nbd
