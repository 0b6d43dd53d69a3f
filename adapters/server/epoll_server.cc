#include "adapters/server/epoll_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "adapters/server/server_connection.h"
#include "protocol/status.h"

namespace nbd {
namespace {

absl::Status Errno(absl::string_view what) {
  const int e = errno;
  return ErrnoStatus(e, absl::StrCat(what, ": ", std::strerror(e)));
}

uint32_t EpollEventsFor(Direction d) {
  switch (d) {
    case Direction::kRead:
      return EPOLLIN;
    case Direction::kWrite:
      return EPOLLOUT;
    case Direction::kBoth:
      return EPOLLIN | EPOLLOUT;
    case Direction::kNone:
      break;
  }
  return 0;
}

// Removes a stale Unix socket at `addr` (one nobody listens on, left by a
// server that died) so bind() can reuse the path. A live server's socket is
// left alone: unlinking it would silently cut that server off from new
// clients. Other files, and sockets that cannot be probed, are left for
// bind() to report.
absl::Status RemoveStaleSocket(const sockaddr_un& addr) {
  struct stat st;
  if (::lstat(addr.sun_path, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return absl::OkStatus();
  }
  const int probe =
      ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) return Errno("socket");
  // Non-blocking, so a live server with a full backlog (EAGAIN) cannot
  // stall us.
  const int rc =
      ::connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int e = rc == 0 ? 0 : errno;
  ::close(probe);
  if (e == ECONNREFUSED) {
    if (::unlink(addr.sun_path) != 0 && errno != ENOENT) {
      return Errno(absl::StrCat("unlink stale socket ", addr.sun_path));
    }
    return absl::OkStatus();
  }
  if (e == 0 || e == EAGAIN || e == EINPROGRESS) {
    return ErrnoStatus(
        EADDRINUSE, absl::StrCat("a server is already listening on ",
                                 addr.sun_path, "; not replacing its socket"));
  }
  return absl::OkStatus();
}

}  // namespace

EpollServer::EpollServer(EpollServerOptions options)
    : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<EpollServer>> EpollServer::Create(
    EpollServerOptions options) {
  if (options.exports.empty()) {
    return absl::InvalidArgumentError("EpollServer needs at least one export");
  }
  std::unique_ptr<EpollServer> server(new EpollServer(std::move(options)));
  EpollServerOptions& o = server->options_;
  o.session.exports.clear();
  for (const ServedExport& e : o.exports) {
    if (e.backend == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("export \"", e.name, "\" has no backend"));
    }
    o.session.exports.push_back(
        MakeExportInfo(e.name, e.description, *e.backend));
    server->backends_.push_back(e.backend.get());
  }
  if (absl::Status s = server->Listen(); !s.ok()) return s;
  return server;
}

absl::Status EpollServer::Listen() {
  if (!options_.unix_path.empty()) {
    sockaddr_un addr{};
    if (options_.unix_path.size() >= sizeof(addr.sun_path)) {
      return ErrnoStatus(ENAMETOOLONG, "Unix socket path too long");
    }
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, options_.unix_path.c_str(),
                options_.unix_path.size() + 1);
    if (absl::Status s = RemoveStaleSocket(addr); !s.ok()) return s;
    listen_fd_ =
        ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) return Errno("socket");
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
        0) {
      return Errno(absl::StrCat("bind ", options_.unix_path));
    }
    owns_unix_path_ = true;  // from now on the file is ours to remove
  } else {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(options_.tcp_port);
    if (::inet_pton(AF_INET, options_.tcp_address.c_str(), &addr.sin_addr) !=
        1) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad IPv4 address ", options_.tcp_address));
    }
    listen_fd_ =
        ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) return Errno("socket");
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
        0) {
      return Errno("bind");
    }
    socklen_t len = sizeof(addr);
    if (::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) !=
        0) {
      return Errno("getsockname");
    }
    port_ = ntohs(addr.sin_port);
  }
  if (::listen(listen_fd_, 128) != 0) return Errno("listen");
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return Errno("epoll_create1");
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return Errno("eventfd");
  for (int fd : {listen_fd_, wake_fd_}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      return Errno("epoll_ctl");
    }
  }
  return absl::OkStatus();
}

EpollServer::~EpollServer() {
  Stop();
  for (int fd : {listen_fd_, epoll_fd_, wake_fd_}) {
    if (fd >= 0) ::close(fd);
  }
  if (owns_unix_path_) ::unlink(options_.unix_path.c_str());
}

std::string EpollServer::uri() const {
  if (!options_.unix_path.empty()) {
    return absl::StrCat("nbd+unix:///?socket=", options_.unix_path);
  }
  return absl::StrCat("nbd://", options_.tcp_address, ":", port_, "/");
}

absl::Status EpollServer::Start() {
  if (thread_.joinable()) return absl::FailedPreconditionError("started");
  stop_ = false;
  thread_ = std::thread([this] { Run().IgnoreError(); });
  return absl::OkStatus();
}

void EpollServer::Stop() {
  stop_ = true;
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status EpollServer::Run() {
  absl::flat_hash_map<int, std::unique_ptr<ServerConnection>> conns;
  absl::flat_hash_map<int, uint32_t> registered;  // fd -> epoll events
  auto finish = [&](int fd) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    registered.erase(fd);
    conns.erase(fd);  // closes the socket
    open_ = conns.size();
  };
  auto drive = [&](ServerConnection& c) {
    const int fd = c.fd();
    if (c.Pump()) return finish(fd);
    const uint32_t want = EpollEventsFor(c.wants());
    if (registered[fd] != want) {
      epoll_event ev{};
      ev.events = want;
      ev.data.fd = fd;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
      registered[fd] = want;
    }
  };
  absl::Status result;
  epoll_event events[64];
  while (!stop_) {
    const int n = ::epoll_wait(epoll_fd_, events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      result = Errno("epoll_wait");
      break;
    }
    for (int i = 0; i < n && !stop_; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) {
        uint64_t v;
        (void)!::read(wake_fd_, &v, sizeof(v));
        continue;
      }
      if (fd == listen_fd_) {
        while (true) {
          const int c = ::accept4(listen_fd_, nullptr, nullptr,
                                  SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;  // EAGAIN, or a transient error
          const uint64_t number = ++accepted_;
          if (conns.size() >= options_.max_connections) {
            ::close(c);
            continue;
          }
          if (options_.unix_path.empty()) {
            const int one = 1;
            ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          }
          ServerConnection::TraceSink sink;
          if (options_.on_trace) {
            sink = [this, number](absl::string_view message) {
              options_.on_trace(number, message);
            };
          }
          auto conn = std::make_unique<ServerConnection>(
              c, options_.session, backends_, std::move(sink));
          epoll_event ev{};
          ev.events = 0;
          ev.data.fd = c;
          ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c, &ev);
          registered[c] = 0;
          ServerConnection& ref = *conn;
          conns.emplace(c, std::move(conn));
          open_ = conns.size();
          drive(ref);  // sends the greeting
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it != conns.end()) drive(*it->second);
    }
  }
  conns.clear();
  registered.clear();
  open_ = 0;
  return result;
}

}  // namespace nbd
