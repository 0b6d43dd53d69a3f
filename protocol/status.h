// Errors produced by the protocol core.
//
// Every non-OK absl::Status that the core returns or reports carries an
// errno-like value (the way libnbd reports `nbd_get_errno()`), attached as a
// payload, so callers can branch on it without parsing messages:
//
//   ENOTCONN  the connection is gone (closed or dead) before the command
//             completed, or the call was made before the connection exists.
//   EINVAL    the call is not allowed now (wrong phase, after a disconnect),
//             a bad argument, or an unknown server error value.
//   ENOTSUP   the server did not advertise the command or flag.
//   ERANGE    the payload is larger than allowed.
//   ENOSPC    a write-like request runs past the end of the export.
//   EPERM     a write to a read-only export.
//   EPROTO    the server broke the protocol for this one command.
//   EOVERFLOW a value does not fit (e.g. an export size above INT64_MAX).
//   ENAMETOOLONG a string above 4096 bytes.
//   ... or the errno the server sent (EIO, ENOSPC, ESHUTDOWN, ...).
#ifndef NBD_PROTOCOL_STATUS_H_
#define NBD_PROTOCOL_STATUS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace nbd {

// A status with the canonical code that best matches `errno_value` and the
// errno attached. `errno_value` must be non-zero.
absl::Status ErrnoStatus(int errno_value, absl::string_view message);

// `status` (if not OK) with `errno_value` attached.
absl::Status WithErrno(absl::Status status, int errno_value);

// A FailedPrecondition status (a call made in the wrong phase) carrying
// `errno_value`.
absl::Status PreconditionStatus(int errno_value, absl::string_view message);

// The errno attached to `status`: 0 for OK, the attached value if there is
// one, otherwise EIO.
int StatusErrno(const absl::Status& status);

// Maps an NBD error value from the wire to an errno. Unknown values become
// EINVAL, as the spec asks. 0 stays 0.
int NbdErrorToErrno(uint32_t nbd_error);

// The NBD wire value for an errno (for servers). Unknown values become EINVAL.
uint32_t ErrnoToNbdError(int errno_value);

}  // namespace nbd

#endif  // NBD_PROTOCOL_STATUS_H_
