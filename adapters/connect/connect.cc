// Socket connections: TCP, Unix, vsock, adopted descriptors and URIs.
// Subprocess transports are in subprocess.cc.
#include "adapters/connect/connect.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "adapters/connect/errno_status.h"
#include "adapters/connect/internal.h"
#include "protocol/status.h"

namespace nbd::adapters {
namespace {

using internal::InvalidArgument;
using internal::SystemError;
using internal::UniqueFd;

// Waits for a non-blocking connect() on `fd` to finish, for up to `timeout`.
absl::Status FinishConnect(int fd, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return SystemError(ETIMEDOUT, "connect timed out");
    }
    // Round up so that a sub-millisecond remainder still waits.
    const int64_t ms =
        absl::ToInt64Milliseconds(left + absl::Microseconds(999));
    pollfd pfd = {fd, POLLOUT, 0};
    const int n =
        poll(&pfd, 1, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return SystemError(errno, "poll");
    }
    if (n == 0) continue;  // re-check the deadline
    int error = 0;
    socklen_t len = sizeof(error);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0) {
      return SystemError(errno, "getsockopt(SO_ERROR)");
    }
    if (error != 0) return SystemError(error, "connect");
    return absl::OkStatus();
  }
}

// A non-blocking, close-on-exec stream socket connected to `address`.
absl::StatusOr<UniqueFd> ConnectOne(const SocketAddress& address,
                                    absl::Duration timeout) {
  UniqueFd fd(
      socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    const int e = errno;
    if (e == EAFNOSUPPORT && address.family() == AF_VSOCK) {
      return WithErrno(absl::UnimplementedError(
                           "AF_VSOCK is not supported by this kernel (socket: "
                           "Address family not supported by protocol)"),
                       e);
    }
    return SystemError(e, "socket");
  }
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&address.storage),
              address.length) < 0) {
    if (errno != EINPROGRESS && errno != EINTR) {
      return SystemError(errno, "connect");
    }
    if (absl::Status s = FinishConnect(fd.get(), timeout); !s.ok()) return s;
  }
  if (address.family() == AF_INET || address.family() == AF_INET6) {
    const int one = 1;
    if (setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
      return SystemError(errno, "setsockopt(TCP_NODELAY)");
    }
  }
  return fd;
}

timeval DurationToTimeval(absl::Duration d) {
  if (d < absl::Milliseconds(1)) d = absl::Milliseconds(1);
  return absl::ToTimeval(d);
}

// Re-labels `status` as "<prefix>: <message>", keeping its code and payloads.
absl::Status Prefixed(const absl::Status& status, absl::string_view prefix) {
  absl::Status out(status.code(), absl::StrCat(prefix, ": ", status.message()));
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& value) {
    out.SetPayload(url, value);
  });
  return out;
}

}  // namespace

namespace internal {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

absl::Status SetNonBlockingCloexec(int fd) {
  const int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    return SystemError(errno, "fcntl(O_NONBLOCK)");
  }
  const int fdfl = fcntl(fd, F_GETFD);
  if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0) {
    return SystemError(errno, "fcntl(FD_CLOEXEC)");
  }
  return absl::OkStatus();
}

}  // namespace internal

std::string SocketAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {};
  switch (family()) {
    case AF_INET: {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(&storage);
      inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
      return absl::StrCat(text, ":", ntohs(sin->sin_port));
    }
    case AF_INET6: {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&storage);
      inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
      std::string scope;
      if (sin6->sin6_scope_id != 0) {
        scope = absl::StrCat("%", sin6->sin6_scope_id);
      }
      return absl::StrCat("[", text, scope, "]:", ntohs(sin6->sin6_port));
    }
    case AF_UNIX: {
      const auto* sun = reinterpret_cast<const sockaddr_un*>(&storage);
      const size_t path_len = length > offsetof(sockaddr_un, sun_path)
                                  ? length - offsetof(sockaddr_un, sun_path)
                                  : 0;
      std::string path(sun->sun_path, path_len);
      if (!path.empty() && path[0] == '\0') {
        path[0] = '@';  // the conventional spelling of an abstract socket
      } else if (const size_t nul = path.find('\0'); nul != std::string::npos) {
        path.resize(nul);
      }
      return path;
    }
    case AF_VSOCK: {
      const auto* svm = reinterpret_cast<const sockaddr_vm*>(&storage);
      return absl::StrCat("vsock:", svm->svm_cid, ":", svm->svm_port);
    }
    default:
      return absl::StrCat("<address family ", family(), ">");
  }
}

absl::StatusOr<std::vector<SocketAddress>> ResolveTcp(std::string_view host_in,
                                                      uint16_t port) {
  absl::string_view host(host_in.data(), host_in.size());
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return InvalidArgument("ResolveTcp: empty host name");
  if (host.find('\0') != absl::string_view::npos) {
    return InvalidArgument("ResolveTcp: host name contains a NUL byte");
  }
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* result = nullptr;
  const std::string host_string(host);
  const std::string port_string = std::to_string(port);
  const int rc =
      getaddrinfo(host_string.c_str(), port_string.c_str(), &hints, &result);
  if (rc != 0) {
    const std::string context = absl::StrCat("cannot resolve '", host, "'");
    switch (rc) {
      case EAI_SYSTEM:
        return SystemError(errno, context);
      case EAI_AGAIN:
        return WithErrno(absl::UnavailableError(
                             absl::StrCat(context, ": ", gai_strerror(rc))),
                         EAGAIN);
      case EAI_MEMORY:
        return SystemError(ENOMEM, context);
      default:
        return WithErrno(
            absl::NotFoundError(absl::StrCat(context, ": ", gai_strerror(rc))),
            ENOENT);
    }
  }
  std::vector<SocketAddress> addresses;
  for (const addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    SocketAddress address;
    std::memcpy(&address.storage, ai->ai_addr, ai->ai_addrlen);
    address.length = ai->ai_addrlen;
    addresses.push_back(address);
  }
  freeaddrinfo(result);
  if (addresses.empty()) {
    return WithErrno(absl::NotFoundError(absl::StrCat(
                         "cannot resolve '", host, "': no usable addresses")),
                     ENOENT);
  }
  return addresses;
}

absl::StatusOr<int> ConnectAddresses(
    const std::vector<SocketAddress>& addresses,
    absl::Duration timeout_per_address) {
  if (addresses.empty()) {
    return InvalidArgument("ConnectAddresses: no addresses to connect to");
  }
  std::vector<std::string> failures;
  absl::Status last;
  for (const SocketAddress& address : addresses) {
    absl::StatusOr<UniqueFd> fd = ConnectOne(address, timeout_per_address);
    if (fd.ok()) return fd->release();
    last = fd.status();
    failures.push_back(absl::StrCat(address.ToString(), ": ", last.message()));
  }
  if (failures.size() == 1) return Prefixed(last, addresses[0].ToString());
  return Prefixed(last,
                  absl::StrCat("all ", addresses.size(), " addresses failed (",
                               absl::StrJoin(failures, "; "), ")"));
}

absl::StatusOr<int> ConnectTcp(std::string_view host_in, uint16_t port,
                               absl::Duration timeout_per_address) {
  const absl::string_view host(host_in.data(), host_in.size());
  const std::string what = absl::StrCat("connect to ", host, " port ", port);
  absl::StatusOr<std::vector<SocketAddress>> addresses =
      ResolveTcp(host_in, port);
  if (!addresses.ok()) return Prefixed(addresses.status(), what);
  absl::StatusOr<int> fd = ConnectAddresses(*addresses, timeout_per_address);
  if (!fd.ok()) return Prefixed(fd.status(), what);
  return fd;
}

absl::StatusOr<int> ConnectUnix(std::string_view path_in,
                                absl::Duration timeout) {
  const absl::string_view path(path_in.data(), path_in.size());
  if (path.empty()) return InvalidArgument("ConnectUnix: empty socket path");
  const bool abstract = path[0] == '\0';
  sockaddr_un sun = {};
  // A filesystem path needs room for its terminating NUL; an abstract name
  // (leading NUL) may use every byte of sun_path.
  const size_t max = abstract ? sizeof(sun.sun_path) : kMaxUnixSocketPathLength;
  if (path.size() > max) {
    return InvalidArgument(
        absl::StrCat("Unix socket path is ", path.size(),
                     " bytes, longer than the limit of ", max,
                     " bytes: ", abstract ? "(abstract)" : path),
        ENAMETOOLONG);
  }
  if (!abstract && path.find('\0') != absl::string_view::npos) {
    return InvalidArgument("Unix socket path contains a NUL byte");
  }
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path.data(), path.size());
  const socklen_t length = static_cast<socklen_t>(
      offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  const std::string what = absl::StrCat(
      "connect to Unix socket ",
      abstract ? absl::StrCat("@", path.substr(1)) : std::string(path));

  // A non-blocking connect() on a Unix socket fails with EAGAIN instead of
  // waiting when the backlog is full, and cannot be polled. A blocking
  // connect() waits at most SO_SNDTIMEO instead; then O_NONBLOCK is set.
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return SystemError(errno, absl::StrCat(what, ": socket"));
  const timeval tv = DurationToTimeval(timeout);
  if (setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
    return SystemError(errno, absl::StrCat(what, ": setsockopt(SO_SNDTIMEO)"));
  }
  int rc;
  do {
    rc = connect(fd.get(), reinterpret_cast<const sockaddr*>(&sun), length);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    if (errno == EAGAIN || errno == EINPROGRESS) {
      return SystemError(ETIMEDOUT, absl::StrCat(what, " (backlog full)"));
    }
    return SystemError(errno, what);
  }
  const timeval zero = {};
  if (setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof(zero)) < 0) {
    return SystemError(errno, absl::StrCat(what, ": setsockopt(SO_SNDTIMEO)"));
  }
  if (absl::Status s = internal::SetNonBlockingCloexec(fd.get()); !s.ok()) {
    return Prefixed(s, what);
  }
  return fd.release();
}

absl::StatusOr<int> ConnectVsock(uint32_t cid, uint32_t port,
                                 absl::Duration timeout) {
  SocketAddress address;
  auto* svm = reinterpret_cast<sockaddr_vm*>(&address.storage);
  svm->svm_family = AF_VSOCK;
  svm->svm_cid = cid;
  svm->svm_port = port;
  address.length = sizeof(sockaddr_vm);
  absl::StatusOr<UniqueFd> fd = ConnectOne(address, timeout);
  if (!fd.ok()) {
    return Prefixed(fd.status(),
                    absl::StrCat("connect to ", address.ToString()));
  }
  return fd->release();
}

absl::StatusOr<int> AdoptFd(int fd) {
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
    return InvalidArgument(
        absl::StrCat("AdoptFd: ", fd, " is not an open file descriptor"),
        EBADF);
  }
  struct stat st;
  if (fstat(fd, &st) < 0) return SystemError(errno, "AdoptFd: fstat");
  if (!S_ISSOCK(st.st_mode)) {
    return InvalidArgument(
        absl::StrCat("AdoptFd: descriptor ", fd, " is not a socket"), ENOTSOCK);
  }
  int type = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
    return SystemError(errno, "AdoptFd: getsockopt(SO_TYPE)");
  }
  if (type != SOCK_STREAM) {
    return InvalidArgument(
        absl::StrCat("AdoptFd: socket ", fd, " is not a SOCK_STREAM socket"),
        EPROTOTYPE);
  }
  sockaddr_storage peer;
  socklen_t peer_len = sizeof(peer);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) < 0) {
    const int e = errno;
    if (e == ENOTCONN) {
      return WithErrno(absl::FailedPreconditionError(absl::StrCat(
                           "AdoptFd: socket ", fd, " is not connected")),
                       e);
    }
    return SystemError(e, "AdoptFd: getpeername");
  }
  if (absl::Status s = internal::SetNonBlockingCloexec(fd); !s.ok()) {
    return Prefixed(s, "AdoptFd");
  }
  return fd;
}

absl::StatusOr<Connection> ConnectUri(const NbdUri& uri, absl::Duration timeout,
                                      const UriPolicy& policy) {
  const std::string description = FormatNbdUri(uri);
  if (absl::Status s = CheckUriPolicy(uri, policy); !s.ok()) {
    return Prefixed(s, description);
  }
  if (absl::Status s = CheckUriSupported(uri); !s.ok()) {
    return Prefixed(s, description);
  }
  absl::StatusOr<int> fd;
  switch (uri.transport) {
    case NbdUri::kTcp:
      fd = ConnectTcp(uri.host.empty() ? "localhost" : uri.host, uri.port,
                      timeout);
      break;
    case NbdUri::kUnix:
      fd = ConnectUnix(uri.socket_path, timeout);
      break;
    case NbdUri::kVsock:
      fd = ConnectVsock(uri.vsock_cid, uri.vsock_port, timeout);
      break;
  }
  if (!fd.ok()) return Prefixed(fd.status(), description);
  Connection connection;
  connection.fd = *fd;
  connection.export_name = uri.export_name;
  connection.description_for_errors = description;
  connection.uri = uri;
  return connection;
}

absl::StatusOr<Connection> ConnectUri(std::string_view uri,
                                      absl::Duration timeout,
                                      const UriPolicy& policy) {
  absl::StatusOr<NbdUri> parsed = ParseNbdUri(uri);
  if (!parsed.ok()) return parsed.status();
  return ConnectUri(*parsed, timeout, policy);
}

absl::Status CloseConnection(Connection& connection, absl::Duration grace) {
  if (connection.fd >= 0) {
    close(connection.fd);
    connection.fd = -1;
  }
  if (!connection.subprocess.has_value()) return absl::OkStatus();
  connection.subprocess->fd = -1;
  absl::StatusOr<int> status = StopSubprocess(*connection.subprocess, grace);
  if (!status.ok()) return status.status();
  connection.subprocess.reset();
  return absl::OkStatus();
}

}  // namespace nbd::adapters
