#include "protocol/names.h"

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
