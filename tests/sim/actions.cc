// The simulation's actions: commands, request execution, cuts and ends.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "protocol/names.h"
#include "protocol/status.h"
#include "tests/sim/simulation.h"

namespace nbd::sim::internal {

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
    // kStrictAutoFlag clears PAYLOAD_LEN on a WRITE without extended
    // headers instead of refusing it (libnbd's LIBNBD_STRICT_AUTO_FLAG).
    if (!c.extended && !(c.copts.strict & kStrictAutoFlag)) {
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

}  // namespace nbd::sim::internal
