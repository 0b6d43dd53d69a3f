// ServerSession transmission phase with scripted requests: validation,
// every command, and every reply form (simple, structured, extended).
#include <algorithm>
#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "protocol/endian.h"
#include "protocol/server/server.h"
#include "protocol/status.h"
#include "tests/protocol/server/test_util.h"

namespace nbd::test {
namespace {

constexpr uint32_t kEinval = 22, kEperm = 1, kEnospc = 28, kEoverflow = 75,
                   kEio = 5;
constexpr uint16_t kChunkNone = 0, kChunkData = 1, kChunkHole = 2, kChunkBs = 5,
                   kChunkBsExt = 6, kChunkError = 0x8001,
                   kChunkErrorOffset = 0x8002;

struct Mode {
  bool structured;
  bool extended;
};

class TransmissionTest : public ::testing::Test {
 protected:
  void Start(Mode m, bool meta = false, ServerOptions o = TestOptions(),
             const std::string& name = "disk") {
    s_ = std::make_unique<ServerSession>(std::move(o));
    mode_ = m;
    Negotiate(*s_, m.structured, m.extended, meta, name);
  }
  Bytes R(Command c, uint64_t cookie, uint64_t off, uint64_t len,
          uint16_t flags = 0) {
    return Req(mode_.extended, c, cookie, off, len, flags);
  }
  // Feeds, expects no request to reach the embedder, returns the replies.
  std::vector<ParsedReply> Rejected(ByteSpan in) {
    Bytes out = FeedAll(*s_, in);
    EXPECT_TRUE(TakeRequests(*s_).empty());
    return ParseReplies(out);
  }
  uint32_t ErrorOf(const ParsedReply& r) {
    if (r.magic == kSimpleReplyMagic) return r.error;
    EXPECT_EQ(r.type, kChunkError);
    EXPECT_GE(r.payload.size(), 6u);
    return LoadBe32(r.payload.data());
  }

  std::unique_ptr<ServerSession> s_;
  Mode mode_{};
};

TEST_F(TransmissionTest, SimpleReadWithHoleIsZeroFilled) {
  Start({false, false});
  FeedAll(*s_, R(Command::kRead, 7, 100, 12));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].command, Command::kRead);
  EXPECT_EQ(reqs[0].cookie, 7u);
  EXPECT_EQ(reqs[0].offset, 100u);
  EXPECT_EQ(reqs[0].length, 12u);
  const uint8_t data[4] = {1, 2, 3, 4};
  std::vector<ReadPiece> pieces = {ReadPiece::Data(100, data),
                                   ReadPiece::Hole(104, 4),
                                   ReadPiece::Data(108, data)};
  ASSERT_TRUE(s_->ReplyRead(reqs[0].handle, pieces).ok());
  EXPECT_EQ(s_->in_flight(), 0u);
  auto replies = ParseReplies(TakeOutput(*s_), 12);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].magic, kSimpleReplyMagic);
  EXPECT_EQ(replies[0].cookie, 7u);
  EXPECT_EQ(replies[0].payload, (Bytes{1, 2, 3, 4, 0, 0, 0, 0, 1, 2, 3, 4}));
}

TEST_F(TransmissionTest, StructuredReadSendsDataAndHoleChunks) {
  Start({true, false});
  FeedAll(*s_, R(Command::kRead, 9, 0, 8));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  const uint8_t data[4] = {5, 6, 7, 8};
  std::vector<ReadPiece> pieces = {ReadPiece::Hole(0, 4),
                                   ReadPiece::Data(4, data)};
  ASSERT_TRUE(s_->ReplyRead(reqs[0].handle, pieces).ok());
  auto replies = ParseReplies(TakeOutput(*s_));
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].magic, kStructuredReplyMagic);
  EXPECT_EQ(replies[0].type, kChunkHole);
  EXPECT_EQ(replies[0].flags, 0);
  EXPECT_EQ(*DecodeOffsetHole(replies[0].payload), (OffsetHole{0, 4}));
  EXPECT_EQ(replies[1].type, kChunkData);
  EXPECT_EQ(replies[1].flags, kReplyFlagDone);
  EXPECT_EQ(replies[1].payload, (Bytes{0, 0, 0, 0, 0, 0, 0, 4, 5, 6, 7, 8}));
}

TEST_F(TransmissionTest, DfReadIsOneDataChunk) {
  Start({true, false});
  FeedAll(*s_, R(Command::kRead, 9, 8, 8, kCmdFlagDf));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  const uint8_t data[4] = {5, 6, 7, 8};
  std::vector<ReadPiece> pieces = {ReadPiece::Hole(8, 4),
                                   ReadPiece::Data(12, data)};
  ASSERT_TRUE(s_->ReplyRead(reqs[0].handle, pieces).ok());
  auto replies = ParseReplies(TakeOutput(*s_));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].type, kChunkData);
  EXPECT_EQ(replies[0].flags, kReplyFlagDone);
  EXPECT_EQ(replies[0].payload,
            (Bytes{0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 5, 6, 7, 8}));
}

TEST_F(TransmissionTest, ExtendedReadEchoesTheOffset) {
  Start({true, true});
  FeedAll(*s_, R(Command::kRead, 3, 4096, 4));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  const uint8_t data[4] = {1, 1, 1, 1};
  ReadPiece p = ReadPiece::Data(4096, data);
  ASSERT_TRUE(s_->ReplyRead(reqs[0].handle, {&p, 1}).ok());
  auto replies = ParseReplies(TakeOutput(*s_));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].magic, kExtendedReplyMagic);
  EXPECT_EQ(replies[0].offset, 4096u);
  EXPECT_EQ(replies[0].type, kChunkData);
}

TEST_F(TransmissionTest, ZeroLengthReadUnderStructuredRepliesIsNoneChunk) {
  Start({true, false});
  FeedAll(*s_, R(Command::kRead, 3, 0, 0));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  ASSERT_TRUE(s_->ReplyRead(reqs[0].handle, {}).ok());
  auto replies = ParseReplies(TakeOutput(*s_));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].type, kChunkNone);
  EXPECT_EQ(replies[0].flags, kReplyFlagDone);
}

TEST_F(TransmissionTest, ExtendedWriteWithPayloadLen) {
  Start({true, true});
  Bytes payload(1000, 0xab);
  FeedAll(*s_, Concat({R(Command::kWrite, 1, 0, 1000, kCmdFlagPayloadLen),
                       payload}));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].payload.size(), 1000u);
}

// The bug this guards against: a WRITE without PAYLOAD_LEN under extended
// headers was read as if `length` bytes of payload followed, so the next
// requests' bytes were written into the export. The flag is a MUST for
// WRITE and without it there is no payload: the session answers EINVAL
// and reads the very next bytes as the next request, whatever the split.
TEST_F(TransmissionTest, ExtendedWriteWithoutPayloadLenHasNoPayload) {
  for (size_t split : {size_t{0}, size_t{1}, size_t{7}}) {
    SCOPED_TRACE(split);
    Start({true, true});
    // 64 bytes after the WRITE header: exactly two READ headers.
    Bytes in =
        Concat({R(Command::kWrite, 1, 0, 64, kCmdFlagFua),
                R(Command::kRead, 2, 0, 8), R(Command::kRead, 3, 8, 8),
                R(Command::kWrite, 4, 0, 2, kCmdFlagPayloadLen), Bytes{7, 7}});
    Bytes out;
    if (split == 0) {
      out = FeedAll(*s_, in);
    } else {
      for (size_t at = 0; at < in.size(); at += split) {
        Bytes piece(in.begin() + at,
                    in.begin() + std::min(in.size(), at + split));
        Bytes o = FeedAll(*s_, piece);
        out.insert(out.end(), o.begin(), o.end());
      }
    }
    auto reqs = TakeRequests(*s_);
    ASSERT_EQ(reqs.size(), 3u);
    EXPECT_EQ(reqs[0].command, Command::kRead);
    EXPECT_EQ(reqs[0].cookie, 2u);
    EXPECT_EQ(reqs[1].command, Command::kRead);
    EXPECT_EQ(reqs[1].cookie, 3u);
    EXPECT_EQ(reqs[2].command, Command::kWrite);
    EXPECT_EQ(reqs[2].cookie, 4u);
    EXPECT_EQ(Bytes(reqs[2].payload.begin(), reqs[2].payload.end()),
              (Bytes{7, 7}));
    auto replies = ParseReplies(out);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].cookie, 1u);
    EXPECT_EQ(replies[0].flags, kReplyFlagDone);
    EXPECT_EQ(ErrorOf(replies[0]), kEinval);
    EXPECT_EQ(s_->phase(), ServerPhase::kTransmission);
  }
}

// Lengths are effect lengths without PAYLOAD_LEN, so even a huge WRITE
// length is only an invalid request, not a payload to wait for.
TEST_F(TransmissionTest, ExtendedWriteWithoutPayloadLenAnyLength) {
  Start({true, true});
  for (uint64_t len : {uint64_t{0}, uint64_t{1} << 40, ~uint64_t{0}}) {
    auto replies = Rejected(R(Command::kWrite, 1, 0, len));
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(ErrorOf(replies[0]), kEinval);
  }
  FeedAll(*s_, R(Command::kRead, 2, 0, 8));
  EXPECT_EQ(TakeRequests(*s_).size(), 1u);
}

// Commands that take no payload but come with PAYLOAD_LEN: the payload is
// consumed (the spec's SHOULD) and the request refused with EINVAL.
TEST_F(TransmissionTest, ExtendedPayloadOnOtherCommandsIsSkipped) {
  Start({true, true}, /*meta=*/true);
  for (Command c : {Command::kRead, Command::kFlush, Command::kTrim,
                    Command::kCache, Command::kWriteZeroes,
                    Command::kBlockStatus, static_cast<Command>(42)}) {
    SCOPED_TRACE(static_cast<int>(c));
    // The payload looks like a READ header: it must not be taken for one.
    Bytes payload = R(Command::kRead, 9, 0, 8);
    auto replies = Rejected(
        Concat({R(c, 1, 0, payload.size(), kCmdFlagPayloadLen), payload}));
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(ErrorOf(replies[0]), kEinval);
  }
  FeedAll(*s_, R(Command::kRead, 2, 0, 8));
  EXPECT_EQ(TakeRequests(*s_).size(), 1u);
}

// A PAYLOAD_LEN payload above max_block is read and refused, as in compact
// mode (the spec: lengths up to 2^25 SHOULD NOT be taken for an attack),
// and only one above max_discard_payload drops the connection at once,
// on any command, without waiting for the payload.
TEST_F(TransmissionTest, ExtendedPayloadAboveMaximum) {
  ServerOptions o = TestOptions();
  const uint64_t max = o.exports[0].max_block;
  o.max_discard_payload = 2 * max;
  for (Command c : {Command::kWrite, Command::kBlockStatus, Command::kRead}) {
    SCOPED_TRACE(static_cast<int>(c));
    Start({true, true}, /*meta=*/true, o);
    auto replies = Rejected(
        Concat({R(c, 1, 0, max + 1, kCmdFlagPayloadLen), Bytes(max + 1, 5)}));
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(ErrorOf(replies[0]), c == Command::kWrite ? kEoverflow : kEinval);
    FeedAll(*s_, R(Command::kRead, 2, 0, 8));
    EXPECT_EQ(TakeRequests(*s_).size(), 1u);

    Start({true, true}, /*meta=*/true, o);
    EXPECT_FALSE(
        s_->Feed(R(c, 1, 0, o.max_discard_payload + 1, kCmdFlagPayloadLen))
            .ok());
    EXPECT_EQ(s_->phase(), ServerPhase::kDead);
    EXPECT_EQ(StatusErrno(s_->dead_reason()), EOVERFLOW);
  }
  // Exactly the maximum is a payload like any other.
  Start({true, true}, false, o);
  Bytes payload(max, 3);
  FeedAll(*s_,
          Concat({R(Command::kWrite, 1, 0, max, kCmdFlagPayloadLen), payload}));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].payload.size(), max);
}

TEST_F(TransmissionTest, OtherCommandsReachTheEmbedder) {
  Start({true, false}, /*meta=*/true);
  FeedAll(*s_, Concat({R(Command::kFlush, 1, 0, 0),
                       R(Command::kTrim, 2, 0, 4096, kCmdFlagFua),
                       R(Command::kCache, 3, 0, 4096),
                       R(Command::kWriteZeroes, 4, 0, 4096,
                         kCmdFlagNoHole | kCmdFlagFastZero),
                       R(Command::kBlockStatus, 5, 0, 4096, kCmdFlagReqOne)}));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 5u);
  EXPECT_EQ(reqs[0].command, Command::kFlush);
  EXPECT_EQ(reqs[1].command, Command::kTrim);
  EXPECT_EQ(reqs[2].command, Command::kCache);
  EXPECT_EQ(reqs[3].command, Command::kWriteZeroes);
  EXPECT_EQ(reqs[3].flags, kCmdFlagNoHole | kCmdFlagFastZero);
  EXPECT_EQ(reqs[4].command, Command::kBlockStatus);
  EXPECT_EQ(s_->in_flight(), 5u);
  // Replies in any order.
  for (int i = 3; i >= 0; --i) ASSERT_TRUE(s_->ReplyOk(reqs[i].handle).ok());
  std::vector<Extent> extents = {{1024, 0}, {8192, 3}};
  ASSERT_TRUE(s_->ReplyBlockStatus(reqs[4].handle, extents).ok());
  auto replies = ParseReplies(TakeOutput(*s_));
  ASSERT_EQ(replies.size(), 5u);
  EXPECT_EQ(replies[0].cookie, 4u);
  EXPECT_EQ(replies[0].magic, kSimpleReplyMagic);
  EXPECT_EQ(replies[4].type, kChunkBs);
  auto chunk = DecodeBlockStatus(replies[4].payload, 10);
  ASSERT_TRUE(chunk.ok());
  EXPECT_EQ(chunk->context_id, kBaseAllocationContextId);
  // REQ_ONE: exactly one extent.
  EXPECT_EQ(chunk->extents, (std::vector<Extent>{{1024, 0}}));
}

TEST_F(TransmissionTest, BlockStatusIsClippedToTheRequest) {
  Start({true, false}, true);
  FeedAll(*s_, R(Command::kBlockStatus, 5, 4096, 8192));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  std::vector<Extent> extents = {{4096, 0}, {1u << 20, 3}, {5, 0}};
  ASSERT_TRUE(s_->ReplyBlockStatus(reqs[0].handle, extents).ok());
  auto replies = ParseReplies(TakeOutput(*s_));
  auto chunk = DecodeBlockStatus(replies.at(0).payload, 10);
  EXPECT_EQ(chunk->extents, (std::vector<Extent>{{4096, 0}, {4096, 3}}));
}

TEST_F(TransmissionTest, ExtendedBlockStatusUses64BitExtents) {
  ServerOptions o = TestOptions();
  o.exports[0].size = uint64_t{16} << 30;
  Start({true, true}, true, o);
  FeedAll(*s_, R(Command::kBlockStatus, 5, 0, uint64_t{8} << 30));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].length, uint64_t{8} << 30);
  std::vector<Extent> extents = {{uint64_t{6} << 30, 3},
                                 {uint64_t{6} << 30, 0}};
  ASSERT_TRUE(s_->ReplyBlockStatus(reqs[0].handle, extents).ok());
  auto replies = ParseReplies(TakeOutput(*s_));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].type, kChunkBsExt);
  auto chunk = DecodeBlockStatusExt(replies[0].payload, 10);
  ASSERT_TRUE(chunk.ok());
  EXPECT_EQ(chunk->extents, (std::vector<Extent>{{uint64_t{6} << 30, 3},
                                                 {uint64_t{2} << 30, 0}}));
}

TEST_F(TransmissionTest, ErrorReplyForms) {
  // Simple mode: always simple.
  Start({false, false});
  FeedAll(*s_, R(Command::kRead, 1, 0, 8));
  auto reqs = TakeRequests(*s_);
  ASSERT_TRUE(s_->ReplyError(reqs[0].handle, EIO, "disk on fire").ok());
  auto replies = ParseReplies(TakeOutput(*s_));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].error, kEio);

  // Structured: READ gets an ERROR chunk with the message, WRITE a simple
  // reply.
  Start({true, false});
  FeedAll(*s_, Concat({R(Command::kRead, 1, 0, 8), R(Command::kWrite, 2, 0, 1),
                       Bytes{1}}));
  reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 2u);
  ASSERT_TRUE(s_->ReplyError(reqs[0].handle, EIO, "disk on fire").ok());
  ASSERT_TRUE(s_->ReplyError(reqs[1].handle, ENOSPC).ok());
  replies = ParseReplies(TakeOutput(*s_));
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].type, kChunkError);
  EXPECT_EQ(replies[0].flags, kReplyFlagDone);
  auto err = DecodeErrorChunk(replies[0].payload);
  ASSERT_TRUE(err.ok());
  EXPECT_EQ(*err, (ErrorChunk{kEio, "disk on fire"}));
  EXPECT_EQ(replies[1].magic, kSimpleReplyMagic);
  EXPECT_EQ(replies[1].error, kEnospc);

  // Extended: chunks for everything; unknown errno -> EINVAL.
  Start({true, true});
  FeedAll(*s_, R(Command::kFlush, 1, 0, 0));
  reqs = TakeRequests(*s_);
  ASSERT_TRUE(s_->ReplyError(reqs[0].handle, EXDEV).ok());
  replies = ParseReplies(TakeOutput(*s_));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(ErrorOf(replies[0]), kEinval);
}

// A read that failed at byte 4 of [0, 8) after 4 good bytes: the golden
// bytes of the data chunk and of the ERROR_OFFSET chunk that follows it.
TEST_F(TransmissionTest, StructuredReadErrorIsAnErrorOffsetChunk) {
  Start({true, false});
  FeedAll(*s_, R(Command::kRead, 9, 0, 8));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  const uint8_t data[4] = {1, 2, 3, 4};
  ReadPiece p = ReadPiece::Data(0, data);
  ASSERT_TRUE(s_->ReplyReadError(reqs[0].handle, {&p, 1}, 4, EIO, "bad").ok());
  EXPECT_EQ(s_->in_flight(), 0u);
  EXPECT_EQ(TakeOutput(*s_),
            (Bytes{// OFFSET_DATA, not DONE, cookie 9, length 12
                   0x66, 0x8e, 0x33, 0xef, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9,
                   0, 0, 0, 12,
                   // offset 0, data
                   0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
                   // ERROR_OFFSET (0x8002), DONE, cookie 9, length 17
                   0x66, 0x8e, 0x33, 0xef, 0, 1, 0x80, 2, 0, 0, 0, 0, 0, 0, 0,
                   9, 0, 0, 0, 17,
                   // EIO, message "bad", offset 4
                   0, 0, 0, 5, 0, 3, 'b', 'a', 'd', 0, 0, 0, 0, 0, 0, 0, 4}));
}

TEST_F(TransmissionTest, ExtendedReadErrorIsAnErrorOffsetChunk) {
  Start({true, true});
  FeedAll(*s_, R(Command::kRead, 3, 4096, 8));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  // Nothing could be read: only the error chunk, at the request offset.
  ASSERT_TRUE(s_->ReplyReadError(reqs[0].handle, {}, 4096, ENOSPC).ok());
  EXPECT_EQ(TakeOutput(*s_),
            (Bytes{// extended header: ERROR_OFFSET, DONE, cookie 3,
                   // request offset 4096, length 14
                   0x6e, 0x8a, 0x27, 0x8c, 0, 1, 0x80, 2, 0, 0, 0, 0, 0, 0, 0,
                   3, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 14,
                   // ENOSPC, no message, offset 4096
                   0, 0, 0, 28, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0}));
}

TEST_F(TransmissionTest, ReadErrorWithDfSendsOneDataChunkThenTheError) {
  Start({true, false});
  FeedAll(*s_, R(Command::kRead, 9, 0, 16, kCmdFlagDf));
  auto reqs = TakeRequests(*s_);
  const uint8_t data[4] = {5, 6, 7, 8};
  std::vector<ReadPiece> pieces = {ReadPiece::Hole(0, 4),
                                   ReadPiece::Data(4, data)};
  ASSERT_TRUE(s_->ReplyReadError(reqs[0].handle, pieces, 8, EIO).ok());
  auto replies = ParseReplies(TakeOutput(*s_));
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].type, kChunkData);
  EXPECT_EQ(replies[0].flags, 0);
  EXPECT_EQ(replies[0].payload,
            (Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 6, 7, 8}));
  EXPECT_EQ(replies[1].type, kChunkErrorOffset);
  EXPECT_EQ(replies[1].flags, kReplyFlagDone);
  EXPECT_EQ(*DecodeErrorOffsetChunk(replies[1].payload),
            (ErrorOffsetChunk{kEio, "", 8}));
}

TEST_F(TransmissionTest, SimpleReadErrorDropsTheData) {
  Start({false, false});
  FeedAll(*s_, R(Command::kRead, 7, 0, 8));
  auto reqs = TakeRequests(*s_);
  auto data = std::make_shared<std::vector<uint8_t>>(4, 1);
  std::weak_ptr<std::vector<uint8_t>> weak = data;
  ReadPiece p = ReadPiece::Data(0, *data);
  ASSERT_TRUE(
      s_->ReplyReadError(reqs[0].handle, {&p, 1}, 4, EIO, "x", std::move(data))
          .ok());
  EXPECT_TRUE(weak.expired());  // no data goes out, so none is held
  EXPECT_EQ(TakeOutput(*s_), (Bytes{0x67, 0x44, 0x66, 0x98, 0, 0, 0, 5, 0, 0, 0,
                                    0, 0, 0, 0, 7}));
}

TEST_F(TransmissionTest, ReadErrorMisuseIsRejected) {
  Start({true, false});
  FeedAll(*s_, Concat({R(Command::kRead, 1, 8, 8), R(Command::kRead, 2, 0, 0),
                       R(Command::kFlush, 3, 0, 0)}));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 3u);
  const RequestHandle read = reqs[0].handle;
  // The error offset must lie inside the request. Misuse carries EINVAL.
  absl::Status misuse = s_->ReplyReadError(read, {}, 7, EIO);
  EXPECT_TRUE(absl::IsInvalidArgument(misuse));
  EXPECT_EQ(StatusErrno(misuse), EINVAL) << misuse;
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyReadError(read, {}, 16, EIO)));
  EXPECT_TRUE(
      absl::IsInvalidArgument(s_->ReplyReadError(reqs[1].handle, {}, 0, EIO)));
  // The pieces must end exactly at the error offset.
  std::vector<ReadPiece> short_pieces = {ReadPiece::Hole(8, 2)};
  EXPECT_TRUE(
      absl::IsInvalidArgument(s_->ReplyReadError(read, short_pieces, 12, EIO)));
  std::vector<ReadPiece> past = {ReadPiece::Hole(8, 6)};
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyReadError(read, past, 12, EIO)));
  EXPECT_TRUE(
      absl::IsInvalidArgument(s_->ReplyReadError(reqs[2].handle, {}, 0, EIO)));
  EXPECT_EQ(s_->pending_output_bytes(), 0u);
  EXPECT_EQ(s_->in_flight(), 3u);
}

TEST_F(TransmissionTest, HugePayloadDropsTheConnection) {
  Start({true, true});
  EXPECT_FALSE(
      s_->Feed(R(Command::kWrite, 1, 0, uint64_t{1} << 40, kCmdFlagPayloadLen))
          .ok());
  EXPECT_EQ(s_->phase(), ServerPhase::kDead);
  // Compact: above max_discard_payload.
  Start({true, false});
  EXPECT_FALSE(s_->Feed(R(Command::kWrite, 1, 0, 0xffffffff)).ok());
  EXPECT_EQ(s_->phase(), ServerPhase::kDead);
}

TEST_F(TransmissionTest, BadRequestMagicDropsTheConnection) {
  Start({false, false});
  Bytes in = R(Command::kRead, 1, 0, 8);
  in[0] = 0;
  EXPECT_FALSE(s_->Feed(in).ok());
  EXPECT_EQ(s_->phase(), ServerPhase::kDead);
  // Compact requests after extended headers are wrong too.
  Start({true, true});
  EXPECT_FALSE(s_->Feed(Concat({Req(false, Command::kRead, 1, 0, 8),
                                Req(false, Command::kRead, 1, 0, 8)}))
                   .ok());
}

TEST_F(TransmissionTest, ReplyMisuseIsRejected) {
  Start({true, false}, true);
  FeedAll(*s_, Concat({R(Command::kRead, 1, 0, 8),
                       R(Command::kBlockStatus, 2, 0, 8)}));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 2u);
  const RequestHandle read = reqs[0].handle, bs = reqs[1].handle;
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyOk(999)));
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyOk(read)));
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyOk(bs)));
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyBlockStatus(read, {})));
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyBlockStatus(bs, {})));
  std::vector<Extent> zero = {{0, 0}};
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyBlockStatus(bs, zero)));
  std::vector<ReadPiece> gap = {ReadPiece::Hole(0, 4), ReadPiece::Hole(5, 3)};
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyRead(read, gap)));
  std::vector<ReadPiece> short_pieces = {ReadPiece::Hole(0, 4)};
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyRead(read, short_pieces)));
  std::vector<ReadPiece> long_pieces = {ReadPiece::Hole(0, 9)};
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyRead(read, long_pieces)));
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyRead(bs, {})));
  EXPECT_EQ(s_->pending_output_bytes(), 0u);
  EXPECT_EQ(s_->in_flight(), 2u);
  // A second reply to the same handle is rejected.
  ASSERT_TRUE(s_->ReplyError(read, EIO).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(s_->ReplyError(read, EIO)));
}

TEST_F(TransmissionTest, ReplyAfterDeathIsDropped) {
  Start({false, false});
  FeedAll(*s_, Concat({R(Command::kWrite, 1, 0, 2), Bytes{1, 2}}));
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  s_->FeedTransportError(absl::UnavailableError("reset"));
  EXPECT_EQ(s_->phase(), ServerPhase::kDead);
  EXPECT_EQ(reqs[0].payload[1], 2);  // still valid until replied
  absl::Status st = s_->ReplyOk(reqs[0].handle);
  EXPECT_TRUE(absl::IsFailedPrecondition(st));
  EXPECT_EQ(s_->in_flight(), 0u);
  EXPECT_EQ(s_->pending_output_bytes(), 0u);
}

// Unsent replies above output_high_water stop the input at the next
// message, until the output drains: a client that never reads cannot make
// the session queue without bound.
TEST_F(TransmissionTest, OutputHighWaterPausesInput) {
  ServerOptions o = TestOptions();
  o.output_high_water = 64 * 1024;
  o.max_in_flight = 4;
  Start({true, true}, false, o);
  Bytes in;
  for (int i = 0; i < 100; ++i) {
    in = Concat({in, R(Command::kRead, i, 0, 4096)});
  }
  size_t fed = 0;
  while (fed < in.size()) {
    absl::StatusOr<size_t> n = s_->Feed(ByteSpan(in).subspan(fed));
    ASSERT_TRUE(n.ok());
    fed += *n;
    for (const ServerRequest& r : TakeRequests(*s_)) {
      Bytes data(r.length, 1);
      ReadPiece p = ReadPiece::Data(r.offset, data);
      ASSERT_TRUE(s_->ReplyRead(r.handle, {&p, 1},
                                std::make_shared<Bytes>(std::move(data)))
                      .ok());
    }
    if (*n == 0) break;
  }
  EXPECT_LT(fed, in.size());
  EXPECT_EQ(fed % kExtendedRequestSize, 0u);  // at a message boundary
  EXPECT_TRUE(s_->RecvBuffer().empty());
  EXPECT_EQ(s_->wants(), Direction::kWrite);
  // Over the mark by at most the replies to the requests that were in
  // flight when it was crossed (4 here, each 4096 + 40 bytes).
  EXPECT_GT(s_->pending_output_bytes(), 60 * 1024u);
  EXPECT_LE(s_->pending_output_bytes(), 64 * 1024u + 4 * (4096 + 40));
  // Once the output drains, input resumes.
  TakeOutput(*s_);
  EXPECT_EQ(s_->wants(), Direction::kRead);
  absl::StatusOr<size_t> n = s_->Feed(ByteSpan(in).subspan(fed));
  ASSERT_TRUE(n.ok());
  EXPECT_GT(*n, 0u);
}

// The bound counts the queue's bookkeeping too: thousands of small error
// replies pause the input long before their bytes alone reach the mark.
TEST_F(TransmissionTest, OutputHighWaterCountsSmallRepliesAtTheirCost) {
  ServerOptions o = TestOptions();
  o.output_high_water = 64 * 1024;
  Start({true, false}, false, o);
  Bytes in;
  for (int i = 0; i < 5000; ++i) {
    in = Concat({in, R(static_cast<Command>(99), i, 0, 0)});  // EINVAL
  }
  absl::StatusOr<size_t> n = s_->Feed(in);
  ASSERT_TRUE(n.ok());
  EXPECT_LT(*n, in.size());
  EXPECT_TRUE(s_->RecvBuffer().empty());
  // Each error reply is about 40 bytes; the queue stopped at well under
  // 64 KiB of them.
  EXPECT_LT(s_->pending_output_bytes(), 32 * 1024u);
  const size_t replies = ParseReplies(TakeOutput(*s_)).size();
  EXPECT_EQ(replies, *n / kRequestSize);
  EXPECT_GT(replies, 100u);
}

TEST_F(TransmissionTest, KeepaliveAndReplySentFollowTheLastByte) {
  ServerOptions o = TestOptions();
  o.report_reply_sent = true;
  Start({true, false}, false, o);
  FeedAll(*s_, R(Command::kRead, 1, 0, 4));
  auto reqs = TakeRequests(*s_);
  auto data = std::make_shared<std::vector<uint8_t>>(4, 0x5a);
  std::weak_ptr<std::vector<uint8_t>> weak = data;
  ReadPiece p = ReadPiece::Data(0, *data);
  ASSERT_TRUE(s_->ReplyRead(reqs[0].handle, {&p, 1}, std::move(data)).ok());
  EXPECT_FALSE(weak.expired());
  const size_t total = s_->pending_output_bytes();
  ASSERT_TRUE(s_->ConsumeOutput(total - 1).ok());
  EXPECT_FALSE(weak.expired());
  EXPECT_FALSE(s_->has_events());
  ASSERT_TRUE(s_->ConsumeOutput(1).ok());
  EXPECT_TRUE(weak.expired());
  auto events = TakeEvents(*s_);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<ReplySent>(events[0]).handle, reqs[0].handle);
  EXPECT_FALSE(s_->ConsumeOutput(1).ok());
}

TEST_F(TransmissionTest, WritePayloadGoesStraightIntoTheRequestBuffer) {
  Start({false, false});
  FeedAll(*s_, R(Command::kWrite, 1, 0, 1000));
  absl::Span<uint8_t> buf = s_->RecvBuffer();
  ASSERT_EQ(buf.size(), 1000u);
  std::fill(buf.begin(), buf.end(), 0x77);
  ASSERT_TRUE(s_->CommitRecv(1000).ok());
  auto reqs = TakeRequests(*s_);
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].payload.data(), buf.data());  // no copy
}

}  // namespace
}  // namespace nbd::test
