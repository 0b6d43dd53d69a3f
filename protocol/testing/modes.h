// The ways a kit runner replays one scenario (client_runner.h,
// server_runner.h).
//
// A sans-IO core promises the same result for any split of its input and
// for either input path, so every scenario is run once per Mode and the runs
// are compared (run_compare.h). The modes differ only in how bytes move:
//
//   input   kFeed:     the copying path, Feed(bytes) -> bytes consumed;
//           kZeroCopy: RecvBuffer(), copy into it, CommitRecv(n).
//   split   kWhole:    as much as the core takes at once (one Feed() per
//                      step, or the whole RecvBuffer());
//           kOneByte:  one byte per call;
//           kRandom:   sizes drawn from a std::mt19937 seeded with `seed`:
//                      a quarter of the pieces are one byte, the others
//                      uniform in [1, available].
// Output is drained with the same split (whole, 1-byte or random pieces of
// what PeekOutput() offers). The seeds are fixed, so a run is reproducible:
// no clock, no random device.
#ifndef NBD_PROTOCOL_TESTING_MODES_H_
#define NBD_PROTOCOL_TESTING_MODES_H_

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace nbd::testing {

struct Mode {
  enum class Input { kFeed, kZeroCopy };
  enum class Split { kWhole, kOneByte, kRandom };
  std::string name;  // e.g. "feed-random-2", named in failure messages
  Input input = Input::kFeed;
  Split split = Split::kWhole;
  uint32_t seed = 0;
};

// The nine modes every RunAllModes() uses, in this order: feed-whole,
// feed-bytes, feed-random-1..3, recv-max, recv-bytes, recv-random-4..5. The
// first is the reference the others are compared with and whose result the
// test gets.
std::vector<Mode> AllModes();

// Piece sizes for one run of `mode`.
class Splitter {
 public:
  explicit Splitter(const Mode& mode);
  // A piece size in [1, available]; `available` must be at least 1.
  size_t Piece(size_t available);

 private:
  Mode::Split split_;
  std::mt19937 rng_;
};

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_MODES_H_
