// Helpers for ServerSession tests: building client bytes, draining output
// and events, parsing option replies and reply chunks.
#ifndef NBD_TESTS_PROTOCOL_SERVER_TEST_UTIL_H_
#define NBD_TESTS_PROTOCOL_SERVER_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "protocol/server/server.h"
#include "protocol/wire.h"

namespace nbd::test {

// Two exports: "disk" (1 MiB, every capability, description "scratch
// disk") and "ro" (64 KiB, read-only).
ServerOptions TestOptions();

Bytes Concat(std::initializer_list<ByteSpan> parts);
Bytes Str(const std::string& s);
Bytes Flags(uint32_t client_flags);
Bytes Opt(uint32_t option, ByteSpan data = {});
Bytes Opt(Option option, ByteSpan data = {});
Bytes GoData(const std::string& name, std::vector<uint16_t> infos = {});
Bytes MetaData(const std::string& name, std::vector<std::string> queries);
Bytes Req(bool extended, Command cmd, uint64_t cookie, uint64_t offset,
          uint64_t length, uint16_t flags = 0);

// Feeds everything (asserting it is all consumed) and returns the output.
Bytes FeedAll(ServerSession& s, ByteSpan bytes);
// Takes all pending output.
Bytes TakeOutput(ServerSession& s);
std::vector<ServerEvent> TakeEvents(ServerSession& s);
std::vector<ServerRequest> TakeRequests(ServerSession& s);

struct OptReply {
  OptionReplyHeader header;
  Bytes payload;
};
// Parses a sequence of option replies (the whole input must parse).
std::vector<OptReply> ParseOptReplies(ByteSpan bytes);

// One reply in transmission: simple (magic kSimpleReplyMagic: error in
// `error`, data in `payload` if `simple_read_length` says so) or a chunk.
struct ParsedReply {
  uint32_t magic = 0;
  uint16_t flags = 0;
  uint16_t type = 0;
  uint64_t cookie = 0;
  uint64_t offset = 0;  // extended headers only
  uint32_t error = 0;   // simple replies
  Bytes payload;
};
// Parses replies. Simple replies with error 0 carry `simple_read_length`
// bytes of data.
std::vector<ParsedReply> ParseReplies(ByteSpan bytes,
                                      uint64_t simple_read_length = 0);

// Greeting, client flags, optional STRUCTURED_REPLY / EXTENDED_HEADERS /
// SET_META_CONTEXT base:allocation, then GO on `name`. Expects the session
// to be in transmission afterwards; output and events are drained.
void Negotiate(ServerSession& s, bool structured, bool extended, bool meta,
               const std::string& name = "disk");

}  // namespace nbd::test

#endif  // NBD_TESTS_PROTOCOL_SERVER_TEST_UTIL_H_
