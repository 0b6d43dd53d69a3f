// nbd::adapters::UringDriver: NBD connections driven by completions from an
// io_uring that the caller owns (UringLoop is a ready-made owner).
//
//   UringDriver driver(&ring);
//   UringConnection* c = driver.Add(fd, options, on_event);
//   loop:
//     driver.Prepare();                       // SQEs for all connections
//     io_uring_submit_and_wait(&ring, 1);     // one syscall per iteration
//     for each cqe: if (UringDriver::Owns(cqe)) driver.OnCompletion(cqe);
//     driver.CheckDeadlines(absl::Now());
//
// Zero-copy both ways: IORING_OP_RECV targets the span Client::RecvBuffer()
// hands out (for a READ payload: the caller's own buffer) and one
// IORING_OP_SENDMSG sends the PeekOutput() gather list (MSG_NOSIGNAL). Each
// connection has at most one receive and one send in flight.
//
// Buffer safety, which is why the rules below are strict:
//  - While a receive is in flight the driver calls no input method of the
//    Client (Feed/CommitRecv/FeedEof/FeedTransportError/RecvBuffer); the
//    caller must not either. Issuing commands, Disconnect()/Shutdown(),
//    PeekOutput/ConsumeOutput and PollEvent do not move the receive buffer
//    in the current core (protocol/client.cc); client.h only promises "until
//    the next non-const call", see docs/adapters.md.
//  - Output slices stay valid until consumed (client.h), so an in-flight
//    SENDMSG is safe while commands are added.
//  - When the connection ends (closed or dead: commands complete, so their
//    buffers may be freed) while an operation is still in flight, the
//    socket is shut down so that operation completes at once, and the
//    events (the completions) are held back until it has: the caller never
//    learns a buffer is free while the kernel may still touch it.
//  - Deadlines (SetDeadline) give up the same way: the connection becomes
//    dead (ETIMEDOUT), then as above.
//
// user_data of our SQEs: bit 63 set, bits 2..62 the connection index, bits
// 0..1 the operation. Events go to each connection's callback from inside
// OnCompletion()/Prepare()/CheckDeadlines().
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

#include "absl/time/time.h"
#include "adapters/pump/pump.h"
#include "protocol/client.h"
#include "protocol/options.h"

namespace nbd::adapters {

class UringConnection {
 public:
  using Callback = std::function<void(Event&)>;

  Client& client() { return client_; }
  const Client& client() const { return client_; }
  // Bound for the end of the connection, e.g. after Disconnect().
  void SetDeadline(absl::Time deadline) { deadline_ = deadline; }
  // Closed or dead, nothing in flight, fd closed.
  bool finished() const { return finished_; }
  bool in_flight_io() const { return recv_busy_ || send_busy_; }

 private:
  friend class UringDriver;
  UringConnection(int fd, ClientOptions options, Callback on_event,
                  SyscallCounters* counters);

  Client client_;
  SocketTransport transport_;  // shutdown/close only; I/O goes via the ring
  Callback on_event_;
  bool recv_busy_ = false;
  bool send_busy_ = false;
  iovec iov_[kMaxGatherSlices];
  msghdr msg_ = {};
  bool forced_shutdown_ = false;  // SHUT_RDWR to flush out in-flight I/O
  std::optional<absl::Time> deadline_;
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

  // Takes ownership of `fd` (connected). The pointer stays valid for the
  // driver's lifetime.
  UringConnection* Add(int fd, ClientOptions options,
                       UringConnection::Callback on_event);

  // Prepares (does not submit) a receive and/or a send for every connection
  // that can start one. Returns the number of SQEs prepared.
  int Prepare();

  static bool Owns(const io_uring_cqe* cqe) {
    return (cqe->user_data >> 63) != 0;
  }
  void OnCompletion(const io_uring_cqe* cqe);

  // Gives up connections whose deadline has passed.
  void CheckDeadlines(absl::Time now);

  // Operations submitted and not completed, over all connections.
  size_t in_flight_io() const { return in_flight_io_; }
  // Earliest deadline of an unfinished connection.
  std::optional<absl::Time> next_deadline() const;

  SyscallCounters* counters() const { return counters_; }

 private:
  enum Op : uint64_t { kRecv = 0, kSend = 1 };
  void AfterProgress(UringConnection& c);

  io_uring* ring_;
  SyscallCounters* counters_;
  SyscallCounters unused_;
  std::vector<std::unique_ptr<UringConnection>> connections_;
  size_t in_flight_io_ = 0;
};

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_IO_URING_URING_DRIVER_H_
