#include "protocol/server/internal/output_queue.h"

#include <algorithm>
#include <cstring>

namespace nbd::server_internal {
namespace {

// Zeros for holes in simple READ replies. In .bss, so untouched pages cost
// nothing.
constexpr size_t kZeroBlockSize = 1u << 20;
const uint8_t kZeroBlock[kZeroBlockSize] = {};

}  // namespace

OutputQueue::Segment& OutputQueue::Append() { return segments_.emplace_back(); }

void OutputQueue::PushCopy(absl::Span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  if (bytes.size() > kInlineSize) {
    return PushOwned(std::vector<uint8_t>(bytes.begin(), bytes.end()));
  }
  Segment& s = Append();
  std::memcpy(s.inline_bytes.data(), bytes.data(), bytes.size());
  s.data = s.inline_bytes.data();
  s.size = bytes.size();
  pending_bytes_ += s.size;
}

void OutputQueue::PushOwned(std::vector<uint8_t> bytes) {
  if (bytes.empty()) return;
  Segment& s = Append();
  s.owned = std::move(bytes);
  s.data = s.owned.data();
  s.size = s.owned.size();
  pending_bytes_ += s.size;
}

void OutputQueue::PushReference(absl::Span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  Segment& s = Append();
  s.data = bytes.data();
  s.size = bytes.size();
  pending_bytes_ += s.size;
}

void OutputQueue::PushZeros(uint64_t count) {
  while (count > 0) {
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(count, kZeroBlockSize));
    PushReference(absl::Span<const uint8_t>(kZeroBlock, n));
    count -= n;
  }
}

void OutputQueue::EndReply(RequestHandle handle,
                           std::shared_ptr<const void> keepalive) {
  // Every reply pushes at least one segment first.
  Segment& last = segments_.back();
  last.reply_end = handle;
  last.keepalive = std::move(keepalive);
}

size_t OutputQueue::Peek(absl::Span<IoSlice> out) const {
  const size_t n = std::min(out.size(), segments_.size());
  for (size_t i = 0; i < n; ++i) {
    const Segment& s = segments_[i];
    const size_t skip = (i == 0) ? front_offset_ : 0;
    out[i] = IoSlice{s.data + skip, s.size - skip};
  }
  return n;
}

void OutputQueue::Clear() {
  segments_.clear();
  front_offset_ = 0;
  pending_bytes_ = 0;
}

}  // namespace nbd::server_internal
