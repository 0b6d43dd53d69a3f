// The handshake of a well-behaved client, as ServerScenario steps, with the
// session's answers checked exactly.
//
// The scripted client negotiates the way nbd::Client does by default, one
// option at a time, each answer checked before the next option is sent:
//   greeting <- ; client flags ->
//   [EXTENDED_HEADERS -> ACK | ERR_UNSUP]
//   [STRUCTURED_REPLY -> ACK | ERR_UNSUP]  (skipped when EH was acked)
//   [SET_META_CONTEXT base:allocation -> META_CONTEXT + ACK]
//   GO -> INFO export, INFO block size, ACK
// The expected answers are computed from the scenario's ServerOptions (the
// export's size, TransmissionFlags(), block sizes, allow_* switches), so
// the helper works for any options; the log gains the line
// "TransmissionStarted export=<i> structured=<0|1> extended=<0|1>".
#ifndef NBD_PROTOCOL_TESTING_SERVER_HANDSHAKE_H_
#define NBD_PROTOCOL_TESTING_SERVER_HANDSHAKE_H_

#include <cstdint>
#include <string>

#include "protocol/constants.h"
#include "protocol/server/options.h"
#include "protocol/testing/server_script.h"

namespace nbd::testing {

// What the scripted client asks for.
struct Negotiation {
  std::string export_name;  // "" selects the server's default export
  uint32_t client_flags = kClientFlagFixedNewstyle | kClientFlagNoZeroes;
  bool extended_headers = false;   // NBD_OPT_EXTENDED_HEADERS first
  bool structured_replies = true;  // NBD_OPT_STRUCTURED_REPLY
  bool base_allocation = false;    // NBD_OPT_SET_META_CONTEXT base:allocation
};

// An export of `size` bytes that can do everything: flush, FUA, trim,
// write zeroes, fast zero, cache, multi-conn, DF, block status.
ExportInfo CapableExport(std::string name = "", uint64_t size = 1 << 20);
// Options that serve `e` only, with every other field at its default.
ServerOptions ServingOnly(ExportInfo e = CapableExport());

// Appends the checked handshake above; `scenario` must have no steps yet.
void AppendNegotiation(ServerScenario& scenario,
                       const Negotiation& negotiation = {});

// A scenario that starts with AppendNegotiation().
ServerScenario NegotiatedScenario(ServerOptions options = ServingOnly(),
                                  const Negotiation& negotiation = {});

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_SERVER_HANDSHAKE_H_
