// nbd::ServerSession handshake: client flags and option haggling.
//
// Every option is answered by the session itself. Bounds: option data is
// read into memory only up to ServerOptions::max_option_length (longer data
// is skipped and refused with NBD_REP_ERR_TOO_BIG), strings are limited to
// 4096 bytes by the wire decoders, and the number of options per connection
// is limited by ServerOptions::max_options.
#include <cerrno>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "protocol/names.h"
#include "protocol/server/internal/impl.h"
#include "protocol/status.h"
#include "protocol/wire.h"

namespace nbd {
namespace {

absl::Status ProtocolError(absl::string_view what) {
  return ErrnoStatus(EPROTO, what);
}

absl::Span<const uint8_t> AsBytes(absl::string_view s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()),
                                   s.size());
}

}  // namespace

void ServerSession::Impl::OnClientFlags() {
  absl::StatusOr<uint32_t> flags = DecodeClientFlags(rx_.scratch());
  if (!flags.ok()) {
    // The spec: a server MUST drop a client that sets unknown flags.
    return Fail(ProtocolError(flags.status().message()));
  }
  client_fixed_ = (*flags & kClientFlagFixedNewstyle) != 0;
  client_no_zeroes_ = (*flags & kClientFlagNoZeroes) != 0;
  if (tracing()) TraceLine(absl::StrFormat("<- client flags 0x%x", *flags));
  if (opts_.tls == ServerTlsMode::kRequire && !client_fixed_) {
    // The spec allows TLS only after fixed newstyle both ways, and a
    // non-fixed client can only enter transmission with EXPORT_NAME, which
    // TLS-required refuses by disconnecting: nothing could succeed.
    return Fail(ErrnoStatus(
        EACCES,
        "TLS is required, but the client did not set "
        "NBD_FLAG_C_FIXED_NEWSTYLE, without which it cannot start TLS"));
  }
  Expect(Unit::kOptionHeader, kOptionRequestHeaderSize);
}

void ServerSession::Impl::OnOptionHeader() {
  absl::StatusOr<OptionRequestHeader> header =
      DecodeOptionRequestHeader(rx_.scratch());
  if (!header.ok()) return Fail(ProtocolError(header.status().message()));
  if (++options_seen_ > opts_.max_options) {
    return Fail(ProtocolError(absl::StrFormat(
        "client sent more than %d options", opts_.max_options)));
  }
  option_ = *header;
  if (header->option == static_cast<uint32_t>(Option::kExportName) &&
      header->length > kMaxStringLength) {
    return Fail(ProtocolError(absl::StrFormat(
        "NBD_OPT_EXPORT_NAME with a %d-byte name", header->length)));
  }
  if (header->length > opts_.max_option_length) {
    if (tracing()) {
      TraceLine(
          absl::StrFormat("<- %s, %d bytes (over the %d-byte limit: skipped)",
                          server_internal::OptionLabel(header->option),
                          header->length, opts_.max_option_length));
    }
    return ExpectSkip(header->length, AfterSkip::kOptionTooBig);
  }
  Expect(Unit::kOptionData, header->length);
}

void ServerSession::Impl::OnOptionData() {
  // Handlers may Expect() the next unit, which reuses the scratch buffer.
  std::vector<uint8_t> data = rx_.TakeScratch();
  HandleOption(option_.option, data);
  if (!terminal() && !closing_ && !export_.has_value()) {
    Expect(Unit::kOptionHeader, kOptionRequestHeaderSize);
  }
}

void ServerSession::Impl::SendOptionReply(uint32_t option, OptionReplyType type,
                                          absl::Span<const uint8_t> payload) {
  if (tracing()) TraceOptionReply(option, type, payload.size());
  out_.PushCopy(
      EncodeOptionReplyHeader({option, static_cast<uint32_t>(type),
                               static_cast<uint32_t>(payload.size())}));
  out_.PushCopy(payload);
}

void ServerSession::Impl::SendOptionError(uint32_t option, OptionReplyType type,
                                          absl::string_view message) {
  if (message.size() > kMaxStringLength)
    message = message.substr(0, kMaxStringLength);
  SendOptionReply(option, type, AsBytes(message));
  if (tracing())
    TraceLine(absl::StrCat("   message ", QuotedForTrace(message)));
}

std::optional<size_t> ServerSession::Impl::FindExport(
    std::string_view name) const {
  for (size_t i = 0; i < opts_.exports.size(); ++i) {
    if (opts_.exports[i].name == name) return i;
  }
  if (name.empty() && !opts_.exports.empty()) return opts_.default_export;
  return std::nullopt;
}

void ServerSession::Impl::HandleOption(uint32_t option,
                                       absl::Span<const uint8_t> data) {
  if (tracing()) TraceOption(option, data);
  const auto bare = [&](auto on_ok) {
    if (!data.empty()) {
      return SendOptionError(option, OptionReplyType::kErrInvalid,
                             "this option takes no data");
    }
    on_ok();
  };
  if (tls_required() && option != static_cast<uint32_t>(Option::kStartTls) &&
      option != static_cast<uint32_t>(Option::kAbort)) {
    if (option == static_cast<uint32_t>(Option::kExportName)) {
      // No error reply exists for EXPORT_NAME: the spec says to disconnect.
      return Fail(ErrnoStatus(
          EACCES,
          "NBD_OPT_EXPORT_NAME before STARTTLS: this server requires "
          "TLS"));
    }
    return SendOptionError(option, OptionReplyType::kErrTlsReqd,
                           "this server requires TLS: send NBD_OPT_STARTTLS "
                           "first");
  }
  switch (static_cast<Option>(option)) {
    case Option::kExportName:
      return HandleExportName(data);
    case Option::kAbort:
      // Whatever the data, the client is leaving: acknowledge and close.
      SendOptionReply(option, OptionReplyType::kAck);
      return StartClosing("NBD_OPT_ABORT received");
    case Option::kList:
      return HandleList(data);
    case Option::kStartTls:
      return HandleStartTls(data);
    case Option::kInfo:
    case Option::kGo:
      return HandleInfoOrGo(static_cast<Option>(option), data);
    case Option::kStructuredReply:
      if (!opts_.allow_structured_replies) break;
      return bare([&] {
        if (structured_) {
          return SendOptionError(option, OptionReplyType::kErrInvalid,
                                 "structured replies are already negotiated");
        }
        structured_ = true;
        SendOptionReply(option, OptionReplyType::kAck);
      });
    case Option::kExtendedHeaders:
      if (!opts_.allow_extended_headers) break;
      return bare([&] {
        if (extended_) {
          return SendOptionError(option, OptionReplyType::kErrInvalid,
                                 "extended headers are already negotiated");
        }
        extended_ = true;
        structured_ = true;
        SendOptionReply(option, OptionReplyType::kAck);
      });
    case Option::kListMetaContext:
    case Option::kSetMetaContext:
      return HandleMetaContext(static_cast<Option>(option), data);
    default:
      break;
  }
  SendOptionError(option, OptionReplyType::kErrUnsup,
                  absl::StrFormat("option %d is not supported", option));
}

void ServerSession::Impl::HandleStartTls(absl::Span<const uint8_t> data) {
  const uint32_t opt = static_cast<uint32_t>(Option::kStartTls);
  if (!data.empty()) {
    return SendOptionError(opt, OptionReplyType::kErrInvalid,
                           "NBD_OPT_STARTTLS takes no data");
  }
  if (opts_.tls == ServerTlsMode::kOff || !client_fixed_) {
    // NOTLS (the spec makes it the only mode for a non-fixed client).
    return SendOptionError(opt, OptionReplyType::kErrUnsup,
                           "TLS is not enabled on this server");
  }
  if (tls_ != Tls::kPlain) {
    return SendOptionError(opt, OptionReplyType::kErrInvalid,
                           "TLS is already negotiated");
  }
  SendOptionReply(opt, OptionReplyType::kAck);
  // Input stops here (input_paused()): whatever the client sent after the
  // option is TLS or an attack, and is not the session's to read.
  // ServerStartTls follows once the acknowledgement has been consumed
  // (ConsumeOutput), so the embedder never starts TLS under it.
  tls_ = Tls::kAckQueued;
}

void ServerSession::Impl::OnStartTlsAckSent() {
  tls_ = Tls::kHandshaking;
  if (tracing()) TraceLine("STARTTLS acknowledged: the TLS layer starts now");
  events_.push_back(ServerStartTls{});
}

void ServerSession::Impl::HandleExportName(absl::Span<const uint8_t> data) {
  if (extended_) {
    return Fail(ProtocolError(
        "NBD_OPT_EXPORT_NAME after extended headers were negotiated"));
  }
  std::string name(data.begin(), data.end());
  std::optional<size_t> index = FindExport(name);
  if (!index.has_value()) {
    // NBD_OPT_EXPORT_NAME has no error reply: the spec says to disconnect.
    return Fail(ErrnoStatus(
        ENOENT, absl::StrCat("NBD_OPT_EXPORT_NAME: no export named \"",
                             name.substr(0, 256), "\"")));
  }
  const ExportInfo& e = opts_.exports[*index];
  const uint16_t flags = TransmissionFlags(e, structured_);
  if (tracing()) {
    TraceLine(absl::StrFormat("-> export-name reply: size=%d flags=0x%x%s",
                              e.size, flags,
                              client_no_zeroes_ ? "" : " + 124 zero bytes"));
  }
  out_.PushOwned(EncodeExportNameReply({e.size, flags}, client_no_zeroes_));
  StartTransmission(*index, name);
}

void ServerSession::Impl::HandleInfoOrGo(Option option,
                                         absl::Span<const uint8_t> data) {
  const uint32_t opt = static_cast<uint32_t>(option);
  absl::StatusOr<InfoRequest> request = DecodeInfoRequest(data);
  if (!request.ok()) {
    return SendOptionError(opt, OptionReplyType::kErrInvalid,
                           request.status().message());
  }
  std::optional<size_t> index = FindExport(request->export_name);
  if (!index.has_value()) {
    return SendOptionError(opt, OptionReplyType::kErrUnknown,
                           "no export of that name");
  }
  const ExportInfo& e = opts_.exports[*index];
  const uint16_t flags = TransmissionFlags(e, structured_);
  SendOptionReply(opt, OptionReplyType::kInfo,
                  EncodeInfoExport({e.size, flags}));
  if (tracing()) {
    TraceLine(absl::StrFormat("   NBD_INFO_EXPORT size=%d flags=0x%x", e.size,
                              flags));
  }
  std::set<uint16_t> seen;
  for (uint16_t type : request->info_requests) {
    if (!seen.insert(type).second) continue;  // repeated request
    switch (static_cast<InfoType>(type)) {
      case InfoType::kName:
        SendOptionReply(opt, OptionReplyType::kInfo, EncodeInfoName({e.name}));
        if (tracing()) TraceLine("   NBD_INFO_NAME " + QuotedForTrace(e.name));
        break;
      case InfoType::kDescription:
        if (!e.description.empty()) {
          SendOptionReply(opt, OptionReplyType::kInfo,
                          EncodeInfoDescription({e.description}));
          if (tracing()) {
            TraceLine("   NBD_INFO_DESCRIPTION " +
                      QuotedForTrace(e.description));
          }
        }
        break;
      default:
        break;  // EXPORT was sent; BLOCK_SIZE always follows; others unknown
    }
  }
  SendOptionReply(
      opt, OptionReplyType::kInfo,
      EncodeInfoBlockSize({e.min_block, e.preferred_block, e.max_block}));
  if (tracing()) {
    TraceLine(absl::StrFormat(
        "   NBD_INFO_BLOCK_SIZE minimum=%d preferred=%d maximum=%d",
        e.min_block, e.preferred_block, e.max_block));
  }
  SendOptionReply(opt, OptionReplyType::kAck);
  if (option == Option::kGo) StartTransmission(*index, request->export_name);
}

void ServerSession::Impl::HandleList(absl::Span<const uint8_t> data) {
  const uint32_t opt = static_cast<uint32_t>(Option::kList);
  if (!data.empty()) {
    return SendOptionError(opt, OptionReplyType::kErrInvalid,
                           "NBD_OPT_LIST takes no data");
  }
  if (!opts_.allow_list) {
    return SendOptionError(opt, OptionReplyType::kErrPolicy,
                           "listing exports is not allowed");
  }
  for (const ExportInfo& e : opts_.exports) {
    SendOptionReply(opt, OptionReplyType::kServer,
                    EncodeServerReply({e.name, e.description}));
    if (tracing()) {
      TraceLine(absl::StrCat("   export ", QuotedForTrace(e.name), " ",
                             QuotedForTrace(e.description)));
    }
  }
  SendOptionReply(opt, OptionReplyType::kAck);
}

void ServerSession::Impl::HandleMetaContext(Option option,
                                            absl::Span<const uint8_t> data) {
  const uint32_t opt = static_cast<uint32_t>(option);
  const bool set = option == Option::kSetMetaContext;
  if (set) {
    // A SET replaces the selection, even when it fails.
    meta_base_allocation_ = false;
    meta_export_name_.reset();
  }
  if (!structured_) {
    return SendOptionError(opt, OptionReplyType::kErrInvalid,
                           "meta contexts need structured replies first");
  }
  absl::StatusOr<MetaContextRequest> request = DecodeMetaContextRequest(data);
  if (!request.ok()) {
    return SendOptionError(opt, OptionReplyType::kErrInvalid,
                           request.status().message());
  }
  std::optional<size_t> index = FindExport(request->export_name);
  if (!index.has_value()) {
    return SendOptionError(opt, OptionReplyType::kErrUnknown,
                           "no export of that name");
  }
  bool match = false;
  if (opts_.exports[*index].can_block_status) {
    if (!set && request->queries.empty()) match = true;  // list everything
    for (const std::string& q : request->queries) {
      if (q == kContextBaseAllocation || (!set && q == "base:")) match = true;
    }
  }
  if (match) {
    SendOptionReply(opt, OptionReplyType::kMetaContext,
                    EncodeMetaContextReply(
                        {kBaseAllocationContextId, kContextBaseAllocation}));
    if (tracing()) {
      TraceLine(absl::StrFormat("   context id=%d %s", kBaseAllocationContextId,
                                QuotedForTrace(kContextBaseAllocation)));
    }
  }
  if (set) {
    meta_base_allocation_ = match;
    meta_export_name_ = request->export_name;
  }
  SendOptionReply(opt, OptionReplyType::kAck);
}

void ServerSession::Impl::StartTransmission(size_t export_index,
                                            absl::string_view name) {
  export_ = export_index;
  tflags_ = TransmissionFlags(opts_.exports[export_index], structured_);
  // The spec lets a client use BLOCK_STATUS only if GO named the export
  // its SET_META_CONTEXT named. Like nbdkit, compare the names as sent: a
  // different name discards the selection even when it means the same
  // export ("" for the default), as the client discards it too.
  if (meta_export_name_ != name) meta_base_allocation_ = false;
  if (tracing()) TraceTransmission();
  events_.push_back(TransmissionStarted{export_index, structured_, extended_});
  Expect(Unit::kRequestHeader, extended_ ? kExtendedRequestSize : kRequestSize);
}

}  // namespace nbd
