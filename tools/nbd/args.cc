#include "tools/nbd/args.h"

#include <cctype>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace nbd::tool {

absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  size_t digits = 0;
  while (digits < text.size() &&
         std::isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  uint64_t value = 0;
  if (digits == 0 || !absl::SimpleAtoi(text.substr(0, digits), &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid size '", text, "'"));
  }
  absl::string_view suffix = text.substr(digits);
  int shift = 0;
  if (suffix.size() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid size '", text, "': unknown suffix"));
  }
  if (suffix.size() == 1) {
    switch (std::tolower(static_cast<unsigned char>(suffix[0]))) {
      case 'b':
        shift = 0;
        break;
      case 's':
        shift = 9;
        break;
      case 'k':
        shift = 10;
        break;
      case 'm':
        shift = 20;
        break;
      case 'g':
        shift = 30;
        break;
      case 't':
        shift = 40;
        break;
      case 'p':
        shift = 50;
        break;
      case 'e':
        shift = 60;
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("invalid size '", text, "': unknown suffix"));
    }
  }
  if (shift > 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid size '", text, "': too large"));
  }
  return value << shift;
}

absl::StatusOr<absl::Duration> ParseSeconds(absl::string_view text) {
  double seconds = 0;
  if (text.empty() || !absl::SimpleAtod(text, &seconds) || !(seconds >= 0) ||
      seconds > 1e9) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid number of seconds '", text, "'"));
  }
  return absl::Seconds(seconds);
}

absl::Status ExtractGlobalOptions(std::vector<std::string>& args,
                                  GlobalOptions* options, bool* help) {
  std::vector<std::string> rest;
  bool options_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_ended) {
      rest.push_back(a);
      continue;
    }
    if (a == "--") {
      options_ended = true;
      rest.push_back(a);
    } else if (a == "--debug") {
      options->debug = true;
    } else if (a == "--help" || a == "-h") {
      *help = true;
    } else if (a == "--timeout" || absl::StartsWith(a, "--timeout=")) {
      std::string value;
      if (a == "--timeout") {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError("--timeout needs a value");
        }
        value = args[++i];
      } else {
        value = a.substr(absl::string_view("--timeout=").size());
      }
      absl::StatusOr<absl::Duration> d = ParseSeconds(value);
      if (!d.ok())
        return absl::InvalidArgumentError(
            absl::StrCat("--timeout: ", d.status().message()));
      if (*d <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError("--timeout must be positive");
      }
      options->timeout = *d;
    } else {
      rest.push_back(a);
    }
  }
  args = std::move(rest);
  return absl::OkStatus();
}

const std::string* ParsedArgs::Value(const std::string& option) const {
  auto it = values.find(option);
  return it == values.end() ? nullptr : &it->second;
}

absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::set<std::string>& flags,
                                     const std::set<std::string>& valued) {
  ParsedArgs out;
  bool options_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_ended || a.size() < 2 || a[0] != '-') {
      out.positional.push_back(a);
      continue;
    }
    if (a == "--") {
      options_ended = true;
      continue;
    }
    std::string name = a;
    std::optional<std::string> inline_value;
    if (size_t eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      inline_value = a.substr(eq + 1);
    }
    if (flags.count(name) > 0 && !inline_value) {
      out.flags.insert(name);
    } else if (valued.count(name) > 0) {
      if (inline_value) {
        out.values[name] = *inline_value;
      } else if (i + 1 < args.size()) {
        out.values[name] = args[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("option ", name, " needs a value"));
      }
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown option '", a, "'"));
    }
  }
  return out;
}

const OptionSpec& OptionsFor(absl::string_view command) {
  static const auto* const kSpecs = new std::map<std::string, OptionSpec>{
      {"info", {{"--json", "--list"}, {}}},
      {"map", {{"--json"}, {}}},
      {"copy",
       {{"--flush", "--progress"},
        {"--connections", "--requests", "--request-size", "--adapter"}}},
      {"bench",
       {{"--json", "--random"},
        {"--op", "--bs", "--qd", "--seconds", "--connections", "--adapter"}}},
      {"serve",
       {{"--read-only", "--tls-verify-peer"},
        {"--memory", "--file", "--null", "--socket", "--port", "--name",
         "--description", "--max-connections", "--handshake-timeout",
         "--max-queued-replies", "--tls", "--tls-certificates", "--tls-psk"}}},
      {"demo", {{}, {"--size"}}},
  };
  static const OptionSpec kNone;
  auto it = kSpecs->find(std::string(command));
  return it == kSpecs->end() ? kNone : it->second;
}

absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     absl::string_view command) {
  const OptionSpec& spec = OptionsFor(command);
  return ParseArgs(args, spec.flags, spec.valued);
}

size_t FindCommand(const std::vector<std::string>& args) {
  // Before the command it is not known yet whose option this is; a name
  // that takes a value in any subcommand takes it in all that have it.
  std::set<std::string> valued;
  for (const char* command :
       {"info", "map", "copy", "bench", "serve", "demo"}) {
    const OptionSpec& spec = OptionsFor(command);
    valued.insert(spec.valued.begin(), spec.valued.end());
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") return i + 1;
    if (a.size() < 2 || a[0] != '-') return i;
    if (a.find('=') == std::string::npos && valued.count(a) > 0) ++i;
  }
  return args.size();
}

}  // namespace nbd::tool
