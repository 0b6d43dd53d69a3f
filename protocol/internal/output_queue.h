// The pending output shared by nbd::Client and nbd::ServerSession: an
// ordered list of byte segments handed to the transport as a gather list.
//
// A segment is one of
//   - owned: a copy of protocol bytes (up to kInlineSize stored inside the
//     segment, no allocation; larger ones in a vector the segment keeps for
//     reuse), or a vector moved in;
//   - referenced: caller memory (WRITE payloads, READ data), never copied;
//     it must stay valid until the segment is consumed or withdrawn;
//   - zeros: a reference into a static block of zeros.
// Each segment can carry a SegmentTag, reported when the segment has been
// fully consumed, and a keepalive, dropped at the same moment (or when the
// segment is withdrawn or the queue cleared).
//
// Segments never move once pushed, so the slices Peek() returns stay valid
// until Consume() covers them, whatever is pushed meanwhile. Segment
// storage is recycled: in steady state pushing and consuming allocate
// nothing.
//
// Pinning is for asynchronous senders (io_uring): the first Pin(n) bytes
// are in a send that has not completed, so Truncate() must keep them.
#ifndef NBD_PROTOCOL_INTERNAL_OUTPUT_QUEUE_H_
#define NBD_PROTOCOL_INTERNAL_OUTPUT_QUEUE_H_

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "protocol/io.h"

namespace nbd::internal {

// What a segment means to its core. kind 0 is an untagged segment; `id`
// is the core's (a command cookie, a request handle).
struct SegmentTag {
  uint8_t kind = 0;
  uint64_t id = 0;
};

class OutputQueue {
 public:
  static constexpr size_t kInlineSize = 64;

  OutputQueue() = default;
  OutputQueue(const OutputQueue&) = delete;
  OutputQueue& operator=(const OutputQueue&) = delete;

  // ---- Pushing. An empty span (or zero count) pushes nothing.
  void PushCopy(absl::Span<const uint8_t> bytes, SegmentTag tag = {});
  void PushOwned(std::vector<uint8_t> bytes, SegmentTag tag = {});
  void PushReference(absl::Span<const uint8_t> bytes, SegmentTag tag = {});
  // `count` zero bytes, as one or more untagged segments.
  void PushZeros(uint64_t count);
  // Tags the last segment pushed and makes it hold `keepalive`. The queue
  // must not be empty.
  void TagLast(SegmentTag tag, std::shared_ptr<const void> keepalive = {});

  // ---- The transport's side.
  // Fills up to out.size() slices, from the first unconsumed byte on.
  size_t Peek(absl::Span<IoSlice> out) const;
  size_t pending_bytes() const { return pending_bytes_; }
  // Memory the pending output stands for: its bytes plus the bookkeeping
  // of each segment (the segment, its ring and free-list slots, allocator
  // slack), which dominates for many small messages. What a bound on queued
  // output should count.
  size_t footprint() const {
    return pending_bytes_ + count_ * kSegmentFootprint;
  }
  bool empty() const { return count_ == 0; }
  size_t size() const { return count_; }  // segments

  // Consumes n <= pending_bytes() bytes. Each segment that becomes fully
  // consumed is removed (its keepalive dropped) and then its tag is passed
  // to `on_done(SegmentTag)`, in queue order. `on_done` may push.
  template <typename OnDone>
  void Consume(size_t n, OnDone on_done) {
    pending_bytes_ -= n;
    pinned_bytes_ = n >= pinned_bytes_ ? 0 : pinned_bytes_ - n;
    while (n > 0 && count_ > 0) {
      Segment& front = At(0);
      max_exposed_id_ = std::max(max_exposed_id_, front.tag.id);
      const size_t left = front.size - front_offset_;
      if (n < left) {
        front_offset_ += n;
        return;
      }
      n -= left;
      const SegmentTag tag = front.tag;
      PopFront();
      on_done(tag);
    }
  }

  // The first n pending bytes (clamped to pending_bytes()) are in an
  // asynchronous send. Consume() releases them.
  void Pin(size_t n);

  // ---- Withdrawing.
  // Segments with a byte consumed or pinned: the transport may have seen
  // them, so they cannot be withdrawn.
  size_t exposed_segments() const;
  // The tag of segment `i` (0 = front), i < size().
  SegmentTag tag(size_t i) const { return At(i).tag; }
  // Removes the segments from index `keep` on; keep >= exposed_segments().
  // No tag is reported for them.
  void Truncate(size_t keep);
  // Removes everything, pinned bytes too (the connection is gone).
  void Clear();

  // The highest tag id of any segment with a byte consumed or pinned so
  // far (never reset). Meaningful when ids grow in queue order: an id above
  // it names a segment the transport cannot have sent.
  uint64_t max_exposed_id() const { return max_exposed_id_; }

 private:
  struct Segment {
    const uint8_t* data = nullptr;  // into inline_bytes, owned or elsewhere
    size_t size = 0;
    SegmentTag tag;
    std::shared_ptr<const void> keepalive;
    std::vector<uint8_t> owned;
    std::array<uint8_t, kInlineSize> inline_bytes;
  };
  static constexpr size_t kBlockSegments = 16;
  static constexpr size_t kSegmentFootprint =
      sizeof(Segment) + 2 * sizeof(Segment*) + 16;
  // An owned vector up to this capacity is kept for the next user.
  static constexpr size_t kKeepCapacity = 4096;

  Segment& At(size_t i) const {
    return *ring_[(head_ + i) & (ring_.size() - 1)];
  }
  Segment& Append(size_t size, SegmentTag tag);  // data left to the caller
  void PopFront();
  void PopBack();
  void Recycle(Segment& s);

  // The queue: ring_[head_ .. head_+count_) (mod size, a power of two).
  std::vector<Segment*> ring_;
  size_t head_ = 0;
  size_t count_ = 0;
  // Segment storage; free_ lists the unused ones.
  std::vector<std::unique_ptr<Segment[]>> blocks_;
  std::vector<Segment*> free_;

  size_t front_offset_ = 0;
  size_t pending_bytes_ = 0;
  size_t pinned_bytes_ = 0;  // counted from the first unconsumed byte
  uint64_t max_exposed_id_ = 0;
};

}  // namespace nbd::internal

#endif  // NBD_PROTOCOL_INTERNAL_OUTPUT_QUEUE_H_
