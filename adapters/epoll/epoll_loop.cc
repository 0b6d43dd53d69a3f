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
  // Connections may outlive the loop: they must neither call Forget() nor
  // touch the epoll descriptor (its number may be reused) any more.
  for (EpollConnection* c : connections_) {
    if (c == nullptr) continue;
    c->loop_ = nullptr;
    c->epfd_ = -1;
  }
  ::close(epfd_);
}

absl::Status EpollLoop::Add(EpollConnection* conn) {
  epoll_data_t data;
  data.ptr = conn;
  if (absl::Status s = conn->Register(epfd_, data); !s.ok()) return s;
  conn->loop_ = this;
  connections_.push_back(conn);
  return absl::OkStatus();
}

void EpollLoop::Forget(EpollConnection* conn) {
  for (EpollConnection*& c : connections_) {
    if (c == conn) c = nullptr;
  }
  for (int i = 0; i < ready_count_; ++i) {
    if (ready_[i].data.ptr == conn) ready_[i].data.ptr = nullptr;
  }
}

absl::Status EpollLoop::Post(Task task) {
  // Running an empty task would be undefined: refuse it here.
  if (!task) return ErrnoStatus(EINVAL, "EpollLoop: Post of an empty task");
  return posts_.Push(std::move(task), "EpollLoop");
}

absl::Status EpollLoop::RunOnce(absl::Duration timeout) {
  // Destroyed connections left null slots; finished ones (fd closed, out
  // of the epoll set) need the loop no more and stop telling it.
  std::erase_if(connections_, [](EpollConnection* c) {
    if (c == nullptr) return true;
    if (!c->finished()) return false;
    c->loop_ = nullptr;
    return true;
  });
  absl::Time now = absl::Now();
  for (EpollConnection* c : connections_) {
    if (auto d = c->next_deadline()) timeout = std::min(timeout, *d - now);
  }
  int ms = static_cast<int>(std::clamp<int64_t>(
      absl::ToInt64Milliseconds(timeout + absl::Microseconds(999)), 0,
      1 << 30));
  ++counters_->epoll_wait;
  int n = ::epoll_wait(epfd_, ready_, kMaxEvents, ms);
  if (n < 0) {
    if (errno != EINTR) return ErrnoStatus(errno, "epoll_wait");
    n = 0;
  }
  // Callbacks run from OnReady() may destroy other connections (Forget()
  // nulls their entries) or Add() new ones, so neither the batch nor the
  // registry is walked with iterators.
  ready_count_ = n;
  for (int i = 0; i < n; ++i) {
    void* target = ready_[i].data.ptr;
    if (target == this) {
      wake_.Clear();
    } else if (target != nullptr) {
      static_cast<EpollConnection*>(target)->OnReady(ready_[i].events);
    }
  }
  ready_count_ = 0;
  now = absl::Now();
  for (size_t i = 0; i < connections_.size(); ++i) {
    if (EpollConnection* c = connections_[i]) c->CheckDeadline(now);
  }
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
