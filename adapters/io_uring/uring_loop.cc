#include "adapters/io_uring/uring_loop.h"

#include <algorithm>
#include <cerrno>

#include "absl/time/clock.h"
#include "protocol/status.h"

namespace nbd::adapters {

absl::StatusOr<std::unique_ptr<UringLoop>> UringLoop::Create(
    unsigned entries, SyscallCounters* counters) {
  std::unique_ptr<UringLoop> loop(new UringLoop());
  int r = io_uring_queue_init(entries, &loop->ring_, 0);
  if (r < 0) return ErrnoStatus(-r, "io_uring_queue_init");
  loop->ring_ready_ = true;
  loop->counters_ = counters != nullptr ? counters : &loop->unused_;
  loop->driver_ = std::make_unique<UringDriver>(&loop->ring_, loop->counters_);
  return loop;
}

UringLoop::~UringLoop() {
  driver_.reset();  // reaps in-flight operations first
  if (ring_ready_) io_uring_queue_exit(&ring_);
}

absl::Status UringLoop::RunOnce(absl::Duration timeout) {
  int prepared = driver_->Prepare();
  // A connection already given up (waiting only for the completions its
  // forced shutdown brings) has no deadline here, so this blocks for those
  // completions instead of spinning with a zero timeout.
  if (auto d = driver_->next_deadline()) {
    timeout = std::min(timeout, *d - absl::Now());
  }
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
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    if (UringDriver::Owns(cqe)) driver_->OnCompletion(cqe);
  }
  io_uring_cq_advance(&ring_, seen);
  driver_->CheckDeadlines(absl::Now());
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
