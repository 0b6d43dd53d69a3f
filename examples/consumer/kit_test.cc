// Protocol edge cases tested from outside the engine with its public test
// kits (@nbd_engine//protocol/testing, docs/testing.md): a scripted server
// for the client core and a scripted client for the server core, each
// scenario replayed under every input split and both input paths.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/constants.h"
#include "protocol/testing/client_handshake.h"
#include "protocol/testing/client_runner.h"
#include "protocol/testing/client_script.h"
#include "protocol/testing/server_handshake.h"
#include "protocol/testing/server_runner.h"
#include "protocol/testing/server_script.h"

namespace {

using ::nbd::Command;
using ::nbd::NbdError;
using ::nbd::testing::CapableExport;
using ::nbd::testing::ClientBytes;
using ::nbd::testing::ClientSends;
using ::nbd::testing::ConnectedScenario;
using ::nbd::testing::NegotiatedScenario;
using ::nbd::testing::RunAllModes;
using ::nbd::testing::RunResult;
using ::nbd::testing::Scenario;
using ::nbd::testing::Server;
using ::nbd::testing::ServerRunResult;
using ::nbd::testing::ServerScenario;
using ::nbd::testing::ServerSends;
using ::nbd::testing::ServingOnly;
using ::testing::ElementsAre;

TEST(KitEdgeCase, ReadAnsweredWithAStructuredErrorChunk) {
  Scenario s = ConnectedScenario();
  s.IssueRead("r", 0, 512)
      .Expect(ClientSends().Req("r", Command::kRead, 0, 0, 512).Nothing())
      .Send(Server().ChunkError("r", NbdError::kIo, "bad sector"));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue r -> cookie=1", "CommandCompleted cookie=1 READ EIO"));
}

TEST(KitEdgeCase, UnknownCommandIsRefusedByTheServer) {
  ServerScenario s = NegotiatedScenario(ServingOnly(CapableExport("", 4096)));
  s.Send(ClientBytes().Req("odd", static_cast<Command>(42), 0, 0))
      .Expect(ServerSends().Simple("odd", NbdError::kInval).Nothing());
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(), ElementsAre());
}

}  // namespace
