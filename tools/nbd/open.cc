#include "tools/nbd/open.h"

#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace nbd::tool {

std::function<void(std::string_view)> DebugLog(bool debug) {
  if (!debug) return nullptr;
  return [](std::string_view line) {
    std::fprintf(stderr, "nbd: debug: %.*s\n", static_cast<int>(line.size()),
                 line.data());
  };
}

absl::Status Named(std::string_view name, std::string_view what,
                   const absl::Status& status) {
  std::string message(status.message());
  if (message.empty()) {
    message = std::string(absl::StatusCodeToString(status.code()));
  }
  if (absl::StartsWith(message, std::string(name))) {
    message = message.substr(name.size());
    if (absl::StartsWith(message, ": ")) message = message.substr(2);
  }
  return absl::Status(
      status.code(),
      absl::StrCat(std::string(name), ": ", std::string(what), ": ", message));
}

size_t ReadaheadFor(uint64_t request_size) {
  constexpr size_t kSmallRequest = 64 * 1024;
  return request_size <= kSmallRequest ? kSmallRequest : 0;
}

}  // namespace nbd::tool
