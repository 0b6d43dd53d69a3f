// ClientDrive's end of a connection against peers that misbehave (a server
// that never closes, a reset, an EOF with commands pending), what is left
// after done(), and the order of events raised by calls on the core.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <variant>
#include <vector>

#include "absl/time/clock.h"
#include "adapters/drive/drive.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"
#include "protocol/status.h"
#include "tests/adapters/drive/poll_loop.h"
#include "tests/adapters/interop/silent_server.h"

namespace nbd::test {
namespace {

using adapters::ClientDrive;
using adapters::DriveOptions;
using adapters::SyscallCounters;

// An oldstyle greeting (1 MiB export): the client is connected as soon as
// it has read it, with nothing to send.
void SendOldstyleGreeting(int fd) {
  uint8_t greeting[152] = {};
  std::memcpy(greeting, "NBDMAGIC", 8);
  const uint8_t oldstyle[8] = {0x00, 0x00, 0x42, 0x02, 0x81, 0x86, 0x12, 0x53};
  std::memcpy(greeting + 8, oldstyle, 8);
  greeting[16 + 5] = 0x10;  // size 1 MiB, big-endian
  greeting[24 + 3] = 0x01;  // flags: HAS_FLAGS
  ASSERT_EQ(::send(fd, greeting, sizeof greeting, MSG_NOSIGNAL),
            static_cast<ssize_t>(sizeof greeting));
}

class ClientDriveLifecycleTest : public ::testing::Test {
 protected:
  // A drive on one end of a socketpair; the test holds the other end
  // (`peer_`), or gives it to a SilentServer.
  void Start(DriveOptions options = {}) {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    peer_ = fds[1];
    options.counters = &counters_;
    drive_ = std::make_unique<ClientDrive>(fds[0], ClientOptions{}, options);
    loop_.Add(*drive_, [this](ClientEvent& e) { Record(e); });
  }
  void TearDown() override {
    if (peer_ >= 0) ::close(peer_);
  }

  void Record(const ClientEvent& e) {
    events_.push_back(e);
    if (auto* c = std::get_if<CommandCompleted>(&e)) {
      completions_[c->cookie].push_back(c->status);
    }
  }

  void Connect() {
    ASSERT_TRUE(loop_.RunUntil([&] { return Count<Connected>() == 1; }));
    ASSERT_EQ(drive_->client().phase(), ClientPhase::kReady);
  }

  // Issues three reads and a write, and sends them.
  void IssueCommands() {
    for (int i = 0; i < 3; ++i) {
      auto c = drive_->client().Read(i * 4096, absl::MakeSpan(bufs_[i]));
      ASSERT_TRUE(c.ok()) << c.status();
      cookies_.push_back(*c);
    }
    auto w = drive_->client().Write(65536, bufs_[3]);
    ASSERT_TRUE(w.ok()) << w.status();
    cookies_.push_back(*w);
    drive_->Kick();
    ASSERT_EQ(drive_->client().pending_output_bytes(), 0u);
  }

  // Every issued command completed exactly once, with ENOTCONN.
  void ExpectAllFailedOnceWithEnotconn() {
    for (Cookie c : cookies_) {
      ASSERT_EQ(completions_[c].size(), 1u) << "cookie " << c;
      EXPECT_EQ(StatusErrno(completions_[c][0]), ENOTCONN)
          << completions_[c][0];
    }
    EXPECT_EQ(drive_->client().in_flight(), 0u);
  }

  template <typename T>
  int Count() const {
    int n = 0;
    for (const ClientEvent& e : events_) n += std::holds_alternative<T>(e);
    return n;
  }

  int peer_ = -1;
  SyscallCounters counters_;
  std::unique_ptr<ClientDrive> drive_;
  PollLoop loop_;
  std::vector<ClientEvent> events_;
  std::map<Cookie, std::vector<absl::Status>> completions_;
  std::vector<Cookie> cookies_;
  std::vector<std::vector<uint8_t>> bufs_ =
      std::vector<std::vector<uint8_t>>(4, std::vector<uint8_t>(4096));
};

// A server that takes DISC and never closes: given up at the deadline,
// dead with ETIMEDOUT; the command it never answered fails with ENOTCONN.
TEST_F(ClientDriveLifecycleTest, ServerThatNeverClosesIsGivenUpAtTheDeadline) {
  DriveOptions options;
  options.disconnect_timeout = absl::Milliseconds(200);
  Start(options);
  SilentServer server(peer_);
  peer_ = -1;  // the server owns it now
  Connect();
  IssueCommands();
  ASSERT_TRUE(drive_->Disconnect().ok());
  ASSERT_TRUE(drive_->deadline().has_value());
  const absl::Time deadline = *drive_->deadline();
  ASSERT_TRUE(loop_.RunUntil([&] { return drive_->done(); }));
  EXPECT_GE(absl::Now(), deadline);
  EXPECT_EQ(drive_->client().phase(), ClientPhase::kDead);
  absl::Status why = drive_->client().dead_reason();
  EXPECT_EQ(why.code(), absl::StatusCode::kDeadlineExceeded) << why;
  EXPECT_EQ(StatusErrno(why), ETIMEDOUT);
  EXPECT_NE(why.message().find("waiting for the server to close"),
            std::string::npos)
      << why;
  ExpectAllFailedOnceWithEnotconn();
  EXPECT_EQ(Count<ShutdownWrite>(), 1);
  EXPECT_EQ(counters_.shutdown, 1u);
  EXPECT_EQ(counters_.close, 1u);
  EXPECT_EQ(drive_->fd(), -1);
  ASSERT_FALSE(events_.empty());
  ASSERT_TRUE(std::holds_alternative<ClientDead>(events_.back()));
  EXPECT_EQ(std::get<ClientDead>(events_.back()).reason, why);
}

// SetDeadline() bounds the connection in any phase, not only the end.
TEST_F(ClientDriveLifecycleTest, DeadlineBoundsUnansweredCommands) {
  Start();
  SilentServer server(peer_);
  peer_ = -1;
  Connect();
  IssueCommands();
  drive_->SetDeadline(absl::Now() + absl::Milliseconds(100));
  ASSERT_TRUE(loop_.RunUntil([&] { return drive_->done(); }));
  absl::Status why = drive_->client().dead_reason();
  EXPECT_EQ(StatusErrno(why), ETIMEDOUT) << why;
  EXPECT_NE(why.message().find("deadline"), std::string::npos) << why;
  ExpectAllFailedOnceWithEnotconn();
  EXPECT_EQ(counters_.shutdown, 0u);  // no disconnect was started
}

// The peer resets the connection (closes with our commands unread): the
// recv reports ECONNRESET, the connection is dead.
TEST_F(ClientDriveLifecycleTest, PeerResetKillsAndFailsPendingOnce) {
  Start();
  SendOldstyleGreeting(peer_);
  Connect();
  IssueCommands();
  ::close(peer_);
  peer_ = -1;
  ASSERT_TRUE(loop_.RunUntil([&] { return drive_->done(); }));
  EXPECT_EQ(drive_->client().phase(), ClientPhase::kDead);
  EXPECT_EQ(StatusErrno(drive_->client().dead_reason()), ECONNRESET)
      << drive_->client().dead_reason();
  ExpectAllFailedOnceWithEnotconn();
  EXPECT_EQ(Count<ClientDead>(), 1);
  EXPECT_TRUE(std::holds_alternative<ClientDead>(events_.back()));
  EXPECT_EQ(counters_.close, 1u);
}

// EOF between replies with commands pending: the core ends the connection
// there (kClosed: EOF at a message boundary) and fails what was pending.
TEST_F(ClientDriveLifecycleTest, PeerEofFailsPendingOnce) {
  Start();
  SendOldstyleGreeting(peer_);
  Connect();
  IssueCommands();
  // Read what the client sent, so closing is a plain EOF, not a reset.
  size_t want = 3 * 28 + 28 + 4096;
  std::vector<uint8_t> sink(want);
  size_t got = 0;
  while (got < want) {
    ssize_t r = ::recv(peer_, sink.data() + got, want - got, 0);
    ASSERT_GT(r, 0);
    got += static_cast<size_t>(r);
  }
  ::close(peer_);
  peer_ = -1;
  ASSERT_TRUE(loop_.RunUntil([&] { return drive_->done(); }));
  EXPECT_EQ(drive_->client().phase(), ClientPhase::kClosed);
  ExpectAllFailedOnceWithEnotconn();
  EXPECT_EQ(Count<ClientClosed>(), 1);
  EXPECT_EQ(Count<ClientDead>(), 0);
  EXPECT_EQ(counters_.close, 1u);
}

// Once done, readiness calls do nothing (no system call), requests fail
// with FailedPrecondition/EINVAL naming the call, queries still work.
TEST_F(ClientDriveLifecycleTest, CallsAfterDone) {
  Start();
  SendOldstyleGreeting(peer_);
  Connect();
  IssueCommands();
  ASSERT_TRUE(drive_->Abandon(ErrnoStatus(ECANCELED, "test gives up")).ok());
  EXPECT_TRUE(drive_->ended());
  EXPECT_FALSE(drive_->done());  // the events are still to be popped
  EXPECT_EQ(drive_->fd(), -1);
  EXPECT_EQ(drive_->timeout_ms(absl::Now()), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return Count<ClientDead>() == 1; }));
  ExpectAllFailedOnceWithEnotconn();
  EXPECT_EQ(StatusErrno(drive_->client().dead_reason()), ECANCELED);

  const SyscallCounters before = counters_;
  drive_->OnReady(POLLIN | POLLOUT | POLLHUP);
  drive_->OnReadable();
  drive_->OnWritable();
  drive_->Kick();
  drive_->SetDeadline(absl::Now() - absl::Seconds(1));
  drive_->CheckDeadline(absl::Now());
  EXPECT_EQ(counters_.total(), before.total());
  EXPECT_EQ(drive_->direction(), Direction::kNone);
  EXPECT_EQ(drive_->poll_events(), 0);
  EXPECT_EQ(drive_->epoll_events(), 0u);
  EXPECT_EQ(drive_->timeout_ms(absl::Now()), -1);
  EXPECT_EQ(drive_->PollEvent(), std::nullopt);

  for (absl::Status s : {drive_->Disconnect(), drive_->Shutdown(),
                         drive_->Abandon(absl::CancelledError("again")),
                         drive_->Release().status()}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_EQ(StatusErrno(s), EINVAL) << s;
    EXPECT_NE(s.message().find("ClientDrive::"), std::string::npos) << s;
    EXPECT_NE(s.message().find("the drive is done: the connection is dead: "
                               "test gives up"),
              std::string::npos)
        << s;
  }
  // The core's own input calls after the end (docs/protocol-core.md):
  // Feed is refused, CommitRecv(0) is fine, more is an argument error.
  const uint8_t byte = 0;
  auto fed = drive_->client().Feed(absl::MakeConstSpan(&byte, 1));
  EXPECT_EQ(fed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StatusErrno(fed.status()), EINVAL);
  EXPECT_TRUE(drive_->client().CommitRecv(0).ok());
  absl::Status commit = drive_->client().CommitRecv(1);
  EXPECT_EQ(commit.code(), absl::StatusCode::kInvalidArgument) << commit;
  EXPECT_EQ(StatusErrno(commit), EINVAL);
}

TEST_F(ClientDriveLifecycleTest, AbandonNeedsAReason) {
  Start();
  absl::Status s = drive_->Abandon(absl::OkStatus());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(StatusErrno(s), EINVAL);
  EXPECT_FALSE(drive_->done());
}

// Release() hands the fd back open; the drive no longer touches it.
TEST_F(ClientDriveLifecycleTest, ReleaseHandsTheFdBack) {
  Start();
  SendOldstyleGreeting(peer_);
  Connect();
  const int fd = drive_->fd();
  absl::StatusOr<int> released = drive_->Release();
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_EQ(*released, fd);
  EXPECT_TRUE(drive_->done());
  EXPECT_EQ(drive_->fd(), -1);
  EXPECT_EQ(drive_->client().phase(), ClientPhase::kReady);
  EXPECT_GE(::fcntl(fd, F_GETFD), 0);               // still open
  EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);  // made non-blocking
  absl::Status again = drive_->Release().status();
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(again.message().find("its fd was released"), std::string::npos)
      << again;
  drive_.reset();  // does not close it
  EXPECT_GE(::fcntl(fd, F_GETFD), 0);
  EXPECT_EQ(counters_.close, 0u);
  ::close(fd);
}

// Events raised by a call on the core come after those already queued in
// the drive, and before later ones: one order, nothing lost.
TEST_F(ClientDriveLifecycleTest, EventsFromCoreCallsKeepTheirPlace) {
  Start();
  SendOldstyleGreeting(peer_);
  drive_->OnReadable();  // reads the greeting; Connected stays queued
  ASSERT_TRUE(drive_->has_events());
  ASSERT_EQ(drive_->client().phase(), ClientPhase::kReady);
  std::vector<Cookie> unsent;
  for (int i = 0; i < 3; ++i) {
    auto c = drive_->client().Read(i * 4096, absl::MakeSpan(bufs_[i]));
    ASSERT_TRUE(c.ok());
    unsent.push_back(*c);
  }
  // Completes the three unsent reads inside the core, then DISC is due.
  ASSERT_TRUE(drive_->client().Shutdown(kShutdownAbandonPending).ok());
  auto first = drive_->PollEvent();
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(std::holds_alternative<Connected>(*first));
  for (Cookie c : unsent) {
    auto e = drive_->PollEvent();
    ASSERT_TRUE(e.has_value());
    auto* done = std::get_if<CommandCompleted>(&*e);
    ASSERT_NE(done, nullptr);
    EXPECT_EQ(done->cookie, c);
    EXPECT_EQ(StatusErrno(done->status), ENOTCONN);
  }
  EXPECT_EQ(drive_->PollEvent(), std::nullopt);
  drive_->Kick();  // DISC goes out; ShutdownWrite acted on and queued
  EXPECT_EQ(counters_.shutdown, 1u);
  auto shut = drive_->PollEvent();
  ASSERT_TRUE(shut.has_value());
  EXPECT_TRUE(std::holds_alternative<ShutdownWrite>(*shut));
  // The peer reads DISC up to our EOF, then closes: EOF at a boundary.
  uint8_t disc[64];
  while (::recv(peer_, disc, sizeof disc, 0) > 0) {
  }
  ::close(peer_);
  peer_ = -1;
  ASSERT_TRUE(loop_.RunUntil([&] { return drive_->done(); }));
  EXPECT_EQ(drive_->client().phase(), ClientPhase::kClosed);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<ClientClosed>(events_[0]));
}

// Many events between two pops: the queue grows and keeps the order.
TEST_F(ClientDriveLifecycleTest, QueueGrowsInOrder) {
  Start();
  SendOldstyleGreeting(peer_);
  drive_->OnReadable();
  std::vector<std::vector<uint8_t>> bufs(100, std::vector<uint8_t>(512));
  std::vector<Cookie> cookies;
  for (auto& b : bufs) {
    auto c = drive_->client().Read(0, absl::MakeSpan(b));
    ASSERT_TRUE(c.ok());
    cookies.push_back(*c);
  }
  drive_->Kick();  // all sent: none can be abandoned
  ::close(peer_);  // a reset: all 100 fail in the drive's queue
  peer_ = -1;
  drive_->OnReadable();
  ASSERT_TRUE(drive_->ended());
  auto first = drive_->PollEvent();
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(std::holds_alternative<Connected>(*first));
  for (Cookie c : cookies) {
    auto e = drive_->PollEvent();
    ASSERT_TRUE(e.has_value());
    auto* done = std::get_if<CommandCompleted>(&*e);
    ASSERT_NE(done, nullptr);
    EXPECT_EQ(done->cookie, c);
  }
  auto last = drive_->PollEvent();
  ASSERT_TRUE(last.has_value());
  EXPECT_TRUE(std::holds_alternative<ClientDead>(*last));
  EXPECT_EQ(drive_->PollEvent(), std::nullopt);
  EXPECT_TRUE(drive_->done());
}

}  // namespace
}  // namespace nbd::test
