#include "adapters/epoll/epoll_connection.h"

#include <sys/epoll.h>

#include <cerrno>
#include <utility>

#include "adapters/epoll/epoll_loop.h"
#include "protocol/status.h"

namespace nbd::adapters {

uint32_t EpollEventsFor(Direction direction) {
  switch (direction) {
    case Direction::kNone:
      return 0;
    case Direction::kRead:
      return EPOLLIN;
    case Direction::kWrite:
      return EPOLLOUT;
    case Direction::kBoth:
      return EPOLLIN | EPOLLOUT;
  }
  return 0;
}

EpollConnection::EpollConnection(int fd, ClientOptions options,
                                 Callback on_event, SyscallCounters* counters)
    : client_(options),
      transport_(fd, counters),
      on_event_(std::move(on_event)) {
  ConfigureTls(transport_, options);
}

EpollConnection::~EpollConnection() {
  Finish();
  if (loop_ != nullptr) loop_->Forget(this);
}

absl::Status EpollConnection::Register(int epfd, epoll_data_t data) {
  epfd_ = epfd;
  data_ = data;
  epoll_event ev = {};
  ev.events = EpollEventsFor(CombinedWants(client_.wants(), transport_));
  ev.data = data_;
  ++transport_.counters()->epoll_ctl;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, transport_.fd(), &ev) != 0) {
    int e = errno;
    epfd_ = -1;
    return ErrnoStatus(e, "epoll_ctl(ADD)");
  }
  registered_ = ev.events;
  Kick();
  return absl::OkStatus();
}

void EpollConnection::OnReady(uint32_t events) {
  if (finished_) return;
  // HUP/ERR: a receive reports EOF or the socket error to the core.
  Step((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0);
}

void EpollConnection::Kick() {
  if (finished_) return;
  Step(false);
}

absl::Status EpollConnection::Disconnect(uint32_t flags) {
  absl::Status s = client_.Disconnect(flags);
  if (s.ok()) deadline_.Arm();
  Kick();
  return s;
}

absl::Status EpollConnection::Shutdown(uint32_t flags) {
  absl::Status s = client_.Shutdown(flags);
  if (s.ok()) deadline_.Arm();
  Kick();
  return s;
}

void EpollConnection::Deliver(ClientEvent& event) {
  deadline_.OnEvent(event);
  on_event_(event);
}

void EpollConnection::CheckDeadline(absl::Time now) {
  if (finished_ || !deadline_.Passed(now)) return;
  GiveUp(client_, transport_, TimeoutStatus("waiting for the server to close"),
         [this](ClientEvent& e) { Deliver(e); });
  Finish();
}

void EpollConnection::Step(bool readable) {
  PumpOnce(client_, transport_, readable,
           [this](ClientEvent& e) { Deliver(e); });
  if (IsTerminal(client_.phase())) {
    Finish();
  } else {
    Rearm();
  }
}

void EpollConnection::Rearm() {
  uint32_t want = EpollEventsFor(CombinedWants(client_.wants(), transport_));
  if (want == registered_ || epfd_ < 0) return;
  epoll_event ev = {};
  ev.events = want;
  ev.data = data_;
  ++transport_.counters()->epoll_ctl;
  if (::epoll_ctl(epfd_, EPOLL_CTL_MOD, transport_.fd(), &ev) == 0) {
    registered_ = want;
  }
}

void EpollConnection::Finish() {
  if (finished_) return;
  finished_ = true;
  if (epfd_ >= 0 && transport_.fd() >= 0) {
    ++transport_.counters()->epoll_ctl;
    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, transport_.fd(), nullptr);
  }
  transport_.Close();
}

}  // namespace nbd::adapters
