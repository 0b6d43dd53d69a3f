// Commands issued with a Tag complete through EngineOptions::on_complete
// (and a tagged block status through on_extents first), once each, through
// every adapter; without on_complete a Tag is refused.
#include <cerrno>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "adapters/engine/engine.h"
#include "gtest/gtest.h"
#include "protocol/client/client.h"
#include "protocol/status.h"
#include "tests/adapters/engine/engine_fixture.h"

namespace nbd::test {
namespace {

using engine::Engine;
using engine::Export;
using engine::Tag;

using TagsTest = EngineTest;

// What on_complete/on_extents saw for one tag, in call order.
struct TagLog {
  int completions = 0;
  int extents_calls = 0;
  bool extents_before_completion = false;
  absl::Status status;
  const Export* exp = nullptr;
  size_t conn = ~size_t{0};
  uint64_t extents_offset = ~uint64_t{0};
  std::vector<Extent> extents;
};

class Tagged {
 public:
  engine::EngineOptions Options(engine::Adapter adapter) {
    engine::EngineOptions o;
    o.adapter = adapter;
    o.timeout = kTimeout;
    o.on_complete = [this](const Export& e, size_t conn, uint64_t tag,
                           const absl::Status& s) {
      TagLog& log = logs_[tag];
      ++log.completions;
      log.status = s;
      log.exp = &e;
      log.conn = conn;
    };
    o.on_extents = [this](const Export&, size_t, uint64_t tag, uint64_t offset,
                          const std::vector<Extent>& x) {
      TagLog& log = logs_[tag];
      ++log.extents_calls;
      log.extents_before_completion = log.completions == 0;
      log.extents_offset = offset;
      log.extents = x;
    };
    return o;
  }
  std::map<uint64_t, TagLog>& logs() { return logs_; }

 private:
  std::map<uint64_t, TagLog> logs_;
};

TEST_P(TagsTest, EveryTaggedCommandCompletesOnceThroughOnComplete) {
  Tagged tagged;
  auto engine = Engine::Create(tagged.Options(GetParam()));
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto exp = (*engine)->Open(server_->uri(), 2);
  ASSERT_TRUE(exp.ok()) << exp.status();
  Export& e = **exp;
  ASSERT_EQ(e.connections(), 2u);

  std::vector<uint8_t> data = Pattern(65536, 5);
  std::vector<uint8_t> back(65536, 0xee);
  ASSERT_TRUE(e.Write(0, 0, data, 0, Tag{1}).ok());
  ASSERT_TRUE(e.Flush(0, Tag{2}).ok());
  ASSERT_TRUE(e.Trim(1, 262144, 4096, 0, Tag{3}).ok());
  ASSERT_TRUE(e.WriteZeroes(1, 131072, 4096, 0, Tag{4}).ok());
  ASSERT_TRUE(e.Cache(0, 0, 4096, 0, Tag{5}).ok());
  EXPECT_TRUE(tagged.logs().empty());  // nothing inside the issuing calls
  ASSERT_TRUE((*engine)->Drain().ok());
  EXPECT_EQ(tagged.logs().size(), 5u);
  // Separate round: commands in flight together may run in any order.
  ASSERT_TRUE(e.Read(1, 0, absl::MakeSpan(back), Tag{6}).ok());
  ASSERT_TRUE(e.BlockStatus(0, 0, kExportSize, Tag{7}).ok());
  // A Done and a Tag mix on one export; the Done's command is not logged.
  Outcome with_done;
  ASSERT_TRUE(e.Flush(1, with_done.Callback()).ok());
  EXPECT_EQ(tagged.logs().size(), 5u);
  EXPECT_EQ((*engine)->in_flight(), 3u);
  ASSERT_TRUE((*engine)->Drain().ok());

  ASSERT_EQ(tagged.logs().size(), 7u);
  for (auto& [tag, log] : tagged.logs()) {
    EXPECT_EQ(log.completions, 1) << tag;
    EXPECT_TRUE(log.status.ok()) << tag << ": " << log.status;
    EXPECT_EQ(log.exp, &e) << tag;
    EXPECT_EQ(log.extents_calls, tag == 7 ? 1 : 0) << tag;
  }
  EXPECT_EQ(tagged.logs()[1].conn, 0u);
  EXPECT_EQ(tagged.logs()[3].conn, 1u);
  EXPECT_EQ(tagged.logs()[6].conn, 1u);
  EXPECT_EQ(back, data);
  EXPECT_EQ(with_done.calls, 1);
  const TagLog& bs = tagged.logs()[7];
  EXPECT_TRUE(bs.extents_before_completion);
  EXPECT_EQ(bs.extents_offset, 0u);
  uint64_t covered = 0;
  for (const Extent& x : bs.extents) covered += x.length;
  EXPECT_GT(covered, 0u);
  EXPECT_LE(covered, kExportSize);
  EXPECT_TRUE((*engine)->Shutdown().ok());
}

TEST_P(TagsTest, ServerErrorReachesOnCompleteWithItsTag) {
  backend_->FailReads(8192, 4096, EIO);
  Tagged tagged;
  auto engine = Engine::Create(tagged.Options(GetParam()));
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto exp = (*engine)->Open(server_->uri(), 1);
  ASSERT_TRUE(exp.ok()) << exp.status();
  std::vector<uint8_t> good(4096), bad(4096);
  ASSERT_TRUE((*exp)->Read(0, 8192, absl::MakeSpan(bad), Tag{41}).ok());
  ASSERT_TRUE((*exp)->Read(0, 0, absl::MakeSpan(good), Tag{42}).ok());
  ASSERT_TRUE((*engine)->Drain().ok());
  EXPECT_EQ(tagged.logs()[41].completions, 1);
  EXPECT_EQ(StatusErrno(tagged.logs()[41].status), EIO);
  EXPECT_EQ(tagged.logs()[42].completions, 1);
  EXPECT_TRUE(tagged.logs()[42].status.ok());
  EXPECT_TRUE((*engine)->Shutdown().ok());
}

TEST_P(TagsTest, TagWithoutOnCompleteIsRefused) {
  std::unique_ptr<Engine> engine = NewEngine();
  ASSERT_NE(engine, nullptr);
  auto exp = engine->Open(server_->uri(), 1);
  ASSERT_TRUE(exp.ok()) << exp.status();
  std::vector<uint8_t> buf(4096);
  absl::Status s = (*exp)->Read(0, 0, absl::MakeSpan(buf), Tag{1});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(StatusErrno(s), EINVAL);
  EXPECT_EQ((*exp)->BlockStatus(0, 0, 4096, Tag{2}).code(),
            absl::StatusCode::kInvalidArgument);
  // The same through the thread-safe handle, at the submit call.
  engine::ThreadSafeExport ts = (*exp)->thread_safe();
  EXPECT_EQ(ts.Flush(0, Tag{3}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->in_flight(), 0u);
  EXPECT_TRUE(engine->Shutdown().ok());
}

TEST_P(TagsTest, TaggedBlockStatusWithoutOnExtentsStillCompletes) {
  Tagged tagged;
  engine::EngineOptions options = tagged.Options(GetParam());
  options.on_extents = nullptr;
  auto engine = Engine::Create(std::move(options));
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto exp = (*engine)->Open(server_->uri(), 1);
  ASSERT_TRUE(exp.ok()) << exp.status();
  ASSERT_TRUE((*exp)->BlockStatus(0, 0, kExportSize, Tag{9}).ok());
  ASSERT_TRUE((*engine)->Drain().ok());
  EXPECT_EQ(tagged.logs()[9].completions, 1);
  EXPECT_EQ(tagged.logs()[9].extents_calls, 0);
  EXPECT_TRUE(tagged.logs()[9].status.ok());
  EXPECT_TRUE((*engine)->Shutdown().ok());
}

NBD_ENGINE_FOR_ALL_ADAPTERS(TagsTest);

}  // namespace
}  // namespace nbd::test
