#include "adapters/server/epoll_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "adapters/server/server_connection.h"
#include "protocol/status.h"

namespace nbd {
namespace {

using Clock = std::chrono::steady_clock;

// Connections accepted per readiness of the listening socket.
constexpr size_t kAcceptsPerRound = 256;

// Descriptors the process may still open besides the connections: stdio,
// backends' files, a descriptor being accepted, and what libraries open.
constexpr size_t kSpareDescriptors = 16;

// How many descriptors this process has open now.
size_t OpenDescriptors() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return kSpareDescriptors;  // no /proc: a guess
  size_t n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n > 0 ? n - 1 : 0;  // not counting the directory's own
}

// `wanted` lowered so that that many connections fit the open-file limit.
size_t FitToDescriptorLimit(size_t wanted) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
    return wanted;
  }
  const size_t limit = static_cast<size_t>(rl.rlim_cur);
  const size_t used = OpenDescriptors() + kSpareDescriptors;
  const size_t room = limit > used ? limit - used : 1;
  return std::max<size_t>(1, std::min(wanted, room));
}

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
  if (options.max_connections == 0) {
    return absl::InvalidArgumentError("EpollServer: max_connections is 0");
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
  // After Listen(), so the loop's own descriptors are counted.
  o.max_connections = FitToDescriptorLimit(o.max_connections);
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
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (reserve_fd_ < 0) return Errno("open /dev/null");
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
  for (int fd : {listen_fd_, epoll_fd_, wake_fd_, reserve_fd_}) {
    if (fd >= 0) ::close(fd);
  }
  if (owns_unix_path_) ::unlink(options_.unix_path.c_str());
}

std::string EpollServer::uri() const {
  // nbds: the client must insist on TLS (libnbd's meaning), which a server
  // offering it (--tls=on) serves as well as one requiring it.
  const char* scheme =
      options_.session.tls != ServerTlsMode::kOff ? "nbds" : "nbd";
  if (!options_.unix_path.empty()) {
    return absl::StrCat(scheme, "+unix:///?socket=", options_.unix_path);
  }
  return absl::StrCat(scheme, "://", options_.tcp_address, ":", port_, "/");
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

EpollServerStats EpollServer::stats() const {
  EpollServerStats st;
  st.accepted = accepted_.load();
  st.refused = refused_.load();
  st.handshake_timeouts = handshake_timeouts_.load();
  st.open = open_.load();
  st.queued_output_bytes = queued_.load();
  st.peak_queued_output_bytes = peak_queued_.load();
  return st;
}

absl::Status EpollServer::Run() {
  struct Conn {
    std::unique_ptr<ServerConnection> connection;
    uint64_t number = 0;      // EpollServerOptions::on_trace's number
    uint32_t registered = 0;  // epoll events asked for
    size_t queued = 0;        // its share of queued_
  };
  absl::flat_hash_map<int, Conn> conns;  // by fd
  // Handshake deadlines in accept order, which with one timeout for all is
  // deadline order. Entries of connections that left the handshake or
  // closed are dropped when they reach the front; `number` tells a reused
  // fd from the connection the entry was made for.
  struct Deadline {
    Clock::time_point at;
    int fd;
    uint64_t number;
  };
  std::deque<Deadline> deadlines;
  const bool timed = options_.handshake_timeout > absl::ZeroDuration();
  const auto handshake_timeout = std::chrono::duration_cast<Clock::duration>(
      absl::ToChronoNanoseconds(options_.handshake_timeout));
  size_t queued_sum = 0;

  auto trace = [&](uint64_t number, absl::string_view line) {
    if (options_.on_trace) options_.on_trace(number, line);
  };
  auto finish = [&](int fd) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    auto it = conns.find(fd);
    if (it != conns.end()) {
      queued_sum -= it->second.queued;
      conns.erase(it);  // closes the socket
    }
    open_ = conns.size();
    queued_ = queued_sum;
  };
  auto drive = [&](Conn& c) {
    ServerConnection& sc = *c.connection;
    const int fd = sc.fd();
    if (sc.Pump()) return finish(fd);
    const size_t queued = sc.session().pending_output_bytes();
    queued_sum = queued_sum - c.queued + queued;
    c.queued = queued;
    queued_ = queued_sum;
    if (sc.peak_pending_output() > peak_queued_.load()) {
      peak_queued_ = sc.peak_pending_output();
    }
    const uint32_t want = EpollEventsFor(sc.wants());
    if (c.registered != want) {
      epoll_event ev{};
      ev.events = want;
      ev.data.fd = fd;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
      c.registered = want;
    }
  };
  // Closes the connections whose handshake deadline passed; returns the
  // epoll_wait timeout until the next deadline (-1: none).
  auto expire = [&]() -> int {
    const Clock::time_point now = Clock::now();
    while (!deadlines.empty()) {
      const Deadline d = deadlines.front();
      auto it = conns.find(d.fd);
      if (it == conns.end() || it->second.number != d.number ||
          !it->second.connection->handshaking()) {
        deadlines.pop_front();
        continue;
      }
      if (d.at > now) {
        // Rounded up, so the wait never ends just before the deadline.
        const auto ms =
            std::chrono::ceil<std::chrono::milliseconds>(d.at - now);
        return static_cast<int>(std::min<int64_t>(ms.count(), 1 << 30));
      }
      deadlines.pop_front();
      ++handshake_timeouts_;
      trace(d.number,
            absl::StrCat("dropped: handshake not finished within ",
                         absl::FormatDuration(options_.handshake_timeout)));
      finish(d.fd);
    }
    return -1;
  };
  // Accepts the pending connections, at most kAcceptsPerRound (a flood of
  // connects must not starve the open connections; the listening socket
  // stays readable for the rest). Not cut short by Stop(): what is
  // accepted here is closed with the rest when the loop ends.
  auto accept_all = [&] {
    for (size_t round = 0; round < kAcceptsPerRound; ++round) {
      const int c =
          ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if ((errno == EMFILE || errno == ENFILE) && reserve_fd_ >= 0) {
          // Out of descriptors: take the connection on the reserved one
          // and close it, rather than leave it pending (the listening
          // socket would stay readable and the loop spin).
          ::close(reserve_fd_);
          const int r = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
          if (r >= 0) {
            const uint64_t number = ++accepted_;
            ++refused_;
            ::close(r);
            trace(number, "refused: out of file descriptors");
          }
          reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
          if (r >= 0) continue;
        }
        break;  // EAGAIN: none left (or a transient error; epoll retries)
      }
      const uint64_t number = ++accepted_;
      if (conns.size() >= options_.max_connections) {
        ++refused_;  // before close(): the client may look at once
        ::close(c);
        trace(number, absl::StrFormat("refused: %d connections open "
                                      "(max_connections)",
                                      conns.size()));
        continue;
      }
      if (options_.unix_path.empty()) {
        const int one = 1;
        ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      }
      epoll_event ev{};
      ev.events = 0;
      ev.data.fd = c;
      if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c, &ev) != 0) {
        ++refused_;  // the kernel's epoll limits: refuse, keep serving
        ::close(c);
        continue;
      }
      ServerConnection::TraceSink sink;
      if (options_.on_trace) {
        sink = [this, number](absl::string_view message) {
          options_.on_trace(number, message);
        };
      }
      Conn& conn = conns[c];
      conn.connection = std::make_unique<ServerConnection>(
          c, options_.session, backends_, std::move(sink));
      conn.number = number;
      open_ = conns.size();
      if (timed) {
        deadlines.push_back({Clock::now() + handshake_timeout, c, number});
      }
      drive(conn);  // sends the greeting
    }
  };

  absl::Status result;
  epoll_event events[64];
  while (!stop_) {
    const int timeout_ms = expire();
    const int n = ::epoll_wait(epoll_fd_, events, 64, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      result = Errno("epoll_wait");
      break;
    }
    bool accept_pending = false;
    for (int i = 0; i < n && !stop_; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) {
        uint64_t v;
        (void)!::read(wake_fd_, &v, sizeof(v));
        continue;
      }
      if (fd == listen_fd_) {
        accept_pending = true;  // after the others: closed ones free slots
        continue;
      }
      auto it = conns.find(fd);
      if (it != conns.end()) drive(it->second);
    }
    if (accept_pending && !stop_) accept_all();
  }
  conns.clear();
  open_ = 0;
  queued_ = 0;
  return result;
}

}  // namespace nbd
