// libFuzzer entry point for the NBD URI parser and formatter
// (adapters/connect/uri.h).
//
// The whole input is the URI text. Checks:
//  - ParseNbdUri never crashes; a failure is InvalidArgument carrying
//    EINVAL or ENAMETOOLONG;
//  - a parsed URI keeps the documented bounds: the export name has no NUL
//    and fits kMaxStringLength, a Unix URI has a non-empty socket path, a
//    TCP port is non-zero, no `socket` key is left in query_params, and
//    CheckUriSupported accepts every plain URI and refuses only TLS
//    parameters it cannot honour (EINVAL);
//  - parse(format(parse(x))) == parse(x), and the formatted form is
//    canonical: formatting it again gives the same text;
//  - PercentDecode(PercentEncode(x, keep)) == x for any x and a `keep` set
//    without '%'; whatever PercentDecode accepts, encoding the result and
//    decoding it again gives the same bytes.
// uri.dict (next to this file) holds the schemes, keys and escapes that
// help libFuzzer build URIs; the campaign script passes it.

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "adapters/connect/uri.h"
#include "protocol/constants.h"
#include "protocol/status.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using nbd::adapters::NbdUri;

void CheckParsed(const NbdUri& u) {
  NBD_FUZZ_CHECK(u.export_name.size() <= nbd::kMaxStringLength);
  NBD_FUZZ_CHECK(u.export_name.find('\0') == std::string::npos);
  switch (u.transport) {
    case NbdUri::kTcp:
      NBD_FUZZ_CHECK(u.port != 0);
      break;
    case NbdUri::kUnix:
      NBD_FUZZ_CHECK_MSG(!u.socket_path.empty(),
                         "a Unix URI without a socket path was accepted");
      break;
    case NbdUri::kVsock:
      break;
  }
  if (u.transport != NbdUri::kUnix) NBD_FUZZ_CHECK(u.socket_path.empty());
  for (const auto& [key, value] : u.query_params) {
    NBD_FUZZ_CHECK_MSG(key != "socket", "`socket` left in query_params");
  }
  absl::Status supported = nbd::adapters::CheckUriSupported(u);
  if (!u.tls) NBD_FUZZ_CHECK(supported.ok());
  if (!supported.ok()) {
    NBD_FUZZ_CHECK(absl::IsInvalidArgument(supported));
    NBD_FUZZ_CHECK(nbd::StatusErrno(supported) == EINVAL);
  }
}

void FuzzParse(std::string_view text) {
  absl::StatusOr<NbdUri> first = nbd::adapters::ParseNbdUri(text);
  if (!first.ok()) {
    NBD_FUZZ_CHECK_MSG(absl::IsInvalidArgument(first.status()),
                       "ParseNbdUri failed with a code other than "
                       "InvalidArgument");
    const int e = nbd::StatusErrno(first.status());
    NBD_FUZZ_CHECK_MSG(e == EINVAL || e == ENAMETOOLONG,
                       "ParseNbdUri error without EINVAL/ENAMETOOLONG");
    NBD_FUZZ_CHECK(!first.status().message().empty());
    return;
  }
  CheckParsed(*first);
  const std::string formatted = nbd::adapters::FormatNbdUri(*first);
  absl::StatusOr<NbdUri> second = nbd::adapters::ParseNbdUri(formatted);
  NBD_FUZZ_CHECK_MSG(second.ok(), "FormatNbdUri produced an unparsable URI");
  NBD_FUZZ_CHECK_MSG(*second == *first,
                     "parse(format(parse(x))) differs from parse(x)");
  NBD_FUZZ_CHECK_MSG(nbd::adapters::FormatNbdUri(*second) == formatted,
                     "FormatNbdUri is not canonical");
}

void FuzzPercent(std::string_view text) {
  // Split the input: the first byte says how many of the next bytes form
  // the `keep` set (without '%', which would make encoding ambiguous).
  const size_t n = text.empty() ? 0 : static_cast<uint8_t>(text[0]) % 8;
  std::string_view rest = text.empty() ? text : text.substr(1);
  std::string keep(rest.substr(0, n));
  rest.remove_prefix(std::min(n, rest.size()));
  std::erase(keep, '%');

  for (const std::string& k : {std::string(), keep}) {
    const std::string encoded = nbd::adapters::PercentEncode(rest, k);
    absl::StatusOr<std::string> decoded = nbd::adapters::PercentDecode(encoded);
    NBD_FUZZ_CHECK_MSG(decoded.ok(), "PercentEncode output does not decode");
    NBD_FUZZ_CHECK_MSG(*decoded == rest,
                       "PercentDecode(PercentEncode(x)) != x");
  }
  absl::StatusOr<std::string> decoded = nbd::adapters::PercentDecode(text);
  if (!decoded.ok()) {
    NBD_FUZZ_CHECK(absl::IsInvalidArgument(decoded.status()));
    return;
  }
  NBD_FUZZ_CHECK(decoded->size() <= text.size());
  absl::StatusOr<std::string> again =
      nbd::adapters::PercentDecode(nbd::adapters::PercentEncode(*decoded));
  NBD_FUZZ_CHECK(again.ok() && *again == *decoded);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  FuzzParse(text);
  FuzzPercent(text);
  return 0;
}
