#include "adapters/blocking/blocking_client.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "protocol/status.h"

namespace nbd::adapters {

namespace {

// Every wait is a bounded poll(); a recv/send on a blocking descriptor would
// wait outside it (PumpOnce keeps receiving while receives fill the buffer),
// so the descriptor must be non-blocking whatever the caller passed.
absl::Status MakeNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return ErrnoStatus(errno, "fcntl(F_GETFL)");
  if ((flags & O_NONBLOCK) == 0 &&
      ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return ErrnoStatus(errno, "fcntl(F_SETFL, O_NONBLOCK)");
  }
  return absl::OkStatus();
}

}  // namespace

BlockingClient::BlockingClient(int fd, ClientOptions options,
                               SyscallCounters* counters)
    : client_(options), transport_(fd, counters) {
  ConfigureTls(transport_, options);
}

BlockingClient::~BlockingClient() {
  transport_.Close();
  if (subprocess_.has_value() && subprocess_->pid > 0) {
    StopSubprocess(*subprocess_).IgnoreError();
  }
}

absl::StatusOr<std::unique_ptr<BlockingClient>> BlockingClient::Connect(
    int fd, ClientOptions options, absl::Duration timeout,
    SyscallCounters* counters, EventObserver observer) {
  bool option_mode = options.option_mode;
  std::unique_ptr<BlockingClient> c(
      new BlockingClient(fd, std::move(options), counters));
  c->observer_ = std::move(observer);
  if (absl::Status s = MakeNonBlocking(fd); !s.ok()) return s;
  absl::Status s =
      c->RunUntil([&] { return option_mode ? c->negotiating_ : c->connected_; },
                  timeout, "handshake");
  if (!s.ok()) return s;
  return c;
}

absl::StatusOr<std::unique_ptr<BlockingClient>> BlockingClient::Connect(
    Connection connection, ClientOptions options, absl::Duration timeout,
    SyscallCounters* counters, EventObserver observer) {
  if (options.export_name.empty()) options.export_name = connection.export_name;
  if (connection.uri.has_value()) {
    bool require = false;
    if (absl::Status s =
            ApplyUriTls(*connection.uri, &require, &options.tls_credentials);
        !s.ok()) {
      ::close(connection.fd);
      return s;
    }
    if (require) options.tls = TlsPolicy::kRequire;
  }
  bool option_mode = options.option_mode;
  std::unique_ptr<BlockingClient> c(
      new BlockingClient(connection.fd, std::move(options), counters));
  c->observer_ = std::move(observer);
  c->subprocess_ = std::move(connection.subprocess);
  if (absl::Status s = MakeNonBlocking(connection.fd); !s.ok()) return s;
  absl::Status s =
      c->RunUntil([&] { return option_mode ? c->negotiating_ : c->connected_; },
                  timeout, "handshake");
  if (!s.ok()) return s;
  return c;
}

void BlockingClient::OnEvent(ClientEvent& event) {
  if (observer_) observer_(event);
  if (auto* e = std::get_if<CommandCompleted>(&event)) {
    if (e->cookie == waiting_for_) command_status_ = e->status;
  } else if (auto* e = std::get_if<BlockStatusExtents>(&event)) {
    if (e->cookie == waiting_for_ && e->context_name == extents_context_) {
      extents_.insert(extents_.end(), e->extents.begin(), e->extents.end());
    }
  } else if (auto* e = std::get_if<OptionCompleted>(&event)) {
    option_status_ = e->status;
  } else if (auto* e = std::get_if<ExportListed>(&event)) {
    exports_.push_back({e->name, e->description});
  } else if (auto* e = std::get_if<MetaContextListed>(&event)) {
    contexts_.push_back({e->context_id, e->name});
  } else if (std::holds_alternative<Connected>(event)) {
    connected_ = true;
    negotiating_ = false;
  } else if (std::holds_alternative<Negotiating>(event)) {
    negotiating_ = true;
  }
}

absl::Status BlockingClient::ConnectionEnded() const {
  if (client_.phase() == ClientPhase::kDead) return client_.dead_reason();
  return ErrnoStatus(ENOTCONN, "the server closed the connection");
}

template <typename Done>
absl::Status BlockingClient::RunUntil(Done done, absl::Duration timeout,
                                      absl::string_view what) {
  absl::Time deadline = absl::Now() + timeout;
  auto sink = [this](ClientEvent& e) { OnEvent(e); };
  bool readable = false;
  while (true) {
    PumpOnce(client_, transport_, readable, sink);
    if (done()) return absl::OkStatus();
    if (IsTerminal(client_.phase())) {
      transport_.Close();
      return ConnectionEnded();
    }
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      absl::Status why = TimeoutStatus(what);
      GiveUp(client_, transport_, why, sink);
      transport_.Close();
      return why;
    }
    pollfd pfd = {transport_.fd(),
                  PollEventsFor(CombinedWants(client_.wants(), transport_)), 0};
    int ms = static_cast<int>(
        std::min<int64_t>(absl::ToInt64Milliseconds(left) + 1, 1 << 30));
    // Input the TLS layer already holds needs no wait.
    if (transport_.has_buffered_input()) ms = 0;
    ++transport_.counters()->poll;
    int r = ::poll(&pfd, 1, ms);
    if (r < 0 && errno != EINTR) {
      absl::Status why = ErrnoStatus(errno, "poll");
      GiveUp(client_, transport_, why, sink);
      transport_.Close();
      return why;
    }
    // POLLHUP/POLLERR: let recv/send report what happened.
    readable = r > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
  }
}

absl::Status BlockingClient::Wait(absl::StatusOr<Cookie> cookie,
                                  absl::Duration timeout,
                                  absl::string_view what) {
  if (!cookie.ok()) return cookie.status();
  waiting_for_ = *cookie;
  command_status_.reset();
  absl::Status s =
      RunUntil([&] { return command_status_.has_value(); }, timeout, what);
  waiting_for_ = 0;
  // The wait itself failed (timeout, poll error): the core was given up and
  // completed the command with ENOTCONN, but the caller needs the real cause.
  if (!s.ok()) return s;
  // Otherwise the command completed: OK, the server's error, or ENOTCONN if
  // the connection ended first.
  return command_status_.value_or(ConnectionEnded());
}

absl::Status BlockingClient::Pread(absl::Span<uint8_t> buffer, uint64_t offset,
                                   ReadOptions options,
                                   absl::Duration timeout) {
  return Wait(client_.Read(offset, buffer, options), timeout, "pread");
}

absl::Status BlockingClient::Pwrite(absl::Span<const uint8_t> data,
                                    uint64_t offset, uint16_t flags,
                                    absl::Duration timeout) {
  return Wait(client_.Write(offset, data, flags), timeout, "pwrite");
}

absl::Status BlockingClient::Flush(uint16_t flags, absl::Duration timeout) {
  return Wait(client_.Flush(flags), timeout, "flush");
}

absl::Status BlockingClient::Trim(uint64_t offset, uint64_t length,
                                  uint16_t flags, absl::Duration timeout) {
  return Wait(client_.Trim(offset, length, flags), timeout, "trim");
}

absl::Status BlockingClient::Zero(uint64_t offset, uint64_t length,
                                  uint16_t flags, absl::Duration timeout) {
  return Wait(client_.WriteZeroes(offset, length, flags), timeout, "zero");
}

absl::Status BlockingClient::Cache(uint64_t offset, uint64_t length,
                                   uint16_t flags, absl::Duration timeout) {
  return Wait(client_.Cache(offset, length, flags), timeout, "cache");
}

absl::StatusOr<std::vector<Extent>> BlockingClient::BlockStatus(
    uint64_t offset, uint64_t length, uint16_t flags, std::string_view context,
    absl::Duration timeout) {
  extents_.clear();
  extents_context_ = std::string(context);
  absl::Status s =
      Wait(client_.BlockStatus(offset, length, flags), timeout, "block status");
  if (!s.ok()) return s;
  return std::move(extents_);
}

absl::Status BlockingClient::WaitOption(absl::Status started,
                                        absl::Duration timeout,
                                        absl::string_view what) {
  if (!started.ok()) return started;
  absl::Status s =
      RunUntil([&] { return option_status_.has_value(); }, timeout, what);
  std::optional<absl::Status> done = std::exchange(option_status_, {});
  if (!s.ok()) return s;  // timeout or poll error, as in Wait()
  return done.value_or(ConnectionEnded());
}

absl::StatusOr<std::vector<ExportEntry>> BlockingClient::OptList(
    absl::Duration timeout) {
  exports_.clear();
  absl::Status s = WaitOption(client_.OptList(), timeout, "opt_list");
  if (!s.ok()) return s;
  return std::move(exports_);
}

absl::Status BlockingClient::SetExportName(std::string name) {
  return client_.SetExportName(std::move(name));
}

absl::Status BlockingClient::OptInfo(absl::Duration timeout) {
  return WaitOption(client_.OptInfo(), timeout, "opt_info");
}

absl::Status BlockingClient::OptGo(absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  absl::Status s = WaitOption(client_.OptGo(), timeout, "opt_go");
  if (!s.ok()) return s;
  // Connected follows the successful OptionCompleted.
  return RunUntil([&] { return connected_; }, deadline - absl::Now(), "opt_go");
}

absl::StatusOr<std::vector<MetaContext>> BlockingClient::OptListMetaContext(
    std::vector<std::string> queries, absl::Duration timeout) {
  contexts_.clear();
  absl::Status s = WaitOption(client_.OptListMetaContext(std::move(queries)),
                              timeout, "opt_list_meta_context");
  if (!s.ok()) return s;
  return std::move(contexts_);
}

absl::StatusOr<std::vector<MetaContext>> BlockingClient::OptSetMetaContext(
    std::vector<std::string> queries, absl::Duration timeout) {
  contexts_.clear();
  absl::Status s = WaitOption(client_.OptSetMetaContext(std::move(queries)),
                              timeout, "opt_set_meta_context");
  if (!s.ok()) return s;
  return std::move(contexts_);
}

absl::Status BlockingClient::OptAbort(absl::Duration timeout) {
  if (absl::Status s = client_.OptAbort(); !s.ok()) return s;
  absl::Status s = RunUntil([] { return false; }, timeout, "opt_abort");
  return client_.phase() == ClientPhase::kClosed ? absl::OkStatus() : s;
}

absl::Status BlockingClient::Shutdown(uint32_t flags, absl::Duration timeout) {
  if (absl::Status s = client_.Shutdown(flags); !s.ok()) return s;
  // Runs until the connection ends: RunUntil returns its ending status.
  absl::Status s = RunUntil([] { return false; }, timeout, "shutdown");
  transport_.Close();
  return client_.phase() == ClientPhase::kClosed ? absl::OkStatus() : s;
}

}  // namespace nbd::adapters
