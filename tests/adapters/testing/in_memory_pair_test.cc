// nbd::InMemoryPair (adapters/testing/in_memory_pair.h): stepping, splits,
// held and reordered requests, backend faults, cuts and the ends of the
// connection.
#include "adapters/testing/in_memory_pair.h"

#include <cerrno>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "adapters/server/memory_backend.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/server/server.h"
#include "protocol/status.h"
#include "protocol/wire.h"

namespace nbd {
namespace {

ClientOptions Options(bool structured = true, bool extended = true) {
  ClientOptions o;
  o.request_structured_replies = structured;
  o.request_extended_headers = extended;
  return o;
}

std::vector<uint8_t> Bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

// The example of docs/testing.md ("In-memory client and server").
// [START in_memory_pair]
TEST(InMemoryPairDoc, ReplyCutAfterTenBytes) {
  InMemoryPair pair;  // a Client and a ServerSession on a 1 MiB memory export
  ASSERT_TRUE(pair.RunUntilQuiet());  // the handshake
  pair.set_auto_serve(false);         // hold requests until Execute()
  std::vector<uint8_t> buf(4096);
  const Cookie read = *pair.client().Read(0, absl::MakeSpan(buf));
  ASSERT_TRUE(pair.RunUntilQuiet(Split::OneByte(), Split::OneByte()));
  ASSERT_TRUE(pair.Execute(pair.held_requests()[0].handle).ok());
  // The reply's 11th byte never arrives: the server's socket broke.
  pair.BreakAt(Stream::kServerToClient,
               pair.delivered(Stream::kServerToClient) + 10);
  ASSERT_TRUE(pair.RunUntilQuiet(Split::OneByte(), Split::OneByte()));
  EXPECT_EQ(pair.client().phase(), ClientPhase::kDead);  // inside a reply
  EXPECT_EQ(StatusErrno(pair.CompletionOf(read)->status), ENOTCONN);
  EXPECT_EQ(pair.server().phase(), ServerPhase::kClosed);  // EOF at a boundary
}
// [END in_memory_pair]

TEST(InMemoryPairTest, HandshakeAndReadBack) {
  InMemoryPair pair(Options());
  ASSERT_TRUE(pair.RunUntilQuiet());
  ASSERT_EQ(pair.client().phase(), ClientPhase::kReady);
  EXPECT_EQ(pair.server().phase(), ServerPhase::kTransmission);
  EXPECT_EQ(pair.client().export_size(), InMemoryPair::kDefaultSize);
  const std::vector<uint8_t> data = Bytes(5000, 1);
  ASSERT_TRUE(pair.Wait(pair.client().Write(100, data)).ok());
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(pair.Wait(pair.client().Read(100, absl::MakeSpan(back))).ok());
  EXPECT_EQ(back, data);
  EXPECT_TRUE(pair.anomalies().empty());
}

// Every split and both input paths give the same session.
TEST(InMemoryPairTest, SplitsAndInputPaths) {
  for (InputPath path : {InputPath::kFeed, InputPath::kZeroCopy}) {
    for (size_t piece : {size_t{1}, size_t{3}, size_t{4096}, SIZE_MAX}) {
      SCOPED_TRACE(testing::Message()
                   << "piece " << piece << " path " << static_cast<int>(path));
      InMemoryPair pair(Options());
      const Split split{piece, path};
      ASSERT_TRUE(pair.RunUntilQuiet(split, split));
      ASSERT_EQ(pair.client().phase(), ClientPhase::kReady);
      const std::vector<uint8_t> data = Bytes(10000, 2);
      ASSERT_TRUE(pair.client().Write(0, data).ok());
      std::vector<uint8_t> back(data.size());
      ASSERT_TRUE(pair.client().Read(0, absl::MakeSpan(back)).ok());
      ASSERT_TRUE(pair.RunUntilQuiet(split, split));
      EXPECT_EQ(back, data);
      EXPECT_EQ(pair.ClientEventsOf<CommandCompleted>().size(), 2u);
      EXPECT_TRUE(pair.anomalies().empty());
    }
  }
}

// Bytes move only when asked, and as many as asked.
TEST(InMemoryPairTest, ByteCountsPerStep) {
  InMemoryPair pair(Options());
  EXPECT_EQ(pair.SendServerOutput(5), 5u);  // part of the greeting
  EXPECT_EQ(pair.wire_bytes(Stream::kServerToClient), 5u);
  EXPECT_EQ(pair.DeliverToClient(Split::OneByte(), 2), 2u);
  EXPECT_EQ(pair.delivered(Stream::kServerToClient), 2u);
  EXPECT_EQ(pair.wire_bytes(Stream::kServerToClient), 3u);
  EXPECT_EQ(pair.DeliverToClient(), 3u);
  EXPECT_EQ(pair.sent(Stream::kClientToServer), 0u);
  ASSERT_TRUE(pair.RunUntilQuiet());
  EXPECT_EQ(pair.sent(Stream::kServerToClient),
            pair.delivered(Stream::kServerToClient));
  EXPECT_EQ(pair.sent(Stream::kClientToServer),
            pair.delivered(Stream::kClientToServer));
}

// Held requests run when the test says, in any order: the replies come
// back in that order.
TEST(InMemoryPairTest, HeldRequestsRunInAnyOrder) {
  InMemoryPair pair(Options());
  ASSERT_TRUE(pair.RunUntilQuiet());
  pair.set_auto_serve(false);
  std::vector<uint8_t> a(512), b(512);
  const Cookie ca = *pair.client().Read(0, absl::MakeSpan(a));
  const Cookie cb = *pair.client().Read(512, absl::MakeSpan(b));
  ASSERT_TRUE(pair.RunUntilQuiet());
  ASSERT_EQ(pair.held_requests().size(), 2u);
  EXPECT_TRUE(pair.ClientEventsOf<CommandCompleted>().empty());
  EXPECT_EQ(pair.held_requests()[0].cookie, ca);
  ASSERT_TRUE(pair.Execute(pair.held_requests()[1].handle).ok());
  ASSERT_TRUE(pair.RunUntilQuiet());
  ASSERT_TRUE(pair.Execute(pair.held_requests()[0].handle).ok());
  ASSERT_TRUE(pair.RunUntilQuiet());
  const auto done = pair.ClientEventsOf<CommandCompleted>();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].cookie, cb);
  EXPECT_EQ(done[1].cookie, ca);
  EXPECT_TRUE(absl::IsNotFound(pair.Execute(12345)));
}

TEST(InMemoryPairTest, BackendFaultsReachTheClient) {
  InMemoryPair pair(Options());
  ASSERT_TRUE(pair.RunUntilQuiet());
  pair.set_auto_serve(false);
  ASSERT_TRUE(pair.Wait(pair.client().Write(0, Bytes(8192, 3))).ok());

  // A read failing after 4096 good bytes: the good bytes arrive, then the
  // error at their end.
  std::vector<uint8_t> buf(8192);
  ReadOptions ro;
  ro.report_chunks = true;
  const Cookie read = *pair.client().Read(0, absl::MakeSpan(buf), ro);
  ASSERT_TRUE(pair.RunUntilQuiet());
  BackendFault fault;
  fault.read_before = 4096;
  ASSERT_TRUE(
      pair.ExecuteWithFault(pair.held_requests()[0].handle, fault).ok());
  ASSERT_TRUE(pair.RunUntilQuiet());
  EXPECT_EQ(StatusErrno(pair.CompletionOf(read)->status), EIO);
  const auto chunks = pair.ClientEventsOf<ReadChunk>();
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].kind, ReadChunkKind::kData);
  EXPECT_EQ(chunks[0].length, 4096u);
  EXPECT_EQ(chunks[1].kind, ReadChunkKind::kError);
  EXPECT_EQ(chunks[1].offset, 4096u);
  const std::vector<uint8_t> want = Bytes(8192, 3);
  EXPECT_TRUE(std::equal(want.begin(), want.begin() + 4096, buf.begin()));
  EXPECT_EQ(pair.client().phase(), ClientPhase::kReady);

  // NBD_ESHUTDOWN: the command fails and the client disconnects softly.
  const Cookie flush = *pair.client().Flush();
  ASSERT_TRUE(pair.RunUntilQuiet());
  ASSERT_TRUE(pair.ExecuteWithFault(pair.held_requests()[0].handle,
                                    {ESHUTDOWN, "going away"})
                  .ok());
  ASSERT_TRUE(pair.RunUntilQuiet());
  EXPECT_EQ(StatusErrno(pair.CompletionOf(flush)->status), ESHUTDOWN);
  EXPECT_EQ(pair.client().phase(), ClientPhase::kClosed);
  EXPECT_EQ(pair.server().phase(), ServerPhase::kClosed);
}

TEST(InMemoryPairTest, DisconnectClosesBothSides) {
  InMemoryPair pair(Options());
  ASSERT_TRUE(pair.RunUntilQuiet());
  const std::vector<uint8_t> data = Bytes(100, 4);  // lives until completed
  const Cookie w = *pair.client().Write(0, data);
  ASSERT_TRUE(pair.client().Disconnect().ok());
  ASSERT_TRUE(pair.RunUntilQuiet());
  EXPECT_TRUE(pair.finished());
  EXPECT_EQ(pair.client().phase(), ClientPhase::kClosed);
  EXPECT_EQ(pair.server().phase(), ServerPhase::kClosed);
  EXPECT_TRUE(pair.CompletionOf(w)->status.ok());
  EXPECT_TRUE(pair.ended(Stream::kServerToClient));
}

// EOF at a reply boundary closes the client; inside a reply kills it.
TEST(InMemoryPairTest, EofAtABoundaryClosesInsideAReplyKills) {
  for (uint64_t into : {uint64_t{0}, uint64_t{5}}) {
    SCOPED_TRACE(into);
    InMemoryPair pair(Options());
    ASSERT_TRUE(pair.RunUntilQuiet());
    std::vector<uint8_t> buf(100);
    const Cookie c = *pair.client().Read(0, absl::MakeSpan(buf));
    pair.BreakAt(Stream::kServerToClient,
                 pair.delivered(Stream::kServerToClient) + into);
    ASSERT_TRUE(pair.RunUntilQuiet());
    EXPECT_TRUE(pair.finished());
    EXPECT_EQ(pair.client().phase(),
              into == 0 ? ClientPhase::kClosed : ClientPhase::kDead);
    EXPECT_EQ(StatusErrno(pair.CompletionOf(c)->status), ENOTCONN);
    // The server saw the client close its socket after the request: EOF at
    // a boundary.
    EXPECT_EQ(pair.server().phase(), ServerPhase::kClosed);
  }
}

TEST(InMemoryPairTest, TransportErrorKillsTheReceiver) {
  InMemoryPair pair(Options());
  ASSERT_TRUE(pair.RunUntilQuiet());
  const std::vector<uint8_t> data = Bytes(1000, 5);
  const Cookie w = *pair.client().Write(0, data);
  pair.BreakAt(Stream::kClientToServer,
               pair.delivered(Stream::kClientToServer) + 40,
               ErrnoStatus(ECONNRESET, "reset"));
  ASSERT_TRUE(pair.RunUntilQuiet());
  EXPECT_EQ(pair.server().phase(), ServerPhase::kDead);
  EXPECT_EQ(StatusErrno(pair.server().dead_reason()), ECONNRESET);
  // The client then reads EOF at a boundary (nothing was replied).
  EXPECT_EQ(pair.client().phase(), ClientPhase::kClosed);
  EXPECT_EQ(StatusErrno(pair.CompletionOf(w)->status), ENOTCONN);
  EXPECT_EQ(pair.delivered(Stream::kClientToServer),
            pair.sent(Stream::kClientToServer) - (1000 + 32 - 40));
}

TEST(InMemoryPairTest, PairsShareABackend) {
  MemoryBackend backend(1 << 20);
  ServerOptions so;
  InMemoryPair a(Options(), so, backend);
  InMemoryPair b(Options(false, false), so, backend);
  ASSERT_TRUE(a.RunUntilQuiet());
  ASSERT_TRUE(b.RunUntilQuiet());
  const std::vector<uint8_t> data = Bytes(3000, 6);
  ASSERT_TRUE(a.Wait(a.client().Write(4096, data)).ok());
  std::vector<uint8_t> back(data.size());
  ASSERT_TRUE(b.Wait(b.client().Read(4096, absl::MakeSpan(back))).ok());
  EXPECT_EQ(back, data);
  EXPECT_FALSE(b.client().structured_replies());
}

}  // namespace
}  // namespace nbd
