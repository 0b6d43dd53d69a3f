// nbd::Client replies: simple, structured and extended headers, chunk
// payloads, bounds checks and command completion.
//
// Every offset and length from the server is checked against the request
// before a byte lands in the caller's buffer. Violations that leave the
// byte stream in an unknown position kill the connection; violations
// inside a well-framed chunk fail only that command (EPROTO).
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "protocol/client/client.h"
#include "protocol/client/internal/impl.h"
#include "protocol/endian.h"
#include "protocol/names.h"
#include "protocol/status.h"
#include "protocol/wire.h"

namespace nbd {
namespace {

absl::Status ProtocolError(absl::string_view what) {
  return ErrnoStatus(EPROTO, what);
}

// Longest legal error chunk: error4 + msglen2 + 4096-byte message + offset8.
constexpr uint64_t kMaxErrorChunk = 6 + kMaxStringLength + 8;

// Is [offset, offset+length) inside [base, base+base_length)? Overflow-safe.
bool InRange(uint64_t offset, uint64_t length, uint64_t base,
             uint64_t base_length) {
  if (offset < base) return false;
  uint64_t rel = offset - base;
  return rel <= base_length && length <= base_length - rel;
}

}  // namespace

void Client::Impl::ExpectReplyHeader() {
  Expect(Unit::kReplyHeader,
         extended_ ? kExtendedReplyHeaderSize : kSimpleReplySize);
}

void Client::Impl::OnReplyHeader() {
  const uint8_t* p = rx_.scratch().data();
  const uint32_t magic = LoadBe32(p);
  if (extended_) {
    if (magic != kExtendedReplyMagic) {
      return Fail(ProtocolError(absl::StrFormat(
          "invalid or unexpected reply magic 0x%08x (extended headers were "
          "negotiated)",
          magic)));
    }
    absl::StatusOr<ExtendedReplyHeader> h =
        DecodeExtendedReplyHeader(rx_.scratch());
    if (!h.ok()) return Fail(ProtocolError(h.status().message()));
    return OnChunkHeader(h->flags, h->type, h->cookie, h->length);
  }
  if (magic == kSimpleReplyMagic) {
    absl::StatusOr<SimpleReply> r = DecodeSimpleReply(rx_.scratch());
    if (!r.ok()) return Fail(ProtocolError(r.status().message()));
    if (tracing()) {
      TraceLine(absl::StrFormat("<- simple reply cookie=%d error=%d", r->cookie,
                                r->error));
    }
    auto it = commands_.find(r->cookie);
    if (it == commands_.end() || r->cookie > out_.max_exposed_cookie() ||
        it->second.reply_status.has_value()) {
      return Fail(ProtocolError(absl::StrFormat(
          "simple reply for cookie %d, which matches no command in flight",
          r->cookie)));
    }
    PendingCommand& cmd = it->second;
    if (r->error != 0) {
      int e = NbdErrorToErrno(r->error);
      ExpectReplyHeader();
      return CompleteCommand(
          r->cookie,
          ErrnoStatus(
              e, absl::StrFormat("server error %d (%s) for offset %d", r->error,
                                 std::strerror(e), cmd.offset)));
    }
    if (cmd.type == Command::kRead && cmd.length > 0) {
      if (structured_) {
        return Fail(ProtocolError(
            "simple reply with data to NBD_CMD_READ after structured "
            "replies were negotiated"));
      }
      chunk_.cookie = r->cookie;
      cmd.data_seen = cmd.length;
      return ExpectInto(Unit::kSimpleReadPayload, cmd.read_buffer, cmd.length);
    }
    ExpectReplyHeader();
    return CompleteCommand(r->cookie, absl::OkStatus());
  }
  if (magic == kStructuredReplyMagic) {
    if (!structured_) {
      return Fail(
          ProtocolError("structured reply although structured replies were not "
                        "negotiated"));
    }
    chunk_.flags = LoadBe16(p + 4);
    chunk_.type = LoadBe16(p + 6);
    chunk_.cookie = LoadBe64(p + 8);
    return Expect(Unit::kStructuredLength, 4);
  }
  Fail(ProtocolError(
      absl::StrFormat("invalid or unexpected reply magic 0x%08x", magic)));
}

void Client::Impl::OnStructuredLength() {
  OnChunkHeader(chunk_.flags, chunk_.type, chunk_.cookie,
                LoadBe32(rx_.scratch().data()));
}

void Client::Impl::OnSimpleReadPayload() {
  Cookie cookie = chunk_.cookie;
  if (CurrentCommand() == nullptr) return;
  ExpectReplyHeader();
  CompleteCommand(cookie, absl::OkStatus());
}

void Client::Impl::OnChunkHeader(uint16_t flags, uint16_t type, Cookie cookie,
                                 uint64_t length) {
  chunk_.flags = flags;
  chunk_.type = type;
  chunk_.cookie = cookie;
  chunk_len_ = length;
  if (tracing()) {
    TraceLine(absl::StrFormat("<- %s cookie=%d flags=0x%x length=%d%s",
                              ChunkTypeName(type), cookie, flags, length,
                              (flags & kReplyFlagDone) ? " (done)" : ""));
  }
  auto it = commands_.find(cookie);
  if (it == commands_.end() || cookie > out_.max_exposed_cookie() ||
      it->second.reply_status.has_value()) {
    return Fail(ProtocolError(absl::StrFormat(
        "reply chunk (type %d) for cookie %d, which matches no command in "
        "flight",
        type, cookie)));
  }
  const PendingCommand& cmd = it->second;
  auto bad = [&](std::string_view why) {
    Fail(
        ProtocolError(absl::StrFormat("chunk type %d, length %d, cookie %d: "
                                      "%s",
                                      type, length, cookie, why)));
  };
  switch (static_cast<ChunkType>(type)) {
    case ChunkType::kNone:
      if (!(flags & kReplyFlagDone) || length != 0) {
        return bad("NBD_REPLY_TYPE_NONE must have DONE and no payload");
      }
      return FinishChunk();
    case ChunkType::kOffsetData:
      if (cmd.type != Command::kRead) return bad("data for a non-read");
      if (length < 9) return bad("OFFSET_DATA shorter than 9 bytes");
      if (length - 8 > cmd.length) return bad("more data than requested");
      return Expect(Unit::kDataOffset, 8);
    case ChunkType::kOffsetHole:
      if (cmd.type != Command::kRead) return bad("hole for a non-read");
      if (length != kOffsetHoleSize) return bad("OFFSET_HOLE is not 12 bytes");
      return Expect(Unit::kChunkPayload, kOffsetHoleSize);
    case ChunkType::kBlockStatus:
    case ChunkType::kBlockStatusExt: {
      if (cmd.type != Command::kBlockStatus) {
        return bad("block status for another command");
      }
      bool ext = static_cast<ChunkType>(type) == ChunkType::kBlockStatusExt;
      if (ext != extended_) {
        return bad(ext ? "BLOCK_STATUS_EXT without extended headers"
                       : "BLOCK_STATUS after extended headers");
      }
      uint64_t max = (ext ? 8 : 4) + uint64_t{opts_.max_block_status_extents} *
                                         (ext ? kBlockStatusExtDescriptorSize
                                              : kBlockStatusDescriptorSize);
      if (length > max) return bad("more extents than the limit allows");
      return Expect(Unit::kChunkPayload, length);
    }
    default:
      break;
  }
  if (IsChunkTypeError(type)) {
    if (length < 6 || length > kMaxErrorChunk) {
      return bad("error chunk length out of range");
    }
    return Expect(Unit::kChunkPayload, length);
  }
  bad("unknown non-error chunk type; the spec requires a hard disconnect");
}

void Client::Impl::SetCommandError(PendingCommand& cmd, absl::Status error) {
  // NBD_ESHUTDOWN starts the soft disconnect even when an earlier chunk
  // already gave the command another error.
  if (StatusErrno(error) == ESHUTDOWN) DisconnectWhenDrained();
  if (cmd.error.ok()) cmd.error = std::move(error);  // the first error wins
}

Client::Impl::PendingCommand* Client::Impl::CurrentCommand() {
  // The command can vanish mid-reply only if Shutdown() abandoned it, which
  // means the server answered a request it never received.
  auto it = commands_.find(chunk_.cookie);
  if (it != commands_.end()) return &it->second;
  Fail(ProtocolError(absl::StrFormat(
      "reply for cookie %d, which was never sent", chunk_.cookie)));
  return nullptr;
}

void Client::Impl::OnChunkPayload() {
  PendingCommand* current = CurrentCommand();
  if (current == nullptr) return;
  PendingCommand& cmd = *current;
  absl::Span<const uint8_t> payload(rx_.scratch().data(), rx_.scratch().size());
  const uint16_t type = chunk_.type;
  switch (static_cast<ChunkType>(type)) {
    case ChunkType::kOffsetHole: {
      absl::StatusOr<OffsetHole> hole = DecodeOffsetHole(payload);
      if (!hole.ok()) return Fail(ProtocolError(hole.status().message()));
      if (hole->length == 0) {
        return Fail(ProtocolError("OFFSET_HOLE with length 0"));
      }
      if (!InRange(hole->offset, hole->length, cmd.offset, cmd.length)) {
        return Fail(ProtocolError(absl::StrFormat(
            "OFFSET_HOLE [%d, +%d) is outside the request [%d, +%d)",
            hole->offset, hole->length, cmd.offset, cmd.length)));
      }
      if (!AddCoverage(cmd, hole->offset, hole->length)) {
        return Fail(ProtocolError(absl::StrFormat(
            "OFFSET_HOLE [%d, +%d) overlaps an earlier chunk of the reply",
            hole->offset, hole->length)));
      }
      std::memset(cmd.read_buffer + (hole->offset - cmd.offset), 0,
                  hole->length);
      cmd.data_seen += hole->length;
      if (cmd.report_chunks) {
        events_.push_back(ReadChunk{cmd.cookie, ReadChunkKind::kHole,
                                    hole->offset, hole->length, 0, cmd.tag});
      }
      return FinishChunk();
    }
    case ChunkType::kBlockStatus:
    case ChunkType::kBlockStatusExt: {
      absl::StatusOr<BlockStatusChunk> chunk =
          extended_
              ? DecodeBlockStatusExt(payload, opts_.max_block_status_extents)
              : DecodeBlockStatus(payload, opts_.max_block_status_extents);
      if (!chunk.ok()) return Fail(ProtocolError(chunk.status().message()));
      HandleBlockStatus(cmd, *chunk);
      return FinishChunk();
    }
    default:
      break;
  }
  // An error chunk: ERROR, ERROR_OFFSET, or an unknown type with bit 15.
  uint32_t error = LoadBe32(payload.data());
  uint16_t msglen = LoadBe16(payload.data() + 4);
  std::string message;
  std::optional<uint64_t> offset;
  if (type == static_cast<uint16_t>(ChunkType::kError)) {
    absl::StatusOr<ErrorChunk> c = DecodeErrorChunk(payload);
    if (!c.ok()) return Fail(ProtocolError(c.status().message()));
    message = c->message;
  } else if (type == static_cast<uint16_t>(ChunkType::kErrorOffset)) {
    absl::StatusOr<ErrorOffsetChunk> c = DecodeErrorOffsetChunk(payload);
    if (!c.ok()) return Fail(ProtocolError(c.status().message()));
    message = c->message;
    offset = c->offset;
  } else {
    if (size_t{6} + msglen > payload.size()) {
      return Fail(ProtocolError(absl::StrFormat(
          "error chunk type %d: message length %d overruns the chunk", type,
          msglen)));
    }
    message.assign(payload.begin() + 6, payload.begin() + 6 + msglen);
  }
  if (error == 0) {
    SetCommandError(cmd, ProtocolError("server sent an error chunk with "
                                       "error value 0"));
  } else {
    int e = NbdErrorToErrno(error);
    std::string where = offset.has_value()
                            ? absl::StrFormat(" at offset %d", *offset)
                            : absl::StrFormat(" for offset %d", cmd.offset);
    SetCommandError(
        cmd,
        ErrnoStatus(
            e, absl::StrCat("server error ", error, " (", std::strerror(e), ")",
                            where, message.empty() ? "" : ": ", message)));
  }
  if (offset.has_value() && cmd.type == Command::kRead &&
      !InRange(*offset, 0, cmd.offset, cmd.length)) {
    SetCommandError(cmd, ProtocolError("ERROR_OFFSET outside the request"));
  }
  if (cmd.report_chunks) {
    events_.push_back(
        ReadChunk{cmd.cookie, ReadChunkKind::kError, offset.value_or(0), 0,
                  error == 0 ? EPROTO : NbdErrorToErrno(error), cmd.tag});
  }
  FinishChunk();
}

void Client::Impl::OnDataOffset() {
  PendingCommand* current = CurrentCommand();
  if (current == nullptr) return;
  PendingCommand& cmd = *current;
  uint64_t offset = LoadBe64(rx_.scratch().data());
  uint64_t length = chunk_len_ - 8;
  if (!InRange(offset, length, cmd.offset, cmd.length)) {
    return Fail(ProtocolError(absl::StrFormat(
        "OFFSET_DATA [%d, +%d) is outside the request [%d, +%d)", offset,
        length, cmd.offset, cmd.length)));
  }
  if (!AddCoverage(cmd, offset, length)) {
    return Fail(ProtocolError(absl::StrFormat(
        "OFFSET_DATA [%d, +%d) overlaps an earlier chunk of the reply", offset,
        length)));
  }
  data_offset_ = offset;
  ExpectInto(Unit::kDataPayload, cmd.read_buffer + (offset - cmd.offset),
             length);
}

void Client::Impl::OnDataPayload() {
  PendingCommand* current = CurrentCommand();
  if (current == nullptr) return;
  PendingCommand& cmd = *current;
  uint64_t length = chunk_len_ - 8;
  cmd.data_seen += length;
  if (cmd.report_chunks) {
    events_.push_back(ReadChunk{cmd.cookie, ReadChunkKind::kData, data_offset_,
                                length, 0, cmd.tag});
  }
  FinishChunk();
}

void Client::Impl::HandleBlockStatus(PendingCommand& cmd,
                                     const BlockStatusChunk& chunk) {
  const MetaContext* context = nullptr;
  for (const MetaContext& c : contexts_) {
    if (c.id == chunk.context_id) context = &c;
  }
  if (context == nullptr) {
    return SetCommandError(
        cmd,
        ProtocolError(absl::StrFormat(
            "block status for unknown meta context id %d", chunk.context_id)));
  }
  if ((cmd.flags & kCmdFlagReqOne) && chunk.extents.size() != 1) {
    return SetCommandError(
        cmd, ProtocolError("REQ_ONE block status with more than one extent"));
  }
  const uint64_t size = size_.value_or(0);
  const uint64_t end = cmd.offset + cmd.length;
  uint64_t pos = cmd.offset;
  std::vector<Extent> extents;
  extents.reserve(chunk.extents.size());
  for (const Extent& e : chunk.extents) {
    if (e.length == 0) {
      return SetCommandError(cmd, ProtocolError("zero-length extent"));
    }
    if (pos >= size || e.length > size - pos) {
      return SetCommandError(
          cmd, ProtocolError(absl::StrFormat(
                   "extent [%d, +%d) runs past the end of the export (%d)", pos,
                   e.length, size)));
    }
    if (pos >= end) break;  // Past the request: only the last may overhang.
    extents.push_back({std::min(e.length, end - pos), e.flags});
    pos += e.length;
  }
  events_.push_back(BlockStatusExtents{cmd.cookie, context->id, context->name,
                                       cmd.offset, std::move(extents),
                                       cmd.tag});
}

void Client::Impl::FinishChunk() {
  if (terminal()) return;
  const Cookie cookie = chunk_.cookie;
  const bool done = chunk_.flags & kReplyFlagDone;
  if (!done) {
    if (PendingCommand* cmd = CurrentCommand()) cmd->reply_started = true;
    return ExpectReplyHeader();
  }
  PendingCommand* current = CurrentCommand();
  if (current == nullptr) return;
  ExpectReplyHeader();
  PendingCommand& cmd = *current;
  absl::Status status = cmd.error;
  if (status.ok() && cmd.type == Command::kRead &&
      cmd.data_seen != cmd.length) {
    status = ProtocolError(
        absl::StrFormat("server sent %d of the %d bytes requested at offset %d",
                        cmd.data_seen, cmd.length, cmd.offset));
  }
  CompleteCommand(cookie, std::move(status));
}

bool Client::Impl::AddCoverage(PendingCommand& cmd, uint64_t offset,
                               uint64_t length) {
  // Ranges are kept merged, so an in-order reply is one entry however many
  // chunks it has; a server that scatters chunks can grow the map to at most
  // one entry per chunk, and each chunk costs it a header on the wire.
  std::map<uint64_t, uint64_t>& m = cmd.covered;
  uint64_t start = offset;
  uint64_t end = offset + length;
  if (m.empty()) {
    if (!cmd.has_run) {
      cmd.has_run = true;
      cmd.run_start = start;
      cmd.run_end = end;
      return true;
    }
    if (start < cmd.run_end && end > cmd.run_start) return false;
    if (end == cmd.run_start) {
      cmd.run_start = start;
      return true;
    }
    if (start == cmd.run_end) {
      cmd.run_end = end;
      return true;
    }
    m.emplace(cmd.run_start, cmd.run_end);  // a gap: switch to the map
  }
  auto next = m.lower_bound(start);
  if (next != m.end() && next->first < end) return false;
  if (next != m.begin()) {
    auto prev = std::prev(next);
    if (prev->second > start) return false;
    if (prev->second == start) {
      start = prev->first;
      m.erase(prev);
    }
  }
  if (next != m.end() && next->first == end) {
    end = next->second;
    m.erase(next);
  }
  m.emplace(start, end);
  return true;
}

void Client::Impl::CompleteCommand(Cookie cookie, absl::Status status) {
  auto it = commands_.find(cookie);
  if (it == commands_.end()) return;
  if (it->second.payload_pending) {
    it->second.reply_status = std::move(status);
    return;  // completed by OnSegmentSent once the payload is sent
  }
  const Command type = it->second.type;
  const uint64_t tag = it->second.tag;
  commands_.erase(it);
  if (StatusErrno(status) == ESHUTDOWN) {
    // NBD_ESHUTDOWN: the spec requires a soft disconnect. Stop issuing and
    // send NBD_CMD_DISC once the rest has drained.
    DisconnectWhenDrained();
  }
  events_.push_back(CommandCompleted{cookie, type, std::move(status), tag});
  MaybeSendDisc();
}

}  // namespace nbd
