// Encoders and decoders for every fixed NBD wire structure.
//
// Contract for every decoder:
//  - It reads only from the span it is given and never past its end.
//  - Fixed-size structures: the span must hold at least k*Size bytes; only
//    the first k*Size bytes are read. Shorter input returns
//    absl::OutOfRangeError naming the structure and both lengths.
//  - Variable-size payloads (option-reply and chunk payloads): the span is
//    exactly the payload whose length the header announced. Any internal
//    length is checked against the span (and against kMaxStringLength for
//    strings) before anything is copied; a contradiction returns
//    absl::InvalidArgumentError.
//  - A wrong magic returns absl::InvalidArgumentError with the value seen.
// Encoders never fail: fixed structures come back as std::array, variable
// ones as a byte vector. All integers are big-endian on the wire.
#ifndef NBD_PROTOCOL_WIRE_H_
#define NBD_PROTOCOL_WIRE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "protocol/constants.h"

namespace nbd {

using Bytes = std::vector<uint8_t>;
using ByteSpan = absl::Span<const uint8_t>;

// ---- Sizes --------------------------------------------------------------
inline constexpr size_t kOldstyleGreetingSize = 152;
inline constexpr size_t kNewstyleGreetingSize = 18;
inline constexpr size_t kClientFlagsSize = 4;
inline constexpr size_t kOptionRequestHeaderSize = 16;
inline constexpr size_t kOptionReplyHeaderSize = 20;
inline constexpr size_t kExportNameReplySize = 134;
inline constexpr size_t kExportNameReplyNoZeroesSize = 10;
inline constexpr size_t kRequestSize = 28;
inline constexpr size_t kExtendedRequestSize = 32;
inline constexpr size_t kSimpleReplySize = 16;
inline constexpr size_t kStructuredReplyHeaderSize = 20;
inline constexpr size_t kExtendedReplyHeaderSize = 32;
inline constexpr size_t kOffsetHoleSize = 12;
inline constexpr size_t kBlockStatusDescriptorSize = 8;
inline constexpr size_t kBlockStatusExtDescriptorSize = 16;
inline constexpr size_t kInfoExportSize = 12;     // including the type field
inline constexpr size_t kInfoBlockSizeSize = 14;  // including the type field

// ---- Handshake ------------------------------------------------------------
// Oldstyle: magic8 "NBDMAGIC", cliserv8, size8, flags4 (high 16 bits are the
// global flags, low 16 the transmission flags), 124 zero bytes.
struct OldstyleGreeting {
  uint64_t export_size = 0;
  uint16_t global_flags = 0;
  uint16_t transmission_flags = 0;
  bool operator==(const OldstyleGreeting&) const = default;
};
std::array<uint8_t, kOldstyleGreetingSize> EncodeOldstyleGreeting(
    const OldstyleGreeting& g);
absl::StatusOr<OldstyleGreeting> DecodeOldstyleGreeting(ByteSpan in);

// Newstyle: magic8 "NBDMAGIC", "IHAVEOPT", handshake flags2.
struct NewstyleGreeting {
  uint16_t handshake_flags = 0;
  bool operator==(const NewstyleGreeting&) const = default;
};
std::array<uint8_t, kNewstyleGreetingSize> EncodeNewstyleGreeting(
    const NewstyleGreeting& g);
absl::StatusOr<NewstyleGreeting> DecodeNewstyleGreeting(ByteSpan in);

// The first 16 bytes of either greeting: tells oldstyle from newstyle.
enum class GreetingKind { kOldstyle, kNewstyle };
absl::StatusOr<GreetingKind> DecodeGreetingKind(ByteSpan in);  // needs 16

// Client flags (32 bits). Decoding rejects unknown bits, as a server must.
std::array<uint8_t, kClientFlagsSize> EncodeClientFlags(uint32_t flags);
absl::StatusOr<uint32_t> DecodeClientFlags(ByteSpan in);

// ---- Options --------------------------------------------------------------
// Request: "IHAVEOPT", option4, length4, then `length` bytes of data.
struct OptionRequestHeader {
  uint32_t option = 0;
  uint32_t length = 0;
  bool operator==(const OptionRequestHeader&) const = default;
};
std::array<uint8_t, kOptionRequestHeaderSize> EncodeOptionRequestHeader(
    const OptionRequestHeader& h);
absl::StatusOr<OptionRequestHeader> DecodeOptionRequestHeader(ByteSpan in);
// Header plus data in one buffer.
Bytes EncodeOptionRequest(Option option, ByteSpan data);

// Reply header: magic8 0x3e889045565a9, option4, type4, length4.
struct OptionReplyHeader {
  uint32_t option = 0;
  uint32_t type = 0;
  uint32_t length = 0;
  bool operator==(const OptionReplyHeader&) const = default;
};
std::array<uint8_t, kOptionReplyHeaderSize> EncodeOptionReplyHeader(
    const OptionReplyHeader& h);
absl::StatusOr<OptionReplyHeader> DecodeOptionReplyHeader(ByteSpan in);

// NBD_OPT_EXPORT_NAME success reply: size8, flags2, then 124 zero bytes
// unless NO_ZEROES was agreed. The one-argument decoder reads the 10-byte
// head only (a streaming client skips the padding itself); the two-argument
// one needs the whole form for `no_zeroes` and ignores the padding's
// content, which the spec reserves.
struct ExportNameReply {
  uint64_t export_size = 0;
  uint16_t transmission_flags = 0;
  bool operator==(const ExportNameReply&) const = default;
};
Bytes EncodeExportNameReply(const ExportNameReply& r, bool no_zeroes);
absl::StatusOr<ExportNameReply> DecodeExportNameReply(ByteSpan in);
absl::StatusOr<ExportNameReply> DecodeExportNameReply(ByteSpan in,
                                                      bool no_zeroes);

// NBD_OPT_INFO / NBD_OPT_GO data: namelen4, name, nreq2, req2 x nreq.
struct InfoRequest {
  std::string export_name;
  std::vector<uint16_t> info_requests;
  bool operator==(const InfoRequest&) const = default;
};
Bytes EncodeInfoRequest(const InfoRequest& r);
absl::StatusOr<InfoRequest> DecodeInfoRequest(ByteSpan in);

// NBD_REP_INFO payloads. Every one starts with its 2-byte info type.
struct InfoExport {
  uint64_t export_size = 0;
  uint16_t transmission_flags = 0;
  bool operator==(const InfoExport&) const = default;
};
struct InfoName {
  std::string name;
  bool operator==(const InfoName&) const = default;
};
struct InfoDescription {
  std::string description;
  bool operator==(const InfoDescription&) const = default;
};
struct InfoBlockSize {
  uint32_t minimum = 0;
  uint32_t preferred = 0;
  uint32_t maximum = 0;
  bool operator==(const InfoBlockSize&) const = default;
};
Bytes EncodeInfoExport(const InfoExport& i);
Bytes EncodeInfoName(const InfoName& i);
Bytes EncodeInfoDescription(const InfoDescription& i);
Bytes EncodeInfoBlockSize(const InfoBlockSize& i);
// Reads the leading type; fails if the payload is shorter than 2 bytes.
absl::StatusOr<uint16_t> DecodeInfoType(ByteSpan in);
absl::StatusOr<InfoExport> DecodeInfoExport(ByteSpan in);  // exactly 12
absl::StatusOr<InfoName> DecodeInfoName(ByteSpan in);
absl::StatusOr<InfoDescription> DecodeInfoDescription(ByteSpan in);
absl::StatusOr<InfoBlockSize> DecodeInfoBlockSize(ByteSpan in);  // exactly 14

// NBD_REP_SERVER payload: namelen4, name, description (the rest).
struct ServerReply {
  std::string name;
  std::string description;
  bool operator==(const ServerReply&) const = default;
};
Bytes EncodeServerReply(const ServerReply& r);
absl::StatusOr<ServerReply> DecodeServerReply(ByteSpan in);

// NBD_OPT_{LIST,SET}_META_CONTEXT data:
// namelen4, export name, nqueries4, (querylen4, query) x nqueries.
struct MetaContextRequest {
  std::string export_name;
  std::vector<std::string> queries;
  bool operator==(const MetaContextRequest&) const = default;
};
Bytes EncodeMetaContextRequest(const MetaContextRequest& r);
absl::StatusOr<MetaContextRequest> DecodeMetaContextRequest(ByteSpan in);

// NBD_REP_META_CONTEXT payload: id4, name (the rest, at least 1 byte).
struct MetaContextReply {
  uint32_t context_id = 0;
  std::string name;
  bool operator==(const MetaContextReply&) const = default;
};
Bytes EncodeMetaContextReply(const MetaContextReply& r);
absl::StatusOr<MetaContextReply> DecodeMetaContextReply(ByteSpan in);

// ---- Transmission: requests ----------------------------------------------
// Compact request (28 bytes): magic4, flags2, type2, cookie8, offset8, len4.
struct Request {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  bool operator==(const Request&) const = default;
};
std::array<uint8_t, kRequestSize> EncodeRequest(const Request& r);
absl::StatusOr<Request> DecodeRequest(ByteSpan in);

// Extended request (32 bytes): as above with an 8-byte length.
struct ExtendedRequest {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const ExtendedRequest&) const = default;
};
std::array<uint8_t, kExtendedRequestSize> EncodeExtendedRequest(
    const ExtendedRequest& r);
absl::StatusOr<ExtendedRequest> DecodeExtendedRequest(ByteSpan in);

// BLOCK_STATUS payload under PAYLOAD_LEN: effect length8, context id4 x n.
struct BlockStatusPayload {
  uint64_t effect_length = 0;
  std::vector<uint32_t> context_ids;
  bool operator==(const BlockStatusPayload&) const = default;
};
Bytes EncodeBlockStatusPayload(const BlockStatusPayload& p);
absl::StatusOr<BlockStatusPayload> DecodeBlockStatusPayload(ByteSpan in);

// ---- Transmission: replies -------------------------------------------------
// The first 4 bytes of any reply: its magic.
absl::StatusOr<uint32_t> DecodeReplyMagic(ByteSpan in);

// Simple reply (16 bytes): magic4, error4, cookie8.
struct SimpleReply {
  uint32_t error = 0;
  uint64_t cookie = 0;
  bool operator==(const SimpleReply&) const = default;
};
std::array<uint8_t, kSimpleReplySize> EncodeSimpleReply(const SimpleReply& r);
absl::StatusOr<SimpleReply> DecodeSimpleReply(ByteSpan in);

// Structured reply chunk header (20 bytes): magic4, flags2, type2, cookie8,
// length4.
struct StructuredReplyHeader {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint32_t length = 0;
  bool operator==(const StructuredReplyHeader&) const = default;
};
std::array<uint8_t, kStructuredReplyHeaderSize> EncodeStructuredReplyHeader(
    const StructuredReplyHeader& h);
absl::StatusOr<StructuredReplyHeader> DecodeStructuredReplyHeader(ByteSpan in);

// Extended reply header (32 bytes): magic4, flags2, type2, cookie8, offset8,
// length8.
struct ExtendedReplyHeader {
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const ExtendedReplyHeader&) const = default;
};
std::array<uint8_t, kExtendedReplyHeaderSize> EncodeExtendedReplyHeader(
    const ExtendedReplyHeader& h);
absl::StatusOr<ExtendedReplyHeader> DecodeExtendedReplyHeader(ByteSpan in);

// ---- Chunk payloads --------------------------------------------------------
// OFFSET_DATA: offset8 then data. Decoding returns the offset and leaves the
// data to the caller; the payload must be at least 9 bytes.
absl::StatusOr<uint64_t> DecodeOffsetDataHeader(ByteSpan in);
Bytes EncodeOffsetData(uint64_t offset, ByteSpan data);

// OFFSET_HOLE: offset8, length4 (non-zero). Exactly 12 bytes.
struct OffsetHole {
  uint64_t offset = 0;
  uint32_t length = 0;
  bool operator==(const OffsetHole&) const = default;
};
std::array<uint8_t, kOffsetHoleSize> EncodeOffsetHole(const OffsetHole& h);
absl::StatusOr<OffsetHole> DecodeOffsetHole(ByteSpan in);

// One extent in either block-status form. The 32-bit form's fields are
// widened. Decoders check framing only (sizes, counts); semantic rules such
// as "extent length is non-zero" or "error is non-zero" are the client
// core's to enforce, because they fail one command, not the connection.
struct Extent {
  uint64_t length = 0;
  uint64_t flags = 0;
  bool operator==(const Extent&) const = default;
};
// BLOCK_STATUS: context id4, (length4, flags4) x n, n >= 1.
// BLOCK_STATUS_EXT: context id4, count4 (== n, >= 1), (length8, flags8) x n.
struct BlockStatusChunk {
  uint32_t context_id = 0;
  std::vector<Extent> extents;
  bool operator==(const BlockStatusChunk&) const = default;
};
// EncodeBlockStatus writes the low 32 bits of each length and flags word: a
// compact-header server never has more (its requests carry 32-bit lengths
// and base:allocation's flags fit), so it clamps before encoding.
Bytes EncodeBlockStatus(const BlockStatusChunk& c);     // 32-bit lengths
Bytes EncodeBlockStatusExt(const BlockStatusChunk& c);  // 64-bit lengths
// `max_extents` bounds what is allocated; more extents is an error.
absl::StatusOr<BlockStatusChunk> DecodeBlockStatus(ByteSpan in,
                                                   size_t max_extents);
absl::StatusOr<BlockStatusChunk> DecodeBlockStatusExt(ByteSpan in,
                                                      size_t max_extents);

// ERROR: error4 (non-zero), msglen2, message.
// ERROR_OFFSET: the same followed by offset8.
struct ErrorChunk {
  uint32_t error = 0;
  std::string message;
  bool operator==(const ErrorChunk&) const = default;
};
struct ErrorOffsetChunk {
  uint32_t error = 0;
  std::string message;
  uint64_t offset = 0;
  bool operator==(const ErrorOffsetChunk&) const = default;
};
Bytes EncodeErrorChunk(const ErrorChunk& c);
Bytes EncodeErrorOffsetChunk(const ErrorOffsetChunk& c);
absl::StatusOr<ErrorChunk> DecodeErrorChunk(ByteSpan in);
absl::StatusOr<ErrorOffsetChunk> DecodeErrorOffsetChunk(ByteSpan in);

}  // namespace nbd

#endif  // NBD_PROTOCOL_WIRE_H_
