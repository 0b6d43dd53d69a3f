// nbd::adapters::UringDriver: NBD connections driven by completions from an
// io_uring that the caller owns (UringLoop is a ready-made owner).
//
//   UringDriver driver(&ring);
//   UringConnection* c = driver.Add(fd, options, on_event);
//   loop:
//     driver.Prepare();                       // SQEs for all connections
//     io_uring_submit_and_wait(&ring,         // one syscall per iteration
//                              driver.moved_in_prepare() ? 0 : 1);
//     for each cqe: if (UringDriver::Owns(cqe)) driver.OnCompletion(cqe);
//     driver.CheckDeadlines(absl::Now());
//
// Zero-copy both ways: IORING_OP_RECV targets the span Client::RecvBuffer()
// hands out (for a READ payload: the caller's own buffer) and one
// IORING_OP_SENDMSG sends the PeekOutput() gather list (MSG_NOSIGNAL). Each
// connection has at most one receive and one send in flight.
//
// TLS (ClientOptions::tls, nbds URIs): ciphertext needs the TLS layer of the
// shared pump between the socket and the core, so once the server has
// acknowledged STARTTLS a connection switches to readiness: IORING_OP_POLL_ADD
// (one per direction at most) says when the socket is ready, and the pump
// (PumpOnce, as in the epoll adapter) moves the bytes with non-blocking
// recv/send. Plaintext connections are unaffected.
//
// Buffer safety, which is why the rules below are strict:
//  - While a receive is in flight the driver calls no input method of the
//    Client (Feed/CommitRecv/FeedEof/FeedTransportError/RecvBuffer); the
//    caller must not either. client.h guarantees the RecvBuffer() span stays
//    valid until the next input call (or the end of the connection), so
//    issuing commands, Disconnect()/Shutdown(), PeekOutput/ConsumeOutput and
//    PollEvent meanwhile are safe.
//  - Output slices stay valid until consumed (client.h), so an in-flight
//    SENDMSG is safe while commands are added.
//  - When the connection ends (closed or dead: commands complete, so their
//    buffers may be freed) while an operation is still in flight, the
//    socket is shut down so that operation completes at once, and the
//    events (the completions) are held back until it has: the caller never
//    learns a buffer is free while the kernel may still touch it.
//  - Deadlines (SetDeadline) give up the same way: the connection becomes
//    dead (ETIMEDOUT), then as above. If no deadline was set, a default
//    one (kDefaultDisconnectTimeout, 30 s; SetDefaultDisconnectTimeout) is
//    armed when the disconnect starts: at UringConnection::Disconnect()/
//    Shutdown(), or, if the core's were called directly, once
//    NBD_CMD_DISC/NBD_OPT_ABORT has been sent (ShutdownWrite).
//
// Ownership: the driver owns its connections. A UringConnection* stays
// valid until Remove(conn) or the driver's destruction, whichever is first;
// finished connections are not freed behind the caller's back. Remove()
// a connection once finished() to free it (and its slot, which Add reuses).
//
// user_data of our SQEs: bit 63 set, bits 2..62 the connection index, bits
// 0..1 the operation. Events go to each connection's callback from inside
// OnCompletion() and CheckDeadlines() only; Prepare() delivers none (it
// only hands the core's buffers to the kernel).
#ifndef NBD_ADAPTERS_IO_URING_URING_DRIVER_H_
#define NBD_ADAPTERS_IO_URING_URING_DRIVER_H_

#include <liburing.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "adapters/pump/pump.h"
#include "protocol/client/client.h"
#include "protocol/client/options.h"

namespace nbd::adapters {

class UringConnection {
 public:
  using Callback = std::function<void(ClientEvent&)>;

  Client& client() { return client_; }
  const Client& client() const { return client_; }
  // client().Disconnect()/Shutdown(flags); arms the default disconnect
  // deadline unless one is set. The next Prepare() sends the request.
  absl::Status Disconnect(uint32_t flags = 0);
  absl::Status Shutdown(uint32_t flags = 0);

  // Bound for the end of the connection, e.g. after Disconnect().
  void SetDeadline(absl::Time deadline) { deadline_.Set(deadline); }
  // The bound armed when a disconnect starts without a deadline.
  void SetDefaultDisconnectTimeout(absl::Duration timeout) {
    deadline_.set_default_timeout(timeout);
  }
  // Closed or dead, nothing in flight, fd closed.
  bool finished() const { return finished_; }
  bool in_flight_io() const {
    return recv_busy_ || send_busy_ || poll_in_busy_ || poll_out_busy_;
  }

 private:
  friend class UringDriver;
  UringConnection(int fd, ClientOptions options, Callback on_event,
                  SyscallCounters* counters);

  Client client_;
  // Plaintext: shutdown/close only, I/O goes via the ring. With TLS: the
  // TLS layer and its socket calls.
  SocketTransport transport_;
  Callback on_event_;
  bool recv_busy_ = false;
  bool send_busy_ = false;
  // Once TLS has started, bytes move through the TLS layer of transport_
  // (synchronous non-blocking recv/send, as in the epoll adapter) and the
  // ring only reports readiness: one POLL_ADD per direction at most.
  bool poll_in_busy_ = false;
  bool poll_out_busy_ = false;
  bool tls_nonblocking_ = false;  // O_NONBLOCK set for the TLS pump
  iovec iov_[kMaxGatherSlices];
  msghdr msg_ = {};
  bool forced_shutdown_ = false;  // SHUT_RDWR to flush out in-flight I/O
  DisconnectDeadline deadline_;
  bool finished_ = false;
};

class UringDriver {
 public:
  // `ring` and `counters` (may be null) must outlive the driver. The driver
  // counts no io_uring_enter calls itself; whoever submits does.
  explicit UringDriver(io_uring* ring, SyscallCounters* counters = nullptr);
  // Shuts down sockets with I/O in flight and reaps their completions
  // (bounded), so no kernel operation outlives the buffers.
  ~UringDriver();
  UringDriver(const UringDriver&) = delete;
  UringDriver& operator=(const UringDriver&) = delete;

  // Takes ownership of `fd` (connected). The pointer stays valid until
  // Remove() or the driver's destruction.
  UringConnection* Add(int fd, ClientOptions options,
                       UringConnection::Callback on_event);

  // Frees a finished connection (its fd is already closed and nothing of
  // it is in the kernel); `conn` is invalid afterwards. FailedPrecondition
  // if it has not finished: end it first (Shutdown, or a deadline).
  absl::Status Remove(UringConnection* conn);

  // Connections added and not removed.
  size_t connection_count() const;

  // Prepares (does not submit) a receive and/or a send for every connection
  // that can start one. Returns the number of SQEs prepared. For a TLS
  // connection it may also move bytes itself and deliver events (its
  // output goes out at once); moved_in_prepare() then says so, and the
  // caller must not block waiting for completions this round: what it is
  // waiting for may already have happened.
  int Prepare();
  bool moved_in_prepare() const { return moved_in_prepare_; }

  // Ours: bit 63 set. liburing's own timeout CQE (LIBURING_UDATA_TIMEOUT,
  // all bits set, from submit-and-wait with a timeout on kernels without
  // IORING_FEAT_EXT_ARG) has it too and is excluded; our encoding never
  // sets bit 1, so it can never be all ones.
  static bool Owns(const io_uring_cqe* cqe) {
    return cqe->user_data != LIBURING_UDATA_TIMEOUT &&
           (cqe->user_data >> 63) != 0;
  }
  void OnCompletion(const io_uring_cqe* cqe);

  // Gives up connections whose deadline has passed.
  void CheckDeadlines(absl::Time now);

  // Operations submitted and not completed, over all connections.
  size_t in_flight_io() const { return in_flight_io_; }
  // Earliest deadline of a connection that can still be given up. One
  // already closed or dead (waiting only for its forced-shutdown
  // completions) does not count: its deadline has done its work, and a
  // past deadline would make the caller poll with a zero timeout.
  std::optional<absl::Time> next_deadline() const;

  SyscallCounters* counters() const { return counters_; }

 private:
  enum Op : uint64_t { kRecv = 0, kSend = 1, kPollIn = 2, kPollOut = 3 };
  void AfterProgress(UringConnection& c);
  // The TLS path of Prepare(): pumps what can move now and arms the polls
  // the connection needs. Returns the SQEs prepared (or -1: SQ full).
  int PrepareTls(size_t index, UringConnection& c);
  // Returns whether bytes moved or the phase changed.
  bool PumpTls(UringConnection& c, bool readable);
  static bool TlsMode(const UringConnection& c) {
    return c.transport_.tls_handshaking() || c.transport_.tls_secure();
  }
  bool* BusyFlag(UringConnection& c, uint64_t op);

  io_uring* ring_;
  SyscallCounters* counters_;
  SyscallCounters unused_;
  // Indexed by the slot encoded in user_data; removed slots are null and
  // reused by Add.
  std::vector<std::unique_ptr<UringConnection>> connections_;
  size_t in_flight_io_ = 0;
  bool moved_in_prepare_ = false;
};

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_IO_URING_URING_DRIVER_H_
