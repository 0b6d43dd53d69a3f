#include "protocol/names.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace nbd {

const char* CommandName(Command c) {
  switch (c) {
    case Command::kRead:
      return "NBD_CMD_READ";
    case Command::kWrite:
      return "NBD_CMD_WRITE";
    case Command::kDisc:
      return "NBD_CMD_DISC";
    case Command::kFlush:
      return "NBD_CMD_FLUSH";
    case Command::kTrim:
      return "NBD_CMD_TRIM";
    case Command::kCache:
      return "NBD_CMD_CACHE";
    case Command::kWriteZeroes:
      return "NBD_CMD_WRITE_ZEROES";
    case Command::kBlockStatus:
      return "NBD_CMD_BLOCK_STATUS";
    case Command::kResize:
      return "NBD_CMD_RESIZE";
  }
  return "NBD_CMD_?";
}

const char* OptionName(Option o) {
  switch (o) {
    case Option::kExportName:
      return "NBD_OPT_EXPORT_NAME";
    case Option::kAbort:
      return "NBD_OPT_ABORT";
    case Option::kList:
      return "NBD_OPT_LIST";
    case Option::kPeekExport:
      return "NBD_OPT_PEEK_EXPORT";
    case Option::kStartTls:
      return "NBD_OPT_STARTTLS";
    case Option::kInfo:
      return "NBD_OPT_INFO";
    case Option::kGo:
      return "NBD_OPT_GO";
    case Option::kStructuredReply:
      return "NBD_OPT_STRUCTURED_REPLY";
    case Option::kListMetaContext:
      return "NBD_OPT_LIST_META_CONTEXT";
    case Option::kSetMetaContext:
      return "NBD_OPT_SET_META_CONTEXT";
    case Option::kExtendedHeaders:
      return "NBD_OPT_EXTENDED_HEADERS";
  }
  return "NBD_OPT_?";
}

const char* OptionReplyName(uint32_t type) {
  switch (static_cast<OptionReplyType>(type)) {
    case OptionReplyType::kAck:
      return "NBD_REP_ACK";
    case OptionReplyType::kServer:
      return "NBD_REP_SERVER";
    case OptionReplyType::kInfo:
      return "NBD_REP_INFO";
    case OptionReplyType::kMetaContext:
      return "NBD_REP_META_CONTEXT";
    case OptionReplyType::kErrUnsup:
      return "NBD_REP_ERR_UNSUP";
    case OptionReplyType::kErrPolicy:
      return "NBD_REP_ERR_POLICY";
    case OptionReplyType::kErrInvalid:
      return "NBD_REP_ERR_INVALID";
    case OptionReplyType::kErrPlatform:
      return "NBD_REP_ERR_PLATFORM";
    case OptionReplyType::kErrTlsReqd:
      return "NBD_REP_ERR_TLS_REQD";
    case OptionReplyType::kErrUnknown:
      return "NBD_REP_ERR_UNKNOWN";
    case OptionReplyType::kErrShutdown:
      return "NBD_REP_ERR_SHUTDOWN";
    case OptionReplyType::kErrBlockSizeReqd:
      return "NBD_REP_ERR_BLOCK_SIZE_REQD";
    case OptionReplyType::kErrTooBig:
      return "NBD_REP_ERR_TOO_BIG";
    case OptionReplyType::kErrExtHeaderReqd:
      return "NBD_REP_ERR_EXT_HEADER_REQD";
  }
  return "NBD_REP_?";
}

const char* ChunkTypeName(uint16_t type) {
  switch (static_cast<ChunkType>(type)) {
    case ChunkType::kNone:
      return "NBD_REPLY_TYPE_NONE";
    case ChunkType::kOffsetData:
      return "NBD_REPLY_TYPE_OFFSET_DATA";
    case ChunkType::kOffsetHole:
      return "NBD_REPLY_TYPE_OFFSET_HOLE";
    case ChunkType::kBlockStatus:
      return "NBD_REPLY_TYPE_BLOCK_STATUS";
    case ChunkType::kBlockStatusExt:
      return "NBD_REPLY_TYPE_BLOCK_STATUS_EXT";
    case ChunkType::kError:
      return "NBD_REPLY_TYPE_ERROR";
    case ChunkType::kErrorOffset:
      return "NBD_REPLY_TYPE_ERROR_OFFSET";
  }
  return "NBD_REPLY_TYPE_?";
}

const char* InfoTypeName(uint16_t type) {
  switch (static_cast<InfoType>(type)) {
    case InfoType::kExport:
      return "NBD_INFO_EXPORT";
    case InfoType::kName:
      return "NBD_INFO_NAME";
    case InfoType::kDescription:
      return "NBD_INFO_DESCRIPTION";
    case InfoType::kBlockSize:
      return "NBD_INFO_BLOCK_SIZE";
  }
  return "NBD_INFO_?";
}

std::string QuotedForTrace(absl::string_view s) {
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

uint16_t AllowedCommandFlags(Command c) {
  switch (c) {
    case Command::kRead:
      return kCmdFlagDf;
    case Command::kWrite:
      return kCmdFlagFua | kCmdFlagPayloadLen;
    case Command::kTrim:
      return kCmdFlagFua;
    case Command::kWriteZeroes:
      return kCmdFlagFua | kCmdFlagNoHole | kCmdFlagFastZero;
    case Command::kBlockStatus:
      return kCmdFlagReqOne;
    default:
      return 0;
  }
}

bool IsWriteLikeCommand(Command c) {
  return c == Command::kWrite || c == Command::kTrim ||
         c == Command::kWriteZeroes;
}

}  // namespace nbd
