// nbd::adapters::EpollLoop: a minimal epoll loop for callers that have none.
// It owns an epoll instance, dispatches readiness to registered
// EpollConnections and enforces their deadlines.
//
// Threads: the loop belongs to the thread that calls RunOnce()/RunUntil()
// (the loop thread); everything here is for that thread except Post() and
// Wake(), which any thread may call while the loop exists. A connection's
// Client is not thread-safe either: another thread issues commands by
// posting a task that issues them and calls Kick() on the loop thread.
//
//   loop thread:  loop->RunUntil([&] { return done; }, timeout);
//   any thread:   loop->Post([&conn, buf] {
//                   conn.client().Read(0, buf).IgnoreError();
//                   conn.Kick();
//                 });
//
// Post() wakes a loop blocked in epoll_wait through an eventfd in the
// epoll set (one write(2) per burst of posts, one read(2) in the loop per
// wake-up). A loop nobody posts to pays one atomic load per RunOnce().
#ifndef NBD_ADAPTERS_EPOLL_EPOLL_LOOP_H_
#define NBD_ADAPTERS_EPOLL_EPOLL_LOOP_H_

#include <sys/epoll.h>

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "adapters/epoll/epoll_connection.h"
#include "adapters/post/post_queue.h"
#include "adapters/post/wake_fd.h"
#include "adapters/pump/pump.h"

namespace nbd::adapters {

class EpollLoop {
 public:
  // `counters` (may be null) receives the epoll_wait count. Errors carry
  // the errno of epoll_create1 or eventfd.
  static absl::StatusOr<std::unique_ptr<EpollLoop>> Create(
      SyscallCounters* counters = nullptr);
  // Tasks still queued are destroyed without running (their captures are
  // released on the destroying thread). Stop the threads that Post()
  // before destroying the loop: a Post() during or after the destructor
  // is a use after free. Connections still registered forget the loop
  // (see Add()).
  ~EpollLoop();
  EpollLoop(const EpollLoop&) = delete;
  EpollLoop& operator=(const EpollLoop&) = delete;

  int epoll_fd() const { return epfd_; }

  // Registers `conn` (not owned) with this loop; a connection belongs to
  // at most one loop. Either may be destroyed first, at any time on the
  // loop thread except from inside that connection's own callback:
  //  - a connection destroyed while registered leaves the loop (its
  //    destructor tells it), also in the middle of RunOnce(): a callback
  //    or task may destroy other connections of the loop, and the loop
  //    then never touches them again, not even for events already
  //    returned by the same epoll_wait;
  //  - once finished() (fd closed), a connection is dropped by the next
  //    RunOnce() and no longer needs the loop at all;
  //  - destroying the loop first makes its connections forget it (and its
  //    epoll descriptor): their fds stay open, unwatched, until they are
  //    finished or destroyed.
  absl::Status Add(EpollConnection* conn);

  // Waits once (at most `timeout`; a Post() or Wake() ends the wait early)
  // and dispatches what is ready, then runs the tasks posted so far, in
  // the order they were posted (tasks they post run in the next call).
  absl::Status RunOnce(absl::Duration timeout);

  // Runs until `done()` is true (checked before each wait, so after each
  // batch of tasks) or `timeout` passes (DeadlineExceeded, ETIMEDOUT).
  // Connections' own deadlines are enforced meanwhile.
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
  // Kick(), Post()), but must not call RunOnce()/RunUntil().
  absl::Status Post(Task task);
  // Thread-safe. Makes the RunOnce() that is waiting (or the next one)
  // return without waiting for I/O, e.g. after changing something the
  // loop thread's `done()` reads.
  void Wake() const { wake_.Signal(); }

 private:
  friend class EpollConnection;
  static constexpr int kMaxEvents = 64;

  EpollLoop(int epfd, WakeFd wake, SyscallCounters* counters);
  // From a registered connection's destructor: forgets `conn`, in the
  // registry and in the batch being dispatched.
  void Forget(EpollConnection* conn);

  int epfd_;
  WakeFd wake_;
  SyscallCounters* counters_;
  SyscallCounters unused_;
  // Registered connections; a slot is null once its connection was
  // destroyed (compacted at the start of RunOnce(), so that an iteration
  // in progress keeps its indices).
  std::vector<EpollConnection*> connections_;
  // The batch of the last epoll_wait while RunOnce() dispatches it (a
  // destroyed connection's entries are nulled); ready_count_ is 0 outside.
  epoll_event ready_[kMaxEvents] = {};
  int ready_count_ = 0;
  PostQueue<Task> posts_;
  std::vector<Task> running_;  // the batch being run (kept for its capacity)
};

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_EPOLL_EPOLL_LOOP_H_
