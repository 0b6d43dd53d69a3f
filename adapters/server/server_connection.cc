#include "adapters/server/server_connection.h"

#include <algorithm>
#include <cerrno>
#include <variant>

#include "adapters/server/serve.h"

namespace nbd {
namespace {

ServerOptions WithTrace(ServerOptions options, bool trace) {
  if (trace) options.trace = true;
  return options;
}

}  // namespace

ServerConnection::ServerConnection(int fd, ServerOptions options,
                                   std::vector<Backend*> backends,
                                   TraceSink on_trace,
                                   adapters::SyscallCounters* counters)
    : fd_(fd),
      transport_(fd, counters),
      session_(WithTrace(std::move(options), on_trace != nullptr)),
      backends_(std::move(backends)),
      on_trace_(std::move(on_trace)) {
  adapters::ConfigureTls(transport_, session_.options());
}

ServerConnection::~ServerConnection() = default;  // transport_ closes fd_

void ServerConnection::ServeEvent(ServerEvent& event) {
  if (const auto* started = std::get_if<TransmissionStarted>(&event)) {
    if (started->export_index < backends_.size()) {
      backend_ = backends_[started->export_index];
    }
  } else if (const auto* r = std::get_if<ServerRequest>(&event)) {
    if (backend_ != nullptr) {
      ServeRequest(session_, *backend_, *r);
    } else {
      session_.ReplyError(r->handle, EIO, "no backend").IgnoreError();
    }
    peak_pending_output_ =
        std::max(peak_pending_output_, session_.pending_output_bytes());
  } else if (const auto* t = std::get_if<ServerTrace>(&event)) {
    if (on_trace_) on_trace_(t->message);
  }
}

bool ServerConnection::Pump() {
  // Level-triggered readiness (or a fresh socket): try to receive.
  adapters::PumpOnce(session_, transport_, /*maybe_readable=*/true,
                     [this](ServerEvent& event) { ServeEvent(event); });
  peak_pending_output_ =
      std::max(peak_pending_output_, session_.pending_output_bytes());
  return adapters::IsTerminal(session_.phase());
}

}  // namespace nbd
