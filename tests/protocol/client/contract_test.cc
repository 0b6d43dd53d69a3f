// The buffer-ownership and validation promises of protocol/client/client.h,
// checked directly on a Client (no scenario runner): zero-copy input and
// output, what wants() says while a large write is queued, and argument checks
// the phase table does not reach.
#include <cerrno>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/constants.h"
#include "protocol/endian.h"
#include "protocol/status.h"
#include "protocol/wire.h"

namespace nbd {
namespace {

constexpr uint64_t kExportSize = 64ull << 20;
constexpr uint16_t kFlags = kTransmitHasFlags | kTransmitSendFlush |
                            kTransmitSendFua | kTransmitSendTrim |
                            kTransmitSendWriteZeroes;

// A client in kReady on an oldstyle server (simple replies, no options).
std::unique_ptr<Client> ReadyClient(ClientOptions o = {}) {
  auto c = std::make_unique<Client>(std::move(o));
  auto greeting = EncodeOldstyleGreeting({kExportSize, 0, kFlags});
  EXPECT_TRUE(c->Feed(greeting).ok());
  EXPECT_EQ(c->phase(), ClientPhase::kReady);
  while (c->PollEvent()) {
  }
  return c;
}

size_t PendingSlices(const Client& c, std::vector<IoSlice>& out) {
  out.resize(16);
  out.resize(c.PeekOutput(absl::MakeSpan(out)));
  return out.size();
}

TEST(ClientZeroCopy, ReadPayloadIsReceivedStraightIntoTheCallersBuffer) {
  auto c = ReadyClient();
  std::vector<uint8_t> buffer(4096, 0xaa);
  absl::StatusOr<Cookie> cookie = c->Read(8192, absl::MakeSpan(buffer));
  ASSERT_TRUE(cookie.ok());
  ASSERT_TRUE(c->ConsumeOutput(c->pending_output_bytes()).ok());

  uint8_t header[kSimpleReplySize];
  StoreBe32(header, kSimpleReplyMagic);
  StoreBe32(header + 4, 0);
  StoreBe64(header + 8, *cookie);
  absl::Span<uint8_t> into = c->RecvBuffer();
  ASSERT_EQ(into.size(), sizeof header);  // no read-ahead by default
  std::copy(header, header + sizeof header, into.begin());
  ASSERT_TRUE(c->CommitRecv(sizeof header).ok());

  // Now the core asks for the payload: a slice of the caller's buffer.
  into = c->RecvBuffer();
  EXPECT_EQ(into.data(), buffer.data());
  EXPECT_EQ(into.size(), buffer.size());
  std::fill(into.begin(), into.begin() + 1000, 0x11);
  ASSERT_TRUE(c->CommitRecv(1000).ok());
  into = c->RecvBuffer();
  EXPECT_EQ(into.data(), buffer.data() + 1000);
  std::fill(into.begin(), into.end(), 0x22);
  ASSERT_TRUE(c->CommitRecv(into.size()).ok());
  std::optional<ClientEvent> e = c->PollEvent();
  ASSERT_TRUE(e.has_value());
  ASSERT_TRUE(std::holds_alternative<CommandCompleted>(*e));
  EXPECT_TRUE(std::get<CommandCompleted>(*e).status.ok());
  EXPECT_EQ(buffer[999], 0x11);
  EXPECT_EQ(buffer[1000], 0x22);
}

TEST(ClientZeroCopy, WritePayloadIsReferencedNotCopied) {
  auto c = ReadyClient();
  std::vector<uint8_t> data(1 << 20, 0x5a);
  ASSERT_TRUE(c->Write(0, data).ok());
  std::vector<IoSlice> slices;
  ASSERT_EQ(PendingSlices(*c, slices), 2u);
  EXPECT_EQ(slices[0].size, kRequestSize);
  EXPECT_EQ(slices[1].data, data.data());
  EXPECT_EQ(slices[1].size, data.size());
  // Partly consumed: the remaining slice still points into the caller's
  // memory, at the right place.
  ASSERT_TRUE(c->ConsumeOutput(kRequestSize + 4096).ok());
  ASSERT_EQ(PendingSlices(*c, slices), 1u);
  EXPECT_EQ(slices[0].data, data.data() + 4096);
}

// §1.8 W: while a large WRITE waits in the output queue the transport must
// wait for both directions (replies may arrive while it sends), and the
// phase is processing.
TEST(ClientLifecycleW, LargeQueuedWriteWantsBothDirections) {
  auto c = ReadyClient();
  EXPECT_EQ(c->wants(), Direction::kRead);
  std::vector<uint8_t> data(32u << 20, 1);
  ASSERT_TRUE(c->Write(0, data).ok());
  EXPECT_EQ(c->wants(), Direction::kBoth);
  EXPECT_EQ(c->phase(), ClientPhase::kProcessing);
  EXPECT_EQ(c->in_flight(), 1u);
  ASSERT_TRUE(c->ConsumeOutput(c->pending_output_bytes() - 1).ok());
  EXPECT_EQ(c->wants(), Direction::kBoth);
  ASSERT_TRUE(c->ConsumeOutput(1).ok());
  EXPECT_EQ(c->wants(), Direction::kRead);
  EXPECT_EQ(c->phase(), ClientPhase::kProcessing);
}

TEST(ClientArguments, PayloadLenIsForWritesUnderExtendedHeadersOnly) {
  auto c = ReadyClient();
  std::vector<uint8_t> buffer(512);
  absl::StatusOr<Cookie> r =
      c->Read(0, absl::MakeSpan(buffer), {.flags = kCmdFlagPayloadLen});
  EXPECT_EQ(StatusErrno(r.status()), EINVAL) << r.status();
  EXPECT_EQ(c->in_flight(), 0u);
  EXPECT_EQ(c->pending_output_bytes(), 0u);
  // Compact headers: PAYLOAD_LEN does not exist. The client manages the
  // flag on writes (kStrictAutoFlag, like libnbd), so it is dropped...
  r = c->Write(0, buffer, kCmdFlagPayloadLen);
  EXPECT_TRUE(r.ok()) << r.status();
  // ...unless the caller took that over, when kStrictCommands refuses it.
  ClientOptions o;
  o.strict = kStrictAll & ~kStrictAutoFlag;
  auto manual = ReadyClient(o);
  r = manual->Write(0, buffer, kCmdFlagPayloadLen);
  EXPECT_EQ(StatusErrno(r.status()), ENOTSUP) << r.status();
  EXPECT_EQ(manual->in_flight(), 0u);
  EXPECT_EQ(manual->pending_output_bytes(), 0u);
}

TEST(ClientArguments, PayloadLimitIsClampedTo64MiB) {
  ClientOptions o;
  o.max_payload = 128u << 20;
  auto c = ReadyClient(o);
  EXPECT_EQ(c->max_payload(), kHardMaxPayload);
  std::vector<uint8_t> big((64u << 20) + 4096);
  absl::StatusOr<Cookie> w = c->Write(0, big);
  EXPECT_EQ(StatusErrno(w.status()), ERANGE) << w.status();
  EXPECT_TRUE(c->Write(0, absl::MakeConstSpan(big).first(64u << 20)).ok());
}

TEST(ClientArguments, ShutdownRejectsUnknownFlags) {
  auto c = ReadyClient();
  absl::Status s = c->Shutdown(0x1);
  EXPECT_EQ(StatusErrno(s), EINVAL) << s;
  EXPECT_EQ(c->phase(), ClientPhase::kReady);
  EXPECT_EQ(c->pending_output_bytes(), 0u);
}

TEST(ClientHandshakeLimits, OldstyleSizeAboveInt64MaxIsRefused) {
  Client c({});
  auto greeting = EncodeOldstyleGreeting({1ull << 63, 0, kFlags});
  (void)c.Feed(greeting);
  EXPECT_EQ(c.phase(), ClientPhase::kDead);
  EXPECT_EQ(StatusErrno(c.dead_reason()), EOVERFLOW) << c.dead_reason();
}

}  // namespace
}  // namespace nbd
