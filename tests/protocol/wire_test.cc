// Golden-byte tests for protocol/wire. Every golden array below is written
// by hand from the layouts in NetworkBlockDevice/nbd doc/proto.md (see
// /work/shared/reference/nbd-protocol-and-libnbd.md §3.2), never produced by
// the encoder under test.
//
// For each structure: encode == golden, decode(golden) == value, the round
// trip, every shorter prefix of the golden bytes (decoded from an exact-size
// heap copy, so ASan sees any over-read), and oversized or inconsistent
// inputs.
#include "protocol/wire.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/constants.h"
#include "protocol/endian.h"

namespace nbd {
namespace {

using ::testing::HasSubstr;

constexpr absl::StatusCode kOutOfRange = absl::StatusCode::kOutOfRange;
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

// ---- Helpers ----------------------------------------------------------------

Bytes Concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes Zeros(size_t n) { return Bytes(n, 0); }

Bytes Repeat(uint8_t byte, size_t n) { return Bytes(n, byte); }

template <size_t N>
Bytes ToBytes(const std::array<uint8_t, N>& a) {
  return Bytes(a.begin(), a.end());
}
Bytes ToBytes(const Bytes& b) { return b; }

// Copies `in` to an exact-size heap buffer and decodes that, so a decoder
// that reads past the end trips AddressSanitizer.
template <typename Decode>
auto DecodeCopy(Decode decode, ByteSpan in) {
  const Bytes copy(in.begin(), in.end());
  return decode(ByteSpan(copy));
}

// encode(value) == golden, decode(golden) == value, and both round trips.
template <typename T, typename Encode, typename Decode>
void CheckGolden(const T& value, const Bytes& golden, Encode encode,
                 Decode decode) {
  EXPECT_EQ(ToBytes(encode(value)), golden);
  auto decoded = DecodeCopy(decode, golden);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(*decoded == value);
  EXPECT_EQ(ToBytes(encode(*decoded)), golden);
  auto again = DecodeCopy(decode, ToBytes(encode(value)));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(*again == value);
}

// decode(encode(value)) == value, for values without a golden.
template <typename T, typename Encode, typename Decode>
void CheckRoundTrip(const T& value, Encode encode, Decode decode) {
  auto decoded = DecodeCopy(decode, ToBytes(encode(value)));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(*decoded == value);
}

// Decodes every strict prefix of `golden`. Lengths for which `ok_len`
// returns true must decode; all others must fail with `code`.
template <typename Decode>
void CheckPrefixes(const Bytes& golden, Decode decode, absl::StatusCode code,
                   std::function<bool(size_t)> ok_len = nullptr) {
  for (size_t len = 0; len < golden.size(); ++len) {
    auto r = DecodeCopy(decode, ByteSpan(golden).first(len));
    if (ok_len && ok_len(len)) {
      EXPECT_TRUE(r.ok()) << "prefix " << len << ": " << r.status();
    } else {
      EXPECT_EQ(r.status().code(), code)
          << "prefix " << len << ": " << r.status();
    }
  }
}

// Expects `r` to fail with `code` and a message containing `text`.
template <typename T>
void ExpectError(const absl::StatusOr<T>& r, absl::StatusCode code,
                 const std::string& text = "") {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), code) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(text));
}

Bytes WithByte(Bytes b, size_t index, uint8_t value) {
  b.at(index) = value;
  return b;
}

// A 32-bit big-endian length followed by `n` copies of 'x'.
Bytes LongString32(size_t n) {
  Bytes out(4);
  StoreBe32(out.data(), static_cast<uint32_t>(n));
  out.insert(out.end(), n, 'x');
  return out;
}

// ---- Constants --------------------------------------------------------------

TEST(WireConstants, MatchTheSpec) {
  EXPECT_EQ(kNbdMagic, 0x4e42444d41474943u);
  EXPECT_EQ(kOldstyleMagic, 0x00420281861253u);
  EXPECT_EQ(kIHaveOptMagic, 0x49484156454f5054u);
  EXPECT_EQ(kOptionReplyMagic, 0x3e889045565a9u);
  EXPECT_EQ(kRequestMagic, 0x25609513u);
  EXPECT_EQ(kExtendedRequestMagic, 0x21e41c71u);
  EXPECT_EQ(kSimpleReplyMagic, 0x67446698u);
  EXPECT_EQ(kStructuredReplyMagic, 0x668e33efu);
  EXPECT_EQ(kExtendedReplyMagic, 0x6e8a278cu);
  EXPECT_EQ(kReservedOldRequestMagic, 0x12560953u);
  EXPECT_EQ(kReservedOldReplyMagic, 0x96744668u);
  EXPECT_EQ(kReservedLogMagic, 0x25609514u);

  EXPECT_EQ(kFlagFixedNewstyle, 1);
  EXPECT_EQ(kFlagNoZeroes, 2);
  EXPECT_EQ(kClientFlagFixedNewstyle, 1u);
  EXPECT_EQ(kClientFlagNoZeroes, 2u);
  EXPECT_EQ(kClientFlagsKnown, 3u);

  EXPECT_EQ(kTransmitHasFlags, 1 << 0);
  EXPECT_EQ(kTransmitReadOnly, 1 << 1);
  EXPECT_EQ(kTransmitSendFlush, 1 << 2);
  EXPECT_EQ(kTransmitSendFua, 1 << 3);
  EXPECT_EQ(kTransmitRotational, 1 << 4);
  EXPECT_EQ(kTransmitSendTrim, 1 << 5);
  EXPECT_EQ(kTransmitSendWriteZeroes, 1 << 6);
  EXPECT_EQ(kTransmitSendDf, 1 << 7);
  EXPECT_EQ(kTransmitCanMultiConn, 1 << 8);
  EXPECT_EQ(kTransmitSendResize, 1 << 9);
  EXPECT_EQ(kTransmitSendCache, 1 << 10);
  EXPECT_EQ(kTransmitSendFastZero, 1 << 11);
  EXPECT_EQ(kTransmitBlockStatusPayload, 1 << 12);

  EXPECT_EQ(static_cast<uint32_t>(Option::kExportName), 1u);
  EXPECT_EQ(static_cast<uint32_t>(Option::kAbort), 2u);
  EXPECT_EQ(static_cast<uint32_t>(Option::kList), 3u);
  EXPECT_EQ(static_cast<uint32_t>(Option::kPeekExport), 4u);
  EXPECT_EQ(static_cast<uint32_t>(Option::kStartTls), 5u);
  EXPECT_EQ(static_cast<uint32_t>(Option::kInfo), 6u);
  EXPECT_EQ(static_cast<uint32_t>(Option::kGo), 7u);
  EXPECT_EQ(static_cast<uint32_t>(Option::kStructuredReply), 8u);
  EXPECT_EQ(static_cast<uint32_t>(Option::kListMetaContext), 9u);
  EXPECT_EQ(static_cast<uint32_t>(Option::kSetMetaContext), 10u);
  EXPECT_EQ(static_cast<uint32_t>(Option::kExtendedHeaders), 11u);

  EXPECT_EQ(kOptionReplyErrorBit, 0x80000000u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kAck), 1u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kServer), 2u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kInfo), 3u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kMetaContext), 4u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kErrUnsup), 0x80000001u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kErrPolicy), 0x80000002u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kErrInvalid), 0x80000003u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kErrPlatform), 0x80000004u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kErrTlsReqd), 0x80000005u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kErrUnknown), 0x80000006u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kErrShutdown), 0x80000007u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kErrBlockSizeReqd),
            0x80000008u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kErrTooBig), 0x80000009u);
  EXPECT_EQ(static_cast<uint32_t>(OptionReplyType::kErrExtHeaderReqd),
            0x8000000au);
  EXPECT_TRUE(IsOptionReplyError(0x80000001u));
  EXPECT_FALSE(IsOptionReplyError(1u));

  EXPECT_EQ(static_cast<uint16_t>(InfoType::kExport), 0);
  EXPECT_EQ(static_cast<uint16_t>(InfoType::kName), 1);
  EXPECT_EQ(static_cast<uint16_t>(InfoType::kDescription), 2);
  EXPECT_EQ(static_cast<uint16_t>(InfoType::kBlockSize), 3);

  EXPECT_EQ(static_cast<uint16_t>(Command::kRead), 0);
  EXPECT_EQ(static_cast<uint16_t>(Command::kWrite), 1);
  EXPECT_EQ(static_cast<uint16_t>(Command::kDisc), 2);
  EXPECT_EQ(static_cast<uint16_t>(Command::kFlush), 3);
  EXPECT_EQ(static_cast<uint16_t>(Command::kTrim), 4);
  EXPECT_EQ(static_cast<uint16_t>(Command::kCache), 5);
  EXPECT_EQ(static_cast<uint16_t>(Command::kWriteZeroes), 6);
  EXPECT_EQ(static_cast<uint16_t>(Command::kBlockStatus), 7);
  EXPECT_EQ(static_cast<uint16_t>(Command::kResize), 8);

  EXPECT_EQ(kCmdFlagFua, 1 << 0);
  EXPECT_EQ(kCmdFlagNoHole, 1 << 1);
  EXPECT_EQ(kCmdFlagDf, 1 << 2);
  EXPECT_EQ(kCmdFlagReqOne, 1 << 3);
  EXPECT_EQ(kCmdFlagFastZero, 1 << 4);
  EXPECT_EQ(kCmdFlagPayloadLen, 1 << 5);
  EXPECT_EQ(kCmdFlagsKnown, 0x3f);
  EXPECT_EQ(kReplyFlagDone, 1);

  EXPECT_EQ(kChunkTypeErrorBit, 0x8000);
  EXPECT_EQ(static_cast<uint16_t>(ChunkType::kNone), 0);
  EXPECT_EQ(static_cast<uint16_t>(ChunkType::kOffsetData), 1);
  EXPECT_EQ(static_cast<uint16_t>(ChunkType::kOffsetHole), 2);
  EXPECT_EQ(static_cast<uint16_t>(ChunkType::kBlockStatus), 5);
  EXPECT_EQ(static_cast<uint16_t>(ChunkType::kBlockStatusExt), 6);
  EXPECT_EQ(static_cast<uint16_t>(ChunkType::kError), 0x8001);
  EXPECT_EQ(static_cast<uint16_t>(ChunkType::kErrorOffset), 0x8002);
  EXPECT_TRUE(IsChunkTypeError(0x8001));
  EXPECT_FALSE(IsChunkTypeError(5));

  EXPECT_EQ(static_cast<uint32_t>(NbdError::kOk), 0u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kPerm), 1u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kIo), 5u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kNoMem), 12u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kInval), 22u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kNoSpc), 28u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kOverflow), 75u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kNotSup), 95u);
  EXPECT_EQ(static_cast<uint32_t>(NbdError::kShutdown), 108u);

  EXPECT_EQ(kStateHole, 1u);
  EXPECT_EQ(kStateZero, 2u);
  EXPECT_STREQ(kContextBaseAllocation, "base:allocation");
  EXPECT_EQ(kMaxStringLength, 4096u);
  EXPECT_EQ(kRecommendedStringLength, 256u);
  EXPECT_EQ(kInteropMinBlockSize, 512u);
  EXPECT_EQ(kDefaultPort, 10809);
}

TEST(WireConstants, Sizes) {
  EXPECT_EQ(kOldstyleGreetingSize, 8u + 8 + 8 + 4 + 124);
  EXPECT_EQ(kNewstyleGreetingSize, 8u + 8 + 2);
  EXPECT_EQ(kClientFlagsSize, 4u);
  EXPECT_EQ(kOptionRequestHeaderSize, 8u + 4 + 4);
  EXPECT_EQ(kOptionReplyHeaderSize, 8u + 4 + 4 + 4);
  EXPECT_EQ(kExportNameReplySize, 8u + 2 + 124);
  EXPECT_EQ(kExportNameReplyNoZeroesSize, 8u + 2);
  EXPECT_EQ(kRequestSize, 4u + 2 + 2 + 8 + 8 + 4);
  EXPECT_EQ(kExtendedRequestSize, 4u + 2 + 2 + 8 + 8 + 8);
  EXPECT_EQ(kSimpleReplySize, 4u + 4 + 8);
  EXPECT_EQ(kStructuredReplyHeaderSize, 4u + 2 + 2 + 8 + 4);
  EXPECT_EQ(kExtendedReplyHeaderSize, 4u + 2 + 2 + 8 + 8 + 8);
  EXPECT_EQ(kOffsetHoleSize, 8u + 4);
  EXPECT_EQ(kBlockStatusDescriptorSize, 4u + 4);
  EXPECT_EQ(kBlockStatusExtDescriptorSize, 8u + 8);
  EXPECT_EQ(kInfoExportSize, 2u + 8 + 2);
  EXPECT_EQ(kInfoBlockSizeSize, 2u + 4 + 4 + 4);
}

// ---- Handshake --------------------------------------------------------------

const Bytes kOldstyleGolden = Concat({
    {0x4e, 0x42, 0x44, 0x4d, 0x41, 0x47, 0x49, 0x43},  // "NBDMAGIC"
    {0x00, 0x00, 0x42, 0x02, 0x81, 0x86, 0x12, 0x53},  // cliserv magic
    {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08},  // export size
    {0x00, 0x01},                                      // global flags
    {0x01, 0x0d},                                      // transmission flags
    Zeros(124),
});
const OldstyleGreeting kOldstyle{0x0102030405060708, 0x0001, 0x010d};

TEST(WireHandshake, OldstyleGreeting) {
  ASSERT_EQ(kOldstyleGolden.size(), kOldstyleGreetingSize);
  CheckGolden(kOldstyle, kOldstyleGolden, EncodeOldstyleGreeting,
              DecodeOldstyleGreeting);
  CheckRoundTrip(OldstyleGreeting{~0ull, 0xffff, 0xffff},
                 EncodeOldstyleGreeting, DecodeOldstyleGreeting);
  CheckPrefixes(kOldstyleGolden, DecodeOldstyleGreeting, kOutOfRange);
  ExpectError(DecodeOldstyleGreeting(Bytes(151, 0)), kOutOfRange,
              "oldstyle greeting: need 152 bytes, got 151");

  // The reserved tail is ignored on decode, and trailing bytes too.
  Bytes junk_tail = kOldstyleGolden;
  for (size_t i = 28; i < junk_tail.size(); ++i) junk_tail[i] = 0xaa;
  junk_tail.push_back(0x99);
  auto g = DecodeOldstyleGreeting(junk_tail);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(*g, kOldstyle);

  ExpectError(DecodeOldstyleGreeting(WithByte(kOldstyleGolden, 0, 0x4f)),
              kInvalid, "0x4f42444d41474943");
  ExpectError(DecodeOldstyleGreeting(WithByte(kOldstyleGolden, 15, 0x54)),
              kInvalid, "0x420281861254");
  // A newstyle greeting is not an oldstyle one.
  Bytes newstyle_magic = kOldstyleGolden;
  const uint8_t ihaveopt[] = {0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54};
  std::copy(std::begin(ihaveopt), std::end(ihaveopt),
            newstyle_magic.begin() + 8);
  ExpectError(DecodeOldstyleGreeting(newstyle_magic), kInvalid,
              "0x49484156454f5054");
}

const Bytes kNewstyleGolden = {
    0x4e, 0x42, 0x44, 0x4d, 0x41, 0x47, 0x49, 0x43,  // "NBDMAGIC"
    0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54,  // "IHAVEOPT"
    0x00, 0x03,                                      // FIXED_NEWSTYLE|NO_ZEROES
};

TEST(WireHandshake, NewstyleGreeting) {
  CheckGolden(NewstyleGreeting{kFlagFixedNewstyle | kFlagNoZeroes},
              kNewstyleGolden, EncodeNewstyleGreeting, DecodeNewstyleGreeting);
  CheckRoundTrip(NewstyleGreeting{0xffff}, EncodeNewstyleGreeting,
                 DecodeNewstyleGreeting);
  CheckPrefixes(kNewstyleGolden, DecodeNewstyleGreeting, kOutOfRange);
  ExpectError(DecodeNewstyleGreeting(WithByte(kNewstyleGolden, 7, 0x44)),
              kInvalid, "0x4e42444d41474944");
  ExpectError(DecodeNewstyleGreeting(WithByte(kNewstyleGolden, 8, 0x00)),
              kInvalid, "0x48415645");
  // An oldstyle greeting is not a newstyle one.
  ExpectError(DecodeNewstyleGreeting(kOldstyleGolden), kInvalid,
              "0x420281861253");
}

TEST(WireHandshake, GreetingKind) {
  auto old_kind = DecodeGreetingKind(kOldstyleGolden);
  ASSERT_TRUE(old_kind.ok()) << old_kind.status();
  EXPECT_EQ(*old_kind, GreetingKind::kOldstyle);
  auto new_kind = DecodeGreetingKind(ByteSpan(kNewstyleGolden).first(16));
  ASSERT_TRUE(new_kind.ok()) << new_kind.status();
  EXPECT_EQ(*new_kind, GreetingKind::kNewstyle);

  CheckPrefixes(Bytes(kNewstyleGolden.begin(), kNewstyleGolden.begin() + 16),
                DecodeGreetingKind, kOutOfRange);
  ExpectError(DecodeGreetingKind(WithByte(kNewstyleGolden, 0, 0)), kInvalid,
              "bad magic 0x42444d41474943");
  ExpectError(DecodeGreetingKind(WithByte(kNewstyleGolden, 15, 0x55)), kInvalid,
              "0x49484156454f5055");
  ExpectError(DecodeGreetingKind(Concat(
                  {Bytes(kNewstyleGolden.begin(), kNewstyleGolden.begin() + 8),
                   Zeros(8)})),
              kInvalid, "unknown second magic 0x0");
}

TEST(WireHandshake, ClientFlags) {
  const Bytes golden = {0x00, 0x00, 0x00, 0x03};
  CheckGolden(kClientFlagFixedNewstyle | kClientFlagNoZeroes, golden,
              EncodeClientFlags, DecodeClientFlags);
  CheckGolden(kClientFlagFixedNewstyle, Bytes{0x00, 0x00, 0x00, 0x01},
              EncodeClientFlags, DecodeClientFlags);
  CheckGolden(0u, Bytes{0x00, 0x00, 0x00, 0x00}, EncodeClientFlags,
              DecodeClientFlags);
  CheckPrefixes(golden, DecodeClientFlags, kOutOfRange);
  ExpectError(DecodeClientFlags(Bytes{0x00, 0x00, 0x00, 0x07}), kInvalid,
              "0x4");
  ExpectError(DecodeClientFlags(Bytes{0x80, 0x00, 0x00, 0x01}), kInvalid,
              "0x80000000");
  // The spec's wording: encode never fails, even for bits a server rejects.
  EXPECT_EQ(ToBytes(EncodeClientFlags(0xdeadbeef)),
            (Bytes{0xde, 0xad, 0xbe, 0xef}));
}

// ---- Options ----------------------------------------------------------------

const Bytes kOptionRequestHeaderGolden = {
    0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54,  // "IHAVEOPT"
    0x00, 0x00, 0x00, 0x07,                          // NBD_OPT_GO
    0x00, 0x00, 0x00, 0x0e,                          // length 14
};

TEST(WireOptions, OptionRequestHeader) {
  CheckGolden(OptionRequestHeader{7, 14}, kOptionRequestHeaderGolden,
              EncodeOptionRequestHeader, DecodeOptionRequestHeader);
  CheckRoundTrip(OptionRequestHeader{0xffffffff, 0xffffffff},
                 EncodeOptionRequestHeader, DecodeOptionRequestHeader);
  CheckPrefixes(kOptionRequestHeaderGolden, DecodeOptionRequestHeader,
                kOutOfRange);
  ExpectError(DecodeOptionRequestHeader(kNewstyleGolden), kInvalid,
              "0x4e42444d41474943");
}

TEST(WireOptions, FullOptionRequest) {
  // NBD_OPT_GO for export "disk" asking for BLOCK_SIZE and NAME.
  const Bytes golden = {
      0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54,  // "IHAVEOPT"
      0x00, 0x00, 0x00, 0x07,                          // NBD_OPT_GO
      0x00, 0x00, 0x00, 0x0e,                          // length 14
      0x00, 0x00, 0x00, 0x04, 'd',  'i',  's',  'k',   // name
      0x00, 0x02, 0x00, 0x03, 0x00, 0x01,              // 2 info requests
  };
  const Bytes data(golden.begin() + 16, golden.end());
  EXPECT_EQ(EncodeOptionRequest(Option::kGo, data), golden);
  auto h = DecodeOptionRequestHeader(golden);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(*h, (OptionRequestHeader{7, 14}));
  auto body = DecodeInfoRequest(ByteSpan(golden).subspan(16, h->length));
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(*body, (InfoRequest{"disk", {3, 1}}));

  // Options without data: header only, length 0.
  const Bytes abort_golden = {
      0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54,  // "IHAVEOPT"
      0x00, 0x00, 0x00, 0x02,                          // NBD_OPT_ABORT
      0x00, 0x00, 0x00, 0x00,                          // length 0
  };
  EXPECT_EQ(EncodeOptionRequest(Option::kAbort, {}), abort_golden);
  const Bytes eh_golden = {
      0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54,  // "IHAVEOPT"
      0x00, 0x00, 0x00, 0x0b,  // NBD_OPT_EXTENDED_HEADERS
      0x00, 0x00, 0x00, 0x00,  // length 0
  };
  EXPECT_EQ(EncodeOptionRequest(Option::kExtendedHeaders, {}), eh_golden);
}

const Bytes kOptionReplyHeaderGolden = {
    0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9,  // reply magic
    0x00, 0x00, 0x00, 0x07,                          // NBD_OPT_GO
    0x80, 0x00, 0x00, 0x01,                          // NBD_REP_ERR_UNSUP
    0x00, 0x00, 0x00, 0x10,                          // length 16
};

TEST(WireOptions, OptionReplyHeader) {
  CheckGolden(OptionReplyHeader{7, 0x80000001, 16}, kOptionReplyHeaderGolden,
              EncodeOptionReplyHeader, DecodeOptionReplyHeader);
  CheckGolden(OptionReplyHeader{3, 2, 0x0c},
              Bytes{0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9,  //
                    0x00, 0x00, 0x00, 0x03,                          // LIST
                    0x00, 0x00, 0x00, 0x02,                          // SERVER
                    0x00, 0x00, 0x00, 0x0c},
              EncodeOptionReplyHeader, DecodeOptionReplyHeader);
  CheckRoundTrip(OptionReplyHeader{~0u, ~0u, ~0u}, EncodeOptionReplyHeader,
                 DecodeOptionReplyHeader);
  CheckPrefixes(kOptionReplyHeaderGolden, DecodeOptionReplyHeader, kOutOfRange);
  ExpectError(
      DecodeOptionReplyHeader(WithByte(kOptionReplyHeaderGolden, 7, 0xaa)),
      kInvalid, "0x3e889045565aa");
}

TEST(WireOptions, ExportNameReply) {
  const Bytes no_zeroes = {
      0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  // 4 GiB
      0x00, 0x0b,  // HAS_FLAGS|READ_ONLY|SEND_FUA
  };
  const Bytes padded = Concat({no_zeroes, Zeros(124)});
  ASSERT_EQ(padded.size(), kExportNameReplySize);
  const ExportNameReply value{0x100000000ull, 0x000b};
  auto encode_short = [](const ExportNameReply& r) {
    return EncodeExportNameReply(r, /*no_zeroes=*/true);
  };
  auto encode_long = [](const ExportNameReply& r) {
    return EncodeExportNameReply(r, /*no_zeroes=*/false);
  };
  auto decode_head = [](ByteSpan in) { return DecodeExportNameReply(in); };
  auto decode_short = [](ByteSpan in) {
    return DecodeExportNameReply(in, /*no_zeroes=*/true);
  };
  auto decode_long = [](ByteSpan in) {
    return DecodeExportNameReply(in, /*no_zeroes=*/false);
  };
  CheckGolden(value, no_zeroes, encode_short, decode_head);
  CheckGolden(value, no_zeroes, encode_short, decode_short);
  CheckGolden(value, padded, encode_long, decode_long);
  auto decoded = decode_head(padded);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, value);
  CheckRoundTrip(ExportNameReply{~0ull, 0xffff}, encode_long, decode_long);
  CheckRoundTrip(ExportNameReply{~0ull, 0xffff}, encode_short, decode_short);
  // The streaming form needs only the first 10 bytes; the padding is the
  // caller's. The full forms need every byte of their form.
  CheckPrefixes(padded, decode_head, kOutOfRange,
                [](size_t len) { return len >= 10; });
  CheckPrefixes(padded, decode_long, kOutOfRange);
  CheckPrefixes(no_zeroes, decode_short, kOutOfRange);
  ExpectError(decode_head(Bytes(9, 0)), kOutOfRange, "need 10 bytes, got 9");
  ExpectError(decode_long(no_zeroes), kOutOfRange, "need 134 bytes, got 10");
  // The reserved padding's content is not checked.
  auto junk = decode_long(Concat({no_zeroes, Bytes(124, 0xaa)}));
  ASSERT_TRUE(junk.ok()) << junk.status();
  EXPECT_EQ(*junk, value);
}

const Bytes kInfoRequestGolden = {
    0x00, 0x00, 0x00, 0x04, 'd', 'i', 's', 'k',  // name "disk"
    0x00, 0x02,                                  // 2 requests
    0x00, 0x03,                                  // NBD_INFO_BLOCK_SIZE
    0x00, 0x01,                                  // NBD_INFO_NAME
};

TEST(WireOptions, InfoRequest) {
  CheckGolden(InfoRequest{"disk", {3, 1}}, kInfoRequestGolden,
              EncodeInfoRequest, DecodeInfoRequest);
  CheckGolden(InfoRequest{}, Bytes{0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
              EncodeInfoRequest, DecodeInfoRequest);
  CheckRoundTrip(InfoRequest{std::string(kMaxStringLength, 'n'), {0, 1, 2, 3}},
                 EncodeInfoRequest, DecodeInfoRequest);
  CheckPrefixes(kInfoRequestGolden, DecodeInfoRequest, kInvalid);

  // Name length past the end, and far past it.
  ExpectError(DecodeInfoRequest(WithByte(kInfoRequestGolden, 3, 0x0b)),
              kInvalid, "export name needs 11 bytes");
  Bytes huge = kInfoRequestGolden;
  huge[0] = huge[1] = huge[2] = huge[3] = 0xff;
  ExpectError(DecodeInfoRequest(huge), kInvalid, "4294967295");
  // Request count claims more (or fewer) entries than present.
  ExpectError(DecodeInfoRequest(WithByte(kInfoRequestGolden, 9, 0x03)),
              kInvalid, "request count 3");
  ExpectError(DecodeInfoRequest(WithByte(kInfoRequestGolden, 8, 0xff)),
              kInvalid, "request count 65282");
  ExpectError(DecodeInfoRequest(WithByte(kInfoRequestGolden, 9, 0x01)),
              kInvalid, "request count 1");
  // Trailing garbage.
  ExpectError(DecodeInfoRequest(Concat({kInfoRequestGolden, {0x00}})),
              kInvalid);
  // A 4097-byte name.
  ExpectError(
      DecodeInfoRequest(Concat({LongString32(kMaxStringLength + 1), Zeros(2)})),
      kInvalid, "4097");
}

// ---- NBD_REP_INFO payloads --------------------------------------------------

const Bytes kInfoExportGolden = {
    0x00, 0x00,                                      // NBD_INFO_EXPORT
    0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00,  // 1 GiB
    0x01, 0x6d,  // HAS_FLAGS|SEND_FUA|SEND_FLUSH|SEND_TRIM|SEND_WRITE_ZEROES|
                 // CAN_MULTI_CONN
};
const Bytes kInfoNameGolden = {0x00, 0x01, 'd', 'i', 's', 'k'};
const Bytes kInfoDescriptionGolden = {0x00, 0x02, 'A', ' ', 'd', 'i', 's', 'k'};
const Bytes kInfoBlockSizeGolden = {
    0x00, 0x03,              // NBD_INFO_BLOCK_SIZE
    0x00, 0x00, 0x02, 0x00,  // minimum 512
    0x00, 0x00, 0x10, 0x00,  // preferred 4096
    0x02, 0x00, 0x00, 0x00,  // maximum 32 MiB
};

TEST(WireInfo, InfoType) {
  for (const auto& [golden, type] : std::vector<std::pair<Bytes, uint16_t>>{
           {kInfoExportGolden, 0},
           {kInfoNameGolden, 1},
           {kInfoDescriptionGolden, 2},
           {kInfoBlockSizeGolden, 3},
           {{0x12, 0x34}, 0x1234},  // unknown types decode; callers ignore
       }) {
    auto t = DecodeInfoType(golden);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(*t, type);
  }
  ExpectError(DecodeInfoType(Bytes{}), kInvalid);
  ExpectError(DecodeInfoType(Bytes{0x00}), kInvalid);
}

TEST(WireInfo, InfoExport) {
  const InfoExport value{0x40000000, 0x016d};
  EXPECT_EQ(value.transmission_flags, kTransmitHasFlags | kTransmitSendFlush |
                                          kTransmitSendFua | kTransmitSendTrim |
                                          kTransmitSendWriteZeroes |
                                          kTransmitCanMultiConn);
  CheckGolden(value, kInfoExportGolden, EncodeInfoExport, DecodeInfoExport);
  CheckRoundTrip(InfoExport{~0ull, 0xffff}, EncodeInfoExport, DecodeInfoExport);
  CheckPrefixes(kInfoExportGolden, DecodeInfoExport, kInvalid);
  ExpectError(DecodeInfoExport(Concat({kInfoExportGolden, {0x00}})), kInvalid,
              "13");
  ExpectError(DecodeInfoExport(WithByte(kInfoExportGolden, 1, 0x03)), kInvalid,
              "info type is 3");
}

TEST(WireInfo, InfoName) {
  CheckGolden(InfoName{"disk"}, kInfoNameGolden, EncodeInfoName,
              DecodeInfoName);
  CheckGolden(InfoName{""}, Bytes{0x00, 0x01}, EncodeInfoName, DecodeInfoName);
  // The name is the rest of the payload, so every prefix of >= 2 bytes is a
  // shorter name.
  CheckPrefixes(kInfoNameGolden, DecodeInfoName, kInvalid,
                [](size_t len) { return len >= 2; });
  ExpectError(DecodeInfoName(kInfoDescriptionGolden), kInvalid,
              "info type is 2");
  CheckRoundTrip(InfoName{std::string(kMaxStringLength, 'n')}, EncodeInfoName,
                 DecodeInfoName);
  ExpectError(
      DecodeInfoName(Concat({{0x00, 0x01}, Repeat('n', kMaxStringLength + 1)})),
      kInvalid, "4097");
}

TEST(WireInfo, InfoDescription) {
  CheckGolden(InfoDescription{"A disk"}, kInfoDescriptionGolden,
              EncodeInfoDescription, DecodeInfoDescription);
  CheckPrefixes(kInfoDescriptionGolden, DecodeInfoDescription, kInvalid,
                [](size_t len) { return len >= 2; });
  ExpectError(DecodeInfoDescription(kInfoNameGolden), kInvalid,
              "info type is 1");
  CheckRoundTrip(InfoDescription{std::string(kMaxStringLength, 'd')},
                 EncodeInfoDescription, DecodeInfoDescription);
  ExpectError(DecodeInfoDescription(
                  Concat({{0x00, 0x02}, Repeat('d', kMaxStringLength + 1)})),
              kInvalid, "4097");
}

TEST(WireInfo, InfoBlockSize) {
  CheckGolden(InfoBlockSize{512, 4096, 32u << 20}, kInfoBlockSizeGolden,
              EncodeInfoBlockSize, DecodeInfoBlockSize);
  CheckRoundTrip(InfoBlockSize{1, 4096, kBlockSizeNoLimit}, EncodeInfoBlockSize,
                 DecodeInfoBlockSize);
  CheckPrefixes(kInfoBlockSizeGolden, DecodeInfoBlockSize, kInvalid);
  ExpectError(DecodeInfoBlockSize(Concat({kInfoBlockSizeGolden, {0x00}})),
              kInvalid, "15");
  ExpectError(DecodeInfoBlockSize(WithByte(kInfoBlockSizeGolden, 1, 0x00)),
              kInvalid, "info type is 0");
  // A 14-byte payload of the wrong type is still the wrong type.
  ExpectError(DecodeInfoExport(kInfoBlockSizeGolden), kInvalid);
}

// ---- NBD_REP_SERVER and meta contexts ---------------------------------------

const Bytes kServerReplyGolden = {
    0x00, 0x00, 0x00, 0x04, 'd', 'i', 's', 'k',  // name "disk"
    't',  'e',  's',  't',                       // description "test"
};

TEST(WireOptions, ServerReply) {
  CheckGolden(ServerReply{"disk", "test"}, kServerReplyGolden,
              EncodeServerReply, DecodeServerReply);
  CheckGolden(ServerReply{"", ""}, Bytes{0x00, 0x00, 0x00, 0x00},
              EncodeServerReply, DecodeServerReply);
  CheckRoundTrip(ServerReply{std::string(kMaxStringLength, 'n'),
                             std::string(kMaxStringLength, 'd')},
                 EncodeServerReply, DecodeServerReply);
  // Once the name is complete, a shorter payload is a shorter description.
  CheckPrefixes(kServerReplyGolden, DecodeServerReply, kInvalid,
                [](size_t len) { return len >= 8; });
  ExpectError(DecodeServerReply(WithByte(kServerReplyGolden, 3, 0x09)),
              kInvalid, "name needs 9 bytes at offset 4 but only 8 remain");
  Bytes huge = kServerReplyGolden;
  huge[0] = 0x80;
  ExpectError(DecodeServerReply(huge), kInvalid, "2147483652");
  ExpectError(DecodeServerReply(LongString32(kMaxStringLength + 1)), kInvalid,
              "4097");
  ExpectError(DecodeServerReply(Concat({{0x00, 0x00, 0x00, 0x00},
                                        Repeat('d', kMaxStringLength + 1)})),
              kInvalid, "description length 4097");
}

const Bytes kMetaContextRequestGolden = {
    0x00, 0x00, 0x00, 0x04, 'd', 'i', 's', 'k',  // export "disk"
    0x00, 0x00, 0x00, 0x02,                      // 2 queries
    0x00, 0x00, 0x00, 0x0f,                      // "base:allocation"
    'b',  'a',  's',  'e',  ':', 'a', 'l', 'l', 'o', 'c', 'a', 't', 'i', 'o',
    'n',                     //
    0x00, 0x00, 0x00, 0x05,  // "qemu:"
    'q',  'e',  'm',  'u',  ':',
};

TEST(WireOptions, MetaContextRequest) {
  const MetaContextRequest value{"disk", {"base:allocation", "qemu:"}};
  CheckGolden(value, kMetaContextRequestGolden, EncodeMetaContextRequest,
              DecodeMetaContextRequest);
  CheckGolden(MetaContextRequest{"disk", {}},
              Bytes{0x00, 0x00, 0x00, 0x04, 'd', 'i', 's', 'k',  //
                    0x00, 0x00, 0x00, 0x00},
              EncodeMetaContextRequest, DecodeMetaContextRequest);
  CheckRoundTrip(MetaContextRequest{std::string(kMaxStringLength, 'n'),
                                    {"", std::string(kMaxStringLength, 'q')}},
                 EncodeMetaContextRequest, DecodeMetaContextRequest);
  CheckPrefixes(kMetaContextRequestGolden, DecodeMetaContextRequest, kInvalid);

  // Query count far beyond what the payload could hold: rejected before
  // anything is reserved.
  Bytes many = kMetaContextRequestGolden;
  many[8] = many[9] = many[10] = many[11] = 0xff;
  ExpectError(DecodeMetaContextRequest(many), kInvalid,
              "query count 4294967295");
  // Query count one too high: the third query is missing.
  ExpectError(
      DecodeMetaContextRequest(WithByte(kMetaContextRequestGolden, 11, 0x03)),
      kInvalid);
  // Query count one too low: trailing garbage.
  ExpectError(
      DecodeMetaContextRequest(WithByte(kMetaContextRequestGolden, 11, 0x01)),
      kInvalid, "trailing");
  ExpectError(
      DecodeMetaContextRequest(Concat({kMetaContextRequestGolden, {'x'}})),
      kInvalid, "trailing");
  // A query length that overruns the payload.
  ExpectError(
      DecodeMetaContextRequest(WithByte(kMetaContextRequestGolden, 34, 0x06)),
      kInvalid, "query needs 6 bytes");
  ExpectError(
      DecodeMetaContextRequest(WithByte(kMetaContextRequestGolden, 12, 0xff)),
      kInvalid);
  // Export name length that overruns.
  ExpectError(
      DecodeMetaContextRequest(WithByte(kMetaContextRequestGolden, 0, 0x01)),
      kInvalid);
  // 4097-byte export name and query.
  ExpectError(
      DecodeMetaContextRequest(Concat(
          {LongString32(kMaxStringLength + 1), {0x00, 0x00, 0x00, 0x00}})),
      kInvalid, "4097");
  ExpectError(DecodeMetaContextRequest(
                  Concat({{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01},
                          LongString32(kMaxStringLength + 1)})),
              kInvalid, "query length 4097");
}

const Bytes kMetaContextReplyGolden = {
    0x12, 0x34, 0x56, 0x78,  // context id
    'b',  'a',  's',  'e',  ':', 'a', 'l', 'l',
    'o',  'c',  'a',  't',  'i', 'o', 'n',
};

TEST(WireOptions, MetaContextReply) {
  CheckGolden(MetaContextReply{0x12345678, "base:allocation"},
              kMetaContextReplyGolden, EncodeMetaContextReply,
              DecodeMetaContextReply);
  CheckRoundTrip(MetaContextReply{~0u, std::string(kMaxStringLength, 'm')},
                 EncodeMetaContextReply, DecodeMetaContextReply);
  // The name is the rest and must be non-empty.
  CheckPrefixes(kMetaContextReplyGolden, DecodeMetaContextReply, kInvalid,
                [](size_t len) { return len >= 5; });
  ExpectError(DecodeMetaContextReply(Bytes{0x00, 0x00, 0x00, 0x01}), kInvalid,
              "at least 5");
  ExpectError(
      DecodeMetaContextReply(Concat(
          {{0x00, 0x00, 0x00, 0x01}, Repeat('m', kMaxStringLength + 1)})),
      kInvalid, "4097");
}

// ---- Transmission: requests -------------------------------------------------

const Bytes kRequestGolden = {
    0x25, 0x60, 0x95, 0x13,                          // NBD_REQUEST_MAGIC
    0x00, 0x01,                                      // FUA
    0x00, 0x01,                                      // NBD_CMD_WRITE
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // cookie
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,  // offset 4096
    0x00, 0x00, 0x02, 0x00,                          // length 512
};

TEST(WireRequests, CompactRequest) {
  ASSERT_EQ(kRequestGolden.size(), kRequestSize);
  CheckGolden(Request{kCmdFlagFua, 1, 0x0102030405060708, 4096, 512},
              kRequestGolden, EncodeRequest, DecodeRequest);
  CheckRoundTrip(Request{0xffff, 0xffff, ~0ull, ~0ull, ~0u}, EncodeRequest,
                 DecodeRequest);
  // NBD_CMD_DISC: everything zero but the type.
  CheckGolden(
      Request{0, 2, 0, 0, 0},
      Concat({{0x25, 0x60, 0x95, 0x13, 0x00, 0x00, 0x00, 0x02}, Zeros(20)}),
      EncodeRequest, DecodeRequest);
  CheckPrefixes(kRequestGolden, DecodeRequest, kOutOfRange);
  ExpectError(DecodeRequest(Bytes(27, 0)), kOutOfRange,
              "request: need 28 bytes, got 27");
  auto extra = DecodeRequest(Concat({kRequestGolden, {0xff, 0xff}}));
  ASSERT_TRUE(extra.ok()) << extra.status();
  ExpectError(DecodeRequest(Concat(
                  {{0x21, 0xe4, 0x1c, 0x71},
                   Bytes(kRequestGolden.begin() + 4, kRequestGolden.end())})),
              kInvalid, "0x21e41c71");
}

const Bytes kExtendedRequestGolden = {
    0x21, 0xe4, 0x1c, 0x71,                          // extended magic
    0x00, 0x28,                                      // PAYLOAD_LEN|REQ_ONE
    0x00, 0x07,                                      // NBD_CMD_BLOCK_STATUS
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // cookie
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  // offset 4 GiB
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,  // payload length 16
};

TEST(WireRequests, ExtendedRequest) {
  ASSERT_EQ(kExtendedRequestGolden.size(), kExtendedRequestSize);
  CheckGolden(ExtendedRequest{kCmdFlagPayloadLen | kCmdFlagReqOne, 7,
                              0x0102030405060708, 0x100000000ull, 16},
              kExtendedRequestGolden, EncodeExtendedRequest,
              DecodeExtendedRequest);
  CheckRoundTrip(ExtendedRequest{0xffff, 0xffff, ~0ull, ~0ull, ~0ull},
                 EncodeExtendedRequest, DecodeExtendedRequest);
  CheckPrefixes(kExtendedRequestGolden, DecodeExtendedRequest, kOutOfRange);
  ExpectError(DecodeExtendedRequest(Concat({kRequestGolden, Zeros(4)})),
              kInvalid, "0x25609513");
}

const Bytes kBlockStatusPayloadGolden = {
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  // effect length 4 GiB
    0x00, 0x00, 0x00, 0x01,                          // context id 1
    0x00, 0x00, 0x00, 0x02,                          // context id 2
};

TEST(WireRequests, BlockStatusPayload) {
  CheckGolden(BlockStatusPayload{0x100000000ull, {1, 2}},
              kBlockStatusPayloadGolden, EncodeBlockStatusPayload,
              DecodeBlockStatusPayload);
  CheckRoundTrip(BlockStatusPayload{~0ull, {~0u}}, EncodeBlockStatusPayload,
                 DecodeBlockStatusPayload);
  CheckPrefixes(kBlockStatusPayloadGolden, DecodeBlockStatusPayload, kInvalid,
                [](size_t len) { return len == 12; });
  ExpectError(
      DecodeBlockStatusPayload(Concat({kBlockStatusPayloadGolden, {0, 0}})),
      kInvalid, "18");
}

// ---- Transmission: replies --------------------------------------------------

TEST(WireReplies, ReplyMagic) {
  for (const auto& [golden, magic] : std::vector<std::pair<Bytes, uint32_t>>{
           {{0x67, 0x44, 0x66, 0x98}, kSimpleReplyMagic},
           {{0x66, 0x8e, 0x33, 0xef}, kStructuredReplyMagic},
           {{0x6e, 0x8a, 0x27, 0x8c}, kExtendedReplyMagic},
           {{0xde, 0xad, 0xbe, 0xef}, 0xdeadbeef},  // the caller judges it
       }) {
    auto m = DecodeReplyMagic(golden);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(*m, magic);
    CheckPrefixes(golden, DecodeReplyMagic, kOutOfRange);
  }
}

const Bytes kSimpleReplyGolden = {
    0x67, 0x44, 0x66, 0x98,                          // simple reply magic
    0x00, 0x00, 0x00, 0x05,                          // EIO
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // cookie
};

TEST(WireReplies, SimpleReply) {
  CheckGolden(SimpleReply{5, 0x0102030405060708}, kSimpleReplyGolden,
              EncodeSimpleReply, DecodeSimpleReply);
  CheckRoundTrip(SimpleReply{~0u, ~0ull}, EncodeSimpleReply, DecodeSimpleReply);
  CheckPrefixes(kSimpleReplyGolden, DecodeSimpleReply, kOutOfRange);
  ExpectError(DecodeSimpleReply(Bytes(3, 0)), kOutOfRange,
              "simple reply: need 16 bytes, got 3");
  ExpectError(DecodeSimpleReply(WithByte(kSimpleReplyGolden, 3, 0x99)),
              kInvalid, "0x67446699");
}

const Bytes kStructuredReplyHeaderGolden = {
    0x66, 0x8e, 0x33, 0xef,                          // structured magic
    0x00, 0x01,                                      // NBD_REPLY_FLAG_DONE
    0x00, 0x01,                                      // OFFSET_DATA
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // cookie
    0x00, 0x00, 0x10, 0x08,                          // length 4104
};

TEST(WireReplies, StructuredReplyHeader) {
  CheckGolden(
      StructuredReplyHeader{kReplyFlagDone, 1, 0x0102030405060708, 4104},
      kStructuredReplyHeaderGolden, EncodeStructuredReplyHeader,
      DecodeStructuredReplyHeader);
  CheckRoundTrip(StructuredReplyHeader{0xffff, 0xffff, ~0ull, ~0u},
                 EncodeStructuredReplyHeader, DecodeStructuredReplyHeader);
  CheckPrefixes(kStructuredReplyHeaderGolden, DecodeStructuredReplyHeader,
                kOutOfRange);
  // A simple reply's 16 bytes are not enough, and its magic is wrong.
  ExpectError(DecodeStructuredReplyHeader(kSimpleReplyGolden), kOutOfRange,
              "need 20 bytes, got 16");
  ExpectError(
      DecodeStructuredReplyHeader(Concat({kSimpleReplyGolden, Zeros(4)})),
      kInvalid, "0x67446698");
}

const Bytes kExtendedReplyHeaderGolden = {
    0x6e, 0x8a, 0x27, 0x8c,                          // extended reply magic
    0x00, 0x01,                                      // NBD_REPLY_FLAG_DONE
    0x00, 0x06,                                      // BLOCK_STATUS_EXT
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // cookie
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  // offset 4 GiB
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28,  // length 40
};

TEST(WireReplies, ExtendedReplyHeader) {
  CheckGolden(ExtendedReplyHeader{kReplyFlagDone, 6, 0x0102030405060708,
                                  0x100000000ull, 40},
              kExtendedReplyHeaderGolden, EncodeExtendedReplyHeader,
              DecodeExtendedReplyHeader);
  CheckRoundTrip(ExtendedReplyHeader{0xffff, 0xffff, ~0ull, ~0ull, ~0ull},
                 EncodeExtendedReplyHeader, DecodeExtendedReplyHeader);
  CheckPrefixes(kExtendedReplyHeaderGolden, DecodeExtendedReplyHeader,
                kOutOfRange);
  ExpectError(DecodeExtendedReplyHeader(
                  Concat({kStructuredReplyHeaderGolden, Zeros(12)})),
              kInvalid, "0x668e33ef");
}

// Fixed-size headers read exactly their own bytes: whatever follows in the
// span (the next message, a payload) changes nothing.
template <typename T, typename Decode>
void CheckIgnoresTrailing(const Bytes& golden, Decode decode) {
  auto exact = DecodeCopy(decode, golden);
  ASSERT_TRUE(exact.ok()) << exact.status();
  for (const Bytes& tail : {Bytes{0x00}, Bytes(7, 0xff), Bytes(200, 0x5a)}) {
    auto longer = DecodeCopy(decode, Concat({golden, tail}));
    ASSERT_TRUE(longer.ok()) << longer.status();
    EXPECT_TRUE(static_cast<T>(*longer) == static_cast<T>(*exact))
        << "tail of " << tail.size();
  }
}

TEST(WireFixedHeaders, TrailingBytesAreIgnored) {
  CheckIgnoresTrailing<OldstyleGreeting>(kOldstyleGolden,
                                         DecodeOldstyleGreeting);
  CheckIgnoresTrailing<NewstyleGreeting>(kNewstyleGolden,
                                         DecodeNewstyleGreeting);
  CheckIgnoresTrailing<uint32_t>(Bytes{0x00, 0x00, 0x00, 0x03},
                                 DecodeClientFlags);
  CheckIgnoresTrailing<OptionRequestHeader>(kOptionRequestHeaderGolden,
                                            DecodeOptionRequestHeader);
  CheckIgnoresTrailing<OptionReplyHeader>(kOptionReplyHeaderGolden,
                                          DecodeOptionReplyHeader);
  CheckIgnoresTrailing<Request>(kRequestGolden, DecodeRequest);
  CheckIgnoresTrailing<ExtendedRequest>(kExtendedRequestGolden,
                                        DecodeExtendedRequest);
  CheckIgnoresTrailing<SimpleReply>(kSimpleReplyGolden, DecodeSimpleReply);
  CheckIgnoresTrailing<StructuredReplyHeader>(kStructuredReplyHeaderGolden,
                                              DecodeStructuredReplyHeader);
  CheckIgnoresTrailing<ExtendedReplyHeader>(kExtendedReplyHeaderGolden,
                                            DecodeExtendedReplyHeader);
}

// ---- Chunk payloads ---------------------------------------------------------

TEST(WireChunks, OffsetData) {
  const Bytes golden = {
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,  // offset 4096
      0xde, 0xad, 0xbe, 0xef,                          // data
  };
  const Bytes data = {0xde, 0xad, 0xbe, 0xef};
  EXPECT_EQ(EncodeOffsetData(4096, data), golden);
  auto offset = DecodeOffsetDataHeader(golden);
  ASSERT_TRUE(offset.ok()) << offset.status();
  EXPECT_EQ(*offset, 4096u);
  auto max = DecodeOffsetDataHeader(EncodeOffsetData(~0ull, data));
  ASSERT_TRUE(max.ok()) << max.status();
  EXPECT_EQ(*max, ~0ull);
  // At least one data byte must follow the offset.
  CheckPrefixes(golden, DecodeOffsetDataHeader, kInvalid,
                [](size_t len) { return len >= 9; });
  ExpectError(DecodeOffsetDataHeader(ByteSpan(golden).first(8)), kInvalid,
              "at least 9");
}

const Bytes kOffsetHoleGolden = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00,  // offset 8192
    0x00, 0x01, 0x00, 0x00,                          // length 64 KiB
};

TEST(WireChunks, OffsetHole) {
  CheckGolden(OffsetHole{8192, 0x10000}, kOffsetHoleGolden, EncodeOffsetHole,
              DecodeOffsetHole);
  CheckRoundTrip(OffsetHole{~0ull, ~0u}, EncodeOffsetHole, DecodeOffsetHole);
  // A zero-length hole is the core's to reject, not the decoder's.
  CheckGolden(OffsetHole{8192, 0}, Concat({Zeros(6), {0x20, 0x00}, Zeros(4)}),
              EncodeOffsetHole, DecodeOffsetHole);
  CheckPrefixes(kOffsetHoleGolden, DecodeOffsetHole, kInvalid);
  ExpectError(DecodeOffsetHole(Concat({kOffsetHoleGolden, {0x00}})), kInvalid,
              "13");
}

const Bytes kBlockStatusGolden = {
    0x00, 0x00, 0x00, 0x01,  // context id 1
    0x00, 0x00, 0x10, 0x00,  // 4096 bytes
    0x00, 0x00, 0x00, 0x00,  // allocated
    0x00, 0x00, 0x30, 0x00,  // 12288 bytes
    0x00, 0x00, 0x00, 0x03,  // HOLE|ZERO
};

TEST(WireChunks, BlockStatus) {
  const BlockStatusChunk value{1, {{0x1000, 0}, {0x3000, 3}}};
  auto decode = [](ByteSpan in) { return DecodeBlockStatus(in, 2); };
  CheckGolden(value, kBlockStatusGolden, EncodeBlockStatus, decode);
  CheckRoundTrip(BlockStatusChunk{~0u, {{0xffffffff, 0xffffffff}}},
                 EncodeBlockStatus, decode);
  // A zero-length extent is the core's to reject.
  CheckRoundTrip(BlockStatusChunk{1, {{0, 0}}}, EncodeBlockStatus, decode);
  // Only 4 + 8n (n >= 1) is a valid length.
  CheckPrefixes(kBlockStatusGolden, decode, kInvalid,
                [](size_t len) { return len == 12; });
  ExpectError(decode(Concat({kBlockStatusGolden, {0x00}})), kInvalid, "21");
  ExpectError(decode(Concat({kBlockStatusGolden, Zeros(8)})), kInvalid,
              "3 extents exceed the limit of 2");
  ExpectError(DecodeBlockStatus(kBlockStatusGolden, 1), kInvalid,
              "2 extents exceed the limit of 1");
  ExpectError(DecodeBlockStatus(kBlockStatusGolden, 0), kInvalid);
  auto big = DecodeBlockStatus(kBlockStatusGolden, ~size_t{0});
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(*big, value);
}

const Bytes kBlockStatusExtGolden = {
    0x00, 0x00, 0x00, 0x01,                          // context id 1
    0x00, 0x00, 0x00, 0x02,                          // 2 descriptors
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,  // 4096 bytes
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // allocated
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  // 4 GiB
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03,  // HOLE|ZERO
};

TEST(WireChunks, BlockStatusExt) {
  const BlockStatusChunk value{1, {{0x1000, 0}, {0x100000000ull, 3}}};
  auto decode = [](ByteSpan in) { return DecodeBlockStatusExt(in, 2); };
  CheckGolden(value, kBlockStatusExtGolden, EncodeBlockStatusExt, decode);
  CheckRoundTrip(BlockStatusChunk{~0u, {{~0ull, ~0ull}}}, EncodeBlockStatusExt,
                 decode);
  CheckRoundTrip(BlockStatusChunk{1, {{0, 0}}}, EncodeBlockStatusExt, decode);
  // Any prefix is either a bad length or disagrees with the count of 2.
  CheckPrefixes(kBlockStatusExtGolden, decode, kInvalid);
  ExpectError(decode(ByteSpan(kBlockStatusExtGolden).first(24)), kInvalid,
              "count field 2 does not match the 1 descriptors");
  ExpectError(decode(Concat({kBlockStatusExtGolden, {0x00}})), kInvalid, "41");
  // Count field wrong: zero, too small, enormous.
  ExpectError(decode(WithByte(kBlockStatusExtGolden, 7, 0x00)), kInvalid,
              "count field 0");
  ExpectError(decode(WithByte(kBlockStatusExtGolden, 7, 0x01)), kInvalid,
              "count field 1");
  Bytes huge = kBlockStatusExtGolden;
  huge[4] = huge[5] = huge[6] = huge[7] = 0xff;
  ExpectError(decode(huge), kInvalid, "count field 4294967295");
  // Zero descriptors with a matching zero count is still invalid.
  ExpectError(decode(Bytes{0, 0, 0, 1, 0, 0, 0, 0}), kInvalid);
  // More extents than the caller allows.
  ExpectError(DecodeBlockStatusExt(kBlockStatusExtGolden, 1), kInvalid,
              "2 extents exceed the limit of 1");
  ExpectError(DecodeBlockStatusExt(kBlockStatusExtGolden, 0), kInvalid);
}

const Bytes kErrorGolden = {
    0x00, 0x00, 0x00, 0x16,  // EINVAL
    0x00, 0x03,              // message length 3
    'b',  'a',  'd',
};

TEST(WireChunks, Error) {
  CheckGolden(ErrorChunk{22, "bad"}, kErrorGolden, EncodeErrorChunk,
              DecodeErrorChunk);
  CheckGolden(ErrorChunk{5, ""}, Bytes{0x00, 0x00, 0x00, 0x05, 0x00, 0x00},
              EncodeErrorChunk, DecodeErrorChunk);
  // error == 0 is the core's to reject.
  CheckRoundTrip(ErrorChunk{0, "x"}, EncodeErrorChunk, DecodeErrorChunk);
  CheckRoundTrip(ErrorChunk{~0u, std::string(kMaxStringLength, 'e')},
                 EncodeErrorChunk, DecodeErrorChunk);
  CheckPrefixes(kErrorGolden, DecodeErrorChunk, kInvalid);
  ExpectError(DecodeErrorChunk(Concat({kErrorGolden, {'!'}})), kInvalid,
              "message length 3 needs a payload of 9 bytes, got 10");
  ExpectError(DecodeErrorChunk(WithByte(kErrorGolden, 5, 0x04)), kInvalid,
              "message length 4");
  Bytes huge = kErrorGolden;
  huge[4] = huge[5] = 0xff;
  ExpectError(DecodeErrorChunk(huge), kInvalid, "message length 65535");
  Bytes long_msg = {0x00, 0x00, 0x00, 0x05, 0x10, 0x01};  // msglen 4097
  long_msg.insert(long_msg.end(), kMaxStringLength + 1, 'e');
  ExpectError(DecodeErrorChunk(long_msg), kInvalid, "4097");
  // The encoder keeps msglen consistent even for an overlong message.
  const Bytes clipped = EncodeErrorChunk({1, std::string(70000, 'e')});
  ASSERT_EQ(clipped.size(), 6u + 0xffff);
  EXPECT_EQ(LoadBe16(clipped.data() + 4), 0xffff);
}

const Bytes kErrorOffsetGolden = {
    0x00, 0x00, 0x00, 0x05,                          // EIO
    0x00, 0x02,                                      // message length 2
    'i',  'o',                                       // message
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x30, 0x00,  // offset 12288
};

TEST(WireChunks, ErrorOffset) {
  CheckGolden(ErrorOffsetChunk{5, "io", 0x3000}, kErrorOffsetGolden,
              EncodeErrorOffsetChunk, DecodeErrorOffsetChunk);
  CheckGolden(
      ErrorOffsetChunk{5, "", 0x3000},
      Concat({{0x00, 0x00, 0x00, 0x05, 0x00, 0x00}, Zeros(6), {0x30, 0x00}}),
      EncodeErrorOffsetChunk, DecodeErrorOffsetChunk);
  CheckRoundTrip(
      ErrorOffsetChunk{~0u, std::string(kMaxStringLength, 'e'), ~0ull},
      EncodeErrorOffsetChunk, DecodeErrorOffsetChunk);
  CheckPrefixes(kErrorOffsetGolden, DecodeErrorOffsetChunk, kInvalid);
  ExpectError(DecodeErrorOffsetChunk(Concat({kErrorOffsetGolden, {0x00}})),
              kInvalid, "message length 2 needs a payload of 16 bytes, got 17");
  ExpectError(DecodeErrorOffsetChunk(WithByte(kErrorOffsetGolden, 5, 0x03)),
              kInvalid, "message length 3");
  // A plain ERROR payload is too short to be ERROR_OFFSET.
  ExpectError(DecodeErrorOffsetChunk(kErrorGolden), kInvalid, "14");
  Bytes huge = kErrorOffsetGolden;
  huge[4] = huge[5] = 0xff;
  ExpectError(DecodeErrorOffsetChunk(huge), kInvalid, "65535");
  Bytes long_msg = {0x00, 0x00, 0x00, 0x05, 0x10, 0x01};  // msglen 4097
  long_msg.insert(long_msg.end(), kMaxStringLength + 1, 'e');
  long_msg.insert(long_msg.end(), 8, 0x00);
  ExpectError(DecodeErrorOffsetChunk(long_msg), kInvalid, "4097");
}

}  // namespace
}  // namespace nbd
