#include "tests/adapters/connect/nbd_test_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "adapters/connect/connect.h"

extern char** environ;

namespace nbd::adapters::testing {
namespace {

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// Waits for `fd` to become readable/writable (`events`) until `deadline`.
absl::Status WaitFor(int fd, short events, absl::Time deadline) {
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError("timed out waiting for the socket");
    }
    pollfd pfd = {fd, events, 0};
    const int n =
        poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left) + 1));
    if (n < 0 && errno != EINTR) return Errno("poll");
    if (n > 0) return absl::OkStatus();
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShortTempDir>> ShortTempDir::Create() {
  char dir[] = "/tmp/nbdct-XXXXXX";
  if (mkdtemp(dir) == nullptr) return Errno("mkdtemp");
  return std::unique_ptr<ShortTempDir>(new ShortTempDir(dir));
}

ShortTempDir::~ShortTempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string ShortTempDir::File(std::string_view name) const {
  return absl::StrCat(path_, "/", std::string(name));
}

std::string FindProgram(std::string_view name) {
  const char* env = std::getenv("PATH");
  std::string path =
      absl::StrCat(env != nullptr ? env : "", ":/usr/bin:/usr/sbin:/bin:/sbin");
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(dir, "/", std::string(name));
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

absl::StatusOr<std::string> ReadExactly(int fd, size_t n,
                                        absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string out;
  while (out.size() < n) {
    if (absl::Status s = WaitFor(fd, POLLIN, deadline); !s.ok()) return s;
    char buffer[256];
    const ssize_t r =
        read(fd, buffer, std::min(sizeof(buffer), n - out.size()));
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return Errno("read");
    }
    if (r == 0) {
      return absl::DataLossError(
          absl::StrCat("EOF after ", out.size(), " of ", n, " bytes"));
    }
    out.append(buffer, static_cast<size_t>(r));
  }
  return out;
}

absl::Status WriteAll(int fd, std::string_view data, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!data.empty()) {
    if (absl::Status s = WaitFor(fd, POLLOUT, deadline); !s.ok()) return s;
    const ssize_t w = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return Errno("send");
    }
    data.remove_prefix(static_cast<size_t>(w));
  }
  return absl::OkStatus();
}

absl::Status ReadNewstyleGreeting(int fd, absl::Duration timeout) {
  absl::StatusOr<std::string> greeting = ReadExactly(fd, 18, timeout);
  if (!greeting.ok()) return greeting.status();
  if (greeting->substr(0, 16) != "NBDMAGICIHAVEOPT") {
    return absl::DataLossError(
        absl::StrCat("not an NBD newstyle greeting: '", *greeting, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint16_t> PickFreeTcpPort(const char* ip) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &sin.sin_addr);
  socklen_t len = sizeof(sin);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) < 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len) < 0) {
    absl::Status s = Errno("bind/getsockname");
    close(fd);
    return s;
  }
  close(fd);
  return ntohs(sin.sin_port);
}

absl::StatusOr<std::unique_ptr<NbdkitServer>> NbdkitServer::StartUnix(
    const std::vector<std::string>& plugin_args) {
  std::unique_ptr<NbdkitServer> server(new NbdkitServer);
  absl::StatusOr<std::unique_ptr<ShortTempDir>> dir = ShortTempDir::Create();
  if (!dir.ok()) return dir.status();
  server->dir_ = *std::move(dir);
  server->socket_path_ = server->dir_->File("sock");
  if (absl::Status s = server->Start({"-U", server->socket_path_}, plugin_args);
      !s.ok()) {
    return s;
  }
  struct stat st;
  if (stat(server->socket_path_.c_str(), &st) < 0 || !S_ISSOCK(st.st_mode)) {
    return absl::InternalError("nbdkit is ready but its socket is missing");
  }
  return server;
}

absl::StatusOr<std::unique_ptr<NbdkitServer>> NbdkitServer::StartTcp(
    const std::string& ip, const std::vector<std::string>& plugin_args) {
  absl::Status last = absl::UnknownError("no attempt");
  // A free port can be taken by someone else before nbdkit binds it: retry.
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::unique_ptr<NbdkitServer> server(new NbdkitServer);
    absl::StatusOr<std::unique_ptr<ShortTempDir>> dir = ShortTempDir::Create();
    if (!dir.ok()) return dir.status();
    server->dir_ = *std::move(dir);
    absl::StatusOr<uint16_t> port = PickFreeTcpPort(ip.c_str());
    if (!port.ok()) return port.status();
    server->port_ = *port;
    last = server->Start({"-i", ip, "-p", std::to_string(*port)}, plugin_args);
    if (last.ok()) return server;
  }
  return last;
}

absl::StatusOr<std::unique_ptr<NbdkitServer>> NbdkitServer::StartVsock(
    uint32_t port, const std::vector<std::string>& plugin_args) {
  std::unique_ptr<NbdkitServer> server(new NbdkitServer);
  absl::StatusOr<std::unique_ptr<ShortTempDir>> dir = ShortTempDir::Create();
  if (!dir.ok()) return dir.status();
  server->dir_ = *std::move(dir);
  server->port_ = 0;
  if (absl::Status s =
          server->Start({"--vsock", "-p", std::to_string(port)}, plugin_args);
      !s.ok()) {
    return s;
  }
  return server;
}

absl::Status NbdkitServer::Start(const std::vector<std::string>& listen_args,
                                 const std::vector<std::string>& plugin_args) {
  const std::string nbdkit = FindProgram("nbdkit");
  if (nbdkit.empty()) return absl::NotFoundError("nbdkit is not installed");
  const std::string pidfile = dir_->File("pid");
  std::vector<std::string> args = {nbdkit, "-f", "--exit-with-parent", "-P",
                                   pidfile};
  args.insert(args.end(), listen_args.begin(), listen_args.end());
  args.insert(args.end(), plugin_args.begin(), plugin_args.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  if (int rc = posix_spawn(&pid_, nbdkit.c_str(), nullptr, nullptr, argv.data(),
                           environ);
      rc != 0) {
    pid_ = -1;
    return absl::InternalError(
        absl::StrCat("posix_spawn(nbdkit): ", std::strerror(rc)));
  }
  // nbdkit writes its pid file once it accepts connections.
  const absl::Time deadline = absl::Now() + kServerTimeout;
  while (absl::Now() < deadline) {
    int wstatus = 0;
    if (waitpid(pid_, &wstatus, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(
          absl::StrCat("nbdkit exited early (wait status ", wstatus, ")"));
    }
    std::ifstream in(pidfile);
    std::stringstream content;
    content << in.rdbuf();
    if (!content.str().empty() && content.str().back() == '\n') {
      return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::DeadlineExceededError("nbdkit did not become ready");
}

NbdkitServer::~NbdkitServer() {
  if (pid_ > 0) {
    Subprocess sp{-1, pid_};
    StopSubprocess(sp, absl::Seconds(10)).IgnoreError();
  }
}

}  // namespace nbd::adapters::testing
