// ClientOptions::trace: the protocol trace is a stream of ClientTrace events,
// the same however the input is split, and absent unless asked for.
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/testing/client_handshake.h"
#include "protocol/testing/client_runner.h"
#include "protocol/testing/client_script.h"

namespace nbd::testing {
namespace {

using ::testing::Contains;
using ::testing::IsSupersetOf;
using ::testing::Not;
using ::testing::StartsWith;

std::vector<std::string> TraceLines(const RunResult& r) {
  std::vector<std::string> out;
  for (const std::string& line : r.log) {
    if (line.rfind("Trace ", 0) == 0) out.push_back(line.substr(6));
  }
  return out;
}

Scenario ReadThenDisconnect(ClientOptions o, HandshakeSpec spec) {
  Scenario s = ConnectedScenario(o, spec);
  s.Issue("r",
          [](Client& c, RunContext& ctx) {
            return c.Read(4096, absl::MakeSpan(ctx.Buffer("r", 1024)));
          })
      .Expect(ClientSends().Req("r", Command::kRead, 0, 4096, 1024).Nothing())
      .Send(Server()
                .ChunkData("r", 4096, Pattern(512, 1))
                .ChunkHole("r", 4096 + 512, 512, true))
      .Call("Disconnect", [](Client& c, RunContext&) { return c.Disconnect(); })
      .Expect(ClientSends().SkipAll())
      .Eof()
      .Snapshot();
  return s;
}

TEST(ClientTrace, EveryMessageBothWays) {
  ClientOptions o;
  o.trace = true;
  o.export_name = "disk";
  HandshakeSpec spec;
  spec.block_size = InfoBlockSize{512, 4096, 1 << 25};
  spec.canonical_name = "disk";
  RunResult r = RunAllModes(ReadThenDisconnect(o, spec));
  std::vector<std::string> trace = TraceLines(r);
  EXPECT_THAT(
      trace,
      IsSupersetOf(std::vector<std::string>{
          "<- newstyle-fixed greeting: handshake flags 0x3",
          "-> client flags 0x3",
          "-> NBD_OPT_EXTENDED_HEADERS",
          "<- NBD_REP_ERR_UNSUP to NBD_OPT_EXTENDED_HEADERS, 0 bytes",
          "-> NBD_OPT_STRUCTURED_REPLY",
          "<- NBD_REP_ACK to NBD_OPT_STRUCTURED_REPLY, 0 bytes",
          "-> NBD_OPT_SET_META_CONTEXT export=\"disk\" "
          "queries=[\"base:allocation\"]",
          "   context id=1 \"base:allocation\"",
          "-> NBD_OPT_GO export=\"disk\" "
          "info=[NBD_INFO_BLOCK_SIZE,NBD_INFO_NAME,NBD_INFO_DESCRIPTION]",
          "   NBD_INFO_EXPORT size=1048576 flags=0x" +
              absl::StrFormat("%x", kAllCommandFlags),
          "   NBD_INFO_BLOCK_SIZE minimum=512 preferred=4096 "
          "maximum=33554432",
          "   NBD_INFO_NAME \"disk\"",
          "-> NBD_CMD_READ cookie=1 offset=4096 length=1024 flags=0x0",
          "<- NBD_REPLY_TYPE_OFFSET_DATA cookie=1 flags=0x0 length=520",
          "<- NBD_REPLY_TYPE_OFFSET_HOLE cookie=1 flags=0x1 length=12 (done)",
          "-> NBD_CMD_DISC cookie=2 offset=0 length=0 flags=0x0",
          "NBD_CMD_DISC sent: shut down the write side",
          "closed: the server ended the connection cleanly",
      }));
  EXPECT_THAT(trace, Contains(StartsWith("transmission: size=1048576")));
  // Nothing follows the final event.
  ASSERT_GE(r.log.size(), 2u);
  EXPECT_EQ(r.log[r.log.size() - 2], "Closed");
}

TEST(ClientTrace, DeathIsTracedBeforeTheDeadEvent) {
  ClientOptions o;
  o.trace = true;
  Scenario s = ConnectedScenario(o);
  s.Send(Server().Raw(Bytes(16, 0))).Snapshot();
  RunResult r = RunAllModes(s);
  std::vector<std::string> trace = TraceLines(r);
  ASSERT_FALSE(trace.empty());
  EXPECT_THAT(trace.back(), StartsWith("dead: invalid or unexpected reply"));
  EXPECT_EQ(r.log[r.log.size() - 2], "Dead EPROTO");
}

TEST(ClientTrace, OffByDefault) {
  RunResult r = RunAllModes(ReadThenDisconnect({}, {}));
  EXPECT_THAT(r.log, Not(Contains(StartsWith("Trace "))));
  EXPECT_THAT(r.log, Contains("Closed"));
}

}  // namespace
}  // namespace nbd::testing
