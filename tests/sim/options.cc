// The simulation in option mode: Opt*() calls and their completions.
#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "protocol/names.h"
#include "protocol/status.h"
#include "tests/sim/simulation.h"

namespace nbd::sim::internal {

// ---- Option mode ------------------------------------------------------------

void Simulation::OnOptionCompleted(Conn& c, const OptionCompleted& e) {
  if (!c.pending_option.has_value() || *c.pending_option != e.option) {
    return Fail(&c, absl::StrCat("OptionCompleted for ", OptionName(e.option),
                                 " without that option pending"));
  }
  const Option option = *c.pending_option;
  c.pending_option.reset();
  const int err = StatusErrno(e.status);
  if (verbose()) {
    Log(absl::StrFormat("conn%d: <- option %s: %s", c.id, OptionName(option),
                        Str(e.status)));
  }
  if (err == ENOTCONN) return;  // the connection ended under it
  const bool known = c.export_name == kExportName || c.export_name.empty();
  int want = -1;  // -1: not checked
  switch (option) {
    case Option::kList:
      want = 0;
      if (c.exports_listed != 1) {
        return Fail(&c, absl::StrCat(c.exports_listed, " exports listed"));
      }
      break;
    case Option::kInfo:
    case Option::kGo:
      want = known ? 0 : ENOENT;
      break;
    case Option::kStructuredReply:
      if (!c.sopts.allow_structured_replies) want = ENOTSUP;
      break;
    case Option::kExtendedHeaders:
      if (!c.sopts.allow_extended_headers) want = ENOTSUP;
      break;
    default:
      break;
  }
  if (want >= 0 && err != want) {
    return Fail(&c, absl::StrFormat("option %s completed with %s, expected "
                                    "errno %d",
                                    OptionName(option), Str(e.status), want));
  }
  if ((option == Option::kStructuredReply ||
       option == Option::kExtendedHeaders) &&
      err == 0) {
    c.renegotiated = true;
  }
  if (option == Option::kGo && err == 0) c.go_ok = true;
  if (option != Option::kGo || err != 0) c.parked = true;
}

// One step of option mode: an option, or OptGo() once enough were done.
void Simulation::OptionStep(Conn& c) {
  Client& cl = c.client();
  if (!c.parked || c.pending_option || c.disconnect_called || Ended(cl)) {
    return;
  }
  Option option;
  absl::Status s;
  if (c.options_left > 0) {
    --c.options_left;
    switch (R(7)) {
      case 0:
        option = Option::kList;
        c.exports_listed = 0;
        s = cl.OptList();
        break;
      case 1: {
        c.export_name = Pick<const char*>({kExportName, "", "nope"});
        if (absl::Status n = cl.SetExportName(c.export_name); !n.ok()) {
          return Fail(&c, absl::StrCat("SetExportName: ", Str(n)));
        }
        option = Option::kInfo;
        s = cl.OptInfo();
        break;
      }
      case 2:
        option = Option::kInfo;
        s = cl.OptInfo();
        break;
      case 3:
        option = Option::kListMetaContext;
        s = cl.OptListMetaContext(
            P(1, 2) ? std::vector<std::string>{}
                    : std::vector<std::string>{kContextBaseAllocation});
        break;
      case 4:
        option = Option::kSetMetaContext;
        s = cl.OptSetMetaContext({kContextBaseAllocation});
        if (!cl.structured_replies()) {
          // Refused by the client itself without structured replies.
          if (s.ok() || !absl::IsFailedPrecondition(s)) {
            Fail(&c, absl::StrCat("OptSetMetaContext() without structured "
                                  "replies gave ",
                                  Str(s)));
          }
          return;
        }
        break;
      case 5:
        option = Option::kStructuredReply;
        s = cl.OptStructuredReply();
        break;
      default:
        option = Option::kExtendedHeaders;
        s = cl.OptExtendedHeaders();
        break;
    }
  } else if (P(1, 10)) {
    s = cl.OptAbort();
    Log(absl::StrFormat("conn%d: OptAbort() -> %s", c.id, Str(s)));
    if (!s.ok()) return Fail(&c, absl::StrCat("OptAbort() refused: ", Str(s)));
    c.shutdown_in_handshake = true;
    c.disconnect_called = true;
    c.parked = false;
    return;
  } else {
    if (c.export_name == "nope") {
      c.export_name = kExportName;
      if (absl::Status n = cl.SetExportName(c.export_name); !n.ok()) {
        return Fail(&c, absl::StrCat("SetExportName: ", Str(n)));
      }
    }
    option = Option::kGo;
    s = cl.OptGo();
  }
  Log(absl::StrFormat("conn%d: Opt %s (export \"%s\") -> %s", c.id,
                      OptionName(option), c.export_name, Str(s)));
  if (!s.ok()) {
    return Fail(&c, absl::StrCat(OptionName(option),
                                 " refused while parked: ", Str(s)));
  }
  c.parked = false;
  c.pending_option = option;
  // One option at a time: the next call is refused and changes nothing.
  if (P(1, 4)) {
    absl::Status again = cl.OptList();
    if (again.ok() || !absl::IsFailedPrecondition(again)) {
      Fail(&c, absl::StrCat("OptList() with an option in flight gave ",
                            Str(again)));
    }
  }
}

}  // namespace nbd::sim::internal
