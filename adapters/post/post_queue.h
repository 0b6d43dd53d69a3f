// nbd::adapters::PostQueue<T>: items handed from any thread to the one
// thread that runs a loop (EpollLoop, UringLoop, engine::Engine).
//
//   PostQueue<Task> queue([&] { wake_fd.Signal(); });
//   any thread:   queue.Push(task);            // error once closed
//   loop thread:  if (queue.pending()) queue.TakeAll(batch);
//
// Cost for a loop nobody posts to: pending() is one atomic load; no lock,
// no system call. Push() takes a mutex and calls `wake` only when it makes
// the queue non-empty, so a burst of posts costs one wake-up.
//
// Close() refuses every later Push() (FailedPrecondition, errno
// ESHUTDOWN) and drops the wake function: once it returned, no thread is
// inside `wake` or will call it again, so what `wake` refers to may go.
// Items already queued stay there for TakeAll(). The queue itself may be
// shared (std::shared_ptr) with posting threads that outlive the loop.
#ifndef NBD_ADAPTERS_POST_POST_QUEUE_H_
#define NBD_ADAPTERS_POST_POST_QUEUE_H_

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "protocol/status.h"

namespace nbd::adapters {

template <typename T>
class PostQueue {
 public:
  // `wake` (may be null) is called from Push(), on the posting thread and
  // with the queue's lock held, each time the queue turns non-empty. It
  // must be quick and must not call back into the queue.
  explicit PostQueue(absl::AnyInvocable<void()> wake = nullptr)
      : wake_(std::move(wake)) {}
  PostQueue(const PostQueue&) = delete;
  PostQueue& operator=(const PostQueue&) = delete;

  // Thread-safe. Appends `item` (FIFO). After Close(): FailedPrecondition
  // (ESHUTDOWN) naming `what`, and `item` is destroyed here.
  absl::Status Push(T item, const char* what = "loop") {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) {
      return PreconditionStatus(
          ESHUTDOWN, absl::StrCat(what, ": shut down, posts are refused"));
    }
    items_.push_back(std::move(item));
    if (!pending_.load(std::memory_order_relaxed)) {
      pending_.store(true, std::memory_order_release);
      if (wake_) wake_();
    }
    if (waiters_ > 0) cv_.notify_all();
    return absl::OkStatus();
  }

  // Thread-safe, cheap: something is queued (a hint; TakeAll decides).
  bool pending() const { return pending_.load(std::memory_order_acquire); }

  // Moves everything queued to the end of `out` (FIFO) and clears the
  // queue. Items pushed meanwhile wait for the next call.
  void TakeAll(std::vector<T>& out) {
    std::lock_guard<std::mutex> lock(mu_);
    if (out.empty()) {
      out.swap(items_);
    } else {
      for (T& item : items_) out.push_back(std::move(item));
      items_.clear();
    }
    pending_.store(false, std::memory_order_relaxed);
  }

  // Thread-safe, idempotent: see the file comment.
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    wake_ = nullptr;
    if (waiters_ > 0) cv_.notify_all();
  }
  bool closed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }

  // Blocks until something is queued, the queue is closed or `deadline`
  // passes; returns whether something is queued. For loops that have no
  // descriptor to wait on (the blocking adapter).
  bool WaitForPending(absl::Time deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    ++waiters_;
    while (items_.empty() && !closed_) {
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) break;
      cv_.wait_for(lock, absl::ToChronoNanoseconds(left));
    }
    --waiters_;
    return !items_.empty();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<T> items_;
  std::atomic<bool> pending_{false};
  bool closed_ = false;
  int waiters_ = 0;
  absl::AnyInvocable<void()> wake_;
};

// What EpollLoop and UringLoop queue: a closure run on the loop's thread.
using Task = absl::AnyInvocable<void()>;

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_POST_POST_QUEUE_H_
