#include "protocol/testing/server_runner.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "protocol/testing/server_event_log.h"
#include "protocol/testing/take_output.h"

namespace nbd::testing {

std::vector<std::string> ServerRunResult::AfterTransmissionStarted() const {
  auto it = std::find_if(log.begin(), log.end(), [](const std::string& line) {
    return line.starts_with("TransmissionStarted");
  });
  if (it == log.end()) return log;
  return std::vector<std::string>(it + 1, log.end());
}

std::string ServerRunResult::MessageOf(std::string_view prefix) const {
  for (size_t i = 0; i < log.size(); ++i) {
    if (log[i].starts_with(prefix)) return messages[i];
  }
  return "";
}

// ---- ServerScenarioRun ------------------------------------------------------

namespace {

// After NBD_CMD_DISC, NBD_OPT_ABORT or EOF the session ignores input.
bool StoppedReading(ServerPhase phase) {
  return phase == ServerPhase::kClosing || phase == ServerPhase::kClosed ||
         phase == ServerPhase::kDead;
}

}  // namespace

ServerScenarioRun::ServerScenarioRun(const ServerScenario& scenario, Mode mode)
    : scenario_(scenario),
      mode_(std::move(mode)),
      splitter_(mode_),
      session_(std::make_unique<ServerSession>(scenario.options())) {
  result_.mode = mode_.name;
}

void ServerScenarioRun::RunAll() {
  Settle();  // the greeting
  const std::vector<ServerStep>& steps = scenario_.steps();
  for (size_t i = 0; i < steps.size(); ++i) Execute(i, steps[i]);
  where_ = "end of run";
  if (session_->phase() == ServerPhase::kClosed) {
    for (const auto& [name, requests] : ctx_.outstanding) {
      if (!requests.empty()) {
        Failure(absl::StrCat("closed with request ", name, " unanswered"));
      }
    }
  }
  result_.server_sent = sent_.bytes;
}

void ServerScenarioRun::Log(std::string line, std::string message) {
  result_.log.push_back(std::move(line));
  result_.messages.push_back(std::move(message));
}

void ServerScenarioRun::Failure(std::string what) {
  result_.failures.push_back(absl::StrCat(where_, ": ", what));
}

void ServerScenarioRun::Execute(size_t index, const ServerStep& step) {
  where_ =
      absl::StrCat("step ", index, " (", ServerStepKindName(step.kind), ")");
  switch (step.kind) {
    case ServerStep::Kind::kSend: {
      Bytes bytes = step.client.Build(ctx_);
      pending_input_.Append(bytes);
      break;
    }
    case ServerStep::Kind::kEof:
      FeedPending();  // whatever the session would still take
      session_->FeedEof();
      break;
    case ServerStep::Kind::kTransportError:
      FeedPending();
      session_->FeedTransportError(step.error);
      break;
    case ServerStep::Kind::kExpect: {
      absl::Status status = step.expect.Check(sent_, ctx_);
      if (!status.ok()) Failure(std::string(status.message()));
      break;
    }
    case ServerStep::Kind::kCall: {
      std::string line = step.call(*session_, ctx_);
      if (!line.empty()) Log(std::move(line));
      break;
    }
    case ServerStep::Kind::kSnapshot:
      Log(absl::StrCat("phase=", ServerPhaseName(session_->phase()),
                       " in_flight=", session_->in_flight()));
      break;
    case ServerStep::Kind::kContext:
      step.context(ctx_);
      break;
    case ServerStep::Kind::kHoldOutput:
      output_held_ = true;
      break;
    case ServerStep::Kind::kReleaseOutput:
      output_held_ = false;
      break;
    case ServerStep::Kind::kConsume:
      if (step.consume > session_->pending_output_bytes()) {
        Failure(absl::StrCat("Consume(", step.consume, ") but only ",
                             session_->pending_output_bytes(),
                             " bytes are pending"));
      }
      TakeOutput(std::min(step.consume, session_->pending_output_bytes()));
      break;
  }
  Settle();
}

void ServerScenarioRun::Settle() {
  FeedPending();
  if (!output_held_) TakeOutput(session_->pending_output_bytes());
  PollEvents();
  if (!pending_input_.empty()) {
    Log(absl::StrCat("InputStalled left=", pending_input_.size()));
  }
  CheckInvariants();
}

void ServerScenarioRun::FeedPending() {
  while (!pending_input_.empty()) {
    if (StoppedReading(session_->phase())) {
      pending_input_.Clear();  // the session reads nothing more
      return;
    }
    if (mode_.input == Mode::Input::kFeed) {
      const size_t piece = splitter_.Piece(pending_input_.size());
      absl::StatusOr<size_t> used =
          session_->Feed(pending_input_.view().first(piece));
      if (!used.ok()) {
        if (session_->phase() != ServerPhase::kDead) {
          Failure(absl::StrCat("Feed failed but the session is ",
                               ServerPhaseName(session_->phase()), ": ",
                               used.status().ToString()));
        } else if (used.status() != session_->dead_reason()) {
          Failure(absl::StrCat("Feed returned ", used.status().ToString(),
                               " but dead_reason() is ",
                               session_->dead_reason().ToString()));
        }
        pending_input_.Clear();
        return;
      }
      if (*used > piece) {
        Failure(absl::StrCat("Feed consumed ", *used, " of ", piece));
        pending_input_.Clear();
        return;
      }
      pending_input_.Consume(*used);
      // Less than offered: paused at a limit (retried after the next
      // step), or stopped reading (the loop's first check drops the rest).
      if (*used < piece && !StoppedReading(session_->phase())) return;
    } else {
      absl::Span<uint8_t> buffer = session_->RecvBuffer();
      if (buffer.empty()) return;  // no input wanted now
      const size_t n = std::min({splitter_.Piece(buffer.size()), buffer.size(),
                                 pending_input_.size()});
      std::copy_n(pending_input_.view().begin(), n, buffer.begin());
      absl::Status status = session_->CommitRecv(n);
      pending_input_.Consume(n);
      if (!status.ok()) {
        if (session_->phase() != ServerPhase::kDead) {
          Failure(absl::StrCat("CommitRecv failed but the session is ",
                               ServerPhaseName(session_->phase()), ": ",
                               status.ToString()));
        } else if (status != session_->dead_reason()) {
          Failure(absl::StrCat("CommitRecv returned ", status.ToString(),
                               " but dead_reason() is ",
                               session_->dead_reason().ToString()));
        }
        pending_input_.Clear();
        return;
      }
    }
  }
}

void ServerScenarioRun::TakeOutput(size_t limit) {
  std::string broke = testing::TakeOutput(
      *session_, limit, [this](size_t n) { return splitter_.Piece(n); },
      sent_.bytes);
  if (!broke.empty()) Failure(std::move(broke));
}

void ServerScenarioRun::OnRequest(const ServerRequest& r) {
  if (!transmission_seen_) Failure("ServerRequest before TransmissionStarted");
  if (r.handle <= last_handle_) {
    Failure(absl::StrCat("request handle ", r.handle, " after handle ",
                         last_handle_));
  }
  last_handle_ = std::max(last_handle_, r.handle);
  const std::string name = ctx_.NameOf(r.cookie);
  if (r.command == Command::kWrite) {
    if (r.payload.size() != r.length) {
      Failure(absl::StrCat("WRITE ", name, " of length ", r.length, " has a ",
                           r.payload.size(), "-byte payload"));
    }
    Bytes& payload = result_.payloads[name];
    payload.insert(payload.end(), r.payload.begin(), r.payload.end());
  }
  ctx_.outstanding[name].push_back(r);
  ctx_.handles[r.handle] = name;
}

void ServerScenarioRun::PollEvents() {
  while (std::optional<ServerEvent> event = session_->PollEvent()) {
    std::string message;
    std::string line = FormatServerEvent(*event, ctx_, &message);
    if (terminal_event_seen_) {
      Failure(absl::StrCat("event after Closed/Dead: ", line));
    }
    if (const auto* started = std::get_if<TransmissionStarted>(&*event)) {
      if (transmission_seen_) Failure("a second TransmissionStarted");
      transmission_seen_ = true;
      ctx_.extended = started->extended_headers;
      ctx_.structured = started->structured_replies;
    } else if (const auto* request = std::get_if<ServerRequest>(&*event)) {
      OnRequest(*request);
      line = FormatServerEvent(*event, ctx_, &message);
    } else if (const auto* sent = std::get_if<ReplySent>(&*event)) {
      const auto it = ctx_.handles.find(sent->handle);
      if (it == ctx_.handles.end()) {
        Failure(absl::StrCat("ReplySent for unknown handle ", sent->handle));
      } else {
        for (const ServerRequest& r : ctx_.outstanding[it->second]) {
          if (r.handle == sent->handle) {
            Failure(absl::StrCat("ReplySent for ", it->second,
                                 " which was not answered"));
          }
        }
      }
      if (!reply_sent_.insert(sent->handle).second) {
        Failure(absl::StrCat("ReplySent twice for handle ", sent->handle));
      }
    } else if (std::holds_alternative<ServerClosed>(*event) ||
               std::holds_alternative<ServerDead>(*event)) {
      terminal_event_seen_ = true;
    }
    Log(std::move(line), std::move(message));
  }
  if (session_->has_events()) Failure("has_events() after draining events");
}

void ServerScenarioRun::CheckInvariants() {
  const ServerPhase phase = session_->phase();
  const bool terminal =
      phase == ServerPhase::kClosed || phase == ServerPhase::kDead;
  if (terminal != terminal_event_seen_) {
    Failure(absl::StrCat("phase ", ServerPhaseName(phase),
                         terminal_event_seen_ ? " after" : " without",
                         " a Closed/Dead event"));
  }
  size_t outstanding = 0;
  for (const auto& [name, requests] : ctx_.outstanding) {
    outstanding += requests.size();
  }
  if (session_->in_flight() != outstanding) {
    Failure(absl::StrCat("in_flight() is ", session_->in_flight(), " with ",
                         outstanding, " requests unanswered"));
  }
  if ((phase == ServerPhase::kDead) == session_->dead_reason().ok()) {
    Failure("dead_reason() must be set exactly when dead");
  }
  if (!terminal) return;
  if (session_->wants() != Direction::kNone) {
    Failure("a closed/dead session still wants I/O");
  }
  if (session_->pending_output_bytes() != 0) {
    Failure("output still pending when closed/dead");
  }
}

// ---- Run --------------------------------------------------------------------

ServerRunResult RunAllModes(const ServerScenario& scenario) {
  std::vector<ServerRunResult> results;
  std::vector<RunSummary> summaries;
  for (const Mode& mode : AllModes()) {
    ServerScenarioRun run(scenario, mode);
    run.RunAll();
    ServerRunResult r = run.TakeResult();
    RunSummary summary{r.mode, r.log, r.messages, r.failures, {}};
    summary.outputs["server bytes"] = r.server_sent;
    for (const auto& [label, bytes] : r.payloads) {
      summary.outputs["payload of " + label] = bytes;
    }
    summaries.push_back(std::move(summary));
    results.push_back(std::move(r));
  }
  ReportRuns(summaries);
  return std::move(results.front());
}

}  // namespace nbd::testing
