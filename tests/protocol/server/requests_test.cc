// Requests in transmission, scripted with the server kit
// (//protocol/testing:server_kit) and so replayed under every input split
// and both input paths: what reaches the embedder, what the session answers
// itself, and how the connection ends.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/constants.h"
#include "protocol/server/server.h"
#include "protocol/testing/server_handshake.h"
#include "protocol/testing/server_runner.h"
#include "protocol/testing/server_script.h"
#include "protocol/wire.h"
#include "tests/protocol/server/test_util.h"

namespace nbd::testing {
namespace {

using ::testing::ElementsAre;

constexpr uint64_t kDiskSize = 1 << 20;  // test::TestOptions()' "disk"

// The three header forms a session can be in after the handshake.
enum class Form { kSimple, kStructured, kExtended };

ServerScenario Negotiated(Form form, ServerOptions o = test::TestOptions(),
                          std::string export_name = "disk") {
  Negotiation n;
  n.export_name = std::move(export_name);
  n.structured_replies = form != Form::kSimple;
  n.extended_headers = form == Form::kExtended;
  return NegotiatedScenario(std::move(o), n);
}

// The session's error reply to `label` in `form`: a chunk under extended
// headers (and for READ under structured replies), else a simple reply.
ServerSends ErrorReply(Form form, const std::string& label, NbdError error) {
  if (form == Form::kExtended) {
    return std::move(ServerSends().ChunkError(label, error).Nothing());
  }
  return std::move(ServerSends().Simple(label, error).Nothing());
}

TEST(ServerRequests, WritePayloadReachesTheEmbedder) {
  for (Form form : {Form::kSimple, Form::kStructured, Form::kExtended}) {
    ServerScenario s = Negotiated(form);
    s.Send(ClientBytes().Write("w", 10, {9, 8, 7, 6, 5}, kCmdFlagFua))
        .ReplyOk("w");
    if (form == Form::kExtended) {  // NONE chunk echoing the offset
      s.Expect(ServerSends().ChunkNone("w").Nothing());
    } else {
      s.Expect(ServerSends().Simple("w").Nothing());
    }
    ServerRunResult r = RunAllModes(s);
    EXPECT_THAT(r.AfterTransmissionStarted(),
                ElementsAre(form == Form::kExtended
                                ? "Request w WRITE offset=10 length=5 "
                                  "flags=0x21 payload=5"
                                : "Request w WRITE offset=10 length=5 "
                                  "flags=0x1 payload=5",
                            "reply w ok -> ok"));
    EXPECT_EQ(r.payloads["w"], (Bytes{9, 8, 7, 6, 5}));
  }
}

// Each rejected request is answered by the session, never reported, and
// leaves the stream in sync: the READ after them all reaches the embedder.
TEST(ServerRequests, SessionRejectsInvalidRequests) {
  struct Case {
    Command command;
    uint64_t offset, length;
    uint16_t flags;
    NbdError error;
  };
  const Case cases[] = {
      {static_cast<Command>(42), 0, 0, 0, NbdError::kInval},  // unknown
      {Command::kResize, 0, 0, 0, NbdError::kInval},          // unsupported
      {Command::kRead, 0, 8, 1u << 9, NbdError::kInval},      // unknown flag
      {Command::kRead, 0, 8, kCmdFlagFua, NbdError::kInval},  // wrong flag
      {Command::kRead, 0, 8, kCmdFlagDf, NbdError::kInval},   // no SR
      {Command::kRead, 0, 8, kCmdFlagPayloadLen, NbdError::kInval},  // no EH
      {Command::kRead, kDiskSize - 4, 8, 0, NbdError::kInval},       // past end
      {Command::kRead, ~uint64_t{0}, 8, 0, NbdError::kInval},        // overflow
      {Command::kTrim, kDiskSize, 1, 0, NbdError::kNoSpc},
      {Command::kWriteZeroes, kDiskSize - 1, 2, 0, NbdError::kNoSpc},
      {Command::kRead, 0, 512 * 1024, 0, NbdError::kOverflow},  // > max_block
      {Command::kBlockStatus, 0, 8, 0, NbdError::kInval},       // no context
  };
  ServerScenario s = Negotiated(Form::kSimple);
  for (const Case& c : cases) {
    s.Send(ClientBytes().Req("x", c.command, c.offset, c.length, c.flags))
        .Expect(ServerSends().Simple("x", c.error).Nothing());
  }
  s.Send(ClientBytes().Write("x", kDiskSize - 2, Bytes(4, 1)))
      .Expect(ServerSends().Simple("x", NbdError::kNoSpc).Nothing())
      .Send(ClientBytes().Write("x", 0, Bytes(300000, 1)))
      .Expect(ServerSends().Simple("x", NbdError::kOverflow).Nothing())
      .Send(ClientBytes().Req("ok", Command::kRead, 0, 8));
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(),
              ElementsAre("Request ok READ offset=0 length=8"));
}

TEST(ServerRequests, ReadOnlyExportRefusesWrites) {
  ServerScenario s = Negotiated(Form::kExtended, test::TestOptions(), "ro");
  s.Send(ClientBytes().Write("w", 0, {1, 2}))
      .Expect(ErrorReply(Form::kExtended, "w", NbdError::kPerm))
      .Send(ClientBytes().Req("t", Command::kTrim, 0, 2))
      .Expect(ErrorReply(Form::kExtended, "t", NbdError::kPerm))
      .Send(ClientBytes().Req("z", Command::kWriteZeroes, 0, 2))
      .Expect(ErrorReply(Form::kExtended, "z", NbdError::kPerm))
      .Send(ClientBytes().Req("f", Command::kFlush, 0, 0));
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(),
              ElementsAre("Request f FLUSH offset=0 length=0"));
}

TEST(ServerRequests, UnadvertisedCommandsAreInvalid) {
  ServerOptions o = test::TestOptions();
  ExportInfo& e = o.exports[0];
  e.can_flush = e.can_trim = e.can_zero = e.can_cache = e.can_fua = false;
  ServerScenario s = Negotiated(Form::kSimple, o);
  s.Send(ClientBytes()
             .Req("flush", Command::kFlush, 0, 0)
             .Req("trim", Command::kTrim, 0, 8)
             .Req("zero", Command::kWriteZeroes, 0, 8)
             .Req("cache", Command::kCache, 0, 8)
             .Write("fua", 0, {1}, kCmdFlagFua))
      .Expect(ServerSends()
                  .Simple("flush", NbdError::kInval)
                  .Simple("trim", NbdError::kInval)
                  .Simple("zero", NbdError::kInval)
                  .Simple("cache", NbdError::kInval)
                  .Simple("fua", NbdError::kInval)
                  .Nothing());
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(), ElementsAre());
}

TEST(ServerRequests, MisalignedRequestsAreInvalid) {
  ServerOptions o = test::TestOptions();
  o.exports[0].min_block = 512;
  ServerScenario s = Negotiated(Form::kSimple, o);
  s.Send(ClientBytes()
             .Req("offset", Command::kRead, 100, 512)
             .Req("length", Command::kRead, 512, 100))
      .Expect(ServerSends()
                  .Simple("offset", NbdError::kInval)
                  .Simple("length", NbdError::kInval)
                  .Nothing());
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(), ElementsAre());
}

// A BLOCK_STATUS payload (PAYLOAD_LEN) is read and skipped: the READ after
// it is parsed from the right byte.
TEST(ServerRequests, ExtendedPayloadOnBlockStatusIsSkipped) {
  Negotiation n;
  n.export_name = "disk";
  n.extended_headers = true;
  n.base_allocation = true;
  ServerScenario s = NegotiatedScenario(test::TestOptions(), n);
  const Bytes payload = EncodeBlockStatusPayload({4096, {1}});
  s.Send(ClientBytes()
             .Req("bs", Command::kBlockStatus, 0, payload.size(),
                  kCmdFlagPayloadLen)
             .Raw(payload)
             .Req("r", Command::kRead, 0, 8))
      .Expect(ErrorReply(Form::kExtended, "bs", NbdError::kInval));
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(),
              ElementsAre("Request r READ offset=0 length=8"));
}

TEST(ServerRequests, DiscFinishesOutstandingRepliesThenCloses) {
  ServerScenario s = Negotiated(Form::kStructured);
  s.Send(ClientBytes()
             .Req("r", Command::kRead, 0, 4)
             .Req("disc", Command::kDisc, 0, 0)
             .Req("late", Command::kRead, 0, 4))  // nothing may follow DISC
      .Snapshot()
      .Do([](ServerSession& session, ServerRunContext&) {
        return absl::StrCat("wants=", static_cast<int>(session.wants()));
      })
      .ReplyReadPieces("r", {ServerScenario::Piece::Hole(4)})
      .Expect(ServerSends().ChunkHole("r", 0, 4, /*done=*/true).Nothing());
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(),
              ElementsAre("Request r READ offset=0 length=4",
                          "phase=closing in_flight=1",
                          "wants=0",  // kNone: waiting for the embedder
                          "reply r read -> ok", "Closed"));
}

TEST(ServerRequests, EofAtABoundaryClosesInsideAMessageKills) {
  ServerScenario at_boundary = Negotiated(Form::kSimple);
  at_boundary.Eof();
  EXPECT_THAT(RunAllModes(at_boundary).AfterTransmissionStarted(),
              ElementsAre("Closed"));

  ServerScenario inside = Negotiated(Form::kSimple);
  inside.Send(ClientBytes().Req("w", Command::kWrite, 0, 8).Raw({1})).Eof();
  ServerRunResult r = RunAllModes(inside);
  EXPECT_THAT(r.AfterTransmissionStarted(), ElementsAre("Dead ECONNRESET"));
}

// At max_in_flight the session stops reading; a reply lets it go on.
TEST(ServerRequests, InFlightLimitPausesInput) {
  ServerOptions o = test::TestOptions();
  o.max_in_flight = 2;
  ServerScenario s = Negotiated(Form::kSimple, o);
  s.Send(ClientBytes()
             .Req("a", Command::kFlush, 0, 0)
             .Req("b", Command::kFlush, 0, 0)
             .Req("c", Command::kFlush, 0, 0))
      .Snapshot()
      .ReplyOk("a");
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterTransmissionStarted(),
      ElementsAre("Request a FLUSH offset=0 length=0",
                  "Request b FLUSH offset=0 length=0", "InputStalled left=28",
                  "phase=transmission in_flight=2", "InputStalled left=28",
                  "reply a ok -> ok", "Request c FLUSH offset=0 length=0"));
}

}  // namespace
}  // namespace nbd::testing
