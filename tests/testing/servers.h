// Real NBD servers for interop tests, each on a Unix socket in a fresh
// mkdtemp directory under /tmp (not TEST_TMPDIR: sun_path holds 107 bytes).
//
//   auto server = ServerProcess::StartNbdkit({"memory", "1M"});
//   ConnectUnix((*server)->socket_path());
//
// Start* returns once the socket accepts connections (bounded wait). The
// server is stopped by PID (SIGTERM, then SIGKILL, reaped, bounded) when the
// ServerProcess is destroyed, and the directory removed.
#ifndef NBD_TESTS_TESTING_SERVERS_H_
#define NBD_TESTS_TESTING_SERVERS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nbd::test {

// Creates a fresh directory /tmp/nbd-test.XXXXXX.
absl::StatusOr<std::string> MakeTempDir();

// Whether `program` is found in $PATH (tests skip when a server is missing).
bool HaveProgram(const std::string& program);

// Runs `command` with /bin/sh and returns its exit code (-1 if it did not
// exit normally) and its stdout and stderr together.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunShell(const std::string& command);

class ServerProcess {
 public:
  // `nbdkit -f --exit-with-parent --unix SOCK [flags...] ARGS...`: `args` is
  // the plugin and its parameters, optionally preceded by nbdkit options
  // (e.g. {"--filter=delay", "memory", "1M", "delay-read=1"}).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> StartNbdkit(
      const std::vector<std::string>& args);
  // `qemu-nbd -k SOCK -f FORMAT -t --shared=N [extra...] FILE`.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> StartQemuNbd(
      const std::string& file, const std::string& format,
      const std::vector<std::string>& extra = {});
  // nbd-server with a generated config file: the export "export" serves
  // `file`; `export_lines` are appended to its section (e.g. "trim = true").
  // nbd-server daemonises; it is tracked through its pidfile (and this
  // process becomes a child subreaper so it can be reaped).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> StartNbdServer(
      const std::string& file,
      const std::vector<std::string>& export_lines = {});

  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  const std::string& socket_path() const { return socket_; }
  const std::string& dir() const { return dir_; }  // scratch files go here
  pid_t pid() const { return pid_; }
  // "nbd+unix:///EXPORT?socket=SOCK"
  std::string Uri(const std::string& export_name = "") const;

  // SIGKILL now (server death mid-flight), then reap (bounded).
  void Kill();
  // SIGTERM, wait up to `grace`, SIGKILL, reap (bounded). Idempotent.
  absl::Status Stop(absl::Duration grace = absl::Seconds(5));

 private:
  ServerProcess() = default;
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Spawn(
      std::unique_ptr<ServerProcess> server, std::vector<std::string> argv,
      bool daemonises);
  absl::Status WaitForSocket(absl::Duration timeout);
  bool Reaped(absl::Duration timeout);

  std::string dir_;
  std::string socket_;
  std::string pidfile_;
  pid_t pid_ = -1;
  bool own_dir_ = true;
};

}  // namespace nbd::test

#endif  // NBD_TESTS_TESTING_SERVERS_H_
