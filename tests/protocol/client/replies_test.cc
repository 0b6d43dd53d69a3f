// Reply tests for nbd::Client: simple, structured and extended replies,
// read reassembly, block status, error chunks, and the server mistakes that
// fail only one command (EPROTO) versus those that kill the connection.
#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/endian.h"
#include "protocol/testing/client_handshake.h"
#include "protocol/testing/client_runner.h"
#include "protocol/testing/client_script.h"

namespace nbd::testing {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::Not;
using ::testing::StartsWith;

constexpr uint64_t kSize = 1 << 20;
constexpr uint32_t kEio = static_cast<uint32_t>(NbdError::kIo);

Scenario Connected(bool extended = false) {
  HandshakeSpec spec;
  spec.ack_extended_headers = extended;
  return ConnectedScenario({}, spec);
}

// Issues a read of `size` bytes at `offset` into buffer `label`, pre-filled
// with 0xAA so holes and untouched bytes are visible.
Scenario& IssueRead(Scenario& s, const std::string& label, uint64_t offset,
                    size_t size, bool report_chunks = false) {
  return s.Issue(label, [=](Client& c, RunContext& ctx) {
    return c.Read(offset, absl::MakeSpan(ctx.Buffer(label, size, 0xAA)),
                  {.flags = 0, .report_chunks = report_chunks});
  });
}

// A follow-up flush proving the connection still works.
Scenario& FlushWorks(Scenario& s) {
  return s.Expect(ClientSends().SkipAll())
      .Issue("flush", [](Client& c, RunContext&) { return c.Flush(); })
      .Expect(ClientSends().Req("flush", Command::kFlush, 0, 0, 0).Nothing())
      .Send(Server().ChunkNone("flush"));
}

Bytes Concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// ---- Reads ------------------------------------------------------------------

class ClientReadReplies : public ::testing::TestWithParam<bool> {};

// Data and hole chunks in any order reassemble into the buffer.
TEST_P(ClientReadReplies, ChunksInAnyOrder) {
  Scenario s = Connected(GetParam());
  IssueRead(s, "r", 4096, 1024, /*report_chunks=*/true)
      .Expect(ClientSends().Req("r", Command::kRead, 0, 4096, 1024).Nothing())
      .Send(Server()
                .ChunkData("r", 4096 + 512, Pattern(512, 5))
                .ChunkHole("r", 4096 + 256, 256)
                .ChunkData("r", 4096, Pattern(256, 9))
                .ChunkNone("r"));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue r -> cookie=1",
                          "ReadChunk cookie=1 data offset=4608 length=512",
                          "ReadChunk cookie=1 hole offset=4352 length=256",
                          "ReadChunk cookie=1 data offset=4096 length=256",
                          "CommandCompleted cookie=1 READ ok"));
  EXPECT_EQ(r.buffers["r"],
            Concat({Pattern(256, 9), Bytes(256, 0), Pattern(512, 5)}));
}

// Read-ahead in the zero-copy path must not change any result.
TEST_P(ClientReadReplies, ReadaheadGivesTheSameResult) {
  ClientOptions o;
  o.recv_readahead = 4096;
  HandshakeSpec spec;
  spec.ack_extended_headers = GetParam();
  Scenario s = ConnectedScenario(o, spec);
  IssueRead(s, "a", 0, 1024);
  IssueRead(s, "b", 1024, 100)
      .Send(Server()
                .ChunkData("b", 1024, Pattern(100, 2), true)
                .ChunkData("a", 512, Pattern(512, 3))
                .ChunkHole("a", 0, 512, true));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue a -> cookie=1", "issue b -> cookie=2",
                          "CommandCompleted cookie=2 READ ok",
                          "CommandCompleted cookie=1 READ ok"));
  EXPECT_EQ(r.buffers["a"], Concat({Bytes(512, 0), Pattern(512, 3)}));
  EXPECT_EQ(r.buffers["b"], Pattern(100, 2));
}

TEST_P(ClientReadReplies, HoleZeroFills) {
  Scenario s = Connected(GetParam());
  IssueRead(s, "r", 0, 4096).Send(Server().ChunkHole("r", 0, 4096, true));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue r -> cookie=1", "CommandCompleted cookie=1 READ ok"));
  EXPECT_EQ(r.buffers["r"], Bytes(4096, 0));
}

TEST_P(ClientReadReplies, ErrorChunkMapsErrno) {
  Scenario s = Connected(GetParam());
  IssueRead(s, "r", 0, 512)
      .Send(Server().ChunkError("r", kEio, "disk on fire"));
  IssueRead(s, "r2", 0, 512, /*report_chunks=*/true)
      .Send(Server().ChunkErrorOffset(
          "r2", static_cast<uint32_t>(NbdError::kPerm), 100, "", true));
  FlushWorks(s);
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue r -> cookie=1", "CommandCompleted cookie=1 READ EIO",
                  "issue r2 -> cookie=2",
                  "ReadChunk cookie=2 error offset=100 length=0 "
                  "error=EPERM",
                  "CommandCompleted cookie=2 READ EPERM",
                  "issue flush -> cookie=3",
                  "CommandCompleted cookie=3 FLUSH ok"));
}

TEST_P(ClientReadReplies, UnknownNbdErrorBecomesEinval) {
  Scenario s = Connected(GetParam());
  IssueRead(s, "r", 0, 512).Send(Server().ChunkError("r", 1234));
  FlushWorks(s);
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue r -> cookie=1",
                          "CommandCompleted cookie=1 READ EINVAL",
                          "issue flush -> cookie=2",
                          "CommandCompleted cookie=2 FLUSH ok"));
}

// An unknown chunk type with the error bit fails the command only.
TEST_P(ClientReadReplies, UnknownErrorChunkTypeFailsTheCommandOnly) {
  Scenario s = Connected(GetParam());
  IssueRead(s, "r", 0, 512)
      .Send(Server().Chunk("r", kReplyFlagDone, kChunkTypeErrorBit | 50,
                           EncodeErrorChunk({kEio, "odd"})));
  FlushWorks(s);
  RunResult r = RunAllModes(s);
  ASSERT_EQ(r.AfterConnected().size(), 4u);
  EXPECT_THAT(r.AfterConnected()[1],
              StartsWith("CommandCompleted cookie=1 READ "));
  EXPECT_NE(r.AfterConnected()[1], "CommandCompleted cookie=1 READ ok");
  EXPECT_EQ(r.AfterConnected()[3], "CommandCompleted cookie=2 FLUSH ok");
}

// A reply that ends (DONE) without covering the read and without an error
// is a protocol error for that command.
TEST_P(ClientReadReplies, IncompleteReadFailsWithEproto) {
  Scenario s = Connected(GetParam());
  IssueRead(s, "r", 0, 1024)
      .Send(Server().ChunkData("r", 0, Pattern(512)).ChunkNone("r"));
  FlushWorks(s);
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue r -> cookie=1",
                          "CommandCompleted cookie=1 READ EPROTO",
                          "issue flush -> cookie=2",
                          "CommandCompleted cookie=2 FLUSH ok"));
}

INSTANTIATE_TEST_SUITE_P(Headers, ClientReadReplies, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "Extended" : "Structured";
                         });

// ---- Block status ----------------------------------------------------------

class ClientBlockStatus : public ::testing::TestWithParam<bool> {};

Server& BlockStatusChunk(Server& server, bool extended, CookieRef cookie,
                         uint32_t context, std::vector<Extent> extents) {
  return extended ? server.ChunkBlockStatusExt(cookie, context, extents)
                  : server.ChunkBlockStatus(cookie, context, extents);
}

Scenario BlockStatusScenario(bool extended, uint64_t offset, uint64_t length,
                             uint32_t context, std::vector<Extent> extents) {
  Scenario s = Connected(extended);
  Server reply;
  BlockStatusChunk(reply, extended, "bs", context, std::move(extents));
  s.Issue("bs",
          [=](Client& c, RunContext&) { return c.BlockStatus(offset, length); })
      .Expect(ClientSends()
                  .Req("bs", Command::kBlockStatus, 0, offset, length)
                  .Nothing())
      .Send(std::move(reply));
  return s;
}

TEST_P(ClientBlockStatus, LastExtentIsClampedToTheRequest) {
  Scenario s = BlockStatusScenario(GetParam(), 0, 1024, 1,
                                   {{512, 0}, {4096, kStateHole | kStateZero}});
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue bs -> cookie=1",
                          "BlockStatusExtents cookie=1 "
                          "context=1:base:allocation offset=0 "
                          "extents=512/0,512/3",
                          "CommandCompleted cookie=1 BLOCK_STATUS ok"));
}

TEST_P(ClientBlockStatus, ShortReplyIsAccepted) {
  Scenario s = BlockStatusScenario(GetParam(), 4096, 8192, 1, {{512, 0}});
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue bs -> cookie=1",
                          "BlockStatusExtents cookie=1 "
                          "context=1:base:allocation offset=4096 "
                          "extents=512/0",
                          "CommandCompleted cookie=1 BLOCK_STATUS ok"));
}

// Bad extents fail the command with EPROTO; the connection lives.
void ExpectEprotoAndAlive(Scenario s) {
  FlushWorks(s);
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ContainsInOrder(std::vector<std::string>{
          "issue bs -> cookie=1",
          "CommandCompleted cookie=1 BLOCK_STATUS EPROTO",
          "issue flush -> cookie=2", "CommandCompleted cookie=2 FLUSH ok"}));
  EXPECT_THAT(LinesStartingWith(r.log, "Dead"), ElementsAre());
}

TEST_P(ClientBlockStatus, ExtentPastTheExportEndFailsTheCommand) {
  ExpectEprotoAndAlive(BlockStatusScenario(GetParam(), kSize - 512, 512, 1,
                                           {{512, 0}, {4096, 0}}));
}

TEST_P(ClientBlockStatus, ZeroLengthExtentFailsTheCommand) {
  ExpectEprotoAndAlive(
      BlockStatusScenario(GetParam(), 0, 1024, 1, {{0, 0}, {1024, 0}}));
}

TEST_P(ClientBlockStatus, UnknownContextFailsTheCommand) {
  ExpectEprotoAndAlive(
      BlockStatusScenario(GetParam(), 0, 1024, 99, {{1024, 0}}));
}

TEST_P(ClientBlockStatus, ReqOneWithSeveralExtentsFailsTheCommand) {
  Scenario s = Connected(GetParam());
  Server reply;
  BlockStatusChunk(reply, GetParam(), "bs", 1, {{512, 0}, {512, 3}});
  s.Issue("bs",
          [](Client& c, RunContext&) {
            return c.BlockStatus(0, 1024, kCmdFlagReqOne);
          })
      .Expect(ClientSends()
                  .Req("bs", Command::kBlockStatus, kCmdFlagReqOne, 0, 1024)
                  .Nothing())
      .Send(std::move(reply));
  ExpectEprotoAndAlive(std::move(s));
}

INSTANTIATE_TEST_SUITE_P(Headers, ClientBlockStatus, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "Extended" : "Structured";
                         });

// ---- Simple replies ---------------------------------------------------------

TEST(ClientSimpleReplies, ErrorsMapToErrno) {
  Scenario s = Connected();
  s.Issue("f1", [](Client& c, RunContext&) { return c.Flush(); })
      .Issue("f2", [](Client& c, RunContext&) { return c.Flush(); })
      .Issue("f3", [](Client& c, RunContext&) { return c.Flush(); })
      .Send(Server()
                .Simple("f1", static_cast<uint32_t>(NbdError::kNoSpc))
                .Simple("f2", 4321)
                .Simple("f3", static_cast<uint32_t>(NbdError::kOverflow)));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(LinesStartingWith(r.log, "CommandCompleted"),
              ElementsAre("CommandCompleted cookie=1 FLUSH ENOSPC",
                          "CommandCompleted cookie=2 FLUSH EINVAL",
                          "CommandCompleted cookie=3 FLUSH EOVERFLOW"));
}

// ---- Fatal server mistakes --------------------------------------------------

// Runs `reply` against an outstanding 512-byte read at 4096 whose buffer
// has 16 guard bytes on each side, and expects the connection to die with
// the read failing ENOTCONN and the guards untouched.
void ExpectDeadAfter(Scenario s, Server reply) {
  s.Issue("r",
          [](Client& c, RunContext& ctx) {
            Bytes& b = ctx.Buffer("g", 16 + 512 + 16, 0x55);
            return c.Read(4096, absl::MakeSpan(b).subspan(16, 512));
          })
      .Send(std::move(reply))
      .Snapshot();
  RunResult r = RunAllModes(s);
  std::vector<std::string> tail = r.AfterConnected();
  ASSERT_EQ(tail.size(), 4u) << ::testing::PrintToString(tail);
  EXPECT_EQ(tail[0], "issue r -> cookie=1");
  EXPECT_EQ(tail[1], "CommandCompleted cookie=1 READ ENOTCONN");
  EXPECT_THAT(tail[2], StartsWith("Dead"));
  EXPECT_EQ(tail[3], "phase=dead in_flight=0");
  const Bytes& g = r.buffers["g"];
  ASSERT_EQ(g.size(), 544u);
  EXPECT_THAT(Bytes(g.begin(), g.begin() + 16), Each(0x55));
  EXPECT_THAT(Bytes(g.end() - 16, g.end()), Each(0x55));
}

TEST(ClientFatalReplies, BadMagic) {
  Bytes junk(16, 0);
  junk[0] = 0xde, junk[1] = 0xad, junk[2] = 0xbe, junk[3] = 0xef;
  ExpectDeadAfter(Connected(), Server().Raw(junk));
}

TEST(ClientFatalReplies, UnknownCookieSimpleReply) {
  ExpectDeadAfter(Connected(), Server().Simple(CookieRef::Value(999)));
}

TEST(ClientFatalReplies, UnknownCookieSimpleErrorReply) {
  ExpectDeadAfter(Connected(), Server().Simple(CookieRef::Value(999), kEio));
}

TEST(ClientFatalReplies, UnknownCookieChunk) {
  ExpectDeadAfter(Connected(), Server().ChunkNone(CookieRef::Value(7)));
}

TEST(ClientFatalReplies, UnknownNonErrorChunkType) {
  ExpectDeadAfter(Connected(),
                  Server().Chunk("r", kReplyFlagDone, 50, Bytes(8, 0)));
}

TEST(ClientFatalReplies, NoneChunkWithoutDone) {
  ExpectDeadAfter(
      Connected(),
      Server().Chunk("r", 0, static_cast<uint16_t>(ChunkType::kNone), {}));
}

// The header alone must be enough: the client must not wait for 2 GiB.
TEST(ClientFatalReplies, ChunkLengthOverTheLimit) {
  ExpectDeadAfter(Connected(), Server().StructuredChunk(
                                   "r", kReplyFlagDone,
                                   static_cast<uint16_t>(ChunkType::kError), {},
                                   0x7fffffff));
}

TEST(ClientFatalReplies, ExtendedChunkLengthOverTheLimit) {
  ExpectDeadAfter(
      Connected(true),
      Server().ExtendedChunk("r", kReplyFlagDone,
                             static_cast<uint16_t>(ChunkType::kBlockStatusExt),
                             {}, std::nullopt, uint64_t{1} << 40));
}

TEST(ClientFatalReplies, DataPastTheRequestEnd) {
  ExpectDeadAfter(Connected(),
                  Server().ChunkData("r", 4096 + 256, Pattern(512), true));
}

TEST(ClientFatalReplies, DataBeforeTheRequestStart) {
  ExpectDeadAfter(Connected(),
                  Server().ChunkData("r", 4096 - 8, Pattern(16), true));
}

TEST(ClientFatalReplies, DataAtWrappingOffset) {
  ExpectDeadAfter(Connected(),
                  Server().ChunkData("r", ~uint64_t{0}, Pattern(16), true));
}

// Chunks must not overlap (proto.md): a byte count alone would accept two
// chunks for the same half and leave the other half unwritten.
TEST(ClientFatalReplies, OverlappingDataChunks) {
  ExpectDeadAfter(Connected(),
                  Server()
                      .ChunkData("r", 4096, Pattern(256, 1))
                      .ChunkData("r", 4096, Pattern(256, 2), true));
}

TEST(ClientFatalReplies, HoleOverlappingData) {
  ExpectDeadAfter(Connected(true), Server()
                                       .ChunkData("r", 4096, Pattern(256, 1))
                                       .ChunkHole("r", 4096 + 255, 257, true));
}

// Once chunks leave gaps the ranges are tracked in a map; overlaps are still
// caught there.
TEST(ClientFatalReplies, OverlapAfterAGap) {
  ExpectDeadAfter(Connected(), Server()
                                   .ChunkData("r", 4096, Pattern(100))
                                   .ChunkData("r", 4096 + 300, Pattern(100))
                                   .ChunkHole("r", 4096 + 200, 101, true));
}

TEST(ClientFatalReplies, DataOverlappingAHole) {
  ExpectDeadAfter(Connected(),
                  Server()
                      .ChunkHole("r", 4096 + 256, 256)
                      .ChunkData("r", 4096 + 100, Pattern(200), true));
}

// Adjacent chunks in any order are not overlaps, however they arrive.
TEST_P(ClientReadReplies, AdjacentChunksOutOfOrderAreAccepted) {
  Scenario s = Connected(GetParam());
  IssueRead(s, "r", 0, 1024)
      .Send(Server()
                .ChunkData("r", 768, Pattern(256, 4))
                .ChunkHole("r", 256, 256)
                .ChunkData("r", 512, Pattern(256, 3))
                .ChunkData("r", 0, Pattern(256, 2), true));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue r -> cookie=1", "CommandCompleted cookie=1 READ ok"));
  EXPECT_EQ(r.buffers["r"], Concat({Pattern(256, 2), Bytes(256, 0),
                                    Pattern(256, 3), Pattern(256, 4)}));
}

TEST(ClientFatalReplies, HolePastTheRequestEnd) {
  ExpectDeadAfter(Connected(true), Server().ChunkHole("r", 4096, 513, true));
}

TEST(ClientFatalReplies, HoleChunkOfWrongLength) {
  auto hole = EncodeOffsetHole({4096, 512});
  Bytes payload(hole.begin(), hole.end());
  payload.resize(16);
  ExpectDeadAfter(
      Connected(),
      Server().Chunk("r", kReplyFlagDone,
                     static_cast<uint16_t>(ChunkType::kOffsetHole), payload));
}

TEST(ClientFatalReplies, ErrorChunkMessageLongerThanTheChunk) {
  Bytes payload = EncodeErrorChunk({kEio, "0123456789"});
  payload.resize(payload.size() - 4);  // msglen says 10, 6 bytes follow
  ExpectDeadAfter(
      Connected(),
      Server().Chunk("r", kReplyFlagDone,
                     static_cast<uint16_t>(ChunkType::kError), payload));
}

// Padded to a full 32-byte header, so the magic is what kills it.
TEST(ClientFatalReplies, SimpleReplyUnderExtendedHeaders) {
  ExpectDeadAfter(Connected(true), Server().Simple("r").Raw(Bytes(16, 0)));
}

TEST(ClientFatalReplies, StructuredHeaderUnderExtendedHeaders) {
  ExpectDeadAfter(
      Connected(true),
      Server()
          .StructuredChunk("r", kReplyFlagDone,
                           static_cast<uint16_t>(ChunkType::kNone), {})
          .Raw(Bytes(12, 0)));
}

TEST(ClientFatalReplies, ExtendedHeaderWithoutExtendedHeaders) {
  ExpectDeadAfter(
      Connected(false),
      Server().ExtendedChunk("r", kReplyFlagDone,
                             static_cast<uint16_t>(ChunkType::kNone), {}));
}

TEST(ClientFatalReplies, EofBeforeDone) {
  Scenario s = Connected();
  IssueRead(s, "r", 0, 1024)
      .Send(Server().ChunkData("r", 0, Pattern(512)))
      .Eof()
      .Snapshot();
  RunResult r = RunAllModes(s);
  std::vector<std::string> tail = r.AfterConnected();
  ASSERT_EQ(tail.size(), 4u) << ::testing::PrintToString(tail);
  EXPECT_EQ(tail[1], "CommandCompleted cookie=1 READ ENOTCONN");
  EXPECT_THAT(tail[2], StartsWith("Dead"));
  EXPECT_EQ(tail[3], "phase=dead in_flight=0");
}

// ---- ESHUTDOWN --------------------------------------------------------------

// NBD_ESHUTDOWN fails the command; the client then soft-disconnects by
// itself (the spec's MUST) once nothing else is in flight.
TEST(ClientReplies, EshutdownStartsASoftDisconnect) {
  Scenario s = Connected();
  IssueRead(s, "r1", 0, 512);
  IssueRead(s, "r2", 512, 512)
      .Expect(ClientSends()
                  .Req("r1", Command::kRead, 0, 0, 512)
                  .Req("r2", Command::kRead, 0, 512, 512)
                  .Nothing())
      .Send(Server().ChunkError(
          "r1", static_cast<uint32_t>(NbdError::kShutdown), "going down"))
      .Expect(ClientSends().Nothing())
      .Snapshot()
      .Send(Server().ChunkData("r2", 512, Pattern(512), true))
      .Expect(ClientSends().Req("disc", Command::kDisc, 0, 0, 0).Nothing())
      .Snapshot()
      .Eof()
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue r1 -> cookie=1", "issue r2 -> cookie=2",
                          "CommandCompleted cookie=1 READ ESHUTDOWN",
                          "phase=processing in_flight=1",
                          "CommandCompleted cookie=2 READ ok", "ShutdownWrite",
                          "phase=ready in_flight=1", "Closed",
                          "phase=closed in_flight=0"));
}

// ESHUTDOWN after another error chunk still starts the soft disconnect.
TEST(ClientReplies, EshutdownAfterAnotherErrorStillDisconnects) {
  Scenario s = Connected();
  IssueRead(s, "r", 0, 512)
      .Expect(ClientSends().Req("r", Command::kRead, 0, 0, 512).Nothing())
      .Send(Server()
                .ChunkError("r", kEio, "", /*done=*/false)
                .ChunkError("r", static_cast<uint32_t>(NbdError::kShutdown)))
      .Expect(ClientSends().Req("disc", Command::kDisc, 0, 0, 0).Nothing())
      .Issue("late", [](Client& c, RunContext&) { return c.Flush(); })
      .Eof()
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ContainsInOrder(std::vector<std::string>{
                  "issue r -> cookie=1", "CommandCompleted cookie=1 READ EIO",
                  "ShutdownWrite", "issue late -> EINVAL", "Closed"}));
}

// A second reply for a command that already completed is a reply to no
// command in flight.
TEST(ClientFatalReplies, SecondReplyForACompletedCookie) {
  Scenario s = Connected();
  s.Issue("f", [](Client& c, RunContext&) { return c.Flush(); })
      .Send(Server().ChunkNone("f"))
      .Send(Server().ChunkNone("f"))
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue f -> cookie=1", "CommandCompleted cookie=1 FLUSH ok",
                  "Dead EPROTO", "phase=dead in_flight=0"));
}

TEST(ClientFatalReplies, DataChunkForANonRead) {
  Scenario s = Connected();
  s.Issue("f", [](Client& c, RunContext&) { return c.Flush(); })
      .Send(Server().ChunkData("f", 0, Pattern(16), true))
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue f -> cookie=1",
                          "CommandCompleted cookie=1 FLUSH ENOTCONN",
                          "Dead EPROTO", "phase=dead in_flight=0"));
}

// An error chunk must carry an error: value 0 fails the command (EPROTO),
// not the connection.
TEST(ClientReplies, ErrorChunkWithErrorZeroFailsTheCommand) {
  Scenario s = Connected();
  s.Issue("f", [](Client& c, RunContext&) {
     return c.Flush();
   }).Send(Server().ChunkError("f", 0, "nothing"));
  FlushWorks(s);
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(), ContainsInOrder(std::vector<std::string>{
                                      "CommandCompleted cookie=1 FLUSH EPROTO",
                                      "CommandCompleted cookie=2 FLUSH ok"}));
}

}  // namespace
}  // namespace nbd::testing
