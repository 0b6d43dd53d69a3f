// Private helpers: statuses for failed system calls and bad arguments, with
// the errno attached through protocol/status.h (nbd::WithErrno), so
// nbd::StatusErrno() reads it.
#ifndef NBD_ADAPTERS_CONNECT_ERRNO_STATUS_H_
#define NBD_ADAPTERS_CONNECT_ERRNO_STATUS_H_

#include <string_view>

#include "absl/status/status.h"

namespace nbd::adapters::internal {

// A status for a failed system call: the canonical code for `errno_value`,
// the message "<context>: <strerror(errno_value)>", and the errno attached.
// An errno_value of 0 is treated as EIO.
absl::Status SystemError(int errno_value, absl::string_view context);

// kInvalidArgument with `message` and `errno_value` (default EINVAL).
absl::Status InvalidArgument(absl::string_view message, int errno_value = 0);

}  // namespace nbd::adapters::internal

#endif  // NBD_ADAPTERS_CONNECT_ERRNO_STATUS_H_
