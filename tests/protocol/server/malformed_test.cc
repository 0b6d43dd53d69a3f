// Malformed and random client input: the session must end cleanly (kDead
// with a reason, or keep going) and never crash, overrun or over-allocate.
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "protocol/server/server.h"
#include "tests/protocol/server/test_util.h"

namespace nbd::test {
namespace {

// A valid transcript covering options and every command in both header
// forms; the fuzz loop mutates and splits it.
Bytes Transcript(bool extended) {
  Bytes b = Concat({
      Flags(3),
      Opt(Option::kList),
      Opt(Option::kInfo, GoData("disk", {1, 2, 3})),
      Opt(extended ? Option::kExtendedHeaders : Option::kStructuredReply),
      Opt(Option::kSetMetaContext, MetaData("disk", {"base:allocation"})),
      Opt(Option::kGo, GoData("disk")),
      // Under extended headers a WRITE MUST carry PAYLOAD_LEN.
      Req(extended, Command::kWrite, 1, 0, 16,
          extended ? kCmdFlagPayloadLen : uint16_t{0}),
      Bytes(16, 0x42),
      Req(extended, Command::kRead, 2, 0, 4096),
      Req(extended, Command::kBlockStatus, 3, 0, 65536),
      Req(extended, Command::kTrim, 4, 0, 4096),
      Req(extended, Command::kWriteZeroes, 5, 0, 4096),
      Req(extended, Command::kFlush, 6, 0, 0),
      Req(extended, Command::kCache, 7, 0, 4096),
      Req(extended, Command::kDisc, 8, 0, 0),
  });
  return b;
}

// A reply is accepted, or dropped because the session died meanwhile.
void ExpectAccepted(ServerSession& s, const absl::Status& st) {
  EXPECT_TRUE(st.ok() || (absl::IsFailedPrecondition(st) &&
                          s.phase() == ServerPhase::kDead))
      << st;
}

// Answers every request (correctly) so the session keeps going. With
// `final_seen`, also checks that no event (a trace line included) follows
// ServerClosed or ServerDead, across calls.
void AnswerAll(ServerSession& s, bool* final_seen = nullptr) {
  while (auto e = s.PollEvent()) {
    if (final_seen != nullptr) {
      EXPECT_FALSE(*final_seen) << "an event after the final one";
      if (std::holds_alternative<ServerClosed>(*e) ||
          std::holds_alternative<ServerDead>(*e)) {
        *final_seen = true;
      }
    }
    auto* r = std::get_if<ServerRequest>(&*e);
    if (r == nullptr) continue;
    if (r->command == Command::kRead && r->length > 0) {
      ReadPiece hole = ReadPiece::Hole(r->offset, r->length);
      ExpectAccepted(s, s.ReplyRead(r->handle, {&hole, 1}));
    } else if (r->command == Command::kBlockStatus) {
      Extent e{r->length, 3};
      ExpectAccepted(s, s.ReplyBlockStatus(r->handle, {&e, 1}));
    } else {
      ExpectAccepted(s, s.ReplyOk(r->handle));
    }
  }
  EXPECT_EQ(s.in_flight(), 0u);
}

TEST(MalformedTest, ValidTranscriptsRunToClosed) {
  for (bool extended : {false, true}) {
    ServerSession s(TestOptions());
    TakeOutput(s);
    Bytes in = Transcript(extended);
    size_t pos = 0;
    while (pos < in.size()) {
      absl::StatusOr<size_t> n = s.Feed(ByteSpan(in).subspan(pos));
      ASSERT_TRUE(n.ok()) << n.status();
      pos += *n;
      AnswerAll(s);
      TakeOutput(s);
      if (s.phase() == ServerPhase::kClosed) break;
    }
    EXPECT_EQ(s.phase(), ServerPhase::kClosed);
  }
}

TEST(MalformedTest, RandomMutationsNeverCrash) {
  std::mt19937 rng(1234);
  int dead = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    ServerOptions o = TestOptions();
    o.max_option_length = 1024;
    o.trace = (iter / 2) % 2 == 0;  // formats mutated names and lengths
    ServerSession s(o);
    bool final_seen = false;
    TakeOutput(s);
    Bytes in = Transcript(iter % 2 == 1);
    const int mutations = 1 + rng() % 4;
    for (int m = 0; m < mutations; ++m) {
      in[rng() % in.size()] = static_cast<uint8_t>(rng());
    }
    if (rng() % 4 == 0) in.resize(rng() % in.size());
    size_t pos = 0;
    while (pos < in.size()) {
      const size_t len = std::min<size_t>(1 + rng() % 64, in.size() - pos);
      absl::StatusOr<size_t> n = s.Feed(ByteSpan(in).subspan(pos, len));
      AnswerAll(s, &final_seen);
      if (rng() % 2) TakeOutput(s);
      if (!n.ok() || *n < len) break;
      pos += len;
    }
    s.FeedEof();
    AnswerAll(s, &final_seen);
    TakeOutput(s);
    AnswerAll(s, &final_seen);  // ServerClosed once the output drained
    const ServerPhase p = s.phase();
    EXPECT_TRUE(p == ServerPhase::kClosed || p == ServerPhase::kDead ||
                p == ServerPhase::kClosing)
        << ServerPhaseName(p);
    if (p == ServerPhase::kDead) {
      ++dead;
      EXPECT_FALSE(s.dead_reason().ok());
      EXPECT_EQ(s.pending_output_bytes(), 0u);
      EXPECT_EQ(s.wants(), Direction::kNone);
    }
  }
  EXPECT_GT(dead, 100);  // the mutations do hit the hard-disconnect paths
}

TEST(MalformedTest, RandomGarbageNeverCrashes) {
  std::mt19937 rng(99);
  for (int iter = 0; iter < 2000; ++iter) {
    ServerSession s(TestOptions());
    Bytes prefix = iter % 3 == 0 ? Bytes{} : Flags(3);
    if (iter % 3 == 2) {
      Bytes go = Opt(Option::kGo, GoData("disk"));
      prefix.insert(prefix.end(), go.begin(), go.end());
    }
    Bytes garbage(rng() % 200);
    for (auto& b : garbage) b = static_cast<uint8_t>(rng());
    (void)s.Feed(Concat({prefix, garbage}));
    AnswerAll(s);
    TakeOutput(s);
  }
}

}  // namespace
}  // namespace nbd::test
