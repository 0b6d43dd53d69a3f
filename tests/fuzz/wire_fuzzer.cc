// libFuzzer entry point for every decoder in protocol/wire.h.
//
// Input: u8 selector (% kNumDecoders) picks the decoder, u8 parameter
// (max_extents for the block-status decoders: 0 -> 2^20, else the value;
// bit 0: no_zeroes for the two-argument DecodeExportNameReply), then the
// bytes handed to the decoder.
//
// Checks, following the contract at the top of wire.h:
//  - fixed-size decoders: a span shorter than the structure is OutOfRange,
//    any other failure is InvalidArgument; on success the encoder
//    reproduces the decoded prefix (the reserved bytes that the decoder
//    ignores aside);
//  - payload decoders: failures are InvalidArgument; on success the encoder
//    reproduces the whole payload, every string fits kMaxStringLength and
//    the extent count is within max_extents;
//  - decoding what was encoded gives the same value back.
// AddressSanitizer catches any read past the span (the input is an
// exactly-sized heap copy, in libFuzzer and in the corpus replay).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "protocol/constants.h"
#include "protocol/endian.h"
#include "protocol/wire.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using nbd::Bytes;
using nbd::ByteSpan;

enum Decoder : uint8_t {
  kOldstyleGreeting,
  kNewstyleGreeting,
  kGreetingKind,
  kClientFlags,
  kOptionRequestHeader,
  kOptionReplyHeader,
  kExportNameReplyHead,
  kExportNameReply,
  kInfoRequest,
  kInfoType,
  kInfoExport,
  kInfoName,
  kInfoDescription,
  kInfoBlockSize,
  kServerReply,
  kMetaContextRequest,
  kMetaContextReply,
  kRequest,
  kExtendedRequest,
  kBlockStatusPayload,
  kReplyMagic,
  kSimpleReply,
  kStructuredReplyHeader,
  kExtendedReplyHeader,
  kOffsetDataHeader,
  kOffsetHole,
  kBlockStatus,
  kBlockStatusExt,
  kErrorChunk,
  kErrorOffsetChunk,
  kNumDecoders,
};

template <typename Container>
bool SameBytes(const Container& encoded, ByteSpan in) {
  return encoded.size() <= in.size() &&
         std::equal(encoded.begin(), encoded.end(), in.begin());
}

template <typename Container>
bool WholeBytes(const Container& encoded, ByteSpan in) {
  return encoded.size() == in.size() &&
         std::equal(encoded.begin(), encoded.end(), in.begin());
}

// A fixed-size structure of `size` bytes: short input is OutOfRange, other
// failures InvalidArgument. Returns whether decoding succeeded.
template <typename T>
bool CheckFixed(const absl::StatusOr<T>& r, ByteSpan in, size_t size) {
  if (in.size() < size) {
    NBD_FUZZ_CHECK_MSG(!r.ok() && absl::IsOutOfRange(r.status()),
                       "short input to a fixed decoder is not OutOfRange");
    return false;
  }
  if (!r.ok()) {
    NBD_FUZZ_CHECK_MSG(absl::IsInvalidArgument(r.status()),
                       "a fixed decoder failed with a code other than "
                       "InvalidArgument");
    NBD_FUZZ_CHECK(!r.status().message().empty());
  }
  return r.ok();
}

// A payload decoder: failures are InvalidArgument with a message.
template <typename T>
bool CheckPayload(const absl::StatusOr<T>& r) {
  if (!r.ok()) {
    NBD_FUZZ_CHECK_MSG(absl::IsInvalidArgument(r.status()),
                       "a payload decoder failed with a code other than "
                       "InvalidArgument");
    NBD_FUZZ_CHECK(!r.status().message().empty());
  }
  return r.ok();
}

bool FitsString(const std::string& s) {
  return s.size() <= nbd::kMaxStringLength;
}

// Fixed structures whose every byte is significant: encode(decode(in)) is
// the prefix, and decode(encode(x)) == x.
template <typename T, typename Dec, typename Enc>
void FixedRoundTrip(ByteSpan in, size_t size, Dec decode, Enc encode) {
  absl::StatusOr<T> r = decode(in);
  if (!CheckFixed(r, in, size)) return;
  const auto encoded = encode(*r);
  NBD_FUZZ_CHECK(encoded.size() == size);
  NBD_FUZZ_CHECK_MSG(SameBytes(encoded, in),
                     "re-encoding does not reproduce the decoded bytes");
  absl::StatusOr<T> again = decode(ByteSpan(encoded.data(), encoded.size()));
  NBD_FUZZ_CHECK(again.ok() && *again == *r);
}

// Payloads: encode(decode(in)) == in, and decode(encode(x)) == x.
template <typename T, typename Dec, typename Enc>
void PayloadRoundTrip(ByteSpan in, Dec decode, Enc encode,
                      bool (*valid)(const T&)) {
  absl::StatusOr<T> r = decode(in);
  if (!CheckPayload(r)) return;
  NBD_FUZZ_CHECK_MSG(valid(*r), "decoded value breaks the decoder's bounds");
  const Bytes encoded = encode(*r);
  NBD_FUZZ_CHECK_MSG(WholeBytes(encoded, in),
                     "re-encoding does not reproduce the payload");
  absl::StatusOr<T> again = decode(ByteSpan(encoded.data(), encoded.size()));
  NBD_FUZZ_CHECK(again.ok() && *again == *r);
}

void Run(uint8_t selector, uint8_t param, ByteSpan in) {
  const size_t max_extents = param == 0 ? size_t{1} << 20 : param;
  switch (static_cast<Decoder>(selector % kNumDecoders)) {
    case kOldstyleGreeting: {
      auto r = nbd::DecodeOldstyleGreeting(in);
      if (!CheckFixed(r, in, nbd::kOldstyleGreetingSize)) return;
      const auto encoded = nbd::EncodeOldstyleGreeting(*r);
      // The 124 reserved bytes are ignored by the decoder and zero when
      // encoded: compare the 28 significant ones.
      NBD_FUZZ_CHECK(
          std::equal(encoded.begin(), encoded.begin() + 28, in.begin()));
      auto again = nbd::DecodeOldstyleGreeting(encoded);
      NBD_FUZZ_CHECK(again.ok() && *again == *r);
      return;
    }
    case kNewstyleGreeting:
      return FixedRoundTrip<nbd::NewstyleGreeting>(
          in, nbd::kNewstyleGreetingSize, nbd::DecodeNewstyleGreeting,
          nbd::EncodeNewstyleGreeting);
    case kGreetingKind: {
      auto r = nbd::DecodeGreetingKind(in);
      if (!CheckFixed(r, in, 16)) return;
      const uint64_t second = nbd::LoadBe64(in.data() + 8);
      NBD_FUZZ_CHECK(nbd::LoadBe64(in.data()) == nbd::kNbdMagic);
      NBD_FUZZ_CHECK((*r == nbd::GreetingKind::kOldstyle &&
                      second == nbd::kOldstyleMagic) ||
                     (*r == nbd::GreetingKind::kNewstyle &&
                      second == nbd::kIHaveOptMagic));
      return;
    }
    case kClientFlags: {
      auto r = nbd::DecodeClientFlags(in);
      if (!CheckFixed(r, in, nbd::kClientFlagsSize)) return;
      NBD_FUZZ_CHECK((*r & ~nbd::kClientFlagsKnown) == 0);
      NBD_FUZZ_CHECK(SameBytes(nbd::EncodeClientFlags(*r), in));
      return;
    }
    case kOptionRequestHeader:
      return FixedRoundTrip<nbd::OptionRequestHeader>(
          in, nbd::kOptionRequestHeaderSize, nbd::DecodeOptionRequestHeader,
          nbd::EncodeOptionRequestHeader);
    case kOptionReplyHeader:
      return FixedRoundTrip<nbd::OptionReplyHeader>(
          in, nbd::kOptionReplyHeaderSize, nbd::DecodeOptionReplyHeader,
          nbd::EncodeOptionReplyHeader);
    case kExportNameReplyHead: {
      auto r = nbd::DecodeExportNameReply(in);
      if (!CheckFixed(r, in, nbd::kExportNameReplyNoZeroesSize)) return;
      NBD_FUZZ_CHECK(
          SameBytes(nbd::EncodeExportNameReply(*r, /*no_zeroes=*/true), in));
      return;
    }
    case kExportNameReply: {
      const bool no_zeroes = param & 1;
      auto r = nbd::DecodeExportNameReply(in, no_zeroes);
      const size_t size = no_zeroes ? nbd::kExportNameReplyNoZeroesSize
                                    : nbd::kExportNameReplySize;
      if (!CheckFixed(r, in, size)) return;
      const Bytes encoded = nbd::EncodeExportNameReply(*r, no_zeroes);
      NBD_FUZZ_CHECK(encoded.size() == size);
      // The padding is reserved and ignored: compare the 10-byte head.
      NBD_FUZZ_CHECK(
          std::equal(encoded.begin(), encoded.begin() + 10, in.begin()));
      auto again = nbd::DecodeExportNameReply(encoded, no_zeroes);
      NBD_FUZZ_CHECK(again.ok() && *again == *r);
      return;
    }
    case kInfoRequest:
      return PayloadRoundTrip<nbd::InfoRequest>(
          in, nbd::DecodeInfoRequest, nbd::EncodeInfoRequest,
          [](const nbd::InfoRequest& r) { return FitsString(r.export_name); });
    case kInfoType: {
      auto r = nbd::DecodeInfoType(in);
      if (!CheckPayload(r)) {
        NBD_FUZZ_CHECK(in.size() < 2);
        return;
      }
      NBD_FUZZ_CHECK(in.size() >= 2 && *r == nbd::LoadBe16(in.data()));
      return;
    }
    case kInfoExport:
      return PayloadRoundTrip<nbd::InfoExport>(
          in, nbd::DecodeInfoExport, nbd::EncodeInfoExport,
          [](const nbd::InfoExport&) { return true; });
    case kInfoName:
      return PayloadRoundTrip<nbd::InfoName>(
          in, nbd::DecodeInfoName, nbd::EncodeInfoName,
          [](const nbd::InfoName& i) { return FitsString(i.name); });
    case kInfoDescription:
      return PayloadRoundTrip<nbd::InfoDescription>(
          in, nbd::DecodeInfoDescription, nbd::EncodeInfoDescription,
          [](const nbd::InfoDescription& i) {
            return FitsString(i.description);
          });
    case kInfoBlockSize:
      return PayloadRoundTrip<nbd::InfoBlockSize>(
          in, nbd::DecodeInfoBlockSize, nbd::EncodeInfoBlockSize,
          [](const nbd::InfoBlockSize&) { return true; });
    case kServerReply:
      return PayloadRoundTrip<nbd::ServerReply>(
          in, nbd::DecodeServerReply, nbd::EncodeServerReply,
          [](const nbd::ServerReply& r) {
            return FitsString(r.name) && FitsString(r.description);
          });
    case kMetaContextRequest:
      return PayloadRoundTrip<nbd::MetaContextRequest>(
          in, nbd::DecodeMetaContextRequest, nbd::EncodeMetaContextRequest,
          [](const nbd::MetaContextRequest& r) {
            return FitsString(r.export_name) &&
                   std::all_of(r.queries.begin(), r.queries.end(), FitsString);
          });
    case kMetaContextReply:
      return PayloadRoundTrip<nbd::MetaContextReply>(
          in, nbd::DecodeMetaContextReply, nbd::EncodeMetaContextReply,
          [](const nbd::MetaContextReply& r) {
            return !r.name.empty() && FitsString(r.name);
          });
    case kRequest:
      return FixedRoundTrip<nbd::Request>(
          in, nbd::kRequestSize, nbd::DecodeRequest, nbd::EncodeRequest);
    case kExtendedRequest:
      return FixedRoundTrip<nbd::ExtendedRequest>(in, nbd::kExtendedRequestSize,
                                                  nbd::DecodeExtendedRequest,
                                                  nbd::EncodeExtendedRequest);
    case kBlockStatusPayload:
      return PayloadRoundTrip<nbd::BlockStatusPayload>(
          in, nbd::DecodeBlockStatusPayload, nbd::EncodeBlockStatusPayload,
          [](const nbd::BlockStatusPayload& p) {
            return !p.context_ids.empty();
          });
    case kReplyMagic: {
      auto r = nbd::DecodeReplyMagic(in);
      if (!CheckFixed(r, in, 4)) return;
      NBD_FUZZ_CHECK(*r == nbd::LoadBe32(in.data()));
      return;
    }
    case kSimpleReply:
      return FixedRoundTrip<nbd::SimpleReply>(in, nbd::kSimpleReplySize,
                                              nbd::DecodeSimpleReply,
                                              nbd::EncodeSimpleReply);
    case kStructuredReplyHeader:
      return FixedRoundTrip<nbd::StructuredReplyHeader>(
          in, nbd::kStructuredReplyHeaderSize, nbd::DecodeStructuredReplyHeader,
          nbd::EncodeStructuredReplyHeader);
    case kExtendedReplyHeader:
      return FixedRoundTrip<nbd::ExtendedReplyHeader>(
          in, nbd::kExtendedReplyHeaderSize, nbd::DecodeExtendedReplyHeader,
          nbd::EncodeExtendedReplyHeader);
    case kOffsetDataHeader: {
      auto r = nbd::DecodeOffsetDataHeader(in);
      if (!CheckPayload(r)) {
        NBD_FUZZ_CHECK(in.size() < 9);
        return;
      }
      NBD_FUZZ_CHECK(in.size() >= 9);
      NBD_FUZZ_CHECK(WholeBytes(nbd::EncodeOffsetData(*r, in.subspan(8)), in));
      return;
    }
    case kOffsetHole: {
      auto r = nbd::DecodeOffsetHole(in);
      if (!CheckPayload(r)) return;
      NBD_FUZZ_CHECK(in.size() == nbd::kOffsetHoleSize);
      NBD_FUZZ_CHECK(WholeBytes(nbd::EncodeOffsetHole(*r), in));
      return;
    }
    case kBlockStatus: {
      auto r = nbd::DecodeBlockStatus(in, max_extents);
      if (!CheckPayload(r)) return;
      NBD_FUZZ_CHECK(!r->extents.empty() && r->extents.size() <= max_extents);
      for (const nbd::Extent& e : r->extents) {
        NBD_FUZZ_CHECK(e.length <= UINT32_MAX && e.flags <= UINT32_MAX);
      }
      const Bytes encoded = nbd::EncodeBlockStatus(*r);
      NBD_FUZZ_CHECK(WholeBytes(encoded, in));
      auto again = nbd::DecodeBlockStatus(encoded, max_extents);
      NBD_FUZZ_CHECK(again.ok() && *again == *r);
      return;
    }
    case kBlockStatusExt: {
      auto r = nbd::DecodeBlockStatusExt(in, max_extents);
      if (!CheckPayload(r)) return;
      NBD_FUZZ_CHECK(!r->extents.empty() && r->extents.size() <= max_extents);
      const Bytes encoded = nbd::EncodeBlockStatusExt(*r);
      NBD_FUZZ_CHECK(WholeBytes(encoded, in));
      auto again = nbd::DecodeBlockStatusExt(encoded, max_extents);
      NBD_FUZZ_CHECK(again.ok() && *again == *r);
      return;
    }
    case kErrorChunk:
      return PayloadRoundTrip<nbd::ErrorChunk>(
          in, nbd::DecodeErrorChunk, nbd::EncodeErrorChunk,
          [](const nbd::ErrorChunk& c) { return FitsString(c.message); });
    case kErrorOffsetChunk:
      return PayloadRoundTrip<nbd::ErrorOffsetChunk>(
          in, nbd::DecodeErrorOffsetChunk, nbd::EncodeErrorOffsetChunk,
          [](const nbd::ErrorOffsetChunk& c) { return FitsString(c.message); });
    case kNumDecoders:
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nbd::fuzz::Input in(data, size);
  const uint8_t selector = in.U8();
  const uint8_t param = in.U8();
  Run(selector, param, in.Rest());
  return 0;
}
