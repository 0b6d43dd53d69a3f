// One walk over everything a server advertises, shared by the interop tests
// of every server: each command its transmission flags allow, with each
// flag that applies to it, checking results and data.
#ifndef NBD_TESTS_ADAPTERS_INTEROP_EVERY_COMMAND_H_
#define NBD_TESTS_ADAPTERS_INTEROP_EVERY_COMMAND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "tests/adapters/interop/harness.h"

namespace nbd::test {

// The first MiB of the export is scratch space (the export must be at least
// that big and is overwritten there unless read-only). Issues, per what
// h.client().transmission_flags() advertises:
//   READ (and with DF when structured replies are on), WRITE (and FUA),
//   FLUSH, TRIM (and FUA), WRITE_ZEROES (and FUA, NO_HOLE, FUA|NO_HOLE,
//   FAST_ZERO), CACHE, BLOCK_STATUS (and REQ_ONE).
// Each must succeed (FAST_ZERO may fail with ENOTSUP, as the spec allows);
// written data reads back and zeroed ranges read as zeroes. Failures are
// reported as gtest failures. Returns what was issued ("WRITE+FUA", ...),
// for the test log.
std::vector<std::string> ExerciseEveryAdvertisedCommand(Harness& h,
                                                        absl::Duration timeout);

// Prints the list ExerciseEveryAdvertisedCommand returned, one line.
void PrintWalk(const std::vector<std::string>& walk);

}  // namespace nbd::test

#endif  // NBD_TESTS_ADAPTERS_INTEROP_EVERY_COMMAND_H_
