// Test helpers for tests/adapters/connect: short temporary directories, real
// nbdkit servers on a Unix socket or loopback TCP, and a check that a socket
// carries an NBD newstyle greeting. Local to this package on purpose.
#ifndef NBD_TESTS_ADAPTERS_CONNECT_NBD_TEST_SERVER_H_
#define NBD_TESTS_ADAPTERS_CONNECT_NBD_TEST_SERVER_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nbd::adapters::testing {

// How long a helper waits for a server to come up or to answer.
inline constexpr absl::Duration kServerTimeout = absl::Seconds(30);

// A fresh directory under /tmp (short, so Unix socket paths fit in 108
// bytes; $TEST_TMPDIR can be too long), removed with its contents when
// destroyed.
class ShortTempDir {
 public:
  static absl::StatusOr<std::unique_ptr<ShortTempDir>> Create();
  ~ShortTempDir();
  ShortTempDir(const ShortTempDir&) = delete;
  ShortTempDir& operator=(const ShortTempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(std::string_view name) const;

 private:
  explicit ShortTempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// The absolute path of `name` in $PATH (or /usr/bin, /usr/sbin, /bin,
// /sbin), or "" if it is not installed.
std::string FindProgram(std::string_view name);

// Reads the 18-byte newstyle greeting ("NBDMAGIC" "IHAVEOPT" flags16) from
// `fd` (blocking or not), waiting at most `timeout`. OK if it is one.
absl::Status ReadNewstyleGreeting(int fd,
                                  absl::Duration timeout = kServerTimeout);

// Reads exactly `n` bytes from `fd` within `timeout`.
absl::StatusOr<std::string> ReadExactly(int fd, size_t n,
                                        absl::Duration timeout);

// Writes all of `data` to `fd` within `timeout`.
absl::Status WriteAll(int fd, std::string_view data, absl::Duration timeout);

// A loopback TCP port that nothing listens on right now (bind to port 0,
// read it back, close). Another process could take it before it is used.
absl::StatusOr<uint16_t> PickFreeTcpPort(const char* ip);

// A foreground nbdkit child (`nbdkit -f --exit-with-parent -P PIDFILE ...`),
// stopped and reaped by the destructor.
class NbdkitServer {
 public:
  // Serves `plugin_args` (e.g. {"memory", "1M"}) on a Unix socket in a new
  // ShortTempDir.
  static absl::StatusOr<std::unique_ptr<NbdkitServer>> StartUnix(
      const std::vector<std::string>& plugin_args);
  // Serves on `ip` (e.g. "127.0.0.1") at a free TCP port.
  static absl::StatusOr<std::unique_ptr<NbdkitServer>> StartTcp(
      const std::string& ip, const std::vector<std::string>& plugin_args);
  // Serves on AF_VSOCK at `port` (any CID).
  static absl::StatusOr<std::unique_ptr<NbdkitServer>> StartVsock(
      uint32_t port, const std::vector<std::string>& plugin_args);

  ~NbdkitServer();
  NbdkitServer(const NbdkitServer&) = delete;
  NbdkitServer& operator=(const NbdkitServer&) = delete;

  const std::string& socket_path() const { return socket_path_; }
  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

 private:
  NbdkitServer() = default;
  // Starts nbdkit with `listen_args` and waits for its pid file.
  absl::Status Start(const std::vector<std::string>& listen_args,
                     const std::vector<std::string>& plugin_args);

  std::unique_ptr<ShortTempDir> dir_;
  std::string socket_path_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace nbd::adapters::testing

#endif  // NBD_TESTS_ADAPTERS_CONNECT_NBD_TEST_SERVER_H_
