// Test glue over nbd::engine (adapters/engine/engine.h) for the interop
// scenarios, so each is written once and run through blocking, epoll and
// io_uring alike: a batch of Ops, each recording how often and how it
// completed.
//
// Run() issues a batch and drives the engine until every op completed. The
// blocking adapter's API is synchronous, so its batch runs one command at
// a time, as a caller of BlockingClient would (a command after one that
// ended the connection is refused, not queued); epoll and io_uring issue
// the whole batch at once, so several commands are in flight.
#ifndef NBD_TESTS_ADAPTERS_INTEROP_HARNESS_H_
#define NBD_TESTS_ADAPTERS_INTEROP_HARNESS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "adapters/engine/engine.h"
#include "adapters/pump/pump.h"
#include "protocol/client/client.h"

namespace nbd::test {

using AdapterKind = engine::Adapter;

struct Op {
  enum Kind { kRead, kWrite, kFlush, kTrim, kZero, kCache, kBlockStatus };
  Kind kind = kRead;
  uint64_t offset = 0;
  uint64_t length = 0;  // for kRead/kWrite: buffer size
  uint16_t flags = 0;
  uint8_t* read_into = nullptr;
  const uint8_t* write_from = nullptr;

  // Results.
  bool issued = false;          // accepted by the engine
  int completions = 0;          // callbacks run (must end as 1)
  absl::Status status;          // completion status, or the refusal
  std::vector<Extent> extents;  // base:allocation, for kBlockStatus
};

Op ReadOp(uint64_t offset, std::vector<uint8_t>& into, uint16_t flags = 0);
Op WriteOp(uint64_t offset, const std::vector<uint8_t>& from,
           uint16_t flags = 0);
Op SimpleOp(Op::Kind kind, uint64_t offset = 0, uint64_t length = 0,
            uint16_t flags = 0);

// One connection through one Engine.
class Harness {
 public:
  // `counters` (may be null) receives the adapter's system calls.
  static std::unique_ptr<Harness> Create(AdapterKind kind,
                                         adapters::SyscallCounters* counters);

  // Takes ownership of `fd` and completes the handshake (or parks in
  // option mode): Engine::Attach.
  absl::Status Connect(int fd, ClientOptions options, absl::Duration timeout);
  const Client& client() const { return exp_->client(0); }

  // Runs a batch (see above). Returns OK unless the engine's wait failed
  // or timed out; per-command results are in the ops.
  absl::Status Run(std::vector<Op>& ops, absl::Duration timeout);

  // Issues `ops` (blocking: runs them), then Engine::Disconnect (DISC
  // behind them) with its bounded wait; returns its status.
  absl::Status RunThenDisconnect(std::vector<Op>& ops, absl::Duration timeout);

  // Issues `ops` (blocking: runs them in turn), calling `midway` once the
  // first command is on its way (blocking: from another thread, after
  // `midway_delay`), and drives until every op completed or the connection
  // ended.
  absl::Status RunWithInterruption(std::vector<Op>& ops,
                                   std::function<void()> midway,
                                   absl::Duration midway_delay,
                                   absl::Duration timeout);

  // Engine::Shutdown: bounded.
  absl::Status Shutdown(uint32_t flags, absl::Duration timeout);

  // Option mode: the Export's calls.
  absl::StatusOr<std::vector<std::string>> OptList(absl::Duration timeout);
  absl::Status OptInfo(const std::string& name, absl::Duration timeout);
  absl::Status OptGo(absl::Duration timeout);
  absl::StatusOr<std::vector<MetaContext>> OptListMetaContext(
      std::vector<std::string> queries, absl::Duration timeout);
  absl::Status OptAbort(absl::Duration timeout);

  // True once the adapter has released the descriptor.
  bool finished() const;

  // Engine::RunUntil(finished): drives with nothing issued, so a test sees
  // an idle connection notice the server going away by itself. The
  // blocking adapter reads only inside calls, so it returns
  // FailedPrecondition unless already finished.
  absl::Status DriveUntilFinished(absl::Duration timeout);

 private:
  Harness(AdapterKind kind, adapters::SyscallCounters* counters)
      : kind_(kind), counters_(counters) {}
  // Issues `op` with a callback that records its completion.
  void IssueOne(Op& op);
  void IssueAll(std::vector<Op>& ops);
  // Issues one op at a time and waits for each (the blocking adapter).
  void RunInTurn(std::vector<Op>& ops, absl::Duration timeout);
  bool sequential() const { return kind_ == AdapterKind::kBlocking; }

  AdapterKind kind_;
  adapters::SyscallCounters* counters_;
  std::unique_ptr<engine::Engine> engine_;
  engine::Export* exp_ = nullptr;
};

}  // namespace nbd::test

#endif  // NBD_TESTS_ADAPTERS_INTEROP_HARNESS_H_
