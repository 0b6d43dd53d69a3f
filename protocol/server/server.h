// nbd::ServerSession: the sans-IO NBD server core, one per connection.
//
// Mirror image of nbd::Client (protocol/client/client.h): a pure state machine
// that consumes the client's bytes, produces the bytes to send, and queues
// events. It touches no descriptor, clock, thread or random source and
// never calls user code. Not thread-safe: one thread drives one session.
// The greeting is queued by the constructor.
//
// ---- Driving loop ---------------------------------------------------------
//   1. wants(): what the transport should wait for.
//   2. Input, either way (both give identical results for any split):
//        copying:   Feed(bytes) -> bytes consumed; FeedEof() on EOF.
//        zero-copy: span = RecvBuffer(); recv into it; CommitRecv(n).
//      While a WRITE payload is arriving, RecvBuffer() is a slice of the
//      payload buffer the ServerRequest will reference, so payload bytes are
//      never copied by the session.
//   3. Output: PeekOutput(slices) fills an iovec-compatible gather list;
//      after the transport took n bytes, ConsumeOutput(n).
//   4. Events: while (auto e = PollEvent()) handle(*e). Answer each
//      ServerRequest with exactly one Reply*() call, now or later, in any
//      order (replies may be reordered; the protocol allows it).
//   5. Stop when phase() is kClosed or kDead (wants() == kNone), then close
//      the descriptor.
//
// ---- Phases ----------------------------------------------------------------
//   kHandshake     greeting sent, options being answered by the session
//                  itself (GO, INFO, EXPORT_NAME, LIST, ABORT,
//                  STRUCTURED_REPLY, EXTENDED_HEADERS, LIST/SET_META_CONTEXT,
//                  and STARTTLS unless ServerOptions::tls is kOff; unknown
//                  options get NBD_REP_ERR_UNSUP).
//   kTransmission  requests flow; Reply*() allowed.
//   kClosing       NBD_CMD_DISC, NBD_OPT_ABORT or EOF at a boundary was
//                  received: no more input; outstanding requests are still
//                  replied to, then the output drains and ServerClosed.
//   kClosed        final, clean.
//   kDead          final, hard disconnect; dead_reason() says why.
// One table says which call is allowed in which phase
// (protocol/server/permissions.h: ServerCallAllowed(call, phase())). A call
// outside its phases fails with FailedPrecondition (errno EINVAL), its
// message naming the call and the phase, and changes nothing; void calls
// then do nothing. See docs/protocol-core.md for the table.
//
// ---- TLS ------------------------------------------------------------------
//  With ServerOptions::tls kOn or kRequire, an NBD_OPT_STARTTLS (no data,
//  not yet under TLS) is acknowledged and input stops at the end of it.
//  Once the embedder has consumed the acknowledgement, the session raises
//  ServerStartTls and wants() is kNone: the embedder runs the TLS handshake
//  on the transport (adapters/tls), then calls TlsHandshakeDone(), and from
//  then on moves the session's plaintext through TLS. Everything negotiated
//  before STARTTLS (structured replies, extended headers, the meta-context
//  selection) is void afterwards, as the spec requires; a second STARTTLS
//  gets NBD_REP_ERR_INVALID. Under kRequire every other option before TLS
//  gets NBD_REP_ERR_TLS_REQD (EXPORT_NAME drops the connection).
//
// ---- Protocol trace ------------------------------------------------------
//  With ServerOptions::trace, the session queues a ServerTrace event per
//  line, from the server's point of view: "<- " a message received from the
//  client (client flags, each option with its export name, info requests
//  or meta-context queries, each request with cookie, offset, length and
//  flags), "-> " a message queued for it (greeting, each option reply with
//  its info items, exported names or meta contexts as "   " detail lines,
//  each simple reply with its error, each chunk with type, flags, length and
//  its offsets, e.g. ERROR_OFFSET's), and plain state changes:
//  "transmission: <what was negotiated>", "closing: <why>", "closed: ...",
//  "dead: <reason>". Lines are never queued after ServerClosed or
//  ServerDead, and are the same for any split of the input. Off by
//  default: it formats strings. docs/protocol-core.md has an example.
//
// ---- Ownership -------------------------------------------------------------
//  - ServerRequest::payload: valid until that handle is replied to or the
//    session is destroyed (also after kDead).
//  - ReplyRead(): the data pieces are referenced, not copied. They must stay
//    valid and unchanged until the reply's last byte has been consumed
//    (ReplySent, if enabled), or until the session dies or is destroyed.
//    Passing `keepalive` hands that duty to the session: it holds the
//    pointer until then.
//  - Slices from PeekOutput() stay valid until ConsumeOutput() covers them,
//    except that entering kDead drops all pending output.
//  - The span from RecvBuffer() is valid until the next non-const call.
//
// ---- Errors -----------------------------------------------------------------
//  - Feed()/CommitRecv() fail only when the connection dies (the reason is
//    also a ServerDead event) or when called in kClosed/kDead.
//  - Reply*() returns InvalidArgument for an unknown handle or a reply that
//    does not fit the request (nothing is queued; the handle stays
//    outstanding), and FailedPrecondition (errno ENOTCONN) once the session
//    is dead or closed; the handle is then released and nothing is sent.
//    In kHandshake, where no request exists, it is outside its phases:
//    FailedPrecondition (errno EINVAL).
#ifndef NBD_PROTOCOL_SERVER_SERVER_H_
#define NBD_PROTOCOL_SERVER_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "protocol/constants.h"
#include "protocol/io.h"
#include "protocol/server/events.h"
#include "protocol/server/options.h"
#include "protocol/wire.h"

namespace nbd {

enum class ServerPhase { kHandshake, kTransmission, kClosing, kClosed, kDead };
const char* ServerPhaseName(ServerPhase phase);

// One piece of a READ reply. Pieces tile the request in order.
struct ReadPiece {
  uint64_t offset = 0;            // absolute export offset
  uint64_t length = 0;            // > 0
  const uint8_t* data = nullptr;  // `length` bytes, or nullptr for a hole

  static ReadPiece Data(uint64_t offset, absl::Span<const uint8_t> bytes) {
    return {offset, bytes.size(), bytes.data()};
  }
  static ReadPiece Hole(uint64_t offset, uint64_t length) {
    return {offset, length, nullptr};
  }
};

// The context id the session gives base:allocation.
inline constexpr uint32_t kBaseAllocationContextId = 1;

class ServerSession {
 public:
  // Queues the fixed-newstyle greeting. `options.exports` must be non-empty.
  explicit ServerSession(ServerOptions options);
  ~ServerSession();
  ServerSession(const ServerSession&) = delete;
  ServerSession& operator=(const ServerSession&) = delete;

  // ---- Queries (any phase) ------------------------------------------------
  ServerPhase phase() const;
  Direction wants() const;
  absl::Status dead_reason() const;  // OK unless kDead
  // Requests reported and not yet replied to.
  size_t in_flight() const;
  // The export being served; nullopt before transmission.
  std::optional<size_t> export_index() const;
  bool structured_replies() const;
  bool extended_headers() const;
  bool block_status_negotiated() const;  // base:allocation selected
  // TlsHandshakeDone() was called: the connection runs over TLS.
  bool tls_negotiated() const;
  const ServerOptions& options() const;

  // ---- Input ----------------------------------------------------------------
  // Consumes bytes and returns how many. It consumes everything unless input
  // stops: the session paused (in-flight or output limit: keep the rest and
  // feed it once wants() includes kRead again), entered kClosing (the rest is
  // ignored; the client may send nothing after DISC), or died (returns the
  // reason).
  absl::StatusOr<size_t> Feed(absl::Span<const uint8_t> bytes);
  // The client closed its side: at a message boundary the session drains
  // outstanding replies and closes; inside a message it dies.
  void FeedEof();
  // The transport failed; the session dies.
  void FeedTransportError(absl::Status error);
  // Zero-copy path: the span to receive into (empty if no input is wanted).
  absl::Span<uint8_t> RecvBuffer();
  absl::Status CommitRecv(size_t n);

  // ---- Output ---------------------------------------------------------------
  size_t PeekOutput(absl::Span<IoSlice> out) const;
  size_t pending_output_bytes() const;
  // n must not exceed pending_output_bytes().
  absl::Status ConsumeOutput(size_t n);

  // ---- Events ---------------------------------------------------------------
  std::optional<ServerEvent> PollEvent();
  bool has_events() const;

  // ---- TLS (kHandshake, after ServerStartTls) -----------------------------
  // The TLS handshake succeeded: the session reads the next option (now
  // through TLS) with everything negotiated before STARTTLS forgotten.
  // Without a pending ServerStartTls: FailedPrecondition (EINVAL), nothing
  // changes.
  absl::Status TlsHandshakeDone();
  // The TLS handshake failed: the session dies with `why` (a spec MUST:
  // after the acknowledgement there is no way back to plaintext). Without
  // a pending ServerStartTls it does nothing.
  void TlsHandshakeFailed(absl::Status why);

  // ---- Replies (kTransmission / kClosing) ---------------------------------
  // Success without data: any command but a non-empty READ or BLOCK_STATUS.
  absl::Status ReplyOk(RequestHandle handle);
  // Failure with an errno (mapped to the NBD error; unknown ones become
  // EINVAL). `message` (truncated to 4096 bytes) goes into the structured
  // error chunk when structured replies are on.
  absl::Status ReplyError(RequestHandle handle, int errno_value,
                          absl::string_view message = {});
  // READ data. `pieces` must tile [offset, offset + length) of the request
  // in order. Holes go out as NBD_REPLY_TYPE_OFFSET_HOLE with structured
  // replies, and as zeros otherwise (or when the client set DF, in which
  // case everything is one OFFSET_DATA chunk).
  absl::Status ReplyRead(RequestHandle handle,
                         absl::Span<const ReadPiece> pieces,
                         std::shared_ptr<const void> keepalive = nullptr);
  // A READ that failed at `error_offset`, the first byte that could not be
  // read (inside the request). `pieces` tile [request offset, error_offset)
  // with what was read before the failure; they may be empty. With
  // structured replies they go out as in ReplyRead (as at most one data
  // chunk with DF), followed by an NBD_REPLY_TYPE_ERROR_OFFSET chunk naming
  // error_offset: the spec's SHOULD for read errors, and it tells the client
  // that the data before the offset is valid. A simple reply cannot carry
  // both data and an error, so simple mode sends only the error. The errno
  // and `message` are treated as in ReplyError; `keepalive` as in ReplyRead.
  absl::Status ReplyReadError(RequestHandle handle,
                              absl::Span<const ReadPiece> pieces,
                              uint64_t error_offset, int errno_value,
                              absl::string_view message = {},
                              std::shared_ptr<const void> keepalive = nullptr);
  // base:allocation extents from the request offset on, consecutive, each
  // non-empty, flags kStateHole|kStateZero. The session sends at most
  // 2^20 extents (exactly one with REQ_ONE), clips them to the request, and
  // uses BLOCK_STATUS_EXT under extended headers.
  absl::Status ReplyBlockStatus(RequestHandle handle,
                                absl::Span<const Extent> extents);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nbd

#endif  // NBD_PROTOCOL_SERVER_SERVER_H_
