// nbd::Client handshake: greetings, option sequencing, option replies,
// STARTTLS. The public option-mode calls are in option_mode.cc.
#include <cerrno>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "protocol/client/client.h"
#include "protocol/client/internal/impl.h"
#include "protocol/endian.h"
#include "protocol/names.h"
#include "protocol/status.h"
#include "protocol/wire.h"

namespace nbd {
namespace {

constexpr uint64_t kMaxExportSize =
    static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// libnbd-like errno for an option error reply.
int OptionErrorErrno(uint32_t type) {
  switch (static_cast<OptionReplyType>(type)) {
    case OptionReplyType::kErrUnsup:
    case OptionReplyType::kErrPlatform:
    case OptionReplyType::kErrTlsReqd:
    case OptionReplyType::kErrExtHeaderReqd:
      return ENOTSUP;
    case OptionReplyType::kErrPolicy:
      return EPERM;
    case OptionReplyType::kErrUnknown:
      return ENOENT;
    case OptionReplyType::kErrShutdown:
      return ESHUTDOWN;
    default:
      return EINVAL;
  }
}

bool IsPowerOfTwo(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

// The spec's rules for NBD_INFO_BLOCK_SIZE; invalid ones are ignored, as
// libnbd does.
bool ValidBlockSize(const InfoBlockSize& b) {
  if (!IsPowerOfTwo(b.minimum) || b.minimum > 64 * 1024) return false;
  if (!IsPowerOfTwo(b.preferred) || b.preferred < 512 ||
      b.preferred < b.minimum) {
    return false;
  }
  if (b.maximum == kBlockSizeNoLimit) return true;
  return b.maximum >= b.preferred && b.maximum % b.minimum == 0;
}

absl::Status ProtocolError(absl::string_view what) {
  return ErrnoStatus(EPROTO, what);
}

}  // namespace

// ---- Greeting --------------------------------------------------------------

void Client::Impl::OnGreeting() {
  absl::StatusOr<GreetingKind> kind = DecodeGreetingKind(rx_.scratch());
  if (!kind.ok()) {
    return Fail(ProtocolError(
        absl::StrCat("bad server greeting: ", kind.status().message())));
  }
  if (*kind == GreetingKind::kOldstyle) {
    protocol_ = ProtocolVariant::kOldstyle;
    if (opts_.tls == TlsPolicy::kRequire) {
      // A TLS-requiring client must not fall back to plaintext
      // (CVE-2019-14842).
      return Fail(
          ErrnoStatus(ENOTSUP,
                      "TLS is required but the server uses the oldstyle "
                      "protocol, which cannot do TLS"));
    }
    return Expect(Unit::kOldstyleRest, kOldstyleGreetingSize - 16);
  }
  Expect(Unit::kHandshakeFlags, 2);
}

void Client::Impl::OnOldstyleRest() {
  const uint8_t* p = rx_.scratch().data();
  uint64_t size = LoadBe64(p);
  uint16_t global_flags = LoadBe16(p + 8);
  uint16_t flags = LoadBe16(p + 10);
  if (tracing()) {
    TraceLine(absl::StrFormat(
        "<- oldstyle greeting: size=%d flags=0x%x global_flags=0x%x", size,
        flags, global_flags));
  }
  if (global_flags != 0) {
    return Fail(ProtocolError(absl::StrFormat(
        "oldstyle server sent unknown global flags 0x%x", global_flags)));
  }
  EnterTransmission(size, flags);
}

void Client::Impl::OnHandshakeFlags() {
  handshake_flags_ = LoadBe16(rx_.scratch().data());
  bool fixed = handshake_flags_ & kFlagFixedNewstyle;
  no_zeroes_ = handshake_flags_ & kFlagNoZeroes;
  protocol_ =
      fixed ? ProtocolVariant::kFixedNewstyle : ProtocolVariant::kNewstyle;
  if (tracing()) {
    TraceLine(absl::StrFormat("<- %s greeting: handshake flags 0x%x",
                              ProtocolVariantName(protocol_),
                              handshake_flags_));
  }
  if (!fixed && opts_.tls == TlsPolicy::kRequire) {
    return Fail(
        ErrnoStatus(ENOTSUP,
                    "TLS is required but the server does not support fixed "
                    "newstyle negotiation, so it cannot do STARTTLS"));
  }
  uint32_t client_flags = (fixed ? kClientFlagFixedNewstyle : 0) |
                          (no_zeroes_ ? kClientFlagNoZeroes : 0);
  if (tracing()) {
    TraceLine(absl::StrFormat("-> client flags 0x%x", client_flags));
  }
  out_.PushOwned(client_internal::SegmentKind::kClientFlags, 0,
                 EncodeClientFlags(client_flags));
  if (!fixed) {
    // Plain newstyle knows only NBD_OPT_EXPORT_NAME.
    return SendExportName();
  }
  AdvanceHandshake();
}

// ---- Option sequencing ------------------------------------------------------

// Starts the first automatic step after the one `state_` names that the
// options ask for, in libnbd's order: STARTTLS, EXTENDED_HEADERS,
// STRUCTURED_REPLY, then option mode parks; otherwise SET_META_CONTEXT and
// GO. Called when the client flags are out, when an automatic option ended
// (refused or acknowledged) and when the TLS layer is up.
void Client::Impl::AdvanceHandshake() {
  if (terminal()) return;
  if (abort_pending_) return SendAbort();
  const bool want_meta =
      opts_.request_base_allocation || !opts_.meta_contexts.empty();
  switch (state_) {
    case State::kAwaitingGreeting:
      if (opts_.tls != TlsPolicy::kDisable) {
        return SendOption(State::kStartTlsSent, Option::kStartTls, {});
      }
      [[fallthrough]];
    case State::kStartTlsSent:
    case State::kTlsPaused:
      if (opts_.request_extended_headers && opts_.request_structured_replies) {
        return SendOption(State::kExtendedHeadersSent, Option::kExtendedHeaders,
                          {});
      }
      [[fallthrough]];
    case State::kExtendedHeadersSent:
      // Extended headers imply structured replies.
      if (opts_.request_structured_replies && !structured_) {
        return SendOption(State::kStructuredReplySent, Option::kStructuredReply,
                          {});
      }
      [[fallthrough]];
    case State::kStructuredReplySent:
      if (opts_.option_mode) return Park();
      if (structured_ && want_meta) {
        return SendSetMeta(State::kSetMetaSent, {}, Option::kSetMetaContext);
      }
      [[fallthrough]];
    case State::kSetMetaSent:
      return SendGo(State::kGoSent, Option::kGo);
    default:
      // Every other state moves on by itself (option replies, Opt*() calls).
      return;
  }
}

void Client::Impl::Park() {
  state_ = State::kParked;
  events_.push_back(Negotiating{});
}

void Client::Impl::SendOption(State next, Option option,
                              absl::Span<const uint8_t> data,
                              absl::string_view detail) {
  if (tracing()) TraceLine(absl::StrCat("-> ", OptionName(option), detail));
  state_ = next;
  option_ = OptionInFlight{};
  option_->option = option;
  out_.PushOwned(client_internal::SegmentKind::kOption, 0,
                 EncodeOptionRequest(option, data));
  Expect(Unit::kOptReplyHeader, kOptionReplyHeaderSize);
}

void Client::Impl::SendGo(State next, Option option) {
  if (export_name_.size() > kMaxStringLength) {
    return Fail(ErrnoStatus(ENAMETOOLONG, "export name exceeds 4096 bytes"));
  }
  InfoRequest request;
  request.export_name = export_name_;
  if (opts_.request_block_size) {
    request.info_requests.push_back(
        static_cast<uint16_t>(InfoType::kBlockSize));
  }
  if (opts_.full_info) {
    request.info_requests.push_back(static_cast<uint16_t>(InfoType::kName));
    request.info_requests.push_back(
        static_cast<uint16_t>(InfoType::kDescription));
  }
  // What we learn now describes this export only.
  size_.reset();
  tflags_ = 0;
  block_size_ = {};
  std::string detail;
  if (tracing()) {
    std::vector<std::string> infos;
    for (uint16_t t : request.info_requests) infos.push_back(InfoTypeName(t));
    detail = absl::StrCat(" export=", QuotedForTrace(export_name_), " info=[",
                          absl::StrJoin(infos, ","), "]");
  }
  SendOption(next, option, EncodeInfoRequest(request), detail);
}

void Client::Impl::SendSetMeta(State next, std::vector<std::string> queries,
                               Option option) {
  if (next != State::kUserOptionSent) {
    if (opts_.request_base_allocation) {
      queries.push_back(kContextBaseAllocation);
    }
    for (const std::string& q : opts_.meta_contexts) queries.push_back(q);
  }
  if (option == Option::kSetMetaContext) contexts_.clear();
  MetaContextRequest request;
  request.export_name = export_name_;
  request.queries = std::move(queries);
  std::string detail;
  if (tracing()) {
    std::vector<std::string> quoted;
    for (const std::string& q : request.queries)
      quoted.push_back(QuotedForTrace(q));
    detail = absl::StrCat(" export=", QuotedForTrace(export_name_),
                          " queries=[", absl::StrJoin(quoted, ","), "]");
  }
  SendOption(next, option, EncodeMetaContextRequest(request), detail);
}

void Client::Impl::SendExportName() {
  if (export_name_.size() > kMaxStringLength) {
    return Fail(ErrnoStatus(ENAMETOOLONG, "export name exceeds 4096 bytes"));
  }
  if (tracing()) {
    TraceLine(
        absl::StrCat("-> NBD_OPT_EXPORT_NAME ", QuotedForTrace(export_name_)));
  }
  // OptGo()'s fallback still ends in its OptionCompleted.
  if (state_ != State::kUserOptionSent) state_ = State::kExportNameSent;
  option_ = OptionInFlight{};
  option_->option = Option::kExportName;
  out_.PushOwned(client_internal::SegmentKind::kOption, 0,
                 EncodeOptionRequest(
                     Option::kExportName,
                     absl::Span<const uint8_t>(
                         reinterpret_cast<const uint8_t*>(export_name_.data()),
                         export_name_.size())));
  Expect(Unit::kExportNameReply, kExportNameReplyNoZeroesSize);
}

void Client::Impl::SendAbort() {
  if (tracing()) TraceLine("-> NBD_OPT_ABORT");
  state_ = State::kAbortSent;
  abort_pending_ = false;
  option_ = OptionInFlight{};
  option_->option = Option::kAbort;
  out_.PushOwned(client_internal::SegmentKind::kAbortOption, 0,
                 EncodeOptionRequest(Option::kAbort, {}));
  Expect(Unit::kOptReplyHeader, kOptionReplyHeaderSize);
}

void Client::Impl::FinishOption(absl::Status status) {
  OptionInFlight done = std::move(*option_);
  option_.reset();
  if (user_option_in_flight()) {
    events_.push_back(OptionCompleted{done.option, status});
  }
  if (terminal()) return;
  switch (state_) {
    case State::kUserGoMetaSent:
      // OptGo()'s SET_META_CONTEXT is done, whatever the answer: now GO.
      return SendGo(State::kUserOptionSent, Option::kGo);
    case State::kUserOptionSent:
      if (abort_pending_) return SendAbort();
      state_ = State::kParked;
      return;
    default:
      return AdvanceHandshake();
  }
}

std::optional<Option> Client::Impl::PendingUserOption() const {
  if (!option_.has_value()) return std::nullopt;
  if (state_ == State::kUserOptionSent) return option_->option;
  if (state_ == State::kUserGoMetaSent) return Option::kGo;
  return std::nullopt;
}

void Client::Impl::ResetNegotiatedState() {
  // After STARTTLS everything negotiated in plaintext is void.
  structured_ = false;
  extended_ = false;
  contexts_.clear();
  size_.reset();
  tflags_ = 0;
  block_size_ = {};
  meta_requested_ = false;
}

// ---- Option replies ---------------------------------------------------------

void Client::Impl::OnOptReplyHeader() {
  absl::StatusOr<OptionReplyHeader> header =
      DecodeOptionReplyHeader(rx_.scratch());
  if (!header.ok()) {
    return Fail(ProtocolError(
        absl::StrCat("bad option reply: ", header.status().message())));
  }
  opt_reply_ = *header;
  Option expected = option_->option;
  if (tracing()) {
    TraceLine(absl::StrFormat(
        "<- %s to %s, %d bytes", OptionReplyName(header->type),
        OptionName(static_cast<Option>(header->option)), header->length));
  }
  if (header->option != static_cast<uint32_t>(expected)) {
    return Fail(ProtocolError(
        absl::StrFormat("option reply for option %d while waiting for %s",
                        header->option, OptionName(expected))));
  }
  if (header->length > opts_.max_option_reply_length) {
    return Fail(ProtocolError(absl::StrFormat(
        "option reply of %d bytes to %s exceeds the %d-byte limit",
        header->length, OptionName(expected), opts_.max_option_reply_length)));
  }
  Expect(Unit::kOptReplyPayload, header->length);
}

absl::Status Client::Impl::HandleInfo(absl::Span<const uint8_t> payload) {
  absl::StatusOr<uint16_t> type = DecodeInfoType(payload);
  if (!type.ok()) return type.status();
  switch (static_cast<InfoType>(*type)) {
    case InfoType::kExport: {
      absl::StatusOr<InfoExport> info = DecodeInfoExport(payload);
      if (!info.ok()) return info.status();
      option_->saw_export = true;
      if (info->export_size > kMaxExportSize) {
        option_->error = ErrnoStatus(
            EOVERFLOW, absl::StrFormat("export size %d exceeds INT64_MAX",
                                       info->export_size));
        return absl::OkStatus();
      }
      if ((info->transmission_flags & kTransmitHasFlags) == 0) {
        option_->error = ErrnoStatus(EINVAL,
                                     "server sent transmission flags without "
                                     "NBD_FLAG_HAS_FLAGS");
        return absl::OkStatus();
      }
      size_ = info->export_size;
      tflags_ = info->transmission_flags;
      if (tracing()) {
        TraceLine(absl::StrFormat("   NBD_INFO_EXPORT size=%d flags=0x%x",
                                  info->export_size, info->transmission_flags));
      }
      return absl::OkStatus();
    }
    case InfoType::kName: {
      absl::StatusOr<InfoName> info = DecodeInfoName(payload);
      if (!info.ok()) return info.status();
      canonical_name_ = info->name;
      if (tracing())
        TraceLine("   NBD_INFO_NAME " + QuotedForTrace(info->name));
      return absl::OkStatus();
    }
    case InfoType::kDescription: {
      absl::StatusOr<InfoDescription> info = DecodeInfoDescription(payload);
      if (!info.ok()) return info.status();
      description_ = info->description;
      if (tracing()) {
        TraceLine("   NBD_INFO_DESCRIPTION " +
                  QuotedForTrace(info->description));
      }
      return absl::OkStatus();
    }
    case InfoType::kBlockSize: {
      absl::StatusOr<InfoBlockSize> info = DecodeInfoBlockSize(payload);
      if (!info.ok()) return info.status();
      const bool valid = ValidBlockSize(*info);
      if (valid) {
        block_size_ = {info->minimum, info->preferred, info->maximum};
      }
      if (tracing()) {
        TraceLine(absl::StrFormat(
            "   NBD_INFO_BLOCK_SIZE minimum=%d preferred=%d maximum=%d%s",
            info->minimum, info->preferred, info->maximum,
            valid ? "" : " (invalid, ignored)"));
      }
      return absl::OkStatus();
    }
  }
  if (tracing()) {
    TraceLine(absl::StrFormat("   unknown info type %d, ignored", *type));
  }
  return absl::OkStatus();  // Unknown info types MUST be ignored.
}

void Client::Impl::OnOptReply() {
  const uint32_t type = opt_reply_.type;
  const Option option = option_->option;
  absl::Span<const uint8_t> payload(rx_.scratch().data(), rx_.scratch().size());
  auto expect_next = [this] {
    Expect(Unit::kOptReplyHeader, kOptionReplyHeaderSize);
  };

  if (option == Option::kAbort) {
    // Whatever the server says to ABORT, the session is over.
    if (!fail_after_abort_.ok()) return Fail(fail_after_abort_);
    return Close();
  }

  if (IsOptionReplyError(type)) {
    std::string message(payload.begin(), payload.end());
    if (message.size() > kMaxStringLength) message.resize(kMaxStringLength);
    if (tracing() && !message.empty()) {
      TraceLine("   message " + QuotedForTrace(message));
    }
    absl::Status error =
        ErrnoStatus(OptionErrorErrno(type),
                    absl::StrCat(OptionName(option), ": server replied ",
                                 OptionReplyName(type),
                                 message.empty() ? "" : ": ", message));
    if (static_cast<OptionReplyType>(type) == OptionReplyType::kErrShutdown) {
      // The spec requires a soft disconnect.
      if (std::optional<Option> user = PendingUserOption()) {
        events_.push_back(OptionCompleted{*user, error});
      }
      option_.reset();
      fail_after_abort_ = error;
      return SendAbort();
    }
    switch (option) {
      case Option::kStartTls:
        if (opts_.tls == TlsPolicy::kRequire) {
          option_.reset();
          fail_after_abort_ = ErrnoStatus(
              ENOTSUP, absl::StrCat("TLS is required but the server refused "
                                    "STARTTLS: ",
                                    error.message()));
          return SendAbort();
        }
        return FinishOption(error);
      case Option::kSetMetaContext:
        contexts_.clear();  // a failed SET still replaces the selection
        return FinishOption(error);
      case Option::kGo:
        if (static_cast<OptionReplyType>(type) == OptionReplyType::kErrUnsup) {
          if (extended_) {
            return Fail(ProtocolError(
                "server does not support NBD_OPT_GO after extended headers "
                "were negotiated, and NBD_OPT_EXPORT_NAME is not allowed "
                "then"));
          }
          option_.reset();
          return SendExportName();
        }
        if (user_option_in_flight()) return FinishOption(error);
        option_.reset();
        fail_after_abort_ = error;
        return SendAbort();
      default:
        return FinishOption(error);
    }
  }

  switch (static_cast<OptionReplyType>(type)) {
    case OptionReplyType::kAck:
      break;
    case OptionReplyType::kServer: {
      if (option != Option::kList) break;
      absl::StatusOr<ServerReply> reply = DecodeServerReply(payload);
      if (!reply.ok()) {
        return Fail(ProtocolError(
            absl::StrCat("bad NBD_REP_SERVER: ", reply.status().message())));
      }
      if (tracing()) {
        TraceLine(absl::StrCat("   export ", QuotedForTrace(reply->name), " ",
                               QuotedForTrace(reply->description)));
      }
      events_.push_back(ExportListed{reply->name, reply->description});
      return expect_next();
    }
    case OptionReplyType::kMetaContext: {
      if (option != Option::kListMetaContext &&
          option != Option::kSetMetaContext) {
        break;
      }
      absl::StatusOr<MetaContextReply> reply = DecodeMetaContextReply(payload);
      if (!reply.ok()) {
        return Fail(ProtocolError(absl::StrCat("bad NBD_REP_META_CONTEXT: ",
                                               reply.status().message())));
      }
      if (tracing()) {
        TraceLine(absl::StrFormat("   context id=%d %s", reply->context_id,
                                  QuotedForTrace(reply->name)));
      }
      if (option == Option::kSetMetaContext) {
        option_->contexts.push_back({reply->context_id, reply->name});
      }
      if (user_option_in_flight()) {
        events_.push_back(MetaContextListed{reply->context_id, reply->name});
      }
      return expect_next();
    }
    case OptionReplyType::kInfo: {
      if (option != Option::kInfo && option != Option::kGo) break;
      absl::Status s = HandleInfo(payload);
      if (!s.ok()) {
        return Fail(
            ProtocolError(absl::StrCat("bad NBD_REP_INFO: ", s.message())));
      }
      return expect_next();
    }
    default:
      break;
  }

  if (static_cast<OptionReplyType>(type) != OptionReplyType::kAck) {
    return Fail(ProtocolError(absl::StrFormat(
        "unexpected option reply type %d to %s", type, OptionName(option))));
  }
  if (!payload.empty()) {
    return Fail(ProtocolError(
        absl::StrFormat("NBD_REP_ACK to %s carries %d bytes of payload",
                        OptionName(option), payload.size())));
  }

  switch (option) {
    case Option::kStartTls:
      if (tls_negotiated_) {
        return Fail(ProtocolError("second STARTTLS acknowledged"));
      }
      option_.reset();
      tls_negotiated_ = true;
      ResetNegotiatedState();
      state_ = State::kTlsPaused;
      if (tracing())
        TraceLine("STARTTLS acknowledged: the TLS layer starts now");
      events_.push_back(StartTls{});
      return;
    case Option::kExtendedHeaders:
      extended_ = true;
      structured_ = true;
      return FinishOption(absl::OkStatus());
    case Option::kStructuredReply:
      structured_ = true;
      return FinishOption(absl::OkStatus());
    case Option::kSetMetaContext:
      contexts_ = option_->contexts;
      return FinishOption(absl::OkStatus());
    case Option::kInfo: {
      absl::Status status = option_->error;
      if (status.ok() && !option_->saw_export) {
        status = ProtocolError("server sent no NBD_INFO_EXPORT before ACK");
      }
      return FinishOption(status);
    }
    case Option::kGo: {
      if (!option_->error.ok()) return Fail(option_->error);
      if (!option_->saw_export) {
        return Fail(
            ProtocolError("server sent no NBD_INFO_EXPORT before NBD_REP_ACK "
                          "to NBD_OPT_GO"));
      }
      block_size_committed_ =
          opts_.request_block_size && block_size_.minimum != 0;
      return EnterTransmission(*size_, tflags_);
    }
    default:
      return FinishOption(absl::OkStatus());
  }
}

void Client::Impl::OnExportNameReply() {
  absl::StatusOr<ExportNameReply> reply = DecodeExportNameReply(rx_.scratch());
  if (!reply.ok()) return Fail(ProtocolError(reply.status().message()));
  if (tracing()) {
    TraceLine(absl::StrFormat("<- export-name reply: size=%d flags=0x%x",
                              reply->export_size, reply->transmission_flags));
  }
  size_ = reply->export_size;
  tflags_ = reply->transmission_flags;
  if (!no_zeroes_) return Expect(Unit::kExportNamePadding, 124);
  EnterTransmission(*size_, tflags_);
}

void Client::Impl::EnterTransmission(uint64_t size, uint16_t flags) {
  if (size > kMaxExportSize) {
    return Fail(ErrnoStatus(
        EOVERFLOW, absl::StrFormat(
                       "export size %d exceeds INT64_MAX; refusing it", size)));
  }
  if ((flags & kTransmitHasFlags) == 0) {
    return Fail(ProtocolError(
        "server sent transmission flags without NBD_FLAG_HAS_FLAGS"));
  }
  if (!structured_) flags &= ~kTransmitSendDf;
  if ((flags & kTransmitSendWriteZeroes) == 0) {
    flags &= ~kTransmitSendFastZero;
  }
  size_ = size;
  tflags_ = flags;
  if (tracing()) {
    TraceLine(absl::StrFormat(
        "transmission: size=%d flags=0x%x, %s, %d meta context(s)", size, flags,
        extended_     ? "extended headers"
        : structured_ ? "structured replies"
                      : "simple replies",
        contexts_.size()));
  }
  if (option_.has_value()) {
    if (user_option_in_flight()) {
      events_.push_back(OptionCompleted{Option::kGo, absl::OkStatus()});
    }
    option_.reset();
  }
  state_ = State::kTransmission;
  events_.push_back(Connected{});
  ExpectReplyHeader();
  if (abort_pending_) {
    // Shutdown() came during the handshake: leave at once, politely.
    abort_pending_ = false;
    DisconnectWhenDrained();
    MaybeSendDisc();
  }
}

}  // namespace nbd
