// ServerDrive, the same drive for nbd::ServerSession: our own client (a
// ClientDrive) and a ServerDrive serving a memory backend, both ends of a
// socketpair in one poll() loop; and a server drive's bounds.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <variant>
#include <vector>

#include "absl/time/clock.h"
#include "adapters/drive/drive.h"
#include "adapters/server/backend.h"
#include "adapters/server/memory_backend.h"
#include "adapters/server/serve.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/client/events.h"
#include "protocol/server/events.h"
#include "protocol/server/server.h"
#include "protocol/status.h"
#include "tests/adapters/drive/poll_loop.h"

namespace nbd::test {
namespace {

using adapters::ClientDrive;
using adapters::DriveOptions;
using adapters::ServerDrive;
using adapters::SyscallCounters;

class ServerDriveTest : public ::testing::Test {
 protected:
  ServerDriveTest() : backend_(1 << 20) {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    client_fd_ = fds[0];
    server_fd_ = fds[1];
  }
  ~ServerDriveTest() override {
    if (client_fd_ >= 0) ::close(client_fd_);
  }

  ServerOptions Options() {
    ServerOptions options;
    options.exports = {MakeExportInfo("disk", "", backend_)};
    return options;
  }

  // The server drive, serving every request from the backend as its event
  // is popped; the replies go out at the loop's Kick().
  void StartServer(DriveOptions options = {}) {
    options.counters = &server_counters_;
    server_ = std::make_unique<ServerDrive>(server_fd_, Options(), options);
    loop_.Add(*server_, [this](ServerEvent& e) {
      if (auto* r = std::get_if<ServerRequest>(&e)) {
        ServeRequest(server_->session(), backend_, *r);
      }
      server_events_.push_back(e);
    });
  }

  void StartClient() {
    ClientOptions options;
    options.export_name = "disk";
    client_ = std::make_unique<ClientDrive>(client_fd_, options);
    client_fd_ = -1;
    loop_.Add(*client_,
              [this](ClientEvent& e) { client_events_.push_back(e); });
  }

  template <typename T>
  int ClientCount() const {
    int n = 0;
    for (const ClientEvent& e : client_events_) {
      n += std::holds_alternative<T>(e);
    }
    return n;
  }
  template <typename T>
  int ServerCount() const {
    int n = 0;
    for (const ServerEvent& e : server_events_) {
      n += std::holds_alternative<T>(e);
    }
    return n;
  }

  MemoryBackend backend_;
  int client_fd_ = -1;
  int server_fd_ = -1;
  SyscallCounters server_counters_;
  std::unique_ptr<ServerDrive> server_;
  std::unique_ptr<ClientDrive> client_;
  PollLoop loop_;
  std::vector<ServerEvent> server_events_;
  std::vector<ClientEvent> client_events_;
};

TEST_F(ServerDriveTest, ServesOurClientToTheEnd) {
  StartServer();
  StartClient();
  // The greeting is queued by the session: the drive waits to write.
  EXPECT_EQ(server_->direction(), Direction::kBoth);
  EXPECT_EQ(server_->poll_events(), POLLIN | POLLOUT);
  ASSERT_TRUE(loop_.RunUntil([&] { return ClientCount<Connected>() == 1; }));
  EXPECT_EQ(ServerCount<TransmissionStarted>(), 1);
  Client& client = client_->client();

  std::vector<uint8_t> data(65536);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i);
  std::vector<uint8_t> back(65536);
  ASSERT_TRUE(client.Write(4096, data).ok());
  ASSERT_TRUE(
      loop_.RunUntil([&] { return ClientCount<CommandCompleted>() == 1; }));
  ASSERT_TRUE(client.Flush().ok());
  ASSERT_TRUE(client.Read(4096, absl::MakeSpan(back)).ok());
  ASSERT_TRUE(client.BlockStatus(0, 1 << 20).ok());
  ASSERT_TRUE(
      loop_.RunUntil([&] { return ClientCount<CommandCompleted>() == 4; }));
  for (const ClientEvent& e : client_events_) {
    if (auto* c = std::get_if<CommandCompleted>(&e)) {
      EXPECT_TRUE(c->status.ok()) << c->status;
    }
  }
  EXPECT_EQ(back, data);
  EXPECT_EQ(ClientCount<BlockStatusExtents>(), 1);
  EXPECT_EQ(ServerCount<ServerRequest>(), 4);

  ASSERT_TRUE(client_->Disconnect().ok());
  ASSERT_TRUE(
      loop_.RunUntil([&] { return server_->done() && client_->done(); }));
  EXPECT_EQ(server_->session().phase(), ServerPhase::kClosed);
  EXPECT_EQ(client.phase(), ClientPhase::kClosed);
  ASSERT_FALSE(server_events_.empty());
  EXPECT_TRUE(std::holds_alternative<ServerClosed>(server_events_.back()));
  EXPECT_EQ(server_->fd(), -1);
  EXPECT_EQ(server_counters_.close, 1u);
  EXPECT_EQ(server_counters_.shutdown, 0u);  // no such event on this side
}

// A client that connects and says nothing: the server drive's deadline
// gives the session up (dead, ETIMEDOUT) and closes the socket.
TEST_F(ServerDriveTest, DeadlineGivesUpASilentClient) {
  StartServer();
  server_->SetDeadline(absl::Now() + absl::Milliseconds(100));
  ASSERT_TRUE(loop_.RunUntil([&] { return server_->done(); }));
  EXPECT_EQ(server_->session().phase(), ServerPhase::kDead);
  absl::Status why = server_->session().dead_reason();
  EXPECT_EQ(StatusErrno(why), ETIMEDOUT) << why;
  EXPECT_EQ(ServerCount<ServerDead>(), 1);
  EXPECT_EQ(server_->fd(), -1);
  // The client end sees the close after the greeting.
  uint8_t buf[256];
  ssize_t total = 0;
  ssize_t r;
  while ((r = ::recv(client_fd_, buf, sizeof buf, 0)) > 0) total += r;
  EXPECT_EQ(r, 0);
  EXPECT_GT(total, 0);
}

// A client that hangs up in the handshake: the session dies (EOF inside
// the handshake), the drive closes its socket.
TEST_F(ServerDriveTest, ClientHangupInTheHandshake) {
  StartServer();
  ::close(client_fd_);
  client_fd_ = -1;
  ASSERT_TRUE(loop_.RunUntil([&] { return server_->done(); }));
  EXPECT_TRUE(adapters::IsTerminal(server_->session().phase()));
  EXPECT_EQ(ServerCount<ServerClosed>() + ServerCount<ServerDead>(), 1);
  EXPECT_EQ(server_counters_.close, 1u);
}

// Once the session is closing (DISC received), the drive bounds the wait
// for the last replies; a request still unanswered keeps it closing until
// the drive gives up.
TEST_F(ServerDriveTest, ClosingIsBounded) {
  DriveOptions options;
  options.disconnect_timeout = absl::Milliseconds(100);
  options.counters = &server_counters_;
  server_ = std::make_unique<ServerDrive>(server_fd_, Options(), options);
  // This server never answers: requests are recorded, not served.
  loop_.Add(*server_, [this](ServerEvent& e) { server_events_.push_back(e); });
  StartClient();
  ASSERT_TRUE(loop_.RunUntil([&] { return ClientCount<Connected>() == 1; }));
  ASSERT_TRUE(client_->client().Flush().ok());
  ASSERT_TRUE(client_->Disconnect().ok());
  ASSERT_TRUE(loop_.RunUntil(
      [&] { return server_->session().phase() == ServerPhase::kClosing; }));
  EXPECT_TRUE(server_->deadline().has_value());
  ASSERT_TRUE(loop_.RunUntil([&] { return server_->done(); }));
  absl::Status why = server_->session().dead_reason();
  EXPECT_EQ(StatusErrno(why), ETIMEDOUT) << why;
  EXPECT_NE(why.message().find("last replies"), std::string::npos) << why;
  // Our client sees the server go away and fails its flush once.
  ASSERT_TRUE(loop_.RunUntil([&] { return client_->done(); }));
  EXPECT_EQ(ClientCount<CommandCompleted>(), 1);
}

TEST_F(ServerDriveTest, CallsAfterDone) {
  StartServer();
  ASSERT_TRUE(server_->Abandon(absl::CancelledError("stop")).ok());
  EXPECT_TRUE(server_->ended());
  EXPECT_FALSE(server_->done());
  absl::Status s = server_->Release().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(StatusErrno(s), EINVAL);
  EXPECT_NE(s.message().find("ServerDrive::Release: the drive is done"),
            std::string::npos)
      << s;
  const uint64_t calls = server_counters_.total();
  server_->OnReady(POLLIN);
  server_->Kick();
  EXPECT_EQ(server_counters_.total(), calls);
  auto last = server_->PollEvent();
  ASSERT_TRUE(last.has_value());
  EXPECT_TRUE(std::holds_alternative<ServerDead>(*last));
  EXPECT_EQ(server_->PollEvent(), std::nullopt);
  EXPECT_TRUE(server_->done());
}

}  // namespace
}  // namespace nbd::test
