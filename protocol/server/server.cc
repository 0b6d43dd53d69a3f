// nbd::ServerSession: public wrappers, queries, input plumbing, output and
// lifecycle.
#include "protocol/server/server.h"

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "protocol/server/internal/impl.h"
#include "protocol/status.h"

namespace nbd {
namespace {

// Payload buffers up to this size are kept for reuse, at most kPoolSize.
constexpr size_t kPoolMaxBuffer = 1u << 20;
constexpr size_t kPoolSize = 8;

}  // namespace

const char* ServerTlsModeName(ServerTlsMode mode) {
  switch (mode) {
    case ServerTlsMode::kOff:
      return "off";
    case ServerTlsMode::kOn:
      return "on";
    case ServerTlsMode::kRequire:
      return "require";
  }
  return "unknown";
}

const char* ServerPhaseName(ServerPhase phase) {
  switch (phase) {
    case ServerPhase::kHandshake:
      return "handshake";
    case ServerPhase::kTransmission:
      return "transmission";
    case ServerPhase::kClosing:
      return "closing";
    case ServerPhase::kClosed:
      return "closed";
    case ServerPhase::kDead:
      return "dead";
  }
  return "unknown";
}

uint16_t TransmissionFlags(const ExportInfo& e, bool structured_replies) {
  const bool writable = !e.read_only;
  uint16_t f = kTransmitHasFlags;
  if (e.read_only) f |= kTransmitReadOnly;
  if (e.can_flush) f |= kTransmitSendFlush;
  if (e.can_fua && writable) f |= kTransmitSendFua;
  if (e.rotational) f |= kTransmitRotational;
  if (e.can_trim && writable) f |= kTransmitSendTrim;
  if (e.can_zero && writable) {
    f |= kTransmitSendWriteZeroes;
    if (e.can_fast_zero) f |= kTransmitSendFastZero;
  }
  if (e.can_df && structured_replies) f |= kTransmitSendDf;
  if (e.can_multi_conn) f |= kTransmitCanMultiConn;
  if (e.can_cache) f |= kTransmitSendCache;
  return f;
}

// ---- Impl: construction and lifecycle ---------------------------------------

ServerSession::Impl::Impl(ServerOptions options) : opts_(std::move(options)) {
  if (opts_.default_export >= opts_.exports.size()) opts_.default_export = 0;
  opts_.max_in_flight = std::max<size_t>(opts_.max_in_flight, 1);
  const uint16_t flags = kFlagFixedNewstyle | kFlagNoZeroes;
  if (tracing()) {
    TraceLine(absl::StrFormat(
        "-> fixed newstyle greeting: handshake flags 0x%x", flags));
  }
  out_.PushCopy(EncodeNewstyleGreeting({flags}));
  Expect(Unit::kClientFlags, kClientFlagsSize);
}

ServerPhase ServerSession::Impl::phase() const {
  if (dead_) return ServerPhase::kDead;
  if (closed_) return ServerPhase::kClosed;
  if (closing_) return ServerPhase::kClosing;
  return export_.has_value() ? ServerPhase::kTransmission
                             : ServerPhase::kHandshake;
}

absl::Status ServerSession::Impl::Check(ServerCall call) const {
  const ServerPhase now = phase();
  if (ServerCallAllowed(call, now)) return absl::OkStatus();
  return PreconditionStatus(
      EINVAL, absl::StrCat(ServerCallName(call), ": not allowed when ",
                           ServerPhaseName(now),
                           now == ServerPhase::kDead
                               ? absl::StrCat(": ", dead_reason_.message())
                               : ""));
}

void ServerSession::Impl::Fail(absl::Status reason) {
  if (terminal()) return;
  if (tracing()) TraceLine(absl::StrCat("dead: ", reason.message()));
  dead_ = true;
  dead_reason_ = reason;
  out_.Clear();
  rx_.ReleaseMemory();
  events_.push_back(ServerDead{std::move(reason)});
}

void ServerSession::Impl::StartClosing(absl::string_view why) {
  if (terminal()) return;
  if (tracing()) {
    TraceLine(absl::StrFormat("closing: %s; %d request(s) in flight", why,
                              in_flight_.size()));
  }
  closing_ = true;
  rx_.Clear();
  MaybeClose();
}

void ServerSession::Impl::MaybeClose() {
  if (!closing_ || terminal() || !in_flight_.empty() || !out_.empty()) return;
  if (tracing()) TraceLine("closed: every reply sent");
  closed_ = true;
  events_.push_back(ServerClosed{});
}

std::unique_ptr<uint8_t[]> ServerSession::Impl::TakeBuffer(size_t n,
                                                           size_t* capacity) {
  for (size_t i = 0; i < buffer_pool_.size(); ++i) {
    if (buffer_pool_[i].second >= n) {
      std::unique_ptr<uint8_t[]> b = std::move(buffer_pool_[i].first);
      *capacity = buffer_pool_[i].second;
      buffer_pool_.erase(buffer_pool_.begin() + i);
      return b;
    }
  }
  // Small buffers are rounded up so they can be reused for similar sizes.
  *capacity = n <= kPoolMaxBuffer ? std::min(n * 2, kPoolMaxBuffer) : n;
  *capacity = std::max<size_t>(*capacity, n);
  // Not value-initialized: every byte is received before it is read.
  return std::unique_ptr<uint8_t[]>(new uint8_t[*capacity]);
}

void ServerSession::Impl::ReturnBuffer(std::unique_ptr<uint8_t[]> buffer,
                                       size_t capacity) {
  if (buffer == nullptr || capacity > kPoolMaxBuffer ||
      buffer_pool_.size() >= kPoolSize) {
    return;
  }
  buffer_pool_.emplace_back(std::move(buffer), capacity);
}

void ServerSession::Impl::Release(RequestHandle handle) {
  auto it = in_flight_.find(handle);
  if (it == in_flight_.end()) return;
  std::unique_ptr<uint8_t[]> payload = std::move(it->second.payload);
  const size_t capacity = it->second.payload_capacity;
  in_flight_.erase(it);
  ReturnBuffer(std::move(payload), capacity);
}

// ---- Impl: input plumbing ---------------------------------------------------

void ServerSession::Impl::Expect(Unit unit, size_t n) {
  if (rx_.Expect(unit, n)) OnUnitComplete();
}

void ServerSession::Impl::ExpectInto(Unit unit, uint8_t* dst, size_t n) {
  if (rx_.ExpectInto(unit, dst, n)) OnUnitComplete();
}

void ServerSession::Impl::ExpectSkip(uint64_t n, AfterSkip after) {
  after_skip_ = after;
  if (rx_.Skip(Unit::kSkip, n)) OnUnitComplete();
}

bool ServerSession::Impl::at_boundary() const {
  const Unit unit = rx_.unit();
  return rx_.got() == 0 &&
         (unit == Unit::kClientFlags || unit == Unit::kOptionHeader ||
          unit == Unit::kRequestHeader);
}

bool ServerSession::Impl::input_paused() const {
  if (!at_boundary()) return false;
  if (tls_ == Tls::kAckQueued || tls_ == Tls::kHandshaking) return true;
  // The footprint, not just the bytes: a flood of small error replies
  // costs several times its bytes in queue bookkeeping.
  if (out_.footprint() > opts_.output_high_water) return true;
  return rx_.unit() == Unit::kRequestHeader &&
         in_flight_.size() >= opts_.max_in_flight;
}

bool ServerSession::Impl::accepts_input() const {
  return !terminal() && !closing_ && !input_paused();
}

absl::Span<uint8_t> ServerSession::Impl::RecvBuffer() {
  if (!accepts_input()) return {};
  return rx_.Buffer(/*readahead_ok=*/false);
}

absl::Status ServerSession::Impl::CommitRecv(size_t n) {
  if (terminal()) {
    return PreconditionStatus(EINVAL, "the session is closed or dead");
  }
  const bool refused = n > 0 && RecvBuffer().empty();
  const internal::Committed c =
      refused ? internal::Committed::kNoBuffer : rx_.Commit(n);
  if (c == internal::Committed::kNoBuffer ||
      c == internal::Committed::kBeyondBuffer) {
    return ErrnoStatus(
        EINVAL,
        absl::StrFormat("CommitRecv(%d) exceeds the receive buffer", n));
  }
  if (c == internal::Committed::kUnitComplete) OnUnitComplete();
  if (dead_) return dead_reason_;
  return absl::OkStatus();
}

void ServerSession::Impl::OnUnitComplete() {
  switch (rx_.unit()) {
    case Unit::kNone:
      return;
    case Unit::kClientFlags:
      return OnClientFlags();
    case Unit::kOptionHeader:
      return OnOptionHeader();
    case Unit::kOptionData:
      return OnOptionData();
    case Unit::kRequestHeader:
      return OnRequestHeader();
    case Unit::kPayload:
      return OnPayload();
    case Unit::kSkip: {
      // The receiver discarded every chunk of it.
      switch (after_skip_) {
        case AfterSkip::kOptionTooBig:
          SendOptionError(option_.option, OptionReplyType::kErrTooBig,
                          "option data too long");
          return Expect(Unit::kOptionHeader, kOptionRequestHeaderSize);
        case AfterSkip::kRequestError:
          return FinishSkippedRequest();
        case AfterSkip::kNothing:
          return;
      }
      return;
    }
  }
}

// ---- Public API -------------------------------------------------------------

ServerSession::ServerSession(ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
ServerSession::~ServerSession() = default;

ServerPhase ServerSession::phase() const { return impl_->phase(); }

Direction ServerSession::wants() const {
  const Impl& s = *impl_;
  if (s.terminal()) return Direction::kNone;
  const bool read = !s.closing_ && s.rx_.expecting() && !s.input_paused();
  const bool write = !s.out_.empty();
  if (read && write) return Direction::kBoth;
  if (read) return Direction::kRead;
  if (write) return Direction::kWrite;
  return Direction::kNone;
}

absl::Status ServerSession::dead_reason() const { return impl_->dead_reason_; }
size_t ServerSession::in_flight() const { return impl_->in_flight_.size(); }
std::optional<size_t> ServerSession::export_index() const {
  return impl_->export_;
}
bool ServerSession::structured_replies() const { return impl_->structured_; }
bool ServerSession::extended_headers() const { return impl_->extended_; }
bool ServerSession::block_status_negotiated() const {
  return impl_->meta_base_allocation_;
}
const ServerOptions& ServerSession::options() const { return impl_->opts_; }

absl::StatusOr<size_t> ServerSession::Feed(absl::Span<const uint8_t> bytes) {
  Impl& s = *impl_;
  if (absl::Status st = s.Check(ServerCall::kFeed); !st.ok()) return st;
  const size_t used = s.rx_.Feed(
      bytes, [&s] { return s.accepts_input(); }, [&s] { s.OnUnitComplete(); });
  if (s.dead_) return s.dead_reason_;
  return used;
}

void ServerSession::FeedEof() {
  Impl& s = *impl_;
  if (!s.Allowed(ServerCall::kFeedEof)) return;
  if (s.at_boundary()) {
    return s.StartClosing("the client closed its side (EOF)");
  }
  s.Fail(ErrnoStatus(ECONNRESET,
                     absl::StrFormat("client closed the connection inside a "
                                     "message (%d of %d bytes received)",
                                     s.rx_.got(), s.rx_.want())));
}

void ServerSession::FeedTransportError(absl::Status error) {
  if (!impl_->Allowed(ServerCall::kFeedTransportError)) return;
  if (error.ok()) error = ErrnoStatus(EIO, "transport error");
  impl_->Fail(std::move(error));
}

absl::Span<uint8_t> ServerSession::RecvBuffer() {
  if (!impl_->Allowed(ServerCall::kRecvBuffer)) return {};
  return impl_->RecvBuffer();
}
absl::Status ServerSession::CommitRecv(size_t n) {
  if (absl::Status s = impl_->Check(ServerCall::kCommitRecv); !s.ok()) {
    return s;
  }
  return impl_->CommitRecv(n);
}

size_t ServerSession::PeekOutput(absl::Span<IoSlice> out) const {
  return impl_->out_.Peek(out);
}
size_t ServerSession::pending_output_bytes() const {
  return impl_->out_.pending_bytes();
}

absl::Status ServerSession::ConsumeOutput(size_t n) {
  Impl& s = *impl_;
  if (absl::Status st = s.Check(ServerCall::kConsumeOutput); !st.ok()) {
    return st;
  }
  if (n > s.out_.pending_bytes()) {
    return ErrnoStatus(
        EINVAL, absl::StrFormat("ConsumeOutput(%d) with only %d bytes pending",
                                n, s.out_.pending_bytes()));
  }
  s.out_.Consume(n, [&s](internal::SegmentTag tag) {
    if (tag.kind == server_internal::kReplyEndTag &&
        s.opts_.report_reply_sent) {
      s.events_.push_back(ReplySent{tag.id});
    }
  });
  if (s.tls_ == Impl::Tls::kAckQueued && s.out_.empty() && !s.terminal() &&
      !s.closing_) {
    s.OnStartTlsAckSent();
  }
  s.MaybeClose();
  return absl::OkStatus();
}

absl::Status ServerSession::TlsHandshakeDone() {
  Impl& s = *impl_;
  if (absl::Status st = s.Check(ServerCall::kTlsHandshakeDone); !st.ok()) {
    return st;
  }
  if (s.tls_ != Impl::Tls::kHandshaking) {
    return PreconditionStatus(
        EINVAL,
        "TlsHandshakeDone: no TLS handshake is pending (the session "
        "raises ServerStartTls first)");
  }
  s.tls_ = Impl::Tls::kSecure;
  // The spec: STARTTLS voids everything negotiated before it.
  s.structured_ = false;
  s.extended_ = false;
  s.meta_base_allocation_ = false;
  s.meta_export_name_.reset();
  if (s.tracing()) {
    s.TraceLine(
        "TLS: handshake done; options negotiated before STARTTLS are "
        "void");
  }
  return absl::OkStatus();
}

void ServerSession::TlsHandshakeFailed(absl::Status why) {
  Impl& s = *impl_;
  if (!s.Allowed(ServerCall::kTlsHandshakeFailed) ||
      s.tls_ != Impl::Tls::kHandshaking) {
    return;
  }
  if (why.ok()) why = ErrnoStatus(EPROTO, "TLS handshake failed");
  s.Fail(std::move(why));
}

bool ServerSession::tls_negotiated() const {
  return impl_->tls_ == Impl::Tls::kSecure;
}

std::optional<ServerEvent> ServerSession::PollEvent() {
  if (impl_->events_.empty()) return std::nullopt;
  ServerEvent e = std::move(impl_->events_.front());
  impl_->events_.pop_front();
  return e;
}

bool ServerSession::has_events() const { return !impl_->events_.empty(); }

}  // namespace nbd
