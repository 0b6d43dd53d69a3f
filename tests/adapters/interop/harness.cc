#include "tests/adapters/interop/harness.h"

#include <map>
#include <thread>
#include <utility>

#include "absl/time/clock.h"
#include "adapters/blocking/blocking_client.h"
#include "adapters/epoll/epoll_connection.h"
#include "adapters/epoll/epoll_loop.h"
#include "adapters/io_uring/uring_loop.h"
#include "protocol/status.h"

namespace nbd::test {

using adapters::IsTerminal;
using adapters::SyscallCounters;

std::string AdapterName(AdapterKind kind) {
  switch (kind) {
    case AdapterKind::kBlocking:
      return "blocking";
    case AdapterKind::kEpoll:
      return "epoll";
    case AdapterKind::kIoUring:
      return "io_uring";
  }
  return "?";
}

Op ReadOp(uint64_t offset, std::vector<uint8_t>& into, uint16_t flags) {
  Op op;
  op.kind = Op::kRead;
  op.offset = offset;
  op.length = into.size();
  op.flags = flags;
  op.read_into = into.data();
  return op;
}

Op WriteOp(uint64_t offset, const std::vector<uint8_t>& from, uint16_t flags) {
  Op op;
  op.kind = Op::kWrite;
  op.offset = offset;
  op.length = from.size();
  op.flags = flags;
  op.write_from = from.data();
  return op;
}

Op SimpleOp(Op::Kind kind, uint64_t offset, uint64_t length, uint16_t flags) {
  Op op;
  op.kind = kind;
  op.offset = offset;
  op.length = length;
  op.flags = flags;
  return op;
}

namespace {

constexpr char kBaseAllocation[] = "base:allocation";

// ---- Blocking ---------------------------------------------------------------

class BlockingHarness : public Harness {
 public:
  explicit BlockingHarness(SyscallCounters* counters) : counters_(counters) {}

  absl::Status Connect(int fd, ClientOptions options,
                       absl::Duration timeout) override {
    auto c = adapters::BlockingClient::Connect(fd, std::move(options), timeout,
                                               counters_);
    if (!c.ok()) return c.status();
    client_ = std::move(*c);
    return absl::OkStatus();
  }
  const Client& client() const override { return client_->client(); }

  absl::Status Run(std::vector<Op>& ops, absl::Duration timeout) override {
    for (Op& op : ops) RunOne(op, timeout);
    return absl::OkStatus();
  }

  absl::Status RunThenDisconnect(std::vector<Op>& ops,
                                 absl::Duration timeout) override {
    Run(ops, timeout).IgnoreError();
    return client_->Shutdown(0, timeout);
  }

  absl::Status RunWithInterruption(std::vector<Op>& ops,
                                   std::function<void()> midway,
                                   absl::Duration midway_delay,
                                   absl::Duration timeout) override {
    std::thread interrupter([&] {
      absl::SleepFor(midway_delay);
      midway();
    });
    Run(ops, timeout).IgnoreError();
    interrupter.join();
    return absl::OkStatus();
  }

  absl::Status Shutdown(uint32_t flags, absl::Duration timeout) override {
    return client_->Shutdown(flags, timeout);
  }

  absl::StatusOr<std::vector<std::string>> OptList(
      absl::Duration timeout) override {
    auto list = client_->OptList(timeout);
    if (!list.ok()) return list.status();
    std::vector<std::string> names;
    for (const auto& e : *list) names.push_back(e.name);
    return names;
  }
  absl::Status OptInfo(const std::string& name,
                       absl::Duration timeout) override {
    if (absl::Status s = client_->SetExportName(name); !s.ok()) return s;
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
  bool finished() const override {
    return client_ == nullptr || IsTerminal(client_->client().phase());
  }
  absl::Status DriveUntilFinished(absl::Duration) override {
    if (finished()) return absl::OkStatus();
    return absl::FailedPreconditionError(
        "the blocking adapter reads only inside calls");
  }

 private:
  void RunOne(Op& op, absl::Duration timeout) {
    op.issued = !IsTerminal(client_->client().phase());
    switch (op.kind) {
      case Op::kRead:
        op.status = client_->Pread(absl::MakeSpan(op.read_into, op.length),
                                   op.offset, ReadOptions{op.flags}, timeout);
        break;
      case Op::kWrite:
        op.status =
            client_->Pwrite(absl::MakeConstSpan(op.write_from, op.length),
                            op.offset, op.flags, timeout);
        break;
      case Op::kFlush:
        op.status = client_->Flush(op.flags, timeout);
        break;
      case Op::kTrim:
        op.status = client_->Trim(op.offset, op.length, op.flags, timeout);
        break;
      case Op::kZero:
        op.status = client_->Zero(op.offset, op.length, op.flags, timeout);
        break;
      case Op::kCache:
        op.status = client_->Cache(op.offset, op.length, op.flags, timeout);
        break;
      case Op::kBlockStatus: {
        auto e = client_->BlockStatus(op.offset, op.length, op.flags,
                                      kBaseAllocation, timeout);
        op.status = e.status();
        if (e.ok()) op.extents = std::move(*e);
        break;
      }
    }
    if (op.issued) op.completions = 1;
  }

  SyscallCounters* counters_;
  std::unique_ptr<adapters::BlockingClient> client_;
};

// ---- Shared by the event-loop adapters ------------------------------------

absl::StatusOr<Cookie> Issue(Client& c, Op& op) {
  switch (op.kind) {
    case Op::kRead:
      return c.Read(op.offset, absl::MakeSpan(op.read_into, op.length),
                    ReadOptions{op.flags});
    case Op::kWrite:
      return c.Write(op.offset, absl::MakeConstSpan(op.write_from, op.length),
                     op.flags);
    case Op::kFlush:
      return c.Flush(op.flags);
    case Op::kTrim:
      return c.Trim(op.offset, op.length, op.flags);
    case Op::kZero:
      return c.WriteZeroes(op.offset, op.length, op.flags);
    case Op::kCache:
      return c.Cache(op.offset, op.length, op.flags);
    case Op::kBlockStatus:
      return c.BlockStatus(op.offset, op.length, op.flags);
  }
  return absl::InternalError("unknown op");
}

class LoopHarness : public Harness {
 public:
  absl::Status Connect(int fd, ClientOptions options,
                       absl::Duration timeout) override {
    bool option_mode = options.option_mode;
    if (absl::Status s = Attach(fd, std::move(options)); !s.ok()) return s;
    absl::Status s = Loop(
        [&] { return finished() || (option_mode ? negotiating_ : connected_); },
        timeout);
    if (!s.ok()) return s;
    if (IsTerminal(client().phase())) {
      return client().phase() == ClientPhase::kDead
                 ? client().dead_reason()
                 : ErrnoStatus(ENOTCONN, "closed during the handshake");
    }
    return absl::OkStatus();
  }
  const Client& client() const override {
    return const_cast<LoopHarness*>(this)->mclient();
  }

  absl::Status Run(std::vector<Op>& ops, absl::Duration timeout) override {
    IssueAll(ops);
    return Loop([&] { return finished() || AllDone(ops); }, timeout);
  }

  absl::Status RunThenDisconnect(std::vector<Op>& ops,
                                 absl::Duration timeout) override {
    IssueAll(ops);
    if (absl::Status s = mclient().Disconnect(); !s.ok()) return s;
    return WaitForEnd(timeout);
  }

  absl::Status RunWithInterruption(std::vector<Op>& ops,
                                   std::function<void()> midway,
                                   absl::Duration midway_delay,
                                   absl::Duration timeout) override {
    IssueAll(ops);
    // Get the requests onto the wire before interrupting.
    Loop([] { return false; }, midway_delay).IgnoreError();
    midway();
    return Loop([&] { return finished() || AllDone(ops); }, timeout);
  }

  absl::Status Shutdown(uint32_t flags, absl::Duration timeout) override {
    if (absl::Status s = mclient().Shutdown(flags); !s.ok()) return s;
    return WaitForEnd(timeout);
  }

  absl::StatusOr<std::vector<std::string>> OptList(
      absl::Duration timeout) override {
    exports_.clear();
    if (absl::Status s = WaitOption(mclient().OptList(), timeout); !s.ok()) {
      return s;
    }
    return exports_;
  }
  absl::Status OptInfo(const std::string& name,
                       absl::Duration timeout) override {
    if (absl::Status s = mclient().SetExportName(name); !s.ok()) return s;
    return WaitOption(mclient().OptInfo(), timeout);
  }
  absl::Status OptGo(absl::Duration timeout) override {
    if (absl::Status s = WaitOption(mclient().OptGo(), timeout); !s.ok()) {
      return s;
    }
    return Loop([&] { return connected_ || finished(); }, timeout);
  }
  absl::StatusOr<std::vector<MetaContext>> OptListMetaContext(
      std::vector<std::string> queries, absl::Duration timeout) override {
    contexts_.clear();
    absl::Status s =
        WaitOption(mclient().OptListMetaContext(std::move(queries)), timeout);
    if (!s.ok()) return s;
    return contexts_;
  }
  absl::Status OptAbort(absl::Duration timeout) override {
    if (absl::Status s = mclient().OptAbort(); !s.ok()) return s;
    return WaitForEnd(timeout);
  }
  absl::Status DriveUntilFinished(absl::Duration timeout) override {
    return Loop([&] { return finished(); }, timeout);
  }

 protected:
  virtual absl::Status Attach(int fd, ClientOptions options) = 0;
  virtual Client& mclient() = 0;
  virtual void Kick() = 0;
  virtual void SetDeadline(absl::Time deadline) = 0;
  virtual absl::Status Loop(const std::function<bool()>& done,
                            absl::Duration timeout) = 0;

  void OnEvent(ClientEvent& event) {
    if (auto* e = std::get_if<CommandCompleted>(&event)) {
      auto it = by_cookie_.find(e->cookie);
      if (it == by_cookie_.end()) return;
      ++it->second->completions;
      it->second->status = e->status;
    } else if (auto* e = std::get_if<BlockStatusExtents>(&event)) {
      auto it = by_cookie_.find(e->cookie);
      if (it != by_cookie_.end() && e->context_name == kBaseAllocation) {
        it->second->extents.insert(it->second->extents.end(),
                                   e->extents.begin(), e->extents.end());
      }
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

 private:
  void IssueAll(std::vector<Op>& ops) {
    by_cookie_.clear();
    for (Op& op : ops) {
      absl::StatusOr<Cookie> cookie = Issue(mclient(), op);
      op.issued = cookie.ok();
      if (cookie.ok()) {
        by_cookie_[*cookie] = &op;
      } else {
        op.status = cookie.status();
      }
    }
    Kick();
  }

  static bool AllDone(const std::vector<Op>& ops) {
    for (const Op& op : ops) {
      if (op.issued && op.completions == 0) return false;
    }
    return true;
  }

  absl::Status WaitForEnd(absl::Duration timeout) {
    Kick();
    SetDeadline(absl::Now() + timeout);
    // The adapter's own deadline ends the wait; the loop bound is a guard.
    absl::Status s =
        Loop([&] { return finished(); }, timeout + absl::Seconds(5));
    if (!s.ok()) return s;
    if (mclient().phase() == ClientPhase::kClosed) return absl::OkStatus();
    return mclient().dead_reason();
  }

  absl::Status WaitOption(absl::Status started, absl::Duration timeout) {
    if (!started.ok()) return started;
    option_status_.reset();
    Kick();
    absl::Status s =
        Loop([&] { return option_status_.has_value() || finished(); }, timeout);
    if (option_status_.has_value()) return *option_status_;
    if (!s.ok()) return s;
    return ErrnoStatus(ENOTCONN, "connection ended during the option");
  }

  std::map<Cookie, Op*> by_cookie_;
  std::optional<absl::Status> option_status_;
  std::vector<std::string> exports_;
  std::vector<MetaContext> contexts_;
  bool connected_ = false;
  bool negotiating_ = false;
};

// ---- epoll ------------------------------------------------------------------

class EpollHarness : public LoopHarness {
 public:
  explicit EpollHarness(SyscallCounters* counters) : counters_(counters) {}

  bool finished() const override {
    return conn_ == nullptr || conn_->finished();
  }

 protected:
  absl::Status Attach(int fd, ClientOptions options) override {
    auto loop = adapters::EpollLoop::Create(counters_);
    if (!loop.ok()) return loop.status();
    loop_ = std::move(*loop);
    conn_ = std::make_unique<adapters::EpollConnection>(
        fd, std::move(options), [this](ClientEvent& e) { OnEvent(e); }, counters_);
    return loop_->Add(conn_.get());
  }
  Client& mclient() override { return conn_->client(); }
  void Kick() override { conn_->Kick(); }
  void SetDeadline(absl::Time deadline) override {
    conn_->SetDeadline(deadline);
  }
  absl::Status Loop(const std::function<bool()>& done,
                    absl::Duration timeout) override {
    return loop_->RunUntil(done, timeout);
  }

 private:
  SyscallCounters* counters_;
  std::unique_ptr<adapters::EpollLoop> loop_;
  std::unique_ptr<adapters::EpollConnection> conn_;  // destroyed first
};

// ---- io_uring
// -----------------------------------------------------------------

class UringHarness : public LoopHarness {
 public:
  explicit UringHarness(SyscallCounters* counters) : counters_(counters) {}

  bool finished() const override {
    return conn_ == nullptr || conn_->finished();
  }

 protected:
  absl::Status Attach(int fd, ClientOptions options) override {
    auto loop = adapters::UringLoop::Create(64, counters_);
    if (!loop.ok()) return loop.status();
    loop_ = std::move(*loop);
    conn_ =
        loop_->Add(fd, std::move(options), [this](ClientEvent& e) { OnEvent(e); });
    return absl::OkStatus();
  }
  Client& mclient() override { return conn_->client(); }
  void Kick() override {}  // the next iteration prepares the SQEs
  void SetDeadline(absl::Time deadline) override {
    conn_->SetDeadline(deadline);
  }
  absl::Status Loop(const std::function<bool()>& done,
                    absl::Duration timeout) override {
    return loop_->RunUntil(done, timeout);
  }

 private:
  SyscallCounters* counters_;
  std::unique_ptr<adapters::UringLoop> loop_;
  adapters::UringConnection* conn_ = nullptr;
};

}  // namespace

std::unique_ptr<Harness> Harness::Create(AdapterKind kind,
                                         SyscallCounters* counters) {
  switch (kind) {
    case AdapterKind::kBlocking:
      return std::make_unique<BlockingHarness>(counters);
    case AdapterKind::kEpoll:
      return std::make_unique<EpollHarness>(counters);
    case AdapterKind::kIoUring:
      return std::make_unique<UringHarness>(counters);
  }
  return nullptr;
}

}  // namespace nbd::test
