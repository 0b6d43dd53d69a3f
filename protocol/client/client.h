// nbd::Client: the sans-IO NBD client core.
//
// The Client is a pure state machine. It consumes the server's bytes,
// produces the bytes to send, and queues events. It never touches a file
// descriptor, a clock, a thread or a random source, and it never calls user
// code. It is not thread-safe: one thread drives one Client.
//
// ---- Driving loop ---------------------------------------------------------
//   1. Ask what the transport should wait for: wants() (read/write/both/none).
//   2. Input, either way (both give identical results for any split):
//        copying:   Feed(bytes) -> bytes consumed; FeedEof() on EOF.
//        zero-copy: span = RecvBuffer(); recv into it; CommitRecv(n).
//      While a READ payload is arriving, RecvBuffer() is a slice of the
//      caller's own read buffer.
//   3. Output: PeekOutput(slices) fills an iovec-compatible gather list;
//      after the transport took n bytes, ConsumeOutput(n).
//   4. Events: while (auto e = PollEvent()) handle(*e);
//   5. Stop when phase() is kClosed or kDead (wants() == kNone), then close
//      the descriptor.
//
// ---- Phases and the calls they allow --------------------------------------
//   kConnecting   handshake running by itself: input/output only; Shutdown()
//                 (aborts at the next option boundary).
//   kNegotiating  option mode, parked: Opt*() calls, SetExportName(),
//                 Shutdown() (sends NBD_OPT_ABORT).
//   kReady        transmission, no command in flight (an NBD_CMD_DISC may
//                 be, which in_flight() counts): commands, Disconnect(),
//                 Shutdown().
//   kProcessing   transmission, commands queued or in flight: as kReady.
//   kClosed       the server closed cleanly. Only queries and PollEvent().
//   kDead         the connection failed; dead_reason() says why. Same as
//                 kClosed.
// One table says which call is allowed in which phase and sub-state
// (protocol/client/permissions.h: ClientCallAllowed(call, call_state())).
// A call outside its phases fails with FailedPrecondition (errno EINVAL, as
// libnbd's calls on a handle that has started connecting), its message
// naming the call and the state, and changes nothing; void calls then do
// nothing. The state is checked before the arguments; argument errors keep
// their own codes (InvalidArgument/EINVAL, ERANGE, ENOTSUP, ...). See
// docs/protocol-core.md for the full table.
//
// ---- Ownership -------------------------------------------------------------
//  - Read(): `buffer` must stay valid and untouched until that cookie's
//    CommandCompleted has been popped. The core writes into it only inside
//    Feed()/CommitRecv(), and only inside [0, buffer.size()).
//  - Write(): `data` must stay valid and unchanged until the cookie's
//    CommandCompleted has been popped (it is referenced by the gather list,
//    never copied).
//  - Slices from PeekOutput() stay valid until ConsumeOutput() covers them,
//    whatever else is called in between, except that entering kClosed or
//    kDead drops all pending output.
//  - The span from RecvBuffer() stays valid, and the core does not look at
//    it, until the next input call (Feed, FeedEof, FeedTransportError,
//    CommitRecv, RecvBuffer) or until the connection ends (a call such as
//    Shutdown(kShutdownAbandonPending) cannot move it). So an asynchronous
//    receive (io_uring) may be in the kernel while commands are issued,
//    output is consumed and events are polled.
//  - A command is "on the wire" once any of its bytes were consumed or
//    pinned (PinOutput); Shutdown(kShutdownAbandonPending) withdraws only
//    commands that are not.
//
// ---- Tags -------------------------------------------------------------------
// Every command takes an optional `tag` (ReadOptions::tag for Read(), a
// trailing parameter for the others; default 0): an opaque caller value
// that comes back unchanged in that command's events (CommandCompleted,
// ReadChunk, BlockStatusExtents), so an embedder finds its own state for a
// completion without a cookie -> state map (as libnbd passes user_data to
// each completion callback). The core copies the tag when the command is
// accepted and never interprets, compares or dereferences it; tags need not
// be unique, and 0 is an ordinary value. A tag is a plain uint64_t, or a
// pointer passed as reinterpret_cast<uintptr_t>(ptr) (which converts to
// uint64_t implicitly) and recovered with
// reinterpret_cast<T*>(static_cast<uintptr_t>(tag)).
//  - A pointer tag's lifetime is the caller's business. The core never
//    dereferences it, but hands it back in every event of the command, so
//    the object must stay valid for the whole command: until the command's
//    CommandCompleted has been popped. Every
//    accepted command gets exactly one, on every path (success, server
//    error, EPROTO, and ENOTCONN when the connection dies or closes or
//    Shutdown(kShutdownAbandonPending) withdraws it), so freeing the object
//    when handling CommandCompleted is enough. ReadChunk and
//    BlockStatusExtents come before it with the same tag: do not free there.
//  - A refused command (the call returned an error) has no events; its tag
//    is never seen again. If the Client is destroyed with commands pending,
//    no more events come and the caller reclaims what their tags name.
//  - NBD_CMD_DISC (Disconnect(), Shutdown()) takes no tag: it never
//    completes.
#ifndef NBD_PROTOCOL_CLIENT_CLIENT_H_
#define NBD_PROTOCOL_CLIENT_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "protocol/client/events.h"
#include "protocol/client/options.h"
#include "protocol/client/permissions.h"
#include "protocol/constants.h"
#include "protocol/io.h"
#include "protocol/wire.h"

namespace nbd {

enum class ClientPhase {
  kConnecting,
  kNegotiating,
  kReady,
  kProcessing,
  kClosed,
  kDead,
};
const char* ClientPhaseName(ClientPhase phase);

enum class ProtocolVariant { kUnknown, kOldstyle, kNewstyle, kFixedNewstyle };
const char* ProtocolVariantName(ProtocolVariant variant);

struct BlockSizeConstraints {
  uint32_t minimum = 0;  // 0: the server sent none
  uint32_t preferred = 0;
  uint32_t maximum = 0;
  bool operator==(const BlockSizeConstraints&) const = default;
};

struct MetaContext {
  uint32_t id = 0;
  std::string name;
  bool operator==(const MetaContext&) const = default;
};

// Shutdown() flag: fail commands that have not put a byte on the wire yet
// (ENOTCONN) instead of sending them. Same value as libnbd's.
inline constexpr uint32_t kShutdownAbandonPending = 0x10000;

struct ReadOptions {
  uint16_t flags = 0;          // NBD_CMD_FLAG_DF only
  bool report_chunks = false;  // queue ReadChunk events
  uint64_t tag = 0;            // opaque, echoed in the events ("Tags" above)
};

class Client {
 public:
  // Starts in kConnecting, waiting for the server's greeting.
  explicit Client(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // ---- Queries (any phase) ------------------------------------------------
  ClientPhase phase() const;
  // The phase refined the way the permission table (permissions.h) sees it:
  // ClientCallAllowed(call, call_state()) says whether `call` is allowed now.
  ClientCallState call_state() const;
  Direction wants() const;
  // Commands accepted and not yet completed, NBD_CMD_DISC included; 0 once
  // closed or dead.
  size_t in_flight() const;
  absl::Status dead_reason() const;  // OK unless kDead

  ProtocolVariant protocol() const;
  // Export size; nullopt until the server has sent it.
  std::optional<uint64_t> export_size() const;
  uint16_t transmission_flags() const;
  bool is_read_only() const;
  bool can_flush() const;
  bool can_fua() const;
  bool can_trim() const;
  bool can_zero() const;
  bool can_fast_zero() const;
  bool can_df() const;
  bool can_multi_conn() const;
  bool can_cache() const;
  bool is_rotational() const;
  bool can_block_status() const;  // structured replies + >= 1 context
  BlockSizeConstraints block_size() const;
  // The payload limit in force: min(max_payload option, server maximum).
  uint32_t max_payload() const;
  bool structured_replies() const;
  bool extended_headers() const;
  bool tls_negotiated() const;
  const std::vector<MetaContext>& meta_contexts() const;
  std::optional<uint32_t> meta_context_id(std::string_view name) const;
  const std::string& export_name() const;
  const std::string& canonical_name() const;  // NBD_INFO_NAME, if sent
  const std::string& description() const;     // NBD_INFO_DESCRIPTION

  // ---- Input ----------------------------------------------------------------
  // Copying path. Consumes bytes and returns how many. It consumes all of
  // `bytes` except: at the end of a STARTTLS acknowledgement (the rest is
  // TLS), and when the connection ends during this call: if it dies, the
  // call returns the reason (also reported as a ClientDead event); if the
  // server ended it cleanly (the reply to NBD_OPT_ABORT), the bytes used so
  // far. Called in kClosed/kDead it returns FailedPrecondition (EINVAL).
  absl::StatusOr<size_t> Feed(absl::Span<const uint8_t> bytes);
  // The peer closed its side. At a message boundary this closes the
  // connection; inside a message (or during the handshake) it kills it.
  // In kClosed/kDead it does nothing.
  void FeedEof();
  // The transport failed (e.g. ECONNRESET). The connection becomes dead.
  // In kClosed/kDead it does nothing.
  void FeedTransportError(absl::Status error);

  // Zero-copy path. The span to receive into next (empty if no input is
  // wanted now: in kClosed/kDead and during the TLS pause). After receiving
  // n <= span.size() bytes, call CommitRecv(n); CommitRecv(0) is fine in any
  // phase, more than the span is InvalidArgument (EINVAL).
  absl::Span<uint8_t> RecvBuffer();
  absl::Status CommitRecv(size_t n);

  // ---- Output ---------------------------------------------------------------
  // Fills up to out.size() slices with pending output and returns how many.
  size_t PeekOutput(absl::Span<IoSlice> out) const;
  size_t pending_output_bytes() const;
  // The transport took `n` bytes. n must not exceed pending_output_bytes().
  absl::Status ConsumeOutput(size_t n);
  // For asynchronous senders (io_uring): the first `n` pending bytes were
  // handed to a send that has not completed. They are never withdrawn (by
  // Shutdown(kShutdownAbandonPending)) while pinned; ConsumeOutput()
  // releases them. Synchronous senders, which consume before calling
  // anything else, need not call it. n must not exceed
  // pending_output_bytes().
  absl::Status PinOutput(size_t n);

  // ---- Events ---------------------------------------------------------------
  std::optional<ClientEvent> PollEvent();
  bool has_events() const;

  // ---- TLS ------------------------------------------------------------------
  // After a StartTls event: the TLS session is up (plaintext NBD continues
  // through it), or it failed (the connection dies).
  absl::Status TlsHandshakeDone();
  void TlsHandshakeFailed(absl::Status why);

  // ---- Option mode (kNegotiating) ----------------------------------------
  // Each starts one option; its result is an OptionCompleted event, and the
  // phase is kConnecting until then. OptGo ends in Connected on success.
  absl::Status SetExportName(std::string name);
  absl::Status OptList();
  absl::Status OptInfo();
  absl::Status OptGo();
  absl::Status OptAbort();
  absl::Status OptStructuredReply();
  absl::Status OptExtendedHeaders();
  absl::Status OptListMetaContext(std::vector<std::string> queries);
  absl::Status OptSetMetaContext(std::vector<std::string> queries);

  // ---- Commands (kReady / kProcessing) -----------------------------------
  // On success the command is queued, its cookie returned, and it will
  // complete exactly once. On failure nothing was queued. `tag` (and
  // ReadOptions::tag) is copied into every event of the command; see "Tags"
  // at the top of this file.
  absl::StatusOr<Cookie> Read(uint64_t offset, absl::Span<uint8_t> buffer,
                              ReadOptions options = {});
  // flags: FUA, PAYLOAD_LEN (extended headers only; with extended headers
  // the client sets it on every WRITE anyway, as the spec requires).
  absl::StatusOr<Cookie> Write(uint64_t offset, absl::Span<const uint8_t> data,
                               uint16_t flags = 0, uint64_t tag = 0);
  absl::StatusOr<Cookie> Flush(uint16_t flags = 0, uint64_t tag = 0);
  absl::StatusOr<Cookie> Trim(uint64_t offset, uint64_t length,
                              uint16_t flags = 0,  // FUA
                              uint64_t tag = 0);
  absl::StatusOr<Cookie> Cache(uint64_t offset, uint64_t length,
                               uint16_t flags = 0, uint64_t tag = 0);
  // flags: FUA, NO_HOLE, FAST_ZERO.
  absl::StatusOr<Cookie> WriteZeroes(uint64_t offset, uint64_t length,
                                     uint16_t flags = 0, uint64_t tag = 0);
  // flags: REQ_ONE. Extents arrive as BlockStatusExtents events (64-bit
  // lengths whether the server used BLOCK_STATUS or BLOCK_STATUS_EXT).
  absl::StatusOr<Cookie> BlockStatus(uint64_t offset, uint64_t length,
                                     uint16_t flags = 0, uint64_t tag = 0);

  // ---- Lifecycle ------------------------------------------------------------
  // libnbd's nbd_aio_disconnect: flags must be 0. Queues NBD_CMD_DISC
  // behind unsent commands; it counts as in flight until closed. Afterwards
  // commands and a second Disconnect() fail with FailedPrecondition
  // (EINVAL), like any call outside its phases. Commands already accepted
  // still complete normally.
  absl::Status Disconnect(uint32_t flags = 0);
  // Graceful end in any phase. In transmission: with
  // kShutdownAbandonPending, commands with no byte consumed or pinned
  // complete with ENOTCONN; then NBD_CMD_DISC is sent once nothing else is in
  // flight. During negotiation: NBD_OPT_ABORT (after the current option's
  // reply). After Disconnect() it succeeds and changes nothing. In
  // kClosed/kDead it fails with FailedPrecondition.
  absl::Status Shutdown(uint32_t flags = 0);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nbd

#endif  // NBD_PROTOCOL_CLIENT_CLIENT_H_
