// The blocking adapter's event observer: it sees every event in order,
// including the protocol trace the tool prints for --debug.
#include <string>
#include <vector>

#include "adapters/blocking/blocking_client.h"
#include "adapters/connect/connect.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/client/events.h"
#include "tests/testing/servers.h"

namespace nbd::test {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(BlockingTrace, ObserverSeesTheWholeConversation) {
  if (!HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto fd = adapters::ConnectUnix((*server)->socket_path());
  ASSERT_TRUE(fd.ok()) << fd.status();
  std::vector<std::string> trace;
  int completions = 0;
  ClientOptions options;
  options.trace = true;
  auto client = adapters::BlockingClient::Connect(
      *fd, options, absl::Seconds(10), nullptr, [&](const ClientEvent& e) {
        if (auto* t = std::get_if<ClientTrace>(&e)) trace.push_back(t->message);
        if (std::holds_alternative<CommandCompleted>(e)) ++completions;
      });
  ASSERT_TRUE(client.ok()) << client.status();
  std::vector<uint8_t> buf(4096);
  ASSERT_TRUE((*client)->Pread(absl::MakeSpan(buf), 4096).ok());
  ASSERT_TRUE((*client)->Shutdown().ok());

  EXPECT_THAT(trace, Contains(StartsWith("-> NBD_OPT_GO")));
  EXPECT_THAT(trace, Contains(StartsWith("   NBD_INFO_EXPORT size=1048576")));
  EXPECT_THAT(trace, Contains(StartsWith("transmission: size=1048576")));
  EXPECT_THAT(trace,
              Contains("-> NBD_CMD_READ cookie=1 offset=4096 length=4096 "
                       "flags=0x0"));
  EXPECT_THAT(trace, Contains(AllOf(StartsWith("<- NBD_REPLY_TYPE_"),
                                    HasSubstr("cookie=1"))));
  EXPECT_THAT(trace, Contains(StartsWith("-> NBD_CMD_DISC")));
  ASSERT_FALSE(trace.empty());
  EXPECT_EQ(trace.back(), "closed: the server ended the connection cleanly");
  EXPECT_EQ(completions, 1);
}

}  // namespace
}  // namespace nbd::test
