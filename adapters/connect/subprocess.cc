// Subprocess transports: ConnectCommand, ConnectSocketActivation and
// StopSubprocess.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#if __has_include(<linux/close_range.h>)
#include <linux/close_range.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "adapters/connect/connect.h"
#include "adapters/connect/errno_status.h"
#include "adapters/connect/internal.h"
#include "protocol/status.h"

extern char** environ;

namespace nbd::adapters {
namespace {

using internal::InvalidArgument;
using internal::SystemError;
using internal::UniqueFd;

// In the child, descriptors to be placed are first moved to this number or
// above, which is above every target.
constexpr int kFirstScratchFd = 10;
constexpr int kMaxPlacedFds = 4;
constexpr char kListenPidPrefix[] = "LISTEN_PID=";
constexpr absl::Duration kKillReapTimeout = absl::Seconds(5);

// Everything the child needs, built before fork() so that the child only
// reads memory and makes async-signal-safe calls.
struct ChildPlan {
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  int fd_sources[kMaxPlacedFds] = {};
  int fd_targets[kMaxPlacedFds] = {};
  int fd_count = 0;
  // If non-null, the LISTEN_PID=... environment entry: the child writes its
  // pid in decimal after the prefix (the buffer has room for it).
  char* listen_pid_entry = nullptr;
  int error_fd = -1;  // write end of the close-on-exec exec-error pipe
};

// The child side of Spawn(). Only async-signal-safe calls from here on.
[[noreturn]] void RunChild(const ChildPlan& plan) {
  int error = 0;
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGPIPE, &dfl, nullptr);

  // Move the error pipe and the sources above every target, so that placing
  // one descriptor cannot overwrite another we still need.
  int error_fd = fcntl(plan.error_fd, F_DUPFD_CLOEXEC, kFirstScratchFd);
  int scratch[kMaxPlacedFds];
  int max_target = 2;
  if (error_fd < 0) {
    error = errno;
    error_fd = plan.error_fd;
    goto fail;
  }
  for (int i = 0; i < plan.fd_count; ++i) {
    scratch[i] = fcntl(plan.fd_sources[i], F_DUPFD_CLOEXEC, kFirstScratchFd);
    if (scratch[i] < 0) {
      error = errno;
      goto fail;
    }
  }
  for (int i = 0; i < plan.fd_count; ++i) {
    // The scratch fd differs from the target, so dup2 clears FD_CLOEXEC.
    if (dup2(scratch[i], plan.fd_targets[i]) < 0) {
      error = errno;
      goto fail;
    }
    if (plan.fd_targets[i] > max_target) max_target = plan.fd_targets[i];
  }
#ifdef CLOSE_RANGE_CLOEXEC
  // Do not leak our other descriptors into the server. Best effort: older
  // kernels lack close_range or the flag.
  close_range(static_cast<unsigned>(max_target + 1), ~0U, CLOSE_RANGE_CLOEXEC);
#endif

  if (plan.listen_pid_entry != nullptr) {
    char digits[24];
    int n = 0;
    for (pid_t pid = getpid(); pid > 0; pid /= 10) {
      digits[n++] = static_cast<char>('0' + pid % 10);
    }
    char* out = plan.listen_pid_entry + sizeof(kListenPidPrefix) - 1;
    while (n > 0) *out++ = digits[--n];
    *out = '\0';
  }

  execve(plan.path, plan.argv, plan.envp);
  error = errno;
fail:
  // Report errno to the parent; if even that fails it sees exit status 127.
  while (write(error_fd, &error, sizeof(error)) < 0 && errno == EINTR) {
  }
  _exit(127);
}

// Finds `name` like execvp would: as given if it contains '/', otherwise the
// first executable regular file in $PATH.
absl::StatusOr<std::string> FindExecutable(const std::string& name) {
  if (name.empty()) return InvalidArgument("empty program name");
  if (name.find('/') != std::string::npos) return name;
  const char* path_env = std::getenv("PATH");
  const std::string path =
      path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    const std::string candidate =
        absl::StrCat(dir.empty() ? "." : dir, "/", name);
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return WithErrno(
      absl::NotFoundError(absl::StrCat("cannot run '", name,
                                       "': not found in $PATH (", path, ")")),
      ENOENT);
}

struct SpawnRequest {
  std::vector<std::string> argv;
  std::vector<std::pair<int, int>> fds;  // {source in parent, target in child}
  std::vector<std::string> extra_env;
  std::vector<std::string> drop_env;  // names removed from our environment
  bool set_listen_pid = false;
};

absl::StatusOr<pid_t> Spawn(const SpawnRequest& request) {
  if (request.argv.empty()) {
    return InvalidArgument("cannot start a subprocess: argv is empty");
  }
  if (request.fds.size() > kMaxPlacedFds) {
    return InvalidArgument("too many descriptors for the subprocess");
  }
  for (const std::string& arg : request.argv) {
    if (arg.find('\0') != std::string::npos) {
      return InvalidArgument("subprocess argument contains a NUL byte");
    }
  }
  absl::StatusOr<std::string> path = FindExecutable(request.argv[0]);
  if (!path.ok()) return path.status();

  // argv and envp as the NULL-terminated arrays execve wants.
  std::vector<char*> argv;
  for (const std::string& arg : request.argv) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);

  std::vector<char*> envp;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const absl::string_view entry(*e);
    bool drop = false;
    for (const std::string& name : request.drop_env) {
      if (absl::StartsWith(entry, name) && entry.size() > name.size() &&
          entry[name.size()] == '=') {
        drop = true;
      }
    }
    if (!drop) envp.push_back(*e);
  }
  for (const std::string& entry : request.extra_env) {
    envp.push_back(const_cast<char*>(entry.c_str()));
  }
  std::vector<char> listen_pid_entry;
  if (request.set_listen_pid) {
    listen_pid_entry.assign(sizeof(kListenPidPrefix) + 24, '\0');
    std::memcpy(listen_pid_entry.data(), kListenPidPrefix,
                sizeof(kListenPidPrefix) - 1);
    envp.push_back(listen_pid_entry.data());
  }
  envp.push_back(nullptr);

  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) < 0) return SystemError(errno, "pipe2");
  UniqueFd error_read(error_pipe[0]);
  UniqueFd error_write(error_pipe[1]);

  ChildPlan plan;
  plan.path = path->c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  for (const auto& [source, target] : request.fds) {
    plan.fd_sources[plan.fd_count] = source;
    plan.fd_targets[plan.fd_count] = target;
    ++plan.fd_count;
  }
  plan.listen_pid_entry =
      request.set_listen_pid ? listen_pid_entry.data() : nullptr;
  plan.error_fd = error_write.get();

  const pid_t pid = fork();
  if (pid < 0) return SystemError(errno, "fork");
  if (pid == 0) RunChild(plan);

  error_write.reset();
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(error_read.get(), &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  if (n == 0) return pid;  // exec succeeded: the pipe closed on exec

  // The child failed before or in execve and is exiting: reap it.
  int wstatus;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof(child_errno))) child_errno = EIO;
  return SystemError(child_errno, absl::StrCat("cannot run '", *path, "'"));
}

// Polls waitpid(WNOHANG) until `pid` is reaped or `timeout` passes. Returns
// true and sets `*wstatus` if reaped; ECHILD is an error.
absl::StatusOr<bool> WaitWithTimeout(pid_t pid, absl::Duration timeout,
                                     int* wstatus) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration sleep = absl::Milliseconds(1);
  while (true) {
    const pid_t r = waitpid(pid, wstatus, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) {
      return SystemError(errno, absl::StrCat("waitpid(", pid, ")"));
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) return false;
    absl::SleepFor(std::min(sleep, deadline - now));
    sleep = std::min(sleep * 2, absl::Milliseconds(50));
  }
}

}  // namespace

absl::StatusOr<Subprocess> ConnectCommand(
    const std::vector<std::string>& argv) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    return SystemError(errno, "socketpair");
  }
  UniqueFd ours(sv[0]);
  UniqueFd theirs(sv[1]);
  if (absl::Status s = internal::SetNonBlockingCloexec(ours.get()); !s.ok()) {
    return s;
  }
  SpawnRequest request;
  request.argv = argv;
  request.fds = {{theirs.get(), STDIN_FILENO}, {theirs.get(), STDOUT_FILENO}};
  absl::StatusOr<pid_t> pid = Spawn(request);
  if (!pid.ok()) return pid.status();
  return Subprocess{ours.release(), *pid};
}

absl::StatusOr<Subprocess> ConnectSocketActivation(
    const std::vector<std::string>& argv,
    const SocketActivationOptions& options) {
  if (options.fd_name.size() > 255) {
    return InvalidArgument("socket activation name is longer than 255 bytes");
  }
  for (char c : options.fd_name) {
    if (c <= 0x20 || c >= 0x7f || c == ':') {
      return InvalidArgument(
          absl::StrCat("socket activation name '", options.fd_name,
                       "' must be printable ASCII without spaces or ':'"));
    }
  }
  char dir_template[] = "/tmp/nbd-engine-sa-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    return SystemError(errno, "mkdtemp(/tmp/nbd-engine-sa-XXXXXX)");
  }
  const std::string dir = dir_template;
  const std::string socket_path = dir + "/sock";
  // The socket file and directory are only needed until we have connected.
  absl::Cleanup remove_dir = [&] {
    unlink(socket_path.c_str());
    rmdir(dir.c_str());
  };

  UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.get() < 0) return SystemError(errno, "socket(AF_UNIX)");
  sockaddr_un sun = {};
  sun.sun_family = AF_UNIX;
  std::memcpy(sun.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (bind(listener.get(), reinterpret_cast<const sockaddr*>(&sun),
           sizeof(sun)) < 0) {
    return SystemError(errno, absl::StrCat("bind(", socket_path, ")"));
  }
  if (listen(listener.get(), SOMAXCONN) < 0) {
    return SystemError(errno, "listen");
  }

  SpawnRequest request;
  request.argv = argv;
  request.fds = {{listener.get(), 3}};
  request.drop_env = {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"};
  request.extra_env = {"LISTEN_FDS=1"};
  if (!options.fd_name.empty()) {
    request.extra_env.push_back(
        absl::StrCat("LISTEN_FDNAMES=", options.fd_name));
  }
  request.set_listen_pid = true;
  absl::StatusOr<pid_t> pid = Spawn(request);
  listener.reset();
  if (!pid.ok()) return pid.status();

  Subprocess sp;
  sp.pid = *pid;
  absl::StatusOr<int> fd = ConnectUnix(socket_path, options.connect_timeout);
  if (!fd.ok()) {
    StopSubprocess(sp, absl::Seconds(1)).IgnoreError();
    return fd.status();
  }
  sp.fd = *fd;
  return sp;
}

absl::StatusOr<int> StopSubprocess(Subprocess& sp, absl::Duration grace) {
  if (sp.pid <= 0) {
    return WithErrno(
        absl::FailedPreconditionError(absl::StrCat(
            "StopSubprocess: no process to stop (pid ", sp.pid, ")")),
        ESRCH);
  }
  int wstatus = 0;
  // Already gone? Then do not signal a pid that might be reused.
  absl::StatusOr<bool> reaped =
      WaitWithTimeout(sp.pid, absl::ZeroDuration(), &wstatus);
  if (reaped.ok() && !*reaped) {
    kill(sp.pid, SIGTERM);
    reaped = WaitWithTimeout(sp.pid, grace, &wstatus);
    if (reaped.ok() && !*reaped) {
      kill(sp.pid, SIGKILL);
      reaped = WaitWithTimeout(sp.pid, kKillReapTimeout, &wstatus);
    }
  }
  if (!reaped.ok()) {
    if (StatusErrno(reaped.status()) == ECHILD) sp.pid = -1;
    return reaped.status();
  }
  if (!*reaped) {
    return WithErrno(
        absl::DeadlineExceededError(absl::StrCat(
            "process ", sp.pid, " did not exit even after SIGKILL")),
        ETIMEDOUT);
  }
  sp.pid = -1;
  return wstatus;
}

}  // namespace nbd::adapters
