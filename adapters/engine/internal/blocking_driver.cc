// The blocking adapter: one BlockingClient per connection. It has exactly
// one request on the wire at a time, so commands queue per connection and
// each round (PollOnce) executes the next one of every connection.
#include <algorithm>
#include <cerrno>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "adapters/blocking/blocking_client.h"
#include "adapters/engine/internal/link.h"
#include "protocol/status.h"

namespace nbd::engine::internal {
namespace {

class BlockingLink : public Link {
 public:
  BlockingLink(std::unique_ptr<adapters::BlockingClient> client,
               LinkContext context)
      : client_(std::move(client)), context_(std::move(context)) {}

  // Not called once Abandon()ed.
  const Client& client() const override { return client_->client(); }

  absl::Status Issue(Op& op) override {
    // The core's own refusals come when the command's turn comes; only a
    // connection that ended refuses at once.
    if (ended()) return ErrnoStatus(ENOTCONN, "the connection has ended");
    queue_.push_back(std::move(op));
    return absl::OkStatus();
  }
  size_t in_flight() const override { return queue_.size(); }
  const Op* oldest() const override {
    return queue_.empty() ? nullptr : &queue_.front();
  }
  bool finished() const override { return ended(); }

  // Its export failed to open (a later connection did not connect): close
  // the socket now rather than when the Engine goes. Nothing is queued
  // yet, and the Engine never looks at the link again.
  void Abandon() override { client_.reset(); }
  bool abandoned() const { return client_ == nullptr; }

  // Executes the next queued command, at most `timeout`. Returns whether
  // it timed out (the connection is then given up).
  bool RunNext(absl::Duration timeout) {
    Op op = std::move(queue_.front());
    queue_.pop_front();
    absl::Status s = Execute(op, timeout);
    // The adapter's own timeout ("pwrite: timed out") says neither how
    // long nor that the server is at fault; say it as the other adapters
    // do.
    const bool timed_out = IsTimeout(s);
    if (timed_out) {
      s = NoReplyStatus(context_.timeout);
      *context_.stalled = true;
    }
    context_.completed->push_back({std::move(op), std::move(s)});
    return timed_out;
  }

  // The server stopped answering: waiting on its other connections would
  // only cost another timeout each. ENOTCONN, like commands cut off by a
  // connection that ended.
  void FailQueued(const char* why) {
    for (Op& op : queue_) {
      context_.completed->push_back(
          {std::move(op), ErrnoStatus(ENOTCONN, why)});
    }
    queue_.clear();
  }

  bool stalled() const { return *context_.stalled; }

  absl::Status End(bool disconnect, uint32_t flags,
                   absl::Time deadline) override {
    // Disconnect() puts DISC behind what is queued, so that goes first;
    // with Shutdown() nothing is on the wire between calls, so what is
    // queued was never sent and fails as the core fails unsent commands.
    if (disconnect && !stalled()) {
      while (!queue_.empty() && !ended()) {
        if (RunNext(std::max(deadline - absl::Now(), absl::ZeroDuration()))) {
          break;
        }
      }
    }
    FailQueued("shut down");
    if (ended()) return end_reason();
    // Once the deadline passed (or for a server that already stopped
    // answering) DISC is still sent, but not waited for.
    absl::Duration left =
        std::max(deadline - absl::Now(), absl::ZeroDuration());
    return client_->Shutdown(disconnect ? 0 : flags, left);
  }

  absl::StatusOr<std::vector<std::string>> OptList(
      absl::Duration timeout) override {
    auto list = client_->OptList(timeout);
    if (!list.ok()) return list.status();
    std::vector<std::string> names;
    for (const auto& e : *list) names.push_back(e.name);
    return names;
  }
  absl::Status OptInfo(std::string name, absl::Duration timeout) override {
    if (absl::Status s = client_->SetExportName(std::move(name)); !s.ok()) {
      return s;
    }
    return client_->OptInfo(timeout);
  }
  absl::Status OptGo(absl::Duration timeout) override {
    return client_->OptGo(timeout);
  }
  absl::StatusOr<std::vector<MetaContext>> OptListMetaContext(
      std::vector<std::string> queries, absl::Duration timeout) override {
    return client_->OptListMetaContext(std::move(queries), timeout);
  }
  absl::Status OptAbort(absl::Duration timeout) override {
    return client_->OptAbort(timeout);
  }

 private:
  absl::Status Execute(Op& op, absl::Duration t) {
    adapters::BlockingClient& b = *client_;
    switch (op.command) {
      case Command::kRead:
        return b.Pread(op.read_buffer, op.offset, ReadOptions{op.flags}, t);
      case Command::kWrite:
        return b.Pwrite(op.write_data, op.offset, op.flags, t);
      case Command::kWriteZeroes:
        return b.Zero(op.offset, op.length, op.flags, t);
      case Command::kTrim:
        return b.Trim(op.offset, op.length, op.flags, t);
      case Command::kCache:
        return b.Cache(op.offset, op.length, op.flags, t);
      case Command::kFlush:
        return b.Flush(op.flags, t);
      case Command::kBlockStatus: {
        op.extents_offset = op.offset;
        auto extents =
            b.BlockStatus(op.offset, op.length, op.flags, kBaseAllocation, t);
        if (!extents.ok()) return extents.status();
        op.extents = std::move(*extents);
        return absl::OkStatus();
      }
      default:
        return ErrnoStatus(EINVAL, "unsupported command");
    }
  }

  std::unique_ptr<adapters::BlockingClient> client_;
  LinkContext context_;
  std::deque<Op> queue_;  // commands waiting for their turn
};

class BlockingDriver : public Driver {
 public:
  explicit BlockingDriver(adapters::SyscallCounters* counters)
      : counters_(counters) {}

  Adapter adapter() const override { return Adapter::kBlocking; }
  bool waits_when_idle() const override { return false; }
  // Blocked in a call, it cannot be woken; the Engine runs what was posted
  // once the round ends.
  void Wake() const override {}

  absl::StatusOr<std::unique_ptr<Link>> Connect(
      int fd, ClientOptions options, LinkContext context,
      absl::Duration timeout) override {
    adapters::EventObserver observer;
    if (context.observe) observer = context.observe;
    auto client = adapters::BlockingClient::Connect(
        fd, std::move(options), timeout, counters_, std::move(observer));
    if (!client.ok()) return client.status();
    auto link =
        std::make_unique<BlockingLink>(std::move(*client), std::move(context));
    links_.push_back(link.get());
    return link;
  }

  // One command per connection: the connections wait one after the other,
  // so they share one deadline that only a reply moves; N stalled
  // connections cost one timeout, not N. A timeout ends the round.
  absl::Status PollOnce(absl::Duration timeout) override {
    absl::Time deadline = absl::Now() + timeout;
    for (BlockingLink* link : links_) {
      if (link->abandoned() || link->in_flight() == 0) continue;
      if (link->stalled()) {
        link->FailQueued("not sent: the server stopped answering");
        continue;
      }
      if (link->ended()) {
        link->FailQueued("not sent: the connection has ended");
        continue;
      }
      absl::Duration left =
          std::max(deadline - absl::Now(), absl::ZeroDuration());
      if (link->RunNext(left)) return absl::OkStatus();
      deadline = absl::Now() + timeout;
    }
    return absl::OkStatus();
  }

 private:
  adapters::SyscallCounters* counters_;
  // Not owned: the Engine destroys every link before the driver, and
  // polls no more once it started to.
  std::vector<BlockingLink*> links_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Driver>> NewBlockingDriver(
    adapters::SyscallCounters* counters) {
  return std::make_unique<BlockingDriver>(counters);
}

}  // namespace nbd::engine::internal
