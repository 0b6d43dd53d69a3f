// nbd::ServerSession replies: simple, structured and extended encodings.
//
// Which form a reply takes:
//                      simple mode      structured (SR)      extended (EH)
//   OK, not READ       simple reply     simple reply         NONE chunk
//   OK, READ           simple + data    OFFSET_DATA/HOLE...  same, EH headers
//   error, READ/BS     simple reply     ERROR chunk          ERROR chunk
//   failed READ        simple reply     data/hole chunks before the failing
//   (ReplyReadError)                    offset, then ERROR_OFFSET (SR and EH)
//   error, others      simple reply     simple reply         ERROR chunk
//   BLOCK_STATUS       (never)          BLOCK_STATUS         BLOCK_STATUS_EXT
// Every structured/extended reply ends with a chunk flagged DONE.
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "protocol/endian.h"
#include "protocol/names.h"
#include "protocol/server/internal/impl.h"
#include "protocol/status.h"
#include "protocol/wire.h"

namespace nbd {
namespace {

// Extents per block-status reply (the spec's SHOULD limit).
constexpr size_t kMaxExtents = 1u << 20;

// The NBD error for an embedder's errno: EROFS is the spec's EPERM, and an
// error must never go out as 0.
uint32_t NbdErrorFor(int errno_value) {
  const uint32_t error =
      ErrnoToNbdError(errno_value == EROFS ? EPERM : errno_value);
  return error == 0 ? static_cast<uint32_t>(NbdError::kInval) : error;
}

absl::string_view ClipMessage(absl::string_view message) {
  return message.size() > kMaxStringLength ? message.substr(0, kMaxStringLength)
                                           : message;
}

// Checks that `pieces` tile [r.offset, end) in order.
absl::Status CheckPieces(const ServerRequest& r,
                         absl::Span<const ReadPiece> pieces, uint64_t end) {
  uint64_t pos = r.offset;
  for (const ReadPiece& p : pieces) {
    if (p.offset != pos || p.length == 0 || p.length > end - pos) {
      return ErrnoStatus(
          EINVAL,
          absl::StrFormat(
              "read piece [%d, +%d) does not continue the reply at %d within "
              "[%d, %d)",
              p.offset, p.length, pos, r.offset, end));
    }
    pos += p.length;
  }
  if (pos != end) {
    return ErrnoStatus(
        EINVAL, absl::StrFormat("read pieces end at %d, not at %d", pos, end));
  }
  return absl::OkStatus();
}

}  // namespace

// ---- Encoding helpers -------------------------------------------------------

void ServerSession::Impl::PushSimpleReply(uint64_t cookie, uint32_t nbd_error,
                                          uint64_t data_length) {
  if (tracing()) {
    TraceLine(absl::StrFormat(
        "-> simple reply cookie=%d error=%d%s", cookie, nbd_error,
        data_length > 0 ? absl::StrFormat(" + %d bytes of data", data_length)
                        : std::string()));
  }
  out_.PushCopy(EncodeSimpleReply({nbd_error, cookie}));
}

void ServerSession::Impl::PushChunkHeader(const ServerRequest& r,
                                          uint16_t flags, ChunkType type,
                                          uint64_t length,
                                          absl::string_view detail) {
  const uint16_t t = static_cast<uint16_t>(type);
  if (tracing()) {
    TraceLine(absl::StrFormat("-> %s cookie=%d flags=0x%x length=%d%s%s%s",
                              ChunkTypeName(t), r.cookie, flags, length,
                              (flags & kReplyFlagDone) ? " (done)" : "",
                              detail.empty() ? "" : " ", detail));
  }
  if (extended_) {
    out_.PushCopy(
        EncodeExtendedReplyHeader({flags, t, r.cookie, r.offset, length}));
  } else {
    out_.PushCopy(EncodeStructuredReplyHeader(
        {flags, t, r.cookie, static_cast<uint32_t>(length)}));
  }
}

void ServerSession::Impl::QueueOk(const ServerRequest& r) {
  if (extended_ || (structured_ && r.command == Command::kRead)) {
    return PushChunkHeader(r, kReplyFlagDone, ChunkType::kNone, 0);
  }
  PushSimpleReply(r.cookie, 0);
}

void ServerSession::Impl::QueueError(const ServerRequest& r, int errno_value,
                                     absl::string_view message) {
  const uint32_t error = NbdErrorFor(errno_value);
  const bool chunked =
      extended_ || (structured_ && (r.command == Command::kRead ||
                                    r.command == Command::kBlockStatus));
  if (!chunked) return PushSimpleReply(r.cookie, error);
  Bytes payload = EncodeErrorChunk({error, std::string(ClipMessage(message))});
  PushChunkHeader(r, kReplyFlagDone, ChunkType::kError, payload.size(),
                  tracing()
                      ? absl::StrFormat("error=%d message %s", error,
                                        QuotedForTrace(ClipMessage(message)))
                      : std::string());
  out_.PushOwned(std::move(payload));
}

void ServerSession::Impl::QueueErrorOffset(const ServerRequest& r,
                                           int errno_value,
                                           absl::string_view message,
                                           uint64_t error_offset) {
  const uint32_t error = NbdErrorFor(errno_value);
  Bytes payload = EncodeErrorOffsetChunk(
      {error, std::string(ClipMessage(message)), error_offset});
  PushChunkHeader(
      r, kReplyFlagDone, ChunkType::kErrorOffset, payload.size(),
      tracing()
          ? absl::StrFormat("error=%d offset=%d message %s", error,
                            error_offset, QuotedForTrace(ClipMessage(message)))
          : std::string());
  out_.PushOwned(std::move(payload));
}

void ServerSession::Impl::QueueRead(const ServerRequest& r,
                                    absl::Span<const ReadPiece> pieces,
                                    bool last) {
  if (pieces.empty()) {
    if (last) QueueOk(r);
    return;
  }
  auto push_piece = [this](const ReadPiece& p) {
    if (p.data != nullptr) {
      out_.PushReference(
          absl::Span<const uint8_t>(p.data, static_cast<size_t>(p.length)));
    } else {
      out_.PushZeros(p.length);
    }
  };
  if (!structured_) {
    uint64_t length = 0;
    for (const ReadPiece& p : pieces) length += p.length;
    PushSimpleReply(r.cookie, 0, length);
    for (const ReadPiece& p : pieces) push_piece(p);
    return;
  }
  if (r.flags & kCmdFlagDf) {
    // One unfragmented OFFSET_DATA chunk; holes become zeros. It covers
    // the request, or only the part before a failure.
    uint64_t length = 0;
    for (const ReadPiece& p : pieces) length += p.length;
    PushChunkHeader(
        r, last ? kReplyFlagDone : 0, ChunkType::kOffsetData, 8 + length,
        tracing() ? absl::StrFormat("offset=%d data=%d (DF)", r.offset, length)
                  : std::string());
    uint8_t offset[8];
    StoreBe64(offset, r.offset);
    out_.PushCopy(offset);
    for (const ReadPiece& p : pieces) push_piece(p);
    return;
  }
  for (size_t i = 0; i < pieces.size(); ++i) {
    const ReadPiece& p = pieces[i];
    const uint16_t flags = last && i + 1 == pieces.size() ? kReplyFlagDone : 0;
    if (p.data != nullptr) {
      PushChunkHeader(
          r, flags, ChunkType::kOffsetData, 8 + p.length,
          tracing() ? absl::StrFormat("offset=%d data=%d", p.offset, p.length)
                    : std::string());
      uint8_t offset[8];
      StoreBe64(offset, p.offset);
      out_.PushCopy(offset);
      push_piece(p);
    } else {
      PushChunkHeader(
          r, flags, ChunkType::kOffsetHole, kOffsetHoleSize,
          tracing() ? absl::StrFormat("offset=%d hole=%d", p.offset, p.length)
                    : std::string());
      out_.PushCopy(
          EncodeOffsetHole({p.offset, static_cast<uint32_t>(p.length)}));
    }
  }
}

void ServerSession::Impl::QueueBlockStatus(const ServerRequest& r,
                                           absl::Span<const Extent> extents) {
  BlockStatusChunk chunk;
  chunk.context_id = kBaseAllocationContextId;
  const size_t limit = (r.flags & kCmdFlagReqOne) ? 1 : kMaxExtents;
  const uint64_t end = r.offset + r.length;
  uint64_t pos = r.offset;
  for (const Extent& e : extents) {
    if (pos >= end || chunk.extents.size() >= limit) break;
    const uint64_t length = std::min(e.length, end - pos);
    // 32-bit contexts: the high status bits are zero.
    chunk.extents.push_back({length, e.flags & 0xffffffffu});
    pos += length;
  }
  Bytes payload =
      extended_ ? EncodeBlockStatusExt(chunk) : EncodeBlockStatus(chunk);
  PushChunkHeader(
      r, kReplyFlagDone,
      extended_ ? ChunkType::kBlockStatusExt : ChunkType::kBlockStatus,
      payload.size(),
      tracing() ? absl::StrFormat("context=%d extents=%d", chunk.context_id,
                                  chunk.extents.size())
                : std::string());
  out_.PushOwned(std::move(payload));
}

void ServerSession::Impl::EndReply(RequestHandle handle,
                                   std::shared_ptr<const void> keepalive) {
  out_.TagLast({server_internal::kReplyEndTag, handle}, std::move(keepalive));
}

absl::StatusOr<ServerSession::Impl::InFlight*>
ServerSession::Impl::FindForReply(RequestHandle handle) {
  if (terminal()) {
    Release(handle);
    return PreconditionStatus(
        ENOTCONN, "the session is closed or dead; the reply was dropped");
  }
  auto it = in_flight_.find(handle);
  if (it == in_flight_.end()) {
    return ErrnoStatus(
        EINVAL,
        absl::StrFormat("no outstanding request with handle %d", handle));
  }
  return &it->second;
}

// ---- Public reply calls -----------------------------------------------------

absl::Status ServerSession::ReplyOk(RequestHandle handle) {
  Impl& s = *impl_;
  if (absl::Status st = s.Check(ServerCall::kReplyOk); !st.ok()) return st;
  absl::StatusOr<Impl::InFlight*> f = s.FindForReply(handle);
  if (!f.ok()) return f.status();
  const ServerRequest& r = (*f)->request;
  if ((r.command == Command::kRead && r.length > 0) ||
      r.command == Command::kBlockStatus) {
    return ErrnoStatus(
        EINVAL, "ReplyOk cannot answer a READ with data or a BLOCK_STATUS");
  }
  s.QueueOk(r);
  s.EndReply(handle, nullptr);
  s.Release(handle);
  return absl::OkStatus();
}

absl::Status ServerSession::ReplyError(RequestHandle handle, int errno_value,
                                       absl::string_view message) {
  Impl& s = *impl_;
  if (absl::Status st = s.Check(ServerCall::kReplyError); !st.ok()) return st;
  absl::StatusOr<Impl::InFlight*> f = s.FindForReply(handle);
  if (!f.ok()) return f.status();
  s.QueueError((*f)->request, errno_value, message);
  s.EndReply(handle, nullptr);
  s.Release(handle);
  return absl::OkStatus();
}

absl::Status ServerSession::ReplyRead(RequestHandle handle,
                                      absl::Span<const ReadPiece> pieces,
                                      std::shared_ptr<const void> keepalive) {
  Impl& s = *impl_;
  if (absl::Status st = s.Check(ServerCall::kReplyRead); !st.ok()) return st;
  absl::StatusOr<Impl::InFlight*> f = s.FindForReply(handle);
  if (!f.ok()) return f.status();
  const ServerRequest& r = (*f)->request;
  if (r.command != Command::kRead) {
    return ErrnoStatus(EINVAL, "ReplyRead answers only READ");
  }
  if (absl::Status c = CheckPieces(r, pieces, r.offset + r.length); !c.ok()) {
    return c;
  }
  s.QueueRead(r, pieces);
  s.EndReply(handle, std::move(keepalive));
  s.Release(handle);
  return absl::OkStatus();
}

absl::Status ServerSession::ReplyReadError(
    RequestHandle handle, absl::Span<const ReadPiece> pieces,
    uint64_t error_offset, int errno_value, absl::string_view message,
    std::shared_ptr<const void> keepalive) {
  Impl& s = *impl_;
  if (absl::Status st = s.Check(ServerCall::kReplyReadError); !st.ok()) {
    return st;
  }
  absl::StatusOr<Impl::InFlight*> f = s.FindForReply(handle);
  if (!f.ok()) return f.status();
  const ServerRequest& r = (*f)->request;
  if (r.command != Command::kRead) {
    return ErrnoStatus(EINVAL, "ReplyReadError answers only READ");
  }
  // The spec requires the offset to lie inside the request, so a
  // zero-length read has none.
  if (error_offset < r.offset || error_offset - r.offset >= r.length) {
    return ErrnoStatus(
        EINVAL,
        absl::StrFormat("error offset %d is outside the request [%d, +%d)",
                        error_offset, r.offset, r.length));
  }
  if (absl::Status c = CheckPieces(r, pieces, error_offset); !c.ok()) return c;
  if (!s.structured_) {
    s.QueueError(r, errno_value, message);
    keepalive = nullptr;  // no data goes out
  } else {
    s.QueueRead(r, pieces, /*last=*/false);
    s.QueueErrorOffset(r, errno_value, message, error_offset);
  }
  s.EndReply(handle, std::move(keepalive));
  s.Release(handle);
  return absl::OkStatus();
}

absl::Status ServerSession::ReplyBlockStatus(RequestHandle handle,
                                             absl::Span<const Extent> extents) {
  Impl& s = *impl_;
  if (absl::Status st = s.Check(ServerCall::kReplyBlockStatus); !st.ok()) {
    return st;
  }
  absl::StatusOr<Impl::InFlight*> f = s.FindForReply(handle);
  if (!f.ok()) return f.status();
  const ServerRequest& r = (*f)->request;
  if (r.command != Command::kBlockStatus) {
    return ErrnoStatus(EINVAL, "ReplyBlockStatus answers only BLOCK_STATUS");
  }
  if (extents.empty()) {
    return ErrnoStatus(EINVAL, "block status needs at least 1 extent");
  }
  for (const Extent& e : extents) {
    if (e.length == 0) {
      return ErrnoStatus(EINVAL, "zero-length extent");
    }
  }
  s.QueueBlockStatus(r, extents);
  s.EndReply(handle, nullptr);
  s.Release(handle);
  return absl::OkStatus();
}

}  // namespace nbd
