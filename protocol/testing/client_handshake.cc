#include "protocol/testing/client_handshake.h"

#include <utility>

namespace nbd::testing {

std::vector<uint16_t> ExpectedGoInfos(const ClientOptions& options) {
  std::vector<uint16_t> infos;
  if (options.request_block_size) {
    infos.push_back(static_cast<uint16_t>(InfoType::kBlockSize));
  }
  if (options.full_info) {
    infos.push_back(static_cast<uint16_t>(InfoType::kName));
    infos.push_back(static_cast<uint16_t>(InfoType::kDescription));
  }
  return infos;
}

std::vector<std::string> ExpectedMetaQueries(const ClientOptions& options) {
  std::vector<std::string> queries;
  if (options.request_base_allocation) {
    queries.push_back(kContextBaseAllocation);
  }
  for (const std::string& q : options.meta_contexts) queries.push_back(q);
  return queries;
}

void AppendInfoReplies(Server& server, Option option,
                       const HandshakeSpec& spec) {
  server.RepInfoExport(option, spec.size, spec.transmission_flags);
  if (spec.block_size) {
    server.RepInfoBlockSize(option, spec.block_size->minimum,
                            spec.block_size->preferred,
                            spec.block_size->maximum);
  }
  if (!spec.canonical_name.empty()) {
    server.RepInfoName(option, spec.canonical_name);
  }
  if (!spec.description.empty()) {
    server.RepInfoDescription(option, spec.description);
  }
  server.RepAck(option);
}

bool AppendHandshakeUntilGo(Scenario& s, const HandshakeSpec& spec) {
  const ClientOptions& o = s.options();
  uint32_t client_flags = kClientFlagFixedNewstyle;
  if (spec.handshake_flags & kFlagNoZeroes) {
    client_flags |= kClientFlagNoZeroes;
  }
  s.Send(Server().Greeting(spec.handshake_flags));
  ClientSends first;
  first.Flags(client_flags);

  // Each option is checked before its reply, then nothing more: the client
  // must not send the next option before the final reply to this one.
  bool structured = false;
  bool extended = false;
  // libnbd ignores request_extended_headers when structured replies are off.
  if (o.request_extended_headers && o.request_structured_replies) {
    s.Expect(first.Opt(Option::kExtendedHeaders).Nothing());
    if (spec.ack_extended_headers) {
      s.Send(Server().RepAck(Option::kExtendedHeaders));
      structured = extended = true;
    } else {
      s.Send(Server().RepError(Option::kExtendedHeaders,
                               OptionReplyType::kErrUnsup));
    }
    first = ClientSends();
  }
  if (!structured && o.request_structured_replies) {
    s.Expect(first.Opt(Option::kStructuredReply).Nothing());
    if (spec.ack_structured_replies) {
      s.Send(Server().RepAck(Option::kStructuredReply));
      structured = true;
    } else {
      s.Send(Server().RepError(Option::kStructuredReply,
                               OptionReplyType::kErrUnsup));
    }
    first = ClientSends();
  }
  std::vector<std::string> queries = ExpectedMetaQueries(o);
  if (structured && !queries.empty()) {
    s.Expect(first.OptMeta(Option::kSetMetaContext, o.export_name, queries)
                 .Nothing());
    Server reply;
    for (const MetaContext& c : spec.contexts) {
      reply.RepMetaContext(Option::kSetMetaContext, c.id, c.name);
    }
    s.Send(std::move(reply.RepAck(Option::kSetMetaContext)));
    first = ClientSends();
  }
  s.Expect(first.OptInfoRequest(Option::kGo, o.export_name, ExpectedGoInfos(o))
               .Nothing());
  // Requests and chunks use 32-byte headers from the GO's ACK on.
  s.Context([extended](RunContext& ctx) { ctx.extended = extended; });
  return extended;
}

void AppendHandshake(Scenario& s, const HandshakeSpec& spec) {
  AppendHandshakeUntilGo(s, spec);
  Server go;
  AppendInfoReplies(go, Option::kGo, spec);
  s.Send(std::move(go));
  s.Expect(ClientSends().Nothing());
}

Scenario ScenarioUntilGo(ClientOptions options, const HandshakeSpec& spec) {
  Scenario s(std::move(options));
  AppendHandshakeUntilGo(s, spec);
  return s;
}

Scenario ConnectedScenario(ClientOptions options, const HandshakeSpec& spec) {
  Scenario s(std::move(options));
  AppendHandshake(s, spec);
  return s;
}

}  // namespace nbd::testing
