#include "adapters/pump/pump.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

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

// PeekOutput() fills IoSlices; the kernel reads them as iovecs.
static_assert(sizeof(IoSlice) == sizeof(iovec));
static_assert(alignof(IoSlice) == alignof(iovec));
static_assert(offsetof(IoSlice, data) == offsetof(iovec, iov_base));
static_assert(offsetof(IoSlice, size) == offsetof(iovec, iov_len));

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

size_t GatherOutput(const Client& client, absl::Span<iovec> out) {
  return client.PeekOutput(
      absl::MakeSpan(reinterpret_cast<IoSlice*>(out.data()), out.size()));
}

void ApplyRecvResult(Client& client, IoResult result) {
  if (IsTerminal(client.phase())) return;
  if (result.error == EAGAIN) return;
  if (result.error != 0) {
    client.FeedTransportError(ErrnoStatus(
        result.error, absl::StrCat("recv: ", std::strerror(result.error))));
    return;
  }
  if (result.bytes == 0) {
    client.FeedEof();
    return;
  }
  // A failure here also kills the connection inside the core (ClientDead event),
  // which is how the adapter learns about it.
  client.CommitRecv(result.bytes).IgnoreError();
}

void ApplySendResult(Client& client, IoResult result) {
  if (IsTerminal(client.phase())) return;
  if (result.error == EAGAIN) return;
  if (result.error != 0) {
    client.FeedTransportError(ErrnoStatus(
        result.error, absl::StrCat("send: ", std::strerror(result.error))));
    return;
  }
  client.ConsumeOutput(result.bytes).IgnoreError();
}

void DrainEvents(Client& client, Transport& transport, EventSink sink) {
  while (std::optional<ClientEvent> event = client.PollEvent()) {
    if (std::holds_alternative<ShutdownWrite>(*event)) {
      transport.ShutdownWrite();
    }
    sink(*event);
  }
}

absl::Status TimeoutStatus(absl::string_view what) {
  return ErrnoStatus(ETIMEDOUT, absl::StrCat(what, ": timed out"));
}

void GiveUp(Client& client, Transport& transport, absl::Status why,
            EventSink sink) {
  if (!IsTerminal(client.phase())) client.FeedTransportError(std::move(why));
  DrainEvents(client, transport, sink);
}

bool PumpOnce(Client& client, Transport& transport, bool maybe_readable,
              EventSink sink) {
  bool progressed = false;
  bool readable = maybe_readable;
  bool writable = true;
  while (!IsTerminal(client.phase())) {
    bool moved = false;
    if (writable && client.pending_output_bytes() > 0) {
      iovec gather[kMaxGatherSlices];
      size_t n = GatherOutput(client, absl::MakeSpan(gather));
      size_t offered = 0;
      for (size_t i = 0; i < n; ++i) offered += gather[i].iov_len;
      IoResult r = transport.Send(absl::MakeConstSpan(gather, n));
      ApplySendResult(client, r);
      // A short send means the socket buffer is full: wait for POLLOUT.
      writable = r.error == 0 && r.bytes == offered;
      moved = moved || r.error != EAGAIN;
      DrainEvents(client, transport, sink);
    }
    if (readable && !IsTerminal(client.phase())) {
      absl::Span<uint8_t> into = client.RecvBuffer();
      if (!into.empty()) {
        IoResult r = transport.Recv(into);
        ApplyRecvResult(client, r);
        // A short receive drained the socket; the poller reports more.
        readable = r.error == 0 && r.bytes == into.size();
        moved = moved || r.error != EAGAIN;
        DrainEvents(client, transport, sink);
      } else {
        readable = false;
      }
    }
    if (!moved) break;
    progressed = true;
  }
  DrainEvents(client, transport, sink);
  return progressed;
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
