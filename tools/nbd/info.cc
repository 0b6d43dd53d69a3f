// `nbd info URI [--json] [--list]`: what nbdinfo shows.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "adapters/blocking/blocking_client.h"
#include "adapters/connect/uri.h"
#include "protocol/client/client.h"
#include "tools/nbd/args.h"
#include "tools/nbd/command.h"
#include "tools/nbd/connect_blocking.h"
#include "tools/nbd/diag.h"
#include "tools/nbd/json.h"
#include "tools/nbd/usage.h"

namespace nbd::tool {
namespace {

struct ExportReport {
  std::string name;
  std::string description;
  std::string uri;
  uint64_t size = 0;
  std::vector<std::string> contexts;
  bool is_rotational = false;
  bool is_read_only = false;
  bool can_cache = false;
  bool can_df = false;
  bool can_fast_zero = false;
  bool can_flush = false;
  bool can_fua = false;
  bool can_multi_conn = false;
  bool can_trim = false;
  bool can_zero = false;
  BlockSizeConstraints block_size;
};

struct Report {
  std::string protocol;
  bool tls = false;
  bool structured_replies = false;
  bool extended_headers = false;
  std::vector<ExportReport> exports;
};

// "4M" for exact multiples of a binary unit, else the byte count.
std::string HumanSize(uint64_t size) {
  static const char kUnits[] = "KMGTPE";
  int unit = -1;
  while (unit < 5 && size != 0 && size % 1024 == 0) {
    size /= 1024;
    ++unit;
  }
  if (unit < 0) return absl::StrCat(size);
  return absl::StrCat(size, std::string(1, kUnits[unit]));
}

std::string ExportUri(const std::string& uri, const std::string& name) {
  absl::StatusOr<adapters::NbdUri> parsed = adapters::ParseNbdUri(uri);
  if (!parsed.ok()) return uri;
  parsed->export_name = name;
  return adapters::FormatNbdUri(*parsed);
}

// The contexts the server offers for the current export (empty if it
// cannot say: no structured replies, or it refuses the option).
std::vector<std::string> ListContexts(adapters::BlockingClient& client,
                                      const GlobalOptions& g) {
  std::vector<std::string> out;
  if (client.client().phase() != ClientPhase::kNegotiating ||
      !client.client().structured_replies()) {
    for (const MetaContext& m : client.client().meta_contexts()) {
      out.push_back(m.name);
    }
    return out;
  }
  absl::StatusOr<std::vector<MetaContext>> listed =
      client.OptListMetaContext({}, g.timeout);
  if (!listed.ok()) {
    Debug(g, absl::StrCat("<- NBD_OPT_LIST_META_CONTEXT failed: ",
                          StatusText(listed.status())));
    return out;
  }
  for (const MetaContext& m : *listed) out.push_back(m.name);
  return out;
}

ExportReport Describe(const Client& c, std::string name, std::string uri,
                      std::vector<std::string> contexts) {
  ExportReport e;
  e.name = std::move(name);
  e.uri = std::move(uri);
  e.description = c.description();
  e.size = c.export_size().value_or(0);
  e.contexts = std::move(contexts);
  if (e.contexts.empty()) {
    for (const MetaContext& m : c.meta_contexts()) e.contexts.push_back(m.name);
  }
  e.is_rotational = c.is_rotational();
  e.is_read_only = c.is_read_only();
  e.can_cache = c.can_cache();
  e.can_df = c.can_df();
  e.can_fast_zero = c.can_fast_zero();
  e.can_flush = c.can_flush();
  e.can_fua = c.can_fua();
  e.can_multi_conn = c.can_multi_conn();
  e.can_trim = c.can_trim();
  e.can_zero = c.can_zero();
  e.block_size = c.block_size();
  return e;
}

void PrintText(const Report& r) {
  std::printf("protocol: %s %s TLS, using %s packets\n", r.protocol.c_str(),
              r.tls ? "with" : "without",
              r.extended_headers     ? "extended"
              : r.structured_replies ? "structured"
                                     : "simple");
  for (const ExportReport& e : r.exports) {
    std::printf("export=%s:\n", JsonString(e.name).c_str());
    std::printf("\texport-size: %llu (%s)\n",
                static_cast<unsigned long long>(e.size),  // NOLINT
                HumanSize(e.size).c_str());
    if (!e.description.empty()) {
      std::printf("\tdescription: %s\n", e.description.c_str());
    }
    std::printf("\turi: %s\n", e.uri.c_str());
    if (!e.contexts.empty()) {
      std::printf("\tcontexts:\n");
      for (const std::string& c : e.contexts)
        std::printf("\t\t%s\n", c.c_str());
    }
    const std::pair<const char*, bool> flags[] = {
        {"is_rotational", e.is_rotational},
        {"is_read_only", e.is_read_only},
        {"can_cache", e.can_cache},
        {"can_df", e.can_df},
        {"can_fast_zero", e.can_fast_zero},
        {"can_flush", e.can_flush},
        {"can_fua", e.can_fua},
        {"can_multi_conn", e.can_multi_conn},
        {"can_trim", e.can_trim},
        {"can_zero", e.can_zero},
    };
    for (const auto& [name, value] : flags) {
      std::printf("\t%s: %s\n", name, JsonBool(value));
    }
    if (e.block_size.minimum != 0) {
      std::printf("\tblock_size_minimum: %u\n", e.block_size.minimum);
      std::printf("\tblock_size_preferred: %u\n", e.block_size.preferred);
      std::printf("\tblock_size_maximum: %u\n", e.block_size.maximum);
    }
  }
}

void PrintJson(const Report& r) {
  std::string out = "{\n";
  absl::StrAppend(&out, "\"protocol\": ", JsonString(r.protocol), ",\n");
  absl::StrAppend(&out, "\"TLS\": ", JsonBool(r.tls), ",\n");
  absl::StrAppend(&out, "\"structured\": ", JsonBool(r.structured_replies),
                  ",\n");
  absl::StrAppend(
      &out, "\"structured_replies\": ", JsonBool(r.structured_replies), ",\n");
  absl::StrAppend(&out, "\"extended_headers\": ", JsonBool(r.extended_headers),
                  ",\n");
  out += "\"exports\": [";
  for (size_t i = 0; i < r.exports.size(); ++i) {
    const ExportReport& e = r.exports[i];
    out += i == 0 ? "\n\t{\n" : ",\n\t{\n";
    absl::StrAppend(&out, "\t\"export-name\": ", JsonString(e.name), ",\n");
    if (!e.description.empty()) {
      absl::StrAppend(&out, "\t\"description\": ", JsonString(e.description),
                      ",\n");
    }
    absl::StrAppend(&out, "\t\"uri\": ", JsonString(e.uri), ",\n");
    std::vector<std::string> quoted;
    for (const std::string& c : e.contexts) quoted.push_back(JsonString(c));
    absl::StrAppend(
        &out, "\t\"contexts\": [",
        quoted.empty()
            ? ""
            : absl::StrCat("\n\t\t", absl::StrJoin(quoted, ",\n\t\t"), "\n\t"),
        "],\n");
    const std::pair<const char*, bool> flags[] = {
        {"is_rotational", e.is_rotational},
        {"is_read_only", e.is_read_only},
        {"can_cache", e.can_cache},
        {"can_df", e.can_df},
        {"can_fast_zero", e.can_fast_zero},
        {"can_flush", e.can_flush},
        {"can_fua", e.can_fua},
        {"can_multi_conn", e.can_multi_conn},
        {"can_trim", e.can_trim},
        {"can_zero", e.can_zero},
    };
    for (const auto& [name, value] : flags) {
      absl::StrAppend(&out, "\t\"", name, "\": ", JsonBool(value), ",\n");
    }
    if (e.block_size.minimum != 0) {
      absl::StrAppend(&out, "\t\"block_size_minimum\": ", e.block_size.minimum,
                      ",\n\t\"block_size_preferred\": ", e.block_size.preferred,
                      ",\n\t\"block_size_maximum\": ", e.block_size.maximum,
                      ",\n");
    }
    absl::StrAppend(&out, "\t\"export-size\": ", e.size, ",\n");
    absl::StrAppend(&out,
                    "\t\"export-size-str\": ", JsonString(HumanSize(e.size)),
                    "\n\t}");
  }
  out += " ]\n}\n";
  std::fputs(out.c_str(), stdout);
}

// Fills `report` with every export the server lists (like nbdinfo --list).
absl::Status ListExports(adapters::BlockingClient& client,
                         const std::string& uri, const GlobalOptions& g,
                         Report* report) {
  if (client.client().phase() != ClientPhase::kNegotiating) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the server (", ProtocolVariantName(client.client().protocol()),
        " protocol) has no option mode: cannot list exports"));
  }
  absl::StatusOr<std::vector<adapters::ExportEntry>> entries =
      client.OptList(g.timeout);
  if (!entries.ok()) {
    return absl::Status(
        entries.status().code(),
        absl::StrCat("NBD_OPT_LIST: ", StatusText(entries.status())));
  }
  for (const adapters::ExportEntry& entry : *entries) {
    if (absl::Status s = client.SetExportName(entry.name); !s.ok()) return s;
    std::vector<std::string> contexts = ListContexts(client, g);
    if (absl::Status s = client.OptInfo(g.timeout); !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("NBD_OPT_INFO for export \"", entry.name,
                                       "\": ", StatusText(s)));
    }
    ExportReport e = Describe(client.client(), entry.name,
                              ExportUri(uri, entry.name), std::move(contexts));
    if (e.description.empty()) e.description = entry.description;
    report->exports.push_back(std::move(e));
  }
  return absl::OkStatus();
}

}  // namespace

int InfoCommand(const std::vector<std::string>& args, const GlobalOptions& g) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(args, "info");
  if (!parsed.ok()) {
    return UsageError(parsed.status().message(), UsageFor("info"));
  }
  if (parsed->positional.size() != 1) {
    return UsageError("info: expected one URI", UsageFor("info"));
  }
  const std::string& uri = parsed->positional[0];
  const bool list = parsed->Has("--list");
  auto fail = [&](const absl::Status& s) {
    return Fail(Describe("info", uri, s));
  };

  ClientOptions options;
  options.option_mode = true;
  absl::StatusOr<std::unique_ptr<adapters::BlockingClient>> client =
      ConnectBlocking(uri, options, g);
  if (!client.ok()) return fail(client.status());
  adapters::BlockingClient& bc = **client;

  Report report;
  if (list) {
    if (absl::Status s = ListExports(bc, uri, g, &report); !s.ok()) {
      return fail(s);
    }
  } else {
    std::vector<std::string> contexts = ListContexts(bc, g);
    if (bc.client().phase() == ClientPhase::kNegotiating) {
      if (absl::Status s = bc.OptGo(g.timeout); !s.ok()) {
        return fail(absl::Status(
            s.code(),
            absl::StrCat("NBD_OPT_GO for export \"", bc.client().export_name(),
                         "\": ", StatusText(s))));
      }
    }
    report.exports.push_back(Describe(bc.client(), bc.client().export_name(),
                                      uri, std::move(contexts)));
  }
  const Client& c = bc.client();
  report.protocol = ProtocolVariantName(c.protocol());
  report.tls = c.tls_negotiated();
  report.structured_replies = c.structured_replies();
  report.extended_headers = c.extended_headers();
  DisconnectBlocking(bc, g);

  if (parsed->Has("--json")) {
    PrintJson(report);
  } else {
    PrintText(report);
  }
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace nbd::tool
