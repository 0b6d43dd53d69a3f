// Text and data helpers shared by the client and server kits: the names
// their logs use for errors, hex dumps for failure messages, and test data.
#ifndef NBD_PROTOCOL_TESTING_TEXT_H_
#define NBD_PROTOCOL_TESTING_TEXT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "protocol/wire.h"

namespace nbd::testing {

// "EIO", "ESHUTDOWN", ... for the errno values NBD uses; "ok" for 0;
// "errno=N" for any other.
std::string ErrnoName(int errno_value);
// "ok", or the ErrnoName() of the errno the status carries
// (protocol/status.h: StatusErrno).
std::string StatusText(const absl::Status& status);

// Lower-case hex of the first 64 bytes, "..." if there are more.
std::string Hex(ByteSpan bytes);

// `n` bytes of a recognisable pattern starting at `seed`: the same (n, seed)
// always gives the same bytes, different seeds give different bytes.
Bytes Pattern(size_t n, uint8_t seed = 1);

}  // namespace nbd::testing

#endif  // NBD_PROTOCOL_TESTING_TEXT_H_
