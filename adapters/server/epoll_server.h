// nbd::EpollServer: an NBD server on a Unix socket or a TCP port, serving
// many connections from one epoll thread. Each connection is a
// ServerConnection (a ServerSession plus synchronous Backend calls).
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
  // Connections beyond this are accepted and closed at once.
  size_t max_connections = 256;
  // If set, every session traces (ServerOptions::trace) and each line
  // (server_events.h: ServerTrace) is passed here with the connection's
  // number: 1 for the first connection accepted, counting up, never reused.
  // Called on the loop's thread, in order for each connection; it must not
  // block for long, since it holds up every connection.
  std::function<void(uint64_t connection, absl::string_view message)> on_trace;
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
  // nbd+unix:///?socket=PATH or nbd://ADDRESS:PORT/ (default export).
  std::string uri() const;
  uint64_t connections_accepted() const { return accepted_.load(); }
  size_t open_connections() const { return open_.load(); }

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
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> accepted_{0};
  std::atomic<size_t> open_{0};
};

}  // namespace nbd

#endif  // NBD_ADAPTERS_SERVER_EPOLL_SERVER_H_
