// Tests of adapters/connect/connect.h against real servers started here:
// nbdkit on Unix sockets, loopback TCP, as a `-s` subprocess and under socket
// activation, and qemu-nbd under socket activation.
#include "adapters/connect/connect.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/status.h"
#include "tests/adapters/connect/nbd_test_server.h"

namespace nbd::adapters {
namespace {

using ::nbd::adapters::testing::FindProgram;
using ::nbd::adapters::testing::kServerTimeout;
using ::nbd::adapters::testing::NbdkitServer;
using ::nbd::adapters::testing::ReadExactly;
using ::nbd::adapters::testing::ReadNewstyleGreeting;
using ::nbd::adapters::testing::ShortTempDir;
using ::nbd::adapters::testing::WriteAll;
using ::testing::AnyOf;
using ::testing::HasSubstr;

const std::vector<std::string> kMemory = {"memory", "1M"};

// An open descriptor that is closed at the end of the scope.
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Stops a subprocess at the end of the scope (after closing its socket).
class ScopedSubprocess {
 public:
  explicit ScopedSubprocess(Subprocess sp) : sp_(sp) {}
  ~ScopedSubprocess() {
    if (sp_.fd >= 0) close(sp_.fd);
    if (sp_.pid > 0) StopSubprocess(sp_, absl::Seconds(5)).IgnoreError();
  }
  ScopedSubprocess(const ScopedSubprocess&) = delete;
  ScopedSubprocess& operator=(const ScopedSubprocess&) = delete;
  Subprocess& get() { return sp_; }

 private:
  Subprocess sp_;
};

void ExpectNonBlockingCloexec(int fd) {
  const int fl = fcntl(fd, F_GETFL);
  ASSERT_GE(fl, 0);
  EXPECT_TRUE(fl & O_NONBLOCK) << "fd " << fd << " is blocking";
  const int fdfl = fcntl(fd, F_GETFD);
  ASSERT_GE(fdfl, 0);
  EXPECT_TRUE(fdfl & FD_CLOEXEC) << "fd " << fd << " is not close-on-exec";
}

// The peer of a connected IPv4/IPv6 socket, e.g. "127.0.0.1".
std::string PeerAddress(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return "";
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, text,
              sizeof(text));
  } else if (ss.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, text,
              sizeof(text));
  }
  return text;
}

std::unique_ptr<NbdkitServer> StartUnixOrDie() {
  absl::StatusOr<std::unique_ptr<NbdkitServer>> server =
      NbdkitServer::StartUnix(kMemory);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

std::unique_ptr<NbdkitServer> StartTcpOrDie() {
  absl::StatusOr<std::unique_ptr<NbdkitServer>> server =
      NbdkitServer::StartTcp("127.0.0.1", kMemory);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

// A bound but not listening IPv4 loopback socket: connecting to its port is
// refused, and nobody else can take the port while it exists.
struct ClosedPort {
  ScopedFd fd;
  uint16_t port = 0;
  ClosedPort() : fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in sin = {};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) == 0 &&
        getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len) == 0) {
      port = ntohs(sin.sin_port);
    }
  }
};

// --- Unix sockets -----------------------------------------------------------

TEST(ConnectUnixTest, ConnectsToNbdkit) {
  std::unique_ptr<NbdkitServer> server = StartUnixOrDie();
  ASSERT_NE(server, nullptr);
  absl::StatusOr<int> fd = ConnectUnix(server->socket_path());
  ASSERT_TRUE(fd.ok()) << fd.status();
  ScopedFd closer(*fd);
  ExpectNonBlockingCloexec(*fd);
  EXPECT_TRUE(ReadNewstyleGreeting(*fd).ok());
}

TEST(ConnectUnixTest, MissingPathIsNotFound) {
  absl::StatusOr<std::unique_ptr<ShortTempDir>> dir = ShortTempDir::Create();
  ASSERT_TRUE(dir.ok());
  const std::string path = (*dir)->File("no-such-socket");
  absl::StatusOr<int> fd = ConnectUnix(path);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kNotFound) << fd.status();
  EXPECT_EQ(StatusErrno(fd.status()), ENOENT);
  EXPECT_THAT(fd.status().message(), HasSubstr(path));
}

TEST(ConnectUnixTest, NonSocketFileIsRefused) {
  absl::StatusOr<std::unique_ptr<ShortTempDir>> dir = ShortTempDir::Create();
  ASSERT_TRUE(dir.ok());
  const std::string path = (*dir)->File("file");
  std::ofstream(path) << "x";
  absl::StatusOr<int> fd = ConnectUnix(path);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(StatusErrno(fd.status()), ECONNREFUSED) << fd.status();
}

TEST(ConnectUnixTest, TooLongPathIsAClearError) {
  const std::string path = "/tmp/" + std::string(103, 'x');  // 108 bytes
  absl::StatusOr<int> fd = ConnectUnix(path);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusErrno(fd.status()), ENAMETOOLONG);
  EXPECT_THAT(fd.status().message(), HasSubstr("108 bytes"));
  EXPECT_THAT(fd.status().message(), HasSubstr("107"));
  // 107 bytes is fine as far as the length goes.
  absl::StatusOr<int> fits = ConnectUnix("/tmp/" + std::string(102, 'x'));
  ASSERT_FALSE(fits.ok());
  EXPECT_EQ(StatusErrno(fits.status()), ENOENT) << fits.status();
}

// A Unix listener whose backlog is full makes connect() wait; the timeout
// (SO_SNDTIMEO) must end the wait.
TEST(ConnectUnixTest, TimesOutWhenTheBacklogIsFull) {
  absl::StatusOr<std::unique_ptr<ShortTempDir>> dir = ShortTempDir::Create();
  ASSERT_TRUE(dir.ok());
  const std::string path = (*dir)->File("sock");
  ScopedFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sun = {};
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(
      bind(listener.get(), reinterpret_cast<sockaddr*>(&sun), sizeof(sun)), 0);
  ASSERT_EQ(listen(listener.get(), 0), 0);
  std::vector<std::unique_ptr<ScopedFd>> queued;
  for (int i = 0; i < 16; ++i) {
    const absl::Time start = absl::Now();
    absl::StatusOr<int> fd = ConnectUnix(path, absl::Milliseconds(300));
    if (fd.ok()) {
      queued.push_back(std::make_unique<ScopedFd>(*fd));
      continue;
    }
    EXPECT_EQ(fd.status().code(), absl::StatusCode::kDeadlineExceeded)
        << fd.status();
    EXPECT_EQ(StatusErrno(fd.status()), ETIMEDOUT);
    EXPECT_THAT(fd.status().message(), HasSubstr("backlog full"));
    EXPECT_LT(absl::Now() - start, absl::Seconds(30));
    return;
  }
  GTEST_SKIP() << "this kernel never let the Unix backlog fill up";
}

TEST(ConnectUnixTest, EmptyPathIsInvalid) {
  EXPECT_EQ(ConnectUnix("").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ConnectUnixTest, AbstractSocket) {
  const std::string name =
      absl::StrCat(std::string(1, '\0'), "nbd-engine-connect-test-", getpid());
  ScopedFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sun = {};
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, name.data(), name.size());
  const socklen_t len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  if (bind(listener.get(), reinterpret_cast<sockaddr*>(&sun), len) < 0) {
    GTEST_SKIP() << "abstract Unix sockets unavailable: "
                 << std::strerror(errno);
  }
  ASSERT_EQ(listen(listener.get(), 1), 0);
  absl::StatusOr<int> fd = ConnectUnix(name);
  ASSERT_TRUE(fd.ok()) << fd.status();
  ScopedFd closer(*fd);
  ScopedFd accepted(accept(listener.get(), nullptr, nullptr));
  ASSERT_GE(accepted.get(), 0);
  ASSERT_TRUE(WriteAll(accepted.get(), "hi", kServerTimeout).ok());
  absl::StatusOr<std::string> got = ReadExactly(*fd, 2, kServerTimeout);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "hi");
}

// --- TCP --------------------------------------------------------------------

TEST(ConnectTcpTest, ConnectsToNbdkitOnLoopback) {
  std::unique_ptr<NbdkitServer> server = StartTcpOrDie();
  ASSERT_NE(server, nullptr);
  absl::StatusOr<int> fd = ConnectTcp("127.0.0.1", server->port());
  ASSERT_TRUE(fd.ok()) << fd.status();
  ScopedFd closer(*fd);
  ExpectNonBlockingCloexec(*fd);
  int nodelay = 0;
  socklen_t len = sizeof(nodelay);
  ASSERT_EQ(getsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
  EXPECT_NE(nodelay, 0) << "TCP_NODELAY is not set";
  EXPECT_TRUE(ReadNewstyleGreeting(*fd).ok());
}

// The server listens on 127.0.0.1 only, so if "localhost" resolves to ::1
// first, that attempt is refused and 127.0.0.1 must still be tried.
TEST(ConnectTcpTest, LocalhostReachesAnIpv4OnlyServer) {
  std::unique_ptr<NbdkitServer> server = StartTcpOrDie();
  ASSERT_NE(server, nullptr);
  absl::StatusOr<int> fd = ConnectTcp("localhost", server->port());
  ASSERT_TRUE(fd.ok()) << fd.status();
  ScopedFd closer(*fd);
  EXPECT_EQ(PeerAddress(*fd), "127.0.0.1");
  EXPECT_TRUE(ReadNewstyleGreeting(*fd).ok());
}

// The same without depending on /etc/hosts: [::1] (refused), then 127.0.0.1.
TEST(ConnectTcpTest, TriesEveryAddressInOrder) {
  std::unique_ptr<NbdkitServer> server = StartTcpOrDie();
  ASSERT_NE(server, nullptr);
  absl::StatusOr<std::vector<SocketAddress>> v6 =
      ResolveTcp("::1", server->port());
  absl::StatusOr<std::vector<SocketAddress>> v4 =
      ResolveTcp("127.0.0.1", server->port());
  ASSERT_TRUE(v6.ok()) << v6.status();
  ASSERT_TRUE(v4.ok()) << v4.status();
  ASSERT_EQ(v6->size(), 1u);
  ASSERT_EQ(v4->size(), 1u);
  EXPECT_EQ((*v6)[0].ToString(), absl::StrCat("[::1]:", server->port()));
  EXPECT_EQ((*v4)[0].ToString(), absl::StrCat("127.0.0.1:", server->port()));
  std::vector<SocketAddress> both = {(*v6)[0], (*v4)[0]};
  absl::StatusOr<int> fd = ConnectAddresses(both, absl::Seconds(10));
  ASSERT_TRUE(fd.ok()) << fd.status();
  ScopedFd closer(*fd);
  EXPECT_EQ(PeerAddress(*fd), "127.0.0.1");
  EXPECT_TRUE(ReadNewstyleGreeting(*fd).ok());
}

TEST(ConnectTcpTest, ClosedPortIsRefused) {
  ClosedPort closed;
  ASSERT_NE(closed.port, 0);
  absl::StatusOr<int> fd = ConnectTcp("127.0.0.1", closed.port);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kUnavailable) << fd.status();
  EXPECT_EQ(StatusErrno(fd.status()), ECONNREFUSED);
  EXPECT_THAT(fd.status().message(), HasSubstr("Connection refused"));
  EXPECT_THAT(fd.status().message(),
              HasSubstr(absl::StrCat("127.0.0.1 port ", closed.port)));
}

TEST(ConnectTcpTest, AllAddressesFailingListsEach) {
  ClosedPort closed;
  ASSERT_NE(closed.port, 0);
  absl::StatusOr<std::vector<SocketAddress>> v6 =
      ResolveTcp("[::1]", closed.port);
  absl::StatusOr<std::vector<SocketAddress>> v4 =
      ResolveTcp("127.0.0.1", closed.port);
  ASSERT_TRUE(v6.ok() && v4.ok());
  absl::StatusOr<int> fd =
      ConnectAddresses({(*v6)[0], (*v4)[0]}, absl::Seconds(10));
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(StatusErrno(fd.status()), ECONNREFUSED);
  EXPECT_THAT(fd.status().message(), HasSubstr("all 2 addresses failed"));
  EXPECT_THAT(fd.status().message(), HasSubstr("[::1]:"));
  EXPECT_THAT(fd.status().message(), HasSubstr("127.0.0.1:"));
}

TEST(ConnectTcpTest, BadArguments) {
  EXPECT_EQ(ConnectTcp("", 10809).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ConnectAddresses({}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A listener with a full accept queue drops SYNs, so connect() hangs: the
// per-address timeout must end it.
TEST(ConnectTcpTest, TimesOut) {
  ScopedFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  ASSERT_EQ(
      bind(listener.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  ASSERT_EQ(
      getsockname(listener.get(), reinterpret_cast<sockaddr*>(&sin), &len), 0);
  ASSERT_EQ(listen(listener.get(), 0), 0);
  const uint16_t port = ntohs(sin.sin_port);
  std::vector<std::unique_ptr<ScopedFd>> queued;
  for (int i = 0; i < 16; ++i) {
    const absl::Time start = absl::Now();
    absl::StatusOr<int> fd =
        ConnectTcp("127.0.0.1", port, absl::Milliseconds(300));
    if (fd.ok()) {
      queued.push_back(std::make_unique<ScopedFd>(*fd));
      continue;
    }
    EXPECT_EQ(fd.status().code(), absl::StatusCode::kDeadlineExceeded)
        << fd.status();
    EXPECT_EQ(StatusErrno(fd.status()), ETIMEDOUT);
    EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));
    EXPECT_LT(absl::Now() - start, absl::Seconds(30));
    return;
  }
  GTEST_SKIP() << "this network stack never let the accept queue fill up";
}

// --- vsock ------------------------------------------------------------------

// Where AF_VSOCK and the loopback transport exist, connect to nbdkit --vsock
// through CID 1 (VMADDR_CID_LOCAL); otherwise the failure must be a clean
// status within the timeout.
TEST(ConnectVsockTest, LoopbackOrCleanFailure) {
  const uint32_t port = 20000 + static_cast<uint32_t>(getpid() % 20000);
  absl::StatusOr<std::unique_ptr<NbdkitServer>> server =
      NbdkitServer::StartVsock(port, kMemory);
  const absl::Time start = absl::Now();
  absl::StatusOr<int> fd = ConnectVsock(1, port, absl::Seconds(2));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  if (!fd.ok()) {
    EXPECT_THAT(fd.status().code(), AnyOf(absl::StatusCode::kUnimplemented,
                                          absl::StatusCode::kDeadlineExceeded,
                                          absl::StatusCode::kUnavailable,
                                          absl::StatusCode::kNotFound,
                                          absl::StatusCode::kInvalidArgument,
                                          absl::StatusCode::kFailedPrecondition,
                                          absl::StatusCode::kPermissionDenied))
        << fd.status();
    EXPECT_THAT(fd.status().message(), HasSubstr("vsock:1:"));
    GTEST_SKIP() << "vsock loopback unavailable here (nbdkit: "
                 << (server.ok() ? "started" : server.status().ToString())
                 << "): " << fd.status();
  }
  ScopedFd closer(*fd);
  ExpectNonBlockingCloexec(*fd);
  ASSERT_TRUE(server.ok()) << "connected although nbdkit did not start?";
  EXPECT_TRUE(ReadNewstyleGreeting(*fd).ok());
}

// --- AdoptFd ----------------------------------------------------------------

TEST(AdoptFdTest, AcceptsAConnectedSocketAndSetsFlags) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ScopedFd a(sv[0]), b(sv[1]);
  absl::StatusOr<int> fd = AdoptFd(sv[0]);
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_EQ(*fd, sv[0]);
  ExpectNonBlockingCloexec(sv[0]);
}

TEST(AdoptFdTest, AdoptsATcpConnectionToNbdkit) {
  std::unique_ptr<NbdkitServer> server = StartTcpOrDie();
  ASSERT_NE(server, nullptr);
  ScopedFd raw(socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(server->port());
  ASSERT_EQ(connect(raw.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)),
            0);
  absl::StatusOr<int> fd = AdoptFd(raw.get());
  ASSERT_TRUE(fd.ok()) << fd.status();
  ExpectNonBlockingCloexec(raw.get());
  EXPECT_TRUE(ReadNewstyleGreeting(raw.get()).ok());
}

TEST(AdoptFdTest, RejectsBadDescriptors) {
  absl::StatusOr<int> negative = AdoptFd(-1);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusErrno(negative.status()), EBADF);

  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ScopedFd r(p[0]), w(p[1]);
  absl::StatusOr<int> pipe_fd = AdoptFd(p[0]);
  EXPECT_EQ(pipe_fd.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusErrno(pipe_fd.status()), ENOTSOCK);
  // A rejected descriptor is left alone.
  EXPECT_FALSE(fcntl(p[0], F_GETFL) & O_NONBLOCK);

  ScopedFd unconnected(socket(AF_INET, SOCK_STREAM, 0));
  absl::StatusOr<int> not_connected = AdoptFd(unconnected.get());
  EXPECT_EQ(not_connected.status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StatusErrno(not_connected.status()), ENOTCONN);

  ScopedFd udp(socket(AF_INET, SOCK_DGRAM, 0));
  EXPECT_EQ(AdoptFd(udp.get()).status().code(),
            absl::StatusCode::kInvalidArgument);

  const int closed = dup(0);
  close(closed);
  EXPECT_EQ(StatusErrno(AdoptFd(closed).status()), EBADF);
}

// --- ConnectCommand ---------------------------------------------------------

TEST(ConnectCommandTest, NbdkitSingleMode) {
  if (FindProgram("nbdkit").empty()) GTEST_SKIP() << "nbdkit not installed";
  absl::StatusOr<Subprocess> sp =
      ConnectCommand({"nbdkit", "-s", "--exit-with-parent", "memory", "1M"});
  ASSERT_TRUE(sp.ok()) << sp.status();
  ScopedSubprocess guard(*sp);
  EXPECT_GT(sp->pid, 0);
  ExpectNonBlockingCloexec(sp->fd);
  EXPECT_TRUE(ReadNewstyleGreeting(sp->fd).ok());
  // Closing our end lets nbdkit -s exit by itself.
  close(guard.get().fd);
  guard.get().fd = -1;
  absl::StatusOr<int> wstatus = StopSubprocess(guard.get(), absl::Seconds(10));
  ASSERT_TRUE(wstatus.ok()) << wstatus.status();
  EXPECT_EQ(guard.get().pid, -1);
}

TEST(ConnectCommandTest, StdinAndStdoutAreTheSocket) {
  absl::StatusOr<Subprocess> sp = ConnectCommand({"cat"});
  ASSERT_TRUE(sp.ok()) << sp.status();
  ScopedSubprocess guard(*sp);
  ASSERT_TRUE(WriteAll(sp->fd, "ping\n", kServerTimeout).ok());
  absl::StatusOr<std::string> echo = ReadExactly(sp->fd, 5, kServerTimeout);
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_EQ(*echo, "ping\n");
}

// The child sees only stdin, stdout, stderr: our other descriptors, even
// without FD_CLOEXEC, are not leaked (where close_range is available).
TEST(ConnectCommandTest, OnlyStandardDescriptorsAreInherited) {
  ScopedFd leaky(open("/dev/null", O_RDONLY));  // no O_CLOEXEC on purpose
  ASSERT_GE(leaky.get(), 3);
  absl::StatusOr<Subprocess> sp =
      ConnectCommand({"sh", "-c",
                      absl::StrCat("if [ -e /proc/self/fd/", leaky.get(),
                                   " ]; then echo L; else echo N; fi")});
  ASSERT_TRUE(sp.ok()) << sp.status();
  ScopedSubprocess guard(*sp);
  absl::StatusOr<std::string> answer = ReadExactly(sp->fd, 2, kServerTimeout);
  ASSERT_TRUE(answer.ok()) << answer.status();
  if (*answer == "L\n") {
    GTEST_SKIP() << "close_range(CLOSE_RANGE_CLOEXEC) unsupported here";
  }
  EXPECT_EQ(*answer, "N\n");
}

TEST(ConnectCommandTest, MissingProgramFailsCleanly) {
  absl::StatusOr<Subprocess> by_path =
      ConnectCommand({"/nonexistent/dir/nbd-server-xyz"});
  ASSERT_FALSE(by_path.ok());
  EXPECT_EQ(by_path.status().code(), absl::StatusCode::kNotFound)
      << by_path.status();
  EXPECT_EQ(StatusErrno(by_path.status()), ENOENT);
  EXPECT_THAT(by_path.status().message(), HasSubstr("nbd-server-xyz"));

  absl::StatusOr<Subprocess> by_name =
      ConnectCommand({"no-such-program-nbd-engine"});
  ASSERT_FALSE(by_name.ok());
  EXPECT_EQ(by_name.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(by_name.status().message(), HasSubstr("not found in $PATH"));

  // A directory cannot be executed: execve's errno comes back.
  absl::StatusOr<Subprocess> dir = ConnectCommand({"/tmp"});
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(StatusErrno(dir.status()), EACCES) << dir.status();

  EXPECT_EQ(ConnectCommand({}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// --- Socket activation ------------------------------------------------------

TEST(ConnectSocketActivationTest, Nbdkit) {
  if (FindProgram("nbdkit").empty()) GTEST_SKIP() << "nbdkit not installed";
  absl::StatusOr<Subprocess> sp =
      ConnectSocketActivation({"nbdkit", "--exit-with-parent", "memory", "1M"});
  ASSERT_TRUE(sp.ok()) << sp.status();
  ScopedSubprocess guard(*sp);
  ExpectNonBlockingCloexec(sp->fd);
  EXPECT_TRUE(ReadNewstyleGreeting(sp->fd).ok());
}

// The environment and fd 3 the child gets, checked by a shell that then
// execs nbdkit (keeping its pid, so LISTEN_PID stays right). An inherited
// LISTEN_FDNAMES must not leak through.
TEST(ConnectSocketActivationTest, EnvironmentAndNameAreRight) {
  if (FindProgram("nbdkit").empty()) GTEST_SKIP() << "nbdkit not installed";
  const std::string script =
      "[ \"$LISTEN_PID\" = \"$$\" ] || exit 91; "
      "[ \"$LISTEN_FDS\" = 1 ] || exit 92; "
      "[ \"$LISTEN_FDNAMES\" = \"$EXPECTED_NAME\" ] || exit 93; "
      "[ -S /proc/$$/fd/3 ] || exit 94; "
      "exec nbdkit --exit-with-parent memory 1M";
  for (const char* name : {"", "nbd-export"}) {
    SCOPED_TRACE(name);
    setenv("LISTEN_FDNAMES", "inherited-must-be-dropped", 1);
    setenv("LISTEN_PID", "1", 1);
    setenv("EXPECTED_NAME", name, 1);
    SocketActivationOptions options;
    options.fd_name = name;
    absl::StatusOr<Subprocess> sp =
        ConnectSocketActivation({"sh", "-c", script}, options);
    unsetenv("LISTEN_FDNAMES");
    unsetenv("LISTEN_PID");
    unsetenv("EXPECTED_NAME");
    ASSERT_TRUE(sp.ok()) << sp.status();
    ScopedSubprocess guard(*sp);
    absl::Status greeting = ReadNewstyleGreeting(sp->fd);
    if (!greeting.ok()) {
      close(guard.get().fd);
      guard.get().fd = -1;
      absl::StatusOr<int> wstatus = StopSubprocess(guard.get());
      ASSERT_TRUE(wstatus.ok());
      FAIL() << greeting << "; child exit status "
             << (WIFEXITED(*wstatus) ? WEXITSTATUS(*wstatus) : -1);
    }
  }
}

TEST(ConnectSocketActivationTest, QemuNbd) {
  if (FindProgram("qemu-nbd").empty()) GTEST_SKIP() << "qemu-nbd missing";
  absl::StatusOr<std::unique_ptr<ShortTempDir>> dir = ShortTempDir::Create();
  ASSERT_TRUE(dir.ok());
  const std::string image = (*dir)->File("disk.img");
  std::ofstream(image).close();
  ASSERT_EQ(truncate(image.c_str(), 1 << 20), 0);
  absl::StatusOr<Subprocess> sp =
      ConnectSocketActivation({"qemu-nbd", "-f", "raw", image});
  ASSERT_TRUE(sp.ok()) << sp.status();
  ScopedSubprocess guard(*sp);
  EXPECT_TRUE(ReadNewstyleGreeting(sp->fd).ok());
}

TEST(ConnectSocketActivationTest, RemovesItsTemporaryDirectory) {
  if (FindProgram("nbdkit").empty()) GTEST_SKIP() << "nbdkit not installed";
  absl::StatusOr<Subprocess> sp =
      ConnectSocketActivation({"nbdkit", "--exit-with-parent", "memory", "1M"});
  ASSERT_TRUE(sp.ok()) << sp.status();
  ScopedSubprocess guard(*sp);
  // The peer of a connected Unix socket is the listener's bound path.
  sockaddr_un peer = {};
  socklen_t len = sizeof(peer);
  ASSERT_EQ(getpeername(sp->fd, reinterpret_cast<sockaddr*>(&peer), &len), 0);
  const std::string path(peer.sun_path);
  EXPECT_THAT(path, ::testing::StartsWith("/tmp/nbd-engine-sa-"));
  EXPECT_NE(access(path.c_str(), F_OK), 0) << path << " still exists";
  EXPECT_NE(access(path.substr(0, path.rfind('/')).c_str(), F_OK), 0);
  // Our end of the connection works even though the socket file is gone.
  EXPECT_TRUE(ReadNewstyleGreeting(sp->fd).ok());
}

TEST(ConnectSocketActivationTest, BadArguments) {
  EXPECT_EQ(ConnectSocketActivation({}).status().code(),
            absl::StatusCode::kInvalidArgument);
  SocketActivationOptions options;
  options.fd_name = "a:b";
  EXPECT_EQ(ConnectSocketActivation({"true"}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<Subprocess> missing =
      ConnectSocketActivation({"no-such-program-nbd-engine"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

// --- StopSubprocess ---------------------------------------------------------

TEST(StopSubprocessTest, KillsAChildThatIgnoresSigterm) {
  // The child reports that its trap is in place before we signal it.
  absl::StatusOr<Subprocess> sp =
      ConnectCommand({"sh", "-c", "trap '' TERM; echo ready; exec sleep 100"});
  ASSERT_TRUE(sp.ok()) << sp.status();
  ScopedSubprocess guard(*sp);
  absl::StatusOr<std::string> ready = ReadExactly(sp->fd, 6, kServerTimeout);
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_EQ(*ready, "ready\n");
  const absl::Time start = absl::Now();
  absl::StatusOr<int> wstatus =
      StopSubprocess(guard.get(), absl::Milliseconds(200));
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(wstatus.ok()) << wstatus.status();
  ASSERT_TRUE(WIFSIGNALED(*wstatus));
  EXPECT_EQ(WTERMSIG(*wstatus), SIGKILL);
  EXPECT_EQ(guard.get().pid, -1);
  EXPECT_GE(took, absl::Milliseconds(200));  // it waited out the grace period
  EXPECT_LT(took, absl::Seconds(30));
}

TEST(StopSubprocessTest, SigtermIsEnoughForAWellBehavedChild) {
  absl::StatusOr<Subprocess> sp = ConnectCommand({"sleep", "100"});
  ASSERT_TRUE(sp.ok()) << sp.status();
  ScopedSubprocess guard(*sp);
  absl::StatusOr<int> wstatus = StopSubprocess(guard.get(), absl::Seconds(20));
  ASSERT_TRUE(wstatus.ok()) << wstatus.status();
  ASSERT_TRUE(WIFSIGNALED(*wstatus));
  EXPECT_EQ(WTERMSIG(*wstatus), SIGTERM);
}

TEST(StopSubprocessTest, ReapsAnAlreadyExitedChild) {
  absl::StatusOr<Subprocess> sp = ConnectCommand({"sh", "-c", "exit 7"});
  ASSERT_TRUE(sp.ok()) << sp.status();
  ScopedSubprocess guard(*sp);
  // EOF on the socket: the child has exited.
  EXPECT_FALSE(ReadExactly(sp->fd, 1, kServerTimeout).ok());
  absl::StatusOr<int> wstatus = StopSubprocess(guard.get(), absl::Seconds(5));
  ASSERT_TRUE(wstatus.ok()) << wstatus.status();
  // Normally the exit status; if the child had not quite exited yet, SIGTERM.
  if (WIFEXITED(*wstatus)) {
    EXPECT_EQ(WEXITSTATUS(*wstatus), 7);
  }
  EXPECT_EQ(guard.get().pid, -1);
  // A second stop has nothing to do.
  EXPECT_EQ(StopSubprocess(guard.get()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// --- ConnectUri -------------------------------------------------------------

TEST(ConnectUriTest, Unix) {
  std::unique_ptr<NbdkitServer> server = StartUnixOrDie();
  ASSERT_NE(server, nullptr);
  NbdUri uri;
  uri.transport = NbdUri::kUnix;
  uri.socket_path = server->socket_path();
  uri.export_name = "my export";
  absl::StatusOr<Connection> c = ConnectUri(uri);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->export_name, "my export");
  EXPECT_FALSE(c->subprocess.has_value());
  EXPECT_EQ(
      c->description_for_errors,
      absl::StrCat("nbd+unix:///my%20export?socket=", server->socket_path()));
  ExpectNonBlockingCloexec(c->fd);
  EXPECT_TRUE(ReadNewstyleGreeting(c->fd).ok());
  EXPECT_TRUE(CloseConnection(*c).ok());
  EXPECT_EQ(c->fd, -1);
}

TEST(ConnectUriTest, TcpFromString) {
  std::unique_ptr<NbdkitServer> server = StartTcpOrDie();
  ASSERT_NE(server, nullptr);
  absl::StatusOr<Connection> c =
      ConnectUri(absl::StrCat("nbd://127.0.0.1:", server->port(), "/disk"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->export_name, "disk");
  EXPECT_TRUE(ReadNewstyleGreeting(c->fd).ok());
  EXPECT_TRUE(CloseConnection(*c).ok());
}

TEST(ConnectUriTest, EmptyHostMeansLocalhost) {
  std::unique_ptr<NbdkitServer> server = StartTcpOrDie();
  ASSERT_NE(server, nullptr);
  absl::StatusOr<Connection> c =
      ConnectUri(absl::StrCat("nbd://:", server->port(), "/"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(ReadNewstyleGreeting(c->fd).ok());
  EXPECT_TRUE(CloseConnection(*c).ok());
}

TEST(ConnectUriTest, TlsParametersAreCheckedBeforeConnecting) {
  std::unique_ptr<NbdkitServer> server = StartUnixOrDie();
  ASSERT_NE(server, nullptr);
  absl::StatusOr<Connection> bad =
      ConnectUri(absl::StrCat("nbds+unix:///?socket=", server->socket_path(),
                              "&tls-verify-peer=maybe"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(StatusErrno(bad.status()), EINVAL);
  EXPECT_THAT(bad.status().message(), HasSubstr("tls-verify-peer=maybe"));
  // A good one connects; the adapters then require TLS (c->uri->tls).
  absl::StatusOr<Connection> c =
      ConnectUri(absl::StrCat("nbds+unix:///?socket=", server->socket_path()));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->uri.has_value());
  EXPECT_TRUE(c->uri->tls);
  EXPECT_TRUE(CloseConnection(*c).ok());
}

TEST(ConnectUriTest, ErrorsNameTheUri) {
  absl::StatusOr<Connection> c =
      ConnectUri("nbd+unix:///x?socket=/nonexistent-nbd-engine.sock");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(StatusErrno(c.status()), ENOENT);
  EXPECT_THAT(c.status().message(),
              HasSubstr("nbd+unix:///x?socket=/nonexistent-nbd-engine.sock"));

  absl::StatusOr<Connection> bad = ConnectUri("nbd://h:0/");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CloseConnectionTest, StopsTheSubprocess) {
  if (FindProgram("nbdkit").empty()) GTEST_SKIP() << "nbdkit not installed";
  absl::StatusOr<Subprocess> sp =
      ConnectCommand({"nbdkit", "-s", "--exit-with-parent", "memory", "1M"});
  ASSERT_TRUE(sp.ok()) << sp.status();
  Connection c;
  c.fd = sp->fd;
  c.subprocess = *sp;
  EXPECT_TRUE(ReadNewstyleGreeting(c.fd).ok());
  EXPECT_TRUE(CloseConnection(c).ok());
  EXPECT_EQ(c.fd, -1);
  EXPECT_FALSE(c.subprocess.has_value());
  EXPECT_EQ(waitpid(sp->pid, nullptr, WNOHANG), -1);  // already reaped
  EXPECT_EQ(errno, ECHILD);
}

TEST(StatusErrnoTest, Basics) {
  EXPECT_EQ(StatusErrno(absl::OkStatus()), 0);
  EXPECT_EQ(StatusErrno(absl::InternalError("x")), EIO);
}

}  // namespace
}  // namespace nbd::adapters
