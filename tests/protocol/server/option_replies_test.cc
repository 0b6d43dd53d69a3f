// The session's option replies, scripted with the server kit
// (//protocol/testing:server_kit): every reply is checked whole, and every
// scenario is replayed under every input split and both input paths.
#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/constants.h"
#include "protocol/server/options.h"
#include "protocol/testing/server_runner.h"
#include "protocol/testing/server_script.h"
#include "tests/protocol/server/test_util.h"

namespace nbd::testing {
namespace {

using ::testing::ElementsAre;

constexpr uint16_t kName = static_cast<uint16_t>(InfoType::kName);
constexpr uint16_t kDescription = static_cast<uint16_t>(InfoType::kDescription);
constexpr uint16_t kBlockSize = static_cast<uint16_t>(InfoType::kBlockSize);

// The greeting is checked, then the client flags go out before `options`.
ServerScenario AfterFlags(const ClientBytes& options,
                          ServerOptions server = test::TestOptions()) {
  ServerScenario s(std::move(server));
  s.Expect(ServerSends().Greeting())
      .Send(ClientBytes().Flags(kClientFlagFixedNewstyle).Then(options));
  return s;
}

// Repeated and unknown info requests are answered once or not at all; the
// block size always comes.
TEST(ServerOptionReplies, GoSendsInfoThenAck) {
  const ExportInfo disk = test::TestOptions().exports[0];
  ServerScenario s(test::TestOptions());
  s.Expect(ServerSends().Greeting())
      .Send(ClientBytes()
                .Flags(kClientFlagFixedNewstyle)
                .OptInfoRequest(Option::kGo, "",
                                {kName, kDescription, kBlockSize, kName, 77}))
      .Expect(ServerSends()
                  .RepInfoExport(Option::kGo, 1 << 20,
                                 TransmissionFlags(disk, false))
                  .RepInfoName(Option::kGo, "disk")
                  .RepInfoDescription(Option::kGo, "scratch disk")
                  .RepInfoBlockSize(Option::kGo, 1, 4096, 256 * 1024)
                  .RepAck(Option::kGo)
                  .Nothing());
  EXPECT_THAT(RunAllModes(s).log,
              ElementsAre("TransmissionStarted export=0 structured=0 "
                          "extended=0"));
}

TEST(ServerOptionReplies, ListNamesEveryExport) {
  ServerScenario s = AfterFlags(ClientBytes().Opt(Option::kList));
  s.Expect(ServerSends()
               .RepServer("disk", "scratch disk")
               .RepServer("ro")
               .RepAck(Option::kList)
               .Nothing());
  EXPECT_THAT(RunAllModes(s).log, ElementsAre());
}

TEST(ServerOptionReplies, ListAndReplyFormatsRefusedByPolicy) {
  ServerOptions o = test::TestOptions();
  o.allow_list = false;
  o.allow_structured_replies = false;
  o.allow_extended_headers = false;
  ServerScenario s = AfterFlags(ClientBytes()
                                    .Opt(Option::kList)
                                    .Opt(Option::kStructuredReply)
                                    .Opt(Option::kExtendedHeaders),
                                o);
  s.Expect(ServerSends()
               .RepError(Option::kList, OptionReplyType::kErrPolicy)
               .RepError(Option::kStructuredReply, OptionReplyType::kErrUnsup)
               .RepError(Option::kExtendedHeaders, OptionReplyType::kErrUnsup)
               .Nothing());
  EXPECT_THAT(RunAllModes(s).log, ElementsAre());
}

TEST(ServerOptionReplies, AbortIsAcknowledgedThenCloses) {
  ServerScenario s = AfterFlags(ClientBytes().Opt(Option::kAbort));
  s.Expect(ServerSends().RepAck(Option::kAbort).Nothing());
  EXPECT_THAT(RunAllModes(s).log, ElementsAre("Closed"));
}

// The whole negotiation a client may pipeline, in one Send: the runner
// replays it whole, byte by byte and in random pieces on both input paths,
// and checks that every replay sends the same bytes.
TEST(ServerOptionReplies, PipelinedNegotiationIsTheSameUnderEverySplit) {
  ServerScenario s(test::TestOptions());
  s.Send(ClientBytes()
             .Flags()
             .Opt(Option::kList)
             .Opt(Option::kStructuredReply)
             .OptMeta(Option::kSetMetaContext, "disk", {kContextBaseAllocation})
             .OptInfoRequest(Option::kGo, "disk", {1, 2, 3}));
  EXPECT_THAT(RunAllModes(s).log,
              ElementsAre("TransmissionStarted export=0 structured=1 "
                          "extended=0"));
}

}  // namespace
}  // namespace nbd::testing
