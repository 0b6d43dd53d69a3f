// Which nbd::ServerSession call is allowed in which ServerPhase: the one
// table every state-dependent call checks through
// (protocol/server/permissions.cc).
//
// A call the table refuses changes nothing. If it returns a status, that is
// FailedPrecondition with errno EINVAL (nbd::StatusErrno), and the message
// names the call and the phase; void calls (FeedEof, FeedTransportError) do
// nothing and RecvBuffer() returns an empty span. Argument errors (unknown
// handle, a reply that does not fit the request, n beyond the buffer) are
// checked after the table and stay InvalidArgument.
//
// Queries, PeekOutput(), pending_output_bytes(), PollEvent() and
// has_events() are allowed in every phase and are not in the table.
#ifndef NBD_PROTOCOL_SERVER_PERMISSIONS_H_
#define NBD_PROTOCOL_SERVER_PERMISSIONS_H_

#include <array>
#include <cstddef>

#include "protocol/server/server.h"

namespace nbd {

// The public calls of nbd::ServerSession that depend on the phase.
enum class ServerCall {
  kFeed,
  kFeedEof,
  kFeedTransportError,
  kRecvBuffer,
  kCommitRecv,
  kConsumeOutput,
  kTlsHandshakeDone,
  kTlsHandshakeFailed,
  kReplyOk,
  kReplyError,
  kReplyRead,
  kReplyReadError,
  kReplyBlockStatus,
};
inline constexpr size_t kServerCallCount =
    static_cast<size_t>(ServerCall::kReplyBlockStatus) + 1;
const char* ServerCallName(ServerCall call);

// Every phase, in declaration order (for walking the table).
inline constexpr std::array<ServerPhase, 5> kAllServerPhases = {
    ServerPhase::kHandshake, ServerPhase::kTransmission, ServerPhase::kClosing,
    ServerPhase::kClosed, ServerPhase::kDead};

// The table.
bool ServerCallAllowed(ServerCall call, ServerPhase phase);

}  // namespace nbd

#endif  // NBD_PROTOCOL_SERVER_PERMISSIONS_H_
