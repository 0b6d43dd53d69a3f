// ServerSession protocol trace (ServerOptions::trace): the lines for a
// whole connection, that they do not depend on how input is split, that
// nothing follows the final event, and that tracing is off by default.
#include <cerrno>
#include <string>
#include <variant>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/server/server.h"
#include "tests/protocol/server/test_util.h"

namespace nbd::test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// The client's side of one connection: structured replies,
// base:allocation, GO with NAME and DESCRIPTION; then a READ answered with
// data and a hole, a WRITE, a READ that fails part way, and DISC.
Bytes ScenarioInput() {
  Bytes write = Req(false, Command::kWrite, 2, 8192, 512);
  Bytes payload(512, 0xab);
  return Concat(
      {Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes),
       Opt(Option::kStructuredReply),
       Opt(Option::kSetMetaContext, MetaData("disk", {kContextBaseAllocation})),
       Opt(Option::kGo,
           GoData("disk", {static_cast<uint16_t>(InfoType::kName),
                           static_cast<uint16_t>(InfoType::kDescription)})),
       Req(false, Command::kRead, 1, 0, 8192), write, payload,
       Req(false, Command::kRead, 3, 4096, 4096, kCmdFlagDf),
       Req(false, Command::kDisc, 4, 0, 0)});
}

struct ScenarioRun {
  std::vector<ServerEvent> events;  // everything, in order
  std::vector<std::string> trace;
};

// Feeds the scenario whole or one byte at a time (zero-copy path), answers
// the requests, drains the output and returns every event.
ScenarioRun RunScenario(ServerOptions options, bool byte_by_byte) {
  ServerSession s(std::move(options));
  ScenarioRun run;
  auto drain = [&] {
    TakeOutput(s);
    while (auto e = s.PollEvent()) run.events.push_back(std::move(*e));
  };
  const Bytes in = ScenarioInput();
  if (byte_by_byte) {
    for (uint8_t b : in) {
      absl::Span<uint8_t> buf = s.RecvBuffer();
      EXPECT_FALSE(buf.empty());
      if (buf.empty()) break;
      buf[0] = b;
      EXPECT_TRUE(s.CommitRecv(1).ok());
      drain();
    }
  } else {
    FeedAll(s, in);
    drain();
  }
  std::vector<ServerRequest> requests;
  for (const ServerEvent& e : run.events) {
    if (const auto* r = std::get_if<ServerRequest>(&e)) requests.push_back(*r);
  }
  EXPECT_EQ(requests.size(), 3u);
  if (requests.size() != 3) return run;
  static const std::vector<uint8_t> data(4096, 0x11);
  EXPECT_TRUE(s.ReplyRead(requests[0].handle, {ReadPiece::Data(0, data),
                                               ReadPiece::Hole(4096, 4096)})
                  .ok());
  EXPECT_TRUE(s.ReplyOk(requests[1].handle).ok());
  EXPECT_TRUE(s.ReplyReadError(
                   requests[2].handle,
                   {ReadPiece::Data(4096, absl::MakeSpan(data.data(), 1024))},
                   5120, EIO, "bad sector")
                  .ok());
  drain();
  for (const ServerEvent& e : run.events) {
    if (const auto* t = std::get_if<ServerTrace>(&e)) {
      run.trace.push_back(t->message);
    }
  }
  return run;
}

ServerOptions Traced() {
  ServerOptions o = TestOptions();
  o.trace = true;
  return o;
}

TEST(ServerTraceTest, WholeConnection) {
  ScenarioRun run = RunScenario(Traced(), /*byte_by_byte=*/false);
  EXPECT_THAT(
      run.trace,
      ElementsAre(
          "-> fixed newstyle greeting: handshake flags 0x3",
          "<- client flags 0x3",
          // Handshake.
          "<- NBD_OPT_STRUCTURED_REPLY",
          "-> NBD_REP_ACK to NBD_OPT_STRUCTURED_REPLY, 0 bytes",
          "<- NBD_OPT_SET_META_CONTEXT export=\"disk\" "
          "queries=[\"base:allocation\"]",
          "-> NBD_REP_META_CONTEXT to NBD_OPT_SET_META_CONTEXT, 19 bytes",
          "   context id=1 \"base:allocation\"",
          "-> NBD_REP_ACK to NBD_OPT_SET_META_CONTEXT, 0 bytes",
          "<- NBD_OPT_GO export=\"disk\" info=[NBD_INFO_NAME, "
          "NBD_INFO_DESCRIPTION]",
          "-> NBD_REP_INFO to NBD_OPT_GO, 12 bytes",
          "   NBD_INFO_EXPORT size=1048576 flags=0xded",
          "-> NBD_REP_INFO to NBD_OPT_GO, 6 bytes", "   NBD_INFO_NAME \"disk\"",
          "-> NBD_REP_INFO to NBD_OPT_GO, 14 bytes",
          "   NBD_INFO_DESCRIPTION \"scratch disk\"",
          "-> NBD_REP_INFO to NBD_OPT_GO, 14 bytes",
          "   NBD_INFO_BLOCK_SIZE minimum=1 preferred=4096 maximum=262144",
          "-> NBD_REP_ACK to NBD_OPT_GO, 0 bytes",
          "transmission: export \"disk\" size=1048576 flags=0xded, "
          "structured replies, meta context base:allocation",
          // Requests, as they arrive.
          "<- NBD_CMD_READ cookie=1 offset=0 length=8192 flags=0x0",
          "<- NBD_CMD_WRITE cookie=2 offset=8192 length=512 flags=0x0",
          "<- NBD_CMD_READ cookie=3 offset=4096 length=4096 flags=0x4",
          "<- NBD_CMD_DISC cookie=4 offset=0 length=0 flags=0x0",
          "closing: NBD_CMD_DISC received; 3 request(s) in flight",
          // Replies, as the embedder gives them.
          "-> NBD_REPLY_TYPE_OFFSET_DATA cookie=1 flags=0x0 length=4104 "
          "offset=0 data=4096",
          "-> NBD_REPLY_TYPE_OFFSET_HOLE cookie=1 flags=0x1 length=12 (done) "
          "offset=4096 hole=4096",
          "-> simple reply cookie=2 error=0",
          "-> NBD_REPLY_TYPE_OFFSET_DATA cookie=3 flags=0x0 length=1032 "
          "offset=4096 data=1024 (DF)",
          "-> NBD_REPLY_TYPE_ERROR_OFFSET cookie=3 flags=0x1 length=24 (done) "
          "error=5 offset=5120 message \"bad sector\"",
          "closed: every reply sent"));
  ASSERT_FALSE(run.events.empty());
  EXPECT_TRUE(std::holds_alternative<ServerClosed>(run.events.back()));
}

TEST(ServerTraceTest, SameLinesWhateverTheInputSplit) {
  ScenarioRun whole = RunScenario(Traced(), false);
  ScenarioRun split = RunScenario(Traced(), true);
  EXPECT_FALSE(whole.trace.empty());
  EXPECT_EQ(split.trace, whole.trace);
}

TEST(ServerTraceTest, OffByDefault) {
  EXPECT_FALSE(ServerOptions().trace);
  ScenarioRun run = RunScenario(TestOptions(), false);
  EXPECT_THAT(run.trace, IsEmpty());
  EXPECT_FALSE(run.events.empty());
}

TEST(ServerTraceTest, DeadIsTheLastLineAndNothingFollowsTheFinalEvent) {
  ServerSession s(Traced());
  Negotiate(s, /*structured=*/false, /*extended=*/false, /*meta=*/false);
  Bytes bad = Req(false, Command::kRead, 9, 0, 512);
  bad[0] ^= 0xff;  // breaks the request magic
  EXPECT_FALSE(s.Feed(bad).ok());
  std::vector<ServerEvent> events = TakeEvents(s);
  ASSERT_GE(events.size(), 2u);
  const auto* dead = std::get_if<ServerDead>(&events.back());
  ASSERT_NE(dead, nullptr);
  const auto* last = std::get_if<ServerTrace>(&events[events.size() - 2]);
  ASSERT_NE(last, nullptr);
  EXPECT_EQ(last->message,
            std::string("dead: ") + std::string(dead->reason.message()));
  // Whatever the embedder does next, no trace line comes.
  s.FeedEof();
  s.FeedTransportError(absl::InternalError("late"));
  EXPECT_FALSE(s.has_events());
}

TEST(ServerTraceTest, RefusedRequestAndSimpleErrorReply) {
  ServerSession s(Traced());
  Negotiate(s, /*structured=*/false, /*extended=*/false, /*meta=*/false);
  TakeOutput(s);
  // Past the end of the 1 MiB export: the session answers EINVAL itself.
  FeedAll(s, Req(false, Command::kRead, 5, 1 << 20, 512));
  std::vector<std::string> trace;
  for (const ServerEvent& e : TakeEvents(s)) {
    if (const auto* t = std::get_if<ServerTrace>(&e)) {
      trace.push_back(t->message);
    }
  }
  EXPECT_THAT(trace,
              ElementsAre("<- NBD_CMD_READ cookie=5 offset=1048576 length=512 "
                          "flags=0x0",
                          "   refused by the session: invalid request",
                          "-> simple reply cookie=5 error=22"));
}

// Lines from `s`'s queued events.
std::vector<std::string> TraceOf(ServerSession& s) {
  std::vector<std::string> out;
  for (const ServerEvent& e : TakeEvents(s)) {
    if (const auto* t = std::get_if<ServerTrace>(&e)) {
      out.push_back(t->message);
    }
  }
  return out;
}

TEST(ServerTraceTest, ListUnknownOptionAndExportName) {
  ServerSession s(Traced());
  // Without NO_ZEROES, so the export-name reply carries its padding.
  FeedAll(s, Concat({Flags(kClientFlagFixedNewstyle), Opt(Option::kList),
                     Opt(99, Str("xy")), Opt(Option::kExportName, Str("ro"))}));
  EXPECT_THAT(
      TraceOf(s),
      ElementsAre(
          "-> fixed newstyle greeting: handshake flags 0x3",
          "<- client flags 0x1", "<- NBD_OPT_LIST",
          "-> NBD_REP_SERVER to NBD_OPT_LIST, 20 bytes",
          "   export \"disk\" \"scratch disk\"",
          "-> NBD_REP_SERVER to NBD_OPT_LIST, 6 bytes", "   export \"ro\" \"\"",
          "-> NBD_REP_ACK to NBD_OPT_LIST, 0 bytes",
          "<- NBD_OPT_? (99), 2 bytes",
          "-> NBD_REP_ERR_UNSUP to NBD_OPT_? (99), 26 bytes",
          "   message \"option 99 is not supported\"",
          "<- NBD_OPT_EXPORT_NAME \"ro\"",
          "-> export-name reply: size=65536 flags=0x7 + 124 zero bytes",
          "transmission: export \"ro\" size=65536 flags=0x7, simple replies, "
          "no meta context"));
}

TEST(ServerTraceTest, OverlongOptionIsTracedAsSkipped) {
  ServerOptions o = Traced();
  o.max_option_length = 4;
  ServerSession s(std::move(o));
  FeedAll(s,
          Concat({Flags(kClientFlagFixedNewstyle), Opt(99, Str("12345678"))}));
  EXPECT_THAT(TraceOf(s),
              ElementsAre("-> fixed newstyle greeting: handshake flags 0x3",
                          "<- client flags 0x1",
                          "<- NBD_OPT_? (99), 8 bytes (over the 4-byte limit: "
                          "skipped)",
                          "-> NBD_REP_ERR_TOO_BIG to NBD_OPT_? (99), 20 bytes",
                          "   message \"option data too long\""));
}

TEST(ServerTraceTest, BlockStatusUnderExtendedHeaders) {
  ServerSession s(Traced());
  Negotiate(s, /*structured=*/true, /*extended=*/true, /*meta=*/true);
  FeedAll(s, Req(true, Command::kBlockStatus, 7, 0, 65536));
  std::vector<ServerRequest> requests = TakeRequests(s);
  ASSERT_EQ(requests.size(), 1u);
  const Extent extents[] = {{4096, 0}, {61440, 3}};
  ASSERT_TRUE(s.ReplyBlockStatus(requests[0].handle, extents).ok());
  EXPECT_THAT(TraceOf(s),
              ElementsAre("-> NBD_REPLY_TYPE_BLOCK_STATUS_EXT cookie=7 "
                          "flags=0x1 length=40 (done) context=1 extents=2"));
}

}  // namespace
}  // namespace nbd::test
