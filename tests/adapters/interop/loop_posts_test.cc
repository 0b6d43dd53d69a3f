// EpollLoop::Post/Wake and UringLoop::Post/Wake from other threads: tasks
// run once each, in order, on the loop thread; a post or a Wake() ends a
// wait; other threads issue commands on nbdkit memory through posted tasks;
// tasks still queued when the loop goes are destroyed unrun. Run under
// ThreadSanitizer by `--config=tsan` (tag "tsan").
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "adapters/connect/connect.h"
#include "adapters/epoll/epoll_connection.h"
#include "adapters/epoll/epoll_loop.h"
#include "adapters/io_uring/uring_loop.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/status.h"
#include "tests/testing/servers.h"
#include "tests/testing/signal.h"

namespace nbd::test {
namespace {

// Generous: it only matters when something is broken.
constexpr absl::Duration kTimeout = absl::Seconds(30);

// This process's read(2)-family and write(2)-family system call counts
// (/proc/self/io syscr, syscw; the reading itself is one read). Neither
// epoll_wait nor io_uring_enter counts, so these see only the wake-up
// eventfd's reads and writes.
struct ReadWriteCalls {
  long long reads = -1;
  long long writes = -1;
};
ReadWriteCalls CountReadsAndWrites() {
  ReadWriteCalls calls;
  int fd = ::open("/proc/self/io", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return calls;
  char text[4096];
  ssize_t n = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (n <= 0) return calls;
  text[n] = '\0';
  for (const char* line = text; line != nullptr && *line != '\0';) {
    std::sscanf(line, "syscr: %lld", &calls.reads);
    std::sscanf(line, "syscw: %lld", &calls.writes);
    line = std::strchr(line, '\n');
    if (line != nullptr) ++line;
  }
  return calls;
}

using Callback = std::function<void(ClientEvent&)>;

// What the typed tests need from a loop: create it, add a connection, and
// send what was issued on it (epoll needs a Kick(), io_uring does not).
struct EpollLoopKind {
  using Loop = adapters::EpollLoop;
  static absl::StatusOr<std::unique_ptr<Loop>> Create() {
    return Loop::Create();
  }
  class Connection {
   public:
    Connection(Loop& loop, int fd, Callback on_event)
        : conn_(std::make_unique<adapters::EpollConnection>(
              fd, ClientOptions{}, std::move(on_event))) {
      status_ = loop.Add(conn_.get());
    }
    const absl::Status& status() const { return status_; }
    Client& client() { return conn_->client(); }
    void Kick() { conn_->Kick(); }
    void Shutdown() { conn_->Shutdown().IgnoreError(); }
    bool finished() const { return conn_->finished(); }

   private:
    std::unique_ptr<adapters::EpollConnection> conn_;
    absl::Status status_;
  };
};

struct UringLoopKind {
  using Loop = adapters::UringLoop;
  static absl::StatusOr<std::unique_ptr<Loop>> Create() {
    return Loop::Create();
  }
  class Connection {
   public:
    Connection(Loop& loop, int fd, Callback on_event)
        : conn_(loop.Add(fd, ClientOptions{}, std::move(on_event))) {}
    const absl::Status& status() const { return status_; }
    Client& client() { return conn_->client(); }
    void Kick() {}  // the next iteration prepares the SQEs
    void Shutdown() { conn_->Shutdown().IgnoreError(); }
    bool finished() const { return conn_->finished(); }

   private:
    adapters::UringConnection* conn_;  // owned by the loop's driver
    absl::Status status_;
  };
};

template <typename Kind>
class LoopPostsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = Kind::Create();
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
  }
  const std::thread::id loop_thread_ = std::this_thread::get_id();
  std::unique_ptr<typename Kind::Loop> loop_;
};

using Kinds = ::testing::Types<EpollLoopKind, UringLoopKind>;
class KindNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, EpollLoopKind> ? "epoll" : "io_uring";
  }
};
TYPED_TEST_SUITE(LoopPostsTest, Kinds, KindNames);

TYPED_TEST(LoopPostsTest, TasksFromManyThreadsRunOnceEachInOrder) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  // Loop thread only.
  std::vector<std::vector<int>> ran(kThreads);
  int total = 0;
  bool off_loop = false;
  std::vector<absl::Status> posted(kThreads);
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::Status s = this->loop_->Post([&, t, i] {
          off_loop |= std::this_thread::get_id() != this->loop_thread_;
          ran[t].push_back(i);
          ++total;
        });
        if (!s.ok()) posted[t] = s;
      }
    });
  }
  absl::Status run = this->loop_->RunUntil(
      [&] { return total == kThreads * kPerThread; }, kTimeout);
  for (std::thread& p : posters) p.join();
  ASSERT_TRUE(run.ok()) << run;
  EXPECT_FALSE(off_loop);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_TRUE(posted[t].ok()) << posted[t];
    ASSERT_EQ(ran[t].size(), size_t{kPerThread});
    for (int i = 0; i < kPerThread; ++i) EXPECT_EQ(ran[t][i], i);
  }
}

TYPED_TEST(LoopPostsTest, APostEndsTheWaitOfAnIdleLoop) {
  bool done = false;
  Signal first, second;
  bool first_in_time = false;
  bool second_in_time = false;
  std::thread poster([&] {
    // The first task proves the loop thread is inside RunUntil(); the
    // second is posted while it waits again with nothing to do.
    first_in_time = this->loop_->Post([&] { first.Notify(); }).ok() &&
                    first.WaitFor(kTimeout / 3);
    second_in_time = this->loop_
                         ->Post([&] {
                           done = true;
                           second.Notify();
                         })
                         .ok() &&
                     second.WaitFor(kTimeout / 3);
  });
  absl::Status run = this->loop_->RunUntil([&] { return done; }, kTimeout);
  poster.join();
  EXPECT_TRUE(run.ok()) << run;
  EXPECT_TRUE(first_in_time);
  EXPECT_TRUE(second_in_time);
}

TYPED_TEST(LoopPostsTest, WakeEndsAWaitWithoutATask) {
  Signal waiting, returned;
  bool returned_in_time = false;
  std::thread waker([&] {
    if (!waiting.WaitFor(kTimeout / 3)) return;
    this->loop_->Wake();
    returned_in_time = returned.WaitFor(kTimeout / 3);
  });
  waiting.Notify();
  absl::Status s = this->loop_->RunOnce(kTimeout);
  returned.Notify();
  waker.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(returned_in_time) << "Wake() did not end RunOnce()";
}

TYPED_TEST(LoopPostsTest, WorkersIssueCommandsThroughPostedTasks) {
  if (!HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
  auto server = ServerProcess::StartNbdkit({"memory", "4M"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto fd = adapters::ConnectUnix((*server)->socket_path());
  ASSERT_TRUE(fd.ok()) << fd.status();
  // Declared before the connection, so they outlive its I/O.
  constexpr int kThreads = 4;
  constexpr int kPerThread = 8;
  constexpr size_t kBlock = 8192;
  constexpr int kTotal = kThreads * kPerThread;
  std::vector<std::vector<uint8_t>> data(kTotal), back(kTotal);
  for (int k = 0; k < kTotal; ++k) {
    data[k].assign(kBlock, static_cast<uint8_t>(k * 7 + 1));
    back[k].assign(kBlock, 0);
  }
  // Loop thread only (the event callback and the tasks run there).
  int completed = 0;
  int failed = 0;
  bool connected = false;
  bool off_loop = false;
  typename TypeParam::Connection conn(*this->loop_, *fd, [&](ClientEvent& e) {
    off_loop |= std::this_thread::get_id() != this->loop_thread_;
    if (std::holds_alternative<Connected>(e)) connected = true;
    if (auto* c = std::get_if<CommandCompleted>(&e)) {
      ++completed;
      if (!c->status.ok()) ++failed;
    }
  });
  ASSERT_TRUE(conn.status().ok()) << conn.status();
  ASSERT_TRUE(this->loop_->RunUntil([&] { return connected; }, kTimeout).ok());

  // Each worker posts a task per block; the task issues on the loop
  // thread, where the core and the connection live.
  auto run_workers = [&](bool write) {
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; ++t) {
      workers.emplace_back([&, t, write] {
        for (int i = 0; i < kPerThread; ++i) {
          const int k = t * kPerThread + i;
          this->loop_
              ->Post([&, k, write] {
                const uint64_t offset = uint64_t(k) * kBlock;
                absl::Status s =
                    write ? conn.client().Write(offset, data[k]).status()
                          : conn.client()
                                .Read(offset, absl::MakeSpan(back[k]))
                                .status();
                if (!s.ok()) ++failed;
                conn.Kick();
              })
              .IgnoreError();
        }
      });
    }
    return workers;
  };
  std::vector<std::thread> writers = run_workers(true);
  absl::Status wrote = this->loop_->RunUntil(
      [&] { return completed + failed >= kTotal; }, kTimeout);
  for (std::thread& w : writers) w.join();
  ASSERT_TRUE(wrote.ok()) << wrote;
  std::vector<std::thread> readers = run_workers(false);
  absl::Status read = this->loop_->RunUntil(
      [&] { return completed + failed >= 2 * kTotal; }, kTimeout);
  for (std::thread& r : readers) r.join();
  ASSERT_TRUE(read.ok()) << read;
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(completed, 2 * kTotal);
  EXPECT_FALSE(off_loop);
  for (int k = 0; k < kTotal; ++k) EXPECT_TRUE(back[k] == data[k]) << k;

  conn.Shutdown();
  EXPECT_TRUE(
      this->loop_->RunUntil([&] { return conn.finished(); }, kTimeout).ok());
  EXPECT_EQ(conn.client().phase(), ClientPhase::kClosed);
}

TYPED_TEST(LoopPostsTest, ALoopNobodyPostsToMakesNoWakeUpSystemCalls) {
  if (CountReadsAndWrites().reads < 0) {
    GTEST_SKIP() << "no /proc/self/io (task I/O accounting)";
  }
  // The first iteration arms what needs arming (io_uring's poll rides
  // along with its submit).
  ASSERT_TRUE(this->loop_->RunOnce(absl::ZeroDuration()).ok());
  const ReadWriteCalls before = CountReadsAndWrites();
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(this->loop_->RunOnce(absl::ZeroDuration()).ok());
  }
  const ReadWriteCalls after = CountReadsAndWrites();
  // The one read is the second measurement's own.
  EXPECT_EQ(after.reads - before.reads, 1);
  EXPECT_EQ(after.writes - before.writes, 0);

  // A post costs one write (the wake-up), and the loop one read (clearing
  // it): the measurement can see them.
  bool ran = false;
  ASSERT_TRUE(this->loop_->Post([&] { ran = true; }).ok());
  ASSERT_TRUE(this->loop_->RunUntil([&] { return ran; }, kTimeout).ok());
  const ReadWriteCalls posted = CountReadsAndWrites();
  EXPECT_EQ(posted.writes - after.writes, 1);
  EXPECT_EQ(posted.reads - after.reads, 2);
}

TYPED_TEST(LoopPostsTest, DestroyingTheLoopDestroysQueuedTasksUnrun) {
  std::atomic<int> ran{0};
  const auto sentinel = std::make_shared<int>(0);
  std::thread poster([&] {
    for (int i = 0; i < 100; ++i) {
      this->loop_->Post([&ran, sentinel] { ++ran; }).IgnoreError();
    }
  });
  poster.join();
  EXPECT_EQ(sentinel.use_count(), 101);
  this->loop_.reset();
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(sentinel.use_count(), 1);
}

// An empty task is refused at the call: running it would be undefined.
TYPED_TEST(LoopPostsTest, AnEmptyTaskIsRefused) {
  absl::Status s = this->loop_->Post(nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(StatusErrno(s), EINVAL) << s;
  // Nothing was queued: the loop runs, and a real task still does.
  bool ran = false;
  ASSERT_TRUE(this->loop_->Post([&] { ran = true; }).ok());
  EXPECT_TRUE(this->loop_->RunUntil([&] { return ran; }, kTimeout).ok());
}

}  // namespace
}  // namespace nbd::test
