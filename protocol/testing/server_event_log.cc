#include "protocol/testing/server_event_log.h"

#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "protocol/names.h"
#include "protocol/testing/text.h"

namespace nbd::testing {
namespace {

struct Formatter {
  const ServerRunContext& ctx;
  std::string* message;

  std::string operator()(const TransmissionStarted& e) {
    return absl::StrCat("TransmissionStarted export=", e.export_index,
                        " structured=", e.structured_replies ? 1 : 0,
                        " extended=", e.extended_headers ? 1 : 0);
  }
  std::string operator()(const ServerRequest& e) {
    std::string out =
        absl::StrCat("Request ", ctx.NameOf(e.cookie), " ",
                     absl::StripPrefix(CommandName(e.command), "NBD_CMD_"),
                     " offset=", e.offset, " length=", e.length);
    if (e.flags != 0)
      absl::StrAppend(&out, absl::StrFormat(" flags=0x%x", e.flags));
    if (!e.payload.empty())
      absl::StrAppend(&out, " payload=", e.payload.size());
    return out;
  }
  std::string operator()(const ReplySent& e) {
    auto it = ctx.handles.find(e.handle);
    return absl::StrCat("ReplySent ", it == ctx.handles.end()
                                          ? absl::StrCat("handle=", e.handle)
                                          : it->second);
  }
  std::string operator()(const ServerStartTls&) { return "StartTls"; }
  std::string operator()(const ServerTrace& e) { return "Trace " + e.message; }
  std::string operator()(const ServerClosed&) { return "Closed"; }
  std::string operator()(const ServerDead& e) {
    *message = std::string(e.reason.message());
    return absl::StrCat("Dead ", StatusText(e.reason));
  }
};

}  // namespace

std::string FormatServerEvent(const ServerEvent& event,
                              const ServerRunContext& ctx,
                              std::string* message) {
  message->clear();
  return std::visit(Formatter{ctx, message}, event);
}

}  // namespace nbd::testing
