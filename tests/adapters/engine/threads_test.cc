// Commands and tasks from other threads through the engine's thread-safe
// handles (Submitter, ThreadSafeExport), through every adapter, against
// nbdkit memory and a fake server that never answers: data, exactly-once
// completion on the loop thread, wake-ups of a waiting loop, the blocking
// adapter's "after the round", Shutdown() and destruction racing
// submissions. Run under ThreadSanitizer by `--config=tsan` (tag "tsan").
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "adapters/engine/engine.h"
#include "gtest/gtest.h"
#include "protocol/status.h"
#include "tests/adapters/interop/silent_server.h"
#include "tests/testing/servers.h"
#include "tests/testing/signal.h"

namespace nbd::test {
namespace {

using engine::Adapter;
using engine::Engine;
using engine::Export;
using engine::Submitter;
using engine::Tag;
using engine::ThreadSafeExport;

// Generous: it only matters when something is broken.
constexpr absl::Duration kTimeout = absl::Seconds(30);

std::vector<uint8_t> Pattern(size_t size, uint32_t seed) {
  std::vector<uint8_t> v(size);
  for (size_t i = 0; i < size; ++i) {
    v[i] = static_cast<uint8_t>((i * 131 + seed * 7 + (i >> 9)) ^ seed);
  }
  return v;
}

// Spins (yielding) until `done()`, at most kTimeout; whether it became
// true.
template <typename F>
bool WaitUntil(F done) {
  const absl::Time give_up = absl::Now() + kTimeout;
  while (!done()) {
    if (absl::Now() > give_up) return false;
    std::this_thread::yield();
  }
  return true;
}

bool IsShutdownRefusal(const absl::Status& s) {
  return s.code() == absl::StatusCode::kFailedPrecondition &&
         StatusErrno(s) == ESHUTDOWN;
}

std::string ParamName(const ::testing::TestParamInfo<Adapter>& info) {
  return engine::AdapterName(info.param);
}

class ThreadsTest : public ::testing::TestWithParam<Adapter> {
 protected:
  void SetUp() override {
    if (!HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
    auto server = ServerProcess::StartNbdkit({"memory", "8M"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }

  std::unique_ptr<Engine> NewEngine(engine::EngineOptions options = {}) {
    options.adapter = GetParam();
    options.timeout = kTimeout;
    auto engine = Engine::Create(std::move(options));
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return nullptr;
    return std::move(*engine);
  }

  const std::thread::id loop_thread_ = std::this_thread::get_id();
  std::unique_ptr<ServerProcess> server_;
};

// One region's write and read-back. Fields are written by one thread each
// (noted), so nothing here needs a lock.
struct Region {
  uint64_t offset = 0;
  std::vector<uint8_t> data;  // main thread, before the workers start
  std::vector<uint8_t> back;  // the engine, between submit and callback
  // Loop thread:
  int write_calls = 0;
  int read_calls = 0;
  absl::Status write_status;
  absl::Status read_status;
  // The submitting thread:
  absl::Status submitted;
};

constexpr uint64_t kReadBit = uint64_t{1} << 63;

TEST_P(ThreadsTest, WorkersWriteTheirOwnRegionsAndTheLoopReadsThemBack) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 16;
  constexpr size_t kBlock = 16384;
  constexpr int kTotal = kThreads * kPerThread;
  std::vector<Region> regions(kTotal);
  for (int k = 0; k < kTotal; ++k) {
    regions[k].offset = uint64_t(k) * kBlock;
    regions[k].data = Pattern(kBlock, k);
    regions[k].back.assign(kBlock, 0xee);
  }
  int reads_done = 0;
  bool off_loop = false;
  Export* exp = nullptr;

  // The read-back, issued from a write's completion on the loop thread
  // with the loop thread's own call; it completes through on_complete.
  auto read_back = [&](size_t conn, uint64_t k) {
    Region& r = regions[k];
    absl::Status s =
        exp->Read(conn, r.offset, absl::MakeSpan(r.back), Tag{k | kReadBit});
    if (!s.ok()) {
      r.read_status = s;
      ++reads_done;
    }
  };
  engine::EngineOptions options;
  options.on_complete = [&](const Export&, size_t conn, uint64_t tag,
                            const absl::Status& s) {
    off_loop |= std::this_thread::get_id() != loop_thread_;
    Region& r = regions[tag & ~kReadBit];
    if (tag & kReadBit) {
      ++r.read_calls;
      r.read_status = s;
      ++reads_done;
      return;
    }
    ++r.write_calls;
    r.write_status = s;
    read_back(conn, tag);
  };
  std::unique_ptr<Engine> engine = NewEngine(std::move(options));
  ASSERT_NE(engine, nullptr);
  auto opened = engine->Open(server_->Uri(), 2);
  ASSERT_TRUE(opened.ok()) << opened.status();
  exp = *opened;

  const ThreadSafeExport ts = exp->thread_safe();
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t, ts] {
      for (int i = 0; i < kPerThread; ++i) {
        const uint64_t k = uint64_t(t) * kPerThread + i;
        Region& r = regions[k];
        const size_t conn = k % ts.connections();
        if (t % 2 == 0) {
          // A Done closure...
          r.submitted = ts.Write(
              conn, r.offset, r.data, 0, [&, k, conn](const absl::Status& s) {
                off_loop |= std::this_thread::get_id() != loop_thread_;
                ++regions[k].write_calls;
                regions[k].write_status = s;
                read_back(conn, k);
              });
        } else {
          // ...or a Tag for on_complete.
          r.submitted = ts.Write(conn, r.offset, r.data, 0, Tag{k});
        }
      }
    });
  }
  absl::Status run =
      engine->RunUntil([&] { return reads_done == kTotal; }, kTimeout);
  for (std::thread& w : workers) w.join();
  ASSERT_TRUE(run.ok()) << run;
  EXPECT_FALSE(off_loop) << "a completion ran off the loop thread";
  for (int k = 0; k < kTotal; ++k) {
    const Region& r = regions[k];
    EXPECT_TRUE(r.submitted.ok()) << k << ": " << r.submitted;
    EXPECT_EQ(r.write_calls, 1) << k;
    EXPECT_EQ(r.read_calls, 1) << k;
    EXPECT_TRUE(r.write_status.ok()) << k << ": " << r.write_status;
    EXPECT_TRUE(r.read_status.ok()) << k << ": " << r.read_status;
    EXPECT_TRUE(r.back == r.data) << "region " << k << " read back wrong";
  }
  EXPECT_EQ(engine->in_flight(), 0u);
  EXPECT_TRUE(engine->Shutdown().ok());
}

// A small read whose completion is counted; written as `Region` is.
struct SmallRead {
  std::array<uint8_t, 512> buffer = {};
  int calls = 0;           // loop thread
  absl::Status status;     // loop thread
  bool attempted = false;  // submitting thread
  absl::Status submitted;  // submitting thread
};

TEST_P(ThreadsTest, SubmissionsRacingShutdownCompleteOnceOrAreRefused) {
  constexpr int kThreads = 4;
  constexpr int kMax = 2000;
  std::vector<std::vector<SmallRead>> reads(kThreads,
                                            std::vector<SmallRead>(kMax + 1));
  int completed = 0;
  bool off_loop = false;
  std::atomic<bool> shut_down{false};
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  auto exp = engine->Open(server_->Uri(), 2);
  ASSERT_TRUE(exp.ok()) << exp.status();
  const ThreadSafeExport ts = (*exp)->thread_safe();

  auto submit = [&](const ThreadSafeExport& h, int t, int i) {
    SmallRead& r = reads[t][i];
    r.attempted = true;
    const uint64_t offset = (uint64_t(t) * (kMax + 1) + i) * r.buffer.size();
    r.submitted = h.Read(i % h.connections(), offset, absl::MakeSpan(r.buffer),
                         [&, t, i](const absl::Status& s) {
                           off_loop |=
                               std::this_thread::get_id() != loop_thread_;
                           ++reads[t][i].calls;
                           reads[t][i].status = s;
                           ++completed;
                         });
    return r.submitted.ok();
  };
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t, ts] {
      for (int i = 0; i < kMax; ++i) {
        if (!submit(ts, t, i)) break;
      }
      // Once Shutdown() returned, every call is refused.
      WaitUntil([&] { return shut_down.load(); });
      submit(ts, t, kMax);
    });
  }
  absl::Status run =
      engine->RunUntil([&] { return completed >= 100; }, kTimeout);
  absl::Status shutdown = engine->Shutdown();
  const int completed_by_shutdown = completed;
  shut_down = true;
  for (std::thread& w : workers) w.join();
  EXPECT_TRUE(run.ok()) << run;
  EXPECT_TRUE(shutdown.ok()) << shutdown;
  EXPECT_FALSE(off_loop) << "a completion ran off the loop thread";
  int accepted = 0;
  int refused = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i <= kMax; ++i) {
      const SmallRead& r = reads[t][i];
      if (!r.attempted) {
        EXPECT_EQ(r.calls, 0);
      } else if (r.submitted.ok()) {
        ++accepted;
        EXPECT_EQ(r.calls, 1) << t << "/" << i;
      } else {
        ++refused;
        EXPECT_TRUE(IsShutdownRefusal(r.submitted)) << r.submitted;
        EXPECT_EQ(r.calls, 0) << t << "/" << i;
      }
    }
    EXPECT_TRUE(IsShutdownRefusal(reads[t][kMax].submitted))
        << reads[t][kMax].submitted;
  }
  // Everything accepted completed inside Shutdown(), nothing after it.
  EXPECT_EQ(completed_by_shutdown, accepted);
  EXPECT_EQ(completed, accepted);
  EXPECT_GE(refused, kThreads);
  EXPECT_EQ(engine->in_flight(), 0u);
}

TEST_P(ThreadsTest, DestroyingTheEngineCancelsWhatIsStillQueued) {
  constexpr int kThreads = 4;
  constexpr int kMax = 500;
  std::vector<std::vector<SmallRead>> reads(kThreads,
                                            std::vector<SmallRead>(kMax + 1));
  int callbacks = 0;
  bool off_destroying_thread = false;
  std::atomic<int> accepted{0};
  std::atomic<int> tasks_run{0};
  std::atomic<bool> destroyed{false};
  const auto sentinel = std::make_shared<int>(0);
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  auto exp = engine->Open(server_->Uri(), 1);
  ASSERT_TRUE(exp.ok()) << exp.status();
  const ThreadSafeExport ts = (*exp)->thread_safe();

  // Reads alternate with tasks that must never run: the loop thread never
  // polls, so whatever got in is still queued at the destruction.
  auto submit = [&](const ThreadSafeExport& h, int t, int i) {
    SmallRead& r = reads[t][i];
    r.attempted = true;
    r.submitted = h.Read(
        0, uint64_t(i) * r.buffer.size(), absl::MakeSpan(r.buffer),
        [&, t, i](const absl::Status& s) {
          off_destroying_thread |= std::this_thread::get_id() != loop_thread_;
          ++reads[t][i].calls;
          reads[t][i].status = s;
          ++callbacks;
        });
    if (!r.submitted.ok()) return false;
    ++accepted;
    absl::Status posted = h.Post([&tasks_run, sentinel] { ++tasks_run; });
    return posted.ok();
  };
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t, ts] {
      for (int i = 0; i < kMax; ++i) {
        if (!submit(ts, t, i)) break;
      }
      // The handle outlives the Engine: refused, not a use after free.
      WaitUntil([&] { return destroyed.load(); });
      submit(ts, t, kMax);
    });
  }
  // Destroy while the workers are (most likely) still submitting.
  EXPECT_TRUE(WaitUntil([&] { return accepted.load() >= 4 * kThreads; }));
  engine.reset();
  destroyed = true;
  for (std::thread& w : workers) w.join();

  EXPECT_FALSE(off_destroying_thread);
  EXPECT_EQ(callbacks, accepted.load());
  EXPECT_EQ(tasks_run.load(), 0);
  EXPECT_EQ(sentinel.use_count(), 1) << "queued tasks were not destroyed";
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i <= kMax; ++i) {
      const SmallRead& r = reads[t][i];
      if (r.attempted && r.submitted.ok()) {
        EXPECT_EQ(r.calls, 1);
        EXPECT_EQ(r.status.code(), absl::StatusCode::kCancelled) << r.status;
        EXPECT_EQ(StatusErrno(r.status), ECANCELED);
      } else {
        EXPECT_EQ(r.calls, 0);
        if (r.attempted) {
          EXPECT_TRUE(IsShutdownRefusal(r.submitted)) << r.submitted;
        }
      }
    }
    EXPECT_TRUE(IsShutdownRefusal(reads[t][kMax].submitted))
        << reads[t][kMax].submitted;
  }
}

INSTANTIATE_TEST_SUITE_P(Adapters, ThreadsTest,
                         ::testing::Values(Adapter::kBlocking, Adapter::kEpoll,
                                           Adapter::kIoUring),
                         ParamName);

// The same engine over a fake server that never answers (SilentServer): a
// command stays in flight for as long as the test needs.
class ThreadsSilentTest : public ::testing::TestWithParam<Adapter> {
 protected:
  // `timeout` is EngineOptions::timeout: it ends the blocking adapter's
  // wait for the reply that never comes.
  void Attach(absl::Duration timeout) {
    auto engine = Engine::Create({.adapter = GetParam(), .timeout = timeout});
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    server_ = std::make_unique<SilentServer>(sv[1]);
    auto exp = engine_->Attach(sv[0], {}, "silent");
    ASSERT_TRUE(exp.ok()) << exp.status();
    exp_ = *exp;
  }
  void TearDown() override {
    if (engine_ != nullptr) {
      engine_->Shutdown(0, absl::Milliseconds(100)).IgnoreError();
    }
    engine_.reset();
    server_.reset();
  }

  // 28 bytes: one simple request header.
  static constexpr size_t kRequestSize = 28;
  const std::thread::id loop_thread_ = std::this_thread::get_id();
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<SilentServer> server_;
  Export* exp_ = nullptr;
};

TEST_P(ThreadsSilentTest, AnIdleRunUntilWakesForEachPost) {
  ASSERT_NO_FATAL_FAILURE(Attach(kTimeout));
  const Submitter sub = engine_->submitter();
  bool done = false;
  std::thread::id ran_on;
  Signal first, second;
  bool first_in_time = false;
  bool second_in_time = false;
  std::thread poster([&] {
    // The first task proves the loop thread is inside RunUntil(); the
    // second is posted while it waits again with nothing in flight.
    first_in_time =
        sub.Post([&] { first.Notify(); }).ok() && first.WaitFor(kTimeout / 3);
    second_in_time = sub.Post([&] {
                          ran_on = std::this_thread::get_id();
                          done = true;
                          second.Notify();
                        })
                         .ok() &&
                     second.WaitFor(kTimeout / 3);
  });
  absl::Status run = engine_->RunUntil([&] { return done; }, kTimeout);
  poster.join();
  EXPECT_TRUE(run.ok()) << run;
  EXPECT_TRUE(first_in_time) << "the loop did not wake for the first post";
  EXPECT_TRUE(second_in_time) << "the loop did not wake for the second post";
  EXPECT_EQ(ran_on, loop_thread_);
}

TEST_P(ThreadsSilentTest, APostWhileACommandWaitsRunsOnTheLoopThread) {
  const bool blocking = GetParam() == Adapter::kBlocking;
  // Blocking: the reply's wait ends after a second; the others wait on.
  ASSERT_NO_FATAL_FAILURE(Attach(blocking ? absl::Seconds(1) : kTimeout));
  const Submitter sub = engine_->submitter();
  std::vector<uint8_t> buffer(4096);
  int read_calls = 0;
  absl::Status read_status;
  ASSERT_TRUE(exp_->Read(0, 0, absl::MakeSpan(buffer),
                         [&](const absl::Status& s) {
                           ++read_calls;
                           read_status = s;
                         })
                  .ok());
  bool ran = false;
  size_t in_flight_seen = ~size_t{0};
  std::thread::id ran_on;
  Signal task_ran;
  bool request_seen = false;
  bool ran_in_time = false;
  std::thread poster([&] {
    // Once the server has the request, the loop thread waits for the reply
    // (in epoll_wait, the ring, or the blocking recv).
    request_seen =
        WaitUntil([&] { return server_->bytes_read() >= kRequestSize; });
    absl::Status posted = sub.Post([&] {
      ran = true;
      ran_on = std::this_thread::get_id();
      in_flight_seen = exp_->in_flight(0);
      task_ran.Notify();
    });
    ran_in_time = posted.ok() && task_ran.WaitFor(kTimeout / 3);
  });
  absl::Status run;
  if (blocking) {
    // The blocking adapter cannot be woken inside its recv: the task runs
    // once this round ended (the read timed out), inside this Poll().
    run = engine_->Poll();
  } else {
    run = engine_->RunUntil([&] { return ran; }, kTimeout);
  }
  poster.join();
  EXPECT_TRUE(run.ok()) << run;
  EXPECT_TRUE(request_seen);
  EXPECT_TRUE(ran);
  EXPECT_TRUE(ran_in_time) << "the post did not wake the loop";
  EXPECT_EQ(ran_on, loop_thread_);
  if (blocking) {
    EXPECT_EQ(in_flight_seen, 0u) << "the task ran inside the blocking call";
    EXPECT_EQ(read_calls, 1);
    EXPECT_EQ(StatusErrno(read_status), ETIMEDOUT) << read_status;
  } else {
    // The wait was cut short: the read is still waiting for its reply.
    EXPECT_EQ(in_flight_seen, 1u);
    EXPECT_EQ(read_calls, 0);
  }
  // The callback refers to this scope: end the read here (bounded; the
  // server never closes).
  engine_->Shutdown(0, absl::Milliseconds(100)).IgnoreError();
  EXPECT_EQ(read_calls, 1);
}

TEST_P(ThreadsSilentTest, HandlesWithoutAnEngineAndEmptyTasksAreRefused) {
  EXPECT_TRUE(IsShutdownRefusal(Submitter().Post([] {})));
  std::vector<uint8_t> buffer(512);
  EXPECT_TRUE(IsShutdownRefusal(
      ThreadSafeExport().Read(0, 0, absl::MakeSpan(buffer), nullptr)));
  ASSERT_NO_FATAL_FAILURE(Attach(kTimeout));
  const ThreadSafeExport ts = exp_->thread_safe();
  EXPECT_EQ(ts.connections(), 1u);
  EXPECT_EQ(ts.Post(nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ts.Flush(1, [](const absl::Status&) {}).code(),
            absl::StatusCode::kInvalidArgument);
  // A command the core refuses on the loop thread completes with that
  // refusal through its callback, since the submit call returned OK.
  int calls = 0;
  absl::Status status;
  ASSERT_TRUE(ts.Read(0, uint64_t{1} << 40, absl::MakeSpan(buffer),
                      [&](const absl::Status& s) {
                        ++calls;
                        status = s;
                      })
                  .ok());
  EXPECT_TRUE(engine_->RunUntil([&] { return calls > 0; }, kTimeout).ok());
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(engine_->in_flight(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Adapters, ThreadsSilentTest,
                         ::testing::Values(Adapter::kBlocking, Adapter::kEpoll,
                                           Adapter::kIoUring),
                         ParamName);

}  // namespace
}  // namespace nbd::test
