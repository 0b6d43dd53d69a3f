#include "adapters/server/server_connection.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "adapters/server/serve.h"
#include "protocol/status.h"

namespace nbd {
namespace {

constexpr size_t kMaxSlices = 64;
// Rounds of receive/serve/send per Pump(), so one busy client cannot
// starve the others on the same loop.
constexpr int kMaxRounds = 64;

static_assert(sizeof(IoSlice) == sizeof(iovec));

ServerOptions WithTrace(ServerOptions options, bool trace) {
  if (trace) options.trace = true;
  return options;
}

}  // namespace

ServerConnection::ServerConnection(int fd, ServerOptions options,
                                   std::vector<Backend*> backends,
                                   TraceSink on_trace)
    : fd_(fd),
      session_(WithTrace(std::move(options), on_trace != nullptr)),
      backends_(std::move(backends)),
      on_trace_(std::move(on_trace)) {}

ServerConnection::~ServerConnection() { ::close(fd_); }

bool ServerConnection::ReceiveOnce() {
  const Direction d = session_.wants();
  if (d != Direction::kRead && d != Direction::kBoth) return false;
  absl::Span<uint8_t> buffer = session_.RecvBuffer();
  if (buffer.empty()) return false;
  const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT);
  if (n > 0) {
    session_.CommitRecv(static_cast<size_t>(n)).IgnoreError();
    return true;
  }
  if (n == 0) {
    session_.FeedEof();
    return true;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
  session_.FeedTransportError(
      ErrnoStatus(errno, absl::StrCat("recv: ", std::strerror(errno))));
  return true;
}

bool ServerConnection::SendOnce() {
  if (session_.pending_output_bytes() == 0) return false;
  IoSlice slices[kMaxSlices];
  const size_t count = session_.PeekOutput(absl::MakeSpan(slices));
  msghdr msg{};
  msg.msg_iov = reinterpret_cast<iovec*>(slices);
  msg.msg_iovlen = count;
  const ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n >= 0) {
    session_.ConsumeOutput(static_cast<size_t>(n)).IgnoreError();
    return n > 0;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
  session_.FeedTransportError(
      ErrnoStatus(errno, absl::StrCat("sendmsg: ", std::strerror(errno))));
  return true;
}

void ServerConnection::ServeEvents() {
  while (std::optional<ServerEvent> e = session_.PollEvent()) {
    if (const auto* started = std::get_if<TransmissionStarted>(&*e)) {
      if (started->export_index < backends_.size()) {
        backend_ = backends_[started->export_index];
      }
    } else if (const auto* r = std::get_if<ServerRequest>(&*e)) {
      if (backend_ != nullptr) {
        ServeRequest(session_, *backend_, *r);
      } else {
        session_.ReplyError(r->handle, EIO, "no backend").IgnoreError();
      }
    } else if (const auto* t = std::get_if<ServerTrace>(&*e)) {
      if (on_trace_) on_trace_(t->message);
    }
  }
}

bool ServerConnection::Pump() {
  for (int round = 0; round < kMaxRounds; ++round) {
    bool progress = ReceiveOnce();
    ServeEvents();
    progress |= SendOnce();
    ServeEvents();  // ReplySent, ServerClosed
    const ServerPhase phase = session_.phase();
    if (phase == ServerPhase::kClosed || phase == ServerPhase::kDead) {
      return true;
    }
    if (!progress) break;
  }
  return false;
}

}  // namespace nbd
