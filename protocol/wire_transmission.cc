// Encoders and decoders for transmission: requests, simple and structured
// reply headers and structured reply chunk payloads. The layouts follow
// NetworkBlockDevice/nbd doc/proto.md.
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

using wire_internal::BadPayloadLength;
using wire_internal::CheckStringLength;
using wire_internal::NeedFixed;
using wire_internal::NeedFixedMagic;
using wire_internal::Put16;
using wire_internal::Put32;
using wire_internal::Put64;
using wire_internal::PutRaw;
using wire_internal::ToString;

// ---- Transmission: requests -------------------------------------------------

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
  if (auto s = NeedFixedMagic(in, kRequestSize, kRequestMagic, kWhat);
      !s.ok()) {
    return s;
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
  if (auto s = NeedFixedMagic(in, kExtendedRequestSize, kExtendedRequestMagic,
                              kWhat);
      !s.ok()) {
    return s;
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

// ---- Transmission: replies --------------------------------------------------

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
  if (auto s = NeedFixedMagic(in, kSimpleReplySize, kSimpleReplyMagic, kWhat);
      !s.ok()) {
    return s;
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
  if (auto s = NeedFixedMagic(in, kStructuredReplyHeaderSize,
                              kStructuredReplyMagic, kWhat);
      !s.ok()) {
    return s;
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
  if (auto s = NeedFixedMagic(in, kExtendedReplyHeaderSize, kExtendedReplyMagic,
                              kWhat);
      !s.ok()) {
    return s;
  }
  ExtendedReplyHeader h;
  h.flags = LoadBe16(in.data() + 4);
  h.type = LoadBe16(in.data() + 6);
  h.cookie = LoadBe64(in.data() + 8);
  h.offset = LoadBe64(in.data() + 16);
  h.length = LoadBe64(in.data() + 24);
  return h;
}

// ---- Chunk payloads ---------------------------------------------------------

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
