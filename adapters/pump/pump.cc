#include "adapters/pump/pump.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <limits>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "protocol/status.h"

namespace nbd::adapters {

void DisconnectDeadline::Arm() {
  if (!deadline_.has_value()) deadline_ = absl::Now() + default_;
}

void DisconnectDeadline::OnEvent(const ClientEvent& event) {
  if (std::holds_alternative<ShutdownWrite>(event)) Arm();
}

// PeekOutput() fills IoSlices; the kernel reads them as iovecs
// (protocol/io.h asserts the layouts match).

IoResult IoResult::FromSyscall(ssize_t r, int saved_errno) {
  if (r >= 0) return IoResult{static_cast<size_t>(r), 0};
  if (saved_errno == EWOULDBLOCK) saved_errno = EAGAIN;
  return IoResult{0, saved_errno == 0 ? EIO : saved_errno};
}

absl::Status Transport::StartTls() {
  return ErrnoStatus(ENOTSUP,
                     "the server agreed to TLS but this connection's "
                     "transport has no TLS layer (SocketTransport::"
                     "ConfigureTls)");
}

absl::Status Transport::ContinueTls() {
  return ErrnoStatus(EINVAL, "no TLS handshake in progress");
}

Direction CombinedWants(Direction core, const Transport& transport) {
  return static_cast<Direction>(static_cast<int>(core) |
                                static_cast<int>(transport.wants()));
}

SocketTransport::SocketTransport(int fd, SyscallCounters* counters) {
  raw_.fd = fd;
  raw_.counters = counters != nullptr ? counters : &unused_;
}

SocketTransport::~SocketTransport() { Close(); }

IoResult SocketTransport::Raw::Recv(absl::Span<uint8_t> into) {
  ++counters->recv;
  ssize_t r;
  do {
    r = ::recv(fd, into.data(), into.size(), 0);
  } while (r < 0 && errno == EINTR);
  return IoResult::FromSyscall(r, errno);
}

IoResult SocketTransport::Raw::Send(absl::Span<const iovec> gather) {
  ++counters->send;
  msghdr msg = {};
  msg.msg_iov = const_cast<iovec*>(gather.data());
  msg.msg_iovlen = gather.size();
  ssize_t r;
  do {
    r = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
  return IoResult::FromSyscall(r, errno);
}

void SocketTransport::Raw::ShutdownWrite() {
  if (fd < 0) return;
  ++counters->shutdown;
  ::shutdown(fd, SHUT_WR);  // failure only means the peer is gone already
}

void SocketTransport::Raw::Close() {
  if (fd < 0) return;
  ++counters->close;
  ::close(fd);
  fd = -1;
}

void SocketTransport::ConfigureTls(tls::Role role, tls::TlsOptions options) {
  tls_ = std::make_unique<TlsStream>(role, std::move(options));
}

const tls::TlsSession* SocketTransport::tls_session() const {
  return tls_ != nullptr ? tls_->session() : nullptr;
}

IoResult SocketTransport::Recv(absl::Span<uint8_t> into) {
  return tls_active() ? tls_->Recv(raw_, into) : raw_.Recv(into);
}

IoResult SocketTransport::Send(absl::Span<const iovec> gather) {
  return tls_active() ? tls_->Send(raw_, gather) : raw_.Send(gather);
}

void SocketTransport::ShutdownWrite() {
  if (tls_active()) {
    tls_->ShutdownWrite(raw_);
  } else {
    raw_.ShutdownWrite();
  }
}

void SocketTransport::Close() { raw_.Close(); }

absl::Status SocketTransport::StartTls() {
  if (tls_ == nullptr) return Transport::StartTls();
  return tls_->Start();
}

bool SocketTransport::tls_secure() const {
  return tls_ != nullptr && tls_->secure();
}

bool SocketTransport::tls_handshaking() const {
  return tls_ != nullptr && tls_->handshaking();
}

absl::Status SocketTransport::ContinueTls() {
  if (!tls_handshaking()) return Transport::ContinueTls();
  return tls_->Continue(raw_);
}

bool SocketTransport::has_pending_output() const {
  return tls_ != nullptr && tls_->has_pending_output();
}

IoResult SocketTransport::Flush() {
  return tls_active() ? tls_->Flush(raw_) : IoResult{};
}

bool SocketTransport::has_buffered_input() const {
  return tls_ != nullptr && tls_->has_buffered_input();
}

Direction SocketTransport::wants() const {
  return tls_ != nullptr ? tls_->wants() : Direction::kNone;
}

absl::Status SocketTransport::last_error() const {
  return tls_ != nullptr ? tls_->last_error() : absl::OkStatus();
}

void ConfigureTls(SocketTransport& transport, const ClientOptions& options) {
  if (options.tls != TlsPolicy::kDisable) {
    transport.ConfigureTls(tls::Role::kClient, options.tls_credentials);
  }
}

void ConfigureTls(SocketTransport& transport, const ServerOptions& options) {
  if (options.tls != ServerTlsMode::kOff) {
    transport.ConfigureTls(tls::Role::kServer, options.tls_credentials);
  }
}

int SocketTransport::Release() {
  int fd = raw_.fd;
  raw_.fd = -1;
  return fd;
}

namespace {

// What differs between the session types, for the shared implementation.
template <typename Session>
struct SessionTraits;

template <>
struct SessionTraits<Client> {
  using Event = ClientEvent;
  static bool ShutsDownWrite(const ClientEvent& event, const Transport&) {
    return std::holds_alternative<ShutdownWrite>(event);
  }
  static bool StartsTls(const ClientEvent& event) {
    return std::holds_alternative<nbd::StartTls>(event);
  }
  static void TlsDone(Client& c) { c.TlsHandshakeDone().IgnoreError(); }
  static void TlsFailed(Client& c, absl::Status why) {
    c.TlsHandshakeFailed(std::move(why));
  }
};

template <>
struct SessionTraits<ServerSession> {
  using Event = ServerEvent;
  // A clean end over TLS says so with close_notify (the spec: shut down TLS
  // before closing); plaintext needs nothing before close().
  static bool ShutsDownWrite(const ServerEvent& event,
                             const Transport& transport) {
    return transport.tls_secure() &&
           std::holds_alternative<ServerClosed>(event);
  }
  static bool StartsTls(const ServerEvent& event) {
    return std::holds_alternative<ServerStartTls>(event);
  }
  static void TlsDone(ServerSession& s) { s.TlsHandshakeDone().IgnoreError(); }
  static void TlsFailed(ServerSession& s, absl::Status why) {
    s.FeedTransportError(std::move(why));  // the same end as TlsHandshakeFailed
  }
};

template <typename Session>
using SinkFor =
    absl::FunctionRef<void(typename SessionTraits<Session>::Event&)>;

template <typename Session>
size_t GatherOutputImpl(const Session& session, absl::Span<iovec> out) {
  return session.PeekOutput(
      absl::MakeSpan(reinterpret_cast<IoSlice*>(out.data()), out.size()));
}

template <typename Session>
void ApplyRecvResultImpl(Session& session, IoResult result) {
  if (IsTerminal(session.phase())) return;
  if (result.error == EAGAIN) return;
  if (result.error != 0) {
    session.FeedTransportError(ErrnoStatus(
        result.error, absl::StrCat("recv: ", std::strerror(result.error))));
    return;
  }
  if (result.bytes == 0) {
    session.FeedEof();
    return;
  }
  // A failure here also kills the connection inside the core (a ClientDead
  // or ServerDead event), which is how the adapter learns about it.
  session.CommitRecv(result.bytes).IgnoreError();
}

template <typename Session>
void ApplySendResultImpl(Session& session, IoResult result) {
  if (IsTerminal(session.phase())) return;
  if (result.error == EAGAIN) return;
  if (result.error != 0) {
    session.FeedTransportError(ErrnoStatus(
        result.error, absl::StrCat("send: ", std::strerror(result.error))));
    return;
  }
  session.ConsumeOutput(result.bytes).IgnoreError();
}

template <typename Session>
void DrainEventsImpl(Session& session, Transport& transport,
                     SinkFor<Session> sink) {
  while (auto event = session.PollEvent()) {
    if (SessionTraits<Session>::ShutsDownWrite(*event, transport)) {
      transport.ShutdownWrite();
    }
    if (SessionTraits<Session>::StartsTls(*event)) {
      // The handshake itself runs in PumpOnce (ContinueTls).
      if (absl::Status s = transport.StartTls(); !s.ok()) {
        SessionTraits<Session>::TlsFailed(session, std::move(s));
      }
    }
    sink(*event);
  }
}

template <typename Session>
void GiveUpImpl(Session& session, Transport& transport, absl::Status why,
                SinkFor<Session> sink) {
  if (!IsTerminal(session.phase())) {
    session.FeedTransportError(std::move(why));
  }
  DrainEventsImpl(session, transport, sink);
}

// A failed receive or send: the transport's own reason when it has one (a
// TLS failure), else the errno.
template <typename Session>
bool TransportFailed(Session& session, const Transport& transport,
                     const IoResult& r) {
  if (r.error == 0 || r.error == EAGAIN) return false;
  absl::Status why = transport.last_error();
  if (why.ok()) return false;  // ApplyRecv/SendResult word it
  session.FeedTransportError(std::move(why));
  return true;
}

template <typename Session>
bool PumpOnceImpl(Session& session, Transport& transport, bool maybe_readable,
                  SinkFor<Session> sink, size_t max_rounds) {
  bool progressed = false;
  bool readable = maybe_readable || transport.has_buffered_input();
  bool writable = true;
  for (size_t round = 0; round < max_rounds && !IsTerminal(session.phase());
       ++round) {
    bool moved = false;
    if (transport.tls_handshaking()) {
      absl::Status st = transport.ContinueTls();
      if (st.ok()) {
        SessionTraits<Session>::TlsDone(session);
        moved = true;
      } else if (StatusErrno(st) != EAGAIN) {
        SessionTraits<Session>::TlsFailed(session, std::move(st));
        moved = true;
      }
      DrainEventsImpl(session, transport, sink);
      if (IsTerminal(session.phase())) break;
    }
    // The handshake may have read past its last message (a peer's first
    // record often travels with its Finished), and a receive the core had no
    // room for leaves decryptable input: both are input the socket will
    // never signal again.
    if (transport.has_buffered_input()) readable = true;
    if (writable && session.pending_output_bytes() > 0) {
      iovec gather[kMaxGatherSlices];
      size_t n = GatherOutputImpl(session, absl::MakeSpan(gather));
      size_t offered = 0;
      for (size_t i = 0; i < n; ++i) offered += gather[i].iov_len;
      IoResult r = transport.Send(absl::MakeConstSpan(gather, n));
      if (!TransportFailed(session, transport, r)) {
        ApplySendResultImpl(session, r);
      }
      // A short send means the socket buffer is full: wait for POLLOUT.
      writable =
          r.error == 0 && r.bytes == offered && !transport.has_pending_output();
      moved = moved || r.error != EAGAIN;
      DrainEventsImpl(session, transport, sink);
    } else if (writable && transport.has_pending_output()) {
      IoResult r = transport.Flush();
      if (!TransportFailed(session, transport, r)) {
        ApplySendResultImpl(session, IoResult{0, r.error});
      }
      writable = r.error == 0;
      moved = moved || r.bytes > 0;
      DrainEventsImpl(session, transport, sink);
    }
    if (readable && !IsTerminal(session.phase())) {
      absl::Span<uint8_t> into = session.RecvBuffer();
      if (!into.empty()) {
        IoResult r = transport.Recv(into);
        if (!TransportFailed(session, transport, r)) {
          ApplyRecvResultImpl(session, r);
        }
        // A short receive drained the socket; the poller reports more
        // (unless the transport holds input of its own).
        readable = (r.error == 0 && r.bytes == into.size()) ||
                   transport.has_buffered_input();
        moved = moved || r.error != EAGAIN;
        DrainEventsImpl(session, transport, sink);
      } else {
        readable = false;
      }
    }
    if (!moved) break;
    progressed = true;
  }
  DrainEventsImpl(session, transport, sink);
  return progressed;
}

}  // namespace

size_t GatherOutput(const Client& client, absl::Span<iovec> out) {
  return GatherOutputImpl(client, out);
}
size_t GatherOutput(const ServerSession& session, absl::Span<iovec> out) {
  return GatherOutputImpl(session, out);
}

void ApplyRecvResult(Client& client, IoResult result) {
  ApplyRecvResultImpl(client, result);
}
void ApplyRecvResult(ServerSession& session, IoResult result) {
  ApplyRecvResultImpl(session, result);
}

void ApplySendResult(Client& client, IoResult result) {
  ApplySendResultImpl(client, result);
}
void ApplySendResult(ServerSession& session, IoResult result) {
  ApplySendResultImpl(session, result);
}

void DrainEvents(Client& client, Transport& transport, EventSink sink) {
  DrainEventsImpl(client, transport, sink);
}
void DrainEvents(ServerSession& session, Transport& transport,
                 ServerEventSink sink) {
  DrainEventsImpl(session, transport, sink);
}

absl::Status TimeoutStatus(absl::string_view what) {
  return ErrnoStatus(ETIMEDOUT, absl::StrCat(what, ": timed out"));
}

void GiveUp(Client& client, Transport& transport, absl::Status why,
            EventSink sink) {
  GiveUpImpl(client, transport, std::move(why), sink);
}
void GiveUp(ServerSession& session, Transport& transport, absl::Status why,
            ServerEventSink sink) {
  GiveUpImpl(session, transport, std::move(why), sink);
}

bool PumpOnce(Client& client, Transport& transport, bool maybe_readable,
              EventSink sink) {
  return PumpOnceImpl(client, transport, maybe_readable, sink,
                      std::numeric_limits<size_t>::max());
}
bool PumpOnce(ServerSession& session, Transport& transport, bool maybe_readable,
              ServerEventSink sink, size_t max_rounds) {
  return PumpOnceImpl(session, transport, maybe_readable, sink, max_rounds);
}

short PollEventsFor(Direction direction) {  // NOLINT(runtime/int)
  switch (direction) {
    case Direction::kNone:
      return 0;
    case Direction::kRead:
      return POLLIN;
    case Direction::kWrite:
      return POLLOUT;
    case Direction::kBoth:
      return POLLIN | POLLOUT;
  }
  return 0;
}

}  // namespace nbd::adapters
