// Every public call of nbd::Client in every phase: allowed, or the
// documented FailedPrecondition/errno, with nothing changed; never a crash.
// Each (phase, call) pair gets a fresh client driven into the phase by a
// scenario (tests/testing).
#include <cerrno>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/status.h"
#include "tests/testing/handshake.h"
#include "tests/testing/runner.h"
#include "tests/testing/script.h"

namespace nbd::test {
namespace {

enum class Want {
  kOk,
  kEinval,    // FailedPrecondition with EINVAL
  kEnotconn,  // FailedPrecondition with ENOTCONN
  kRejected,  // FailedPrecondition, either errno
  kError,     // any error (bad argument)
  kAny,       // anything but a crash
};

struct PhaseSetup {
  std::string name;
  ClientPhase phase;
  std::function<Scenario()> scenario;
};

std::vector<PhaseSetup> Phases() {
  return {
      {"connecting", ClientPhase::kConnecting, [] { return Scenario(); }},
      {"connecting_mid_handshake", ClientPhase::kConnecting,
       [] {
         Scenario s;
         s.Send(Server().Greeting());
         return s;
       }},
      {"negotiating", ClientPhase::kNegotiating,
       [] {
         ClientOptions o;
         o.option_mode = true;
         Scenario s(o);
         s.Send(Server().Greeting())
             .Send(Server().RepError(Option::kExtendedHeaders,
                                     OptionReplyType::kErrUnsup))
             .Send(Server().RepAck(Option::kStructuredReply));
         return s;
       }},
      {"ready", ClientPhase::kReady, [] { return ConnectedScenario(); }},
      {"processing", ClientPhase::kProcessing,
       [] {
         Scenario s = ConnectedScenario();
         s.Issue("r", [](Client& c, RunContext& ctx) {
           return c.Read(0, absl::MakeSpan(ctx.Buffer("r", 512)));
         });
         return s;
       }},
      // STARTTLS acknowledged; the caller's TLS layer is starting.
      {"tls_paused", ClientPhase::kConnecting,
       [] {
         ClientOptions o;
         o.tls = TlsPolicy::kRequire;
         Scenario s(o);
         s.Send(Server().Greeting()).Send(Server().RepAck(Option::kStartTls));
         return s;
       }},
      // NBD_CMD_DISC queued (and sent); waiting for the server to close.
      {"disconnected", ClientPhase::kReady,
       [] {
         Scenario s = ConnectedScenario();
         s.Call("Disconnect",
                [](Client& c, RunContext&) { return c.Disconnect(); });
         return s;
       }},
      {"closed", ClientPhase::kClosed,
       [] {
         Scenario s = ConnectedScenario();
         s.Eof();
         return s;
       }},
      {"dead", ClientPhase::kDead,
       [] {
         Scenario s = ConnectedScenario();
         s.Send(Server().Raw(Bytes(16, 0xee)));
         return s;
       }},
  };
}

using CallFn = std::function<absl::Status(Client&, RunContext&)>;

absl::Status Of(const absl::StatusOr<Cookie>& s) { return s.status(); }

struct CallCase {
  std::string name;
  CallFn fn;
  // By phase name; "connecting" also covers "connecting_mid_handshake".
  std::map<std::string, Want> want;
  // Calls that may legitimately change the state even when they fail.
  bool mutates = false;
};

// `tls_paused` defaults to `connecting` and `disconnected` to `transmission`.
std::map<std::string, Want> Table(
    Want connecting, Want negotiating, Want transmission, Want terminal,
    std::optional<Want> tls_paused = std::nullopt,
    std::optional<Want> disconnected = std::nullopt) {
  return {{"connecting", connecting},
          {"tls_paused", tls_paused.value_or(connecting)},
          {"negotiating", negotiating},
          {"ready", transmission},
          {"processing", transmission},
          {"disconnected", disconnected.value_or(transmission)},
          {"closed", terminal},
          {"dead", terminal}};
}

std::vector<CallCase> Calls() {
  const auto command = Table(Want::kEinval, Want::kEinval, Want::kOk,
                             Want::kEinval, std::nullopt, Want::kEinval);
  const auto option =
      Table(Want::kEinval, Want::kOk, Want::kEinval, Want::kEinval);
  static const Bytes* const data = new Bytes(Pattern(512));
  return {
      {"Read",
       [](Client& c, RunContext& x) {
         return Of(c.Read(0, absl::MakeSpan(x.Buffer("t", 512))));
       },
       command},
      {"Write", [](Client& c, RunContext&) { return Of(c.Write(0, *data)); },
       command},
      {"Flush", [](Client& c, RunContext&) { return Of(c.Flush()); }, command},
      {"Trim", [](Client& c, RunContext&) { return Of(c.Trim(0, 512)); },
       command},
      {"Cache", [](Client& c, RunContext&) { return Of(c.Cache(0, 512)); },
       command},
      {"WriteZeroes",
       [](Client& c, RunContext&) { return Of(c.WriteZeroes(0, 512)); },
       command},
      {"BlockStatus",
       [](Client& c, RunContext&) { return Of(c.BlockStatus(0, 512)); },
       command},
      {"Disconnect", [](Client& c, RunContext&) { return c.Disconnect(); },
       Table(Want::kEinval, Want::kEinval, Want::kOk, Want::kEinval,
             std::nullopt, Want::kError)},
      {"Shutdown", [](Client& c, RunContext&) { return c.Shutdown(); },
       Table(Want::kOk, Want::kOk, Want::kOk, Want::kEinval)},
      {"ShutdownAbandon",
       [](Client& c, RunContext&) {
         return c.Shutdown(kShutdownAbandonPending);
       },
       Table(Want::kOk, Want::kOk, Want::kOk, Want::kEinval)},
      {"SetExportName",
       [](Client& c, RunContext&) { return c.SetExportName("x"); }, option},
      {"OptList", [](Client& c, RunContext&) { return c.OptList(); }, option},
      {"OptInfo", [](Client& c, RunContext&) { return c.OptInfo(); }, option},
      {"OptGo", [](Client& c, RunContext&) { return c.OptGo(); }, option},
      {"OptAbort", [](Client& c, RunContext&) { return c.OptAbort(); }, option},
      {"OptStructuredReply",
       [](Client& c, RunContext&) { return c.OptStructuredReply(); }, option},
      {"OptExtendedHeaders",
       [](Client& c, RunContext&) { return c.OptExtendedHeaders(); }, option},
      {"OptListMetaContext",
       [](Client& c, RunContext&) { return c.OptListMetaContext({}); }, option},
      {"OptSetMetaContext",
       [](Client& c, RunContext&) {
         return c.OptSetMetaContext({"base:allocation"});
       },
       option},
      {"TlsHandshakeDone",
       [](Client& c, RunContext&) { return c.TlsHandshakeDone(); },
       Table(Want::kEinval, Want::kEinval, Want::kEinval, Want::kEinval,
             Want::kOk)},
      {"FeedEmpty", [](Client& c, RunContext&) { return c.Feed({}).status(); },
       Table(Want::kOk, Want::kOk, Want::kOk, Want::kRejected)},
      {"ConsumeTooMuch",
       [](Client& c, RunContext&) {
         return c.ConsumeOutput(c.pending_output_bytes() + 1);
       },
       Table(Want::kError, Want::kError, Want::kError, Want::kError)},
      {"CommitBeyondRecvBuffer",
       [](Client& c, RunContext&) {
         return c.CommitRecv(c.RecvBuffer().size() + 1);
       },
       Table(Want::kError, Want::kError, Want::kError, Want::kError),
       /*mutates=*/true},
      {"ConsumeNothing",
       [](Client& c, RunContext&) { return c.ConsumeOutput(0); },
       Table(Want::kOk, Want::kOk, Want::kOk, Want::kOk)},
      {"PinAllPending",
       [](Client& c, RunContext&) {
         return c.PinOutput(c.pending_output_bytes());
       },
       Table(Want::kOk, Want::kOk, Want::kOk, Want::kOk)},
      {"PinTooMuch",
       [](Client& c, RunContext&) {
         return c.PinOutput(c.pending_output_bytes() + 1);
       },
       Table(Want::kError, Want::kError, Want::kError, Want::kError)},
      {"CommitNothing",
       [](Client& c, RunContext&) {
         (void)c.RecvBuffer();
         return c.CommitRecv(0);
       },
       Table(Want::kOk, Want::kOk, Want::kOk, Want::kOk), /*mutates=*/true},
      {"PollEvent",
       [](Client& c, RunContext&) {
         while (c.PollEvent().has_value()) {
         }
         return c.has_events() ? absl::InternalError("events left")
                               : absl::OkStatus();
       },
       Table(Want::kOk, Want::kOk, Want::kOk, Want::kOk), /*mutates=*/true},
      {"FeedEof",
       [](Client& c, RunContext&) {
         c.FeedEof();
         return absl::OkStatus();
       },
       Table(Want::kAny, Want::kAny, Want::kAny, Want::kOk), true},
      {"FeedTransportError",
       [](Client& c, RunContext&) {
         c.FeedTransportError(absl::UnavailableError("reset"));
         return absl::OkStatus();
       },
       Table(Want::kAny, Want::kAny, Want::kAny, Want::kOk), true},
      {"TlsHandshakeFailed",
       [](Client& c, RunContext&) {
         c.TlsHandshakeFailed(absl::UnavailableError("tls"));
         return absl::OkStatus();
       },
       Table(Want::kAny, Want::kAny, Want::kAny, Want::kOk), true},
  };
}

bool Matches(Want want, const absl::Status& status) {
  switch (want) {
    case Want::kOk:
      return status.ok();
    case Want::kEinval:
      return absl::IsFailedPrecondition(status) &&
             StatusErrno(status) == EINVAL;
    case Want::kEnotconn:
      return absl::IsFailedPrecondition(status) &&
             StatusErrno(status) == ENOTCONN;
    case Want::kRejected:
      return absl::IsFailedPrecondition(status);
    case Want::kError:
      return !status.ok();
    case Want::kAny:
      return true;
  }
  return false;
}

const char* WantName(Want want) {
  switch (want) {
    case Want::kOk:
      return "OK";
    case Want::kEinval:
      return "FailedPrecondition/EINVAL";
    case Want::kEnotconn:
      return "FailedPrecondition/ENOTCONN";
    case Want::kRejected:
      return "FailedPrecondition";
    case Want::kError:
      return "an error";
    case Want::kAny:
      return "anything";
  }
  return "?";
}

// Everything a caller can observe without changing anything.
std::string Observe(Client& c) {
  return std::string(ClientPhaseName(c.phase())) +
         " in_flight=" + std::to_string(c.in_flight()) +
         " out=" + std::to_string(c.pending_output_bytes()) +
         " wants=" + std::to_string(static_cast<int>(c.wants())) +
         " events=" + std::to_string(c.has_events());
}

// Calls every query; they are allowed in every phase.
void TouchQueries(Client& c) {
  (void)c.dead_reason();
  (void)c.protocol();
  (void)c.export_size();
  (void)c.transmission_flags();
  (void)c.is_read_only();
  (void)c.can_flush();
  (void)c.can_fua();
  (void)c.can_trim();
  (void)c.can_zero();
  (void)c.can_fast_zero();
  (void)c.can_df();
  (void)c.can_multi_conn();
  (void)c.can_cache();
  (void)c.is_rotational();
  (void)c.can_block_status();
  (void)c.block_size();
  (void)c.max_payload();
  (void)c.structured_replies();
  (void)c.extended_headers();
  (void)c.tls_negotiated();
  (void)c.meta_contexts();
  (void)c.meta_context_id("base:allocation");
  (void)c.export_name();
  (void)c.canonical_name();
  (void)c.description();
  IoSlice slices[2];
  (void)c.PeekOutput(absl::MakeSpan(slices));
  (void)c.PeekOutput({});
}

TEST(ClientPhaseTable, EveryCallInEveryPhase) {
  const Mode mode = AllModes().front();
  for (const PhaseSetup& setup : Phases()) {
    const std::string key =
        setup.name.starts_with("connecting_") ? "connecting" : setup.name;
    for (const CallCase& call : Calls()) {
      SCOPED_TRACE(setup.name + " / " + call.name);
      const Scenario scenario = setup.scenario();
      ScenarioRun run(scenario, mode);
      run.RunAll();
      Client& c = run.client();
      ASSERT_EQ(c.phase(), setup.phase) << ClientPhaseName(c.phase());
      TouchQueries(c);
      const std::string before = Observe(c);
      const Want want = call.want.at(key);
      absl::Status status = call.fn(c, run.context());
      EXPECT_TRUE(Matches(want, status))
          << "want " << WantName(want) << ", got " << status;
      if (!status.ok() && !call.mutates) {
        EXPECT_EQ(Observe(c), before) << "a rejected call changed the state";
      }
      if (setup.phase == ClientPhase::kClosed || setup.phase == ClientPhase::kDead) {
        EXPECT_EQ(c.phase(), setup.phase) << "a final phase was left";
      }
      TouchQueries(c);
      run.Settle();
      for (const std::string& f : run.result().failures) ADD_FAILURE() << f;
    }
  }
}

// A command before the handshake finished fails with EINVAL, as libnbd's
// calls on a handle that has started connecting.
TEST(ClientPhaseTable, FreshClientWantsToRead) {
  Client c({});
  EXPECT_EQ(c.phase(), ClientPhase::kConnecting);
  EXPECT_EQ(c.wants(), Direction::kRead);
  EXPECT_EQ(c.in_flight(), 0u);
  EXPECT_EQ(c.pending_output_bytes(), 0u);
  EXPECT_FALSE(c.has_events());
  EXPECT_FALSE(c.export_size().has_value());
  EXPECT_TRUE(c.dead_reason().ok());
  EXPECT_EQ(StatusErrno(c.Flush().status()), EINVAL);
}

}  // namespace
}  // namespace nbd::test
