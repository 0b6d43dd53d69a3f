// What the `nbd` tool's data-moving subcommands (copy, bench, demo) add to
// nbd::engine (adapters/engine/engine.h): the engine's names in the tool's
// namespace, --debug output, error wording and read-ahead sizing.
#ifndef NBD_TOOLS_NBD_OPEN_H_
#define NBD_TOOLS_NBD_OPEN_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

#include "absl/status/status.h"
#include "adapters/engine/engine.h"

namespace nbd::tool {

using engine::Adapter;
using engine::AdapterName;
using engine::Engine;
using engine::EngineOptions;
using engine::Export;
using engine::ParseAdapter;

// The tool's own completion type (its copy endpoints share one callback
// between several commands, so it is copyable); converts to engine::Done.
using Done = std::function<void(const absl::Status&)>;

// EngineOptions::debug for --debug: each line to stderr as
// "nbd: debug: LINE". Null if `debug` is false.
std::function<void(std::string_view)> DebugLog(bool debug);

// `status` with its message prefixed by "NAME: WHAT: ", or only by
// "WHAT: " if the message already starts with NAME (connect errors from
// adapters/connect name the URI themselves).
absl::Status Named(std::string_view name, std::string_view what,
                   const absl::Status& status);

// The read-ahead that suits requests of `request_size` bytes. Small requests
// are bound by receive calls (a structured reply is 3-4 dependent receives
// without read-ahead), so they read ahead 64 KiB and pay a copy of their
// small payload; large requests read exactly each header so their payload
// lands in the caller's buffer without a copy.
size_t ReadaheadFor(uint64_t request_size);

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_OPEN_H_
