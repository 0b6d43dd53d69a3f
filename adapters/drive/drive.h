// nbd::adapters::ClientDrive and nbd::adapters::ServerDrive: an NBD core
// (nbd::Client or nbd::ServerSession) driven over a non-blocking stream
// socket from an event loop the embedder owns: poll(), epoll, select(), a
// toolkit's fd watch. The libnbd equivalents are nbd_aio_get_fd,
// nbd_aio_get_direction and nbd_aio_notify_read/_write.
//
// One drive per connection. Each turn of the embedder's loop:
//
//   pollfd pfd = {drive.fd(), drive.poll_events(), 0};
//   poll(&pfd, 1, drive.timeout_ms(absl::Now()));
//   drive.OnReady(pfd.revents);        // recv/sendmsg as far as they go
//   drive.CheckDeadline(absl::Now());  // gives up a peer that never closes
//   while (auto e = drive.PollEvent()) handle(*e);
//   ... issue commands on drive.client(), then drive.Kick();
//
// until drive.done() (the connection ended and every event was popped).
// docs/embedding.md walks through a complete program
// (docs/examples/poll_embed.cc).
//
// ---- What the calls cost ---------------------------------------------------
// Bytes move through adapters/pump, the code every adapter here uses:
// zero-copy receives (RecvBuffer() -> recv -> CommitRecv(n), so READ
// payloads land in the caller's buffer; a 0-byte recv is FeedEof(), an
// error FeedTransportError()), and one sendmsg(MSG_NOSIGNAL) of the
// PeekOutput() gather list, then ConsumeOutput(n). So there is no SIGPIPE
// and nothing is copied. A call makes no system call beyond those
// recv/sendmsg calls (each repeated while it fills its buffer or empties
// the output; the one that would block ends it) and, at the end,
// shutdown(SHUT_WR) and close(). Nothing blocks. No call allocates, except
// that the event queue grows to the largest burst of events it has held
// (events carry their own strings and vectors, e.g. BlockStatusExtents).
//
// ---- Events ----------------------------------------------------------------
// Every event of the core is popped through the drive's PollEvent(), in
// the order the core raised it, including events raised by calls made
// directly on the core (e.g. client().Shutdown(kShutdownAbandonPending)
// completing unsent commands): none is lost, reordered or duplicated. Pop
// them only here, never with core().PollEvent(), which would bypass the
// drive's handling of them. When a ShutdownWrite is popped, the drive has
// already shut the socket's write side down (the core's request, after the
// last byte of NBD_CMD_DISC or NBD_OPT_ABORT). ClientClosed/ClientDead
// (ServerClosed/ServerDead) is the last event.
//
// ---- Lifecycle, deadline and ownership -------------------------------------
//  - The drive owns `fd` from its construction: it closes it as soon as the
//    connection has ended (closed or dead), inside the call that noticed,
//    or in its destructor, unless Release() handed it back first. Do not
//    close it yourself; fd() is -1 from then on (the close also removes it
//    from an epoll set).
//  - Client: Disconnect() (NBD_CMD_DISC behind the commands still queued,
//    which go out first; a server may answer those with ESHUTDOWN) or
//    Shutdown() (waits until the commands in flight completed, then DISC;
//    during the handshake NBD_OPT_ABORT). Either arms a bound: the deadline
//    set with SetDeadline(), else now + DriveOptions::disconnect_timeout
//    (adapters::kDefaultDisconnectTimeout, 30 s). If the core's own
//    Disconnect()/Shutdown() were called instead, the bound is armed when
//    DISC has been sent (the ShutdownWrite event); call Kick() after them.
//  - Server: the session ends by itself (NBD_CMD_DISC, NBD_OPT_ABORT, EOF).
//    Once it is closing (ServerPhase::kClosing), the same bound is armed
//    for the last replies to leave.
//  - CheckDeadline(now) gives the connection up once `now` has reached the
//    deadline: it becomes dead with DeadlineExceeded (ETIMEDOUT), every
//    pending command completes with ENOTCONN, the fd is closed. A deadline
//    set with SetDeadline() applies in every phase (a bound on the whole
//    connection); without one, nothing is bounded before the disconnect.
//  - ended(): the connection has ended (closed or dead; the fd is closed)
//    or the fd was released. done(): ended() and every event popped, so a
//    loop `while (!drive.done())` that pops events each turn sees the last
//    one, even when the end came from a Kick() after the pops.
//  - Destroying a drive that has not ended closes the socket abruptly: the
//    peer sees EOF, pending commands never complete.
//
// ---- Calls once ended() --------------------------------------------------
// Readiness calls (OnReady, OnReadable, OnWritable, Kick, CheckDeadline)
// do nothing and make no system call, so a stale readiness report is
// harmless. Calls that ask for something (Disconnect, Shutdown, Abandon,
// Release) fail with FailedPrecondition, errno EINVAL (nbd::StatusErrno),
// the message naming the call and why ("ClientDrive::Disconnect: the drive
// is done: the connection is closed" / "is dead: <reason>" / "its fd was
// released"). PollEvent() returns what is still queued, then nullopt. The
// core stays readable (phase(), dead_reason(), ...).
//
// ---- Threads ---------------------------------------------------------------
// Not thread-safe: one thread drives a drive and its core, as the core
// requires.
//
// TLS is not done here (the drive moves plaintext): a TLS embedder uses the
// core's byte API itself (docs/embedding.md, "The pure core").
#ifndef NBD_ADAPTERS_DRIVE_DRIVE_H_
#define NBD_ADAPTERS_DRIVE_DRIVE_H_

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "adapters/connect/connect.h"
#include "adapters/pump/pump.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"
#include "protocol/client/options.h"
#include "protocol/io.h"
#include "protocol/server/events.h"
#include "protocol/server/options.h"
#include "protocol/server/server.h"

namespace nbd::adapters {

struct DriveOptions {
  // The bound armed when a disconnect starts and no SetDeadline() was made.
  absl::Duration disconnect_timeout = kDefaultDisconnectTimeout;
  // If not null, counts the drive's system calls; must outlive the drive.
  SyscallCounters* counters = nullptr;
  // ClientDrive::Connect() only: bounds each connect() (ConnectUri).
  absl::Duration connect_timeout = kDefaultConnectTimeout;
  // What a URI given to Connect() may ask for (adapters/connect/uri.h;
  // libnbd's defaults: no local files).
  UriPolicy uri_policy = UriPolicy();
};

namespace drive_internal {
template <typename Session>
struct Types;
template <>
struct Types<Client> {
  using Event = ClientEvent;
  using Options = ClientOptions;
};
template <>
struct Types<ServerSession> {
  using Event = ServerEvent;
  using Options = ServerOptions;
};
}  // namespace drive_internal

// Use it as ClientDrive or ServerDrive (below); `Session` is Client or
// ServerSession. Not copyable or movable (the core is referenced by the
// caller); Connect() returns it on the heap.
template <typename Session>
class Drive {
 public:
  using Event = typename drive_internal::Types<Session>::Event;
  using Options = typename drive_internal::Types<Session>::Options;

  // Takes ownership of `fd`, a connected stream socket (from
  // adapters/connect, accept(), socketpair(), ...), and builds the core
  // from `options`. The drive makes `fd` non-blocking if it is not. Makes
  // no other system call: the first bytes move at the first OnReady() or
  // Kick(). A bad fd is reported by the first recv/sendmsg: the connection
  // dies with that errno (e.g. EBADF).
  Drive(int fd, Options options, DriveOptions drive_options = {});
  ~Drive();  // closes the fd unless released
  Drive(const Drive&) = delete;
  Drive& operator=(const Drive&) = delete;

  // Client only: ConnectUri(uri, drive_options.connect_timeout) (nbd:// and
  // nbd+unix:// and nbd+vsock://; nbds:// is refused with Unimplemented),
  // then a drive over the socket, with options.export_name set to the
  // URI's export. Errors are ConnectUri's (the URI's parse error, or the
  // connect's errno status prefixed with the URI). The handshake has not
  // started: it runs in the caller's loop and ends with Connected (or
  // ClientDead).
  static absl::StatusOr<std::unique_ptr<Drive>> Connect(
      std::string_view uri, ClientOptions options = {},
      DriveOptions drive_options = {}) requires std::same_as<Session, Client>;

  // ---- The core ------------------------------------------------------------
  // Issue commands (client) or replies (server) on it directly; then Kick().
  // Valid for the drive's whole life, also after done().
  Session& core() { return core_; }
  const Session& core() const { return core_; }
  Client& client() requires std::same_as<Session, Client> { return core_; }
  ServerSession& session() requires std::same_as<Session, ServerSession> {
    return core_;
  }

  // ---- What to wait for -------------------------------------------------
  // The socket; -1 once ended() (closed or released). poll() ignores a
  // negative fd, so a pollfd built from it needs no special case.
  int fd() const { return transport_.fd(); }
  // The core's wants(): kNone once ended().
  Direction direction() const;
  // direction() as poll(2) events (POLLIN, POLLOUT) and as epoll(7) events
  // (EPOLLIN, EPOLLOUT; level-triggered). 0 once ended(). poll() and epoll
  // report POLLHUP/POLLERR even when not asked for: pass them on.
  short poll_events() const;  // NOLINT(runtime/int)
  uint32_t epoll_events() const;

  // ---- Readiness -----------------------------------------------------------
  // The loop's report for fd(): poll()'s revents or epoll_wait()'s events
  // (their bits have the same values on Linux). IN, PRI, HUP, ERR, RDHUP
  // and NVAL count as readable (a recv then reports the data, EOF or the
  // error to the core), OUT as writable. 0 does nothing.
  void OnReady(uint32_t events);
  // The fd is readable, or poll() said POLLHUP/POLLERR: receives until the
  // socket would block, and sends pending output.
  void OnReadable();
  // The fd is writable: sends pending output until the socket would block
  // or nothing is left (and receives nothing).
  void OnWritable();
  // After issuing commands, replies, Disconnect() or Shutdown() on the core:
  // sends now (optimistically: a socket is writable until its buffer is
  // full), so the loop need not wait for POLLOUT. Same as OnWritable().
  void Kick();

  // ---- Deadline ----------------------------------------------------------
  // The time the loop should wake up at for CheckDeadline(); nullopt if
  // none is armed (see "Lifecycle" above).
  std::optional<absl::Time> deadline() const { return deadline_.get(); }
  // deadline() as a poll()/epoll_wait() timeout from `now`: 0 while events
  // are queued (pop them first), else -1 (wait forever) without a deadline
  // or once ended(), else the milliseconds left, rounded up (so the loop
  // does not wake before it) and at least 0.
  int timeout_ms(absl::Time now) const;
  // Bounds the connection: replaces any deadline, in any phase; a later
  // disconnect keeps it instead of arming its own.
  void SetDeadline(absl::Time deadline) { deadline_.Set(deadline); }
  // The deadline passed? At or after it, gives the connection up (see
  // above); before it, or without one, does nothing.
  void CheckDeadline(absl::Time now);

  // ---- Lifecycle -----------------------------------------------------------
  // Client only. The core's Disconnect(flags)/Shutdown(flags) (same
  // contract and errors: e.g. FailedPrecondition/EINVAL outside
  // transmission, or after a first Disconnect()), then arms the bound and
  // Kick()s. FailedPrecondition (EINVAL) once ended().
  absl::Status Disconnect(
      uint32_t flags = 0) requires std::same_as<Session, Client>;
  absl::Status Shutdown(
      uint32_t flags = 0) requires std::same_as<Session, Client>;
  // Gives the connection up now: the core becomes dead with `why` (which
  // must not be OK; an errno can be attached with nbd::ErrnoStatus),
  // pending commands complete with ENOTCONN, the fd is closed.
  // FailedPrecondition (EINVAL) once ended(), or if `why` is OK.
  absl::Status Abandon(absl::Status why);
  // Hands the fd back (the drive will neither use nor close it) and
  // returns it, e.g. to pass a negotiated socket on. The core is left as
  // it is; ended() turns true; pending output and events stay in the core
  // and the drive (PollEvent() still returns them; a ShutdownWrite is then
  // yours to act on). FailedPrecondition (EINVAL) once ended().
  absl::StatusOr<int> Release();
  // The connection has ended (closed or dead; the fd is closed) or the fd
  // was released.
  bool ended() const;
  // ended() and no event left to pop: the loop is finished.
  bool done() const;

  // ---- Events ----------------------------------------------------------
  // The next event, in the core's order (see "Events" above); nullopt when
  // there is none now.
  std::optional<Event> PollEvent();
  bool has_events() const { return count_ > 0 || core_.has_events(); }

  SyscallCounters* counters() const { return transport_.counters(); }

 private:
  void Step(bool readable);
  void Push(Event& event);
  void Settle();
  absl::Status DoneError(const char* call) const;
  // What Disconnect()/Shutdown() do once the core accepted the request
  // (`accepted` OK): arm the bounded wait and send. Returns `accepted`.
  absl::Status AfterEndRequested(absl::Status accepted);

  Session core_;
  SocketTransport transport_;
  DisconnectDeadline deadline_;
  bool released_ = false;
  bool disconnecting_ = false;  // the bound, if it fires, is the disconnect's
  // The event queue: a ring over `ring_` (a power-of-two size), `count_`
  // events from `head_` on.
  std::vector<Event> ring_;
  size_t head_ = 0;
  size_t count_ = 0;
};

using ClientDrive = Drive<Client>;
using ServerDrive = Drive<ServerSession>;

extern template class Drive<Client>;
extern template class Drive<ServerSession>;

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_DRIVE_DRIVE_H_
