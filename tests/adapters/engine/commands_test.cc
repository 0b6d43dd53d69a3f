// Engine commands through every adapter against the embedded server: each
// callback runs exactly once, never inside the issuing call, and may issue
// more; bytes and extents come back as written.
#include <algorithm>
#include <cerrno>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "adapters/connect/connect.h"
#include "adapters/engine/engine.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/status.h"
#include "tests/adapters/engine/engine_fixture.h"

namespace nbd::test {
namespace {

using engine::Adapter;
using engine::Engine;
using engine::Export;

using CommandsTest = EngineTest;

TEST(AdapterNamesTest, ParseAndNameRoundTrip) {
  for (Adapter a : {Adapter::kBlocking, Adapter::kEpoll, Adapter::kIoUring}) {
    EXPECT_EQ(engine::ParseAdapter(engine::AdapterName(a)), a);
  }
  EXPECT_EQ(engine::ParseAdapter("uring"), Adapter::kIoUring);
  EXPECT_EQ(engine::ParseAdapter("poll"), std::nullopt);
}

TEST_P(CommandsTest, EveryCommandCompletesOnceWithTheServersData) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  auto exp = engine->Open(server_->uri(), 1);
  ASSERT_TRUE(exp.ok()) << exp.status();
  Export& e = **exp;
  EXPECT_EQ(e.size(), kExportSize);
  EXPECT_EQ(e.info().phase(), ClientPhase::kReady);

  std::vector<uint8_t> data = Pattern(65536, 3);
  std::vector<uint8_t> back(65536, 0xee), zeros(4096, 0xee);
  Outcome write, flush, read, trim, zero, cache, read_zero, extents;
  std::vector<Extent> got;
  uint64_t got_offset = ~0ull;
  ASSERT_TRUE(e.Write(0, 0, data, 0, write.Callback()).ok());
  ASSERT_TRUE(e.Flush(0, flush.Callback()).ok());
  ASSERT_TRUE(e.Read(0, 0, absl::MakeSpan(back), read.Callback()).ok());
  ASSERT_TRUE(e.Trim(0, 131072, 4096, 0, trim.Callback()).ok());
  ASSERT_TRUE(e.WriteZeroes(0, 8192, 4096, 0, zero.Callback()).ok());
  ASSERT_TRUE(e.Cache(0, 0, 4096, 0, cache.Callback()).ok());
  ASSERT_TRUE(
      e.Read(0, 8192, absl::MakeSpan(zeros), read_zero.Callback()).ok());
  ASSERT_TRUE(e.BlockStatus(0, 0, kExportSize,
                            [&](const absl::Status& s, uint64_t offset,
                                const std::vector<Extent>& x) {
                              ++extents.calls;
                              extents.status = s;
                              got_offset = offset;
                              got = x;
                            })
                  .ok());
  // Nothing ran inside the issuing calls.
  for (Outcome* o :
       {&write, &flush, &read, &trim, &zero, &cache, &read_zero, &extents}) {
    EXPECT_EQ(o->calls, 0);
  }
  EXPECT_EQ(engine->in_flight(), 8u);
  ASSERT_TRUE(engine->Drain().ok());
  EXPECT_EQ(engine->in_flight(), 0u);
  for (Outcome* o :
       {&write, &flush, &read, &trim, &zero, &cache, &read_zero, &extents}) {
    EXPECT_EQ(o->calls, 1);
    EXPECT_TRUE(o->status.ok()) << o->status;
  }
  EXPECT_EQ(back, data);
  EXPECT_EQ(zeros, std::vector<uint8_t>(4096, 0));
  EXPECT_EQ(got_offset, 0u);
  uint64_t covered = 0;
  for (const Extent& x : got) covered += x.length;
  EXPECT_GT(covered, 0u);
  EXPECT_LE(covered, kExportSize);
  EXPECT_GT(engine->counters().total(), 0u);
  EXPECT_TRUE(engine->Shutdown().ok());
  EXPECT_EQ(e.info().phase(), ClientPhase::kClosed);
  EXPECT_TRUE(e.finished(0));
}

TEST_P(CommandsTest, CallbacksMayIssueMoreCommands) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  auto exp = engine->Open(server_->uri(), 1);
  ASSERT_TRUE(exp.ok()) << exp.status();
  Export& e = **exp;
  constexpr int kChain = 32;
  std::vector<uint8_t> data = Pattern(4096, 9);
  int completed = 0;
  int depth = 0;
  int max_depth = 0;
  std::vector<absl::Status> errors;
  // Each write's callback issues the next one, one block further on.
  std::function<void(int)> issue = [&](int i) {
    absl::Status s =
        e.Write(0, uint64_t(i) * 4096, data, 0, [&, i](const absl::Status& st) {
          ++depth;
          max_depth = std::max(max_depth, depth);
          ++completed;
          if (!st.ok()) errors.push_back(st);
          if (i + 1 < kChain) issue(i + 1);
          --depth;
        });
    if (!s.ok()) errors.push_back(s);
  };
  issue(0);
  ASSERT_TRUE(engine->Drain().ok());
  EXPECT_EQ(completed, kChain);
  EXPECT_EQ(max_depth, 1);  // never recursively from inside a callback
  EXPECT_TRUE(errors.empty()) << errors.front();
  std::vector<uint8_t> back(4096);
  Outcome read;
  ASSERT_TRUE(
      e.Read(0, (kChain - 1) * 4096, absl::MakeSpan(back), read.Callback())
          .ok());
  ASSERT_TRUE(engine->Drain().ok());
  EXPECT_EQ(read.calls, 1);
  EXPECT_EQ(back, data);
  EXPECT_TRUE(engine->Shutdown().ok());
}

TEST_P(CommandsTest, SeveralConnectionsShareTheWork) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  auto exp = engine->Open(server_->uri(), 4);
  ASSERT_TRUE(exp.ok()) << exp.status();
  Export& e = **exp;
  ASSERT_TRUE(e.info().can_multi_conn());
  ASSERT_EQ(e.connections(), 4u);
  std::vector<std::vector<uint8_t>> data, back;
  std::vector<Outcome> writes(8), reads(8);
  for (int i = 0; i < 8; ++i) {
    data.push_back(Pattern(8192, i));
    back.emplace_back(8192);
  }
  for (size_t i = 0; i < 8; ++i) {
    ASSERT_TRUE(
        e.Write(i % 4, i * 8192, data[i], 0, writes[i].Callback()).ok());
  }
  EXPECT_EQ(e.in_flight(), 8u);
  ASSERT_TRUE(engine->Drain().ok());
  for (size_t i = 0; i < 8; ++i) {
    // Read back through another connection (multi-conn: coherent).
    ASSERT_TRUE(e.Read((i + 1) % 4, i * 8192, absl::MakeSpan(back[i]),
                       reads[i].Callback())
                    .ok());
  }
  ASSERT_TRUE(engine->Drain().ok());
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(writes[i].calls, 1);
    EXPECT_EQ(reads[i].calls, 1);
    EXPECT_TRUE(reads[i].status.ok()) << reads[i].status;
    EXPECT_EQ(back[i], data[i]) << i;
  }
  EXPECT_EQ(e.Read(4, 0, absl::MakeSpan(back[0]), reads[0].Callback()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(engine->Shutdown().ok());
  for (size_t c = 0; c < 4; ++c) EXPECT_TRUE(e.finished(c));
}

TEST_P(CommandsTest, ObserverAndDebugSeeEveryConnection) {
  std::vector<std::string> lines;
  int connected = 0;
  auto engine = Engine::Create(
      {.adapter = GetParam(),
       .timeout = kTimeout,
       .debug = [&](std::string_view line) { lines.emplace_back(line); },
       .observer =
           [&](const Export&, size_t, const ClientEvent& event) {
             if (std::holds_alternative<Connected>(event)) ++connected;
           }});
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto exp = (*engine)->Open(server_->uri(), 2);
  ASSERT_TRUE(exp.ok()) << exp.status();
  EXPECT_EQ(connected, 2);
  const std::string prefix = server_->uri() + " [1]: ";
  bool traced = false;
  for (const std::string& l : lines) traced |= l.rfind(prefix, 0) == 0;
  EXPECT_TRUE(traced) << "no trace line starts with " << prefix;
  EXPECT_TRUE((*engine)->Shutdown().ok());
}

TEST_P(CommandsTest, OptionModeOverAnAttachedDescriptor) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  auto fd = adapters::ConnectUnix(server_->unix_path());
  ASSERT_TRUE(fd.ok()) << fd.status();
  ClientOptions options;
  options.option_mode = true;
  auto exp = engine->Attach(*fd, options, "attached");
  ASSERT_TRUE(exp.ok()) << exp.status();
  Export& e = **exp;
  EXPECT_EQ(e.uri(), "attached");
  ASSERT_EQ(e.info().phase(), ClientPhase::kNegotiating);
  auto list = e.OptList(kTimeout);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list, std::vector<std::string>{""});
  EXPECT_TRUE(e.OptInfo("", kTimeout).ok());
  ASSERT_TRUE(e.OptGo(kTimeout).ok());
  EXPECT_EQ(e.info().phase(), ClientPhase::kReady);
  std::vector<uint8_t> back(512, 0xee);
  Outcome read;
  ASSERT_TRUE(e.Read(0, 0, absl::MakeSpan(back), read.Callback()).ok());
  ASSERT_TRUE(engine->Drain().ok());
  EXPECT_EQ(read.calls, 1);
  EXPECT_EQ(back, std::vector<uint8_t>(512, 0));
  EXPECT_TRUE(engine->Shutdown().ok());
}

TEST_P(CommandsTest, RunUntilWaitsOnlyWhereTheAdapterCan) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  ASSERT_TRUE(engine->Open(server_->uri(), 1).ok());
  absl::Status s =
      engine->RunUntil([] { return false; }, absl::Milliseconds(50));
  if (GetParam() == Adapter::kBlocking) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    // Not the EIO nbd::StatusErrno falls back to without an errno.
    EXPECT_EQ(StatusErrno(s), EINVAL) << s;
  } else {
    EXPECT_EQ(StatusErrno(s), ETIMEDOUT) << s;
  }
  EXPECT_TRUE(engine->RunUntil([] { return true; }, kTimeout).ok());
  EXPECT_TRUE(engine->Shutdown().ok());
}

NBD_ENGINE_FOR_ALL_ADAPTERS(CommandsTest);

}  // namespace
}  // namespace nbd::test
