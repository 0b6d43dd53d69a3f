#include "protocol/testing/server_script.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "protocol/names.h"

namespace nbd::testing {
namespace {

void Append(Bytes& out, ByteSpan bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

Bytes StringBytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

uint16_t Type(ChunkType type) { return static_cast<uint16_t>(type); }
uint16_t DoneFlag(bool done) { return done ? kReplyFlagDone : 0; }

absl::Status Mismatch(std::string text) {
  return absl::FailedPreconditionError(std::move(text));
}

// Takes `n` bytes at the cursor or explains what is missing.
absl::StatusOr<ByteSpan> Take(ServerStream& s, size_t n,
                              std::string_view what) {
  if (s.remaining() < n) {
    return Mismatch(absl::StrFormat(
        "expected %s (%d bytes) but the server sent only %d more bytes: %s",
        what, n, s.remaining(), Hex(ByteSpan(s.bytes).subspan(s.pos))));
  }
  ByteSpan out = ByteSpan(s.bytes).subspan(s.pos, n);
  s.pos += n;
  return out;
}

absl::Status SameBytes(std::string_view what, ByteSpan expected, ByteSpan got) {
  if (std::equal(got.begin(), got.end(), expected.begin(), expected.end())) {
    return absl::OkStatus();
  }
  return Mismatch(absl::StrFormat("%s: expected %s, got %s", what,
                                  Hex(expected), Hex(got)));
}

// The label's request as the client sent it (zeros if it never was).
RequestRecord SentUnder(const ServerRunContext& ctx, const std::string& label) {
  auto it = ctx.sent.find(label);
  return it == ctx.sent.end() ? RequestRecord{} : it->second;
}

}  // namespace

// ---- ServerRunContext -------------------------------------------------------

uint64_t ServerRunContext::CookieOf(const std::string& label) {
  auto [it, inserted] = cookies_.try_emplace(label, cookies_.size() + 1);
  return it->second;
}

std::string ServerRunContext::NameOf(uint64_t cookie) const {
  for (const auto& [label, c] : cookies_) {
    if (c == cookie) return label;
  }
  return absl::StrCat("cookie=", cookie);
}

// ---- ClientBytes ------------------------------------------------------------

ClientBytes& ClientBytes::Add(Part part) {
  parts_.push_back(std::move(part));
  return *this;
}

ClientBytes& ClientBytes::Flags(uint32_t client_flags) {
  auto f = EncodeClientFlags(client_flags);
  return Raw(Bytes(f.begin(), f.end()));
}

ClientBytes& ClientBytes::Opt(Option option, Bytes data) {
  return OptNumber(static_cast<uint32_t>(option), std::move(data));
}

ClientBytes& ClientBytes::OptNumber(uint32_t option, Bytes data) {
  OptHeader(option, static_cast<uint32_t>(data.size()));
  return Raw(std::move(data));
}

ClientBytes& ClientBytes::OptHeader(uint32_t option, uint32_t length) {
  auto h = EncodeOptionRequestHeader({option, length});
  return Raw(Bytes(h.begin(), h.end()));
}

ClientBytes& ClientBytes::OptInfoRequest(Option option, std::string export_name,
                                         std::vector<uint16_t> infos) {
  return Opt(option,
             EncodeInfoRequest({std::move(export_name), std::move(infos)}));
}

ClientBytes& ClientBytes::OptMeta(Option option, std::string export_name,
                                  std::vector<std::string> queries) {
  return Opt(option, EncodeMetaContextRequest(
                         {std::move(export_name), std::move(queries)}));
}

ClientBytes& ClientBytes::OptExportName(std::string name) {
  return Opt(Option::kExportName, StringBytes(name));
}

namespace {

enum class Form { kRun, kCompact, kExtended };

std::function<void(ServerRunContext&, Bytes&)> RequestPart(
    std::string label, Command command, uint64_t offset, uint64_t length,
    uint16_t flags, Form form) {
  return [=](ServerRunContext& ctx, Bytes& out) {
    const uint64_t cookie = ctx.CookieOf(label);
    const uint16_t type = static_cast<uint16_t>(command);
    const bool extended =
        form == Form::kExtended || (form == Form::kRun && ctx.extended);
    if (extended) {
      Append(out, EncodeExtendedRequest({flags, type, cookie, offset, length}));
    } else {
      Append(out, EncodeRequest({flags, type, cookie, offset,
                                 static_cast<uint32_t>(length)}));
    }
    ctx.sent[label] = {cookie, type, flags, offset,
                       extended ? length : static_cast<uint32_t>(length)};
  };
}

}  // namespace

ClientBytes& ClientBytes::Req(std::string label, Command command,
                              uint64_t offset, uint64_t length,
                              uint16_t flags) {
  return Add(RequestPart(std::move(label), command, offset, length, flags,
                         Form::kRun));
}

ClientBytes& ClientBytes::CompactReq(std::string label, Command command,
                                     uint64_t offset, uint32_t length,
                                     uint16_t flags) {
  return Add(RequestPart(std::move(label), command, offset, length, flags,
                         Form::kCompact));
}

ClientBytes& ClientBytes::ExtendedReq(std::string label, Command command,
                                      uint64_t offset, uint64_t length,
                                      uint16_t flags) {
  return Add(RequestPart(std::move(label), command, offset, length, flags,
                         Form::kExtended));
}

ClientBytes& ClientBytes::Write(std::string label, uint64_t offset, Bytes data,
                                uint16_t flags) {
  const uint64_t length = data.size();
  return Add([=, data = std::move(data)](ServerRunContext& ctx, Bytes& out) {
    const uint16_t f = ctx.extended ? flags | kCmdFlagPayloadLen : flags;
    RequestPart(label, Command::kWrite, offset, length, f, Form::kRun)(ctx,
                                                                       out);
    Append(out, data);
  });
}

ClientBytes& ClientBytes::Raw(Bytes bytes) {
  return Add([bytes = std::move(bytes)](ServerRunContext&, Bytes& out) {
    Append(out, bytes);
  });
}

ClientBytes& ClientBytes::Then(const ClientBytes& more) {
  parts_.insert(parts_.end(), more.parts_.begin(), more.parts_.end());
  return *this;
}

Bytes ClientBytes::Build(ServerRunContext& ctx) const {
  Bytes out;
  for (const Part& part : parts_) part(ctx, out);
  return out;
}

// ---- ServerSends: handshake -------------------------------------------------

ServerSends& ServerSends::Add(Item item) {
  items_.push_back(std::move(item));
  return *this;
}

ServerSends& ServerSends::Greeting(uint16_t handshake_flags) {
  auto g = EncodeNewstyleGreeting({handshake_flags});
  return Add([g](ServerStream& s, ServerRunContext&) -> absl::Status {
    absl::StatusOr<ByteSpan> got = Take(s, g.size(), "the greeting");
    if (!got.ok()) return got.status();
    return SameBytes("greeting", g, *got);
  });
}

ServerSends& ServerSends::Rep(Option option, OptionReplyType type,
                              std::optional<Bytes> payload) {
  return Add([=](ServerStream& s, ServerRunContext&) -> absl::Status {
    const std::string what =
        absl::StrCat(OptionName(option), " reply ",
                     OptionReplyName(static_cast<uint32_t>(type)));
    absl::StatusOr<ByteSpan> header = Take(s, kOptionReplyHeaderSize, what);
    if (!header.ok()) return header.status();
    absl::StatusOr<OptionReplyHeader> h = DecodeOptionReplyHeader(*header);
    if (!h.ok()) {
      return Mismatch(absl::StrCat("expected ", what, ": ",
                                   h.status().message(), ": ", Hex(*header)));
    }
    if (h->option != static_cast<uint32_t>(option) ||
        h->type != static_cast<uint32_t>(type)) {
      return Mismatch(absl::StrFormat(
          "expected %s, the server sent reply type %d to option %d (length "
          "%d)",
          what, h->type, h->option, h->length));
    }
    absl::StatusOr<ByteSpan> got =
        Take(s, h->length, absl::StrCat(what, " payload"));
    if (!got.ok()) return got.status();
    if (!payload.has_value()) return absl::OkStatus();
    return SameBytes(what, *payload, *got);
  });
}

ServerSends& ServerSends::RepAck(Option option) {
  return Rep(option, OptionReplyType::kAck, Bytes{});
}

ServerSends& ServerSends::RepError(Option option, OptionReplyType type,
                                   std::optional<std::string> message) {
  std::optional<Bytes> payload;
  if (message.has_value()) payload = StringBytes(*message);
  return Rep(option, type, std::move(payload));
}

ServerSends& ServerSends::RepServer(std::string name, std::string description) {
  return Rep(Option::kList, OptionReplyType::kServer,
             EncodeServerReply({std::move(name), std::move(description)}));
}

ServerSends& ServerSends::RepInfoExport(Option option, uint64_t size,
                                        uint16_t flags) {
  return Rep(option, OptionReplyType::kInfo, EncodeInfoExport({size, flags}));
}

ServerSends& ServerSends::RepInfoName(Option option, std::string name) {
  return Rep(option, OptionReplyType::kInfo, EncodeInfoName({std::move(name)}));
}

ServerSends& ServerSends::RepInfoDescription(Option option,
                                             std::string description) {
  return Rep(option, OptionReplyType::kInfo,
             EncodeInfoDescription({std::move(description)}));
}

ServerSends& ServerSends::RepInfoBlockSize(Option option, uint32_t minimum,
                                           uint32_t preferred,
                                           uint32_t maximum) {
  return Rep(option, OptionReplyType::kInfo,
             EncodeInfoBlockSize({minimum, preferred, maximum}));
}

ServerSends& ServerSends::RepMetaContext(Option option, uint32_t id,
                                         std::string name) {
  return Rep(option, OptionReplyType::kMetaContext,
             EncodeMetaContextReply({id, std::move(name)}));
}

ServerSends& ServerSends::ExportNameReply(uint64_t size, uint16_t flags,
                                          bool no_zeroes) {
  return Raw(EncodeExportNameReply({size, flags}, no_zeroes));
}

// ---- ServerSends: transmission ----------------------------------------------

ServerSends& ServerSends::Simple(std::string label, NbdError error,
                                 Bytes data) {
  return Add([=](ServerStream& s, ServerRunContext& ctx) -> absl::Status {
    const std::string what = absl::StrCat("simple reply to ", label);
    Bytes expected;
    Append(expected, EncodeSimpleReply(
                         {static_cast<uint32_t>(error), ctx.CookieOf(label)}));
    Append(expected, data);
    absl::StatusOr<ByteSpan> got = Take(s, expected.size(), what);
    if (!got.ok()) return got.status();
    return SameBytes(what, expected, *got);
  });
}

namespace {

using PayloadCheck = std::function<absl::Status(ByteSpan)>;

absl::Status NotAHeader(const std::string& what, const absl::Status& why,
                        ByteSpan header) {
  return Mismatch(absl::StrCat(what, ": not such a header (", why.message(),
                               "): ", Hex(header)));
}

// Checks one chunk header to `label` in the run's format, then hands its
// payload to `check`.
std::function<absl::Status(ServerStream&, ServerRunContext&)> ChunkItem(
    std::string label, uint16_t flags, uint16_t type, PayloadCheck check) {
  return [=](ServerStream& s, ServerRunContext& ctx) -> absl::Status {
    const std::string what =
        absl::StrFormat("%s chunk %s flags 0x%x to %s",
                        ctx.extended ? "extended" : "structured",
                        ChunkTypeName(type), flags, label);
    const uint64_t cookie = ctx.CookieOf(label);
    uint64_t length = 0;
    std::string got;
    bool match = false;
    if (ctx.extended) {
      absl::StatusOr<ByteSpan> header = Take(s, kExtendedReplyHeaderSize, what);
      if (!header.ok()) return header.status();
      absl::StatusOr<ExtendedReplyHeader> h =
          DecodeExtendedReplyHeader(*header);
      if (!h.ok()) return NotAHeader(what, h.status(), *header);
      const uint64_t offset = SentUnder(ctx, label).offset;
      match = h->flags == flags && h->type == type && h->cookie == cookie &&
              h->offset == offset;
      length = h->length;
      got = absl::StrFormat(
          "expected cookie %d offset %d, got %s flags 0x%x cookie %d offset "
          "%d length %d",
          cookie, offset, ChunkTypeName(h->type), h->flags, h->cookie,
          h->offset, h->length);
    } else {
      absl::StatusOr<ByteSpan> header =
          Take(s, kStructuredReplyHeaderSize, what);
      if (!header.ok()) return header.status();
      absl::StatusOr<StructuredReplyHeader> h =
          DecodeStructuredReplyHeader(*header);
      if (!h.ok()) return NotAHeader(what, h.status(), *header);
      match = h->flags == flags && h->type == type && h->cookie == cookie;
      length = h->length;
      got = absl::StrFormat(
          "expected cookie %d, got %s flags 0x%x cookie %d length %d", cookie,
          ChunkTypeName(h->type), h->flags, h->cookie, h->length);
    }
    if (!match) return Mismatch(absl::StrCat(what, ": ", got));
    absl::StatusOr<ByteSpan> payload =
        Take(s, length, absl::StrCat(what, " payload"));
    if (!payload.ok()) return payload.status();
    absl::Status status = check(*payload);
    if (!status.ok())
      return Mismatch(absl::StrCat(what, ": ", status.message()));
    return absl::OkStatus();
  };
}

PayloadCheck PayloadIs(std::optional<Bytes> expected) {
  return [expected = std::move(expected)](ByteSpan got) -> absl::Status {
    if (!expected.has_value()) return absl::OkStatus();
    return SameBytes("payload", *expected, got);
  };
}

}  // namespace

ServerSends& ServerSends::Chunk(std::string label, uint16_t flags,
                                uint16_t type, std::optional<Bytes> payload) {
  return Add(
      ChunkItem(std::move(label), flags, type, PayloadIs(std::move(payload))));
}

ServerSends& ServerSends::ChunkData(std::string label, uint64_t offset,
                                    Bytes data, bool done) {
  return Chunk(std::move(label), DoneFlag(done), Type(ChunkType::kOffsetData),
               EncodeOffsetData(offset, data));
}

ServerSends& ServerSends::ChunkHole(std::string label, uint64_t offset,
                                    uint32_t length, bool done) {
  auto hole = EncodeOffsetHole({offset, length});
  return Chunk(std::move(label), DoneFlag(done), Type(ChunkType::kOffsetHole),
               Bytes(hole.begin(), hole.end()));
}

ServerSends& ServerSends::ChunkNone(std::string label) {
  return Chunk(std::move(label), kReplyFlagDone, Type(ChunkType::kNone),
               Bytes{});
}

namespace {

// An ERROR or ERROR_OFFSET payload: the error and (if given) the message
// must match; `offset` is compared for ERROR_OFFSET.
absl::Status CheckErrorPayload(ByteSpan payload, NbdError error,
                               const std::optional<std::string>& message,
                               std::optional<uint64_t> offset) {
  uint32_t got_error = 0;
  std::string got_message;
  uint64_t got_offset = 0;
  if (offset.has_value()) {
    absl::StatusOr<ErrorOffsetChunk> c = DecodeErrorOffsetChunk(payload);
    if (!c.ok())
      return Mismatch(
          absl::StrCat("ERROR_OFFSET payload: ", c.status().message()));
    got_error = c->error;
    got_message = c->message;
    got_offset = c->offset;
  } else {
    absl::StatusOr<ErrorChunk> c = DecodeErrorChunk(payload);
    if (!c.ok()) {
      return Mismatch(absl::StrCat("ERROR payload: ", c.status().message()));
    }
    got_error = c->error;
    got_message = c->message;
  }
  if (got_error != static_cast<uint32_t>(error) ||
      (message.has_value() && got_message != *message) ||
      (offset.has_value() && got_offset != *offset)) {
    return Mismatch(absl::StrFormat(
        "expected error %d message \"%s\" offset %d, got error %d message "
        "\"%s\" offset %d",
        static_cast<uint32_t>(error), message.value_or("<any>"),
        offset.value_or(0), got_error, got_message, got_offset));
  }
  return absl::OkStatus();
}

}  // namespace

ServerSends& ServerSends::ChunkError(std::string label, NbdError error,
                                     std::optional<std::string> message,
                                     bool done) {
  return Add(ChunkItem(std::move(label), DoneFlag(done),
                       Type(ChunkType::kError), [=](ByteSpan payload) {
                         return CheckErrorPayload(payload, error, message,
                                                  std::nullopt);
                       }));
}

ServerSends& ServerSends::ChunkErrorOffset(std::string label, NbdError error,
                                           uint64_t offset,
                                           std::optional<std::string> message,
                                           bool done) {
  return Add(ChunkItem(std::move(label), DoneFlag(done),
                       Type(ChunkType::kErrorOffset), [=](ByteSpan payload) {
                         return CheckErrorPayload(payload, error, message,
                                                  offset);
                       }));
}

ServerSends& ServerSends::ChunkBlockStatus(std::string label,
                                           uint32_t context_id,
                                           std::vector<Extent> extents,
                                           bool done) {
  return Add([=](ServerStream& s, ServerRunContext& ctx) -> absl::Status {
    const BlockStatusChunk chunk{context_id, extents};
    if (ctx.extended) {
      return ChunkItem(label, DoneFlag(done), Type(ChunkType::kBlockStatusExt),
                       PayloadIs(EncodeBlockStatusExt(chunk)))(s, ctx);
    }
    return ChunkItem(label, DoneFlag(done), Type(ChunkType::kBlockStatus),
                     PayloadIs(EncodeBlockStatus(chunk)))(s, ctx);
  });
}

ServerSends& ServerSends::Raw(Bytes bytes) {
  return Add([bytes](ServerStream& s, ServerRunContext&) -> absl::Status {
    absl::StatusOr<ByteSpan> got = Take(s, bytes.size(), "raw bytes");
    if (!got.ok()) return got.status();
    return SameBytes("raw bytes", bytes, *got);
  });
}

ServerSends& ServerSends::Nothing() {
  return Add([](ServerStream& s, ServerRunContext&) -> absl::Status {
    if (s.remaining() == 0) return absl::OkStatus();
    return Mismatch(absl::StrFormat(
        "expected nothing more, but the server sent %d more bytes: %s",
        s.remaining(), Hex(ByteSpan(s.bytes).subspan(s.pos))));
  });
}

ServerSends& ServerSends::SkipAll() {
  return Add([](ServerStream& s, ServerRunContext&) {
    s.pos = s.bytes.size();
    return absl::OkStatus();
  });
}

absl::Status ServerSends::Check(ServerStream& stream,
                                ServerRunContext& ctx) const {
  for (const Item& item : items_) {
    absl::Status status = item(stream, ctx);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

// ---- ServerScenario ---------------------------------------------------------

const char* ServerStepKindName(ServerStep::Kind kind) {
  switch (kind) {
    case ServerStep::Kind::kSend:
      return "send";
    case ServerStep::Kind::kEof:
      return "eof";
    case ServerStep::Kind::kTransportError:
      return "transport error";
    case ServerStep::Kind::kExpect:
      return "expect";
    case ServerStep::Kind::kCall:
      return "call";
    case ServerStep::Kind::kSnapshot:
      return "snapshot";
    case ServerStep::Kind::kContext:
      return "context";
    case ServerStep::Kind::kHoldOutput:
      return "hold output";
    case ServerStep::Kind::kReleaseOutput:
      return "release output";
    case ServerStep::Kind::kConsume:
      return "consume";
  }
  return "?";
}

ServerScenario::ServerScenario(ServerOptions options)
    : options_(std::move(options)) {}

ServerScenario& ServerScenario::Add(ServerStep step) {
  steps_.push_back(std::move(step));
  return *this;
}

ServerScenario& ServerScenario::Send(ClientBytes bytes) {
  ServerStep step;
  step.kind = ServerStep::Kind::kSend;
  step.client = std::move(bytes);
  return Add(std::move(step));
}

ServerScenario& ServerScenario::Eof() {
  ServerStep step;
  step.kind = ServerStep::Kind::kEof;
  return Add(std::move(step));
}

ServerScenario& ServerScenario::TransportError(absl::Status error) {
  ServerStep step;
  step.kind = ServerStep::Kind::kTransportError;
  step.error = std::move(error);
  return Add(std::move(step));
}

ServerScenario& ServerScenario::Expect(ServerSends checks) {
  ServerStep step;
  step.kind = ServerStep::Kind::kExpect;
  step.expect = std::move(checks);
  return Add(std::move(step));
}

ServerScenario& ServerScenario::Answer(
    std::string label, std::string what,
    std::function<absl::Status(ServerSession&, const ServerRequest&)> reply) {
  return Do([=](ServerSession& session, ServerRunContext& ctx) {
    const std::string line = absl::StrCat("reply ", label, " ", what, " -> ");
    auto it = ctx.outstanding.find(label);
    if (it == ctx.outstanding.end() || it->second.empty()) {
      return absl::StrCat(line, "no request");
    }
    const ServerRequest request = it->second.front();
    absl::Status status = reply(session, request);
    // Answered, or released because the session ended: either way the
    // handle is gone. A rejected reply (InvalidArgument) keeps it.
    if (status.ok() || absl::IsFailedPrecondition(status)) {
      it->second.pop_front();
    }
    return absl::StrCat(line, StatusText(status));
  });
}

ServerScenario& ServerScenario::ReplyOk(std::string label) {
  return Answer(std::move(label), "ok",
                [](ServerSession& s, const ServerRequest& r) {
                  return s.ReplyOk(r.handle);
                });
}

ServerScenario& ServerScenario::ReplyError(std::string label, int errno_value,
                                           std::string message) {
  return Answer(std::move(label),
                absl::StrCat("error ", ErrnoName(errno_value)),
                [=](ServerSession& s, const ServerRequest& r) {
                  return s.ReplyError(r.handle, errno_value, message);
                });
}

namespace {

// ReadPieces from the request's offset on; the data is held by `keep`.
std::vector<ReadPiece> ToReadPieces(
    uint64_t offset, const std::vector<ServerScenario::Piece>& pieces,
    std::shared_ptr<std::vector<ServerScenario::Piece>>* keep) {
  *keep = std::make_shared<std::vector<ServerScenario::Piece>>(pieces);
  std::vector<ReadPiece> out;
  for (const ServerScenario::Piece& p : **keep) {
    if (p.data.has_value()) {
      out.push_back(ReadPiece::Data(offset, *p.data));
      offset += p.data->size();
    } else {
      out.push_back(ReadPiece::Hole(offset, p.hole));
      offset += p.hole;
    }
  }
  return out;
}

}  // namespace

ServerScenario& ServerScenario::ReplyRead(std::string label, Bytes data) {
  return ReplyReadPieces(std::move(label), {Piece{std::move(data), 0}});
}

ServerScenario& ServerScenario::ReplyReadPieces(std::string label,
                                                std::vector<Piece> pieces) {
  return Answer(
      std::move(label), "read", [=](ServerSession& s, const ServerRequest& r) {
        std::shared_ptr<std::vector<Piece>> keep;
        std::vector<ReadPiece> read = ToReadPieces(r.offset, pieces, &keep);
        return s.ReplyRead(r.handle, read, std::move(keep));
      });
}

ServerScenario& ServerScenario::ReplyReadError(std::string label, Bytes data,
                                               int errno_value,
                                               std::string message) {
  return Answer(
      std::move(label), absl::StrCat("read-error ", ErrnoName(errno_value)),
      [=](ServerSession& s, const ServerRequest& r) {
        std::shared_ptr<std::vector<Piece>> keep;
        std::vector<Piece> pieces;
        if (!data.empty()) pieces.push_back(Piece{data, 0});
        std::vector<ReadPiece> read = ToReadPieces(r.offset, pieces, &keep);
        return s.ReplyReadError(r.handle, read, r.offset + data.size(),
                                errno_value, message, std::move(keep));
      });
}

ServerScenario& ServerScenario::ReplyBlockStatus(std::string label,
                                                 std::vector<Extent> extents) {
  return Answer(std::move(label), "block-status",
                [=](ServerSession& s, const ServerRequest& r) {
                  return s.ReplyBlockStatus(r.handle, extents);
                });
}

ServerScenario& ServerScenario::Call(
    std::string name,
    std::function<absl::Status(ServerSession&, ServerRunContext&)> fn) {
  return Do([=](ServerSession& s, ServerRunContext& ctx) {
    return absl::StrCat("call ", name, " -> ", StatusText(fn(s, ctx)));
  });
}

ServerScenario& ServerScenario::Do(
    std::function<std::string(ServerSession&, ServerRunContext&)> fn) {
  ServerStep step;
  step.kind = ServerStep::Kind::kCall;
  step.call = std::move(fn);
  return Add(std::move(step));
}

ServerScenario& ServerScenario::Snapshot() {
  ServerStep step;
  step.kind = ServerStep::Kind::kSnapshot;
  return Add(std::move(step));
}

ServerScenario& ServerScenario::Context(
    std::function<void(ServerRunContext&)> fn) {
  ServerStep step;
  step.kind = ServerStep::Kind::kContext;
  step.context = std::move(fn);
  return Add(std::move(step));
}

ServerScenario& ServerScenario::HoldOutput() {
  ServerStep step;
  step.kind = ServerStep::Kind::kHoldOutput;
  return Add(std::move(step));
}

ServerScenario& ServerScenario::Consume(size_t n) {
  ServerStep step;
  step.kind = ServerStep::Kind::kConsume;
  step.consume = n;
  return Add(std::move(step));
}

ServerScenario& ServerScenario::ReleaseOutput() {
  ServerStep step;
  step.kind = ServerStep::Kind::kReleaseOutput;
  return Add(std::move(step));
}

}  // namespace nbd::testing
