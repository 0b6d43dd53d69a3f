#include "tests/tools/hold_open_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace nbd::test {
namespace {

constexpr uint64_t kIHaveOpt = 0x49484156454F5054ull;
constexpr uint64_t kOptReplyMagic = 0x3e889045565a9ull;
constexpr uint32_t kOptGo = 7;
constexpr uint32_t kRepAck = 1;
constexpr uint32_t kRepInfo = 3;
constexpr uint32_t kRepErrUnsup = 0x80000001u;
constexpr uint16_t kCmdRead = 0;
constexpr uint16_t kCmdWrite = 1;
constexpr uint16_t kCmdDisc = 2;
constexpr uint16_t kFlagHasFlags = 1 << 0;
constexpr uint16_t kFlagCanMultiConn = 1 << 8;

void Put(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out += static_cast<char>(v >> (8 * i));
}
uint64_t Get(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// Reads exactly `n` bytes, waiting also on `wake`; false on EOF/error/wake.
bool ReadAll(int fd, int wake, uint8_t* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) return false;
    if (fds[1].revents != 0) return false;
    const ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t r =
        send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

std::string OptReply(uint32_t option, uint32_t type, const std::string& data) {
  std::string out;
  Put(out, kOptReplyMagic, 8);
  Put(out, option, 4);
  Put(out, type, 4);
  Put(out, data.size(), 4);
  return out + data;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HoldOpenServer>> HoldOpenServer::Start(
    const std::string& socket_path, uint64_t export_size) {
  return Start(socket_path, export_size, Options());
}

absl::StatusOr<std::unique_ptr<HoldOpenServer>> HoldOpenServer::Start(
    const std::string& socket_path, uint64_t export_size, Options options) {
  std::unique_ptr<HoldOpenServer> s(new HoldOpenServer());
  s->path_ = socket_path;
  s->size_ = export_size;
  s->options_ = options;
  s->listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (bind(s->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) !=
          0 ||
      listen(s->listen_fd_, 16) != 0 || pipe(s->wake_) != 0) {
    return absl::InternalError("cannot listen on " + socket_path);
  }
  s->acceptor_ = std::thread([p = s.get()] { p->Accept(); });
  return s;
}

HoldOpenServer::~HoldOpenServer() {
  if (wake_[1] >= 0) (void)!write(wake_[1], "x", 1);
  if (acceptor_.joinable()) acceptor_.join();
  for (std::thread& t : threads_) t.join();
  for (int fd : {listen_fd_, wake_[0], wake_[1]}) {
    if (fd >= 0) close(fd);
  }
  unlink(path_.c_str());
}

bool HoldOpenServer::Eventually(const std::function<bool()>& done) {
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (!done()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

bool HoldOpenServer::WaitForDiscs(int n) const {
  return Eventually([&] { return discs_.load() >= n; });
}

bool HoldOpenServer::client_closed() const {
  return Eventually([&] {
    return accepted_.load() > 0 && closed_.load() == accepted_.load();
  });
}

void HoldOpenServer::Accept() {
  for (int i = 0; i < options_.connections; ++i) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) <= 0 || fds[1].revents != 0) return;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    ++accepted_;
    threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

void HoldOpenServer::Serve(int fd) {
  std::string greeting = "NBDMAGIC";
  Put(greeting, kIHaveOpt, 8);
  Put(greeting, 3, 2);  // FIXED_NEWSTYLE | NO_ZEROES
  uint8_t buf[28];
  bool ok = WriteAll(fd, greeting) && ReadAll(fd, wake_[0], buf, 4);
  // Options until GO.
  while (ok) {
    ok = ReadAll(fd, wake_[0], buf, 16);
    if (!ok) break;
    const auto option = static_cast<uint32_t>(Get(buf + 8, 4));
    const auto length = static_cast<uint32_t>(Get(buf + 12, 4));
    std::vector<uint8_t> data(length);
    if (length > 0 && !ReadAll(fd, wake_[0], data.data(), length)) break;
    if (option != kOptGo) {
      ok = WriteAll(fd, OptReply(option, kRepErrUnsup, ""));
      continue;
    }
    std::string info;
    Put(info, 0, 2);      // NBD_INFO_EXPORT
    Put(info, size_, 8);  // size
    Put(info, kFlagHasFlags | (options_.multi_conn ? kFlagCanMultiConn : 0), 2);
    ok = WriteAll(fd, OptReply(option, kRepInfo, info)) &&
         WriteAll(fd, OptReply(option, kRepAck, ""));
    break;
  }
  // Transmission: simple requests until DISC (READs answered with zeros).
  std::vector<uint8_t> payload;
  while (ok && ReadAll(fd, wake_[0], buf, 28)) {
    const auto type = static_cast<uint16_t>(Get(buf + 6, 2));
    const auto length = static_cast<size_t>(Get(buf + 24, 4));
    if (type == kCmdDisc) {
      ++discs_;
      break;
    }
    if (type == kCmdWrite) {
      payload.resize(length);
      ok = ReadAll(fd, wake_[0], payload.data(), length);
    }
    if (!ok || options_.stall) continue;
    std::string reply;
    Put(reply, 0x67446698, 4);
    Put(reply, 0, 4);
    reply.append(reinterpret_cast<char*>(buf + 8), 8);  // cookie
    if (type == kCmdRead) reply.append(length, '\0');
    ok = WriteAll(fd, reply);
  }
  // Hold the socket open, even after the client's SHUT_WR (EOF), until
  // the client closes it completely (POLLHUP) or teardown.
  while (true) {
    pollfd hold[2] = {{fd, 0, 0}, {wake_[0], POLLIN, 0}};
    if (poll(hold, 2, -1) < 0 || hold[1].revents != 0) break;
    if ((hold[0].revents & (POLLHUP | POLLERR)) != 0) {
      ++closed_;
      break;
    }
  }
  close(fd);
}

}  // namespace nbd::test
