#include "tools/nbd/diag.h"

#include <cstdio>
#include <string>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace nbd::tool {
namespace {

std::string OneLine(std::string_view text) {
  return absl::StrReplaceAll(text, {{"\r\n", " "}, {"\n", " "}, {"\r", " "}});
}

}  // namespace

const char* OptionName(Option option) {
  switch (option) {
    case Option::kExportName: return "NBD_OPT_EXPORT_NAME";
    case Option::kAbort: return "NBD_OPT_ABORT";
    case Option::kList: return "NBD_OPT_LIST";
    case Option::kPeekExport: return "NBD_OPT_PEEK_EXPORT";
    case Option::kStartTls: return "NBD_OPT_STARTTLS";
    case Option::kInfo: return "NBD_OPT_INFO";
    case Option::kGo: return "NBD_OPT_GO";
    case Option::kStructuredReply: return "NBD_OPT_STRUCTURED_REPLY";
    case Option::kListMetaContext: return "NBD_OPT_LIST_META_CONTEXT";
    case Option::kSetMetaContext: return "NBD_OPT_SET_META_CONTEXT";
    case Option::kExtendedHeaders: return "NBD_OPT_EXTENDED_HEADERS";
  }
  return "NBD_OPT_?";
}

const char* CommandName(Command command) {
  switch (command) {
    case Command::kRead: return "NBD_CMD_READ";
    case Command::kWrite: return "NBD_CMD_WRITE";
    case Command::kDisc: return "NBD_CMD_DISC";
    case Command::kFlush: return "NBD_CMD_FLUSH";
    case Command::kTrim: return "NBD_CMD_TRIM";
    case Command::kCache: return "NBD_CMD_CACHE";
    case Command::kWriteZeroes: return "NBD_CMD_WRITE_ZEROES";
    case Command::kBlockStatus: return "NBD_CMD_BLOCK_STATUS";
    case Command::kResize: return "NBD_CMD_RESIZE";
  }
  return "NBD_CMD_?";
}

int Fail(std::string_view message) {
  std::fprintf(stderr, "nbd: %s\n", OneLine(message).c_str());
  std::fflush(stderr);
  return kExitError;
}

int UsageError(std::string_view message, std::string_view usage) {
  std::fprintf(stderr, "nbd: %s\n%s", OneLine(message).c_str(),
               std::string(usage).c_str());
  std::fflush(stderr);
  return kExitUsage;
}

std::string StatusText(const absl::Status& status) {
  if (status.message().empty()) {
    return std::string(absl::StatusCodeToString(status.code()));
  }
  return std::string(status.message());
}

void Debug(const GlobalOptions& g, std::string_view message) {
  if (!g.debug) return;
  std::fprintf(stderr, "nbd: debug: %s\n", OneLine(message).c_str());
  std::fflush(stderr);
}

std::string DescribeEvent(const Event& event) {
  struct Visitor {
    std::string operator()(const Connected&) { return "event Connected"; }
    std::string operator()(const Negotiating&) { return "event Negotiating"; }
    std::string operator()(const ExportListed& e) {
      return absl::StrCat("event ExportListed name=\"", e.name, "\"");
    }
    std::string operator()(const MetaContextListed& e) {
      return absl::StrCat("event MetaContextListed id=", e.context_id,
                          " name=", e.name);
    }
    std::string operator()(const OptionCompleted& e) {
      return absl::StrCat("event OptionCompleted option=",
                          static_cast<uint32_t>(e.option),
                          " status=", e.status.ToString());
    }
    std::string operator()(const CommandCompleted& e) {
      return absl::StrCat("event CommandCompleted cookie=", e.cookie,
                          " command=", CommandName(e.command),
                          " status=", e.status.ToString());
    }
    std::string operator()(const BlockStatusExtents& e) {
      return absl::StrCat("event BlockStatusExtents cookie=", e.cookie,
                          " context=", e.context_name, " offset=", e.offset,
                          " extents=", e.extents.size());
    }
    std::string operator()(const ReadChunk& e) {
      return absl::StrCat("event ReadChunk cookie=", e.cookie,
                          " offset=", e.offset, " length=", e.length);
    }
    std::string operator()(const StartTls&) { return "event StartTls"; }
    std::string operator()(const ShutdownWrite&) {
      return "event ShutdownWrite";
    }
    std::string operator()(const Closed&) { return "event Closed"; }
    std::string operator()(const Dead& e) {
      return absl::StrCat("event Dead reason=", e.reason.ToString());
    }
  };
  return std::visit(Visitor{}, event);
}

}  // namespace nbd::tool
