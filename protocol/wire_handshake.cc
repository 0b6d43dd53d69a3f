// Encoders and decoders for the handshake: greetings, client flags, option
// requests and replies and their payloads (NBD_REP_INFO, NBD_REP_SERVER, meta
// contexts). The layouts follow NetworkBlockDevice/nbd doc/proto.md.
//
// Errors follow the two conventions in protocol/wire_codec.h.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "protocol/constants.h"
#include "protocol/endian.h"
#include "protocol/wire.h"
#include "protocol/wire_codec.h"

namespace nbd {

using wire_internal::BadMagic;
using wire_internal::BadPayloadLength;
using wire_internal::CheckInfoType;
using wire_internal::CheckStringLength;
using wire_internal::NeedFixed;
using wire_internal::NeedFixedMagic;
using wire_internal::Put16;
using wire_internal::Put32;
using wire_internal::Put64;
using wire_internal::PutRaw;
using wire_internal::PutString32;
using wire_internal::Reader;
using wire_internal::ToString;

// ---- Handshake --------------------------------------------------------------

std::array<uint8_t, kOldstyleGreetingSize> EncodeOldstyleGreeting(
    const OldstyleGreeting& g) {
  std::array<uint8_t, kOldstyleGreetingSize> out{};  // trailing 124 zeroes
  StoreBe64(out.data(), kNbdMagic);
  StoreBe64(out.data() + 8, kOldstyleMagic);
  StoreBe64(out.data() + 16, g.export_size);
  StoreBe16(out.data() + 24, g.global_flags);
  StoreBe16(out.data() + 26, g.transmission_flags);
  return out;
}

absl::StatusOr<OldstyleGreeting> DecodeOldstyleGreeting(ByteSpan in) {
  constexpr char kWhat[] = "oldstyle greeting";
  if (auto s = NeedFixedMagic(in, kOldstyleGreetingSize, kNbdMagic, kWhat);
      !s.ok()) {
    return s;
  }
  if (uint64_t m = LoadBe64(in.data() + 8); m != kOldstyleMagic) {
    return BadMagic(kWhat, kOldstyleMagic, m);
  }
  OldstyleGreeting g;
  g.export_size = LoadBe64(in.data() + 16);
  g.global_flags = LoadBe16(in.data() + 24);
  g.transmission_flags = LoadBe16(in.data() + 26);
  return g;  // The 124 reserved bytes are ignored.
}

std::array<uint8_t, kNewstyleGreetingSize> EncodeNewstyleGreeting(
    const NewstyleGreeting& g) {
  std::array<uint8_t, kNewstyleGreetingSize> out{};
  StoreBe64(out.data(), kNbdMagic);
  StoreBe64(out.data() + 8, kIHaveOptMagic);
  StoreBe16(out.data() + 16, g.handshake_flags);
  return out;
}

absl::StatusOr<NewstyleGreeting> DecodeNewstyleGreeting(ByteSpan in) {
  constexpr char kWhat[] = "newstyle greeting";
  if (auto s = NeedFixedMagic(in, kNewstyleGreetingSize, kNbdMagic, kWhat);
      !s.ok()) {
    return s;
  }
  if (uint64_t m = LoadBe64(in.data() + 8); m != kIHaveOptMagic) {
    return BadMagic(kWhat, kIHaveOptMagic, m);
  }
  NewstyleGreeting g;
  g.handshake_flags = LoadBe16(in.data() + 16);
  return g;
}

absl::StatusOr<GreetingKind> DecodeGreetingKind(ByteSpan in) {
  constexpr char kWhat[] = "greeting magics";
  if (auto s = NeedFixedMagic(in, 16, kNbdMagic, kWhat); !s.ok()) return s;
  const uint64_t m = LoadBe64(in.data() + 8);
  if (m == kOldstyleMagic) return GreetingKind::kOldstyle;
  if (m == kIHaveOptMagic) return GreetingKind::kNewstyle;
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s: unknown second magic 0x%x (expected oldstyle 0x%x or IHAVEOPT "
      "0x%x)",
      kWhat, m, kOldstyleMagic, kIHaveOptMagic));
}

std::array<uint8_t, kClientFlagsSize> EncodeClientFlags(uint32_t flags) {
  std::array<uint8_t, kClientFlagsSize> out{};
  StoreBe32(out.data(), flags);
  return out;
}

absl::StatusOr<uint32_t> DecodeClientFlags(ByteSpan in) {
  constexpr char kWhat[] = "client flags";
  if (auto s = NeedFixed(in, kClientFlagsSize, kWhat); !s.ok()) return s;
  const uint32_t flags = LoadBe32(in.data());
  if ((flags & ~kClientFlagsKnown) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: unknown bits 0x%x set in 0x%x", kWhat,
                        flags & ~kClientFlagsKnown, flags));
  }
  return flags;
}

// ---- Options ----------------------------------------------------------------

std::array<uint8_t, kOptionRequestHeaderSize> EncodeOptionRequestHeader(
    const OptionRequestHeader& h) {
  std::array<uint8_t, kOptionRequestHeaderSize> out{};
  StoreBe64(out.data(), kIHaveOptMagic);
  StoreBe32(out.data() + 8, h.option);
  StoreBe32(out.data() + 12, h.length);
  return out;
}

absl::StatusOr<OptionRequestHeader> DecodeOptionRequestHeader(ByteSpan in) {
  constexpr char kWhat[] = "option request header";
  if (auto s =
          NeedFixedMagic(in, kOptionRequestHeaderSize, kIHaveOptMagic, kWhat);
      !s.ok()) {
    return s;
  }
  OptionRequestHeader h;
  h.option = LoadBe32(in.data() + 8);
  h.length = LoadBe32(in.data() + 12);
  return h;
}

Bytes EncodeOptionRequest(Option option, ByteSpan data) {
  const size_t n =
      std::min<size_t>(data.size(), std::numeric_limits<uint32_t>::max());
  const auto header = EncodeOptionRequestHeader(
      {static_cast<uint32_t>(option), static_cast<uint32_t>(n)});
  Bytes out;
  out.reserve(header.size() + n);
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.begin() + n);
  return out;
}

std::array<uint8_t, kOptionReplyHeaderSize> EncodeOptionReplyHeader(
    const OptionReplyHeader& h) {
  std::array<uint8_t, kOptionReplyHeaderSize> out{};
  StoreBe64(out.data(), kOptionReplyMagic);
  StoreBe32(out.data() + 8, h.option);
  StoreBe32(out.data() + 12, h.type);
  StoreBe32(out.data() + 16, h.length);
  return out;
}

absl::StatusOr<OptionReplyHeader> DecodeOptionReplyHeader(ByteSpan in) {
  constexpr char kWhat[] = "option reply header";
  if (auto s =
          NeedFixedMagic(in, kOptionReplyHeaderSize, kOptionReplyMagic, kWhat);
      !s.ok()) {
    return s;
  }
  OptionReplyHeader h;
  h.option = LoadBe32(in.data() + 8);
  h.type = LoadBe32(in.data() + 12);
  h.length = LoadBe32(in.data() + 16);
  return h;
}

Bytes EncodeExportNameReply(const ExportNameReply& r, bool no_zeroes) {
  Bytes out(no_zeroes ? kExportNameReplyNoZeroesSize : kExportNameReplySize, 0);
  StoreBe64(out.data(), r.export_size);
  StoreBe16(out.data() + 8, r.transmission_flags);
  return out;
}

absl::StatusOr<ExportNameReply> DecodeExportNameReply(ByteSpan in) {
  if (auto s = NeedFixed(in, kExportNameReplyNoZeroesSize, "export-name reply");
      !s.ok()) {
    return s;
  }
  ExportNameReply r;
  r.export_size = LoadBe64(in.data());
  r.transmission_flags = LoadBe16(in.data() + 8);
  return r;
}

absl::StatusOr<ExportNameReply> DecodeExportNameReply(ByteSpan in,
                                                      bool no_zeroes) {
  if (auto s = NeedFixed(
          in, no_zeroes ? kExportNameReplyNoZeroesSize : kExportNameReplySize,
          "export-name reply");
      !s.ok()) {
    return s;
  }
  return DecodeExportNameReply(in.first(kExportNameReplyNoZeroesSize));
}

Bytes EncodeInfoRequest(const InfoRequest& r) {
  const size_t n = std::min<size_t>(r.info_requests.size(),
                                    std::numeric_limits<uint16_t>::max());
  Bytes out;
  out.reserve(4 + r.export_name.size() + 2 + 2 * n);
  PutString32(out, r.export_name);
  Put16(out, static_cast<uint16_t>(n));
  for (size_t i = 0; i < n; ++i) Put16(out, r.info_requests[i]);
  return out;
}

absl::StatusOr<InfoRequest> DecodeInfoRequest(ByteSpan in) {
  Reader rd(in, "NBD_OPT_INFO/GO data");
  InfoRequest r;
  const uint32_t namelen = rd.U32("name length");
  r.export_name = rd.String(namelen, "export name");
  const uint16_t nreq = rd.U16("request count");
  if (!rd.ok()) return rd.status();
  // Exactly nreq 16-bit requests must follow; no more, no less.
  if (rd.remaining() != size_t{2} * nreq) {
    rd.Fail(absl::StrFormat("request count %d needs %d bytes but %d remain",
                            nreq, size_t{2} * nreq, rd.remaining()));
    return rd.status();
  }
  r.info_requests.reserve(nreq);
  for (uint16_t i = 0; i < nreq; ++i) {
    r.info_requests.push_back(rd.U16("info request"));
  }
  rd.ExpectEnd();
  if (!rd.ok()) return rd.status();
  return r;
}

// ---- NBD_REP_INFO payloads --------------------------------------------------

Bytes EncodeInfoExport(const InfoExport& i) {
  Bytes out;
  out.reserve(kInfoExportSize);
  Put16(out, static_cast<uint16_t>(InfoType::kExport));
  Put64(out, i.export_size);
  Put16(out, i.transmission_flags);
  return out;
}

Bytes EncodeInfoName(const InfoName& i) {
  Bytes out;
  out.reserve(2 + i.name.size());
  Put16(out, static_cast<uint16_t>(InfoType::kName));
  PutRaw(out, i.name.data(), i.name.size());
  return out;
}

Bytes EncodeInfoDescription(const InfoDescription& i) {
  Bytes out;
  out.reserve(2 + i.description.size());
  Put16(out, static_cast<uint16_t>(InfoType::kDescription));
  PutRaw(out, i.description.data(), i.description.size());
  return out;
}

Bytes EncodeInfoBlockSize(const InfoBlockSize& i) {
  Bytes out;
  out.reserve(kInfoBlockSizeSize);
  Put16(out, static_cast<uint16_t>(InfoType::kBlockSize));
  Put32(out, i.minimum);
  Put32(out, i.preferred);
  Put32(out, i.maximum);
  return out;
}

absl::StatusOr<uint16_t> DecodeInfoType(ByteSpan in) {
  if (in.size() < 2) {
    return BadPayloadLength("NBD_REP_INFO", in.size(),
                            "need at least 2 bytes for the info type");
  }
  return LoadBe16(in.data());
}

absl::StatusOr<InfoExport> DecodeInfoExport(ByteSpan in) {
  constexpr char kWhat[] = "NBD_INFO_EXPORT";
  if (in.size() != kInfoExportSize) {
    return BadPayloadLength(kWhat, in.size(), "must be exactly 12");
  }
  if (auto s = CheckInfoType(in, InfoType::kExport, kWhat); !s.ok()) return s;
  InfoExport i;
  i.export_size = LoadBe64(in.data() + 2);
  i.transmission_flags = LoadBe16(in.data() + 10);
  return i;
}

absl::StatusOr<InfoName> DecodeInfoName(ByteSpan in) {
  constexpr char kWhat[] = "NBD_INFO_NAME";
  if (in.size() < 2) {
    return BadPayloadLength(kWhat, in.size(), "must be at least 2");
  }
  if (auto s = CheckInfoType(in, InfoType::kName, kWhat); !s.ok()) return s;
  const ByteSpan name = in.subspan(2);
  if (auto s = CheckStringLength(kWhat, "name", name.size()); !s.ok()) {
    return s;
  }
  return InfoName{ToString(name)};
}

absl::StatusOr<InfoDescription> DecodeInfoDescription(ByteSpan in) {
  constexpr char kWhat[] = "NBD_INFO_DESCRIPTION";
  if (in.size() < 2) {
    return BadPayloadLength(kWhat, in.size(), "must be at least 2");
  }
  if (auto s = CheckInfoType(in, InfoType::kDescription, kWhat); !s.ok()) {
    return s;
  }
  const ByteSpan desc = in.subspan(2);
  if (auto s = CheckStringLength(kWhat, "description", desc.size()); !s.ok()) {
    return s;
  }
  return InfoDescription{ToString(desc)};
}

absl::StatusOr<InfoBlockSize> DecodeInfoBlockSize(ByteSpan in) {
  constexpr char kWhat[] = "NBD_INFO_BLOCK_SIZE";
  if (in.size() != kInfoBlockSizeSize) {
    return BadPayloadLength(kWhat, in.size(), "must be exactly 14");
  }
  if (auto s = CheckInfoType(in, InfoType::kBlockSize, kWhat); !s.ok()) {
    return s;
  }
  InfoBlockSize i;
  i.minimum = LoadBe32(in.data() + 2);
  i.preferred = LoadBe32(in.data() + 6);
  i.maximum = LoadBe32(in.data() + 10);
  return i;
}

// ---- NBD_REP_SERVER and meta contexts ---------------------------------------

Bytes EncodeServerReply(const ServerReply& r) {
  Bytes out;
  out.reserve(4 + r.name.size() + r.description.size());
  PutString32(out, r.name);
  PutRaw(out, r.description.data(), r.description.size());
  return out;
}

absl::StatusOr<ServerReply> DecodeServerReply(ByteSpan in) {
  Reader rd(in, "NBD_REP_SERVER payload");
  ServerReply r;
  const uint32_t namelen = rd.U32("name length");
  r.name = rd.String(namelen, "name");
  r.description = rd.Rest("description");
  if (!rd.ok()) return rd.status();
  return r;
}

Bytes EncodeMetaContextRequest(const MetaContextRequest& r) {
  const size_t n =
      std::min<size_t>(r.queries.size(), std::numeric_limits<uint32_t>::max());
  Bytes out;
  size_t total = 4 + r.export_name.size() + 4;
  for (size_t i = 0; i < n; ++i) total += 4 + r.queries[i].size();
  out.reserve(total);
  PutString32(out, r.export_name);
  Put32(out, static_cast<uint32_t>(n));
  for (size_t i = 0; i < n; ++i) PutString32(out, r.queries[i]);
  return out;
}

absl::StatusOr<MetaContextRequest> DecodeMetaContextRequest(ByteSpan in) {
  Reader rd(in, "meta context request data");
  MetaContextRequest r;
  const uint32_t namelen = rd.U32("name length");
  r.export_name = rd.String(namelen, "export name");
  const uint32_t nqueries = rd.U32("query count");
  if (!rd.ok()) return rd.status();
  // Every query takes at least its 4-byte length: bound the count by the
  // remaining input before reserving anything.
  if (nqueries > rd.remaining() / 4) {
    rd.Fail(
        absl::StrFormat("query count %d needs at least %d bytes but %d remain",
                        nqueries, uint64_t{4} * nqueries, rd.remaining()));
    return rd.status();
  }
  r.queries.reserve(nqueries);
  for (uint32_t i = 0; i < nqueries && rd.ok(); ++i) {
    const uint32_t qlen = rd.U32("query length");
    r.queries.push_back(rd.String(qlen, "query"));
  }
  rd.ExpectEnd();
  if (!rd.ok()) return rd.status();
  return r;
}

Bytes EncodeMetaContextReply(const MetaContextReply& r) {
  Bytes out;
  out.reserve(4 + r.name.size());
  Put32(out, r.context_id);
  PutRaw(out, r.name.data(), r.name.size());
  return out;
}

absl::StatusOr<MetaContextReply> DecodeMetaContextReply(ByteSpan in) {
  constexpr char kWhat[] = "NBD_REP_META_CONTEXT";
  if (in.size() < 5) {
    return BadPayloadLength(kWhat, in.size(),
                            "must be at least 5: id and a non-empty name");
  }
  const ByteSpan name = in.subspan(4);
  if (auto s = CheckStringLength(kWhat, "name", name.size()); !s.ok()) {
    return s;
  }
  MetaContextReply r;
  r.context_id = LoadBe32(in.data());
  r.name = ToString(name);
  return r;
}

}  // namespace nbd
