// The nbd::Client permission table. docs/protocol-core.md shows the same
// table; tests/protocol/client/phase_table_test.cc holds a copy and runs
// every call in every state against it.
#include "protocol/client/permissions.h"

#include <cstdint>

namespace nbd {
namespace {

using Mask = uint32_t;
using S = ClientCallState;

constexpr Mask Bit(S state) { return Mask{1} << static_cast<int>(state); }

constexpr Mask kAny = (Mask{1} << kClientCallStateCount) - 1;
constexpr Mask kEnded = Bit(S::kClosed) | Bit(S::kDead);
constexpr Mask kLive = kAny & ~kEnded;  // not closed or dead

struct Row {
  ClientCall call;
  const char* name;
  Mask allowed;
};

// One row per ClientCall, in declaration order.
constexpr Row kTable[] = {
    // Input: until the connection ends. The TLS pause takes no input, so
    // RecvBuffer() is refused (empty) then, while Feed() consumes nothing.
    // CommitRecv(n) is checked against the last RecvBuffer() instead: 0 is
    // always fine, anything beyond it is an argument error.
    {ClientCall::kFeed, "Feed", kLive},
    {ClientCall::kFeedEof, "FeedEof", kLive},
    {ClientCall::kFeedTransportError, "FeedTransportError", kLive},
    {ClientCall::kRecvBuffer, "RecvBuffer", kLive & ~Bit(S::kTlsPaused)},
    {ClientCall::kCommitRecv, "CommitRecv", kAny},
    // Output: n is checked against what is pending (nothing once ended).
    {ClientCall::kConsumeOutput, "ConsumeOutput", kAny},
    {ClientCall::kPinOutput, "PinOutput", kAny},
    // TLS: Done only answers a StartTls event; Failed is a transport
    // failure and kills the connection in any live state.
    {ClientCall::kTlsHandshakeDone, "TlsHandshakeDone", Bit(S::kTlsPaused)},
    {ClientCall::kTlsHandshakeFailed, "TlsHandshakeFailed", kLive},
    // Option mode: one option at a time, only while parked.
    {ClientCall::kSetExportName, "SetExportName", Bit(S::kNegotiating)},
    {ClientCall::kOptList, "OptList", Bit(S::kNegotiating)},
    {ClientCall::kOptInfo, "OptInfo", Bit(S::kNegotiating)},
    {ClientCall::kOptGo, "OptGo", Bit(S::kNegotiating)},
    {ClientCall::kOptAbort, "OptAbort", Bit(S::kNegotiating)},
    {ClientCall::kOptStructuredReply, "OptStructuredReply",
     Bit(S::kNegotiating)},
    {ClientCall::kOptExtendedHeaders, "OptExtendedHeaders",
     Bit(S::kNegotiating)},
    {ClientCall::kOptListMetaContext, "OptListMetaContext",
     Bit(S::kNegotiating)},
    {ClientCall::kOptSetMetaContext, "OptSetMetaContext", Bit(S::kNegotiating)},
    // Commands and Disconnect(): transmission, until NBD_CMD_DISC.
    {ClientCall::kRead, "Read", Bit(S::kTransmission)},
    {ClientCall::kWrite, "Write", Bit(S::kTransmission)},
    {ClientCall::kFlush, "Flush", Bit(S::kTransmission)},
    {ClientCall::kTrim, "Trim", Bit(S::kTransmission)},
    {ClientCall::kCache, "Cache", Bit(S::kTransmission)},
    {ClientCall::kWriteZeroes, "WriteZeroes", Bit(S::kTransmission)},
    {ClientCall::kBlockStatus, "BlockStatus", Bit(S::kTransmission)},
    {ClientCall::kDisconnect, "Disconnect", Bit(S::kTransmission)},
    // Shutdown(): graceful end from any live state (a no-op once a
    // disconnect or an abort is under way).
    {ClientCall::kShutdown, "Shutdown", kLive},
};

constexpr bool RowsInOrder() {
  if (sizeof(kTable) / sizeof(kTable[0]) != kClientCallCount) return false;
  for (size_t i = 0; i < kClientCallCount; ++i) {
    if (static_cast<size_t>(kTable[i].call) != i) return false;
  }
  return true;
}
static_assert(RowsInOrder(), "one row per ClientCall, in declaration order");

}  // namespace

const char* ClientCallName(ClientCall call) {
  return kTable[static_cast<size_t>(call)].name;
}

const char* ClientCallStateName(ClientCallState state) {
  switch (state) {
    case S::kHandshake:
      return "handshake";
    case S::kTlsPaused:
      return "TLS paused";
    case S::kNegotiating:
      return "negotiating";
    case S::kOptionInFlight:
      return "negotiating, option in flight";
    case S::kTransmission:
      return "transmission";
    case S::kDisconnecting:
      return "transmission, NBD_CMD_DISC queued";
    case S::kClosed:
      return "closed";
    case S::kDead:
      return "dead";
  }
  return "unknown";
}

bool ClientCallAllowed(ClientCall call, ClientCallState state) {
  return (kTable[static_cast<size_t>(call)].allowed & Bit(state)) != 0;
}

}  // namespace nbd
