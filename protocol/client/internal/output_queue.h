// The client's pending output: an ordered list of byte segments.
//
// Small protocol messages (request headers, options) are stored inside the
// segment; WRITE payloads are referenced from the caller's buffer and never
// copied. Segments live in a deque of unique_ptrs, so a segment's bytes keep
// their address while later segments are appended or the queue is trimmed
// at either end. That is what lets PeekOutput() slices stay valid until
// they are consumed, even across asynchronous sends (io_uring).
#ifndef NBD_PROTOCOL_CLIENT_INTERNAL_OUTPUT_QUEUE_H_
#define NBD_PROTOCOL_CLIENT_INTERNAL_OUTPUT_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "protocol/client/client.h"

namespace nbd::internal {

// What a segment carries; the client acts when one is fully consumed.
enum class SegmentKind {
  kOption,         // an option request (header and data)
  kAbortOption,    // NBD_OPT_ABORT: ShutdownWrite once sent
  kClientFlags,    // handshake client flags
  kRequestHeader,  // start of a transmission command
  kWritePayload,   // referenced caller bytes of a WRITE
  kDiscHeader,     // NBD_CMD_DISC: ShutdownWrite once sent
};

struct Segment {
  SegmentKind kind;
  Cookie cookie = 0;  // commands only
  std::vector<uint8_t> owned;
  const uint8_t* data = nullptr;  // points into `owned` or caller memory
  size_t size = 0;
};

class OutputQueue {
 public:
  // Appends a segment that owns a copy of `bytes` (protocol headers only).
  void PushOwned(SegmentKind kind, Cookie cookie,
                 absl::Span<const uint8_t> bytes);
  // Appends a segment referencing caller memory; no copy.
  void PushReference(SegmentKind kind, Cookie cookie,
                     absl::Span<const uint8_t> bytes);

  size_t Peek(absl::Span<IoSlice> out) const;
  size_t pending_bytes() const { return pending_bytes_; }
  bool empty() const { return segments_.empty(); }

  // Consumes n bytes (n <= pending_bytes()). Each segment that becomes fully
  // consumed is passed to `on_done(const Segment&)` in order.
  template <typename OnDone>
  void Consume(size_t n, OnDone on_done) {
    pending_bytes_ -= n;
    pinned_bytes_ = n >= pinned_bytes_ ? 0 : pinned_bytes_ - n;
    while (n > 0) {
      Segment& front = *segments_.front();
      if (front.cookie > max_exposed_cookie_) {
        max_exposed_cookie_ = front.cookie;
      }
      size_t left = front.size - front_offset_;
      if (n < left) {
        front_offset_ += n;
        return;
      }
      n -= left;
      std::unique_ptr<Segment> done = std::move(segments_.front());
      segments_.pop_front();
      front_offset_ = 0;
      on_done(*done);
    }
  }

  // The first n pending bytes are in an asynchronous send: they must not be
  // withdrawn. n <= pending_bytes().
  void Pin(size_t n);

  // Removes every command that the transport cannot have seen yet: the
  // commands with no byte consumed or pinned. Returns their cookies in queue
  // order, DISC included.
  std::vector<Cookie> RemoveUnexposedCommands();

  void Clear();

  // The highest command cookie with bytes consumed or pinned. Cookies
  // are queued in increasing order, so a server reply to a larger cookie
  // answers a request the server cannot have received.
  Cookie max_exposed_cookie() const { return max_exposed_cookie_; }

 private:
  std::deque<std::unique_ptr<Segment>> segments_;
  size_t front_offset_ = 0;
  size_t pending_bytes_ = 0;
  size_t pinned_bytes_ = 0;  // counted from the first unconsumed byte
  Cookie max_exposed_cookie_ = 0;
};

}  // namespace nbd::internal

#endif  // NBD_PROTOCOL_CLIENT_INTERNAL_OUTPUT_QUEUE_H_
