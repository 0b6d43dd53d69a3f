// ClientDrive against a real server (nbdkit memory) in a poll() loop: the
// whole task an embedder has (handshake, write, flush, read back, block
// status, disconnect, closed), and the costs the drive promises.
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <variant>
#include <vector>

#include "absl/time/clock.h"
#include "adapters/drive/drive.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"
#include "protocol/constants.h"
#include "protocol/status.h"
#include "tests/adapters/drive/poll_loop.h"
#include "tests/testing/servers.h"

namespace nbd::test {
namespace {

using adapters::ClientDrive;
using adapters::DriveOptions;
using adapters::SyscallCounters;

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 7 + seed);
  return v;
}

class ClientDriveNbdkitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
    auto server = ServerProcess::StartNbdkit({"memory", "1M"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    DriveOptions options;
    options.counters = &counters_;
    auto drive = ClientDrive::Connect(server_->Uri(), {}, options);
    ASSERT_TRUE(drive.ok()) << drive.status();
    drive_ = std::move(*drive);
    loop_.Add(*drive_, [this](ClientEvent& e) { events_.push_back(e); });
  }

  // Runs the loop until the command `cookie` has completed; its status.
  absl::Status Wait(Cookie cookie) {
    std::optional<absl::Status> status;
    size_t seen = 0;
    bool ok = loop_.RunUntil([&] {
      for (; seen < events_.size(); ++seen) {
        if (auto* c = std::get_if<CommandCompleted>(&events_[seen])) {
          if (c->cookie == cookie) status = c->status;
        }
      }
      return status.has_value();
    });
    if (!ok) return absl::DeadlineExceededError("no completion");
    return *status;
  }

  template <typename T>
  int Count() const {
    int n = 0;
    for (const ClientEvent& e : events_) n += std::holds_alternative<T>(e);
    return n;
  }

  std::unique_ptr<ServerProcess> server_;
  SyscallCounters counters_;
  std::unique_ptr<ClientDrive> drive_;
  PollLoop loop_;
  std::vector<ClientEvent> events_;
};

TEST_F(ClientDriveNbdkitTest, WholeTaskInAPollLoop) {
  Client& client = drive_->client();
  EXPECT_EQ(drive_->direction(), Direction::kRead);  // the greeting
  EXPECT_EQ(drive_->poll_events(), POLLIN);
  EXPECT_EQ(drive_->deadline(), std::nullopt);
  EXPECT_EQ(drive_->timeout_ms(absl::Now()), -1);
  ASSERT_TRUE(loop_.RunUntil([&] { return Count<Connected>() == 1; }));
  ASSERT_EQ(client.phase(), ClientPhase::kReady);
  ASSERT_TRUE(client.can_block_status());

  // Kick() sends a new command at once: no POLLOUT round needed.
  std::vector<uint8_t> data = Pattern(65536, 3);
  auto write = client.Write(0, data);
  ASSERT_TRUE(write.ok()) << write.status();
  const uint64_t sends = counters_.send;
  drive_->Kick();
  EXPECT_EQ(client.pending_output_bytes(), 0u);
  EXPECT_GT(counters_.send, sends);
  EXPECT_TRUE(Wait(*write).ok());

  auto flush = client.Flush();
  ASSERT_TRUE(flush.ok()) << flush.status();
  EXPECT_TRUE(Wait(*flush).ok());

  std::vector<uint8_t> back(65536);
  auto read = client.Read(0, absl::MakeSpan(back));
  ASSERT_TRUE(read.ok()) << read.status();
  auto status = client.BlockStatus(0, 1 << 20);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(Wait(*read).ok());
  EXPECT_TRUE(Wait(*status).ok());
  EXPECT_EQ(back, data);
  uint64_t covered = 0;
  bool data_at_zero = false;
  for (const ClientEvent& e : events_) {
    if (auto* b = std::get_if<BlockStatusExtents>(&e)) {
      EXPECT_EQ(b->cookie, *status);
      EXPECT_EQ(b->offset, 0u);
      ASSERT_FALSE(b->extents.empty());
      data_at_zero = (b->extents[0].flags & kStateHole) == 0;
      for (const Extent& x : b->extents) covered += x.length;
    }
  }
  EXPECT_TRUE(data_at_zero);  // we wrote there
  EXPECT_GT(covered, 0u);
  EXPECT_LE(covered, 1u << 20);

  // Disconnect through the drive: DISC out, write side shut, bound armed,
  // then the server's close; the drive closes the fd.
  const absl::Time before = absl::Now();
  ASSERT_TRUE(drive_->Disconnect().ok());
  ASSERT_TRUE(drive_->deadline().has_value());
  EXPECT_GE(*drive_->deadline(), before + adapters::kDefaultDisconnectTimeout);
  // ShutdownWrite is queued (DISC went out with the Kick()): the loop
  // should not sleep before popping it.
  EXPECT_EQ(drive_->timeout_ms(absl::Now()), 0);
  while (auto e = drive_->PollEvent()) events_.push_back(*e);
  EXPECT_GT(drive_->timeout_ms(absl::Now()), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return drive_->done(); }));
  EXPECT_EQ(client.phase(), ClientPhase::kClosed);
  EXPECT_EQ(client.in_flight(), 0u);
  EXPECT_EQ(drive_->fd(), -1);
  EXPECT_EQ(drive_->direction(), Direction::kNone);
  EXPECT_EQ(drive_->poll_events(), 0);
  EXPECT_EQ(counters_.shutdown, 1u);
  EXPECT_EQ(counters_.close, 1u);
  // Events in order: ShutdownWrite, then ClientClosed last; each command
  // completed once.
  ASSERT_FALSE(events_.empty());
  EXPECT_TRUE(std::holds_alternative<ClientClosed>(events_.back()));
  EXPECT_EQ(Count<ShutdownWrite>(), 1);
  EXPECT_EQ(Count<ClientClosed>(), 1);
  EXPECT_EQ(Count<CommandCompleted>(), 4);
  EXPECT_EQ(Count<ClientDead>(), 0);
  EXPECT_EQ(drive_->PollEvent(), std::nullopt);
}

// Shutdown() waits for the commands in flight: they complete normally.
TEST_F(ClientDriveNbdkitTest, ShutdownDrainsFirst) {
  ASSERT_TRUE(loop_.RunUntil([&] { return Count<Connected>() == 1; }));
  std::vector<std::vector<uint8_t>> back(8, std::vector<uint8_t>(4096));
  for (size_t i = 0; i < back.size(); ++i) {
    ASSERT_TRUE(drive_->client().Read(i * 4096, absl::MakeSpan(back[i])).ok());
  }
  ASSERT_TRUE(drive_->Shutdown().ok());
  ASSERT_TRUE(loop_.RunUntil([&] { return drive_->done(); }));
  EXPECT_EQ(drive_->client().phase(), ClientPhase::kClosed);
  int ok = 0;
  for (const ClientEvent& e : events_) {
    if (auto* c = std::get_if<CommandCompleted>(&e)) ok += c->status.ok();
  }
  EXPECT_EQ(ok, 8);
}

// The core's own Disconnect() works too: the bound is armed once DISC has
// been sent (ShutdownWrite), by the Kick() that sends it.
TEST_F(ClientDriveNbdkitTest, CoreDisconnectArmsTheBoundWhenSent) {
  ASSERT_TRUE(loop_.RunUntil([&] { return Count<Connected>() == 1; }));
  ASSERT_TRUE(drive_->client().Disconnect().ok());
  EXPECT_EQ(drive_->deadline(), std::nullopt);
  drive_->Kick();
  EXPECT_TRUE(drive_->deadline().has_value());
  EXPECT_EQ(counters_.shutdown, 1u);  // acted on before the event is popped
  ASSERT_TRUE(loop_.RunUntil([&] { return drive_->done(); }));
  EXPECT_EQ(drive_->client().phase(), ClientPhase::kClosed);
  EXPECT_EQ(Count<ShutdownWrite>(), 1);
}

// A recv that fills its buffer is followed by another; the one that would
// block ends the turn. Per READ of 4 KiB with structured replies that is a
// handful of recv calls and about one sendmsg, never a poll of our own.
TEST_F(ClientDriveNbdkitTest, SyscallsPerRead) {
  ASSERT_TRUE(loop_.RunUntil([&] { return Count<Connected>() == 1; }));
  const SyscallCounters before = counters_;
  std::vector<std::vector<uint8_t>> back(16, std::vector<uint8_t>(4096));
  for (size_t i = 0; i < back.size(); ++i) {
    ASSERT_TRUE(drive_->client().Read(i * 4096, absl::MakeSpan(back[i])).ok());
  }
  drive_->Kick();
  ASSERT_TRUE(loop_.RunUntil([&] { return Count<CommandCompleted>() == 16; }));
  const uint64_t recv = counters_.recv - before.recv;
  const uint64_t send = counters_.send - before.send;
  std::printf("16 reads: %llu recv, %llu send\n",
              static_cast<unsigned long long>(recv),
              static_cast<unsigned long long>(send));
  EXPECT_LE(send, 16u);
  EXPECT_EQ(counters_.poll, before.poll);  // the drive never polls
  EXPECT_EQ(counters_.shutdown + counters_.close, 0u);
}

}  // namespace
}  // namespace nbd::test
