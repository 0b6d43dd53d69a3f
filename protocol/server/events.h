// Events a ServerSession queues for its embedder, popped with
// ServerSession::PollEvent(). Plain values; the session never calls user
// code.
//
// Order guarantees:
//  - TransmissionStarted comes once, before the first ServerRequest.
//  - ServerStartTls comes at most once, in the handshake, before
//    TransmissionStarted.
//  - Every ServerRequest is for a request the session has validated; the
//    embedder must answer each exactly once (ReplyOk/ReplyError/ReplyRead/
//    ReplyReadError/ReplyBlockStatus). Requests the session rejects itself
//    (bounds, flags, read-only, unknown command, ...) are answered by the
//    session and never reported.
//  - ReplySent (only with ServerOptions::report_reply_sent) follows the
//    reply's last byte leaving the output queue.
//  - ServerTrace (only with ServerOptions::trace) may come between any
//    others, in the order things happen, but never after ServerClosed or
//    ServerDead.
//  - ServerClosed or ServerDead comes exactly once and is the last event.
#ifndef NBD_PROTOCOL_SERVER_EVENTS_H_
#define NBD_PROTOCOL_SERVER_EVENTS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "protocol/constants.h"

namespace nbd {

// Names one request inside a session. Assigned by the session (counting up
// from 1, never reused), so duplicate client cookies cannot confuse replies.
using RequestHandle = uint64_t;

// The option phase ended (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) and the
// session serves `export_index` of ServerOptions::exports.
struct TransmissionStarted {
  size_t export_index = 0;
  bool structured_replies = false;
  bool extended_headers = false;
  bool operator==(const TransmissionStarted&) const = default;
};

// A validated request for the embedder to execute.
//  - offset/length are inside the export, aligned to min_block, and for
//    READ/WRITE at most max_block bytes.
//  - `payload` is the WRITE data (length bytes). It lives in session memory
//    and stays valid until this handle is replied to or the session is
//    destroyed, whichever comes first.
//  - BLOCK_STATUS is only reported when base:allocation was negotiated.
struct ServerRequest {
  RequestHandle handle = 0;
  uint64_t cookie = 0;  // the client's, for logging
  Command command = Command::kRead;
  uint16_t flags = 0;  // NBD_CMD_FLAG_* (FUA, NO_HOLE, FAST_ZERO, DF, REQ_ONE)
  uint64_t offset = 0;
  uint64_t length = 0;
  absl::Span<const uint8_t> payload;
};

// NBD_OPT_STARTTLS was acknowledged and the acknowledgement (with every
// byte queued before it) has been consumed: every byte from now on, both
// ways, is TLS. The session reads nothing until the embedder has run the
// TLS handshake and called ServerSession::TlsHandshakeDone() (or
// TlsHandshakeFailed()). Bytes the client sent after its STARTTLS and
// before the handshake are not the session's: they belong to the TLS layer,
// which rejects anything that is not a TLS record.
struct ServerStartTls {
  bool operator==(const ServerStartTls&) const = default;
};

// The last byte of the reply to `handle` was consumed.
struct ReplySent {
  RequestHandle handle = 0;
  bool operator==(const ReplySent&) const = default;
};

// The connection ended cleanly: NBD_CMD_DISC or NBD_OPT_ABORT with every
// reply sent, or EOF from the client at a message boundary. Close the
// descriptor. Final.
struct ServerClosed {
  bool operator==(const ServerClosed&) const = default;
};

// The connection must be dropped now (a hard disconnect): the client broke
// the protocol, EOF inside a message, or a transport error. Pending output
// was discarded. Final.
struct ServerDead {
  absl::Status reason;
  bool operator==(const ServerDead&) const = default;
};

// One line of the protocol trace, queued only with ServerOptions::trace.
// From the server's point of view: "<- " a message received from the
// client, "-> " a message queued for it (output dropped by a later
// ServerDead never leaves), "   " a detail of the line above, and plain
// text for state changes ("transmission: ...", "closing: ...",
// "closed: ...", "dead: <reason>"). The lines depend only on the bytes and
// the Reply*() calls, never on how input was split. For people, not
// parsers: the wording may change.
struct ServerTrace {
  std::string message;
  bool operator==(const ServerTrace&) const = default;
};

using ServerEvent =
    std::variant<TransmissionStarted, ServerRequest, ReplySent, ServerStartTls,
                 ServerTrace, ServerClosed, ServerDead>;

}  // namespace nbd

#endif  // NBD_PROTOCOL_SERVER_EVENTS_H_
