// Comparing the replays of one scenario, and matching their logs. Shared by
// the client and server runners (client_runner.h, server_runner.h).
//
// Each replay (one per Mode, modes.h) produces a RunSummary. The runner hands
// all of them to ReportRuns(), which adds one GoogleTest non-fatal failure
// (ADD_FAILURE) per problem:
//
//   - each distinct failure a run recorded (a step whose check failed, a
//     broken invariant), once, with the modes that hit it:
//       step 4 (expect): expected request r (28 bytes) but the client sent
//       only 0 more bytes:   [modes: feed-whole, feed-bytes, ...]
//   - a log that differs from the first mode's, naming the first differing
//     line and printing both logs:
//       log of recv-bytes differs from feed-whole at line 3: "..." vs "..."
//   - status messages that differ (same format, "messages of ...");
//   - each named output (bytes sent, a buffer) that differs, with the first
//     differing byte:
//       client bytes of feed-random-2 differ from feed-whole at byte 40
//       (0x01 vs 0x00; 64 vs 64 bytes)
#ifndef NBD_PROTOCOL_TESTING_RUN_COMPARE_H_
#define NBD_PROTOCOL_TESTING_RUN_COMPARE_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "protocol/wire.h"

namespace nbd::testing {

struct RunSummary {
  std::string mode;
  std::vector<std::string> log;
  std::vector<std::string> messages;
  std::vector<std::string> failures;
  // Results every mode must reproduce byte for byte, by name ("client
  // bytes", "buffer r", ...).
  std::map<std::string, Bytes> outputs;
};

// Reports, as described above, every failure and every difference from
// runs[0]. Returns false if it reported anything. `runs` must not be empty.
bool ReportRuns(const std::vector<RunSummary>& runs);

// Lines of `log` that start with `prefix`.
std::vector<std::string> LinesStartingWith(const std::vector<std::string>& log,
                                           std::string_view prefix);

// Matches a log that contains `lines` in this order (not necessarily
// adjacent), e.g.
//   EXPECT_THAT(r.log, ContainsInOrder(std::vector<std::string>{"a", "b"}));
MATCHER_P(ContainsInOrder, lines, "contains these lines in order") {
  size_t next = 0;
  for (const std::string& line : arg) {
    if (next < lines.size() && line == lines[next]) ++next;
  }
  if (next == lines.size()) return true;
  *result_listener << "missing \"" << lines[next] << "\" (in order)";
  return false;
}

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_RUN_COMPARE_H_
