// Every NBD protocol constant, from NetworkBlockDevice/nbd doc/proto.md
// (master, plus the extended-headers extension).
//
// Enumerations that name one thing (an option, a command, a chunk type) are
// `enum class`; bit sets (handshake, transmission, command and reply flags)
// are `constexpr` masks of a fixed-width integer, so they can be OR-ed.
#ifndef NBD_PROTOCOL_CONSTANTS_H_
#define NBD_PROTOCOL_CONSTANTS_H_

#include <cstddef>
#include <cstdint>

namespace nbd {

// ---- Magics -------------------------------------------------------------
inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943;  // "NBDMAGIC"
inline constexpr uint64_t kOldstyleMagic = 0x00420281861253;
inline constexpr uint64_t kIHaveOptMagic = 0x49484156454F5054;  // "IHAVEOPT"
inline constexpr uint64_t kOptionReplyMagic = 0x3e889045565a9;
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kExtendedRequestMagic = 0x21e41c71;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;
inline constexpr uint32_t kExtendedReplyMagic = 0x6e8a278c;
// Reserved by the spec and never valid on the wire: the request and reply
// magics of nbd before 2.1.116, and nbd-server's transaction-log magic. A
// decoder meeting one reports a bad magic like any other value.
inline constexpr uint32_t kReservedOldRequestMagic = 0x12560953;
inline constexpr uint32_t kReservedOldReplyMagic = 0x96744668;
inline constexpr uint32_t kReservedLogMagic = 0x25609514;

// ---- Handshake flags (server, 16 bits) -----------------------------------
inline constexpr uint16_t kFlagFixedNewstyle = 1u << 0;
inline constexpr uint16_t kFlagNoZeroes = 1u << 1;

// ---- Client flags (32 bits) ---------------------------------------------
inline constexpr uint32_t kClientFlagFixedNewstyle = 1u << 0;
inline constexpr uint32_t kClientFlagNoZeroes = 1u << 1;
inline constexpr uint32_t kClientFlagsKnown =
    kClientFlagFixedNewstyle | kClientFlagNoZeroes;

// ---- Transmission flags (16 bits) ---------------------------------------
inline constexpr uint16_t kTransmitHasFlags = 1u << 0;
inline constexpr uint16_t kTransmitReadOnly = 1u << 1;
inline constexpr uint16_t kTransmitSendFlush = 1u << 2;
inline constexpr uint16_t kTransmitSendFua = 1u << 3;
inline constexpr uint16_t kTransmitRotational = 1u << 4;
inline constexpr uint16_t kTransmitSendTrim = 1u << 5;
inline constexpr uint16_t kTransmitSendWriteZeroes = 1u << 6;
inline constexpr uint16_t kTransmitSendDf = 1u << 7;
inline constexpr uint16_t kTransmitCanMultiConn = 1u << 8;
inline constexpr uint16_t kTransmitSendResize = 1u << 9;
inline constexpr uint16_t kTransmitSendCache = 1u << 10;
inline constexpr uint16_t kTransmitSendFastZero = 1u << 11;
inline constexpr uint16_t kTransmitBlockStatusPayload = 1u << 12;

// ---- Options ------------------------------------------------------------
enum class Option : uint32_t {
  kExportName = 1,
  kAbort = 2,
  kList = 3,
  kPeekExport = 4,  // Withdrawn; never sent.
  kStartTls = 5,
  kInfo = 6,
  kGo = 7,
  kStructuredReply = 8,
  kListMetaContext = 9,
  kSetMetaContext = 10,
  kExtendedHeaders = 11,
};

// ---- Option reply types -------------------------------------------------
inline constexpr uint32_t kOptionReplyErrorBit = 1u << 31;
enum class OptionReplyType : uint32_t {
  kAck = 1,
  kServer = 2,
  kInfo = 3,
  kMetaContext = 4,
  kErrUnsup = kOptionReplyErrorBit | 1,
  kErrPolicy = kOptionReplyErrorBit | 2,
  kErrInvalid = kOptionReplyErrorBit | 3,
  kErrPlatform = kOptionReplyErrorBit | 4,
  kErrTlsReqd = kOptionReplyErrorBit | 5,
  kErrUnknown = kOptionReplyErrorBit | 6,
  kErrShutdown = kOptionReplyErrorBit | 7,
  kErrBlockSizeReqd = kOptionReplyErrorBit | 8,
  kErrTooBig = kOptionReplyErrorBit | 9,
  kErrExtHeaderReqd = kOptionReplyErrorBit | 10,
};
constexpr bool IsOptionReplyError(uint32_t type) {
  return (type & kOptionReplyErrorBit) != 0;
}

// ---- Info types (NBD_OPT_INFO / NBD_OPT_GO) -----------------------------
enum class InfoType : uint16_t {
  kExport = 0,
  kName = 1,
  kDescription = 2,
  kBlockSize = 3,
};

// ---- Commands -----------------------------------------------------------
enum class Command : uint16_t {
  kRead = 0,
  kWrite = 1,
  kDisc = 2,
  kFlush = 3,
  kTrim = 4,
  kCache = 5,
  kWriteZeroes = 6,
  kBlockStatus = 7,
  kResize = 8,  // Experimental; never sent by this client.
};

// ---- Command flags (16 bits) --------------------------------------------
inline constexpr uint16_t kCmdFlagFua = 1u << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1u << 1;
inline constexpr uint16_t kCmdFlagDf = 1u << 2;
inline constexpr uint16_t kCmdFlagReqOne = 1u << 3;
inline constexpr uint16_t kCmdFlagFastZero = 1u << 4;
inline constexpr uint16_t kCmdFlagPayloadLen = 1u << 5;
inline constexpr uint16_t kCmdFlagsKnown =
    kCmdFlagFua | kCmdFlagNoHole | kCmdFlagDf | kCmdFlagReqOne |
    kCmdFlagFastZero | kCmdFlagPayloadLen;

// ---- Reply flags ---------------------------------------------------------
inline constexpr uint16_t kReplyFlagDone = 1u << 0;

// ---- Structured / extended reply chunk types ----------------------------
inline constexpr uint16_t kChunkTypeErrorBit = 1u << 15;
enum class ChunkType : uint16_t {
  kNone = 0,
  kOffsetData = 1,
  kOffsetHole = 2,
  kBlockStatus = 5,
  kBlockStatusExt = 6,
  kError = kChunkTypeErrorBit | 1,
  kErrorOffset = kChunkTypeErrorBit | 2,
};
constexpr bool IsChunkTypeError(uint16_t type) {
  return (type & kChunkTypeErrorBit) != 0;
}

// ---- Error values carried in replies ------------------------------------
enum class NbdError : uint32_t {
  kOk = 0,
  kPerm = 1,
  kIo = 5,
  kNoMem = 12,
  kInval = 22,
  kNoSpc = 28,
  kOverflow = 75,
  kNotSup = 95,
  kShutdown = 108,
};

// ---- base:allocation block status flags ---------------------------------
inline constexpr uint32_t kStateHole = 1u << 0;
inline constexpr uint32_t kStateZero = 1u << 1;
inline constexpr char kContextBaseAllocation[] = "base:allocation";

// ---- Sizes and limits ---------------------------------------------------
inline constexpr size_t kMaxStringLength = 4096;  // names, descriptions, msgs
// What a string SHOULD stay within for interoperability; longer ones up to
// kMaxStringLength are still accepted.
inline constexpr size_t kRecommendedStringLength = 256;
inline constexpr uint16_t kDefaultPort = 10809;
inline constexpr uint32_t kDefaultMinBlockSize = 1;
// The minimum block size a client assumes for interoperability when the
// server sent no NBD_INFO_BLOCK_SIZE and it wants to be conservative.
inline constexpr uint32_t kInteropMinBlockSize = 512;
inline constexpr uint32_t kDefaultPreferredBlockSize = 4096;
inline constexpr uint32_t kDefaultMaxPayload = 32u << 20;  // 32 MiB
inline constexpr uint32_t kHardMaxPayload = 64u << 20;     // 64 MiB
inline constexpr uint32_t kBlockSizeNoLimit = 0xffffffff;

}  // namespace nbd

#endif  // NBD_PROTOCOL_CONSTANTS_H_
