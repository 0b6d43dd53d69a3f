// One interface over the three adapters, so every interop scenario is
// written once and run through blocking, epoll and io_uring alike.
//
// Commands are described as Ops. Run() executes a batch: the blocking
// adapter runs them one after another (its API is synchronous); epoll and
// io_uring issue the whole batch and then drive the loop, so they have
// several commands in flight.
#ifndef NBD_TESTS_ADAPTERS_INTEROP_HARNESS_H_
#define NBD_TESTS_ADAPTERS_INTEROP_HARNESS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "adapters/pump/pump.h"
#include "protocol/client/client.h"

namespace nbd::test {

enum class AdapterKind { kBlocking, kEpoll, kIoUring };
std::string AdapterName(AdapterKind kind);

struct Op {
  enum Kind { kRead, kWrite, kFlush, kTrim, kZero, kCache, kBlockStatus };
  Kind kind = kRead;
  uint64_t offset = 0;
  uint64_t length = 0;  // for kRead/kWrite: buffer size
  uint16_t flags = 0;
  uint8_t* read_into = nullptr;
  const uint8_t* write_from = nullptr;

  // Results.
  bool issued = false;          // accepted by the core
  int completions = 0;          // CommandCompleted events seen (must end as 1)
  absl::Status status;          // completion status, or the refusal
  std::vector<Extent> extents;  // base:allocation, for kBlockStatus
};

Op ReadOp(uint64_t offset, std::vector<uint8_t>& into, uint16_t flags = 0);
Op WriteOp(uint64_t offset, const std::vector<uint8_t>& from,
           uint16_t flags = 0);
Op SimpleOp(Op::Kind kind, uint64_t offset = 0, uint64_t length = 0,
            uint16_t flags = 0);

class Harness {
 public:
  static std::unique_ptr<Harness> Create(AdapterKind kind,
                                         adapters::SyscallCounters* counters);
  virtual ~Harness() = default;

  // Takes ownership of `fd` and completes the handshake (or parks in
  // option mode).
  virtual absl::Status Connect(int fd, ClientOptions options,
                               absl::Duration timeout) = 0;
  virtual const Client& client() const = 0;

  // Runs a batch (see above). Returns OK unless the adapter itself failed
  // or timed out; per-command results are in the ops.
  virtual absl::Status Run(std::vector<Op>& ops, absl::Duration timeout) = 0;

  // epoll/io_uring: issue `ops`, then Disconnect(), then drive until the
  // connection ends; the blocking adapter runs the ops, then Shutdown().
  // Returns the adapter's status for the wait.
  virtual absl::Status RunThenDisconnect(std::vector<Op>& ops,
                                         absl::Duration timeout) = 0;

  // Issues `ops` (blocking: runs them in turn), calling `midway` once the
  // first command is on its way (blocking: from another thread, after
  // `midway_delay`), and drives until every op completed or the connection
  // ended.
  virtual absl::Status RunWithInterruption(std::vector<Op>& ops,
                                           std::function<void()> midway,
                                           absl::Duration midway_delay,
                                           absl::Duration timeout) = 0;

  // Bounded shutdown, as each adapter does it.
  virtual absl::Status Shutdown(uint32_t flags, absl::Duration timeout) = 0;

  // Option mode.
  virtual absl::StatusOr<std::vector<std::string>> OptList(
      absl::Duration timeout) = 0;
  virtual absl::Status OptInfo(const std::string& name,
                               absl::Duration timeout) = 0;
  virtual absl::Status OptGo(absl::Duration timeout) = 0;
  virtual absl::StatusOr<std::vector<MetaContext>> OptListMetaContext(
      std::vector<std::string> queries, absl::Duration timeout) = 0;
  virtual absl::Status OptAbort(absl::Duration timeout) = 0;

  // True once the adapter has released the descriptor.
  virtual bool finished() const = 0;

  // epoll/io_uring: drives the loop, issuing nothing, until finished() or
  // `timeout` (the loop's timeout status). This is how a test sees that an
  // idle connection notices the server going away by itself. The blocking
  // adapter only reads inside calls, so it returns FailedPrecondition
  // unless already finished.
  virtual absl::Status DriveUntilFinished(absl::Duration timeout) = 0;
};

}  // namespace nbd::test

#endif  // NBD_TESTS_ADAPTERS_INTEROP_HARNESS_H_
