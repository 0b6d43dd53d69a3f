#include "adapters/engine/internal/link.h"

#include <cerrno>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "protocol/names.h"
#include "protocol/status.h"

namespace nbd::engine::internal {

std::string CommandLabel(Command command) {
  // CommandName() (protocol/names.h) in the lower-case, dashed form of the
  // tool's messages: "NBD_CMD_WRITE_ZEROES" -> "write-zeroes".
  return absl::StrReplaceAll(absl::AsciiStrToLower(absl::StripPrefix(
                                 CommandName(command), "NBD_CMD_")),
                             {{"_", "-"}});
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
