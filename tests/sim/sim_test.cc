// Runs the simulation (tests/sim/sim.h) over a fixed range of seeds, one
// test case per seed. A failure prints the command that replays it.
#include "tests/sim/sim.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace nbd::sim {
namespace {

// Fewer seeds under the sanitizers, which slow the simulation down ~10x.
#if defined(__SANITIZE_ADDRESS__) || defined(NBD_SIM_FEW_SEEDS)
constexpr uint64_t kSeeds = 100;
#else
constexpr uint64_t kSeeds = 300;
#endif

class SimTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(SimTest, Seed) {
  SimOptions o;
  o.seed = GetParam();
  const SimResult r = Simulate(o);
  EXPECT_TRUE(r.ok) << r.failure << "\nreproduce: " << ReproCommand(o.seed);
}

INSTANTIATE_TEST_SUITE_P(Seeds, SimTest,
                         ::testing::Range<uint64_t>(1, kSeeds + 1));

}  // namespace
}  // namespace nbd::sim
