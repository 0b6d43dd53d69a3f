// The EpollServer's bounds against clients that misbehave: the handshake
// timeout, the connection limit (and running out of descriptors), and the
// per-connection bound on queued replies. Raw sockets (raw_client.h); every
// wait is bounded and generous, and nothing passes or fails on timing.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "adapters/server/epoll_server.h"
#include "adapters/server/memory_backend.h"
#include "gtest/gtest.h"
#include "protocol/constants.h"
#include "tests/adapters/server/raw_client.h"

namespace nbd::test {
namespace {

// Polls `done` until it holds or `limit` passed.
bool WaitUntil(const std::function<bool()>& done,
               absl::Duration limit = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + limit;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

class BoundsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nbdbnd.XXXXXX";  // short: sun_path is 108 bytes
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/sock";
    memory_ = std::make_shared<MemoryBackend>(64 << 20);
  }
  void TearDown() override {
    server_.reset();
    ::rmdir(dir_.c_str());
  }

  void Start(EpollServerOptions o) {
    o.unix_path = socket_;
    o.exports = {{"", "", memory_}};
    auto s = EpollServer::Create(std::move(o));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    ASSERT_TRUE(server_->Start().ok());
  }
  std::unique_ptr<RawClient> Connect() {
    auto c = RawClient::ConnectUnix(socket_);
    EXPECT_NE(c, nullptr);
    return c;
  }
  // A fresh client gets through the handshake and one READ.
  void ExpectServesAFreshClient() {
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->Handshake());
    ASSERT_TRUE(c->Send(RawRequest(true, Command::kRead, 77, 0, 4096)));
    std::optional<RawReply> r = c->ReadReply();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->cookie, 77u);
    EXPECT_EQ(r->error, 0u);
  }

  std::string dir_, socket_;
  std::shared_ptr<MemoryBackend> memory_;
  std::unique_ptr<EpollServer> server_;
};

TEST_F(BoundsTest, DefaultsAreSafe) {
  EpollServerOptions o;
  EXPECT_EQ(o.max_connections, 1024u);
  EXPECT_EQ(o.handshake_timeout, absl::Seconds(10));
  EXPECT_EQ(o.session.output_high_water, size_t{16} << 20);
}

TEST_F(BoundsTest, HandshakeTimeoutDropsStalledClients) {
  std::mutex mu;
  std::map<uint64_t, std::vector<std::string>> lines;
  EpollServerOptions o;
  o.handshake_timeout = absl::Milliseconds(300);
  o.on_trace = [&](uint64_t connection, absl::string_view line) {
    std::lock_guard<std::mutex> lock(mu);
    lines[connection].emplace_back(line);
  };
  Start(o);
  // Connection 1 finishes the handshake first; it must be left alone.
  auto good = Connect();
  ASSERT_TRUE(good->Handshake());
  // 2 never sends a byte; 3 stops inside an option header; 4 sends an
  // option and never reads the replies.
  auto silent = Connect();
  auto half = Connect();
  ASSERT_TRUE(half->Greet());
  Bytes go = RawOption(static_cast<uint32_t>(Option::kGo),
                       EncodeInfoRequest({"", {}}));
  ASSERT_TRUE(half->Send(ByteSpan(go).first(10)));
  auto deaf = Connect();
  ASSERT_TRUE(deaf->Send(EncodeClientFlags(kClientFlagFixedNewstyle)));
  ASSERT_TRUE(deaf->Send(RawOption(static_cast<uint32_t>(Option::kList))));

  EXPECT_TRUE(silent->WaitClosed());
  EXPECT_TRUE(half->WaitClosed());
  EXPECT_TRUE(deaf->WaitClosed());
  EXPECT_EQ(server_->stats().handshake_timeouts, 3u);
  ASSERT_TRUE(WaitUntil([&] { return server_->open_connections() == 1; }));
  // The connection in transmission is still served.
  ASSERT_TRUE(good->Send(RawRequest(true, Command::kRead, 5, 0, 512)));
  std::optional<RawReply> r = good->ReadReply();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->cookie, 5u);
  EXPECT_TRUE(good->Open());
  ExpectServesAFreshClient();
  server_.reset();  // no more trace calls into this scope
  for (uint64_t n : {2, 3, 4}) {
    ASSERT_FALSE(lines[n].empty()) << n;
    EXPECT_EQ(lines[n].back(), "dropped: handshake not finished within 300ms")
        << n;
  }
  for (const std::string& line : lines[1]) {
    EXPECT_FALSE(absl::StrContains(line, "dropped")) << line;
  }
}

TEST_F(BoundsTest, MaxConnectionsRefusesTheExtraAndServesAfterOneLeaves) {
  EpollServerOptions o;
  o.max_connections = 3;
  o.handshake_timeout = absl::ZeroDuration();  // idle clients stay
  Start(o);
  EXPECT_EQ(server_->max_connections(), 3u);
  std::vector<std::unique_ptr<RawClient>> idle;
  for (int i = 0; i < 3; ++i) {
    idle.push_back(Connect());
    ASSERT_TRUE(idle.back()->Greet());  // each got its greeting
  }
  // The fourth is accepted and closed at once: EOF, no greeting.
  auto extra = Connect();
  ASSERT_NE(extra, nullptr);
  EXPECT_FALSE(extra->Recv(1).has_value());
  EXPECT_EQ(server_->stats().refused, 1u);
  // Once one leaves, a new client is served.
  idle.pop_back();
  ASSERT_TRUE(WaitUntil([&] { return server_->open_connections() == 2; }));
  ExpectServesAFreshClient();
  for (auto& c : idle) EXPECT_TRUE(c->Open());
}

TEST_F(BoundsTest, MaxConnectionsFitsTheDescriptorLimit) {
  EpollServerOptions o;
  o.max_connections = size_t{1} << 40;
  Start(o);
  rlimit rl{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur != RLIM_INFINITY) {
    EXPECT_LT(server_->max_connections(), rl.rlim_cur);
  }
  EXPECT_GE(server_->max_connections(), 1u);
  o = EpollServerOptions();
  o.max_connections = 0;
  o.exports = {{"", "", memory_}};
  o.unix_path = dir_ + "/zero";
  EXPECT_TRUE(absl::IsInvalidArgument(EpollServer::Create(o).status()));
}

// With every descriptor of the process in use, a pending connection is
// accepted on the server's reserved descriptor and closed: the client sees
// EOF and the loop goes on (instead of spinning on EMFILE).
TEST_F(BoundsTest, OutOfDescriptorsRefusesAndRecovers) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = std::min<rlim_t>(saved.rlim_cur, 256);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  Start(EpollServerOptions());
  // Fill the descriptor table, then free one for the client's socket.
  std::vector<int> filler;
  while (true) {
    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    filler.push_back(fd);
  }
  ASSERT_FALSE(filler.empty());
  ::close(filler.back());
  filler.pop_back();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->Recv(1).has_value());  // EOF: refused
  EXPECT_EQ(server_->stats().refused, 1u);
  c.reset();
  for (int fd : filler) ::close(fd);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  ExpectServesAFreshClient();
}

// A client that pipelines READs and never reads a reply: the server stops
// reading from it once its unsent replies pass output_high_water, so what
// it holds stays under the bound; once the client reads, everything comes.
TEST_F(BoundsTest, QueuedRepliesStayUnderTheBound) {
  constexpr size_t kHighWater = 1 << 20;
  constexpr size_t kRead = 64 << 10;
  constexpr int kRequests = 2000;  // 125 MiB of replies
  // Data, not holes, so every reply carries its 64 KiB.
  std::vector<uint8_t> data(4 << 20, 0x5a);
  ASSERT_TRUE(memory_->Write(0, data, false).ok());
  EpollServerOptions o;
  o.session.output_high_water = kHighWater;
  Start(o);
  auto c = Connect();
  ASSERT_TRUE(c->Handshake());
  Bytes requests;
  for (int i = 0; i < kRequests; ++i) {
    Bytes r = RawRequest(true, Command::kRead, i, (i % 64) * kRead, kRead);
    requests.insert(requests.end(), r.begin(), r.end());
  }
  ASSERT_TRUE(c->Send(requests));  // 62.5 KiB: the socket buffers take it
  // One reply: a 32-byte header and the OFFSET_DATA chunk (offset + data).
  const size_t bound = kHighWater + kExtendedReplyHeaderSize + 8 + kRead;
  // The server fills its queue up to the bound and stops reading. (The
  // bound counts ~170 bytes of bookkeeping per queued segment too, so the
  // bytes alone may stop a little short of it, never by a whole reply.)
  ASSERT_TRUE(WaitUntil([&] {
    return server_->stats().queued_output_bytes >= kHighWater - kRead;
  }));
  EpollServerStats st = server_->stats();
  EXPECT_LE(st.queued_output_bytes, bound);
  EXPECT_LE(st.peak_queued_output_bytes, bound);
  EXPECT_EQ(st.open, 1u);
  // The client reads now: every reply arrives, in any order.
  std::set<uint64_t> cookies;
  for (int i = 0; i < kRequests; ++i) {
    std::optional<RawReply> r = c->ReadReply();
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ(r->error, 0u);
    EXPECT_EQ(r->payload.size(), 8 + kRead);
    cookies.insert(r->cookie);
  }
  EXPECT_EQ(cookies.size(), static_cast<size_t>(kRequests));
  EXPECT_LE(server_->stats().peak_queued_output_bytes, bound);
  ASSERT_TRUE(
      WaitUntil([&] { return server_->stats().queued_output_bytes == 0; }));
}

}  // namespace
}  // namespace nbd::test
