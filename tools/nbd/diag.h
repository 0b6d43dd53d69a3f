// Diagnostics of the `nbd` tool: the single error line, usage errors and
// --debug tracing, all on stderr.
#ifndef NBD_TOOLS_NBD_DIAG_H_
#define NBD_TOOLS_NBD_DIAG_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "protocol/events.h"
#include "tools/nbd/command.h"

namespace nbd::tool {

// Prints "nbd: MESSAGE" as one line on stderr (newlines in MESSAGE become
// spaces) and returns kExitError.
int Fail(std::string_view message);

// Prints "nbd: MESSAGE" and `usage` on stderr and returns kExitUsage.
int UsageError(std::string_view message, std::string_view usage);

// The status message with its errno name, e.g. "Connection refused".
std::string StatusText(const absl::Status& status);

// Prints "nbd: debug: MESSAGE" on stderr if --debug was given.
void Debug(const GlobalOptions& g, std::string_view message);

const char* OptionName(Option option);    // "NBD_OPT_GO"
const char* CommandName(Command command);  // "NBD_CMD_READ"

// A one-line description of a client event for tracing.
std::string DescribeEvent(const Event& event);

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_DIAG_H_
