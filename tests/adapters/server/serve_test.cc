// ServeRequest/Serve (adapters/server/serve.cc) between a ServerSession fed
// scripted requests and a recording backend: which Backend calls each
// command becomes, with which FUA and zero flags, and how a read failure
// goes out.
#include "adapters/server/serve.h"

#include <cerrno>
#include <vector>

#include "adapters/server/memory_backend.h"
#include "gtest/gtest.h"
#include "protocol/server/server.h"
#include "protocol/wire.h"
#include "tests/adapters/server/test_backends.h"
#include "tests/protocol/server/test_util.h"

namespace nbd::test {
namespace {

constexpr uint64_t kSize = 1 << 20;
using Call = RecordingBackend::Call;

ServerOptions OptionsFor(const Backend& backend) {
  ServerOptions o;
  o.exports.push_back(MakeExportInfo("disk", "", backend));
  return o;
}

// Every reply in `out` is a success (simple or NONE chunk).
void ExpectAllOk(const Bytes& out, size_t count) {
  std::vector<ParsedReply> replies = ParseReplies(out);
  ASSERT_EQ(replies.size(), count);
  for (const ParsedReply& r : replies) {
    if (r.magic == kSimpleReplyMagic) {
      EXPECT_EQ(r.error, 0u) << "cookie " << r.cookie;
    } else {
      EXPECT_EQ(r.type, static_cast<uint16_t>(ChunkType::kNone))
          << "cookie " << r.cookie;
    }
  }
}

class ServeTest : public ::testing::TestWithParam<bool> {  // extended?
 protected:
  ServeTest() : memory_(kSize), recorder_(memory_), session_(Options()) {
    Negotiate(session_, /*structured=*/true, extended(), /*meta=*/false);
  }
  bool extended() const { return GetParam(); }
  ServerOptions Options() const { return OptionsFor(recorder_); }
  Bytes R(Command c, uint64_t cookie, uint64_t off, uint64_t len,
          uint16_t flags = 0) {
    // Under extended headers a WRITE MUST carry PAYLOAD_LEN.
    if (extended() && c == Command::kWrite) flags |= kCmdFlagPayloadLen;
    return Req(extended(), c, cookie, off, len, flags);
  }

  MemoryBackend memory_;
  RecordingBackend recorder_;
  ServerSession session_;
};

TEST_P(ServeTest, FuaReachesTheBackend) {
  const Bytes data(512, 7);
  FeedAll(session_, Concat({R(Command::kWrite, 1, 0, 512, kCmdFlagFua), data,
                            R(Command::kWrite, 2, 512, 512), data,
                            R(Command::kTrim, 3, 4096, 4096, kCmdFlagFua),
                            R(Command::kTrim, 4, 8192, 4096)}));
  EXPECT_EQ(Serve(session_, recorder_), 4u);
  ExpectAllOk(TakeOutput(session_), 4);
  EXPECT_EQ(recorder_.calls(),
            (std::vector<Call>{{Command::kWrite, 0, 512, true, 0},
                               {Command::kWrite, 512, 512, false, 0},
                               {Command::kTrim, 4096, 4096, true, 0},
                               {Command::kTrim, 8192, 4096, false, 0}}));
}

TEST_P(ServeTest, WriteZeroesFlagsReachTheBackend) {
  FeedAll(session_,
          Concat({R(Command::kWriteZeroes, 1, 0, 4096, kCmdFlagFua),
                  R(Command::kWriteZeroes, 2, 0, 4096, kCmdFlagNoHole),
                  R(Command::kWriteZeroes, 3, 0, 4096,
                    kCmdFlagFastZero | kCmdFlagFua | kCmdFlagNoHole)}));
  EXPECT_EQ(Serve(session_, recorder_), 3u);
  ExpectAllOk(TakeOutput(session_), 3);
  EXPECT_EQ(recorder_.calls(),
            (std::vector<Call>{
                {Command::kWriteZeroes, 0, 4096, true, kZeroFua | kZeroMayTrim},
                {Command::kWriteZeroes, 0, 4096, false, 0},
                {Command::kWriteZeroes, 0, 4096, true, kZeroFua | kZeroFast}}));
}

TEST_P(ServeTest, ReadFailureIsAnErrorOffsetAfterTheGoodData) {
  FaultyBackend faulty(kSize);
  ServerSession s(OptionsFor(faulty));
  Negotiate(s, true, extended(), false);
  const Bytes data(4096, 0xab);
  ASSERT_TRUE(faulty.Write(0, data, false).ok());
  faulty.FailReads(1024, 512, EIO);
  FeedAll(s, R(Command::kRead, 9, 0, 4096));
  EXPECT_EQ(Serve(s, faulty), 1u);
  std::vector<ParsedReply> replies = ParseReplies(TakeOutput(s));
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].type, static_cast<uint16_t>(ChunkType::kOffsetData));
  EXPECT_EQ(replies[0].flags, 0);
  ASSERT_EQ(replies[0].payload.size(), 8u + 1024);
  EXPECT_EQ(Bytes(replies[0].payload.begin() + 8, replies[0].payload.end()),
            Bytes(1024, 0xab));
  EXPECT_EQ(replies[1].type, static_cast<uint16_t>(ChunkType::kErrorOffset));
  EXPECT_EQ(replies[1].flags, kReplyFlagDone);
  absl::StatusOr<ErrorOffsetChunk> err =
      DecodeErrorOffsetChunk(replies[1].payload);
  ASSERT_TRUE(err.ok()) << err.status();
  EXPECT_EQ(err->error, 5u);  // NBD EIO
  EXPECT_EQ(err->offset, 1024u);
  EXPECT_EQ(err->message, "bad sector at 1024");
}

INSTANTIATE_TEST_SUITE_P(Headers, ServeTest, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "extended" : "structured";
                         });

}  // namespace
}  // namespace nbd::test
