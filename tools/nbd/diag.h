// Diagnostics of the `nbd` tool: the single error line, usage errors and
// --debug tracing, all on stderr.
#ifndef NBD_TOOLS_NBD_DIAG_H_
#define NBD_TOOLS_NBD_DIAG_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "tools/nbd/command.h"

namespace nbd::tool {

// Prints "nbd: MESSAGE" as one line on stderr (newlines in MESSAGE become
// spaces) and returns kExitError. A server's NBD_REP_ERR_TLS_REQD to a
// plaintext URI gets a hint: use an nbds URI.
int Fail(absl::string_view message);

// "COMMAND URI: REASON" for a failed operation on `uri`; the URI is left
// out of the prefix when REASON already starts with it (errors from
// adapters/connect do).
std::string Describe(absl::string_view command, absl::string_view uri,
                     const absl::Status& status);

// Prints "nbd: MESSAGE" and `usage` on stderr and returns kExitUsage.
int UsageError(absl::string_view message, absl::string_view usage);

// The status message with its errno name, e.g. "Connection refused".
std::string StatusText(const absl::Status& status);

// Prints "nbd: debug: MESSAGE" on stderr if --debug was given.
void Debug(const GlobalOptions& g, absl::string_view message);

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_DIAG_H_
