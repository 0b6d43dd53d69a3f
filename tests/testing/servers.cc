#include "tests/testing/servers.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace nbd::test {
namespace {

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// Whether `pid` is gone: reaped here, not ours and absent, or a zombie that
// someone else (PID 1) has yet to reap.
bool Gone(pid_t pid) {
  int status;
  pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == pid) return true;
  if (r == 0) return false;  // our child, still running
  // Not our child (e.g. a daemon that was not reparented to us).
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) return true;
  size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() &&
         line[paren + 2] == 'Z';
}

}  // namespace

absl::StatusOr<std::string> MakeTempDir() {
  char tmpl[] = "/tmp/nbd-test.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return Errno("mkdtemp");
  return std::string(tmpl);
}

bool HaveProgram(const std::string& program) {
  const char* path = ::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    std::string candidate = absl::StrCat(dir, "/", program);
    if (::access(candidate.c_str(), X_OK) == 0) return true;
  }
  return false;
}

CommandResult RunShell(const std::string& command) {
  CommandResult r;
  FILE* f = ::popen((command + " 2>&1").c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) r.output.append(buf, n);
  const int status = ::pclose(f);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::StartNbdkit(
    const std::vector<std::string>& args) {
  auto dir = MakeTempDir();
  if (!dir.ok()) return dir.status();
  std::unique_ptr<ServerProcess> s(new ServerProcess());
  s->dir_ = *dir;
  s->socket_ = *dir + "/sock";
  std::vector<std::string> argv = {"nbdkit", "-f", "--exit-with-parent",
                                   "--unix", s->socket_};
  argv.insert(argv.end(), args.begin(), args.end());
  return Spawn(std::move(s), std::move(argv), false);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::StartQemuNbd(
    const std::string& file, const std::string& format,
    const std::vector<std::string>& extra) {
  auto dir = MakeTempDir();
  if (!dir.ok()) return dir.status();
  std::unique_ptr<ServerProcess> s(new ServerProcess());
  s->dir_ = *dir;
  s->socket_ = *dir + "/sock";
  // -t: keep serving after a client leaves (the readiness probe is one).
  std::vector<std::string> argv = {"qemu-nbd", "-k", s->socket_,  "-f",
                                   format,     "-t", "--shared=8"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(file);
  return Spawn(std::move(s), std::move(argv), false);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::StartNbdServer(
    const std::string& file, const std::vector<std::string>& export_lines) {
  auto dir = MakeTempDir();
  if (!dir.ok()) return dir.status();
  std::unique_ptr<ServerProcess> s(new ServerProcess());
  s->dir_ = *dir;
  s->socket_ = *dir + "/sock";
  s->pidfile_ = *dir + "/pid";
  std::string config = *dir + "/config";
  {
    std::ofstream out(config);
    out << "[generic]\nunixsock = " << s->socket_ << "\nallowlist = true\n"
        << "[export]\nexportname = " << file << "\n";
    for (const std::string& line : export_lines) out << line << "\n";
    if (!out) return absl::InternalError("cannot write nbd-server config");
  }
  // The daemon's parent exits at once; as a subreaper we can reap the
  // daemon itself later.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::vector<std::string> argv = {"nbd-server", "-C", config, "-p",
                                   s->pidfile_};
  return Spawn(std::move(s), std::move(argv), true);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Spawn(
    std::unique_ptr<ServerProcess> server, std::vector<std::string> argv,
    bool daemonises) {
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return Errno("fork");
  if (pid == 0) {
    // Die with the test, whatever happens to it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::execvp(cargv[0], cargv.data());
    ::_exit(127);
  }
  server->pid_ = pid;
  if (daemonises) {
    // The foreground process exits once the daemon is running.
    int status = 0;
    absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (absl::Now() > give_up) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        server->pid_ = -1;
        return absl::DeadlineExceededError(argv[0] + " did not daemonise");
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    server->pid_ = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return absl::InternalError(absl::StrCat(argv[0], " failed to start"));
    }
  }
  absl::Status ready = server->WaitForSocket(absl::Seconds(10));
  if (!ready.ok()) {
    return absl::Status(ready.code(), absl::StrCat(absl::StrJoin(argv, " "),
                                                   ": ", ready.message()));
  }
  return server;
}

absl::Status ServerProcess::WaitForSocket(absl::Duration timeout) {
  absl::Time give_up = absl::Now() + timeout;
  while (true) {
    if (pid_ < 0 && !pidfile_.empty()) {
      std::ifstream in(pidfile_);
      pid_t pid = -1;
      if (in >> pid && pid > 0) pid_ = pid;
    }
    if (pid_ > 0 && pidfile_.empty() && Gone(pid_)) {
      pid_ = -1;
      return absl::UnavailableError("the server exited");
    }
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Errno("socket");
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_.c_str(), sizeof addr.sun_path - 1);
    int r = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::close(fd);
    if (r == 0 && pid_ > 0) return absl::OkStatus();
    if (absl::Now() > give_up) {
      return absl::DeadlineExceededError("the server socket never accepted");
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

std::string ServerProcess::Uri(const std::string& export_name) const {
  return absl::StrCat("nbd+unix:///", export_name, "?socket=", socket_);
}

bool ServerProcess::Reaped(absl::Duration timeout) {
  absl::Time give_up = absl::Now() + timeout;
  while (!Gone(pid_)) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  pid_ = -1;
  return true;
}

void ServerProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  Reaped(absl::Seconds(5));
}

absl::Status ServerProcess::Stop(absl::Duration grace) {
  if (pid_ <= 0) return absl::OkStatus();
  ::kill(pid_, SIGTERM);
  if (Reaped(grace)) return absl::OkStatus();
  ::kill(pid_, SIGKILL);
  if (Reaped(absl::Seconds(5))) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat("pid ", pid_, " survived"));
}

ServerProcess::~ServerProcess() {
  Stop().IgnoreError();
  if (own_dir_ && !dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

}  // namespace nbd::test
