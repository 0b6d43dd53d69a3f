// NBD URIs (NetworkBlockDevice/nbd doc/uri.md), parsed and formatted.
//
// An NBD URI names a transport, an optional TLS requirement, an endpoint and
// an export:
//
//   nbd://example.com:10809/disk              TCP, export "disk"
//   nbds://alice@[::1]/disk                   TCP + TLS (user "alice")
//   nbd+unix:///disk?socket=/run/nbd.sock     Unix domain socket
//   nbd+unix:///?socket=%00abstract           Linux abstract socket
//   nbd+vsock://2:10809/disk                  AF_VSOCK, CID 2, port 10809
//
// Schemes (case-insensitive): `nbd`, `nbds`, `nbd+tcp`, `nbds+tcp` (aliases
// of `nbd`/`nbds`), `nbd+unix`, `nbds+unix`, `nbd+vsock`, `nbds+vsock`. A
// scheme starting `nbds` requires TLS.
//
// Parsing follows RFC 3986 strictly: raw control characters, spaces,
// non-ASCII bytes and the characters `"<>\^`{|}` must be percent-encoded,
// every `%` must start a valid `%XX` escape, and a `#fragment` is rejected
// (encode a literal '#' as %23). The userinfo, host, path and query keys and
// values are percent-decoded. The export name is the decoded path without its
// leading '/': `nbd://h//disk` names the export "/disk" and `nbd://h` the
// empty export "". Query parameters are separated by '&'; '+' is not a space.
//
// Errors are absl::StatusCode::kInvalidArgument with a message naming the
// problem; they carry the errno EINVAL (ENAMETOOLONG for an export name
// longer than kMaxStringLength bytes) as a payload, readable with
// nbd::StatusErrno() (protocol/status.h).
#ifndef NBD_ADAPTERS_CONNECT_URI_H_
#define NBD_ADAPTERS_CONNECT_URI_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protocol/constants.h"
#include "protocol/tls_credentials.h"

namespace nbd::adapters {

// The IANA-assigned NBD port, the default for TCP and vsock URIs.
inline constexpr uint16_t kNbdDefaultPort = 10809;

struct NbdUri {
  enum Transport { kTcp, kUnix, kVsock };

  Transport transport = kTcp;

  // True for the `nbds*` schemes: the connection MUST use TLS.
  bool tls = false;

  // kTcp: the decoded host name or IP address, without the brackets of an
  // IPv6 literal (a zone is kept: "fe80::1%eth0"). Empty if the URI has no
  // host; ConnectUri() then uses "localhost".
  std::string host;

  // kTcp: the TCP port (1..65535).
  uint16_t port = kNbdDefaultPort;

  // kUnix: the decoded `socket=` parameter (required, non-empty). A leading
  // NUL byte names a socket in the Linux abstract namespace.
  std::string socket_path;

  // kVsock: the context id (authority host) and port.
  uint32_t vsock_cid = 0;
  uint32_t vsock_port = kNbdDefaultPort;

  // The decoded path without its leading '/'. Never contains NUL; at most
  // kMaxStringLength bytes (protocol/constants.h).
  std::string export_name;

  // The decoded userinfo (the TLS username), empty if absent.
  std::string tls_username;

  // Every decoded query parameter except `socket`, in URI order. The tls-*
  // ones are acted on by ApplyUriTls() for `nbds*` URIs; others (`x-*`,
  // anything unknown) are kept here and otherwise ignored.
  std::vector<std::pair<std::string, std::string>> query_params;

  // The value of the first query parameter named `key`, or nullptr.
  const std::string* FindQueryParam(std::string_view key) const;

  bool operator==(const NbdUri&) const = default;
};

// Parses an NBD URI. Besides the syntax rules above:
//   - the scheme must be one of those listed above;
//   - TCP: the port must be decimal in 1..65535 (an empty port means 10809);
//     an IPv6 host must be a bracketed literal that inet_pton accepts;
//   - Unix: `socket=` is required and non-empty, the authority must not name a
//     host or port (userinfo is allowed);
//   - vsock: the authority must be CID[:PORT], both decimal uint32; the CID is
//     required;
//   - `socket=` is only allowed for Unix URIs and at most once;
//   - the path must be empty or start with '/'; the export name must not
//     contain NUL and must be at most 4096 bytes (ENAMETOOLONG).
absl::StatusOr<NbdUri> ParseNbdUri(std::string_view uri);

// What a URI may ask for, for URIs that come from untrusted input (a
// config file, a web form, another program): libnbd's
// nbd_set_uri_allow_transports, nbd_set_uri_allow_tls and
// nbd_set_uri_allow_local_file, checked by CheckUriPolicy() before anything
// is connected or read. The defaults are libnbd's: every transport, nbd and
// nbds both, and no local files. A program whose URIs come from its own
// user (a command line, like nbdinfo's) can allow local files.
struct UriPolicy {
  enum TransportBit : uint32_t { kTcp = 1, kUnix = 2, kVsock = 4 };
  // Bits of TransportBit (libnbd: LIBNBD_ALLOW_TRANSPORT_TCP, _UNIX,
  // _VSOCK).
  uint32_t transports = kTcp | kUnix | kVsock;
  // As libnbd's LIBNBD_TLS_* values for nbd_set_uri_allow_tls: kAllow:
  // nbd* and nbds* schemes; kRequire: only nbds* (the URI must ask for
  // TLS); kDisable: only nbd* (a URI may not turn TLS on).
  enum class Tls { kDisable, kAllow, kRequire };
  Tls tls = Tls::kAllow;
  // Whether tls-certificates and tls-psk-file may name files (libnbd's
  // knob covers tls-psk-file only; a certificates directory is a local
  // file too, so both are refused here).
  bool local_files = false;

  // Everything allowed: for URIs the program's own user typed.
  static UriPolicy Trusted() {
    UriPolicy p;
    p.local_files = true;
    return p;
  }
};

// OK if `policy` allows everything `uri` asks for; else PermissionDenied
// (errno EPERM) saying what and which knob allows it.
absl::Status CheckUriPolicy(const NbdUri& uri, const UriPolicy& policy);

// Whether this library can connect to `uri`: OK, or InvalidArgument
// (EINVAL) for TLS query parameters it cannot honour (a tls-verify-peer
// that is not a boolean, a tls-type other than x509/psk, or tls-type=psk
// without tls-psk-file). ConnectUri() calls it first.
absl::Status CheckUriSupported(const NbdUri& uri);

// What an `nbds*` URI asks of TLS, applied over `credentials` (the
// caller's settings): tls-certificates, tls-psk-file, tls-verify-peer,
// tls-hostname, tls-priority; the userinfo as the PSK user name; for TCP
// the URI's host as the name the certificate must carry unless
// tls-hostname is given. Sets *require to true for `nbds*` schemes
// (plaintext is then never used). A plain `nbd*` URI changes nothing.
// Errors as CheckUriSupported.
absl::Status ApplyUriTls(const NbdUri& uri, bool* require,
                         TlsCredentials* credentials);

// Formats `uri` in canonical form: scheme `nbd`/`nbds` for TCP; the port is
// omitted when it is 10809; the `socket=` parameter comes first; everything
// that needs it is percent-encoded. For every NbdUri `u` that ParseNbdUri
// could have produced, ParseNbdUri(FormatNbdUri(u)) == u.
std::string FormatNbdUri(const NbdUri& uri);

// Percent-decodes `text` (RFC 3986; '+' stays '+'). InvalidArgument naming
// the offset of a '%' not followed by two hex digits.
absl::StatusOr<std::string> PercentDecode(std::string_view text);

// Percent-encodes every byte of `text` except the RFC 3986 unreserved
// characters (ALPHA DIGIT - . _ ~) and the bytes in `keep`.
std::string PercentEncode(std::string_view text, std::string_view keep = "");

}  // namespace nbd::adapters

#endif  // NBD_ADAPTERS_CONNECT_URI_H_
