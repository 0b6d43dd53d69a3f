// Captures what in-process code writes to a file descriptor (stdout,
// stderr) by pointing the descriptor at a temporary file for a while, and
// feeds a descriptor (stdin) from a file or a pipe. For tests that call
// subcommands as library functions instead of running the binary.
#ifndef NBD_TESTS_TOOLS_CAPTURE_FD_H_
#define NBD_TESTS_TOOLS_CAPTURE_FD_H_

#include <string>

namespace nbd::test {

class CaptureFd {
 public:
  // Redirects `fd` (e.g. STDERR_FILENO) into a fresh file under
  // $TEST_TMPDIR (or /tmp) until Finish() or destruction.
  explicit CaptureFd(int fd);
  ~CaptureFd();
  CaptureFd(const CaptureFd&) = delete;
  CaptureFd& operator=(const CaptureFd&) = delete;

  // Restores the descriptor and returns everything written meanwhile.
  std::string Finish();

 private:
  int fd_;
  int saved_ = -1;
  std::string path_;
  bool finished_ = false;
};

// Points `fd` at `replacement` (dup2) until destruction, then restores it.
// `replacement` is not closed.
class RedirectFd {
 public:
  RedirectFd(int fd, int replacement);
  ~RedirectFd();
  RedirectFd(const RedirectFd&) = delete;
  RedirectFd& operator=(const RedirectFd&) = delete;

 private:
  int fd_;
  int saved_;
};

}  // namespace nbd::test

#endif  // NBD_TESTS_TOOLS_CAPTURE_FD_H_
