// The simulation's configuration, from the seed or the cut scenario, and
// how a failure is reported.
#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "protocol/status.h"
#include "tests/sim/simulation.h"

namespace nbd::sim::internal {

// ---- Setup ------------------------------------------------------------------

void Simulation::AddConn(ClientOptions copts, ServerOptions sopts) {
  auto c = std::make_unique<Conn>();
  c->id = static_cast<int>(conns_.size());
  c->copts = copts;
  c->sopts = sopts;
  // Like libnbd, the client asks for extended headers only together with
  // structured replies.
  c->extended = copts.request_extended_headers &&
                copts.request_structured_replies &&
                sopts.allow_extended_headers;
  c->structured = c->extended || (copts.request_structured_replies &&
                                  sopts.allow_structured_replies);
  c->block_status = c->structured && copts.request_base_allocation &&
                    export_.info.can_block_status;
  Conn* raw = c.get();
  c->s2c = std::make_unique<ServerStreamObserver>(
      [raw](uint64_t cookie) -> std::optional<uint64_t> {
        auto it = raw->cmds.find(cookie);
        if (it == raw->cmds.end() || it->second.type != Command::kRead) {
          return std::nullopt;
        }
        return it->second.length;
      });
  c->pair = std::make_unique<InMemoryPair>(std::move(copts), std::move(sopts),
                                           *backend_);
  c->pair->set_auto_serve(false);
  c->pair->set_tap([raw](Stream s, absl::Span<const uint8_t> bytes) {
    if (s == Stream::kClientToServer) {
      raw->c2s.Add(bytes);
    } else {
      raw->s2c->Add(bytes);
    }
  });
  Log(absl::StrFormat(
      "conn%d: client extended=%d structured=%d base_allocation=%d "
      "block_size=%d max_payload=%d readahead=%d trace=%d strict=0x%x "
      "option_mode=%d; server "
      "allow_extended=%d allow_structured=%d max_in_flight=%d "
      "high_water=%d reply_sent=%d trace=%d",
      c->id, c->copts.request_extended_headers,
      c->copts.request_structured_replies, c->copts.request_base_allocation,
      c->copts.request_block_size, c->copts.max_payload,
      c->copts.recv_readahead, c->copts.trace, c->copts.strict,
      c->copts.option_mode, c->sopts.allow_extended_headers,
      c->sopts.allow_structured_replies, c->sopts.max_in_flight,
      c->sopts.output_high_water, c->sopts.report_reply_sent, c->sopts.trace));
  conns_.push_back(std::move(c));
}

void Simulation::ConfigureRandom() {
  ExportInfo& e = export_.info;
  e.name = kExportName;
  e.min_block = Pick<uint32_t>({1, 1, 1, 512, 4096});
  e.preferred_block = std::max<uint32_t>(e.min_block, 4096);
  e.max_block = Pick<uint32_t>(
      {kDefaultMaxPayload, kDefaultMaxPayload, 65536, 1u << 20, 16384});
  e.max_block = std::max(e.max_block, e.min_block);
  uint64_t size = Pick<uint64_t>({64 << 10, 256 << 10, 1 << 20, 4 << 20});
  size += R(4) * 4096 + (e.min_block == 1 ? R(2) * R(4096) : 0);
  export_.size = size / e.min_block * e.min_block;
  export_.page_size = Pick<size_t>({512, 4096, 65536});
  e.size = export_.size;
  e.read_only = P(1, 10);
  e.can_flush = P(8, 10);
  e.can_fua = P(8, 10);
  e.can_trim = P(8, 10);
  e.can_zero = P(8, 10);
  e.can_fast_zero = P(8, 10);
  e.can_cache = P(8, 10);
  e.can_multi_conn = P(8, 10);
  e.can_df = P(8, 10);
  e.can_block_status = P(9, 10);
  backend_ = std::make_unique<MemoryBackend>(export_.size, export_.page_size,
                                             e.read_only);
  model_.assign(export_.size, 0);

  switch (R(4)) {
    case 0:  // clean: no faults, a clean end
      break;
    case 1:  // backend errors only
      fault_per_mille_ = 20 + R(200);
      break;
    case 2:  // broken streams
      cuts_ = true;
      break;
    default:  // everything
      fault_per_mille_ = 20 + R(150);
      cuts_ = true;
      break;
  }
  invalid_per_mille_ = P(1, 2) ? 10 + R(50) : 0;
  max_commands_in_flight_ = Pick<uint64_t>({1, 4, 16, 64, 200});
  actions_ = 200 + R(1500);

  const size_t n = P(1, 2) ? 1 : 2 + R(3);
  for (size_t i = 0; i < n; ++i) {
    ClientOptions co;
    co.export_name = kExportName;
    co.request_extended_headers = P(7, 10);
    co.request_structured_replies = P(8, 10);
    co.request_base_allocation = P(8, 10);
    co.request_block_size = P(8, 10);
    co.full_info = P(1, 2);
    co.max_payload = Pick<uint32_t>({kDefaultMaxPayload, 65536, 1u << 20});
    co.recv_readahead = Pick<size_t>({0, 0, 1, 16, 4096});
    co.trace = P(1, 10);
    // Some clients check nothing, so invalid requests reach the session;
    // they still set PAYLOAD_LEN on extended WRITEs (kStrictAutoFlag), since
    // a WRITE without it is not a request but a desynchronised stream.
    if (P(1, 5)) co.strict = kStrictAutoFlag;
    co.option_mode = P(1, 5);
    ServerOptions so;
    so.exports.push_back(e);
    so.allow_extended_headers = P(8, 10);
    so.allow_structured_replies = P(9, 10);
    so.max_in_flight = Pick<size_t>({1, 2, 3, 8, 64});
    so.output_high_water = Pick<size_t>({64, 4096, 65536, 16u << 20});
    so.report_reply_sent = P(1, 2);
    so.trace = P(1, 10);
    AddConn(std::move(co), std::move(so));
    Conn& c = *conns_.back();
    c.options_left = static_cast<int>(R(7));
    // Some connections end early, by Disconnect()/Shutdown() or a cut.
    if (P(1, 3)) c.end_action = R(actions_);
    if (cuts_ && P(3, 4)) {
      for (uint64_t k = 0, m = 1 + R(2); k < m; ++k) {
        c.cut_actions.push_back(R(actions_));
      }
    }
  }
  Log(absl::StrFormat(
      "export size=%d page=%d min=%d max=%d ro=%d flush=%d fua=%d trim=%d "
      "zero=%d fast_zero=%d cache=%d df=%d bs=%d; faults=%d/1000 "
      "cuts=%d invalid=%d/1000 actions=%d",
      export_.size, export_.page_size, e.min_block, e.max_block, e.read_only,
      e.can_flush, e.can_fua, e.can_trim, e.can_zero, e.can_fast_zero,
      e.can_cache, e.can_df, e.can_block_status, fault_per_mille_, cuts_,
      invalid_per_mille_, actions_));
}

void Simulation::ConfigureCut() {
  ExportInfo& e = export_.info;
  e.name = kExportName;
  export_.size = 256 << 10;
  export_.page_size = 4096;
  e.size = export_.size;
  e.can_flush = e.can_fua = e.can_trim = e.can_zero = e.can_fast_zero = true;
  e.can_cache = e.can_multi_conn = true;
  backend_ = std::make_unique<MemoryBackend>(export_.size, export_.page_size);
  model_.assign(export_.size, 0);
  ClientOptions co;
  co.export_name = kExportName;
  co.request_extended_headers = cut_->extended;
  co.request_structured_replies = cut_->structured;
  ServerOptions so;
  so.exports.push_back(e);
  so.report_reply_sent = true;
  AddConn(std::move(co), std::move(so));
  conns_[0]->pair->BreakAt(cut_->cut, cut_->offset,
                           cut_->transport_error
                               ? ErrnoStatus(ECONNRESET, "injected reset")
                               : absl::OkStatus());
  conns_[0]->cuts = cut_->offset == UINT64_MAX ? 0 : 1;
}

// ---- Failures ---------------------------------------------------------------

std::string Simulation::DescribeConn(Conn& c) {
  InMemoryPair& p = *c.pair;
  return absl::StrFormat(
      "conn%d: client %s (%s), server %s (%s); c2s sent %d delivered %d; "
      "s2c sent %d delivered %d; %d command(s), client in flight %d, "
      "server in flight %d, held %d",
      c.id, ClientPhaseName(c.client().phase()), Str(c.client().dead_reason()),
      ServerPhaseName(c.server().phase()), Str(c.server().dead_reason()),
      p.sent(Stream::kClientToServer), p.delivered(Stream::kClientToServer),
      p.sent(Stream::kServerToClient), p.delivered(Stream::kServerToClient),
      c.cmds.size(), c.client().in_flight(), c.server().in_flight(),
      p.held_requests().size());
}

void Simulation::Fail(Conn* c, std::string what) {
  if (failed_) return;
  failed_ = true;
  std::string text = absl::StrFormat("action %d: ", action_);
  if (c != nullptr) absl::StrAppend(&text, "conn", c->id, ": ");
  absl::StrAppend(&text, what);
  for (auto& conn : conns_) absl::StrAppend(&text, "\n  ", DescribeConn(*conn));
  result_.ok = false;
  result_.failure = text;
  Log("FAIL " + text);
}

}  // namespace nbd::sim::internal
