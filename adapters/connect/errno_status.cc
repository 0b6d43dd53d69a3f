#include "adapters/connect/errno_status.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "adapters/connect/connect.h"
#include "protocol/status.h"

namespace nbd::adapters {
namespace internal {

absl::Status WithErrno(absl::Status status, int errno_value) {
  return nbd::WithErrno(std::move(status), errno_value);
}

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

}  // namespace internal

int ErrnoFromStatus(const absl::Status& status) {
  return nbd::StatusErrno(status);
}

}  // namespace nbd::adapters
