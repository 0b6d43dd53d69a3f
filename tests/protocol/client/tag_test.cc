// Command tags (protocol/client/client.h, "Tags"): the caller's opaque
// value comes back in every event of its command (CommandCompleted,
// ReadChunk, BlockStatusExtents) on every path: success, server error,
// EPROTO, and ENOTCONN when the connection dies, closes or
// Shutdown(kShutdownAbandonPending) withdraws the command. The scenario
// logs end command lines in " tag=N" for a non-zero tag
// (tests/testing/event_log.h).
#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"
#include "protocol/constants.h"
#include "protocol/status.h"
#include "protocol/testing/client_event_log.h"
#include "protocol/testing/client_handshake.h"
#include "protocol/testing/client_runner.h"
#include "protocol/testing/client_script.h"
#include "protocol/visit.h"
#include "protocol/wire.h"

namespace nbd::testing {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr uint32_t kEio = static_cast<uint32_t>(NbdError::kIo);
// All 64 bits must survive, so one tag uses the top bit.
constexpr uint64_t kHighTag = 0x8000000000000001ull;

// WRITE payloads, alive for the whole test program as the core requires.
const Bytes& Data512() {
  static const Bytes* data = new Bytes(Pattern(512, 3));
  return *data;
}
const Bytes& Data4k() {
  static const Bytes* data = new Bytes(Pattern(4096, 7));
  return *data;
}

Scenario Connected(bool extended = false, bool structured = true) {
  HandshakeSpec spec;
  spec.ack_extended_headers = extended;
  spec.ack_structured_replies = structured;
  return ConnectedScenario({}, spec);
}

absl::StatusOr<Cookie> TaggedRead(Client& c, RunContext& ctx,
                                  const std::string& label, uint64_t offset,
                                  size_t size, uint64_t tag,
                                  bool report_chunks = false) {
  return c.Read(offset, absl::MakeSpan(ctx.Buffer(label, size, 0xAA)),
                {.flags = 0, .report_chunks = report_chunks, .tag = tag});
}

// ---- Every command type -----------------------------------------------------

class ClientTags : public ::testing::TestWithParam<bool> {};  // extended?

TEST_P(ClientTags, EveryCommandTypeCompletesWithItsTag) {
  const bool extended = GetParam();
  Scenario s = Connected(extended);
  s.Issue("read",
          [](Client& c, RunContext& x) {
            return TaggedRead(c, x, "read", 0, 512, 101);
          })
      .Issue("write",
             [](Client& c, RunContext&) {
               return c.Write(4096, Data512(), 0, 102);
             })
      .Issue("flush", [](Client& c, RunContext&) { return c.Flush(0, 103); })
      .Issue("trim",
             [](Client& c, RunContext&) {
               return c.Trim(8192, 512, kCmdFlagFua, 104);
             })
      .Issue("cache",
             [](Client& c, RunContext&) { return c.Cache(0, 4096, 0, 105); })
      .Issue("zero",
             [](Client& c, RunContext&) {
               return c.WriteZeroes(0, 4096, kCmdFlagNoHole, 106);
             })
      .Issue("bs",
             [](Client& c, RunContext&) {
               return c.BlockStatus(0, 4096, 0, kHighTag);
             })
      .Expect(ClientSends().SkipAll());
  Server replies;
  replies.ChunkData("read", 0, Pattern(512), true)
      .ChunkNone("write")
      .ChunkNone("flush")
      .ChunkNone("trim")
      .ChunkNone("cache")
      .ChunkNone("zero");
  if (extended) {
    replies.ChunkBlockStatusExt("bs", 1, {{4096, 0}});
  } else {
    replies.ChunkBlockStatus("bs", 1, {{4096, 0}});
  }
  s.Send(std::move(replies));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue read -> cookie=1", "issue write -> cookie=2",
                  "issue flush -> cookie=3", "issue trim -> cookie=4",
                  "issue cache -> cookie=5", "issue zero -> cookie=6",
                  "issue bs -> cookie=7",
                  "CommandCompleted cookie=1 READ ok tag=101",
                  "CommandCompleted cookie=2 WRITE ok tag=102",
                  "CommandCompleted cookie=3 FLUSH ok tag=103",
                  "CommandCompleted cookie=4 TRIM ok tag=104",
                  "CommandCompleted cookie=5 CACHE ok tag=105",
                  "CommandCompleted cookie=6 WRITE_ZEROES ok tag=106",
                  "BlockStatusExtents cookie=7 context=1:base:allocation "
                  "offset=0 extents=4096/0 tag=9223372036854775809",
                  "CommandCompleted cookie=7 BLOCK_STATUS ok "
                  "tag=9223372036854775809"));
  EXPECT_EQ(r.buffers["read"], Pattern(512));
}

// ReadChunk events of a report_chunks read carry the read's tag: data,
// hole and error chunks alike, and so does its (failed) completion.
TEST_P(ClientTags, ReadChunksCarryTheReadsTag) {
  Scenario s = Connected(GetParam());
  s.Issue("r",
          [](Client& c, RunContext& x) {
            return TaggedRead(c, x, "r", 4096, 1024, 7, true);
          })
      .Send(Server()
                .ChunkData("r", 4096 + 512, Pattern(512, 5))
                .ChunkHole("r", 4096, 256)
                .ChunkErrorOffset("r", kEio, 4096 + 256, "bad sector",
                                  /*done=*/false)
                .ChunkData("r", 4096 + 256, Pattern(256, 9))
                .ChunkNone("r"));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue r -> cookie=1",
                  "ReadChunk cookie=1 data offset=4608 length=512 tag=7",
                  "ReadChunk cookie=1 hole offset=4096 length=256 tag=7",
                  "ReadChunk cookie=1 error offset=4352 length=0 "
                  "error=EIO tag=7",
                  "ReadChunk cookie=1 data offset=4352 length=256 tag=7",
                  "CommandCompleted cookie=1 READ EIO tag=7"));
}

// One BlockStatusExtents per context, each with the command's tag.
TEST_P(ClientTags, BlockStatusExtentsCarryTheCommandsTag) {
  const bool extended = GetParam();
  ClientOptions o;
  o.meta_contexts = {"qemu:dirty-bitmap:b"};
  HandshakeSpec spec;
  spec.ack_extended_headers = extended;
  spec.contexts = {{1, kContextBaseAllocation}, {2, "qemu:dirty-bitmap:b"}};
  Scenario s = ConnectedScenario(o, spec);
  Server reply;
  if (extended) {
    reply.ChunkBlockStatusExt("bs", 1, {{512, 0}, {512, 3}}, false)
        .ChunkBlockStatusExt("bs", 2, {{1024, 1}}, true);
  } else {
    reply.ChunkBlockStatus("bs", 1, {{512, 0}, {512, 3}}, false)
        .ChunkBlockStatus("bs", 2, {{1024, 1}}, true);
  }
  s.Issue("bs", [](Client& c, RunContext&) {
     return c.BlockStatus(0, 1024, 0, 42);
   }).Send(std::move(reply));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue bs -> cookie=1",
                          "BlockStatusExtents cookie=1 "
                          "context=1:base:allocation offset=0 "
                          "extents=512/0,512/3 tag=42",
                          "BlockStatusExtents cookie=1 "
                          "context=2:qemu:dirty-bitmap:b offset=0 "
                          "extents=1024/1 tag=42",
                          "CommandCompleted cookie=1 BLOCK_STATUS ok tag=42"));
}

// Server errors (an error chunk, a simple error reply) and per-command
// protocol errors (EPROTO) keep the tag; the connection lives.
TEST_P(ClientTags, ErrorsKeepTheTag) {
  Scenario s = Connected(GetParam());
  s.Issue("w",
          [](Client& c, RunContext&) { return c.Write(0, Data512(), 0, 11); })
      .Send(Server().ChunkError("w", kEio, "disk on fire"))
      .Issue("f", [](Client& c, RunContext&) { return c.Flush(0, 12); })
      .Send(Server().ChunkError("f", 0, "error value 0"))
      .Issue("r",
             [](Client& c, RunContext& x) {
               return TaggedRead(c, x, "r", 0, 1024, 13);
             })
      // Half the data, then DONE: the read does not add up.
      .Send(Server().ChunkData("r", 0, Pattern(512), true))
      .Issue("bs", [](Client& c,
                      RunContext&) { return c.BlockStatus(0, 1024, 0, 14); })
      .Send(GetParam() ? Server().ChunkBlockStatusExt("bs", 99, {{1024, 0}})
                       : Server().ChunkBlockStatus("bs", 99, {{1024, 0}}))
      .Issue("t", [](Client& c, RunContext&) { return c.Trim(0, 512, 0, 15); })
      .Send(Server().ChunkNone("t"));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre(
          "issue w -> cookie=1", "CommandCompleted cookie=1 WRITE EIO tag=11",
          "issue f -> cookie=2",
          "CommandCompleted cookie=2 FLUSH EPROTO tag=12",
          "issue r -> cookie=3", "CommandCompleted cookie=3 READ EPROTO tag=13",
          "issue bs -> cookie=4",
          "CommandCompleted cookie=4 BLOCK_STATUS EPROTO tag=14",
          "issue t -> cookie=5", "CommandCompleted cookie=5 TRIM ok tag=15"));
}

INSTANTIATE_TEST_SUITE_P(Headers, ClientTags, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "Extended" : "Structured";
                         });

TEST(ClientTagsSimpleReplies, SuccessAndServerErrorKeepTheTag) {
  Scenario s = Connected(false, /*structured=*/false);
  s.Issue("r", [](Client& c,
                  RunContext& x) { return TaggedRead(c, x, "r", 0, 512, 21); })
      .Issue("z", [](Client& c,
                     RunContext&) { return c.WriteZeroes(0, 512, 0, 22); })
      .Send(Server()
                .Simple("z", static_cast<uint32_t>(NbdError::kNoSpc))
                .Simple("r", 0, Pattern(512)));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue r -> cookie=1", "issue z -> cookie=2",
                          "CommandCompleted cookie=2 WRITE_ZEROES ENOSPC "
                          "tag=22",
                          "CommandCompleted cookie=1 READ ok tag=21"));
}

// ---- Interleaving -----------------------------------------------------------

// Replies out of order and chunks of two reads interleaved: every event
// carries the tag of its own command, and equal tags are allowed.
TEST(ClientTagsInterleaved, OutOfOrderRepliesKeepEachCommandsTag) {
  Scenario s = Connected();
  s.Issue("a",
          [](Client& c, RunContext& x) {
            return TaggedRead(c, x, "a", 0, 1024, 1000, true);
          })
      .Issue("b",
             [](Client& c, RunContext& x) {
               return TaggedRead(c, x, "b", 4096, 1024, 2000, true);
             })
      .Issue("f", [](Client& c, RunContext&) { return c.Flush(0, 3000); })
      .Issue("w",
             [](Client& c, RunContext&) {
               return c.Write(8192, Data512(), 0, 3000);  // a repeated tag
             })
      .Send(Server()
                .ChunkNone("w")
                .ChunkData("b", 4096 + 512, Pattern(512, 2))
                .ChunkData("a", 512, Pattern(512, 1))
                .ChunkNone("f")
                .ChunkHole("b", 4096, 512, true)
                .ChunkData("a", 0, Pattern(512, 4), true));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue a -> cookie=1", "issue b -> cookie=2",
                  "issue f -> cookie=3", "issue w -> cookie=4",
                  "CommandCompleted cookie=4 WRITE ok tag=3000",
                  "ReadChunk cookie=2 data offset=4608 length=512 tag=2000",
                  "ReadChunk cookie=1 data offset=512 length=512 tag=1000",
                  "CommandCompleted cookie=3 FLUSH ok tag=3000",
                  "ReadChunk cookie=2 hole offset=4096 length=512 tag=2000",
                  "CommandCompleted cookie=2 READ ok tag=2000",
                  "ReadChunk cookie=1 data offset=0 length=512 tag=1000",
                  "CommandCompleted cookie=1 READ ok tag=1000"));
}

// ---- The connection ends ----------------------------------------------------

// EOF inside a reply kills the connection; every command still pending
// fails with ENOTCONN and its own tag, before ClientDead.
TEST(ClientTagsConnectionEnd, DeathMidFlightKeepsTheTags) {
  Scenario s = Connected();
  s.Issue("r",
          [](Client& c, RunContext& x) {
            return TaggedRead(c, x, "r", 0, 1024, 31, true);
          })
      .Issue("w", [](Client& c,
                     RunContext&) { return c.Write(0, Data512(), 0, 32); })
      .Issue("f", [](Client& c, RunContext&) { return c.Flush(0, 33); })
      .Send(Server().ChunkData("r", 0, Pattern(512)).ChunkNone("f"))
      .Send(Server().Raw({0x66, 0x8e}))  // part of a reply header
      .Eof();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue r -> cookie=1", "issue w -> cookie=2",
                          "issue f -> cookie=3",
                          "ReadChunk cookie=1 data offset=0 length=512 tag=31",
                          "CommandCompleted cookie=3 FLUSH ok tag=33",
                          "CommandCompleted cookie=1 READ ENOTCONN tag=31",
                          "CommandCompleted cookie=2 WRITE ENOTCONN tag=32",
                          StartsWith("Dead")));
}

TEST(ClientTagsConnectionEnd, TransportErrorKeepsTheTags) {
  Scenario s = Connected();
  s.Issue("t", [](Client& c, RunContext&) { return c.Trim(0, 512, 0, 41); })
      .Issue("c", [](Client& c, RunContext&) { return c.Cache(0, 512, 0, 42); })
      .Do([](Client& c, RunContext&) {
        c.FeedTransportError(absl::UnavailableError("reset"));
        return "";
      });
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue t -> cookie=1", "issue c -> cookie=2",
                          "CommandCompleted cookie=1 TRIM ENOTCONN tag=41",
                          "CommandCompleted cookie=2 CACHE ENOTCONN tag=42",
                          StartsWith("Dead")));
}

// EOF at a message boundary closes; pending commands keep their tags.
TEST(ClientTagsConnectionEnd, CloseKeepsTheTags) {
  Scenario s = Connected();
  s.Issue("z",
          [](Client& c, RunContext&) { return c.WriteZeroes(0, 512, 0, 51); })
      .Issue("bs", [](Client& c,
                      RunContext&) { return c.BlockStatus(0, 512, 0, 52); })
      .Eof();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue z -> cookie=1", "issue bs -> cookie=2",
                          "CommandCompleted cookie=1 WRITE_ZEROES ENOTCONN "
                          "tag=51",
                          "CommandCompleted cookie=2 BLOCK_STATUS ENOTCONN "
                          "tag=52",
                          "Closed"));
}

// Shutdown(kShutdownAbandonPending) withdraws the commands with no byte on
// the wire (ENOTCONN, their tags); the partly sent one completes later with
// its tag.
TEST(ClientTagsConnectionEnd, AbandonPendingKeepsTheTags) {
  Scenario s = Connected();
  s.HoldOutput()
      .Issue("w1",
             [](Client& c, RunContext&) { return c.Write(0, Data4k(), 0, 61); })
      .Issue("r",
             [](Client& c, RunContext& x) {
               return TaggedRead(c, x, "r", 0, 512, 62);
             })
      .Issue("f", [](Client& c, RunContext&) { return c.Flush(0, 63); })
      .Consume(10)
      .Call("Shutdown(abandon)",
            [](Client& c, RunContext&) {
              return c.Shutdown(kShutdownAbandonPending);
            })
      .ReleaseOutput()
      .Expect(ClientSends().SkipAll())
      .Send(Server().ChunkNone("w1"))
      .Eof();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue w1 -> cookie=1", "issue r -> cookie=2",
                          "issue f -> cookie=3", "call Shutdown(abandon) -> ok",
                          "CommandCompleted cookie=2 READ ENOTCONN tag=62",
                          "CommandCompleted cookie=3 FLUSH ENOTCONN tag=63",
                          "CommandCompleted cookie=1 WRITE ok tag=61",
                          "ShutdownWrite", "Closed"));
}

// A WRITE answered before its payload left the queue completes later (the
// deferred completion) with its tag.
TEST(ClientTagsDeferred, EarlyWriteReplyCompletesWithTheTag) {
  Scenario s = Connected();
  s.HoldOutput()
      .Issue("w",
             [](Client& c, RunContext&) {
               return c.Write(0, Data4k(), kCmdFlagFua, 71);
             })
      .Consume(kRequestSize + 100)
      .Send(Server().ChunkError("w", kEio))
      .Do([](Client&, RunContext&) { return "payload sent"; })
      .ReleaseOutput();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue w -> cookie=1", "payload sent",
                          "CommandCompleted cookie=1 WRITE EIO tag=71"));
}

// ---- The default ------------------------------------------------------------

// Without a tag the events carry 0 (their lines have no " tag=", which the
// log prints for any other value, see LogShowsNonZeroTags).
TEST(ClientTagsDefault, UntaggedCommandsCarryZero) {
  Scenario s = Connected();
  s.Issue("r",
          [](Client& c, RunContext& x) {
            return c.Read(0, absl::MakeSpan(x.Buffer("r", 512)),
                          {.report_chunks = true});
          })
      .Issue("w", [](Client& c, RunContext&) { return c.Write(0, Data512()); })
      .Issue("bs", [](Client& c, RunContext&) { return c.BlockStatus(0, 512); })
      .Issue("f", [](Client& c, RunContext&) { return c.Flush(); })
      .Send(Server()
                .ChunkData("r", 0, Pattern(512), true)
                .ChunkNone("w")
                .ChunkBlockStatus("bs", 1, {{512, 0}}))
      .Eof();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue r -> cookie=1", "issue w -> cookie=2",
                  "issue bs -> cookie=3", "issue f -> cookie=4",
                  "ReadChunk cookie=1 data offset=0 length=512",
                  "CommandCompleted cookie=1 READ ok",
                  "CommandCompleted cookie=2 WRITE ok",
                  "BlockStatusExtents cookie=3 "
                  "context=1:base:allocation offset=0 extents=512/0",
                  "CommandCompleted cookie=3 BLOCK_STATUS ok",
                  "CommandCompleted cookie=4 FLUSH ENOTCONN", "Closed"));
  EXPECT_THAT(r.log, Each(Not(HasSubstr("tag="))));
}

TEST(ClientTagsDefault, LogShowsNonZeroTags) {
  std::string message;
  EXPECT_EQ(FormatEvent(CommandCompleted{1, Command::kFlush, {}, 9}, &message),
            "CommandCompleted cookie=1 FLUSH ok tag=9");
  EXPECT_EQ(FormatEvent(CommandCompleted{1, Command::kFlush, {}}, &message),
            "CommandCompleted cookie=1 FLUSH ok");
  EXPECT_THAT(FormatEvent(ReadChunk{.cookie = 1, .tag = 9}, &message),
              HasSubstr(" tag=9"));
  BlockStatusExtents extents;
  extents.cookie = 1;
  extents.tag = 9;
  EXPECT_THAT(FormatEvent(extents, &message), HasSubstr(" tag=9"));
}

TEST(ClientTagsDefault, FieldsDefaultToZero) {
  EXPECT_EQ(ReadOptions{}.tag, 0u);
  EXPECT_EQ(CommandCompleted{}.tag, 0u);
  EXPECT_EQ(ReadChunk{}.tag, 0u);
  EXPECT_EQ(BlockStatusExtents{}.tag, 0u);
}

// ---- A pointer as the tag, driven directly ----------------------------------

// What an embedder does: the tag is the address of its per-command state,
// recovered from the completion with no lookup.
TEST(ClientTagsPointer, PointerTagRoundTrips) {
  struct Op {
    std::string name;
    int done = 0;
    absl::Status status;
  };
  Client c({});
  ASSERT_TRUE(c.Feed(EncodeOldstyleGreeting(
                         {1 << 20, 0, kTransmitHasFlags | kTransmitSendFlush}))
                  .ok());
  ASSERT_EQ(c.phase(), ClientPhase::kReady);
  while (c.PollEvent()) {
  }
  Op read_op{"read", 0, {}};
  Op flush_op{"flush", 0, {}};
  Bytes buffer(512);
  absl::StatusOr<Cookie> read =
      c.Read(0, absl::MakeSpan(buffer),
             {.tag = reinterpret_cast<uintptr_t>(&read_op)});
  absl::StatusOr<Cookie> flush =
      c.Flush(0, reinterpret_cast<uintptr_t>(&flush_op));
  ASSERT_TRUE(read.ok() && flush.ok());
  ASSERT_TRUE(c.ConsumeOutput(c.pending_output_bytes()).ok());
  auto error = EncodeSimpleReply({kEio, *flush});
  auto ok = EncodeSimpleReply({0, *read});
  Bytes replies(error.begin(), error.end());
  replies.insert(replies.end(), ok.begin(), ok.end());
  replies.insert(replies.end(), buffer.size(), 0x5a);
  ASSERT_TRUE(c.Feed(replies).ok());

  std::vector<std::string> order;
  int others = 0;
  while (auto e = c.PollEvent()) {
    Visit(
        *e,
        [&](const CommandCompleted& done) {
          Op* op = reinterpret_cast<Op*>(static_cast<uintptr_t>(done.tag));
          ++op->done;
          op->status = done.status;
          order.push_back(op->name);
        },
        [&](const auto&) { ++others; });
  }
  EXPECT_THAT(order, ElementsAre("flush", "read"));
  EXPECT_EQ(read_op.done, 1);
  EXPECT_TRUE(read_op.status.ok());
  EXPECT_EQ(flush_op.done, 1);
  EXPECT_EQ(StatusErrno(flush_op.status), EIO) << flush_op.status;
  EXPECT_EQ(others, 0);
  EXPECT_EQ(buffer, Bytes(512, 0x5a));
}

}  // namespace
}  // namespace nbd::testing
