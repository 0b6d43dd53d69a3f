// A one-shot cross-thread flag with a bounded wait, on std::mutex and
// std::condition_variable (which ThreadSanitizer sees, unlike the
// uninstrumented abseil synchronization library).
#ifndef NBD_TESTS_TESTING_SIGNAL_H_
#define NBD_TESTS_TESTING_SIGNAL_H_

#include <condition_variable>
#include <mutex>

#include "absl/time/time.h"

namespace nbd::test {

class Signal {
 public:
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    set_ = true;
    cv_.notify_all();
  }
  // Whether Notify() was called within `timeout`.
  bool WaitFor(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [this] { return set_; });
  }
  bool notified() {
    std::lock_guard<std::mutex> lock(mu_);
    return set_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool set_ = false;
};

}  // namespace nbd::test

#endif  // NBD_TESTS_TESTING_SIGNAL_H_
