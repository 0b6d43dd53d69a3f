// The io_uring adapter: one UringLoop (one ring) for every connection. The
// loop prepares the SQEs of every connection at each iteration, so issued
// commands need no kick.
#include <memory>
#include <utility>
#include <vector>

#include "adapters/engine/internal/link.h"
#include "adapters/engine/internal/loop_link.h"
#include "adapters/io_uring/uring_driver.h"
#include "adapters/io_uring/uring_loop.h"

namespace nbd::engine::internal {
namespace {

// The ring's size: enough for a receive and a send per connection of a
// tool's usual fan-out.
constexpr unsigned kRingEntries = 256;

class UringLink : public LoopLink {
 public:
  UringLink(adapters::UringLoop* loop, LinkContext context)
      : LoopLink(std::move(context)), loop_(loop) {}

  // Called once, right after construction.
  void Attach(int fd, ClientOptions options) {
    conn_ = loop_->Add(fd, std::move(options),
                       [this](ClientEvent& e) { OnEvent(e); });
  }
  bool finished() const override { return conn_->finished(); }
  void Kick() override { clear_dirty(); }  // the next iteration sends

 protected:
  Client& core() override { return conn_->client(); }
  void SetDeadline(absl::Time deadline) override {
    conn_->SetDeadline(deadline);
  }
  absl::Status Drive(absl::FunctionRef<bool()> done,
                     absl::Duration timeout) override {
    return loop_->RunUntil([&] { return done(); }, timeout);
  }

 private:
  adapters::UringLoop* loop_;
  // Owned by the loop's driver, which outlives the link and reaps its
  // operations before the ring goes.
  adapters::UringConnection* conn_ = nullptr;
};

class UringDriver : public Driver {
 public:
  explicit UringDriver(std::unique_ptr<adapters::UringLoop> loop)
      : loop_(std::move(loop)) {}

  Adapter adapter() const override { return Adapter::kIoUring; }
  bool waits_when_idle() const override { return true; }
  void Wake() const override { loop_->Wake(); }

  absl::StatusOr<std::unique_ptr<Link>> Connect(
      int fd, ClientOptions options, LinkContext context,
      absl::Duration timeout) override {
    const bool option_mode = options.option_mode;
    auto link = std::make_unique<UringLink>(loop_.get(), std::move(context));
    link->Attach(fd, std::move(options));
    return HandshakeOrAbandon(std::move(link), option_mode, timeout,
                              abandoned_);
  }

  absl::Status PollOnce(absl::Duration timeout) override {
    return loop_->RunOnce(timeout);
  }

 private:
  std::unique_ptr<adapters::UringLoop> loop_;
  // Failed handshakes: the ring still delivers their connections' events.
  std::vector<std::unique_ptr<LoopLink>> abandoned_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Driver>> NewUringDriver(
    adapters::SyscallCounters* counters) {
  auto loop = adapters::UringLoop::Create(kRingEntries, counters);
  if (!loop.ok()) return loop.status();
  return std::make_unique<UringDriver>(std::move(*loop));
}

}  // namespace nbd::engine::internal
