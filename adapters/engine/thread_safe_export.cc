// Submitter and ThreadSafeExport: the thread-safe handles. They only check
// what needs no engine state and queue; the loop thread does the rest
// (Engine::RunSubmitted).
#include <cerrno>
#include <memory>
#include <utility>

#include "adapters/engine/engine.h"
#include "adapters/engine/internal/link.h"
#include "adapters/engine/internal/submissions.h"
#include "protocol/status.h"

namespace nbd::engine {
namespace {

using internal::Op;
using internal::RangeOp;
using internal::Submission;
using internal::WithDone;
using internal::WithExtentsDone;
using internal::WithTag;

constexpr char kWhat[] = "engine";

absl::Status NoEngine() {
  return PreconditionStatus(ESHUTDOWN,
                            "engine: this handle refers to no engine");
}

}  // namespace

absl::Status Submitter::Post(absl::AnyInvocable<void()> task) const {
  if (queue_ == nullptr) return NoEngine();
  if (!task) return ErrnoStatus(EINVAL, "engine: Post of an empty task");
  Submission s;
  s.task = std::move(task);
  return queue_->Push(std::move(s), kWhat);
}

absl::Status ThreadSafeExport::Submit(size_t conn, Op op) const {
  if (queue_ == nullptr) return NoEngine();
  if (conn >= connections_) return ErrnoStatus(EINVAL, "no such connection");
  if (op.tagged && !tags_) {
    return ErrnoStatus(EINVAL,
                       "a command with a Tag needs EngineOptions::on_complete");
  }
  Submission s;
  s.exp = exp_;
  s.conn = conn;
  s.op = std::move(op);
  return queue_->Push(std::move(s), kWhat);
}

absl::Status ThreadSafeExport::Read(size_t conn, uint64_t offset,
                                    absl::Span<uint8_t> buffer, Done done,
                                    uint16_t flags) const {
  return Submit(
      conn, WithDone(internal::ReadOp(offset, buffer, flags), std::move(done)));
}

absl::Status ThreadSafeExport::Read(size_t conn, uint64_t offset,
                                    absl::Span<uint8_t> buffer, Tag tag,
                                    uint16_t flags) const {
  return Submit(conn, WithTag(internal::ReadOp(offset, buffer, flags), tag));
}

absl::Status ThreadSafeExport::Write(size_t conn, uint64_t offset,
                                     absl::Span<const uint8_t> data,
                                     uint16_t flags, Done done) const {
  return Submit(
      conn, WithDone(internal::WriteOp(offset, data, flags), std::move(done)));
}

absl::Status ThreadSafeExport::Write(size_t conn, uint64_t offset,
                                     absl::Span<const uint8_t> data,
                                     uint16_t flags, Tag tag) const {
  return Submit(conn, WithTag(internal::WriteOp(offset, data, flags), tag));
}

absl::Status ThreadSafeExport::WriteZeroes(size_t conn, uint64_t offset,
                                           uint64_t length, uint16_t flags,
                                           Done done) const {
  return Submit(conn,
                WithDone(RangeOp(Command::kWriteZeroes, offset, length, flags),
                         std::move(done)));
}

absl::Status ThreadSafeExport::WriteZeroes(size_t conn, uint64_t offset,
                                           uint64_t length, uint16_t flags,
                                           Tag tag) const {
  return Submit(
      conn,
      WithTag(RangeOp(Command::kWriteZeroes, offset, length, flags), tag));
}

absl::Status ThreadSafeExport::Trim(size_t conn, uint64_t offset,
                                    uint64_t length, uint16_t flags,
                                    Done done) const {
  return Submit(conn, WithDone(RangeOp(Command::kTrim, offset, length, flags),
                               std::move(done)));
}

absl::Status ThreadSafeExport::Trim(size_t conn, uint64_t offset,
                                    uint64_t length, uint16_t flags,
                                    Tag tag) const {
  return Submit(conn,
                WithTag(RangeOp(Command::kTrim, offset, length, flags), tag));
}

absl::Status ThreadSafeExport::Cache(size_t conn, uint64_t offset,
                                     uint64_t length, uint16_t flags,
                                     Done done) const {
  return Submit(conn, WithDone(RangeOp(Command::kCache, offset, length, flags),
                               std::move(done)));
}

absl::Status ThreadSafeExport::Cache(size_t conn, uint64_t offset,
                                     uint64_t length, uint16_t flags,
                                     Tag tag) const {
  return Submit(conn,
                WithTag(RangeOp(Command::kCache, offset, length, flags), tag));
}

absl::Status ThreadSafeExport::Flush(size_t conn, Done done,
                                     uint16_t flags) const {
  return Submit(
      conn, WithDone(RangeOp(Command::kFlush, 0, 0, flags), std::move(done)));
}

absl::Status ThreadSafeExport::Flush(size_t conn, Tag tag,
                                     uint16_t flags) const {
  return Submit(conn, WithTag(RangeOp(Command::kFlush, 0, 0, flags), tag));
}

absl::Status ThreadSafeExport::BlockStatus(size_t conn, uint64_t offset,
                                           uint64_t length, ExtentsDone done,
                                           uint16_t flags) const {
  return Submit(conn, WithExtentsDone(
                          RangeOp(Command::kBlockStatus, offset, length, flags),
                          std::move(done)));
}

absl::Status ThreadSafeExport::BlockStatus(size_t conn, uint64_t offset,
                                           uint64_t length, Tag tag,
                                           uint16_t flags) const {
  return Submit(
      conn,
      WithTag(RangeOp(Command::kBlockStatus, offset, length, flags), tag));
}

}  // namespace nbd::engine
