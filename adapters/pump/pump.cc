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

SocketTransport::SocketTransport(int fd, SyscallCounters* counters)
    : fd_(fd), counters_(counters != nullptr ? counters : &unused_) {}

SocketTransport::~SocketTransport() { Close(); }

IoResult SocketTransport::Recv(absl::Span<uint8_t> into) {
  ++counters_->recv;
  ssize_t r;
  do {
    r = ::recv(fd_, into.data(), into.size(), 0);
  } while (r < 0 && errno == EINTR);
  return IoResult::FromSyscall(r, errno);
}

IoResult SocketTransport::Send(absl::Span<const iovec> gather) {
  ++counters_->send;
  msghdr msg = {};
  msg.msg_iov = const_cast<iovec*>(gather.data());
  msg.msg_iovlen = gather.size();
  ssize_t r;
  do {
    r = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
  return IoResult::FromSyscall(r, errno);
}

void SocketTransport::ShutdownWrite() {
  if (fd_ < 0) return;
  ++counters_->shutdown;
  ::shutdown(fd_, SHUT_WR);  // failure only means the peer is gone already
}

void SocketTransport::Close() {
  if (fd_ < 0) return;
  ++counters_->close;
  ::close(fd_);
  fd_ = -1;
}

int SocketTransport::Release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

namespace {

// What differs between the session types, for the shared implementation.
template <typename Session>
struct SessionTraits;

template <>
struct SessionTraits<Client> {
  using Event = ClientEvent;
  static bool ShutsDownWrite(const ClientEvent& event) {
    return std::holds_alternative<ShutdownWrite>(event);
  }
};

template <>
struct SessionTraits<ServerSession> {
  using Event = ServerEvent;
  static bool ShutsDownWrite(const ServerEvent&) { return false; }
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
    if (SessionTraits<Session>::ShutsDownWrite(*event)) {
      transport.ShutdownWrite();
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

template <typename Session>
bool PumpOnceImpl(Session& session, Transport& transport, bool maybe_readable,
                  SinkFor<Session> sink, size_t max_rounds) {
  bool progressed = false;
  bool readable = maybe_readable;
  bool writable = true;
  for (size_t round = 0; round < max_rounds && !IsTerminal(session.phase());
       ++round) {
    bool moved = false;
    if (writable && session.pending_output_bytes() > 0) {
      iovec gather[kMaxGatherSlices];
      size_t n = GatherOutputImpl(session, absl::MakeSpan(gather));
      size_t offered = 0;
      for (size_t i = 0; i < n; ++i) offered += gather[i].iov_len;
      IoResult r = transport.Send(absl::MakeConstSpan(gather, n));
      ApplySendResultImpl(session, r);
      // A short send means the socket buffer is full: wait for POLLOUT.
      writable = r.error == 0 && r.bytes == offered;
      moved = moved || r.error != EAGAIN;
      DrainEventsImpl(session, transport, sink);
    }
    if (readable && !IsTerminal(session.phase())) {
      absl::Span<uint8_t> into = session.RecvBuffer();
      if (!into.empty()) {
        IoResult r = transport.Recv(into);
        ApplyRecvResultImpl(session, r);
        // A short receive drained the socket; the poller reports more.
        readable = r.error == 0 && r.bytes == into.size();
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
