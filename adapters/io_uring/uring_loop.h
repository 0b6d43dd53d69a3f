// nbd::adapters::UringLoop: an io_uring of its own plus a UringDriver, for
// callers without a ring. Each RunOnce() prepares the SQEs of every
// connection and makes exactly one io_uring_submit_and_wait call (counted
// in SyscallCounters::io_uring_enter), then handles all completions.
//
// Threads: the loop belongs to the thread that calls RunOnce()/RunUntil()
// (the loop thread); everything here is for that thread except Post() and
// Wake(), which any thread may call while the loop exists. Another thread
// issues commands by posting a task that issues them on the loop thread
// (the next iteration prepares their SQEs; no kick is needed):
//
//   any thread:   loop->Post([conn, buf] {
//                   conn->client().Read(0, buf).IgnoreError();
//                 });
//
// Post() wakes a loop blocked in the ring's wait through an eventfd with a
// one-shot IORING_OP_POLL_ADD on the ring: arming it rides along with an
// iteration's submit (no system call of its own), a post costs one
// write(2) per burst and the loop one read(2) per wake-up. A loop nobody
// posts to pays one atomic load per RunOnce().
#ifndef NBD_ADAPTERS_IO_URING_URING_LOOP_H_
#define NBD_ADAPTERS_IO_URING_URING_LOOP_H_

#include <liburing.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "adapters/io_uring/uring_driver.h"
#include "adapters/post/post_queue.h"
#include "adapters/post/wake_fd.h"
#include "adapters/pump/pump.h"

namespace nbd::adapters {

class UringLoop {
 public:
  // `counters` (may be null) must outlive the loop. Errors carry the errno
  // of io_uring_queue_init or eventfd.
  static absl::StatusOr<std::unique_ptr<UringLoop>> Create(
      unsigned entries = 256, SyscallCounters* counters = nullptr);
  // Tasks still queued are destroyed without running (their captures are
  // released on the destroying thread). Stop the threads that Post()
  // before destroying the loop: a Post() during or after the destructor
  // is a use after free.
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

  // One iteration: prepare, one submit-and-wait (at most `timeout`; a
  // Post() or Wake() ends the wait early), completions, deadlines, then the
  // tasks posted so far, in the order they were posted (tasks they post run
  // in the next iteration). OK on timeout too.
  absl::Status RunOnce(absl::Duration timeout);

  // Iterates until `done()` (checked before each iteration, so after each
  // batch of tasks) or `timeout` (DeadlineExceeded, ETIMEDOUT).
  absl::Status RunUntil(const std::function<bool()>& done,
                        absl::Duration timeout);

  // Thread-safe. Queues `task` to run on the loop thread inside RunOnce()
  // and wakes the loop. Each accepted task runs exactly once, unless the
  // loop is destroyed first (see the destructor). An empty `task` is
  // refused (InvalidArgument, EINVAL). Called on the loop thread itself:
  // from a connection callback inside RunOnce() the task runs at the end
  // of that RunOnce() (tasks run after the I/O); from a task, or outside
  // RunOnce(), in the next one.
  // A task may do anything a connection callback may (issue commands,
  // Post()), but must not call RunOnce()/RunUntil() or Remove().
  absl::Status Post(Task task);
  // Thread-safe. Makes the RunOnce() that is waiting (or the next one)
  // return without waiting for I/O.
  void Wake() const { wake_.Signal(); }

 private:
  // user_data of the wake-up poll: bit 63 clear, so never Owns()'d by the
  // driver, and not LIBURING_UDATA_TIMEOUT.
  static constexpr uint64_t kWakeData = 1;

  explicit UringLoop(WakeFd wake);
  // Arms the wake-up poll unless it is armed; whether an SQE was prepared.
  bool ArmWake();

  io_uring ring_ = {};
  bool ring_ready_ = false;
  SyscallCounters unused_;
  SyscallCounters* counters_ = nullptr;
  std::unique_ptr<UringDriver> driver_;  // destroyed before the ring
  WakeFd wake_;
  bool wake_armed_ = false;  // a POLL_ADD on wake_ is in the ring
  PostQueue<Task> posts_;
  std::vector<Task> running_;  // the batch being run (kept for its capacity)
};

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_IO_URING_URING_LOOP_H_
