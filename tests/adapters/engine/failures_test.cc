// Engine failure paths through every adapter: server errors, refused
// commands, a connection lost with commands pending (ENOTCONN, exactly
// once), disconnects bounded against servers that never close, refused
// disconnects that change nothing, and failed Open()/Attach() calls that
// name the URI and close what they opened.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "adapters/engine/engine.h"
#include "adapters/pump/pump.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/status.h"
#include "tests/adapters/engine/engine_fixture.h"
#include "tests/adapters/interop/silent_server.h"
#include "tests/tools/hold_open_server.h"

namespace nbd::test {
namespace {

using engine::Adapter;
using engine::Engine;
using engine::Export;

using FailuresTest = EngineTest;

// A SilentServer on a socketpair, attached to `engine`.
struct Attached {
  std::unique_ptr<SilentServer> server;
  Export* exp = nullptr;
};

Attached AttachSilent(Engine& engine, size_t close_after) {
  Attached a;
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  a.server = std::make_unique<SilentServer>(sv[1], close_after);
  auto exp = engine.Attach(sv[0], {}, "fake");
  EXPECT_TRUE(exp.ok()) << exp.status();
  if (exp.ok()) a.exp = *exp;
  return a;
}

// 28 bytes: one simple request header.
constexpr size_t kRequestSize = 28;

TEST_P(FailuresTest, ServerErrorReachesOnlyThatCommand) {
  backend_->FailReads(4096, 4096, EIO);
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  auto exp = engine->Open(server_->uri(), 1);
  ASSERT_TRUE(exp.ok()) << exp.status();
  std::vector<uint8_t> good(4096), bad(4096);
  Outcome ok, failed;
  ASSERT_TRUE(
      (*exp)->Read(0, 4096, absl::MakeSpan(bad), failed.Callback()).ok());
  ASSERT_TRUE((*exp)->Read(0, 0, absl::MakeSpan(good), ok.Callback()).ok());
  ASSERT_TRUE(engine->Drain().ok());
  EXPECT_EQ(failed.calls, 1);
  EXPECT_EQ(StatusErrno(failed.status), EIO) << failed.status;
  EXPECT_EQ(ok.calls, 1);
  EXPECT_TRUE(ok.status.ok()) << ok.status;
  EXPECT_TRUE(engine->Shutdown().ok());  // the connection survived
}

TEST_P(FailuresTest, RefusedCommandNeverCompletesOrFailsOnce) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  auto exp = engine->Open(server_->uri(), 1);
  ASSERT_TRUE(exp.ok()) << exp.status();
  std::vector<uint8_t> buf(4096);
  Outcome past_end;
  absl::Status s =
      (*exp)->Read(0, kExportSize, absl::MakeSpan(buf), past_end.Callback());
  EXPECT_EQ(past_end.calls, 0);
  ASSERT_TRUE(engine->Drain().ok());
  if (GetParam() == Adapter::kBlocking) {
    // Accepted, then refused by the core when its turn came.
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(past_end.calls, 1);
    EXPECT_FALSE(past_end.status.ok());
  } else {
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(past_end.calls, 0);
  }
  EXPECT_EQ(engine->in_flight(), 0u);
  EXPECT_TRUE(engine->Shutdown().ok());
}

TEST_P(FailuresTest, ConnectionLostFailsPendingCommandsOnceWithEnotconn) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  Attached a = AttachSilent(*engine, kRequestSize);
  ASSERT_NE(a.exp, nullptr);
  std::vector<std::vector<uint8_t>> bufs(3, std::vector<uint8_t>(4096));
  std::vector<Outcome> reads(3);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        a.exp->Read(0, i * 4096, absl::MakeSpan(bufs[i]), reads[i].Callback())
            .ok());
  }
  absl::Status s = engine->Drain();
  EXPECT_TRUE(s.ok()) << s;
  for (const Outcome& r : reads) {
    EXPECT_EQ(r.calls, 1);
    EXPECT_EQ(StatusErrno(r.status), ENOTCONN) << r.status;
  }
  // A close at a reply boundary is clean (kClosed), a reset is not (kDead);
  // either way the pending commands were cut off.
  EXPECT_TRUE(adapters::IsTerminal(a.exp->info().phase()));
  EXPECT_TRUE(a.exp->finished(0));
  // Nothing more is accepted, and nothing more completes.
  Outcome late;
  EXPECT_FALSE(
      a.exp->Read(0, 0, absl::MakeSpan(bufs[0]), late.Callback()).ok());
  EXPECT_TRUE(engine->Drain().ok());
  EXPECT_EQ(late.calls, 0);
  absl::Time t0 = absl::Now();
  engine->Shutdown(0, kTimeout).IgnoreError();  // nothing left to end
  EXPECT_LT(absl::Now() - t0, absl::Seconds(1));
  for (const Outcome& r : reads) EXPECT_EQ(r.calls, 1);
}

TEST_P(FailuresTest, ShutdownIsBoundedWhenTheServerNeverCloses) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  Attached a = AttachSilent(*engine, 0);
  ASSERT_NE(a.exp, nullptr);
  absl::Time t0 = absl::Now();
  absl::Status s = engine->Shutdown(0, absl::Milliseconds(300));
  absl::Duration took = absl::Now() - t0;
  EXPECT_EQ(StatusErrno(s), ETIMEDOUT) << s;
  EXPECT_GE(took, absl::Milliseconds(250));
  EXPECT_LT(took, absl::Seconds(3));
  EXPECT_EQ(a.exp->info().phase(), ClientPhase::kDead);
  EXPECT_TRUE(a.exp->finished(0));
  // NBD_CMD_DISC went out and the write side was shut down.
  absl::Time give_up = absl::Now() + kTimeout;
  while (!a.server->saw_eof() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(a.server->bytes_read(), kRequestSize);
  EXPECT_TRUE(a.server->saw_eof());
}

TEST_P(FailuresTest, OneDeadlineForEveryConnection) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  std::vector<Attached> silent;
  for (int i = 0; i < 3; ++i) {
    silent.push_back(AttachSilent(*engine, 0));
    ASSERT_NE(silent.back().exp, nullptr);
  }
  absl::Time t0 = absl::Now();
  absl::Status s = engine->Shutdown(0, absl::Seconds(1));
  absl::Duration took = absl::Now() - t0;
  EXPECT_EQ(StatusErrno(s), ETIMEDOUT) << s;
  EXPECT_LT(took, absl::Milliseconds(2500));  // not one second each
  for (const Attached& a : silent) EXPECT_TRUE(a.exp->finished(0));
}

TEST_P(FailuresTest, UnansweredCommandTimesOutThenShutdownEndsIt) {
  constexpr absl::Duration kShort = absl::Milliseconds(300);
  std::unique_ptr<Engine> engine = NewEngine(kShort);
  ASSERT_NE(engine, nullptr);
  Attached a = AttachSilent(*engine, 0);
  ASSERT_NE(a.exp, nullptr);
  std::vector<uint8_t> buf(4096);
  Outcome read;
  ASSERT_TRUE(a.exp->Read(0, 0, absl::MakeSpan(buf), read.Callback()).ok());
  absl::Time t0 = absl::Now();
  absl::Status s = engine->Poll();
  if (GetParam() == Adapter::kBlocking) {
    // The blocking call times out and gives the connection up.
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_EQ(read.calls, 1);
    EXPECT_EQ(StatusErrno(read.status), ETIMEDOUT) << read.status;
  } else {
    EXPECT_EQ(StatusErrno(s), ETIMEDOUT) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "fake: read at offset 0")) << s;
    EXPECT_EQ(read.calls, 0);
    EXPECT_EQ(engine->in_flight(), 1u);
  }
  // The export stalled: Shutdown does not wait for it again.
  s = engine->Shutdown(0, kTimeout);
  EXPECT_FALSE(s.ok());
  EXPECT_LT(absl::Now() - t0, absl::Seconds(3));
  EXPECT_EQ(read.calls, 1);
  if (GetParam() != Adapter::kBlocking) {
    EXPECT_EQ(StatusErrno(read.status), ENOTCONN) << read.status;
  }
  EXPECT_EQ(engine->in_flight(), 0u);
  EXPECT_TRUE(a.exp->finished(0));
}

// A request the cores refuse changes nothing: no deadline is armed, nothing
// is polled or failed, the queue of other threads stays open, and the
// refusal comes back at once. (Before, epoll and io_uring armed the
// disconnect deadline anyway and gave the connection up when it passed;
// the blocking adapter failed queued commands first.) The bound below only
// keeps a broken engine from costing the default timeout.
constexpr absl::Duration kRefusedBound = absl::Seconds(2);

TEST_P(FailuresTest, RefusedDisconnectLeavesAnOptionModeExportUsable) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  ClientOptions options;
  options.option_mode = true;
  auto exp = engine->Open(server_->uri(), 1, options);
  ASSERT_TRUE(exp.ok()) << exp.status();
  const engine::Submitter sub = engine->submitter();
  // The core's Disconnect() is for transmission only.
  absl::Status s = engine->Disconnect(kRefusedBound);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(StatusErrno(s), EINVAL) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "Disconnect")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), server_->uri())) << s;
  // Nothing changed: still negotiating, the connection still works, and
  // other threads may still post.
  EXPECT_EQ((*exp)->info().phase(), ClientPhase::kNegotiating);
  EXPECT_FALSE((*exp)->finished(0));
  EXPECT_TRUE(sub.Post([] {}).ok());
  ASSERT_TRUE((*exp)->OptGo(kTimeout).ok());
  std::vector<uint8_t> buf(512);
  Outcome read;
  ASSERT_TRUE((*exp)->Read(0, 0, absl::MakeSpan(buf), read.Callback()).ok());
  ASSERT_TRUE(engine->Drain().ok());
  EXPECT_EQ(read.calls, 1);
  EXPECT_TRUE(read.status.ok()) << read.status;
  EXPECT_TRUE(engine->Disconnect(kTimeout).ok());
  EXPECT_TRUE((*exp)->finished(0));
}

TEST_P(FailuresTest, ShutdownWithUnknownFlagsChangesNothing) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  auto exp = engine->Open(server_->uri(), 1);
  ASSERT_TRUE(exp.ok()) << exp.status();
  const engine::Submitter sub = engine->submitter();
  const std::vector<uint8_t> data = Pattern(4096, 3);
  std::vector<uint8_t> back(4096);
  Outcome write, read;
  ASSERT_TRUE((*exp)->Write(0, 0, data, 0, write.Callback()).ok());
  ASSERT_TRUE((*exp)->Read(0, 0, absl::MakeSpan(back), read.Callback()).ok());
  absl::Status s = engine->Shutdown(0x1, kRefusedBound);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(StatusErrno(s), EINVAL) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "unknown flags")) << s;
  // The commands are still in flight and complete normally.
  EXPECT_EQ(write.calls + read.calls, 0);
  EXPECT_EQ(engine->in_flight(), 2u);
  EXPECT_FALSE(adapters::IsTerminal((*exp)->info().phase()));
  EXPECT_TRUE(sub.Post([] {}).ok());
  ASSERT_TRUE(engine->Drain().ok());
  EXPECT_EQ(write.calls, 1);
  EXPECT_TRUE(write.status.ok()) << write.status;
  EXPECT_EQ(read.calls, 1);
  EXPECT_TRUE(read.status.ok()) << read.status;
  EXPECT_EQ(back, data);
  EXPECT_TRUE(engine->Shutdown().ok());
  EXPECT_TRUE((*exp)->finished(0));
}

// Two exports, one in option mode: Disconnect() ends the other and leaves
// this one as it was (the call reports the refusal).
TEST_P(FailuresTest, DisconnectEndsTheExportsThatAcceptIt) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  auto ready = engine->Open(server_->uri(), 1);
  ASSERT_TRUE(ready.ok()) << ready.status();
  ClientOptions options;
  options.option_mode = true;
  auto parked = engine->Open(server_->uri(), 1, options);
  ASSERT_TRUE(parked.ok()) << parked.status();
  absl::Status s = engine->Disconnect(kRefusedBound);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(StatusErrno(s), EINVAL) << s;
  EXPECT_TRUE((*ready)->finished(0));
  EXPECT_EQ((*ready)->info().phase(), ClientPhase::kClosed);
  EXPECT_EQ((*parked)->info().phase(), ClientPhase::kNegotiating);
  EXPECT_FALSE((*parked)->finished(0));
  auto list = (*parked)->OptList(kTimeout);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_TRUE((*parked)->OptAbort(kTimeout).ok());
}

// ---- Open() and Attach() failures
// --------------------------------------------

// Whether `fd` is no longer an open descriptor of this process (nothing
// else in these tests opens descriptors meanwhile, so the number is not
// reused).
bool IsClosed(int fd) { return ::fcntl(fd, F_GETFD) < 0 && errno == EBADF; }

TEST_P(FailuresTest, OpenErrorsNameTheUri) {
  std::unique_ptr<Engine> engine = NewEngine(absl::Milliseconds(200));
  ASSERT_NE(engine, nullptr);
  // A listener that never accepts: the connect succeeds (backlog), the
  // greeting never comes.
  const std::string path = dir_ + "/mute";
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr),
            0);
  ASSERT_EQ(::listen(listener, 4), 0);
  const std::string uri = "nbd+unix:///?socket=" + path;
  auto exp = engine->Open(uri, 1);
  ::close(listener);
  ::unlink(path.c_str());
  ASSERT_FALSE(exp.ok());
  EXPECT_EQ(StatusErrno(exp.status()), ETIMEDOUT) << exp.status();
  EXPECT_TRUE(absl::StartsWith(exp.status().message(), uri + ": handshake: "))
      << exp.status();
  // A URI that does not parse is named too.
  const std::string bad = "nbd+unix:///?socket=/x#fragment";
  exp = engine->Open(bad, 1);
  ASSERT_FALSE(exp.ok());
  EXPECT_EQ(StatusErrno(exp.status()), EINVAL) << exp.status();
  EXPECT_TRUE(absl::StrContains(exp.status().message(), bad)) << exp.status();
}

// Open() with two connections whose second handshake times out: the first
// connection, ready by then, is closed before Open() returns (it used to
// stay open until the engine's next round, or, blocking, its
// destruction).
TEST_P(FailuresTest, FailedOpenClosesTheConnectionsItMade) {
  std::unique_ptr<Engine> engine = NewEngine(absl::Milliseconds(300));
  ASSERT_NE(engine, nullptr);
  HoldOpenServer::Options one;
  one.multi_conn = true;  // so Open() makes the second connection
  one.connections = 1;    // which then waits in the backlog, ungreeted
  auto server = HoldOpenServer::Start(dir_ + "/one", 1 << 20, one);
  ASSERT_TRUE(server.ok()) << server.status();
  auto exp = engine->Open((*server)->Uri(), 2);
  ASSERT_FALSE(exp.ok());
  EXPECT_EQ(StatusErrno(exp.status()), ETIMEDOUT) << exp.status();
  EXPECT_EQ((*server)->accepted(), 1);
  EXPECT_TRUE((*server)->client_closed());
}

// The descriptor given to a failed Attach() is closed before it returns,
// also when the handshake timed out (epoll and io_uring used to close it
// only at the engine's next round).
TEST_P(FailuresTest, FailedAttachClosesTheDescriptorBeforeReturning) {
  std::unique_ptr<Engine> engine = NewEngine(absl::Milliseconds(200));
  ASSERT_NE(engine, nullptr);
  for (bool server_closes : {false, true}) {
    SCOPED_TRACE(server_closes ? "server closes" : "server never greets");
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    if (server_closes) ::close(sv[1]);
    auto exp = engine->Attach(sv[0], {}, "mute-peer");
    ASSERT_FALSE(exp.ok());
    EXPECT_TRUE(absl::StartsWith(exp.status().message(), "mute-peer: "))
        << exp.status();
    if (!server_closes) {
      EXPECT_EQ(StatusErrno(exp.status()), ETIMEDOUT) << exp.status();
    }
    EXPECT_TRUE(IsClosed(sv[0]));
    if (!server_closes) ::close(sv[1]);
  }
  // The engine still works.
  auto exp = engine->Open(server_->uri(), 1);
  ASSERT_TRUE(exp.ok()) << exp.status();
  EXPECT_TRUE(engine->Shutdown().ok());
}

NBD_ENGINE_FOR_ALL_ADAPTERS(FailuresTest);

}  // namespace
}  // namespace nbd::test
