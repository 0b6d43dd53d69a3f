#include "adapters/connect/uri.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "adapters/connect/errno_status.h"
#include "protocol/status.h"

namespace nbd::adapters {
namespace {

using internal::InvalidArgument;

constexpr char kHexDigits[] = "0123456789ABCDEF";

struct SchemeInfo {
  absl::string_view name;
  NbdUri::Transport transport;
  bool tls;
};

constexpr SchemeInfo kSchemes[] = {
    {"nbd", NbdUri::kTcp, false},         {"nbds", NbdUri::kTcp, true},
    {"nbd+tcp", NbdUri::kTcp, false},     {"nbds+tcp", NbdUri::kTcp, true},
    {"nbd+unix", NbdUri::kUnix, false},   {"nbds+unix", NbdUri::kUnix, true},
    {"nbd+vsock", NbdUri::kVsock, false}, {"nbds+vsock", NbdUri::kVsock, true},
};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsUnreserved(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

bool IsSubDelim(char c) {
  return absl::string_view("!$&'()*+,;=").find(c) != absl::string_view::npos;
}

// Checks that every byte may appear literally in a URI (RFC 3986 allows only
// printable ASCII, minus a few characters that must always be encoded).
absl::Status CheckRawCharacters(absl::string_view uri) {
  for (size_t i = 0; i < uri.size(); ++i) {
    const auto c = static_cast<unsigned char>(uri[i]);
    if (c < 0x20 || c == 0x7f) {
      return InvalidArgument(absl::StrFormat(
          "NBD URI contains control character 0x%02x at offset %d", c, i));
    }
    if (c >= 0x80) {
      return InvalidArgument(absl::StrFormat(
          "NBD URI contains non-ASCII byte 0x%02x at offset %d (percent-encode "
          "it)",
          c, i));
    }
    if (c == ' ') {
      return InvalidArgument(absl::StrFormat(
          "NBD URI contains a space at offset %d (percent-encode it as %%20)",
          i));
    }
    if (absl::string_view("\"<>\\^`{|}").find(static_cast<char>(c)) !=
        absl::string_view::npos) {
      return InvalidArgument(absl::StrFormat(
          "NBD URI contains '%c' at offset %d, which must be percent-encoded",
          c, i));
    }
  }
  return absl::OkStatus();
}

// Parses a decimal number with no sign, no spaces and at most `max`.
std::optional<uint64_t> ParseDecimal(absl::string_view text, uint64_t max) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (max - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

absl::StatusOr<std::string> Decode(absl::string_view text) {
  return PercentDecode(std::string_view(text.data(), text.size()));
}

bool HasControlCharacter(absl::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  return false;
}

struct Authority {
  std::string userinfo;  // decoded
  bool has_userinfo = false;
  std::string host;  // raw (not yet decoded), brackets included
  bool has_port = false;
  std::string port;  // raw
};

absl::StatusOr<Authority> SplitAuthority(absl::string_view authority) {
  Authority result;
  absl::string_view hostport = authority;
  if (const size_t at = authority.find('@'); at != absl::string_view::npos) {
    if (authority.find('@', at + 1) != absl::string_view::npos) {
      return InvalidArgument(
          "NBD URI authority contains more than one '@' (percent-encode '@' "
          "in the user name as %40)");
    }
    auto userinfo = Decode(authority.substr(0, at));
    if (!userinfo.ok()) {
      return InvalidArgument(absl::StrCat("bad user name in NBD URI: ",
                                          userinfo.status().message()));
    }
    if (HasControlCharacter(*userinfo)) {
      return InvalidArgument(
          "user name in NBD URI contains a control character");
    }
    result.userinfo = *std::move(userinfo);
    result.has_userinfo = true;
    hostport = authority.substr(at + 1);
  }
  if (!hostport.empty() && hostport.front() == '[') {
    const size_t close = hostport.find(']');
    if (close == absl::string_view::npos) {
      return InvalidArgument(
          absl::StrCat("NBD URI host '", hostport, "' has no closing ']'"));
    }
    result.host = std::string(hostport.substr(0, close + 1));
    absl::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return InvalidArgument(
            absl::StrCat("unexpected '", after, "' after ']' in NBD URI host"));
      }
      result.has_port = true;
      result.port = std::string(after.substr(1));
    }
  } else {
    const size_t colon = hostport.find(':');
    result.host = std::string(hostport.substr(0, colon));
    if (colon != absl::string_view::npos) {
      result.has_port = true;
      result.port = std::string(hostport.substr(colon + 1));
      if (result.port.find(':') != std::string::npos) {
        return InvalidArgument(absl::StrCat(
            "bad NBD URI authority '", hostport,
            "': an IPv6 address must be in brackets, e.g. [::1]:10809"));
      }
    }
    if (result.host.find_first_of("[]") != std::string::npos) {
      return InvalidArgument(
          absl::StrCat("bad NBD URI host '", result.host, "'"));
    }
  }
  return result;
}

// Decodes a TCP host: a bracketed IPv6 literal (with an optional %25 zone) or
// a percent-encoded reg-name / IPv4 address.
absl::StatusOr<std::string> DecodeTcpHost(absl::string_view raw) {
  if (!raw.empty() && raw.front() == '[') {
    absl::string_view inner = raw.substr(1, raw.size() - 2);
    if (!inner.empty() && (inner.front() == 'v' || inner.front() == 'V')) {
      return InvalidArgument(absl::StrCat("IPvFuture host '", raw,
                                          "' in NBD URI is not supported"));
    }
    absl::string_view address = inner;
    std::string zone;
    if (const size_t pct = inner.find('%'); pct != absl::string_view::npos) {
      address = inner.substr(0, pct);
      absl::string_view encoded_zone = inner.substr(pct);
      if (encoded_zone.substr(0, 3) != "%25" || encoded_zone.size() == 3) {
        return InvalidArgument(absl::StrCat(
            "bad IPv6 zone in NBD URI host '", raw,
            "' (write the zone as %25<zone>, e.g. [fe80::1%25eth0])"));
      }
      auto decoded = Decode(encoded_zone.substr(3));
      if (!decoded.ok()) {
        return InvalidArgument(absl::StrCat("bad IPv6 zone in NBD URI: ",
                                            decoded.status().message()));
      }
      if (HasControlCharacter(*decoded) ||
          decoded->find_first_of("/%[]") != std::string::npos) {
        return InvalidArgument(
            absl::StrCat("bad IPv6 zone in NBD URI host '", raw, "'"));
      }
      zone = *std::move(decoded);
    }
    in6_addr unused;
    const std::string address_string(address);
    if (inet_pton(AF_INET6, address_string.c_str(), &unused) != 1) {
      return InvalidArgument(absl::StrCat("bad IPv6 address '", address,
                                          "' in NBD URI host '", raw, "'"));
    }
    return zone.empty() ? address_string
                        : absl::StrCat(address_string, "%", zone);
  }
  for (char c : raw) {
    if (!IsUnreserved(c) && !IsSubDelim(c) && c != '%') {
      return InvalidArgument(absl::StrFormat(
          "NBD URI host '%s' contains '%c', which must be percent-encoded", raw,
          c));
    }
  }
  auto decoded = Decode(raw);
  if (!decoded.ok()) {
    return InvalidArgument(
        absl::StrCat("bad NBD URI host: ", decoded.status().message()));
  }
  if (HasControlCharacter(*decoded)) {
    return InvalidArgument("NBD URI host contains a control character");
  }
  if (decoded->find(':') != std::string::npos) {
    return InvalidArgument(
        absl::StrCat("NBD URI host '", raw,
                     "' contains ':'; an IPv6 address must be in brackets"));
  }
  return decoded;
}

absl::StatusOr<uint16_t> ParseTcpPort(absl::string_view port) {
  if (port.empty()) return kNbdDefaultPort;
  std::optional<uint64_t> value = ParseDecimal(port, 0xffffffffffffffffULL);
  if (!value.has_value()) {
    return InvalidArgument(absl::StrCat("bad port '", port,
                                        "' in NBD URI (not a decimal number)"));
  }
  if (*value == 0 || *value > 65535) {
    return InvalidArgument(
        absl::StrCat("bad port '", port, "' in NBD URI (must be 1..65535)"));
  }
  return static_cast<uint16_t>(*value);
}

}  // namespace

const std::string* NbdUri::FindQueryParam(std::string_view key) const {
  for (const auto& [k, v] : query_params) {
    if (k == key) return &v;
  }
  return nullptr;
}

absl::StatusOr<std::string> PercentDecode(std::string_view text_in) {
  const absl::string_view text(text_in.data(), text_in.size());
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    const int hi = i + 1 < text.size() ? HexValue(text[i + 1]) : -1;
    const int lo = i + 2 < text.size() ? HexValue(text[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      return InvalidArgument(absl::StrCat(
          "bad percent-escape '", text.substr(i, 3), "' at offset ", i, " in '",
          text, "' (expected %XX with two hex digits)"));
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string PercentEncode(std::string_view text, std::string_view keep) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (IsUnreserved(c) || keep.find(c) != absl::string_view::npos) {
      out.push_back(c);
    } else {
      const auto u = static_cast<unsigned char>(c);
      out.push_back('%');
      out.push_back(kHexDigits[u >> 4]);
      out.push_back(kHexDigits[u & 0xf]);
    }
  }
  return out;
}

absl::StatusOr<NbdUri> ParseNbdUri(std::string_view text_in) {
  const absl::string_view text(text_in.data(), text_in.size());
  if (absl::Status s = CheckRawCharacters(text); !s.ok()) return s;

  // Scheme.
  const size_t colon = text.find(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return InvalidArgument(absl::StrCat(
        "'", text, "' is not an NBD URI (missing scheme, e.g. nbd://)"));
  }
  const std::string scheme = absl::AsciiStrToLower(text.substr(0, colon));
  const SchemeInfo* info = nullptr;
  for (const SchemeInfo& candidate : kSchemes) {
    if (candidate.name == scheme) info = &candidate;
  }
  if (info == nullptr) {
    return InvalidArgument(absl::StrCat("bad NBD URI scheme '",
                                        text.substr(0, colon),
                                        "' (expected nbd, nbds, nbd+unix, "
                                        "nbds+unix, nbd+vsock or nbds+vsock)"));
  }
  NbdUri uri;
  uri.transport = info->transport;
  uri.tls = info->tls;

  absl::string_view rest = text.substr(colon + 1);
  if (const size_t hash = rest.find('#'); hash != absl::string_view::npos) {
    return InvalidArgument(
        "NBD URI must not have a #fragment (percent-encode '#' as %23)");
  }
  absl::string_view query;
  bool has_query = false;
  if (const size_t q = rest.find('?'); q != absl::string_view::npos) {
    query = rest.substr(q + 1);
    has_query = true;
    rest = rest.substr(0, q);
  }

  // Authority and path.
  std::optional<Authority> authority;
  absl::string_view path = rest;
  if (rest.substr(0, 2) == "//") {
    rest.remove_prefix(2);
    const size_t slash = rest.find('/');
    auto split = SplitAuthority(rest.substr(0, slash));
    if (!split.ok()) return split.status();
    authority = *std::move(split);
    path = slash == absl::string_view::npos ? absl::string_view()
                                            : rest.substr(slash);
  }
  if (!path.empty() && path.front() != '/') {
    return InvalidArgument(absl::StrCat("NBD URI path '", path,
                                        "' must start with '/' (write ", scheme,
                                        "://HOST/EXPORT)"));
  }
  if (path.find_first_of("[]") != absl::string_view::npos) {
    return InvalidArgument(absl::StrCat(
        "NBD URI path '", path, "' contains '[' or ']' (percent-encode them)"));
  }
  if (!path.empty()) {
    auto decoded = Decode(path.substr(1));
    if (!decoded.ok()) {
      return InvalidArgument(absl::StrCat("bad export name in NBD URI: ",
                                          decoded.status().message()));
    }
    uri.export_name = *std::move(decoded);
  }
  if (uri.export_name.find('\0') != std::string::npos) {
    return InvalidArgument("export name in NBD URI contains a NUL byte (%00)");
  }
  if (uri.export_name.size() > kMaxStringLength) {
    return InvalidArgument(
        absl::StrCat("export name in NBD URI is ", uri.export_name.size(),
                     " bytes, longer than the NBD limit of ", kMaxStringLength),
        ENAMETOOLONG);
  }

  // Query parameters.
  bool has_socket = false;
  if (has_query && query.find_first_of("[]") != absl::string_view::npos) {
    return InvalidArgument(
        absl::StrCat("NBD URI query '", query,
                     "' contains '[' or ']' (percent-encode them)"));
  }
  if (has_query) {
    for (absl::string_view item : absl::StrSplit(query, '&')) {
      if (item.empty()) continue;
      const size_t eq = item.find('=');
      auto key = Decode(item.substr(0, eq));
      auto value = Decode(eq == absl::string_view::npos ? absl::string_view()
                                                        : item.substr(eq + 1));
      if (!key.ok() || !value.ok()) {
        return InvalidArgument(absl::StrCat(
            "bad query parameter '", item, "' in NBD URI: ",
            (!key.ok() ? key.status() : value.status()).message()));
      }
      if (*key == "socket") {
        if (uri.transport != NbdUri::kUnix) {
          return InvalidArgument(absl::StrCat(
              "the socket= query parameter is only allowed with nbd+unix:// "
              "and nbds+unix:// URIs, not ",
              scheme, "://"));
        }
        if (has_socket) {
          return InvalidArgument(
              "NBD URI has more than one socket= query parameter");
        }
        has_socket = true;
        uri.socket_path = *std::move(value);
        continue;
      }
      if (key->find('\0') != std::string::npos ||
          value->find('\0') != std::string::npos) {
        return InvalidArgument(absl::StrCat("query parameter '", item,
                                            "' in NBD URI contains %00"));
      }
      uri.query_params.emplace_back(*std::move(key), *std::move(value));
    }
  }

  if (authority.has_value()) uri.tls_username = authority->userinfo;

  switch (uri.transport) {
    case NbdUri::kTcp: {
      if (!authority.has_value()) break;  // host "", port 10809
      auto host = DecodeTcpHost(authority->host);
      if (!host.ok()) return host.status();
      uri.host = *std::move(host);
      if (authority->has_port) {
        auto port = ParseTcpPort(authority->port);
        if (!port.ok()) return port.status();
        uri.port = *port;
      }
      break;
    }
    case NbdUri::kUnix: {
      if (authority.has_value() &&
          (!authority->host.empty() || authority->has_port)) {
        return InvalidArgument(absl::StrCat(
            scheme, ":// URI must not name a host or port ('", authority->host,
            authority->has_port ? ":" : "", authority->port, "'); write ",
            scheme, ":///EXPORT?socket=PATH"));
      }
      if (!has_socket) {
        return InvalidArgument(absl::StrCat(
            scheme,
            ":// URI is missing the required socket= query parameter "
            "(e.g. ",
            scheme, ":///EXPORT?socket=/path/to/socket)"));
      }
      if (uri.socket_path.empty()) {
        return InvalidArgument(
            absl::StrCat(scheme, ":// URI has an empty socket= parameter"));
      }
      if (uri.socket_path.find('\0', 1) != std::string::npos) {
        return InvalidArgument(
            "socket= path in NBD URI contains a NUL byte (only a leading %00, "
            "for an abstract socket, is allowed)");
      }
      break;
    }
    case NbdUri::kVsock: {
      if (!authority.has_value() || authority->host.empty()) {
        return InvalidArgument(absl::StrCat(
            scheme, ":// URI needs a CID, e.g. ", scheme, "://2:10809/EXPORT"));
      }
      std::optional<uint64_t> cid =
          ParseDecimal(authority->host, 0xfffffffeULL);
      if (!cid.has_value()) {
        return InvalidArgument(absl::StrCat(
            "bad vsock CID '", authority->host,
            "' in NBD URI (must be a decimal number below 4294967295)"));
      }
      uri.vsock_cid = static_cast<uint32_t>(*cid);
      if (authority->has_port && !authority->port.empty()) {
        std::optional<uint64_t> port =
            ParseDecimal(authority->port, 0xfffffffeULL);
        if (!port.has_value()) {
          return InvalidArgument(absl::StrCat(
              "bad vsock port '", authority->port,
              "' in NBD URI (must be a decimal number below 4294967295)"));
        }
        uri.vsock_port = static_cast<uint32_t>(*port);
      }
      break;
    }
  }
  return uri;
}

namespace {

absl::StatusOr<bool> UriBool(const std::string& key, const std::string& v) {
  const std::string lower = absl::AsciiStrToLower(v);
  if (lower == "true" || lower == "on" || lower == "yes" || lower == "1") {
    return true;
  }
  if (lower == "false" || lower == "off" || lower == "no" || lower == "0") {
    return false;
  }
  return WithErrno(absl::InvalidArgumentError(absl::StrCat(
                       "URI parameter ", key, "=", v, " is not a boolean")),
                   EINVAL);
}

}  // namespace

absl::Status CheckUriPolicy(const NbdUri& uri, const UriPolicy& policy) {
  const auto refuse = [](std::string what) {
    return WithErrno(absl::PermissionDeniedError(std::move(what)), EPERM);
  };
  uint32_t bit = UriPolicy::kTcp;
  const char* name = "TCP";
  if (uri.transport == NbdUri::kUnix) {
    bit = UriPolicy::kUnix;
    name = "Unix socket";
  } else if (uri.transport == NbdUri::kVsock) {
    bit = UriPolicy::kVsock;
    name = "vsock";
  }
  if ((policy.transports & bit) == 0) {
    return refuse(
        absl::StrCat("URI: the ", name,
                     " transport is not allowed (UriPolicy::transports)"));
  }
  if (uri.tls && policy.tls == UriPolicy::Tls::kDisable) {
    return refuse("URI: TLS (an nbds scheme) is not allowed (UriPolicy::tls)");
  }
  if (!uri.tls && policy.tls == UriPolicy::Tls::kRequire) {
    return refuse(
        "URI: a URI without TLS (an nbd scheme) is not allowed "
        "(UriPolicy::tls requires nbds)");
  }
  if (!policy.local_files) {
    for (const auto& [key, value] : uri.query_params) {
      if (key == "tls-certificates" || key == "tls-psk-file") {
        return refuse(absl::StrCat("URI: ", key,
                                   " names a local file, which is not allowed "
                                   "(UriPolicy::local_files)"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckUriSupported(const NbdUri& uri) {
  bool require = false;
  TlsCredentials ignored;
  return ApplyUriTls(uri, &require, &ignored);
}

absl::Status ApplyUriTls(const NbdUri& uri, bool* require,
                         TlsCredentials* credentials) {
  if (!uri.tls) return absl::OkStatus();
  TlsCredentials c = *credentials;
  std::string type;
  for (const auto& [key, value] : uri.query_params) {
    if (key == "tls-certificates") {
      c.certificates_dir = value;
    } else if (key == "tls-psk-file") {
      c.psk_file = value;
    } else if (key == "tls-verify-peer") {
      absl::StatusOr<bool> b = UriBool(key, value);
      if (!b.ok()) return b.status();
      c.verify_peer = *b;
    } else if (key == "tls-hostname") {
      c.hostname = value;
    } else if (key == "tls-priority") {
      c.priority = value;
    } else if (key == "tls-type") {
      type = absl::AsciiStrToLower(value);
      if (type != "x509" && type != "psk") {
        return WithErrno(
            absl::InvalidArgumentError(absl::StrCat(
                "URI parameter tls-type=", value, " (expected x509 or psk)")),
            EINVAL);
      }
    }
  }
  if (type == "psk" && c.psk_file.empty()) {
    return WithErrno(absl::InvalidArgumentError(
                         "URI parameter tls-type=psk needs tls-psk-file"),
                     EINVAL);
  }
  if (type == "x509") c.psk_file.clear();
  if (!uri.tls_username.empty()) c.username = uri.tls_username;
  if (!c.psk_file.empty() && c.username.empty()) {
    // libnbd's default PSK user: the login name.
    char name[256];
    if (getlogin_r(name, sizeof(name)) == 0) {
      c.username = name;
    } else if (const char* u = std::getenv("USER"); u != nullptr) {
      c.username = u;
    }
  }
  if (c.hostname.empty() && uri.transport == NbdUri::kTcp) {
    c.hostname = uri.host.empty() ? "localhost" : uri.host;
  }
  *credentials = std::move(c);
  *require = true;
  return absl::OkStatus();
}

std::string FormatNbdUri(const NbdUri& uri) {
  std::string out = uri.tls ? "nbds" : "nbd";
  switch (uri.transport) {
    case NbdUri::kTcp:
      break;
    case NbdUri::kUnix:
      out += "+unix";
      break;
    case NbdUri::kVsock:
      out += "+vsock";
      break;
  }
  out += "://";
  if (!uri.tls_username.empty()) {
    absl::StrAppend(&out, PercentEncode(uri.tls_username), "@");
  }
  switch (uri.transport) {
    case NbdUri::kTcp:
      if (uri.host.find(':') != std::string::npos) {
        absl::StrAppend(&out, "[", PercentEncode(uri.host, ":"), "]");
      } else {
        absl::StrAppend(&out, PercentEncode(uri.host));
      }
      if (uri.port != kNbdDefaultPort) absl::StrAppend(&out, ":", uri.port);
      break;
    case NbdUri::kUnix:
      break;
    case NbdUri::kVsock:
      absl::StrAppend(&out, uri.vsock_cid);
      if (uri.vsock_port != kNbdDefaultPort) {
        absl::StrAppend(&out, ":", uri.vsock_port);
      }
      break;
  }
  absl::StrAppend(&out, "/", PercentEncode(uri.export_name, "/:@"));
  char separator = '?';
  if (uri.transport == NbdUri::kUnix) {
    absl::StrAppend(&out, "?socket=", PercentEncode(uri.socket_path, "/:@"));
    separator = '&';
  }
  for (const auto& [key, value] : uri.query_params) {
    absl::StrAppend(&out, absl::string_view(&separator, 1),
                    PercentEncode(key, "/:@"), "=",
                    PercentEncode(value, "/:@"));
    separator = '&';
  }
  return out;
}

}  // namespace nbd::adapters
