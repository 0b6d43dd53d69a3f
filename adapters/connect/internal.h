// Private helpers shared by connect.cc and subprocess.cc.
#ifndef NBD_ADAPTERS_CONNECT_INTERNAL_H_
#define NBD_ADAPTERS_CONNECT_INTERNAL_H_

#include "absl/status/status.h"

namespace nbd::adapters::internal {

// Owns a file descriptor; closes it on destruction unless released.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Sets O_NONBLOCK and FD_CLOEXEC on `fd`.
absl::Status SetNonBlockingCloexec(int fd);

}  // namespace nbd::adapters::internal

#endif  // NBD_ADAPTERS_CONNECT_INTERNAL_H_
