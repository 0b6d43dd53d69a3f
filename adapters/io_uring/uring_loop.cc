#include "adapters/io_uring/uring_loop.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/time/clock.h"
#include "protocol/status.h"

namespace nbd::adapters {

absl::StatusOr<std::unique_ptr<UringLoop>> UringLoop::Create(
    unsigned entries, SyscallCounters* counters) {
  absl::StatusOr<WakeFd> wake = WakeFd::Create();
  if (!wake.ok()) return wake.status();
  std::unique_ptr<UringLoop> loop(new UringLoop(std::move(*wake)));
  int r = io_uring_queue_init(entries, &loop->ring_, 0);
  if (r < 0) return ErrnoStatus(-r, "io_uring_queue_init");
  loop->ring_ready_ = true;
  loop->counters_ = counters != nullptr ? counters : &loop->unused_;
  loop->driver_ = std::make_unique<UringDriver>(&loop->ring_, loop->counters_);
  return loop;
}

UringLoop::UringLoop(WakeFd wake)
    : wake_(std::move(wake)), posts_([this] { wake_.Signal(); }) {}

UringLoop::~UringLoop() {
  posts_.Close();
  driver_.reset();  // reaps in-flight operations first
  // The wake-up poll holds no buffer of ours; leaving the ring cancels it.
  if (ring_ready_) io_uring_queue_exit(&ring_);
}

absl::Status UringLoop::Post(Task task) {
  // Running an empty task would be undefined: refuse it here.
  if (!task) return ErrnoStatus(EINVAL, "UringLoop: Post of an empty task");
  return posts_.Push(std::move(task), "UringLoop");
}

bool UringLoop::ArmWake() {
  if (wake_armed_) return false;
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return false;  // the ring is full: next iteration
  io_uring_prep_poll_add(sqe, wake_.fd(), POLLIN);
  io_uring_sqe_set_data64(sqe, kWakeData);
  wake_armed_ = true;
  return true;
}

absl::Status UringLoop::RunOnce(absl::Duration timeout) {
  int prepared = ArmWake() ? 1 : 0;
  prepared += driver_->Prepare();
  // A connection already given up (waiting only for the completions its
  // forced shutdown brings) has no deadline here, so this blocks for those
  // completions instead of spinning with a zero timeout.
  if (auto d = driver_->next_deadline()) {
    timeout = std::min(timeout, *d - absl::Now());
  }
  // A TLS connection may have moved bytes and delivered events inside
  // Prepare(): what the caller waits for may have happened already.
  if (driver_->moved_in_prepare()) timeout = absl::ZeroDuration();
  timeout = std::max(timeout, absl::ZeroDuration());
  // Completions already queued need no system call to be seen.
  if (prepared > 0 || io_uring_cq_ready(&ring_) == 0) {
    timespec t = absl::ToTimespec(timeout);
    __kernel_timespec ts = {t.tv_sec, t.tv_nsec};
    io_uring_cqe* cqe = nullptr;
    ++counters_->io_uring_enter;
    int r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN) {
      return ErrnoStatus(-r, "io_uring_submit_and_wait_timeout");
    }
  }
  unsigned head;
  unsigned seen = 0;
  io_uring_cqe* cqe;
  bool woken = false;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    if (UringDriver::Owns(cqe)) {
      driver_->OnCompletion(cqe);
    } else if (cqe->user_data == kWakeData) {
      wake_armed_ = false;
      woken = true;
    }
  }
  io_uring_cq_advance(&ring_, seen);
  driver_->CheckDeadlines(absl::Now());
  // Cleared before the tasks are taken: a post from now on signals the
  // descriptor again, and the next iteration re-arms the poll.
  if (woken) wake_.Clear();
  if (posts_.pending()) {
    posts_.TakeAll(running_);
    for (Task& task : running_) task();
    running_.clear();
  }
  return absl::OkStatus();
}

absl::Status UringLoop::RunUntil(const std::function<bool()>& done,
                                 absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return TimeoutStatus("UringLoop");
    if (absl::Status s = RunOnce(left); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace nbd::adapters
