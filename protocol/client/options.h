// Configuration of a client connection, fixed when the Client is built.
#ifndef NBD_PROTOCOL_CLIENT_OPTIONS_H_
#define NBD_PROTOCOL_CLIENT_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "protocol/constants.h"
#include "protocol/tls_credentials.h"

namespace nbd {

enum class TlsPolicy {
  kDisable,  // never send STARTTLS
  kAllow,    // try STARTTLS; continue in plaintext if the server refuses
  kRequire,  // STARTTLS must succeed; oldstyle and non-fixed servers refused
};

// Client-side request checks, like libnbd's strict mode. Each bit can be
// cleared so tests can send what a buggy client would.
inline constexpr uint32_t kStrictCommands = 1u << 0;  // unadvertised cmd/flag
inline constexpr uint32_t kStrictFlags = 1u << 1;     // unknown flag bits
inline constexpr uint32_t kStrictBounds = 1u << 2;    // past export end
inline constexpr uint32_t kStrictZeroSize = 1u << 3;  // zero length
inline constexpr uint32_t kStrictAlign = 1u << 4;     // block-size alignment
inline constexpr uint32_t kStrictPayload = 1u << 5;   // payload too large
// PAYLOAD_LEN is managed by the client (libnbd's LIBNBD_STRICT_AUTO_FLAG):
// Write() sets it exactly when extended headers are on, whatever the
// caller passed, since the spec says a WRITE MUST carry it then and must
// not without extended headers. Cleared, the caller's flags go out as
// given (other checks permitting), to test servers with a bad WRITE.
inline constexpr uint32_t kStrictAutoFlag = 1u << 6;
inline constexpr uint32_t kStrictAll = 0x7f;

struct ClientOptions {
  // Export to attach to (NBD_OPT_GO / EXPORT_NAME). At most 4096 bytes.
  std::string export_name;

  TlsPolicy tls = TlsPolicy::kDisable;
  // What the adapter's TLS layer authenticates with once STARTTLS is
  // acknowledged (the core itself never reads it).
  TlsCredentials tls_credentials;
  bool request_extended_headers = true;
  bool request_structured_replies = true;
  // Ask for base:allocation (plus `meta_contexts`) when structured replies
  // are negotiated.
  bool request_base_allocation = true;
  std::vector<std::string> meta_contexts;
  bool request_block_size = true;  // NBD_INFO_BLOCK_SIZE in GO
  bool full_info = true;           // NBD_INFO_NAME and _DESCRIPTION in GO

  // Stop after STARTTLS / EXTENDED_HEADERS / STRUCTURED_REPLY and wait for
  // Opt* calls (libnbd's opt_mode).
  bool option_mode = false;

  uint32_t strict = kStrictAll;
  // Largest READ/WRITE payload accepted by the kStrictPayload check.
  // Clamped to [1, kHardMaxPayload].
  uint32_t max_payload = kDefaultMaxPayload;

  // Peer-controlled sizes we accept before declaring the server dead.
  uint32_t max_option_reply_length = 64 * 1024;
  uint32_t max_block_status_extents = 1u << 20;

  // Bytes the zero-copy receive path may read ahead into the core's own
  // buffer while it waits for a reply header in the transmission phase.
  // 0 means "exactly the header", so READ payloads always land straight in
  // the caller's buffer at the price of one receive per header. Read-ahead
  // saves receives for small requests, but payload bytes that arrive with
  // a header are copied once.
  size_t recv_readahead = 0;

  // Queue a ClientTrace event for every protocol message sent or received and
  // every state change (like libnbd's debug output, but as events, so the
  // core still calls no user code). Off by default: it formats strings.
  bool trace = false;
};

}  // namespace nbd

#endif  // NBD_PROTOCOL_CLIENT_OPTIONS_H_
