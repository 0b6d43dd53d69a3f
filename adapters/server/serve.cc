#include "adapters/server/serve.h"

#include <cerrno>
#include <memory>
#include <vector>

#include "protocol/status.h"

namespace nbd {
namespace {

// Extents asked from the backend per BLOCK_STATUS without REQ_ONE.
constexpr size_t kMaxExtentsPerReply = 64 * 1024;

void ReplyStatus(ServerSession& session, RequestHandle handle,
                 const absl::Status& status) {
  if (status.ok()) {
    session.ReplyOk(handle).IgnoreError();
  } else {
    session.ReplyError(handle, StatusErrno(status), status.message())
        .IgnoreError();
  }
}

void ServeRead(ServerSession& session, Backend& backend,
               const ServerRequest& r) {
  const size_t length = static_cast<size_t>(r.length);
  if (length == 0) return ReplyStatus(session, r.handle, absl::OkStatus());
  std::shared_ptr<uint8_t[]> buffer =
      std::make_shared_for_overwrite<uint8_t[]>(length);
  std::vector<ReadRun> runs;
  absl::Status s =
      backend.Read(r.offset, absl::Span<uint8_t>(buffer.get(), length), &runs);
  uint64_t covered = 0;
  for (const ReadRun& run : runs) covered += run.length;
  if (s.ok() && covered != length) {
    s = ErrnoStatus(EIO, "backend read runs do not cover the request");
  }
  if (!s.ok() && covered >= length) {
    // Runs that claim the whole request say nothing about where it failed.
    runs.clear();
    covered = 0;
  }
  std::vector<ReadPiece> pieces;
  pieces.reserve(runs.size());
  uint64_t pos = 0;
  for (const ReadRun& run : runs) {
    if (run.length == 0) continue;
    pieces.push_back(
        run.hole ? ReadPiece::Hole(r.offset + pos, run.length)
                 : ReadPiece{r.offset + pos, run.length, buffer.get() + pos});
    pos += run.length;
  }
  absl::Status reply =
      s.ok() ? session.ReplyRead(r.handle, pieces, std::move(buffer))
             : session.ReplyReadError(r.handle, pieces, r.offset + covered,
                                      StatusErrno(s), s.message(),
                                      std::move(buffer));
  if (absl::IsInvalidArgument(reply)) {
    ReplyStatus(session, r.handle, ErrnoStatus(EIO, reply.message()));
  }
}

void ServeBlockStatus(ServerSession& session, Backend& backend,
                      const ServerRequest& r) {
  std::vector<Extent> extents;
  const size_t max =
      (r.flags & kCmdFlagReqOne) ? size_t{1} : kMaxExtentsPerReply;
  absl::Status s = backend.BlockStatus(r.offset, r.length, max, &extents);
  if (s.ok() && extents.empty()) {
    s = ErrnoStatus(EIO, "backend returned no extents");
  }
  if (!s.ok()) return ReplyStatus(session, r.handle, s);
  absl::Status reply = session.ReplyBlockStatus(r.handle, extents);
  if (absl::IsInvalidArgument(reply)) {
    ReplyStatus(session, r.handle, ErrnoStatus(EIO, reply.message()));
  }
}

}  // namespace

void ServeRequest(ServerSession& session, Backend& backend,
                  const ServerRequest& r) {
  const bool fua = (r.flags & kCmdFlagFua) != 0;
  switch (r.command) {
    case Command::kRead:
      return ServeRead(session, backend, r);
    case Command::kWrite:
      return ReplyStatus(session, r.handle,
                         backend.Write(r.offset, r.payload, fua));
    case Command::kFlush:
      return ReplyStatus(session, r.handle, backend.Flush());
    case Command::kTrim:
      return ReplyStatus(session, r.handle,
                         backend.Trim(r.offset, r.length, fua));
    case Command::kCache:
      return ReplyStatus(session, r.handle, backend.Cache(r.offset, r.length));
    case Command::kWriteZeroes: {
      uint32_t flags = fua ? kZeroFua : 0;
      if (!(r.flags & kCmdFlagNoHole)) flags |= kZeroMayTrim;
      if (r.flags & kCmdFlagFastZero) flags |= kZeroFast;
      return ReplyStatus(session, r.handle,
                         backend.Zero(r.offset, r.length, flags));
    }
    case Command::kBlockStatus:
      return ServeBlockStatus(session, backend, r);
    default:
      return ReplyStatus(session, r.handle,
                         ErrnoStatus(EINVAL, "unsupported command"));
  }
}

size_t Serve(ServerSession& session, Backend& backend,
             absl::FunctionRef<void(const ServerEvent&)> on_other) {
  size_t served = 0;
  while (std::optional<ServerEvent> e = session.PollEvent()) {
    if (const auto* r = std::get_if<ServerRequest>(&*e)) {
      ServeRequest(session, backend, *r);
      ++served;
    } else {
      on_other(*e);
    }
  }
  return served;
}

size_t Serve(ServerSession& session, Backend& backend) {
  return Serve(session, backend, [](const ServerEvent&) {});
}

}  // namespace nbd
