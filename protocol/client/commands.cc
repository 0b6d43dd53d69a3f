// nbd::Client commands: client-side checks (libnbd's strict mode), request
// encoding, NBD_CMD_DISC and abandoning unsent commands.
#include <cerrno>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "protocol/client/client.h"
#include "protocol/client/internal/impl.h"
#include "protocol/names.h"
#include "protocol/status.h"
#include "protocol/wire.h"

namespace nbd {
ClientCall Client::Impl::CallOf(Command type) {
  switch (type) {
    case Command::kRead:
      return ClientCall::kRead;
    case Command::kWrite:
      return ClientCall::kWrite;
    case Command::kFlush:
      return ClientCall::kFlush;
    case Command::kTrim:
      return ClientCall::kTrim;
    case Command::kCache:
      return ClientCall::kCache;
    case Command::kWriteZeroes:
      return ClientCall::kWriteZeroes;
    case Command::kBlockStatus:
      return ClientCall::kBlockStatus;
    default:
      // NBD_CMD_DISC (and anything unknown) follows Disconnect()'s rules.
      return ClientCall::kDisconnect;
  }
}

absl::Status Client::Impl::Validate(Command type, uint16_t flags,
                                    uint64_t offset, uint64_t length) const {
  if (absl::Status s = Check(CallOf(type)); !s.ok()) return s;
  const char* name = CommandName(type);
  const uint32_t strict = opts_.strict;

  if ((flags & ~kCmdFlagsKnown) != 0 && (strict & kStrictFlags)) {
    return ErrnoStatus(EINVAL, absl::StrFormat("%s: unknown flags 0x%x", name,
                                               flags & ~kCmdFlagsKnown));
  }
  if ((flags & ~AllowedCommandFlags(type) & kCmdFlagsKnown) != 0 &&
      (strict & kStrictFlags)) {
    return ErrnoStatus(
        EINVAL, absl::StrFormat("%s: flags 0x%x are not valid for "
                                "this command",
                                name, flags & ~AllowedCommandFlags(type)));
  }
  if (type == Command::kRead && (flags & kCmdFlagPayloadLen)) {
    return ErrnoStatus(EINVAL, "NBD_CMD_READ cannot carry PAYLOAD_LEN");
  }

  if (strict & kStrictCommands) {
    if (IsWriteLikeCommand(type) && (tflags_ & kTransmitReadOnly)) {
      return ErrnoStatus(EPERM,
                         absl::StrCat(name, ": the export is read-only"));
    }
    struct Need {
      bool missing;
      const char* what;
    };
    const Need needs[] = {
        {type == Command::kFlush && !(tflags_ & kTransmitSendFlush),
         "the server does not support flush"},
        {type == Command::kTrim && !(tflags_ & kTransmitSendTrim),
         "the server does not support trim"},
        {type == Command::kWriteZeroes && !(tflags_ & kTransmitSendWriteZeroes),
         "the server does not support write zeroes"},
        {type == Command::kCache && !(tflags_ & kTransmitSendCache),
         "the server does not support cache"},
        {type == Command::kBlockStatus && (!structured_ || contexts_.empty()),
         "block status needs structured replies and a negotiated meta "
         "context"},
        {(flags & kCmdFlagFua) && !(tflags_ & kTransmitSendFua),
         "the server does not support FUA"},
        {(flags & kCmdFlagDf) && !(tflags_ & kTransmitSendDf),
         "the server does not support DF"},
        {(flags & kCmdFlagFastZero) && !(tflags_ & kTransmitSendFastZero),
         "the server does not support FAST_ZERO"},
        {(flags & kCmdFlagPayloadLen) && !extended_,
         "PAYLOAD_LEN needs extended headers"},
    };
    for (const Need& n : needs) {
      if (n.missing)
        return ErrnoStatus(ENOTSUP, absl::StrCat(name, ": ", n.what));
    }
  }

  if (type == Command::kFlush) return absl::OkStatus();

  if (length == 0 && (strict & kStrictZeroSize)) {
    return ErrnoStatus(EINVAL, absl::StrCat(name, ": zero-length request"));
  }
  const bool has_payload = type == Command::kRead || type == Command::kWrite;
  if (has_payload && length > kHardMaxPayload) {
    return ErrnoStatus(ERANGE, absl::StrFormat("%s: %d bytes exceed the "
                                               "64 MiB limit",
                                               name, length));
  }
  if (has_payload && (strict & kStrictPayload)) {
    uint32_t limit = opts_.max_payload;
    if (block_size_committed_ && block_size_.maximum != 0) {
      limit = std::min(limit, block_size_.maximum);
    }
    if (length > limit) {
      return ErrnoStatus(ERANGE,
                         absl::StrFormat("%s: %d bytes exceed the payload "
                                         "limit of %d",
                                         name, length, limit));
    }
  }
  if (!extended_ && length > std::numeric_limits<uint32_t>::max()) {
    return ErrnoStatus(
        ERANGE,
        absl::StrFormat("%s: length %d needs extended headers", name, length));
  }
  if (strict & kStrictBounds) {
    uint64_t size = size_.value_or(0);
    if (offset > size || length > size - offset) {
      return ErrnoStatus(IsWriteLikeCommand(type) ? ENOSPC : EINVAL,
                         absl::StrFormat("%s: request [%d, +%d) is outside "
                                         "the export of %d bytes",
                                         name, offset, length, size));
    }
  }
  if ((strict & kStrictAlign) && block_size_committed_ &&
      block_size_.minimum > 1) {
    uint64_t min = block_size_.minimum;
    if (offset % min != 0 || length % min != 0) {
      return ErrnoStatus(EINVAL,
                         absl::StrFormat("%s: request [%d, +%d) is not "
                                         "aligned to the %d-byte minimum "
                                         "block size",
                                         name, offset, length, min));
    }
  }
  return absl::OkStatus();
}

Cookie Client::Impl::Queue(Command type, uint16_t flags, uint64_t offset,
                           uint64_t length, uint8_t* read_buffer,
                           absl::Span<const uint8_t> write_payload,
                           bool report_chunks, uint64_t tag) {
  Cookie cookie = next_cookie_++;
  if (tracing()) {
    TraceLine(absl::StrFormat("-> %s cookie=%d offset=%d length=%d flags=0x%x",
                              CommandName(type), cookie, offset, length,
                              flags));
  }
  const auto kind = type == Command::kDisc
                        ? client_internal::SegmentKind::kDiscHeader
                        : client_internal::SegmentKind::kRequestHeader;
  if (extended_) {
    out_.PushOwned(kind, cookie,
                   EncodeExtendedRequest({flags, static_cast<uint16_t>(type),
                                          cookie, offset, length}));
  } else {
    out_.PushOwned(kind, cookie,
                   EncodeRequest({flags, static_cast<uint16_t>(type), cookie,
                                  offset, static_cast<uint32_t>(length)}));
  }
  out_.PushReference(client_internal::SegmentKind::kWritePayload, cookie,
                     write_payload);
  if (type != Command::kDisc) {
    PendingCommand cmd;
    cmd.cookie = cookie;
    cmd.type = type;
    cmd.flags = flags;
    cmd.tag = tag;
    cmd.offset = offset;
    cmd.length = length;
    cmd.read_buffer = read_buffer;
    cmd.report_chunks = report_chunks;
    cmd.payload_pending = !write_payload.empty();
    commands_.emplace(cookie, std::move(cmd));
  }
  return cookie;
}

absl::StatusOr<Cookie> Client::Impl::Issue(Command type, uint16_t flags,
                                           uint64_t offset, uint64_t length,
                                           uint64_t tag) {
  if (absl::Status s = Validate(type, flags, offset, length); !s.ok()) {
    return s;
  }
  return Queue(type, flags, offset, length, nullptr, {}, false, tag);
}

void Client::Impl::QueueDisc() {
  state_ = State::kDisconnectQueued;
  Queue(Command::kDisc, 0, 0, 0, nullptr, {}, false, 0);
}

void Client::Impl::DisconnectWhenDrained() {
  if (state_ == State::kTransmission) state_ = State::kDisconnectLater;
}

void Client::Impl::MaybeSendDisc() {
  if (state_ == State::kDisconnectLater && commands_.empty()) QueueDisc();
}

void Client::Impl::AbandonUnsent() {
  bool had_disc = false;
  for (Cookie cookie : out_.RemoveUnexposedCommands()) {
    auto it = commands_.find(cookie);
    if (it == commands_.end()) {
      had_disc = true;  // NBD_CMD_DISC; re-queued below
      continue;
    }
    const Command type = it->second.type;
    const uint64_t tag = it->second.tag;
    commands_.erase(it);
    events_.push_back(CommandCompleted{
        cookie, type,
        ErrnoStatus(ENOTCONN,
                    "command abandoned by Shutdown before it was "
                    "sent"),
        tag});
  }
  if (had_disc) QueueDisc();
}

// ---- Public command calls ---------------------------------------------------

absl::StatusOr<Cookie> Client::Impl::Read(uint64_t offset,
                                          absl::Span<uint8_t> buffer,
                                          ReadOptions options) {
  if (absl::Status s =
          Validate(Command::kRead, options.flags, offset, buffer.size());
      !s.ok()) {
    return s;
  }
  return Queue(Command::kRead, options.flags, offset, buffer.size(),
               buffer.data(), {}, options.report_chunks, options.tag);
}

absl::StatusOr<Cookie> Client::Impl::Write(uint64_t offset,
                                           absl::Span<const uint8_t> data,
                                           uint16_t flags, uint64_t tag) {
  if (absl::Status s = Validate(Command::kWrite, flags, offset, data.size());
      !s.ok()) {
    return s;
  }
  // With extended headers a WRITE MUST carry PAYLOAD_LEN (the spec; libnbd
  // sets it too): a server may otherwise take the payload for the next
  // requests, or refuse the write and read the payload as requests.
  if (extended_) flags |= kCmdFlagPayloadLen;
  return Queue(Command::kWrite, flags, offset, data.size(), nullptr, data,
               false, tag);
}

absl::StatusOr<Cookie> Client::Read(uint64_t offset, absl::Span<uint8_t> buffer,
                                    ReadOptions options) {
  return impl_->Read(offset, buffer, options);
}

absl::StatusOr<Cookie> Client::Write(uint64_t offset,
                                     absl::Span<const uint8_t> data,
                                     uint16_t flags, uint64_t tag) {
  return impl_->Write(offset, data, flags, tag);
}

absl::StatusOr<Cookie> Client::Flush(uint16_t flags, uint64_t tag) {
  return impl_->Issue(Command::kFlush, flags, 0, 0, tag);
}

absl::StatusOr<Cookie> Client::Trim(uint64_t offset, uint64_t length,
                                    uint16_t flags, uint64_t tag) {
  return impl_->Issue(Command::kTrim, flags, offset, length, tag);
}

absl::StatusOr<Cookie> Client::Cache(uint64_t offset, uint64_t length,
                                     uint16_t flags, uint64_t tag) {
  return impl_->Issue(Command::kCache, flags, offset, length, tag);
}

absl::StatusOr<Cookie> Client::WriteZeroes(uint64_t offset, uint64_t length,
                                           uint16_t flags, uint64_t tag) {
  return impl_->Issue(Command::kWriteZeroes, flags, offset, length, tag);
}

absl::StatusOr<Cookie> Client::BlockStatus(uint64_t offset, uint64_t length,
                                           uint16_t flags, uint64_t tag) {
  return impl_->Issue(Command::kBlockStatus, flags, offset, length, tag);
}

}  // namespace nbd
