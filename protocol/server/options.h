// What a server session offers: the exports and the per-connection limits.
// Plain values, fixed when the ServerSession is built.
#ifndef NBD_PROTOCOL_SERVER_OPTIONS_H_
#define NBD_PROTOCOL_SERVER_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "protocol/constants.h"
#include "protocol/tls_credentials.h"

namespace nbd {

// One export. `flags` below become NBD transmission flags; write-type
// capabilities are not advertised for a read-only export, DF only once
// structured replies are negotiated, FAST_ZERO only with WRITE_ZEROES.
struct ExportInfo {
  std::string name;         // at most 4096 bytes
  std::string description;  // at most 4096 bytes; sent as NBD_INFO_DESCRIPTION
  uint64_t size = 0;        // at most INT64_MAX
  bool read_only = false;
  bool can_flush = false;
  bool can_fua = false;
  bool can_trim = false;
  bool can_zero = false;
  bool can_fast_zero = false;
  bool can_cache = false;
  bool can_multi_conn = false;
  bool can_df = true;  // unfragmented structured reads
  bool rotational = false;
  // Allocation status (base:allocation) may be negotiated.
  bool can_block_status = true;
  // NBD_INFO_BLOCK_SIZE. `max_block` is also the largest READ/WRITE payload
  // the session accepts (larger ones fail with EOVERFLOW).
  uint32_t min_block = kDefaultMinBlockSize;
  uint32_t preferred_block = kDefaultPreferredBlockSize;
  uint32_t max_block = kDefaultMaxPayload;
};

// The NBD transmission flags a session advertises for `e`.
uint16_t TransmissionFlags(const ExportInfo& e, bool structured_replies);

// Whether the session offers TLS (NBD_OPT_STARTTLS), in nbdkit's --tls terms
// and the spec's server modes.
enum class ServerTlsMode {
  // NOTLS: STARTTLS is answered NBD_REP_ERR_UNSUP; everything is plaintext.
  kOff,
  // SELECTIVETLS with no TLS-only export (nbdkit --tls=on): a client may
  // upgrade with STARTTLS or stay in plaintext.
  kOn,
  // FORCEDTLS (nbdkit --tls=require): before STARTTLS every option but
  // STARTTLS and ABORT is answered NBD_REP_ERR_TLS_REQD, and
  // NBD_OPT_EXPORT_NAME (which has no error reply) drops the connection. A
  // client that does not speak fixed newstyle cannot do STARTTLS and is
  // dropped after its flags.
  kRequire,
};
const char* ServerTlsModeName(ServerTlsMode mode);

struct ServerOptions {
  // Exports by name. A client asking for "" gets `exports[default_export]`
  // unless an export is really named "". Must not be empty.
  std::vector<ExportInfo> exports;
  size_t default_export = 0;

  bool allow_list = true;                // NBD_OPT_LIST (else ERR_POLICY)
  bool allow_structured_replies = true;  // else ERR_UNSUP
  bool allow_extended_headers = true;    // else ERR_UNSUP

  // ---- TLS -------------------------------------------------------------
  // With kOn or kRequire the session acknowledges NBD_OPT_STARTTLS, raises
  // ServerStartTls once the acknowledgement has left its output, and waits
  // for TlsHandshakeDone() (server.h). The session itself never touches
  // TLS: `tls_credentials` is carried for the adapter's TLS layer
  // (adapters/tls; server side: certificates_dir with server-cert.pem and
  // server-key.pem, or psk_file, and require_client_certificate).
  ServerTlsMode tls = ServerTlsMode::kOff;
  TlsCredentials tls_credentials;

  // ---- Bounds on what the client controls -------------------------------
  // Largest option payload read into memory. Longer options are skipped
  // without being stored and answered NBD_REP_ERR_TOO_BIG (a too-long
  // NBD_OPT_EXPORT_NAME, which has no error reply, drops the connection).
  uint32_t max_option_length = 64 * 1024;
  // Options per connection before the session gives up (hard disconnect).
  uint32_t max_options = 1024;
  // Requests handed to the embedder and not yet replied. While the limit is
  // reached the session stops reading (wants() drops kRead).
  size_t max_in_flight = 64;
  // While the pending output takes more memory than this, the session
  // reads no new message (it finishes the current one): backpressure, so a
  // client that does not read its replies cannot grow the server's memory.
  // Counted are the bytes plus about 170 bytes of bookkeeping per queued
  // segment (a reply is one to three), so many small replies count for the
  // memory they take, not just for their bytes. The queue can exceed it by
  // the replies to the requests in flight when it was crossed (at most
  // max_in_flight; one for an embedder that answers each request as it
  // comes, like adapters/server's EpollServer).
  size_t output_high_water = 16u << 20;
  // A request payload (compact: a WRITE's; extended: any PAYLOAD_LEN one)
  // above the export's max_block but at most this long is read and
  // discarded, and the request fails with EOVERFLOW; a longer one drops
  // the connection (the spec's hard disconnect for oversized payloads; it
  // says lengths up to 2^25 SHOULD NOT be treated so, hence 64 MiB). Under
  // extended headers a WRITE without PAYLOAD_LEN has no payload at all: it
  // fails with EINVAL and the next bytes are the next request.
  uint64_t max_discard_payload = kHardMaxPayload;

  // Queue a ReplySent event once the last byte of each reply handed to the
  // embedder has been consumed (for embedders that lend read buffers without
  // a keepalive).
  bool report_reply_sent = false;

  // Queue a ServerTrace event for every option, option reply, request and
  // reply chunk, and every state change (server_events.h has the format),
  // like nbdkit's debug output but as events, so the session still calls
  // no user code. Off by default: it formats strings.
  bool trace = false;
};

}  // namespace nbd

#endif  // NBD_PROTOCOL_SERVER_OPTIONS_H_
