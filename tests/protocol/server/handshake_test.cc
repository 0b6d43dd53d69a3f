// ServerSession handshake, driven by scripted client bytes.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/endian.h"
#include "protocol/server/server.h"
#include "tests/protocol/server/test_util.h"

namespace nbd::test {
namespace {

using ::testing::ElementsAre;

uint32_t T(OptionReplyType t) { return static_cast<uint32_t>(t); }

class HandshakeTest : public ::testing::Test {
 protected:
  explicit HandshakeTest(ServerOptions o = TestOptions()) : s_(std::move(o)) {}

  // Sends client flags, then returns the replies to `options`.
  std::vector<OptReply> Options(ByteSpan options,
                                uint32_t flags = kClientFlagFixedNewstyle) {
    TakeOutput(s_);
    return ParseOptReplies(FeedAll(s_, Concat({Flags(flags), options})));
  }

  ServerSession s_;
};

TEST_F(HandshakeTest, GreetingIsFixedNewstyleWithNoZeroes) {
  Bytes out = TakeOutput(s_);
  ASSERT_EQ(out.size(), kNewstyleGreetingSize);
  auto g = DecodeNewstyleGreeting(out);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->handshake_flags, kFlagFixedNewstyle | kFlagNoZeroes);
  EXPECT_EQ(s_.phase(), ServerPhase::kHandshake);
  EXPECT_EQ(s_.wants(), Direction::kRead);
}

TEST_F(HandshakeTest, UnknownClientFlagsDropTheConnection) {
  TakeOutput(s_);
  ASSERT_FALSE(s_.Feed(Flags(1u << 5)).ok());
  EXPECT_EQ(s_.phase(), ServerPhase::kDead);
  EXPECT_EQ(s_.wants(), Direction::kNone);
  auto events = TakeEvents(s_);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<ServerDead>(events[0]));
}

TEST_F(HandshakeTest, BadOptionMagicDropsTheConnection) {
  Bytes bad = Opt(Option::kList);
  bad[0] ^= 0xff;
  TakeOutput(s_);
  EXPECT_FALSE(s_.Feed(Concat({Flags(1), bad})).ok());
  EXPECT_EQ(s_.phase(), ServerPhase::kDead);
}

TEST_F(HandshakeTest, ExportNameWithoutNoZeroesPads) {
  auto out = FeedAll(s_, Concat({Flags(kClientFlagFixedNewstyle),
                                 Opt(Option::kExportName, Str("disk"))}));
  ASSERT_EQ(out.size(), kNewstyleGreetingSize + kExportNameReplySize);
  auto r = DecodeExportNameReply(ByteSpan(out).subspan(kNewstyleGreetingSize));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->export_size, 1u << 20);
  EXPECT_TRUE(r->transmission_flags & kTransmitHasFlags);
  EXPECT_TRUE(r->transmission_flags & kTransmitSendTrim);
  EXPECT_FALSE(r->transmission_flags & kTransmitSendDf);  // no SR
  EXPECT_EQ(s_.phase(), ServerPhase::kTransmission);
  auto events = TakeEvents(s_);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(std::get<TransmissionStarted>(events[0]),
            (TransmissionStarted{0, false, false}));
}

TEST_F(HandshakeTest, ExportNameWithNoZeroes) {
  TakeOutput(s_);
  auto out =
      FeedAll(s_, Concat({Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes),
                          Opt(Option::kExportName, Str("ro"))}));
  ASSERT_EQ(out.size(), kExportNameReplyNoZeroesSize);
  auto r = DecodeExportNameReply(out);
  EXPECT_EQ(r->export_size, 64u * 1024);
  EXPECT_TRUE(r->transmission_flags & kTransmitReadOnly);
  EXPECT_FALSE(r->transmission_flags & kTransmitSendTrim);
  EXPECT_EQ(s_.export_index(), 1u);
}

TEST_F(HandshakeTest, EmptyExportNameSelectsTheDefault) {
  TakeOutput(s_);
  FeedAll(s_, Concat({Flags(3), Opt(Option::kExportName)}));
  EXPECT_EQ(s_.export_index(), 0u);
}

TEST_F(HandshakeTest, UnknownExportNameDropsTheConnection) {
  TakeOutput(s_);
  EXPECT_FALSE(
      s_.Feed(Concat({Flags(3), Opt(Option::kExportName, Str("nope"))})).ok());
  EXPECT_EQ(s_.phase(), ServerPhase::kDead);
  EXPECT_EQ(s_.pending_output_bytes(), 0u);
}

TEST_F(HandshakeTest, OverlongExportNameDropsTheConnection) {
  TakeOutput(s_);
  EXPECT_FALSE(
      s_.Feed(Concat({Flags(3), Opt(Option::kExportName, Bytes(5000, 'a'))}))
          .ok());
  EXPECT_EQ(s_.phase(), ServerPhase::kDead);
}

TEST_F(HandshakeTest, ExportNameAfterExtendedHeadersDropsTheConnection) {
  TakeOutput(s_);
  (void)s_.Feed(Concat({Flags(3), Opt(Option::kExtendedHeaders),
                        Opt(Option::kExportName, Str("disk"))}));
  EXPECT_EQ(s_.phase(), ServerPhase::kDead);
}

TEST_F(HandshakeTest, InfoStaysInNegotiation) {
  auto replies = Options(Opt(Option::kInfo, GoData("ro")));
  ASSERT_EQ(replies.size(), 3u);  // EXPORT, BLOCK_SIZE, ACK
  EXPECT_TRUE(DecodeInfoExport(replies[0].payload)->transmission_flags &
              kTransmitReadOnly);
  EXPECT_EQ(replies[2].header.type, T(OptionReplyType::kAck));
  EXPECT_EQ(s_.phase(), ServerPhase::kHandshake);
  EXPECT_TRUE(TakeEvents(s_).empty());
}

TEST_F(HandshakeTest, GoErrors) {
  auto replies = Options(Concat({
      Opt(Option::kGo, GoData("missing")),
      Opt(Option::kGo, Bytes{0, 0, 0, 9, 'x'}),            // name overruns
      Opt(Option::kInfo, GoData(std::string(5000, 'n'))),  // > 4096
  }));
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[0].header.type, T(OptionReplyType::kErrUnknown));
  EXPECT_EQ(replies[1].header.type, T(OptionReplyType::kErrInvalid));
  EXPECT_EQ(replies[2].header.type, T(OptionReplyType::kErrInvalid));
  EXPECT_EQ(s_.phase(), ServerPhase::kHandshake);
}

TEST_F(HandshakeTest, ListWithDataIsInvalid) {
  auto replies = Options(Opt(Option::kList, Str("x")));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].header.type, T(OptionReplyType::kErrInvalid));
}

TEST_F(HandshakeTest, StartTlsAndUnknownOptionsAreUnsupported) {
  auto replies =
      Options(Concat({Opt(Option::kStartTls), Opt(Option::kPeekExport),
                      Opt(99u), Opt(Option::kStartTls, Str("x"))}));
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_EQ(replies[0].header.type, T(OptionReplyType::kErrUnsup));
  EXPECT_FALSE(replies[0].payload.empty());  // a message
  EXPECT_EQ(replies[1].header.type, T(OptionReplyType::kErrUnsup));
  EXPECT_EQ(replies[2].header.type, T(OptionReplyType::kErrUnsup));
  EXPECT_EQ(replies[2].header.option, 99u);
  EXPECT_EQ(replies[3].header.type, T(OptionReplyType::kErrInvalid));
}

TEST_F(HandshakeTest, StructuredRepliesOnceOnly) {
  auto replies = Options(
      Concat({Opt(Option::kStructuredReply, Str("x")),
              Opt(Option::kStructuredReply), Opt(Option::kStructuredReply)}));
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[0].header.type, T(OptionReplyType::kErrInvalid));
  EXPECT_EQ(replies[1].header.type, T(OptionReplyType::kAck));
  EXPECT_EQ(replies[2].header.type, T(OptionReplyType::kErrInvalid));
  EXPECT_TRUE(s_.structured_replies());
  EXPECT_FALSE(s_.extended_headers());
}

TEST_F(HandshakeTest, ExtendedHeadersImplyStructuredReplies) {
  auto replies = Options(
      Concat({Opt(Option::kExtendedHeaders), Opt(Option::kExtendedHeaders)}));
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].header.type, T(OptionReplyType::kAck));
  EXPECT_EQ(replies[1].header.type, T(OptionReplyType::kErrInvalid));
  EXPECT_TRUE(s_.structured_replies());
  EXPECT_TRUE(s_.extended_headers());
}

TEST_F(HandshakeTest, MetaContextsNeedStructuredReplies) {
  auto replies = Options(Concat({
      Opt(Option::kListMetaContext, MetaData("disk", {})),
      Opt(Option::kSetMetaContext, MetaData("disk", {"base:allocation"})),
  }));
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].header.type, T(OptionReplyType::kErrInvalid));
  EXPECT_EQ(replies[1].header.type, T(OptionReplyType::kErrInvalid));
}

TEST_F(HandshakeTest, ListMetaContext) {
  auto replies = Options(Concat({
      Opt(Option::kStructuredReply),
      Opt(Option::kListMetaContext, MetaData("disk", {})),
      Opt(Option::kListMetaContext, MetaData("disk", {"base:", "base:"})),
      Opt(Option::kListMetaContext, MetaData("disk", {"qemu:dirty-bitmap:x"})),
      Opt(Option::kListMetaContext, MetaData("nope", {})),
      Opt(Option::kListMetaContext, Bytes{1, 2}),
  }));
  ASSERT_EQ(replies.size(), 1u + 2 + 2 + 1 + 1 + 1);
  auto ctx = DecodeMetaContextReply(replies[1].payload);
  ASSERT_TRUE(ctx.ok());
  EXPECT_EQ(*ctx,
            (MetaContextReply{kBaseAllocationContextId, "base:allocation"}));
  EXPECT_EQ(replies[2].header.type, T(OptionReplyType::kAck));
  EXPECT_EQ(replies[3].header.type, T(OptionReplyType::kMetaContext));
  EXPECT_EQ(replies[4].header.type, T(OptionReplyType::kAck));
  EXPECT_EQ(replies[5].header.type, T(OptionReplyType::kAck));  // no match
  EXPECT_EQ(replies[6].header.type, T(OptionReplyType::kErrUnknown));
  EXPECT_EQ(replies[7].header.type, T(OptionReplyType::kErrInvalid));
  EXPECT_FALSE(s_.block_status_negotiated());
}

TEST_F(HandshakeTest, SetMetaContextSelectsBaseAllocation) {
  auto replies = Options(Concat({
      Opt(Option::kStructuredReply),
      Opt(Option::kSetMetaContext,
          MetaData("disk", {"base:", "base:allocation"})),
      Opt(Option::kGo, GoData("disk")),
  }));
  ASSERT_GE(replies.size(), 3u);
  EXPECT_EQ(replies[1].header.type, T(OptionReplyType::kMetaContext));
  EXPECT_EQ(replies[2].header.type, T(OptionReplyType::kAck));
  EXPECT_TRUE(s_.block_status_negotiated());
}

TEST_F(HandshakeTest, MetaContextForAnotherExportDoesNotCarryOver) {
  Options(Concat({
      Opt(Option::kStructuredReply),
      Opt(Option::kSetMetaContext, MetaData("ro", {"base:allocation"})),
      Opt(Option::kGo, GoData("disk")),
  }));
  EXPECT_EQ(s_.phase(), ServerPhase::kTransmission);
  EXPECT_FALSE(s_.block_status_negotiated());
}

TEST_F(HandshakeTest, FailedSetClearsTheSelection) {
  Options(Concat({
      Opt(Option::kStructuredReply),
      Opt(Option::kSetMetaContext, MetaData("disk", {"base:allocation"})),
      Opt(Option::kSetMetaContext, MetaData("nope", {"base:allocation"})),
      Opt(Option::kGo, GoData("disk")),
  }));
  EXPECT_FALSE(s_.block_status_negotiated());
}

TEST(HandshakeLimitsTest, OversizedOptionIsSkippedAndRefused) {
  ServerOptions o = TestOptions();
  o.max_option_length = 100;
  ServerSession s(o);
  TakeOutput(s);
  auto replies = ParseOptReplies(
      FeedAll(s, Concat({Flags(1), Opt(Option::kInfo, Bytes(150000, 7)),
                         Opt(Option::kList)})));
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_EQ(replies[0].header.type, T(OptionReplyType::kErrTooBig));
  EXPECT_EQ(replies[3].header.type, T(OptionReplyType::kAck));
}

TEST(HandshakeLimitsTest, TooManyOptionsDropTheConnection) {
  ServerOptions o = TestOptions();
  o.max_options = 3;
  ServerSession s(o);
  TakeOutput(s);
  Bytes in = Flags(1);
  for (int i = 0; i < 4; ++i) {
    Bytes opt = Opt(Option::kStartTls);
    in.insert(in.end(), opt.begin(), opt.end());
  }
  EXPECT_FALSE(s.Feed(in).ok());
  EXPECT_EQ(s.phase(), ServerPhase::kDead);
}

TEST_F(HandshakeTest, EofBetweenOptionsCloses) {
  Options(Opt(Option::kList));
  s_.FeedEof();
  EXPECT_EQ(s_.phase(), ServerPhase::kClosed);
}

TEST_F(HandshakeTest, EofInsideAnOptionKills) {
  TakeOutput(s_);
  Bytes in = Concat({Flags(1), Opt(Option::kList)});
  in.pop_back();
  ASSERT_TRUE(s_.Feed(in).ok());
  s_.FeedEof();
  EXPECT_EQ(s_.phase(), ServerPhase::kDead);
  EXPECT_FALSE(s_.Feed(in).ok());  // no input once dead
}

TEST_F(HandshakeTest, EofBeforeClientFlagsCloses) {
  s_.FeedEof();
  EXPECT_EQ(s_.phase(), ServerPhase::kClosing);  // the greeting is pending
  TakeOutput(s_);
  EXPECT_EQ(s_.phase(), ServerPhase::kClosed);
}

}  // namespace
}  // namespace nbd::test
