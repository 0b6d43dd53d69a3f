// nbd::ServerSession protocol trace: the lines for received options and
// requests, option replies and the start of transmission. Reply chunks and
// state changes are traced where they are queued (replies.cc,
// server.cc), since only there are their details at hand.
//
// Everything here runs only when tracing() is true.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "protocol/names.h"
#include "protocol/server/internal/impl.h"
#include "protocol/wire.h"

namespace nbd {

// Unknown options keep their number, so the trace still says what came.
std::string server_internal::OptionLabel(uint32_t option) {
  const char* name = OptionName(static_cast<Option>(option));
  if (absl::string_view(name) != "NBD_OPT_?") return name;
  return absl::StrFormat("NBD_OPT_? (%d)", option);
}

namespace {

using server_internal::OptionLabel;

}  // namespace

void ServerSession::Impl::TraceLine(std::string line) {
  events_.push_back(ServerTrace{std::move(line)});
}

void ServerSession::Impl::TraceOption(uint32_t option,
                                      absl::Span<const uint8_t> data) {
  std::string line = absl::StrCat("<- ", OptionLabel(option));
  switch (static_cast<Option>(option)) {
    case Option::kExportName:
      absl::StrAppend(
          &line, " ",
          QuotedForTrace(absl::string_view(
              reinterpret_cast<const char*>(data.data()), data.size())));
      return TraceLine(std::move(line));
    case Option::kInfo:
    case Option::kGo:
      if (absl::StatusOr<InfoRequest> r = DecodeInfoRequest(data); r.ok()) {
        std::vector<std::string> infos;
        for (uint16_t type : r->info_requests) {
          infos.push_back(InfoTypeName(type));
        }
        absl::StrAppend(&line, " export=", QuotedForTrace(r->export_name),
                        " info=[", absl::StrJoin(infos, ", "), "]");
        return TraceLine(std::move(line));
      }
      break;
    case Option::kListMetaContext:
    case Option::kSetMetaContext:
      if (absl::StatusOr<MetaContextRequest> r = DecodeMetaContextRequest(data);
          r.ok()) {
        std::vector<std::string> queries;
        for (const std::string& q : r->queries)
          queries.push_back(QuotedForTrace(q));
        absl::StrAppend(&line, " export=", QuotedForTrace(r->export_name),
                        " queries=[", absl::StrJoin(queries, ", "), "]");
        return TraceLine(std::move(line));
      }
      break;
    default:
      break;
  }
  // Options without data, and data that does not decode (the reply says
  // why): only the size.
  if (!data.empty()) absl::StrAppend(&line, ", ", data.size(), " bytes");
  TraceLine(std::move(line));
}

void ServerSession::Impl::TraceOptionReply(uint32_t option,
                                           OptionReplyType type,
                                           size_t length) {
  TraceLine(absl::StrFormat("-> %s to %s, %d bytes",
                            OptionReplyName(static_cast<uint32_t>(type)),
                            OptionLabel(option), length));
}

void ServerSession::Impl::TraceRequest(const ServerRequest& r) {
  const char* name = CommandName(r.command);
  std::string label =
      absl::string_view(name) != "NBD_CMD_?"
          ? std::string(name)
          : absl::StrFormat("NBD_CMD_? (%d)", static_cast<uint16_t>(r.command));
  TraceLine(absl::StrFormat("<- %s cookie=%d offset=%d length=%d flags=0x%x",
                            label, r.cookie, r.offset, r.length, r.flags));
}

void ServerSession::Impl::TraceTransmission() {
  const ExportInfo& e = opts_.exports[*export_];
  TraceLine(
      absl::StrFormat("transmission: export %s size=%d flags=0x%x, %s, %s",
                      QuotedForTrace(e.name), e.size, tflags_,
                      extended_     ? "extended headers"
                      : structured_ ? "structured replies"
                                    : "simple replies",
                      meta_base_allocation_ ? "meta context base:allocation"
                                            : "no meta context"));
}

}  // namespace nbd
