#include "protocol/testing/modes.h"

namespace nbd::testing {

std::vector<Mode> AllModes() {
  using In = Mode::Input;
  using Split = Mode::Split;
  return {
      {"feed-whole", In::kFeed, Split::kWhole, 0},
      {"feed-bytes", In::kFeed, Split::kOneByte, 11},
      {"feed-random-1", In::kFeed, Split::kRandom, 1},
      {"feed-random-2", In::kFeed, Split::kRandom, 2},
      {"feed-random-3", In::kFeed, Split::kRandom, 3},
      {"recv-max", In::kZeroCopy, Split::kWhole, 0},
      {"recv-bytes", In::kZeroCopy, Split::kOneByte, 12},
      {"recv-random-4", In::kZeroCopy, Split::kRandom, 4},
      {"recv-random-5", In::kZeroCopy, Split::kRandom, 5},
  };
}

Splitter::Splitter(const Mode& mode) : split_(mode.split), rng_(mode.seed) {}

size_t Splitter::Piece(size_t available) {
  switch (split_) {
    case Mode::Split::kWhole:
      return available;
    case Mode::Split::kOneByte:
      return 1;
    case Mode::Split::kRandom:
      if (rng_() % 4 == 0) return 1;
      return 1 + rng_() % available;
  }
  return available;
}

}  // namespace nbd::testing
