// A fake NBD server for tests of servers that never answer or close (or
// that close in the middle of the transmission phase).
#ifndef NBD_TESTS_ADAPTERS_INTEROP_SILENT_SERVER_H_
#define NBD_TESTS_ADAPTERS_INTEROP_SILENT_SERVER_H_

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace nbd::test {

// A fake oldstyle server (1 MiB export) that reads everything the client
// sends, records whether it saw EOF (the client's SHUT_WR), and never
// answers. It never closes its socket, unless `close_after` is set: then it
// closes once it has read that many bytes (a server lost with commands
// pending). `fd` is the server's end of a connected stream socket; owned.
class SilentServer {
 public:
  explicit SilentServer(int fd, size_t close_after = 0)
      : fd_(fd), close_after_(close_after) {
    thread_ = std::thread([this] { Serve(); });
  }
  ~SilentServer() {
    stop_ = true;
    thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  size_t bytes_read() const { return bytes_; }
  bool saw_eof() const { return eof_; }

 private:
  void Serve() {
    uint8_t greeting[152] = {};
    std::memcpy(greeting, "NBDMAGIC", 8);
    const uint8_t oldstyle[8] = {0x00, 0x00, 0x42, 0x02,
                                 0x81, 0x86, 0x12, 0x53};
    std::memcpy(greeting + 8, oldstyle, 8);
    greeting[16 + 5] = 0x10;  // size 1 MiB, big-endian
    greeting[24 + 3] = 0x01;  // flags: HAS_FLAGS
    if (::send(fd_, greeting, sizeof greeting, MSG_NOSIGNAL) < 0) return;
    uint8_t buf[4096];
    while (!stop_) {
      ssize_t r = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (r > 0) bytes_ += r;
      if (r == 0) eof_ = true;
      if (close_after_ > 0 && bytes_ >= close_after_) {
        ::close(fd_);
        fd_ = -1;
        return;
      }
      if (r <= 0) absl::SleepFor(absl::Milliseconds(5));
    }
  }

  int fd_;
  const size_t close_after_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> bytes_{0};
  std::atomic<bool> eof_{false};
};

}  // namespace nbd::test

#endif  // NBD_TESTS_ADAPTERS_INTEROP_SILENT_SERVER_H_
