// EpollServer on a Unix socket path that is already taken: a stale socket
// (nobody listening) is replaced, a live server's socket is not.
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>

#include "adapters/server/epoll_server.h"
#include "adapters/server/memory_backend.h"
#include "gtest/gtest.h"
#include "protocol/status.h"

namespace nbd {
namespace {

// Connects to `path`; returns the errno (0 when connected) and, if
// connected, whether the first 8 bytes are the NBD greeting's "NBDMAGIC".
int ConnectTo(const std::string& path, bool* greeted = nullptr) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  int e = 0;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    e = errno;
  } else if (greeted != nullptr) {
    char magic[8];
    *greeted = ::recv(fd, magic, sizeof(magic), MSG_WAITALL) == 8 &&
               std::memcmp(magic, "NBDMAGIC", 8) == 0;
  }
  ::close(fd);
  return e;
}

class ListenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nbdlsn.XXXXXX";  // short: sun_path is 108 bytes
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/sock";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  absl::StatusOr<std::unique_ptr<EpollServer>> Create() {
    EpollServerOptions o;
    o.unix_path = path_;
    o.exports.push_back({"mem", "", std::make_shared<MemoryBackend>(1 << 20)});
    return EpollServer::Create(std::move(o));
  }
  bool IsSocket() const {
    struct stat st;
    return ::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
  }

  std::string dir_, path_;
};

TEST_F(ListenTest, LiveServerKeepsItsSocket) {
  auto first = Create();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE((*first)->Start().ok());

  auto second = Create();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(StatusErrno(second.status()), EADDRINUSE) << second.status();
  EXPECT_NE(second.status().message().find("already listening on " + path_),
            std::string::npos)
      << second.status();

  // The first server is still reachable on its path.
  ASSERT_TRUE(IsSocket());
  bool greeted = false;
  EXPECT_EQ(ConnectTo(path_, &greeted), 0);
  EXPECT_TRUE(greeted);
}

TEST_F(ListenTest, StaleSocketIsReplaced) {
  {
    // A socket file whose server is gone: bound, never listening, closed.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ::close(fd);
  }
  ASSERT_TRUE(IsSocket());
  ASSERT_EQ(ConnectTo(path_), ECONNREFUSED);

  auto server = Create();
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Start().ok());
  bool greeted = false;
  EXPECT_EQ(ConnectTo(path_, &greeted), 0);
  EXPECT_TRUE(greeted);
  server->reset();
  EXPECT_FALSE(IsSocket());  // the server removes what it created
}

TEST_F(ListenTest, OtherFilesAreLeftAlone) {
  { std::ofstream(path_) << "keep me"; }
  auto server = Create();
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(StatusErrno(server.status()), EADDRINUSE) << server.status();
  std::ifstream in(path_);
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "keep me");
}

}  // namespace
}  // namespace nbd
