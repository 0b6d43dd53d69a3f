#include "protocol/testing/server_handshake.h"

#include <optional>
#include <utility>

#include "protocol/server/server.h"

namespace nbd::testing {
namespace {

// The export a name selects, as the session looks it up.
std::optional<size_t> FindExport(const ServerOptions& o,
                                 const std::string& name) {
  for (size_t i = 0; i < o.exports.size(); ++i) {
    if (o.exports[i].name == name) return i;
  }
  if (name.empty() && !o.exports.empty()) return o.default_export;
  return std::nullopt;
}

}  // namespace

ExportInfo CapableExport(std::string name, uint64_t size) {
  ExportInfo e;
  e.name = std::move(name);
  e.size = size;
  e.can_flush = e.can_fua = e.can_trim = e.can_zero = true;
  e.can_fast_zero = e.can_cache = e.can_multi_conn = true;
  return e;
}

ServerOptions ServingOnly(ExportInfo e) {
  ServerOptions o;
  o.exports = {std::move(e)};
  return o;
}

void AppendNegotiation(ServerScenario& s, const Negotiation& n) {
  const ServerOptions& o = s.options();
  s.Expect(ServerSends().Greeting().Nothing());
  ClientBytes first;
  first.Flags(n.client_flags);
  bool structured = false;
  bool extended = false;
  if (n.extended_headers) {
    s.Send(first.Opt(Option::kExtendedHeaders));
    if (o.allow_extended_headers) {
      s.Expect(ServerSends().RepAck(Option::kExtendedHeaders).Nothing());
      structured = extended = true;
    } else {
      s.Expect(
          ServerSends()
              .RepError(Option::kExtendedHeaders, OptionReplyType::kErrUnsup)
              .Nothing());
    }
    first = ClientBytes();
  }
  if (!extended && n.structured_replies) {
    s.Send(first.Opt(Option::kStructuredReply));
    if (o.allow_structured_replies) {
      s.Expect(ServerSends().RepAck(Option::kStructuredReply).Nothing());
      structured = true;
    } else {
      s.Expect(
          ServerSends()
              .RepError(Option::kStructuredReply, OptionReplyType::kErrUnsup)
              .Nothing());
    }
    first = ClientBytes();
  }
  const std::optional<size_t> index = FindExport(o, n.export_name);
  if (n.base_allocation) {
    s.Send(first.OptMeta(Option::kSetMetaContext, n.export_name,
                         {kContextBaseAllocation}));
    ServerSends reply;
    if (!structured) {
      reply.RepError(Option::kSetMetaContext, OptionReplyType::kErrInvalid);
    } else if (!index.has_value()) {
      reply.RepError(Option::kSetMetaContext, OptionReplyType::kErrUnknown);
    } else {
      if (o.exports[*index].can_block_status) {
        reply.RepMetaContext(Option::kSetMetaContext, kBaseAllocationContextId,
                             kContextBaseAllocation);
      }
      reply.RepAck(Option::kSetMetaContext);
    }
    s.Expect(std::move(reply.Nothing()));
    first = ClientBytes();
  }
  s.Send(first.OptInfoRequest(Option::kGo, n.export_name));
  ServerSends go;
  if (!index.has_value()) {
    go.RepError(Option::kGo, OptionReplyType::kErrUnknown);
  } else {
    const ExportInfo& e = o.exports[*index];
    go.RepInfoExport(Option::kGo, e.size, TransmissionFlags(e, structured))
        .RepInfoBlockSize(Option::kGo, e.min_block, e.preferred_block,
                          e.max_block)
        .RepAck(Option::kGo);
  }
  s.Expect(std::move(go.Nothing()));
}

ServerScenario NegotiatedScenario(ServerOptions options,
                                  const Negotiation& negotiation) {
  ServerScenario s(std::move(options));
  AppendNegotiation(s, negotiation);
  return s;
}

}  // namespace nbd::testing
