// The epoll adapter: one EpollLoop, one EpollConnection per connection.
// Commands issued between polls are sent with one Kick() per connection
// just before the loop waits, so a burst of commands costs one send.
#include <memory>
#include <utility>
#include <vector>

#include "adapters/engine/internal/link.h"
#include "adapters/engine/internal/loop_link.h"
#include "adapters/epoll/epoll_connection.h"
#include "adapters/epoll/epoll_loop.h"

namespace nbd::engine::internal {
namespace {

class EpollLink : public LoopLink {
 public:
  EpollLink(adapters::EpollLoop* loop, int fd, ClientOptions options,
            LinkContext context, adapters::SyscallCounters* counters)
      : LoopLink(std::move(context)),
        loop_(loop),
        conn_(
            fd, std::move(options), [this](ClientEvent& e) { OnEvent(e); },
            counters) {}

  adapters::EpollConnection& conn() { return conn_; }
  bool finished() const override { return conn_.finished(); }
  void Kick() override {
    clear_dirty();
    if (!conn_.finished()) conn_.Kick();
  }

 protected:
  Client& core() override { return conn_.client(); }
  void SetDeadline(absl::Time deadline) override {
    conn_.SetDeadline(deadline);
  }
  absl::Status Drive(absl::FunctionRef<bool()> done,
                     absl::Duration timeout) override {
    return loop_->RunUntil([&] { return done(); }, timeout);
  }

 private:
  adapters::EpollLoop* loop_;
  adapters::EpollConnection conn_;
};

class EpollDriver : public Driver {
 public:
  EpollDriver(std::unique_ptr<adapters::EpollLoop> loop,
              adapters::SyscallCounters* counters)
      : loop_(std::move(loop)), counters_(counters) {}

  Adapter adapter() const override { return Adapter::kEpoll; }
  bool waits_when_idle() const override { return true; }
  void Wake() const override { loop_->Wake(); }

  absl::StatusOr<std::unique_ptr<Link>> Connect(
      int fd, ClientOptions options, LinkContext context,
      absl::Duration timeout) override {
    const bool option_mode = options.option_mode;
    auto link = std::make_unique<EpollLink>(loop_.get(), fd, std::move(options),
                                            std::move(context), counters_);
    if (absl::Status s = loop_->Add(&link->conn()); !s.ok()) return s;
    links_.push_back(link.get());
    return HandshakeOrAbandon(std::move(link), option_mode, timeout,
                              abandoned_);
  }

  absl::Status PollOnce(absl::Duration timeout) override {
    for (EpollLink* link : links_) {
      if (link->dirty()) link->Kick();
    }
    return loop_->RunOnce(timeout);
  }

 private:
  std::unique_ptr<adapters::EpollLoop> loop_;
  adapters::SyscallCounters* counters_;
  // Not owned: the Engine destroys every link before the driver, and
  // polls no more once it started to.
  std::vector<EpollLink*> links_;
  // Failed handshakes: the loop still refers to their connections.
  std::vector<std::unique_ptr<LoopLink>> abandoned_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Driver>> NewEpollDriver(
    adapters::SyscallCounters* counters) {
  auto loop = adapters::EpollLoop::Create(counters);
  if (!loop.ok()) return loop.status();
  return std::make_unique<EpollDriver>(std::move(*loop), counters);
}

}  // namespace nbd::engine::internal
