// What the event-loop adapters (epoll, io_uring) share: commands go to the
// core at once and are matched to their completions by cookie; option-mode
// calls and the handshake wait by driving the adapter's loop.
#ifndef NBD_ADAPTERS_ENGINE_INTERNAL_LOOP_LINK_H_
#define NBD_ADAPTERS_ENGINE_INTERNAL_LOOP_LINK_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "adapters/engine/internal/link.h"
#include "adapters/engine/internal/pending_ops.h"
#include "protocol/client/client.h"

namespace nbd::engine::internal {

// How long Abandon() waits for the descriptor to close: the kernel's
// completion of an operation on a socket that was shut down.
inline constexpr absl::Duration kAbandonBound = absl::Seconds(1);

class LoopLink : public Link {
 public:
  explicit LoopLink(LinkContext context) : context_(std::move(context)) {}

  const Client& client() const override {
    return const_cast<LoopLink*>(this)->core();
  }
  absl::Status Issue(Op& op) override;
  size_t in_flight() const override { return pending_.size(); }
  const Op* oldest() const override { return pending_.Oldest(); }
  absl::Status End(bool disconnect, uint32_t flags,
                   absl::Time deadline) override;

  absl::StatusOr<std::vector<std::string>> OptList(
      absl::Duration timeout) override;
  absl::Status OptInfo(std::string name, absl::Duration timeout) override;
  absl::Status OptGo(absl::Duration timeout) override;
  absl::StatusOr<std::vector<MetaContext>> OptListMetaContext(
      std::vector<std::string> queries, absl::Duration timeout) override;
  absl::Status OptAbort(absl::Duration timeout) override;

  // The adapter's event callback.
  void OnEvent(ClientEvent& event);
  // Waits (bounded) until the handshake is done: kReady, or kNegotiating
  // if `option_mode`. The connection's end before that is an error.
  absl::Status AwaitHandshake(bool option_mode, absl::Duration timeout);

  // After a failed handshake (or a failed Open() of its export): the link
  // is kept (the loop may still refer to it) but sees no more of the
  // Engine, and the connection is given up now: this runs the loop until
  // the descriptor is closed (io_uring: once the kernel handed back the
  // operations in flight, which the forced shutdown makes immediate),
  // bounded by kAbandonBound; past that it closes at a later iteration.
  void Abandon() override;

  // Commands were issued since the last Kick() (epoll sends them then).
  bool dirty() const { return dirty_; }
  void clear_dirty() { dirty_ = false; }

 protected:
  virtual Client& core() = 0;
  // Sends what the core has queued now, if the adapter needs telling.
  virtual void Kick() = 0;
  virtual void SetDeadline(absl::Time deadline) = 0;
  // Runs the adapter's loop until `done()` or `timeout` (DeadlineExceeded,
  // ETIMEDOUT).
  virtual absl::Status Drive(absl::FunctionRef<bool()> done,
                             absl::Duration timeout) = 0;

 private:
  // Waits for the OptionCompleted of the option `started` began.
  absl::Status WaitOption(absl::Status started, absl::Duration timeout);
  // Waits (bounded) for the connection to finish; its end status.
  absl::Status WaitForEnd(absl::Duration timeout);

  LinkContext context_;
  PendingOps pending_;
  bool dirty_ = false;
  bool connected_ = false;
  bool negotiating_ = false;
  std::optional<absl::Status> option_status_;
  std::vector<std::string> exports_;
  std::vector<MetaContext> contexts_;
};

// Runs the handshake of a link just added to its loop (AwaitHandshake).
// On failure the link is abandoned into `abandoned`, since the loop still
// refers to it, and the error returned.
absl::StatusOr<std::unique_ptr<Link>> HandshakeOrAbandon(
    std::unique_ptr<LoopLink> link, bool option_mode, absl::Duration timeout,
    std::vector<std::unique_ptr<LoopLink>>& abandoned);

}  // namespace nbd::engine::internal

#endif  // NBD_ADAPTERS_ENGINE_INTERNAL_LOOP_LINK_H_
