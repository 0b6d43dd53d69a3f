#include "adapters/engine/internal/link.h"

#include <cerrno>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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

absl::Status EndRefusal(const Client& client, bool disconnect, uint32_t flags) {
  const ClientCall call =
      disconnect ? ClientCall::kDisconnect : ClientCall::kShutdown;
  const ClientCallState state = client.call_state();
  // Worded as the core words them (Client::Impl::Check, Shutdown()).
  if (!ClientCallAllowed(call, state)) {
    return PreconditionStatus(
        EINVAL, absl::StrCat(ClientCallName(call), ": not allowed when ",
                             ClientCallStateName(state)));
  }
  if (!disconnect && (flags & ~kShutdownAbandonPending) != 0) {
    return ErrnoStatus(EINVAL,
                       absl::StrFormat("Shutdown: unknown flags 0x%x", flags));
  }
  return absl::OkStatus();
}

absl::Status Named(const absl::Status& status, std::string_view name) {
  absl::Status out(status.code(),
                   absl::StrCat(absl::string_view(name.data(), name.size()),
                                ": ", status.message()));
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& value) {
    out.SetPayload(url, value);
  });
  return out;
}

Op RangeOp(Command command, uint64_t offset, uint64_t length, uint16_t flags) {
  Op op;
  op.command = command;
  op.offset = offset;
  op.length = length;
  op.flags = flags;
  return op;
}

Op ReadOp(uint64_t offset, absl::Span<uint8_t> buffer, uint16_t flags) {
  Op op = RangeOp(Command::kRead, offset, buffer.size(), flags);
  op.read_buffer = buffer;
  return op;
}

Op WriteOp(uint64_t offset, absl::Span<const uint8_t> data, uint16_t flags) {
  Op op = RangeOp(Command::kWrite, offset, data.size(), flags);
  op.write_data = data;
  return op;
}

Op WithDone(Op op, Done done) {
  op.done = std::move(done);
  return op;
}

Op WithExtentsDone(Op op, ExtentsDone done) {
  op.extents_done = std::move(done);
  return op;
}

Op WithTag(Op op, Tag tag) {
  op.tagged = true;
  op.tag = tag.value;
  return op;
}

bool IsTimeout(const absl::Status& s) {
  return s.code() == absl::StatusCode::kDeadlineExceeded &&
         StatusErrno(s) == ETIMEDOUT;
}

}  // namespace nbd::engine::internal
