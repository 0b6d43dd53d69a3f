#include "protocol/testing/client_runner.h"

#include <algorithm>
#include <optional>
#include <set>
#include <utility>
#include <variant>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "protocol/testing/client_event_log.h"
#include "protocol/testing/take_output.h"

namespace nbd::testing {

std::vector<std::string> RunResult::AfterConnected() const {
  auto it = std::find(log.begin(), log.end(), "Connected");
  if (it == log.end()) return log;
  return std::vector<std::string>(it + 1, log.end());
}

std::string RunResult::MessageOf(std::string_view prefix) const {
  for (size_t i = 0; i < log.size(); ++i) {
    if (log[i].starts_with(prefix)) return messages[i];
  }
  return "";
}

// ---- ScenarioRun ------------------------------------------------------------

ScenarioRun::ScenarioRun(const Scenario& scenario, Mode mode)
    : scenario_(scenario),
      mode_(std::move(mode)),
      splitter_(mode_),
      client_(std::make_unique<Client>(scenario.options())) {
  result_.mode = mode_.name;
}

// The client goes first: Read()/Write() memory in ctx_ must outlive it.
ScenarioRun::~ScenarioRun() { client_.reset(); }

void ScenarioRun::RunAll() {
  Settle();  // a fresh client may already have output (it should not)
  const std::vector<Step>& steps = scenario_.steps();
  for (size_t i = 0; i < steps.size(); ++i) Execute(i, steps[i]);
  FinalChecks();
}

void ScenarioRun::Log(std::string line, std::string message) {
  result_.log.push_back(std::move(line));
  result_.messages.push_back(std::move(message));
}

void ScenarioRun::Failure(std::string what) {
  result_.failures.push_back(absl::StrCat(where_, ": ", what));
}

size_t ScenarioRun::Piece(size_t available) {
  return splitter_.Piece(available);
}

void ScenarioRun::Execute(size_t index, const Step& step) {
  where_ = absl::StrCat("step ", index, " (", StepKindName(step.kind), ")");
  switch (step.kind) {
    case Step::Kind::kSend: {
      Bytes bytes = step.server.Build(ctx_);
      pending_input_.Append(bytes);
      break;
    }
    case Step::Kind::kEof:
      FeedPending();  // whatever the client would still take
      client_->FeedEof();
      break;
    case Step::Kind::kTransportError:
      FeedPending();
      client_->FeedTransportError(step.error);
      break;
    case Step::Kind::kExpect: {
      absl::Status status = step.expect.Check(sent_, ctx_);
      if (!status.ok()) Failure(std::string(status.message()));
      break;
    }
    case Step::Kind::kCall: {
      std::string line = step.call(*client_, ctx_);
      if (!line.empty()) Log(std::move(line));
      break;
    }
    case Step::Kind::kSnapshot:
      Log(absl::StrCat("phase=", ClientPhaseName(client_->phase()),
                       " in_flight=", client_->in_flight()));
      break;
    case Step::Kind::kContext:
      step.context(ctx_);
      break;
    case Step::Kind::kHoldOutput:
      output_held_ = true;
      break;
    case Step::Kind::kReleaseOutput:
      output_held_ = false;
      break;
    case Step::Kind::kConsume:
      if (step.consume > client_->pending_output_bytes()) {
        Failure(absl::StrCat("Consume(", step.consume, ") but only ",
                             client_->pending_output_bytes(),
                             " bytes are pending"));
      }
      TakeOutput(std::min(step.consume, client_->pending_output_bytes()));
      break;
  }
  Settle();
}

void ScenarioRun::Settle() {
  FeedPending();
  if (!output_held_) TakeOutput(client_->pending_output_bytes());
  PollEvents();
  if (!pending_input_.empty()) {
    Log(absl::StrCat("InputStalled left=", pending_input_.size()));
  }
  CheckInvariants();
}

void ScenarioRun::FeedPending() {
  while (!pending_input_.empty()) {
    const ClientPhase phase = client_->phase();
    if (phase == ClientPhase::kClosed || phase == ClientPhase::kDead) {
      pending_input_.Clear();  // a dead client takes nothing more
      return;
    }
    size_t taken = 0;
    if (mode_.input == Mode::Input::kFeed) {
      const size_t piece = Piece(pending_input_.size());
      absl::StatusOr<size_t> used =
          client_->Feed(pending_input_.view().first(piece));
      if (!used.ok()) {
        // Feed() reports the reason the connection died.
        if (client_->phase() != ClientPhase::kDead) {
          Failure(absl::StrCat("Feed failed but the client is ",
                               ClientPhaseName(client_->phase()), ": ",
                               used.status().ToString()));
        } else if (used.status() != client_->dead_reason()) {
          Failure(absl::StrCat("Feed returned ", used.status().ToString(),
                               " but dead_reason() is ",
                               client_->dead_reason().ToString()));
        }
        pending_input_.Clear();
        return;
      }
      if (*used > piece) {
        Failure(absl::StrCat("Feed consumed ", *used, " of ", piece));
        pending_input_.Clear();
        return;
      }
      taken = *used;
      pending_input_.Consume(taken);
      if (taken < piece) return;  // stalled (e.g. at the STARTTLS ACK end)
    } else {
      absl::Span<uint8_t> buffer = client_->RecvBuffer();
      if (buffer.empty()) return;  // no input wanted now
      const size_t n = std::min(
          {Piece(buffer.size()), buffer.size(), pending_input_.size()});
      std::copy_n(pending_input_.view().begin(), n, buffer.begin());
      absl::Status status = client_->CommitRecv(n);
      pending_input_.Consume(n);
      if (!status.ok()) {
        if (client_->phase() != ClientPhase::kDead) {
          Failure(absl::StrCat("CommitRecv failed but the client is ",
                               ClientPhaseName(client_->phase()), ": ",
                               status.ToString()));
        }
        pending_input_.Clear();
        return;
      }
    }
  }
}

void ScenarioRun::TakeOutput(size_t limit) {
  std::string broke = testing::TakeOutput(
      *client_, limit, [this](size_t n) { return Piece(n); }, sent_.bytes);
  if (!broke.empty()) Failure(std::move(broke));
}

void ScenarioRun::PollEvents() {
  while (std::optional<ClientEvent> event = client_->PollEvent()) {
    if (terminal_event_seen_) {
      std::string ignored;
      Failure(absl::StrCat("event after Closed/Dead: ",
                           FormatEvent(*event, &ignored)));
    }
    if (const auto* done = std::get_if<CommandCompleted>(&*event)) {
      if (!ctx_.accepted.contains(done->cookie)) {
        Failure(absl::StrCat("completion of cookie ", done->cookie,
                             " which was never accepted"));
      }
      if (++completions_[done->cookie] > 1) {
        Failure(absl::StrCat("cookie ", done->cookie, " completed twice"));
      }
    }
    if (std::holds_alternative<ClientClosed>(*event) ||
        std::holds_alternative<ClientDead>(*event)) {
      terminal_event_seen_ = true;
    }
    std::string message;
    std::string line = FormatEvent(*event, &message);
    Log(std::move(line), std::move(message));
  }
  if (client_->has_events()) Failure("has_events() after draining events");
}

void ScenarioRun::CheckInvariants() {
  const ClientPhase phase = client_->phase();
  const bool terminal =
      phase == ClientPhase::kClosed || phase == ClientPhase::kDead;
  if (terminal != terminal_event_seen_) {
    Failure(absl::StrCat("phase ", ClientPhaseName(phase),
                         terminal_event_seen_ ? " after" : " without",
                         " a Closed/Dead event"));
  }
  if (!terminal) return;
  if (client_->wants() != Direction::kNone) {
    Failure("a closed/dead client still wants I/O");
  }
  if (client_->in_flight() != 0) Failure("in_flight() != 0 when closed/dead");
  if (client_->pending_output_bytes() != 0) {
    Failure("output still pending when closed/dead");
  }
  if ((phase == ClientPhase::kDead) == client_->dead_reason().ok()) {
    Failure("dead_reason() must be set exactly when dead");
  }
}

void ScenarioRun::FinalChecks() {
  where_ = "end of run";
  const ClientPhase phase = client_->phase();
  if (phase == ClientPhase::kClosed || phase == ClientPhase::kDead) {
    for (Cookie cookie : ctx_.accepted) {
      if (completions_[cookie] != 1) {
        Failure(absl::StrCat("cookie ", cookie, " completed ",
                             completions_[cookie],
                             " times by the end of the connection"));
      }
    }
  }
  result_.buffers = ctx_.buffers();
  result_.client_sent = sent_.bytes;
}

// ---- Run --------------------------------------------------------------------

RunResult RunAllModes(const Scenario& scenario) {
  std::vector<RunResult> results;
  std::vector<RunSummary> summaries;
  for (const Mode& mode : AllModes()) {
    ScenarioRun run(scenario, mode);
    run.RunAll();
    RunResult r = run.TakeResult();
    RunSummary summary{r.mode, r.log, r.messages, r.failures, {}};
    summary.outputs["client bytes"] = r.client_sent;
    for (const auto& [label, bytes] : r.buffers) {
      summary.outputs["buffer " + label] = bytes;
    }
    summaries.push_back(std::move(summary));
    results.push_back(std::move(r));
  }
  ReportRuns(summaries);
  return std::move(results.front());
}

}  // namespace nbd::testing
