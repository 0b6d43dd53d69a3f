// nbd::internal::Receiver: the same units complete, with the same bytes,
// whatever the split of the input and whichever input path delivers it.
#include "protocol/internal/receiver.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace nbd::internal {
namespace {

enum class Unit { kNone, kHeader, kPayload, kSkipped };

// A toy core: a 4-byte big-endian length, then that many payload bytes
// received into caller memory, or skipped when longer than kMaxPayload.
class Core {
 public:
  static constexpr uint32_t kMaxPayload = 100;

  Core() { ExpectHeader(); }

  void OnComplete() {
    switch (rx.unit()) {
      case Unit::kNone:
        return;
      case Unit::kHeader: {
        absl::Span<const uint8_t> h = rx.scratch();
        const uint32_t len = (uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) |
                             (uint32_t{h[2]} << 8) | h[3];
        if (len > kMaxPayload) {
          if (rx.Skip(Unit::kSkipped, len)) OnComplete();
        } else if (rx.ExpectInto(Unit::kPayload, payload_, len)) {
          OnComplete();
        }
        return;
      }
      case Unit::kPayload:
        log.push_back(absl::StrCat(
            "payload:",
            std::string(reinterpret_cast<const char*>(payload_), rx.want())));
        return ExpectHeader();
      case Unit::kSkipped:
        log.push_back("skipped");
        return ExpectHeader();
    }
  }

  // The copying path.
  size_t Feed(absl::Span<const uint8_t> bytes) {
    return rx.Feed(
        bytes, [] { return true; }, [this] { OnComplete(); });
  }

  // The zero-copy path, receiving at most `step` bytes per call.
  void Receive(absl::Span<const uint8_t> bytes, size_t step,
               bool readahead_ok = false) {
    while (!bytes.empty()) {
      absl::Span<uint8_t> into = rx.Buffer(readahead_ok);
      ASSERT_FALSE(into.empty());
      const size_t n = std::min({into.size(), step, bytes.size()});
      std::memcpy(into.data(), bytes.data(), n);
      bytes.remove_prefix(n);
      switch (rx.Commit(n)) {
        case Committed::kUnitComplete:
          OnComplete();
          break;
        case Committed::kStaged:
          ASSERT_EQ(Feed(rx.staged()), n);
          break;
        case Committed::kProgress:
          break;
        default:
          FAIL() << "unexpected commit result";
      }
    }
  }

  Receiver<Unit> rx;
  std::vector<std::string> log;

 private:
  void ExpectHeader() {
    if (rx.Expect(Unit::kHeader, 4)) OnComplete();
  }
  uint8_t payload_[kMaxPayload];
};

std::vector<uint8_t> Message(const std::string& payload) {
  const uint32_t len = static_cast<uint32_t>(payload.size());
  std::vector<uint8_t> out = {
      static_cast<uint8_t>(len >> 24), static_cast<uint8_t>(len >> 16),
      static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)};
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

std::vector<uint8_t> Stream() {
  std::vector<uint8_t> s;
  for (const std::string& p :
       {std::string("hello"), std::string(), std::string(150, 'x'),
        std::string("a"), std::string(100, 'y'), std::string("end")}) {
    std::vector<uint8_t> m = Message(p);
    s.insert(s.end(), m.begin(), m.end());
  }
  return s;
}

const std::vector<std::string> kExpected = {
    "payload:hello",
    "payload:",
    "skipped",
    "payload:a",
    absl::StrCat("payload:", std::string(100, 'y')),
    "payload:end"};

TEST(ReceiverTest, WholeStreamThroughFeed) {
  Core core;
  const std::vector<uint8_t> s = Stream();
  EXPECT_EQ(core.Feed(s), s.size());
  EXPECT_EQ(core.log, kExpected);
  EXPECT_EQ(core.rx.unit(), Unit::kHeader);
  EXPECT_EQ(core.rx.got(), 0u);
}

TEST(ReceiverTest, EverySplitIntoTwoFeeds) {
  const std::vector<uint8_t> s = Stream();
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    Core core;
    absl::Span<const uint8_t> all(s);
    EXPECT_EQ(core.Feed(all.subspan(0, cut)), cut);
    EXPECT_EQ(core.Feed(all.subspan(cut)), s.size() - cut);
    EXPECT_EQ(core.log, kExpected) << "cut at " << cut;
  }
}

TEST(ReceiverTest, EveryRecvSizeThroughBufferAndCommit) {
  const std::vector<uint8_t> s = Stream();
  for (size_t step = 1; step <= 160; ++step) {
    Core core;
    core.Receive(s, step);
    EXPECT_EQ(core.log, kExpected) << "step " << step;
  }
}

TEST(ReceiverTest, ReadaheadGoesThroughTheCopyingPath) {
  const std::vector<uint8_t> s = Stream();
  for (size_t step = 1; step <= 80; ++step) {
    Core core;
    core.rx.set_readahead(64);
    core.Receive(s, step, /*readahead_ok=*/true);
    EXPECT_EQ(core.log, kExpected) << "step " << step;
  }
}

TEST(ReceiverTest, ReadaheadOnlyAtTheStartOfAUnit) {
  Core core;
  core.rx.set_readahead(64);
  EXPECT_EQ(core.rx.Buffer(true).size(), 64u);
  EXPECT_EQ(core.rx.Buffer(false).size(), 4u);  // not allowed by the core
  std::vector<uint8_t> one = {0};
  EXPECT_EQ(core.Feed(one), 1u);
  EXPECT_EQ(core.rx.Buffer(true).size(), 3u);  // inside the unit
}

TEST(ReceiverTest, CommitBeyondTheBufferChangesNothing) {
  Core core;
  absl::Span<uint8_t> into = core.rx.Buffer(false);
  ASSERT_EQ(into.size(), 4u);
  EXPECT_EQ(core.rx.Commit(5), Committed::kBeyondBuffer);
  EXPECT_EQ(core.rx.got(), 0u);
  core.rx.set_readahead(16);
  core.rx.Buffer(true);
  EXPECT_EQ(core.rx.Commit(17), Committed::kBeyondBuffer);
  EXPECT_EQ(core.rx.got(), 0u);
}

TEST(ReceiverTest, ProbeWhenNothingIsExpected) {
  Receiver<Unit> rx;
  EXPECT_TRUE(rx.Buffer(false).empty());
  EXPECT_EQ(rx.Commit(0), Committed::kProgress);
  EXPECT_EQ(rx.Commit(1), Committed::kNoBuffer);

  rx.set_probe(true);
  absl::Span<uint8_t> probe = rx.Buffer(false);
  ASSERT_EQ(probe.size(), 1u);
  EXPECT_EQ(rx.Commit(2), Committed::kBeyondBuffer);
  EXPECT_EQ(rx.Buffer(false).data(), probe.data());  // it never moves
  probe[0] = 0x42;
  ASSERT_EQ(rx.Commit(1), Committed::kStaged);
  ASSERT_EQ(rx.staged().size(), 1u);
  EXPECT_EQ(rx.staged()[0], 0x42);

  // A unit armed while the probe is out: the byte still comes back staged.
  rx.Buffer(false);
  ASSERT_FALSE(rx.Expect(Unit::kHeader, 4));
  ASSERT_EQ(rx.Commit(1), Committed::kStaged);
  EXPECT_EQ(rx.got(), 0u);
  // Once something is expected, the probe is not handed out.
  EXPECT_EQ(rx.Buffer(false).size(), 4u);
}

TEST(ReceiverTest, FeedStopsWhenTheCoreRefuses) {
  Core core;
  const std::vector<uint8_t> s = Stream();
  int units = 0;
  const size_t used = core.rx.Feed(
      s, [&units] { return units == 0; },
      [&] {
        ++units;
        core.OnComplete();
      });
  EXPECT_EQ(used, 4u);  // the first header only
  EXPECT_EQ(core.rx.unit(), Unit::kPayload);
}

TEST(ReceiverTest, FeedStopsWhenNothingIsExpected) {
  Receiver<Unit> rx;
  ASSERT_FALSE(rx.Expect(Unit::kHeader, 2));
  const std::vector<uint8_t> bytes = {1, 2, 3};
  int completed = 0;
  EXPECT_EQ(rx.Feed(
                bytes, [] { return true; },
                [&] {
                  ++completed;
                  rx.Clear();
                }),
            2u);
  EXPECT_EQ(completed, 1);
  EXPECT_FALSE(rx.expecting());
  // The completed unit's bytes stay readable after Clear().
  ASSERT_EQ(rx.scratch().size(), 2u);
  EXPECT_EQ(rx.scratch()[1], 2);
}

TEST(ReceiverTest, CompletedUnitLeftArmedTakesNothingMore) {
  Receiver<Unit> rx;
  ASSERT_FALSE(rx.Expect(Unit::kHeader, 1));
  const std::vector<uint8_t> bytes = {7, 8};
  int completed = 0;
  EXPECT_EQ(rx.Feed(
                bytes, [] { return true; }, [&] { ++completed; }),
            1u);
  EXPECT_EQ(completed, 1);
  EXPECT_TRUE(rx.Buffer(false).empty());
  EXPECT_EQ(rx.Commit(1), Committed::kBeyondBuffer);
}

TEST(ReceiverTest, LongSkipCompletesOnceAfterEveryChunk) {
  constexpr uint64_t kLength = 2 * Receiver<Unit>::kSkipChunk + 10;
  Receiver<Unit> rx;
  ASSERT_FALSE(rx.Skip(Unit::kSkipped, kLength));
  EXPECT_EQ(rx.want(), Receiver<Unit>::kSkipChunk);
  const std::vector<uint8_t> junk(kLength + 1, 0xee);
  int completed = 0;
  size_t fed = 0;
  for (size_t step : {size_t{1}, size_t{70000}, size_t{60000}}) {
    fed += rx.Feed(
        absl::MakeConstSpan(junk).subspan(fed, step), [] { return true; },
        [&] { ++completed; });
  }
  EXPECT_EQ(completed, 0);
  // The rest through the zero-copy path, chunk by chunk.
  Committed last = Committed::kProgress;
  while (last != Committed::kUnitComplete) {
    absl::Span<uint8_t> into = rx.Buffer(false);
    ASSERT_FALSE(into.empty());
    fed += into.size();
    last = rx.Commit(into.size());
  }
  EXPECT_EQ(fed, kLength);
  EXPECT_EQ(rx.want(), 10u);  // the last chunk
  EXPECT_EQ(rx.unit(), Unit::kSkipped);
}

TEST(ReceiverTest, ZeroLengthUnitsCompleteAtOnce) {
  Receiver<Unit> rx;
  uint8_t dst[1];
  EXPECT_TRUE(rx.Expect(Unit::kHeader, 0));
  EXPECT_TRUE(rx.ExpectInto(Unit::kPayload, dst, 0));
  EXPECT_TRUE(rx.Skip(Unit::kSkipped, 0));
  EXPECT_FALSE(rx.ExpectInto(Unit::kPayload, dst, 1));
}

TEST(ReceiverTest, TakeScratchAndReleaseMemory) {
  Receiver<Unit> rx;
  ASSERT_FALSE(rx.Expect(Unit::kHeader, 3));
  const std::vector<uint8_t> bytes = {1, 2, 3};
  rx.Feed(
      bytes, [] { return true; }, [] {});
  EXPECT_EQ(rx.TakeScratch(), bytes);
  EXPECT_FALSE(rx.expecting());
  EXPECT_TRUE(rx.scratch().empty());
  ASSERT_FALSE(rx.Expect(Unit::kHeader, 8));
  rx.ReleaseMemory();
  EXPECT_FALSE(rx.expecting());
  EXPECT_TRUE(rx.scratch().empty());
}

}  // namespace
}  // namespace nbd::internal
