// The server kit's runner: replays a ServerScenario (server_script.h)
// against fresh nbd::ServerSessions, the mirror of client_runner.h.
//
// RunAllModes(scenario) executes the scenario once per Mode (modes.h): the
// client's bytes are fed whole (one Feed() per step), byte by byte or split
// at seeded random points, or go through the zero-copy path
// (RecvBuffer()/CommitRecv()) with whole, 1-byte and random commits; the
// session's output is drained whole or in random pieces. The session
// promises identical results for any split, so RunAllModes() checks that
// every mode produced the same log, the same bytes from the session and the
// same WRITE payloads (run_compare.h says how differences are reported),
// and returns the first mode's result for the test's own assertions.
//
// After each step a run retries input the session did not take (it pauses
// at max_in_flight or output_high_water; the log then gains "InputStalled
// left=N"; input after the session stopped reading, e.g. after NBD_CMD_DISC,
// is dropped), drains the output into a byte stream (checked by ServerSends
// steps) unless it is held, and pops every event into the log
// (server_event_log.h), recording each ServerRequest under its label for
// the Reply*() steps. Each run also checks the session's invariants and
// records a failure when one breaks:
//   - TransmissionStarted comes at most once, before any ServerRequest;
//   - request handles are new and increasing; a WRITE's payload has its
//     length;
//   - ReplySent only for a request that was answered, once;
//   - in_flight() is the number of reported requests not yet answered;
//   - ServerClosed/ServerDead is the last event, and comes exactly when the
//     phase is kClosed/kDead; then wants() is kNone and no output is
//     pending; dead_reason() is set exactly when dead;
//   - Feed()/CommitRecv() fail only with the reason the session died of.
#ifndef NBD_PROTOCOL_TESTING_SERVER_RUNNER_H_
#define NBD_PROTOCOL_TESTING_SERVER_RUNNER_H_

#include <cstddef>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/server/server.h"
#include "protocol/testing/modes.h"
#include "protocol/testing/pending_input.h"
#include "protocol/testing/run_compare.h"
#include "protocol/testing/server_script.h"

namespace nbd::testing {

struct ServerRunResult {
  std::string mode;
  // One line per event, reply, call, snapshot or stall; status messages are
  // in `messages` at the same index ("" when there is none).
  std::vector<std::string> log;
  std::vector<std::string> messages;
  // Everything the session sent, greeting included.
  Bytes server_sent;
  // The payloads of the WRITEs the session reported, by label, in order.
  std::map<std::string, Bytes> payloads;
  std::vector<std::string> failures;

  // The lines after the first "TransmissionStarted ..." (all lines if there
  // is none).
  std::vector<std::string> AfterTransmissionStarted() const;
  // The message of the first line that starts with `prefix` ("" if none).
  std::string MessageOf(std::string_view prefix) const;
};

// One replay of a scenario, kept alive so a test can keep poking the
// session.
class ServerScenarioRun {
 public:
  ServerScenarioRun(const ServerScenario& scenario, Mode mode);

  // Executes every step of the scenario, then the end-of-run checks.
  void RunAll();
  // Retries stalled input, drains output (unless held) and logs events.
  void Settle();

  ServerSession& session() { return *session_; }
  ServerRunContext& context() { return ctx_; }
  const ServerRunResult& result() const { return result_; }
  ServerRunResult TakeResult() { return std::move(result_); }

 private:
  void Execute(size_t index, const ServerStep& step);
  void FeedPending();
  void TakeOutput(size_t limit);
  void PollEvents();
  void OnRequest(const ServerRequest& request);
  void CheckInvariants();
  void Log(std::string line, std::string message = "");
  void Failure(std::string what);

  const ServerScenario& scenario_;
  Mode mode_;
  Splitter splitter_;
  std::unique_ptr<ServerSession> session_;
  ServerRunContext ctx_;
  ServerRunResult result_;
  PendingInput pending_input_;
  ServerStream sent_;
  bool output_held_ = false;
  bool terminal_event_seen_ = false;
  bool transmission_seen_ = false;
  RequestHandle last_handle_ = 0;
  std::set<RequestHandle> reply_sent_;
  std::string where_ = "start of run";
};

// Runs `scenario` in every mode and checks that all runs agree (see above).
ServerRunResult RunAllModes(const ServerScenario& scenario);

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_SERVER_RUNNER_H_
