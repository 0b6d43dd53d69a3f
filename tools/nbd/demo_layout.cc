#include "tools/nbd/demo_layout.h"

#include <algorithm>
#include <cstring>

#include "protocol/constants.h"

namespace nbd::tool {

DemoLayout::DemoLayout(uint64_t size, uint8_t seed) : size_(size), seed_(seed) {
  const uint64_t unit = size / 32;  // a multiple of 64 KiB
  regions_ = {{0, 4 * unit}, {16 * unit, 4 * unit}, {30 * unit, unit}};
  image_.assign(size, 0);
  for (const DemoRegion& r : regions_) {
    for (uint64_t i = r.offset; i < r.offset + r.length; ++i) {
      image_[i] = Compute(i);
    }
  }
}

uint64_t DemoLayout::data_bytes() const {
  uint64_t n = 0;
  for (const DemoRegion& r : regions_) n += r.length;
  return n;
}

bool DemoLayout::InRegion(uint64_t offset) const {
  for (const DemoRegion& r : regions_) {
    if (offset >= r.offset && offset - r.offset < r.length) return true;
  }
  return false;
}

uint8_t DemoLayout::ByteAt(uint64_t offset) const {
  return offset < size_ ? image_[offset] : 0;
}

uint8_t DemoLayout::Compute(uint64_t offset) const {
  if (!InRegion(offset)) return 0;
  // Never zero, so every written page is allocated.
  return static_cast<uint8_t>((offset * 31 + (offset >> 12) * 7 + seed_ * 13) |
                              1);
}

void DemoLayout::Fill(uint64_t offset, absl::Span<uint8_t> out) const {
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = offset + i < size_ ? image_[offset + i] : 0;
  }
}

std::optional<uint64_t> DemoLayout::FirstMismatch(
    uint64_t offset, absl::Span<const uint8_t> data) const {
  if (offset + data.size() <= size_ &&
      std::memcmp(data.data(), image_.data() + offset, data.size()) == 0) {
    return std::nullopt;
  }
  for (size_t i = 0; i < data.size(); ++i) {
    if (data[i] != ByteAt(offset + i)) return offset + i;
  }
  return std::nullopt;
}

std::vector<MappedExtent> DemoLayout::ExpectedMap() const {
  std::vector<MappedExtent> map;
  uint64_t at = 0;
  const uint32_t hole = kStateHole | kStateZero;
  for (const DemoRegion& r : regions_) {
    if (r.offset > at) map.push_back({at, r.offset - at, hole});
    map.push_back({r.offset, r.length, 0});
    at = r.offset + r.length;
  }
  if (at < size_) map.push_back({at, size_ - at, hole});
  return map;
}

bool DemoLayout::Consistent(const std::vector<MappedExtent>& map) const {
  uint64_t at = 0;
  for (const MappedExtent& e : map) {
    if (e.offset != at) return false;
    if ((e.type & kStateZero) != 0) {
      for (const DemoRegion& r : regions_) {
        if (e.offset < r.offset + r.length && r.offset < e.offset + e.length) {
          return false;
        }
      }
    }
    at += e.length;
  }
  return at == size_;
}

}  // namespace nbd::tool
