// The TLS layer of the shared pump against nbdkit --tls=require (X.509 and
// PSK) and a plaintext nbdkit (allow-mode fallback), through the blocking
// adapter.
#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/span.h"
#include "adapters/blocking/blocking_client.h"
#include "adapters/connect/connect.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/client/options.h"
#include "protocol/status.h"
#include "tests/testing/servers.h"
#include "tests/testing/tls_certs.h"

namespace nbd {
namespace {

using test::ServerProcess;
using ::testing::HasSubstr;

const test::TlsCredentials* creds = nullptr;

class NbdkitTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = test::SharedTlsCredentials();
    ASSERT_TRUE(c.ok()) << c.status();
    creds = *c;
  }
  void SetUp() override {
    if (!test::HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
  }
};

absl::StatusOr<std::unique_ptr<adapters::BlockingClient>> Connect(
    const ServerProcess& server, const ClientOptions& options) {
  auto fd = adapters::ConnectUnix(server.socket_path());
  if (!fd.ok()) return fd.status();
  return adapters::BlockingClient::Connect(*fd, options, absl::Seconds(10));
}

ClientOptions Certs(const std::string& dir, TlsPolicy policy) {
  ClientOptions o;
  o.tls = policy;
  o.tls_credentials.certificates_dir = dir;
  return o;
}

// Writes 300 KiB (several TLS records per request), reads it back, and
// disconnects: the connection must end closed, not dead.
void RoundTrip(adapters::BlockingClient& c) {
  std::vector<uint8_t> data(300 * 1024);
  for (size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<uint8_t>(i * 13);
  ASSERT_TRUE(c.Pwrite(data, 4096).ok());
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(c.Pread(absl::MakeSpan(back), 4096).ok());
  EXPECT_TRUE(back == data);
  ASSERT_TRUE(c.Shutdown().ok());
  EXPECT_EQ(c.client().phase(), ClientPhase::kClosed);
}

TEST_F(NbdkitTlsTest, X509Require) {
  auto server = ServerProcess::StartNbdkit(
      {"--tls=require", "--tls-certificates=" + creds->good(), "memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = Connect(**server, Certs(creds->good(), TlsPolicy::kRequire));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->client().tls_negotiated());
  RoundTrip(**c);
}

TEST_F(NbdkitTlsTest, PskRequire) {
  auto server = ServerProcess::StartNbdkit(
      {"--tls=require", "--tls-psk=" + creds->good_psk(), "memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions o;
  o.tls = TlsPolicy::kRequire;
  o.tls_credentials.psk_file = creds->good_psk();
  o.tls_credentials.username = "alice";
  auto c = Connect(**server, o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->client().tls_negotiated());
  RoundTrip(**c);
}

TEST_F(NbdkitTlsTest, UntrustedServerIsRefusedWithTheReason) {
  auto server = ServerProcess::StartNbdkit(
      {"--tls=require", "--tls-certificates=" + creds->other_ca(), "memory",
       "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = Connect(**server, Certs(creds->good(), TlsPolicy::kRequire));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(StatusErrno(c.status()), EACCES) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("issuer"));
}

TEST_F(NbdkitTlsTest, WrongPskKeyFails) {
  auto server = ServerProcess::StartNbdkit(
      {"--tls=require", "--tls-psk=" + creds->good_psk(), "memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions o;
  o.tls = TlsPolicy::kRequire;
  o.tls_credentials.psk_file = creds->wrong_psk();
  o.tls_credentials.username = "alice";
  auto c = Connect(**server, o);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("TLS"));
}

TEST_F(NbdkitTlsTest, AllowFallsBackToPlaintext) {
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = Connect(**server, Certs(creds->good(), TlsPolicy::kAllow));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE((*c)->client().tls_negotiated());
  RoundTrip(**c);
}

TEST_F(NbdkitTlsTest, AllowUsesTlsWhenOffered) {
  auto server = ServerProcess::StartNbdkit(
      {"--tls=on", "--tls-certificates=" + creds->good(), "memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = Connect(**server, Certs(creds->good(), TlsPolicy::kAllow));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->client().tls_negotiated());
  RoundTrip(**c);
}

// These URIs name local credentials, which the default UriPolicy refuses
// (libnbd's default too): the test is their user.
absl::StatusOr<std::unique_ptr<adapters::BlockingClient>> ConnectUri(
    const std::string& uri) {
  auto connection = adapters::ConnectUri(uri, adapters::kDefaultConnectTimeout,
                                         adapters::UriPolicy::Trusted());
  if (!connection.ok()) return connection.status();
  return adapters::BlockingClient::Connect(std::move(*connection),
                                           ClientOptions{}, absl::Seconds(10));
}

TEST_F(NbdkitTlsTest, NbdsUris) {
  auto x509 = ServerProcess::StartNbdkit(
      {"--tls=require", "--tls-certificates=" + creds->good(), "memory", "1M"});
  ASSERT_TRUE(x509.ok()) << x509.status();
  auto c = ConnectUri("nbds+unix:///?socket=" + (*x509)->socket_path() +
                      "&tls-certificates=" + creds->good());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->client().tls_negotiated());
  RoundTrip(**c);

  auto psk = ServerProcess::StartNbdkit(
      {"--tls=require", "--tls-psk=" + creds->good_psk(), "memory", "1M"});
  ASSERT_TRUE(psk.ok()) << psk.status();
  c = ConnectUri("nbds+unix://bob@/?socket=" + (*psk)->socket_path() +
                 "&tls-psk-file=" + creds->good_psk());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->client().tls_negotiated());
  RoundTrip(**c);

  // The default policy refuses the same URI before connecting: a URI from
  // untrusted input must not make the program read files of its choice.
  auto refused =
      adapters::ConnectUri("nbds+unix:///?socket=" + (*x509)->socket_path() +
                           "&tls-certificates=" + creds->good());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(StatusErrno(refused.status()), EPERM) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("UriPolicy::local_files"));

  // The CA is checked through the URI too.
  c = ConnectUri("nbds+unix:///?socket=" + (*x509)->socket_path() +
                 "&tls-certificates=" + creds->other_ca());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(StatusErrno(c.status()), EACCES) << c.status();
}

// An nbds URI never falls back to plaintext: a server without TLS refuses
// STARTTLS and the connection ends with an error that says so.
TEST_F(NbdkitTlsTest, NbdsAgainstAPlaintextServerFails) {
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto c = ConnectUri("nbds+unix:///?socket=" + (*server)->socket_path() +
                      "&tls-certificates=" + creds->good());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("TLS"));
}

}  // namespace
}  // namespace nbd
