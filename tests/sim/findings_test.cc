// One regression test per bug the simulation (sim.h) found in the cores,
// each built on InMemoryPair so it needs nothing but the two cores, and
// each naming the seed that found it.
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "adapters/testing/in_memory_pair.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/endian.h"

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

}  // namespace
}  // namespace nbd
