#include "adapters/io_uring/uring_driver.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <utility>

#include "absl/time/clock.h"
#include "protocol/status.h"

namespace nbd::adapters {
namespace {

constexpr uint64_t kOurs = uint64_t{1} << 63;

uint64_t Encode(size_t index, uint64_t op) {
  return kOurs | (static_cast<uint64_t>(index) << 2) | op;
}

}  // namespace

UringConnection::UringConnection(int fd, ClientOptions options,
                                 Callback on_event, SyscallCounters* counters)
    : client_(options),
      transport_(fd, counters),
      on_event_(std::move(on_event)) {
  ConfigureTls(transport_, options);
}

absl::Status UringConnection::Disconnect(uint32_t flags) {
  absl::Status s = client_.Disconnect(flags);
  if (s.ok()) deadline_.Arm();
  return s;
}

absl::Status UringConnection::Shutdown(uint32_t flags) {
  absl::Status s = client_.Shutdown(flags);
  if (s.ok()) deadline_.Arm();
  return s;
}

UringDriver::UringDriver(io_uring* ring, SyscallCounters* counters)
    : ring_(ring), counters_(counters != nullptr ? counters : &unused_) {}

UringDriver::~UringDriver() {
  // The kernel may still write into READ buffers or scratch space owned by
  // the connections: make every operation complete before they go.
  for (auto& c : connections_) {
    if (c != nullptr && c->in_flight_io()) {
      ++counters_->shutdown;
      ::shutdown(c->transport_.fd(), SHUT_RDWR);
    }
  }
  absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (in_flight_io_ > 0 && absl::Now() < give_up) {
    __kernel_timespec ts = {0, 100 * 1000 * 1000};
    io_uring_cqe* cqe = nullptr;
    ++counters_->io_uring_enter;
    int r = io_uring_submit_and_wait_timeout(ring_, &cqe, 1, &ts, nullptr);
    if (r < 0 && r != -ETIME && r != -EINTR) break;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(ring_, head, cqe) {
      ++seen;
      if (!Owns(cqe)) continue;
      UringConnection& c = *connections_[(cqe->user_data & ~kOurs) >> 2];
      *BusyFlag(c, cqe->user_data & 3) = false;
      --in_flight_io_;
    }
    io_uring_cq_advance(ring_, seen);
  }
}

UringConnection* UringDriver::Add(int fd, ClientOptions options,
                                  UringConnection::Callback on_event) {
  std::unique_ptr<UringConnection> c(new UringConnection(
      fd, std::move(options), std::move(on_event), counters_));
  UringConnection* raw = c.get();
  for (auto& slot : connections_) {
    if (slot == nullptr) {
      slot = std::move(c);
      return raw;
    }
  }
  connections_.push_back(std::move(c));
  return raw;
}

absl::Status UringDriver::Remove(UringConnection* conn) {
  for (auto& slot : connections_) {
    if (slot.get() != conn) continue;
    // finished_ implies no operation in flight (AfterProgress), so no CQE
    // can name this slot any more.
    if (!conn->finished_) {
      return WithErrno(absl::FailedPreconditionError(
                           "UringDriver::Remove: connection not finished"),
                       EBUSY);
    }
    slot.reset();
    return absl::OkStatus();
  }
  return WithErrno(
      absl::NotFoundError("UringDriver::Remove: not this driver's"), ENOENT);
}

size_t UringDriver::connection_count() const {
  size_t n = 0;
  for (const auto& c : connections_) n += c != nullptr;
  return n;
}

bool* UringDriver::BusyFlag(UringConnection& c, uint64_t op) {
  switch (op) {
    case kRecv:
      return &c.recv_busy_;
    case kSend:
      return &c.send_busy_;
    case kPollIn:
      return &c.poll_in_busy_;
    default:
      return &c.poll_out_busy_;
  }
}

bool UringDriver::PumpTls(UringConnection& c, bool readable) {
  return PumpOnce(c.client_, c.transport_, readable, [&c](ClientEvent& e) {
    c.deadline_.OnEvent(e);
    c.on_event_(e);
  });
}

int UringDriver::PrepareTls(size_t index, UringConnection& c) {
  // Plaintext operations issued before STARTTLS was acknowledged finish
  // first; the bytes after the acknowledgement are the TLS layer's.
  if (c.recv_busy_ || c.send_busy_) return 0;
  if (!c.tls_nonblocking_) {
    c.tls_nonblocking_ = true;
    const int fd = c.transport_.fd();
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & O_NONBLOCK) == 0) {
      ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    }
  }
  // Move what can move without waiting: output the caller queued (unless a
  // send already hit a full socket and POLLOUT is awaited), input the TLS
  // layer holds, and the first handshake flight.
  const bool output =
      c.client_.pending_output_bytes() > 0 || c.transport_.has_pending_output();
  const bool idle = !c.poll_in_busy_ && !c.poll_out_busy_;
  if ((output && !c.poll_out_busy_) || c.transport_.has_buffered_input() ||
      (idle && c.transport_.tls_handshaking())) {
    if (PumpTls(c, /*readable=*/false)) moved_in_prepare_ = true;
    AfterProgress(c);
    if (c.finished_ || IsTerminal(c.client_.phase())) return 0;
  }
  const Direction d = CombinedWants(c.client_.wants(), c.transport_);
  int prepared = 0;
  const auto arm = [&](uint64_t op, unsigned mask, bool* busy) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring_);
    if (sqe == nullptr) return false;
    io_uring_prep_poll_add(sqe, c.transport_.fd(), mask);
    io_uring_sqe_set_data64(sqe, Encode(index, op));
    *busy = true;
    ++in_flight_io_;
    ++prepared;
    return true;
  };
  if ((d == Direction::kRead || d == Direction::kBoth) && !c.poll_in_busy_) {
    if (!arm(kPollIn, POLLIN, &c.poll_in_busy_)) return -1;
  }
  if ((d == Direction::kWrite || d == Direction::kBoth) && !c.poll_out_busy_) {
    if (!arm(kPollOut, POLLOUT, &c.poll_out_busy_)) return -1;
  }
  return prepared;
}

int UringDriver::Prepare() {
  int prepared = 0;
  moved_in_prepare_ = false;
  for (size_t i = 0; i < connections_.size(); ++i) {
    if (connections_[i] == nullptr) continue;
    UringConnection& c = *connections_[i];
    if (c.finished_ || IsTerminal(c.client_.phase())) continue;
    if (TlsMode(c)) {
      const int n = PrepareTls(i, c);
      if (n < 0) break;  // SQ full: the rest waits a round
      prepared += n;
      continue;
    }
    if (!c.recv_busy_) {
      absl::Span<uint8_t> into = c.client_.RecvBuffer();
      if (!into.empty()) {
        io_uring_sqe* sqe = io_uring_get_sqe(ring_);
        if (sqe == nullptr) break;  // SQ full: the rest waits a round
        io_uring_prep_recv(sqe, c.transport_.fd(), into.data(), into.size(), 0);
        io_uring_sqe_set_data64(sqe, Encode(i, kRecv));
        c.recv_busy_ = true;
        ++in_flight_io_;
        ++prepared;
      }
    }
    if (!c.send_busy_ && c.client_.pending_output_bytes() > 0) {
      io_uring_sqe* sqe = io_uring_get_sqe(ring_);
      if (sqe == nullptr) break;
      size_t n = GatherOutput(c.client_, absl::MakeSpan(c.iov_));
      // The kernel reads these bytes after we return: pin them so that
      // Shutdown(kShutdownAbandonPending) cannot withdraw them meanwhile.
      size_t bytes = 0;
      for (size_t k = 0; k < n; ++k) bytes += c.iov_[k].iov_len;
      (void)c.client_.PinOutput(bytes);
      c.msg_ = {};
      c.msg_.msg_iov = c.iov_;
      c.msg_.msg_iovlen = n;
      io_uring_prep_sendmsg(sqe, c.transport_.fd(), &c.msg_, MSG_NOSIGNAL);
      io_uring_sqe_set_data64(sqe, Encode(i, kSend));
      c.send_busy_ = true;
      ++in_flight_io_;
      ++prepared;
    }
  }
  return prepared;
}

void UringDriver::OnCompletion(const io_uring_cqe* cqe) {
  UringConnection& c = *connections_[(cqe->user_data & ~kOurs) >> 2];
  const uint64_t op = cqe->user_data & 3;
  *BusyFlag(c, op) = false;
  --in_flight_io_;
  if (op == kPollIn || op == kPollOut) {
    // Readiness for the TLS pump (an error or hang-up shows up as the
    // receive's or send's own result). After the end it says nothing.
    if (!IsTerminal(c.client_.phase())) {
      PumpTls(c, /*readable=*/op == kPollIn);
    }
    return AfterProgress(c);
  }
  const bool is_recv = op == kRecv;
  IoResult r = IoResult::FromSyscall(cqe->res < 0 ? -1 : cqe->res,
                                     cqe->res < 0 ? -cqe->res : 0);
  // EINTR/ECANCELED (we never cancel; the embedder might): nothing moved,
  // so treat it as "would block" and the next Prepare retries.
  if (r.error == EINTR || r.error == ECANCELED) r.error = EAGAIN;
  // After our own SHUT_RDWR the result says nothing about the server: the
  // core is already closed or dead, and the Apply* calls ignore it.
  if (is_recv) {
    ApplyRecvResult(c.client_, r);
  } else {
    ApplySendResult(c.client_, r);
  }
  AfterProgress(c);
}

void UringDriver::AfterProgress(UringConnection& c) {
  if (c.finished_) return;
  if (IsTerminal(c.client_.phase()) && c.in_flight_io()) {
    // Hold the events (completions) until the kernel lets go of buffers.
    if (!c.forced_shutdown_) {
      c.forced_shutdown_ = true;
      ++counters_->shutdown;
      ::shutdown(c.transport_.fd(), SHUT_RDWR);
    }
    return;
  }
  DrainEvents(c.client_, c.transport_, [&c](ClientEvent& e) {
    c.deadline_.OnEvent(e);
    c.on_event_(e);
  });
  if (IsTerminal(c.client_.phase())) {
    c.finished_ = true;
    c.transport_.Close();
  }
}

void UringDriver::CheckDeadlines(absl::Time now) {
  for (auto& c : connections_) {
    if (c == nullptr || c->finished_ || !c->deadline_.Passed(now)) continue;
    if (!IsTerminal(c->client_.phase())) {
      c->client_.FeedTransportError(
          TimeoutStatus("waiting for the server to close"));
    }
    AfterProgress(*c);
  }
}

std::optional<absl::Time> UringDriver::next_deadline() const {
  std::optional<absl::Time> best;
  for (const auto& c : connections_) {
    if (c == nullptr || c->finished_ || IsTerminal(c->client_.phase())) {
      continue;
    }
    const std::optional<absl::Time>& d = c->deadline_.get();
    if (d.has_value() && (!best.has_value() || *d < *best)) best = d;
  }
  return best;
}

}  // namespace nbd::adapters
