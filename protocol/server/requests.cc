// nbd::ServerSession requests: header decoding, validation, WRITE payloads.
//
// The session answers invalid requests itself, the way nbdkit does:
// unknown command or flag, unadvertised command -> EINVAL; write-type
// command on a read-only export -> EPERM; READ/WRITE above max_block ->
// EOVERFLOW; past the end -> ENOSPC (write-type) or EINVAL; misaligned ->
// EINVAL. A payload that comes with a rejected request is read and dropped
// (up to max_discard_payload; beyond that the connection is dropped).
//
// Which requests carry a payload depends on the headers (proto.md,
// "Request message"). Compact: only WRITE, `length` bytes. Extended: any
// request with NBD_CMD_FLAG_PAYLOAD_LEN, `length` bytes, and nothing else;
// a WRITE MUST have the flag, so one without it has no payload (its length
// is an effect length) and fails with EINVAL without consuming a byte: the
// next bytes are the next request header, never data to write. A payload
// on a command that takes none (READ, or BLOCK_STATUS, whose filter form
// this server does not advertise) is consumed and refused with EINVAL. In
// both forms a payload above max_block is consumed and refused with
// EOVERFLOW up to max_discard_payload, and drops the connection beyond it:
// the spec says a payload length up to 2^25 SHOULD NOT be taken for a
// denial of service, even above the advertised maximum.
#include <cerrno>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "protocol/names.h"
#include "protocol/server/internal/impl.h"
#include "protocol/status.h"
#include "protocol/wire.h"

namespace nbd {
namespace {

// READ/WRITE payloads are never larger than this, whatever max_block says,
// so chunk lengths always fit the 32-bit fields.
constexpr uint64_t kPayloadCeiling = uint64_t{1} << 31;

const char* ErrorText(int e) {
  switch (e) {
    case EPERM:
      return "the export is read-only";
    case ENOSPC:
      return "request runs past the end of the export";
    case EOVERFLOW:
      return "request is larger than the maximum payload";
    default:
      return "invalid request";
  }
}

}  // namespace

void ServerSession::Impl::OnRequestHeader() {
  ServerRequest r;
  if (extended_) {
    absl::StatusOr<ExtendedRequest> h = DecodeExtendedRequest(rx_.scratch());
    if (!h.ok()) return Fail(ErrnoStatus(EPROTO, h.status().message()));
    r.cookie = h->cookie;
    r.command = static_cast<Command>(h->type);
    r.flags = h->flags;
    r.offset = h->offset;
    r.length = h->length;
  } else {
    absl::StatusOr<Request> h = DecodeRequest(rx_.scratch());
    if (!h.ok()) return Fail(ErrnoStatus(EPROTO, h.status().message()));
    r.cookie = h->cookie;
    r.command = static_cast<Command>(h->type);
    r.flags = h->flags;
    r.offset = h->offset;
    r.length = h->length;
  }
  if (tracing()) TraceRequest(r);
  if (r.command == Command::kDisc) {
    // Soft disconnect: the client sends nothing more. Outstanding requests
    // are still answered.
    return StartClosing("NBD_CMD_DISC received");
  }
  // The payload, if any (see the top of this file).
  const bool payload_flag = (r.flags & kCmdFlagPayloadLen) != 0;
  uint64_t payload = 0;
  if (extended_) {
    if (payload_flag) payload = r.length;
  } else if (r.command == Command::kWrite) {
    payload = r.length;
  }
  current_ = r;
  const uint64_t ceiling =
      std::min<uint64_t>(opts_.exports[*export_].max_block, kPayloadCeiling);
  if (extended_ && r.command == Command::kWrite && !payload_flag) {
    // No payload follows: answer and read the next header.
    constexpr const char* kWhy =
        "NBD_CMD_WRITE without NBD_CMD_FLAG_PAYLOAD_LEN under extended "
        "headers (no payload; nothing written)";
    if (tracing()) TraceLine(absl::StrCat("   refused by the session: ", kWhy));
    QueueError(r, EINVAL, kWhy);
    return Expect(Unit::kRequestHeader, kExtendedRequestSize);
  }
  const int error = Validate(r);
  if (payload > 0 && (error != 0 || payload > ceiling)) {
    if (payload > opts_.max_discard_payload) {
      return Fail(ErrnoStatus(
          EOVERFLOW,
          absl::StrFormat("request payload of %d bytes is too large; "
                          "dropping the connection",
                          payload)));
    }
    skipped_error_ = error != 0 ? error : EOVERFLOW;
    if (tracing()) {
      TraceLine(
          absl::StrFormat("   refused by the session: %s; skipping %d "
                          "payload bytes",
                          ErrorText(skipped_error_), payload));
    }
    return ExpectSkip(payload, AfterSkip::kRequestError);
  }
  if (error != 0) {
    if (tracing()) {
      TraceLine(absl::StrCat("   refused by the session: ", ErrorText(error)));
    }
    QueueError(r, error, ErrorText(error));
    return Expect(Unit::kRequestHeader,
                  extended_ ? kExtendedRequestSize : kRequestSize);
  }
  if (payload > 0) {
    current_payload_ =
        TakeBuffer(static_cast<size_t>(payload), &current_capacity_);
    return ExpectInto(Unit::kPayload, current_payload_.get(),
                      static_cast<size_t>(payload));
  }
  AcceptRequest(r, nullptr, 0);
  Expect(Unit::kRequestHeader, extended_ ? kExtendedRequestSize : kRequestSize);
}

void ServerSession::Impl::OnPayload() {
  AcceptRequest(current_, std::move(current_payload_), current_capacity_);
  current_capacity_ = 0;
  Expect(Unit::kRequestHeader, extended_ ? kExtendedRequestSize : kRequestSize);
}

void ServerSession::Impl::FinishSkippedRequest() {
  QueueError(current_, skipped_error_, ErrorText(skipped_error_));
  skipped_error_ = 0;
  Expect(Unit::kRequestHeader, extended_ ? kExtendedRequestSize : kRequestSize);
}

void ServerSession::Impl::AcceptRequest(const ServerRequest& request,
                                        std::unique_ptr<uint8_t[]> payload,
                                        size_t capacity) {
  ServerRequest r = request;
  r.handle = next_handle_++;
  if (payload != nullptr) {
    r.payload =
        absl::Span<const uint8_t>(payload.get(), static_cast<size_t>(r.length));
  }
  InFlight& f = in_flight_[r.handle];
  f.request = r;
  f.payload = std::move(payload);
  f.payload_capacity = capacity;
  events_.push_back(r);
}

int ServerSession::Impl::Validate(const ServerRequest& r) const {
  const ExportInfo& e = opts_.exports[*export_];
  const Command c = r.command;
  switch (c) {
    case Command::kRead:
    case Command::kWrite:
    case Command::kFlush:
    case Command::kTrim:
    case Command::kCache:
    case Command::kWriteZeroes:
    case Command::kBlockStatus:
      break;
    default:
      return EINVAL;  // unknown (or unsupported RESIZE)
  }
  // Flags: known, meaningful for the command, and advertised.
  if ((r.flags & ~AllowedCommandFlags(c)) != 0) return EINVAL;
  if ((r.flags & kCmdFlagPayloadLen) && !extended_) return EINVAL;
  if ((r.flags & kCmdFlagFua) && !(tflags_ & kTransmitSendFua)) return EINVAL;
  if ((r.flags & kCmdFlagDf) && !(tflags_ & kTransmitSendDf)) return EINVAL;
  if ((r.flags & kCmdFlagFastZero) && !(tflags_ & kTransmitSendFastZero)) {
    return EINVAL;
  }
  if (IsWriteLikeCommand(c) && e.read_only) return EPERM;
  // Commands that were not advertised.
  if ((c == Command::kFlush && !(tflags_ & kTransmitSendFlush)) ||
      (c == Command::kTrim && !(tflags_ & kTransmitSendTrim)) ||
      (c == Command::kWriteZeroes && !(tflags_ & kTransmitSendWriteZeroes)) ||
      (c == Command::kCache && !(tflags_ & kTransmitSendCache)) ||
      (c == Command::kBlockStatus && !meta_base_allocation_)) {
    return EINVAL;
  }
  if (c == Command::kFlush) return 0;  // offset and length are ignored
  if (c == Command::kRead || c == Command::kWrite) {
    const uint64_t ceiling = std::min<uint64_t>(e.max_block, kPayloadCeiling);
    if (r.length > ceiling) return EOVERFLOW;
  }
  if (r.offset > e.size || r.length > e.size - r.offset) {
    return IsWriteLikeCommand(c) ? ENOSPC : EINVAL;
  }
  if (c == Command::kBlockStatus && r.length == 0) return EINVAL;
  if (e.min_block > 1 &&
      (r.offset % e.min_block != 0 || r.length % e.min_block != 0)) {
    return EINVAL;
  }
  return 0;
}

}  // namespace nbd
