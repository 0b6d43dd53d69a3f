#include "tests/protocol/server/test_util.h"

#include "gtest/gtest.h"
#include "protocol/endian.h"

namespace nbd::test {

ServerOptions TestOptions() {
  ServerOptions o;
  ExportInfo disk;
  disk.name = "disk";
  disk.description = "scratch disk";
  disk.size = 1 << 20;
  disk.can_flush = disk.can_fua = disk.can_trim = disk.can_zero = true;
  disk.can_fast_zero = disk.can_cache = disk.can_multi_conn = true;
  disk.max_block = 256 * 1024;
  ExportInfo ro;
  ro.name = "ro";
  ro.size = 64 * 1024;
  ro.read_only = true;
  ro.can_flush = true;
  o.exports = {disk, ro};
  return o;
}

Bytes Concat(std::initializer_list<ByteSpan> parts) {
  Bytes out;
  for (ByteSpan p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes Str(const std::string& s) { return Bytes(s.begin(), s.end()); }

Bytes Flags(uint32_t client_flags) {
  auto a = EncodeClientFlags(client_flags);
  return Bytes(a.begin(), a.end());
}

Bytes Opt(uint32_t option, ByteSpan data) {
  auto h =
      EncodeOptionRequestHeader({option, static_cast<uint32_t>(data.size())});
  return Concat({h, data});
}

Bytes Opt(Option option, ByteSpan data) {
  return Opt(static_cast<uint32_t>(option), data);
}

Bytes GoData(const std::string& name, std::vector<uint16_t> infos) {
  return EncodeInfoRequest({name, std::move(infos)});
}

Bytes MetaData(const std::string& name, std::vector<std::string> queries) {
  return EncodeMetaContextRequest({name, std::move(queries)});
}

Bytes Req(bool extended, Command cmd, uint64_t cookie, uint64_t offset,
          uint64_t length, uint16_t flags) {
  const uint16_t type = static_cast<uint16_t>(cmd);
  if (extended) {
    auto a = EncodeExtendedRequest({flags, type, cookie, offset, length});
    return Bytes(a.begin(), a.end());
  }
  auto a = EncodeRequest(
      {flags, type, cookie, offset, static_cast<uint32_t>(length)});
  return Bytes(a.begin(), a.end());
}

Bytes FeedAll(ServerSession& s, ByteSpan bytes) {
  absl::StatusOr<size_t> n = s.Feed(bytes);
  EXPECT_TRUE(n.ok()) << n.status();
  if (n.ok()) {
    EXPECT_EQ(*n, bytes.size());
  }
  return TakeOutput(s);
}

Bytes TakeOutput(ServerSession& s) {
  Bytes out;
  while (s.pending_output_bytes() > 0) {
    IoSlice slices[16];
    size_t n = s.PeekOutput(absl::MakeSpan(slices));
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      out.insert(out.end(), slices[i].data, slices[i].data + slices[i].size);
      total += slices[i].size;
    }
    EXPECT_TRUE(s.ConsumeOutput(total).ok());
  }
  return out;
}

std::vector<ServerEvent> TakeEvents(ServerSession& s) {
  std::vector<ServerEvent> out;
  while (auto e = s.PollEvent()) out.push_back(std::move(*e));
  return out;
}

std::vector<ServerRequest> TakeRequests(ServerSession& s) {
  std::vector<ServerRequest> out;
  for (ServerEvent& e : TakeEvents(s)) {
    if (auto* r = std::get_if<ServerRequest>(&e)) out.push_back(*r);
  }
  return out;
}

std::vector<OptReply> ParseOptReplies(ByteSpan bytes) {
  std::vector<OptReply> out;
  size_t pos = 0;
  while (pos < bytes.size()) {
    absl::StatusOr<OptionReplyHeader> h =
        DecodeOptionReplyHeader(bytes.subspan(pos));
    EXPECT_TRUE(h.ok()) << h.status();
    if (!h.ok()) break;
    pos += kOptionReplyHeaderSize;
    EXPECT_LE(pos + h->length, bytes.size());
    if (pos + h->length > bytes.size()) break;
    OptReply r{*h, Bytes(bytes.begin() + pos, bytes.begin() + pos + h->length)};
    pos += h->length;
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<ParsedReply> ParseReplies(ByteSpan bytes,
                                      uint64_t simple_read_length) {
  std::vector<ParsedReply> out;
  size_t pos = 0;
  while (pos + 4 <= bytes.size()) {
    ParsedReply r;
    r.magic = LoadBe32(bytes.data() + pos);
    uint64_t length = 0;
    if (r.magic == kSimpleReplyMagic) {
      if (pos + kSimpleReplySize > bytes.size()) break;
      auto s = DecodeSimpleReply(bytes.subspan(pos));
      r.error = s->error;
      r.cookie = s->cookie;
      pos += kSimpleReplySize;
      if (r.error == 0) length = simple_read_length;
    } else if (r.magic == kStructuredReplyMagic) {
      if (pos + kStructuredReplyHeaderSize > bytes.size()) break;
      auto h = DecodeStructuredReplyHeader(bytes.subspan(pos));
      r.flags = h->flags;
      r.type = h->type;
      r.cookie = h->cookie;
      length = h->length;
      pos += kStructuredReplyHeaderSize;
    } else if (r.magic == kExtendedReplyMagic) {
      if (pos + kExtendedReplyHeaderSize > bytes.size()) break;
      auto h = DecodeExtendedReplyHeader(bytes.subspan(pos));
      r.flags = h->flags;
      r.type = h->type;
      r.cookie = h->cookie;
      r.offset = h->offset;
      length = h->length;
      pos += kExtendedReplyHeaderSize;
    } else {
      ADD_FAILURE() << "bad reply magic " << r.magic;
      return out;
    }
    EXPECT_LE(pos + length, bytes.size());
    if (pos + length > bytes.size()) break;
    r.payload.assign(bytes.begin() + pos, bytes.begin() + pos + length);
    pos += length;
    out.push_back(std::move(r));
  }
  EXPECT_EQ(pos, bytes.size()) << "trailing bytes";
  return out;
}

void Negotiate(ServerSession& s, bool structured, bool extended, bool meta,
               const std::string& name) {
  TakeOutput(s);  // greeting
  Bytes in = Flags(kClientFlagFixedNewstyle | kClientFlagNoZeroes);
  if (extended) {
    Bytes o = Opt(Option::kExtendedHeaders);
    in.insert(in.end(), o.begin(), o.end());
  }
  if (structured && !extended) {
    Bytes o = Opt(Option::kStructuredReply);
    in.insert(in.end(), o.begin(), o.end());
  }
  if (meta) {
    Bytes o =
        Opt(Option::kSetMetaContext, MetaData(name, {kContextBaseAllocation}));
    in.insert(in.end(), o.begin(), o.end());
  }
  Bytes go = Opt(Option::kGo, GoData(name));
  in.insert(in.end(), go.begin(), go.end());
  FeedAll(s, in);
  ASSERT_EQ(s.phase(), ServerPhase::kTransmission);
  EXPECT_EQ(s.structured_replies(), structured || extended);
  EXPECT_EQ(s.extended_headers(), extended);
  TakeEvents(s);
}

}  // namespace nbd::test
