// The `nbd` command-line tool: global options, then one subcommand.
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "tools/nbd/args.h"
#include "tools/nbd/command.h"
#include "tools/nbd/diag.h"
#include "tools/nbd/usage.h"

namespace {

using Handler = int (*)(const std::vector<std::string>&,
                        const nbd::tool::GlobalOptions&);

struct Subcommand {
  absl::string_view name;
  Handler handler;
};

constexpr Subcommand kSubcommands[] = {
    {"info", &nbd::tool::InfoCommand},   {"map", &nbd::tool::MapCommand},
    {"copy", &nbd::tool::CopyCommand},   {"bench", &nbd::tool::BenchCommand},
    {"serve", &nbd::tool::ServeCommand}, {"demo", &nbd::tool::DemoCommand},
};

}  // namespace

int main(int argc, char** argv) {
  using nbd::tool::kMainUsage;
  // Sockets are written with MSG_NOSIGNAL, but be safe with any other write.
  signal(SIGPIPE, SIG_IGN);

  std::vector<std::string> args(argv + 1, argv + argc);
  nbd::tool::GlobalOptions g;
  bool help = false;
  if (absl::Status s = nbd::tool::ExtractGlobalOptions(args, &g, &help);
      !s.ok()) {
    return nbd::tool::UsageError(s.message(), nbd::tool::kShortUsage);
  }
  // Subcommand options may come before the subcommand too: they stay in
  // `args` for the subcommand to parse.
  const size_t at = nbd::tool::FindCommand(args);
  if (at == args.size()) {
    if (help) {
      std::fputs(kMainUsage, stdout);
      return nbd::tool::kExitOk;
    }
    return nbd::tool::UsageError("no command given", nbd::tool::kShortUsage);
  }
  const std::string name = args[at];
  args.erase(args.begin() + static_cast<std::ptrdiff_t>(at));
  for (const Subcommand& sub : kSubcommands) {
    if (sub.name != name) continue;
    if (help) {
      std::fputs(nbd::tool::UsageFor(name), stdout);
      return nbd::tool::kExitOk;
    }
    return sub.handler(args, g);
  }
  return nbd::tool::UsageError(absl::StrCat("unknown command '", name, "'"),
                               nbd::tool::kShortUsage);
}
