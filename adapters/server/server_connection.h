// nbd::ServerConnection: one accepted socket driven by a ServerSession,
// with requests served synchronously from Backends (serve.h).
//
// Non-blocking I/O only: Pump() runs the shared adapter pump
// (adapters/pump): zero-copy receives straight into the session's buffers
// (WRITE payloads land in the request's own buffer), every request served
// as its event arrives, and the gather list sent with sendmsg, until the
// socket would block, the session has finished or a bounded number of
// rounds ran. The caller waits for readiness according to wants()
// (epoll_server.h does it with epoll).
#ifndef NBD_ADAPTERS_SERVER_SERVER_CONNECTION_H_
#define NBD_ADAPTERS_SERVER_SERVER_CONNECTION_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "absl/strings/string_view.h"
#include "adapters/pump/pump.h"
#include "adapters/server/backend.h"
#include "protocol/server/server.h"

namespace nbd {

class ServerConnection {
 public:
  // Receives the session's trace lines (ServerTrace), in order, from the
  // thread that calls Pump().
  using TraceSink = std::function<void(absl::string_view message)>;

  // Takes ownership of the connected, non-blocking socket `fd`.
  // `backends[i]` serves `options.exports[i]`; they must outlive this.
  // With `on_trace`, the session traces (options.trace is turned on) and
  // every line goes to it. `counters`, if not null, counts the system calls
  // made for this connection and must outlive it.
  ServerConnection(int fd, ServerOptions options,
                   std::vector<Backend*> backends, TraceSink on_trace = {},
                   adapters::SyscallCounters* counters = nullptr);
  ~ServerConnection();  // closes the socket
  ServerConnection(const ServerConnection&) = delete;
  ServerConnection& operator=(const ServerConnection&) = delete;

  int fd() const { return fd_; }
  ServerSession& session() { return session_; }
  // The session's direction plus what its TLS layer needs (the handshake,
  // ciphertext still to send).
  Direction wants() const {
    return adapters::CombinedWants(session_.wants(), transport_);
  }
  // Not yet in transmission (the handshake timeout applies).
  bool handshaking() const { return !session_.export_index().has_value(); }
  // The most unsent output the session held, checked after every answered
  // request and every Pump(): what ServerOptions::output_high_water bounds
  // (it can exceed it by the reply that crossed it).
  size_t peak_pending_output() const { return peak_pending_output_; }

  // Moves bytes and serves requests until nothing more can happen without
  // waiting (or for at most adapters::kServerPumpRounds rounds). Returns
  // true once the session is closed or dead (close it by destroying this
  // object).
  bool Pump();

 private:
  void ServeEvent(ServerEvent& event);

  const int fd_;
  adapters::SocketTransport transport_;
  ServerSession session_;
  std::vector<Backend*> backends_;
  Backend* backend_ = nullptr;  // the export being served
  TraceSink on_trace_;
  size_t peak_pending_output_ = 0;
};

}  // namespace nbd

#endif  // NBD_ADAPTERS_SERVER_SERVER_CONNECTION_H_
