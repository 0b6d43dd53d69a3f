// A tiny fake NBD server for one connection that never closes after the
// client's NBD_CMD_DISC: fixed newstyle handshake, every option but GO
// answered NBD_REP_ERR_UNSUP, GO answered with the export's size, then it
// reads requests until NBD_CMD_DISC and holds the socket open until the
// client closes it (or the server is destroyed).
#ifndef NBD_TESTS_TOOLS_HOLD_OPEN_SERVER_H_
#define NBD_TESTS_TOOLS_HOLD_OPEN_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace nbd::test {

class HoldOpenServer {
 public:
  // Listens on `socket_path`.
  static absl::StatusOr<std::unique_ptr<HoldOpenServer>> Start(
      const std::string& socket_path, uint64_t export_size);
  ~HoldOpenServer();

  std::string Uri() const { return "nbd+unix:///?socket=" + path_; }
  bool saw_disc() const { return saw_disc_.load(); }
  // True once the client closed its end after the DISC.
  bool client_closed() const { return client_closed_.load(); }

 private:
  HoldOpenServer() = default;
  void Serve();

  std::string path_;
  uint64_t size_ = 0;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::thread thread_;
  std::atomic<bool> saw_disc_{false};
  std::atomic<bool> client_closed_{false};
};

}  // namespace nbd::test

#endif  // NBD_TESTS_TOOLS_HOLD_OPEN_SERVER_H_
