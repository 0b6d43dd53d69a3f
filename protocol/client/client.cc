// nbd::Client: public wrappers, queries, input plumbing and lifecycle.
#include "protocol/client/client.h"

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "protocol/client/internal/impl.h"
#include "protocol/status.h"

namespace nbd {

const char* ClientPhaseName(ClientPhase phase) {
  switch (phase) {
    case ClientPhase::kConnecting:
      return "connecting";
    case ClientPhase::kNegotiating:
      return "negotiating";
    case ClientPhase::kReady:
      return "ready";
    case ClientPhase::kProcessing:
      return "processing";
    case ClientPhase::kClosed:
      return "closed";
    case ClientPhase::kDead:
      return "dead";
  }
  return "unknown";
}

const char* ProtocolVariantName(ProtocolVariant variant) {
  switch (variant) {
    case ProtocolVariant::kUnknown:
      return "unknown";
    case ProtocolVariant::kOldstyle:
      return "oldstyle";
    case ProtocolVariant::kNewstyle:
      return "newstyle";
    case ProtocolVariant::kFixedNewstyle:
      return "newstyle-fixed";
  }
  return "unknown";
}

Client::Impl::Impl(ClientOptions options) : opts_(std::move(options)) {
  opts_.max_payload =
      std::clamp<uint32_t>(opts_.max_payload, 1, kHardMaxPayload);
  export_name_ = opts_.export_name;
  rx_.set_readahead(opts_.recv_readahead);
  rx_.set_probe(true);
  Expect(Unit::kGreeting, 16);
}

// ---- State, phase, permissions ---------------------------------------------

const char* Client::Impl::StateName(State state) {
  switch (state) {
    case State::kAwaitingGreeting:
      return "awaiting greeting";
    case State::kStartTlsSent:
      return "STARTTLS sent";
    case State::kTlsPaused:
      return "TLS paused";
    case State::kExtendedHeadersSent:
      return "EXTENDED_HEADERS sent";
    case State::kStructuredReplySent:
      return "STRUCTURED_REPLY sent";
    case State::kSetMetaSent:
      return "SET_META_CONTEXT sent";
    case State::kGoSent:
      return "GO sent";
    case State::kExportNameSent:
      return "EXPORT_NAME sent";
    case State::kParked:
      return "parked";
    case State::kUserOptionSent:
      return "user option sent";
    case State::kUserGoMetaSent:
      return "OptGo SET_META_CONTEXT sent";
    case State::kAbortSent:
      return "ABORT sent";
    case State::kTransmission:
      return "transmission";
    case State::kDisconnectLater:
      return "DISC when drained";
    case State::kDisconnectQueued:
      return "DISC queued";
    case State::kClosed:
      return "closed";
    case State::kDead:
      return "dead";
  }
  return "unknown";
}

ClientPhase Client::Impl::phase() const {
  switch (state_) {
    case State::kAwaitingGreeting:
    case State::kStartTlsSent:
    case State::kTlsPaused:
    case State::kExtendedHeadersSent:
    case State::kStructuredReplySent:
    case State::kSetMetaSent:
    case State::kGoSent:
    case State::kExportNameSent:
    case State::kUserOptionSent:
    case State::kUserGoMetaSent:
    case State::kAbortSent:
      return ClientPhase::kConnecting;
    case State::kParked:
      return ClientPhase::kNegotiating;
    case State::kTransmission:
    case State::kDisconnectLater:
    case State::kDisconnectQueued:
      return commands_.empty() && out_.empty() ? ClientPhase::kReady
                                               : ClientPhase::kProcessing;
    case State::kClosed:
      return ClientPhase::kClosed;
    case State::kDead:
      return ClientPhase::kDead;
  }
  return ClientPhase::kDead;
}

ClientCallState Client::Impl::call_state() const {
  switch (state_) {
    case State::kAwaitingGreeting:
    case State::kStartTlsSent:
    case State::kExtendedHeadersSent:
    case State::kStructuredReplySent:
    case State::kSetMetaSent:
    case State::kGoSent:
    case State::kExportNameSent:
    case State::kAbortSent:
      return ClientCallState::kHandshake;
    case State::kTlsPaused:
      return ClientCallState::kTlsPaused;
    case State::kParked:
      return ClientCallState::kNegotiating;
    case State::kUserOptionSent:
    case State::kUserGoMetaSent:
      return ClientCallState::kOptionInFlight;
    case State::kTransmission:
      return ClientCallState::kTransmission;
    case State::kDisconnectLater:
    case State::kDisconnectQueued:
      return ClientCallState::kDisconnecting;
    case State::kClosed:
      return ClientCallState::kClosed;
    case State::kDead:
      return ClientCallState::kDead;
  }
  return ClientCallState::kDead;
}

absl::Status Client::Impl::Check(ClientCall call) const {
  const ClientCallState state = call_state();
  if (ClientCallAllowed(call, state)) return absl::OkStatus();
  std::string why;
  if (state == ClientCallState::kDead) {
    why = absl::StrCat(": ", dead_reason_.message());
  } else if (call >= ClientCall::kSetExportName &&
             call <= ClientCall::kOptSetMetaContext && !opts_.option_mode) {
    why = " (option calls need ClientOptions::option_mode)";
  }
  return PreconditionStatus(
      EINVAL, absl::StrCat(ClientCallName(call), ": not allowed when ",
                           ClientCallStateName(state), why));
}

size_t Client::Impl::in_flight() const {
  if (terminal()) return 0;
  return commands_.size() + (state_ == State::kDisconnectQueued ? 1 : 0);
}

// ---- Input plumbing ---------------------------------------------------------

void Client::Impl::Expect(Unit unit, size_t n) {
  if (rx_.Expect(unit, n)) OnUnitComplete();
}

void Client::Impl::ExpectInto(Unit unit, uint8_t* dst, size_t n) {
  if (rx_.ExpectInto(unit, dst, n)) OnUnitComplete();
}

bool Client::Impl::input_blocked() const {
  return terminal() || state_ == State::kTlsPaused;
}

void Client::Impl::OnUnitComplete() {
  Unit unit = rx_.unit();
  rx_.Clear();  // the handler arms the next unit; scratch() stays readable
  switch (unit) {
    case Unit::kNone:
      return;
    case Unit::kGreeting:
      return OnGreeting();
    case Unit::kOldstyleRest:
      return OnOldstyleRest();
    case Unit::kHandshakeFlags:
      return OnHandshakeFlags();
    case Unit::kOptReplyHeader:
      return OnOptReplyHeader();
    case Unit::kOptReplyPayload:
      return OnOptReply();
    case Unit::kExportNameReply:
      return OnExportNameReply();
    case Unit::kExportNamePadding:
      return EnterTransmission(*size_, tflags_);
    case Unit::kReplyHeader:
      return OnReplyHeader();
    case Unit::kStructuredLength:
      return OnStructuredLength();
    case Unit::kSimpleReadPayload:
      return OnSimpleReadPayload();
    case Unit::kChunkPayload:
      return OnChunkPayload();
    case Unit::kDataOffset:
      return OnDataOffset();
    case Unit::kDataPayload:
      return OnDataPayload();
  }
}

absl::StatusOr<size_t> Client::Impl::Feed(absl::Span<const uint8_t> bytes) {
  rx_.ForgetBuffer();
  if (terminal()) {
    return PreconditionStatus(
        EINVAL,
        absl::StrCat("cannot feed input: the connection is ",
                     ClientPhaseName(phase()),
                     dead() ? absl::StrCat(": ", dead_reason_.message()) : ""));
  }
  const size_t used = rx_.Feed(
      bytes, [this] { return !input_blocked(); }, [this] { OnUnitComplete(); });
  if (used < bytes.size() && !input_blocked() && !rx_.expecting()) {
    Fail(ErrnoStatus(EPROTO, "server sent data when none was expected"));
  }
  if (dead()) return dead_reason_;
  return used;
}

absl::Span<uint8_t> Client::Impl::RecvBuffer() {
  if (input_blocked()) {
    rx_.ForgetBuffer();
    return {};
  }
  // With nothing expected (parked in option mode) wants() still says read,
  // so that the transport notices EOF or stray bytes: the receiver hands out
  // its probe byte, which no later call moves (an asynchronous receive may
  // still be in the kernel when an Opt*() call sets up the next unit).
  // Read-ahead only where no TLS boundary can follow: waiting for a reply
  // header in the transmission phase.
  return rx_.Buffer(/*readahead_ok=*/rx_.unit() == Unit::kReplyHeader);
}

absl::Status Client::Impl::CommitRecv(size_t n) {
  if (input_blocked()) {
    rx_.ForgetBuffer();
    if (n == 0) return absl::OkStatus();
    return ErrnoStatus(EINVAL, "CommitRecv without a receive buffer");
  }
  switch (rx_.Commit(n)) {
    case internal::Committed::kBeyondBuffer:
      return ErrnoStatus(EINVAL, "CommitRecv beyond the receive buffer");
    case internal::Committed::kNoBuffer:
      return ErrnoStatus(EINVAL, "CommitRecv without a receive buffer");
    case internal::Committed::kStaged: {
      // The probe or read-ahead bytes go through the copying path: whatever
      // is expected now (perhaps the reply to an option issued meanwhile)
      // gets them.
      absl::StatusOr<size_t> used = Feed(rx_.staged());
      if (!used.ok()) return used.status();
      return absl::OkStatus();
    }
    case internal::Committed::kUnitComplete:
      OnUnitComplete();
      break;
    case internal::Committed::kProgress:
      break;
  }
  if (dead()) return dead_reason_;
  return absl::OkStatus();
}

void Client::Impl::FeedEof() {
  rx_.ForgetBuffer();
  if (terminal()) return;
  if (state_ == State::kAbortSent) {
    // After NBD_OPT_ABORT the server may close without replying.
    if (!fail_after_abort_.ok()) return Fail(fail_after_abort_);
    return Close();
  }
  if (!in_transmission()) {
    return Fail(ErrnoStatus(ECONNRESET,
                            "server closed the connection during the "
                            "handshake"));
  }
  bool inside_reply =
      std::any_of(commands_.begin(), commands_.end(),
                  [](const auto& entry) { return entry.second.reply_started; });
  if (inside_reply) {
    return Fail(ErrnoStatus(ECONNRESET,
                            "server disconnected before the last chunk "
                            "(NBD_REPLY_FLAG_DONE) of a reply"));
  }
  if (rx_.unit() == Unit::kReplyHeader && rx_.got() == 0) return Close();
  Fail(ErrnoStatus(ECONNRESET, "server disconnected in the middle of a reply"));
}

// ---- Lifecycle --------------------------------------------------------------

void Client::Impl::FailAllCommands(const absl::Status& why) {
  std::map<Cookie, PendingCommand> pending;
  pending.swap(commands_);
  for (auto& [cookie, cmd] : pending) {
    events_.push_back(CommandCompleted{cookie, cmd.type, why, cmd.tag});
  }
  if (std::optional<Option> user = PendingUserOption()) {
    events_.push_back(OptionCompleted{*user, why});
  }
  option_.reset();
  out_.Clear();
  rx_.Clear();
}

void Client::Impl::TraceLine(std::string line) {
  events_.push_back(ClientTrace{std::move(line)});
}

void Client::Impl::Fail(absl::Status reason) {
  if (terminal()) return;
  if (reason.ok()) reason = ErrnoStatus(EIO, "connection failed");
  if (tracing()) TraceLine(absl::StrCat("dead: ", reason.message()));
  FailAllCommands(ErrnoStatus(
      ENOTCONN, absl::StrCat("connection is dead: ", reason.message())));
  state_ = State::kDead;
  dead_reason_ = reason;
  events_.push_back(ClientDead{reason});
}

void Client::Impl::Close() {
  if (terminal()) return;
  if (tracing()) TraceLine("closed: the server ended the connection cleanly");
  FailAllCommands(ErrnoStatus(ENOTCONN, "connection closed by the server"));
  state_ = State::kClosed;
  events_.push_back(ClientClosed{});
}

void Client::Impl::OnSegmentSent(client_internal::SegmentKind kind,
                                 Cookie cookie) {
  switch (kind) {
    case client_internal::SegmentKind::kDiscHeader:
      if (tracing()) TraceLine("NBD_CMD_DISC sent: shut down the write side");
      events_.push_back(ShutdownWrite{});
      return;
    case client_internal::SegmentKind::kAbortOption:
      events_.push_back(ShutdownWrite{});
      return;
    case client_internal::SegmentKind::kWritePayload: {
      auto it = commands_.find(cookie);
      if (it == commands_.end()) return;
      it->second.payload_pending = false;
      // The reply came first; now the buffer is free to hand back.
      if (it->second.reply_status.has_value()) {
        CompleteCommand(cookie, *it->second.reply_status);
      }
      return;
    }
    default:
      return;
  }
}

void Client::Impl::OnOutputConsumed() {
  // A segment that finished NBD_OPT_ABORT after a fatal refusal ends here.
  if (state_ == State::kAbortSent && out_.empty() && !fail_after_abort_.ok()) {
    Fail(fail_after_abort_);
  }
}

absl::Status Client::Impl::Disconnect(uint32_t flags) {
  if (absl::Status s = Check(ClientCall::kDisconnect); !s.ok()) return s;
  if (flags != 0) {
    return ErrnoStatus(
        EINVAL, absl::StrFormat("Disconnect: unknown flags 0x%x", flags));
  }
  QueueDisc();
  return absl::OkStatus();
}

absl::Status Client::Impl::Shutdown(uint32_t flags) {
  if (absl::Status s = Check(ClientCall::kShutdown); !s.ok()) return s;
  if ((flags & ~kShutdownAbandonPending) != 0) {
    return ErrnoStatus(EINVAL,
                       absl::StrFormat("Shutdown: unknown flags 0x%x", flags));
  }
  switch (state_) {
    case State::kParked:
      SendAbort();
      return absl::OkStatus();
    case State::kTransmission:
    case State::kDisconnectLater:
    case State::kDisconnectQueued:
      if (flags & kShutdownAbandonPending) AbandonUnsent();
      DisconnectWhenDrained();
      MaybeSendDisc();
      return absl::OkStatus();
    case State::kAbortSent:
      return absl::OkStatus();
    default:
      // A handshake step (or the TLS pause) is under way: abort at its end.
      abort_pending_ = true;
      return absl::OkStatus();
  }
}

// ---- Entry points of the public calls ---------------------------------------
// Each checks the permission table (permissions.cc) first; refused void
// calls do nothing.

Direction Client::Impl::wants() const {
  if (input_blocked()) return Direction::kNone;
  return out_.pending_bytes() > 0 ? Direction::kBoth : Direction::kRead;
}

uint32_t Client::Impl::max_payload() const {
  uint32_t limit = opts_.max_payload;
  if (block_size_committed_ && block_size_.maximum != 0) {
    limit = std::min(limit, block_size_.maximum);
  }
  return limit;
}

std::optional<uint32_t> Client::Impl::meta_context_id(
    std::string_view name) const {
  for (const MetaContext& c : contexts_) {
    if (c.name == name) return c.id;
  }
  return std::nullopt;
}

absl::StatusOr<size_t> Client::Impl::ApiFeed(absl::Span<const uint8_t> bytes) {
  if (absl::Status s = Check(ClientCall::kFeed); !s.ok()) return s;
  return Feed(bytes);
}

void Client::Impl::ApiFeedEof() {
  if (Allowed(ClientCall::kFeedEof)) FeedEof();
}

void Client::Impl::ApiFeedTransportError(absl::Status error) {
  if (!Allowed(ClientCall::kFeedTransportError)) return;
  Fail(error.ok() ? ErrnoStatus(EIO, "transport error") : std::move(error));
}

absl::Span<uint8_t> Client::Impl::ApiRecvBuffer() {
  if (!Allowed(ClientCall::kRecvBuffer)) return {};
  return RecvBuffer();
}

absl::Status Client::Impl::ApiCommitRecv(size_t n) {
  if (absl::Status s = Check(ClientCall::kCommitRecv); !s.ok()) return s;
  return CommitRecv(n);
}

absl::Status Client::Impl::ConsumeOutput(size_t n) {
  if (absl::Status s = Check(ClientCall::kConsumeOutput); !s.ok()) return s;
  if (n > out_.pending_bytes()) {
    return ErrnoStatus(
        EINVAL,
        absl::StrFormat("ConsumeOutput(%d) exceeds the %d bytes pending", n,
                        out_.pending_bytes()));
  }
  out_.Consume(n, [this](client_internal::SegmentKind kind, Cookie cookie) {
    OnSegmentSent(kind, cookie);
  });
  OnOutputConsumed();
  return absl::OkStatus();
}

absl::Status Client::Impl::PinOutput(size_t n) {
  if (absl::Status s = Check(ClientCall::kPinOutput); !s.ok()) return s;
  if (n > out_.pending_bytes()) {
    return ErrnoStatus(
        EINVAL, absl::StrFormat("PinOutput(%d) exceeds the %d bytes pending", n,
                                out_.pending_bytes()));
  }
  out_.Pin(n);
  return absl::OkStatus();
}

std::optional<ClientEvent> Client::Impl::PollEvent() {
  if (events_.empty()) return std::nullopt;
  ClientEvent e = std::move(events_.front());
  events_.pop_front();
  return e;
}

// ---- Public wrappers --------------------------------------------------------

Client::Client(ClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() = default;

ClientPhase Client::phase() const { return impl_->phase(); }

Direction Client::wants() const { return impl_->wants(); }

ClientCallState Client::call_state() const { return impl_->call_state(); }
size_t Client::in_flight() const { return impl_->in_flight(); }
absl::Status Client::dead_reason() const { return impl_->dead_reason_; }
ProtocolVariant Client::protocol() const { return impl_->protocol_; }
std::optional<uint64_t> Client::export_size() const { return impl_->size_; }
uint16_t Client::transmission_flags() const { return impl_->tflags_; }
bool Client::is_read_only() const { return impl_->tflags_ & kTransmitReadOnly; }
bool Client::can_flush() const { return impl_->tflags_ & kTransmitSendFlush; }
bool Client::can_fua() const { return impl_->tflags_ & kTransmitSendFua; }
bool Client::can_trim() const { return impl_->tflags_ & kTransmitSendTrim; }
bool Client::can_zero() const {
  return impl_->tflags_ & kTransmitSendWriteZeroes;
}
bool Client::can_fast_zero() const {
  return impl_->tflags_ & kTransmitSendFastZero;
}
bool Client::can_df() const { return impl_->tflags_ & kTransmitSendDf; }
bool Client::can_multi_conn() const {
  return impl_->tflags_ & kTransmitCanMultiConn;
}
bool Client::can_cache() const { return impl_->tflags_ & kTransmitSendCache; }
bool Client::is_rotational() const {
  return impl_->tflags_ & kTransmitRotational;
}
bool Client::can_block_status() const {
  return impl_->structured_ && !impl_->contexts_.empty();
}
BlockSizeConstraints Client::block_size() const { return impl_->block_size_; }
uint32_t Client::max_payload() const { return impl_->max_payload(); }
bool Client::structured_replies() const { return impl_->structured_; }
bool Client::extended_headers() const { return impl_->extended_; }
bool Client::tls_negotiated() const { return impl_->tls_negotiated_; }
const std::vector<MetaContext>& Client::meta_contexts() const {
  return impl_->contexts_;
}
std::optional<uint32_t> Client::meta_context_id(std::string_view name) const {
  return impl_->meta_context_id(name);
}
const std::string& Client::export_name() const { return impl_->export_name_; }
const std::string& Client::canonical_name() const {
  return impl_->canonical_name_;
}
const std::string& Client::description() const { return impl_->description_; }

// The permission checks are in the Impl entry points above.

absl::StatusOr<size_t> Client::Feed(absl::Span<const uint8_t> bytes) {
  return impl_->ApiFeed(bytes);
}
void Client::FeedEof() { impl_->ApiFeedEof(); }
void Client::FeedTransportError(absl::Status error) {
  impl_->ApiFeedTransportError(std::move(error));
}
absl::Span<uint8_t> Client::RecvBuffer() { return impl_->ApiRecvBuffer(); }
absl::Status Client::CommitRecv(size_t n) { return impl_->ApiCommitRecv(n); }

size_t Client::PeekOutput(absl::Span<IoSlice> out) const {
  return impl_->out_.Peek(out);
}
size_t Client::pending_output_bytes() const {
  return impl_->out_.pending_bytes();
}
absl::Status Client::ConsumeOutput(size_t n) { return impl_->ConsumeOutput(n); }
absl::Status Client::PinOutput(size_t n) { return impl_->PinOutput(n); }

std::optional<ClientEvent> Client::PollEvent() { return impl_->PollEvent(); }
bool Client::has_events() const { return !impl_->events_.empty(); }

absl::Status Client::Disconnect(uint32_t flags) {
  return impl_->Disconnect(flags);
}
absl::Status Client::Shutdown(uint32_t flags) { return impl_->Shutdown(flags); }

}  // namespace nbd
