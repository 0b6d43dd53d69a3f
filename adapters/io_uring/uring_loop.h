// nbd::adapters::UringLoop: an io_uring of its own plus a UringDriver, for
// callers without a ring. Each RunOnce() prepares the SQEs of every
// connection and makes exactly one io_uring_submit_and_wait call (counted
// in SyscallCounters::io_uring_enter), then handles all completions.
#ifndef NBD_ADAPTERS_IO_URING_URING_LOOP_H_
#define NBD_ADAPTERS_IO_URING_URING_LOOP_H_

#include <liburing.h>

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "adapters/io_uring/uring_driver.h"
#include "adapters/pump/pump.h"

namespace nbd::adapters {

class UringLoop {
 public:
  // `counters` (may be null) must outlive the loop.
  static absl::StatusOr<std::unique_ptr<UringLoop>> Create(
      unsigned entries = 256, SyscallCounters* counters = nullptr);
  ~UringLoop();
  UringLoop(const UringLoop&) = delete;
  UringLoop& operator=(const UringLoop&) = delete;

  UringDriver& driver() { return *driver_; }
  UringConnection* Add(int fd, ClientOptions options,
                       UringConnection::Callback on_event) {
    return driver_->Add(fd, std::move(options), std::move(on_event));
  }
  // See UringDriver::Remove.
  absl::Status Remove(UringConnection* conn) { return driver_->Remove(conn); }

  // One iteration: prepare, one submit-and-wait (at most `timeout`),
  // completions, deadlines. OK on timeout too.
  absl::Status RunOnce(absl::Duration timeout);

  // Iterates until `done()` (checked before each iteration) or `timeout`
  // (DeadlineExceeded, ETIMEDOUT).
  absl::Status RunUntil(const std::function<bool()>& done,
                        absl::Duration timeout);

 private:
  UringLoop() = default;

  io_uring ring_ = {};
  bool ring_ready_ = false;
  SyscallCounters unused_;
  SyscallCounters* counters_ = nullptr;
  std::unique_ptr<UringDriver> driver_;  // destroyed before the ring
};

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_IO_URING_URING_LOOP_H_
