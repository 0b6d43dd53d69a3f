// Encoders and decoders for the fixed NBD wire structures. See wire.h for
// the contract; the layouts follow NetworkBlockDevice/nbd doc/proto.md.
//
// Two error conventions:
//  - Fixed-size structures read from the byte stream (greetings, headers,
//    requests, simple replies) fail with OutOfRange when the span is shorter
//    than the structure; bytes past the structure are ignored.
//  - Payloads (option data, option-reply payloads, chunk payloads) are
//    given as exactly the bytes the header announced. Any disagreement
//    between that length and the payload's own fields, including a payload
//    too short for its fixed part, is InvalidArgument.
#include "protocol/wire.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "protocol/constants.h"
#include "protocol/endian.h"

namespace nbd {
namespace {

// ---- Decoding helpers ------------------------------------------------------

// OutOfRange unless `in` holds at least `need` bytes.
absl::Status NeedFixed(ByteSpan in, size_t need, const char* what) {
  if (in.size() < need) {
    return absl::OutOfRangeError(
        absl::StrFormat("%s: need %d bytes, got %d", what, need, in.size()));
  }
  return absl::OkStatus();
}

absl::Status BadMagic(const char* what, uint64_t want, uint64_t got) {
  return absl::InvalidArgumentError(
      absl::StrFormat("%s: bad magic 0x%x (expected 0x%x)", what, got, want));
}

absl::Status BadPayloadLength(const char* what, size_t got,
                              const char* expected) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s: payload length %d is invalid (%s)", what, got, expected));
}

absl::Status CheckInfoType(ByteSpan in, InfoType want, const char* what) {
  // Callers have checked in.size() >= 2.
  const uint16_t got = LoadBe16(in.data());
  if (got != static_cast<uint16_t>(want)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: info type is %d, expected %d", what, got,
                        static_cast<uint16_t>(want)));
  }
  return absl::OkStatus();
}

absl::Status CheckStringLength(const char* what, const char* field,
                               size_t len) {
  if (len > kMaxStringLength) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %s length %d exceeds the %d-byte string limit",
                        what, field, len, kMaxStringLength));
  }
  return absl::OkStatus();
}

std::string ToString(ByteSpan s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

// A bounds-checked cursor over a payload. The first failure is sticky:
// later reads return zero/empty values and do not touch the input, and
// status() reports the first error. Nothing is copied before its length
// has been checked against the remaining input.
class Reader {
 public:
  Reader(ByteSpan in, const char* what) : in_(in), what_(what) {}

  bool ok() const { return status_.ok(); }
  const absl::Status& status() const { return status_; }
  size_t remaining() const { return in_.size() - pos_; }

  uint16_t U16(const char* field) {
    if (!Need(2, field)) return 0;
    const uint16_t v = LoadBe16(in_.data() + pos_);
    pos_ += 2;
    return v;
  }
  uint32_t U32(const char* field) {
    if (!Need(4, field)) return 0;
    const uint32_t v = LoadBe32(in_.data() + pos_);
    pos_ += 4;
    return v;
  }
  uint64_t U64(const char* field) {
    if (!Need(8, field)) return 0;
    const uint64_t v = LoadBe64(in_.data() + pos_);
    pos_ += 8;
    return v;
  }
  // A string of `len` bytes, checked against kMaxStringLength and against
  // the remaining input before anything is allocated or copied.
  std::string String(uint64_t len, const char* field) {
    if (!ok()) return {};
    if (len > kMaxStringLength) {
      Fail(absl::StrFormat("%s length %d exceeds the %d-byte string limit",
                           field, len, kMaxStringLength));
      return {};
    }
    if (!Need(static_cast<size_t>(len), field)) return {};
    std::string s = ToString(in_.subspan(pos_, static_cast<size_t>(len)));
    pos_ += static_cast<size_t>(len);
    return s;
  }
  // The rest of the input as a string.
  std::string Rest(const char* field) { return String(remaining(), field); }
  // Fails unless every byte has been consumed.
  void ExpectEnd() {
    if (ok() && remaining() != 0) {
      Fail(absl::StrFormat("%d trailing bytes after offset %d", remaining(),
                           pos_));
    }
  }
  void Fail(const std::string& msg) {
    if (ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrFormat("%s (%d bytes): %s", what_, in_.size(), msg));
    }
  }

 private:
  bool Need(size_t n, const char* field) {
    if (!ok()) return false;
    if (remaining() < n) {
      Fail(absl::StrFormat("%s needs %d bytes at offset %d but only %d remain",
                           field, n, pos_, remaining()));
      return false;
    }
    return true;
  }

  ByteSpan in_;
  const char* what_;
  size_t pos_ = 0;
  absl::Status status_;
};

// ---- Encoding helpers ------------------------------------------------------

void Put16(Bytes& out, uint16_t v) {
  uint8_t b[2];
  StoreBe16(b, v);
  out.insert(out.end(), b, b + 2);
}
void Put32(Bytes& out, uint32_t v) {
  uint8_t b[4];
  StoreBe32(b, v);
  out.insert(out.end(), b, b + 4);
}
void Put64(Bytes& out, uint64_t v) {
  uint8_t b[8];
  StoreBe64(b, v);
  out.insert(out.end(), b, b + 8);
}
void PutRaw(Bytes& out, const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  out.insert(out.end(), p, p + n);
}
// A string preceded by its 32-bit length. Encoders never fail, so a string
// too long for the field is cut to fit; the frame stays self-consistent.
void PutString32(Bytes& out, const std::string& s) {
  const size_t n =
      std::min<size_t>(s.size(), std::numeric_limits<uint32_t>::max());
  Put32(out, static_cast<uint32_t>(n));
  PutRaw(out, s.data(), n);
}

}  // namespace

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
  if (auto s = NeedFixed(in, kOldstyleGreetingSize, kWhat); !s.ok()) return s;
  if (uint64_t m = LoadBe64(in.data()); m != kNbdMagic) {
    return BadMagic(kWhat, kNbdMagic, m);
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
  if (auto s = NeedFixed(in, kNewstyleGreetingSize, kWhat); !s.ok()) return s;
  if (uint64_t m = LoadBe64(in.data()); m != kNbdMagic) {
    return BadMagic(kWhat, kNbdMagic, m);
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
  if (auto s = NeedFixed(in, 16, kWhat); !s.ok()) return s;
  if (uint64_t m = LoadBe64(in.data()); m != kNbdMagic) {
    return BadMagic(kWhat, kNbdMagic, m);
  }
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
  if (auto s = NeedFixed(in, kOptionRequestHeaderSize, kWhat); !s.ok()) {
    return s;
  }
  if (uint64_t m = LoadBe64(in.data()); m != kIHaveOptMagic) {
    return BadMagic(kWhat, kIHaveOptMagic, m);
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
  if (auto s = NeedFixed(in, kOptionReplyHeaderSize, kWhat); !s.ok()) {
    return s;
  }
  if (uint64_t m = LoadBe64(in.data()); m != kOptionReplyMagic) {
    return BadMagic(kWhat, kOptionReplyMagic, m);
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

// ---- NBD_REP_INFO payloads
// ----------------------------------------------------

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

// ---- NBD_REP_SERVER and meta contexts
// ------------------------------------------

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

// ---- Transmission: requests
// ----------------------------------------------------

std::array<uint8_t, kRequestSize> EncodeRequest(const Request& r) {
  std::array<uint8_t, kRequestSize> out{};
  StoreBe32(out.data(), kRequestMagic);
  StoreBe16(out.data() + 4, r.flags);
  StoreBe16(out.data() + 6, r.type);
  StoreBe64(out.data() + 8, r.cookie);
  StoreBe64(out.data() + 16, r.offset);
  StoreBe32(out.data() + 24, r.length);
  return out;
}

absl::StatusOr<Request> DecodeRequest(ByteSpan in) {
  constexpr char kWhat[] = "request";
  if (auto s = NeedFixed(in, kRequestSize, kWhat); !s.ok()) return s;
  if (uint32_t m = LoadBe32(in.data()); m != kRequestMagic) {
    return BadMagic(kWhat, kRequestMagic, m);
  }
  Request r;
  r.flags = LoadBe16(in.data() + 4);
  r.type = LoadBe16(in.data() + 6);
  r.cookie = LoadBe64(in.data() + 8);
  r.offset = LoadBe64(in.data() + 16);
  r.length = LoadBe32(in.data() + 24);
  return r;
}

std::array<uint8_t, kExtendedRequestSize> EncodeExtendedRequest(
    const ExtendedRequest& r) {
  std::array<uint8_t, kExtendedRequestSize> out{};
  StoreBe32(out.data(), kExtendedRequestMagic);
  StoreBe16(out.data() + 4, r.flags);
  StoreBe16(out.data() + 6, r.type);
  StoreBe64(out.data() + 8, r.cookie);
  StoreBe64(out.data() + 16, r.offset);
  StoreBe64(out.data() + 24, r.length);
  return out;
}

absl::StatusOr<ExtendedRequest> DecodeExtendedRequest(ByteSpan in) {
  constexpr char kWhat[] = "extended request";
  if (auto s = NeedFixed(in, kExtendedRequestSize, kWhat); !s.ok()) return s;
  if (uint32_t m = LoadBe32(in.data()); m != kExtendedRequestMagic) {
    return BadMagic(kWhat, kExtendedRequestMagic, m);
  }
  ExtendedRequest r;
  r.flags = LoadBe16(in.data() + 4);
  r.type = LoadBe16(in.data() + 6);
  r.cookie = LoadBe64(in.data() + 8);
  r.offset = LoadBe64(in.data() + 16);
  r.length = LoadBe64(in.data() + 24);
  return r;
}

Bytes EncodeBlockStatusPayload(const BlockStatusPayload& p) {
  Bytes out;
  out.reserve(8 + 4 * p.context_ids.size());
  Put64(out, p.effect_length);
  for (uint32_t id : p.context_ids) Put32(out, id);
  return out;
}

absl::StatusOr<BlockStatusPayload> DecodeBlockStatusPayload(ByteSpan in) {
  constexpr char kWhat[] = "block status request payload";
  if (in.size() < 12 || (in.size() - 8) % 4 != 0) {
    return BadPayloadLength(kWhat, in.size(),
                            "must be 8 + 4*n with n >= 1 context ids");
  }
  const size_t n = (in.size() - 8) / 4;
  BlockStatusPayload p;
  p.effect_length = LoadBe64(in.data());
  p.context_ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    p.context_ids.push_back(LoadBe32(in.data() + 8 + 4 * i));
  }
  return p;
}

// ---- Transmission: replies
// ------------------------------------------------------

absl::StatusOr<uint32_t> DecodeReplyMagic(ByteSpan in) {
  if (auto s = NeedFixed(in, 4, "reply magic"); !s.ok()) return s;
  return LoadBe32(in.data());
}

std::array<uint8_t, kSimpleReplySize> EncodeSimpleReply(const SimpleReply& r) {
  std::array<uint8_t, kSimpleReplySize> out{};
  StoreBe32(out.data(), kSimpleReplyMagic);
  StoreBe32(out.data() + 4, r.error);
  StoreBe64(out.data() + 8, r.cookie);
  return out;
}

absl::StatusOr<SimpleReply> DecodeSimpleReply(ByteSpan in) {
  constexpr char kWhat[] = "simple reply";
  if (auto s = NeedFixed(in, kSimpleReplySize, kWhat); !s.ok()) return s;
  if (uint32_t m = LoadBe32(in.data()); m != kSimpleReplyMagic) {
    return BadMagic(kWhat, kSimpleReplyMagic, m);
  }
  SimpleReply r;
  r.error = LoadBe32(in.data() + 4);
  r.cookie = LoadBe64(in.data() + 8);
  return r;
}

std::array<uint8_t, kStructuredReplyHeaderSize> EncodeStructuredReplyHeader(
    const StructuredReplyHeader& h) {
  std::array<uint8_t, kStructuredReplyHeaderSize> out{};
  StoreBe32(out.data(), kStructuredReplyMagic);
  StoreBe16(out.data() + 4, h.flags);
  StoreBe16(out.data() + 6, h.type);
  StoreBe64(out.data() + 8, h.cookie);
  StoreBe32(out.data() + 16, h.length);
  return out;
}

absl::StatusOr<StructuredReplyHeader> DecodeStructuredReplyHeader(ByteSpan in) {
  constexpr char kWhat[] = "structured reply header";
  if (auto s = NeedFixed(in, kStructuredReplyHeaderSize, kWhat); !s.ok()) {
    return s;
  }
  if (uint32_t m = LoadBe32(in.data()); m != kStructuredReplyMagic) {
    return BadMagic(kWhat, kStructuredReplyMagic, m);
  }
  StructuredReplyHeader h;
  h.flags = LoadBe16(in.data() + 4);
  h.type = LoadBe16(in.data() + 6);
  h.cookie = LoadBe64(in.data() + 8);
  h.length = LoadBe32(in.data() + 16);
  return h;
}

std::array<uint8_t, kExtendedReplyHeaderSize> EncodeExtendedReplyHeader(
    const ExtendedReplyHeader& h) {
  std::array<uint8_t, kExtendedReplyHeaderSize> out{};
  StoreBe32(out.data(), kExtendedReplyMagic);
  StoreBe16(out.data() + 4, h.flags);
  StoreBe16(out.data() + 6, h.type);
  StoreBe64(out.data() + 8, h.cookie);
  StoreBe64(out.data() + 16, h.offset);
  StoreBe64(out.data() + 24, h.length);
  return out;
}

absl::StatusOr<ExtendedReplyHeader> DecodeExtendedReplyHeader(ByteSpan in) {
  constexpr char kWhat[] = "extended reply header";
  if (auto s = NeedFixed(in, kExtendedReplyHeaderSize, kWhat); !s.ok()) {
    return s;
  }
  if (uint32_t m = LoadBe32(in.data()); m != kExtendedReplyMagic) {
    return BadMagic(kWhat, kExtendedReplyMagic, m);
  }
  ExtendedReplyHeader h;
  h.flags = LoadBe16(in.data() + 4);
  h.type = LoadBe16(in.data() + 6);
  h.cookie = LoadBe64(in.data() + 8);
  h.offset = LoadBe64(in.data() + 16);
  h.length = LoadBe64(in.data() + 24);
  return h;
}

// ---- Chunk payloads
// -----------------------------------------------------------

absl::StatusOr<uint64_t> DecodeOffsetDataHeader(ByteSpan in) {
  if (in.size() < 9) {
    return BadPayloadLength("NBD_REPLY_TYPE_OFFSET_DATA", in.size(),
                            "must be at least 9: offset and 1 data byte");
  }
  return LoadBe64(in.data());
}

Bytes EncodeOffsetData(uint64_t offset, ByteSpan data) {
  Bytes out;
  out.reserve(8 + data.size());
  Put64(out, offset);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::array<uint8_t, kOffsetHoleSize> EncodeOffsetHole(const OffsetHole& h) {
  std::array<uint8_t, kOffsetHoleSize> out{};
  StoreBe64(out.data(), h.offset);
  StoreBe32(out.data() + 8, h.length);
  return out;
}

absl::StatusOr<OffsetHole> DecodeOffsetHole(ByteSpan in) {
  if (in.size() != kOffsetHoleSize) {
    return BadPayloadLength("NBD_REPLY_TYPE_OFFSET_HOLE", in.size(),
                            "must be exactly 12");
  }
  OffsetHole h;
  h.offset = LoadBe64(in.data());
  h.length = LoadBe32(in.data() + 8);
  return h;
}

Bytes EncodeBlockStatus(const BlockStatusChunk& c) {
  Bytes out;
  out.reserve(4 + kBlockStatusDescriptorSize * c.extents.size());
  Put32(out, c.context_id);
  for (const Extent& e : c.extents) {
    Put32(out, static_cast<uint32_t>(e.length));
    Put32(out, static_cast<uint32_t>(e.flags));
  }
  return out;
}

Bytes EncodeBlockStatusExt(const BlockStatusChunk& c) {
  const size_t n =
      std::min<size_t>(c.extents.size(), std::numeric_limits<uint32_t>::max());
  Bytes out;
  out.reserve(8 + kBlockStatusExtDescriptorSize * n);
  Put32(out, c.context_id);
  Put32(out, static_cast<uint32_t>(n));
  for (size_t i = 0; i < n; ++i) {
    Put64(out, c.extents[i].length);
    Put64(out, c.extents[i].flags);
  }
  return out;
}

absl::StatusOr<BlockStatusChunk> DecodeBlockStatus(ByteSpan in,
                                                   size_t max_extents) {
  constexpr char kWhat[] = "NBD_REPLY_TYPE_BLOCK_STATUS";
  if (in.size() < 4 + kBlockStatusDescriptorSize ||
      (in.size() - 4) % kBlockStatusDescriptorSize != 0) {
    return BadPayloadLength(kWhat, in.size(), "must be 4 + 8*n with n >= 1");
  }
  const size_t n = (in.size() - 4) / kBlockStatusDescriptorSize;
  if (n > max_extents) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %d extents exceed the limit of %d", kWhat, n, max_extents));
  }
  BlockStatusChunk c;
  c.context_id = LoadBe32(in.data());
  c.extents.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = in.data() + 4 + kBlockStatusDescriptorSize * i;
    c.extents.push_back({LoadBe32(p), LoadBe32(p + 4)});
  }
  return c;
}

absl::StatusOr<BlockStatusChunk> DecodeBlockStatusExt(ByteSpan in,
                                                      size_t max_extents) {
  constexpr char kWhat[] = "NBD_REPLY_TYPE_BLOCK_STATUS_EXT";
  if (in.size() < 8 + kBlockStatusExtDescriptorSize ||
      (in.size() - 8) % kBlockStatusExtDescriptorSize != 0) {
    return BadPayloadLength(kWhat, in.size(), "must be 8 + 16*n with n >= 1");
  }
  const size_t n = (in.size() - 8) / kBlockStatusExtDescriptorSize;
  const uint32_t count = LoadBe32(in.data() + 4);
  if (count != n) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: count field %d does not match the %d descriptors in %d bytes",
        kWhat, count, n, in.size()));
  }
  if (n > max_extents) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %d extents exceed the limit of %d", kWhat, n, max_extents));
  }
  BlockStatusChunk c;
  c.context_id = LoadBe32(in.data());
  c.extents.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = in.data() + 8 + kBlockStatusExtDescriptorSize * i;
    c.extents.push_back({LoadBe64(p), LoadBe64(p + 8)});
  }
  return c;
}

Bytes EncodeErrorChunk(const ErrorChunk& c) {
  // msglen is 16 bits; a longer message is cut so the frame stays
  // consistent.
  const size_t n =
      std::min<size_t>(c.message.size(), std::numeric_limits<uint16_t>::max());
  Bytes out;
  out.reserve(6 + n);
  Put32(out, c.error);
  Put16(out, static_cast<uint16_t>(n));
  PutRaw(out, c.message.data(), n);
  return out;
}

Bytes EncodeErrorOffsetChunk(const ErrorOffsetChunk& c) {
  Bytes out = EncodeErrorChunk({c.error, c.message});
  Put64(out, c.offset);
  return out;
}

namespace {

// Shared by ERROR and ERROR_OFFSET: error4, msglen2, message, then `tail`
// more bytes. Returns the message span after checking msglen against the
// payload length and the string limit.
absl::StatusOr<ByteSpan> DecodeErrorCommon(ByteSpan in, size_t tail,
                                           const char* what) {
  const size_t fixed = 6 + tail;
  if (in.size() < fixed) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: payload length %d is shorter than the %d-byte "
                        "minimum",
                        what, in.size(), fixed));
  }
  const size_t msglen = LoadBe16(in.data() + 4);
  if (in.size() != fixed + msglen) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: message length %d needs a payload of %d bytes, got %d", what,
        msglen, fixed + msglen, in.size()));
  }
  if (auto s = CheckStringLength(what, "message", msglen); !s.ok()) return s;
  return in.subspan(6, msglen);
}

}  // namespace

absl::StatusOr<ErrorChunk> DecodeErrorChunk(ByteSpan in) {
  auto msg = DecodeErrorCommon(in, 0, "NBD_REPLY_TYPE_ERROR");
  if (!msg.ok()) return msg.status();
  ErrorChunk c;
  c.error = LoadBe32(in.data());
  c.message = ToString(*msg);
  return c;
}

absl::StatusOr<ErrorOffsetChunk> DecodeErrorOffsetChunk(ByteSpan in) {
  auto msg = DecodeErrorCommon(in, 8, "NBD_REPLY_TYPE_ERROR_OFFSET");
  if (!msg.ok()) return msg.status();
  ErrorOffsetChunk c;
  c.error = LoadBe32(in.data());
  c.message = ToString(*msg);
  c.offset = LoadBe64(in.data() + 6 + msg->size());
  return c;
}

}  // namespace nbd
