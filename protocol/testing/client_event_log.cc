#include "protocol/testing/client_event_log.h"

#include <cstdint>
#include <string>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "protocol/names.h"
#include "protocol/testing/client_script.h"

namespace nbd::testing {

namespace {

// "GO", "READ": the names from protocol/names.h without their "NBD_OPT_" or
// "NBD_CMD_" prefix, which every line would otherwise repeat.
absl::string_view ShortOptionName(Option option) {
  return absl::StripPrefix(OptionName(option), "NBD_OPT_");
}

const char* ChunkKindName(ReadChunkKind kind) {
  switch (kind) {
    case ReadChunkKind::kData:
      return "data";
    case ReadChunkKind::kHole:
      return "hole";
    case ReadChunkKind::kError:
      return "error";
  }
  return "?";
}

// " tag=N" for a command event with a non-zero tag, "" otherwise, so lines
// of commands issued without a tag read as they always did.
std::string TagText(uint64_t tag) {
  return tag == 0 ? "" : absl::StrCat(" tag=", tag);
}

struct Formatter {
  std::string* message;

  std::string WithStatus(std::string prefix, const absl::Status& status) {
    *message = std::string(status.message());
    return absl::StrCat(prefix, StatusText(status));
  }

  std::string operator()(const Connected&) { return "Connected"; }
  std::string operator()(const Negotiating&) { return "Negotiating"; }
  std::string operator()(const ExportListed& e) {
    return absl::StrCat("ExportListed name=", e.name,
                        " description=", e.description);
  }
  std::string operator()(const MetaContextListed& e) {
    return absl::StrCat("MetaContextListed id=", e.context_id,
                        " name=", e.name);
  }
  std::string operator()(const OptionCompleted& e) {
    return WithStatus(
        absl::StrCat("OptionCompleted ", ShortOptionName(e.option), " "),
        e.status);
  }
  std::string operator()(const CommandCompleted& e) {
    return WithStatus(absl::StrCat("CommandCompleted cookie=", e.cookie, " ",
                                   ShortCommandName(e.command), " "),
                      e.status) +
           TagText(e.tag);
  }
  std::string operator()(const BlockStatusExtents& e) {
    std::string out = absl::StrCat(
        "BlockStatusExtents cookie=", e.cookie, " context=", e.context_id, ":",
        e.context_name, " offset=", e.offset, " extents=");
    for (size_t i = 0; i < e.extents.size(); ++i) {
      absl::StrAppend(&out, i ? "," : "", e.extents[i].length, "/",
                      e.extents[i].flags);
    }
    return out + TagText(e.tag);
  }
  std::string operator()(const ReadChunk& e) {
    std::string out =
        absl::StrCat("ReadChunk cookie=", e.cookie, " ", ChunkKindName(e.kind),
                     " offset=", e.offset, " length=", e.length);
    if (e.kind == ReadChunkKind::kError) {
      absl::StrAppend(&out, " error=", ErrnoName(e.error));
    }
    return out + TagText(e.tag);
  }
  std::string operator()(const StartTls&) { return "StartTls"; }
  std::string operator()(const ShutdownWrite&) { return "ShutdownWrite"; }
  std::string operator()(const ClientTrace& e) { return "Trace " + e.message; }
  std::string operator()(const ClientClosed&) { return "Closed"; }
  std::string operator()(const ClientDead& e) {
    return WithStatus("Dead ", e.reason);
  }
};

}  // namespace

absl::string_view ShortCommandName(Command command) {
  return absl::StripPrefix(CommandName(command), "NBD_CMD_");
}

std::string FormatEvent(const ClientEvent& event, std::string* message) {
  message->clear();
  return std::visit(Formatter{message}, event);
}

}  // namespace nbd::testing
