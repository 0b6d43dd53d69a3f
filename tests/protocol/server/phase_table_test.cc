// Walks nbd::ServerSession's permission table (protocol/server/permissions.h):
//  - the table is the one written down here (and in docs/protocol-core.md),
//    so changing it breaks this test;
//  - for every (call, phase) pair a fresh session is driven into the phase
//    and the call is made: an allowed call is accepted, a refused one fails
//    with FailedPrecondition/EINVAL naming the call and the phase (void
//    calls: do nothing) and changes nothing.
#include <cerrno>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/server/permissions.h"
#include "protocol/server/server.h"
#include "protocol/status.h"
#include "tests/protocol/server/test_util.h"

namespace nbd::test {
namespace {

using P = ServerPhase;

// ---- The expected table -----------------------------------------------------
// One column per ServerPhase in declaration order: handshake, transmission,
// closing, closed, dead.  'y' allowed, '-' refused.
struct Expected {
  ServerCall call;
  const char* phases;
};
constexpr Expected kExpected[] = {
    {ServerCall::kFeed, "yyy--"},
    {ServerCall::kFeedEof, "yy---"},
    {ServerCall::kFeedTransportError, "yyy--"},
    {ServerCall::kRecvBuffer, "yy---"},
    {ServerCall::kCommitRecv, "yyy--"},
    {ServerCall::kConsumeOutput, "yyyyy"},
    {ServerCall::kTlsHandshakeDone, "y----"},
    {ServerCall::kTlsHandshakeFailed, "y----"},
    {ServerCall::kReplyOk, "-yyyy"},
    {ServerCall::kReplyError, "-yyyy"},
    {ServerCall::kReplyRead, "-yyyy"},
    {ServerCall::kReplyReadError, "-yyyy"},
    {ServerCall::kReplyBlockStatus, "-yyyy"},
};

ServerCall CallAt(size_t i) { return static_cast<ServerCall>(i); }

TEST(ServerPermissionTable, IsTheDocumentedOne) {
  ASSERT_EQ(std::size(kExpected), kServerCallCount);
  for (size_t i = 0; i < kServerCallCount; ++i) {
    const Expected& row = kExpected[i];
    ASSERT_EQ(row.call, CallAt(i)) << "rows out of order at " << i;
    ASSERT_EQ(std::string(row.phases).size(), kAllServerPhases.size());
    for (P phase : kAllServerPhases) {
      const bool want = row.phases[static_cast<size_t>(phase)] == 'y';
      EXPECT_EQ(ServerCallAllowed(row.call, phase), want)
          << ServerCallName(row.call) << " in " << ServerPhaseName(phase);
    }
  }
}

// ---- Driving a session into each phase --------------------------------------

// One outstanding request for each Reply*() call.
struct Handles {
  RequestHandle ok = 1, error = 1, read = 1, read_error = 1, block_status = 1;
};

struct Session {
  std::unique_ptr<ServerSession> s;
  Handles handles;
};

// In transmission (structured replies, base:allocation) with one request
// outstanding per Reply*() call.
Session WithRequests() {
  Session r{std::make_unique<ServerSession>(TestOptions()), {}};
  Negotiate(*r.s, /*structured=*/true, /*extended=*/false, /*meta=*/true);
  FeedAll(*r.s, Concat({Req(false, Command::kFlush, 1, 0, 0),
                        Req(false, Command::kFlush, 2, 0, 0),
                        Req(false, Command::kRead, 3, 0, 512),
                        Req(false, Command::kRead, 4, 0, 512),
                        Req(false, Command::kBlockStatus, 5, 0, 512)}));
  std::vector<ServerRequest> reqs = TakeRequests(*r.s);
  EXPECT_EQ(reqs.size(), 5u);
  if (reqs.size() == 5) {
    r.handles = {reqs[0].handle, reqs[1].handle, reqs[2].handle, reqs[3].handle,
                 reqs[4].handle};
  }
  return r;
}

struct PhaseSetup {
  std::string name;
  P phase;
  std::function<Session()> make;
};

std::vector<PhaseSetup> Setups() {
  return {
      {"fresh", P::kHandshake,
       [] {
         return Session{std::make_unique<ServerSession>(TestOptions()), {}};
       }},
      {"options", P::kHandshake,
       [] {
         Session r{std::make_unique<ServerSession>(TestOptions()), {}};
         FeedAll(*r.s, Concat({Flags(kClientFlagFixedNewstyle),
                               Opt(Option::kStructuredReply)}));
         TakeOutput(*r.s);
         return r;
       }},
      {"transmission", P::kTransmission, WithRequests},
      {"closing", P::kClosing,
       [] {
         Session r = WithRequests();
         r.s->FeedEof();
         return r;
       }},
      {"closed", P::kClosed,
       [] {
         Session r{std::make_unique<ServerSession>(TestOptions()), {}};
         Negotiate(*r.s, false, false, false);
         r.s->FeedEof();
         TakeOutput(*r.s);
         TakeEvents(*r.s);
         return r;
       }},
      {"dead", P::kDead,
       [] {
         Session r = WithRequests();
         r.s->FeedTransportError(absl::UnavailableError("reset"));
         return r;
       }},
  };
}

// ---- Making each call -------------------------------------------------------

struct Outcome {
  bool has_status = true;
  absl::Status status;
  bool span_empty = false;  // RecvBuffer()
};

Outcome Make(ServerCall call, ServerSession& s, const Handles& h) {
  static const Bytes* const data = new Bytes(512, 0xab);
  const ReadPiece piece = ReadPiece::Data(0, *data);
  const Extent extent{512, 0};
  auto st = [](absl::Status status) {
    return Outcome{true, std::move(status), false};
  };
  switch (call) {
    case ServerCall::kFeed:
      return st(s.Feed({}).status());
    case ServerCall::kFeedEof:
      s.FeedEof();
      return {false, absl::OkStatus(), false};
    case ServerCall::kFeedTransportError:
      s.FeedTransportError(absl::UnavailableError("reset"));
      return {false, absl::OkStatus(), false};
    case ServerCall::kRecvBuffer:
      return {false, absl::OkStatus(), s.RecvBuffer().empty()};
    case ServerCall::kCommitRecv:
      return st(s.CommitRecv(0));
    case ServerCall::kConsumeOutput:
      return st(s.ConsumeOutput(0));
    case ServerCall::kTlsHandshakeDone:
      return st(s.TlsHandshakeDone());
    case ServerCall::kTlsHandshakeFailed:
      s.TlsHandshakeFailed(absl::UnavailableError("handshake"));
      return {false, absl::OkStatus(), false};
    case ServerCall::kReplyOk:
      return st(s.ReplyOk(h.ok));
    case ServerCall::kReplyError:
      return st(s.ReplyError(h.error, EIO, "failed"));
    case ServerCall::kReplyRead:
      return st(s.ReplyRead(h.read, {&piece, 1}));
    case ServerCall::kReplyReadError:
      return st(s.ReplyReadError(h.read_error, {}, 0, EIO));
    case ServerCall::kReplyBlockStatus:
      return st(s.ReplyBlockStatus(h.block_status, {&extent, 1}));
  }
  return st(absl::InternalError("unknown call"));
}

bool IsReply(ServerCall call) { return call >= ServerCall::kReplyOk; }
bool Ended(P phase) { return phase == P::kClosed || phase == P::kDead; }

std::string Observe(ServerSession& s) {
  return std::string(ServerPhaseName(s.phase())) +
         " in_flight=" + std::to_string(s.in_flight()) +
         " out=" + std::to_string(s.pending_output_bytes()) +
         " wants=" + std::to_string(static_cast<int>(s.wants())) +
         " events=" + std::to_string(s.has_events());
}

TEST(ServerPermissionTable, EveryCallInEveryPhase) {
  std::vector<bool> covered(kAllServerPhases.size(), false);
  for (const PhaseSetup& setup : Setups()) {
    covered[static_cast<size_t>(setup.phase)] = true;
    for (size_t i = 0; i < kServerCallCount; ++i) {
      const ServerCall call = CallAt(i);
      const bool allowed = ServerCallAllowed(call, setup.phase);
      SCOPED_TRACE(setup.name + " / " + ServerCallName(call) +
                   (allowed ? " (allowed)" : " (refused)"));
      Session session = setup.make();
      ServerSession& s = *session.s;
      ASSERT_EQ(s.phase(), setup.phase) << ServerPhaseName(s.phase());
      const std::string before = Observe(s);
      const size_t in_flight_before = s.in_flight();

      const Outcome out = Make(call, s, session.handles);

      const bool tls_call = call == ServerCall::kTlsHandshakeDone ||
                            call == ServerCall::kTlsHandshakeFailed;
      if (tls_call && allowed) {
        // Allowed in the handshake, but only after a ServerStartTls, which
        // no setup here has (tls_test.cc covers that path): refused by the
        // session's own check, with nothing changed.
        if (out.has_status) {
          EXPECT_TRUE(absl::IsFailedPrecondition(out.status)) << out.status;
          EXPECT_EQ(StatusErrno(out.status), EINVAL) << out.status;
          EXPECT_THAT(std::string(out.status.message()),
                      testing::HasSubstr("no TLS handshake is pending"));
        }
        EXPECT_EQ(Observe(s), before);
      } else if (call == ServerCall::kRecvBuffer) {
        EXPECT_EQ(out.span_empty, !allowed);
      } else if (!out.has_status) {
        // The void calls that are allowed all change the phase.
        if (allowed) {
          EXPECT_NE(s.phase(), setup.phase);
        }
      } else if (allowed && IsReply(call) && Ended(setup.phase)) {
        // A late reply is accepted and dropped.
        EXPECT_TRUE(absl::IsFailedPrecondition(out.status)) << out.status;
        EXPECT_EQ(StatusErrno(out.status), ENOTCONN) << out.status;
        // The handle is released (there is none left once closed).
        EXPECT_EQ(s.in_flight(),
                  in_flight_before == 0 ? 0 : in_flight_before - 1);
      } else if (allowed) {
        EXPECT_TRUE(out.status.ok()) << out.status;
      } else {
        EXPECT_TRUE(absl::IsFailedPrecondition(out.status)) << out.status;
        EXPECT_EQ(StatusErrno(out.status), EINVAL) << out.status;
        EXPECT_THAT(
            std::string(out.status.message()),
            testing::AllOf(testing::HasSubstr(ServerCallName(call)),
                           testing::HasSubstr(ServerPhaseName(setup.phase))));
      }
      if (!allowed) {
        EXPECT_EQ(Observe(s), before) << "a refused call changed the state";
      }
    }
  }
  for (P phase : kAllServerPhases) {
    EXPECT_TRUE(covered[static_cast<size_t>(phase)])
        << "no setup for " << ServerPhaseName(phase);
  }
}

}  // namespace
}  // namespace nbd::test
