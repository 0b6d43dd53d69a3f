// docs/testing.md, client kit: a READ answered with a structured error
// chunk. The scripted server is bytes in, the client's events are lines out;
// RunAllModes() replays the scenario under every input split and both input
// paths and fails if any replay differs.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/constants.h"
#include "protocol/testing/client_handshake.h"
#include "protocol/testing/client_runner.h"
#include "protocol/testing/client_script.h"

namespace {

using ::nbd::Command;
using ::nbd::NbdError;
using ::nbd::testing::ClientSends;
using ::nbd::testing::ConnectedScenario;
using ::nbd::testing::RunAllModes;
using ::nbd::testing::RunResult;
using ::nbd::testing::Scenario;
using ::nbd::testing::Server;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// [START read_error_chunk]
TEST(ClientEdgeCase, ReadAnsweredWithAStructuredErrorChunk) {
  Scenario s = ConnectedScenario();  // handshake done: structured replies on
  s.IssueRead("r", /*offset=*/0, /*length=*/512)
      .Expect(ClientSends().Req("r", Command::kRead, 0, 0, 512).Nothing())
      .Send(Server().ChunkError("r", NbdError::kIo, "bad sector"));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue r -> cookie=1", "CommandCompleted cookie=1 READ EIO"));
  EXPECT_THAT(r.MessageOf("CommandCompleted"), HasSubstr("bad sector"));
}
// [END read_error_chunk]

}  // namespace
