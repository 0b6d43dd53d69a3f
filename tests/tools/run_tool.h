// Running the `nbd` binary (and other programs) from tests: capture stdout
// and stderr, bound the run time, and keep long-running children such as
// `nbd serve` under control.
#ifndef NBD_TESTS_TOOLS_RUN_TOOL_H_
#define NBD_TESTS_TOOLS_RUN_TOOL_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace nbd::test {

// The `nbd` binary from the test's runfiles: $TEST_SRCDIR/nbd_engine/
// tools/nbd/nbd, or tools/nbd/nbd relative to the working directory.
std::string NbdBinary();

struct RunResult {
  int exit_code = -1;      // -1 if killed by a signal (or by the limit)
  bool timed_out = false;  // killed after `limit`
  std::string out;
  std::string err;
  absl::Duration elapsed;
};

// Runs `argv` (argv[0] looked up in $PATH unless it has a '/'), stdin from
// /dev/null; kills it (SIGKILL) if it runs longer than `limit`.
RunResult RunProgram(const std::vector<std::string>& argv,
                     absl::Duration limit = absl::Seconds(60));
// RunProgram({NbdBinary(), args...}).
RunResult RunNbd(const std::vector<std::string>& args,
                 absl::Duration limit = absl::Seconds(60));

// The lines of `text` (no trailing empty line).
std::vector<std::string> Lines(const std::string& text);

// A child process running in the background (stdout/stderr inherited).
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv);
  ~Child();  // SIGKILL and reap if still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // Sends `sig` and waits (bounded) for the exit; returns the wait status,
  // or -1 if it did not exit within `limit` (it is then killed).
  int Signal(int sig, absl::Duration limit = absl::Seconds(20));

 private:
  pid_t pid_ = -1;
};

// Waits until a Unix socket at `path` accepts connections.
bool WaitForUnixSocket(const std::string& path, absl::Duration limit);

}  // namespace nbd::test

#endif  // NBD_TESTS_TOOLS_RUN_TOOL_H_
