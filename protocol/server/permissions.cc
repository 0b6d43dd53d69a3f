// The nbd::ServerSession permission table. docs/protocol-core.md shows the
// same table; tests/protocol/server/phase_table_test.cc holds a copy and runs
// every call in every phase against it.
#include "protocol/server/permissions.h"

#include <cstdint>

namespace nbd {
namespace {

using Mask = uint32_t;
using P = ServerPhase;

constexpr Mask Bit(P phase) { return Mask{1} << static_cast<int>(phase); }

constexpr Mask kAny = (Mask{1} << kAllServerPhases.size()) - 1;
constexpr Mask kEnded = Bit(P::kClosed) | Bit(P::kDead);
constexpr Mask kLive = kAny & ~kEnded;  // not closed or dead
constexpr Mask kReading = Bit(P::kHandshake) | Bit(P::kTransmission);

struct Row {
  ServerCall call;
  const char* name;
  Mask allowed;
};

// One row per ServerCall, in declaration order.
constexpr Row kTable[] = {
    // Input. kClosing reads nothing more (Feed() consumes nothing, EOF is
    // already known) but a transport error still kills the session.
    // CommitRecv(n) is checked against the last RecvBuffer(): 0 is always
    // fine until the end, anything beyond it is an argument error.
    {ServerCall::kFeed, "Feed", kLive},
    {ServerCall::kFeedEof, "FeedEof", kReading},
    {ServerCall::kFeedTransportError, "FeedTransportError", kLive},
    {ServerCall::kRecvBuffer, "RecvBuffer", kReading},
    {ServerCall::kCommitRecv, "CommitRecv", kLive},
    // Output: n is checked against what is pending (nothing once dead).
    {ServerCall::kConsumeOutput, "ConsumeOutput", kAny},
    // TLS starts and ends inside the handshake (and then only after a
    // ServerStartTls, which the session checks itself).
    {ServerCall::kTlsHandshakeDone, "TlsHandshakeDone", Bit(P::kHandshake)},
    {ServerCall::kTlsHandshakeFailed, "TlsHandshakeFailed", Bit(P::kHandshake)},
    // Replies answer requests, which exist from transmission on. After the
    // end a reply is accepted and dropped (FailedPrecondition, ENOTCONN, the
    // handle released): an asynchronous backend cannot know it came late.
    {ServerCall::kReplyOk, "ReplyOk", kAny & ~Bit(P::kHandshake)},
    {ServerCall::kReplyError, "ReplyError", kAny & ~Bit(P::kHandshake)},
    {ServerCall::kReplyRead, "ReplyRead", kAny & ~Bit(P::kHandshake)},
    {ServerCall::kReplyReadError, "ReplyReadError", kAny & ~Bit(P::kHandshake)},
    {ServerCall::kReplyBlockStatus, "ReplyBlockStatus",
     kAny & ~Bit(P::kHandshake)},
};

constexpr bool RowsInOrder() {
  if (sizeof(kTable) / sizeof(kTable[0]) != kServerCallCount) return false;
  for (size_t i = 0; i < kServerCallCount; ++i) {
    if (static_cast<size_t>(kTable[i].call) != i) return false;
  }
  return true;
}
static_assert(RowsInOrder(), "one row per ServerCall, in declaration order");
static_assert(static_cast<size_t>(P::kDead) + 1 == kAllServerPhases.size(),
              "kAllServerPhases lists every ServerPhase");

}  // namespace

const char* ServerCallName(ServerCall call) {
  return kTable[static_cast<size_t>(call)].name;
}

bool ServerCallAllowed(ServerCall call, ServerPhase phase) {
  return (kTable[static_cast<size_t>(call)].allowed & Bit(phase)) != 0;
}

}  // namespace nbd
