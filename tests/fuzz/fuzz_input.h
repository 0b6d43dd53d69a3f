// Shared by the fuzz targets in tests/fuzz: the input reader and the
// invariant checks. A fuzz input is read front to back as a script; reads
// past its end return zeros, so every byte string is a valid input.
#ifndef NBD_TESTS_FUZZ_FUZZ_INPUT_H_
#define NBD_TESTS_FUZZ_FUZZ_INPUT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/types/span.h"

namespace nbd::fuzz {

// Prints where an invariant broke and aborts, which libFuzzer (and the
// corpus replay test) reports as a crash with the input that caused it.
[[noreturn]] inline void Violation(const char* file, int line,
                                   const char* what) {
  std::fprintf(stderr, "fuzzer: invariant violated at %s:%d: %s\n", file, line,
               what);
  std::fflush(stderr);
  std::abort();
}

#define NBD_FUZZ_CHECK(cond)                                        \
  do {                                                              \
    if (!(cond)) ::nbd::fuzz::Violation(__FILE__, __LINE__, #cond); \
  } while (false)

#define NBD_FUZZ_CHECK_MSG(cond, msg)                               \
  do {                                                              \
    if (!(cond)) ::nbd::fuzz::Violation(__FILE__, __LINE__, (msg)); \
  } while (false)

// Big-endian reader over the fuzz input.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return pos_ >= size_; }
  size_t remaining() const { return size_ - std::min(pos_, size_); }

  uint8_t U8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t U16() {
    uint16_t hi = U8();
    return static_cast<uint16_t>((hi << 8) | U8());
  }
  uint32_t U32() {
    uint32_t hi = U16();
    return (hi << 16) | U16();
  }
  uint64_t U64() {
    uint64_t hi = U32();
    return (hi << 32) | U32();
  }
  // Up to n bytes (fewer at the end of the input).
  absl::Span<const uint8_t> Bytes(size_t n) {
    n = std::min(n, remaining());
    absl::Span<const uint8_t> out(data_ + std::min(pos_, size_), n);
    pos_ += n;
    return out;
  }
  std::string String(size_t n) {
    absl::Span<const uint8_t> b = Bytes(n);
    return std::string(b.begin(), b.end());
  }
  // Everything not read yet.
  absl::Span<const uint8_t> Rest() { return Bytes(remaining()); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// FNV-1a, to notice that a buffer changed.
inline uint32_t Checksum(const uint8_t* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 16777619u;
  return h;
}

}  // namespace nbd::fuzz

#endif  // NBD_TESTS_FUZZ_FUZZ_INPUT_H_
