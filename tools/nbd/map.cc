// `nbd map URI [--json]`: base:allocation extents, like nbdinfo --map.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "adapters/blocking/blocking_client.h"
#include "tools/nbd/args.h"
#include "tools/nbd/command.h"
#include "tools/nbd/connect_blocking.h"
#include "tools/nbd/diag.h"
#include "tools/nbd/extents.h"
#include "tools/nbd/usage.h"

namespace nbd::tool {
namespace {

// Largest range asked for in one NBD_CMD_BLOCK_STATUS.
constexpr uint64_t kMapChunk = uint64_t{1} << 30;

}  // namespace

int MapCommand(const std::vector<std::string>& args, const GlobalOptions& g) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, "map");
  if (!parsed.ok()) {
    return UsageError(parsed.status().message(), UsageFor("map"));
  }
  if (parsed->positional.size() != 1) {
    return UsageError("map: expected one URI", UsageFor("map"));
  }
  const std::string& uri = parsed->positional[0];

  absl::StatusOr<std::unique_ptr<adapters::BlockingClient>> client =
      ConnectBlocking(uri, ClientOptions{}, g);
  if (!client.ok()) {
    return Fail(Describe("map", uri, client.status()));
  }
  adapters::BlockingClient& bc = **client;
  const uint64_t size = bc.client().export_size().value_or(0);
  std::vector<MappedExtent> map;
  if (!bc.client().can_block_status()) {
    Debug(g, "server has no base:allocation: the whole export is data");
    if (size > 0) map.push_back({0, size, 0});
  }
  uint64_t align = std::max<uint64_t>(bc.client().block_size().minimum, 1);
  for (uint64_t offset = 0; bc.client().can_block_status() && offset < size;) {
    uint64_t length = std::min(size - offset, kMapChunk);
    if (length < size - offset) length -= length % align;
    absl::StatusOr<std::vector<Extent>> extents =
        bc.BlockStatus(offset, length, 0, "base:allocation", g.timeout);
    if (!extents.ok()) {
      return Fail(absl::StrCat("map ", uri, ": NBD_CMD_BLOCK_STATUS at offset ",
                               offset, ": ", StatusText(extents.status())));
    }
    uint64_t covered = 0;
    for (const Extent& e : *extents) covered += e.length;
    if (covered == 0) {
      return Fail(absl::StrCat("map ", uri, ": NBD_CMD_BLOCK_STATUS at offset ",
                               offset, ": the server returned no extents"));
    }
    std::vector<Extent> clamped = *extents;
    uint64_t left = size - offset;
    for (Extent& e : clamped) {
      e.length = std::min(e.length, left);
      left -= e.length;
    }
    AppendExtents(offset, clamped, &map);
    offset += std::min(covered, size - offset);
  }
  DisconnectBlocking(bc, g);

  if (parsed->Has("--json")) {
    std::fputs(FormatExtentsJson(map).c_str(), stdout);
  } else {
    for (const MappedExtent& e : map) {
      std::printf("%s\n", FormatExtentLine(e).c_str());
    }
  }
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace nbd::tool
