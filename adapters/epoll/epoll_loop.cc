#include "adapters/epoll/epoll_loop.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/time/clock.h"
#include "protocol/status.h"

namespace nbd::adapters {

absl::StatusOr<std::unique_ptr<EpollLoop>> EpollLoop::Create(
    SyscallCounters* counters) {
  absl::StatusOr<WakeFd> wake = WakeFd::Create();
  if (!wake.ok()) return wake.status();
  int epfd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return ErrnoStatus(errno, "epoll_create1");
  std::unique_ptr<EpollLoop> loop(
      new EpollLoop(epfd, std::move(*wake), counters));
  // The wake-up descriptor is the one entry whose data is the loop itself.
  epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.ptr = loop.get();
  if (::epoll_ctl(epfd, EPOLL_CTL_ADD, loop->wake_.fd(), &ev) < 0) {
    return ErrnoStatus(errno, "epoll_ctl(eventfd)");
  }
  return loop;
}

EpollLoop::EpollLoop(int epfd, WakeFd wake, SyscallCounters* counters)
    : epfd_(epfd),
      wake_(std::move(wake)),
      counters_(counters != nullptr ? counters : &unused_),
      posts_([this] { wake_.Signal(); }) {}

EpollLoop::~EpollLoop() {
  posts_.Close();
  ::close(epfd_);
}

absl::Status EpollLoop::Add(EpollConnection* conn) {
  epoll_data_t data;
  data.ptr = conn;
  if (absl::Status s = conn->Register(epfd_, data); !s.ok()) return s;
  connections_.push_back(conn);
  return absl::OkStatus();
}

absl::Status EpollLoop::Post(Task task) {
  return posts_.Push(std::move(task), "EpollLoop");
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
    if (errno != EINTR) return ErrnoStatus(errno, "epoll_wait");
    n = 0;
  }
  for (int i = 0; i < n; ++i) {
    if (events[i].data.ptr == this) {
      wake_.Clear();
      continue;
    }
    static_cast<EpollConnection*>(events[i].data.ptr)
        ->OnReady(events[i].events);
  }
  now = absl::Now();
  for (EpollConnection* c : connections_) c->CheckDeadline(now);
  // After the wake-up descriptor was cleared: a post from now on signals
  // it again, so none waits for an unrelated event.
  if (posts_.pending()) {
    posts_.TakeAll(running_);
    for (Task& task : running_) task();
    running_.clear();
  }
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
