#include "protocol/testing/text.h"

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "protocol/status.h"

namespace nbd::testing {

std::string ErrnoName(int errno_value) {
  switch (errno_value) {
    case 0:
      return "ok";
    case EPERM:
      return "EPERM";
    case ENOENT:
      return "ENOENT";
    case EIO:
      return "EIO";
    case ENOMEM:
      return "ENOMEM";
    case EINVAL:
      return "EINVAL";
    case ENOSPC:
      return "ENOSPC";
    case ERANGE:
      return "ERANGE";
    case ENAMETOOLONG:
      return "ENAMETOOLONG";
    case EPROTO:
      return "EPROTO";
    case EOVERFLOW:
      return "EOVERFLOW";
    case ENOTSUP:
      return "ENOTSUP";
    case ECONNRESET:
      return "ECONNRESET";
    case ENOTCONN:
      return "ENOTCONN";
    case ESHUTDOWN:
      return "ESHUTDOWN";
    case EPIPE:
      return "EPIPE";
    default:
      return absl::StrCat("errno=", errno_value);
  }
}

std::string StatusText(const absl::Status& status) {
  if (status.ok()) return "ok";
  return ErrnoName(StatusErrno(status));
}

std::string Hex(ByteSpan bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < 64; ++i) {
    absl::StrAppend(&out, absl::StrFormat("%02x", bytes[i]));
  }
  if (bytes.size() > 64) absl::StrAppend(&out, "...");
  return out;
}

Bytes Pattern(size_t n, uint8_t seed) {
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 8));
  }
  return out;
}

}  // namespace nbd::testing
