// nbd::adapters::WakeFd: an eventfd that another thread signals to wake a
// loop blocked in epoll_wait or an io_uring wait. Signal() is
// thread-safe; the loop waits for the descriptor to become readable and
// then calls Clear() on its own thread.
#ifndef NBD_ADAPTERS_POST_WAKE_FD_H_
#define NBD_ADAPTERS_POST_WAKE_FD_H_

#include "absl/status/statusor.h"

namespace nbd::adapters {

class WakeFd {
 public:
  // eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); the errno of a failure.
  static absl::StatusOr<WakeFd> Create();
  WakeFd() = default;  // no descriptor; Signal() and Clear() do nothing
  WakeFd(WakeFd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  WakeFd& operator=(WakeFd&& other) noexcept;
  ~WakeFd();

  int fd() const { return fd_; }
  // Thread-safe: makes fd() readable (one write(2); the counter cannot
  // overflow in practice, and a full counter is still readable).
  void Signal() const;
  // Loop thread: makes fd() unreadable again (one read(2)).
  void Clear() const;

 private:
  explicit WakeFd(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_POST_WAKE_FD_H_
