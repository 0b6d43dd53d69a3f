// An edge case tested from outside the engine, with nothing but the public
// client core: no socket, no server process. The "server" is bytes built
// with the public wire encoders.
#include <cerrno>
#include <vector>

#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/status.h"
#include "protocol/wire.h"

TEST(EdgeCase, ReadAnsweredWithEioFailsOnlyThatRead) {
  nbd::Client client({});
  ASSERT_TRUE(client
                  .Feed(nbd::EncodeOldstyleGreeting(
                      {.export_size = 4096,
                       .transmission_flags = nbd::kTransmitHasFlags}))
                  .ok());
  ASSERT_EQ(client.PollEvent(), nbd::ClientEvent(nbd::Connected{}));
  std::vector<uint8_t> buffer(512);
  auto cookie = client.Read(0, absl::MakeSpan(buffer), {.tag = 7});
  ASSERT_TRUE(cookie.ok());
  // The request "went out": a reply may only answer a request that was sent.
  ASSERT_TRUE(client.ConsumeOutput(client.pending_output_bytes()).ok());
  ASSERT_TRUE(
      client.Feed(nbd::EncodeSimpleReply({.error = 5, .cookie = *cookie}))
          .ok());
  auto done = std::get<nbd::CommandCompleted>(*client.PollEvent());
  EXPECT_EQ(done.tag, 7u);
  EXPECT_EQ(nbd::StatusErrno(done.status), EIO);
  EXPECT_EQ(client.phase(), nbd::ClientPhase::kReady);
}
