// libFuzzer entry point for API sequences on the client core (nbd::Client).
//
// Where client_fuzzer feeds mostly raw server bytes, this target makes the
// input a sequence of client calls (every command with sizes, flags and
// tags, Disconnect, Shutdown with and without kShutdownAbandonPending, the
// option-mode Opt* calls, ConsumeOutput/PinOutput of some bytes, PollEvent,
// FeedEof, FeedTransportError) interleaved with server bytes from three
// sources, so that it gets deep into transmission:
//   - a real nbd::ServerSession as the peer: the client's consumed output is
//     fed to it, its requests are answered as the input says, and its output
//     is handed to the client in input-chosen pieces (well-formed handshake
//     and replies);
//   - replies the harness builds for a pending cookie with the wire
//     encoders (simple replies, OFFSET_DATA/OFFSET_HOLE/ERROR/ERROR_OFFSET/
//     BLOCK_STATUS/NONE chunks, compact or extended headers), which may
//     contradict what the peer says;
//   - raw bytes from the input.
// After every operation it checks: every accepted command completes exactly
// once, with its own type and tag, and its chunk events stay inside the
// request; nothing completes after ClientClosed/ClientDead, which comes
// exactly once and last; in_flight() matches the harness's books; wants(),
// RecvBuffer() and the pending output agree; a refused call changes nothing
// observable (phase, call state, in_flight, output, events, wants); read
// buffers are written only inside their bounds (guard bytes) and write
// payloads are never changed.
//
// Input format (integers big-endian; reads past the end yield zeros):
//   config, 6 bytes:
//     u8 ClientOptions bits: 0 option_mode, 1 request_extended_headers,
//        2 request_structured_replies, 3 request_base_allocation,
//        4 request_block_size, 5 full_info, 6 an extra meta context,
//        7 trace
//     u8 bits 0-1 tls (% 3: disable, allow, require); 2-3 final action (0
//        FeedEof, 1 FeedTransportError, 2 none, 3 Shutdown and settle);
//        peer: 4 no extended headers, 5 no structured replies, 6 read-only,
//        7 min_block 512
//     u8 strict bits (& kStrictAll)
//     u8 max_payload: 0 the default, else n * 512
//     u8 recv_readahead
//     u8 export name (% 3: "disk", "", "nosuch")
//   then up to kMaxOps operations, an opcode byte (% kNumOps) and arguments:
//     0 Read / 1 Write   u8 sel, offset, length, u8 flags (Read: 0x40
//                        report_chunks), u8 tag
//     2 Flush            u8 flags, u8 tag
//     3 Trim / 4 Cache / 5 WriteZeroes / 6 BlockStatus
//                        u8 sel, offset, length, u8 flags, u8 tag
//     7 Disconnect       u8 (non-zero: bogus flags)
//     8 Shutdown         u8 (0: 0, 1: kShutdownAbandonPending, else bogus)
//     9 Opt*             u8 which (% 8); meta-context calls: u8 count and
//                        count x u8 query
//    10 SetExportName    u8 (% 3 as in the config)
//    11 Output           u8 mode (bit 0: PinOutput instead of consuming,
//                        bit 1: drop the bytes instead of passing them to
//                        the peer, bit 7: also try an over-long call),
//                        u16 amount (0: all)
//    12 Poll             u8 count (0: all)
//    13 FeedEof
//    14 TransportError
//    15 Raw              u8 len, len bytes, u8 mode (bit 7 zero-copy)
//    16 PeerToClient     u16 amount (0: all), u8 mode (bit 7 zero-copy,
//                        & 0x7f piece size, 0 = at once)
//    17 PeerReply        u8 kind (% 4: natural, errors, first only, read
//                        errors)
//    18 Crafted          u8 which (index into pending cookies; 0xff: a
//                        cookie nobody used), u8 kind, arguments (Crafted())
//    19 Checks           every getter and their consistency
//    20 Tls              u8 (even: TlsHandshakeDone, odd: TlsHandshakeFailed)
//   `sel` encodes offset (bits 0-1: u16, u8 * 512, u64, UINT64_MAX - u8) and
//   length (bits 2-3: u16, u8 * 512, u32, u64); Read/Write lengths are taken
//   modulo kMaxBuffer + 1.
//
// Environment: NBD_API_FUZZ_TRACE=1 prints each operation and event.

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"
#include "protocol/client/options.h"
#include "protocol/constants.h"
#include "protocol/io.h"
#include "protocol/server/events.h"
#include "protocol/server/options.h"
#include "protocol/server/server.h"
#include "protocol/status.h"
#include "protocol/wire.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using nbd::Client;
using nbd::ClientPhase;
using nbd::Command;
using nbd::Cookie;
using nbd::Direction;
using nbd::Option;
using nbd::fuzz::Checksum;
using nbd::fuzz::Input;

constexpr size_t kMaxOps = 512;
constexpr size_t kMaxBuffer = 8192;  // largest Read/Write buffer
constexpr size_t kGuard = 16;
constexpr size_t kMaxSlices = 8;
constexpr size_t kMaxQueued = 1 << 20;
constexpr uint64_t kExportSize = 1 << 20;

bool Tracing() {
  static const bool on = std::getenv("NBD_API_FUZZ_TRACE") != nullptr;
  return on;
}

#define FUZZ_TRACE(...)                               \
  do {                                                \
    if (Tracing()) std::fprintf(stderr, __VA_ARGS__); \
  } while (false)

#define FUZZ_CHECK NBD_FUZZ_CHECK
#define FUZZ_CHECK_MSG NBD_FUZZ_CHECK_MSG

uint8_t GuardByte(size_t i) { return static_cast<uint8_t>(0x5a ^ (i * 31)); }

bool IsTerminal(ClientPhase p) {
  return p == ClientPhase::kClosed || p == ClientPhase::kDead;
}
bool IsTransmission(ClientPhase p) {
  return p == ClientPhase::kReady || p == ClientPhase::kProcessing;
}

// An accepted command whose CommandCompleted has not been popped.
struct Pending {
  Command type = Command::kRead;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t tag = 0;
  bool report_chunks = false;
  std::unique_ptr<uint8_t[]> mem;  // guard | data | guard (Read and Write)
  size_t size = 0;
  uint32_t write_sum = 0;
  uint8_t* data() { return mem.get() + kGuard; }
};

// Everything a refused call must leave as it was.
struct Snapshot {
  ClientPhase phase;
  nbd::ClientCallState call_state;
  size_t in_flight;
  size_t output;
  bool has_events;
  Direction wants;
  bool operator==(const Snapshot&) const = default;
};

class Harness {
 public:
  explicit Harness(Input& in) : in_(in) {
    nbd::ClientOptions o;
    const uint8_t bits = in_.U8();
    o.option_mode = bits & 0x01;
    o.request_extended_headers = bits & 0x02;
    o.request_structured_replies = bits & 0x04;
    o.request_base_allocation = bits & 0x08;
    o.request_block_size = bits & 0x10;
    o.full_info = bits & 0x20;
    if (bits & 0x40) o.meta_contexts.push_back("qemu:dirty-bitmap:fuzz");
    o.trace = bits & 0x80;
    trace_ = o.trace;
    const uint8_t b1 = in_.U8();
    o.tls = static_cast<nbd::TlsPolicy>((b1 & 3) % 3);
    tls_policy_ = o.tls;
    final_action_ = (b1 >> 2) & 3;
    o.strict = in_.U8() & nbd::kStrictAll;
    if (uint8_t p = in_.U8(); p != 0) o.max_payload = p * 512u;
    o.recv_readahead = in_.U8();
    o.export_name = ExportName(in_.U8());
    option_mode_ = o.option_mode;
    client_ = std::make_unique<Client>(std::move(o));

    nbd::ServerOptions so;
    nbd::ExportInfo e;
    e.name = "disk";
    e.description = "api fuzz";
    e.size = kExportSize;
    e.read_only = b1 & 0x40;
    e.can_flush = e.can_fua = e.can_trim = e.can_zero = true;
    e.can_fast_zero = e.can_cache = e.can_multi_conn = true;
    if (b1 & 0x80) e.min_block = 512;
    so.exports.push_back(e);
    so.allow_extended_headers = !(b1 & 0x10);
    so.allow_structured_replies = !(b1 & 0x20);
    so.max_in_flight = 16;
    peer_ = std::make_unique<nbd::ServerSession>(std::move(so));
    store_.assign(kExportSize, 0);
  }

  ~Harness() {
    // Destroy the cores before the buffers they may reference.
    client_.reset();
    peer_.reset();
  }

  void Run() {
    CheckState();
    for (size_t ops = 0; ops < kMaxOps && !in_.empty(); ++ops) {
      Step(in_.U8());
      CheckGuards();
      CheckState();
    }
    Drain(0);
    CheckState();
    if (final_action_ == 2) return;  // destroyed with commands pending
    if (final_action_ == 3) {
      if (client_->Shutdown(0).ok()) disc_ = true;
      Settle();
    }
    if (final_action_ == 1) {
      client_->FeedTransportError(
          nbd::ErrnoStatus(ECONNRESET, "fuzzer: end of input"));
    } else {
      client_->FeedEof();
    }
    FUZZ_CHECK(IsTerminal(client_->phase()));
    Drain(0);
    FUZZ_CHECK_MSG(terminal_event_.has_value(),
                   "no ClientClosed/ClientDead after the connection ended");
    FUZZ_CHECK(pending_.empty());
    CheckState();
  }

 private:
  enum Op : uint8_t {
    kRead,
    kWrite,
    kFlush,
    kTrim,
    kCache,
    kWriteZeroes,
    kBlockStatus,
    kDisconnect,
    kShutdown,
    kOpt,
    kSetExportName,
    kOutput,
    kPoll,
    kEof,
    kTransportError,
    kRaw,
    kPeerToClient,
    kPeerReply,
    kCrafted,
    kChecks,
    kTls,
    kNumOps,
  };

  static std::string ExportName(uint8_t sel) {
    switch (sel % 3) {
      case 0:
        return "disk";
      case 1:
        return "";
      default:
        return "nosuch";
    }
  }

  Snapshot Snap() const {
    return {client_->phase(),      client_->call_state(),
            client_->in_flight(),  client_->pending_output_bytes(),
            client_->has_events(), client_->wants()};
  }

  void Step(uint8_t op) {
    FUZZ_TRACE("op %d (phase %s, in_flight %zu, output %zu, pending %zu)\n",
               op % kNumOps, nbd::ClientPhaseName(client_->phase()),
               client_->in_flight(), client_->pending_output_bytes(),
               pending_.size());
    switch (static_cast<Op>(op % kNumOps)) {
      case kRead:
        return DoRead();
      case kWrite:
        return DoWrite();
      case kFlush: {
        const uint16_t flags = in_.U8();
        const uint64_t tag = Tag(in_.U8());
        return Issued(Command::kFlush, 0, 0, tag, false, {},
                      [&] { return client_->Flush(flags, tag); });
      }
      case kTrim:
        return DoRange(Command::kTrim);
      case kCache:
        return DoRange(Command::kCache);
      case kWriteZeroes:
        return DoRange(Command::kWriteZeroes);
      case kBlockStatus:
        return DoRange(Command::kBlockStatus);
      case kDisconnect:
        return DoDisconnect();
      case kShutdown:
        return DoShutdown();
      case kOpt:
        return DoOpt();
      case kSetExportName: {
        const Snapshot before = Snap();
        absl::Status s = client_->SetExportName(ExportName(in_.U8()));
        if (!s.ok()) {
          FUZZ_CHECK_MSG(Snap() == before, "a refused call changed something");
        } else {
          FUZZ_CHECK(before.phase == ClientPhase::kNegotiating);
        }
        return;
      }
      case kOutput:
        return DoOutput();
      case kPoll:
        return Drain(in_.U8());
      case kEof:
        client_->FeedEof();
        FUZZ_CHECK(IsTerminal(client_->phase()));
        return;
      case kTransportError:
        client_->FeedTransportError(absl::OkStatus());
        FUZZ_CHECK(IsTerminal(client_->phase()));
        return;
      case kRaw: {
        const absl::Span<const uint8_t> bytes = in_.Bytes(in_.U8());
        return FeedClient(bytes, in_.U8());
      }
      case kPeerToClient:
        return PeerToClient();
      case kPeerReply:
        return PeerReply(in_.U8());
      case kCrafted:
        return Crafted();
      case kChecks:
        return Checks();
      case kTls:
        return DoTls();
      case kNumOps:
        break;
    }
  }

  // ---- Commands -------------------------------------------------------------

  static uint64_t Tag(uint8_t sel) {
    // Plain values, 0, and pointer-like ones; tags need not be unique.
    return sel == 0 ? 0 : uint64_t{sel} * 0x0101010101010101ull;
  }

  std::pair<uint64_t, uint64_t> OffsetAndLength() {
    const uint8_t sel = in_.U8();
    uint64_t offset = 0;
    switch (sel & 3) {
      case 0:
        offset = in_.U16();
        break;
      case 1:
        offset = uint64_t{in_.U8()} * 512;
        break;
      case 2:
        offset = in_.U64();
        break;
      default:
        offset = std::numeric_limits<uint64_t>::max() - in_.U8();
        break;
    }
    uint64_t length = 0;
    switch ((sel >> 2) & 3) {
      case 0:
        length = in_.U16();
        break;
      case 1:
        length = uint64_t{in_.U8()} * 512;
        break;
      case 2:
        length = in_.U32();
        break;
      default:
        length = in_.U64();
        break;
    }
    return {offset, length};
  }

  static Pending MakeBuffer(size_t size) {
    Pending p;
    p.size = size;
    p.mem = std::make_unique<uint8_t[]>(size + 2 * kGuard);
    for (size_t i = 0; i < kGuard; ++i) {
      p.mem[i] = GuardByte(i);
      p.mem[kGuard + size + i] = GuardByte(i + kGuard);
    }
    for (size_t i = 0; i < size; ++i) {
      p.mem[kGuard + i] = static_cast<uint8_t>(i * 13 + 1);
    }
    return p;
  }

  template <typename Call>
  void Issued(Command type, uint64_t offset, uint64_t length, uint64_t tag,
              bool report_chunks, Pending p, Call call) {
    const Snapshot before = Snap();
    absl::StatusOr<Cookie> cookie = call();
    FUZZ_TRACE("  command %d: %s\n", static_cast<int>(type),
               cookie.ok() ? std::to_string(*cookie).c_str()
                           : cookie.status().ToString().c_str());
    if (!cookie.ok()) {
      FUZZ_CHECK_MSG(Snap() == before, "a refused command changed something");
      FUZZ_CHECK(nbd::StatusErrno(cookie.status()) != 0);
      return;
    }
    FUZZ_CHECK_MSG(IsTransmission(before.phase),
                   "a command was accepted outside transmission");
    FUZZ_CHECK_MSG(*cookie > last_cookie_, "cookies must count up");
    last_cookie_ = *cookie;
    FUZZ_CHECK(client_->in_flight() == before.in_flight + 1);
    FUZZ_CHECK(client_->phase() == ClientPhase::kProcessing);
    p.type = type;
    p.offset = offset;
    p.length = length;
    p.tag = tag;
    p.report_chunks = report_chunks;
    FUZZ_CHECK(pending_.emplace(*cookie, std::move(p)).second);
  }

  void DoRead() {
    // No structured binding: clang 14 cannot capture one in a lambda.
    const std::pair<uint64_t, uint64_t> range = OffsetAndLength();
    const uint64_t offset = range.first;
    const uint64_t length = range.second % (kMaxBuffer + 1);
    const uint8_t f = in_.U8();
    nbd::ReadOptions options;
    options.flags = f & 0xbf;
    options.report_chunks = f & 0x40;
    options.tag = Tag(in_.U8());
    Pending p = MakeBuffer(length);
    absl::Span<uint8_t> buffer(p.data(), length);
    Issued(Command::kRead, offset, length, options.tag, options.report_chunks,
           std::move(p),
           [&] { return client_->Read(offset, buffer, options); });
  }

  void DoWrite() {
    // No structured binding: clang 14 cannot capture one in a lambda.
    const std::pair<uint64_t, uint64_t> range = OffsetAndLength();
    const uint64_t offset = range.first;
    const uint64_t length = range.second % (kMaxBuffer + 1);
    const uint16_t flags = in_.U8();
    const uint64_t tag = Tag(in_.U8());
    Pending p = MakeBuffer(length);
    p.write_sum = Checksum(p.data(), length);
    absl::Span<const uint8_t> data(p.data(), length);
    Issued(Command::kWrite, offset, length, tag, false, std::move(p),
           [&] { return client_->Write(offset, data, flags, tag); });
  }

  void DoRange(Command type) {
    const std::pair<uint64_t, uint64_t> range = OffsetAndLength();
    const uint64_t offset = range.first;
    const uint64_t length = range.second;
    const uint16_t flags = in_.U8();
    const uint64_t tag = Tag(in_.U8());
    Issued(type, offset, length, tag, false, {},
           [&]() -> absl::StatusOr<Cookie> {
             switch (type) {
               case Command::kTrim:
                 return client_->Trim(offset, length, flags, tag);
               case Command::kCache:
                 return client_->Cache(offset, length, flags, tag);
               case Command::kWriteZeroes:
                 return client_->WriteZeroes(offset, length, flags, tag);
               default:
                 return client_->BlockStatus(offset, length, flags, tag);
             }
           });
  }

  void DoDisconnect() {
    const uint32_t flags = in_.U8() != 0 ? 0x1 : 0;
    const Snapshot before = Snap();
    absl::Status s = client_->Disconnect(flags);
    if (!s.ok()) {
      FUZZ_CHECK_MSG(Snap() == before,
                     "a refused Disconnect changed something");
      return;
    }
    FUZZ_CHECK_MSG(flags == 0, "Disconnect accepted unknown flags");
    FUZZ_CHECK(IsTransmission(before.phase));
    FUZZ_CHECK(client_->in_flight() == before.in_flight + 1);
    ++last_cookie_;  // NBD_CMD_DISC consumes a cookie
    disc_ = true;
  }

  void DoShutdown() {
    const uint8_t sel = in_.U8();
    uint32_t flags = 0;
    if (sel == 1) {
      flags = nbd::kShutdownAbandonPending;
    } else if (sel > 1) {
      flags = 0x20000;
    }
    const Snapshot before = Snap();
    absl::Status s = client_->Shutdown(flags);
    if (!s.ok()) {
      FUZZ_CHECK_MSG(Snap() == before, "a refused Shutdown changed something");
      FUZZ_CHECK(flags == 0x20000 || IsTerminal(before.phase));
      return;
    }
    FUZZ_CHECK_MSG(flags != 0x20000, "Shutdown accepted unknown flags");
    FUZZ_CHECK_MSG(!IsTerminal(before.phase), "Shutdown after the end");
    // In transmission, or later if the handshake still completes (a GO
    // reply already on its way), it queues an NBD_CMD_DISC.
    disc_ = true;
  }

  std::vector<std::string> Queries() {
    static const char* const kQueries[] = {
        "base:allocation", "base:", "qemu:dirty-bitmap:fuzz", ""};
    std::vector<std::string> q;
    const uint8_t n = in_.U8() % 4;
    for (uint8_t i = 0; i < n; ++i) q.push_back(kQueries[in_.U8() % 4]);
    return q;
  }

  void DoOpt() {
    const uint8_t which = in_.U8() % 8;
    const Snapshot before = Snap();
    absl::Status s;
    std::optional<Option> completes;
    switch (which) {
      case 0:
        s = client_->OptList();
        completes = Option::kList;
        break;
      case 1:
        s = client_->OptInfo();
        completes = Option::kInfo;
        break;
      case 2:
        s = client_->OptGo();
        completes = Option::kGo;
        break;
      case 3:
        s = client_->OptAbort();
        break;
      case 4:
        s = client_->OptStructuredReply();
        completes = Option::kStructuredReply;
        break;
      case 5:
        s = client_->OptExtendedHeaders();
        completes = Option::kExtendedHeaders;
        break;
      case 6:
        s = client_->OptListMetaContext(Queries());
        completes = Option::kListMetaContext;
        break;
      default:
        s = client_->OptSetMetaContext(Queries());
        completes = Option::kSetMetaContext;
        break;
    }
    if (!s.ok()) {
      FUZZ_CHECK_MSG(Snap() == before, "a refused Opt* call changed something");
      return;
    }
    FUZZ_CHECK_MSG(before.phase == ClientPhase::kNegotiating,
                   "an Opt* call was accepted outside negotiation");
    if (completes.has_value()) options_.push_back(*completes);
  }

  void DoTls() {
    if (in_.U8() % 2 == 0) {
      const Snapshot before = Snap();
      absl::Status s = client_->TlsHandshakeDone();
      if (!s.ok()) {
        FUZZ_CHECK_MSG(Snap() == before,
                       "a refused TlsHandshakeDone changed something");
      } else {
        FUZZ_CHECK_MSG(saw_start_tls_ || client_->has_events(),
                       "TlsHandshakeDone accepted without STARTTLS");
        tls_done_ = true;
      }
    } else {
      client_->TlsHandshakeFailed(absl::OkStatus());
      FUZZ_CHECK(IsTerminal(client_->phase()));
    }
  }

  // ---- Client output and the peer ------------------------------------------

  // Copies up to `n` pending output bytes (what a sender would send).
  std::vector<uint8_t> PeekBytes(size_t n) {
    nbd::IoSlice slices[kMaxSlices];
    std::vector<uint8_t> out;
    const size_t count = client_->PeekOutput(absl::MakeSpan(slices));
    size_t total = 0;
    for (size_t i = 0; i < count; ++i) {
      FUZZ_CHECK_MSG(slices[i].size > 0, "PeekOutput returned an empty slice");
      const uint8_t* p = static_cast<const uint8_t*>(slices[i].data);
      const size_t take = std::min(slices[i].size, n - out.size());
      out.insert(out.end(), p, p + take);
      total += slices[i].size;
    }
    FUZZ_CHECK(total <= client_->pending_output_bytes());
    if (count < kMaxSlices) {
      FUZZ_CHECK_MSG(total == client_->pending_output_bytes(),
                     "PeekOutput slices do not cover pending_output_bytes()");
    }
    return out;
  }

  void DoOutput() {
    const uint8_t mode = in_.U8();
    size_t amount = in_.U16();
    const size_t pending = client_->pending_output_bytes();
    if (mode & 0x80) {
      const Snapshot before = Snap();
      absl::Status s = (mode & 1) ? client_->PinOutput(pending + 1)
                                  : client_->ConsumeOutput(pending + 1);
      FUZZ_CHECK_MSG(!s.ok(), "an over-long Consume/PinOutput succeeded");
      FUZZ_CHECK_MSG(Snap() == before,
                     "a refused output call changed "
                     "something");
    }
    if (amount == 0 || amount > pending) amount = pending;
    if (mode & 1) {
      // Pinned bytes are handed to a (simulated) asynchronous send; they
      // are consumed by a later Output.
      FUZZ_CHECK(client_->PinOutput(amount).ok());
      FUZZ_CHECK(client_->pending_output_bytes() == pending);
      return;
    }
    ConsumeClient(amount, !(mode & 2));
  }

  void ConsumeClient(size_t amount, bool to_peer) {
    // A transport can only send what it was shown: peek in rounds.
    for (size_t round = 0; round < 64 && amount > 0; ++round) {
      std::vector<uint8_t> bytes = PeekBytes(amount);
      if (bytes.empty()) break;
      const size_t pending = client_->pending_output_bytes();
      FUZZ_CHECK(client_->ConsumeOutput(bytes.size()).ok());
      if (!IsTerminal(client_->phase())) {
        FUZZ_CHECK(client_->pending_output_bytes() == pending - bytes.size());
      }
      amount -= bytes.size();
      if (to_peer && to_peer_.size() + bytes.size() <= kMaxQueued) {
        to_peer_.insert(to_peer_.end(), bytes.begin(), bytes.end());
      }
    }
    FeedPeer();
  }

  void FeedPeer() {
    if (!to_peer_.empty() && !PeerEnded()) {
      absl::StatusOr<size_t> used = peer_->Feed(to_peer_);
      if (used.ok()) {
        to_peer_.erase(to_peer_.begin(), to_peer_.begin() + *used);
      } else {
        to_peer_.clear();
      }
    }
    if (PeerEnded()) to_peer_.clear();
    DrainPeer();
  }

  bool PeerEnded() const {
    const nbd::ServerPhase p = peer_->phase();
    return p == nbd::ServerPhase::kClosed || p == nbd::ServerPhase::kDead;
  }

  void DrainPeer() {
    while (std::optional<nbd::ServerEvent> e = peer_->PollEvent()) {
      if (const auto* r = std::get_if<nbd::ServerRequest>(&*e)) {
        if (r->command == Command::kWrite && r->offset < store_.size()) {
          const size_t n =
              std::min<size_t>(r->payload.size(), store_.size() - r->offset);
          std::memcpy(store_.data() + r->offset, r->payload.data(), n);
        }
        peer_requests_.push_back(*r);
      }
    }
    // The peer's output goes to the client in PeerToClient.
    nbd::IoSlice slices[kMaxSlices];
    for (int round = 0; round < 64; ++round) {
      const size_t n = peer_->PeekOutput(absl::MakeSpan(slices));
      if (n == 0) break;
      size_t total = 0;
      for (size_t i = 0; i < n; ++i) {
        const uint8_t* p = static_cast<const uint8_t*>(slices[i].data);
        if (to_client_.size() + slices[i].size <= kMaxQueued) {
          to_client_.insert(to_client_.end(), p, p + slices[i].size);
        }
        total += slices[i].size;
      }
      if (!peer_->ConsumeOutput(total).ok()) break;
    }
  }

  void PeerReply(uint8_t kind) {
    std::deque<nbd::ServerRequest> requests;
    requests.swap(peer_requests_);
    if (kind % 4 == 2 && requests.size() > 1) {
      peer_requests_.assign(requests.begin() + 1, requests.end());
      requests.resize(1);
    }
    for (const nbd::ServerRequest& r : requests) {
      const bool errors = kind % 4 == 1;
      if (errors) {
        (void)peer_->ReplyError(r.handle, EIO, "fuzz");
        continue;
      }
      if (r.command == Command::kRead && r.length > 0) {
        auto data = std::make_shared<std::vector<uint8_t>>(r.length);
        if (r.offset < store_.size()) {
          std::memcpy(data->data(), store_.data() + r.offset,
                      std::min<size_t>(r.length, store_.size() - r.offset));
        }
        if (kind % 4 == 3) {
          const uint64_t half = r.length / 2;
          std::vector<nbd::ReadPiece> pieces;
          if (half > 0) {
            pieces.push_back(nbd::ReadPiece::Data(
                r.offset, absl::MakeConstSpan(data->data(), half)));
          }
          (void)peer_->ReplyReadError(r.handle, pieces, r.offset + half, EIO,
                                      "fuzz", data);
        } else {
          const nbd::ReadPiece pieces[] = {
              nbd::ReadPiece::Data(
                  r.offset, absl::MakeConstSpan(data->data(), r.length / 2)),
              nbd::ReadPiece::Hole(r.offset + r.length / 2,
                                   r.length - r.length / 2)};
          const size_t first = r.length / 2 == 0 ? 1 : 0;
          (void)peer_->ReplyRead(
              r.handle, absl::MakeConstSpan(pieces + first, 2 - first), data);
        }
      } else if (r.command == Command::kBlockStatus) {
        const nbd::Extent extents[] = {{4096, 0}, {r.length, nbd::kStateHole}};
        (void)peer_->ReplyBlockStatus(r.handle, extents);
      } else {
        (void)peer_->ReplyOk(r.handle);
      }
    }
    DrainPeer();
  }

  void PeerToClient() {
    FeedPeer();
    size_t amount = in_.U16();
    const uint8_t mode = in_.U8();
    if (amount == 0 || amount > to_client_.size()) amount = to_client_.size();
    std::vector<uint8_t> bytes(to_client_.begin(), to_client_.begin() + amount);
    to_client_.erase(to_client_.begin(), to_client_.begin() + amount);
    FeedClient(bytes, mode);
  }

  // Hands bytes to the client by Feed() or RecvBuffer()/CommitRecv(), in
  // pieces of `mode & 0x7f` bytes (0: at once).
  void FeedClient(absl::Span<const uint8_t> bytes, uint8_t mode) {
    const bool zero_copy = mode & 0x80;
    const size_t piece = (mode & 0x7f) == 0 ? SIZE_MAX : (mode & 0x7f);
    for (size_t rounds = 0; rounds < 8192 && !bytes.empty(); ++rounds) {
      const ClientPhase before = client_->phase();
      absl::Span<const uint8_t> part = bytes.subspan(0, piece);
      if (zero_copy) {
        absl::Span<uint8_t> span = client_->RecvBuffer();
        if (span.empty()) {
          FUZZ_CHECK(IsTerminal(before) ||
                     client_->wants() == Direction::kNone);
          return;
        }
        CheckRecvSpan(span);
        const size_t n = std::min(span.size(), part.size());
        std::memcpy(span.data(), part.data(), n);
        absl::Status s = client_->CommitRecv(n);
        if (!s.ok()) {
          FUZZ_CHECK_MSG(IsTerminal(client_->phase()),
                         "CommitRecv(n <= span) failed but the connection is "
                         "not over");
          return;
        }
        bytes.remove_prefix(n);
      } else {
        absl::StatusOr<size_t> used = client_->Feed(part);
        if (!used.ok()) {
          FUZZ_CHECK_MSG(IsTerminal(client_->phase()),
                         "Feed failed but the connection is not over");
          return;
        }
        FUZZ_CHECK(!IsTerminal(before));
        FUZZ_CHECK(*used <= part.size());
        if (*used < part.size()) {
          // The end of a STARTTLS acknowledgement, or the clean end.
          FUZZ_CHECK_MSG(client_->wants() == Direction::kNone,
                         "Feed stopped early while the client wants input");
          return;
        }
        bytes.remove_prefix(part.size());
      }
      CheckGuards();
    }
  }

  void CheckRecvSpan(absl::Span<uint8_t> span) {
    const uintptr_t lo = reinterpret_cast<uintptr_t>(span.data());
    const uintptr_t hi = lo + span.size();
    for (auto& [cookie, p] : pending_) {
      if (!p.mem) continue;
      const uintptr_t mlo = reinterpret_cast<uintptr_t>(p.mem.get());
      const uintptr_t mhi = mlo + p.size + 2 * kGuard;
      if (hi <= mlo || lo >= mhi) continue;
      FUZZ_CHECK_MSG(p.type == Command::kRead,
                     "RecvBuffer() points into a write payload");
      FUZZ_CHECK_MSG(lo >= mlo + kGuard && hi <= mlo + kGuard + p.size,
                     "RecvBuffer() span leaves the read buffer");
    }
  }

  // ---- Crafted replies -----------------------------------------------------

  // A share of `whole` chosen by `b`: below 0xf0 proportionally; from 0xf0
  // on one of the edges whole, whole + 1, whole - 1, whole + 2, whole - 2,
  // so that 1/16 of the inputs try the client's bound checks on both sides
  // of the end (0xf0, the exact end, is also what libFuzzer's comparison
  // tracing suggests for the `b < 0xf0` below).
  static uint64_t EdgeShare(uint64_t whole, uint8_t b) {
    if (b < 0xf0) return whole * b / 0xf0;
    static constexpr int kEdges[] = {0, 1, -1, 2, -2};
    const int d = kEdges[(b - 0xf0) % 5];
    if (d < 0) return whole - std::min<uint64_t>(whole, -d);
    return whole + d;
  }

  // A reply chunk or simple reply for `which` pending cookie, fed straight
  // to the client. kind % 8: 0 simple (u8 error; a successful READ carries
  // its data), 1 OFFSET_DATA, 2 OFFSET_HOLE (u8 start, u8 length: shares
  // of the request by EdgeShare), 3 ERROR, 4 ERROR_OFFSET (u8 errno, u8 offset
  // share), 5 BLOCK_STATUS (u8 count, count x u16 length), 6 NONE, 7 raw type
  // (u16 type, u8 payload length); then for 1-7 u8 flags (bit 0 DONE,
  // bit 7 the other header form) and u8 feed mode.
  void Crafted() {
    const uint8_t which = in_.U8();
    const uint8_t kind = in_.U8() % 8;
    Cookie cookie = last_cookie_ + 1000;
    const Pending* p = nullptr;
    if (which != 0xff && !pending_.empty()) {
      auto it = pending_.begin();
      std::advance(it, which % pending_.size());
      cookie = it->first;
      p = &it->second;
    }
    const uint64_t off = p ? p->offset : 0;
    const uint64_t len = p ? p->length : 512;
    std::vector<uint8_t> bytes;
    if (kind == 0) {
      const uint32_t error = in_.U8() % 2 ? 5 : 0;
      const auto h = nbd::EncodeSimpleReply({error, cookie});
      bytes.assign(h.begin(), h.end());
      if (error == 0 && p && p->type == Command::kRead) {
        bytes.resize(bytes.size() + len, 0x42);
      }
      return FeedClient(bytes, in_.U8());
    }
    std::vector<uint8_t> payload;
    uint16_t type = 0;
    switch (kind) {
      case 1:
      case 2: {
        const uint64_t start = EdgeShare(len, in_.U8());
        const uint64_t n = std::max<uint64_t>(
            1, EdgeShare(len - std::min(start, len), in_.U8()));
        if (kind == 1) {
          type = static_cast<uint16_t>(nbd::ChunkType::kOffsetData);
          payload = nbd::EncodeOffsetData(
              off + start,
              std::vector<uint8_t>(std::min<uint64_t>(n, 65536), 0x37));
        } else {
          type = static_cast<uint16_t>(nbd::ChunkType::kOffsetHole);
          const auto h =
              nbd::EncodeOffsetHole({off + start, static_cast<uint32_t>(n)});
          payload.assign(h.begin(), h.end());
        }
        break;
      }
      case 3:
        type = static_cast<uint16_t>(nbd::ChunkType::kError);
        payload = nbd::EncodeErrorChunk({uint32_t{in_.U8()} % 120, "crafted"});
        break;
      case 4: {
        type = static_cast<uint16_t>(nbd::ChunkType::kErrorOffset);
        const uint32_t error = uint32_t{in_.U8()} % 120;
        payload = nbd::EncodeErrorOffsetChunk(
            {error, "crafted", off + EdgeShare(len, in_.U8())});
        break;
      }
      case 5: {
        nbd::BlockStatusChunk c;
        const auto& contexts = client_->meta_contexts();
        c.context_id = contexts.empty() ? 1 : contexts[0].id;
        const uint8_t n = in_.U8() % 6 + 1;
        for (uint8_t i = 0; i < n; ++i) {
          c.extents.push_back({uint64_t{in_.U16()} * 512, uint64_t{i} % 4});
        }
        const bool ext = client_->extended_headers();
        type = static_cast<uint16_t>(ext ? nbd::ChunkType::kBlockStatusExt
                                         : nbd::ChunkType::kBlockStatus);
        payload =
            ext ? nbd::EncodeBlockStatusExt(c) : nbd::EncodeBlockStatus(c);
        break;
      }
      case 6:
        type = static_cast<uint16_t>(nbd::ChunkType::kNone);
        break;
      default: {
        type = in_.U16();
        payload.assign(in_.U8(), 0x11);
        break;
      }
    }
    const uint8_t flags = in_.U8();
    bool extended = client_->extended_headers();
    if (flags & 0x80) extended = !extended;
    const uint16_t reply_flags = flags & 1 ? nbd::kReplyFlagDone : 0;
    if (extended) {
      const auto h = nbd::EncodeExtendedReplyHeader(
          {reply_flags, type, cookie, off, payload.size()});
      bytes.assign(h.begin(), h.end());
    } else {
      const auto h = nbd::EncodeStructuredReplyHeader(
          {reply_flags, type, cookie, static_cast<uint32_t>(payload.size())});
      bytes.assign(h.begin(), h.end());
    }
    bytes.insert(bytes.end(), payload.begin(), payload.end());
    FeedClient(bytes, in_.U8());
  }

  // ---- Events
  // ----------------------------------------------------------------

  void Drain(size_t count) {
    if (count == 0) count = std::numeric_limits<size_t>::max();
    for (size_t i = 0; i < count; ++i) {
      std::optional<nbd::ClientEvent> e = client_->PollEvent();
      if (!e.has_value()) {
        FUZZ_CHECK(!client_->has_events());
        break;
      }
      FUZZ_CHECK_MSG(!terminal_event_.has_value(),
                     "an event after ClientClosed/ClientDead");
      std::visit([this](const auto& ev) { OnEvent(ev); }, *e);
    }
    if (!client_->has_events()) CheckDrained();
  }

  void OnEvent(const nbd::Connected&) {
    FUZZ_CHECK_MSG(!saw_connected_, "Connected twice");
    saw_connected_ = true;
  }
  void OnEvent(const nbd::Negotiating&) {
    FUZZ_CHECK_MSG(option_mode_, "Negotiating without option_mode");
  }
  void OnEvent(const nbd::ExportListed&) {
    FUZZ_CHECK_MSG(!options_.empty() && options_.front() == Option::kList,
                   "ExportListed outside NBD_OPT_LIST");
  }
  void OnEvent(const nbd::MetaContextListed&) {
    FUZZ_CHECK_MSG(
        !options_.empty() && (options_.front() == Option::kListMetaContext ||
                              options_.front() == Option::kSetMetaContext),
        "MetaContextListed outside a meta context option");
  }
  void OnEvent(const nbd::OptionCompleted& e) {
    FUZZ_TRACE("  event OptionCompleted %d: %s\n", static_cast<int>(e.option),
               e.status.ToString().c_str());
    FUZZ_CHECK_MSG(!options_.empty(),
                   "OptionCompleted without an Opt* call in flight");
    const Option expected = options_.front();
    options_.pop_front();
    FUZZ_CHECK_MSG(e.option == expected || (expected == Option::kGo &&
                                            e.option == Option::kExportName),
                   "OptionCompleted for the wrong option");
  }

  Pending& Find(Cookie cookie, const char* what) {
    auto it = pending_.find(cookie);
    FUZZ_CHECK_MSG(it != pending_.end(), what);
    return it->second;
  }

  void OnEvent(const nbd::CommandCompleted& e) {
    FUZZ_TRACE("  event CommandCompleted %llu: %s\n",
               static_cast<unsigned long long>(e.cookie),
               e.status.ToString().c_str());
    Pending& p =
        Find(e.cookie, "CommandCompleted for an unknown or completed cookie");
    FUZZ_CHECK_MSG(e.command == p.type, "CommandCompleted with the wrong type");
    FUZZ_CHECK_MSG(e.tag == p.tag, "CommandCompleted with the wrong tag");
    CheckGuards(p);
    if (p.type == Command::kWrite && p.mem) {
      FUZZ_CHECK_MSG(Checksum(p.data(), p.size) == p.write_sum,
                     "a write payload changed");
    }
    if (!e.status.ok()) FUZZ_CHECK(nbd::StatusErrno(e.status) != 0);
    pending_.erase(e.cookie);
  }

  void OnEvent(const nbd::BlockStatusExtents& e) {
    Pending& p =
        Find(e.cookie, "BlockStatusExtents for an unknown or completed cookie");
    FUZZ_CHECK(p.type == Command::kBlockStatus);
    FUZZ_CHECK_MSG(e.tag == p.tag, "BlockStatusExtents with the wrong tag");
    FUZZ_CHECK(e.offset == p.offset);
    uint64_t sum = 0;
    for (const nbd::Extent& x : e.extents) {
      FUZZ_CHECK_MSG(x.length != 0, "a zero-length extent");
      FUZZ_CHECK_MSG(x.length <= p.length - sum,
                     "extents run past the request");
      sum += x.length;
    }
  }

  void OnEvent(const nbd::ReadChunk& e) {
    Pending& p = Find(e.cookie, "ReadChunk for an unknown or completed cookie");
    FUZZ_CHECK(p.type == Command::kRead && p.report_chunks);
    FUZZ_CHECK_MSG(e.tag == p.tag, "ReadChunk with the wrong tag");
    if (e.kind != nbd::ReadChunkKind::kError) {
      FUZZ_CHECK(e.length > 0);
      FUZZ_CHECK_MSG(e.offset >= p.offset && e.offset - p.offset <= p.length &&
                         e.length <= p.length - (e.offset - p.offset),
                     "ReadChunk outside the request");
    } else {
      FUZZ_CHECK(e.error != 0);
    }
  }

  void OnEvent(const nbd::StartTls&) {
    FUZZ_CHECK(tls_policy_ != nbd::TlsPolicy::kDisable);
    saw_start_tls_ = true;
  }
  void OnEvent(const nbd::ShutdownWrite&) {
    FUZZ_CHECK_MSG(!saw_shutdown_write_, "ShutdownWrite twice");
    saw_shutdown_write_ = true;
  }
  void OnEvent(const nbd::ClientTrace& e) {
    FUZZ_CHECK(trace_ && !e.message.empty());
  }
  void OnEvent(const nbd::ClientClosed&) { OnTerminal(ClientPhase::kClosed); }
  void OnEvent(const nbd::ClientDead& e) {
    FUZZ_TRACE("  event ClientDead: %s\n", e.reason.ToString().c_str());
    FUZZ_CHECK(!e.reason.ok());
    OnTerminal(ClientPhase::kDead);
  }

  void OnTerminal(ClientPhase phase) {
    terminal_event_ = phase;
    FUZZ_CHECK(client_->phase() == phase);
    FUZZ_CHECK_MSG(pending_.empty(),
                   "Closed/Dead while a command has not completed");
    FUZZ_CHECK_MSG(options_.empty(),
                   "Closed/Dead while an option has not completed");
    FUZZ_CHECK_MSG(!client_->has_events(), "events after Closed/Dead");
  }

  // ---- Invariants ----------------------------------------------------------

  void CheckGuards(Pending& p) {
    if (!p.mem) return;
    for (size_t i = 0; i < kGuard; ++i) {
      FUZZ_CHECK_MSG(p.mem[i] == GuardByte(i),
                     "a guard byte before a buffer was overwritten");
      FUZZ_CHECK_MSG(p.mem[kGuard + p.size + i] == GuardByte(i + kGuard),
                     "a guard byte after a buffer was overwritten");
    }
  }
  void CheckGuards() {
    for (auto& [cookie, p] : pending_) CheckGuards(p);
  }

  void CheckState() {
    const ClientPhase phase = client_->phase();
    if (terminal_phase_.has_value()) {
      FUZZ_CHECK_MSG(phase == *terminal_phase_, "the phase left kClosed/kDead");
    }
    if (terminal_event_.has_value()) {
      FUZZ_CHECK(phase == *terminal_event_);
      FUZZ_CHECK_MSG(!client_->has_events(), "events after Closed/Dead");
    }
    const Direction w = client_->wants();
    if (IsTerminal(phase)) {
      terminal_phase_ = phase;
      FUZZ_CHECK(client_->in_flight() == 0);
      FUZZ_CHECK(w == Direction::kNone);
      FUZZ_CHECK(client_->pending_output_bytes() == 0);
      FUZZ_CHECK(client_->RecvBuffer().empty());
      FUZZ_CHECK(client_->dead_reason().ok() ==
                 (phase == ClientPhase::kClosed));
    } else {
      FUZZ_CHECK(client_->dead_reason().ok());
      if (w != Direction::kNone) {
        FUZZ_CHECK_MSG(
            (client_->pending_output_bytes() > 0) == (w == Direction::kBoth),
            "wants() and the pending output disagree");
      } else {
        FUZZ_CHECK_MSG((saw_start_tls_ && !tls_done_) || client_->has_events(),
                       "a live client waits for nothing");
      }
    }
  }

  void CheckDrained() {
    if (IsTerminal(client_->phase())) {
      FUZZ_CHECK_MSG(terminal_event_.has_value(),
                     "the connection ended without Closed/Dead");
      return;
    }
    const size_t in_flight = client_->in_flight();
    FUZZ_CHECK_MSG(in_flight >= pending_.size(),
                   "a command vanished without CommandCompleted");
    FUZZ_CHECK_MSG(in_flight <= pending_.size() + (disc_ ? 1 : 0),
                   "in_flight() counts commands nobody issued");
  }

  void Checks() {
    const Client& c = *client_;
    if (c.extended_headers()) FUZZ_CHECK(c.structured_replies());
    if (c.can_block_status()) {
      FUZZ_CHECK(c.structured_replies() && !c.meta_contexts().empty());
    }
    for (const nbd::MetaContext& m : c.meta_contexts()) {
      FUZZ_CHECK(c.meta_context_id(m.name) == m.id);
    }
    FUZZ_CHECK(c.max_payload() >= 1 && c.max_payload() <= nbd::kHardMaxPayload);
    if (!client_->RecvBuffer().empty()) FUZZ_CHECK(!IsTerminal(c.phase()));
  }

  // Runs the connection to its end as a transport would (bounded).
  void Settle() {
    for (int round = 0; round < 64 && !IsTerminal(client_->phase()); ++round) {
      ConsumeClient(client_->pending_output_bytes(), true);
      PeerReply(0);
      const std::vector<uint8_t> bytes(to_client_.begin(), to_client_.end());
      to_client_.clear();
      FeedClient(bytes, 0);
      Drain(0);
      if (saw_shutdown_write_ && !PeerEnded()) peer_->FeedEof();
    }
  }

  Input& in_;
  // Declared before the cores so that they are destroyed after them.
  std::map<Cookie, Pending> pending_;
  std::vector<uint8_t> store_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<nbd::ServerSession> peer_;

  bool option_mode_ = false;
  bool trace_ = false;
  nbd::TlsPolicy tls_policy_ = nbd::TlsPolicy::kDisable;
  int final_action_ = 0;

  std::vector<uint8_t> to_peer_;
  std::vector<uint8_t> to_client_;
  std::deque<nbd::ServerRequest> peer_requests_;

  Cookie last_cookie_ = 0;
  bool disc_ = false;
  std::deque<Option> options_;
  bool saw_connected_ = false;
  bool saw_start_tls_ = false;
  bool tls_done_ = false;
  bool saw_shutdown_write_ = false;
  std::optional<ClientPhase> terminal_phase_;
  std::optional<ClientPhase> terminal_event_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Harness harness(in);
  harness.Run();
  return 0;
}
