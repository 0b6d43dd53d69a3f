// libFuzzer entry point for the sans-IO client core (nbd::Client).
//
// The input is a small script. It first picks the ClientOptions, then runs a
// bounded sequence of operations that interleave server bytes (copying and
// zero-copy input, EOF, transport errors), output consumption, event drains
// and API calls. After every operation the harness checks the invariants
// that the public headers promise (see Harness below); a violation prints a
// message and aborts.
//
// Input format (all integers big-endian; a read past the end yields zeros):
//
//   config (8 bytes, then the export name):
//     u8  bits: 0 option_mode, 1 request_extended_headers,
//               2 request_structured_replies, 3 request_base_allocation,
//               4 request_block_size, 5 full_info,
//               6 extra meta context "qemu:dirty-bitmap:fuzz",
//               7 trace (ClientTrace events)
//     u8  bits 0-1: tls policy (% 3: disable, allow, require); bits 2-3: final
//         action (0/3 FeedTransportError, 1 FeedEof, 2 none)
//     u8  strict bits (& kStrictAll)
//     u8  max_payload: 0 default, 255 -> 1, else n * 16
//     u8  recv_readahead
//     u8  max_option_reply_length: 0 default, else n * 4
//     u8  max_block_status_extents: 0 default, else n
//     u8  export name length n (255: a 5000-byte name), then n bytes
//   then up to kMaxOps operations, each an opcode byte (% kNumOps) and its
//   arguments:
//     0 Feed          u8 len, u8 piece, len bytes (fed piece bytes a time)
//     1 Recv          u8 len, len bytes (zero-copy: RecvBuffer/CommitRecv)
//     2 FeedEof
//     3 TransportErr  u8 errno selector
//     4 Output        u8 slices (& 7: array size - 1, & 0x80: also try an
//                     over-long ConsumeOutput), u16 amount (0: drain all)
//     5 Poll          u8 count (0: all)
//     6 Read          u8 sel, offset, length, u8 flags (0x40: report_chunks)
//     7 Write         u8 sel, offset, length, u8 flags
//     8 Flush         u8 flags
//     9 Trim          u8 sel, offset, length, u8 flags
//    10 Cache         u8 sel, offset, length, u8 flags
//    11 WriteZeroes   u8 sel, offset, length, u8 flags
//    12 BlockStatus   u8 sel, offset, length, u8 flags
//    13 Disconnect    u8 (non-zero: bogus flags)
//    14 Shutdown      u8 (0: 0, 1: kShutdownAbandonPending, else bogus)
//    15 Opt*          u8 which (% 8), for the meta context calls u8 count
//                     and count strings (u8 len + bytes)
//    16 SetExportName u8 len (255: 5000 bytes), bytes
//    17 Tls           u8 (even: TlsHandshakeDone, odd: TlsHandshakeFailed)
//    18 BadCommit     CommitRecv(RecvBuffer().size() + 1) must fail
//    19 Queries       calls every getter and checks their consistency
//   `sel` picks how offset and length are encoded: bits 0-1 for the offset
//   (0: u16, 1: u8 * 512, 2: u64, 3: UINT64_MAX - u8), bits 2-3 for the
//   length (0: u16, 1: u8 * 512, 2: u32, 3: u64). Read and Write lengths are
//   taken modulo kMaxBuffer + 1 (they size fuzzer-owned buffers).
//
// Environment: NBD_CLIENT_FUZZ_TRACE=1 prints each operation and event.
// Run libFuzzer with -entropic=0: with entropic scheduling
// this target spends ~80% of its time in libFuzzer's feature bookkeeping.

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
#include "protocol/status.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using nbd::Client;
using nbd::ClientPhase;
using nbd::Command;
using nbd::Cookie;
using nbd::Option;
using nbd::fuzz::Checksum;
using nbd::fuzz::Input;

constexpr size_t kMaxOps = 512;
constexpr size_t kMaxBuffer = 4096;  // largest Read/Write buffer
constexpr size_t kGuard = 16;        // guard bytes on each side
constexpr size_t kMaxSlices = 8;
constexpr size_t kMaxDrainRounds = 64;

// NBD_CLIENT_FUZZ_TRACE=1 prints every operation and event to stderr.
bool Tracing() {
  static const bool on = std::getenv("NBD_CLIENT_FUZZ_TRACE") != nullptr;
  return on;
}

#define FUZZ_TRACE(...)                               \
  do {                                                \
    if (Tracing()) std::fprintf(stderr, __VA_ARGS__); \
  } while (false)

#define FUZZ_CHECK NBD_FUZZ_CHECK
#define FUZZ_CHECK_MSG NBD_FUZZ_CHECK_MSG

uint8_t GuardByte(size_t i) { return static_cast<uint8_t>(0xa5 ^ (i * 29)); }

// A command the harness issued and whose CommandCompleted has not been
// popped yet. Read and Write memory lives here until then.
struct Pending {
  Command type = Command::kRead;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint16_t flags = 0;
  bool report_chunks = false;
  std::unique_ptr<uint8_t[]> mem;  // guard | data | guard
  size_t size = 0;                 // data bytes
  uint32_t write_sum = 0;

  uint8_t* data() { return mem.get() + kGuard; }
};

bool IsTerminal(ClientPhase p) {
  return p == ClientPhase::kClosed || p == ClientPhase::kDead;
}
bool IsTransmission(ClientPhase p) {
  return p == ClientPhase::kReady || p == ClientPhase::kProcessing;
}

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
    const uint8_t tls = in_.U8();
    o.tls = static_cast<nbd::TlsPolicy>((tls & 3) % 3);
    final_action_ = (tls >> 2) & 3;
    o.strict = in_.U8() & nbd::kStrictAll;
    const uint8_t payload = in_.U8();
    if (payload == 255) {
      o.max_payload = 1;
    } else if (payload != 0) {
      o.max_payload = payload * 16u;
    }
    o.recv_readahead = in_.U8();
    if (uint8_t n = in_.U8(); n != 0) o.max_option_reply_length = n * 4u;
    if (uint8_t n = in_.U8(); n != 0) o.max_block_status_extents = n;
    o.export_name = ExportName();
    option_mode_ = o.option_mode;
    tls_policy_ = o.tls;
    max_payload_option_ = o.max_payload;
    client_ = std::make_unique<Client>(std::move(o));
  }

  ~Harness() {
    // Destroy the Client before the buffers it may still reference.
    client_.reset();
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
    if (final_action_ == 2) return;  // destroy with commands pending
    if (final_action_ == 1) {
      client_->FeedEof();
    } else {
      client_->FeedTransportError(
          nbd::ErrnoStatus(ECONNRESET, "fuzzer: end of input"));
    }
    FUZZ_CHECK(IsTerminal(client_->phase()));
    Drain(0);
    FUZZ_CHECK_MSG(terminal_event_.has_value(),
                   "no Closed/Dead event after the connection ended");
    FUZZ_CHECK(pending_.empty());
    CheckState();
  }

 private:
  enum Op : uint8_t {
    kFeed,
    kRecv,
    kEof,
    kTransportError,
    kOutput,
    kPoll,
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
    kTls,
    kBadCommit,
    kQueries,
    kNumOps,
  };

  std::string ExportName() {
    uint8_t n = in_.U8();
    if (n == 255) return std::string(5000, 'e');
    return in_.String(n);
  }

  void Step(uint8_t op) {
    FUZZ_TRACE("op %d (phase %s, in_flight %zu, output %zu)\n", op % kNumOps,
               nbd::ClientPhaseName(client_->phase()), client_->in_flight(),
               client_->pending_output_bytes());
    switch (static_cast<Op>(op % kNumOps)) {
      case kFeed:
        return DoFeed();
      case kRecv:
        return DoRecv();
      case kEof:
        client_->FeedEof();
        FUZZ_CHECK_MSG(IsTerminal(client_->phase()),
                       "FeedEof did not end the connection");
        return;
      case kTransportError:
        return DoTransportError();
      case kOutput:
        return DoOutput();
      case kPoll:
        return Drain(in_.U8());
      case kRead:
        return DoRead();
      case kWrite:
        return DoWrite();
      case kFlush: {
        uint16_t flags = in_.U8();
        return Issued(Command::kFlush, 0, 0, flags, false, {},
                      [&] { return client_->Flush(flags); });
      }
      case kTrim:
        return DoRangeCommand(Command::kTrim);
      case kCache:
        return DoRangeCommand(Command::kCache);
      case kWriteZeroes:
        return DoRangeCommand(Command::kWriteZeroes);
      case kBlockStatus:
        return DoRangeCommand(Command::kBlockStatus);
      case kDisconnect:
        return DoDisconnect();
      case kShutdown:
        return DoShutdown();
      case kOpt:
        return DoOpt();
      case kSetExportName:
        return DoSetExportName();
      case kTls:
        return DoTls();
      case kBadCommit:
        return DoBadCommit();
      case kQueries:
        return DoQueries();
      case kNumOps:
        break;
    }
  }

  // ---- Input ---------------------------------------------------------------

  void DoFeed() {
    const size_t len = in_.U8();
    const size_t piece = std::max<size_t>(1, in_.U8());
    absl::Span<const uint8_t> bytes = in_.Bytes(len);
    while (!bytes.empty()) {
      absl::Span<const uint8_t> part = bytes.subspan(0, piece);
      const bool was_terminal = IsTerminal(client_->phase());
      absl::StatusOr<size_t> used = client_->Feed(part);
      if (!used.ok()) {
        FUZZ_CHECK_MSG(IsTerminal(client_->phase()),
                       "Feed failed but the connection is not over");
        return;
      }
      FUZZ_CHECK(!was_terminal);
      FUZZ_CHECK(*used <= part.size());
      if (*used < part.size()) {
        // Only the end of a STARTTLS acknowledgement stops the input; the
        // rest would be TLS, so a transport hands it to the TLS layer.
        FUZZ_CHECK_MSG(client_->wants() == nbd::Direction::kNone &&
                           !IsTerminal(client_->phase()),
                       "Feed stopped early outside a TLS pause");
        return;
      }
      bytes.remove_prefix(part.size());
    }
  }

  void DoRecv() {
    absl::Span<const uint8_t> bytes = in_.Bytes(in_.U8());
    for (size_t rounds = 0; rounds < 256 && !bytes.empty(); ++rounds) {
      absl::Span<uint8_t> span = client_->RecvBuffer();
      if (span.empty()) return;
      CheckRecvSpan(span);
      const size_t n = std::min(span.size(), bytes.size());
      std::memcpy(span.data(), bytes.data(), n);
      bytes.remove_prefix(n);
      absl::Status s = client_->CommitRecv(n);
      if (!s.ok()) {
        FUZZ_CHECK_MSG(IsTerminal(client_->phase()),
                       "CommitRecv(n <= span) failed but the connection is "
                       "not over");
        return;
      }
      CheckGuards();
    }
  }

  // A receive span must not cover guard bytes of, or straddle, any live
  // read buffer.
  void CheckRecvSpan(absl::Span<uint8_t> span) {
    const uintptr_t lo = reinterpret_cast<uintptr_t>(span.data());
    const uintptr_t hi = lo + span.size();
    for (auto& [cookie, p] : pending_) {
      if (!p.mem) continue;
      const uintptr_t mlo = reinterpret_cast<uintptr_t>(p.mem.get());
      const uintptr_t mhi = mlo + p.size + 2 * kGuard;
      if (hi <= mlo || lo >= mhi) continue;
      const uintptr_t dlo = mlo + kGuard;
      const uintptr_t dhi = dlo + p.size;
      FUZZ_CHECK_MSG(p.type == Command::kRead,
                     "RecvBuffer() points into a write payload");
      FUZZ_CHECK_MSG(lo >= dlo && hi <= dhi,
                     "RecvBuffer() span leaves the read buffer");
    }
  }

  void DoBadCommit() {
    const ClientPhase before = client_->phase();
    const size_t in_flight = client_->in_flight();
    absl::Span<uint8_t> span = client_->RecvBuffer();
    absl::Status s = client_->CommitRecv(span.size() + 1);
    FUZZ_CHECK_MSG(!s.ok(), "CommitRecv beyond the receive span succeeded");
    FUZZ_CHECK(client_->phase() == before);
    FUZZ_CHECK(client_->in_flight() == in_flight);
  }

  void DoTransportError() {
    const uint8_t sel = in_.U8();
    absl::Status error;
    if (sel % 3 == 1) {
      error = nbd::ErrnoStatus(ECONNRESET, "fuzzer: reset");
    } else if (sel % 3 == 2) {
      error = absl::UnavailableError("fuzzer: no errno");
    }  // else OK: the core substitutes EIO
    client_->FeedTransportError(error);
    FUZZ_CHECK_MSG(IsTerminal(client_->phase()),
                   "FeedTransportError did not end the connection");
  }

  // ---- Output --------------------------------------------------------------

  // Peeks up to `max_slices`, touches every byte the way writev() would and
  // returns how many bytes the slices cover.
  size_t PeekAndTouch(size_t max_slices) {
    nbd::IoSlice slices[kMaxSlices];
    const size_t n = client_->PeekOutput(absl::MakeSpan(slices, max_slices));
    FUZZ_CHECK(n <= max_slices);
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      FUZZ_CHECK_MSG(slices[i].size > 0, "PeekOutput returned an empty slice");
      wire_hash_ = (wire_hash_ * 31) ^ Checksum(slices[i].data, slices[i].size);
      total += slices[i].size;
    }
    const size_t pending = client_->pending_output_bytes();
    FUZZ_CHECK(total <= pending);
    if (n < max_slices) {
      FUZZ_CHECK_MSG(total == pending,
                     "PeekOutput slices do not cover pending_output_bytes()");
    }
    if (pending > 0) FUZZ_CHECK(n > 0);
    const nbd::Direction w = client_->wants();
    if (!IsTerminal(client_->phase()) && w != nbd::Direction::kNone) {
      FUZZ_CHECK((pending > 0) == (w == nbd::Direction::kBoth));
    }
    return total;
  }

  void DoOutput() {
    const uint8_t sel = in_.U8();
    const size_t max_slices = (sel & 7) + 1;
    const size_t amount = in_.U16();
    if (sel & 0x80) {
      const size_t pending = client_->pending_output_bytes();
      FUZZ_CHECK_MSG(!client_->ConsumeOutput(pending + 1).ok(),
                     "ConsumeOutput beyond the pending bytes succeeded");
      FUZZ_CHECK(client_->pending_output_bytes() == pending);
    }
    if (amount == 0) {
      for (size_t i = 0; i < kMaxDrainRounds; ++i) {
        const size_t total = PeekAndTouch(max_slices);
        if (total == 0) break;
        FUZZ_CHECK(client_->ConsumeOutput(total).ok());
        CheckGuards();
      }
      return;
    }
    const size_t total = PeekAndTouch(max_slices);
    // A transport can only have sent what it was shown.
    const size_t n = std::min(total, amount);
    const size_t pending = client_->pending_output_bytes();
    FUZZ_CHECK(client_->ConsumeOutput(n).ok());
    if (!IsTerminal(client_->phase())) {
      FUZZ_CHECK(client_->pending_output_bytes() == pending - n);
    }
  }

  // ---- Events --------------------------------------------------------------

  void Drain(size_t count) {
    if (count == 0) count = std::numeric_limits<size_t>::max();
    for (size_t i = 0; i < count; ++i) {
      std::optional<nbd::ClientEvent> e = client_->PollEvent();
      if (!e.has_value()) {
        FUZZ_CHECK(!client_->has_events());
        break;
      }
      FUZZ_CHECK_MSG(!terminal_event_.has_value(),
                     "an event was queued after Closed/Dead");
      TraceEvent(*e);
      std::visit([this](const auto& ev) { OnEvent(ev); }, *e);
    }
    if (!client_->has_events()) CheckDrained();
  }

  static void TraceEvent(const nbd::ClientEvent& e) {
    if (!Tracing()) return;
    std::fprintf(stderr, "  event %zu", e.index());
    if (const auto* c = std::get_if<nbd::CommandCompleted>(&e)) {
      std::fprintf(stderr, " CommandCompleted cookie %llu cmd %d: %s",
                   static_cast<unsigned long long>(c->cookie),
                   static_cast<int>(c->command), c->status.ToString().c_str());
    } else if (const auto* o = std::get_if<nbd::OptionCompleted>(&e)) {
      std::fprintf(stderr, " OptionCompleted %d: %s",
                   static_cast<int>(o->option), o->status.ToString().c_str());
    } else if (const auto* d = std::get_if<nbd::ClientDead>(&e)) {
      std::fprintf(stderr, " Dead: %s", d->reason.ToString().c_str());
    }
    std::fprintf(stderr, "\n");
  }

  void OnEvent(const nbd::Connected&) {
    FUZZ_CHECK_MSG(!saw_connected_, "Connected emitted twice");
    saw_connected_ = true;
  }

  void OnEvent(const nbd::Negotiating&) {
    FUZZ_CHECK_MSG(option_mode_, "Negotiating without option_mode");
    FUZZ_CHECK_MSG(!saw_negotiating_, "Negotiating emitted twice");
    FUZZ_CHECK(!saw_connected_);
    saw_negotiating_ = true;
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
    FUZZ_CHECK_MSG(!options_.empty(),
                   "OptionCompleted without an option call in flight");
    const Option expected = options_.front();
    options_.pop_front();
    if (expected == Option::kGo) {
      // Servers without NBD_OPT_GO get NBD_OPT_EXPORT_NAME instead.
      FUZZ_CHECK_MSG(e.option == Option::kGo || e.option == Option::kExportName,
                     "OptionCompleted for the wrong option");
    } else {
      FUZZ_CHECK_MSG(e.option == expected,
                     "OptionCompleted for the wrong option");
    }
  }

  void OnEvent(const nbd::CommandCompleted& e) {
    auto it = pending_.find(e.cookie);
    FUZZ_CHECK_MSG(it != pending_.end(),
                   "CommandCompleted for an unknown or completed cookie");
    Pending& p = it->second;
    FUZZ_CHECK_MSG(e.command == p.type, "CommandCompleted with the wrong type");
    CheckGuards(p);
    if (p.type == Command::kWrite && p.mem) {
      FUZZ_CHECK_MSG(Checksum(p.data(), p.size) == p.write_sum,
                     "write payload changed");
    }
    pending_.erase(it);  // the buffer may go now
  }

  void OnEvent(const nbd::BlockStatusExtents& e) {
    auto it = pending_.find(e.cookie);
    FUZZ_CHECK_MSG(it != pending_.end(),
                   "BlockStatusExtents for an unknown or completed cookie");
    const Pending& p = it->second;
    FUZZ_CHECK(p.type == Command::kBlockStatus);
    FUZZ_CHECK(e.offset == p.offset);
    uint64_t sum = 0;
    for (const nbd::Extent& x : e.extents) {
      FUZZ_CHECK_MSG(x.length != 0, "zero-length extent reported");
      FUZZ_CHECK(x.length <= p.length - sum);
      sum += x.length;
    }
    bool known = false;
    for (const nbd::MetaContext& m : client_->meta_contexts()) {
      known |= m.id == e.context_id && m.name == e.context_name;
    }
    FUZZ_CHECK_MSG(known, "BlockStatusExtents for an unnegotiated context");
  }

  void OnEvent(const nbd::ReadChunk& e) {
    auto it = pending_.find(e.cookie);
    FUZZ_CHECK_MSG(it != pending_.end(),
                   "ReadChunk for an unknown or completed cookie");
    const Pending& p = it->second;
    FUZZ_CHECK(p.type == Command::kRead);
    FUZZ_CHECK_MSG(p.report_chunks, "ReadChunk without report_chunks");
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
    FUZZ_CHECK_MSG(tls_policy_ != nbd::TlsPolicy::kDisable,
                   "StartTls with TLS disabled");
    FUZZ_CHECK(!saw_start_tls_);
    saw_start_tls_ = true;
  }

  void OnEvent(const nbd::ShutdownWrite&) {
    FUZZ_CHECK_MSG(!saw_shutdown_write_, "ShutdownWrite emitted twice");
    saw_shutdown_write_ = true;
  }

  void OnEvent(const nbd::ClientTrace& e) {
    FUZZ_CHECK_MSG(trace_, "a Trace event without ClientOptions::trace");
    FUZZ_CHECK_MSG(!e.message.empty(), "an empty Trace line");
  }
  void OnEvent(const nbd::ClientClosed&) {
    OnTerminalEvent(ClientPhase::kClosed);
  }

  void OnEvent(const nbd::ClientDead& e) {
    FUZZ_CHECK_MSG(!e.reason.ok(), "Dead with an OK reason");
    OnTerminalEvent(ClientPhase::kDead);
  }

  void OnTerminalEvent(ClientPhase phase) {
    terminal_event_ = phase;
    FUZZ_CHECK_MSG(client_->phase() == phase,
                   "Closed/Dead does not match phase()");
    FUZZ_CHECK_MSG(pending_.empty(),
                   "Closed/Dead while commands are still uncompleted");
    FUZZ_CHECK_MSG(options_.empty(),
                   "Closed/Dead while an option call is still uncompleted");
    FUZZ_CHECK_MSG(!client_->has_events(), "events queued after Closed/Dead");
  }

  // ---- Commands ------------------------------------------------------------

  // Reads `sel` and decodes an offset and a length as described at the top.
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

  // Runs `call` (which issues one command) and checks the outcome.
  template <typename Call>
  void Issued(Command type, uint64_t offset, uint64_t length, uint16_t flags,
              bool report_chunks, Pending buffers, Call call) {
    const ClientPhase before = client_->phase();
    const size_t in_flight = client_->in_flight();
    const size_t output = client_->pending_output_bytes();
    absl::StatusOr<Cookie> cookie = call();
    FUZZ_TRACE("  command %d: %s\n", static_cast<int>(type),
               cookie.ok() ? std::to_string(*cookie).c_str()
                           : cookie.status().ToString().c_str());
    if (!cookie.ok()) {
      FUZZ_CHECK_MSG(client_->phase() == before,
                     "a failed command changed the phase");
      FUZZ_CHECK_MSG(client_->in_flight() == in_flight,
                     "a failed command changed in_flight()");
      FUZZ_CHECK_MSG(client_->pending_output_bytes() == output,
                     "a failed command queued output");
      return;
    }
    FUZZ_CHECK_MSG(IsTransmission(before),
                   "a command was accepted outside transmission");
    FUZZ_CHECK_MSG(*cookie > last_cookie_, "cookies must count up");
    last_cookie_ = *cookie;
    FUZZ_CHECK(client_->in_flight() == in_flight + 1);
    FUZZ_CHECK(client_->phase() == ClientPhase::kProcessing);
    buffers.type = type;
    buffers.offset = offset;
    buffers.length = length;
    buffers.flags = flags;
    buffers.report_chunks = report_chunks;
    FUZZ_CHECK(pending_.emplace(*cookie, std::move(buffers)).second);
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
      p.mem[kGuard + i] = static_cast<uint8_t>(i * 7 + 3);
    }
    return p;
  }

  void DoRead() {
    const std::pair<uint64_t, uint64_t> range = OffsetAndLength();
    const uint64_t offset = range.first;
    uint64_t length = range.second;
    length %= kMaxBuffer + 1;
    const uint8_t f = in_.U8();
    nbd::ReadOptions options;
    options.flags = f & 0xbf;
    options.report_chunks = f & 0x40;
    Pending p = MakeBuffer(length);
    absl::Span<uint8_t> buffer(p.data(), length);
    Issued(Command::kRead, offset, length, options.flags, options.report_chunks,
           std::move(p),
           [&] { return client_->Read(offset, buffer, options); });
  }

  void DoWrite() {
    const std::pair<uint64_t, uint64_t> range = OffsetAndLength();
    const uint64_t offset = range.first;
    uint64_t length = range.second;
    length %= kMaxBuffer + 1;
    const uint16_t flags = in_.U8();
    Pending p = MakeBuffer(length);
    p.write_sum = Checksum(p.data(), length);
    absl::Span<const uint8_t> data(p.data(), length);
    Issued(Command::kWrite, offset, length, flags, false, std::move(p),
           [&] { return client_->Write(offset, data, flags); });
  }

  void DoRangeCommand(Command type) {
    const std::pair<uint64_t, uint64_t> range = OffsetAndLength();
    const uint64_t offset = range.first;
    uint64_t length = range.second;
    const uint16_t flags = in_.U8();
    Issued(type, offset, length, flags, false, {},
           [&]() -> absl::StatusOr<Cookie> {
             switch (type) {
               case Command::kTrim:
                 return client_->Trim(offset, length, flags);
               case Command::kCache:
                 return client_->Cache(offset, length, flags);
               case Command::kWriteZeroes:
                 return client_->WriteZeroes(offset, length, flags);
               default:
                 return client_->BlockStatus(offset, length, flags);
             }
           });
  }

  void DoDisconnect() {
    const uint32_t flags = in_.U8() != 0 ? 0x1 : 0;
    const ClientPhase before = client_->phase();
    const size_t in_flight = client_->in_flight();
    absl::Status s = client_->Disconnect(flags);
    if (!s.ok()) {
      FUZZ_CHECK(client_->phase() == before);
      FUZZ_CHECK(client_->in_flight() == in_flight);
      return;
    }
    FUZZ_CHECK_MSG(flags == 0, "Disconnect accepted unknown flags");
    FUZZ_CHECK_MSG(IsTransmission(before),
                   "Disconnect accepted outside transmission");
    FUZZ_CHECK(client_->in_flight() == in_flight + 1);
    ++last_cookie_;  // NBD_CMD_DISC consumes a cookie
  }

  void DoShutdown() {
    const uint8_t sel = in_.U8();
    uint32_t flags = 0;
    if (sel == 1) {
      flags = nbd::kShutdownAbandonPending;
    } else if (sel > 1) {
      flags = 0x20000;
    }
    const ClientPhase before = client_->phase();
    absl::Status s = client_->Shutdown(flags);
    if (IsTerminal(before)) {
      FUZZ_CHECK_MSG(!s.ok(), "Shutdown succeeded after the end");
    }
    if (flags == 0x20000) {
      FUZZ_CHECK_MSG(!s.ok(), "Shutdown accepted unknown flags");
    } else if (!IsTerminal(before)) {
      FUZZ_CHECK_MSG(s.ok(), "Shutdown failed before the end");
    }
    // Cookies for a DISC queued by Shutdown are not visible; keep
    // last_cookie_ as a lower bound.
  }

  std::vector<std::string> Queries() {
    std::vector<std::string> queries;
    const uint8_t n = in_.U8() % 4;
    for (uint8_t i = 0; i < n; ++i) queries.push_back(in_.String(in_.U8()));
    return queries;
  }

  void DoOpt() {
    const ClientPhase before = client_->phase();
    const uint8_t which = in_.U8() % 8;
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
      FUZZ_CHECK(client_->phase() == before);
      return;
    }
    FUZZ_CHECK_MSG(before == ClientPhase::kNegotiating,
                   "an Opt* call was accepted outside negotiation");
    if (completes.has_value()) options_.push_back(*completes);
  }

  void DoSetExportName() {
    std::string name = ExportName();
    const size_t size = name.size();
    const ClientPhase before = client_->phase();
    absl::Status s = client_->SetExportName(std::move(name));
    if (!s.ok()) return;
    FUZZ_CHECK_MSG(size <= nbd::kMaxStringLength,
                   "SetExportName accepted an over-long name");
    FUZZ_CHECK(before == ClientPhase::kNegotiating);
    FUZZ_CHECK(client_->phase() == ClientPhase::kNegotiating);
  }

  void DoTls() {
    const bool wanted = saw_start_tls_ && !tls_done_;
    if (in_.U8() % 2 == 0) {
      absl::Status s = client_->TlsHandshakeDone();
      if (s.ok()) {
        FUZZ_CHECK_MSG(saw_start_tls_ || client_->has_events(),
                       "TlsHandshakeDone accepted without STARTTLS");
        tls_done_ = true;
      } else if (wanted && !IsTerminal(client_->phase())) {
        nbd::fuzz::Violation(__FILE__, __LINE__,
                             "TlsHandshakeDone refused after StartTls");
      }
    } else {
      client_->TlsHandshakeFailed(absl::OkStatus());
      FUZZ_CHECK_MSG(IsTerminal(client_->phase()),
                     "TlsHandshakeFailed did not end the connection");
    }
  }

  void DoQueries() {
    const Client& c = *client_;
    (void)c.protocol();
    (void)c.transmission_flags();
    (void)c.is_read_only();
    (void)c.can_flush();
    (void)c.can_fua();
    (void)c.can_trim();
    (void)c.can_zero();
    (void)c.can_df();
    (void)c.can_multi_conn();
    (void)c.can_cache();
    (void)c.is_rotational();
    (void)c.export_name();
    (void)c.canonical_name();
    (void)c.description();
    (void)c.tls_negotiated();
    // Transmission flags are normalised when the handshake ends; before
    // that the getters show what NBD_REP_INFO said.
    if (saw_connected_ || IsTransmission(c.phase())) {
      if (c.can_fast_zero()) FUZZ_CHECK(c.can_zero());
      if (c.can_df()) FUZZ_CHECK(c.structured_replies());
    }
    if (c.can_block_status()) {
      FUZZ_CHECK(c.structured_replies() && !c.meta_contexts().empty());
    }
    if (c.extended_headers()) FUZZ_CHECK(c.structured_replies());
    const uint32_t max = c.max_payload();
    FUZZ_CHECK(max >= 1 && max <= nbd::kHardMaxPayload);
    FUZZ_CHECK(max <= std::clamp<uint32_t>(max_payload_option_, 1,
                                           nbd::kHardMaxPayload));
    for (const nbd::MetaContext& m : c.meta_contexts()) {
      FUZZ_CHECK(c.meta_context_id(m.name).has_value());
    }
    if (IsTerminal(c.phase())) {
      FUZZ_CHECK(c.dead_reason().ok() != (c.phase() == ClientPhase::kDead));
    }
  }

  // ---- Invariants ----------------------------------------------------------

  void CheckGuards(Pending& p) {
    if (!p.mem) return;
    for (size_t i = 0; i < kGuard; ++i) {
      FUZZ_CHECK_MSG(p.mem[i] == GuardByte(i),
                     "guard bytes before a buffer were overwritten");
      FUZZ_CHECK_MSG(p.mem[kGuard + p.size + i] == GuardByte(i + kGuard),
                     "guard bytes after a buffer were overwritten");
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
      FUZZ_CHECK(pending_.empty());
    }
    if (IsTerminal(phase)) {
      terminal_phase_ = phase;
      FUZZ_CHECK_MSG(client_->in_flight() == 0,
                     "in_flight() is not 0 after the end");
      FUZZ_CHECK(client_->wants() == nbd::Direction::kNone);
      FUZZ_CHECK_MSG(client_->pending_output_bytes() == 0,
                     "output is still pending after the end");
      FUZZ_CHECK(client_->RecvBuffer().empty());
    } else {
      FUZZ_CHECK(client_->wants() != nbd::Direction::kNone ||
                 (saw_start_tls_ && !tls_done_) || client_->has_events());
    }
  }

  // After every event was popped: what the core holds must match our books.
  void CheckDrained() {
    const ClientPhase phase = client_->phase();
    if (IsTerminal(phase)) {
      FUZZ_CHECK_MSG(terminal_event_.has_value(),
                     "connection ended without Closed/Dead");
      FUZZ_CHECK(pending_.empty());
      return;
    }
    const size_t in_flight = client_->in_flight();
    FUZZ_CHECK_MSG(in_flight >= pending_.size(),
                   "a command vanished without CommandCompleted");
    FUZZ_CHECK_MSG(in_flight <= pending_.size() + 1,
                   "the core tracks commands the caller never issued");
    // kReady: nothing queued; only a sent NBD_CMD_DISC may count.
    if (phase == ClientPhase::kReady)
      FUZZ_CHECK(pending_.empty() && in_flight <= 1);
  }

  Input& in_;
  // Declared before client_ so that it is destroyed after it.
  std::map<Cookie, Pending> pending_;
  std::unique_ptr<Client> client_;

  bool option_mode_ = false;
  bool trace_ = false;
  nbd::TlsPolicy tls_policy_ = nbd::TlsPolicy::kDisable;
  uint32_t max_payload_option_ = 0;
  int final_action_ = 0;

  Cookie last_cookie_ = 0;
  std::deque<Option> options_;  // user option calls awaiting completion
  bool saw_connected_ = false;
  bool saw_negotiating_ = false;
  bool saw_start_tls_ = false;
  bool tls_done_ = false;
  bool saw_shutdown_write_ = false;
  std::optional<ClientPhase>
      terminal_phase_;  // phase() once it became terminal
  std::optional<ClientPhase>
      terminal_event_;  // ClientClosed/ClientDead once popped
  uint32_t wire_hash_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Harness harness(in);
  harness.Run();
  return 0;
}
