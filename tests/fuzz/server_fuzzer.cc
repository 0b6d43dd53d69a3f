// libFuzzer entry point for the sans-IO server core (nbd::ServerSession) fed
// a hostile client's bytes.
//
// The input first picks the ServerOptions and the export, then runs a
// bounded script of operations: raw client bytes, well-formed client
// messages built by the harness (so that the fuzzer reaches transmission
// quickly), delivery through Feed() or RecvBuffer()/CommitRecv() in pieces,
// output consumption, event drains and replies to the requests the session
// reported, chosen by the input (ok, error, read data with holes, read
// errors, block status, and replies that do not fit, which must be refused
// without effect). After every operation the harness checks the invariants
// that server.h and events.h promise (Harness::CheckState and the event
// checks); a violation prints a message and aborts. At the end it ends the
// connection (EOF or a transport error, by the input), answers what is
// left, drains the output and checks that the session reached kClosed or
// kDead with exactly one final event.
//
// Input format (integers big-endian; reads past the end yield zeros):
//   config, 6 bytes:
//     u8 bits: 0 allow_extended_headers, 1 allow_structured_replies,
//              2 allow_list, 3 report_reply_sent, 4 trace, 5 a second
//              export, 6 small limits (in-flight, output high water,
//              option length and count), 7 read data is lent (kept by the
//              harness until ReplySent) instead of handed over by keepalive
//     u8 export bits: 0 read_only, 1 flush, 2 fua, 3 trim, 4 zero,
//              5 fast_zero, 6 cache, 7 df
//     u8 bits 0 multi_conn, 1 rotational, 2 no block status,
//              3-4 min_block (1, 512, 4096, 1), 5-7 max_block
//     u8 size: (& 0x7f) * 4096, + 1000 if bit 7
//     u8 max_in_flight: 0 the default, else n % 8 + 1
//     u8 bits 0-1 export name ("disk", "", "Disk", 64 x 'n'),
//            bits 2-3 final action (0 EOF, 1 transport error, 2 none, 3 EOF
//            after answering everything), bits 4-5 ServerOptions::tls
//            (off, on, require, off), bit 6: the harness's TLS handshake
//            fails (TlsHandshakeFailed) instead of succeeding
//   then up to kMaxOps operations, an opcode byte (% kNumOps) and arguments:
//     0 Raw        u8 len, len bytes queued for the session
//     1 Message    u8 kind, arguments (see Message()): a well-formed client
//                  message queued for the session
//     2 Deliver    u8 mode (bit 7: zero-copy, else Feed; & 0x7f: piece size,
//                  0 = everything at once): hands the queued bytes over as
//                  far as the session takes them
//     3 Eof        FeedEof()
//     4 TransportErr
//     5 Output     u8 slices (& 7: array size - 1; & 0x80: also try an
//                  over-long ConsumeOutput), u16 amount (0: all)
//     6 Poll       u8 count (0: all)
//     7 Reply      u8 index (into outstanding requests), u8 kind, arguments
//                  (see Reply())
//     8 ReplyAll   answers every outstanding request the natural way
//     9 BadCommit  CommitRecv(RecvBuffer().size() + 1) must fail
//    10 Release    frees lent read buffers whose ReplySent came
//   Queued bytes that the session did not take stay queued (a transport
//   keeps them until wants() includes kRead again).
//
// Environment: NBD_SERVER_FUZZ_TRACE=1 prints each operation and event.

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "protocol/constants.h"
#include "protocol/io.h"
#include "protocol/server/events.h"
#include "protocol/server/options.h"
#include "protocol/server/server.h"
#include "protocol/status.h"
#include "protocol/wire.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using nbd::Command;
using nbd::Direction;
using nbd::RequestHandle;
using nbd::ServerPhase;
using nbd::ServerSession;
using nbd::fuzz::Checksum;
using nbd::fuzz::Input;

constexpr size_t kMaxOps = 512;
constexpr size_t kMaxQueued = 1 << 20;   // queued client bytes
constexpr size_t kMaxPayload = 1 << 16;  // WRITE payload a message carries
constexpr size_t kMaxSlices = 8;

bool Tracing() {
  static const bool on = std::getenv("NBD_SERVER_FUZZ_TRACE") != nullptr;
  return on;
}

#define FUZZ_TRACE(...)                               \
  do {                                                \
    if (Tracing()) std::fprintf(stderr, __VA_ARGS__); \
  } while (false)

#define FUZZ_CHECK NBD_FUZZ_CHECK
#define FUZZ_CHECK_MSG NBD_FUZZ_CHECK_MSG

bool IsTerminal(ServerPhase p) {
  return p == ServerPhase::kClosed || p == ServerPhase::kDead;
}

// Phases only move forward: handshake, transmission, closing, closed; dead
// from anywhere.
int Rank(ServerPhase p) {
  switch (p) {
    case ServerPhase::kHandshake:
      return 0;
    case ServerPhase::kTransmission:
      return 1;
    case ServerPhase::kClosing:
      return 2;
    case ServerPhase::kClosed:
    case ServerPhase::kDead:
      return 3;
  }
  return 3;
}

// A request the session reported and the harness has not answered yet.
struct Outstanding {
  nbd::ServerRequest request;
  uint32_t payload_sum = 0;
};

// READ data lent to the session without a keepalive: kept until ReplySent.
struct Lent {
  std::unique_ptr<uint8_t[]> data;
  size_t size = 0;
};

class Harness {
 public:
  explicit Harness(Input& in) : in_(in) {
    const uint8_t bits = in_.U8();
    const uint8_t caps = in_.U8();
    const uint8_t more = in_.U8();
    const uint8_t size = in_.U8();
    const uint8_t in_flight = in_.U8();
    const uint8_t misc = in_.U8();

    nbd::ServerOptions o;
    o.allow_extended_headers = bits & 0x01;
    o.allow_structured_replies = bits & 0x02;
    o.allow_list = bits & 0x04;
    o.report_reply_sent = bits & 0x08;
    o.trace = bits & 0x10;
    o.tls = TlsModeFor(misc);
    lend_ = (bits & 0x80) && o.report_reply_sent;
    if (bits & 0x40) {
      o.max_option_length = 256;
      o.max_options = 16;
      o.output_high_water = 512;
      o.max_discard_payload = 4096;
    }
    if (in_flight != 0) o.max_in_flight = in_flight % 8 + 1;

    nbd::ExportInfo e;
    static const char* const kNames[] = {"disk", "", "Disk", nullptr};
    e.name = kNames[misc & 3] ? kNames[misc & 3] : std::string(64, 'n');
    e.description = "fuzz export";
    e.size = (size & 0x7f) * uint64_t{4096} + ((size & 0x80) ? 1000 : 0);
    e.read_only = caps & 0x01;
    e.can_flush = caps & 0x02;
    e.can_fua = caps & 0x04;
    e.can_trim = caps & 0x08;
    e.can_zero = caps & 0x10;
    e.can_fast_zero = caps & 0x20;
    e.can_cache = caps & 0x40;
    e.can_df = caps & 0x80;
    e.can_multi_conn = more & 0x01;
    e.rotational = more & 0x02;
    e.can_block_status = !(more & 0x04);
    static const uint32_t kMin[] = {1, 512, 4096, 1};
    e.min_block = kMin[(more >> 3) & 3];
    static const uint32_t kMax[] = {nbd::kDefaultMaxPayload,
                                    4096,
                                    65536,
                                    1u << 20,
                                    512,
                                    8192,
                                    1u << 31,
                                    0xffffffffu};
    e.max_block = std::max(kMax[more >> 5], e.min_block);
    o.exports.push_back(e);
    if (bits & 0x20) {
      nbd::ExportInfo other;
      other.name = "other";
      other.size = 1 << 20;
      other.read_only = true;
      other.can_block_status = false;
      o.exports.push_back(other);
      o.default_export = 1;
    }
    final_action_ = (misc >> 2) & 3;
    tls_fails_ = misc & 0x40;
    opts_ = o;
    session_ = std::make_unique<ServerSession>(std::move(o));
  }

  ~Harness() {
    // The session may still reference lent buffers: destroy it first.
    session_.reset();
  }

  void Run() {
    CheckState();
    for (size_t ops = 0; ops < kMaxOps && !in_.empty(); ++ops) {
      Step(in_.U8());
      CheckState();
    }
    Drain(0);
    CheckState();
    if (final_action_ == 2) return;  // destroyed mid-connection
    if (final_action_ == 3) Settle();
    if (final_action_ == 1) {
      session_->FeedTransportError(
          nbd::ErrnoStatus(ECONNRESET, "fuzzer: end of input"));
      FUZZ_CHECK(session_->phase() == ServerPhase::kDead ||
                 IsTerminal(last_phase_));
    } else {
      const ServerPhase before = session_->phase();
      session_->FeedEof();
      if (before == ServerPhase::kHandshake ||
          before == ServerPhase::kTransmission) {
        FUZZ_CHECK_MSG(session_->phase() == ServerPhase::kClosing ||
                           IsTerminal(session_->phase()),
                       "FeedEof did not end the input");
      }
    }
    CheckState();
    Settle();
    FUZZ_CHECK_MSG(IsTerminal(session_->phase()),
                   "the session did not reach kClosed/kDead after EOF with "
                   "every request answered and every byte sent");
    FUZZ_CHECK_MSG(terminal_event_.has_value(),
                   "no ServerClosed/ServerDead event at the end");
    FUZZ_CHECK(session_->in_flight() == 0);
    if (session_->phase() == ServerPhase::kClosed && opts_.report_reply_sent) {
      FUZZ_CHECK_MSG(replied_.empty(),
                     "closed cleanly but a reply never got ReplySent");
    }
  }

 private:
  enum Op : uint8_t {
    kRaw,
    kMessage,
    kDeliver,
    kEof,
    kTransportError,
    kOutput,
    kPoll,
    kReply,
    kReplyAll,
    kBadCommit,
    kRelease,
    kNumOps,
  };

  void Step(uint8_t op) {
    FUZZ_TRACE("op %d (phase %s, in_flight %zu, queued %zu, output %zu)\n",
               op % kNumOps, nbd::ServerPhaseName(session_->phase()),
               session_->in_flight(), queued_.size(),
               session_->pending_output_bytes());
    switch (static_cast<Op>(op % kNumOps)) {
      case kRaw:
        return Queue(in_.Bytes(in_.U8()));
      case kMessage:
        return Message();
      case kDeliver:
        return Deliver(in_.U8());
      case kEof: {
        const ServerPhase before = session_->phase();
        session_->FeedEof();
        if (before == ServerPhase::kHandshake ||
            before == ServerPhase::kTransmission) {
          FUZZ_CHECK(session_->phase() != before);
          queued_.clear();  // nothing follows an EOF
        } else {
          FUZZ_CHECK_MSG(session_->phase() == before,
                         "FeedEof outside its phases changed the phase");
        }
        return;
      }
      case kTransportError: {
        const ServerPhase before = session_->phase();
        session_->FeedTransportError(absl::OkStatus());
        FUZZ_CHECK(session_->phase() == ServerPhase::kDead ||
                   IsTerminal(before));
        return;
      }
      case kOutput:
        return DoOutput();
      case kPoll:
        return Drain(in_.U8());
      case kReply:
        return DoReply();
      case kReplyAll:
        return ReplyAll();
      case kBadCommit:
        return DoBadCommit();
      case kRelease:
        return ReleaseLent();
      case kNumOps:
        break;
    }
  }

  // ---- Client bytes ---------------------------------------------------------

  void Queue(absl::Span<const uint8_t> bytes) {
    if (queued_.size() + bytes.size() > kMaxQueued) return;
    queued_.insert(queued_.end(), bytes.begin(), bytes.end());
  }

  // Hands queued bytes over, `piece` at a time, until the session stops
  // taking them.
  void Deliver(uint8_t mode) {
    const bool zero_copy = mode & 0x80;
    const size_t piece = (mode & 0x7f) == 0 ? SIZE_MAX : (mode & 0x7f);
    size_t pos = 0;
    for (size_t rounds = 0; rounds < 4096 && pos < queued_.size(); ++rounds) {
      const ServerPhase before = session_->phase();
      const size_t n = std::min(piece, queued_.size() - pos);
      size_t used = 0;
      if (zero_copy) {
        absl::Span<uint8_t> span = session_->RecvBuffer();
        if (span.empty()) {
          FUZZ_CHECK_MSG(!(session_->wants() == Direction::kRead ||
                           session_->wants() == Direction::kBoth),
                         "wants() includes kRead but RecvBuffer() is empty");
          break;
        }
        FUZZ_CHECK(session_->wants() == Direction::kRead ||
                   session_->wants() == Direction::kBoth);
        used = std::min(n, span.size());
        std::memcpy(span.data(), queued_.data() + pos, used);
        absl::Status s = session_->CommitRecv(used);
        if (!s.ok()) {
          FUZZ_CHECK_MSG(session_->phase() == ServerPhase::kDead,
                         "CommitRecv(n <= span) failed but the session is "
                         "not dead");
          FUZZ_CHECK(StatusErrnoNonZero(s));
          queued_.clear();
          return;
        }
      } else {
        absl::StatusOr<size_t> r =
            session_->Feed(absl::MakeConstSpan(queued_.data() + pos, n));
        if (!r.ok()) {
          if (IsTerminal(before)) {
            FUZZ_CHECK(absl::IsFailedPrecondition(r.status()));
          } else {
            FUZZ_CHECK_MSG(session_->phase() == ServerPhase::kDead,
                           "Feed failed but the session is not dead");
          }
          queued_.clear();
          return;
        }
        FUZZ_CHECK(!IsTerminal(before));
        used = *r;
        FUZZ_CHECK(used <= n);
        if (used < n) {
          // Input stops only at a pause, on kClosing or at the end.
          const Direction w = session_->wants();
          FUZZ_CHECK_MSG(w == Direction::kNone || w == Direction::kWrite,
                         "Feed stopped early while the session wants input");
        }
      }
      pos += used;
      if (!zero_copy && used < n) break;
    }
    queued_.erase(queued_.begin(), queued_.begin() + pos);
    if (session_->phase() != ServerPhase::kHandshake &&
        session_->phase() != ServerPhase::kTransmission) {
      queued_.clear();  // a transport stops reading
    }
  }

  static bool StatusErrnoNonZero(const absl::Status& s) {
    return nbd::StatusErrno(s) != 0;
  }

  // Names that exist, that do not, and odd ones.
  std::string ExportName(uint8_t sel) {
    switch (sel % 6) {
      case 0:
        return opts_.exports[0].name;
      case 1:
        return "";
      case 2:
        return "other";
      case 3:
        return "nosuch";
      case 4:
        return std::string(5000, 'x');
      default:
        return in_.String(in_.U8());
    }
  }

  std::string Query(uint8_t sel) {
    switch (sel % 6) {
      case 0:
        return "base:allocation";
      case 1:
        return "base:";
      case 2:
        return "qemu:dirty-bitmap:x";
      case 3:
        return "";
      case 4:
        return std::string(5000, 'q');
      default:
        return in_.String(in_.U8());
    }
  }

  void QueueOption(nbd::Option option, absl::Span<const uint8_t> data) {
    const nbd::Bytes b = nbd::EncodeOptionRequest(option, data);
    Queue(b);
  }

  uint64_t PickOffset(uint8_t sel) {
    const uint64_t size = opts_.exports[0].size;
    switch (sel & 3) {
      case 0:
        return uint64_t{in_.U8()} * 4096;
      case 1:
        return in_.U16();
      case 2:
        return in_.U64();
      default:
        return size - std::min<uint64_t>(size, uint64_t{in_.U8()} * 512);
    }
  }

  uint64_t PickLength(uint8_t sel, uint64_t offset) {
    const uint64_t size = opts_.exports[0].size;
    switch ((sel >> 2) & 3) {
      case 0:
        return uint64_t{in_.U8()} * 512;
      case 1:
        return in_.U16();
      case 2:
        return in_.U32();
      default:
        return offset < size ? size - offset : 0;
    }
  }

  // A well-formed client message:
  //   kind % 12: 0 client flags (u8: & 3, bit 7 adds an unknown bit),
  //   1 GO / 2 INFO (u8 name, u8 count, count x u8 info type),
  //   3 EXPORT_NAME (u8 name), 4 LIST (u8 data length), 5 STRUCTURED_REPLY
  //   and 6 EXTENDED_HEADERS (u8 data length), 7 LIST_META_CONTEXT /
  //   8 SET_META_CONTEXT (u8 name, u8 count, count x u8 query),
  //   9 ABORT / STARTTLS / an unknown option (u8), 10 a request (u8 type:
  //   % 9, or the value itself if >= 0x80; u8 flags; u8 sel, offset,
  //   length as in PickOffset/PickLength; u8 form: bit 7 the other header
  //   form than negotiated, bit 6 raw flags instead of well-formed ones,
  //   see QueueRequest), 11 a BLOCK_STATUS
  //   with PAYLOAD_LEN (u8 sel, offset, length, u8 count of context ids).
  void Message() {
    const uint8_t kind = in_.U8() % 12;
    switch (kind) {
      case 0: {
        const uint8_t f = in_.U8();
        uint32_t flags = f & 3;
        if (f & 0x80) flags |= 4;
        const auto b = nbd::EncodeClientFlags(flags);
        return Queue(b);
      }
      case 1:
      case 2: {
        nbd::InfoRequest r;
        r.export_name = ExportName(in_.U8());
        const uint8_t n = in_.U8() % 8;
        for (uint8_t i = 0; i < n; ++i) r.info_requests.push_back(in_.U8() % 6);
        return QueueOption(kind == 1 ? nbd::Option::kGo : nbd::Option::kInfo,
                           nbd::EncodeInfoRequest(r));
      }
      case 3: {
        const std::string name = ExportName(in_.U8());
        return QueueOption(
            nbd::Option::kExportName,
            absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(name.data()),
                                name.size()));
      }
      case 4:
      case 5:
      case 6: {
        const nbd::Option o = kind == 4   ? nbd::Option::kList
                              : kind == 5 ? nbd::Option::kStructuredReply
                                          : nbd::Option::kExtendedHeaders;
        const std::vector<uint8_t> data(in_.U8() % 4, 0x55);
        return QueueOption(o, data);
      }
      case 7:
      case 8: {
        nbd::MetaContextRequest r;
        r.export_name = ExportName(in_.U8());
        const uint8_t n = in_.U8() % 5;
        for (uint8_t i = 0; i < n; ++i) r.queries.push_back(Query(in_.U8()));
        return QueueOption(kind == 7 ? nbd::Option::kListMetaContext
                                     : nbd::Option::kSetMetaContext,
                           nbd::EncodeMetaContextRequest(r));
      }
      case 9: {
        const uint8_t which = in_.U8();
        const uint32_t option = which % 3 == 0   ? 2  // ABORT
                                : which % 3 == 1 ? 5  // STARTTLS
                                                 : 0x4000 + which;
        const std::vector<uint8_t> data((which >> 6) & 1, 0x01);
        const nbd::Bytes b =
            nbd::EncodeOptionRequest(static_cast<nbd::Option>(option), data);
        return Queue(b);
      }
      case 10:
        return QueueRequest(/*block_status_payload=*/false);
      default:
        return QueueRequest(/*block_status_payload=*/true);
    }
  }

  // The flags that mean something for `c` (NBD's proto.md).
  static uint16_t CommandFlags(Command c) {
    switch (c) {
      case Command::kRead:
        return nbd::kCmdFlagDf;
      case Command::kWrite:
      case Command::kTrim:
        return nbd::kCmdFlagFua;
      case Command::kWriteZeroes:
        return nbd::kCmdFlagFua | nbd::kCmdFlagNoHole | nbd::kCmdFlagFastZero;
      case Command::kBlockStatus:
        return nbd::kCmdFlagReqOne;
      default:
        return 0;
    }
  }

  void QueueRequest(bool block_status_payload) {
    uint16_t type;
    uint16_t flags;
    if (block_status_payload) {
      type = static_cast<uint16_t>(Command::kBlockStatus);
      flags = nbd::kCmdFlagPayloadLen | (in_.U8() & nbd::kCmdFlagReqOne);
    } else {
      const uint8_t t = in_.U8();
      type = (t & 0x80) ? static_cast<uint16_t>(t) : t % 9;
      flags = in_.U8();
    }
    const uint8_t sel = in_.U8();
    const uint64_t offset = PickOffset(sel);
    uint64_t length = PickLength(sel, offset);
    // The header form: what was negotiated, unless the input says otherwise.
    const uint8_t form = in_.U8();
    bool extended = session_->extended_headers();
    if (form & 0x80) extended = !extended;
    const uint64_t cookie = kCookieBase + ++cookie_;
    if (!block_status_payload && !(form & 0x40)) {
      // Well-formed flags: only those that mean something for the command
      // (the session still refuses unadvertised ones). An extended WRITE
      // carries PAYLOAD_LEN, unless the input's PAYLOAD_LEN bit is set:
      // then it goes without, which the spec says has no payload; the
      // session must refuse it (EINVAL) or drop the connection, and never
      // hand it to the embedder with the bytes that follow as its data.
      // Any byte with that bit makes one, so mutations find it easily.
      const bool omit_payload_len = flags & nbd::kCmdFlagPayloadLen;
      flags &= CommandFlags(static_cast<Command>(type));
      if (type == static_cast<uint16_t>(Command::kWrite) && extended) {
        if (!omit_payload_len) {
          flags |= nbd::kCmdFlagPayloadLen;
        } else if (session_->extended_headers() && length > 0) {
          // (A zero-length one carries no bytes either way: the check is
          // about the data that follows being taken as its payload.)
          no_payload_writes_.insert(cookie);
        }
      }
    }

    std::vector<uint8_t> payload;
    if (block_status_payload) {
      nbd::BlockStatusPayload p;
      p.effect_length = length;
      const uint8_t n = in_.U8() % 4 + 1;
      for (uint8_t i = 0; i < n; ++i) p.context_ids.push_back(in_.U8() % 3);
      payload = nbd::EncodeBlockStatusPayload(p);
      length = payload.size();
    } else if (type == static_cast<uint16_t>(Command::kWrite) ||
               (extended && (flags & nbd::kCmdFlagPayloadLen))) {
      // WRITE data (at most kMaxPayload bytes; a longer request leaves the
      // session waiting for the rest, which later raw bytes may provide).
      payload.resize(std::min<uint64_t>(length, kMaxPayload));
      for (size_t i = 0; i < payload.size(); ++i) {
        payload[i] = static_cast<uint8_t>(i * 7 + form);
      }
    }
    if (extended) {
      const auto h =
          nbd::EncodeExtendedRequest({flags, type, cookie, offset, length});
      Queue(h);
    } else {
      const auto h = nbd::EncodeRequest(
          {flags, type, cookie, offset, static_cast<uint32_t>(length)});
      Queue(h);
    }
    Queue(payload);
  }

  void DoBadCommit() {
    const ServerPhase before = session_->phase();
    const size_t output = session_->pending_output_bytes();
    absl::Span<uint8_t> span = session_->RecvBuffer();
    absl::Status s = session_->CommitRecv(span.size() + 1);
    FUZZ_CHECK_MSG(!s.ok(), "CommitRecv beyond the receive span succeeded");
    FUZZ_CHECK(session_->phase() == before);
    FUZZ_CHECK(session_->pending_output_bytes() == output);
  }

  // ---- Output ---------------------------------------------------------------

  // Peeks up to `max_slices` and reads every byte the way writev() would
  // (AddressSanitizer catches a slice into freed memory). Returns the bytes.
  size_t PeekAndTouch(size_t max_slices) {
    nbd::IoSlice slices[kMaxSlices];
    const size_t n = session_->PeekOutput(absl::MakeSpan(slices, max_slices));
    FUZZ_CHECK(n <= max_slices);
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      FUZZ_CHECK_MSG(slices[i].size > 0, "PeekOutput returned an empty slice");
      FUZZ_CHECK(slices[i].data != nullptr);
      const uint8_t* p = static_cast<const uint8_t*>(slices[i].data);
      for (size_t j = 0; j < slices[i].size; ++j) {
        const size_t pos = sent_ + total + j;
        if (pos < greeting_.size()) {
          FUZZ_CHECK_MSG(p[j] == greeting_[pos],
                         "the output does not start with the greeting");
        }
        touch_ ^= p[j];
      }
      total += slices[i].size;
    }
    FUZZ_CHECK(total <= session_->pending_output_bytes());
    if (n < max_slices) FUZZ_CHECK(total == session_->pending_output_bytes());
    return total;
  }

  void DoOutput() {
    const uint8_t sel = in_.U8();
    const size_t max_slices = (sel & 7) + 1;
    size_t amount = in_.U16();
    const size_t pending = session_->pending_output_bytes();
    if (sel & 0x80) {
      absl::Status s = session_->ConsumeOutput(pending + 1);
      FUZZ_CHECK_MSG(!s.ok(), "ConsumeOutput beyond what is pending worked");
      FUZZ_CHECK(session_->pending_output_bytes() == pending);
    }
    const size_t peeked = PeekAndTouch(max_slices);
    if (amount == 0 || amount > peeked) amount = peeked;
    Consume(amount);
  }

  void Consume(size_t n) {
    const size_t pending = session_->pending_output_bytes();
    absl::Status s = session_->ConsumeOutput(n);
    FUZZ_CHECK_MSG(s.ok(), "ConsumeOutput(n <= pending) failed");
    sent_ += n;
    FUZZ_CHECK_MSG(session_->pending_output_bytes() == pending - n,
                   "ConsumeOutput did not retire exactly n bytes");
  }

  void DrainOutput() {
    for (size_t i = 0; i < 1024 && session_->pending_output_bytes() > 0; ++i) {
      const size_t n = PeekAndTouch(kMaxSlices);
      Consume(n);
    }
    FUZZ_CHECK(session_->pending_output_bytes() == 0);
  }

  // ---- Events ---------------------------------------------------------------

  void Drain(size_t max) {
    size_t popped = 0;
    while (max == 0 || popped < max) {
      std::optional<nbd::ServerEvent> e = session_->PollEvent();
      if (!e.has_value()) {
        FUZZ_CHECK(!session_->has_events());
        break;
      }
      ++popped;
      FUZZ_CHECK_MSG(!terminal_event_.has_value(),
                     "an event after ServerClosed/ServerDead");
      OnEvent(*e);
    }
    if (!session_->has_events()) {
      FUZZ_CHECK_MSG(session_->in_flight() == outstanding_.size(),
                     "in_flight() does not match the reported requests "
                     "without a reply");
    }
  }

  static nbd::ServerTlsMode TlsModeFor(uint8_t misc) {
    static const nbd::ServerTlsMode kModes[] = {
        nbd::ServerTlsMode::kOff, nbd::ServerTlsMode::kOn,
        nbd::ServerTlsMode::kRequire, nbd::ServerTlsMode::kOff};
    return kModes[(misc >> 4) & 3];
  }

  // ServerStartTls: the harness plays the TLS layer. The bytes after the
  // acknowledgement (still queued) are then read as the plaintext inside
  // TLS, which is what the session sees from a real TLS layer.
  void OnStartTls() {
    FUZZ_TRACE("  event ServerStartTls\n");
    FUZZ_CHECK_MSG(opts_.tls != nbd::ServerTlsMode::kOff,
                   "ServerStartTls with TLS off");
    FUZZ_CHECK_MSG(!started_, "ServerStartTls after TransmissionStarted");
    FUZZ_CHECK_MSG(!start_tls_seen_, "ServerStartTls twice");
    start_tls_seen_ = true;
    FUZZ_CHECK(session_->phase() == ServerPhase::kHandshake);
    FUZZ_CHECK_MSG(session_->wants() == nbd::Direction::kNone,
                   "the session wants I/O during the TLS pause");
    FUZZ_CHECK(session_->RecvBuffer().empty());
    if (tls_fails_) {
      session_->TlsHandshakeFailed(
          nbd::ErrnoStatus(EACCES, "fuzz: TLS handshake failed"));
      FUZZ_CHECK(session_->phase() == ServerPhase::kDead);
      return;
    }
    const absl::Status st = session_->TlsHandshakeDone();
    FUZZ_CHECK_MSG(st.ok(), st.ToString().c_str());
    FUZZ_CHECK(session_->tls_negotiated());
    FUZZ_CHECK(!session_->structured_replies());
    FUZZ_CHECK(!session_->extended_headers());
    FUZZ_CHECK(!session_->block_status_negotiated());
    FUZZ_CHECK_MSG(!session_->TlsHandshakeDone().ok(),
                   "a second TlsHandshakeDone accepted");
  }

  void OnEvent(const nbd::ServerEvent& e) {
    std::visit(
        [&](const auto& ev) {
          using T = std::decay_t<decltype(ev)>;
          if constexpr (std::is_same_v<T, nbd::TransmissionStarted>) {
            FUZZ_TRACE("  event TransmissionStarted export %zu\n",
                       ev.export_index);
            FUZZ_CHECK_MSG(!started_, "TransmissionStarted twice");
            started_ = true;
            FUZZ_CHECK(ev.export_index < opts_.exports.size());
            FUZZ_CHECK(session_->export_index() == ev.export_index);
            FUZZ_CHECK_MSG(opts_.tls != nbd::ServerTlsMode::kRequire ||
                               session_->tls_negotiated(),
                           "transmission without TLS under kRequire");
            FUZZ_CHECK(ev.structured_replies == session_->structured_replies());
            FUZZ_CHECK(ev.extended_headers == session_->extended_headers());
            if (ev.extended_headers) FUZZ_CHECK(ev.structured_replies);
            if (ev.extended_headers) FUZZ_CHECK(opts_.allow_extended_headers);
            if (ev.structured_replies && !ev.extended_headers) {
              FUZZ_CHECK(opts_.allow_structured_replies);
            }
            export_ = ev.export_index;
          } else if constexpr (std::is_same_v<T, nbd::ServerRequest>) {
            OnRequest(ev);
          } else if constexpr (std::is_same_v<T, nbd::ReplySent>) {
            FUZZ_TRACE("  event ReplySent %llu\n",
                       static_cast<unsigned long long>(ev.handle));
            FUZZ_CHECK_MSG(opts_.report_reply_sent,
                           "ReplySent without report_reply_sent");
            FUZZ_CHECK_MSG(replied_.erase(ev.handle) == 1,
                           "ReplySent for a handle not replied to, or twice");
            sent_replies_.insert(ev.handle);
          } else if constexpr (std::is_same_v<T, nbd::ServerStartTls>) {
            OnStartTls();
          } else if constexpr (std::is_same_v<T, nbd::ServerTrace>) {
            FUZZ_CHECK(opts_.trace);
            FUZZ_CHECK(!ev.message.empty());
          } else if constexpr (std::is_same_v<T, nbd::ServerClosed>) {
            FUZZ_TRACE("  event ServerClosed\n");
            FUZZ_CHECK(session_->phase() == ServerPhase::kClosed);
            terminal_event_ = ServerPhase::kClosed;
          } else if constexpr (std::is_same_v<T, nbd::ServerDead>) {
            FUZZ_TRACE("  event ServerDead %s\n", ev.reason.ToString().c_str());
            FUZZ_CHECK(session_->phase() == ServerPhase::kDead);
            FUZZ_CHECK(!ev.reason.ok());
            FUZZ_CHECK(session_->dead_reason() == ev.reason);
            terminal_event_ = ServerPhase::kDead;
          }
        },
        e);
  }

  void OnRequest(const nbd::ServerRequest& r) {
    FUZZ_TRACE("  event ServerRequest %llu cmd %d off %llu len %llu\n",
               static_cast<unsigned long long>(r.handle),
               static_cast<int>(r.command),
               static_cast<unsigned long long>(r.offset),
               static_cast<unsigned long long>(r.length));
    FUZZ_CHECK_MSG(started_, "a request before TransmissionStarted");
    FUZZ_CHECK_MSG(no_payload_writes_.count(r.cookie) == 0,
                   "an extended-header WRITE without NBD_CMD_FLAG_PAYLOAD_LEN "
                   "was read with a payload and reported");
    FUZZ_CHECK_MSG(r.handle == last_handle_ + 1,
                   "request handles do not count up from 1");
    last_handle_ = r.handle;
    const nbd::ExportInfo& e = opts_.exports[*export_];
    const Command c = r.command;
    FUZZ_CHECK_MSG(c == Command::kRead || c == Command::kWrite ||
                       c == Command::kFlush || c == Command::kTrim ||
                       c == Command::kCache || c == Command::kWriteZeroes ||
                       c == Command::kBlockStatus,
                   "an unknown command reached the embedder");
    constexpr uint16_t kKnown = nbd::kCmdFlagFua | nbd::kCmdFlagNoHole |
                                nbd::kCmdFlagDf | nbd::kCmdFlagReqOne |
                                nbd::kCmdFlagFastZero | nbd::kCmdFlagPayloadLen;
    FUZZ_CHECK_MSG((r.flags & ~kKnown) == 0, "unknown flags passed on");
    const bool write_like = c == Command::kWrite || c == Command::kTrim ||
                            c == Command::kWriteZeroes;
    FUZZ_CHECK_MSG(!(write_like && e.read_only),
                   "a write-type request on a read-only export");
    if (c == Command::kFlush) FUZZ_CHECK(e.can_flush);
    if (c == Command::kTrim) FUZZ_CHECK(e.can_trim);
    if (c == Command::kWriteZeroes) FUZZ_CHECK(e.can_zero);
    if (c == Command::kCache) FUZZ_CHECK(e.can_cache);
    if (c == Command::kBlockStatus) {
      FUZZ_CHECK_MSG(session_->block_status_negotiated(),
                     "BLOCK_STATUS reported without base:allocation");
      FUZZ_CHECK(r.length > 0);
    }
    if (r.flags & nbd::kCmdFlagFua) FUZZ_CHECK(e.can_fua);
    if (r.flags & nbd::kCmdFlagFastZero) FUZZ_CHECK(e.can_fast_zero);
    if (r.flags & nbd::kCmdFlagDf) {
      FUZZ_CHECK(e.can_df && session_->structured_replies());
    }
    if (r.flags & nbd::kCmdFlagPayloadLen) {
      FUZZ_CHECK(session_->extended_headers());
    }
    if (c != Command::kFlush) {
      FUZZ_CHECK_MSG(r.offset <= e.size && r.length <= e.size - r.offset,
                     "a request outside the export was reported");
      if (e.min_block > 1) {
        FUZZ_CHECK_MSG(
            r.offset % e.min_block == 0 && r.length % e.min_block == 0,
            "a misaligned request was reported");
      }
    }
    if (c == Command::kRead || c == Command::kWrite) {
      FUZZ_CHECK_MSG(r.length <= e.max_block,
                     "a READ/WRITE above max_block was reported");
    }
    if (c == Command::kWrite) {
      FUZZ_CHECK_MSG(r.payload.size() == r.length,
                     "a WRITE payload of the wrong size");
    } else {
      FUZZ_CHECK(r.payload.empty() || r.payload.size() == r.length);
    }
    Outstanding o;
    o.request = r;
    o.payload_sum = Checksum(r.payload.data(), r.payload.size());
    FUZZ_CHECK(outstanding_.emplace(r.handle, o).second);
    order_.push_back(r.handle);
  }

  // ---- Replies --------------------------------------------------------------

  // A reply call was made for `handle`; checks what it did.
  void AfterReply(RequestHandle handle, const absl::Status& s, bool must_fit,
                  size_t in_flight_before, size_t output_before,
                  ServerPhase phase_before) {
    if (IsTerminal(phase_before)) {
      FUZZ_CHECK_MSG(!s.ok() && absl::IsFailedPrecondition(s) &&
                         nbd::StatusErrno(s) == ENOTCONN,
                     "a reply after the end was not refused with ENOTCONN");
      FUZZ_CHECK_MSG(session_->in_flight() == in_flight_before - 1,
                     "a reply after the end did not release the handle");
      Forget(handle);
      return;
    }
    if (!s.ok()) {
      FUZZ_CHECK_MSG(!must_fit, "a fitting reply was refused");
      FUZZ_CHECK_MSG(absl::IsInvalidArgument(s),
                     "a reply was refused with a code other than "
                     "InvalidArgument");
      FUZZ_CHECK_MSG(session_->in_flight() == in_flight_before &&
                         session_->pending_output_bytes() == output_before &&
                         session_->phase() == phase_before,
                     "a refused reply changed something");
      return;
    }
    FUZZ_CHECK(session_->in_flight() == in_flight_before - 1);
    FUZZ_CHECK_MSG(session_->pending_output_bytes() > output_before,
                   "an accepted reply queued no output");
    if (opts_.report_reply_sent) replied_.insert(handle);
    Forget(handle);
  }

  void Forget(RequestHandle handle) {
    outstanding_.erase(handle);
    order_.erase(std::remove(order_.begin(), order_.end(), handle),
                 order_.end());
  }

  int PickErrno(uint8_t sel) {
    static const int kErrnos[] = {EPERM,  EIO,       ENOMEM,  EINVAL,
                                  ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN,
                                  EROFS,  0,         9999,    EDQUOT};
    return kErrnos[sel % (sizeof(kErrnos) / sizeof(kErrnos[0]))];
  }

  std::string ErrorMessage(uint8_t sel) {
    if (sel == 255) return std::string(5000, 'm');
    return std::string(sel % 64, 'e');
  }

  // Builds pieces tiling [from, to) from the input (u8 count, then for each
  // piece u8: bit 0 hole, bits 1-7 a share of what is left).
  std::vector<nbd::ReadPiece> Pieces(uint64_t from, uint64_t to,
                                     const uint8_t* base, uint64_t base_off) {
    std::vector<nbd::ReadPiece> pieces;
    const uint8_t count = in_.U8() % 6 + 1;
    uint64_t pos = from;
    for (uint8_t i = 0; i < count && pos < to; ++i) {
      const uint8_t b = in_.U8();
      uint64_t len = (i + 1 == count)
                         ? to - pos
                         : std::max<uint64_t>(1, (to - pos) * (b >> 1) / 128);
      len = std::min(len, to - pos);
      if (b & 1) {
        pieces.push_back(nbd::ReadPiece::Hole(pos, len));
      } else {
        pieces.push_back(
            {pos, len, base == nullptr ? nullptr : base + (pos - base_off)});
      }
      pos += len;
    }
    if (pos < to) pieces.push_back(nbd::ReadPiece::Hole(pos, to - pos));
    return pieces;
  }

  // Data for a READ reply: handed over by keepalive, or lent until
  // ReplySent.
  struct ReadData {
    const uint8_t* base = nullptr;
    std::shared_ptr<const void> keepalive;
  };
  ReadData MakeReadData(RequestHandle handle, uint64_t length) {
    ReadData d;
    const size_t n = static_cast<size_t>(std::max<uint64_t>(length, 1));
    if (lend_) {
      Lent l;
      l.data = std::make_unique<uint8_t[]>(n);
      l.size = n;
      for (size_t i = 0; i < n; ++i) l.data[i] = static_cast<uint8_t>(i);
      d.base = l.data.get();
      lent_[handle] = std::move(l);
    } else {
      auto buf = std::make_shared<std::vector<uint8_t>>(n);
      for (size_t i = 0; i < n; ++i) (*buf)[i] = static_cast<uint8_t>(i * 3);
      d.base = buf->data();
      d.keepalive = buf;
    }
    return d;
  }

  // Reply kinds (kind % 7): 0 ok, 1 error (u8 errno, u8 message), 2 read
  // data (pieces), 3 read error (u8 share of the length, pieces, u8 errno,
  // u8 message), 4 block status (u8 count, extents: u8 sel, then u16 x 512
  // or u32, u8 flags), 5 a reply that does not fit (u8 which), 6 the
  // natural reply for the command.
  void DoReply() {
    const uint8_t index = in_.U8();
    const uint8_t kind = in_.U8() % 7;
    if (order_.empty()) {
      if (kind == 5) ReplyUnknownHandle();
      return;
    }
    const RequestHandle handle = order_[index % order_.size()];
    ReplyTo(handle, kind);
  }

  void ReplyUnknownHandle() {
    const ServerPhase before = session_->phase();
    absl::Status s = session_->ReplyOk(last_handle_ + 1000);
    if (before == ServerPhase::kHandshake) {
      FUZZ_CHECK(absl::IsFailedPrecondition(s) &&
                 nbd::StatusErrno(s) == EINVAL);
    } else if (!IsTerminal(before)) {
      FUZZ_CHECK_MSG(absl::IsInvalidArgument(s),
                     "a reply for an unknown handle was not refused");
    }
  }

  void ReplyTo(RequestHandle handle, uint8_t kind) {
    Outstanding& o = outstanding_.at(handle);
    const nbd::ServerRequest r = o.request;
    FUZZ_CHECK_MSG(
        Checksum(r.payload.data(), r.payload.size()) == o.payload_sum,
        "a WRITE payload changed before its reply");
    const size_t in_flight = session_->in_flight();
    const size_t output = session_->pending_output_bytes();
    const ServerPhase phase = session_->phase();
    const bool is_read = r.command == Command::kRead;
    const bool is_bs = r.command == Command::kBlockStatus;
    absl::Status s;
    bool fits = false;
    switch (kind) {
      case 0:
        s = session_->ReplyOk(handle);
        fits = !(is_read && r.length > 0) && !is_bs;
        break;
      case 1: {
        const int e = PickErrno(in_.U8());
        s = session_->ReplyError(handle, e, ErrorMessage(in_.U8()));
        fits = true;
        break;
      }
      case 2: {
        if (!is_read) {
          s = session_->ReplyRead(handle, {});
          break;
        }
        ReadData d = MakeReadData(handle, r.length);
        const auto pieces =
            Pieces(r.offset, r.offset + r.length, d.base, r.offset);
        s = session_->ReplyRead(handle, pieces, d.keepalive);
        fits = true;
        break;
      }
      case 3: {
        const uint8_t share = in_.U8();
        if (!is_read || r.length == 0) {
          s = session_->ReplyReadError(handle, {}, r.offset, EIO);
          break;
        }
        const uint64_t error_offset = r.offset + (r.length - 1) * share / 255;
        ReadData d = MakeReadData(handle, r.length);
        const auto pieces = Pieces(r.offset, error_offset, d.base, r.offset);
        const int e = PickErrno(in_.U8());
        s = session_->ReplyReadError(handle, pieces, error_offset, e,
                                     ErrorMessage(in_.U8()), d.keepalive);
        fits = true;
        break;
      }
      case 4: {
        std::vector<nbd::Extent> extents;
        const uint8_t n = in_.U8() % 8 + 1;
        for (uint8_t i = 0; i < n; ++i) {
          const uint8_t sel = in_.U8();
          nbd::Extent e;
          e.length = (sel & 1) ? in_.U32() : uint64_t{in_.U16()} * 512;
          if (sel & 2) e.length = r.length;
          e.flags = in_.U8() & 3;
          extents.push_back(e);
        }
        s = session_->ReplyBlockStatus(handle, extents);
        fits = is_bs &&
               std::all_of(extents.begin(), extents.end(),
                           [](const nbd::Extent& e) { return e.length > 0; });
        break;
      }
      case 5:
        s = Misfit(handle, r, in_.U8());
        fits = false;
        break;
      default:
        s = Natural(handle, r);
        fits = true;
        break;
    }
    if (!s.ok()) lent_.erase(handle);
    AfterReply(handle, s, fits, in_flight, output, phase);
  }

  // Replies that break the rules in server.h; each must be refused.
  absl::Status Misfit(RequestHandle handle, const nbd::ServerRequest& r,
                      uint8_t which) {
    static const uint8_t kData[4096] = {};
    switch (which % 5) {
      case 0:  // pieces with a gap
        if (r.command == Command::kRead && r.length >= 2) {
          const nbd::ReadPiece p[] = {
              nbd::ReadPiece::Hole(r.offset, 1),
              nbd::ReadPiece::Hole(r.offset + 2, r.length - 2 + 1)};
          return session_->ReplyRead(handle, p);
        }
        [[fallthrough]];
      case 1:  // pieces past the end
        if (r.command == Command::kRead) {
          const nbd::ReadPiece p[] = {
              nbd::ReadPiece::Data(r.offset, absl::MakeConstSpan(kData, 1)),
              nbd::ReadPiece::Hole(r.offset + 1, r.length)};
          return session_->ReplyRead(handle, p);
        }
        [[fallthrough]];
      case 2:  // error offset outside the request
        if (r.command == Command::kRead) {
          return session_->ReplyReadError(handle, {}, r.offset + r.length, EIO);
        }
        [[fallthrough]];
      case 3:  // a zero-length extent, or no extent at all
        if (r.command == Command::kBlockStatus) {
          const nbd::Extent e[] = {{512, 0}, {0, 0}};
          return which & 0x80 ? session_->ReplyBlockStatus(handle, {})
                              : session_->ReplyBlockStatus(handle, e);
        }
        [[fallthrough]];
      default:  // the wrong reply call for the command
        if (r.command == Command::kBlockStatus ||
            (r.command == Command::kRead && r.length > 0)) {
          return session_->ReplyOk(handle);
        }
        if (r.command == Command::kRead) {
          return session_->ReplyBlockStatus(handle, {});
        }
        return session_->ReplyRead(handle, {});
    }
  }

  absl::Status Natural(RequestHandle handle, const nbd::ServerRequest& r) {
    if (r.command == Command::kRead) {
      if (r.length == 0) return session_->ReplyOk(handle);
      ReadData d = MakeReadData(handle, r.length);
      const nbd::ReadPiece p[] = {{r.offset, r.length, d.base}};
      return session_->ReplyRead(handle, p, d.keepalive);
    }
    if (r.command == Command::kBlockStatus) {
      const uint64_t half = std::max<uint64_t>(r.length / 2, 1);
      const nbd::Extent e[] = {{half, 0}, {r.length, nbd::kStateHole}};
      return session_->ReplyBlockStatus(handle, e);
    }
    return session_->ReplyOk(handle);
  }

  void ReplyAll() {
    const std::vector<RequestHandle> handles = order_;
    for (RequestHandle h : handles) {
      if (outstanding_.count(h)) ReplyTo(h, 6);
    }
  }

  void ReleaseLent() {
    for (auto it = lent_.begin(); it != lent_.end();) {
      const bool dead = session_->phase() == ServerPhase::kDead;
      if (sent_replies_.count(it->first) || dead) {
        // Scribble before freeing: a session still reading it would send
        // garbage (and AddressSanitizer catches a read after the free).
        std::memset(it->second.data.get(), 0xdd, it->second.size);
        it = lent_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Answers everything, sends everything and pops every event until
  // nothing changes (bounded).
  void Settle() {
    for (int round = 0; round < 64; ++round) {
      Drain(0);
      ReplyAll();
      DrainOutput();
      Drain(0);
      ReleaseLent();
      CheckState();
      if (IsTerminal(session_->phase()) && terminal_event_.has_value()) break;
      if (session_->phase() != ServerPhase::kClosing && round > 2) break;
    }
  }

  // ---- Invariants ----------------------------------------------------------

  void CheckState() {
    const ServerPhase phase = session_->phase();
    FUZZ_CHECK_MSG(Rank(phase) >= Rank(last_phase_), "the phase went back");
    if (IsTerminal(last_phase_)) {
      FUZZ_CHECK_MSG(phase == last_phase_, "the phase left kClosed/kDead");
    }
    last_phase_ = phase;
    if (terminal_event_.has_value()) {
      FUZZ_CHECK(phase == *terminal_event_);
      FUZZ_CHECK_MSG(!session_->has_events(), "events after Closed/Dead");
    }
    if (session_->extended_headers()) {
      FUZZ_CHECK(session_->structured_replies());
    }
    if (phase == ServerPhase::kHandshake) {
      FUZZ_CHECK(!session_->export_index().has_value());
      FUZZ_CHECK(session_->in_flight() == 0);
    } else if (phase == ServerPhase::kTransmission) {
      FUZZ_CHECK(session_->export_index().has_value());
    }
    const Direction w = session_->wants();
    if (IsTerminal(phase)) {
      FUZZ_CHECK(w == Direction::kNone);
      FUZZ_CHECK_MSG(session_->pending_output_bytes() == 0,
                     "output is still pending after the end");
      FUZZ_CHECK(session_->RecvBuffer().empty());
      if (phase == ServerPhase::kDead) {
        FUZZ_CHECK(!session_->dead_reason().ok());
      } else {
        FUZZ_CHECK(session_->dead_reason().ok());
        FUZZ_CHECK(session_->in_flight() == 0);
      }
    } else {
      FUZZ_CHECK(session_->dead_reason().ok());
      const bool reading = w == Direction::kRead || w == Direction::kBoth;
      const bool writing = w == Direction::kWrite || w == Direction::kBoth;
      FUZZ_CHECK_MSG(writing == (session_->pending_output_bytes() > 0),
                     "wants() and pending output disagree");
      if (phase == ServerPhase::kClosing) {
        FUZZ_CHECK_MSG(!reading, "a closing session wants input");
        FUZZ_CHECK(session_->RecvBuffer().empty());
      }
      // Liveness: a live session that waits for nothing must be waiting
      // for the embedder (a reply, or an event to pop).
      if (w == Direction::kNone) {
        FUZZ_CHECK_MSG(session_->in_flight() > 0 || session_->has_events(),
                       "the session waits for nothing (a hang)");
      }
      if (reading) FUZZ_CHECK(!session_->RecvBuffer().empty());
    }
  }

  Input& in_;
  nbd::ServerOptions opts_;
  bool lend_ = false;
  int final_action_ = 0;
  // Declared before session_ so they outlive it.
  std::map<RequestHandle, Lent> lent_;
  std::unique_ptr<ServerSession> session_;

  std::vector<uint8_t> queued_;
  // Cookies of generated requests: a range raw bytes are unlikely to hit.
  static constexpr uint64_t kCookieBase = 0xc00c1e0000000000;
  uint64_t cookie_ = 0;
  std::set<uint64_t> no_payload_writes_;  // extended WRITEs without the flag
  size_t sent_ = 0;
  uint8_t touch_ = 0;
  const std::array<uint8_t, nbd::kNewstyleGreetingSize> greeting_ =
      nbd::EncodeNewstyleGreeting(
          {nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes});

  bool started_ = false;
  bool start_tls_seen_ = false;
  bool tls_fails_ = false;
  std::optional<size_t> export_;
  RequestHandle last_handle_ = 0;
  std::map<RequestHandle, Outstanding> outstanding_;
  std::vector<RequestHandle> order_;  // outstanding, in arrival order
  std::set<RequestHandle> replied_;   // accepted replies awaiting ReplySent
  std::set<RequestHandle> sent_replies_;
  ServerPhase last_phase_ = ServerPhase::kHandshake;
  std::optional<ServerPhase> terminal_event_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Harness harness(in);
  harness.Run();
  return 0;
}
