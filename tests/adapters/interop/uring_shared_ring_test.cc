// Several connections on ONE io_uring (one UringLoop): every iteration
// prepares the SQEs of all of them and submits them with one
// io_uring_enter, which is what the io_uring adapter is for.
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "adapters/connect/connect.h"
#include "adapters/io_uring/uring_loop.h"
#include "adapters/pump/pump.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "tests/adapters/interop/interop_fixture.h"
#include "tests/testing/servers.h"

namespace nbd::test {
namespace {

constexpr int kConnections = 3;
constexpr int kPerBatch = 8;
constexpr size_t kChunk = 16384;
constexpr uint64_t kRegion = kPerBatch * kChunk;  // per connection

// One connection's bookkeeping: completions by cookie.
struct Conn {
  adapters::UringConnection* uring = nullptr;
  bool connected = false;
  std::map<Cookie, int> completions;
  std::map<Cookie, absl::Status> status;

  void OnEvent(ClientEvent& e) {
    if (std::holds_alternative<Connected>(e)) connected = true;
    if (auto* c = std::get_if<CommandCompleted>(&e)) {
      ++completions[c->cookie];
      status[c->cookie] = c->status;
    }
  }
  bool AllDone(const std::vector<Cookie>& cookies) const {
    for (Cookie k : cookies) {
      if (!completions.contains(k)) return false;
    }
    return true;
  }
};

// Connects kConnections to `socket` on one UringLoop, writes and reads
// back; sets io_uring_enter calls per operation for the two batches.
void RunOnOneRing(const std::string& socket, size_t readahead,
                  double* enters_per_op) {
  adapters::SyscallCounters counters;
  auto loop = adapters::UringLoop::Create(64, &counters);
  ASSERT_TRUE(loop.ok()) << loop.status();
  std::vector<std::unique_ptr<Conn>> conns;
  for (int i = 0; i < kConnections; ++i) {
    auto fd = adapters::ConnectUnix(socket);
    ASSERT_TRUE(fd.ok()) << fd.status();
    auto c = std::make_unique<Conn>();
    Conn* raw = c.get();
    ClientOptions options;
    options.recv_readahead = readahead;
    c->uring = (*loop)->Add(*fd, std::move(options),
                            [raw](ClientEvent& e) { raw->OnEvent(e); });
    conns.push_back(std::move(c));
  }
  auto all = [&](auto pred) {
    for (auto& c : conns) {
      if (!pred(*c)) return false;
    }
    return true;
  };
  ASSERT_TRUE(
      (*loop)
          ->RunUntil([&] { return all([](Conn& c) { return c.connected; }); },
                     kTimeout)
          .ok());
  for (auto& c : conns) ASSERT_TRUE(c->uring->client().can_multi_conn());

  // Batch 1: every connection writes its own region; batch 2 reads them
  // back crosswise (connection i reads region i+1) -- multi-conn makes
  // completed writes visible on every connection.
  std::vector<std::vector<uint8_t>> data;
  for (int i = 0; i < kConnections * kPerBatch; ++i) {
    data.push_back(Pattern(kChunk, static_cast<uint8_t>(i)));
  }
  std::vector<std::vector<uint8_t>> back(kConnections * kPerBatch,
                                         std::vector<uint8_t>(kChunk, 0xee));
  adapters::SyscallCounters before = counters;
  int ops = 0;
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<std::vector<Cookie>> cookies(kConnections);
    for (int i = 0; i < kConnections; ++i) {
      Client& client = conns[i]->uring->client();
      for (int k = 0; k < kPerBatch; ++k) {
        absl::StatusOr<Cookie> cookie;
        if (pass == 0) {
          cookie =
              client.Write(i * kRegion + k * kChunk, data[i * kPerBatch + k]);
        } else {
          int from = (i + 1) % kConnections;
          cookie = client.Read(from * kRegion + k * kChunk,
                               absl::MakeSpan(back[from * kPerBatch + k]));
        }
        ASSERT_TRUE(cookie.ok()) << cookie.status();
        cookies[i].push_back(*cookie);
        ++ops;
      }
    }
    absl::Status s = (*loop)->RunUntil(
        [&] {
          for (int i = 0; i < kConnections; ++i) {
            if (!conns[i]->AllDone(cookies[i])) return false;
          }
          return true;
        },
        kTimeout);
    ASSERT_TRUE(s.ok()) << s;
    for (int i = 0; i < kConnections; ++i) {
      for (Cookie k : cookies[i]) {
        EXPECT_EQ(conns[i]->completions[k], 1);
        EXPECT_TRUE(conns[i]->status[k].ok()) << conns[i]->status[k];
      }
    }
  }
  for (size_t i = 0; i < data.size(); ++i) EXPECT_EQ(back[i], data[i]) << i;
  uint64_t enters = counters.io_uring_enter - before.io_uring_enter;
  std::printf(
      "[readahead=%zu] %d connections, %d ops on one ring: %llu "
      "io_uring_enter (%.2f per op)\n",
      readahead, kConnections, ops, static_cast<unsigned long long>(enters),
      static_cast<double>(enters) / ops);
  *enters_per_op = static_cast<double>(enters) / ops;

  for (auto& c : conns) {
    ASSERT_TRUE(c->uring->client().Disconnect().ok());
    c->uring->SetDeadline(absl::Now() + kTimeout);
  }
  ASSERT_TRUE(
      (*loop)
          ->RunUntil(
              [&] { return all([](Conn& c) { return c.uring->finished(); }); },
              kTimeout + absl::Seconds(5))
          .ok());
  for (auto& c : conns)
    EXPECT_EQ(c->uring->client().phase(), ClientPhase::kClosed);
}

TEST(UringSharedRingTest, ManyConnectionsOneRing) {
  if (!HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  // Zero-copy receives take one completion per reply unit (header, chunk
  // header, data), so only the read-ahead run is bounded; both are reported.
  for (size_t readahead : {size_t{0}, size_t{65536}}) {
    SCOPED_TRACE(readahead);
    double per_op = 0;
    RunOnOneRing((*server)->socket_path(), readahead, &per_op);
    if (HasFatalFailure()) return;
    ::testing::Test::RecordProperty(
        absl::StrCat("io_uring_enter_per_op_readahead_", readahead),
        absl::StrCat(per_op));
    // Generous: the point is that connections share submissions.
    if (readahead > 0) {
      EXPECT_LT(per_op, 1.0);
    }
  }
}

}  // namespace
}  // namespace nbd::test
