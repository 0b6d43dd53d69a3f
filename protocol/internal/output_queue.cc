#include "protocol/internal/output_queue.h"

#include <cstring>
#include <utility>

namespace nbd::internal {
namespace {

// Zeros for PushZeros (holes in simple READ replies). In .bss, so untouched
// pages cost nothing.
constexpr size_t kZeroBlockSize = 1u << 20;
const uint8_t kZeroBlock[kZeroBlockSize] = {};

}  // namespace

OutputQueue::Segment& OutputQueue::Append(size_t size, SegmentTag tag) {
  if (free_.empty()) {
    blocks_.push_back(std::make_unique<Segment[]>(kBlockSegments));
    Segment* block = blocks_.back().get();
    for (size_t i = kBlockSegments; i > 0; --i) free_.push_back(&block[i - 1]);
  }
  if (count_ == ring_.size()) {
    // Grow the ring (to a power of two), unrolled from head_ on.
    std::vector<Segment*> bigger(std::max<size_t>(16, ring_.size() * 2));
    for (size_t i = 0; i < count_; ++i) bigger[i] = &At(i);
    ring_ = std::move(bigger);
    head_ = 0;
  }
  Segment* s = free_.back();
  free_.pop_back();
  s->size = size;
  s->tag = tag;
  ring_[(head_ + count_) & (ring_.size() - 1)] = s;
  ++count_;
  pending_bytes_ += size;
  return *s;
}

void OutputQueue::Recycle(Segment& s) {
  s.data = nullptr;
  s.size = 0;
  s.tag = {};
  s.keepalive.reset();
  if (s.owned.capacity() > kKeepCapacity) {
    std::vector<uint8_t>().swap(s.owned);
  } else {
    s.owned.clear();
  }
  free_.push_back(&s);
}

void OutputQueue::PopFront() {
  Segment& s = At(0);
  head_ = (head_ + 1) & (ring_.size() - 1);
  --count_;
  front_offset_ = 0;
  Recycle(s);
}

void OutputQueue::PopBack() {
  Segment& s = At(count_ - 1);
  --count_;
  pending_bytes_ -= s.size - (count_ == 0 ? front_offset_ : 0);
  if (count_ == 0) front_offset_ = 0;
  Recycle(s);
}

void OutputQueue::PushCopy(absl::Span<const uint8_t> bytes, SegmentTag tag) {
  if (bytes.empty()) return;
  Segment& s = Append(bytes.size(), tag);
  if (bytes.size() <= kInlineSize) {
    std::memcpy(s.inline_bytes.data(), bytes.data(), bytes.size());
    s.data = s.inline_bytes.data();
  } else {
    s.owned.assign(bytes.begin(), bytes.end());
    s.data = s.owned.data();
  }
}

void OutputQueue::PushOwned(std::vector<uint8_t> bytes, SegmentTag tag) {
  if (bytes.empty()) return;
  Segment& s = Append(bytes.size(), tag);
  s.owned = std::move(bytes);
  s.data = s.owned.data();
}

void OutputQueue::PushReference(absl::Span<const uint8_t> bytes,
                                SegmentTag tag) {
  if (bytes.empty()) return;
  Append(bytes.size(), tag).data = bytes.data();
}

void OutputQueue::PushZeros(uint64_t count) {
  while (count > 0) {
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(count, kZeroBlockSize));
    PushReference(absl::Span<const uint8_t>(kZeroBlock, n));
    count -= n;
  }
}

void OutputQueue::TagLast(SegmentTag tag,
                          std::shared_ptr<const void> keepalive) {
  Segment& last = At(count_ - 1);
  last.tag = tag;
  last.keepalive = std::move(keepalive);
}

size_t OutputQueue::Peek(absl::Span<IoSlice> out) const {
  const size_t n = std::min(out.size(), count_);
  for (size_t i = 0; i < n; ++i) {
    const Segment& s = At(i);
    const size_t skip = (i == 0) ? front_offset_ : 0;
    out[i] = IoSlice{s.data + skip, s.size - skip};
  }
  return n;
}

void OutputQueue::Pin(size_t n) {
  n = std::min(n, pending_bytes_);
  pinned_bytes_ = std::max(pinned_bytes_, n);
  size_t covered = 0;
  for (size_t i = 0; i < count_ && covered < pinned_bytes_; ++i) {
    const Segment& s = At(i);
    max_exposed_id_ = std::max(max_exposed_id_, s.tag.id);
    covered += s.size - (i == 0 ? front_offset_ : 0);
  }
}

size_t OutputQueue::exposed_segments() const {
  size_t exposed = 0;
  size_t covered = 0;
  while (exposed < count_ && covered < pinned_bytes_) {
    covered += At(exposed).size - (exposed == 0 ? front_offset_ : 0);
    ++exposed;
  }
  if (front_offset_ > 0) exposed = std::max<size_t>(exposed, 1);
  return exposed;
}

void OutputQueue::Truncate(size_t keep) {
  while (count_ > keep) PopBack();
}

void OutputQueue::Clear() {
  while (count_ > 0) PopBack();
  front_offset_ = 0;
  pending_bytes_ = 0;
  pinned_bytes_ = 0;
}

}  // namespace nbd::internal
