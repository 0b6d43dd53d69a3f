// Lifecycle tests for nbd::Client: Disconnect(), Shutdown(), EOF and death,
// following libnbd's behaviour and the fake-server scenarios of
// /work/shared/reference/nbd-protocol-and-libnbd.md §1.8 (letters in the
// test names).
#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/testing/client_handshake.h"
#include "protocol/testing/client_runner.h"
#include "protocol/testing/client_script.h"

namespace nbd::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::StartsWith;

absl::Status Disconnect(Client& c, RunContext&) { return c.Disconnect(); }

absl::StatusOr<Cookie> Read512(Client& c, RunContext& ctx) {
  return c.Read(0, absl::MakeSpan(ctx.Buffer("r", 512)));
}

const Bytes& Data4k() {
  static const Bytes* data = new Bytes(Pattern(4096, 7));
  return *data;
}

std::string InFlight(Client& c, RunContext&) {
  return "in_flight=" + std::to_string(c.in_flight());
}

// A: DISC alone. in_flight 0 -> 1 -> 0; later calls fail with EINVAL.
TEST(ClientLifecycle, A_DisconnectThenEofCloses) {
  Scenario s = ConnectedScenario();
  s.Snapshot()
      .Call("Disconnect", Disconnect)
      .Expect(ClientSends().Req("disc", Command::kDisc, 0, 0, 0).Nothing())
      .Do(InFlight)
      .Eof()
      .Snapshot()
      .Issue("late", Read512)
      .Call("Disconnect", Disconnect)
      .Call("Shutdown", [](Client& c, RunContext&) { return c.Shutdown(); });
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("phase=ready in_flight=0", "call Disconnect -> ok",
                  "ShutdownWrite", "in_flight=1", "Closed",
                  "phase=closed in_flight=0", "issue late -> EINVAL",
                  "call Disconnect -> EINVAL", "call Shutdown -> EINVAL"));
}

TEST(ClientLifecycle, DisconnectWithFlagsIsRejected) {
  Scenario s = ConnectedScenario();
  s.Call("Disconnect(1)",
         [](Client& c, RunContext&) { return c.Disconnect(1); })
      .Call("Disconnect(0x10000)",
            [](Client& c, RunContext&) { return c.Disconnect(0x10000); })
      .Expect(ClientSends().Nothing())
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("call Disconnect(1) -> EINVAL",
                          "call Disconnect(0x10000) -> EINVAL",
                          "phase=ready in_flight=0"));
}

TEST(ClientLifecycle, DisconnectBeforeReadyFails) {
  Scenario s;
  s.Do([](Client& c, RunContext&) {
     absl::Status st = c.Disconnect();
     return std::string(st.ok() ? "ok" : "failed") +
            (absl::IsFailedPrecondition(st) ? " precondition" : "");
   })
      .Send(Server().Greeting())
      .Expect(ClientSends().SkipAll())
      .Do([](Client& c, RunContext&) {
        return std::string(c.Disconnect().ok() ? "ok" : "failed");
      })
      .Expect(ClientSends().Nothing());
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ElementsAre("failed precondition", "failed"));
}

// The second Disconnect() and any later command fail; commands accepted
// before still complete.
TEST(ClientLifecycle, B_CommandsBeforeDisconnectStillComplete) {
  Scenario s = ConnectedScenario();
  s.Issue("r", Read512)
      .Call("Disconnect", Disconnect)
      .Do(InFlight)
      .Call("Disconnect again", Disconnect)
      .Issue("late", [](Client& c, RunContext&) { return c.Flush(); })
      .Expect(ClientSends()
                  .Req("r", Command::kRead, 0, 0, 512)
                  .Req("disc", Command::kDisc, 0, 0, 0)
                  .Nothing())
      .Send(Server().ChunkData("r", 0, Pattern(512), true))
      .Do(InFlight)
      .Eof()
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue r -> cookie=1", "call Disconnect -> ok",
                  "ShutdownWrite", "in_flight=2",
                  "call Disconnect again -> EINVAL", "issue late -> EINVAL",
                  "CommandCompleted cookie=1 READ ok", "in_flight=1", "Closed",
                  "phase=closed in_flight=0"));
  EXPECT_EQ(r.buffers["r"], Pattern(512));
}

// DISC is FIFO-queued behind commands not yet (fully) sent; it uses the
// next cookie.
TEST(ClientLifecycle, DisconnectQueuesBehindUnsentCommands) {
  Scenario s = ConnectedScenario();
  s.HoldOutput()
      .Issue("w", [](Client& c, RunContext&) { return c.Write(0, Data4k()); })
      .Consume(10)  // part of the WRITE header is on the wire
      .Issue("f", [](Client& c, RunContext&) { return c.Flush(); })
      .Call("Disconnect", Disconnect)
      .Do(InFlight)
      .ReleaseOutput()
      .Expect(ClientSends()
                  .Req("w", Command::kWrite, 0, 0, 4096)
                  .Payload(Data4k())
                  .Req("f", Command::kFlush, 0, 0, 0)
                  .Req("disc", Command::kDisc, 0, 0, 0)
                  .Nothing())
      .Do([](Client&, RunContext& ctx) {
        return "disc cookie=" + std::to_string(ctx.requests["disc"].cookie);
      });
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue w -> cookie=1", "issue f -> cookie=2",
                          "call Disconnect -> ok", "in_flight=3",
                          "ShutdownWrite", "disc cookie=3"));
}

// An eager server answers a WRITE whose payload is still partly in the
// output queue. The completion waits until the payload has left the queue:
// once CommandCompleted is popped the caller may free the buffer, and the
// transport must not send freed memory.
TEST(ClientLifecycle, WriteReplyBeforeItsPayloadWasSentCompletesAfterIt) {
  Scenario s = ConnectedScenario();
  s.HoldOutput()
      .Issue("w", [](Client& c, RunContext&) { return c.Write(0, Data4k()); })
      .Consume(kRequestSize + 100)  // header and part of the payload
      .Send(Server().Simple("w", static_cast<uint32_t>(NbdError::kIo)))
      .Do(InFlight)
      .Do([](Client&, RunContext&) { return "payload sent"; })
      .ReleaseOutput()
      .Do(InFlight)
      .Expect(ClientSends()
                  .Req("w", Command::kWrite, 0, 0, 4096)
                  .Payload(Data4k())
                  .Nothing());
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue w -> cookie=1", "in_flight=1", "payload sent",
                  "CommandCompleted cookie=1 WRITE EIO", "in_flight=0"));
}

// A second reply to that WRITE while its completion waits is a duplicate.
TEST(ClientLifecycle, SecondReplyToAWriteAwaitingItsPayloadIsFatal) {
  Scenario s = ConnectedScenario();
  s.HoldOutput()
      .Issue("w", [](Client& c, RunContext&) { return c.Write(0, Data4k()); })
      .Consume(kRequestSize)
      .Send(Server().Simple("w").Simple("w"))
      .Snapshot();
  RunResult r = RunAllModes(s);
  std::vector<std::string> tail = r.AfterConnected();
  ASSERT_EQ(tail.size(), 4u) << ::testing::PrintToString(tail);
  EXPECT_EQ(tail[1], "CommandCompleted cookie=1 WRITE ENOTCONN");
  EXPECT_EQ(tail[2], "Dead EPROTO");
}

// ShutdownWrite only once the last DISC byte has been consumed.
TEST(ClientLifecycle, ShutdownWriteWaitsForTheWholeDisc) {
  Scenario s = ConnectedScenario();
  s.HoldOutput()
      .Call("Disconnect", Disconnect)
      .Consume(1)
      .Do([](Client&, RunContext&) { return "1 byte"; })
      .Consume(kRequestSize - 2)
      .Do([](Client&, RunContext&) { return "27 bytes"; })
      .Consume(1)
      .Do([](Client&, RunContext&) { return "28 bytes"; })
      .Expect(ClientSends().Req("disc", Command::kDisc, 0, 0, 0).Nothing());
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("call Disconnect -> ok", "1 byte", "27 bytes",
                          "ShutdownWrite", "28 bytes"));
}

TEST(ClientLifecycle, ShutdownWriteWaitsForAPendingWritePayloadAndDisc) {
  Scenario s = ConnectedScenario();
  s.HoldOutput()
      .Issue("w", [](Client& c, RunContext&) { return c.Write(0, Data4k()); })
      .Call("Disconnect", Disconnect)
      .Consume(kRequestSize + 4096)
      .Do([](Client&, RunContext&) { return "write sent"; })
      .Consume(kRequestSize)
      .Expect(ClientSends()
                  .Req("w", Command::kWrite, 0, 0, 4096)
                  .Payload(Data4k())
                  .Req("disc", Command::kDisc, 0, 0, 0)
                  .Nothing());
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue w -> cookie=1", "call Disconnect -> ok",
                          "write sent", "ShutdownWrite"));
}

// C: EOF at a message boundary closes; pending commands get ENOTCONN.
TEST(ClientLifecycle, C_EofAtBoundaryClosesAndFailsPending) {
  Scenario s = ConnectedScenario();
  s.Issue("r1", Read512)
      .Issue("r2",
             [](Client& c, RunContext& ctx) {
               return c.Read(0, absl::MakeSpan(ctx.Buffer("r2", 512)));
             })
      .Issue("f", [](Client& c, RunContext&) { return c.Flush(); })
      .Do(InFlight)
      .Eof()
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue r1 -> cookie=1", "issue r2 -> cookie=2",
                          "issue f -> cookie=3", "in_flight=3",
                          "CommandCompleted cookie=1 READ ENOTCONN",
                          "CommandCompleted cookie=2 READ ENOTCONN",
                          "CommandCompleted cookie=3 FLUSH ENOTCONN", "Closed",
                          "phase=closed in_flight=0"));
}

// D / D2: EOF inside a reply kills the connection.
void ExpectDeadOnEof(Server partial) {
  Scenario s = ConnectedScenario();
  s.Issue("r", Read512).Send(std::move(partial)).Eof().Snapshot();
  RunResult r = RunAllModes(s);
  std::vector<std::string> tail = r.AfterConnected();
  ASSERT_EQ(tail.size(), 4u) << ::testing::PrintToString(tail);
  EXPECT_EQ(tail[1], "CommandCompleted cookie=1 READ ENOTCONN");
  EXPECT_THAT(tail[2], StartsWith("Dead"));
  EXPECT_EQ(tail[3], "phase=dead in_flight=0");
}

TEST(ClientLifecycle, D_EofInsideAReplyHeader) {
  auto header = EncodeStructuredReplyHeader({kReplyFlagDone, 1, 1, 520});
  ExpectDeadOnEof(Server().Raw(Bytes(header.begin(), header.begin() + 8)));
}

TEST(ClientLifecycle, D2_EofInsideAReadPayload) {
  Bytes chunk = EncodeOffsetData(0, Pattern(512));
  chunk.resize(100);
  ExpectDeadOnEof(Server().StructuredChunk(
      "r", kReplyFlagDone, static_cast<uint16_t>(ChunkType::kOffsetData), chunk,
      520));
}

TEST(ClientLifecycle, D2_EofInsideASimpleReadPayload) {
  HandshakeSpec spec;
  spec.ack_structured_replies = false;
  Scenario s = ConnectedScenario({}, spec);
  s.Issue("r", Read512)
      .Send(Server().Simple("r", 0, Pattern(100)))
      .Eof()
      .Snapshot();
  RunResult r = RunAllModes(s);
  std::vector<std::string> tail = r.AfterConnected();
  ASSERT_EQ(tail.size(), 4u) << ::testing::PrintToString(tail);
  EXPECT_EQ(tail[1], "CommandCompleted cookie=1 READ ENOTCONN");
  EXPECT_THAT(tail[2], StartsWith("Dead"));
}

TEST(ClientLifecycle, TransportErrorKillsTheConnection) {
  Scenario s = ConnectedScenario();
  s.Issue("r", Read512)
      .Do([](Client& c, RunContext&) {
        c.FeedTransportError(absl::UnavailableError("reset"));
        return "";
      })
      .Snapshot();
  RunResult r = RunAllModes(s);
  std::vector<std::string> tail = r.AfterConnected();
  ASSERT_EQ(tail.size(), 4u) << ::testing::PrintToString(tail);
  EXPECT_EQ(tail[1], "CommandCompleted cookie=1 READ ENOTCONN");
  EXPECT_THAT(tail[2], StartsWith("Dead"));
}

// E: after DISC the client waits for the server's EOF.
TEST(ClientLifecycle, E_DiscWithoutEofKeepsWaiting) {
  Scenario s = ConnectedScenario();
  s.Call("Disconnect", Disconnect).Do([](Client& c, RunContext&) {
    return std::string("in_flight=") + std::to_string(c.in_flight()) +
           " wants_read=" +
           std::to_string((static_cast<int>(c.wants()) & 1) != 0) + " alive=" +
           std::to_string(c.phase() == ClientPhase::kReady ||
                          c.phase() == ClientPhase::kProcessing);
  });
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("call Disconnect -> ok", "ShutdownWrite",
                          "in_flight=1 wants_read=1 alive=1"));
}

// F: ESHUTDOWN, then Shutdown() sends DISC (here the client already does).
TEST(ClientLifecycle, F_ShutdownAfterEshutdown) {
  Scenario s = ConnectedScenario();
  s.Issue("r", Read512)
      .Send(
          Server().ChunkError("r", static_cast<uint32_t>(NbdError::kShutdown)))
      .Call("Shutdown", [](Client& c, RunContext&) { return c.Shutdown(); })
      .Expect(ClientSends()
                  .Req("r", Command::kRead, 0, 0, 512)
                  .Req("disc", Command::kDisc, 0, 0, 0)
                  .Nothing())
      .Eof();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue r -> cookie=1",
                          "CommandCompleted cookie=1 READ ESHUTDOWN",
                          "ShutdownWrite", "call Shutdown -> ok", "Closed"));
}

// G / G2 / H: replies the client cannot match kill the connection.
TEST(ClientLifecycle, G_UnknownCookieKills) {
  for (uint32_t error : {0u, 5u}) {
    Scenario s = ConnectedScenario();
    s.Issue("r", Read512).Send(Server().Simple(CookieRef::Value(42), error));
    RunResult r = RunAllModes(s);
    ASSERT_EQ(r.AfterConnected().size(), 3u);
    EXPECT_THAT(r.AfterConnected()[2], StartsWith("Dead")) << error;
  }
}

// P: ABANDON_PENDING fails commands with no byte on the wire; the partly
// sent one finishes; DISC follows once nothing else is in flight.
TEST(ClientLifecycle, P_ShutdownAbandonPending) {
  Scenario s = ConnectedScenario();
  s.HoldOutput()
      .Issue("w1", [](Client& c, RunContext&) { return c.Write(0, Data4k()); })
      .Issue("w2",
             [](Client& c, RunContext&) { return c.Write(4096, Data4k()); })
      .Consume(10)
      .Call("Shutdown(abandon)",
            [](Client& c, RunContext&) {
              return c.Shutdown(kShutdownAbandonPending);
            })
      .Do(InFlight)
      .ReleaseOutput()
      .Expect(ClientSends()
                  .Req("w1", Command::kWrite, 0, 0, 4096)
                  .Payload(Data4k())
                  .Nothing())
      .Send(Server().Simple("w1"))
      .Expect(ClientSends().Req("disc", Command::kDisc, 0, 0, 0).Nothing())
      .Eof()
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue w1 -> cookie=1", "issue w2 -> cookie=2",
                  "call Shutdown(abandon) -> ok",
                  "CommandCompleted cookie=2 WRITE ENOTCONN", "in_flight=1",
                  "CommandCompleted cookie=1 WRITE ok", "ShutdownWrite",
                  "Closed", "phase=closed in_flight=0"));
}

// P2: Shutdown(0) sends everything and waits for the replies before DISC.
TEST(ClientLifecycle, P2_ShutdownWaitsForInFlight) {
  Scenario s = ConnectedScenario();
  s.Issue("w1", [](Client& c, RunContext&) { return c.Write(0, Data4k()); })
      .Issue("w2",
             [](Client& c, RunContext&) { return c.Write(4096, Data4k()); })
      .Call("Shutdown", [](Client& c, RunContext&) { return c.Shutdown(0); })
      .Expect(ClientSends()
                  .Req("w1", Command::kWrite, 0, 0, 4096)
                  .Payload(Data4k())
                  .Req("w2", Command::kWrite, 0, 4096, 4096)
                  .Payload(Data4k())
                  .Nothing())
      .Send(Server().Simple("w1"))
      .Expect(ClientSends().Nothing())
      .Send(Server().Simple("w2"))
      .Expect(ClientSends().Req("disc", Command::kDisc, 0, 0, 0).Nothing())
      .Eof();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue w1 -> cookie=1", "issue w2 -> cookie=2",
                  "call Shutdown -> ok", "CommandCompleted cookie=1 WRITE ok",
                  "CommandCompleted cookie=2 WRITE ok", "ShutdownWrite",
                  "Closed"));
}

TEST(ClientLifecycle, ShutdownAfterDisconnectChangesNothing) {
  Scenario s = ConnectedScenario();
  s.Call("Disconnect", Disconnect)
      .Call("Shutdown", [](Client& c, RunContext&) { return c.Shutdown(); })
      .Expect(ClientSends().Req("disc", Command::kDisc, 0, 0, 0).Nothing())
      .Do(InFlight);
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("call Disconnect -> ok", "ShutdownWrite",
                          "call Shutdown -> ok", "in_flight=1"));
}

// X: a spurious empty input, then ABANDON_PENDING with nothing queued
// (this crashes libnbd 1.14).
TEST(ClientLifecycle, X_AbandonPendingAfterSpuriousInput) {
  Scenario s = ConnectedScenario();
  s.Do([](Client& c, RunContext&) {
     absl::StatusOr<size_t> n = c.Feed({});
     absl::Span<uint8_t> span = c.RecvBuffer();
     absl::Status st = c.CommitRecv(0);
     return "feed=" + (n.ok() ? std::to_string(*n) : "error") +
            " recv=" + std::to_string(!span.empty()) +
            " commit0=" + StatusText(st);
   })
      .Snapshot()
      .Call("Shutdown(abandon)",
            [](Client& c, RunContext&) {
              return c.Shutdown(kShutdownAbandonPending);
            })
      .Expect(ClientSends().Req("disc", Command::kDisc, 0, 0, 0).Nothing())
      .Eof();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("feed=0 recv=1 commit0=ok", "phase=ready in_flight=0",
                  "call Shutdown(abandon) -> ok", "ShutdownWrite", "Closed"));
}

// O: Shutdown() while parked in option mode sends NBD_OPT_ABORT.
TEST(ClientLifecycle, O_ShutdownWhileNegotiating) {
  ClientOptions o;
  o.option_mode = true;
  o.request_extended_headers = false;
  o.request_structured_replies = false;
  Scenario s(o);
  s.Send(Server().Greeting())
      .Expect(ClientSends()
                  .Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes)
                  .Nothing())
      .Snapshot()
      .Call("Shutdown", [](Client& c, RunContext&) { return c.Shutdown(); })
      .Expect(ClientSends().Opt(Option::kAbort).Nothing())
      .Send(Server().RepAck(Option::kAbort))
      .Eof()
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ContainsInOrder(std::vector<std::string>{
                         "Negotiating", "phase=negotiating in_flight=0",
                         "call Shutdown -> ok", "ShutdownWrite", "Closed",
                         "phase=closed in_flight=0"}));
}

// Shutdown() during the automatic handshake aborts at the next option
// boundary: the reply in progress is read, then NBD_OPT_ABORT replaces
// the next option.
TEST(ClientLifecycle, ShutdownDuringHandshakeAbortsAtTheNextOption) {
  Scenario s;
  s.Send(Server().Greeting())
      .Expect(ClientSends()
                  .Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes)
                  .Opt(Option::kExtendedHeaders)
                  .Nothing())
      .Call("Shutdown", [](Client& c, RunContext&) { return c.Shutdown(); })
      .Expect(ClientSends().Nothing())
      .Send(Server().RepError(Option::kExtendedHeaders,
                              OptionReplyType::kErrUnsup))
      .Expect(ClientSends().Opt(Option::kAbort).Nothing())
      .Eof()
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ContainsInOrder(std::vector<std::string>{
                         "call Shutdown -> ok", "ShutdownWrite"}));
  EXPECT_THAT(LinesStartingWith(r.log, "Connected"), ElementsAre());
  EXPECT_THAT(r.log.back(), StartsWith("phase="));
}

}  // namespace
}  // namespace nbd::testing
