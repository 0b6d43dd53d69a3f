#include "tools/nbd/extents.h"

#include <cinttypes>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "protocol/constants.h"
#include "tools/nbd/json.h"

namespace nbd::tool {

void AppendExtents(uint64_t offset, const std::vector<Extent>& extents,
                   std::vector<MappedExtent>* map) {
  for (const Extent& e : extents) {
    if (e.length == 0) continue;
    const auto type = static_cast<uint32_t>(e.flags);
    if (!map->empty() && map->back().type == type &&
        map->back().offset + map->back().length == offset) {
      map->back().length += e.length;
    } else {
      map->push_back({offset, e.length, type});
    }
    offset += e.length;
  }
}

std::string ExtentDescription(uint32_t type) {
  std::string out;
  const bool hole = (type & kStateHole) != 0;
  const bool zero = (type & kStateZero) != 0;
  if (!hole && !zero) out = "data";
  if (hole) out = "hole";
  if (zero) out = hole ? "hole,zero" : "zero";
  const uint32_t other = type & ~(kStateHole | kStateZero);
  if (other != 0) absl::StrAppend(&out, out.empty() ? "" : ",", other);
  return out;
}

std::string FormatExtentLine(const MappedExtent& e) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%10" PRIu64 "  %10" PRIu64 "  %3" PRIu32,
                e.offset, e.length, e.type);
  return absl::StrCat(buf, "  ", ExtentDescription(e.type));
}

std::string FormatExtentsJson(const std::vector<MappedExtent>& map) {
  std::string out = "[\n";
  for (size_t i = 0; i < map.size(); ++i) {
    const MappedExtent& e = map[i];
    absl::StrAppend(
        &out, "{ \"offset\": ", e.offset, ", \"length\": ", e.length,
        ", \"type\": ", e.type,
        ", \"description\": ", JsonString(ExtentDescription(e.type)), "}",
        i + 1 < map.size() ? "," : "", "\n");
  }
  out += "]\n";
  return out;
}

}  // namespace nbd::tool
