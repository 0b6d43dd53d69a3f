// A raw-socket NBD client for hostile-client tests of the server: it sends
// exactly the bytes it is given (malformed, oversized, half messages) and
// reads what comes back, every wait bounded. Not a protocol engine: it
// knows just enough (the greeting, option replies, reply headers) to get a
// connection into transmission and to count replies.
#ifndef NBD_TESTS_ADAPTERS_SERVER_RAW_CLIENT_H_
#define NBD_TESTS_ADAPTERS_SERVER_RAW_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "protocol/constants.h"
#include "protocol/wire.h"

namespace nbd::test {

// One transmission reply as read: a simple reply, or one structured or
// extended chunk.
struct RawReply {
  uint32_t magic = 0;
  uint64_t cookie = 0;
  uint32_t error = 0;  // simple replies; for error chunks, their errno
  uint16_t flags = 0;  // chunks
  uint16_t type = 0;   // chunks
  Bytes payload;       // chunk payload (a simple reply's data is not read)
  bool done() const {
    return magic == kSimpleReplyMagic || (flags & kReplyFlagDone) != 0;
  }
};

// A request in the negotiated header style.
Bytes RawRequest(bool extended, Command command, uint64_t cookie,
                 uint64_t offset, uint64_t length, uint16_t flags = 0);
// An option request: IHAVEOPT, `option`, the length of `data`, `data`.
Bytes RawOption(uint32_t option, ByteSpan data = {});

class RawClient {
 public:
  // Connects to the Unix socket at `path`; nullptr if that fails.
  static std::unique_ptr<RawClient> ConnectUnix(const std::string& path);
  ~RawClient();  // closes the socket
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  int fd() const { return fd_; }

  // Sends all of `bytes`; false if the server closed the connection or it
  // took longer than `limit` (the server stopped reading).
  bool Send(ByteSpan bytes, absl::Duration limit = absl::Seconds(20));
  // Sends what the socket takes now without waiting; the bytes sent.
  size_t SendSome(ByteSpan bytes);
  // Exactly `n` bytes, or nullopt on EOF, error or after `limit`.
  std::optional<Bytes> Recv(size_t n, absl::Duration limit = absl::Seconds(20));
  // Reads and drops everything until the server closes the connection:
  // true once it did, false if it was still open after `limit`.
  bool WaitClosed(absl::Duration limit = absl::Seconds(20));
  // True if the connection is still open after reading what is there.
  bool Open();

  // Reads the greeting and sends the client flags (fixed newstyle, no
  // zeroes). False if the server sent no valid greeting.
  bool Greet();
  // Greet(), then NBD_OPT_EXTENDED_HEADERS (or STRUCTURED_REPLY), and
  // NBD_OPT_GO for `export_name`; true once GO was acknowledged.
  bool Handshake(bool extended = true, const std::string& export_name = "");
  // Reads one option reply; its header and data.
  std::optional<std::pair<OptionReplyHeader, Bytes>> ReadOptionReply(
      absl::Duration limit = absl::Seconds(20));
  // Reads one reply in the style Handshake() negotiated.
  std::optional<RawReply> ReadReply(absl::Duration limit = absl::Seconds(20));

  bool extended() const { return extended_; }

 private:
  explicit RawClient(int fd) : fd_(fd) {}
  int fd_;
  bool extended_ = false;
};

}  // namespace nbd::test

#endif  // NBD_TESTS_ADAPTERS_SERVER_RAW_CLIENT_H_
