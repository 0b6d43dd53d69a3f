// Which nbd::Client call is allowed in which state: the one table every
// public call checks through (protocol/client/permissions.cc).
//
// A call the table refuses changes nothing. If it returns a status, that is
// FailedPrecondition with errno EINVAL (nbd::StatusErrno), and the message
// names the call and the state; void calls (FeedEof, FeedTransportError,
// TlsHandshakeFailed) do nothing and RecvBuffer() returns an empty span.
// Argument errors (bad flags, ranges, sizes) are checked after the table and
// keep their own codes (InvalidArgument/EINVAL, ERANGE, ...).
//
// Queries, PeekOutput(), pending_output_bytes(), PollEvent() and
// has_events() are allowed in every state and are not in the table.
#ifndef NBD_PROTOCOL_CLIENT_PERMISSIONS_H_
#define NBD_PROTOCOL_CLIENT_PERMISSIONS_H_

#include <array>
#include <cstddef>

namespace nbd {

// The public calls of nbd::Client that depend on the state.
enum class ClientCall {
  kFeed,
  kFeedEof,
  kFeedTransportError,
  kRecvBuffer,
  kCommitRecv,
  kConsumeOutput,
  kPinOutput,
  kTlsHandshakeDone,
  kTlsHandshakeFailed,
  kSetExportName,
  kOptList,
  kOptInfo,
  kOptGo,
  kOptAbort,
  kOptStructuredReply,
  kOptExtendedHeaders,
  kOptListMetaContext,
  kOptSetMetaContext,
  kRead,
  kWrite,
  kFlush,
  kTrim,
  kCache,
  kWriteZeroes,
  kBlockStatus,
  kDisconnect,
  kShutdown,
};
inline constexpr size_t kClientCallCount =
    static_cast<size_t>(ClientCall::kShutdown) + 1;
const char* ClientCallName(ClientCall call);

// The states the table tells apart: ClientPhase, refined where the allowed
// calls differ. Client::call_state() says which one a client is in.
enum class ClientCallState {
  // kConnecting: the handshake runs by itself (greeting, automatic
  // options, NBD_OPT_EXPORT_NAME, NBD_OPT_ABORT sent).
  kHandshake,
  // kConnecting: STARTTLS acknowledged; the caller's TLS layer is starting.
  kTlsPaused,
  // kNegotiating: option mode, parked, waiting for an Opt*() call.
  kNegotiating,
  // kConnecting: option mode, the option of an Opt*() call is in flight.
  kOptionInFlight,
  // kReady/kProcessing: commands flow.
  kTransmission,
  // kReady/kProcessing after Disconnect(), Shutdown() or an NBD_ESHUTDOWN
  // reply: NBD_CMD_DISC is queued, or goes out once commands drain.
  kDisconnecting,
  kClosed,
  kDead,
};
inline constexpr size_t kClientCallStateCount =
    static_cast<size_t>(ClientCallState::kDead) + 1;
const char* ClientCallStateName(ClientCallState state);

// Every state, in declaration order (for walking the table).
inline constexpr std::array<ClientCallState, kClientCallStateCount>
    kAllClientCallStates = {
        ClientCallState::kHandshake,    ClientCallState::kTlsPaused,
        ClientCallState::kNegotiating,  ClientCallState::kOptionInFlight,
        ClientCallState::kTransmission, ClientCallState::kDisconnecting,
        ClientCallState::kClosed,       ClientCallState::kDead,
};

// The table.
bool ClientCallAllowed(ClientCall call, ClientCallState state);

}  // namespace nbd

#endif  // NBD_PROTOCOL_CLIENT_PERMISSIONS_H_
