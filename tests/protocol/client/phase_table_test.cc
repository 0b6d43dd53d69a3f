// Walks nbd::Client's permission table (protocol/client/permissions.h):
//  - the table is the one written down here (and in docs/protocol-core.md),
//    so changing it breaks this test;
//  - for every (call, state) pair a fresh client is driven into the state
//    and the call is made: an allowed call is accepted, a refused one fails
//    with FailedPrecondition/EINVAL naming the call and the state (void
//    calls: do nothing) and changes nothing; so a check that bypasses the
//    table, or disagrees with it, breaks this test too.
#include <cerrno>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/client/permissions.h"
#include "protocol/status.h"
#include "protocol/testing/client_handshake.h"
#include "protocol/testing/client_runner.h"
#include "protocol/testing/client_script.h"

namespace nbd::testing {
namespace {

using S = ClientCallState;

// ---- The expected table -----------------------------------------------------
// One column per ClientCallState in declaration order:
//   handshake, TLS paused, negotiating, option in flight, transmission,
//   disconnecting, closed, dead.  'y' allowed, '-' refused.
struct Expected {
  ClientCall call;
  const char* states;
};
constexpr Expected kExpected[] = {
    {ClientCall::kFeed, "yyyyyy--"},
    {ClientCall::kFeedEof, "yyyyyy--"},
    {ClientCall::kFeedTransportError, "yyyyyy--"},
    {ClientCall::kRecvBuffer, "y-yyyy--"},
    {ClientCall::kCommitRecv, "yyyyyyyy"},
    {ClientCall::kConsumeOutput, "yyyyyyyy"},
    {ClientCall::kPinOutput, "yyyyyyyy"},
    {ClientCall::kTlsHandshakeDone, "-y------"},
    {ClientCall::kTlsHandshakeFailed, "yyyyyy--"},
    {ClientCall::kSetExportName, "--y-----"},
    {ClientCall::kOptList, "--y-----"},
    {ClientCall::kOptInfo, "--y-----"},
    {ClientCall::kOptGo, "--y-----"},
    {ClientCall::kOptAbort, "--y-----"},
    {ClientCall::kOptStructuredReply, "--y-----"},
    {ClientCall::kOptExtendedHeaders, "--y-----"},
    {ClientCall::kOptListMetaContext, "--y-----"},
    {ClientCall::kOptSetMetaContext, "--y-----"},
    {ClientCall::kRead, "----y---"},
    {ClientCall::kWrite, "----y---"},
    {ClientCall::kFlush, "----y---"},
    {ClientCall::kTrim, "----y---"},
    {ClientCall::kCache, "----y---"},
    {ClientCall::kWriteZeroes, "----y---"},
    {ClientCall::kBlockStatus, "----y---"},
    {ClientCall::kDisconnect, "----y---"},
    {ClientCall::kShutdown, "yyyyyy--"},
};

ClientCall CallAt(size_t i) { return static_cast<ClientCall>(i); }

TEST(ClientPermissionTable, IsTheDocumentedOne) {
  ASSERT_EQ(std::size(kExpected), kClientCallCount);
  for (size_t i = 0; i < kClientCallCount; ++i) {
    const Expected& row = kExpected[i];
    ASSERT_EQ(row.call, CallAt(i)) << "rows out of order at " << i;
    ASSERT_EQ(std::string(row.states).size(), kClientCallStateCount);
    for (S state : kAllClientCallStates) {
      const bool want = row.states[static_cast<size_t>(state)] == 'y';
      EXPECT_EQ(ClientCallAllowed(row.call, state), want)
          << ClientCallName(row.call) << " in " << ClientCallStateName(state);
    }
  }
}

// ---- Driving a client into each state ---------------------------------------

struct StateSetup {
  std::string name;
  S state;
  ClientPhase phase;
  std::function<Scenario()> scenario;
};

ClientOptions OptionMode() {
  ClientOptions o;
  o.option_mode = true;
  return o;
}

// Parked with structured replies (so OptSetMetaContext() is accepted).
Scenario Negotiating() {
  Scenario s(OptionMode());
  s.Send(Server().Greeting())
      .Send(Server().RepError(Option::kExtendedHeaders,
                              OptionReplyType::kErrUnsup))
      .Send(Server().RepAck(Option::kStructuredReply));
  return s;
}

Scenario Connected() { return ConnectedScenario(); }

Scenario WithRead(Scenario s) {
  s.Issue("r", [](Client& c, RunContext& ctx) {
    return c.Read(0, absl::MakeSpan(ctx.Buffer("r", 512)));
  });
  return s;
}

Scenario WithCall(Scenario s, std::string name,
                  std::function<absl::Status(Client&)> fn) {
  s.Call(std::move(name),
         [fn = std::move(fn)](Client& c, RunContext&) { return fn(c); });
  return s;
}

// Several setups per state where different internal steps share it.
std::vector<StateSetup> Setups() {
  using P = ClientPhase;
  return {
      {"fresh", S::kHandshake, P::kConnecting, [] { return Scenario(); }},
      {"automatic_option", S::kHandshake, P::kConnecting,
       [] {
         Scenario s;
         s.Send(Server().Greeting());
         return s;
       }},
      {"abort_sent", S::kHandshake, P::kConnecting,
       [] {
         return WithCall(Negotiating(), "Shutdown",
                         [](Client& c) { return c.Shutdown(); });
       }},
      {"tls_paused", S::kTlsPaused, P::kConnecting,
       [] {
         ClientOptions o;
         o.tls = TlsPolicy::kRequire;
         Scenario s(o);
         s.Send(Server().Greeting()).Send(Server().RepAck(Option::kStartTls));
         return s;
       }},
      {"negotiating", S::kNegotiating, P::kNegotiating, Negotiating},
      {"option_in_flight", S::kOptionInFlight, P::kConnecting,
       [] {
         return WithCall(Negotiating(), "OptList",
                         [](Client& c) { return c.OptList(); });
       }},
      {"go_in_flight", S::kOptionInFlight, P::kConnecting,
       [] {
         return WithCall(Negotiating(), "OptGo",
                         [](Client& c) { return c.OptGo(); });
       }},
      {"ready", S::kTransmission, P::kReady, Connected},
      {"processing", S::kTransmission, P::kProcessing,
       [] { return WithRead(Connected()); }},
      {"disc_queued", S::kDisconnecting, P::kReady,
       [] {
         return WithCall(Connected(), "Disconnect",
                         [](Client& c) { return c.Disconnect(); });
       }},
      {"disc_when_drained", S::kDisconnecting, P::kProcessing,
       [] {
         return WithCall(WithRead(Connected()), "Shutdown",
                         [](Client& c) { return c.Shutdown(); });
       }},
      {"closed", S::kClosed, P::kClosed,
       [] {
         Scenario s = Connected();
         s.Eof();
         return s;
       }},
      {"dead", S::kDead, P::kDead,
       [] {
         Scenario s = Connected();
         s.Send(Server().Raw(Bytes(16, 0xee)));
         return s;
       }},
  };
}

// ---- Making each call -------------------------------------------------------

// What a call returned: a status, or for void calls nothing.
struct Outcome {
  bool has_status = true;
  absl::Status status;
  bool span_empty = false;  // RecvBuffer()
};

Outcome Make(ClientCall call, Client& c, RunContext& ctx) {
  static const Bytes* const data = new Bytes(Pattern(512));
  auto st = [](absl::Status s) { return Outcome{true, std::move(s)}; };
  auto cookie = [](const absl::StatusOr<Cookie>& s) {
    return Outcome{true, s.status(), false};
  };
  switch (call) {
    case ClientCall::kFeed:
      return st(c.Feed({}).status());
    case ClientCall::kFeedEof:
      c.FeedEof();
      return {false, absl::OkStatus(), false};
    case ClientCall::kFeedTransportError:
      c.FeedTransportError(absl::UnavailableError("reset"));
      return {false, absl::OkStatus(), false};
    case ClientCall::kRecvBuffer:
      return {false, absl::OkStatus(), c.RecvBuffer().empty()};
    case ClientCall::kCommitRecv:
      return st(c.CommitRecv(0));
    case ClientCall::kConsumeOutput:
      return st(c.ConsumeOutput(0));
    case ClientCall::kPinOutput:
      return st(c.PinOutput(0));
    case ClientCall::kTlsHandshakeDone:
      return st(c.TlsHandshakeDone());
    case ClientCall::kTlsHandshakeFailed:
      c.TlsHandshakeFailed(absl::UnavailableError("tls"));
      return {false, absl::OkStatus(), false};
    case ClientCall::kSetExportName:
      return st(c.SetExportName("x"));
    case ClientCall::kOptList:
      return st(c.OptList());
    case ClientCall::kOptInfo:
      return st(c.OptInfo());
    case ClientCall::kOptGo:
      return st(c.OptGo());
    case ClientCall::kOptAbort:
      return st(c.OptAbort());
    case ClientCall::kOptStructuredReply:
      return st(c.OptStructuredReply());
    case ClientCall::kOptExtendedHeaders:
      return st(c.OptExtendedHeaders());
    case ClientCall::kOptListMetaContext:
      return st(c.OptListMetaContext({}));
    case ClientCall::kOptSetMetaContext:
      return st(c.OptSetMetaContext({"base:allocation"}));
    case ClientCall::kRead:
      return cookie(c.Read(0, absl::MakeSpan(ctx.Buffer("t", 512))));
    case ClientCall::kWrite:
      return cookie(c.Write(0, *data));
    case ClientCall::kFlush:
      return cookie(c.Flush());
    case ClientCall::kTrim:
      return cookie(c.Trim(0, 512));
    case ClientCall::kCache:
      return cookie(c.Cache(0, 512));
    case ClientCall::kWriteZeroes:
      return cookie(c.WriteZeroes(0, 512));
    case ClientCall::kBlockStatus:
      return cookie(c.BlockStatus(0, 512));
    case ClientCall::kDisconnect:
      return st(c.Disconnect());
    case ClientCall::kShutdown:
      return st(c.Shutdown());
  }
  return st(absl::InternalError("unknown call"));
}

bool IsTerminal(ClientPhase p) {
  return p == ClientPhase::kClosed || p == ClientPhase::kDead;
}

// Everything a caller can observe.
std::string Observe(Client& c) {
  return std::string(ClientCallStateName(c.call_state())) + " / " +
         ClientPhaseName(c.phase()) +
         " in_flight=" + std::to_string(c.in_flight()) +
         " out=" + std::to_string(c.pending_output_bytes()) +
         " wants=" + std::to_string(static_cast<int>(c.wants())) +
         " events=" + std::to_string(c.has_events());
}

TEST(ClientPermissionTable, EveryCallInEveryState) {
  const Mode mode = AllModes().front();
  std::vector<bool> covered(kClientCallStateCount, false);
  for (const StateSetup& setup : Setups()) {
    covered[static_cast<size_t>(setup.state)] = true;
    for (size_t i = 0; i < kClientCallCount; ++i) {
      const ClientCall call = CallAt(i);
      const bool allowed = ClientCallAllowed(call, setup.state);
      SCOPED_TRACE(setup.name + " / " + ClientCallName(call) +
                   (allowed ? " (allowed)" : " (refused)"));
      const Scenario scenario = setup.scenario();
      ScenarioRun run(scenario, mode);
      run.RunAll();
      Client& c = run.client();
      ASSERT_EQ(c.call_state(), setup.state)
          << ClientCallStateName(c.call_state());
      ASSERT_EQ(c.phase(), setup.phase) << ClientPhaseName(c.phase());
      const std::string before = Observe(c);

      const Outcome out = Make(call, c, run.context());

      if (call == ClientCall::kRecvBuffer) {
        EXPECT_EQ(out.span_empty, !allowed);
      } else if (!out.has_status) {
        // The void calls that are allowed all end the connection.
        if (allowed) {
          EXPECT_TRUE(IsTerminal(c.phase())) << ClientPhaseName(c.phase());
        }
      } else if (allowed) {
        EXPECT_TRUE(out.status.ok()) << out.status;
      } else {
        EXPECT_TRUE(absl::IsFailedPrecondition(out.status)) << out.status;
        EXPECT_EQ(StatusErrno(out.status), EINVAL) << out.status;
        EXPECT_THAT(std::string(out.status.message()),
                    ::testing::AllOf(::testing::HasSubstr(ClientCallName(call)),
                                     ::testing::HasSubstr(
                                         ClientCallStateName(setup.state))));
      }
      if (!allowed) {
        EXPECT_EQ(Observe(c), before) << "a refused call changed the state";
      }
      run.Settle();
      for (const std::string& f : run.result().failures) ADD_FAILURE() << f;
    }
  }
  for (S state : kAllClientCallStates) {
    EXPECT_TRUE(covered[static_cast<size_t>(state)])
        << "no setup for " << ClientCallStateName(state);
  }
}

// The table is checked before the arguments: a call in the wrong state
// reports the state even when its arguments are bad too.
TEST(ClientPermissionTable, StateBeforeArguments) {
  Client c({});
  absl::Status st = c.Disconnect(1);
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  st = c.Shutdown(1);  // allowed in the handshake: now the flags count
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_EQ(StatusErrno(st), EINVAL);
}

// A second Disconnect() is refused like any command after NBD_CMD_DISC.
TEST(ClientPermissionTable, SecondDisconnectIsAPreconditionError) {
  const Scenario scenario = Connected();
  ScenarioRun run(scenario, AllModes().front());
  run.RunAll();
  Client& c = run.client();
  ASSERT_TRUE(c.Disconnect().ok());
  absl::Status st = c.Disconnect();
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_EQ(StatusErrno(st), EINVAL);
  absl::Status flush = c.Flush().status();
  EXPECT_EQ(flush.code(), st.code());
  EXPECT_EQ(StatusErrno(flush), StatusErrno(st));
  run.Settle();
}

// Option calls outside option mode say why.
TEST(ClientPermissionTable, OptionCallsNameOptionMode) {
  Client c({});
  absl::Status st = c.OptList();
  EXPECT_TRUE(absl::IsFailedPrecondition(st));
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("option_mode"));
}

TEST(ClientPermissionTable, FreshClientWantsToRead) {
  Client c({});
  EXPECT_EQ(c.phase(), ClientPhase::kConnecting);
  EXPECT_EQ(c.call_state(), ClientCallState::kHandshake);
  EXPECT_EQ(c.wants(), Direction::kRead);
  EXPECT_EQ(c.in_flight(), 0u);
  EXPECT_EQ(c.pending_output_bytes(), 0u);
  EXPECT_FALSE(c.has_events());
  EXPECT_FALSE(c.export_size().has_value());
  EXPECT_TRUE(c.dead_reason().ok());
  EXPECT_EQ(StatusErrno(c.Flush().status()), EINVAL);
}

}  // namespace
}  // namespace nbd::testing
