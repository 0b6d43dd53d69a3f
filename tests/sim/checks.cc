// The simulation's oracle: every event checked as it is popped, and how
// each connection ended.
#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "protocol/names.h"
#include "protocol/status.h"
#include "tests/sim/simulation.h"

namespace nbd::sim::internal {

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

}  // namespace nbd::sim::internal
