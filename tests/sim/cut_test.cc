// The simulation's oracle at every point of every message: a fixed
// scenario (sim.h, CutScenario) is run once whole, then again with either
// stream cut, by EOF and by a transport error, at every offset of every
// message header and at the first, middle and last bytes of every payload
// (payload bytes in between are all alike to the receivers), in each
// header mode. Each run must end as the wire says: closed at a boundary,
// dead inside a message or on an error, every command completed once.
#include <algorithm>
#include <cstdint>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/sim/sim.h"

namespace nbd::sim {
namespace {

struct Mode {
  const char* name;
  bool structured;
  bool extended;
};
void PrintTo(const Mode& m, std::ostream* os) { *os << m.name; }

// Cut points: every byte of the first 40 of each message, and the first,
// middle and last bytes of the rest, plus the very end.
std::set<uint64_t> CutPoints(const std::vector<uint64_t>& ends, uint64_t size) {
  std::set<uint64_t> points;
  uint64_t start = 0;
  for (uint64_t end : ends) {
    for (uint64_t o = start; o <= std::min(end, start + 40); ++o) {
      points.insert(o);
    }
    points.insert((start + end) / 2);
    if (end > 0) points.insert(end - 1);
    points.insert(end);
    start = end;
  }
  points.insert(size);
  return points;
}

class CutTest : public ::testing::TestWithParam<Mode> {};

TEST_P(CutTest, EveryPointOfEveryMessage) {
  CutScenario base;
  base.structured = GetParam().structured;
  base.extended = GetParam().extended;
  const SimResult ref = SimulateCut(base);
  ASSERT_TRUE(ref.ok) << ref.failure;
  ASSERT_GT(ref.commands, 5u);
  EXPECT_EQ(ref.completed_ok + ref.completed_error, ref.commands);
  size_t runs = 0;
  for (Stream stream : {Stream::kClientToServer, Stream::kServerToClient}) {
    const bool c2s = stream == Stream::kClientToServer;
    const std::set<uint64_t> points =
        CutPoints(c2s ? ref.c2s_message_ends : ref.s2c_message_ends,
                  c2s ? ref.bytes_c2s : ref.bytes_s2c);
    for (uint64_t offset : points) {
      for (bool error : {false, true}) {
        CutScenario s = base;
        s.cut = stream;
        s.offset = offset;
        s.transport_error = error;
        const SimResult r = SimulateCut(s);
        ++runs;
        ASSERT_TRUE(r.ok) << (c2s ? "client-to-server" : "server-to-client")
                          << " stream cut at " << offset << " by "
                          << (error ? "a transport error" : "EOF") << ": "
                          << r.failure;
      }
    }
  }
  EXPECT_GT(runs, 200u);
}

INSTANTIATE_TEST_SUITE_P(Modes, CutTest,
                         ::testing::Values(Mode{"extended", true, true},
                                           Mode{"structured", true, false},
                                           Mode{"simple", false, false}),
                         [](const auto& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace nbd::sim
