// docs/testing.md, client kit: a server that answers NBD_OPT_GO with
// NBD_REP_ERR_UNSUP. The client falls back to NBD_OPT_EXPORT_NAME, as
// libnbd does.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/constants.h"
#include "protocol/testing/client_handshake.h"
#include "protocol/testing/client_runner.h"
#include "protocol/testing/client_script.h"

namespace {

using ::nbd::kTransmitHasFlags;
using ::nbd::Option;
using ::nbd::OptionReplyType;
using ::nbd::testing::ClientSends;
using ::nbd::testing::RunAllModes;
using ::nbd::testing::RunResult;
using ::nbd::testing::Scenario;
using ::nbd::testing::ScenarioUntilGo;
using ::nbd::testing::Server;
using ::testing::ElementsAre;

// [START go_unsupported]
TEST(ClientEdgeCase, GoUnsupportedFallsBackToExportName) {
  Scenario s = ScenarioUntilGo();  // every option answered but the GO
  s.Send(Server().RepError(Option::kGo, OptionReplyType::kErrUnsup))
      .Expect(ClientSends().OptExportName("").Nothing())
      .Send(Server().ExportNameReply(1 << 20, kTransmitHasFlags,
                                     /*no_zeroes=*/true))
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.log, ElementsAre("Connected", "phase=ready in_flight=0"));
}
// [END go_unsupported]

}  // namespace
