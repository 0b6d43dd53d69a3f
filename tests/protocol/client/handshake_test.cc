// Handshake tests for nbd::Client: oldstyle, newstyle, fixed newstyle with
// libnbd's option order, the EXPORT_NAME fallback, TLS policy, sanity
// checks on the server's answers, and option mode. Every scenario runs in
// all input modes (tests/testing/runner.h).
#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/status.h"
#include "protocol/testing/client_handshake.h"
#include "protocol/testing/client_runner.h"
#include "protocol/testing/client_script.h"

namespace nbd::testing {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr uint16_t kFlags = kTransmitHasFlags | kTransmitSendFlush;

// Logs the values a test wants to see after the handshake.
std::string Describe(Client& c, RunContext&) {
  std::string out = std::string("protocol=") +
                    ProtocolVariantName(c.protocol()) +
                    " size=" + std::to_string(c.export_size().value_or(0)) +
                    " flags=" + std::to_string(c.transmission_flags()) +
                    " sr=" + std::to_string(c.structured_replies()) +
                    " eh=" + std::to_string(c.extended_headers()) +
                    " contexts=" + std::to_string(c.meta_contexts().size());
  return out;
}

TEST(ClientHandshake, Oldstyle) {
  Scenario s;
  s.Snapshot()
      .Send(Server().Oldstyle(4096, kFlags))
      .Expect(ClientSends().Nothing())
      .Snapshot()
      .Do(Describe);
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log,
              ElementsAre("phase=connecting in_flight=0", "Connected",
                          "phase=ready in_flight=0",
                          "protocol=oldstyle size=4096 flags=5 sr=0 eh=0 "
                          "contexts=0"));
}

TEST(ClientHandshake, OldstyleIgnoresOptionModeAndExportName) {
  ClientOptions o;
  o.option_mode = true;
  o.export_name = "ignored";
  Scenario s(o);
  s.Send(Server().Oldstyle(4096, kFlags)).Expect(ClientSends().Nothing());
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ElementsAre("Connected"));
}

TEST(ClientHandshake, NonFixedNewstyleSendsExportNameDirectly) {
  ClientOptions o;
  o.export_name = "disk";
  Scenario s(o);
  s.Send(Server().Greeting(0))
      .Expect(ClientSends().Flags(0).OptExportName("disk").Nothing())
      .Send(Server().ExportNameReply(8192, kFlags, /*no_zeroes=*/false))
      .Expect(ClientSends().Nothing())
      .Do(Describe);
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ElementsAre("Connected",
                                 "protocol=newstyle size=8192 flags=5 sr=0 "
                                 "eh=0 contexts=0"));
}

TEST(ClientHandshake, NonFixedNewstyleWithNoZeroesGetsShortReply) {
  Scenario s;
  s.Send(Server().Greeting(kFlagNoZeroes))
      .Expect(
          ClientSends().Flags(kClientFlagNoZeroes).OptExportName("").Nothing())
      .Send(Server().ExportNameReply(8192, kFlags, /*no_zeroes=*/true));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ElementsAre("Connected"));
}

TEST(ClientHandshake, FixedNewstyleStandardOrder) {
  ClientOptions o;
  o.export_name = "vol";
  o.meta_contexts = {"qemu:dirty-bitmap:b"};
  HandshakeSpec spec;
  spec.contexts = {{7, kContextBaseAllocation}, {9, "qemu:dirty-bitmap:b"}};
  spec.block_size = InfoBlockSize{512, 4096, 1 << 20};
  spec.canonical_name = "canonical";
  spec.description = "a disk";
  Scenario s = ConnectedScenario(o, spec);
  s.Do(Describe).Do([](Client& c, RunContext&) {
    BlockSizeConstraints b = c.block_size();
    return "block=" + std::to_string(b.minimum) + "/" +
           std::to_string(b.preferred) + "/" + std::to_string(b.maximum) +
           " name=" + c.canonical_name() + " desc=" + c.description() +
           " export=" + c.export_name() + " id9=" +
           std::to_string(
               c.meta_context_id("qemu:dirty-bitmap:b").value_or(0)) +
           " bs=" + std::to_string(c.can_block_status());
  });
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log,
              ElementsAre("Connected",
                          "protocol=newstyle-fixed size=1048576 flags=" +
                              std::to_string(kAllCommandFlags) +
                              " sr=1 eh=0 contexts=2",
                          "block=512/4096/1048576 name=canonical desc=a disk "
                          "export=vol id9=9 bs=1"));
}

TEST(ClientHandshake, ExtendedHeadersAckedSkipsStructuredReply) {
  HandshakeSpec spec;
  spec.ack_extended_headers = true;
  Scenario s = ConnectedScenario({}, spec);
  s.Do(Describe);
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("protocol=newstyle-fixed size=1048576 flags=" +
                  std::to_string(kAllCommandFlags) + " sr=1 eh=1 contexts=1"));
}

// Also: without structured replies DF cannot work, so SEND_DF is dropped
// (as libnbd does).
TEST(ClientHandshake, NoStructuredRepliesSkipsMetaContext) {
  HandshakeSpec spec;
  spec.ack_structured_replies = false;
  Scenario s = ConnectedScenario({}, spec);
  s.Do(Describe).Do([](Client& c, RunContext&) {
    return "bs=" + std::to_string(c.can_block_status());
  });
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("protocol=newstyle-fixed size=1048576 flags=" +
                      std::to_string(kAllCommandFlags & ~kTransmitSendDf) +
                      " sr=0 eh=0 contexts=0",
                  "bs=0"));
}

TEST(ClientHandshake, MinimalOptionsSendOnlyGo) {
  ClientOptions o;
  o.request_extended_headers = false;
  o.request_structured_replies = false;
  o.request_block_size = false;
  o.full_info = false;
  Scenario s(o);
  s.Send(Server().Greeting())
      .Expect(ClientSends()
                  .Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes)
                  .OptInfoRequest(Option::kGo, "", {})
                  .Nothing())
      .Send(
          Server().RepInfoExport(Option::kGo, 512, kFlags).RepAck(Option::kGo));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ElementsAre("Connected"));
}

TEST(ClientHandshake, FixedWithoutNoZeroesDoesNotSetIt) {
  HandshakeSpec spec;
  spec.handshake_flags = kFlagFixedNewstyle;
  RunResult r = RunAllModes(ConnectedScenario({}, spec));
  EXPECT_THAT(r.log, ElementsAre("Connected"));
}

// The client sends EXPORT_NAME when GO is unsupported. With NO_ZEROES the
// reply is 10 bytes, otherwise 134.
Scenario ExportNameFallback(uint16_t handshake_flags, bool no_zeroes_reply,
                            bool send_padding) {
  ClientOptions o;
  o.export_name = "old";
  o.request_extended_headers = false;
  o.request_structured_replies = false;
  Scenario s(o);
  const uint32_t client_flags =
      kClientFlagFixedNewstyle |
      ((handshake_flags & kFlagNoZeroes) ? kClientFlagNoZeroes : 0);
  s.Send(Server().Greeting(handshake_flags))
      .Expect(ClientSends()
                  .Flags(client_flags)
                  .OptInfoRequest(Option::kGo, "old", ExpectedGoInfos(o))
                  .Nothing())
      .Send(Server().RepError(Option::kGo, OptionReplyType::kErrUnsup))
      .Expect(ClientSends().OptExportName("old").Nothing());
  Bytes reply = EncodeExportNameReply({2048, kFlags}, no_zeroes_reply);
  if (!send_padding) reply.resize(kExportNameReplyNoZeroesSize);
  s.Send(Server().Raw(reply)).Snapshot();
  if (send_padding) s.Do(Describe);
  return s;
}

TEST(ClientHandshake, ExportNameFallbackWithNoZeroes) {
  RunResult r =
      RunAllModes(ExportNameFallback(kFlagFixedNewstyle | kFlagNoZeroes,
                                     /*no_zeroes_reply=*/true, true));
  EXPECT_THAT(r.log, ElementsAre("Connected", "phase=ready in_flight=0",
                                 "protocol=newstyle-fixed size=2048 flags=5 "
                                 "sr=0 eh=0 contexts=0"));
}

TEST(ClientHandshake, ExportNameFallbackWithoutNoZeroesWaitsForPadding) {
  RunResult partial = RunAllModes(ExportNameFallback(kFlagFixedNewstyle,
                                                     /*no_zeroes_reply=*/false,
                                                     /*send_padding=*/false));
  EXPECT_THAT(partial.log, ElementsAre("phase=connecting in_flight=0"))
      << "10 of 134 bytes must not finish the handshake";
  RunResult full =
      RunAllModes(ExportNameFallback(kFlagFixedNewstyle,
                                     /*no_zeroes_reply=*/false, true));
  EXPECT_THAT(full.log, ElementsAre("Connected", "phase=ready in_flight=0",
                                    "protocol=newstyle-fixed size=2048 "
                                    "flags=5 sr=0 eh=0 contexts=0"));
}

// ---- Failures -----------------------------------------------------------

Scenario UpToGo(ClientOptions o = {}) {
  o.request_extended_headers = false;
  o.request_structured_replies = false;
  Scenario s(o);
  s.Send(Server().Greeting())
      .Expect(
          ClientSends()
              .Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes)
              .OptInfoRequest(Option::kGo, o.export_name, ExpectedGoInfos(o))
              .Nothing());
  return s;
}

TEST(ClientHandshake, ExportSizeAboveInt64MaxIsRefused) {
  Scenario s = UpToGo();
  s.Send(Server()
             .RepInfoExport(Option::kGo, uint64_t{1} << 63, kFlags)
             .RepAck(Option::kGo));
  RunResult r = RunAllModes(s);
  ASSERT_FALSE(r.log.empty());
  EXPECT_EQ(r.log.back(), "Dead EOVERFLOW");
  EXPECT_THAT(LinesStartingWith(r.log, "Connected"), ElementsAre());
}

TEST(ClientHandshake, AckWithoutInfoExportIsRefused) {
  Scenario s = UpToGo();
  s.Send(Server().RepInfoName(Option::kGo, "x").RepAck(Option::kGo));
  RunResult r = RunAllModes(s);
  ASSERT_EQ(r.log.size(), 1u);
  EXPECT_THAT(r.log.back(), StartsWith("Dead"));
}

TEST(ClientHandshake, GoErrorKillsTheConnectionWithTheServerMessage) {
  ClientOptions o;
  o.export_name = "missing";
  Scenario s = UpToGo(o);
  s.Send(Server().RepError(Option::kGo, OptionReplyType::kErrUnknown,
                           "no such export"))
      .Expect(ClientSends().Opt(Option::kAbort).Nothing());
  RunResult r = RunAllModes(s);
  ASSERT_FALSE(r.log.empty());
  EXPECT_EQ(r.log.back(), "Dead ENOENT");
  EXPECT_THAT(r.MessageOf("Dead"), HasSubstr("no such export"));
  EXPECT_THAT(LinesStartingWith(r.log, "Connected"), ElementsAre());
}

TEST(ClientHandshake, BadGreetingMagicKillsTheConnection) {
  Scenario s;
  s.Send(Server().Raw(Bytes(18, 0x42)));
  RunResult r = RunAllModes(s);
  ASSERT_EQ(r.log.size(), 1u);
  EXPECT_THAT(r.log[0], StartsWith("Dead"));
}

TEST(ClientHandshake, EofDuringHandshakeKillsTheConnection) {
  Scenario s;
  s.Send(Server().Greeting()).Eof();
  RunResult r = RunAllModes(s);
  ASSERT_EQ(r.log.size(), 1u);
  EXPECT_THAT(r.log[0], StartsWith("Dead"));
}

TEST(ClientHandshake, OptionReplyForAnotherOptionKillsTheConnection) {
  Scenario s = UpToGo();
  s.Send(Server().RepAck(Option::kList));
  RunResult r = RunAllModes(s);
  ASSERT_EQ(r.log.size(), 1u);
  EXPECT_THAT(r.log[0], StartsWith("Dead"));
}

// ---- TLS ----------------------------------------------------------------

TEST(ClientHandshakeTls, RequireRefusesOldstyle) {
  ClientOptions o;
  o.tls = TlsPolicy::kRequire;
  Scenario s(o);
  s.Send(Server().Oldstyle(4096, kFlags));
  RunResult r = RunAllModes(s);
  ASSERT_EQ(r.log.size(), 1u);
  EXPECT_THAT(r.log[0], StartsWith("Dead"));
}

TEST(ClientHandshakeTls, RequireRefusesNonFixedNewstyle) {
  ClientOptions o;
  o.tls = TlsPolicy::kRequire;
  Scenario s(o);
  s.Send(Server().Greeting(kFlagNoZeroes));
  RunResult r = RunAllModes(s);
  ASSERT_FALSE(r.log.empty());
  EXPECT_THAT(r.log.back(), StartsWith("Dead"));
  EXPECT_THAT(LinesStartingWith(r.log, "Connected"), ElementsAre());
}

TEST(ClientHandshakeTls, RequireWithStartTlsRefusedAbortsAndDies) {
  ClientOptions o;
  o.tls = TlsPolicy::kRequire;
  Scenario s(o);
  s.Send(Server().Greeting())
      .Expect(ClientSends()
                  .Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes)
                  .Opt(Option::kStartTls)
                  .Nothing())
      .Send(Server().RepError(Option::kStartTls, OptionReplyType::kErrPolicy))
      .Expect(ClientSends().Opt(Option::kAbort).Nothing());
  RunResult r = RunAllModes(s);
  ASSERT_FALSE(r.log.empty());
  EXPECT_THAT(r.log.back(), StartsWith("Dead"));
  EXPECT_THAT(LinesStartingWith(r.log, "StartTls"), ElementsAre());
}

// Allow means "TLS if the server can": servers that cannot do STARTTLS at
// all are used in plaintext.
TEST(ClientHandshakeTls, AllowUsesAnOldstyleServerInPlaintext) {
  ClientOptions o;
  o.tls = TlsPolicy::kAllow;
  Scenario s(o);
  s.Send(Server().Oldstyle(4096, kFlags)).Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ElementsAre("Connected", "phase=ready in_flight=0"));
}

TEST(ClientHandshakeTls, AllowUsesANonFixedServerInPlaintext) {
  ClientOptions o;
  o.tls = TlsPolicy::kAllow;
  o.export_name = "e";
  Scenario s(o);
  s.Send(Server().Greeting(kFlagNoZeroes))
      .Expect(
          ClientSends().Flags(kClientFlagNoZeroes).OptExportName("e").Nothing())
      .Send(Server().ExportNameReply(4096, kFlags, /*no_zeroes=*/true))
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ElementsAre("Connected", "phase=ready in_flight=0"));
}

// Require in option mode: STARTTLS comes before the client parks, so the
// caller's options never go out in plaintext.
TEST(ClientHandshakeTls, RequireInOptionModeStartsTlsBeforeParking) {
  ClientOptions o;
  o.tls = TlsPolicy::kRequire;
  o.option_mode = true;
  Scenario s(o);
  s.Send(Server().Greeting())
      .Expect(ClientSends()
                  .Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes)
                  .Opt(Option::kStartTls)
                  .Nothing())
      .Snapshot()
      .Send(Server().RepError(Option::kStartTls, OptionReplyType::kErrPolicy))
      .Expect(ClientSends().Opt(Option::kAbort).Nothing())
      .Eof();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ::testing::Contains("phase=connecting in_flight=0"));
  EXPECT_THAT(LinesStartingWith(r.log, "Negotiating"), ElementsAre());
  ASSERT_FALSE(r.log.empty());
  EXPECT_THAT(r.log.back(), StartsWith("Dead ENOTSUP"));
}

TEST(ClientHandshakeTls, AllowWithStartTlsRefusedContinuesInPlaintext) {
  ClientOptions o;
  o.tls = TlsPolicy::kAllow;
  o.request_extended_headers = false;
  Scenario s(o);
  s.Send(Server().Greeting())
      .Expect(ClientSends()
                  .Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes)
                  .Opt(Option::kStartTls)
                  .Nothing())
      .Send(Server().RepError(Option::kStartTls, OptionReplyType::kErrUnsup))
      .Expect(ClientSends().Opt(Option::kStructuredReply).Nothing())
      .Send(Server().RepAck(Option::kStructuredReply))
      .Expect(
          ClientSends()
              .OptMeta(Option::kSetMetaContext, "", {kContextBaseAllocation})
              .Nothing())
      .Send(Server()
                .RepMetaContext(Option::kSetMetaContext, 1,
                                kContextBaseAllocation)
                .RepAck(Option::kSetMetaContext))
      .Expect(ClientSends()
                  .OptInfoRequest(Option::kGo, "", ExpectedGoInfos(o))
                  .Nothing())
      .Send(
          Server().RepInfoExport(Option::kGo, 4096, kFlags).RepAck(Option::kGo))
      .Do([](Client& c, RunContext&) {
        return "tls=" + std::to_string(c.tls_negotiated());
      });
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ElementsAre("Connected", "tls=0"));
}

// After the STARTTLS ACK the client stops consuming input exactly at the
// end of the ACK (the rest would be TLS records) until TlsHandshakeDone().
TEST(ClientHandshakeTls, StartTlsAckPausesInputThenRenegotiates) {
  ClientOptions o;
  o.tls = TlsPolicy::kRequire;
  Scenario s(o);
  Bytes early = Pattern(7);  // what a TLS ClientHello reply would be
  s.Send(Server().Greeting())
      .Expect(ClientSends()
                  .Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes)
                  .Opt(Option::kStartTls)
                  .Nothing())
      .Send(Server().RepAck(Option::kStartTls))
      .Expect(ClientSends().Nothing())
      .Call("TlsHandshakeDone",
            [](Client& c, RunContext&) { return c.TlsHandshakeDone(); })
      .Expect(ClientSends().Opt(Option::kExtendedHeaders).Nothing())
      .Send(Server().RepAck(Option::kExtendedHeaders))
      .Context([](RunContext& ctx) { ctx.extended = true; })
      .Expect(
          ClientSends()
              .OptMeta(Option::kSetMetaContext, "", {kContextBaseAllocation})
              .Nothing())
      .Send(Server()
                .RepMetaContext(Option::kSetMetaContext, 1,
                                kContextBaseAllocation)
                .RepAck(Option::kSetMetaContext))
      .Expect(ClientSends()
                  .OptInfoRequest(Option::kGo, "", ExpectedGoInfos(o))
                  .Nothing())
      .Send(
          Server().RepInfoExport(Option::kGo, 4096, kFlags).RepAck(Option::kGo))
      .Do([](Client& c, RunContext&) {
        return "tls=" + std::to_string(c.tls_negotiated()) +
               " eh=" + std::to_string(c.extended_headers());
      });
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ElementsAre("StartTls", "call TlsHandshakeDone -> ok",
                                 "Connected", "tls=1 eh=1"));
}

TEST(ClientHandshakeTls, InputStopsExactlyAtTheStartTlsAckEnd) {
  ClientOptions o;
  o.tls = TlsPolicy::kAllow;
  Scenario s(o);
  s.Send(Server().Greeting())
      .Send(Server().RepAck(Option::kStartTls).Raw(Pattern(7)))
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ElementsAre("StartTls", "InputStalled left=7",
                                 "phase=connecting in_flight=0",
                                 "InputStalled left=7"));
}

TEST(ClientHandshakeTls, FailedTlsHandshakeKillsTheConnection) {
  ClientOptions o;
  o.tls = TlsPolicy::kAllow;
  Scenario s(o);
  s.Send(Server().Greeting())
      .Send(Server().RepAck(Option::kStartTls))
      .Do([](Client& c, RunContext&) {
        c.TlsHandshakeFailed(ErrnoStatus(ECONNRESET, "bad certificate"));
        return "";
      });
  RunResult r = RunAllModes(s);
  ASSERT_EQ(r.log.size(), 2u);
  EXPECT_EQ(r.log[0], "StartTls");
  EXPECT_THAT(r.log[1], StartsWith("Dead"));
}

// ---- Option mode ------------------------------------------------------------

// Greeting, EH refused, SR acked, then parked in kNegotiating.
Scenario Parked(ClientOptions o = {}) {
  o.option_mode = true;
  Scenario s(o);
  s.Send(Server().Greeting())
      .Expect(ClientSends()
                  .Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes)
                  .Opt(Option::kExtendedHeaders)
                  .Nothing())
      .Send(Server().RepError(Option::kExtendedHeaders,
                              OptionReplyType::kErrUnsup))
      .Expect(ClientSends().Opt(Option::kStructuredReply).Nothing())
      .Send(Server().RepAck(Option::kStructuredReply))
      .Expect(ClientSends().Nothing())
      .Snapshot();
  return s;
}

TEST(ClientOptionMode, ParksAfterStructuredReply) {
  RunResult r = RunAllModes(Parked());
  EXPECT_THAT(r.log,
              ElementsAre("Negotiating", "phase=negotiating in_flight=0"));
}

// Parked, the client still reads: EOF or stray bytes from the server end the
// connection at once instead of going unnoticed until the next option.
TEST(ClientOptionMode, EofWhileParkedKillsTheConnection) {
  Scenario s = Parked();
  s.Eof().Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ContainsInOrder(std::vector<std::string>{
                         "Negotiating", "phase=negotiating in_flight=0"}));
  ASSERT_FALSE(r.log.empty());
  EXPECT_THAT(r.log, Contains(StartsWith("Dead ECONNRESET")));
  EXPECT_EQ(r.log.back(), "phase=dead in_flight=0");
}

TEST(ClientOptionMode, StrayBytesWhileParkedKillTheConnection) {
  Scenario s = Parked();
  s.Send(Server().Raw({0x12, 0x34})).Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, Contains("Dead EPROTO"));
  EXPECT_EQ(r.log.back(), "phase=dead in_flight=0");
}

// An asynchronous receive (io_uring) posted while parked may complete after
// the caller started an option: its byte belongs to that option's reply.
TEST(ClientOptionMode, ProbeByteFromBeforeAnOptionFeedsItsReply) {
  ClientOptions o;
  o.option_mode = true;
  Client c(o);
  RunContext ctx;
  Bytes greeting = Server().Greeting().Build(ctx);
  ASSERT_TRUE(c.Feed(greeting).ok());
  auto drain = [&c] {
    IoSlice slices[8];
    size_t n = c.PeekOutput(absl::MakeSpan(slices));
    size_t bytes = 0;
    for (size_t i = 0; i < n; ++i) bytes += slices[i].size;
    ASSERT_TRUE(c.ConsumeOutput(bytes).ok());
  };
  drain();
  ASSERT_TRUE(
      c.Feed(Server()
                 .RepError(Option::kExtendedHeaders, OptionReplyType::kErrUnsup)
                 .Build(ctx))
          .ok());
  drain();
  ASSERT_TRUE(
      c.Feed(Server().RepAck(Option::kStructuredReply).Build(ctx)).ok());
  ASSERT_EQ(c.phase(), ClientPhase::kNegotiating);
  EXPECT_EQ(c.wants(), Direction::kRead);

  absl::Span<uint8_t> probe = c.RecvBuffer();  // "posted" to the kernel
  ASSERT_EQ(probe.size(), 1u);
  ASSERT_TRUE(c.OptList().ok());
  drain();
  Bytes reply = Server().RepServer("x").RepAck(Option::kList).Build(ctx);
  probe[0] = reply[0];  // the receive completes with one byte
  ASSERT_TRUE(c.CommitRecv(1).ok());
  ASSERT_TRUE(c.Feed(absl::MakeConstSpan(reply).subspan(1)).ok());
  std::vector<std::string> names;
  std::optional<absl::Status> done;
  while (auto e = c.PollEvent()) {
    if (auto* l = std::get_if<ExportListed>(&*e)) names.push_back(l->name);
    if (auto* d = std::get_if<OptionCompleted>(&*e)) done = d->status;
  }
  EXPECT_THAT(names, ElementsAre("x"));
  ASSERT_TRUE(done.has_value());
  EXPECT_TRUE(done->ok()) << *done;
  EXPECT_EQ(c.phase(), ClientPhase::kNegotiating);
  // A probe that saw nothing (CommitRecv(0)) changes nothing; more than the
  // probe's one byte is a caller error.
  ASSERT_EQ(c.RecvBuffer().size(), 1u);
  EXPECT_TRUE(c.CommitRecv(0).ok());
  ASSERT_EQ(c.RecvBuffer().size(), 1u);
  EXPECT_EQ(c.CommitRecv(2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.phase(), ClientPhase::kNegotiating);
}

TEST(ClientOptionMode, OptList) {
  Scenario s = Parked();
  s.Call("OptList", [](Client& c, RunContext&) { return c.OptList(); })
      .Expect(ClientSends().Opt(Option::kList).Nothing())
      .Snapshot()
      .Send(
          Server().RepServer("a", "first").RepServer("b").RepAck(Option::kList))
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log,
              ContainsInOrder(std::vector<std::string>{
                  "call OptList -> ok", "phase=connecting in_flight=0",
                  "ExportListed name=a description=first",
                  "ExportListed name=b description=", "OptionCompleted LIST ok",
                  "phase=negotiating in_flight=0"}));
}

TEST(ClientOptionMode, OptListFailureReportsTheError) {
  Scenario s = Parked();
  s.Call("OptList", [](Client& c, RunContext&) { return c.OptList(); })
      .Send(Server().RepError(Option::kList, OptionReplyType::kErrPolicy))
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ContainsInOrder(std::vector<std::string>{
                         "OptionCompleted LIST EPERM",
                         "phase=negotiating in_flight=0"}));
  EXPECT_THAT(LinesStartingWith(r.log, "ExportListed"), ElementsAre());
}

TEST(ClientOptionMode, OptInfoFillsExportDetails) {
  ClientOptions o;
  Scenario s = Parked(o);
  o.option_mode = true;
  s.Call("SetExportName",
         [](Client& c, RunContext&) { return c.SetExportName("e1"); })
      .Call("OptInfo", [](Client& c, RunContext&) { return c.OptInfo(); })
      .Expect(ClientSends()
                  .OptInfoRequest(Option::kInfo, "e1", ExpectedGoInfos(o))
                  .Nothing())
      .Send(Server()
                .RepInfoExport(Option::kInfo, 12345, kFlags)
                .RepAck(Option::kInfo))
      .Snapshot()
      .Do([](Client& c, RunContext&) {
        return "size=" + std::to_string(c.export_size().value_or(0)) +
               " flush=" + std::to_string(c.can_flush());
      });
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log,
              ContainsInOrder(std::vector<std::string>{
                  "call SetExportName -> ok", "call OptInfo -> ok",
                  "OptionCompleted INFO ok", "phase=negotiating in_flight=0",
                  "size=12345 flush=1"}));
}

// INFO must carry NBD_INFO_EXPORT before its ACK, and a size the client can
// represent; either failure fails just that option.
TEST(ClientOptionMode, OptInfoWithoutExportOrWithHugeSizeFails) {
  Scenario s = Parked();
  s.Call("OptInfo", [](Client& c, RunContext&) { return c.OptInfo(); })
      .Expect(ClientSends().SkipAll())
      .Send(Server().RepInfoName(Option::kInfo, "x").RepAck(Option::kInfo))
      .Snapshot()
      .Call("OptInfo", [](Client& c, RunContext&) { return c.OptInfo(); })
      .Expect(ClientSends().SkipAll())
      .Send(Server()
                .RepInfoExport(Option::kInfo, uint64_t{1} << 63, kFlags)
                .RepAck(Option::kInfo))
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.log,
      ContainsInOrder(std::vector<std::string>{
          "OptionCompleted INFO EPROTO", "phase=negotiating in_flight=0",
          "OptionCompleted INFO EOVERFLOW", "phase=negotiating in_flight=0"}));
}

// NBD_REP_ERR_SHUTDOWN during the automatic handshake: the client sends
// NBD_OPT_ABORT (the spec's soft disconnect) and the connection ends.
TEST(ClientHandshake, ErrShutdownDuringTheHandshakeAbortsThenEnds) {
  Scenario s;
  s.Send(Server().Greeting())
      .Expect(ClientSends()
                  .Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes)
                  .Opt(Option::kExtendedHeaders)
                  .Nothing())
      .Send(Server().RepError(Option::kExtendedHeaders,
                              OptionReplyType::kErrShutdown, "going down"))
      .Expect(ClientSends().Opt(Option::kAbort).Nothing())
      .Eof()
      .Snapshot();
  RunResult r = RunAllModes(s);
  ASSERT_GE(r.log.size(), 2u);
  EXPECT_THAT(r.log, ::testing::Contains("ShutdownWrite"));
  EXPECT_EQ(r.log[r.log.size() - 2], "Dead ESHUTDOWN");
  EXPECT_THAT(r.MessageOf("Dead"), HasSubstr("going down"));
  EXPECT_THAT(LinesStartingWith(r.log, "Connected"), ElementsAre());
}

TEST(ClientOptionMode, OptListMetaContext) {
  Scenario s = Parked();
  s.Call("OptListMetaContext",
         [](Client& c, RunContext&) {
           return c.OptListMetaContext({"base:", "qemu:x"});
         })
      .Expect(ClientSends()
                  .OptMeta(Option::kListMetaContext, "", {"base:", "qemu:x"})
                  .Nothing())
      .Send(Server()
                .RepMetaContext(Option::kListMetaContext, 0,
                                kContextBaseAllocation)
                .RepAck(Option::kListMetaContext));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ContainsInOrder(std::vector<std::string>{
                         "MetaContextListed id=0 name=base:allocation",
                         "OptionCompleted LIST_META_CONTEXT ok"}));
}

TEST(ClientOptionMode, OptSetMetaContextThenGo) {
  ClientOptions o;
  o.option_mode = true;
  Scenario s = Parked(o);
  s.Call("OptSetMetaContext",
         [](Client& c, RunContext&) {
           return c.OptSetMetaContext({"qemu:dirty-bitmap:x"});
         })
      .Expect(ClientSends()
                  .OptMeta(Option::kSetMetaContext, "", {"qemu:dirty-bitmap:x"})
                  .Nothing())
      .Send(
          Server()
              .RepMetaContext(Option::kSetMetaContext, 5, "qemu:dirty-bitmap:x")
              .RepAck(Option::kSetMetaContext))
      .Call("OptGo", [](Client& c, RunContext&) { return c.OptGo(); })
      // The user's selection stands: GO follows without another SET.
      .Expect(ClientSends()
                  .OptInfoRequest(Option::kGo, "", ExpectedGoInfos(o))
                  .Nothing())
      .Send(
          Server().RepInfoExport(Option::kGo, 4096, kFlags).RepAck(Option::kGo))
      .Snapshot()
      .Do([](Client& c, RunContext&) {
        return "id=" +
               std::to_string(
                   c.meta_context_id("qemu:dirty-bitmap:x").value_or(0));
      });
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log,
              ContainsInOrder(std::vector<std::string>{
                  "MetaContextListed id=5 name=qemu:dirty-bitmap:x",
                  "OptionCompleted SET_META_CONTEXT ok", "call OptGo -> ok",
                  "Connected", "phase=ready in_flight=0", "id=5"}));
  EXPECT_THAT(LinesStartingWith(r.log, "OptionCompleted GO"),
              ElementsAre("OptionCompleted GO ok"));
}

TEST(ClientOptionMode, OptGoSetsDefaultMetaContextFirst) {
  ClientOptions o;
  o.option_mode = true;
  Scenario s = Parked(o);
  s.Call("OptGo", [](Client& c, RunContext&) { return c.OptGo(); })
      .Expect(
          ClientSends()
              .OptMeta(Option::kSetMetaContext, "", {kContextBaseAllocation})
              .Nothing())
      .Send(Server()
                .RepMetaContext(Option::kSetMetaContext, 3,
                                kContextBaseAllocation)
                .RepAck(Option::kSetMetaContext))
      .Expect(ClientSends()
                  .OptInfoRequest(Option::kGo, "", ExpectedGoInfos(o))
                  .Nothing())
      .Send(
          Server().RepInfoExport(Option::kGo, 4096, kFlags).RepAck(Option::kGo))
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log,
              ContainsInOrder(std::vector<std::string>{
                  "call OptGo -> ok", "Connected", "phase=ready in_flight=0"}));
}

TEST(ClientOptionMode, FailedOptGoStaysNegotiating) {
  ClientOptions o;
  o.option_mode = true;
  o.request_base_allocation = false;
  Scenario s = Parked(o);
  s.Call("OptGo", [](Client& c, RunContext&) { return c.OptGo(); })
      .Expect(ClientSends()
                  .OptInfoRequest(Option::kGo, "", ExpectedGoInfos(o))
                  .Nothing())
      .Send(
          Server().RepError(Option::kGo, OptionReplyType::kErrUnknown, "nope"))
      .Expect(ClientSends().Nothing())
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ContainsInOrder(std::vector<std::string>{
                         "call OptGo -> ok", "OptionCompleted GO ENOENT",
                         "phase=negotiating in_flight=0"}));
  EXPECT_THAT(r.MessageOf("OptionCompleted GO"), HasSubstr("nope"));
  EXPECT_THAT(LinesStartingWith(r.log, "Dead"), ElementsAre());
}

TEST(ClientOptionMode, OptAbortShutsDownWritesThenCloses) {
  Scenario s = Parked();
  s.Call("OptAbort", [](Client& c, RunContext&) { return c.OptAbort(); })
      .Expect(ClientSends().Opt(Option::kAbort).Nothing())
      .Eof()
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ContainsInOrder(std::vector<std::string>{
                         "call OptAbort -> ok", "ShutdownWrite", "Closed",
                         "phase=closed in_flight=0"}));
}

TEST(ClientOptionMode, OptCallsOutsideNegotiatingFail) {
  Scenario s = ConnectedScenario();
  s.Call("OptList", [](Client& c, RunContext&) { return c.OptList(); })
      .Call("OptGo", [](Client& c, RunContext&) { return c.OptGo(); })
      .Call("SetExportName",
            [](Client& c, RunContext&) { return c.SetExportName("x"); })
      .Expect(ClientSends().Nothing());
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("call OptList -> EINVAL", "call OptGo -> EINVAL",
                          "call SetExportName -> EINVAL"));
}

TEST(ClientOptionMode, ExportNameTooLong) {
  Scenario s = Parked();
  s.Call("SetExportName", [](Client& c, RunContext&) {
    return c.SetExportName(std::string(4097, 'a'));
  });
  RunResult r = RunAllModes(s);
  EXPECT_THAT(LinesStartingWith(r.log, "call"),
              ElementsAre("call SetExportName -> ENAMETOOLONG"));
}

}  // namespace
}  // namespace nbd::testing
