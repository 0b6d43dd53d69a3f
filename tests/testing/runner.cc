#include "tests/testing/runner.h"

#include <algorithm>
#include <optional>
#include <set>
#include <utility>
#include <variant>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/testing/event_log.h"

namespace nbd::test {

std::vector<Mode> AllModes() {
  using In = Mode::Input;
  using Split = Mode::Split;
  return {
      {"feed-whole", In::kFeed, Split::kWhole, 0},
      {"feed-bytes", In::kFeed, Split::kOneByte, 11},
      {"feed-random-1", In::kFeed, Split::kRandom, 1},
      {"feed-random-2", In::kFeed, Split::kRandom, 2},
      {"feed-random-3", In::kFeed, Split::kRandom, 3},
      {"recv-max", In::kZeroCopy, Split::kWhole, 0},
      {"recv-bytes", In::kZeroCopy, Split::kOneByte, 12},
      {"recv-random-4", In::kZeroCopy, Split::kRandom, 4},
      {"recv-random-5", In::kZeroCopy, Split::kRandom, 5},
  };
}

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

std::vector<std::string> LinesStartingWith(const std::vector<std::string>& log,
                                           std::string_view prefix) {
  std::vector<std::string> out;
  for (const std::string& line : log) {
    if (line.starts_with(prefix)) out.push_back(line);
  }
  return out;
}

// ---- ScenarioRun ------------------------------------------------------------

ScenarioRun::ScenarioRun(const Scenario& scenario, Mode mode)
    : scenario_(scenario),
      mode_(std::move(mode)),
      rng_(mode_.seed),
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
  result_.failures.push_back(absl::StrCat("step ", step_index_, ": ", what));
}

size_t ScenarioRun::Piece(size_t available) {
  switch (mode_.split) {
    case Mode::Split::kWhole:
      return available;
    case Mode::Split::kOneByte:
      return 1;
    case Mode::Split::kRandom:
      if (rng_() % 4 == 0) return 1;
      return 1 + rng_() % available;
  }
  return available;
}

void ScenarioRun::Execute(size_t index, const Step& step) {
  step_index_ = index;
  switch (step.kind) {
    case Step::Kind::kSend: {
      Bytes bytes = step.server.Build(ctx_);
      pending_input_.insert(pending_input_.end(), bytes.begin(), bytes.end());
      break;
    }
    case Step::Kind::kEof:
      FeedPending();  // whatever the client would still take
      client_->FeedEof();
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
      pending_input_.clear();  // a dead client takes nothing more
      return;
    }
    size_t taken = 0;
    if (mode_.input == Mode::Input::kFeed) {
      const size_t piece = Piece(pending_input_.size());
      absl::StatusOr<size_t> used =
          client_->Feed(ByteSpan(pending_input_).first(piece));
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
        pending_input_.clear();
        return;
      }
      if (*used > piece) {
        Failure(absl::StrCat("Feed consumed ", *used, " of ", piece));
        pending_input_.clear();
        return;
      }
      taken = *used;
      pending_input_.erase(pending_input_.begin(),
                           pending_input_.begin() + taken);
      if (taken < piece) return;  // stalled (e.g. at the STARTTLS ACK end)
    } else {
      absl::Span<uint8_t> buffer = client_->RecvBuffer();
      if (buffer.empty()) return;  // no input wanted now
      const size_t n = std::min(
          {Piece(buffer.size()), buffer.size(), pending_input_.size()});
      std::copy_n(pending_input_.begin(), n, buffer.begin());
      absl::Status status = client_->CommitRecv(n);
      pending_input_.erase(pending_input_.begin(), pending_input_.begin() + n);
      if (!status.ok()) {
        if (client_->phase() != ClientPhase::kDead) {
          Failure(absl::StrCat("CommitRecv failed but the client is ",
                               ClientPhaseName(client_->phase()), ": ",
                               status.ToString()));
        }
        pending_input_.clear();
        return;
      }
    }
  }
}

void ScenarioRun::TakeOutput(size_t limit) {
  while (limit > 0 && client_->pending_output_bytes() > 0) {
    const size_t pending = client_->pending_output_bytes();
    // A small gather list, so long queues are peeked in several rounds.
    IoSlice slices[3];
    const size_t count = client_->PeekOutput(absl::MakeSpan(slices));
    size_t peeked = 0;
    for (size_t i = 0; i < count; ++i) peeked += slices[i].size;
    if (count == 0 || peeked == 0 || peeked > pending) {
      Failure(absl::StrCat("PeekOutput gave ", count, " slices / ", peeked,
                           " bytes with ", pending, " bytes pending"));
      return;
    }
    const size_t want =
        std::min({limit, peeked, Piece(std::min(limit, peeked))});
    size_t copied = 0;
    for (size_t i = 0; i < count && copied < want; ++i) {
      const size_t n = std::min(slices[i].size, want - copied);
      sent_.bytes.insert(sent_.bytes.end(), slices[i].data, slices[i].data + n);
      copied += n;
    }
    absl::Status status = client_->ConsumeOutput(copied);
    if (!status.ok()) {
      Failure(absl::StrCat("ConsumeOutput(", copied,
                           ") failed: ", status.ToString()));
      return;
    }
    limit -= copied;
    // Entering kClosed/kDead drops the rest of the output.
    if (client_->pending_output_bytes() != pending - copied &&
        client_->pending_output_bytes() != 0) {
      Failure("pending_output_bytes() did not drop by the bytes consumed");
      return;
    }
  }
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

namespace {

std::string FirstDifference(const std::vector<std::string>& a,
                            const std::vector<std::string>& b) {
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const std::string x = i < a.size() ? a[i] : "<end>";
    const std::string y = i < b.size() ? b[i] : "<end>";
    if (x != y) return absl::StrCat("line ", i, ": \"", x, "\" vs \"", y, "\"");
  }
  return "";
}

}  // namespace

RunResult RunAllModes(const Scenario& scenario) {
  std::vector<RunResult> results;
  for (const Mode& mode : AllModes()) {
    ScenarioRun run(scenario, mode);
    run.RunAll();
    results.push_back(run.TakeResult());
  }
  // Report each distinct failure once, with the modes that hit it.
  std::map<std::string, std::vector<std::string>> failures;
  std::vector<std::string> order;
  for (const RunResult& r : results) {
    for (const std::string& f : r.failures) {
      if (failures[f].empty()) order.push_back(f);
      failures[f].push_back(r.mode);
    }
  }
  for (const std::string& f : order) {
    ADD_FAILURE() << f << "  [modes: " << absl::StrJoin(failures[f], ", ")
                  << "]";
  }
  const RunResult& first = results.front();
  for (size_t i = 1; i < results.size(); ++i) {
    const RunResult& r = results[i];
    if (r.log != first.log) {
      ADD_FAILURE() << "log of " << r.mode << " differs from " << first.mode
                    << " at " << FirstDifference(first.log, r.log) << "\n"
                    << first.mode << ":\n  " << absl::StrJoin(first.log, "\n  ")
                    << "\n"
                    << r.mode << ":\n  " << absl::StrJoin(r.log, "\n  ");
    } else if (r.messages != first.messages) {
      ADD_FAILURE() << "messages of " << r.mode << " differ from " << first.mode
                    << " at " << FirstDifference(first.messages, r.messages);
    }
    if (r.client_sent != first.client_sent) {
      ADD_FAILURE() << "client bytes of " << r.mode << " differ from "
                    << first.mode << " (" << r.client_sent.size() << " vs "
                    << first.client_sent.size() << " bytes)";
    }
    if (r.buffers != first.buffers) {
      ADD_FAILURE() << "buffer contents of " << r.mode << " differ from "
                    << first.mode;
    }
  }
  return std::move(results.front());
}

}  // namespace nbd::test
