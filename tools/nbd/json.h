// Minimal JSON output helpers for `nbd info --json` and `nbd map --json`.
#ifndef NBD_TOOLS_NBD_JSON_H_
#define NBD_TOOLS_NBD_JSON_H_

#include <string>

#include "absl/strings/string_view.h"

namespace nbd::tool {

// `text` as a JSON string literal, quotes included. Control characters and
// bytes that are not valid UTF-8 are escaped (\u00XX), so the output is
// always valid JSON.
std::string JsonString(absl::string_view text);

inline const char* JsonBool(bool b) { return b ? "true" : "false"; }

}  // namespace nbd::tool

#endif  // NBD_TOOLS_NBD_JSON_H_
