#include "adapters/engine/internal/loop_link.h"

#include <cerrno>
#include <utility>
#include <variant>

#include "absl/time/clock.h"
#include "protocol/status.h"

namespace nbd::engine::internal {
namespace {

absl::StatusOr<Cookie> IssueOn(Client& c, const Op& op) {
  switch (op.command) {
    case Command::kRead:
      return c.Read(op.offset, op.read_buffer, ReadOptions{op.flags});
    case Command::kWrite:
      return c.Write(op.offset, op.write_data, op.flags);
    case Command::kFlush:
      return c.Flush(op.flags);
    case Command::kTrim:
      return c.Trim(op.offset, op.length, op.flags);
    case Command::kCache:
      return c.Cache(op.offset, op.length, op.flags);
    case Command::kWriteZeroes:
      return c.WriteZeroes(op.offset, op.length, op.flags);
    case Command::kBlockStatus:
      return c.BlockStatus(op.offset, op.length, op.flags);
    default:
      return ErrnoStatus(EINVAL, "unsupported command");
  }
}

}  // namespace

absl::Status LoopLink::Issue(Op& op) {
  absl::StatusOr<Cookie> cookie = IssueOn(core(), op);
  if (!cookie.ok()) return cookie.status();
  // The core only queues the completion; it reaches OnEvent from the loop.
  pending_.Insert(*cookie, std::move(op));
  dirty_ = true;
  return absl::OkStatus();
}

void LoopLink::OnEvent(ClientEvent& event) {
  if (context_.observe) context_.observe(event);
  if (auto* done = std::get_if<CommandCompleted>(&event)) {
    if (pending_.Find(done->cookie) == nullptr) return;  // DISC, not ours
    context_.completed->push_back({pending_.Take(done->cookie), done->status});
  } else if (auto* bs = std::get_if<BlockStatusExtents>(&event)) {
    Op* found = pending_.Find(bs->cookie);
    if (found == nullptr || bs->context_name != kBaseAllocation) return;
    Op& op = *found;
    if (op.extents.empty()) op.extents_offset = bs->offset;
    op.extents.insert(op.extents.end(), bs->extents.begin(), bs->extents.end());
  } else if (auto* e = std::get_if<OptionCompleted>(&event)) {
    option_status_ = e->status;
  } else if (auto* e = std::get_if<ExportListed>(&event)) {
    exports_.push_back(e->name);
  } else if (auto* e = std::get_if<MetaContextListed>(&event)) {
    contexts_.push_back({e->context_id, e->name});
  } else if (std::holds_alternative<Connected>(event)) {
    connected_ = true;
  } else if (std::holds_alternative<Negotiating>(event)) {
    negotiating_ = true;
  }
}

absl::Status LoopLink::AwaitHandshake(bool option_mode,
                                      absl::Duration timeout) {
  Kick();
  absl::Status s = Drive(
      [&] { return ended() || (option_mode ? negotiating_ : connected_); },
      timeout);
  if (!s.ok()) return s;
  if (client().phase() == ClientPhase::kDead) return client().dead_reason();
  if (ended()) {
    return ErrnoStatus(ECONNRESET,
                       "the server closed the connection during the handshake");
  }
  return absl::OkStatus();
}

void LoopLink::Abandon() {
  context_.observe = nullptr;
  if (finished()) return;
  // The loop's deadline check gives the connection up at its next
  // iteration.
  SetDeadline(absl::InfinitePast());
  Drive([&] { return finished(); }, kAbandonBound).IgnoreError();
}

absl::Status LoopLink::End(bool disconnect, uint32_t flags,
                           absl::Time deadline) {
  absl::Status s = disconnect ? core().Disconnect() : core().Shutdown(flags);
  // Refused: the core changed nothing, and neither does the link (a
  // deadline would give the connection up when it passed).
  if (!s.ok()) return s;
  SetDeadline(deadline);
  Kick();
  return absl::OkStatus();
}

absl::Status LoopLink::WaitOption(absl::Status started,
                                  absl::Duration timeout) {
  if (!started.ok()) return started;
  option_status_.reset();
  Kick();
  absl::Status s =
      Drive([&] { return option_status_.has_value() || ended(); }, timeout);
  if (option_status_.has_value()) return *option_status_;
  if (!s.ok()) return s;
  return ErrnoStatus(ENOTCONN, "connection ended during the option");
}

absl::Status LoopLink::WaitForEnd(absl::Duration timeout) {
  Kick();
  SetDeadline(absl::Now() + timeout);
  // The adapter's own deadline ends the wait; the loop bound is a guard.
  absl::Status s =
      Drive([&] { return finished(); }, timeout + absl::Seconds(5));
  if (!s.ok()) return s;
  return end_reason();
}

absl::StatusOr<std::vector<std::string>> LoopLink::OptList(
    absl::Duration timeout) {
  exports_.clear();
  if (absl::Status s = WaitOption(core().OptList(), timeout); !s.ok()) return s;
  return exports_;
}

absl::Status LoopLink::OptInfo(std::string name, absl::Duration timeout) {
  if (absl::Status s = core().SetExportName(std::move(name)); !s.ok()) {
    return s;
  }
  return WaitOption(core().OptInfo(), timeout);
}

absl::Status LoopLink::OptGo(absl::Duration timeout) {
  if (absl::Status s = WaitOption(core().OptGo(), timeout); !s.ok()) return s;
  return Drive([&] { return connected_ || ended(); }, timeout);
}

absl::StatusOr<std::vector<MetaContext>> LoopLink::OptListMetaContext(
    std::vector<std::string> queries, absl::Duration timeout) {
  contexts_.clear();
  absl::Status s =
      WaitOption(core().OptListMetaContext(std::move(queries)), timeout);
  if (!s.ok()) return s;
  return contexts_;
}

absl::Status LoopLink::OptAbort(absl::Duration timeout) {
  if (absl::Status s = core().OptAbort(); !s.ok()) return s;
  return WaitForEnd(timeout);
}

absl::StatusOr<std::unique_ptr<Link>> HandshakeOrAbandon(
    std::unique_ptr<LoopLink> link, bool option_mode, absl::Duration timeout,
    std::vector<std::unique_ptr<LoopLink>>& abandoned) {
  if (absl::Status s = link->AwaitHandshake(option_mode, timeout); !s.ok()) {
    link->Abandon();
    abandoned.push_back(std::move(link));
    return s;
  }
  return link;
}

}  // namespace nbd::engine::internal
