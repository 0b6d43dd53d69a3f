// The client kit (protocol/testing/client_*.h): the steps added for the
// public kit, and the failures it reports when a check does not match.
#include <cerrno>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/testing/client_handshake.h"
#include "protocol/testing/client_runner.h"
#include "protocol/testing/client_script.h"

namespace nbd::testing {
namespace {

using ::testing::ElementsAre;

Scenario& IssueRead(Scenario& s, const std::string& label) {
  return s.Issue(label, [label](Client& c, RunContext& ctx) {
    return c.Read(0, absl::MakeSpan(ctx.Buffer(label, 512)));
  });
}

TEST(ClientKit, UntilGoLeavesTheGoUnanswered) {
  Scenario s = ScenarioUntilGo();
  s.Snapshot();
  EXPECT_THAT(RunAllModes(s).log, ElementsAre("phase=connecting in_flight=0"));
}

TEST(ClientKit, TransportErrorKillsTheClientAndFailsItsCommands) {
  Scenario s = ConnectedScenario();
  IssueRead(s, "r").TransportError(absl::UnavailableError("link down"));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue r -> cookie=1",
                  "CommandCompleted cookie=1 READ ENOTCONN", "Dead EIO"));
}

TEST(ClientKitFailures, AMissingRequestNamesTheStep) {
  Scenario s = ConnectedScenario();
  s.Expect(ClientSends().Req("r", Command::kRead, 0, 0, 512));
  EXPECT_NONFATAL_FAILURE(RunAllModes(s),
                          "(expect): expected request r (28 bytes) but the "
                          "client sent only 0 more bytes");
}

TEST(ClientKitFailures, AWrongRequestShowsBothSides) {
  Scenario s = ConnectedScenario();
  IssueRead(s, "r").Expect(ClientSends().Req("r", Command::kRead, 0, 0, 4096));
  EXPECT_NONFATAL_FAILURE(
      RunAllModes(s),
      "request r: expected type 0 flags 0x0 offset 0 length 4096, got type 0 "
      "flags 0x0 offset 0 length 512");
}

TEST(ClientKitFailures, EveryModeThatFailsIsNamed) {
  Scenario s = ConnectedScenario();
  s.Expect(ClientSends().Flags(0));
  EXPECT_NONFATAL_FAILURE(
      RunAllModes(s),
      "[modes: feed-whole, feed-bytes, feed-random-1, feed-random-2, "
      "feed-random-3, recv-max, recv-bytes, recv-random-4, recv-random-5]");
}

}  // namespace
}  // namespace nbd::testing
