#include "adapters/epoll/epoll_loop.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/time/clock.h"
#include "protocol/status.h"

namespace nbd::adapters {

absl::StatusOr<std::unique_ptr<EpollLoop>> EpollLoop::Create(
    SyscallCounters* counters) {
  int epfd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return ErrnoStatus(errno, "epoll_create1");
  return std::unique_ptr<EpollLoop>(new EpollLoop(epfd, counters));
}

EpollLoop::EpollLoop(int epfd, SyscallCounters* counters)
    : epfd_(epfd), counters_(counters != nullptr ? counters : &unused_) {}

EpollLoop::~EpollLoop() { ::close(epfd_); }

absl::Status EpollLoop::Add(EpollConnection* conn) {
  epoll_data_t data;
  data.ptr = conn;
  if (absl::Status s = conn->Register(epfd_, data); !s.ok()) return s;
  connections_.push_back(conn);
  return absl::OkStatus();
}

absl::Status EpollLoop::RunOnce(absl::Duration timeout) {
  // Forget finished connections; they may be destroyed by now.
  std::erase_if(connections_, [](EpollConnection* c) { return c->finished(); });
  absl::Time now = absl::Now();
  for (EpollConnection* c : connections_) {
    if (auto d = c->next_deadline()) timeout = std::min(timeout, *d - now);
  }
  int ms = static_cast<int>(std::clamp<int64_t>(
      absl::ToInt64Milliseconds(timeout + absl::Microseconds(999)), 0,
      1 << 30));
  epoll_event events[64];
  ++counters_->epoll_wait;
  int n = ::epoll_wait(epfd_, events, 64, ms);
  if (n < 0) {
    if (errno == EINTR) return absl::OkStatus();
    return ErrnoStatus(errno, "epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    static_cast<EpollConnection*>(events[i].data.ptr)
        ->OnReady(events[i].events);
  }
  now = absl::Now();
  for (EpollConnection* c : connections_) c->CheckDeadline(now);
  return absl::OkStatus();
}

absl::Status EpollLoop::RunUntil(const std::function<bool()>& done,
                                 absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return TimeoutStatus("EpollLoop");
    if (absl::Status s = RunOnce(left); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace nbd::adapters
