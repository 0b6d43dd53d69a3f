#include "adapters/connect/errno_status.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "protocol/status.h"

namespace nbd::adapters::internal {

absl::Status SystemError(int errno_value, absl::string_view context) {
  if (errno_value == 0) errno_value = EIO;
  char buffer[256];
  // GNU strerror_r: returns a pointer to the message (maybe not `buffer`).
  const char* text = strerror_r(errno_value, buffer, sizeof(buffer));
  return WithErrno(absl::Status(absl::ErrnoToStatusCode(errno_value),
                                absl::StrCat(context, ": ", text)),
                   errno_value);
}

absl::Status InvalidArgument(absl::string_view message, int errno_value) {
  return WithErrno(absl::InvalidArgumentError(message),
                   errno_value == 0 ? EINVAL : errno_value);
}

}  // namespace nbd::adapters::internal
