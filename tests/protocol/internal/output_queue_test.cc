// nbd::internal::OutputQueue: segment kinds, completion order at every
// consumption boundary, pinning and withdrawal, stable slices, and no
// allocation in steady state.
#include "protocol/internal/output_queue.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "protocol/io.h"

// Counts heap allocations, for the steady-state test.
static std::atomic<size_t> g_allocations{0};
void* operator new(size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace nbd::internal {
namespace {

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()),
                                   s.size());
}

// Everything Peek() returns, concatenated.
std::string Pending(const OutputQueue& q) {
  std::vector<IoSlice> slices(q.size() + 1);
  const size_t n = q.Peek(absl::MakeSpan(slices));
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.append(reinterpret_cast<const char*>(slices[i].data), slices[i].size);
  }
  return out;
}

const std::string kLarge(200, 'L');  // above kInlineSize
const std::string kPayload = "payload";

// Three tagged segments: inline copy, large copy, reference; then an
// untagged moved-in vector.
void Fill(OutputQueue& q) {
  q.PushCopy(Bytes("abc"), {1, 10});
  q.PushCopy(Bytes(kLarge), {2, 11});
  q.PushReference(Bytes(kPayload), {3, 12});
  q.PushOwned(std::vector<uint8_t>{'x', 'y'});
}

TEST(OutputQueueTest, PeekShowsEverySegmentKindInOrder) {
  OutputQueue q;
  Fill(q);
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(q.pending_bytes(), 3 + kLarge.size() + kPayload.size() + 2);
  EXPECT_EQ(Pending(q), "abc" + kLarge + kPayload + "xy");
  // The reference is not copied.
  IoSlice slices[4];
  ASSERT_EQ(q.Peek(absl::MakeSpan(slices)), 4u);
  EXPECT_EQ(reinterpret_cast<const char*>(slices[2].data), kPayload.data());
  // Peek is bounded by the slice count.
  EXPECT_EQ(q.Peek(absl::MakeSpan(slices, 2)), 2u);
}

// footprint(): the bytes plus a fixed cost per segment, so many small
// segments weigh more than their bytes (what the server's output bound
// counts).
TEST(OutputQueueTest, FootprintCountsSegments) {
  OutputQueue q;
  EXPECT_EQ(q.footprint(), 0u);
  const uint8_t byte = 7;
  q.PushCopy({&byte, 1});
  const size_t one = q.footprint();
  EXPECT_GT(one, 64u);  // far more than the byte
  q.PushCopy({&byte, 1});
  EXPECT_EQ(q.footprint(), 2 * one);
  std::vector<uint8_t> big(100000);
  q.PushReference(big);
  EXPECT_EQ(q.footprint(), 2 * one + big.size() + (one - 1));
  q.Consume(q.pending_bytes(), [](SegmentTag) {});
  EXPECT_EQ(q.footprint(), 0u);
}

TEST(OutputQueueTest, EmptyPushesAddNothing) {
  OutputQueue q;
  q.PushCopy({});
  q.PushReference({});
  q.PushOwned({});
  q.PushZeros(0);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.pending_bytes(), 0u);
}

TEST(OutputQueueTest, CompletionsAtEveryBoundaryInOrder) {
  const std::string all = "abc" + kLarge + kPayload + "xy";
  // Segment ends, as byte offsets.
  const std::vector<size_t> ends = {
      3, 3 + kLarge.size(), 3 + kLarge.size() + kPayload.size(), all.size()};
  for (size_t cut = 0; cut <= all.size(); ++cut) {
    OutputQueue q;
    Fill(q);
    std::vector<SegmentTag> done;
    auto record = [&done](SegmentTag t) { done.push_back(t); };
    q.Consume(cut, record);
    size_t full = 0;
    while (full < ends.size() && ends[full] <= cut) ++full;
    ASSERT_EQ(done.size(), full) << "cut " << cut;
    EXPECT_EQ(q.pending_bytes(), all.size() - cut);
    EXPECT_EQ(Pending(q), all.substr(cut));
    q.Consume(all.size() - cut, record);
    ASSERT_EQ(done.size(), 4u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(done[i].kind, i + 1);
      EXPECT_EQ(done[i].id, i + 10);
    }
    EXPECT_EQ(done[3].kind, 0);  // untagged
    EXPECT_TRUE(q.empty());
  }
}

TEST(OutputQueueTest, ConsumeByteByByte) {
  OutputQueue q;
  Fill(q);
  std::vector<uint64_t> ids;
  std::string sent;
  while (!q.empty()) {
    sent += Pending(q).substr(0, 1);
    q.Consume(1, [&ids](SegmentTag t) { ids.push_back(t.id); });
  }
  EXPECT_EQ(sent, "abc" + kLarge + kPayload + "xy");
  EXPECT_EQ(ids, (std::vector<uint64_t>{10, 11, 12, 0}));
}

TEST(OutputQueueTest, OnDoneMayPush) {
  OutputQueue q;
  q.PushCopy(Bytes("a"), {1, 1});
  q.PushCopy(Bytes("b"), {1, 2});
  q.Consume(2, [&q](SegmentTag t) {
    if (t.id == 1) q.PushCopy(Bytes("c"), {1, 3});
  });
  EXPECT_EQ(Pending(q), "c");
}

TEST(OutputQueueTest, SlicesStayValidWhileMoreIsPushed) {
  OutputQueue q;
  q.PushCopy(Bytes("head"));
  q.Consume(1, [](SegmentTag) {});
  IoSlice first;
  ASSERT_EQ(q.Peek(absl::MakeSpan(&first, 1)), 1u);
  for (int i = 0; i < 1000; ++i) q.PushCopy(Bytes(std::to_string(i)));
  IoSlice again;
  ASSERT_EQ(q.Peek(absl::MakeSpan(&again, 1)), 1u);
  EXPECT_EQ(again.data, first.data);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(first.data), first.size),
            "ead");
}

TEST(OutputQueueTest, ZerosComeFromTheStaticBlockInBoundedSegments) {
  OutputQueue q;
  const uint64_t count = (3u << 20) + 5;
  q.PushZeros(count);
  EXPECT_EQ(q.pending_bytes(), count);
  EXPECT_EQ(q.size(), 4u);
  std::vector<IoSlice> slices(4);
  ASSERT_EQ(q.Peek(absl::MakeSpan(slices)), 4u);
  EXPECT_EQ(slices[0].data, slices[3].data);  // one shared block
  EXPECT_EQ(slices[3].size, 5u);
  const uint8_t* p = slices[0].data;
  for (size_t i = 0; i < slices[0].size; ++i) ASSERT_EQ(p[i], 0);
}

TEST(OutputQueueTest, KeepaliveDroppedBeforeTheCompletion) {
  OutputQueue q;
  auto owner = std::make_shared<int>(1);
  std::weak_ptr<int> watch = owner;
  q.PushReference(Bytes(kPayload));
  q.TagLast({7, 99}, std::move(owner));
  q.Consume(kPayload.size() - 1, [](SegmentTag) { FAIL(); });
  EXPECT_FALSE(watch.expired());
  bool called = false;
  q.Consume(1, [&](SegmentTag t) {
    EXPECT_EQ(t.kind, 7);
    EXPECT_EQ(t.id, 99u);
    EXPECT_TRUE(watch.expired());
    called = true;
  });
  EXPECT_TRUE(called);
}

TEST(OutputQueueTest, KeepaliveDroppedByTruncateAndClear) {
  OutputQueue q;
  auto a = std::make_shared<int>(1);
  auto b = std::make_shared<int>(2);
  std::weak_ptr<int> wa = a, wb = b;
  q.PushCopy(Bytes("a"));
  q.TagLast({1, 1}, std::move(a));
  q.PushCopy(Bytes("b"));
  q.TagLast({1, 2}, std::move(b));
  q.Truncate(1);
  EXPECT_TRUE(wb.expired());
  EXPECT_FALSE(wa.expired());
  q.Clear();
  EXPECT_TRUE(wa.expired());
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.pending_bytes(), 0u);
}

TEST(OutputQueueTest, PinnedAndConsumedSegmentsAreExposed) {
  OutputQueue q;
  q.PushCopy(Bytes("aaaa"), {1, 1});
  q.PushCopy(Bytes("bbbb"), {1, 2});
  q.PushCopy(Bytes("cccc"), {1, 3});
  q.PushCopy(Bytes("dddd"), {1, 4});
  EXPECT_EQ(q.exposed_segments(), 0u);
  EXPECT_EQ(q.max_exposed_id(), 0u);

  q.Consume(2, [](SegmentTag) {});  // partly sent front
  EXPECT_EQ(q.exposed_segments(), 1u);
  EXPECT_EQ(q.max_exposed_id(), 1u);

  q.Pin(3);  // the rest of "aaaa" and one byte of "bbbb"
  EXPECT_EQ(q.exposed_segments(), 2u);
  EXPECT_EQ(q.max_exposed_id(), 2u);

  // Withdraw what the transport cannot have seen.
  EXPECT_EQ(q.tag(2).id, 3u);
  q.Truncate(q.exposed_segments());
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(Pending(q), "aabbbb");
  EXPECT_EQ(q.pending_bytes(), 6u);

  // Consuming the pinned bytes releases the pin.
  q.Consume(3, [](SegmentTag) {});
  EXPECT_EQ(q.exposed_segments(), 1u);  // "bbbb", partly sent
  q.Consume(3, [](SegmentTag) {});
  EXPECT_EQ(q.exposed_segments(), 0u);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.max_exposed_id(), 2u);
}

TEST(OutputQueueTest, PinIsClampedAndNeverShrinks) {
  OutputQueue q;
  q.PushCopy(Bytes("aa"), {1, 1});
  q.PushCopy(Bytes("bb"), {1, 2});
  q.Pin(100);
  EXPECT_EQ(q.exposed_segments(), 2u);
  q.Pin(1);
  EXPECT_EQ(q.exposed_segments(), 2u);
  q.PushCopy(Bytes("cc"), {1, 3});
  EXPECT_EQ(q.exposed_segments(), 2u);  // the new segment is not pinned
  EXPECT_EQ(q.max_exposed_id(), 2u);
}

// Command traffic: inline headers, referenced payloads, zeros.
TEST(OutputQueueTest, NoAllocationInSteadyState) {
  OutputQueue q;
  const std::string header(28, 'h');
  auto round = [&] {
    for (int i = 0; i < 40; ++i) {
      q.PushCopy(Bytes(header), {1, static_cast<uint64_t>(i)});
      q.PushReference(Bytes(kPayload), {2, static_cast<uint64_t>(i)});
    }
    q.PushZeros(4096);
    q.TagLast({3, 1});
    q.Consume(q.pending_bytes(), [](SegmentTag) {});
  };
  round();  // warms the segment storage
  const size_t before = g_allocations.load();
  for (int i = 0; i < 100; ++i) round();
  EXPECT_EQ(g_allocations.load(), before);
}

}  // namespace
}  // namespace nbd::internal
