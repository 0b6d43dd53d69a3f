#include "protocol/client/internal/output_queue.h"

#include <algorithm>

namespace nbd::internal {

void OutputQueue::PushOwned(SegmentKind kind, Cookie cookie,
                            absl::Span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  auto seg = std::make_unique<Segment>();
  seg->kind = kind;
  seg->cookie = cookie;
  seg->owned.assign(bytes.begin(), bytes.end());
  seg->data = seg->owned.data();
  seg->size = seg->owned.size();
  pending_bytes_ += seg->size;
  segments_.push_back(std::move(seg));
}

void OutputQueue::PushReference(SegmentKind kind, Cookie cookie,
                                absl::Span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  auto seg = std::make_unique<Segment>();
  seg->kind = kind;
  seg->cookie = cookie;
  seg->data = bytes.data();
  seg->size = bytes.size();
  pending_bytes_ += seg->size;
  segments_.push_back(std::move(seg));
}

size_t OutputQueue::Peek(absl::Span<IoSlice> out) const {
  size_t n = std::min(out.size(), segments_.size());
  for (size_t i = 0; i < n; ++i) {
    const Segment& s = *segments_[i];
    size_t skip = (i == 0) ? front_offset_ : 0;
    out[i] = IoSlice{s.data + skip, s.size - skip};
  }
  return n;
}

void OutputQueue::Pin(size_t n) {
  n = std::min(n, pending_bytes_);
  pinned_bytes_ = std::max(pinned_bytes_, n);
  size_t covered = 0;
  for (size_t i = 0; i < segments_.size() && covered < pinned_bytes_; ++i) {
    const Segment& s = *segments_[i];
    max_exposed_cookie_ = std::max(max_exposed_cookie_, s.cookie);
    covered += s.size - (i == 0 ? front_offset_ : 0);
  }
}

std::vector<Cookie> OutputQueue::RemoveUnexposedCommands() {
  // Keep every segment with a byte consumed (the front, if partly sent) or
  // pinned by an asynchronous send.
  size_t keep = 0;
  size_t covered = 0;
  while (keep < segments_.size() && covered < pinned_bytes_) {
    covered += segments_[keep]->size - (keep == 0 ? front_offset_ : 0);
    ++keep;
  }
  if (front_offset_ > 0) keep = std::max<size_t>(keep, 1);
  // Extend `keep` to the end of the last exposed command: its payload must
  // follow its header even if no payload byte was sent yet.
  while (keep < segments_.size() &&
         segments_[keep]->kind == SegmentKind::kWritePayload) {
    ++keep;
  }
  std::vector<Cookie> removed;
  for (size_t i = keep; i < segments_.size(); ++i) {
    const Segment& s = *segments_[i];
    if (s.kind == SegmentKind::kRequestHeader ||
        s.kind == SegmentKind::kDiscHeader) {
      removed.push_back(s.cookie);
    }
  }
  while (segments_.size() > keep) {
    pending_bytes_ -= segments_.back()->size;
    segments_.pop_back();
  }
  return removed;
}

void OutputQueue::Clear() {
  segments_.clear();
  front_offset_ = 0;
  pending_bytes_ = 0;
  pinned_bytes_ = 0;
}

}  // namespace nbd::internal
