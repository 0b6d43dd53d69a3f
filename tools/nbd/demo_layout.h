// The data `nbd demo` writes, copies, maps and verifies: a few data
// regions in an otherwise empty export, filled with a pattern that depends
// on the offset and a per-adapter seed (so a stale copy cannot pass).
#ifndef NBD_TOOLS_NBD_DEMO_LAYOUT_H_
#define NBD_TOOLS_NBD_DEMO_LAYOUT_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/types/span.h"
#include "tools/nbd/extents.h"

namespace nbd::tool {

// Export sizes the demo accepts are multiples of this (regions then stay
// aligned to the memory backend's 64 KiB pages, so the map is exact).
inline constexpr uint64_t kDemoSizeUnit = uint64_t{2} << 20;

struct DemoRegion {
  uint64_t offset = 0;
  uint64_t length = 0;
};

class DemoLayout {
 public:
  // `size` is a non-zero multiple of kDemoSizeUnit. Keeps the expected
  // image (`size` bytes) in memory.
  DemoLayout(uint64_t size, uint8_t seed);

  uint64_t size() const { return size_; }
  const std::vector<DemoRegion>& regions() const { return regions_; }
  uint64_t data_bytes() const;

  // The expected byte at `offset` (0 outside the regions).
  uint8_t ByteAt(uint64_t offset) const;
  // Fills `out` with the pattern for [offset, offset + out.size()).
  void Fill(uint64_t offset, absl::Span<uint8_t> out) const;
  // The first offset in [offset, offset + data.size()) whose byte differs
  // from the expected one.
  std::optional<uint64_t> FirstMismatch(uint64_t offset,
                                        absl::Span<const uint8_t> data) const;

  // The base:allocation map a sparse server should report: data (0) for
  // the regions, hole,zero (3) elsewhere.
  std::vector<MappedExtent> ExpectedMap() const;
  // Whether `map` tiles the export and marks no byte of a region as zero.
  bool Consistent(const std::vector<MappedExtent>& map) const;

 private:
  bool InRegion(uint64_t offset) const;

  uint8_t Compute(uint64_t offset) const;

  uint64_t size_;
  uint8_t seed_;
  std::vector<DemoRegion> regions_;
  std::vector<uint8_t> image_;  // the whole expected export
};

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_DEMO_LAYOUT_H_
