// Names and per-command rules from the spec, shared by the client and server
// cores (so both sides agree on which flag belongs to which command).
#ifndef NBD_PROTOCOL_NAMES_H_
#define NBD_PROTOCOL_NAMES_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "protocol/constants.h"

namespace nbd {

// "NBD_CMD_READ", "NBD_OPT_GO", ...; unknown values give "NBD_CMD_?" etc.
const char* CommandName(Command command);
const char* OptionName(Option option);
// "NBD_REP_ACK", "NBD_REP_ERR_UNSUP", ...; "NBD_REP_?" if unknown.
const char* OptionReplyName(uint32_t type);
// "NBD_REPLY_TYPE_OFFSET_DATA", ...; "NBD_REPLY_TYPE_?" if unknown.
const char* ChunkTypeName(uint16_t type);
// "NBD_INFO_EXPORT", ...; "NBD_INFO_?" if unknown.
const char* InfoTypeName(uint16_t type);
// A peer-supplied string (export name, message) for a trace line: in double
// quotes, control and non-ASCII bytes escaped. Shared by both cores' traces.
std::string QuotedForTrace(absl::string_view s);

// The command flags that mean something for `command` (proto.md "Request
// message"): DF for READ; FUA and PAYLOAD_LEN for WRITE; FUA for TRIM;
// FUA, NO_HOLE and FAST_ZERO for WRITE_ZEROES; REQ_ONE for BLOCK_STATUS.
uint16_t AllowedCommandFlags(Command command);

// WRITE, TRIM and WRITE_ZEROES change the export: refused on read-only
// exports, and out-of-bounds requests fail with ENOSPC rather than EINVAL.
bool IsWriteLikeCommand(Command command);

}  // namespace nbd

#endif  // NBD_PROTOCOL_NAMES_H_
