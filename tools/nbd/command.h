// The `nbd` tool's subcommands. main.cc parses the global options and
// dispatches; each subcommand parses its own arguments (options may come
// before or after positional arguments) and returns the process exit
// status: 0 success, 1 error (after printing one line "nbd: ..." to stderr
// naming the server, the command, the offset and the reason), 2 usage error.
#ifndef NBD_TOOLS_NBD_COMMAND_H_
#define NBD_TOOLS_NBD_COMMAND_H_

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace nbd::tool {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// Options every subcommand understands, anywhere on the command line.
struct GlobalOptions {
  // Bounds every wait: a server that stops answering ends the command with
  // an error after about this long; a server that never closes after the
  // disconnect gets its connection closed after this long (the command
  // still succeeds if its work was done).
  absl::Duration timeout = absl::Seconds(30);
  bool debug = false;  // trace protocol messages to stderr
};

// `args` are the arguments after the subcommand name, with the global
// options already removed.
int InfoCommand(const std::vector<std::string>& args, const GlobalOptions& g);
int MapCommand(const std::vector<std::string>& args, const GlobalOptions& g);
int CopyCommand(const std::vector<std::string>& args, const GlobalOptions& g);
int BenchCommand(const std::vector<std::string>& args, const GlobalOptions& g);
int ServeCommand(const std::vector<std::string>& args, const GlobalOptions& g);
int DemoCommand(const std::vector<std::string>& args, const GlobalOptions& g);

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_COMMAND_H_
