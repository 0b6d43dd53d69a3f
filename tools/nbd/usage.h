// Usage texts of the `nbd` tool and its subcommands.
#ifndef NBD_TOOLS_NBD_USAGE_H_
#define NBD_TOOLS_NBD_USAGE_H_

#include "absl/strings/string_view.h"

namespace nbd::tool {

// The overall usage (every subcommand and the global options).
extern const char kMainUsage[];
// One line for usage errors without a command.
extern const char kShortUsage[];
// The usage of one subcommand ("info", "map", ...); kMainUsage if unknown.
const char* UsageFor(absl::string_view command);

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_USAGE_H_
