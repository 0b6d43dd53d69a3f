// The server kit (protocol/testing/server_*.h) against the real session: its
// handshake helper, the step kinds, the runner's invariants, and the
// failures it reports when a check does not match.
#include <cerrno>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "protocol/constants.h"
#include "protocol/server/server.h"
#include "protocol/testing/server_handshake.h"
#include "protocol/testing/server_runner.h"
#include "protocol/testing/server_script.h"
#include "protocol/testing/text.h"

namespace nbd::testing {
namespace {

using ::testing::ElementsAre;

constexpr uint16_t kNone = static_cast<uint16_t>(ChunkType::kNone);

class ServerKitFormats : public ::testing::TestWithParam<bool> {
 protected:
  ServerScenario Negotiated(bool base_allocation = false) {
    Negotiation n;
    n.extended_headers = GetParam();
    n.base_allocation = base_allocation;
    return NegotiatedScenario(ServingOnly(), n);
  }
  std::string Started() const {
    return absl::StrCat("TransmissionStarted export=0 structured=1 extended=",
                        GetParam() ? 1 : 0);
  }
};

INSTANTIATE_TEST_SUITE_P(CompactAndExtended, ServerKitFormats,
                         ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Extended" : "Compact";
                         });

TEST_P(ServerKitFormats, NegotiationReachesTransmission) {
  ServerRunResult r = RunAllModes(Negotiated(/*base_allocation=*/true));
  EXPECT_THAT(r.log, ElementsAre(Started()));
}

TEST_P(ServerKitFormats, WriteAndReadAreReportedAndAnswered) {
  ServerScenario s = Negotiated();
  s.Send(ClientBytes()
             .Write("w", 4096, Pattern(512, 3), kCmdFlagFua)
             .Req("r", Command::kRead, 0, 8))
      .ReplyOk("w")
      .ReplyRead("r", Pattern(8));
  ServerSends replies;
  if (GetParam()) {
    replies.Chunk("w", kReplyFlagDone, kNone, Bytes{});
  } else {
    replies.Simple("w");
  }
  s.Expect(std::move(
      replies.ChunkData("r", 0, Pattern(8), /*done=*/true).Nothing()));
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(),
              ElementsAre(GetParam() ? "Request w WRITE offset=4096 length=512 "
                                       "flags=0x21 payload=512"
                                     : "Request w WRITE offset=4096 length=512 "
                                       "flags=0x1 payload=512",
                          "Request r READ offset=0 length=8",
                          "reply w ok -> ok", "reply r read -> ok"));
  EXPECT_EQ(r.payloads["w"], Pattern(512, 3));
}

TEST_P(ServerKitFormats, RejectedRequestIsAnsweredByTheSession) {
  ServerScenario s = Negotiated();
  // Only READ and BLOCK_STATUS errors are chunks before extended headers.
  ServerSends unknown;
  if (GetParam()) {
    unknown.ChunkError("bad", NbdError::kInval);
  } else {
    unknown.Simple("bad", NbdError::kInval);
  }
  s.Send(ClientBytes().Req("bad", static_cast<Command>(42), 0, 0))
      .Expect(std::move(unknown.Nothing()))
      .Send(ClientBytes().Req("bs", Command::kBlockStatus, 0, 4096))
      .Expect(ServerSends().ChunkError("bs", NbdError::kInval).Nothing());
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(), ElementsAre());
}

TEST_P(ServerKitFormats, BlockStatusUsesTheRunsChunkType) {
  ServerScenario s = Negotiated(/*base_allocation=*/true);
  s.Send(ClientBytes().Req("bs", Command::kBlockStatus, 0, 8192))
      .ReplyBlockStatus("bs", {{4096, 0}, {4096, kStateHole | kStateZero}})
      .Expect(ServerSends()
                  .ChunkBlockStatus("bs", kBaseAllocationContextId,
                                    {{4096, 0}, {4096, 3}})
                  .Nothing());
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(),
              ElementsAre("Request bs BLOCK_STATUS offset=0 length=8192",
                          "reply bs block-status -> ok"));
}

TEST_P(ServerKitFormats, ReadErrorAfterSomeData) {
  ServerScenario s = Negotiated();
  s.Send(ClientBytes().Req("r", Command::kRead, 512, 8))
      .ReplyReadError("r", Pattern(4), EIO, "bad sector")
      .Expect(ServerSends()
                  .ChunkData("r", 512, Pattern(4))
                  .ChunkErrorOffset("r", NbdError::kIo, 516, "bad sector")
                  .Nothing());
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(),
              ElementsAre("Request r READ offset=512 length=8",
                          "reply r read-error EIO -> ok"));
}

TEST_P(ServerKitFormats, DiscDrainsRepliesThenCloses) {
  ServerScenario s = Negotiated();
  s.Send(ClientBytes()
             .Req("r", Command::kRead, 0, 4)
             .Req("disc", Command::kDisc, 0, 0)
             .Req("ignored", Command::kFlush, 0, 0))
      .Snapshot()
      .ReplyReadPieces("r", {ServerScenario::Piece::Hole(4)})
      .Expect(ServerSends().ChunkHole("r", 0, 4, /*done=*/true).Nothing());
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterTransmissionStarted(),
      ElementsAre("Request r READ offset=0 length=4",
                  "phase=closing in_flight=1", "reply r read -> ok", "Closed"));
}

TEST(ServerKit, EofInsideARequestKillsTheSession) {
  ServerScenario s = NegotiatedScenario();
  s.Send(ClientBytes().Raw({0x25, 0x60})).Eof();
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(), ElementsAre("Dead ECONNRESET"));
}

TEST(ServerKit, TransportErrorReleasesOutstandingRequests) {
  ServerScenario s = NegotiatedScenario();
  s.Send(ClientBytes().Write("w", 0, Pattern(4)))
      .TransportError(absl::UnavailableError("reset by peer"))
      .ReplyOk("w");
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(),
              ElementsAre("Request w WRITE offset=0 length=4 payload=4",
                          "Dead EIO", "reply w ok -> ENOTCONN"));
  EXPECT_EQ(r.MessageOf("Dead"), "reset by peer");
}

TEST(ServerKit, InFlightLimitStallsInputUntilAReply) {
  ServerOptions o = ServingOnly();
  o.max_in_flight = 1;
  ServerScenario s = NegotiatedScenario(o);
  s.Send(ClientBytes()
             .Req("a", Command::kFlush, 0, 0)
             .Req("b", Command::kFlush, 0, 0))
      .ReplyOk("a")
      .ReplyOk("b")
      .Expect(ServerSends().Simple("a").Simple("b").Nothing());
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterTransmissionStarted(),
      ElementsAre("Request a FLUSH offset=0 length=0", "InputStalled left=28",
                  "reply a ok -> ok", "Request b FLUSH offset=0 length=0",
                  "reply b ok -> ok"));
}

TEST(ServerKit, ReplySentFollowsTheLastByte) {
  ServerOptions o = ServingOnly();
  o.report_reply_sent = true;
  ServerScenario s = NegotiatedScenario(o);
  s.Send(ClientBytes().Req("f", Command::kFlush, 0, 0))
      .HoldOutput()
      .ReplyOk("f")
      .Snapshot()
      .Consume(15)
      .Snapshot()
      .Consume(1)
      .ReleaseOutput()
      .Expect(ServerSends().Simple("f").Nothing());
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(),
              ElementsAre("Request f FLUSH offset=0 length=0",
                          "reply f ok -> ok", "phase=transmission in_flight=0",
                          "phase=transmission in_flight=0", "ReplySent f"));
}

TEST(ServerKit, OptionsAndTheirReplies) {
  ServerOptions o = ServingOnly(CapableExport("disk"));
  o.exports[0].description = "scratch";
  ServerScenario s(o);
  s.Expect(ServerSends().Greeting())
      .Send(ClientBytes().Flags().Opt(Option::kList).OptNumber(99))
      .Expect(ServerSends()
                  .RepServer("disk", "scratch")
                  .RepAck(Option::kList)
                  .Rep(static_cast<Option>(99), OptionReplyType::kErrUnsup)
                  .Nothing())
      .Send(ClientBytes().OptExportName("disk"))
      .Expect(ServerSends()
                  .ExportNameReply(1 << 20,
                                   TransmissionFlags(o.exports[0], false),
                                   /*no_zeroes=*/true)
                  .Nothing());
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ElementsAre("TransmissionStarted export=0 structured=0 "
                                 "extended=0"));
}

// ---- What a failing scenario reports ----------------------------------------

TEST(ServerKitFailures, AWrongExpectationNamesTheStepAndTheBytes) {
  ServerScenario s = NegotiatedScenario();
  s.Send(ClientBytes().Req("r", Command::kRead, (1 << 20) - 4, 8))
      .Expect(ServerSends().Simple("r"));  // it is an ERROR chunk
  EXPECT_NONFATAL_FAILURE(
      RunAllModes(s),
      "step 6 (expect): simple reply to r: expected "
      "67446698000000000000000000000001, got 668e33ef000180010000000000000001");
}

TEST(ServerKitFailures, ReplyToAnUnknownLabelIsLogged) {
  ServerScenario s = NegotiatedScenario();
  s.ReplyOk("nobody");
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(),
              ElementsAre("reply nobody ok -> no request"));
}

TEST(ServerKitFailures, NothingFailsOnExtraBytes) {
  ServerScenario s = NegotiatedScenario();
  s.Send(ClientBytes().Req("r", Command::kRead, 1 << 20, 8))
      .Expect(ServerSends().Nothing());
  EXPECT_NONFATAL_FAILURE(RunAllModes(s),
                          "expected nothing more, but the server sent");
}

}  // namespace
}  // namespace nbd::testing
