// The shared drive logic of every adapter: moving bytes between a sans-IO
// session (an nbd::Client or an nbd::ServerSession: both have the same
// input/output shape) and a stream transport, and reacting to the events
// the core raises for the transport (the client's ShutdownWrite).
//
// Adapters differ only in how they wait (poll, epoll, io_uring); what they
// do with a receive result, a send result or an event is defined once here:
//   - receive: zero-copy, RecvBuffer() -> recv -> CommitRecv(n), so READ
//     payloads land straight in the caller's buffer; 0 bytes is FeedEof();
//     an error is FeedTransportError(errno status).
//   - send: one sendmsg of the PeekOutput() gather list (MSG_NOSIGNAL), then
//     ConsumeOutput(n).
//   - events: a client's ShutdownWrite -> shutdown(SHUT_WR) (with TLS,
//     close_notify first); StartTls / ServerStartTls -> the transport's TLS
//     layer starts (its handshake runs in PumpOnce); a server's
//     ServerClosed over TLS -> close_notify. Every event is then handed to
//     the adapter's sink, in order. A server session ends with
//     ServerClosed or ServerDead, after which the caller closes the socket.
// Readiness-based adapters call PumpOnce(); completion-based ones (io_uring)
// issue the system calls themselves and call ApplyRecvResult /
// ApplySendResult / DrainEvents. Every function has one overload per
// session type; both share one implementation (pump.cc).
#ifndef NBD_ADAPTERS_PUMP_PUMP_H_
#define NBD_ADAPTERS_PUMP_PUMP_H_

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "adapters/pump/tls_stream.h"
#include "adapters/tls/tls_session.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"
#include "protocol/server/events.h"
#include "protocol/server/server.h"

namespace nbd::adapters {

// How long the event-loop adapters (epoll, io_uring) wait for a connection
// to end once its disconnect has started, when the caller set no deadline
// of its own: like libnbd's nbd_shutdown, but never forever. The blocking
// adapter's kDefaultBlockingTimeout is the same 30 s.
inline constexpr absl::Duration kDefaultDisconnectTimeout = absl::Seconds(30);

// When an event-loop connection gives up waiting for its end: the caller's
// deadline if it set one, else kDefaultDisconnectTimeout (or the configured
// default) from the moment the disconnect started. Shared by epoll and
// io_uring so both arm the bound at the same points.
class DisconnectDeadline {
 public:
  void Set(absl::Time deadline) { deadline_ = deadline; }
  void set_default_timeout(absl::Duration timeout) { default_ = timeout; }
  // The disconnect starts (the adapter's Disconnect()/Shutdown()): arms
  // now + default unless a deadline is already set.
  void Arm();
  // For every event the connection delivers: ShutdownWrite means the
  // disconnect request is out (even if the core's own Disconnect() or
  // Shutdown() was called), so only the server's close is awaited now.
  void OnEvent(const ClientEvent& event);
  const std::optional<absl::Time>& get() const { return deadline_; }
  bool Passed(absl::Time now) const {
    return deadline_.has_value() && now >= *deadline_;
  }

 private:
  std::optional<absl::Time> deadline_;
  absl::Duration default_ = kDefaultDisconnectTimeout;
};

// System calls made on behalf of connections, so tests and benchmarks can
// report syscalls per operation. Adapters bump the counters of the calls they
// make; a counter struct may be shared by many connections.
struct SyscallCounters {
  uint64_t recv = 0;
  uint64_t send = 0;
  uint64_t shutdown = 0;
  uint64_t close = 0;
  uint64_t poll = 0;
  uint64_t epoll_wait = 0;
  uint64_t epoll_ctl = 0;
  uint64_t io_uring_enter = 0;

  uint64_t total() const {
    return recv + send + shutdown + close + poll + epoll_wait + epoll_ctl +
           io_uring_enter;
  }
};

// The outcome of one transport call: `bytes` transferred (0 on a receive
// means EOF), or `error` (an errno; EAGAIN means "would block").
struct IoResult {
  size_t bytes = 0;
  int error = 0;

  static IoResult FromSyscall(ssize_t r, int saved_errno);
};

// A byte stream. Recv/Send never block: they return EAGAIN instead.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual IoResult Recv(absl::Span<uint8_t> into) = 0;
  virtual IoResult Send(absl::Span<const iovec> gather) = 0;
  virtual void ShutdownWrite() = 0;  // errors are ignored, as libnbd does
  virtual void Close() = 0;          // idempotent

  // ---- TLS (a SocketTransport after ConfigureTls(); others have none) ----
  // The core asked for TLS (a client's StartTls event, a server's
  // ServerStartTls): every byte from now on is TLS. ENOTSUP when no TLS is
  // configured.
  virtual absl::Status StartTls();
  virtual bool tls_handshaking() const { return false; }
  // The TLS handshake is done: the stream is encrypted.
  virtual bool tls_secure() const { return false; }
  // Moves handshake bytes: OK once done, EAGAIN while waiting for the
  // socket, else why it failed (the connection then dies with it).
  virtual absl::Status ContinueTls();
  // Ciphertext encrypted but not yet sent (Flush() sends it).
  virtual bool has_pending_output() const { return false; }
  virtual IoResult Flush() { return IoResult{}; }
  // Received input the transport holds (decrypted or decryptable): Recv()
  // makes progress without the socket becoming readable.
  virtual bool has_buffered_input() const { return false; }
  // Directions the transport itself needs on top of the core's.
  virtual Direction wants() const { return Direction::kNone; }
  // The reason behind the last failed Recv/Send, when the transport has a
  // better one than its errno (a TLS failure).
  virtual absl::Status last_error() const { return absl::OkStatus(); }
};

// The core's direction combined with what its transport needs.
Direction CombinedWants(Direction core, const Transport& transport);

// A non-blocking stream socket. Owns `fd` (closed by Close() or the
// destructor). `counters` may be null.
class SocketTransport : public Transport {
 public:
  SocketTransport(int fd, SyscallCounters* counters);
  ~SocketTransport() override;
  SocketTransport(const SocketTransport&) = delete;
  SocketTransport& operator=(const SocketTransport&) = delete;

  int fd() const { return raw_.fd; }
  SyscallCounters* counters() const { return raw_.counters; }

  // Makes TLS available: when the core asks for it (StartTls), the stream
  // becomes a TLS session of `role` with `options`. Before any byte of TLS;
  // the credentials are loaded then (their errors kill the connection).
  void ConfigureTls(tls::Role role, tls::TlsOptions options);
  // The TLS session once started (null before and without TLS).
  const tls::TlsSession* tls_session() const;

  IoResult Recv(absl::Span<uint8_t> into) override;
  IoResult Send(absl::Span<const iovec> gather) override;
  void ShutdownWrite() override;
  void Close() override;
  absl::Status StartTls() override;
  bool tls_handshaking() const override;
  bool tls_secure() const override;
  absl::Status ContinueTls() override;
  bool has_pending_output() const override;
  IoResult Flush() override;
  bool has_buffered_input() const override;
  Direction wants() const override;
  absl::Status last_error() const override;
  // Gives `fd` back without closing it (the caller owns it again) and
  // returns it; -1 if already closed or released. Makes no system call.
  int Release();

 private:
  // The socket's own system calls, under the TLS layer when there is one.
  struct Raw : Transport {
    int fd = -1;
    SyscallCounters* counters = nullptr;
    IoResult Recv(absl::Span<uint8_t> into) override;
    IoResult Send(absl::Span<const iovec> gather) override;
    void ShutdownWrite() override;
    void Close() override;
  };
  bool tls_active() const { return tls_ != nullptr && tls_->started(); }

  Raw raw_;
  SyscallCounters unused_;  // when the caller passes no counters
  std::unique_ptr<TlsStream> tls_;
};

// Gives a connection's transport its TLS layer when the core may negotiate
// TLS (a client whose options.tls is not kDisable, a server whose is not
// kOff), with the core's tls_credentials. Call before the first byte moves.
void ConfigureTls(SocketTransport& transport, const ClientOptions& options);
void ConfigureTls(SocketTransport& transport, const ServerOptions& options);

// Most slices passed to one sendmsg (well below IOV_MAX).
inline constexpr size_t kMaxGatherSlices = 64;

using EventSink = absl::FunctionRef<void(ClientEvent&)>;
using ServerEventSink = absl::FunctionRef<void(ServerEvent&)>;

// Fills `out` with the core's pending output; returns the slice count.
size_t GatherOutput(const Client& client, absl::Span<iovec> out);
size_t GatherOutput(const ServerSession& session, absl::Span<iovec> out);

// Hands a finished receive (into the span RecvBuffer() returned) to the core.
// EAGAIN is ignored.
void ApplyRecvResult(Client& client, IoResult result);
void ApplyRecvResult(ServerSession& session, IoResult result);

// Hands a finished send of the gathered output to the core. EAGAIN is
// ignored.
void ApplySendResult(Client& client, IoResult result);
void ApplySendResult(ServerSession& session, IoResult result);

// Pops every queued event: ShutdownWrite shuts down `transport`'s write side
// first; then each event goes to `sink`.
void DrainEvents(Client& client, Transport& transport, EventSink sink);
void DrainEvents(ServerSession& session, Transport& transport,
                 ServerEventSink sink);

// A dead-connection status for "gave up waiting": DeadlineExceeded carrying
// ETIMEDOUT.
absl::Status TimeoutStatus(absl::string_view what);

// Gives up on a connection: the core becomes dead with `why` (every pending
// command completes with ENOTCONN) and the events are drained. The caller
// then closes the transport. No-op once closed or dead.
void GiveUp(Client& client, Transport& transport, absl::Status why,
            EventSink sink);
void GiveUp(ServerSession& session, Transport& transport, absl::Status why,
            ServerEventSink sink);

// Moves bytes both ways until the transport would block or the connection
// ended, draining events after each step. Sends whenever output is pending
// (optimistically: a fresh socket is writable); receives only if
// `maybe_readable` (the poller said so) and keeps receiving while receives
// fill the buffer. Returns whether any byte moved or the phase changed.
bool PumpOnce(Client& client, Transport& transport, bool maybe_readable,
              EventSink sink);

// Rounds (a send and a receive each) one server PumpOnce() call makes at
// most, so one busy client cannot starve the others on the same loop.
inline constexpr size_t kServerPumpRounds = 64;

// As above for a server session, whose sink usually answers requests (the
// replies go out in the next round), for at most `max_rounds` rounds.
bool PumpOnce(ServerSession& session, Transport& transport, bool maybe_readable,
              ServerEventSink sink, size_t max_rounds = kServerPumpRounds);

// poll(2)/epoll event bits for what the core wants.
short PollEventsFor(Direction direction);  // NOLINT(runtime/int)

// True once the connection can do nothing more.
inline bool IsTerminal(ClientPhase phase) {
  return phase == ClientPhase::kClosed || phase == ClientPhase::kDead;
}
inline bool IsTerminal(ServerPhase phase) {
  return phase == ServerPhase::kClosed || phase == ServerPhase::kDead;
}

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_PUMP_PUMP_H_
