// The client's view of the shared OutputQueue (protocol/internal): segments
// tagged with what they carry and the command's cookie, and the client's
// withdrawal policy. Thin code only; the segments live in the shared queue.
#ifndef NBD_PROTOCOL_CLIENT_INTERNAL_CLIENT_OUTPUT_H_
#define NBD_PROTOCOL_CLIENT_INTERNAL_CLIENT_OUTPUT_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "protocol/client/events.h"
#include "protocol/internal/output_queue.h"
#include "protocol/io.h"

namespace nbd::client_internal {

// What a segment carries; the client acts when one is fully consumed.
enum class SegmentKind : uint8_t {
  kOption = 1,     // an option request (header and data)
  kAbortOption,    // NBD_OPT_ABORT: ShutdownWrite once sent
  kClientFlags,    // handshake client flags
  kRequestHeader,  // start of a transmission command
  kWritePayload,   // referenced caller bytes of a WRITE
  kDiscHeader,     // NBD_CMD_DISC: ShutdownWrite once sent
};

class ClientOutputQueue {
 public:
  // Appends a copy of `bytes` (protocol headers and options only).
  void PushOwned(SegmentKind kind, Cookie cookie,
                 absl::Span<const uint8_t> bytes) {
    queue_.PushCopy(bytes, Tag(kind, cookie));
  }
  // Appends a reference to caller memory; no copy.
  void PushReference(SegmentKind kind, Cookie cookie,
                     absl::Span<const uint8_t> bytes) {
    queue_.PushReference(bytes, Tag(kind, cookie));
  }

  size_t Peek(absl::Span<IoSlice> out) const { return queue_.Peek(out); }
  size_t pending_bytes() const { return queue_.pending_bytes(); }
  bool empty() const { return queue_.empty(); }

  // Consumes n <= pending_bytes() bytes; calls on_done(kind, cookie) for
  // each segment fully consumed, in order.
  template <typename OnDone>
  void Consume(size_t n, OnDone on_done) {
    queue_.Consume(n, [&on_done](internal::SegmentTag tag) {
      on_done(static_cast<SegmentKind>(tag.kind), Cookie{tag.id});
    });
  }
  // The first n pending bytes are in an asynchronous send: they must not be
  // withdrawn. n <= pending_bytes().
  void Pin(size_t n) { queue_.Pin(n); }

  // Removes every command that the transport cannot have seen yet: the
  // commands with no byte consumed or pinned. Returns their cookies in queue
  // order, DISC included.
  std::vector<Cookie> RemoveUnexposedCommands();

  void Clear() { queue_.Clear(); }

  // The highest command cookie with bytes consumed or pinned. Cookies
  // are queued in increasing order, so a server reply to a larger cookie
  // answers a request the server cannot have received.
  Cookie max_exposed_cookie() const { return queue_.max_exposed_id(); }

 private:
  static internal::SegmentTag Tag(SegmentKind kind, Cookie cookie) {
    return internal::SegmentTag{static_cast<uint8_t>(kind), cookie};
  }

  internal::OutputQueue queue_;
};

inline std::vector<Cookie> ClientOutputQueue::RemoveUnexposedCommands() {
  size_t keep = queue_.exposed_segments();
  // The last exposed command keeps its payload: it must follow its header
  // even if no payload byte was sent yet.
  while (keep < queue_.size() &&
         queue_.tag(keep).kind ==
             static_cast<uint8_t>(SegmentKind::kWritePayload)) {
    ++keep;
  }
  std::vector<Cookie> removed;
  for (size_t i = keep; i < queue_.size(); ++i) {
    const internal::SegmentTag tag = queue_.tag(i);
    if (tag.kind == static_cast<uint8_t>(SegmentKind::kRequestHeader) ||
        tag.kind == static_cast<uint8_t>(SegmentKind::kDiscHeader)) {
      removed.push_back(tag.id);
    }
  }
  queue_.Truncate(keep);
  return removed;
}

}  // namespace nbd::client_internal

#endif  // NBD_PROTOCOL_CLIENT_INTERNAL_CLIENT_OUTPUT_H_
