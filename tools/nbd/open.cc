#include "tools/nbd/open.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <utility>
#include <variant>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "adapters/blocking/blocking_client.h"
#include "adapters/connect/connect.h"
#include "adapters/epoll/epoll_connection.h"
#include "adapters/epoll/epoll_loop.h"
#include "adapters/io_uring/uring_driver.h"
#include "adapters/io_uring/uring_loop.h"
#include "protocol/names.h"
#include "protocol/status.h"

namespace nbd::tool {

constexpr char kBaseAllocation[] = "base:allocation";

// One command, from issue to callback.
struct Export::Op {
  Command command = Command::kRead;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint16_t flags = 0;
  uint64_t seq = 0;  // Engine::next_seq_ when issued
  absl::Span<uint8_t> read_buffer;
  absl::Span<const uint8_t> write_data;
  Done done;
  ExtentsDone extents_done;
  // Block status results gathered from BlockStatusExtents events.
  uint64_t extents_offset = 0;
  std::vector<Extent> extents;
};

struct Engine::Completion {
  Export::Op op;
  absl::Status status;
};

struct Export::Conn {
  Export* exp = nullptr;
  size_t index = 0;
  // Exactly one of these drives the connection.
  std::unique_ptr<adapters::BlockingClient> blocking;
  std::unique_ptr<adapters::EpollConnection> epoll;
  adapters::UringConnection* uring = nullptr;  // owned by the UringLoop

  // Asynchronous adapters: commands on the wire, by cookie.
  absl::flat_hash_map<Cookie, Op> pending;
  // Blocking adapter: commands waiting for their turn.
  std::deque<Op> queue;

  bool connected = false;
  bool ended = false;
  absl::Status end_reason;
  bool dirty = false;  // epoll: commands issued since the last Kick()

  Client* core() {
    if (epoll != nullptr) return &epoll->client();
    if (uring != nullptr) return &uring->client();
    return nullptr;
  }
  const Client& info() const {
    if (blocking != nullptr) return blocking->client();
    if (epoll != nullptr) return epoll->client();
    return uring->client();
  }
  size_t in_flight() const { return pending.size() + queue.size(); }
};

namespace {

// "read", "write-zeroes": CommandName() (protocol/names.h) in the lower-case,
// dashed form the tool's messages use.
std::string CommandWord(Command c) {
  return absl::StrReplaceAll(
      absl::AsciiStrToLower(absl::StripPrefix(CommandName(c), "NBD_CMD_")),
      {{"_", "-"}});
}

// "write at offset 4096", "flush": the command as error lines name it.
std::string Describe(Command command, uint64_t offset) {
  if (command == Command::kFlush) return CommandWord(command);
  return absl::StrCat(CommandWord(command), " at offset ", offset);
}

}  // namespace

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

absl::Status Named(std::string_view name, std::string_view what,
                   const absl::Status& status) {
  std::string message(status.message());
  if (message.empty()) {
    message = std::string(absl::StatusCodeToString(status.code()));
  }
  if (absl::StartsWith(message, std::string(name))) {
    message = message.substr(name.size());
    if (absl::StartsWith(message, ": ")) message = message.substr(2);
  }
  return absl::Status(
      status.code(),
      absl::StrCat(std::string(name), ": ", std::string(what), ": ", message));
}

// ---- Export -----------------------------------------------------------------

Export::Export(Engine* engine, std::string uri)
    : engine_(engine), uri_(std::move(uri)) {}

Export::~Export() = default;

const Client& Export::info() const { return conns_.front()->info(); }

size_t Export::in_flight(size_t conn) const {
  return conns_[conn]->in_flight();
}

size_t Export::in_flight() const {
  size_t n = 0;
  for (const auto& c : conns_) n += c->in_flight();
  return n;
}

absl::Status Export::Read(size_t conn, uint64_t offset,
                          absl::Span<uint8_t> buffer, Done done) {
  Op op;
  op.command = Command::kRead;
  op.offset = offset;
  op.length = buffer.size();
  op.read_buffer = buffer;
  op.done = std::move(done);
  return Issue(conn, std::move(op));
}

absl::Status Export::Write(size_t conn, uint64_t offset,
                           absl::Span<const uint8_t> data, uint16_t flags,
                           Done done) {
  Op op;
  op.command = Command::kWrite;
  op.offset = offset;
  op.length = data.size();
  op.flags = flags;
  op.write_data = data;
  op.done = std::move(done);
  return Issue(conn, std::move(op));
}

absl::Status Export::WriteZeroes(size_t conn, uint64_t offset, uint64_t length,
                                 uint16_t flags, Done done) {
  Op op;
  op.command = Command::kWriteZeroes;
  op.offset = offset;
  op.length = length;
  op.flags = flags;
  op.done = std::move(done);
  return Issue(conn, std::move(op));
}

absl::Status Export::Trim(size_t conn, uint64_t offset, uint64_t length,
                          uint16_t flags, Done done) {
  Op op;
  op.command = Command::kTrim;
  op.offset = offset;
  op.length = length;
  op.flags = flags;
  op.done = std::move(done);
  return Issue(conn, std::move(op));
}

absl::Status Export::Flush(size_t conn, Done done) {
  Op op;
  op.command = Command::kFlush;
  op.done = std::move(done);
  return Issue(conn, std::move(op));
}

absl::Status Export::BlockStatus(size_t conn, uint64_t offset, uint64_t length,
                                 ExtentsDone done) {
  Op op;
  op.command = Command::kBlockStatus;
  op.offset = offset;
  op.length = length;
  op.extents_done = std::move(done);
  return Issue(conn, std::move(op));
}

absl::Status Export::Issue(size_t index, Op op) {
  if (index >= conns_.size()) {
    return ErrnoStatus(EINVAL, "no such connection");
  }
  Conn& c = *conns_[index];
  if (engine_->in_flight() == 0) engine_->last_progress_ = absl::Now();
  op.seq = engine_->next_seq_++;
  if (c.blocking != nullptr) {
    if (c.ended) return ErrnoStatus(ENOTCONN, "the connection has ended");
    c.queue.push_back(std::move(op));
    return absl::OkStatus();
  }
  Client& core = *c.core();
  absl::StatusOr<Cookie> cookie;
  switch (op.command) {
    case Command::kRead:
      cookie = core.Read(op.offset, op.read_buffer);
      break;
    case Command::kWrite:
      cookie = core.Write(op.offset, op.write_data, op.flags);
      break;
    case Command::kWriteZeroes:
      cookie = core.WriteZeroes(op.offset, op.length, op.flags);
      break;
    case Command::kTrim:
      cookie = core.Trim(op.offset, op.length, op.flags);
      break;
    case Command::kFlush:
      cookie = core.Flush();
      break;
    case Command::kBlockStatus:
      op.extents_offset = op.offset;
      cookie = core.BlockStatus(op.offset, op.length);
      break;
    default:
      return ErrnoStatus(EINVAL, "unsupported command");
  }
  if (!cookie.ok()) return cookie.status();
  c.pending.emplace(*cookie, std::move(op));
  c.dirty = true;
  return absl::OkStatus();
}

// ---- Engine -----------------------------------------------------------------

size_t ReadaheadFor(uint64_t request_size) {
  constexpr size_t kSmallRequest = 64 * 1024;
  return request_size <= kSmallRequest ? kSmallRequest : 0;
}

Engine::Engine(EngineOptions options) : options_(std::move(options)) {}

Engine::~Engine() {
  // EpollConnections deregister from the epoll set, so they go before the
  // loop; UringConnections belong to the loop, whose driver reaps in-flight
  // receives before the ring (and then the buffers) can go.
  exports_.clear();
  epoll_.reset();
  uring_.reset();
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(EngineOptions options) {
  std::unique_ptr<Engine> engine(new Engine(options));
  switch (options.adapter) {
    case Adapter::kIoUring: {
      auto loop = adapters::UringLoop::Create(256, &engine->counters_);
      if (loop.ok()) {
        engine->uring_ = std::move(*loop);
        break;
      }
      if (options.debug) {
        std::fprintf(stderr,
                     "nbd: debug: io_uring unavailable (%s), using epoll\n",
                     std::string(loop.status().message()).c_str());
      }
      engine->options_.adapter = Adapter::kEpoll;
      [[fallthrough]];
    }
    case Adapter::kEpoll: {
      auto loop = adapters::EpollLoop::Create(&engine->counters_);
      if (!loop.ok()) return loop.status();
      engine->epoll_ = std::move(*loop);
      break;
    }
    case Adapter::kBlocking:
      break;
  }
  engine->last_progress_ = absl::Now();
  return engine;
}

absl::StatusOr<Export*> Engine::Open(std::string_view uri, size_t connections,
                                     ClientOptions options) {
  if (connections == 0) connections = 1;
  std::unique_ptr<Export> exp(new Export(this, std::string(uri)));
  if (absl::Status s = OpenOne(*exp, uri, options); !s.ok()) return s;
  if (connections > 1 && !exp->info().can_multi_conn()) {
    if (options_.debug) {
      std::fprintf(stderr,
                   "nbd: debug: %s: no multi-conn, using 1 connection\n",
                   exp->uri().c_str());
    }
    connections = 1;
  }
  for (size_t i = 1; i < connections; ++i) {
    if (absl::Status s = OpenOne(*exp, uri, options); !s.ok()) return s;
  }
  if (options_.debug) {
    const Client& info = exp->info();
    std::fprintf(stderr,
                 "nbd: debug: %s: %zu connection(s) via %s, size %" PRIu64
                 ", max payload %u, block status %s\n",
                 exp->uri().c_str(), exp->connections(),
                 AdapterName(options_.adapter), exp->size(), info.max_payload(),
                 info.can_block_status() ? "yes" : "no");
  }
  exports_.push_back(std::move(exp));
  return exports_.back().get();
}

absl::Status Engine::OpenOne(Export& exp, std::string_view uri,
                             const ClientOptions& base) {
  absl::StatusOr<adapters::Connection> connection =
      adapters::ConnectUri(uri, options_.timeout);
  if (!connection.ok()) return connection.status();
  ClientOptions options = base;
  if (options.recv_readahead == 0) {
    options.recv_readahead = options_.recv_readahead;
  }
  if (options.export_name.empty()) {
    options.export_name = connection->export_name;
  }
  options.trace = options_.debug;  // --debug prints the core's trace
  auto conn = std::make_unique<Export::Conn>();
  Export::Conn* c = conn.get();
  c->exp = &exp;
  c->index = exp.conns_.size();
  auto on_event = [this, c](ClientEvent& e) { OnEvent(*c, e); };
  switch (options_.adapter) {
    case Adapter::kBlocking: {
      adapters::EventObserver observer;
      if (options_.debug) {
        observer = [this, c](const ClientEvent& e) { TraceEvent(*c, e); };
      }
      auto client = adapters::BlockingClient::Connect(
          std::move(*connection), std::move(options), options_.timeout,
          &counters_, std::move(observer));
      if (!client.ok()) return HandshakeFailed(client.status());
      c->blocking = std::move(*client);
      c->connected = true;
      exp.conns_.push_back(std::move(conn));
      return absl::OkStatus();
    }
    case Adapter::kEpoll: {
      c->epoll = std::make_unique<adapters::EpollConnection>(
          connection->fd, std::move(options), on_event, &counters_);
      if (absl::Status s = epoll_->Add(c->epoll.get()); !s.ok()) return s;
      break;
    }
    case Adapter::kIoUring:
      c->uring = uring_->Add(connection->fd, std::move(options), on_event);
      break;
  }
  exp.conns_.push_back(std::move(conn));
  absl::Status s =
      RunUntil([c] { return c->connected || c->ended; }, options_.timeout);
  if (!s.ok()) return HandshakeFailed(s);
  if (!c->connected) {
    return c->end_reason.ok() ? ErrnoStatus(ECONNRESET,
                                            "the server closed the connection "
                                            "during the handshake")
                              : c->end_reason;
  }
  return absl::OkStatus();
}

absl::Status Engine::RunUntil(const std::function<bool()>& done,
                              absl::Duration timeout) {
  if (epoll_ != nullptr) return epoll_->RunUntil(done, timeout);
  if (uring_ != nullptr) return uring_->RunUntil(done, timeout);
  return absl::OkStatus();
}

void Engine::TraceEvent(const Export::Conn& c, const ClientEvent& event) {
  if (auto* t = std::get_if<ClientTrace>(&event)) {
    std::fprintf(stderr, "nbd: debug: %s [%zu]: %s\n", c.exp->uri_.c_str(),
                 c.index, t->message.c_str());
  }
}

void Engine::OnEvent(Export::Conn& c, ClientEvent& event) {
  TraceEvent(c, event);
  if (std::holds_alternative<Connected>(event)) {
    c.connected = true;
  } else if (auto* done = std::get_if<CommandCompleted>(&event)) {
    auto it = c.pending.find(done->cookie);
    if (it == c.pending.end()) return;  // NBD_CMD_DISC, not ours
    completed_.push_back({std::move(it->second), done->status});
    c.pending.erase(it);
  } else if (auto* bs = std::get_if<BlockStatusExtents>(&event)) {
    auto it = c.pending.find(bs->cookie);
    if (it == c.pending.end() || bs->context_name != kBaseAllocation) return;
    Export::Op& op = it->second;
    if (op.extents.empty()) op.extents_offset = bs->offset;
    op.extents.insert(op.extents.end(), bs->extents.begin(), bs->extents.end());
  } else if (auto* dead = std::get_if<ClientDead>(&event)) {
    c.ended = true;
    c.end_reason = dead->reason;
  } else if (std::holds_alternative<ClientClosed>(event)) {
    c.ended = true;
  }
}

size_t Engine::in_flight() const {
  size_t n = completed_.size();
  for (const auto& e : exports_) n += e->in_flight();
  return n;
}

void Engine::KickDirty() {
  for (auto& e : exports_) {
    for (auto& c : e->conns_) {
      if (c->dirty && c->epoll != nullptr && !c->epoll->finished()) {
        c->epoll->Kick();
      }
      c->dirty = false;
    }
  }
}

size_t Engine::Dispatch() {
  size_t n = 0;
  // Callbacks may issue commands that complete (blocking) or fail at once;
  // those are appended and handled in the next round, not recursively.
  while (!completed_.empty()) {
    std::vector<Completion> batch;
    batch.swap(completed_);
    for (Completion& done : batch) {
      ++n;
      Export::Op& op = done.op;
      if (options_.debug && !done.status.ok()) {
        std::fprintf(stderr, "nbd: debug: %s offset=%" PRIu64 " failed: %s\n",
                     CommandWord(op.command).c_str(), op.offset,
                     done.status.ToString().c_str());
      }
      if (op.extents_done) {
        op.extents_done(done.status, op.extents_offset, op.extents);
      } else if (op.done) {
        op.done(done.status);
      }
    }
  }
  if (n > 0) last_progress_ = absl::Now();
  return n;
}

absl::Status Engine::HandshakeFailed(const absl::Status& s) const {
  // Each adapter words its timeout differently ("handshake: timed out",
  // "EpollLoop: timed out"); say the same for all of them.
  if (s.code() == absl::StatusCode::kDeadlineExceeded &&
      StatusErrno(s) == ETIMEDOUT) {
    return ErrnoStatus(ETIMEDOUT,
                       absl::StrCat("handshake: ", NoReply().message()));
  }
  return s;
}

absl::Status Engine::NoReply() const {
  return ErrnoStatus(ETIMEDOUT,
                     absl::StrCat("no reply from the server for ",
                                  absl::FormatDuration(options_.timeout)));
}

void Engine::RunBlocking() {
  // One command per connection per round: the blocking adapter has exactly
  // one request on the wire at a time. The connections wait one after the
  // other, so they share one deadline that only a reply moves: N stalled
  // connections cost one timeout, not N.
  absl::Time deadline = absl::Now() + options_.timeout;
  for (auto& e : exports_) {
    for (auto& c : e->conns_) {
      if (c->queue.empty()) continue;
      if (e->stalled_) {
        // The server stopped answering: waiting on its other connections
        // would only cost another timeout each. ENOTCONN, like commands
        // cut off by a connection that ended.
        for (Export::Op& op : c->queue) {
          completed_.push_back(
              {std::move(op),
               ErrnoStatus(ENOTCONN,
                           "not sent: the server stopped answering")});
        }
        c->queue.clear();
        continue;
      }
      // Positive: every reply moved the deadline, and a timeout ends the
      // round.
      absl::Duration t = deadline - absl::Now();
      Export::Op op = std::move(c->queue.front());
      c->queue.pop_front();
      adapters::BlockingClient& b = *c->blocking;
      absl::Status s;
      switch (op.command) {
        case Command::kRead:
          s = b.Pread(op.read_buffer, op.offset, {}, t);
          break;
        case Command::kWrite:
          s = b.Pwrite(op.write_data, op.offset, op.flags, t);
          break;
        case Command::kWriteZeroes:
          s = b.Zero(op.offset, op.length, op.flags, t);
          break;
        case Command::kTrim:
          s = b.Trim(op.offset, op.length, op.flags, t);
          break;
        case Command::kFlush:
          s = b.Flush(0, t);
          break;
        case Command::kBlockStatus: {
          auto extents =
              b.BlockStatus(op.offset, op.length, 0, kBaseAllocation, t);
          if (extents.ok()) {
            op.extents = std::move(*extents);
          } else {
            s = extents.status();
          }
          op.extents_offset = op.offset;
          break;
        }
        default:
          s = ErrnoStatus(EINVAL, "unsupported command");
      }
      // The adapter's own timeout ("pwrite: timed out") says neither how
      // long nor that the server is at fault; say it as the other adapters
      // do. The callback adds which server, command and offset.
      const bool timed_out = s.code() == absl::StatusCode::kDeadlineExceeded &&
                             StatusErrno(s) == ETIMEDOUT;
      if (timed_out) {
        s = NoReply();
        e->stalled_ = true;
      } else {
        deadline = absl::Now() + options_.timeout;
      }
      if (adapters::IsTerminal(b.client().phase())) {
        c->ended = true;
        c->end_reason = timed_out ? s : b.client().dead_reason();
      }
      completed_.push_back({std::move(op), std::move(s)});
      if (timed_out) return;
    }
  }
}

absl::Status Engine::Poll() {
  if (!completed_.empty()) {
    Dispatch();
    return absl::OkStatus();
  }
  if (in_flight() == 0) return absl::OkStatus();
  if (options_.adapter == Adapter::kBlocking) {
    RunBlocking();
    Dispatch();
    return absl::OkStatus();
  }
  KickDirty();
  while (completed_.empty()) {
    absl::Duration left = last_progress_ + options_.timeout - absl::Now();
    if (left <= absl::ZeroDuration()) return TimedOut();
    absl::Status s =
        epoll_ != nullptr ? epoll_->RunOnce(left) : uring_->RunOnce(left);
    if (!s.ok()) return s;
  }
  Dispatch();
  return absl::OkStatus();
}

absl::Status Engine::TimedOut() {
  // Name the oldest command in flight: the one the server owes longest.
  const Export::Op* oldest = nullptr;
  Export* where = nullptr;
  for (auto& e : exports_) {
    for (auto& c : e->conns_) {
      for (const auto& [cookie, op] : c->pending) {
        if (oldest == nullptr || op.seq < oldest->seq) {
          oldest = &op;
          where = e.get();
        }
      }
    }
  }
  absl::Status why = NoReply();
  if (oldest == nullptr) return why;
  where->stalled_ = true;
  return ErrnoStatus(
      ETIMEDOUT, absl::StrCat(where->uri(), ": ",
                              Describe(oldest->command, oldest->offset), ": ",
                              why.message()));
}

absl::Status Engine::Drain() {
  while (in_flight() > 0) {
    if (absl::Status s = Poll(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Engine::Shutdown() {
  absl::Status result;
  absl::Time deadline = absl::Now() + options_.timeout;
  for (auto& e : exports_) {
    for (auto& c : e->conns_) {
      if (c->blocking != nullptr) {
        // Anything still queued was never sent: fail it like the core would.
        if (!c->ended) {
          // The connections close one after the other within the one
          // deadline; once it passed (or for a server that already stopped
          // answering) DISC is still sent, but not waited for.
          absl::Duration left =
              e->stalled_ ? absl::ZeroDuration() : deadline - absl::Now();
          absl::Status s =
              c->blocking->Shutdown(0, std::max(left, absl::ZeroDuration()));
          if (!s.ok() && result.ok()) result = s;
          c->ended = true;
        }
        for (Export::Op& op : c->queue) {
          completed_.push_back(
              {std::move(op), ErrnoStatus(ENOTCONN, "shut down")});
        }
        c->queue.clear();
        continue;
      }
      if (c->ended) continue;
      Client& core = *c->core();
      if (adapters::IsTerminal(core.phase())) continue;
      core.Shutdown().IgnoreError();
      absl::Time until = e->stalled_ ? absl::Now() : deadline;
      if (c->epoll != nullptr) {
        c->epoll->SetDeadline(until);
        c->epoll->Kick();
      } else {
        c->uring->SetDeadline(until);
      }
    }
  }
  auto all_finished = [this] {
    for (auto& e : exports_) {
      for (auto& c : e->conns_) {
        if (c->epoll != nullptr && !c->epoll->finished()) return false;
        if (c->uring != nullptr && !c->uring->finished()) return false;
      }
    }
    return true;
  };
  // The adapters give up at `deadline` themselves; the extra second only
  // covers the loop noticing it.
  absl::Status s = RunUntil(all_finished, options_.timeout + absl::Seconds(1));
  if (!s.ok() && result.ok()) result = s;
  for (auto& e : exports_) {
    for (auto& c : e->conns_) {
      if (c->blocking == nullptr && !c->end_reason.ok() && result.ok()) {
        result = c->end_reason;
      }
    }
  }
  Dispatch();
  if (!result.ok() && options_.debug) {
    std::fprintf(stderr, "nbd: debug: shutdown: %s\n",
                 result.ToString().c_str());
  }
  return result;
}

}  // namespace nbd::tool
