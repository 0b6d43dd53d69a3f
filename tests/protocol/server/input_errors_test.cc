// Every error the session's input and output calls return carries an errno
// (protocol/status.h), whichever path (Feed or RecvBuffer/CommitRecv) the
// bytes take.
#include <algorithm>
#include <cerrno>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "protocol/server/server.h"
#include "protocol/status.h"
#include "tests/protocol/server/test_util.h"

namespace nbd::test {
namespace {

TEST(ServerInputErrorsTest, CommitBeyondTheReceiveBufferIsEinval) {
  ServerSession s(TestOptions());
  TakeOutput(s);
  absl::Span<uint8_t> into = s.RecvBuffer();
  ASSERT_EQ(into.size(), 4u);  // client flags
  absl::Status st = s.CommitRecv(into.size() + 1);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_EQ(StatusErrno(st), EINVAL);
  // Nothing changed: the flags can still arrive.
  EXPECT_EQ(s.phase(), ServerPhase::kHandshake);
  EXPECT_EQ(s.RecvBuffer().size(), 4u);
}

TEST(ServerInputErrorsTest, CommitWhenNoInputIsWantedIsEinval) {
  ServerSession s(TestOptions());
  s.FeedEof();  // at a boundary: no more input; the greeting still drains
  ASSERT_EQ(s.phase(), ServerPhase::kClosing);
  absl::Status st = s.CommitRecv(1);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_EQ(StatusErrno(st), EINVAL);
  EXPECT_TRUE(s.CommitRecv(0).ok());
}

TEST(ServerInputErrorsTest, ConsumeBeyondThePendingOutputIsEinval) {
  ServerSession s(TestOptions());
  absl::Status st = s.ConsumeOutput(s.pending_output_bytes() + 1);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_EQ(StatusErrno(st), EINVAL);
}

// The dead reason that Feed() and CommitRecv() return carries the
// protocol error's errno on both paths.
TEST(ServerInputErrorsTest, ProtocolErrorCarriesEproto) {
  const Bytes junk = Concat({Flags(3), Bytes(16, 0xee)});  // bad option magic
  {
    ServerSession s(TestOptions());
    absl::StatusOr<size_t> fed = s.Feed(junk);
    ASSERT_FALSE(fed.ok());
    EXPECT_EQ(StatusErrno(fed.status()), EPROTO) << fed.status();
    EXPECT_EQ(s.phase(), ServerPhase::kDead);
  }
  {
    ServerSession s(TestOptions());
    absl::Status st;
    size_t at = 0;
    while (st.ok() && at < junk.size()) {
      absl::Span<uint8_t> into = s.RecvBuffer();
      ASSERT_FALSE(into.empty());
      const size_t n = std::min(into.size(), junk.size() - at);
      std::copy_n(junk.begin() + at, n, into.begin());
      at += n;
      st = s.CommitRecv(n);
    }
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(StatusErrno(st), EPROTO) << st;
  }
}

TEST(ServerInputErrorsTest, InputAfterTheEndIsAPreconditionWithEinval) {
  ServerSession s(TestOptions());
  s.FeedTransportError(absl::OkStatus());
  ASSERT_EQ(s.phase(), ServerPhase::kDead);
  const Bytes one = {0};
  absl::StatusOr<size_t> fed = s.Feed(one);
  EXPECT_TRUE(absl::IsFailedPrecondition(fed.status())) << fed.status();
  EXPECT_EQ(StatusErrno(fed.status()), EINVAL);
  absl::Status st = s.CommitRecv(1);
  EXPECT_TRUE(absl::IsFailedPrecondition(st)) << st;
  EXPECT_EQ(StatusErrno(st), EINVAL);
}

}  // namespace
}  // namespace nbd::test
