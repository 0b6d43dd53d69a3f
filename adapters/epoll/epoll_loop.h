// nbd::adapters::EpollLoop: a minimal epoll loop for callers that have none.
// It owns an epoll instance, dispatches readiness to registered
// EpollConnections and enforces their deadlines.
#ifndef NBD_ADAPTERS_EPOLL_EPOLL_LOOP_H_
#define NBD_ADAPTERS_EPOLL_EPOLL_LOOP_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "adapters/epoll/epoll_connection.h"
#include "adapters/pump/pump.h"

namespace nbd::adapters {

class EpollLoop {
 public:
  // `counters` (may be null) receives the epoll_wait count.
  static absl::StatusOr<std::unique_ptr<EpollLoop>> Create(
      SyscallCounters* counters = nullptr);
  ~EpollLoop();
  EpollLoop(const EpollLoop&) = delete;
  EpollLoop& operator=(const EpollLoop&) = delete;

  int epoll_fd() const { return epfd_; }

  // Registers `conn` (not owned; must outlive the loop or be finished).
  absl::Status Add(EpollConnection* conn);

  // Waits once (at most `timeout`) and dispatches what is ready.
  absl::Status RunOnce(absl::Duration timeout);

  // Runs until `done()` is true (checked before each wait) or `timeout`
  // passes (DeadlineExceeded, ETIMEDOUT). Connections' own deadlines are
  // enforced meanwhile.
  absl::Status RunUntil(const std::function<bool()>& done,
                        absl::Duration timeout);

 private:
  EpollLoop(int epfd, SyscallCounters* counters);

  int epfd_;
  SyscallCounters* counters_;
  SyscallCounters unused_;
  std::vector<EpollConnection*> connections_;
};

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_EPOLL_EPOLL_LOOP_H_
