// Establishing the byte stream an NBD client runs over.
//
// Every Connect* function returns a connected stream socket that is
// non-blocking (O_NONBLOCK) and close-on-exec (FD_CLOEXEC), ready to be driven
// by an adapter. The caller owns the returned descriptor and must close() it.
// Nothing here speaks NBD: the server's greeting is still unread.
//
// Sockets are plain sockets, so writing to one whose peer has gone raises
// SIGPIPE unless the caller uses send(..., MSG_NOSIGNAL) or ignores SIGPIPE.
//
// Errors: a failed system call gives the canonical code for its errno
// (absl::ErrnoToStatusCode: ECONNREFUSED -> kUnavailable, ETIMEDOUT ->
// kDeadlineExceeded, ENOENT -> kNotFound, ...), a message naming what was
// being done and the strerror text, and the errno attached as a status
// payload, readable with nbd::StatusErrno() (protocol/status.h). Bad
// arguments give kInvalidArgument (EINVAL or ENAMETOOLONG).
//
// Subprocesses (ConnectCommand, ConnectSocketActivation) are started with
// fork() and execve(): the argv and environment arrays are built before the
// fork, and the child calls only async-signal-safe functions before execve().
// In the child the signal mask is cleared, SIGPIPE is reset to SIG_DFL, and
// every descriptor above those it is given is marked close-on-exec (Linux
// close_range(2); skipped where unsupported). stderr is inherited. If the
// program cannot be executed, the call fails with the errno from execve() and
// the child has already been reaped. Otherwise the caller must eventually
// call StopSubprocess() (or CloseConnection()) to reap the child.
#ifndef NBD_ADAPTERS_CONNECT_CONNECT_H_
#define NBD_ADAPTERS_CONNECT_CONNECT_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "adapters/connect/uri.h"

namespace nbd::adapters {

// The default per-address connect timeout.
inline constexpr absl::Duration kDefaultConnectTimeout = absl::Seconds(30);

// The longest Unix socket path connect(2) accepts (sizeof sun_path - 1).
inline constexpr size_t kMaxUnixSocketPathLength = 107;

// One resolved socket address.
struct SocketAddress {
  sockaddr_storage storage = {};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  // "127.0.0.1:10809", "[::1]:10809", "/path" or "vsock:CID:PORT".
  std::string ToString() const;
};

// Resolves `host` (a name, an IPv4 address, or an IPv6 address with or without
// brackets) with getaddrinfo(AF_UNSPEC, SOCK_STREAM), in the order getaddrinfo
// returns them. getaddrinfo cannot be cancelled, so name resolution itself is
// not bounded by any timeout. Failure: kNotFound (or kUnavailable for
// EAI_AGAIN) naming the host and the gai_strerror text.
absl::StatusOr<std::vector<SocketAddress>> ResolveTcp(std::string_view host,
                                                      uint16_t port);

// Tries every address in order: a non-blocking connect() and a poll() for at
// most `timeout_per_address` each, stopping at the first that connects. TCP
// sockets get TCP_NODELAY. If all fail, the status is that of the last
// attempt and its message lists every address with its error.
absl::StatusOr<int> ConnectAddresses(
    const std::vector<SocketAddress>& addresses,
    absl::Duration timeout_per_address = kDefaultConnectTimeout);

// ResolveTcp + ConnectAddresses, like nbd_connect_tcp: e.g. "localhost" may
// try [::1] first and then 127.0.0.1.
absl::StatusOr<int> ConnectTcp(
    std::string_view host, uint16_t port,
    absl::Duration timeout_per_address = kDefaultConnectTimeout);

// Connects to the Unix stream socket at `path`. A path starting with a NUL
// byte names a socket in the Linux abstract namespace. A path longer than
// kMaxUnixSocketPathLength bytes is kInvalidArgument (ENAMETOOLONG). The
// connect is bounded by `timeout` (it can only block while the listener's
// backlog is full).
absl::StatusOr<int> ConnectUnix(
    std::string_view path, absl::Duration timeout = kDefaultConnectTimeout);

// Connects to AF_VSOCK `cid`:`port` (e.g. cid 2 = the host, 1 = local
// loopback). Where the kernel has no AF_VSOCK support the status is
// kUnimplemented (EAFNOSUPPORT); a peer that does not answer gives
// kDeadlineExceeded (ETIMEDOUT) after `timeout`.
absl::StatusOr<int> ConnectVsock(
    uint32_t cid, uint32_t port,
    absl::Duration timeout = kDefaultConnectTimeout);

// Validates an already-connected socket supplied by the caller (like
// nbd_connect_socket): `fd` must be open, a SOCK_STREAM socket and connected
// (getpeername succeeds). On success it is made non-blocking and
// close-on-exec and returned; ownership passes to the caller's connection. On
// failure `fd` is left untouched (kInvalidArgument for a non-socket, a
// non-stream socket or a bad descriptor; kFailedPrecondition, ENOTCONN, for
// an unconnected socket).
absl::StatusOr<int> AdoptFd(int fd);

// A server running as our child process, and our end of its socket.
struct Subprocess {
  int fd = -1;     // our end: connected, non-blocking, close-on-exec
  pid_t pid = -1;  // -1 once reaped by StopSubprocess
};

// Runs `argv` (argv[0] is looked up in $PATH unless it contains '/') with one
// end of a socketpair as its stdin and stdout, like nbd_connect_command (e.g.
// {"nbdkit", "-s", "memory", "1M"}). The child's stderr is ours. The child's
// socket end is blocking.
absl::StatusOr<Subprocess> ConnectCommand(const std::vector<std::string>& argv);

struct SocketActivationOptions {
  // If non-empty, passed as LISTEN_FDNAMES (nbd_set_socket_activation_name).
  // At most 255 printable ASCII characters and no ':'.
  std::string fd_name;
  // Bounds connecting to the listening socket.
  absl::Duration connect_timeout = kDefaultConnectTimeout;
};

// systemd-style socket activation, like nbd_connect_systemd_socket_activation:
// creates a Unix listening socket in a fresh mkdtemp directory under /tmp,
// starts `argv` with that socket as descriptor 3 and LISTEN_FDS=1,
// LISTEN_PID=<the child's pid> (written in the child between fork and exec),
// and LISTEN_FDNAMES if requested (any LISTEN_* variables we inherited are
// dropped), then connects to it. Our copy of the listening socket, the socket
// file and the directory are gone when this returns. If connecting fails the
// child is stopped before returning.
absl::StatusOr<Subprocess> ConnectSocketActivation(
    const std::vector<std::string>& argv,
    const SocketActivationOptions& options = {});

// Stops a child: SIGTERM, then waitpid(WNOHANG) polls for up to `grace`, then
// SIGKILL and polls again for a fixed bound (5 s). It never blocks without
// bound. Returns the raw waitpid status (use WIFEXITED etc.) and sets
// `sp.pid` to -1 once the child is reaped (also if it had already exited).
// Does not close `sp.fd`: close it first to let a server such as `nbdkit -s`
// see EOF. kFailedPrecondition if `sp.pid` <= 0; kDeadlineExceeded if even
// SIGKILL did not let us reap it (pid kept, so it can be retried).
absl::StatusOr<int> StopSubprocess(Subprocess& sp,
                                   absl::Duration grace = absl::Seconds(5));

// A connection made from a URI.
struct Connection {
  int fd = -1;  // connected, non-blocking, close-on-exec; owned
  // Set if the connection runs to a child process; its fd equals `fd`.
  std::optional<Subprocess> subprocess;
  std::string export_name;             // from the URI
  std::string description_for_errors;  // e.g. "nbd://example.com/disk"
  // The URI connected to (ConnectUri only): the adapters apply its TLS
  // settings (ApplyUriTls) over the caller's ClientOptions.
  std::optional<NbdUri> uri;
};

// Connects to the endpoint `uri` names, after CheckUriPolicy(uri, policy)
// (EPERM: the policy forbids what the URI asks) and CheckUriSupported(uri)
// (TLS parameters that cannot be honoured), both before connecting:
// kTcp -> ConnectTcp(host or "localhost", port), kUnix -> ConnectUnix,
// kVsock -> ConnectVsock. Error messages are prefixed with the URI. The
// default policy is libnbd's: a URI may not name local files
// (tls-certificates, tls-psk-file); pass UriPolicy::Trusted() for URIs
// the program's own user gave.
absl::StatusOr<Connection> ConnectUri(
    const NbdUri& uri, absl::Duration timeout = kDefaultConnectTimeout,
    const UriPolicy& policy = UriPolicy());

// ParseNbdUri + ConnectUri.
absl::StatusOr<Connection> ConnectUri(
    std::string_view uri, absl::Duration timeout = kDefaultConnectTimeout,
    const UriPolicy& policy = UriPolicy());

// Closes `connection.fd` (sets it to -1), then stops and reaps its
// subprocess, if any, with StopSubprocess(grace). Returns the stop status.
absl::Status CloseConnection(Connection& connection,
                             absl::Duration grace = absl::Seconds(5));

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_CONNECT_CONNECT_H_
