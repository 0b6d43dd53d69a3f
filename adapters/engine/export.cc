// Export: the per-connection command and option-mode calls.
#include <cerrno>
#include <utility>

#include "absl/time/clock.h"
#include "adapters/engine/engine.h"
#include "adapters/engine/internal/link.h"
#include "protocol/status.h"

namespace nbd::engine {

using internal::Op;

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

absl::Status Export::Issue(size_t conn, Op op) {
  if (conn >= links_.size()) {
    return ErrnoStatus(EINVAL, "no such connection");
  }
  op.seq = engine_->next_seq_++;
  if (absl::Status s = links_[conn]->Issue(std::move(op)); !s.ok()) return s;
  // The first command after an idle spell starts the no-reply clock.
  if (engine_->outstanding_++ == 0) engine_->last_progress_ = absl::Now();
  return absl::OkStatus();
}

namespace {

Op RangeOp(Command command, uint64_t offset, uint64_t length, uint16_t flags,
           Done done) {
  Op op;
  op.command = command;
  op.offset = offset;
  op.length = length;
  op.flags = flags;
  op.done = std::move(done);
  return op;
}

}  // namespace

absl::Status Export::Read(size_t conn, uint64_t offset,
                          absl::Span<uint8_t> buffer, Done done,
                          uint16_t flags) {
  Op op =
      RangeOp(Command::kRead, offset, buffer.size(), flags, std::move(done));
  op.read_buffer = buffer;
  return Issue(conn, std::move(op));
}

absl::Status Export::Write(size_t conn, uint64_t offset,
                           absl::Span<const uint8_t> data, uint16_t flags,
                           Done done) {
  Op op = RangeOp(Command::kWrite, offset, data.size(), flags, std::move(done));
  op.write_data = data;
  return Issue(conn, std::move(op));
}

absl::Status Export::WriteZeroes(size_t conn, uint64_t offset, uint64_t length,
                                 uint16_t flags, Done done) {
  return Issue(conn, RangeOp(Command::kWriteZeroes, offset, length, flags,
                             std::move(done)));
}

absl::Status Export::Trim(size_t conn, uint64_t offset, uint64_t length,
                          uint16_t flags, Done done) {
  return Issue(conn,
               RangeOp(Command::kTrim, offset, length, flags, std::move(done)));
}

absl::Status Export::Cache(size_t conn, uint64_t offset, uint64_t length,
                           uint16_t flags, Done done) {
  return Issue(
      conn, RangeOp(Command::kCache, offset, length, flags, std::move(done)));
}

absl::Status Export::Flush(size_t conn, Done done, uint16_t flags) {
  return Issue(conn, RangeOp(Command::kFlush, 0, 0, flags, std::move(done)));
}

absl::Status Export::BlockStatus(size_t conn, uint64_t offset, uint64_t length,
                                 ExtentsDone done, uint16_t flags) {
  Op op = RangeOp(Command::kBlockStatus, offset, length, flags, nullptr);
  op.extents_done = std::move(done);
  return Issue(conn, std::move(op));
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
