#include "tests/tools/run_tool.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace nbd::test {
namespace {

pid_t Spawn(const std::vector<std::string>& argv, int out_fd, int err_fd) {
  std::vector<char*> cargv;
  for (const std::string& a : argv)
    cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid != 0) return pid;
  const int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, 0);
  if (out_fd >= 0) dup2(out_fd, 1);
  if (err_fd >= 0) dup2(err_fd, 2);
  execvp(cargv[0], cargv.data());
  _exit(127);
}

// waitpid with a bound; true once reaped.
bool Reap(pid_t pid, int* status, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  while (true) {
    const pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) return true;
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

}  // namespace

std::string NbdBinary() {
  if (const char* srcdir = std::getenv("TEST_SRCDIR")) {
    std::string path = std::string(srcdir) + "/nbd_engine/tools/nbd/nbd";
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return "tools/nbd/nbd";
}

RunResult RunProgram(const std::vector<std::string>& argv,
                     absl::Duration limit) {
  RunResult result;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return result;
  const absl::Time start = absl::Now();
  const pid_t pid = Spawn(argv, out[1], err[1]);
  close(out[1]);
  close(err[1]);
  const absl::Time deadline = start + limit;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  while (open_fds > 0) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    const int n =
        poll(fds, 2, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t r = read(fds[i].fd, buf, sizeof buf);
      if (r > 0) {
        sinks[i]->append(buf, static_cast<size_t>(r));
      } else if (r == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) close(p.fd);
  }
  int status = 0;
  if (!Reap(pid, &status, absl::Seconds(10))) {
    kill(pid, SIGKILL);
    Reap(pid, &status, absl::Seconds(10));
  }
  result.elapsed = absl::Now() - start;
  if (WIFEXITED(status) && !result.timed_out) {
    result.exit_code = WEXITSTATUS(status);
  }
  return result;
}

RunResult RunNbd(const std::vector<std::string>& args, absl::Duration limit) {
  std::vector<std::string> argv = {NbdBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProgram(argv, limit);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

Child::Child(const std::vector<std::string>& argv) {
  pid_ = Spawn(argv, -1, -1);
}

Child::~Child() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  Reap(pid_, &status, absl::Seconds(10));
}

int Child::Signal(int sig, absl::Duration limit) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  int status = 0;
  if (!Reap(pid_, &status, limit)) {
    kill(pid_, SIGKILL);
    Reap(pid_, &status, absl::Seconds(10));
    pid_ = -1;
    return -1;
  }
  pid_ = -1;
  return status;
}

bool WaitForUnixSocket(const std::string& path, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  while (absl::Now() < deadline) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    const bool ok =
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    if (ok) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

}  // namespace nbd::test
