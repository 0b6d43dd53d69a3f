// nbd::tls::TlsSession: a client and a server session joined in memory,
// with credentials made by certtool/psktool for each test binary.
#include "adapters/tls/tls_session.h"

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/io.h"
#include "protocol/status.h"
#include "tests/testing/tls_certs.h"

namespace nbd::tls {
namespace {

using ::testing::HasSubstr;

const test::TlsCredentials* creds = nullptr;

class TlsSessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = test::SharedTlsCredentials();
    ASSERT_TRUE(c.ok()) << c.status();
    creds = *c;
  }
};

TlsOptions Certs(const std::string& dir,
                 const std::string& host = "localhost") {
  TlsOptions o;
  o.certificates_dir = dir;
  o.hostname = host;
  return o;
}

TlsOptions Psk(const std::string& file, const std::string& user) {
  TlsOptions o;
  o.psk_file = file;
  o.username = user;
  return o;
}

// Moves every pending ciphertext byte from `from` to `to`; returns how many.
size_t Move(TlsSession& from, TlsSession& to, size_t limit = SIZE_MAX) {
  size_t moved = 0;
  IoSlice slice;
  while (moved < limit && from.PeekCiphertext({&slice, 1}) == 1) {
    const size_t n = std::min(slice.size, limit - moved);
    to.FeedCiphertext({slice.data, n});
    EXPECT_TRUE(from.ConsumeCiphertext(n).ok());
    moved += n;
  }
  return moved;
}

struct Pair {
  std::unique_ptr<TlsSession> client, server;
};

Pair Make(const TlsOptions& c, const TlsOptions& s) {
  Pair p;
  auto client = TlsSession::Create(Role::kClient, c);
  auto server = TlsSession::Create(Role::kServer, s);
  EXPECT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE(server.ok()) << server.status();
  if (client.ok()) p.client = std::move(*client);
  if (server.ok()) p.server = std::move(*server);
  return p;
}

bool Again(const absl::Status& s) { return StatusErrno(s) == EAGAIN; }

// Runs both handshakes to the end. Returns the client's and the server's
// final status (OK, or the failure); a hang would exceed the round bound.
std::pair<absl::Status, absl::Status> Handshake(Pair& p) {
  absl::Status c = absl::UnknownError("not run"), s = c;
  for (int round = 0; round < 50; ++round) {
    c = p.client->Handshake();
    Move(*p.client, *p.server);
    // A side that failed closes its socket (its alert, if any, goes first).
    if (!c.ok() && !Again(c)) p.server->FeedEof();
    s = p.server->Handshake();
    Move(*p.server, *p.client);
    if (!s.ok() && !Again(s)) p.client->FeedEof();
    if (!Again(c) && !Again(s)) {
      // One side may finish while the other still reads its last flight.
      c = p.client->Handshake();
      s = p.server->Handshake();
      if (!Again(c) && !Again(s)) break;
    }
  }
  return {c, s};
}

std::string Send(TlsSession& from, TlsSession& to, const std::string& text) {
  IoSlice slice{reinterpret_cast<const uint8_t*>(text.data()), text.size()};
  absl::StatusOr<size_t> n = from.Encrypt({&slice, 1});
  EXPECT_TRUE(n.ok()) << n.status();
  Move(from, to);
  std::string got;
  std::vector<uint8_t> buf(64 * 1024);
  while (true) {
    absl::StatusOr<size_t> r = to.Decrypt(absl::MakeSpan(buf));
    if (!r.ok() || *r == 0) break;
    got.append(reinterpret_cast<const char*>(buf.data()), *r);
  }
  return got;
}

TEST_F(TlsSessionTest, X509HandshakeAndDataBothWays) {
  Pair p = Make(Certs(creds->good()), Certs(creds->good()));
  auto [c, s] = Handshake(p);
  ASSERT_TRUE(c.ok()) << c;
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(p.client->handshake_done());
  EXPECT_FALSE(p.client->uses_psk());
  EXPECT_THAT(p.client->description(), HasSubstr("TLS1."));
  EXPECT_EQ(Send(*p.client, *p.server, "hello server"), "hello server");
  EXPECT_EQ(Send(*p.server, *p.client, "hello client"), "hello client");
  EXPECT_EQ(p.client->wants(), Direction::kNone);
}

TEST_F(TlsSessionTest, LargePayloadIsBoundedAndArrivesIntact) {
  Pair p = Make(Certs(creds->good()), Certs(creds->good()));
  ASSERT_TRUE(Handshake(p).first.ok());
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  size_t sent = 0;
  std::string got;
  std::vector<uint8_t> buf(100000);
  while (sent < data.size()) {
    IoSlice slice{reinterpret_cast<const uint8_t*>(data.data()) + sent,
                  data.size() - sent};
    absl::StatusOr<size_t> n = p.client->Encrypt({&slice, 1});
    ASSERT_TRUE(n.ok());
    ASSERT_GT(*n, 0u);
    sent += *n;
    // The pending ciphertext stays near the bound.
    EXPECT_LE(p.client->pending_ciphertext(), kMaxPendingCiphertext + 17000);
    Move(*p.client, *p.server);
    while (true) {
      absl::StatusOr<size_t> r = p.server->Decrypt(absl::MakeSpan(buf));
      if (!r.ok()) {
        ASSERT_TRUE(Again(r.status())) << r.status();
        break;
      }
      got.append(reinterpret_cast<const char*>(buf.data()), *r);
    }
  }
  EXPECT_EQ(sent, data.size());
  EXPECT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data);
}

TEST_F(TlsSessionTest, PskHandshake) {
  Pair p = Make(Psk(creds->good_psk(), "bob"), Psk(creds->good_psk(), ""));
  auto [c, s] = Handshake(p);
  ASSERT_TRUE(c.ok()) << c;
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(p.client->uses_psk());
  EXPECT_EQ(p.server->psk_username(), "bob");
  EXPECT_EQ(Send(*p.client, *p.server, "psk"), "psk");
}

// Each rejection: the client's handshake fails with EACCES and a reason
// that names the problem; nothing is left hanging.
TEST_F(TlsSessionTest, UntrustedServersAreRejected) {
  struct Case {
    std::string client_dir, server_dir, host, reason;
  };
  const Case cases[] = {
      {creds->other_ca(), creds->good(), "localhost", "issuer"},
      {creds->good(), creds->other_ca(), "localhost", "issuer"},
      {creds->good(), creds->good(), "nbd.example.org",
       "does not match the expected. (expected 'nbd.example.org')"},
      {creds->good(), creds->wrong_name(), "localhost",
       "(expected 'localhost')"},
      {creds->good(), creds->expired(), "localhost", "expired"},
      // No hostname (a Unix socket): the chain is still verified.
      {creds->other_ca(), creds->good(), "", "issuer"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.client_dir + " -> " + k.server_dir + " as " + k.host);
    Pair p = Make(Certs(k.client_dir, k.host), Certs(k.server_dir));
    auto [c, s] = Handshake(p);
    EXPECT_EQ(StatusErrno(c), EACCES) << c;
    EXPECT_THAT(std::string(c.message()), HasSubstr(k.reason));
    EXPECT_FALSE(s.ok());
    EXPECT_FALSE(Again(s)) << s;
  }
}

TEST_F(TlsSessionTest, WithoutHostnameAGoodChainIsAccepted) {
  Pair p = Make(Certs(creds->good(), ""), Certs(creds->wrong_name()));
  auto [c, s] = Handshake(p);
  EXPECT_TRUE(c.ok()) << c;
}

TEST_F(TlsSessionTest, VerifyPeerOffAcceptsAnyServer) {
  TlsOptions o = Certs(creds->other_ca(), "nbd.example.org");
  o.verify_peer = false;
  Pair p = Make(o, Certs(creds->expired()));
  auto [c, s] = Handshake(p);
  EXPECT_TRUE(c.ok()) << c;
  EXPECT_TRUE(s.ok()) << s;
}

TEST_F(TlsSessionTest, WrongPskKeyAndUnknownUserFail) {
  const std::string carol = creds->root() + "/carol.psk";
  std::ofstream(carol) << "carol:00112233445566778899aabbccddeeff\n";
  for (const TlsOptions& client :
       {Psk(creds->wrong_psk(), "alice"), Psk(carol, "carol")}) {
    Pair p = Make(client, Psk(creds->good_psk(), ""));
    auto [c, s] = Handshake(p);
    EXPECT_FALSE(c.ok());
    EXPECT_FALSE(Again(c)) << c;
    EXPECT_THAT(std::string(c.message()), HasSubstr("PSK"));
    EXPECT_FALSE(s.ok());
    EXPECT_FALSE(Again(s)) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("PSK"));
  }
}

TEST_F(TlsSessionTest, ServerVerifyPeerNeedsATrustedClientCertificate) {
  TlsOptions server = Certs(creds->good());
  server.require_client_certificate = true;
  TlsOptions no_cert;  // system trust + the CA: no client cert
  no_cert.certificates_dir = creds->root() + "/ca-only";
  ASSERT_EQ(
      std::system(("mkdir -p " + no_cert.certificates_dir + " && cp " +
                   creds->good() + "/ca-cert.pem " + no_cert.certificates_dir)
                      .c_str()),
      0);
  no_cert.hostname = "localhost";
  {
    Pair p = Make(Certs(creds->good()), server);
    auto [c, s] = Handshake(p);
    EXPECT_TRUE(s.ok()) << s;
  }
  {
    Pair p = Make(no_cert, server);
    auto [c, s] = Handshake(p);
    EXPECT_FALSE(s.ok());
    EXPECT_FALSE(Again(s));
  }
  {
    // A client certificate from another CA.
    TlsOptions other = Certs(creds->other_ca());
    other.verify_peer = false;  // it does not trust the server either
    Pair p = Make(other, server);
    auto [c, s] = Handshake(p);
    EXPECT_EQ(StatusErrno(s), EACCES) << s;
  }
  {
    Pair p = Make(no_cert, server);
    auto [c, s] = Handshake(p);
    EXPECT_EQ(StatusErrno(s), EACCES) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("no certificate"));
  }
  {
    Pair p = Make(no_cert, Certs(creds->good()));  // the default: not asked
    auto [c, s] = Handshake(p);
    EXPECT_TRUE(c.ok()) << c;
    EXPECT_TRUE(s.ok()) << s;
  }
}

TEST_F(TlsSessionTest, CloseNotifyIsACleanEnd) {
  Pair p = Make(Certs(creds->good()), Certs(creds->good()));
  ASSERT_TRUE(Handshake(p).first.ok());
  ASSERT_TRUE(p.client->CloseWrite().ok());
  EXPECT_TRUE(p.client->CloseWrite().ok());  // idempotent
  EXPECT_EQ(StatusErrno(p.client->Encrypt({}).status()), EINVAL);
  Move(*p.client, *p.server);
  std::vector<uint8_t> buf(100);
  absl::StatusOr<size_t> r = p.server->Decrypt(absl::MakeSpan(buf));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 0u);
}

TEST_F(TlsSessionTest, EofWithoutCloseNotify) {
  std::vector<uint8_t> buf(100);
  {
    Pair p = Make(Certs(creds->good()), Certs(creds->good()));
    ASSERT_TRUE(Handshake(p).first.ok());
    p.client->FeedEof();
    absl::StatusOr<size_t> r = p.client->Decrypt(absl::MakeSpan(buf));
    EXPECT_EQ(StatusErrno(r.status()), ECONNRESET) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("close_notify"));
  }
  {
    // After our own close_notify (a client after NBD_CMD_DISC), the
    // server's plain close is the end of the connection (qemu-nbd).
    Pair p = Make(Certs(creds->good()), Certs(creds->good()));
    ASSERT_TRUE(Handshake(p).first.ok());
    ASSERT_TRUE(p.client->CloseWrite().ok());
    p.client->FeedEof();
    absl::StatusOr<size_t> r = p.client->Decrypt(absl::MakeSpan(buf));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, 0u);
  }
}

// The handshake cut at every byte of either direction: the side that sees
// the EOF fails with a reason; it never waits for more.
TEST_F(TlsSessionTest, HandshakeCutAtEveryByteFails) {
  for (bool cut_server_flight : {true, false}) {
    // How long the flight is, from one full handshake.
    size_t total = 0;
    {
      Pair p = Make(Certs(creds->good()), Certs(creds->good()));
      for (int round = 0; round < 10; ++round) {
        (void)p.client->Handshake();
        size_t n = Move(*p.client, *p.server);
        if (!cut_server_flight) total += n;
        (void)p.server->Handshake();
        n = Move(*p.server, *p.client);
        if (cut_server_flight) total += n;
      }
    }
    ASSERT_GT(total, 100u);
    for (size_t cut = 0; cut < total; ++cut) {
      Pair p = Make(Certs(creds->good()), Certs(creds->good()));
      size_t moved = 0;
      absl::Status victim = absl::UnknownError("not run");
      for (int round = 0; round < 10; ++round) {
        (void)p.client->Handshake();
        if (cut_server_flight) {
          Move(*p.client, *p.server);
        } else {
          moved += Move(*p.client, *p.server, cut - moved);
          if (moved == cut) p.server->FeedEof();
        }
        (void)p.server->Handshake();
        if (cut_server_flight) {
          moved += Move(*p.server, *p.client, cut - moved);
          if (moved == cut) p.client->FeedEof();
        } else {
          Move(*p.server, *p.client);
        }
        victim =
            cut_server_flight ? p.client->Handshake() : p.server->Handshake();
        if (!Again(victim)) break;
      }
      // Signatures vary in length by a byte or two between handshakes:
      // this flight may have ended before `cut`.
      if (moved < cut) continue;
      ASSERT_FALSE(Again(victim)) << "cut at " << cut << ": " << victim;
      if (victim.ok()) {
        // Cut after the Finished message (in TLS 1.3 session tickets come
        // later): the handshake is complete and the cut shows up as the
        // end of the stream without close_notify.
        TlsSession& v = cut_server_flight ? *p.client : *p.server;
        std::vector<uint8_t> buf(100);
        absl::StatusOr<size_t> r = v.Decrypt(absl::MakeSpan(buf));
        ASSERT_FALSE(r.ok())
            << "cut at " << cut << " of " << total
            << (cut_server_flight ? " server" : " client") << " got " << *r;
        ASSERT_FALSE(Again(r.status())) << "cut at " << cut;
      }
    }
  }
}

TEST_F(TlsSessionTest, MisuseAndBadOptionsAreClearErrors) {
  auto missing = TlsSession::Create(Role::kClient, Certs("/nonexistent/dir"));
  EXPECT_EQ(StatusErrno(missing.status()), ENOENT);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("/nonexistent/dir/ca-cert.pem"));
  auto server_without = TlsSession::Create(Role::kServer, TlsOptions{});
  EXPECT_EQ(StatusErrno(server_without.status()), EINVAL);
  auto no_user = TlsSession::Create(Role::kClient, Psk(creds->good_psk(), ""));
  EXPECT_EQ(StatusErrno(no_user.status()), EINVAL);
  auto no_key =
      TlsSession::Create(Role::kClient, Psk(creds->good_psk(), "zed"));
  EXPECT_EQ(StatusErrno(no_key.status()), ENOENT);
  TlsOptions bad = Certs(creds->good());
  bad.priority = "NOT-A-PRIORITY";
  auto prio = TlsSession::Create(Role::kClient, bad);
  EXPECT_EQ(StatusErrno(prio.status()), EINVAL);
  EXPECT_THAT(std::string(prio.status().message()), HasSubstr("priority"));

  auto t = TlsSession::Create(Role::kClient, Certs(creds->good()));
  ASSERT_TRUE(t.ok());
  std::vector<uint8_t> buf(10);
  EXPECT_EQ(StatusErrno((*t)->Encrypt({}).status()), EINVAL);
  EXPECT_EQ(StatusErrno((*t)->Decrypt(absl::MakeSpan(buf)).status()), EINVAL);
  EXPECT_EQ(StatusErrno((*t)->CloseWrite()), EINVAL);
  EXPECT_EQ(StatusErrno((*t)->ConsumeCiphertext(1)), EINVAL);
}

}  // namespace
}  // namespace nbd::tls
