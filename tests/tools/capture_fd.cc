#include "tests/tools/capture_fd.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace nbd::test {

CaptureFd::CaptureFd(int fd) : fd_(fd) {
  const char* dir = std::getenv("TEST_TMPDIR");
  path_ = std::string(dir != nullptr ? dir : "/tmp") + "/capture.XXXXXX";
  int tmp = ::mkstemp(path_.data());
  // Whatever stdio buffered belongs to before the capture.
  std::fflush(stdout);
  std::fflush(stderr);
  saved_ = ::dup(fd_);
  ::dup2(tmp, fd_);
  ::close(tmp);
}

CaptureFd::~CaptureFd() { Finish(); }

std::string CaptureFd::Finish() {
  if (finished_) return "";
  finished_ = true;
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(saved_, fd_);
  ::close(saved_);
  std::ifstream in(path_);
  std::stringstream text;
  text << in.rdbuf();
  ::unlink(path_.c_str());
  return text.str();
}

RedirectFd::RedirectFd(int fd, int replacement) : fd_(fd) {
  std::fflush(stdout);
  saved_ = ::dup(fd_);
  ::dup2(replacement, fd_);
}

RedirectFd::~RedirectFd() {
  std::fflush(stdout);
  ::dup2(saved_, fd_);
  ::close(saved_);
}

}  // namespace nbd::test
