// A test of another workspace against the engine: nbdkit's memory plugin on
// a Unix socket in a fresh mkdtemp directory under /tmp, and a write, flush
// and read back through nbd::engine with each adapter. Skipped (with a
// message) when nbdkit is not installed.
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "adapters/engine/engine.h"
#include "gtest/gtest.h"

namespace {

using nbd::engine::Adapter;
using nbd::engine::Engine;
using nbd::engine::Export;

constexpr uint64_t kExportSize = 1 << 20;
// Generous bounds: they only matter when something is broken.
constexpr absl::Duration kTimeout = absl::Seconds(10);

bool HaveNbdkit() {
  const char* path = ::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/nbdkit";
    if (::access(candidate.c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

// `nbdkit -f --exit-with-parent --unix DIR/sock --pidfile DIR/pid memory
// SIZE`, stopped by PID when destroyed (SIGTERM; SIGKILL if it has not
// exited within kTimeout; reaped) and its directory removed.
class Nbdkit {
 public:
  // Returns with an empty `error()` once nbdkit accepts connections: it
  // writes its pidfile then (bounded wait).
  Nbdkit() {
    char dir[] = "/tmp/nbd-consumer.XXXXXX";
    if (::mkdtemp(dir) == nullptr) {
      error_ = std::string("mkdtemp: ") + std::strerror(errno);
      return;
    }
    dir_ = dir;
    socket_ = dir_ + "/sock";
    std::string pidfile = dir_ + "/pid";
    std::string size = std::to_string(kExportSize);
    const char* argv[] = {
        "nbdkit",        "-f",        "--exit-with-parent", "--unix",
        socket_.c_str(), "--pidfile", pidfile.c_str(),      "memory",
        size.c_str(),    nullptr};
    pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) {
      error_ = std::string("fork: ") + std::strerror(errno);
      return;
    }
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // dies with the test
      if (::getppid() != parent) ::_exit(127);
      ::execvp(argv[0], const_cast<char* const*>(argv));
      ::_exit(127);
    }
    absl::Time give_up = absl::Now() + kTimeout;
    while (!Ready(pidfile)) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        error_ = "nbdkit exited before it became ready";
        return;
      }
      if (absl::Now() > give_up) {
        error_ = "nbdkit did not become ready";
        return;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
  }

  ~Nbdkit() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status;
      absl::Time give_up = absl::Now() + kTimeout;
      while (::waitpid(pid_, &status, WNOHANG) == 0) {
        if (absl::Now() > give_up) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
        absl::SleepFor(absl::Milliseconds(5));
      }
    }
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }
  Nbdkit(const Nbdkit&) = delete;
  Nbdkit& operator=(const Nbdkit&) = delete;

  const std::string& error() const { return error_; }
  std::string uri() const { return "nbd+unix:///?socket=" + socket_; }

 private:
  // Whether `pidfile` holds nbdkit's PID (complete, so it is ready).
  bool Ready(const std::string& pidfile) const {
    std::ifstream in(pidfile);
    pid_t pid = -1;
    return in >> pid && pid == pid_;
  }

  std::string dir_;
  std::string socket_;
  std::string error_;
  pid_t pid_ = -1;
};

class RoundTripTest : public ::testing::TestWithParam<Adapter> {};

TEST_P(RoundTripTest, WriteFlushReadBack) {
  if (!HaveNbdkit()) GTEST_SKIP() << "nbdkit is not installed";
  Nbdkit server;
  ASSERT_EQ(server.error(), "");

  // Buffers outlive the Engine (it owns them while commands are in flight).
  std::vector<uint8_t> data(65536);
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<uint8_t>(i * 7 + (i >> 8) + 1);
  }
  std::vector<uint8_t> back(data.size(), 0);
  std::vector<uint8_t> untouched(4096, 0xee);
  int calls = 0;
  absl::Status write, flush, read, read_untouched;
  auto record = [&calls](absl::Status* into) {
    return [&calls, into](const absl::Status& s) {
      ++calls;
      *into = s;
    };
  };

  auto engine = Engine::Create({.adapter = GetParam(), .timeout = kTimeout});
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto exp = (*engine)->Open(server.uri(), 1);
  ASSERT_TRUE(exp.ok()) << exp.status();
  Export& e = **exp;
  EXPECT_EQ(e.size(), kExportSize);

  const uint64_t offset = 8192;
  ASSERT_TRUE(e.Write(0, offset, data, 0, record(&write)).ok());
  // An NBD server may run the commands in flight in any order (nbdkit does,
  // on several threads), and FLUSH covers only writes already completed:
  // flush and read once the write has completed.
  ASSERT_TRUE((*engine)->Drain().ok());
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(e.Flush(0, record(&flush)).ok());
  ASSERT_TRUE(e.Read(0, offset, absl::MakeSpan(back), record(&read)).ok());
  ASSERT_TRUE(
      e.Read(0, 0, absl::MakeSpan(untouched), record(&read_untouched)).ok());
  ASSERT_TRUE((*engine)->Drain().ok());

  EXPECT_EQ(calls, 4);
  EXPECT_TRUE(write.ok()) << write;
  EXPECT_TRUE(flush.ok()) << flush;
  EXPECT_TRUE(read.ok()) << read;
  EXPECT_TRUE(read_untouched.ok()) << read_untouched;
  EXPECT_EQ(back, data);
  EXPECT_EQ(untouched, std::vector<uint8_t>(4096, 0));  // memory starts zero
  EXPECT_TRUE((*engine)->Shutdown().ok());
}

INSTANTIATE_TEST_SUITE_P(Adapters, RoundTripTest,
                         ::testing::Values(Adapter::kBlocking, Adapter::kEpoll,
                                           Adapter::kIoUring),
                         [](const ::testing::TestParamInfo<Adapter>& info) {
                           return std::string(
                               nbd::engine::AdapterName(info.param));
                         });

}  // namespace
