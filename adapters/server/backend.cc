#include "adapters/server/backend.h"

#include <utility>

namespace nbd {

ExportInfo MakeExportInfo(std::string name, std::string description,
                          const Backend& backend) {
  const BackendCapabilities caps = backend.Capabilities();
  ExportInfo e;
  e.name = std::move(name);
  e.description = std::move(description);
  e.size = backend.Size();
  e.read_only = caps.read_only;
  e.can_flush = caps.can_flush;
  e.can_fua = caps.can_fua;
  e.can_trim = caps.can_trim;
  e.can_zero = caps.can_zero;
  e.can_fast_zero = caps.can_fast_zero;
  e.can_cache = caps.can_cache;
  e.can_multi_conn = caps.can_multi_conn;
  return e;
}

}  // namespace nbd
