// Disconnects, server death and servers that never close, through every
// adapter. Assertions are about behaviour; every wait is bounded.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/time/clock.h"
#include "tests/adapters/interop/interop_fixture.h"
#include "tests/adapters/interop/silent_server.h"

namespace nbd::test {
namespace {

using LifecycleTest = InteropTest;

TEST_P(LifecycleTest, DisconnectWithCommandsInFlight) {
  SkipUnless("nbdkit");
  // One server thread, so requests are served in order before the DISC:
  // a multi-threaded nbdkit answers requests it is still working on when
  // DISC arrives with ESHUTDOWN, and the delay filter aborts its sleeps when
  // the client's write side closes.
  auto server = ServerProcess::StartNbdkit({"-t", "1", "memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  std::vector<uint8_t> data = Pattern(65536, 7);
  std::vector<std::vector<uint8_t>> back(3, std::vector<uint8_t>(65536));
  std::vector<Op> writes = {WriteOp(0, data), WriteOp(131072, data)};
  ASSERT_TRUE(h->Run(writes, kTimeout).ok());
  EXPECT_ALL_OK(writes);
  std::vector<Op> ops = {ReadOp(0, back[0]), ReadOp(65536, back[1]),
                         WriteOp(262144, data), ReadOp(131072, back[2]),
                         SimpleOp(Op::kFlush)};
  absl::Status s = h->RunThenDisconnect(ops, kTimeout);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_ALL_OK(ops);
  EXPECT_EQ(back[0], data);
  EXPECT_EQ(back[1], std::vector<uint8_t>(65536, 0));
  EXPECT_EQ(back[2], data);
  EXPECT_EQ(h->client().phase(), ClientPhase::kClosed);
  EXPECT_EQ(h->client().in_flight(), 0u);
  EXPECT_TRUE(h->finished());
}

TEST_P(LifecycleTest, ServerDeathFailsPendingCommandsOnce) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit(
      {"--filter=delay", "memory", "1M", "delay-read=10", "delay-write=10"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  std::vector<uint8_t> data = Pattern(4096, 2);
  std::vector<std::vector<uint8_t>> back(3, std::vector<uint8_t>(4096));
  std::vector<Op> ops = {ReadOp(0, back[0]), WriteOp(4096, data),
                         ReadOp(8192, back[1]), ReadOp(12288, back[2])};
  ServerProcess* srv = server->get();
  absl::Status s = h->RunWithInterruption(
      ops, [srv] { srv->Kill(); }, absl::Milliseconds(200), kTimeout);
  EXPECT_TRUE(s.ok()) << s;
  int issued = 0;
  for (const Op& op : ops) {
    if (!op.issued) continue;  // blocking: refused once the connection died
    ++issued;
    EXPECT_EQ(op.completions, 1);
    EXPECT_EQ(StatusErrno(op.status), ENOTCONN) << op.status;
  }
  EXPECT_GE(issued, 1);
  ClientPhase p = h->client().phase();
  EXPECT_TRUE(p == ClientPhase::kClosed || p == ClientPhase::kDead)
      << ClientPhaseName(p);
  EXPECT_TRUE(h->finished());
}

// The core keeps a 1-byte receive open while parked in option mode, so the
// loop adapters see the server's EOF without any call from the user; before
// that, epoll kept reporting EPOLLHUP for an fd with no interest and spun.
TEST_P(LifecycleTest, ServerDeathWhileParkedInOptionMode) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.option_mode = true;
  auto h = ConnectTo((*server)->socket_path(), options);
  ASSERT_NE(h, nullptr);
  ASSERT_EQ(h->client().phase(), ClientPhase::kNegotiating);
  (*server)->Kill();
  if (GetParam() == AdapterKind::kBlocking) {
    // Reads only inside calls: the next option is where it finds out.
    EXPECT_FALSE(h->DriveUntilFinished(kTimeout).ok());
    auto list = h->OptList(kTimeout);
    EXPECT_FALSE(list.ok());
    EXPECT_NE(list.status().code(), absl::StatusCode::kDeadlineExceeded)
        << list.status();
  } else {
    adapters::SyscallCounters before = counters_;
    absl::Status s = h->DriveUntilFinished(kTimeout);
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_EQ(StatusErrno(h->client().dead_reason()), ECONNRESET)
        << h->client().dead_reason();
    // A handful of waits, not a busy loop.
    EXPECT_LT(counters_.epoll_wait + counters_.io_uring_enter -
                  before.epoll_wait - before.io_uring_enter,
              100u);
  }
  EXPECT_EQ(h->client().phase(), ClientPhase::kDead);
  EXPECT_TRUE(h->finished());
}

TEST_P(LifecycleTest, ShutdownGivesUpOnServerThatNeverCloses) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  SilentServer server(sv[1]);
  auto fd = adapters::AdoptFd(sv[0]);
  ASSERT_TRUE(fd.ok()) << fd.status();
  std::unique_ptr<Harness> h = NewHarness();
  ASSERT_TRUE(h->Connect(*fd, {}, kTimeout).ok());
  absl::Status s = h->Shutdown(0, absl::Milliseconds(300));
  EXPECT_EQ(StatusErrno(s), ETIMEDOUT) << s;
  EXPECT_EQ(h->client().phase(), ClientPhase::kDead);
  EXPECT_TRUE(h->finished());
  // The DISC request went out and the write side was shut down.
  absl::Time give_up = absl::Now() + kTimeout;
  while (!server.saw_eof() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(server.bytes_read(), 28u);
  EXPECT_TRUE(server.saw_eof());
}

// A command the server never answers: the blocking call times out and
// gives the connection up; the loop adapters' wait times out with the
// commands still pending, and the bounded Shutdown ends them.
TEST_P(LifecycleTest, CommandToSilentServerTimesOut) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  SilentServer server(sv[1]);
  auto fd = adapters::AdoptFd(sv[0]);
  ASSERT_TRUE(fd.ok()) << fd.status();
  std::unique_ptr<Harness> h = NewHarness();
  ASSERT_TRUE(h->Connect(*fd, {}, kTimeout).ok());
  std::vector<uint8_t> buf(4096), data = Pattern(4096, 4);
  std::vector<Op> ops = {ReadOp(0, buf), WriteOp(4096, data)};
  constexpr absl::Duration kShort = absl::Milliseconds(300);
  absl::Status s = h->Run(ops, kShort);
  if (GetParam() == AdapterKind::kBlocking) {
    EXPECT_TRUE(s.ok()) << s;  // per-op results below
    ASSERT_TRUE(ops[0].issued);
    EXPECT_EQ(ops[0].completions, 1);
    EXPECT_EQ(ops[0].status.code(), absl::StatusCode::kDeadlineExceeded)
        << ops[0].status;
    EXPECT_EQ(StatusErrno(ops[0].status), ETIMEDOUT) << ops[0].status;
    // The timeout gave the connection up: the next command is refused.
    EXPECT_FALSE(ops[1].issued);
    EXPECT_FALSE(ops[1].status.ok());
  } else {
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_EQ(StatusErrno(s), ETIMEDOUT) << s;
    for (const Op& op : ops) {
      EXPECT_TRUE(op.issued);
      EXPECT_EQ(op.completions, 0);
    }
    s = h->Shutdown(0, kShort);
    EXPECT_EQ(StatusErrno(s), ETIMEDOUT) << s;
    for (const Op& op : ops) {
      EXPECT_EQ(op.completions, 1);
      EXPECT_EQ(StatusErrno(op.status), ENOTCONN) << op.status;
    }
  }
  EXPECT_EQ(h->client().phase(), ClientPhase::kDead);
  EXPECT_TRUE(h->finished());
}

TEST_P(LifecycleTest, ShutdownAbandonPendingFailsUnsentCommands) {
  SkipUnless("nbdkit");
  auto server = ServerProcess::StartNbdkit({"memory", "1M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto h = ConnectTo((*server)->socket_path());
  ASSERT_NE(h, nullptr);
  // Nothing pending: the flag changes nothing and the close is clean.
  EXPECT_TRUE(h->Shutdown(kShutdownAbandonPending, kTimeout).ok());
  EXPECT_EQ(h->client().phase(), ClientPhase::kClosed);
}

NBD_INSTANTIATE_FOR_ALL_ADAPTERS(LifecycleTest);

}  // namespace
}  // namespace nbd::test
