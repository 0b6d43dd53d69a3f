// PendingOps: every inserted op is found and taken exactly once, whether it
// sits in the table, made it grow, or went to the overflow map.
#include "adapters/engine/internal/pending_ops.h"

#include <vector>

#include "gtest/gtest.h"

namespace nbd::engine::internal {
namespace {

Op WithSeq(uint64_t seq) {
  Op op;
  op.seq = seq;
  return op;
}

TEST(PendingOpsTest, ConsecutiveCookiesRoundTrip) {
  PendingOps p;
  for (Cookie c = 1; c <= 40; ++c) p.Insert(c, WithSeq(c));
  EXPECT_EQ(p.size(), 40u);
  EXPECT_EQ(p.Find(41), nullptr);
  ASSERT_NE(p.Oldest(), nullptr);
  EXPECT_EQ(p.Oldest()->seq, 1u);
  for (Cookie c = 40; c >= 1; --c) {
    ASSERT_NE(p.Find(c), nullptr) << c;
    EXPECT_EQ(p.Take(c).seq, c);
    EXPECT_EQ(p.Find(c), nullptr);
  }
  EXPECT_EQ(p.size(), 0u);
  EXPECT_EQ(p.Oldest(), nullptr);
}

TEST(PendingOpsTest, LongOutstandingCommandGrowsThenOverflows) {
  PendingOps p;
  p.Insert(1, WithSeq(0));  // never answered while the others come and go
  const Cookie last = 3 * PendingOps::kMaxSlots;
  for (Cookie c = 2; c <= last; ++c) {
    p.Insert(c, WithSeq(c));
    if (c >= 10) {
      EXPECT_EQ(p.Take(c - 8).seq, c - 8);
    }
  }
  // Those still pending: 1 and the last eight.
  EXPECT_EQ(p.size(), 9u);
  EXPECT_EQ(p.Oldest()->seq, 0u);
  for (Cookie c = last - 7; c <= last; ++c) {
    ASSERT_NE(p.Find(c), nullptr) << c;
    EXPECT_EQ(p.Take(c).seq, c);
  }
  ASSERT_NE(p.Find(1), nullptr);
  EXPECT_EQ(p.Take(1).seq, 0u);
  EXPECT_EQ(p.size(), 0u);
}

TEST(PendingOpsTest, CollidingCookiesShareNothing) {
  PendingOps p;
  std::vector<Cookie> cookies;
  for (Cookie i = 1; i <= 5; ++i) cookies.push_back(i << 40);  // same slot
  for (Cookie c : cookies) p.Insert(c, WithSeq(c >> 40));
  for (Cookie c : cookies) {
    ASSERT_NE(p.Find(c), nullptr);
    EXPECT_EQ(p.Find(c)->seq, c >> 40);
  }
  for (Cookie c : cookies) EXPECT_EQ(p.Take(c).seq, c >> 40);
  EXPECT_EQ(p.size(), 0u);
}

}  // namespace
}  // namespace nbd::engine::internal
