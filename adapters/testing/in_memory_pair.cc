#include "adapters/testing/in_memory_pair.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "adapters/server/memory_backend.h"
#include "adapters/server/serve.h"
#include "protocol/status.h"

namespace nbd {
namespace {

bool Terminal(const Client& c) {
  return c.phase() == ClientPhase::kClosed || c.phase() == ClientPhase::kDead;
}
bool Terminal(const ServerSession& s) {
  return s.phase() == ServerPhase::kClosed || s.phase() == ServerPhase::kDead;
}
const char* Name(const Client&) { return "client"; }
const char* Name(const ServerSession&) { return "server"; }

// A one-shot backend: every call fails with the fault; a READ first reads
// the fault's prefix from the real backend.
class FaultBackend : public Backend {
 public:
  FaultBackend(Backend& inner, BackendFault fault)
      : inner_(inner), fault_(std::move(fault)) {}

  uint64_t Size() const override { return inner_.Size(); }
  BackendCapabilities Capabilities() const override {
    return inner_.Capabilities();
  }
  absl::Status Read(uint64_t offset, absl::Span<uint8_t> buffer,
                    std::vector<ReadRun>* runs) override {
    const size_t before = static_cast<size_t>(std::min<uint64_t>(
        fault_.read_before, buffer.empty() ? 0 : buffer.size() - 1));
    if (before > 0) {
      absl::Status s = inner_.Read(offset, buffer.first(before), runs);
      if (!s.ok()) return s;
    }
    return Error();
  }
  absl::Status Write(uint64_t, absl::Span<const uint8_t>, bool) override {
    return Error();
  }
  absl::Status Flush() override { return Error(); }
  absl::Status Trim(uint64_t, uint64_t, bool) override { return Error(); }
  absl::Status Zero(uint64_t, uint64_t, uint32_t) override { return Error(); }
  absl::Status Cache(uint64_t, uint64_t) override { return Error(); }
  absl::Status BlockStatus(uint64_t, uint64_t, size_t,
                           std::vector<Extent>*) override {
    return Error();
  }

 private:
  absl::Status Error() const {
    return ErrnoStatus(fault_.errno_value, fault_.message);
  }

  Backend& inner_;
  BackendFault fault_;
};

}  // namespace

InMemoryPair::InMemoryPair(ClientOptions client, uint64_t size)
    : owned_backend_(std::make_unique<MemoryBackend>(size)),
      backend_(owned_backend_.get()) {
  ServerOptions server;
  server.exports.push_back(MakeExportInfo(client.export_name, "", *backend_));
  client_ = std::make_unique<Client>(std::move(client));
  server_ = std::make_unique<ServerSession>(std::move(server));
}

InMemoryPair::InMemoryPair(ClientOptions client, ServerOptions server,
                           Backend& backend)
    : backend_(&backend) {
  if (server.exports.empty()) {
    server.exports.push_back(MakeExportInfo(client.export_name, "", backend));
  }
  client_ = std::make_unique<Client>(std::move(client));
  server_ = std::make_unique<ServerSession>(std::move(server));
}

InMemoryPair::~InMemoryPair() = default;

// ---- Moving bytes -----------------------------------------------------------

void InMemoryPair::Wire::Pop(size_t n) {
  head += n;
  if (head == bytes.size()) {
    Clear();
  } else if (head >= (size_t{1} << 20) && head >= bytes.size() / 2) {
    bytes.erase(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(head));
    head = 0;
  }
}

template <typename Core>
size_t InMemoryPair::Send(Wire& w, Core& core, size_t max) {
  size_t moved = 0;
  while (moved < max && core.pending_output_bytes() > 0) {
    IoSlice slices[16];
    const size_t n = core.PeekOutput(absl::MakeSpan(slices));
    size_t take = 0;
    for (size_t i = 0; i < n && moved + take < max; ++i) {
      const size_t len = std::min(slices[i].size, max - moved - take);
      if (tap_) {
        tap_(&w == &c2s_ ? Stream::kClientToServer : Stream::kServerToClient,
             absl::MakeConstSpan(slices[i].data, len));
      }
      if (!w.reader_closed && !w.ended) {
        w.bytes.insert(w.bytes.end(), slices[i].data, slices[i].data + len);
      }
      take += len;
    }
    if (take == 0) break;
    if (absl::Status s = core.ConsumeOutput(take); !s.ok()) {
      anomalies_.push_back(absl::StrCat(Name(core), " ConsumeOutput(", take,
                                        ") failed: ", s.ToString()));
      break;
    }
    w.sent += take;
    moved += take;
  }
  return moved;
}

template <typename Core>
size_t InMemoryPair::Deliver(Wire& w, Core& core, Split split, size_t max) {
  if (w.reader_closed || w.ended || Terminal(core)) return 0;
  const size_t piece = std::max<size_t>(split.piece, 1);
  size_t moved = 0;
  while (moved < max) {
    uint64_t avail = w.size();
    if (w.cut_at.has_value()) {
      avail = std::min<uint64_t>(avail, *w.cut_at - w.delivered);
    }
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>({avail, max - moved, piece}));
    if (n == 0) break;
    size_t used = 0;
    if (split.path == InputPath::kFeed) {
      absl::StatusOr<size_t> r = core.Feed({w.front(), n});
      if (!r.ok()) {
        if (!Terminal(core)) {
          anomalies_.push_back(
              absl::StrCat(Name(core), " Feed(", n,
                           ") failed on a live core: ", r.status().ToString()));
        }
        used = n;  // a dead core took what it was given
      } else {
        used = std::min(*r, n);
      }
    } else {
      absl::Span<uint8_t> buf = core.RecvBuffer();
      const size_t k = std::min(n, buf.size());
      if (k > 0) {
        std::copy(w.front(), w.front() + k, buf.begin());
        absl::Status s = core.CommitRecv(k);
        if (!s.ok() && !Terminal(core)) {
          anomalies_.push_back(
              absl::StrCat(Name(core), " CommitRecv(", k,
                           ") failed on a live core: ", s.ToString()));
        }
      }
      used = k;
    }
    w.Pop(used);
    w.delivered += used;
    moved += used;
    if (Terminal(core) || used < n) break;
  }
  if (!Terminal(core) && !w.ended) {
    if (w.cut_at.has_value() && w.delivered == *w.cut_at) {
      w.ended = true;
      w.end = w.cut_error;
      w.Clear();
      if (w.cut_error.ok()) {
        core.FeedEof();
      } else {
        core.FeedTransportError(w.cut_error);
      }
    } else if (w.writer_closed && w.size() == 0) {
      w.ended = true;
      core.FeedEof();
    }
  }
  Propagate();
  return moved;
}

size_t InMemoryPair::SendClientOutput(size_t max) {
  const size_t n = Send(c2s_, *client_, max);
  Propagate();
  return n;
}

size_t InMemoryPair::PinClientOutput(size_t n) {
  n = std::min(n, client_->pending_output_bytes());
  if (n == 0) return 0;
  if (absl::Status s = client_->PinOutput(n); !s.ok()) {
    anomalies_.push_back(
        absl::StrCat("client PinOutput(", n, ") failed: ", s.ToString()));
    return 0;
  }
  return n;
}

size_t InMemoryPair::DeliverToServer(Split split, size_t max) {
  return Deliver(c2s_, *server_, split, max);
}

size_t InMemoryPair::SendServerOutput(size_t max) {
  const size_t n = Send(s2c_, *server_, max);
  Propagate();
  return n;
}

size_t InMemoryPair::DeliverToClient(Split split, size_t max) {
  return Deliver(s2c_, *client_, split, max);
}

size_t InMemoryPair::wire_bytes(Stream stream) const {
  return wire(stream).size();
}
uint64_t InMemoryPair::sent(Stream stream) const { return wire(stream).sent; }
uint64_t InMemoryPair::delivered(Stream stream) const {
  return wire(stream).delivered;
}
bool InMemoryPair::ended(Stream stream) const { return wire(stream).ended; }
std::optional<absl::Status> InMemoryPair::end(Stream stream) const {
  const Wire& w = wire(stream);
  if (!w.ended) return std::nullopt;
  return w.end;
}

void InMemoryPair::Propagate() {
  // A core that ended has closed its socket: it reads nothing more, and
  // its peer reads what is left of its output, then EOF.
  if (Terminal(*client_)) {
    c2s_.writer_closed = true;
    s2c_.reader_closed = true;
    s2c_.Clear();
  }
  if (Terminal(*server_)) {
    s2c_.writer_closed = true;
    c2s_.reader_closed = true;
    c2s_.Clear();
  }
}

// ---- Events -----------------------------------------------------------------

size_t InMemoryPair::PollClient() {
  size_t n = 0;
  while (std::optional<ClientEvent> e = client_->PollEvent()) {
    if (std::holds_alternative<ShutdownWrite>(*e)) c2s_.writer_closed = true;
    client_events_.push_back(std::move(*e));
    ++n;
  }
  Propagate();
  return n;
}

size_t InMemoryPair::PollServer() {
  size_t n = 0;
  while (std::optional<ServerEvent> e = server_->PollEvent()) {
    ++n;
    if (const auto* r = std::get_if<ServerRequest>(&*e)) {
      if (auto_serve_) {
        ServeRequest(*server_, *backend_, *r);
      } else {
        held_.push_back(*r);
      }
    }
    server_events_.push_back(std::move(*e));
  }
  Propagate();
  return n;
}

std::optional<CommandCompleted> InMemoryPair::CompletionOf(
    Cookie cookie) const {
  for (const ClientEvent& e : client_events_) {
    if (const auto* c = std::get_if<CommandCompleted>(&e)) {
      if (c->cookie == cookie) return *c;
    }
  }
  return std::nullopt;
}

// ---- Executing requests -----------------------------------------------------

absl::Status InMemoryPair::Run(RequestHandle handle, Backend& backend) {
  auto it = std::find_if(
      held_.begin(), held_.end(),
      [handle](const ServerRequest& r) { return r.handle == handle; });
  if (it == held_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no held request with handle ", handle));
  }
  const ServerRequest r = *it;
  held_.erase(it);
  ServeRequest(*server_, backend, r);
  Propagate();
  return absl::OkStatus();
}

absl::Status InMemoryPair::Execute(RequestHandle handle) {
  return Run(handle, *backend_);
}

absl::Status InMemoryPair::ExecuteWithFault(RequestHandle handle,
                                            BackendFault fault) {
  FaultBackend faulty(*backend_, std::move(fault));
  return Run(handle, faulty);
}

size_t InMemoryPair::ExecuteAll() {
  size_t n = 0;
  while (!held_.empty()) {
    Run(held_.front().handle, *backend_).IgnoreError();
    ++n;
  }
  return n;
}

// ---- Faults -----------------------------------------------------------------

void InMemoryPair::BreakAt(Stream stream, uint64_t offset, absl::Status error) {
  Wire& w = wire(stream);
  if (w.ended) return;
  w.cut_at = std::max(offset, w.delivered);
  w.cut_error = std::move(error);
}

// ---- Running ----------------------------------------------------------------

bool InMemoryPair::Step(Split to_server, Split to_client) {
  const bool c2s_ended = c2s_.ended;
  const bool s2c_ended = s2c_.ended;
  size_t moved = SendClientOutput();
  moved += DeliverToServer(to_server);
  moved += PollServer();
  moved += SendServerOutput();
  moved += DeliverToClient(to_client);
  moved += PollClient();
  return moved > 0 || c2s_ended != c2s_.ended || s2c_ended != s2c_.ended;
}

bool InMemoryPair::RunUntilQuiet(Split to_server, Split to_client,
                                 size_t max_rounds) {
  for (size_t i = 0; i < max_rounds; ++i) {
    if (!Step(to_server, to_client)) return true;
  }
  return false;
}

absl::Status InMemoryPair::Wait(absl::StatusOr<Cookie> cookie, Split to_server,
                                Split to_client) {
  if (!cookie.ok()) return cookie.status();
  for (;;) {
    RunUntilQuiet(to_server, to_client);
    if (std::optional<CommandCompleted> c = CompletionOf(*cookie)) {
      return c->status;
    }
    if (held_.empty()) break;
    ExecuteAll();
  }
  return absl::InternalError(
      absl::StrCat("command ", *cookie, " did not complete"));
}

bool InMemoryPair::finished() const {
  return Terminal(*client_) && Terminal(*server_);
}

}  // namespace nbd
