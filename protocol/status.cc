#include "protocol/status.h"

#include <cerrno>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "protocol/constants.h"

namespace nbd {
namespace {

constexpr char kErrnoPayloadUrl[] = "nbd-engine/errno";

absl::StatusCode CodeForErrno(int e) {
  switch (e) {
    case EINVAL:
    case ENAMETOOLONG:
      return absl::StatusCode::kInvalidArgument;
    case ENOTCONN:
    case ESHUTDOWN:
      return absl::StatusCode::kUnavailable;
    case ENOTSUP:
      return absl::StatusCode::kUnimplemented;
    case ERANGE:
    case EOVERFLOW:
      return absl::StatusCode::kOutOfRange;
    case ENOSPC:
    case ENOMEM:
      return absl::StatusCode::kResourceExhausted;
    case EPERM:
      return absl::StatusCode::kPermissionDenied;
    case ENOENT:
      return absl::StatusCode::kNotFound;
    case EPROTO:
      return absl::StatusCode::kDataLoss;
    case ETIMEDOUT:
      return absl::StatusCode::kDeadlineExceeded;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

absl::Status ErrnoStatus(int errno_value, absl::string_view message) {
  if (errno_value == 0) errno_value = EIO;
  return WithErrno(absl::Status(CodeForErrno(errno_value), message),
                   errno_value);
}

absl::Status WithErrno(absl::Status status, int errno_value) {
  if (!status.ok()) {
    status.SetPayload(kErrnoPayloadUrl,
                      absl::Cord(std::to_string(errno_value)));
  }
  return status;
}

absl::Status PreconditionStatus(int errno_value, absl::string_view message) {
  return WithErrno(absl::Status(absl::StatusCode::kFailedPrecondition, message),
                   errno_value);
}

int StatusErrno(const absl::Status& status) {
  if (status.ok()) return 0;
  auto payload = status.GetPayload(kErrnoPayloadUrl);
  int value = 0;
  if (payload.has_value() && absl::SimpleAtoi(std::string(*payload), &value) &&
      value > 0) {
    return value;
  }
  return EIO;
}

int NbdErrorToErrno(uint32_t nbd_error) {
  switch (static_cast<NbdError>(nbd_error)) {
    case NbdError::kOk:
      return 0;
    case NbdError::kPerm:
      return EPERM;
    case NbdError::kIo:
      return EIO;
    case NbdError::kNoMem:
      return ENOMEM;
    case NbdError::kInval:
      return EINVAL;
    case NbdError::kNoSpc:
      return ENOSPC;
    case NbdError::kOverflow:
      return EOVERFLOW;
    case NbdError::kNotSup:
      return ENOTSUP;
    case NbdError::kShutdown:
      return ESHUTDOWN;
  }
  return EINVAL;
}

uint32_t ErrnoToNbdError(int errno_value) {
  switch (errno_value) {
    case 0:
      return 0;
    case EPERM:
      return static_cast<uint32_t>(NbdError::kPerm);
    case EIO:
      return static_cast<uint32_t>(NbdError::kIo);
    case ENOMEM:
      return static_cast<uint32_t>(NbdError::kNoMem);
    case ENOSPC:
    case EFBIG:
      return static_cast<uint32_t>(NbdError::kNoSpc);
    case EOVERFLOW:
      return static_cast<uint32_t>(NbdError::kOverflow);
    case ENOTSUP:
      return static_cast<uint32_t>(NbdError::kNotSup);
    case ESHUTDOWN:
      return static_cast<uint32_t>(NbdError::kShutdown);
    default:
      return static_cast<uint32_t>(NbdError::kInval);
  }
}

}  // namespace nbd
