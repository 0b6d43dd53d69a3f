// Behaviour specific to one adapter that the per-adapter Harness cannot
// express: the default disconnect bound of the event-loop adapters,
// io_uring's CQE ownership, deadlines and connection removal, and the
// blocking adapter's descriptor mode. Fake servers on socketpairs; every
// wait is bounded.
#include <fcntl.h>
#include <sys/socket.h>

#include <memory>
#include <variant>
#include <vector>

#include "absl/time/clock.h"
#include "adapters/blocking/blocking_client.h"
#include "adapters/epoll/epoll_connection.h"
#include "adapters/epoll/epoll_loop.h"
#include "adapters/io_uring/uring_loop.h"
#include "gtest/gtest.h"
#include "protocol/status.h"
#include "tests/adapters/interop/silent_server.h"

namespace nbd::test {
namespace {

using adapters::EpollConnection;
using adapters::EpollLoop;
using adapters::UringConnection;
using adapters::UringDriver;
using adapters::UringLoop;

// Only matters when something is broken.
constexpr absl::Duration kGuard = absl::Seconds(20);
// Small enough for a test, far below kDefaultDisconnectTimeout.
constexpr absl::Duration kShortBound = absl::Milliseconds(200);

// A socketpair whose far end is a SilentServer.
struct SilentPair {
  SilentPair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    client_fd = sv[0];
    ::fcntl(client_fd, F_SETFL, ::fcntl(client_fd, F_GETFL) | O_NONBLOCK);
    server = std::make_unique<SilentServer>(sv[1]);
  }
  int client_fd = -1;
  std::unique_ptr<SilentServer> server;
};

// Completions of one command.
struct Completions {
  int count = 0;
  absl::Status status;
  void OnEvent(ClientEvent& e) {
    if (auto* c = std::get_if<CommandCompleted>(&e)) {
      ++count;
      status = c->status;
    }
  }
};

bool WaitForEof(const SilentServer& s) {
  absl::Time give_up = absl::Now() + kGuard;
  while (!s.saw_eof() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  return s.saw_eof();
}

// ---- epoll: default disconnect deadline ------------------------------------

TEST(EpollDefaultDeadlineTest, CoreDisconnectWithoutDeadlineEnds) {
  SilentPair pair;
  auto loop = EpollLoop::Create();
  ASSERT_TRUE(loop.ok());
  EpollConnection conn(pair.client_fd, {}, [](ClientEvent&) {});
  conn.SetDefaultDisconnectTimeout(kShortBound);
  ASSERT_TRUE((*loop)->Add(&conn).ok());
  ASSERT_TRUE(
      (*loop)
          ->RunUntil(
              [&] { return conn.client().phase() == ClientPhase::kReady; },
              kGuard)
          .ok());
  EXPECT_FALSE(conn.next_deadline().has_value());
  // The core's Disconnect, not the adapter's, and no SetDeadline: the bound
  // starts once DISC is out.
  ASSERT_TRUE(conn.client().Disconnect().ok());
  conn.Kick();
  ASSERT_TRUE(conn.next_deadline().has_value());
  EXPECT_LE(*conn.next_deadline(), absl::Now() + kShortBound);
  absl::Status s = (*loop)->RunUntil([&] { return conn.finished(); }, kGuard);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(conn.client().phase(), ClientPhase::kDead);
  EXPECT_EQ(StatusErrno(conn.client().dead_reason()), ETIMEDOUT);
  EXPECT_TRUE(WaitForEof(*pair.server));
  EXPECT_EQ(pair.server->bytes_read(), 28u);  // NBD_CMD_DISC
}

TEST(EpollDefaultDeadlineTest, ShutdownWithCommandInFlightEnds) {
  SilentPair pair;
  auto loop = EpollLoop::Create();
  ASSERT_TRUE(loop.ok());
  Completions read;
  EpollConnection conn(pair.client_fd, {},
                       [&](ClientEvent& e) { read.OnEvent(e); });
  conn.SetDefaultDisconnectTimeout(kShortBound);
  ASSERT_TRUE((*loop)->Add(&conn).ok());
  ASSERT_TRUE(
      (*loop)
          ->RunUntil(
              [&] { return conn.client().phase() == ClientPhase::kReady; },
              kGuard)
          .ok());
  std::vector<uint8_t> buf(4096);
  ASSERT_TRUE(conn.client().Read(0, absl::MakeSpan(buf)).ok());
  conn.Kick();
  // The DISC waits for the unanswered read, so no ShutdownWrite ever comes:
  // the adapter's Shutdown arms the bound itself.
  ASSERT_TRUE(conn.Shutdown().ok());
  EXPECT_TRUE(conn.next_deadline().has_value());
  absl::Status s = (*loop)->RunUntil([&] { return conn.finished(); }, kGuard);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(StatusErrno(conn.client().dead_reason()), ETIMEDOUT);
  EXPECT_EQ(read.count, 1);
  EXPECT_EQ(StatusErrno(read.status), ENOTCONN) << read.status;
}

TEST(EpollDefaultDeadlineTest, ExplicitDeadlineWins) {
  SilentPair pair;
  auto loop = EpollLoop::Create();
  ASSERT_TRUE(loop.ok());
  EpollConnection conn(pair.client_fd, {}, [](ClientEvent&) {});
  ASSERT_TRUE((*loop)->Add(&conn).ok());
  ASSERT_TRUE(
      (*loop)
          ->RunUntil(
              [&] { return conn.client().phase() == ClientPhase::kReady; },
              kGuard)
          .ok());
  absl::Time mine = absl::Now() + kShortBound;
  conn.SetDeadline(mine);
  ASSERT_TRUE(conn.Disconnect().ok());
  EXPECT_EQ(conn.next_deadline(), mine);
}

// ---- epoll: lifetimes of connections and the loop ---------------------------
// Either may go first; these run under AddressSanitizer too (--config=asan),
// which turns a use after free here into a failure.

// A non-blocking socket whose peer has already closed: a connection on it
// dies in its first receive (EOF in the handshake).
int PeerClosedFd() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ::close(sv[1]);
  ::fcntl(sv[0], F_SETFL, ::fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  return sv[0];
}

bool IsDead(const ClientEvent& e) {
  return std::holds_alternative<ClientDead>(e);
}

TEST(EpollLoopLifetimeTest,
     AFinishedConnectionMayBeDestroyedBeforeTheNextRound) {
  auto loop = EpollLoop::Create();
  ASSERT_TRUE(loop.ok());
  auto conn = std::make_unique<EpollConnection>(PeerClosedFd(), ClientOptions{},
                                                [](ClientEvent&) {});
  ASSERT_TRUE((*loop)->Add(conn.get()).ok());
  ASSERT_TRUE((*loop)->RunUntil([&] { return conn->finished(); }, kGuard).ok());
  conn.reset();  // before the loop ran again
  EXPECT_TRUE((*loop)->RunOnce(absl::ZeroDuration()).ok());
}

TEST(EpollLoopLifetimeTest, AConnectionMayBeDestroyedWhileRegistered) {
  SilentPair pair;
  auto loop = EpollLoop::Create();
  ASSERT_TRUE(loop.ok());
  auto conn = std::make_unique<EpollConnection>(pair.client_fd, ClientOptions{},
                                                [](ClientEvent&) {});
  ASSERT_TRUE((*loop)->Add(conn.get()).ok());
  ASSERT_TRUE(
      (*loop)
          ->RunUntil(
              [&] { return conn->client().phase() == ClientPhase::kReady; },
              kGuard)
          .ok());
  conn->SetDeadline(absl::Now());  // the loop would look at it next round
  conn.reset();
  EXPECT_TRUE((*loop)->RunOnce(absl::ZeroDuration()).ok());
  EXPECT_TRUE(WaitForEof(*pair.server));  // the destructor closed the fd
}

// Both connections' sockets are ready in the same epoll_wait; whichever
// callback runs first destroys the other, whose event is still in the
// batch.
TEST(EpollLoopLifetimeTest, ACallbackMayDestroyAnotherConnectionOfTheBatch) {
  auto loop = EpollLoop::Create();
  ASSERT_TRUE(loop.ok());
  std::unique_ptr<EpollConnection> conns[2];
  int deaths = 0;
  for (int i = 0; i < 2; ++i) {
    conns[i] = std::make_unique<EpollConnection>(
        PeerClosedFd(), ClientOptions{}, [&, other = 1 - i](ClientEvent& e) {
          if (!IsDead(e)) return;
          ++deaths;
          conns[other].reset();
        });
  }
  // Add() only sends (nothing, here): both EOFs show up when the loop
  // waits, in one epoll_wait.
  for (auto& c : conns) ASSERT_TRUE((*loop)->Add(c.get()).ok());
  ASSERT_TRUE((*loop)->RunUntil([&] { return deaths > 0; }, kGuard).ok());
  EXPECT_EQ(deaths, 1);
  EXPECT_EQ((conns[0] == nullptr) + (conns[1] == nullptr), 1);
  EXPECT_TRUE((*loop)->RunOnce(absl::ZeroDuration()).ok());
  EXPECT_EQ(deaths, 1);
}

TEST(EpollLoopLifetimeTest, TheLoopMayGoBeforeItsConnections) {
  SilentPair pair;
  auto loop = EpollLoop::Create();
  ASSERT_TRUE(loop.ok());
  EpollConnection conn(pair.client_fd, {}, [](ClientEvent&) {});
  ASSERT_TRUE((*loop)->Add(&conn).ok());
  loop->reset();
  // The connection forgot the loop (and its epoll descriptor): ending it
  // now touches neither.
  conn.SetDeadline(absl::Now());
  conn.CheckDeadline(absl::Now());
  EXPECT_TRUE(conn.finished());
}

// ---- io_uring: default disconnect deadline ---------------------------------

struct UringFixture {
  UringFixture() {
    auto l = UringLoop::Create(16);
    EXPECT_TRUE(l.ok()) << l.status();
    if (l.ok()) loop = std::move(*l);
  }
  UringConnection* Connect(SilentPair& pair, Completions* c = nullptr) {
    UringConnection* conn = loop->Add(pair.client_fd, {}, [c](ClientEvent& e) {
      if (c != nullptr) c->OnEvent(e);
    });
    conn->SetDefaultDisconnectTimeout(kShortBound);
    absl::Status s = loop->RunUntil(
        [&] { return conn->client().phase() == ClientPhase::kReady; }, kGuard);
    EXPECT_TRUE(s.ok()) << s;
    return conn;
  }
  std::unique_ptr<UringLoop> loop;
};

TEST(UringDefaultDeadlineTest, CoreDisconnectWithoutDeadlineEnds) {
  SilentPair pair;
  UringFixture f;
  ASSERT_NE(f.loop, nullptr);
  UringConnection* conn = f.Connect(pair);
  EXPECT_FALSE(f.loop->driver().next_deadline().has_value());
  ASSERT_TRUE(conn->client().Disconnect().ok());
  absl::Status s = f.loop->RunUntil([&] { return conn->finished(); }, kGuard);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(conn->client().phase(), ClientPhase::kDead);
  EXPECT_EQ(StatusErrno(conn->client().dead_reason()), ETIMEDOUT);
  EXPECT_TRUE(WaitForEof(*pair.server));
  EXPECT_EQ(pair.server->bytes_read(), 28u);
}

TEST(UringDefaultDeadlineTest, ShutdownWithCommandInFlightEnds) {
  SilentPair pair;
  UringFixture f;
  ASSERT_NE(f.loop, nullptr);
  Completions read;
  UringConnection* conn = f.Connect(pair, &read);
  std::vector<uint8_t> buf(4096);
  ASSERT_TRUE(conn->client().Read(0, absl::MakeSpan(buf)).ok());
  ASSERT_TRUE(f.loop->RunOnce(absl::Milliseconds(10)).ok());  // on the wire
  ASSERT_TRUE(conn->Shutdown().ok());
  EXPECT_TRUE(f.loop->driver().next_deadline().has_value());
  absl::Status s = f.loop->RunUntil([&] { return conn->finished(); }, kGuard);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(StatusErrno(conn->client().dead_reason()), ETIMEDOUT);
  EXPECT_EQ(read.count, 1);
  EXPECT_EQ(StatusErrno(read.status), ENOTCONN) << read.status;
}

// ---- io_uring: driver details ----------------------------------------------

TEST(UringDriverTest, OwnsExcludesLiburingTimeout) {
  io_uring_cqe cqe = {};
  cqe.user_data = LIBURING_UDATA_TIMEOUT;
  EXPECT_FALSE(UringDriver::Owns(&cqe));
  cqe.user_data = uint64_t{1} << 63;  // slot 0, receive
  EXPECT_TRUE(UringDriver::Owns(&cqe));
  cqe.user_data = (uint64_t{1} << 63) | (uint64_t{12345} << 2) | 1;
  EXPECT_TRUE(UringDriver::Owns(&cqe));
  cqe.user_data = 42;  // the embedder's
  EXPECT_FALSE(UringDriver::Owns(&cqe));
}

// Given up with a receive still in the kernel: the connection waits for
// the completion its forced shutdown brings, and its passed deadline no
// longer counts (it used to make UringLoop poll with a zero timeout).
TEST(UringDriverTest, GivenUpConnectionNoLongerHasADeadline) {
  SilentPair pair;
  UringFixture f;
  ASSERT_NE(f.loop, nullptr);
  UringConnection* conn = f.Connect(pair);
  std::vector<uint8_t> buf(4096);
  ASSERT_TRUE(conn->client().Read(0, absl::MakeSpan(buf)).ok());
  ASSERT_TRUE(f.loop->RunOnce(absl::Milliseconds(10)).ok());
  ASSERT_TRUE(conn->in_flight_io());  // the receive for the reply
  conn->SetDeadline(absl::Now() - absl::Seconds(1));
  ASSERT_TRUE(f.loop->driver().next_deadline().has_value());
  f.loop->driver().CheckDeadlines(absl::Now());
  EXPECT_EQ(conn->client().phase(), ClientPhase::kDead);
  EXPECT_FALSE(conn->finished());  // held until the receive completes
  EXPECT_FALSE(f.loop->driver().next_deadline().has_value());
  absl::Status s = f.loop->RunUntil([&] { return conn->finished(); }, kGuard);
  EXPECT_TRUE(s.ok()) << s;
}

TEST(UringDriverTest, RemoveFreesFinishedConnectionsOnly) {
  SilentPair a, b, c;
  UringFixture f;
  ASSERT_NE(f.loop, nullptr);
  UringConnection* first = f.Connect(a);
  UringConnection* second = f.Connect(b);
  EXPECT_EQ(f.loop->driver().connection_count(), 2u);
  // Not finished: the kernel may still use its buffers.
  EXPECT_EQ(f.loop->Remove(first).code(),
            absl::StatusCode::kFailedPrecondition);
  first->SetDeadline(absl::Now());
  ASSERT_TRUE(first->Shutdown().ok());
  ASSERT_TRUE(f.loop->RunUntil([&] { return first->finished(); }, kGuard).ok());
  EXPECT_TRUE(f.loop->Remove(first).ok());
  EXPECT_EQ(f.loop->driver().connection_count(), 1u);
  EXPECT_EQ(f.loop->Remove(first).code(), absl::StatusCode::kNotFound);
  // The slot is reused; the other connection is untouched and still works.
  UringConnection* third = f.Connect(c);
  EXPECT_EQ(f.loop->driver().connection_count(), 2u);
  EXPECT_EQ(third->client().phase(), ClientPhase::kReady);
  EXPECT_EQ(second->client().phase(), ClientPhase::kReady);
  ASSERT_TRUE(second->Disconnect().ok());
  ASSERT_TRUE(
      f.loop->RunUntil([&] { return second->finished(); }, kGuard).ok());
  EXPECT_TRUE(WaitForEof(*b.server));
  EXPECT_EQ(b.server->bytes_read(), 28u);
  EXPECT_FALSE(third->finished());
}

// ---- blocking --------------------------------------------------------------

TEST(BlockingClientTest, ConnectMakesTheDescriptorNonBlocking) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  SilentServer server(sv[1]);
  ASSERT_EQ(::fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
  auto client = adapters::BlockingClient::Connect(sv[0], {}, kGuard);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_NE(::fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
  // And the bounded waits work on it.
  std::vector<uint8_t> buf(512);
  absl::Status s = (*client)->Pread(absl::MakeSpan(buf), 0, {}, kShortBound);
  EXPECT_EQ(StatusErrno(s), ETIMEDOUT) << s;
}

}  // namespace
}  // namespace nbd::test
