// Independent decoders of the two NBD byte streams of a simulated
// connection, fed by InMemoryPair's tap. They know only the wire format
// (the spec's framing), not the cores, and answer what the simulation's
// oracle needs: where messages end, so whether EOF at a given stream
// offset is at a message boundary (a clean close) or inside a message (a
// dead connection); where NBD_CMD_DISC / NBD_OPT_ABORT ended; and framing
// rules a correct peer keeps (recorded as violations).
#ifndef NBD_TESTS_SIM_WIRE_OBSERVER_H_
#define NBD_TESTS_SIM_WIRE_OBSERVER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/types/span.h"

namespace nbd::sim {

// Header/payload framing shared by both observers: collects `head_want_`
// header bytes into `head_`, then calls OnHeader(), which asks for more
// header bytes, sets `payload_left_` or ends the message.
class Framer {
 public:
  virtual ~Framer() = default;
  void Add(absl::Span<const uint8_t> bytes);
  uint64_t size() const { return pos_; }
  const std::vector<std::string>& violations() const { return violations_; }

 protected:
  explicit Framer(size_t first_header) : head_want_(first_header) {}
  virtual void OnHeader() = 0;
  virtual void EndMessage() = 0;
  void Break(std::string why);

  bool broken_ = false;
  bool in_payload_ = false;
  uint64_t pos_ = 0;
  std::vector<uint8_t> head_;
  size_t head_want_;
  uint64_t payload_left_ = 0;
  std::vector<std::string> violations_;
};

// What the client sends: client flags, options, requests (+ payloads).
class ClientStreamObserver : public Framer {
 public:
  ClientStreamObserver() : Framer(4) {}

  // The server is at a message boundary after `pos` bytes: at 0, after the
  // client flags, after a whole option or a whole request.
  bool IsBoundary(uint64_t pos) const;
  // Where the first NBD_CMD_DISC or NBD_OPT_ABORT ended, if one was sent.
  std::optional<uint64_t> goodbye_end() const { return goodbye_end_; }
  // Message ends, in order, starting with 0 (for choosing cut points).
  const std::vector<uint64_t>& boundaries() const { return boundaries_; }

 private:
  enum class State { kFlags, kMagic, kHeader };
  void OnHeader() override;
  void EndMessage() override;

  State state_ = State::kFlags;
  bool goodbye_ = false;  // the current message is DISC or ABORT
  std::optional<uint64_t> goodbye_end_;
  std::vector<uint64_t> boundaries_{0};
};

// What the server sends: the greeting, option replies, then simple replies
// and structured (or extended) chunks.
class ServerStreamObserver : public Framer {
 public:
  // The length of the READ with `cookie`, or nullopt if it is not a READ:
  // a successful simple reply to a READ carries that many bytes.
  using ReadLength = std::function<std::optional<uint64_t>(uint64_t cookie)>;
  explicit ServerStreamObserver(ReadLength read_length)
      : Framer(18), read_length_(std::move(read_length)) {}

  // The client is at a reply boundary in transmission after `pos` bytes:
  // where the handshake ended (the ACK to NBD_OPT_GO) or after a simple
  // reply or a chunk with NBD_REPLY_FLAG_DONE.
  bool IsTransmissionBoundary(uint64_t pos) const;
  std::optional<uint64_t> transmission_start() const {
    return transmission_start_;
  }
  // Message ends, in order (for choosing cut points).
  const std::vector<uint64_t>& boundaries() const { return boundaries_; }

 private:
  enum class State { kGreeting, kMagic, kHeader };
  void OnHeader() override;
  void EndMessage() override;

  ReadLength read_length_;
  State state_ = State::kGreeting;
  bool transmission_ = false;
  bool ends_reply_ = false;  // the current message ends a reply
  bool starts_transmission_ = false;
  std::optional<uint64_t> transmission_start_;
  std::vector<uint64_t> boundaries_;  // message ends (any), in order
  std::vector<uint64_t> reply_ends_;  // transmission boundaries, in order
};

}  // namespace nbd::sim

#endif  // NBD_TESTS_SIM_WIRE_OBSERVER_H_
