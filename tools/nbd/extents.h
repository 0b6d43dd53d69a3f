// base:allocation extents as `nbd map` (and nbdinfo --map) shows them.
#ifndef NBD_TOOLS_NBD_EXTENTS_H_
#define NBD_TOOLS_NBD_EXTENTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "protocol/wire.h"

namespace nbd::tool {

struct MappedExtent {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint32_t type = 0;  // base:allocation flags (hole = 1, zero = 2)
  bool operator==(const MappedExtent&) const = default;
};

// Appends `extents` (consecutive from `offset`) to `map`, merging an extent
// with the previous one when it has the same type and follows it directly.
void AppendExtents(uint64_t offset, const std::vector<Extent>& extents,
                   std::vector<MappedExtent>* map);

// "data", "hole", "zero", "hole,zero" (like nbdinfo).
std::string ExtentDescription(uint32_t type);

// One text line like nbdinfo --map: "%10u  %10u  %3u  description".
std::string FormatExtentLine(const MappedExtent& e);

// A JSON array of {offset,length,type,description} objects, like
// nbdinfo --map --json.
std::string FormatExtentsJson(const std::vector<MappedExtent>& map);

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_EXTENTS_H_
