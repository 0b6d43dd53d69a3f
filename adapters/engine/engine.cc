#include "adapters/engine/engine.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "adapters/connect/connect.h"
#include "adapters/connect/uri.h"
#include "adapters/engine/internal/link.h"
#include "adapters/engine/internal/submissions.h"
#include "protocol/status.h"

namespace nbd::engine {

using internal::Completion;
using internal::Link;
using internal::LinkContext;

std::optional<Adapter> ParseAdapter(std::string_view name) {
  if (name == "blocking") return Adapter::kBlocking;
  if (name == "epoll") return Adapter::kEpoll;
  if (name == "io_uring" || name == "uring") return Adapter::kIoUring;
  return std::nullopt;
}

const char* AdapterName(Adapter adapter) {
  switch (adapter) {
    case Adapter::kBlocking:
      return "blocking";
    case Adapter::kEpoll:
      return "epoll";
    case Adapter::kIoUring:
      return "io_uring";
  }
  return "?";
}

Engine::Engine(EngineOptions options)
    : options_(std::move(options)),
      counters_(options_.counters != nullptr ? options_.counters
                                             : &own_counters_) {}

Engine::~Engine() {
  if (submissions_ != nullptr) {
    // Handles may outlive the Engine: from here on they are refused. What
    // is still queued never reached a connection; its commands complete
    // now, while everything they may look at is intact.
    submissions_->Close();
    submissions_->TakeAll(submitted_);
    const absl::Status cancelled = WithErrno(
        absl::CancelledError("engine destroyed before the command was issued"),
        ECANCELED);
    for (internal::Submission& s : submitted_) {
      if (s.exp == nullptr) continue;  // a task: destroyed unrun
      s.op.exp = s.exp;
      s.op.conn = s.conn;
      Complete(s.op, cancelled);
    }
    submitted_.clear();
  }
  // Links go before the driver: epoll connections leave the epoll set,
  // and the io_uring driver reaps in-flight operations before the ring
  // (and then the buffers) can go.
  exports_.clear();
  abandoned_.clear();
  driver_.reset();
}

void Engine::Note(std::string_view line) const {
  if (options_.debug) options_.debug(line);
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(EngineOptions options) {
  std::unique_ptr<Engine> engine(new Engine(std::move(options)));
  absl::StatusOr<std::unique_ptr<internal::Driver>> driver;
  switch (engine->options_.adapter) {
    case Adapter::kIoUring:
      driver = internal::NewUringDriver(engine->counters_);
      if (driver.ok()) break;
      engine->Note(absl::StrCat("io_uring unavailable (",
                                driver.status().message(), "), using epoll"));
      engine->options_.adapter = Adapter::kEpoll;
      [[fallthrough]];
    case Adapter::kEpoll:
      driver = internal::NewEpollDriver(engine->counters_);
      break;
    case Adapter::kBlocking:
      driver = internal::NewBlockingDriver(engine->counters_);
      break;
  }
  if (!driver.ok()) return driver.status();
  engine->driver_ = std::move(*driver);
  engine->submissions_ = std::make_shared<internal::SubmitQueue>(
      [driver = engine->driver_.get()] { driver->Wake(); });
  engine->last_progress_ = absl::Now();
  return engine;
}

absl::Status Engine::Abandon(std::unique_ptr<Export> exp, absl::Status why) {
  for (auto& link : exp->links_) link->Abandon();
  abandoned_.push_back(std::move(exp));
  return why;
}

absl::StatusOr<Export*> Engine::Open(std::string_view uri, size_t connections,
                                     ClientOptions options) {
  if (connections == 0 || options.option_mode) connections = 1;
  absl::StatusOr<adapters::NbdUri> parsed = adapters::ParseNbdUri(uri);
  if (!parsed.ok()) {
    // Some parse errors quote the URI, others do not.
    if (absl::StrContains(parsed.status().message(),
                          absl::string_view(uri.data(), uri.size()))) {
      return parsed.status();
    }
    return internal::Named(parsed.status(), uri);
  }
  if (absl::Status s = adapters::CheckUriPolicy(*parsed, options_.uri_policy);
      !s.ok()) {
    return internal::Named(s, uri);
  }
  // nbds URIs: TLS required, with the URI's settings over the caller's.
  bool require_tls = false;
  if (absl::Status s = adapters::ApplyUriTls(*parsed, &require_tls,
                                             &options.tls_credentials);
      !s.ok()) {
    return internal::Named(s, uri);
  }
  if (require_tls) options.tls = TlsPolicy::kRequire;
  std::unique_ptr<Export> exp(new Export(this, std::string(uri)));
  for (size_t i = 0; i < connections; ++i) {
    // Its errors name the URI already.
    absl::StatusOr<adapters::Connection> connection =
        adapters::ConnectUri(*parsed, options_.timeout, options_.uri_policy);
    if (!connection.ok()) return Abandon(std::move(exp), connection.status());
    ClientOptions o = options;
    if (o.export_name.empty()) o.export_name = connection->export_name;

    if (absl::Status s = Connect(*exp, connection->fd, std::move(o)); !s.ok()) {
      return Abandon(std::move(exp), internal::Named(s, uri));
    }
    if (i == 0 && connections > 1 && !exp->info().can_multi_conn()) {
      Note(absl::StrCat(exp->uri(), ": no multi-conn, using 1 connection"));
      connections = 1;
    }
  }
  if (options_.debug && !options.option_mode) {
    const Client& info = exp->info();
    Note(absl::StrCat(exp->uri(), ": ", exp->connections(),
                      " connection(s) via ", AdapterName(options_.adapter),
                      ", size ", exp->size(), ", max payload ",
                      info.max_payload(), ", block status ",
                      info.can_block_status() ? "yes" : "no"));
  }
  exports_.push_back(std::move(exp));
  return exports_.back().get();
}

absl::StatusOr<Export*> Engine::Attach(int fd, ClientOptions options,
                                       std::string name) {
  absl::StatusOr<int> adopted = adapters::AdoptFd(fd);
  if (!adopted.ok()) {
    ::close(fd);
    return internal::Named(adopted.status(), name);
  }
  std::unique_ptr<Export> exp(new Export(this, name));
  if (absl::Status s = Connect(*exp, *adopted, std::move(options)); !s.ok()) {
    return Abandon(std::move(exp), internal::Named(s, name));
  }
  exports_.push_back(std::move(exp));
  return exports_.back().get();
}

absl::Status Engine::Connect(Export& exp, int fd, ClientOptions options) {
  if (options.recv_readahead == 0) {
    options.recv_readahead = options_.recv_readahead;
  }
  if (options_.debug) options.trace = true;
  LinkContext context;
  context.completed = &completed_;
  context.stalled = &exp.stalled_;
  context.timeout = options_.timeout;
  if (options_.debug || options_.observer) {
    const Export* e = &exp;
    const size_t index = exp.links_.size();
    context.observe = [this, e, index](const ClientEvent& event) {
      if (options_.observer) options_.observer(*e, index, event);
      if (!options_.debug) return;
      if (auto* t = std::get_if<ClientTrace>(&event)) {
        options_.debug(absl::StrCat(e->uri(), " [", index, "]: ", t->message));
      }
    };
  }
  absl::StatusOr<std::unique_ptr<Link>> link = driver_->Connect(
      fd, std::move(options), std::move(context), options_.timeout);
  if (!link.ok()) return HandshakeFailed(link.status());
  exp.links_.push_back(std::move(*link));
  return absl::OkStatus();
}

absl::Status Engine::HandshakeFailed(const absl::Status& s) const {
  // Each adapter words its timeout differently ("handshake: timed out",
  // "EpollLoop: timed out"); say the same for all of them.
  if (internal::IsTimeout(s)) {
    return ErrnoStatus(ETIMEDOUT,
                       absl::StrCat("handshake: ", NoReply().message()));
  }
  return s;
}

absl::Status Engine::NoReply() const {
  return internal::NoReplyStatus(options_.timeout);
}

size_t Engine::in_flight() const { return outstanding_; }

Submitter Engine::submitter() {
  threads_ = true;
  return Submitter(submissions_);
}

void Engine::RunSubmitted() {
  // The single-threaded fast path: one atomic load.
  if (!submissions_->pending()) return;
  submissions_->TakeAll(submitted_);
  for (internal::Submission& s : submitted_) {
    if (s.exp == nullptr) {
      s.task();
    } else {
      s.exp->IssueSubmitted(s.conn, std::move(s.op));
    }
  }
  submitted_.clear();
}

void Engine::CloseSubmissions() {
  submissions_->Close();
  // Close() made pending() final: whatever got in is taken now.
  RunSubmitted();
}

void Engine::Complete(internal::Op& op, const absl::Status& status) {
  if (op.tagged) {
    // on_complete is set: tagged commands are refused without it.
    if (op.command == Command::kBlockStatus && options_.on_extents) {
      options_.on_extents(*op.exp, op.conn, op.tag, op.extents_offset,
                          op.extents);
    }
    options_.on_complete(*op.exp, op.conn, op.tag, status);
  } else if (op.extents_done) {
    op.extents_done(status, op.extents_offset, op.extents);
  } else if (op.done) {
    op.done(status);
  }
}

size_t Engine::Dispatch() {
  size_t n = 0;
  // Callbacks may issue commands that complete (blocking) or fail at once;
  // those are appended to completed_ and handled in the next pass, not
  // recursively.
  while (!completed_.empty()) {
    dispatching_.swap(completed_);
    for (Completion& done : dispatching_) {
      ++n;
      --outstanding_;
      internal::Op& op = done.op;
      if (options_.debug && !done.status.ok()) {
        Note(absl::StrCat(internal::CommandLabel(op.command), " offset=",
                          op.offset, " failed: ", done.status.ToString()));
      }
      Complete(op, done.status);
    }
    dispatching_.clear();
  }
  if (n > 0) last_progress_ = absl::Now();
  return n;
}

absl::Status Engine::Poll() {
  RunSubmitted();
  if (!completed_.empty()) {
    Dispatch();
    return absl::OkStatus();
  }
  if (outstanding_ == 0) return absl::OkStatus();
  while (completed_.empty()) {
    absl::Duration left = last_progress_ + options_.timeout - absl::Now();
    if (left <= absl::ZeroDuration()) return TimedOut();
    if (absl::Status s = driver_->PollOnce(left); !s.ok()) return s;
    RunSubmitted();
  }
  Dispatch();
  return absl::OkStatus();
}

absl::Status Engine::Drain() {
  RunSubmitted();
  while (outstanding_ > 0) {
    if (absl::Status s = Poll(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Engine::RunUntil(absl::FunctionRef<bool()> done,
                              absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    RunSubmitted();
    Dispatch();
    if (done()) return absl::OkStatus();
    const bool idle = !driver_->waits_when_idle() && outstanding_ == 0;
    // Without handles (or once they are refused) nothing can ever come.
    if (idle && (!threads_ || submissions_->closed())) {
      return PreconditionStatus(
          EINVAL,
          "the blocking adapter reads only inside calls: nothing to run");
    }
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return adapters::TimeoutStatus("engine: RunUntil");
    }
    if (idle) {
      // Nothing to drive: only another thread's post can change anything.
      submissions_->WaitForPending(deadline);
      continue;
    }
    if (absl::Status s = driver_->PollOnce(left); !s.ok()) return s;
  }
}

absl::Status Engine::TimedOut() {
  // Name the oldest command in flight: the one the server owes longest.
  const internal::Op* oldest = nullptr;
  Export* where = nullptr;
  for (auto& e : exports_) {
    for (auto& link : e->links_) {
      const internal::Op* op = link->oldest();
      if (op != nullptr && (oldest == nullptr || op->seq < oldest->seq)) {
        oldest = op;
        where = e.get();
      }
    }
  }
  absl::Status why = NoReply();
  if (oldest == nullptr) return why;
  where->stalled_ = true;
  return ErrnoStatus(ETIMEDOUT, absl::StrCat(where->uri(), ": ",
                                             internal::Describe(oldest->command,
                                                                oldest->offset),
                                             ": ", why.message()));
}

absl::Status Engine::Shutdown(uint32_t flags, absl::Duration timeout) {
  return End(/*disconnect=*/false, flags, timeout);
}

absl::Status Engine::Disconnect(absl::Duration timeout) {
  return End(/*disconnect=*/true, 0, timeout);
}

absl::Status Engine::RefuseEnd(bool disconnect, uint32_t flags) const {
  absl::Status refused;
  for (const auto& e : exports_) {
    for (const auto& link : e->links_) {
      if (link->ended()) continue;
      absl::Status s = internal::EndRefusal(link->client(), disconnect, flags);
      if (s.ok()) return absl::OkStatus();
      if (refused.ok()) refused = internal::Named(s, e->uri());
    }
  }
  return refused;
}

absl::Status Engine::End(bool disconnect, uint32_t flags,
                         absl::Duration timeout) {
  // Refused by every connection still open (wrong phase, unknown flags):
  // nothing changes, not even the queue.
  if (absl::Status s = RefuseEnd(disconnect, flags); !s.ok()) {
    Note(absl::StrCat("shutdown refused: ", s.ToString()));
    return s;
  }
  // What other threads got in before this call goes out first; from now
  // on they are refused.
  CloseSubmissions();
  absl::Status result;
  // Connections that refused (when others accepted): left as they were,
  // and not waited for.
  std::vector<const Link*> refused;
  const absl::Time deadline = absl::Now() + timeout;
  for (auto& e : exports_) {
    for (auto& link : e->links_) {
      if (link->ended()) continue;
      // One deadline for every connection; a server that already stopped
      // answering gets the request but no wait.
      absl::Time until = e->stalled_ ? absl::Now() : deadline;
      absl::Status s = internal::EndRefusal(link->client(), disconnect, flags);
      if (s.ok()) {
        s = link->End(disconnect, flags, until);
      } else {
        s = internal::Named(s, e->uri());
      }
      if (!s.ok() && !link->ended()) refused.push_back(link.get());
      if (!s.ok() && result.ok()) result = s;
    }
  }
  auto all_finished = [this, &refused] {
    for (auto& e : exports_) {
      for (auto& link : e->links_) {
        if (!link->finished() && std::find(refused.begin(), refused.end(),
                                           link.get()) == refused.end()) {
          return false;
        }
      }
    }
    return true;
  };
  // The adapters give up at `deadline` themselves; the extra second only
  // covers the loop noticing it.
  const absl::Time guard = deadline + absl::Seconds(1);
  while (!all_finished() && driver_->waits_when_idle()) {
    absl::Duration left = guard - absl::Now();
    if (left <= absl::ZeroDuration()) {
      if (result.ok()) result = adapters::TimeoutStatus("engine: shutdown");
      break;
    }
    if (absl::Status s = driver_->PollOnce(left); !s.ok()) {
      if (result.ok()) result = s;
      break;
    }
  }
  for (auto& e : exports_) {
    for (auto& link : e->links_) {
      if (absl::Status s = link->end_reason(); !s.ok() && result.ok()) {
        result = s;
      }
    }
  }
  Dispatch();
  if (!result.ok()) Note(absl::StrCat("shutdown: ", result.ToString()));
  return result;
}

}  // namespace nbd::engine
