// The server session's pending output: an ordered list of byte segments.
//
// Headers (up to 64 bytes) are stored inline in the segment, larger
// protocol messages in an owned vector, and READ data is referenced from the
// embedder's memory. Segments live in a std::deque, whose push_back and
// pop_front never move other elements, so slices handed out by Peek() stay
// valid until consumed. The last segment of a reply can carry the reply's
// keepalive and handle, released / reported when it is fully consumed.
#ifndef NBD_PROTOCOL_SERVER_INTERNAL_OUTPUT_QUEUE_H_
#define NBD_PROTOCOL_SERVER_INTERNAL_OUTPUT_QUEUE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "protocol/io.h"
#include "protocol/server/events.h"

namespace nbd::server_internal {

class OutputQueue {
 public:
  // Copies `bytes` into the queue.
  void PushCopy(absl::Span<const uint8_t> bytes);
  // Takes `bytes` over.
  void PushOwned(std::vector<uint8_t> bytes);
  // References caller memory; no copy.
  void PushReference(absl::Span<const uint8_t> bytes);
  // `count` zero bytes, referenced from a static zero block.
  void PushZeros(uint64_t count);
  // Marks the end of a reply: `keepalive` is dropped and `handle` reported
  // once everything pushed so far has been consumed.
  void EndReply(RequestHandle handle, std::shared_ptr<const void> keepalive);

  size_t Peek(absl::Span<IoSlice> out) const;
  size_t pending_bytes() const { return pending_bytes_; }
  bool empty() const { return segments_.empty(); }

  // Consumes n <= pending_bytes() bytes; calls on_reply_done(handle) for
  // every reply end passed.
  template <typename OnReplyDone>
  void Consume(size_t n, OnReplyDone on_reply_done) {
    pending_bytes_ -= n;
    while (n > 0) {
      Segment& front = segments_.front();
      const size_t left = front.size - front_offset_;
      if (n < left) {
        front_offset_ += n;
        return;
      }
      n -= left;
      const RequestHandle handle = front.reply_end;
      segments_.pop_front();  // drops the keepalive, if any
      front_offset_ = 0;
      if (handle != 0) on_reply_done(handle);
    }
  }

  void Clear();

 private:
  static constexpr size_t kInlineSize = 64;
  struct Segment {
    std::array<uint8_t, kInlineSize> inline_bytes;
    std::vector<uint8_t> owned;
    const uint8_t* data = nullptr;
    size_t size = 0;
    RequestHandle reply_end = 0;  // non-zero on a reply's last segment
    std::shared_ptr<const void> keepalive;
  };
  Segment& Append();

  std::deque<Segment> segments_;
  size_t front_offset_ = 0;
  size_t pending_bytes_ = 0;
};

}  // namespace nbd::server_internal

#endif  // NBD_PROTOCOL_SERVER_INTERNAL_OUTPUT_QUEUE_H_
