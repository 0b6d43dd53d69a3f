// nbd::Visit and nbd::Overloaded (protocol/visit.h) on both cores' event
// variants: the specific lambda wins over the generic catch-all, returning
// visitors return their value, and alternatives can be modified in place.
#include "protocol/visit.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "protocol/client/events.h"
#include "protocol/constants.h"
#include "protocol/server/events.h"

namespace nbd {
namespace {

BlockStatusExtents Extents(Cookie cookie, uint64_t tag) {
  BlockStatusExtents e;
  e.cookie = cookie;
  e.tag = tag;
  return e;
}

ServerRequest Request(RequestHandle handle, Command command) {
  ServerRequest r;
  r.handle = handle;
  r.command = command;
  return r;
}

TEST(Visit, ClientEventPicksTheSpecificLambdaOverTheCatchAll) {
  std::vector<ClientEvent> events = {
      CommandCompleted{1, Command::kFlush, {}, 11},
      ReadChunk{.cookie = 2, .length = 512, .tag = 22},
      ClientTrace{"hello"},
      Extents(3, 33),
      ClientClosed{},
  };
  std::vector<uint64_t> completed;
  std::vector<uint64_t> chunks;
  int others = 0;
  for (ClientEvent& e : events) {
    Visit(
        e, [&](const CommandCompleted& c) { completed.push_back(c.tag); },
        [&](const ReadChunk& r) { chunks.push_back(r.tag); },
        [&](const auto&) { ++others; });
  }
  EXPECT_EQ(completed, std::vector<uint64_t>{11});
  EXPECT_EQ(chunks, std::vector<uint64_t>{22});
  EXPECT_EQ(others, 3);  // trace, extents, closed
}

TEST(Visit, ClientEventFromPollEventShape) {
  // PollEvent() returns std::optional<ClientEvent>; Visit takes *e.
  std::optional<ClientEvent> e = ClientDead{absl::UnavailableError("gone")};
  bool dead = false;
  Visit(
      *e, [&](const ClientDead& d) { dead = absl::IsUnavailable(d.reason); },
      [](const auto&) {});
  EXPECT_TRUE(dead);
}

TEST(Visit, ServerEventWithCatchAll) {
  std::vector<ServerEvent> events = {
      TransmissionStarted{.export_index = 2},
      Request(7, Command::kWrite),
      ReplySent{7},
      ServerClosed{},
  };
  std::vector<std::string> seen;
  for (const ServerEvent& e : events) {
    Visit(
        e,
        [&](const ServerRequest& r) {
          seen.push_back("request " + std::to_string(r.handle));
        },
        [&](const ReplySent& r) {
          seen.push_back("sent " + std::to_string(r.handle));
        },
        [&](const auto&) { seen.push_back("other"); });
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"other", "request 7", "sent 7",
                                            "other"}));
}

TEST(Visit, ReturnsTheChosenLambdasResult) {
  auto name = [](const ClientEvent& e) {
    return Visit(
        e,
        [](const CommandCompleted& c) {
          return "completed " + std::to_string(c.tag);
        },
        [](const ClientClosed&) { return std::string("closed"); },
        [](const auto&) { return std::string("other"); });
  };
  EXPECT_EQ(name(CommandCompleted{1, Command::kRead, {}, 5}), "completed 5");
  EXPECT_EQ(name(ClientClosed{}), "closed");
  EXPECT_EQ(name(ShutdownWrite{}), "other");

  const ServerEvent dead = ServerDead{absl::InternalError("x")};
  int code = Visit(
      dead,
      [](const ServerDead& d) { return static_cast<int>(d.reason.code()); },
      [](const auto&) { return -1; });
  EXPECT_EQ(code, static_cast<int>(absl::StatusCode::kInternal));
  EXPECT_EQ(Visit(
                ServerEvent{ReplySent{}}, [](const ServerDead&) { return 1; },
                [](const auto&) { return 2; }),
            2);
}

TEST(Visit, ExhaustiveWithoutCatchAll) {
  // Every alternative handled by name: no catch-all needed.
  auto kind = [](const ServerEvent& e) {
    return Visit(
        e, [](const TransmissionStarted&) { return 1; },
        [](const ServerRequest&) { return 2; },
        [](const ReplySent&) { return 3; },
        [](const ServerTrace&) { return 4; },
        [](const ServerClosed&) { return 5; },
        [](const ServerDead&) { return 6; },
        [](const ServerStartTls&) { return 7; });
  };
  EXPECT_EQ(kind(ServerTrace{"t"}), 4);
  EXPECT_EQ(kind(ServerStartTls{}), 7);
  EXPECT_EQ(kind(ServerClosed{}), 5);
}

TEST(Visit, NonConstVariantCanBeModifiedInPlace) {
  ClientEvent e = ClientTrace{"abc"};
  Visit(
      e, [](ClientTrace& t) { t.message += "!"; }, [](auto&) {});
  EXPECT_EQ(std::get<ClientTrace>(e).message, "abc!");
}

TEST(Overloaded, WorksWithStdVisitDirectly) {
  std::variant<int, std::string> v = std::string("xy");
  auto size =
      std::visit(Overloaded{[](int) { return size_t{0}; },
                            [](const std::string& s) { return s.size(); }},
                 v);
  EXPECT_EQ(size, 2u);
}

}  // namespace
}  // namespace nbd
