// Transmission tests for nbd::Client: the wire form of every command and
// flag (compact and extended requests, write payloads), and the client-side
// strict checks with their errno, each of which can be relaxed through
// ClientOptions::strict so the request goes out unchanged.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/testing/client_event_log.h"
#include "protocol/testing/client_handshake.h"
#include "protocol/testing/client_runner.h"
#include "protocol/testing/client_script.h"

namespace nbd::testing {
namespace {

using ::testing::ElementsAre;

constexpr uint64_t kSize = 1 << 20;

using IssueFn = std::function<absl::StatusOr<Cookie>(Client&, RunContext&)>;

absl::Span<uint8_t> Buf(RunContext& ctx, const std::string& label,
                        size_t size) {
  return absl::MakeSpan(ctx.Buffer(label, size));
}

// Write data shared by all runs; never modified.
const Bytes& WriteData(size_t size) {
  static auto* cache = new std::map<size_t, Bytes>();
  auto [it, inserted] = cache->try_emplace(size);
  if (inserted) it->second = Pattern(size, 3);
  return it->second;
}

// ---- Wire form of each command ------------------------------------------

struct WireCase {
  std::string name;
  IssueFn issue;
  Command command;
  uint16_t flags;
  uint64_t offset;
  uint64_t length;
  size_t payload = 0;  // write payload bytes that follow the request
};

std::vector<WireCase> WireCases() {
  return {
      {"read",
       [](Client& c, RunContext& x) { return c.Read(512, Buf(x, "b", 1024)); },
       Command::kRead, 0, 512, 1024},
      {"read_df",
       [](Client& c, RunContext& x) {
         return c.Read(0, Buf(x, "b", 512), {.flags = kCmdFlagDf});
       },
       Command::kRead, kCmdFlagDf, 0, 512},
      {"write",
       [](Client& c, RunContext&) { return c.Write(4096, WriteData(512)); },
       Command::kWrite, 0, 4096, 512, 512},
      {"write_fua",
       [](Client& c, RunContext&) {
         return c.Write(0, WriteData(100), kCmdFlagFua);
       },
       Command::kWrite, kCmdFlagFua, 0, 100, 100},
      {"flush", [](Client& c, RunContext&) { return c.Flush(); },
       Command::kFlush, 0, 0, 0},
      {"trim", [](Client& c, RunContext&) { return c.Trim(0, 65536); },
       Command::kTrim, 0, 0, 65536},
      {"trim_fua",
       [](Client& c, RunContext&) { return c.Trim(8192, 512, kCmdFlagFua); },
       Command::kTrim, kCmdFlagFua, 8192, 512},
      {"cache", [](Client& c, RunContext&) { return c.Cache(1024, 2048); },
       Command::kCache, 0, 1024, 2048},
      {"zero", [](Client& c, RunContext&) { return c.WriteZeroes(0, kSize); },
       Command::kWriteZeroes, 0, 0, kSize},
      {"zero_flags",
       [](Client& c, RunContext&) {
         return c.WriteZeroes(512, 512,
                              kCmdFlagFua | kCmdFlagNoHole | kCmdFlagFastZero);
       },
       Command::kWriteZeroes, kCmdFlagFua | kCmdFlagNoHole | kCmdFlagFastZero,
       512, 512},
      {"block_status",
       [](Client& c, RunContext&) { return c.BlockStatus(0, 4096); },
       Command::kBlockStatus, 0, 0, 4096},
      {"block_status_req_one",
       [](Client& c, RunContext&) {
         return c.BlockStatus(4096, 4096, kCmdFlagReqOne);
       },
       Command::kBlockStatus, kCmdFlagReqOne, 4096, 4096},
  };
}

class ClientWire : public ::testing::TestWithParam<bool> {};  // extended?

TEST_P(ClientWire, EveryCommandSendsItsRequest) {
  const bool extended = GetParam();
  for (const WireCase& wc : WireCases()) {
    SCOPED_TRACE(wc.name);
    HandshakeSpec spec;
    spec.ack_extended_headers = extended;
    Scenario s = ConnectedScenario({}, spec);
    ClientSends sent;
    // Under extended headers every WRITE carries PAYLOAD_LEN (the spec's
    // MUST), and nothing else does.
    const uint16_t flags =
        extended && wc.command == Command::kWrite
            ? static_cast<uint16_t>(wc.flags | kCmdFlagPayloadLen)
            : wc.flags;
    sent.Req("c", wc.command, flags, wc.offset, wc.length);
    if (wc.payload) sent.Payload(WriteData(wc.payload));
    s.Issue("c", wc.issue)
        .Expect(sent.Nothing())
        .Snapshot()
        .Send(wc.command == Command::kRead
                  ? Server().ChunkData("c", wc.offset, Pattern(wc.length), true)
                  : Server().ChunkNone("c"))
        .Snapshot();
    RunResult r = RunAllModes(s);
    const std::string name(ShortCommandName(wc.command));
    EXPECT_THAT(
        r.AfterConnected(),
        ElementsAre("issue c -> cookie=1", "phase=processing in_flight=1",
                    "CommandCompleted cookie=1 " + name + " ok",
                    "phase=ready in_flight=0"));
  }
}

INSTANTIATE_TEST_SUITE_P(Headers, ClientWire, ::testing::Bool(),
                         [](const auto& info) {
                           return info.param ? "Extended" : "Compact";
                         });

TEST(ClientTransmission, CookiesCountUpAndRequestsPipeline) {
  Scenario s = ConnectedScenario();
  s.HoldOutput()
      .Issue("a", [](Client& c,
                     RunContext& x) { return c.Read(0, Buf(x, "a", 512)); })
      .Issue("b", [](Client& c,
                     RunContext&) { return c.Write(512, WriteData(512)); })
      .Issue("f", [](Client& c, RunContext&) { return c.Flush(); })
      .ReleaseOutput()
      .Expect(ClientSends()
                  .Req("a", Command::kRead, 0, 0, 512)
                  .Req("b", Command::kWrite, 0, 512, 512)
                  .Payload(WriteData(512))
                  .Req("f", Command::kFlush, 0, 0, 0)
                  .Nothing())
      .Snapshot()
      // Replies in reverse order.
      .Send(Server().Simple("f").Simple("b").ChunkData("a", 0, Pattern(512),
                                                       true))
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue a -> cookie=1", "issue b -> cookie=2",
                          "issue f -> cookie=3", "phase=processing in_flight=3",
                          "CommandCompleted cookie=3 FLUSH ok",
                          "CommandCompleted cookie=2 WRITE ok",
                          "CommandCompleted cookie=1 READ ok",
                          "phase=ready in_flight=0"));
  EXPECT_EQ(r.buffers["a"], Pattern(512));
}

TEST(ClientTransmission, SimpleRepliesWithoutStructuredReplies) {
  HandshakeSpec spec;
  spec.ack_structured_replies = false;
  Scenario s = ConnectedScenario({}, spec);
  s.Issue("r",
          [](Client& c, RunContext& x) { return c.Read(0, Buf(x, "r", 300)); })
      .Expect(ClientSends().Req("r", Command::kRead, 0, 0, 300).Nothing())
      .Send(Server().Simple("r", 0, Pattern(300, 9)))
      .Issue("w",
             [](Client& c, RunContext&) { return c.Write(0, WriteData(10)); })
      .Expect(ClientSends()
                  .Req("w", Command::kWrite, 0, 0, 10)
                  .Payload(WriteData(10))
                  .Nothing())
      .Send(Server().Simple("w", static_cast<uint32_t>(NbdError::kNoSpc)));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue r -> cookie=1", "CommandCompleted cookie=1 READ ok",
                  "issue w -> cookie=2",
                  "CommandCompleted cookie=2 WRITE ENOSPC"));
  EXPECT_EQ(r.buffers["r"], Pattern(300, 9));
}

// The spec: with extended headers a WRITE MUST set PAYLOAD_LEN, and
// without them the flag does not exist. The client manages it like
// libnbd (LIBNBD_STRICT_AUTO_FLAG): set or cleared whatever the caller
// passed.
TEST(ClientTransmission, ExtendedWriteAlwaysCarriesPayloadLen) {
  HandshakeSpec spec;
  spec.ack_extended_headers = true;
  Scenario s = ConnectedScenario({}, spec);
  s.Issue("w",
          [](Client& c, RunContext&) {
            return c.Write(0, WriteData(64), kCmdFlagPayloadLen);
          })
      .Issue("v",
             [](Client& c, RunContext&) { return c.Write(64, WriteData(32)); })
      .Issue("f",
             [](Client& c, RunContext&) {
               return c.Write(96, WriteData(8), kCmdFlagFua);
             })
      .Expect(ClientSends()
                  .Req("w", Command::kWrite, kCmdFlagPayloadLen, 0, 64)
                  .Payload(WriteData(64))
                  .Req("v", Command::kWrite, kCmdFlagPayloadLen, 64, 32)
                  .Payload(WriteData(32))
                  .Req("f", Command::kWrite, kCmdFlagPayloadLen | kCmdFlagFua,
                       96, 8)
                  .Payload(WriteData(8))
                  .Nothing());
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue w -> cookie=1", "issue v -> cookie=2",
                          "issue f -> cookie=3"));
}

TEST(ClientTransmission, CompactWriteNeverCarriesPayloadLen) {
  HandshakeSpec spec;
  spec.ack_extended_headers = false;
  Scenario s = ConnectedScenario({}, spec);
  s.Issue("w",
          [](Client& c, RunContext&) {
            return c.Write(0, WriteData(64), kCmdFlagPayloadLen);
          })
      .Expect(ClientSends()
                  .Req("w", Command::kWrite, 0, 0, 64)
                  .Payload(WriteData(64))
                  .Nothing());
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(), ElementsAre("issue w -> cookie=1"));
}

// With kStrictAutoFlag cleared the caller's flags go out as given: how a
// test sends the WRITE a buggy client would (the server must then see no
// payload).
TEST(ClientTransmission, WithoutAutoFlagTheCallerDecides) {
  HandshakeSpec spec;
  spec.ack_extended_headers = true;
  ClientOptions o;
  o.strict = kStrictAll & ~kStrictAutoFlag;
  Scenario s = ConnectedScenario(o, spec);
  s.Issue("w", [](Client& c, RunContext&) { return c.Write(0, WriteData(64)); })
      .Expect(ClientSends()
                  .Req("w", Command::kWrite, 0, 0, 64)
                  .Payload(WriteData(64))
                  .Nothing());
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(), ElementsAre("issue w -> cookie=1"));
}

TEST(ClientTransmission, BlockStatus64BitUnderExtendedHeaders) {
  constexpr uint64_t kBig = uint64_t{8} << 30;
  HandshakeSpec spec;
  spec.ack_extended_headers = true;
  spec.size = kBig;
  Scenario s = ConnectedScenario({}, spec);
  s.Issue("bs", [](Client& c,
                   RunContext&) { return c.BlockStatus(0, uint64_t{5} << 30); })
      .Expect(ClientSends()
                  .Req("bs", Command::kBlockStatus, 0, 0, uint64_t{5} << 30)
                  .Nothing())
      .Send(Server().ChunkBlockStatusExt(
          "bs", 1, {{uint64_t{4} << 30, 0}, {uint64_t{1} << 30, kStateHole}}));
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue bs -> cookie=1",
                          "BlockStatusExtents cookie=1 "
                          "context=1:base:allocation offset=0 "
                          "extents=4294967296/0,1073741824/1",
                          "CommandCompleted cookie=1 BLOCK_STATUS ok"));
}

TEST(ClientTransmission, MaxPayloadIsTheSmallerOfOptionAndServer) {
  ClientOptions o;
  o.max_payload = 8 << 20;
  HandshakeSpec spec;
  spec.block_size = InfoBlockSize{1, 4096, 1 << 20};
  Scenario s = ConnectedScenario(o, spec);
  s.Do([](Client& c, RunContext&) {
    return "max_payload=" + std::to_string(c.max_payload());
  });
  EXPECT_THAT(RunAllModes(s).AfterConnected(),
              ElementsAre("max_payload=1048576"));
  EXPECT_THAT(RunAllModes(ConnectedScenario().Do([](Client& c, RunContext&) {
                return "max_payload=" + std::to_string(c.max_payload());
              })).AfterConnected(),
              ElementsAre("max_payload=33554432"));
}

// ---- Strict checks -------------------------------------------------------

struct StrictCase {
  std::string name = "";
  uint16_t transmission_flags = kAllCommandFlags;
  uint64_t size = kSize;
  std::optional<InfoBlockSize> block_size = std::nullopt;
  std::vector<MetaContext> contexts = {{1, kContextBaseAllocation}};
  uint32_t max_payload = kDefaultMaxPayload;
  IssueFn issue = nullptr;
  std::string error = "";  // errno name with every check on
  // The check that, cleared, lets the request out (0: not relaxable).
  uint32_t strict_bit = 0;
  // The request then sent.
  Command command = Command::kRead;
  uint16_t flags = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  size_t payload = 0;
};

std::vector<StrictCase> StrictCases() {
  const uint16_t all = kAllCommandFlags;
  std::vector<StrictCase> cases;
  auto add = [&](StrictCase c) { cases.push_back(std::move(c)); };
  // Unadvertised commands and flags: ENOTSUP (status.h).
  add({.name = "trim_unadvertised",
       .transmission_flags = static_cast<uint16_t>(all & ~kTransmitSendTrim),
       .issue = [](Client& c, RunContext&) { return c.Trim(0, 512); },
       .error = "ENOTSUP",
       .strict_bit = kStrictCommands,
       .command = Command::kTrim,
       .length = 512});
  add({.name = "flush_unadvertised",
       .transmission_flags = static_cast<uint16_t>(all & ~kTransmitSendFlush),
       .issue = [](Client& c, RunContext&) { return c.Flush(); },
       .error = "ENOTSUP",
       .strict_bit = kStrictCommands,
       .command = Command::kFlush});
  add({.name = "cache_unadvertised",
       .transmission_flags = static_cast<uint16_t>(all & ~kTransmitSendCache),
       .issue = [](Client& c, RunContext&) { return c.Cache(0, 512); },
       .error = "ENOTSUP",
       .strict_bit = kStrictCommands,
       .command = Command::kCache,
       .length = 512});
  add({.name = "zero_unadvertised",
       .transmission_flags = static_cast<uint16_t>(
           all & ~kTransmitSendWriteZeroes & ~kTransmitSendFastZero),
       .issue = [](Client& c, RunContext&) { return c.WriteZeroes(0, 512); },
       .error = "ENOTSUP",
       .strict_bit = kStrictCommands,
       .command = Command::kWriteZeroes,
       .length = 512});
  add({.name = "fua_unadvertised",
       .transmission_flags = static_cast<uint16_t>(all & ~kTransmitSendFua),
       .issue =
           [](Client& c, RunContext&) {
             return c.Write(0, WriteData(512), kCmdFlagFua);
           },
       .error = "ENOTSUP",
       .strict_bit = kStrictCommands,
       .command = Command::kWrite,
       .flags = kCmdFlagFua,
       .length = 512,
       .payload = 512});
  add({.name = "df_unadvertised",
       .transmission_flags = static_cast<uint16_t>(all & ~kTransmitSendDf),
       .issue =
           [](Client& c, RunContext& x) {
             return c.Read(0, Buf(x, "b", 512), {.flags = kCmdFlagDf});
           },
       .error = "ENOTSUP",
       .strict_bit = kStrictCommands,
       .command = Command::kRead,
       .flags = kCmdFlagDf,
       .length = 512});
  add({.name = "fast_zero_unadvertised",
       .transmission_flags =
           static_cast<uint16_t>(all & ~kTransmitSendFastZero),
       .issue =
           [](Client& c, RunContext&) {
             return c.WriteZeroes(0, 512, kCmdFlagFastZero);
           },
       .error = "ENOTSUP",
       .strict_bit = kStrictCommands,
       .command = Command::kWriteZeroes,
       .flags = kCmdFlagFastZero,
       .length = 512});
  add({.name = "block_status_without_context",
       .contexts = {},
       .issue = [](Client& c, RunContext&) { return c.BlockStatus(0, 512); },
       .error = "ENOTSUP"});
  // Flags a command does not take, and unknown bits: EINVAL.
  add({.name = "trim_no_hole",
       .issue = [](Client& c,
                   RunContext&) { return c.Trim(0, 512, kCmdFlagNoHole); },
       .error = "EINVAL",
       .strict_bit = kStrictFlags,
       .command = Command::kTrim,
       .flags = kCmdFlagNoHole,
       .length = 512});
  add({.name = "read_unknown_flag",
       .issue =
           [](Client& c, RunContext& x) {
             return c.Read(0, Buf(x, "b", 512), {.flags = 0x100});
           },
       .error = "EINVAL",
       .strict_bit = kStrictFlags,
       .command = Command::kRead,
       .flags = 0x100,
       .length = 512});
  // Past the end of the export: EINVAL for reads, ENOSPC for writes.
  add({.name = "read_past_end",
       .issue =
           [](Client& c, RunContext& x) {
             return c.Read(kSize - 256, Buf(x, "b", 512));
           },
       .error = "EINVAL",
       .strict_bit = kStrictBounds,
       .command = Command::kRead,
       .offset = kSize - 256,
       .length = 512});
  add({.name = "cache_past_end",
       .issue = [](Client& c, RunContext&) { return c.Cache(kSize, 1); },
       .error = "EINVAL",
       .strict_bit = kStrictBounds,
       .command = Command::kCache,
       .offset = kSize,
       .length = 1});
  add({.name = "block_status_past_end",
       .issue = [](Client& c,
                   RunContext&) { return c.BlockStatus(512, kSize); },
       .error = "EINVAL",
       .strict_bit = kStrictBounds,
       .command = Command::kBlockStatus,
       .offset = 512,
       .length = kSize});
  add({.name = "write_past_end",
       .issue = [](Client& c,
                   RunContext&) { return c.Write(kSize - 1, WriteData(2)); },
       .error = "ENOSPC",
       .strict_bit = kStrictBounds,
       .command = Command::kWrite,
       .offset = kSize - 1,
       .length = 2,
       .payload = 2});
  add({.name = "trim_past_end",
       .issue = [](Client& c, RunContext&) { return c.Trim(kSize, 512); },
       .error = "ENOSPC",
       .strict_bit = kStrictBounds,
       .command = Command::kTrim,
       .offset = kSize,
       .length = 512});
  add({.name = "zero_past_end",
       .issue = [](Client& c,
                   RunContext&) { return c.WriteZeroes(kSize - 512, 1024); },
       .error = "ENOSPC",
       .strict_bit = kStrictBounds,
       .command = Command::kWriteZeroes,
       .offset = kSize - 512,
       .length = 1024});
  add({.name = "offset_overflow",
       .issue =
           [](Client& c, RunContext& x) {
             return c.Read(~uint64_t{0} - 10, Buf(x, "b", 512));
           },
       .error = "EINVAL"});
  // Zero length: EINVAL.
  add({.name = "read_zero_size",
       .issue = [](Client& c,
                   RunContext&) { return c.Read(0, absl::Span<uint8_t>()); },
       .error = "EINVAL",
       .strict_bit = kStrictZeroSize,
       .command = Command::kRead});
  add({.name = "trim_zero_size",
       .issue = [](Client& c, RunContext&) { return c.Trim(0, 0); },
       .error = "EINVAL",
       .strict_bit = kStrictZeroSize,
       .command = Command::kTrim});
  add({.name = "block_status_zero_size",
       .issue = [](Client& c, RunContext&) { return c.BlockStatus(0, 0); },
       .error = "EINVAL",
       .strict_bit = kStrictZeroSize,
       .command = Command::kBlockStatus});
  // Not aligned to the minimum block size the server set in GO: EINVAL.
  add({.name = "read_unaligned_offset",
       .block_size = InfoBlockSize{512, 4096, 1 << 20},
       .issue = [](Client& c,
                   RunContext& x) { return c.Read(1, Buf(x, "b", 512)); },
       .error = "EINVAL",
       .strict_bit = kStrictAlign,
       .command = Command::kRead,
       .offset = 1,
       .length = 512});
  add({.name = "write_unaligned_length",
       .block_size = InfoBlockSize{512, 4096, 1 << 20},
       .issue = [](Client& c,
                   RunContext&) { return c.Write(0, WriteData(100)); },
       .error = "EINVAL",
       .strict_bit = kStrictAlign,
       .command = Command::kWrite,
       .length = 100,
       .payload = 100});
  // Payload above the limit (default 32 MiB): ERANGE.
  add({.name = "read_too_large",
       .size = 64 << 20,
       .issue =
           [](Client& c, RunContext& x) {
             return c.Read(0, Buf(x, "b", (32 << 20) + 1));
           },
       .error = "ERANGE",
       .strict_bit = kStrictPayload,
       .command = Command::kRead,
       .length = (32 << 20) + 1});
  add({.name = "write_too_large",
       .size = 64 << 20,
       .issue =
           [](Client& c, RunContext&) {
             return c.Write(0, WriteData((32 << 20) + 512));
           },
       .error = "ERANGE"});
  add({.name = "write_above_max_payload_option",
       .max_payload = 4096,
       .issue = [](Client& c,
                   RunContext&) { return c.Write(0, WriteData(8192)); },
       .error = "ERANGE",
       .strict_bit = kStrictPayload,
       .command = Command::kWrite,
       .length = 8192,
       .payload = 8192});
  // Read-only export: EPERM, a kStrictCommands check.
  const uint16_t ro = all | kTransmitReadOnly;
  add({.name = "write_read_only",
       .transmission_flags = ro,
       .issue = [](Client& c,
                   RunContext&) { return c.Write(0, WriteData(512)); },
       .error = "EPERM",
       .strict_bit = kStrictCommands,
       .command = Command::kWrite,
       .length = 512,
       .payload = 512});
  add({.name = "trim_read_only",
       .transmission_flags = ro,
       .issue = [](Client& c, RunContext&) { return c.Trim(0, 512); },
       .error = "EPERM",
       .strict_bit = kStrictCommands,
       .command = Command::kTrim,
       .length = 512});
  add({.name = "zero_read_only",
       .transmission_flags = ro,
       .issue = [](Client& c, RunContext&) { return c.WriteZeroes(0, 512); },
       .error = "EPERM",
       .strict_bit = kStrictCommands,
       .command = Command::kWriteZeroes,
       .length = 512});
  return cases;
}

Scenario StrictScenario(const StrictCase& sc, uint32_t strict) {
  ClientOptions o;
  o.strict = strict;
  o.max_payload = sc.max_payload;
  HandshakeSpec spec;
  spec.transmission_flags = sc.transmission_flags;
  spec.size = sc.size;
  spec.block_size = sc.block_size;
  spec.contexts = sc.contexts;
  return ConnectedScenario(o, spec);
}

class ClientStrict : public ::testing::TestWithParam<StrictCase> {};

TEST_P(ClientStrict, RejectedWithErrnoAndNothingSent) {
  const StrictCase& sc = GetParam();
  Scenario s = StrictScenario(sc, kStrictAll);
  s.Issue("c", sc.issue).Expect(ClientSends().Nothing()).Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(),
              ElementsAre("issue c -> " + sc.error, "phase=ready in_flight=0"));
}

TEST_P(ClientStrict, RelaxedCheckLetsTheRequestOut) {
  const StrictCase& sc = GetParam();
  if (sc.strict_bit == 0) GTEST_SKIP() << "not a relaxable check";
  Scenario s = StrictScenario(sc, kStrictAll & ~sc.strict_bit);
  ClientSends sent;
  sent.Req("c", sc.command, sc.flags, sc.offset, sc.length);
  if (sc.payload) sent.Payload(WriteData(sc.payload));
  s.Issue("c", sc.issue).Expect(sent.Nothing()).Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(r.AfterConnected(), ElementsAre("issue c -> cookie=1",
                                              "phase=processing in_flight=1"));
}

// What a relaxed check lets out, the server answers: its error comes back
// as the command's status and the connection stays usable (libnbd's
// errors-server-* tests).
TEST(ClientStrictRelaxed, ServerErrorComesBackAndTheConnectionLives) {
  StrictCase sc;
  sc.transmission_flags = kAllCommandFlags | kTransmitReadOnly;
  Scenario s = StrictScenario(sc, kStrictAll & ~kStrictCommands);
  s.Issue("w",
          [](Client& c, RunContext&) { return c.Write(0, WriteData(512)); })
      .Expect(ClientSends()
                  .Req("w", Command::kWrite, 0, 0, 512)
                  .Payload(WriteData(512))
                  .Nothing())
      .Send(Server().ChunkError("w", static_cast<uint32_t>(NbdError::kPerm),
                                "read-only"))
      .Issue("f", [](Client& c, RunContext&) { return c.Flush(); })
      .Expect(ClientSends().Req("f", Command::kFlush, 0, 0, 0).Nothing())
      .Send(Server().ChunkNone("f"))
      .Snapshot();
  RunResult r = RunAllModes(s);
  EXPECT_THAT(
      r.AfterConnected(),
      ElementsAre("issue w -> cookie=1",
                  "CommandCompleted cookie=1 WRITE EPERM",
                  "issue f -> cookie=2", "CommandCompleted cookie=2 FLUSH ok",
                  "phase=ready in_flight=0"));
}

INSTANTIATE_TEST_SUITE_P(Checks, ClientStrict,
                         ::testing::ValuesIn(StrictCases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace nbd::testing
