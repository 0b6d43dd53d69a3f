#include "tests/sim/sim.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"
#include "adapters/server/backend.h"
#include "adapters/server/memory_backend.h"
#include "adapters/testing/in_memory_pair.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/names.h"
#include "protocol/server/server.h"
#include "protocol/status.h"
#include "tests/sim/wire_observer.h"

namespace nbd::sim {
namespace {

constexpr char kExportName[] = "sim";
constexpr uint8_t kPoison = 0xa5;  // read buffers start with it

// The errno a client sees for a backend errno, as the spec and the server
// map it: the NBD error values pass, EROFS is EPERM, EFBIG is ENOSPC,
// anything else EINVAL.
int WireErrno(int e) {
  switch (e) {
    case EPERM:
    case EIO:
    case ENOMEM:
    case EINVAL:
    case ENOSPC:
    case EOVERFLOW:
    case ENOTSUP:
    case ESHUTDOWN:
      return e;
    case EROFS:
      return EPERM;
    case EFBIG:
      return ENOSPC;
    default:
      return EINVAL;
  }
}

bool Ended(const Client& c) {
  return c.phase() == ClientPhase::kClosed || c.phase() == ClientPhase::kDead;
}
bool Ended(const ServerSession& s) {
  return s.phase() == ServerPhase::kClosed || s.phase() == ServerPhase::kDead;
}

// Byte loops are slow in the unoptimized default build; these are not.
bool AllZero(const uint8_t* p, size_t n) {
  return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}
bool SameBytes(const uint8_t* a, const uint8_t* b, size_t n) {
  return n == 0 || std::memcmp(a, b, n) == 0;
}

std::string Str(const absl::Status& s) {
  if (s.ok()) return "OK";
  return absl::StrCat("errno ", StatusErrno(s), " (", s.message(), ")");
}

// One command as the simulation issued it, and what became of it.
struct Cmd {
  Cookie cookie = 0;
  uint64_t tag = 0;
  Command type = Command::kRead;
  uint16_t flags = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  bool report_chunks = false;
  std::unique_ptr<std::vector<uint8_t>> buffer;  // READ
  std::vector<uint8_t> data;                     // WRITE

  // Server side.
  bool seen = false;
  bool executed = false;
  bool faulted = false;
  int fault_errno = 0;
  int rejected = 0;  // the errno the session itself must answer with
  uint64_t read_before = 0;
  std::vector<uint8_t> snapshot;  // READ/BLOCK_STATUS: the model then

  // Client side.
  bool completed = false;
  absl::Status status;
  size_t completion_event = 0;  // index in the client's event log
  uint64_t chunk_bytes = 0;     // data + hole bytes reported
  std::vector<std::pair<uint64_t, uint64_t>> chunk_ranges;
  std::vector<ReadChunk> error_chunks;
  size_t extents_events = 0;
};

// The export, its block sizes and what it advertises.
struct ExportSetup {
  uint64_t size = 0;
  size_t page_size = MemoryBackend::kDefaultPageSize;
  ExportInfo info;
};

struct Conn {
  int id = 0;
  ClientOptions copts;
  ServerOptions sopts;
  std::unique_ptr<InMemoryPair> pair;
  std::map<Cookie, Cmd> cmds;
  size_t client_seen = 0;  // events checked so far
  size_t server_seen = 0;
  ClientStreamObserver c2s;
  std::unique_ptr<ServerStreamObserver> s2c;

  // Expected negotiation.
  bool structured = false;
  bool extended = false;
  bool block_status = false;

  bool connected = false;
  bool transmission_started = false;
  bool disconnect_called = false;  // Disconnect() or Shutdown() accepted
  bool abandon_called = false;
  bool shutdown_in_handshake = false;  // or NBD_OPT_ABORT (OptAbort)

  // Option mode (ClientOptions::option_mode).
  bool parked = false;  // Opt*() calls are allowed
  std::optional<Option> pending_option;
  int options_left = 0;                   // before OptGo()
  std::string export_name = kExportName;  // as set by SetExportName()
  size_t exports_listed = 0;
  bool renegotiated = false;  // OptStructuredReply/OptExtendedHeaders OK
  bool go_ok = false;         // OptGo() completed OK
  std::set<RequestHandle> replies_sent;
  bool eshutdown = false;  // a request was failed with ESHUTDOWN
  bool shutdown_write = false;
  size_t cuts = 0;
  // Actions at which this connection is cut, or shut down (scheduled by
  // ConfigureRandom()).
  std::vector<uint64_t> cut_actions;
  std::optional<uint64_t> end_action;
  bool client_ended = false;
  bool server_ended = false;
  size_t client_end_event = 0;
  bool final_checked = false;

  Client& client() { return pair->client(); }
  ServerSession& server() { return pair->server(); }
};

class Simulation {
 public:
  Simulation(const SimOptions& options, std::optional<CutScenario> cut)
      : opts_(options), cut_(cut), rng_(options.seed) {
    log_ = options.log != nullptr ? options.log : &std::cerr;
  }

  SimResult Run();

 private:
  // ---- Randomness ----------------------------------------------------------
  uint64_t R(uint64_t n) { return n <= 1 ? 0 : rng_() % n; }
  bool P(uint64_t num, uint64_t den) { return R(den) < num; }
  template <typename T>
  T Pick(std::initializer_list<T> v) {
    return *(v.begin() + R(v.size()));
  }

  // ---- Setup ---------------------------------------------------------------
  void ConfigureRandom();
  void ConfigureCut();
  void AddConn(ClientOptions copts, ServerOptions sopts);

  // ---- Actions -------------------------------------------------------------
  void RandomAction();
  void IssueRandomCommand(Conn& c);
  void IssueInvalidCommand(Conn& c);
  void IssueRejectedCommand(Conn& c);
  // Issues a command. A valid one must be accepted while the connection
  // is up; any must be refused once it is not.
  absl::StatusOr<Cookie> Issue(Conn& c, Command type, uint16_t flags,
                               uint64_t offset, uint64_t length,
                               bool report_chunks, std::vector<uint8_t> data,
                               bool valid, int rejected = 0);
  void Execute(Conn& c, size_t index, bool allow_fault);
  void RandomCut(Conn& c);
  void RandomEnd(Conn& c);
  void EndConn(Conn& c);
  void Finish();
  Split RandomSplit();
  size_t RandomAmount();

  // ---- Checks
  // ----------------------------------------------------------------
  void Check(Conn& c);
  void CheckClientEvents(Conn& c);
  void CheckServerEvents(Conn& c);
  void OnConnected(Conn& c);
  void OnOptionCompleted(Conn& c, const OptionCompleted& e);
  void OptionStep(Conn& c);
  void OnCompleted(Conn& c, const CommandCompleted& e, size_t index);
  void CheckEnd(Conn& c);
  bool IssueExpected(Conn& c);
  void Fail(Conn* c, std::string what);
  std::string DescribeConn(Conn& c);

  void Log(const std::string& line) {
    if (opts_.verbose) *log_ << "[" << action_ << "] " << line << "\n";
  }
  bool verbose() const { return opts_.verbose; }

  SimOptions opts_;
  std::optional<CutScenario> cut_;
  std::ostream* log_;
  std::mt19937_64 rng_;
  SimResult result_;
  bool failed_ = false;
  uint64_t action_ = 0;

  ExportSetup export_;
  std::unique_ptr<MemoryBackend> backend_;
  std::vector<uint8_t> model_;
  std::vector<std::unique_ptr<Conn>> conns_;

  // Fault profile of this run.
  uint64_t fault_per_mille_ = 0;  // backend errors per executed request
  bool cuts_ = false;             // connections get cut
  uint64_t invalid_per_mille_ = 0;
  uint64_t max_commands_in_flight_ = 0;
  uint64_t actions_ = 0;
};

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
    // Some clients check nothing, so invalid requests reach the session.
    if (P(1, 5)) co.strict = 0;
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

// ---- Checks -----------------------------------------------------------------

void Simulation::OnConnected(Conn& c) {
  Client& cl = c.client();
  const ExportInfo& e = export_.info;
  const bool ro = e.read_only;
  if (c.copts.option_mode) {
    // Options chose the headers and contexts; both sides must agree.
    if (!c.go_ok) return Fail(&c, "Connected before OptGo() completed");
    // The client may know less than the server: it forgets a selection
    // when the export name changes, even back to the name it was made for
    // (as libnbd does), while the server keeps it for that name. It must
    // never believe in a context the server did not select.
    ServerSession& sv = c.server();
    if (cl.structured_replies() != sv.structured_replies() ||
        cl.extended_headers() != sv.extended_headers() ||
        (cl.can_block_status() && !sv.block_status_negotiated())) {
      return Fail(&c, absl::StrFormat(
                          "client and server negotiated different things: "
                          "structured %d/%d, extended %d/%d, block status "
                          "%d/%d",
                          cl.structured_replies(), sv.structured_replies(),
                          cl.extended_headers(), sv.extended_headers(),
                          cl.can_block_status(), sv.block_status_negotiated()));
    }
    if (!c.renegotiated && (cl.structured_replies() != c.structured ||
                            cl.extended_headers() != c.extended)) {
      return Fail(&c, "option mode negotiated other headers");
    }
    c.structured = cl.structured_replies();
    c.extended = cl.extended_headers();
    c.block_status = cl.can_block_status();
    if (cl.can_block_status() && !e.can_block_status) {
      return Fail(&c, "block status without base:allocation");
    }
  }
  struct Expect {
    const char* what;
    bool got;
    bool want;
  };
  const Expect expects[] = {
      {"extended headers", cl.extended_headers(), c.extended},
      {"structured replies", cl.structured_replies(), c.structured},
      {"block status", cl.can_block_status(), c.block_status},
      {"read-only", cl.is_read_only(), ro},
      {"flush", cl.can_flush(), e.can_flush},
      {"fua", cl.can_fua(), e.can_fua && !ro},
      {"trim", cl.can_trim(), e.can_trim && !ro},
      {"zero", cl.can_zero(), e.can_zero && !ro},
      {"fast zero", cl.can_fast_zero(), e.can_zero && e.can_fast_zero && !ro},
      {"cache", cl.can_cache(), e.can_cache},
      {"df", cl.can_df(), e.can_df && c.structured},
      {"multi-conn", cl.can_multi_conn(), e.can_multi_conn},
  };
  for (const Expect& x : expects) {
    if (x.got != x.want) {
      return Fail(&c, absl::StrFormat("negotiated %s is %d, expected %d",
                                      x.what, x.got, x.want));
    }
  }
  if (cl.export_size() != export_.size) {
    return Fail(&c, "wrong export size");
  }
  if (c.copts.request_block_size &&
      cl.block_size() !=
          BlockSizeConstraints{e.min_block, e.preferred_block, e.max_block}) {
    return Fail(&c, absl::StrFormat(
                        "block sizes %d/%d/%d", cl.block_size().minimum,
                        cl.block_size().preferred, cl.block_size().maximum));
  }
}

void Simulation::OnCompleted(Conn& c, const CommandCompleted& e, size_t index) {
  auto it = c.cmds.find(e.cookie);
  if (it == c.cmds.end()) {
    return Fail(&c, absl::StrCat("completion of unknown cookie ", e.cookie));
  }
  Cmd& cmd = it->second;
  if (cmd.completed) {
    return Fail(&c, absl::StrCat("cookie ", e.cookie, " completed twice"));
  }
  cmd.completed = true;
  cmd.status = e.status;
  cmd.completion_event = index;
  if (e.tag != cmd.tag || e.command != cmd.type) {
    return Fail(&c, absl::StrFormat("cookie %d completed with tag %d (%s), "
                                    "issued with tag %d (%s)",
                                    e.cookie, e.tag, CommandName(e.command),
                                    cmd.tag, CommandName(cmd.type)));
  }
  const int err = StatusErrno(e.status);
  if (cmd.rejected != 0) {
    e.status.ok() ? ++result_.completed_ok : ++result_.completed_error;
    if (err != cmd.rejected && err != ENOTCONN) {
      return Fail(&c, absl::StrFormat("cookie %d (%s), which the server must "
                                      "refuse with errno %d, completed with "
                                      "%s",
                                      e.cookie, CommandName(cmd.type),
                                      cmd.rejected, Str(e.status)));
    }
    return;
  }
  if (e.status.ok()) {
    ++result_.completed_ok;
    if (!cmd.executed || cmd.faulted) {
      return Fail(
          &c, absl::StrFormat("cookie %d completed OK but the server "
                              "%s",
                              e.cookie,
                              cmd.faulted ? "failed it" : "never executed it"));
    }
    if (cmd.type == Command::kRead && *cmd.buffer != cmd.snapshot) {
      size_t at = 0;
      while (at < cmd.snapshot.size() && (*cmd.buffer)[at] == cmd.snapshot[at])
        ++at;
      return Fail(&c, absl::StrFormat("READ cookie %d [%d, +%d): byte %d is "
                                      "0x%02x, the model says 0x%02x",
                                      e.cookie, cmd.offset, cmd.length, at,
                                      (*cmd.buffer)[at], cmd.snapshot[at]));
    }
    if (cmd.type == Command::kRead && cmd.report_chunks) {
      if (!c.structured && cmd.chunk_bytes != 0) {
        return Fail(&c, "read chunks reported without structured replies");
      }
      if (c.structured && cmd.chunk_bytes != cmd.length) {
        return Fail(&c, absl::StrFormat("READ cookie %d: chunks cover %d of "
                                        "%d bytes",
                                        e.cookie, cmd.chunk_bytes, cmd.length));
      }
      if (c.structured && (cmd.flags & kCmdFlagDf) &&
          cmd.chunk_ranges.size() != 1) {
        return Fail(&c, "DF read came in more than one chunk");
      }
    }
    if (cmd.type == Command::kBlockStatus && cmd.extents_events != 1) {
      return Fail(&c, absl::StrFormat("BLOCK_STATUS cookie %d: %d extent "
                                      "events",
                                      e.cookie, cmd.extents_events));
    }
    return;
  }
  ++result_.completed_error;
  if (err == ENOTCONN) return;  // checked once the connection has ended
  if (!cmd.faulted) {
    return Fail(
        &c, absl::StrFormat("cookie %d (%s) failed with %s, but no "
                            "error was injected",
                            e.cookie, CommandName(cmd.type), Str(e.status)));
  }
  if (err != WireErrno(cmd.fault_errno)) {
    return Fail(&c, absl::StrFormat("cookie %d failed with %s; injected "
                                    "errno %d, expected %d",
                                    e.cookie, Str(e.status), cmd.fault_errno,
                                    WireErrno(cmd.fault_errno)));
  }
  if (cmd.type == Command::kRead && c.structured) {
    // The data before the failure arrived, then the error at its end.
    const uint64_t before = std::min<uint64_t>(cmd.read_before, cmd.length - 1);
    if (!SameBytes(cmd.buffer->data(), cmd.snapshot.data(), before)) {
      return Fail(&c, absl::StrFormat("READ cookie %d: the %d bytes before "
                                      "the error differ from the model",
                                      e.cookie, before));
    }
    if (cmd.report_chunks) {
      if (cmd.error_chunks.size() != 1 ||
          cmd.error_chunks[0].offset != cmd.offset + before ||
          cmd.chunk_bytes != before) {
        return Fail(
            &c, absl::StrFormat("READ cookie %d: %d error chunk(s), "
                                "%d data/hole bytes; expected the "
                                "error at %d after %d bytes",
                                e.cookie, cmd.error_chunks.size(),
                                cmd.chunk_bytes, cmd.offset + before, before));
      }
    }
  }
}

void Simulation::CheckClientEvents(Conn& c) {
  const std::vector<ClientEvent>& events = c.pair->client_events();
  for (; c.client_seen < events.size() && !failed_; ++c.client_seen) {
    const size_t index = c.client_seen;
    const ClientEvent& ev = events[index];
    if (c.client_ended) {
      return Fail(&c, "a client event after ClientClosed/ClientDead");
    }
    if (const auto* done = std::get_if<CommandCompleted>(&ev)) {
      if (verbose()) {
        Log(absl::StrFormat("conn%d: <- completed cookie %d %s tag %d: %s",
                            c.id, done->cookie, CommandName(done->command),
                            done->tag, Str(done->status)));
      }
      OnCompleted(c, *done, index);
    } else if (const auto* chunk = std::get_if<ReadChunk>(&ev)) {
      auto it = c.cmds.find(chunk->cookie);
      if (it == c.cmds.end() || it->second.type != Command::kRead ||
          !it->second.report_chunks || it->second.completed ||
          it->second.tag != chunk->tag) {
        return Fail(&c, absl::StrCat("unexpected ReadChunk for cookie ",
                                     chunk->cookie));
      }
      Cmd& cmd = it->second;
      if (chunk->kind == ReadChunkKind::kError) {
        cmd.error_chunks.push_back(*chunk);
        continue;
      }
      if (chunk->length == 0 || chunk->offset < cmd.offset ||
          chunk->offset + chunk->length > cmd.offset + cmd.length) {
        return Fail(&c, absl::StrFormat("ReadChunk [%d, +%d) outside READ "
                                        "[%d, +%d)",
                                        chunk->offset, chunk->length,
                                        cmd.offset, cmd.length));
      }
      for (const auto& [o, l] : cmd.chunk_ranges) {
        if (chunk->offset < o + l && o < chunk->offset + chunk->length) {
          return Fail(&c, "overlapping ReadChunks");
        }
      }
      cmd.chunk_ranges.emplace_back(chunk->offset, chunk->length);
      cmd.chunk_bytes += chunk->length;
      if (chunk->kind == ReadChunkKind::kHole) {
        const uint8_t* p = cmd.buffer->data() + (chunk->offset - cmd.offset);
        if (!AllZero(p, chunk->length)) {
          return Fail(&c, "a hole chunk left non-zero bytes in the buffer");
        }
      }
    } else if (const auto* bs = std::get_if<BlockStatusExtents>(&ev)) {
      auto it = c.cmds.find(bs->cookie);
      if (it == c.cmds.end() || it->second.type != Command::kBlockStatus ||
          it->second.completed || it->second.tag != bs->tag) {
        return Fail(
            &c, absl::StrCat("unexpected BlockStatusExtents for ", bs->cookie));
      }
      Cmd& cmd = it->second;
      ++cmd.extents_events;
      if (bs->context_name != kContextBaseAllocation ||
          bs->offset != cmd.offset || bs->extents.empty() ||
          ((cmd.flags & kCmdFlagReqOne) && bs->extents.size() != 1)) {
        return Fail(&c, absl::StrFormat("bad extents for cookie %d: context "
                                        "%s offset %d, %d extent(s)",
                                        bs->cookie, bs->context_name,
                                        bs->offset, bs->extents.size()));
      }
      uint64_t pos = 0;
      for (const Extent& x : bs->extents) {
        if (x.length == 0 || x.length > cmd.length - pos ||
            (x.flags & ~uint32_t{kStateHole | kStateZero}) != 0) {
          return Fail(&c, "an extent is empty, too long or has unknown flags");
        }
        if ((x.flags & kStateZero) &&
            !AllZero(cmd.snapshot.data() + pos, x.length)) {
          return Fail(&c, absl::StrFormat("extent [%d, +%d) says zero; the "
                                          "model has data there",
                                          cmd.offset + pos, x.length));
        }
        pos += x.length;
      }
    } else if (std::holds_alternative<Negotiating>(ev)) {
      if (!c.copts.option_mode || c.parked || c.pending_option) {
        return Fail(&c, "unexpected Negotiating");
      }
      c.parked = true;
      Log(absl::StrFormat("conn%d: <- negotiating", c.id));
    } else if (const auto* oc = std::get_if<OptionCompleted>(&ev)) {
      OnOptionCompleted(c, *oc);
    } else if (const auto* el = std::get_if<ExportListed>(&ev)) {
      if (c.pending_option != Option::kList ||
          *el != ExportListed{kExportName, ""}) {
        return Fail(&c, absl::StrCat("unexpected ExportListed ", el->name));
      }
      ++c.exports_listed;
    } else if (const auto* mc = std::get_if<MetaContextListed>(&ev)) {
      if (c.pending_option != Option::kListMetaContext &&
          c.pending_option != Option::kSetMetaContext) {
        return Fail(&c, "unexpected MetaContextListed");
      }
      if (mc->name != kContextBaseAllocation) {
        return Fail(&c, absl::StrCat("unknown meta context ", mc->name));
      }
    } else if (std::holds_alternative<Connected>(ev)) {
      if (c.connected) return Fail(&c, "Connected twice");
      c.connected = true;
      Log(absl::StrFormat("conn%d: <- connected", c.id));
      OnConnected(c);
    } else if (std::holds_alternative<ShutdownWrite>(ev)) {
      if (c.shutdown_write) return Fail(&c, "ShutdownWrite twice");
      c.shutdown_write = true;
    } else if (std::holds_alternative<ClientClosed>(ev) ||
               std::holds_alternative<ClientDead>(ev)) {
      c.client_ended = true;
      c.client_end_event = index;
      if (verbose()) {
        Log(absl::StrFormat("conn%d: <- client %s %s", c.id,
                            ClientPhaseName(c.client().phase()),
                            Str(c.client().dead_reason())));
      }
    } else if (std::holds_alternative<ClientTrace>(ev)) {
      continue;
    } else {
      return Fail(&c, absl::StrCat("unexpected client event #", ev.index()));
    }
  }
}

void Simulation::CheckServerEvents(Conn& c) {
  const std::vector<ServerEvent>& events = c.pair->server_events();
  for (; c.server_seen < events.size() && !failed_; ++c.server_seen) {
    const ServerEvent& ev = events[c.server_seen];
    if (c.server_ended) {
      return Fail(&c, "a server event after ServerClosed/ServerDead");
    }
    if (const auto* r = std::get_if<ServerRequest>(&ev)) {
      if (!c.transmission_started) {
        return Fail(&c, "a request before TransmissionStarted");
      }
      auto it = c.cmds.find(r->cookie);
      if (it == c.cmds.end()) {
        return Fail(&c,
                    absl::StrCat("the server got unknown cookie ", r->cookie));
      }
      Cmd& cmd = it->second;
      if (cmd.seen) return Fail(&c, "the server got a request twice");
      if (cmd.rejected != 0) {
        return Fail(&c, absl::StrFormat("the session passed on cookie %d, "
                                        "which it must refuse with errno %d",
                                        r->cookie, cmd.rejected));
      }
      if (cmd.completed && StatusErrno(cmd.status) == ENOTCONN &&
          c.abandon_called && !Ended(c.client())) {
        return Fail(&c, absl::StrFormat("cookie %d reached the server after "
                                        "Shutdown withdrew it",
                                        r->cookie));
      }
      cmd.seen = true;
      const uint16_t mask = static_cast<uint16_t>(~kCmdFlagPayloadLen);
      if (r->command != cmd.type || r->offset != cmd.offset ||
          r->length != cmd.length || (r->flags & mask) != (cmd.flags & mask)) {
        return Fail(
            &c, absl::StrFormat("request cookie %d arrived as %s "
                                "[%d, +%d) flags 0x%x; issued %s "
                                "[%d, +%d) flags 0x%x",
                                r->cookie, CommandName(r->command), r->offset,
                                r->length, r->flags, CommandName(cmd.type),
                                cmd.offset, cmd.length, cmd.flags));
      }
      if (cmd.type == Command::kWrite &&
          (r->payload.size() != cmd.data.size() ||
           !SameBytes(r->payload.data(), cmd.data.data(), cmd.data.size()))) {
        return Fail(&c, absl::StrCat("WRITE payload of cookie ", r->cookie,
                                     " arrived changed"));
      }
    } else if (const auto* t = std::get_if<TransmissionStarted>(&ev)) {
      if (c.transmission_started) return Fail(&c, "transmission twice");
      c.transmission_started = true;
      if (!c.copts.option_mode && (t->extended_headers != c.extended ||
                                   t->structured_replies != c.structured)) {
        return Fail(&c, "the server negotiated something else");
      }
    } else if (const auto* rs = std::get_if<ReplySent>(&ev)) {
      if (!c.sopts.report_reply_sent ||
          !c.replies_sent.insert(rs->handle).second) {
        return Fail(
            &c, absl::StrCat("unexpected ReplySent for handle ", rs->handle));
      }
    } else if (std::holds_alternative<ServerClosed>(ev) ||
               std::holds_alternative<ServerDead>(ev)) {
      c.server_ended = true;
      if (verbose()) {
        Log(absl::StrFormat("conn%d: server %s %s", c.id,
                            ServerPhaseName(c.server().phase()),
                            Str(c.server().dead_reason())));
      }
    }
  }
}

void Simulation::Check(Conn& c) {
  CheckClientEvents(c);
  CheckServerEvents(c);
  if (!failed_ && !c.pair->anomalies().empty()) {
    Fail(&c, absl::StrJoin(c.pair->anomalies(), "; "));
  }
  if (!failed_ && !c.c2s.violations().empty()) {
    Fail(&c, absl::StrCat("client stream: ", c.c2s.violations()[0]));
  }
  if (!failed_ && !c.s2c->violations().empty()) {
    Fail(&c, absl::StrCat("server stream: ", c.s2c->violations()[0]));
  }
  if (failed_) return;
  // In-flight counts, once every event was popped: the server's are the
  // held requests; the client's the commands not completed, plus
  // NBD_CMD_DISC once a disconnect was asked for.
  ServerSession& sv = c.server();
  if (!sv.has_events() && !Ended(sv) &&
      sv.in_flight() != c.pair->held_requests().size()) {
    return Fail(
        &c, absl::StrFormat("server in_flight() %d, %d held", sv.in_flight(),
                            c.pair->held_requests().size()));
  }
  Client& cl = c.client();
  if (!cl.has_events() && !Ended(cl)) {
    size_t open = 0;
    for (const auto& [cookie, cmd] : c.cmds) open += cmd.completed ? 0 : 1;
    const size_t disc = cl.in_flight() - open;
    if (cl.in_flight() < open ||
        disc > (c.disconnect_called || c.eshutdown ? 1u : 0u)) {
      return Fail(&c, absl::StrFormat("client in_flight() %d with %d "
                                      "command(s) open",
                                      cl.in_flight(), open));
    }
  }
}

// How each side ended must follow from where its input stream ended.
void Simulation::CheckEnd(Conn& c) {
  InMemoryPair& p = *c.pair;
  Client& cl = c.client();
  ServerSession& sv = c.server();
  if (!c.client_ended || !c.server_ended) {
    return Fail(&c, "the connection did not end on both sides");
  }
  // Nothing left behind.
  if (cl.in_flight() != 0 || cl.pending_output_bytes() != 0 ||
      cl.wants() != Direction::kNone || sv.in_flight() != 0 ||
      sv.pending_output_bytes() != 0 || sv.wants() != Direction::kNone) {
    return Fail(&c, "an ended core still has work in flight or to send");
  }
  const std::vector<ClientEvent>& events = p.client_events();
  for (auto& [cookie, cmd] : c.cmds) {
    if (!cmd.completed) {
      return Fail(&c, absl::StrCat("cookie ", cookie, " never completed"));
    }
    if (StatusErrno(cmd.status) != ENOTCONN) continue;
    // ENOTCONN: withdrawn by Shutdown (and never sent), or failed with the
    // connection, i.e. among the completions right before the final event.
    bool with_end = true;
    for (size_t i = cmd.completion_event + 1; i < c.client_end_event; ++i) {
      const auto* d = std::get_if<CommandCompleted>(&events[i]);
      if (d == nullptr || StatusErrno(d->status) != ENOTCONN) {
        if (!std::holds_alternative<ClientTrace>(events[i])) with_end = false;
      }
    }
    const bool withdrawn = c.abandon_called && !cmd.seen;
    // Without a cut the server answers everything it got before it closes
    // (commands accepted before Disconnect() complete normally).
    if (c.cuts == 0 && !withdrawn) {
      return Fail(&c, absl::StrFormat("cookie %d failed with ENOTCONN on a "
                                      "connection that was not cut (%s)",
                                      cookie, Str(cmd.status)));
    }
    if (!with_end && !withdrawn) {
      return Fail(&c, absl::StrFormat("cookie %d failed with ENOTCONN while "
                                      "the connection was up (%s)",
                                      cookie, Str(cmd.status)));
    }
  }
  if (c.pending_option.has_value()) {
    return Fail(&c, absl::StrCat("option ", OptionName(*c.pending_option),
                                 " never completed"));
  }
  if (c.shutdown_write != c.c2s.goodbye_end().has_value()) {
    return Fail(&c, absl::StrFormat("ShutdownWrite %s but NBD_CMD_DISC/"
                                    "NBD_OPT_ABORT was %s",
                                    c.shutdown_write ? "came" : "never came",
                                    c.c2s.goodbye_end() ? "sent" : "not sent"));
  }

  // The client's end.
  const bool client_dead = cl.phase() == ClientPhase::kDead;
  const std::optional<absl::Status> s2c_end = p.end(Stream::kServerToClient);
  if (client_dead) {
    ++result_.dead;
  } else {
    ++result_.closed;
  }
  if (s2c_end.has_value() && !s2c_end->ok()) {
    if (!client_dead || cl.dead_reason() != *s2c_end) {
      return Fail(&c,
                  absl::StrCat("the client got transport error ", Str(*s2c_end),
                               " but is ", ClientPhaseName(cl.phase())));
    }
  } else if (s2c_end.has_value()) {
    const uint64_t at = p.delivered(Stream::kServerToClient);
    const bool boundary = c.s2c->IsTransmissionBoundary(at);
    const bool either = c.shutdown_in_handshake;
    if (!either && client_dead == boundary) {
      return Fail(&c, absl::StrFormat("the client got EOF at offset %d, %s "
                                      "a reply boundary, and is %s (%s)",
                                      at, boundary ? "at" : "not at",
                                      ClientPhaseName(cl.phase()),
                                      Str(cl.dead_reason())));
    }
    if (client_dead && StatusErrno(cl.dead_reason()) != ECONNRESET) {
      return Fail(&c, absl::StrCat("the client died of EOF with ",
                                   Str(cl.dead_reason())));
    }
  } else if (client_dead || !c.shutdown_in_handshake) {
    return Fail(&c, absl::StrCat("the client ended on its own: ",
                                 ClientPhaseName(cl.phase()), " ",
                                 Str(cl.dead_reason())));
  }

  // The server's end.
  const bool server_dead = sv.phase() == ServerPhase::kDead;
  const std::optional<absl::Status> c2s_end = p.end(Stream::kClientToServer);
  const uint64_t got = p.delivered(Stream::kClientToServer);
  const bool goodbye =
      c.c2s.goodbye_end().has_value() && *c.c2s.goodbye_end() <= got;
  if (c2s_end.has_value() && !c2s_end->ok()) {
    if (!server_dead || sv.dead_reason() != *c2s_end) {
      return Fail(&c,
                  absl::StrCat("the server got transport error ", Str(*c2s_end),
                               " but is ", ServerPhaseName(sv.phase())));
    }
  } else if (c2s_end.has_value()) {
    const bool clean = goodbye || c.c2s.IsBoundary(got);
    if (server_dead == clean) {
      return Fail(&c, absl::StrFormat("the server got EOF at offset %d, %s "
                                      "a message boundary, and is %s (%s)",
                                      got, clean ? "at" : "not at",
                                      ServerPhaseName(sv.phase()),
                                      Str(sv.dead_reason())));
    }
  } else if (server_dead || !goodbye) {
    return Fail(&c, absl::StrCat("the server ended on its own: ",
                                 ServerPhaseName(sv.phase()), " ",
                                 Str(sv.dead_reason())));
  }

  // A closed session sent every reply: one ReplySent per request.
  if (!server_dead && c.sopts.report_reply_sent) {
    size_t seen = 0;
    for (const auto& [cookie, cmd] : c.cmds) seen += cmd.seen ? 1 : 0;
    if (c.replies_sent.size() != seen) {
      return Fail(&c, absl::StrFormat("%d ReplySent for %d requests",
                                      c.replies_sent.size(), seen));
    }
  }
  // Without a cut, the disconnect reaches the closed state on both sides.
  if (c.cuts == 0 && (client_dead || server_dead)) {
    return Fail(&c, "no fault was injected, yet a side is dead");
  }
}

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

// ---- Actions ----------------------------------------------------------------

Split Simulation::RandomSplit() {
  Split s;
  switch (R(5)) {
    case 0:
      s.piece = SIZE_MAX;
      break;
    case 1:
      s.piece = 1;
      break;
    case 2:
      s.piece = 1 + R(32);
      break;
    case 3:
      s.piece = 1 + R(8192);
      break;
    default:
      s.piece = Pick<size_t>({4, 16, 20, 28, 32, 512, 4096, 65536});
      break;
  }
  s.path = P(1, 2) ? InputPath::kFeed : InputPath::kZeroCopy;
  return s;
}

size_t Simulation::RandomAmount() {
  switch (R(4)) {
    case 0:
    case 1:
      return SIZE_MAX;
    case 2:
      return 1 + R(64);
    default:
      return 1 + R(8192);
  }
}

bool Simulation::IssueExpected(Conn& c) {
  return c.connected && !c.disconnect_called && !Ended(c.client());
}

absl::StatusOr<Cookie> Simulation::Issue(Conn& c, Command type, uint16_t flags,
                                         uint64_t offset, uint64_t length,
                                         bool report_chunks,
                                         std::vector<uint8_t> data, bool valid,
                                         int rejected) {
  Client& cl = c.client();
  Cmd cmd;
  cmd.type = type;
  cmd.flags = flags;
  cmd.offset = offset;
  cmd.length = length;
  cmd.report_chunks = report_chunks;
  cmd.tag = rng_();
  cmd.rejected = rejected;
  cmd.data = std::move(data);
  absl::StatusOr<Cookie> cookie;
  switch (type) {
    case Command::kRead: {
      cmd.buffer = std::make_unique<std::vector<uint8_t>>(length, kPoison);
      ReadOptions ro;
      ro.flags = flags;
      ro.report_chunks = report_chunks;
      ro.tag = cmd.tag;
      cookie = cl.Read(offset, absl::MakeSpan(*cmd.buffer), ro);
      break;
    }
    case Command::kWrite:
      cookie = cl.Write(offset, cmd.data, flags, cmd.tag);
      break;
    case Command::kFlush:
      cookie = cl.Flush(flags, cmd.tag);
      break;
    case Command::kTrim:
      cookie = cl.Trim(offset, length, flags, cmd.tag);
      break;
    case Command::kCache:
      cookie = cl.Cache(offset, length, flags, cmd.tag);
      break;
    case Command::kWriteZeroes:
      cookie = cl.WriteZeroes(offset, length, flags, cmd.tag);
      break;
    default:
      cookie = cl.BlockStatus(offset, length, flags, cmd.tag);
      break;
  }
  if (verbose()) {
    Log(absl::StrFormat(
        "conn%d: %s [%d, +%d) flags 0x%x chunks=%d tag %d -> "
        "%s",
        c.id, CommandName(type), offset, length, flags, report_chunks, cmd.tag,
        cookie.ok() ? absl::StrCat("cookie ", *cookie) : Str(cookie.status())));
  }
  const ClientPhase phase = cl.phase();
  const bool must_refuse =
      Ended(cl) || c.disconnect_called ||
      (!c.connected && (phase == ClientPhase::kConnecting ||
                        phase == ClientPhase::kNegotiating));
  // An ESHUTDOWN reply makes the client disconnect by itself, at a moment
  // the simulation does not see: then a refusal is fine.
  const bool must_accept =
      (valid || rejected != 0) && IssueExpected(c) && !c.eshutdown;
  if (cookie.ok() && (must_refuse || (!valid && rejected == 0))) {
    Fail(&c, absl::StrCat(CommandName(type),
                          " was accepted, expected a "
                          "refusal"));
  }
  if (!cookie.ok() && must_accept) {
    Fail(&c, absl::StrCat("valid ", CommandName(type),
                          " refused: ", Str(cookie.status())));
  }
  if (!cookie.ok() && must_refuse &&
      !absl::IsFailedPrecondition(cookie.status())) {
    Fail(&c, absl::StrCat(CommandName(type),
                          " refused outside transmission "
                          "with ",
                          Str(cookie.status()),
                          ", expected EINVAL "
                          "(FailedPrecondition)"));
  }
  if (!cookie.ok()) return cookie;
  if (c.cmds.count(*cookie) != 0) Fail(&c, "a cookie was reused");
  cmd.cookie = *cookie;
  ++result_.commands;
  c.cmds.emplace(*cookie, std::move(cmd));
  return cookie;
}

void Simulation::IssueRandomCommand(Conn& c) {
  const ExportInfo& e = export_.info;
  const bool ro = e.read_only;
  std::vector<Command> types = {Command::kRead, Command::kRead};
  if (!ro) types.push_back(Command::kWrite);
  if (!ro) types.push_back(Command::kWrite);
  if (e.can_flush) types.push_back(Command::kFlush);
  if (e.can_trim && !ro) types.push_back(Command::kTrim);
  if (e.can_zero && !ro) types.push_back(Command::kWriteZeroes);
  if (e.can_cache) types.push_back(Command::kCache);
  if (c.block_status) types.push_back(Command::kBlockStatus);
  const Command type = types[R(types.size())];

  // Sizes and alignment.
  const uint64_t align = e.min_block;
  const bool payload = type == Command::kRead || type == Command::kWrite;
  uint64_t max_len = export_.size;
  if (payload) {
    max_len = std::min<uint64_t>(
        {max_len, e.max_block, c.copts.max_payload, uint64_t{1} << 20});
  }
  uint64_t len = 0;
  switch (R(6)) {
    case 0:
      len = 1 + R(64);
      break;
    case 1:
      len = 1 + R(4096);
      break;
    case 2:
      len = (1 + R(4)) * export_.page_size + R(3) - 1;
      break;
    case 3:
      len = 1 + R(131072);
      break;
    case 4:
      len = max_len;
      break;
    default:
      len = 1 + R(max_len);
      break;
  }
  len = std::max<uint64_t>(len, 1);
  len = (len + align - 1) / align * align;
  len = std::min(len, max_len / align * align);
  uint64_t off = 0;
  const uint64_t room = export_.size - len;
  switch (R(5)) {
    case 0:
      off = 0;
      break;
    case 1:
      off = room;
      break;
    case 2: {
      const uint64_t page = export_.page_size;
      off = R(export_.size / page + 1) * page;
      off = off + R(3) * align;
      off = off >= align ? off - align : off;
      break;
    }
    default:
      off = R(room + 1);
      break;
  }
  off = std::min(off, room) / align * align;

  uint16_t flags = 0;
  bool chunks = false;
  std::vector<uint8_t> data;
  switch (type) {
    case Command::kRead:
      if (e.can_df && c.structured && P(1, 4)) flags |= kCmdFlagDf;
      chunks = P(1, 2);
      break;
    case Command::kWrite: {
      if (e.can_fua && P(1, 4)) flags |= kCmdFlagFua;
      if (c.extended && P(1, 2)) flags |= kCmdFlagPayloadLen;
      data.assign(len, 0);
      switch (R(4)) {
        case 0:  // zeros: MemoryBackend keeps such pages sparse
          break;
        case 1:  // mostly zeros
          for (uint64_t i = R(64); i < len; i += 1 + R(4096)) {
            data[i] = static_cast<uint8_t>(1 + R(255));
          }
          break;
        default: {  // noise (splitmix64, 8 bytes at a time)
          uint64_t x = rng_();
          for (size_t i = 0; i < len; i += 8) {
            x += 0x9e3779b97f4a7c15;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
            z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
            z ^= z >> 31;
            std::memcpy(data.data() + i, &z, std::min<size_t>(8, len - i));
          }
          break;
        }
      }
      break;
    }
    case Command::kTrim:
      if (e.can_fua && P(1, 4)) flags |= kCmdFlagFua;
      break;
    case Command::kWriteZeroes:
      if (e.can_fua && P(1, 4)) flags |= kCmdFlagFua;
      if (P(1, 3)) flags |= kCmdFlagNoHole;
      if (e.can_fast_zero && P(1, 4)) flags |= kCmdFlagFastZero;
      break;
    case Command::kBlockStatus:
      if (P(1, 3)) flags |= kCmdFlagReqOne;
      break;
    default:
      break;
  }
  if (type == Command::kFlush) off = len = 0;
  Issue(c, type, flags, off, len, chunks, std::move(data), true).IgnoreError();
}

// A command the client's strict checks must refuse, with the errno they
// promise (client.h, commands.cc: libnbd's rules).
void Simulation::IssueInvalidCommand(Conn& c) {
  if (!IssueExpected(c) || c.eshutdown) return;
  const ExportInfo& e = export_.info;
  Client& cl = c.client();
  const uint64_t align = e.min_block;
  struct Bad {
    Command type;
    uint16_t flags;
    uint64_t offset;
    uint64_t length;
    int errno_value;
  };
  std::vector<Bad> bad;
  const uint64_t size = export_.size;
  bad.push_back({Command::kRead, 0, size - align, 2 * align, EINVAL});
  bad.push_back({Command::kRead, 0, 0, 0, EINVAL});
  bad.push_back({Command::kRead, kCmdFlagPayloadLen, 0, align, EINVAL});
  bad.push_back({Command::kRead, 0x100, 0, align, EINVAL});
  if (!e.read_only) {
    bad.push_back({Command::kWrite, 0, size, align, ENOSPC});
    if (!c.extended) {
      bad.push_back({Command::kWrite, kCmdFlagPayloadLen, 0, align, ENOTSUP});
    }
    if (!e.can_fua)
      bad.push_back({Command::kWrite, kCmdFlagFua, 0, align, ENOTSUP});
  } else {
    bad.push_back({Command::kWrite, 0, 0, align, EPERM});
    bad.push_back({Command::kTrim, 0, 0, align, EPERM});
  }
  if (!e.can_trim && !e.read_only) {
    bad.push_back({Command::kTrim, 0, 0, align, ENOTSUP});
  }
  if (!e.can_cache) bad.push_back({Command::kCache, 0, 0, align, ENOTSUP});
  if (!c.block_status) {
    bad.push_back({Command::kBlockStatus, 0, 0, align, ENOTSUP});
  }
  if (!(e.can_df && c.structured)) {
    bad.push_back({Command::kRead, kCmdFlagDf, 0, align, ENOTSUP});
  }
  // Alignment is enforced only for block sizes the client asked for in GO
  // (it must obey those; a server may send them unasked).
  if (c.copts.request_block_size && cl.block_size().minimum > 1) {
    bad.push_back({Command::kRead, 0, 1, align, EINVAL});
  }
  const uint64_t limit = cl.max_payload();
  if (limit < (8u << 20) && limit + align <= size) {
    bad.push_back({Command::kRead, 0, 0, limit + align, ERANGE});
  }
  const Bad& b = bad[R(bad.size())];
  std::vector<uint8_t> data;
  if (b.type == Command::kWrite) data.assign(b.length, 1);
  absl::StatusOr<Cookie> r = Issue(c, b.type, b.flags, b.offset, b.length,
                                   false, std::move(data), false);
  if (!r.ok() && StatusErrno(r.status()) != b.errno_value) {
    Fail(&c, absl::StrFormat("invalid %s [%d, +%d) flags 0x%x refused with "
                             "%s, expected errno %d",
                             CommandName(b.type), b.offset, b.length, b.flags,
                             Str(r.status()), b.errno_value));
  }
}

// A request a client without strict checks sends and the session must
// answer itself, with the errno nbdkit would (requests.cc), or a zero-length
// one it must pass on.
void Simulation::IssueRejectedCommand(Conn& c) {
  if (!IssueExpected(c) || c.eshutdown) return;
  const ExportInfo& e = export_.info;
  const uint64_t a = e.min_block;
  const uint64_t size = export_.size;
  const bool ro = e.read_only;
  struct Bad {
    Command type;
    uint16_t flags;
    uint64_t offset;
    uint64_t length;
    int errno_value;  // 0: passed on and answered OK
  };
  std::vector<Bad> bad = {
      {Command::kRead, 0, size - a, 2 * a, EINVAL},
      {Command::kRead, 0x100, 0, a, EINVAL},
      {Command::kRead, 0, 0, 0, 0},
  };
  if (ro) {
    bad.push_back({Command::kWrite, 0, 0, a, EPERM});
  } else {
    bad.push_back({Command::kWrite, 0, size, a, ENOSPC});
    bad.push_back({Command::kWrite, 0, 0, 0, 0});
    if (!e.can_fua) bad.push_back({Command::kWrite, kCmdFlagFua, 0, a, EINVAL});
    bad.push_back(e.can_trim ? Bad{Command::kTrim, 0, size - a, 2 * a, ENOSPC}
                             : Bad{Command::kTrim, 0, 0, a, EINVAL});
    bad.push_back(e.can_zero ? Bad{Command::kWriteZeroes, 0, 0, 0, 0}
                             : Bad{Command::kWriteZeroes, 0, 0, a, EINVAL});
  }
  if (e.max_block < (1u << 20)) {
    bad.push_back({Command::kRead, 0, 0, e.max_block + a, EOVERFLOW});
    if (!ro) bad.push_back({Command::kWrite, 0, 0, e.max_block + a, EOVERFLOW});
  }
  if (a > 1) bad.push_back({Command::kRead, 0, 1, a, EINVAL});
  if (!e.can_flush) bad.push_back({Command::kFlush, 0, 0, 0, EINVAL});
  bad.push_back(e.can_cache ? Bad{Command::kCache, 0, size, a, EINVAL}
                            : Bad{Command::kCache, 0, 0, a, EINVAL});
  if (!(e.can_df && c.structured)) {
    bad.push_back({Command::kRead, kCmdFlagDf, 0, a, EINVAL});
  }
  bad.push_back(c.block_status ? Bad{Command::kBlockStatus, 0, 0, 0, EINVAL}
                               : Bad{Command::kBlockStatus, 0, 0, a, EINVAL});
  const Bad& b = bad[R(bad.size())];
  if (b.offset + b.length > size && b.length > size) return;
  std::vector<uint8_t> data;
  if (b.type == Command::kWrite) data.assign(b.length, 3);
  Issue(c, b.type, b.flags, b.offset, b.length, false, std::move(data),
        b.errno_value == 0, b.errno_value)
      .IgnoreError();
}

void Simulation::Execute(Conn& c, size_t index, bool allow_fault) {
  InMemoryPair& p = *c.pair;
  const ServerRequest r = p.held_requests()[index];
  auto it = c.cmds.find(r.cookie);
  if (it == c.cmds.end()) return Fail(&c, "a held request of no command");
  Cmd& cmd = it->second;
  if (cmd.executed) return Fail(&c, "a request executed twice");
  cmd.executed = true;
  // A zero-length READ never reaches the backend (ServeRequest answers it),
  // so it cannot fail there.
  const bool fault = allow_fault && P(fault_per_mille_, 1000) &&
                     !(cmd.type == Command::kRead && cmd.length == 0);
  const uint64_t end = cmd.offset + cmd.length;
  if (cmd.type == Command::kRead || cmd.type == Command::kBlockStatus) {
    cmd.snapshot.assign(model_.begin() + cmd.offset, model_.begin() + end);
  }
  if (fault) {
    ++result_.backend_faults;
    BackendFault f;
    f.errno_value =
        Pick<int>({EIO, EIO, ENOSPC, EPERM, EINVAL, ENOMEM, EOVERFLOW, ENOTSUP,
                   ESHUTDOWN, EROFS, EFBIG, ETIMEDOUT});
    if (cmd.type == Command::kRead && P(1, 2)) f.read_before = R(cmd.length);
    cmd.faulted = true;
    cmd.fault_errno = f.errno_value;
    cmd.read_before = f.read_before;
    if (f.errno_value == ESHUTDOWN) c.eshutdown = true;
    if (verbose()) {
      Log(
          absl::StrFormat("conn%d: execute cookie %d %s with errno %d "
                          "(read_before %d)",
                          c.id, r.cookie, CommandName(r.command), f.errno_value,
                          f.read_before));
    }
    if (!p.ExecuteWithFault(r.handle, f).ok()) Fail(&c, "ExecuteWithFault");
    return;
  }
  switch (cmd.type) {
    case Command::kWrite:
      std::copy(cmd.data.begin(), cmd.data.end(), model_.begin() + cmd.offset);
      break;
    case Command::kTrim:
    case Command::kWriteZeroes:
      std::memset(model_.data() + cmd.offset, 0, cmd.length);
      break;
    default:
      break;
  }
  if (verbose()) {
    Log(absl::StrFormat("conn%d: execute cookie %d %s [%d, +%d)", c.id,
                        r.cookie, CommandName(r.command), r.offset, r.length));
  }
  if (!p.Execute(r.handle).ok()) Fail(&c, "Execute");
}

void Simulation::RandomCut(Conn& c) {
  InMemoryPair& p = *c.pair;
  const Stream s = P(1, 2) ? Stream::kClientToServer : Stream::kServerToClient;
  if (p.ended(s)) return;
  const uint64_t delivered = p.delivered(s);
  const uint64_t sent = p.sent(s);
  const std::vector<uint64_t>& ends =
      s == Stream::kClientToServer ? c.c2s.boundaries() : c.s2c->boundaries();
  uint64_t at = 0;
  switch (R(3)) {
    case 0:  // anywhere in the bytes on the wire
      at = delivered + R(sent - delivered + 1);
      break;
    case 1: {  // a message boundary not yet delivered, or just before/after
      std::vector<uint64_t> ahead;
      for (auto it = ends.rbegin(); it != ends.rend() && *it >= delivered;
           ++it) {
        ahead.push_back(*it);
      }
      at = ahead.empty() ? sent : ahead[R(ahead.size())];
      at += R(3);
      at = at > 0 ? at - 1 : at;
      break;
    }
    default:  // bytes not sent yet
      at = sent + R(64);
      break;
  }
  at = std::max(at, delivered);
  absl::Status error;
  if (P(1, 2)) {
    error = ErrnoStatus(Pick<int>({ECONNRESET, EPIPE, ETIMEDOUT}),
                        "injected transport error");
  }
  ++c.cuts;
  ++result_.cuts;
  Log(absl::StrFormat("conn%d: cut %s at %d (delivered %d, sent %d) with %s",
                      c.id, s == Stream::kClientToServer ? "c2s" : "s2c", at,
                      delivered, sent, error.ok() ? "EOF" : Str(error)));
  p.BreakAt(s, at, error);
}

void Simulation::EndConn(Conn& c) {
  Client& cl = c.client();
  if (Ended(cl) || c.disconnect_called) return;
  const uint64_t how = R(4);
  absl::Status s;
  const char* what = "";
  const bool handshake = !c.connected;
  if (how == 0 && !handshake) {
    what = "Disconnect()";
    s = cl.Disconnect();
  } else {
    const bool abandon = how == 3 || (handshake && P(1, 2));
    what = abandon ? "Shutdown(kShutdownAbandonPending)" : "Shutdown(0)";
    s = cl.Shutdown(abandon ? kShutdownAbandonPending : 0);
    if (s.ok() && abandon) c.abandon_called = true;
  }
  Log(absl::StrFormat("conn%d: %s -> %s", c.id, what, Str(s)));
  if (!s.ok()) {
    // Only an ESHUTDOWN reply can have started a disconnect under us (then
    // Disconnect() is refused); the connection may also have ended.
    if (Ended(cl) || (c.eshutdown && absl::IsFailedPrecondition(s))) {
      if (!Ended(cl)) {
        s = cl.Shutdown(0);
        if (!s.ok()) Fail(&c, absl::StrCat("Shutdown(0) refused: ", Str(s)));
      }
    } else {
      return Fail(&c, absl::StrCat(what, " refused: ", Str(s)));
    }
  }
  c.disconnect_called = true;
  if (handshake) c.shutdown_in_handshake = true;
  // A second Disconnect() is refused; Shutdown() after it changes nothing.
  if (!Ended(cl) && c.connected) {
    absl::Status again = cl.Disconnect();
    if (again.ok() || StatusErrno(again) != EINVAL) {
      Fail(&c, absl::StrCat("a second Disconnect() gave ", Str(again)));
    }
    if (absl::Status sh = cl.Shutdown(); !sh.ok()) {
      Fail(&c, absl::StrCat("Shutdown() after a disconnect gave ", Str(sh)));
    }
  }
}

void Simulation::RandomAction() {
  Conn& c = *conns_[R(conns_.size())];
  InMemoryPair& p = *c.pair;
  const uint64_t pick = R(100);
  if (pick < 22) {
    if (c.copts.option_mode && !c.connected && !c.disconnect_called) {
      OptionStep(c);
    } else if (P(invalid_per_mille_, 1000)) {
      if (c.copts.strict == 0) {
        IssueRejectedCommand(c);
      } else {
        IssueInvalidCommand(c);
      }
    } else if (c.client().in_flight() < max_commands_in_flight_ ||
               !IssueExpected(c)) {
      IssueRandomCommand(c);
    }
  } else if (pick < 23) {
    // Some bytes handed to an asynchronous send, sent by a later action.
    const size_t n = p.PinClientOutput(1 + R(256));
    if (verbose() && n > 0) Log(absl::StrFormat("conn%d: c2s pin %d", c.id, n));
  } else if (pick < 33) {
    const size_t n = p.SendClientOutput(RandomAmount());
    if (verbose() && n > 0)
      Log(absl::StrFormat("conn%d: c2s send %d", c.id, n));
  } else if (pick < 42) {
    const Split s = RandomSplit();
    size_t max = RandomAmount();
    if (s.piece < 64) max = std::min<size_t>(max, 1 + R(512));
    const size_t n = p.DeliverToServer(s, max);
    if (verbose()) {
      Log(absl::StrFormat("conn%d: c2s deliver %d (piece %d, %s)", c.id, n,
                          s.piece, s.path == InputPath::kFeed ? "feed" : "zc"));
    }
  } else if (pick < 50) {
    p.PollServer();
  } else if (pick < 64) {
    if (!p.held_requests().empty()) {
      Execute(c, R(p.held_requests().size()), true);
    }
  } else if (pick < 74) {
    const size_t n = p.SendServerOutput(RandomAmount());
    if (verbose() && n > 0)
      Log(absl::StrFormat("conn%d: s2c send %d", c.id, n));
  } else if (pick < 84) {
    const Split s = RandomSplit();
    size_t max = RandomAmount();
    if (s.piece < 64) max = std::min<size_t>(max, 1 + R(512));
    const size_t n = p.DeliverToClient(s, max);
    if (verbose()) {
      Log(absl::StrFormat("conn%d: s2c deliver %d (piece %d, %s)", c.id, n,
                          s.piece, s.path == InputPath::kFeed ? "feed" : "zc"));
    }
  } else if (pick < 92) {
    p.PollClient();
  } else {
    p.Step(RandomSplit(), RandomSplit());
  }
  Check(c);
  for (auto& other : conns_) {
    for (uint64_t at : other->cut_actions) {
      if (at == action_) RandomCut(*other);
    }
    if (other->end_action == action_) EndConn(*other);
  }
}

void Simulation::Finish() {
  for (auto& c : conns_) {
    Check(*c);
    EndConn(*c);
  }
  for (int round = 0; round < 100000 && !failed_; ++round) {
    bool all_done = true;
    bool moved = false;
    for (auto& cp : conns_) {
      Conn& c = *cp;
      InMemoryPair& p = *c.pair;
      ++action_;
      while (!p.held_requests().empty() && !failed_) {
        Execute(c, cut_ ? 0 : R(p.held_requests().size()), !cut_);
        moved = true;
      }
      const Split a = cut_ ? Split::All() : RandomSplit();
      const Split b = cut_ ? Split::All() : RandomSplit();
      moved |= p.Step(a, b);
      Check(c);
      if (!c.client_ended || !c.server_ended || !p.held_requests().empty()) {
        all_done = false;
      }
    }
    if (all_done) {
      for (auto& c : conns_) CheckEnd(*c);
      return;
    }
    if (!moved) {
      Fail(nullptr, "stuck: nothing moves, and a connection has not ended");
      return;
    }
  }
  Fail(nullptr, "did not finish");
}

SimResult Simulation::Run() {
  if (cut_) {
    ConfigureCut();
  } else {
    ConfigureRandom();
  }
  result_.connections = conns_.size();
  if (cut_) {
    // Handshake, then every kind of command at once, executed in order,
    // the third failing part-way; then Disconnect().
    Conn& c = *conns_[0];
    c.pair->RunUntilQuiet();
    Check(c);
    if (c.connected && IssueExpected(c)) {
      // Pages are 4096 bytes: the READs see a hole, data, a hole.
      std::vector<uint8_t> data(3000);
      for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 13 + 1);
      Issue(c, Command::kWrite, 0, 4096, 3000, false, data, true).IgnoreError();
      Issue(c, Command::kRead, 0, 0, 12288, true, {}, true).IgnoreError();
      Issue(c, Command::kRead, 0, 0, 9000, true, {}, true).IgnoreError();
      Issue(c, Command::kBlockStatus, 0, 0, 65536, false, {}, c.block_status)
          .IgnoreError();
      Issue(c, Command::kTrim, 0, 4096, 4096, false, {}, true).IgnoreError();
      Issue(c, Command::kWriteZeroes, kCmdFlagNoHole, 8192, 100, false, {},
            true)
          .IgnoreError();
      Issue(c, Command::kFlush, 0, 0, 0, false, {}, true).IgnoreError();
      Issue(c, Command::kCache, 0, 0, 4096, false, {}, true).IgnoreError();
      Issue(c, Command::kRead, c.structured ? kCmdFlagDf : 0, 0, 10000, true,
            {}, true)
          .IgnoreError();
      for (int i = 0; i < 100 && !failed_; ++i) {
        c.pair->SendClientOutput();
        c.pair->DeliverToServer();
        c.pair->PollServer();
        Check(c);
        InMemoryPair& p = *c.pair;
        while (!p.held_requests().empty() && !failed_) {
          const ServerRequest& r = p.held_requests()[0];
          if (r.cookie == 3) {
            Cmd& cmd = c.cmds[3];
            cmd.executed = cmd.faulted = true;
            cmd.fault_errno = EIO;
            cmd.read_before = 5000;
            cmd.snapshot.assign(model_.begin(), model_.begin() + cmd.length);
            BackendFault f;
            f.read_before = 5000;
            p.ExecuteWithFault(r.handle, f).IgnoreError();
          } else {
            Execute(c, 0, false);
          }
        }
        if (!p.Step()) break;
        Check(c);
      }
      EndConn(c);
    }
    Finish();
    result_.bytes_c2s = c.pair->sent(Stream::kClientToServer);
    result_.bytes_s2c = c.pair->sent(Stream::kServerToClient);
    result_.c2s_message_ends = c.c2s.boundaries();
    result_.s2c_message_ends = c.s2c->boundaries();
    return result_;
  }
  for (action_ = 0; action_ < actions_ && !failed_; ++action_) {
    RandomAction();
  }
  result_.actions = action_;
  if (!failed_) Finish();
  return result_;
}

}  // namespace

SimResult Simulate(const SimOptions& options) {
  return Simulation(options, std::nullopt).Run();
}

SimResult SimulateCut(const CutScenario& scenario, const SimOptions& options) {
  return Simulation(options, scenario).Run();
}

std::string ReproCommand(uint64_t seed) {
  return absl::StrCat("bazel run //tests/sim:sim -- --seed=", seed,
                      " --verbose");
}

}  // namespace nbd::sim
