// Events the client core queues for its caller. They are plain values,
// popped with Client::PollEvent(); the core never calls user code.
//
// Order guarantees:
//  - For one command: zero or more ReadChunk / BlockStatusExtents events,
//    then exactly one CommandCompleted. NBD_CMD_DISC never completes.
//  - For one option in option mode: zero or more ExportListed /
//    MetaContextListed events, then exactly one OptionCompleted.
//  - ShutdownWrite comes at most once, after the last byte of NBD_CMD_DISC
//    or NBD_OPT_ABORT left the output queue.
//  - ClientTrace events (only if asked for) may come between any others, but
//    never after ClientClosed or ClientDead.
//  - ClientClosed or ClientDead comes exactly once and is the last event. All
//    commands still pending complete (with ENOTCONN) before it.
//
// Command events carry the command's `tag`, the opaque value given when it
// was issued (0 by default; see "Tags" in client.h), on every path: success,
// server error, EPROTO, ENOTCONN. nbd::Visit (protocol/visit.h) dispatches an
// event to overloaded lambdas.
#ifndef NBD_PROTOCOL_CLIENT_EVENTS_H_
#define NBD_PROTOCOL_CLIENT_EVENTS_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "protocol/constants.h"
#include "protocol/wire.h"

namespace nbd {

// Identifies one command. Cookies count up from 1 and are never reused
// within a connection (NBD_CMD_DISC consumes one too).
using Cookie = uint64_t;

// The handshake finished; commands may be issued. Negotiated values are
// available from the Client getters.
struct Connected {
  bool operator==(const Connected&) const = default;
};

// Option mode: the handshake has parked, and the Opt* calls are allowed.
struct Negotiating {
  bool operator==(const Negotiating&) const = default;
};

// Option mode: one entry of NBD_OPT_LIST.
struct ExportListed {
  std::string name;
  std::string description;
  bool operator==(const ExportListed&) const = default;
};

// Option mode: one context answered by LIST/SET_META_CONTEXT.
struct MetaContextListed {
  uint32_t context_id = 0;
  std::string name;
  bool operator==(const MetaContextListed&) const = default;
};

// Option mode: the option finished. `status` is OK, or the server's error
// (ENOTSUP for NBD_REP_ERR_UNSUP, ENOENT for ERR_UNKNOWN, EINVAL for
// ERR_INVALID/TOO_BIG/BLOCK_SIZE_REQD, EPERM for ERR_POLICY, ESHUTDOWN for
// ERR_SHUTDOWN, ...) with the server's message.
struct OptionCompleted {
  Option option = Option::kAbort;
  absl::Status status;
  bool operator==(const OptionCompleted&) const = default;
};

// The command finished: OK, a server error (errno from the wire), a
// protocol error for this command (EPROTO), or ENOTCONN if the connection
// ended first. Emitted exactly once per accepted command.
struct CommandCompleted {
  Cookie cookie = 0;
  Command command = Command::kRead;
  absl::Status status;
  uint64_t tag = 0;  // the command's tag, never interpreted by the core
  bool operator==(const CommandCompleted&) const = default;
};

// Block-status extents for one context of one command. Extents are
// consecutive from `offset`, never zero-length, and clamped so they end at
// or before the requested range's end.
struct BlockStatusExtents {
  Cookie cookie = 0;
  uint32_t context_id = 0;
  std::string context_name;
  uint64_t offset = 0;
  std::vector<Extent> extents;
  uint64_t tag = 0;  // the command's tag
  bool operator==(const BlockStatusExtents&) const = default;
};

// A structured read chunk, reported only for reads issued with
// ReadOptions::report_chunks. Data and holes are already in the caller's
// buffer when this event is queued.
enum class ReadChunkKind { kData, kHole, kError };
struct ReadChunk {
  Cookie cookie = 0;
  ReadChunkKind kind = ReadChunkKind::kData;
  uint64_t offset = 0;  // absolute export offset
  uint64_t length = 0;  // 0 for an error chunk without an offset
  int error = 0;        // errno, for kError
  uint64_t tag = 0;     // the command's tag
  bool operator==(const ReadChunk&) const = default;
};

// The server acknowledged NBD_OPT_STARTTLS. Input stops at the end of that
// acknowledgement; wrap the transport in TLS, then call
// Client::TlsHandshakeDone() (or TlsHandshakeFailed()).
struct StartTls {
  bool operator==(const StartTls&) const = default;
};

// NBD_CMD_DISC (or NBD_OPT_ABORT) has been fully handed to the transport:
// shut down the write side of the socket (with TLS: send close_notify
// first), and keep reading until ClientClosed or ClientDead.
struct ShutdownWrite {
  bool operator==(const ShutdownWrite&) const = default;
};

// The server closed the connection at a message boundary. Final.
struct ClientClosed {
  bool operator==(const ClientClosed&) const = default;
};

// One line of the protocol trace, queued only with ClientOptions::trace:
// "-> " a message queued for the server, "<- " one received from it, and
// plain text for state changes, in the order they happen. For people, not
// parsers: the wording may change.
struct ClientTrace {
  std::string message;
  bool operator==(const ClientTrace&) const = default;
};

// The connection failed: a protocol violation, EOF inside a message, a
// failed handshake, or a transport error reported by the caller. Final.
struct ClientDead {
  absl::Status reason;
  bool operator==(const ClientDead&) const = default;
};

using ClientEvent =
    std::variant<Connected, Negotiating, ExportListed, MetaContextListed,
                 OptionCompleted, CommandCompleted, BlockStatusExtents,
                 ReadChunk, StartTls, ShutdownWrite, ClientTrace, ClientClosed,
                 ClientDead>;

}  // namespace nbd

#endif  // NBD_PROTOCOL_CLIENT_EVENTS_H_
