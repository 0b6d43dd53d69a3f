// adapters/pump drives an nbd::Client and an nbd::ServerSession with the
// same code: both ends of a socketpair are pumped until a write, a read and
// a disconnect went through.
#include "adapters/pump/pump.h"

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <variant>
#include <vector>

#include "adapters/server/backend.h"
#include "adapters/server/memory_backend.h"
#include "adapters/server/serve.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/server/server.h"

namespace nbd::adapters {
namespace {

class PumpTest : public ::testing::Test {
 protected:
  PumpTest() : backend_(1 << 20) {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    client_transport_.emplace(fds[0], &client_counters_);
    server_transport_.emplace(fds[1], &server_counters_);
    ClientOptions copts;
    copts.export_name = "disk";
    client_.emplace(copts);
    ServerOptions sopts;
    sopts.exports = {MakeExportInfo("disk", "", backend_)};
    server_.emplace(sopts);
  }

  // Pumps both ends until `done` holds (or gives up).
  template <typename Done>
  void PumpUntil(Done done) {
    for (int i = 0; i < 1000 && !done(); ++i) {
      PumpOnce(*client_, *client_transport_, true,
               [this](ClientEvent& e) { client_events_.push_back(e); });
      PumpOnce(*server_, *server_transport_, true, [this](ServerEvent& e) {
        if (auto* r = std::get_if<ServerRequest>(&e)) {
          ServeRequest(*server_, backend_, *r);
        }
        server_events_.push_back(e);
      });
    }
    ASSERT_TRUE(done());
  }

  template <typename T>
  int ClientCount() const {
    int n = 0;
    for (const ClientEvent& e : client_events_)
      n += std::holds_alternative<T>(e);
    return n;
  }
  template <typename T>
  int ServerCount() const {
    int n = 0;
    for (const ServerEvent& e : server_events_)
      n += std::holds_alternative<T>(e);
    return n;
  }

  MemoryBackend backend_;
  SyscallCounters client_counters_;
  SyscallCounters server_counters_;
  std::optional<SocketTransport> client_transport_;
  std::optional<SocketTransport> server_transport_;
  std::optional<Client> client_;
  std::optional<ServerSession> server_;
  std::vector<ClientEvent> client_events_;
  std::vector<ServerEvent> server_events_;
};

TEST_F(PumpTest, ClientAndServerSessionThroughTheSamePump) {
  PumpUntil([&] { return client_->phase() == ClientPhase::kReady; });
  EXPECT_EQ(ServerCount<TransmissionStarted>(), 1);

  std::vector<uint8_t> data(4096);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i);
  std::vector<uint8_t> back(4096);
  ASSERT_TRUE(client_->Write(8192, data).ok());
  ASSERT_TRUE(client_->Read(8192, absl::MakeSpan(back)).ok());
  PumpUntil([&] { return ClientCount<CommandCompleted>() == 2; });
  for (const ClientEvent& e : client_events_) {
    if (auto* c = std::get_if<CommandCompleted>(&e)) {
      EXPECT_TRUE(c->status.ok());
    }
  }
  EXPECT_EQ(back, data);

  // The client's ShutdownWrite shuts the socket's write side; the server
  // session ends with ServerClosed, after which its socket is closed.
  ASSERT_TRUE(client_->Disconnect().ok());
  PumpUntil([&] { return IsTerminal(server_->phase()); });
  EXPECT_EQ(ServerCount<ServerClosed>(), 1);
  EXPECT_EQ(ClientCount<ShutdownWrite>(), 1);
  EXPECT_EQ(client_counters_.shutdown, 1u);
  server_transport_->Close();
  PumpUntil([&] { return IsTerminal(client_->phase()); });
  EXPECT_EQ(client_->phase(), ClientPhase::kClosed);

  EXPECT_GT(server_counters_.recv, 0u);
  EXPECT_GT(server_counters_.send, 0u);
  EXPECT_EQ(server_counters_.shutdown, 0u);  // the server raises no such event
}

TEST_F(PumpTest, ServerRoundsAreBounded) {
  // One round: the greeting is sent, the receive finds nothing.
  EXPECT_TRUE(PumpOnce(
      *server_, *server_transport_, true, [](ServerEvent&) {},
      /*max_rounds=*/1));
  EXPECT_EQ(server_counters_.send, 1u);
  EXPECT_EQ(server_counters_.recv, 1u);
  EXPECT_EQ(server_->pending_output_bytes(), 0u);
}

TEST_F(PumpTest, ServerGiveUpDrainsTheDeadEvent) {
  int dead = 0;
  GiveUp(*server_, *server_transport_, TimeoutStatus("test"),
         [&dead](ServerEvent& e) {
           dead += std::holds_alternative<ServerDead>(e);
         });
  EXPECT_EQ(dead, 1);
  EXPECT_EQ(server_->phase(), ServerPhase::kDead);
}

}  // namespace
}  // namespace nbd::adapters
