// Usage texts of the `nbd` tool and its subcommands.
#ifndef NBD_TOOLS_NBD_USAGE_H_
#define NBD_TOOLS_NBD_USAGE_H_

#include <string_view>

namespace nbd::tool {

// The overall usage (every subcommand and the global options).
extern const char kMainUsage[];
// The usage of one subcommand ("info", "map", ...); kMainUsage if unknown.
const char* UsageFor(std::string_view command);

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_USAGE_H_
