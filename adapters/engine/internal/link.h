// The seam between the Engine and the adapters: a Driver per adapter (one
// per Engine: the loop, the ring) and a Link per connection. Each adapter
// implements both in its own file; the Engine never asks which adapter it
// runs on.
//
// A new adapter is a Driver and a Link in a file of its own, a New*Driver
// function, and a case in Engine::Create. Work that belongs to every
// adapter (per-command tags, the submission queue of other threads) lives
// in the Engine and its Op records, not in the drivers; a driver only
// offers Wake().
#ifndef NBD_ADAPTERS_ENGINE_INTERNAL_LINK_H_
#define NBD_ADAPTERS_ENGINE_INTERNAL_LINK_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "adapters/engine/engine.h"
#include "adapters/pump/pump.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"
#include "protocol/client/options.h"

namespace nbd::engine::internal {

inline constexpr char kBaseAllocation[] = "base:allocation";

// One command, from issue to callback.
struct Op {
  Command command = Command::kRead;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint16_t flags = 0;
  uint64_t seq = 0;  // issue order
  absl::Span<uint8_t> read_buffer;
  absl::Span<const uint8_t> write_data;
  Done done;
  ExtentsDone extents_done;
  // Issued with a Tag: completes through EngineOptions::on_complete (and
  // on_extents) with `tag`, `exp` and `conn` instead of `done`.
  bool tagged = false;
  uint64_t tag = 0;
  const Export* exp = nullptr;  // set when issued
  size_t conn = 0;
  // Block status results gathered from BlockStatusExtents events.
  uint64_t extents_offset = 0;
  std::vector<Extent> extents;
};

struct Completion {
  Op op;
  absl::Status status;
};

// The Op of a command, without its completion (set one with Done(),
// ExtentsDone() or Tagged()); shared by Export and ThreadSafeExport.
Op RangeOp(Command command, uint64_t offset, uint64_t length, uint16_t flags);
Op ReadOp(uint64_t offset, absl::Span<uint8_t> buffer, uint16_t flags);
Op WriteOp(uint64_t offset, absl::Span<const uint8_t> data, uint16_t flags);
Op WithDone(Op op, Done done);
Op WithExtentsDone(Op op, ExtentsDone done);
Op WithTag(Op op, Tag tag);

// "write at offset 4096", "flush": the command as error lines name it.
std::string Describe(Command command, uint64_t offset);
// "read", "write-zeroes": the command as messages name it.
std::string CommandLabel(Command command);

// ETIMEDOUT "no reply from the server for <timeout>".
absl::Status NoReplyStatus(absl::Duration timeout);
// True for an adapter's "gave up waiting" status (DeadlineExceeded with
// ETIMEDOUT).
bool IsTimeout(const absl::Status& s);

// The client core's refusal of Disconnect() (`disconnect`) or
// Shutdown(flags) in its present state, without making the call: its
// permission table (ClientCallAllowed), then Shutdown()'s flags, the
// checks the core makes before it changes anything; OK if it would
// accept. The Engine asks before anything else, since a refused request
// must change nothing, and the blocking adapter turns Disconnect() into
// the core's Shutdown(), which would not refuse it.
absl::Status EndRefusal(const Client& client, bool disconnect, uint32_t flags);

// `status` as "<name>: <message>", with its code and payloads (errno).
absl::Status Named(const absl::Status& status, std::string_view name);

// What a Link needs from the Engine.
struct LinkContext {
  // Finished commands go here; the Engine runs their callbacks later.
  std::vector<Completion>* completed = nullptr;
  // Every event of the connection, before the link acts on it.
  std::function<void(const ClientEvent&)> observe;
  // The export's "a wait for this server timed out" flag.
  bool* stalled = nullptr;
  // EngineOptions::timeout: the bound of the blocking adapter's waits.
  absl::Duration timeout = absl::Seconds(30);
};

// One connection as one adapter drives it.
class Link {
 public:
  virtual ~Link() = default;

  virtual const Client& client() const = 0;
  // Accepts `op` (moves from it; it then lands in LinkContext::completed
  // exactly once) or refuses it (returns the error; `op` is untouched).
  virtual absl::Status Issue(Op& op) = 0;
  // Accepted commands not yet in LinkContext::completed.
  virtual size_t in_flight() const = 0;
  // The oldest command on the wire (for a timeout message), or null.
  virtual const Op* oldest() const = 0;
  // The core is closed or dead.
  bool ended() const { return adapters::IsTerminal(client().phase()); }
  // The descriptor is released.
  virtual bool finished() const = 0;
  // Why the connection died (OK if it closed cleanly or is still open).
  absl::Status end_reason() const {
    return client().phase() == ClientPhase::kDead ? client().dead_reason()
                                                  : absl::OkStatus();
  }

  // Starts the end (Client::Disconnect() if `disconnect`, else
  // Client::Shutdown(flags)), to be over by `deadline`; the Driver's
  // PollOnce() carries it on. Returns the adapter's status if it finished
  // the job itself (the blocking adapter does it all here). Called only
  // when EndRefusal() is OK; a refusal all the same changes nothing (no
  // deadline) and is returned.
  virtual absl::Status End(bool disconnect, uint32_t flags,
                           absl::Time deadline) = 0;

  // The link is kept but no longer used by the Engine (its Export failed
  // to open): it sees no more of the Engine and its connection is given
  // up. The link must stay alive until the Driver goes: a loop may still
  // refer to it.
  virtual void Abandon() {}

  // Option mode: each runs one option to its OptionCompleted (bounded).
  virtual absl::StatusOr<std::vector<std::string>> OptList(
      absl::Duration timeout) = 0;
  virtual absl::Status OptInfo(std::string name, absl::Duration timeout) = 0;
  virtual absl::Status OptGo(absl::Duration timeout) = 0;
  virtual absl::StatusOr<std::vector<MetaContext>> OptListMetaContext(
      std::vector<std::string> queries, absl::Duration timeout) = 0;
  virtual absl::Status OptAbort(absl::Duration timeout) = 0;
};

// The adapter's shared machinery for every connection of one Engine.
class Driver {
 public:
  virtual ~Driver() = default;

  virtual Adapter adapter() const = 0;
  // Takes ownership of `fd` (connected, non-blocking) and runs the
  // handshake to kReady (or kNegotiating in option mode), at most
  // `timeout`. On failure the descriptor is closed.
  virtual absl::StatusOr<std::unique_ptr<Link>> Connect(
      int fd, ClientOptions options, LinkContext context,
      absl::Duration timeout) = 0;
  // One round: sends what was issued, waits at most `timeout` for I/O and
  // handles it (the blocking adapter: executes one queued command per
  // connection, bounded by `timeout` in total). OK on a timeout too.
  virtual absl::Status PollOnce(absl::Duration timeout) = 0;
  // Whether PollOnce() can make progress with nothing queued (false for
  // the blocking adapter, which reads only inside calls).
  virtual bool waits_when_idle() const = 0;
  // Thread-safe: makes the PollOnce() that waits (or the next one) return
  // soon. The blocking adapter cannot be woken inside a call: no-op.
  virtual void Wake() const = 0;
};

absl::StatusOr<std::unique_ptr<Driver>> NewBlockingDriver(
    adapters::SyscallCounters* counters);
absl::StatusOr<std::unique_ptr<Driver>> NewEpollDriver(
    adapters::SyscallCounters* counters);
absl::StatusOr<std::unique_ptr<Driver>> NewUringDriver(
    adapters::SyscallCounters* counters);

}  // namespace nbd::engine::internal

#endif  // NBD_ADAPTERS_ENGINE_INTERNAL_LINK_H_
