#include "adapters/engine/internal/link.h"

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "protocol/status.h"

namespace nbd::engine::internal {

const char* CommandLabel(Command command) {
  switch (command) {
    case Command::kRead:
      return "read";
    case Command::kWrite:
      return "write";
    case Command::kFlush:
      return "flush";
    case Command::kTrim:
      return "trim";
    case Command::kCache:
      return "cache";
    case Command::kWriteZeroes:
      return "write-zeroes";
    case Command::kBlockStatus:
      return "block-status";
    default:
      return "command";
  }
}

std::string Describe(Command command, uint64_t offset) {
  if (command == Command::kFlush) return CommandLabel(command);
  return absl::StrCat(CommandLabel(command), " at offset ", offset);
}

absl::Status NoReplyStatus(absl::Duration timeout) {
  return ErrnoStatus(ETIMEDOUT, absl::StrCat("no reply from the server for ",
                                             absl::FormatDuration(timeout)));
}

bool IsTimeout(const absl::Status& s) {
  return s.code() == absl::StatusCode::kDeadlineExceeded &&
         StatusErrno(s) == ETIMEDOUT;
}

}  // namespace nbd::engine::internal
