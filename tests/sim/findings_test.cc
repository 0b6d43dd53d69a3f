// One regression test per bug the simulation (sim.h) found in the cores,
// each built on InMemoryPair so it needs nothing but the two cores, and
// each naming the seed that found it.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "adapters/testing/in_memory_pair.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/client/options.h"
#include "protocol/constants.h"
#include "protocol/endian.h"
#include "protocol/server/server.h"

namespace nbd {
namespace {

// Seed 2: with extended headers the client sent WRITE without
// NBD_CMD_FLAG_PAYLOAD_LEN, which the spec requires on every extended
// WRITE (a server may then treat the payload as the next requests).
TEST(SimFindings, ExtendedWriteCarriesPayloadLen) {
  InMemoryPair pair;  // extended headers by default
  std::vector<uint8_t> c2s;
  pair.set_tap([&c2s](Stream s, absl::Span<const uint8_t> bytes) {
    if (s == Stream::kClientToServer) {
      c2s.insert(c2s.end(), bytes.begin(), bytes.end());
    }
  });
  ASSERT_TRUE(pair.RunUntilQuiet());
  ASSERT_TRUE(pair.client().extended_headers());
  const size_t start = c2s.size();
  const std::vector<uint8_t> data(100, 7);
  ASSERT_TRUE(pair.Wait(pair.client().Write(0, data)).ok());
  ASSERT_GE(c2s.size(), start + kExtendedRequestSize + data.size());
  const uint8_t* h = c2s.data() + start;
  ASSERT_EQ(LoadBe32(h), kExtendedRequestMagic);
  EXPECT_EQ(LoadBe16(h + 6), static_cast<uint16_t>(Command::kWrite));
  EXPECT_TRUE(LoadBe16(h + 4) & kCmdFlagPayloadLen);
  EXPECT_EQ(LoadBe64(h + 24), data.size());
}

// Option mode: a pair whose client is parked after the automatic options,
// with base:allocation not asked for automatically.
class OptionModePair : public ::testing::Test {
 protected:
  OptionModePair() : pair_(Options()) {}
  static ClientOptions Options() {
    ClientOptions o;
    o.export_name = "disk";
    o.option_mode = true;
    o.request_base_allocation = false;
    return o;
  }
  // Runs one option call to completion; returns its status.
  absl::Status Opt(absl::Status call) {
    if (!call.ok()) return call;
    pair_.RunUntilQuiet();
    const auto done = pair_.ClientEventsOf<OptionCompleted>();
    if (done.size() <= seen_) return absl::InternalError("no completion");
    return done[seen_++].status;
  }
  InMemoryPair pair_;
  size_t seen_ = 0;
};

// Found by the simulation (option mode): after SET_META_CONTEXT for "disk"
// and GO for "", the default export (the same one), the server kept
// base:allocation while the client, which had switched names, had none:
// the two sides disagreed on what was negotiated. The spec allows
// BLOCK_STATUS only when GO names the export SET_META_CONTEXT named; like
// nbdkit the server now compares the names.
TEST_F(OptionModePair, MetaContextOfAnotherNameIsDiscarded) {
  ASSERT_TRUE(pair_.RunUntilQuiet());
  ASSERT_EQ(pair_.client().phase(), ClientPhase::kNegotiating);
  ASSERT_TRUE(Opt(pair_.client().OptSetMetaContext({"base:allocation"})).ok());
  ASSERT_TRUE(pair_.client().SetExportName("").ok());  // the default: "disk"
  ASSERT_TRUE(Opt(pair_.client().OptGo()).ok());
  ASSERT_EQ(pair_.client().phase(), ClientPhase::kReady);
  EXPECT_FALSE(pair_.client().can_block_status());
  EXPECT_FALSE(pair_.server().block_status_negotiated());
}

// Found with the one above: SetExportName() with the name already in use
// forgot the contexts just selected, so the client believed no
// base:allocation while the server had it. libnbd makes it a no-op.
TEST_F(OptionModePair, SameExportNameKeepsWhatWasNegotiated) {
  ASSERT_TRUE(pair_.RunUntilQuiet());
  ASSERT_TRUE(Opt(pair_.client().OptSetMetaContext({"base:allocation"})).ok());
  ASSERT_TRUE(pair_.client().SetExportName("disk").ok());
  ASSERT_TRUE(Opt(pair_.client().OptGo()).ok());
  ASSERT_EQ(pair_.client().phase(), ClientPhase::kReady);
  EXPECT_TRUE(pair_.client().can_block_status());
  EXPECT_TRUE(pair_.server().block_status_negotiated());
  EXPECT_TRUE(pair_.Wait(pair_.client().BlockStatus(0, 4096)).ok());
}

}  // namespace
}  // namespace nbd
