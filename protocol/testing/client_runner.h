// The client kit's runner: replays a Scenario (client_script.h) against
// fresh nbd::Clients.
//
// RunAllModes(scenario) executes the scenario once per Mode (modes.h): the
// server's bytes are fed whole (one Feed() per step), byte by byte or split
// at seeded random points, or go through the zero-copy path
// (RecvBuffer()/CommitRecv()) with whole, 1-byte and random commits; the
// client's output is drained whole or in random pieces. The core promises
// identical results for any split, so RunAllModes() checks that every mode
// produced the same log, the same client bytes and the same buffer contents
// (run_compare.h says how differences and failures are reported), and
// returns the first mode's result for the test's own assertions.
//
// After each step a run retries input the client did not take (the log
// then gains "InputStalled left=N"; input after the client closed or died
// is dropped), drains the client's output into a byte stream (checked by
// ClientSends steps) unless it is held, and pops every event into the log
// (client_event_log.h). Each run also checks the core's invariants and
// records a failure when one breaks: every accepted command completes at
// most once, and exactly once if the connection ends; no completion for a
// cookie never accepted; ClientClosed/ClientDead is the last event and comes
// exactly when the phase is kClosed/kDead; then wants() is kNone, nothing
// is in flight and no output is pending; dead_reason() is set exactly when
// dead; Feed()/CommitRecv() fail only with the reason the client died of.
#ifndef NBD_PROTOCOL_TESTING_CLIENT_RUNNER_H_
#define NBD_PROTOCOL_TESTING_CLIENT_RUNNER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/client/client.h"
#include "protocol/testing/client_script.h"
#include "protocol/testing/modes.h"
#include "protocol/testing/pending_input.h"
#include "protocol/testing/run_compare.h"

namespace nbd::testing {

struct RunResult {
  std::string mode;
  // One line per event, call, snapshot or stall; status messages are in
  // `messages` at the same index ("" when there is none).
  std::vector<std::string> log;
  std::vector<std::string> messages;
  std::map<std::string, Bytes> buffers;
  Bytes client_sent;
  std::vector<std::string> failures;

  // The lines after the first "Connected" (all lines if there is none).
  std::vector<std::string> AfterConnected() const;
  // The message of the first line that starts with `prefix` ("" if none).
  std::string MessageOf(std::string_view prefix) const;
};

// One replay of a scenario, kept alive so a test can keep poking the client.
class ScenarioRun {
 public:
  ScenarioRun(const Scenario& scenario, Mode mode);
  ~ScenarioRun();

  // Executes every step of the scenario, then the end-of-run checks.
  void RunAll();
  // Retries stalled input, drains output (unless held) and logs events.
  void Settle();

  Client& client() { return *client_; }
  RunContext& context() { return ctx_; }
  const RunResult& result() const { return result_; }
  RunResult TakeResult() { return std::move(result_); }

 private:
  void Execute(size_t index, const Step& step);
  void FeedPending();
  void TakeOutput(size_t limit);
  void PollEvents();
  void CheckInvariants();
  void FinalChecks();
  size_t Piece(size_t available);
  void Log(std::string line, std::string message = "");
  void Failure(std::string what);

  const Scenario& scenario_;
  Mode mode_;
  Splitter splitter_;
  std::unique_ptr<Client> client_;
  RunContext ctx_;
  RunResult result_;
  PendingInput pending_input_;
  ClientStream sent_;
  bool output_held_ = false;
  bool terminal_event_seen_ = false;
  // "step 3 (expect)": where failures happened, for their messages.
  std::string where_ = "start of run";
  std::map<Cookie, int> completions_;
};

// Runs `scenario` in every mode and checks that all runs agree (see above).
RunResult RunAllModes(const Scenario& scenario);

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_CLIENT_RUNNER_H_
