#include "tools/nbd/diag.h"

#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace nbd::tool {
namespace {

std::string OneLine(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"\r\n", " "}, {"\n", " "}, {"\r", " "}});
}

// What a user can do about an error whose cause is not obvious from the
// protocol's words: a plaintext URI against a server that requires TLS.
std::string WithHint(absl::string_view message) {
  std::string out = OneLine(message);
  if (absl::StrContains(message, "NBD_REP_ERR_TLS_REQD") &&
      !absl::StrContains(message, "nbds")) {
    absl::StrAppend(&out,
                    " (the server requires TLS: use an nbds:// or "
                    "nbds+unix:// URI with tls-certificates=DIR or "
                    "tls-psk-file=FILE)");
  }
  return out;
}

}  // namespace

int Fail(absl::string_view message) {
  std::fprintf(stderr, "nbd: %s\n", WithHint(message).c_str());
  std::fflush(stderr);
  return kExitError;
}

std::string Describe(absl::string_view command, absl::string_view uri,
                     const absl::Status& status) {
  std::string reason = StatusText(status);
  if (absl::StartsWith(reason, uri)) return absl::StrCat(command, ": ", reason);
  return absl::StrCat(command, " ", uri, ": ", reason);
}

int UsageError(absl::string_view message, absl::string_view usage) {
  std::fprintf(stderr, "nbd: %s\n%s", OneLine(message).c_str(),
               std::string(usage).c_str());
  std::fflush(stderr);
  return kExitUsage;
}

std::string StatusText(const absl::Status& status) {
  if (status.message().empty()) {
    return std::string(absl::StatusCodeToString(status.code()));
  }
  return std::string(status.message());
}

void Debug(const GlobalOptions& g, absl::string_view message) {
  if (!g.debug) return;
  std::fprintf(stderr, "nbd: debug: %s\n", OneLine(message).c_str());
  std::fflush(stderr);
}

}  // namespace nbd::tool
