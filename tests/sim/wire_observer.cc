#include "tests/sim/wire_observer.h"

#include <algorithm>

#include "absl/strings/str_format.h"
#include "protocol/constants.h"
#include "protocol/endian.h"

namespace nbd::sim {
namespace {

constexpr uint32_t kOptionMagicHigh = 0x49484156;  // "IHAV" of "IHAVEOPT"
constexpr size_t kOptionHeader = 16;
constexpr size_t kCompactRequest = 28;
constexpr size_t kExtendedRequest = 32;
constexpr size_t kGreeting = 18;  // NBDMAGIC, IHAVEOPT, handshake flags
constexpr size_t kOptionReplyHeader = 20;
constexpr size_t kSimpleReply = 16;
constexpr size_t kStructuredChunk = 20;
constexpr size_t kExtendedChunk = 32;

bool Contains(const std::vector<uint64_t>& sorted, uint64_t pos) {
  return std::binary_search(sorted.begin(), sorted.end(), pos);
}

}  // namespace

void Framer::Add(absl::Span<const uint8_t> bytes) {
  size_t i = 0;
  while (i < bytes.size()) {
    if (broken_) {
      pos_ += bytes.size() - i;
      return;
    }
    if (in_payload_) {
      const uint64_t n = std::min<uint64_t>(payload_left_, bytes.size() - i);
      i += n;
      pos_ += n;
      payload_left_ -= n;
      if (payload_left_ == 0) {
        in_payload_ = false;
        EndMessage();
      }
      continue;
    }
    const size_t n = std::min(head_want_ - head_.size(), bytes.size() - i);
    head_.insert(head_.end(), bytes.begin() + i, bytes.begin() + i + n);
    i += n;
    pos_ += n;
    if (head_.size() == head_want_) OnHeader();
  }
}

void Framer::Break(std::string why) {
  violations_.push_back(absl::StrFormat("at stream offset %d: %s", pos_, why));
  broken_ = true;
}

// ---- Client to server -----------------------------------------------------

bool ClientStreamObserver::IsBoundary(uint64_t pos) const {
  return Contains(boundaries_, pos);
}

void ClientStreamObserver::EndMessage() {
  boundaries_.push_back(pos_);
  if (goodbye_ && !goodbye_end_.has_value()) goodbye_end_ = pos_;
  goodbye_ = false;
  head_.clear();
  head_want_ = 4;
  state_ = State::kMagic;
}

void ClientStreamObserver::OnHeader() {
  const uint8_t* h = head_.data();
  switch (state_) {
    case State::kFlags:
      return EndMessage();
    case State::kMagic: {
      const uint32_t magic = LoadBe32(h);
      state_ = State::kHeader;
      if (magic == kOptionMagicHigh) {
        head_want_ = kOptionHeader;
      } else if (magic == kRequestMagic) {
        head_want_ = kCompactRequest;
      } else if (magic == kExtendedRequestMagic) {
        head_want_ = kExtendedRequest;
      } else {
        Break(absl::StrFormat("unknown magic 0x%08x", magic));
      }
      return;
    }
    case State::kHeader:
      break;
  }
  if (head_want_ == kOptionHeader) {
    if (LoadBe64(h) != kIHaveOptMagic) return Break("bad option magic");
    goodbye_ = LoadBe32(h + 8) == static_cast<uint32_t>(Option::kAbort);
    payload_left_ = LoadBe32(h + 12);
  } else {
    const bool extended = head_want_ == kExtendedRequest;
    const uint16_t flags = LoadBe16(h + 4);
    const uint16_t type = LoadBe16(h + 6);
    const uint64_t length = extended ? LoadBe64(h + 24) : LoadBe32(h + 24);
    const bool write = type == static_cast<uint16_t>(Command::kWrite);
    goodbye_ = type == static_cast<uint16_t>(Command::kDisc);
    payload_left_ = 0;
    if (write || (extended && (flags & kCmdFlagPayloadLen))) {
      payload_left_ = length;
    }
    if (extended && write && !(flags & kCmdFlagPayloadLen)) {
      // The spec: with extended headers a WRITE MUST carry PAYLOAD_LEN.
      violations_.push_back(absl::StrFormat(
          "at stream offset %d: extended WRITE (cookie %d) without "
          "NBD_CMD_FLAG_PAYLOAD_LEN",
          pos_ - head_.size(), LoadBe64(h + 8)));
    }
  }
  if (payload_left_ == 0) return EndMessage();
  in_payload_ = true;
}

// ---- Server to client -----------------------------------------------------

bool ServerStreamObserver::IsTransmissionBoundary(uint64_t pos) const {
  return Contains(reply_ends_, pos);
}

void ServerStreamObserver::EndMessage() {
  boundaries_.push_back(pos_);
  if (starts_transmission_) {
    transmission_ = true;
    transmission_start_ = pos_;
  }
  if (transmission_ && (ends_reply_ || starts_transmission_)) {
    reply_ends_.push_back(pos_);
  }
  starts_transmission_ = false;
  ends_reply_ = false;
  head_.clear();
  head_want_ = transmission_ ? 4 : kOptionReplyHeader;
  state_ = transmission_ ? State::kMagic : State::kHeader;
}

void ServerStreamObserver::OnHeader() {
  const uint8_t* h = head_.data();
  switch (state_) {
    case State::kGreeting:
      if (LoadBe64(h) != kNbdMagic || LoadBe64(h + 8) != kIHaveOptMagic) {
        return Break("bad greeting");
      }
      return EndMessage();
    case State::kMagic: {
      const uint32_t magic = LoadBe32(h);
      state_ = State::kHeader;
      if (magic == kSimpleReplyMagic) {
        head_want_ = kSimpleReply;
      } else if (magic == kStructuredReplyMagic) {
        head_want_ = kStructuredChunk;
      } else if (magic == kExtendedReplyMagic) {
        head_want_ = kExtendedChunk;
      } else {
        Break(absl::StrFormat("unknown reply magic 0x%08x", magic));
      }
      return;
    }
    case State::kHeader:
      break;
  }
  payload_left_ = 0;
  if (!transmission_) {
    if (LoadBe64(h) != kOptionReplyMagic) return Break("bad option reply");
    const uint32_t option = LoadBe32(h + 8);
    const uint32_t type = LoadBe32(h + 12);
    starts_transmission_ = option == static_cast<uint32_t>(Option::kGo) &&
                           type == static_cast<uint32_t>(OptionReplyType::kAck);
    payload_left_ = LoadBe32(h + 16);
  } else if (head_want_ == kSimpleReply) {
    const uint32_t error = LoadBe32(h + 4);
    const uint64_t cookie = LoadBe64(h + 8);
    if (error == 0) payload_left_ = read_length_(cookie).value_or(0);
    ends_reply_ = true;
  } else {
    const bool extended = head_want_ == kExtendedChunk;
    const uint16_t flags = LoadBe16(h + 4);
    payload_left_ = extended ? LoadBe64(h + 24) : LoadBe32(h + 16);
    ends_reply_ = (flags & kReplyFlagDone) != 0;
  }
  if (payload_left_ == 0) return EndMessage();
  in_payload_ = true;
}

}  // namespace nbd::sim
