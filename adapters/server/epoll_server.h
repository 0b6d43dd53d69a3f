// nbd::EpollServer: an NBD server on a Unix socket or a TCP port, serving
// many connections from one epoll thread. Each connection is a
// ServerConnection (a ServerSession plus synchronous Backend calls).
//
// Bounds, for a server open to untrusted clients (the defaults are safe):
//   - max_connections: open connections beyond it are accepted and closed
//     at once, and Create() lowers it to what the open-file limit allows,
//     so running out of descriptors never stops the loop;
//   - handshake_timeout: a client that has not reached transmission that
//     long after it was accepted is disconnected (qemu-nbd's
//     --handshake-limit);
//   - session.output_high_water: a connection whose unsent replies exceed
//     it is not read from until they drain below it (backpressure: a client
//     that never reads its replies cannot grow the server's memory), and
//     session.max_in_flight, max_option_length, max_options,
//     max_discard_payload bound the rest of what a client controls (see
//     protocol/server/options.h).
// One connection then holds at most about output_high_water plus one
// reply (a READ of up to the export's max_block, 32 MiB by default) plus
// one WRITE payload (max_block) in memory, whatever the client does.
//
// Lifecycle: Create() binds and listens (so port()/uri() are known at
// once); Start() runs the loop on a background thread; Stop() (also run by
// the destructor) wakes the loop, closes every connection, joins the
// thread and removes the Unix socket file. Run() is the loop itself, for
// callers that bring their own thread; it returns after Stop().
//
// Note: adapters/pump and adapters/epoll drive nbd::Client objects
// (PumpOnce(Client&), EpollConnection wraps a Client), so this loop is a
// minimal one of its own.
#ifndef NBD_ADAPTERS_SERVER_EPOLL_SERVER_H_
#define NBD_ADAPTERS_SERVER_EPOLL_SERVER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "adapters/server/backend.h"
#include "protocol/server/options.h"

namespace nbd {

struct ServedExport {
  std::string name;
  std::string description;
  std::shared_ptr<Backend> backend;  // shared by every connection
};

struct EpollServerOptions {
  // A Unix socket path (< 108 bytes), or, if empty, TCP on
  // tcp_address:tcp_port (0: any free port). A stale socket file at the
  // path (nothing accepts connections on it) is replaced; if a server is
  // listening there, Create() fails with EADDRINUSE and leaves it alone.
  std::string unix_path;
  std::string tcp_address = "127.0.0.1";
  uint16_t tcp_port = 0;

  std::vector<ServedExport> exports;  // non-empty
  // Limits and policy for each session; its `exports` are replaced by
  // descriptions of `exports` (MakeExportInfo).
  ServerOptions session;
  // Open connections beyond this are accepted and closed at once (the
  // client sees EOF, no greeting). Create() lowers it, to at least 1, so
  // that every connection fits the process's open-file limit
  // (RLIMIT_NOFILE) next to the descriptors already open;
  // EpollServer::max_connections() is the value in force. Should accept()
  // still run out of descriptors, the connection is accepted on a reserved
  // one and closed, so the loop never spins on a pending connection.
  size_t max_connections = 1024;
  // A connection that has not reached transmission (NBD_OPT_GO or
  // NBD_OPT_EXPORT_NAME done) this long after it was accepted is closed,
  // whatever it is doing: stalled, half an option sent, options without
  // end, or not reading the server's replies. Zero or less: no limit.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // If set, every session traces (ServerOptions::trace) and each line
  // (server_events.h: ServerTrace) is passed here with the connection's
  // number: 1 for the first connection accepted, counting up, never reused.
  // The loop adds its own lines about a connection: "refused: ..." when
  // max_connections (or the descriptor limit) turned it away and
  // "dropped: handshake not finished within ..." on handshake_timeout.
  // Called on the loop's thread, in order for each connection; it must not
  // block for long, since it holds up every connection.
  std::function<void(uint64_t connection, absl::string_view message)> on_trace;
};

// Counters of an EpollServer, updated by its loop (read from any thread).
struct EpollServerStats {
  uint64_t accepted = 0;  // every accepted connection, refused ones too
  // Closed at once: max_connections open, or no descriptor left.
  uint64_t refused = 0;
  // Closed by handshake_timeout.
  uint64_t handshake_timeouts = 0;
  size_t open = 0;  // connections open now
  // Unsent reply bytes over all open connections after the loop's last
  // round, and the most one connection ever held (measured right after each
  // request was answered, so it includes the reply that crossed
  // output_high_water).
  size_t queued_output_bytes = 0;
  size_t peak_queued_output_bytes = 0;
};

class EpollServer {
 public:
  static absl::StatusOr<std::unique_ptr<EpollServer>> Create(
      EpollServerOptions options);
  ~EpollServer();
  EpollServer(const EpollServer&) = delete;
  EpollServer& operator=(const EpollServer&) = delete;

  // Runs Run() on a new thread. Fails if already started.
  absl::Status Start();
  // Idempotent; safe from any thread but the loop's own.
  void Stop();
  // Serves until Stop(). Returns the error that ended the loop, if any.
  absl::Status Run();

  const std::string& unix_path() const { return options_.unix_path; }
  uint16_t port() const { return port_; }
  // nbd+unix:///?socket=PATH or nbd://ADDRESS:PORT/ (default export);
  // nbds+unix / nbds once session.tls offers TLS.
  std::string uri() const;
  uint64_t connections_accepted() const { return accepted_.load(); }
  size_t open_connections() const { return open_.load(); }
  // EpollServerOptions::max_connections after Create() fitted it to the
  // open-file limit.
  size_t max_connections() const { return options_.max_connections; }
  EpollServerStats stats() const;

 private:
  explicit EpollServer(EpollServerOptions options);
  absl::Status Listen();

  EpollServerOptions options_;
  std::vector<Backend*> backends_;
  int listen_fd_ = -1;
  // This server bound unix_path, so the destructor may remove it (and
  // never a file another server owns when Create fails).
  bool owns_unix_path_ = false;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  // Held open so that a connection can still be accepted (and closed) when
  // the process is out of descriptors: EMFILE would otherwise leave it
  // pending and the listening socket readable for ever.
  int reserve_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> accepted_{0};
  std::atomic<size_t> open_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> handshake_timeouts_{0};
  std::atomic<size_t> queued_{0};
  std::atomic<size_t> peak_queued_{0};
};

}  // namespace nbd

#endif  // NBD_ADAPTERS_SERVER_EPOLL_SERVER_H_
