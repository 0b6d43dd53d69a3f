#include "tests/sim/sim.h"

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "protocol/status.h"
#include "tests/sim/simulation.h"

namespace nbd::sim {
namespace internal {

// The errno a client sees for a backend errno, as the spec and the server
// map it: the NBD error values pass, EROFS is EPERM, EFBIG is ENOSPC,
// anything else EINVAL.
int WireErrno(int e) {
  switch (e) {
    case EPERM:
    case EIO:
    case ENOMEM:
    case EINVAL:
    case ENOSPC:
    case EOVERFLOW:
    case ENOTSUP:
    case ESHUTDOWN:
      return e;
    case EROFS:
      return EPERM;
    case EFBIG:
      return ENOSPC;
    default:
      return EINVAL;
  }
}

bool Ended(const Client& c) {
  return c.phase() == ClientPhase::kClosed || c.phase() == ClientPhase::kDead;
}
bool Ended(const ServerSession& s) {
  return s.phase() == ServerPhase::kClosed || s.phase() == ServerPhase::kDead;
}

// Byte loops are slow in the unoptimized default build; these are not.
bool AllZero(const uint8_t* p, size_t n) {
  return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}
bool SameBytes(const uint8_t* a, const uint8_t* b, size_t n) {
  return n == 0 || std::memcmp(a, b, n) == 0;
}

std::string Str(const absl::Status& s) {
  if (s.ok()) return "OK";
  return absl::StrCat("errno ", StatusErrno(s), " (", s.message(), ")");
}

}  // namespace internal

SimResult Simulate(const SimOptions& options) {
  return internal::Simulation(options, std::nullopt).Run();
}

SimResult SimulateCut(const CutScenario& scenario, const SimOptions& options) {
  return internal::Simulation(options, scenario).Run();
}

std::string ReproCommand(uint64_t seed) {
  return absl::StrCat("bazel run //tests/sim:sim -- --seed=", seed,
                      " --verbose");
}

}  // namespace nbd::sim
