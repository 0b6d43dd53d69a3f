// Export: the per-connection command and option-mode calls.
#include <cerrno>
#include <utility>

#include "absl/time/clock.h"
#include "adapters/engine/engine.h"
#include "adapters/engine/internal/link.h"
#include "protocol/status.h"

namespace nbd::engine {

using internal::Op;
using internal::RangeOp;

Export::Export(Engine* engine, std::string uri)
    : engine_(engine), uri_(std::move(uri)) {}

Export::~Export() = default;

const Client& Export::client(size_t conn) const {
  return links_[conn]->client();
}

size_t Export::in_flight(size_t conn) const {
  return links_[conn]->in_flight();
}

size_t Export::in_flight() const {
  size_t n = 0;
  for (const auto& link : links_) n += link->in_flight();
  return n;
}

bool Export::finished(size_t conn) const { return links_[conn]->finished(); }

absl::Status Export::IssueOp(size_t conn, Op& op) {
  if (conn >= links_.size()) {
    return ErrnoStatus(EINVAL, "no such connection");
  }
  if (op.tagged && !engine_->options_.on_complete) {
    return ErrnoStatus(EINVAL,
                       "a command with a Tag needs EngineOptions::on_complete");
  }
  op.seq = engine_->next_seq_++;
  op.exp = this;
  op.conn = conn;
  if (absl::Status s = links_[conn]->Issue(op); !s.ok()) return s;
  // The first command after an idle spell starts the no-reply clock.
  if (engine_->outstanding_++ == 0) engine_->last_progress_ = absl::Now();
  return absl::OkStatus();
}

absl::Status Export::Issue(size_t conn, Op op) { return IssueOp(conn, op); }

void Export::IssueSubmitted(size_t conn, Op op) {
  absl::Status s = IssueOp(conn, op);
  if (s.ok()) return;
  // Its submit call returned OK, so the refusal is its completion; it runs
  // in this round's dispatch like any other.
  op.exp = this;
  op.conn = conn;
  engine_->completed_.push_back({std::move(op), std::move(s)});
  if (engine_->outstanding_++ == 0) engine_->last_progress_ = absl::Now();
}

ThreadSafeExport Export::thread_safe() {
  engine_->threads_ = true;
  return ThreadSafeExport(engine_->submissions_, this, links_.size(),
                          engine_->options_.on_complete != nullptr);
}

absl::Status Export::Read(size_t conn, uint64_t offset,
                          absl::Span<uint8_t> buffer, Done done,
                          uint16_t flags) {
  return Issue(conn, internal::WithDone(internal::ReadOp(offset, buffer, flags),
                                        std::move(done)));
}

absl::Status Export::Read(size_t conn, uint64_t offset,
                          absl::Span<uint8_t> buffer, Tag tag, uint16_t flags) {
  return Issue(conn,
               internal::WithTag(internal::ReadOp(offset, buffer, flags), tag));
}

absl::Status Export::Write(size_t conn, uint64_t offset,
                           absl::Span<const uint8_t> data, uint16_t flags,
                           Done done) {
  return Issue(conn, internal::WithDone(internal::WriteOp(offset, data, flags),
                                        std::move(done)));
}

absl::Status Export::Write(size_t conn, uint64_t offset,
                           absl::Span<const uint8_t> data, uint16_t flags,
                           Tag tag) {
  return Issue(conn,
               internal::WithTag(internal::WriteOp(offset, data, flags), tag));
}

absl::Status Export::WriteZeroes(size_t conn, uint64_t offset, uint64_t length,
                                 uint16_t flags, Done done) {
  return Issue(conn, internal::WithDone(
                         RangeOp(Command::kWriteZeroes, offset, length, flags),
                         std::move(done)));
}

absl::Status Export::WriteZeroes(size_t conn, uint64_t offset, uint64_t length,
                                 uint16_t flags, Tag tag) {
  return Issue(conn,
               internal::WithTag(
                   RangeOp(Command::kWriteZeroes, offset, length, flags), tag));
}

absl::Status Export::Trim(size_t conn, uint64_t offset, uint64_t length,
                          uint16_t flags, Done done) {
  return Issue(
      conn, internal::WithDone(RangeOp(Command::kTrim, offset, length, flags),
                               std::move(done)));
}

absl::Status Export::Trim(size_t conn, uint64_t offset, uint64_t length,
                          uint16_t flags, Tag tag) {
  return Issue(conn, internal::WithTag(
                         RangeOp(Command::kTrim, offset, length, flags), tag));
}

absl::Status Export::Cache(size_t conn, uint64_t offset, uint64_t length,
                           uint16_t flags, Done done) {
  return Issue(
      conn, internal::WithDone(RangeOp(Command::kCache, offset, length, flags),
                               std::move(done)));
}

absl::Status Export::Cache(size_t conn, uint64_t offset, uint64_t length,
                           uint16_t flags, Tag tag) {
  return Issue(conn, internal::WithTag(
                         RangeOp(Command::kCache, offset, length, flags), tag));
}

absl::Status Export::Flush(size_t conn, Done done, uint16_t flags) {
  return Issue(conn, internal::WithDone(RangeOp(Command::kFlush, 0, 0, flags),
                                        std::move(done)));
}

absl::Status Export::Flush(size_t conn, Tag tag, uint16_t flags) {
  return Issue(conn,
               internal::WithTag(RangeOp(Command::kFlush, 0, 0, flags), tag));
}

absl::Status Export::BlockStatus(size_t conn, uint64_t offset, uint64_t length,
                                 ExtentsDone done, uint16_t flags) {
  return Issue(conn, internal::WithExtentsDone(
                         RangeOp(Command::kBlockStatus, offset, length, flags),
                         std::move(done)));
}

absl::Status Export::BlockStatus(size_t conn, uint64_t offset, uint64_t length,
                                 Tag tag, uint16_t flags) {
  return Issue(conn,
               internal::WithTag(
                   RangeOp(Command::kBlockStatus, offset, length, flags), tag));
}

absl::StatusOr<std::vector<std::string>> Export::OptList(
    absl::Duration timeout) {
  return links_.front()->OptList(timeout);
}

absl::Status Export::OptInfo(std::string name, absl::Duration timeout) {
  return links_.front()->OptInfo(std::move(name), timeout);
}

absl::Status Export::OptGo(absl::Duration timeout) {
  return links_.front()->OptGo(timeout);
}

absl::StatusOr<std::vector<MetaContext>> Export::OptListMetaContext(
    std::vector<std::string> queries, absl::Duration timeout) {
  return links_.front()->OptListMetaContext(std::move(queries), timeout);
}

absl::Status Export::OptAbort(absl::Duration timeout) {
  return links_.front()->OptAbort(timeout);
}

}  // namespace nbd::engine
