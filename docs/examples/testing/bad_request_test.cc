// docs/testing.md, server kit: a client sends a READ beyond the end of the
// export. The session refuses it itself (the embedder never sees it) and
// the next request is read from the right byte.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/constants.h"
#include "protocol/testing/server_handshake.h"
#include "protocol/testing/server_runner.h"
#include "protocol/testing/server_script.h"
#include "protocol/testing/text.h"

namespace {

using ::nbd::Command;
using ::nbd::NbdError;
using ::nbd::testing::CapableExport;
using ::nbd::testing::ClientBytes;
using ::nbd::testing::NegotiatedScenario;
using ::nbd::testing::Pattern;
using ::nbd::testing::RunAllModes;
using ::nbd::testing::ServerRunResult;
using ::nbd::testing::ServerScenario;
using ::nbd::testing::ServerSends;
using ::nbd::testing::ServingOnly;
using ::testing::ElementsAre;

// [START bad_request]
TEST(ServerEdgeCase, ReadBeyondTheEndIsRefusedAndTheStreamStaysInSync) {
  ServerScenario s = NegotiatedScenario(ServingOnly(CapableExport("", 4096)));
  s.Send(ClientBytes().Req("bad", Command::kRead, /*offset=*/4000, 512))
      .Expect(ServerSends().ChunkError("bad", NbdError::kInval).Nothing())
      .Send(ClientBytes().Req("good", Command::kRead, 0, 512))
      .ReplyRead("good", Pattern(512))
      .Expect(ServerSends().ChunkData("good", 0, Pattern(512), true).Nothing());
  ServerRunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterTransmissionStarted(),
              ElementsAre("Request good READ offset=0 length=512",
                          "reply good read -> ok"));
}
// [END bad_request]

}  // namespace
