// ServerSession STARTTLS: the three server modes of the spec (NOTLS,
// SELECTIVETLS as ServerTlsMode::kOn, FORCEDTLS as kRequire), the pause
// between the acknowledgement and the TLS handshake, and what survives it.
// The core never sees TLS: after ServerStartTls the test plays the TLS
// layer by calling TlsHandshakeDone() and feeding plaintext again.
#include <algorithm>
#include <cerrno>
#include <string>
#include <variant>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/server/server.h"
#include "protocol/status.h"
#include "protocol/testing/server_runner.h"
#include "protocol/testing/server_script.h"
#include "tests/protocol/server/test_util.h"

namespace nbd::test {
namespace {

using ::nbd::testing::ClientBytes;
using ::nbd::testing::RunAllModes;
using ::nbd::testing::ServerRunResult;
using ::nbd::testing::ServerScenario;
using ::nbd::testing::ServerSends;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

uint32_t T(OptionReplyType t) { return static_cast<uint32_t>(t); }

ServerOptions WithTls(ServerTlsMode mode) {
  ServerOptions o = TestOptions();
  o.tls = mode;
  return o;
}

int CountStartTls(const std::vector<ServerEvent>& events) {
  int n = 0;
  for (const ServerEvent& e : events) {
    n += std::holds_alternative<ServerStartTls>(e) ? 1 : 0;
  }
  return n;
}

TEST(ServerTls, OffRefusesStartTls) {
  ServerSession s(WithTls(ServerTlsMode::kOff));
  TakeOutput(s);
  auto replies = ParseOptReplies(
      FeedAll(s, Concat({Flags(kClientFlagFixedNewstyle),
                         Opt(Option::kStartTls), Opt(Option::kList)})));
  // UNSUP, then LIST still works: one SERVER per export and the ACK.
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_EQ(replies[3].header.type, T(OptionReplyType::kAck));
  EXPECT_EQ(replies[0].header.type, T(OptionReplyType::kErrUnsup));
  EXPECT_EQ(CountStartTls(TakeEvents(s)), 0);
  EXPECT_FALSE(s.tls_negotiated());
}

TEST(ServerTls, AcknowledgementPausesInputUntilTheHandshakeIsDone) {
  ServerSession s(WithTls(ServerTlsMode::kOn));
  TakeOutput(s);
  // STARTTLS and, in the same bytes, a GO: the GO was sent in plaintext
  // after STARTTLS, so it is not the session's to read (an injection, as
  // in CVE-2021-3716).
  const Bytes starttls =
      Concat({Flags(kClientFlagFixedNewstyle), Opt(Option::kStartTls)});
  const Bytes go = Opt(Option::kGo, GoData("disk"));
  absl::StatusOr<size_t> used = s.Feed(Concat({starttls, go}));
  ASSERT_TRUE(used.ok()) << used.status();
  EXPECT_EQ(*used, starttls.size());
  // The acknowledgement is queued; ServerStartTls waits for it to leave.
  EXPECT_EQ(CountStartTls(TakeEvents(s)), 0);
  EXPECT_EQ(s.wants(), Direction::kWrite);
  auto replies = ParseOptReplies(TakeOutput(s));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].header.type, T(OptionReplyType::kAck));
  EXPECT_EQ(replies[0].header.option, static_cast<uint32_t>(Option::kStartTls));
  EXPECT_EQ(CountStartTls(TakeEvents(s)), 1);
  // Until TlsHandshakeDone() nothing is read, and nothing is wanted: the
  // TLS layer drives the socket.
  EXPECT_EQ(s.wants(), Direction::kNone);
  EXPECT_TRUE(s.RecvBuffer().empty());
  used = s.Feed(go);
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, 0u);
  EXPECT_EQ(s.pending_output_bytes(), 0u);

  ASSERT_TRUE(s.TlsHandshakeDone().ok());
  EXPECT_TRUE(s.tls_negotiated());
  EXPECT_EQ(s.wants(), Direction::kRead);
  // Now the same GO, through TLS, is answered.
  auto after = ParseOptReplies(FeedAll(s, go));
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after.back().header.type, T(OptionReplyType::kAck));
  EXPECT_EQ(s.phase(), ServerPhase::kTransmission);
}

TEST(ServerTls, NothingNegotiatedBeforeStartTlsSurvivesIt) {
  ServerSession s(WithTls(ServerTlsMode::kOn));
  TakeOutput(s);
  FeedAll(
      s, Concat({Flags(kClientFlagFixedNewstyle), Opt(Option::kExtendedHeaders),
                 Opt(Option::kSetMetaContext,
                     MetaData("disk", {"base:allocation"})),
                 Opt(Option::kStartTls)}));
  ASSERT_TRUE(s.extended_headers());
  ASSERT_TRUE(s.block_status_negotiated());
  TakeOutput(s);
  ASSERT_TRUE(s.TlsHandshakeDone().ok());
  EXPECT_FALSE(s.structured_replies());
  EXPECT_FALSE(s.extended_headers());
  EXPECT_FALSE(s.block_status_negotiated());
  TakeEvents(s);
  FeedAll(s, Opt(Option::kGo, GoData("disk")));
  std::vector<ServerEvent> events = TakeEvents(s);
  ASSERT_FALSE(events.empty());
  const auto* started = std::get_if<TransmissionStarted>(&events.back());
  ASSERT_NE(started, nullptr);
  EXPECT_FALSE(started->structured_replies);
  EXPECT_FALSE(started->extended_headers);
  EXPECT_FALSE(s.block_status_negotiated());
  // Compact requests now: an extended header would not parse.
  FeedAll(s, Req(false, Command::kRead, 7, 0, 512));
  std::vector<ServerRequest> reqs = TakeRequests(s);
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].cookie, 7u);
}

TEST(ServerTls, SecondStartTlsAndStartTlsWithDataAreInvalid) {
  ServerSession s(WithTls(ServerTlsMode::kRequire));
  TakeOutput(s);
  auto first = ParseOptReplies(FeedAll(
      s, Concat({Flags(kClientFlagFixedNewstyle),
                 Opt(Option::kStartTls, Str("x")), Opt(Option::kStartTls)})));
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].header.type, T(OptionReplyType::kErrInvalid));
  EXPECT_EQ(first[1].header.type, T(OptionReplyType::kAck));
  ASSERT_TRUE(s.TlsHandshakeDone().ok());
  auto second = ParseOptReplies(FeedAll(s, Opt(Option::kStartTls)));
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].header.type, T(OptionReplyType::kErrInvalid));
  EXPECT_EQ(CountStartTls(TakeEvents(s)), 1);
}

TEST(ServerTls, RequireRefusesEveryOtherOptionBeforeTls) {
  ServerSession s(WithTls(ServerTlsMode::kRequire));
  TakeOutput(s);
  auto replies = ParseOptReplies(
      FeedAll(s, Concat({Flags(kClientFlagFixedNewstyle), Opt(Option::kList),
                         Opt(Option::kInfo, GoData("disk")),
                         Opt(Option::kGo, GoData("disk")),
                         Opt(Option::kStructuredReply), Opt(99u)})));
  ASSERT_EQ(replies.size(), 5u);
  for (const OptReply& r : replies) {
    EXPECT_EQ(r.header.type, T(OptionReplyType::kErrTlsReqd));
    EXPECT_THAT(std::string(r.payload.begin(), r.payload.end()),
                HasSubstr("requires TLS"));
  }
  EXPECT_EQ(s.phase(), ServerPhase::kHandshake);
  EXPECT_FALSE(s.structured_replies());
  // After TLS the same options work, and none gets TLS_REQD.
  FeedAll(s, Opt(Option::kStartTls));
  TakeOutput(s);
  ASSERT_TRUE(s.TlsHandshakeDone().ok());
  auto after = ParseOptReplies(
      FeedAll(s, Concat({Opt(Option::kList), Opt(Option::kStructuredReply)})));
  for (const OptReply& r : after) {
    EXPECT_NE(r.header.type, T(OptionReplyType::kErrTlsReqd));
  }
  EXPECT_TRUE(s.structured_replies());
}

TEST(ServerTls, RequireLetsAbortThrough) {
  ServerSession s(WithTls(ServerTlsMode::kRequire));
  TakeOutput(s);
  auto replies = ParseOptReplies(FeedAll(
      s, Concat({Flags(kClientFlagFixedNewstyle), Opt(Option::kAbort)})));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].header.type, T(OptionReplyType::kAck));
  EXPECT_EQ(s.phase(), ServerPhase::kClosed);
}

TEST(ServerTls, RequireDropsExportNameBeforeTls) {
  ServerSession s(WithTls(ServerTlsMode::kRequire));
  TakeOutput(s);
  EXPECT_FALSE(s.Feed(Concat({Flags(kClientFlagFixedNewstyle),
                              Opt(Option::kExportName, Str("disk"))}))
                   .ok());
  EXPECT_EQ(s.phase(), ServerPhase::kDead);
  EXPECT_EQ(StatusErrno(s.dead_reason()), EACCES);
  EXPECT_THAT(std::string(s.dead_reason().message()),
              HasSubstr("requires TLS"));
  EXPECT_EQ(s.pending_output_bytes(), 0u);  // no export-name reply
}

TEST(ServerTls, RequireDropsAClientThatIsNotFixedNewstyle) {
  ServerSession s(WithTls(ServerTlsMode::kRequire));
  TakeOutput(s);
  EXPECT_FALSE(s.Feed(Flags(0)).ok());
  EXPECT_EQ(s.phase(), ServerPhase::kDead);
  EXPECT_THAT(std::string(s.dead_reason().message()),
              HasSubstr("NBD_FLAG_C_FIXED_NEWSTYLE"));
}

TEST(ServerTls, OnServesPlaintextClientsToo) {
  ServerSession s(WithTls(ServerTlsMode::kOn));
  Negotiate(s, /*structured=*/true, /*extended=*/true, /*meta=*/true);
  EXPECT_EQ(s.phase(), ServerPhase::kTransmission);
  EXPECT_FALSE(s.tls_negotiated());
}

TEST(ServerTls, HandshakeCallsOutsideTheirMomentChangeNothing) {
  ServerSession s(WithTls(ServerTlsMode::kOn));
  absl::Status st = s.TlsHandshakeDone();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StatusErrno(st), EINVAL);
  s.TlsHandshakeFailed(absl::InternalError("x"));
  EXPECT_EQ(s.phase(), ServerPhase::kHandshake);
  EXPECT_FALSE(s.tls_negotiated());
}

TEST(ServerTls, FailedHandshakeKillsTheSession) {
  ServerSession s(WithTls(ServerTlsMode::kOn));
  TakeOutput(s);
  FeedAll(s, Concat({Flags(kClientFlagFixedNewstyle), Opt(Option::kStartTls)}));
  TakeOutput(s);
  TakeEvents(s);
  s.TlsHandshakeFailed(ErrnoStatus(EACCES, "TLS: certificate rejected"));
  EXPECT_EQ(s.phase(), ServerPhase::kDead);
  EXPECT_EQ(StatusErrno(s.dead_reason()), EACCES);
  std::vector<ServerEvent> events = TakeEvents(s);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<ServerDead>(events[0]));
}

TEST(ServerTls, EofWhileTheAcknowledgementIsQueuedClosesWithoutStartTls) {
  ServerSession s(WithTls(ServerTlsMode::kOn));
  TakeOutput(s);
  // Fed, not FeedAll(): the acknowledgement must stay queued.
  const Bytes bytes =
      Concat({Flags(kClientFlagFixedNewstyle), Opt(Option::kStartTls)});
  ASSERT_EQ(s.Feed(bytes).value_or(0), bytes.size());
  ASSERT_GT(s.pending_output_bytes(), 0u);
  s.FeedEof();
  TakeOutput(s);
  std::vector<ServerEvent> events = TakeEvents(s);
  EXPECT_EQ(CountStartTls(events), 0);
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(std::holds_alternative<ServerClosed>(events.back()));
}

// The same conversation under every input split and both input paths (the
// kit's runner): STARTTLS, then a GO the session must leave alone until
// TlsHandshakeDone().
TEST(ServerTls, PauseHoldsUnderEverySplit) {
  ServerScenario s(WithTls(ServerTlsMode::kRequire));
  s.Expect(ServerSends().Greeting())
      .Send(ClientBytes()
                .Flags()
                .Opt(Option::kStartTls)
                .OptInfoRequest(Option::kGo, "disk"))
      .Expect(std::move(ServerSends().RepAck(Option::kStartTls).Nothing()))
      .Snapshot()
      .Call("TlsHandshakeDone",
            [](ServerSession& session, nbd::testing::ServerRunContext&) {
              return session.TlsHandshakeDone();
            })
      .Expect(std::move(ServerSends().SkipAll()))
      .Snapshot();
  ServerRunResult r = RunAllModes(s);
  // Before the call: StartTls once, the GO left untaken (the runner logs
  // each retry), still in the handshake. After it: the GO is served.
  const auto call =
      std::find(r.log.begin(), r.log.end(), "call TlsHandshakeDone -> ok");
  ASSERT_NE(call, r.log.end()) << ::testing::PrintToString(r.log);
  const std::vector<std::string> before(r.log.begin(), call);
  ASSERT_FALSE(before.empty());
  EXPECT_EQ(before.front(), "StartTls");
  EXPECT_THAT(std::vector<std::string>(before.begin() + 1, before.end()),
              ::testing::AllOf(
                  ::testing::Contains("phase=handshake in_flight=0"),
                  ::testing::Each(::testing::AnyOf(
                      "InputStalled left=26", "phase=handshake in_flight=0"))));
  EXPECT_THAT(std::vector<std::string>(call + 1, r.log.end()),
              ElementsAre("TransmissionStarted export=0 structured=0 "
                          "extended=0",
                          "phase=transmission in_flight=0"));
}

}  // namespace
}  // namespace nbd::test
