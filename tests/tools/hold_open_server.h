// A tiny fake NBD server that never closes after the client's NBD_CMD_DISC:
// fixed newstyle handshake, every option but GO answered NBD_REP_ERR_UNSUP,
// GO answered with the export's size (and NBD_FLAG_CAN_MULTI_CONN if asked),
// then it reads requests until NBD_CMD_DISC and holds the socket open until
// the client closes it (or the server is destroyed). READs are answered
// with zeros and WRITEs with success, unless it stalls: then it takes every
// request and never answers one. Each connection has its own thread.
#ifndef NBD_TESTS_TOOLS_HOLD_OPEN_SERVER_H_
#define NBD_TESTS_TOOLS_HOLD_OPEN_SERVER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace nbd::test {

class HoldOpenServer {
 public:
  struct Options {
    bool multi_conn = false;  // advertise NBD_FLAG_CAN_MULTI_CONN
    bool stall = false;       // never answer a command
    int connections = 1;      // accepted (then it stops listening)
  };
  // Listens on `socket_path`.
  static absl::StatusOr<std::unique_ptr<HoldOpenServer>> Start(
      const std::string& socket_path, uint64_t export_size);
  static absl::StatusOr<std::unique_ptr<HoldOpenServer>> Start(
      const std::string& socket_path, uint64_t export_size, Options options);
  ~HoldOpenServer();

  std::string Uri() const { return "nbd+unix:///?socket=" + path_; }
  // The connection threads see what the client did a little after it did
  // it (the client may have exited already), so these wait up to 5 s for
  // it to show before they answer false.
  //
  // True once a connection got an NBD_CMD_DISC.
  bool saw_disc() const { return WaitForDiscs(1); }
  // True once `n` connections got an NBD_CMD_DISC.
  bool WaitForDiscs(int n) const;
  // True once every accepted connection was closed by the client.
  bool client_closed() const;
  int accepted() const { return accepted_.load(); }

 private:
  HoldOpenServer() = default;
  void Accept();
  void Serve(int fd);
  static bool Eventually(const std::function<bool()>& done);

  std::string path_;
  uint64_t size_ = 0;
  Options options_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::thread acceptor_;
  std::vector<std::thread> threads_;  // only the acceptor touches it
  std::atomic<int> accepted_{0};
  std::atomic<int> discs_{0};
  std::atomic<int> closed_{0};
};

}  // namespace nbd::test

#endif  // NBD_TESTS_TOOLS_HOLD_OPEN_SERVER_H_
