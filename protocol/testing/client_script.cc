#include "protocol/testing/client_script.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace nbd::testing {
namespace {

void Append(Bytes& out, ByteSpan bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

Bytes StringBytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

// Takes `n` bytes at the cursor or explains what is missing.
absl::StatusOr<ByteSpan> Take(ClientStream& s, size_t n,
                              std::string_view what) {
  if (s.remaining() < n) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "expected %s (%d bytes) but the client sent only %d more bytes: %s",
        what, n, s.remaining(), Hex(ByteSpan(s.bytes).subspan(s.pos))));
  }
  ByteSpan out = ByteSpan(s.bytes).subspan(s.pos, n);
  s.pos += n;
  return out;
}

// Reads one option request (header and data) of type `option`.
absl::StatusOr<ByteSpan> TakeOption(ClientStream& s, Option option) {
  const std::string what =
      absl::StrCat("option ", static_cast<uint32_t>(option));
  const size_t start = s.pos;
  absl::StatusOr<ByteSpan> header = Take(s, kOptionRequestHeaderSize, what);
  if (!header.ok()) return header.status();
  absl::StatusOr<OptionRequestHeader> h = DecodeOptionRequestHeader(*header);
  if (!h.ok()) {
    s.pos = start;
    return absl::FailedPreconditionError(
        absl::StrCat("expected ", what, ": ", h.status().message()));
  }
  if (h->option != static_cast<uint32_t>(option)) {
    s.pos = start;
    return absl::FailedPreconditionError(absl::StrFormat(
        "expected option %d, the client sent option %d (length %d)",
        static_cast<uint32_t>(option), h->option, h->length));
  }
  return Take(s, h->length, absl::StrCat(what, " data"));
}

}  // namespace

// ---- RunContext -------------------------------------------------------------

Bytes& RunContext::Buffer(const std::string& label, size_t size, uint8_t fill) {
  auto [it, inserted] = buffers_.try_emplace(label);
  if (inserted) it->second.assign(size, fill);
  return it->second;
}

Bytes& RunContext::Buffer(const std::string& label) {
  auto it = buffers_.find(label);
  if (it == buffers_.end()) {
    ADD_FAILURE() << "no buffer named " << label;
    return buffers_[label];
  }
  return it->second;
}

// ---- CookieRef --------------------------------------------------------------

CookieRef CookieRef::Value(Cookie cookie) {
  CookieRef ref;
  ref.value_ = cookie;
  return ref;
}

Cookie CookieRef::Resolve(const RunContext& ctx) const {
  if (value_) return *value_;
  auto it = ctx.requests.find(label_);
  if (it == ctx.requests.end()) {
    ADD_FAILURE() << "reply to unknown request label '" << label_ << "'";
    return 0;
  }
  return it->second.cookie;
}

uint64_t CookieRef::RequestOffset(const RunContext& ctx) const {
  if (value_) return 0;
  auto it = ctx.requests.find(label_);
  return it == ctx.requests.end() ? 0 : it->second.offset;
}

// ---- Server -----------------------------------------------------------------

Server& Server::Add(Part part) {
  parts_.push_back(std::move(part));
  return *this;
}

Server& Server::Greeting(uint16_t handshake_flags) {
  auto g = EncodeNewstyleGreeting({handshake_flags});
  return Raw(Bytes(g.begin(), g.end()));
}

Server& Server::Oldstyle(uint64_t size, uint16_t transmission_flags,
                         uint16_t global_flags) {
  auto g = EncodeOldstyleGreeting({size, global_flags, transmission_flags});
  return Raw(Bytes(g.begin(), g.end()));
}

Server& Server::Rep(Option option, OptionReplyType type, Bytes payload) {
  auto header = EncodeOptionReplyHeader(
      {static_cast<uint32_t>(option), static_cast<uint32_t>(type),
       static_cast<uint32_t>(payload.size())});
  Bytes out(header.begin(), header.end());
  Append(out, payload);
  return Raw(std::move(out));
}

Server& Server::RepAck(Option option) {
  return Rep(option, OptionReplyType::kAck);
}

Server& Server::RepError(Option option, OptionReplyType type,
                         std::string message) {
  return Rep(option, type, StringBytes(message));
}

Server& Server::RepServer(std::string name, std::string description) {
  return Rep(Option::kList, OptionReplyType::kServer,
             EncodeServerReply({std::move(name), std::move(description)}));
}

Server& Server::RepInfoExport(Option option, uint64_t size, uint16_t flags) {
  return Rep(option, OptionReplyType::kInfo, EncodeInfoExport({size, flags}));
}

Server& Server::RepInfoName(Option option, std::string name) {
  return Rep(option, OptionReplyType::kInfo, EncodeInfoName({std::move(name)}));
}

Server& Server::RepInfoDescription(Option option, std::string description) {
  return Rep(option, OptionReplyType::kInfo,
             EncodeInfoDescription({std::move(description)}));
}

Server& Server::RepInfoBlockSize(Option option, uint32_t minimum,
                                 uint32_t preferred, uint32_t maximum) {
  return Rep(option, OptionReplyType::kInfo,
             EncodeInfoBlockSize({minimum, preferred, maximum}));
}

Server& Server::RepMetaContext(Option option, uint32_t id, std::string name) {
  return Rep(option, OptionReplyType::kMetaContext,
             EncodeMetaContextReply({id, std::move(name)}));
}

Server& Server::ExportNameReply(uint64_t size, uint16_t flags, bool no_zeroes) {
  return Raw(EncodeExportNameReply({size, flags}, no_zeroes));
}

Server& Server::Simple(CookieRef cookie, uint32_t error, Bytes payload) {
  return Add([cookie, error, payload](const RunContext& ctx, Bytes& out) {
    Append(out, EncodeSimpleReply({error, cookie.Resolve(ctx)}));
    Append(out, payload);
  });
}

Server& Server::Chunk(CookieRef cookie, uint16_t flags, uint16_t type,
                      Bytes payload) {
  return Add([=](const RunContext& ctx, Bytes& out) {
    if (ctx.extended) {
      Append(out, EncodeExtendedReplyHeader({flags, type, cookie.Resolve(ctx),
                                             cookie.RequestOffset(ctx),
                                             payload.size()}));
    } else {
      Append(out, EncodeStructuredReplyHeader(
                      {flags, type, cookie.Resolve(ctx),
                       static_cast<uint32_t>(payload.size())}));
    }
    Append(out, payload);
  });
}

Server& Server::StructuredChunk(CookieRef cookie, uint16_t flags, uint16_t type,
                                Bytes payload, std::optional<uint32_t> length) {
  return Add([=](const RunContext& ctx, Bytes& out) {
    Append(out, EncodeStructuredReplyHeader(
                    {flags, type, cookie.Resolve(ctx),
                     length.value_or(static_cast<uint32_t>(payload.size()))}));
    Append(out, payload);
  });
}

Server& Server::ExtendedChunk(CookieRef cookie, uint16_t flags, uint16_t type,
                              Bytes payload, std::optional<uint64_t> offset,
                              std::optional<uint64_t> length) {
  return Add([=](const RunContext& ctx, Bytes& out) {
    Append(out, EncodeExtendedReplyHeader(
                    {flags, type, cookie.Resolve(ctx),
                     offset.value_or(cookie.RequestOffset(ctx)),
                     length.value_or(payload.size())}));
    Append(out, payload);
  });
}

namespace {
uint16_t DoneFlag(bool done) { return done ? kReplyFlagDone : 0; }
uint16_t Type(ChunkType type) { return static_cast<uint16_t>(type); }
}  // namespace

Server& Server::ChunkData(CookieRef cookie, uint64_t offset, Bytes data,
                          bool done) {
  return Chunk(cookie, DoneFlag(done), Type(ChunkType::kOffsetData),
               EncodeOffsetData(offset, data));
}

Server& Server::ChunkHole(CookieRef cookie, uint64_t offset, uint32_t length,
                          bool done) {
  auto hole = EncodeOffsetHole({offset, length});
  return Chunk(cookie, DoneFlag(done), Type(ChunkType::kOffsetHole),
               Bytes(hole.begin(), hole.end()));
}

Server& Server::ChunkBlockStatus(CookieRef cookie, uint32_t context_id,
                                 std::vector<Extent> extents, bool done) {
  return Chunk(cookie, DoneFlag(done), Type(ChunkType::kBlockStatus),
               EncodeBlockStatus({context_id, std::move(extents)}));
}

Server& Server::ChunkBlockStatusExt(CookieRef cookie, uint32_t context_id,
                                    std::vector<Extent> extents, bool done) {
  return Chunk(cookie, DoneFlag(done), Type(ChunkType::kBlockStatusExt),
               EncodeBlockStatusExt({context_id, std::move(extents)}));
}

Server& Server::ChunkError(CookieRef cookie, uint32_t nbd_error,
                           std::string message, bool done) {
  return Chunk(cookie, DoneFlag(done), Type(ChunkType::kError),
               EncodeErrorChunk({nbd_error, std::move(message)}));
}

Server& Server::ChunkError(CookieRef cookie, NbdError error,
                           std::string message, bool done) {
  return ChunkError(std::move(cookie), static_cast<uint32_t>(error),
                    std::move(message), done);
}

Server& Server::ChunkErrorOffset(CookieRef cookie, uint32_t nbd_error,
                                 uint64_t offset, std::string message,
                                 bool done) {
  return Chunk(cookie, DoneFlag(done), Type(ChunkType::kErrorOffset),
               EncodeErrorOffsetChunk({nbd_error, std::move(message), offset}));
}

Server& Server::ChunkNone(CookieRef cookie) {
  return Chunk(cookie, kReplyFlagDone, Type(ChunkType::kNone), {});
}

Server& Server::Raw(Bytes bytes) {
  return Add([bytes = std::move(bytes)](const RunContext&, Bytes& out) {
    Append(out, bytes);
  });
}

Bytes Server::Build(const RunContext& ctx) const {
  Bytes out;
  for (const Part& part : parts_) part(ctx, out);
  return out;
}

// ---- ClientSends ------------------------------------------------------------

ClientSends& ClientSends::Add(Item item) {
  items_.push_back(std::move(item));
  return *this;
}

ClientSends& ClientSends::Flags(uint32_t client_flags) {
  return Add([client_flags](ClientStream& s, RunContext&) -> absl::Status {
    absl::StatusOr<ByteSpan> bytes = Take(s, kClientFlagsSize, "client flags");
    if (!bytes.ok()) return bytes.status();
    absl::StatusOr<uint32_t> flags = DecodeClientFlags(*bytes);
    if (!flags.ok() || *flags != client_flags) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "expected client flags 0x%x, got %s", client_flags, Hex(*bytes)));
    }
    return absl::OkStatus();
  });
}

ClientSends& ClientSends::Opt(Option option) { return OptData(option, {}); }

ClientSends& ClientSends::OptData(Option option, Bytes data) {
  return Add([option, data](ClientStream& s, RunContext&) -> absl::Status {
    absl::StatusOr<ByteSpan> got = TakeOption(s, option);
    if (!got.ok()) return got.status();
    if (!std::equal(got->begin(), got->end(), data.begin(), data.end())) {
      return absl::FailedPreconditionError(
          absl::StrFormat("option %d: expected data %s, got %s",
                          static_cast<uint32_t>(option), Hex(data), Hex(*got)));
    }
    return absl::OkStatus();
  });
}

ClientSends& ClientSends::OptInfoRequest(Option option, std::string export_name,
                                         std::vector<uint16_t> infos) {
  std::sort(infos.begin(), infos.end());
  return Add([=](ClientStream& s, RunContext&) -> absl::Status {
    absl::StatusOr<ByteSpan> got = TakeOption(s, option);
    if (!got.ok()) return got.status();
    absl::StatusOr<InfoRequest> req = DecodeInfoRequest(*got);
    if (!req.ok()) return req.status();
    std::vector<uint16_t> sent = req->info_requests;
    std::sort(sent.begin(), sent.end());
    if (req->export_name != export_name || sent != infos) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "option %d: expected name '%s' infos [%s], got '%s' [%s]",
          static_cast<uint32_t>(option), export_name, absl::StrJoin(infos, ","),
          req->export_name, absl::StrJoin(req->info_requests, ",")));
    }
    return absl::OkStatus();
  });
}

ClientSends& ClientSends::OptMeta(Option option, std::string export_name,
                                  std::vector<std::string> queries) {
  return Add([=](ClientStream& s, RunContext&) -> absl::Status {
    absl::StatusOr<ByteSpan> got = TakeOption(s, option);
    if (!got.ok()) return got.status();
    absl::StatusOr<MetaContextRequest> req = DecodeMetaContextRequest(*got);
    if (!req.ok()) return req.status();
    if (req->export_name != export_name || req->queries != queries) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "option %d: expected name '%s' queries [%s], got '%s' [%s]",
          static_cast<uint32_t>(option), export_name,
          absl::StrJoin(queries, ","), req->export_name,
          absl::StrJoin(req->queries, ",")));
    }
    return absl::OkStatus();
  });
}

ClientSends& ClientSends::OptExportName(std::string name) {
  return OptData(Option::kExportName, StringBytes(name));
}

ClientSends& ClientSends::Req(std::string label, Command command,
                              uint16_t flags, uint64_t offset, uint64_t length,
                              uint16_t ignore_flags) {
  return Add([=](ClientStream& s, RunContext& ctx) -> absl::Status {
    const size_t size = ctx.extended ? kExtendedRequestSize : kRequestSize;
    const std::string what = absl::StrCat("request ", label);
    absl::StatusOr<ByteSpan> bytes = Take(s, size, what);
    if (!bytes.ok()) return bytes.status();
    RequestRecord got;
    if (ctx.extended) {
      absl::StatusOr<ExtendedRequest> r = DecodeExtendedRequest(*bytes);
      if (!r.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat(what, " (extended): ", r.status().message()));
      }
      got = {r->cookie, r->type, r->flags, r->offset, r->length};
    } else {
      absl::StatusOr<Request> r = DecodeRequest(*bytes);
      if (!r.ok()) {
        return absl::FailedPreconditionError(
            absl::StrCat(what, " (compact): ", r.status().message()));
      }
      got = {r->cookie, r->type, r->flags, r->offset, r->length};
    }
    if (got.type != static_cast<uint16_t>(command) ||
        (got.flags & ~ignore_flags) != (flags & ~ignore_flags) ||
        got.offset != offset || got.length != length) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%s: expected type %d flags 0x%x offset %d length %d, got type %d "
          "flags 0x%x offset %d length %d",
          what, static_cast<uint16_t>(command), flags, offset, length, got.type,
          got.flags, got.offset, got.length));
    }
    auto it = ctx.requests.find(label);
    if (it != ctx.requests.end() && it->second.cookie != 0 &&
        it->second.cookie != got.cookie) {
      return absl::FailedPreconditionError(
          absl::StrFormat("%s: issued as cookie %d but sent with cookie %d",
                          what, it->second.cookie, got.cookie));
    }
    ctx.requests[label] = got;
    return absl::OkStatus();
  });
}

ClientSends& ClientSends::Payload(Bytes bytes) {
  return Add([bytes](ClientStream& s, RunContext&) -> absl::Status {
    absl::StatusOr<ByteSpan> got = Take(s, bytes.size(), "write payload");
    if (!got.ok()) return got.status();
    if (!std::equal(got->begin(), got->end(), bytes.begin(), bytes.end())) {
      return absl::FailedPreconditionError(
          absl::StrCat("write payload differs: ", Hex(*got)));
    }
    return absl::OkStatus();
  });
}

ClientSends& ClientSends::Nothing() {
  return Add([](ClientStream& s, RunContext&) -> absl::Status {
    if (s.remaining() == 0) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrFormat(
        "expected nothing more, but the client sent %d more bytes: %s",
        s.remaining(), Hex(ByteSpan(s.bytes).subspan(s.pos))));
  });
}

ClientSends& ClientSends::SkipAll() {
  return Add([](ClientStream& s, RunContext&) {
    s.pos = s.bytes.size();
    return absl::OkStatus();
  });
}

absl::Status ClientSends::Check(ClientStream& stream, RunContext& ctx) const {
  for (const Item& item : items_) {
    absl::Status status = item(stream, ctx);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

// ---- Step -----------------------------------------------------------------

const char* StepKindName(Step::Kind kind) {
  switch (kind) {
    case Step::Kind::kSend:
      return "send";
    case Step::Kind::kEof:
      return "eof";
    case Step::Kind::kTransportError:
      return "transport error";
    case Step::Kind::kExpect:
      return "expect";
    case Step::Kind::kCall:
      return "call";
    case Step::Kind::kSnapshot:
      return "snapshot";
    case Step::Kind::kContext:
      return "context";
    case Step::Kind::kHoldOutput:
      return "hold output";
    case Step::Kind::kReleaseOutput:
      return "release output";
    case Step::Kind::kConsume:
      return "consume";
  }
  return "?";
}

// ---- Scenario ---------------------------------------------------------------

Scenario::Scenario(ClientOptions options) : options_(std::move(options)) {}

Scenario& Scenario::Add(Step step) {
  steps_.push_back(std::move(step));
  return *this;
}

Scenario& Scenario::Send(Server server) {
  Step step;
  step.kind = Step::Kind::kSend;
  step.server = std::move(server);
  return Add(std::move(step));
}

Scenario& Scenario::Eof() {
  Step step;
  step.kind = Step::Kind::kEof;
  return Add(std::move(step));
}

Scenario& Scenario::TransportError(absl::Status error) {
  Step step;
  step.kind = Step::Kind::kTransportError;
  step.error = std::move(error);
  return Add(std::move(step));
}

Scenario& Scenario::Expect(ClientSends checks) {
  Step step;
  step.kind = Step::Kind::kExpect;
  step.expect = std::move(checks);
  return Add(std::move(step));
}

Scenario& Scenario::Call(std::string name,
                         std::function<absl::Status(Client&, RunContext&)> fn) {
  Step step;
  step.kind = Step::Kind::kCall;
  step.name = name;
  step.call = [name, fn](Client& c, RunContext& ctx) {
    return absl::StrCat("call ", name, " -> ", StatusText(fn(c, ctx)));
  };
  return Add(std::move(step));
}

Scenario& Scenario::Issue(
    std::string label,
    std::function<absl::StatusOr<Cookie>(Client&, RunContext&)> fn) {
  Step step;
  step.kind = Step::Kind::kCall;
  step.name = label;
  step.call = [label, fn](Client& c, RunContext& ctx) {
    absl::StatusOr<Cookie> cookie = fn(c, ctx);
    if (!cookie.ok()) {
      return absl::StrCat("issue ", label, " -> ", StatusText(cookie.status()));
    }
    ctx.requests[label].cookie = *cookie;
    ctx.accepted.insert(*cookie);
    return absl::StrCat("issue ", label, " -> cookie=", *cookie);
  };
  return Add(std::move(step));
}

Scenario& Scenario::IssueRead(std::string label, uint64_t offset, size_t length,
                              ReadOptions options, uint8_t fill) {
  return Issue(label, [=](Client& c, RunContext& ctx) {
    return c.Read(offset, absl::MakeSpan(ctx.Buffer(label, length, fill)),
                  options);
  });
}

Scenario& Scenario::Do(std::function<std::string(Client&, RunContext&)> fn) {
  Step step;
  step.kind = Step::Kind::kCall;
  step.call = std::move(fn);
  return Add(std::move(step));
}

Scenario& Scenario::Snapshot() {
  Step step;
  step.kind = Step::Kind::kSnapshot;
  return Add(std::move(step));
}

Scenario& Scenario::Context(std::function<void(RunContext&)> fn) {
  Step step;
  step.kind = Step::Kind::kContext;
  step.context = std::move(fn);
  return Add(std::move(step));
}

Scenario& Scenario::HoldOutput() {
  Step step;
  step.kind = Step::Kind::kHoldOutput;
  return Add(std::move(step));
}

Scenario& Scenario::Consume(size_t n) {
  Step step;
  step.kind = Step::Kind::kConsume;
  step.consume = n;
  return Add(std::move(step));
}

Scenario& Scenario::ReleaseOutput() {
  Step step;
  step.kind = Step::Kind::kReleaseOutput;
  return Add(std::move(step));
}

}  // namespace nbd::testing
