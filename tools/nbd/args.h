// Command-line parsing shared by the `nbd` subcommands: sizes with nbdkit
// suffixes, durations in seconds, the global options, and a small option
// parser that lets options come before or after positional arguments.
#ifndef NBD_TOOLS_NBD_ARGS_H_
#define NBD_TOOLS_NBD_ARGS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tools/nbd/command.h"

namespace nbd::tool {

// A byte count like nbdkit's: decimal digits, optionally followed by one
// suffix (case-insensitive) K, M, G, T, P or E (powers of 1024; "1M" is
// 1048576), s (512-byte sectors) or b (bytes). InvalidArgument on anything else
// or on overflow.
absl::StatusOr<uint64_t> ParseSize(absl::string_view text);

// A non-negative number of seconds, possibly fractional ("1", "0.5").
absl::StatusOr<absl::Duration> ParseSeconds(absl::string_view text);

// Removes the global options (--timeout SECONDS, --timeout=SECONDS,
// --debug, --help/-h) from anywhere in `args` (up to a "--") and records
// them. InvalidArgument for a missing or bad --timeout value.
absl::Status ExtractGlobalOptions(std::vector<std::string>& args,
                                  GlobalOptions* options, bool* help);

// Parsed subcommand arguments.
struct ParsedArgs {
  std::vector<std::string> positional;
  std::set<std::string> flags;                // e.g. "--json"
  std::map<std::string, std::string> values;  // e.g. "--memory" -> "1M"

  bool Has(const std::string& flag) const { return flags.count(flag) > 0; }
  const std::string* Value(const std::string& option) const;
};

// Parses `args`: `flags` take no value, `valued` options take one
// ("--opt VALUE" or "--opt=VALUE"; given twice, the last wins). "--" ends
// the options. InvalidArgument naming an unknown option or a missing value.
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::set<std::string>& flags,
                                     const std::set<std::string>& valued);

// The options one subcommand takes.
struct OptionSpec {
  std::set<std::string> flags;   // no value
  std::set<std::string> valued;  // one value
};
// The options of `command` ("info", "copy", ...); none for an unknown one.
// The subcommands parse with these, and FindCommand() skips their values.
const OptionSpec& OptionsFor(absl::string_view command);
// ParseArgs with OptionsFor(command).
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     absl::string_view command);

// The index of the subcommand name in `args` (global options removed): the
// first argument that is neither an option nor the value of a subcommand
// option placed before it, so `nbd --adapter epoll copy A B` finds "copy".
// args.size() if there is none.
size_t FindCommand(const std::vector<std::string>& args);

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_ARGS_H_
