// `nbd bench` (BenchCommand / RunBench) against nbdkit memory. Never
// asserts on timing, only that work was done and reported.
#include "tools/nbd/bench.h"

#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/testing/servers.h"
#include "tests/tools/capture_fd.h"
#include "tools/nbd/command.h"

namespace nbd::tool {
namespace {

using ::nbd::test::CaptureFd;
using ::nbd::test::HaveProgram;
using ::nbd::test::ServerProcess;

GlobalOptions Globals() {
  GlobalOptions g;
  g.timeout = absl::Seconds(20);
  return g;
}

struct Output {
  int rc;
  std::string out;
  std::string err;
};

Output Bench(const std::vector<std::string>& args) {
  CaptureFd err(STDERR_FILENO);
  CaptureFd out(STDOUT_FILENO);
  int rc = BenchCommand(args, Globals());
  return {rc, out.Finish(), err.Finish()};
}

// The number after "\"key\": " in a flat JSON object; -1 if absent.
double JsonNumber(const std::string& json, const std::string& key) {
  std::string needle = "\"" + key + "\": ";
  size_t at = json.find(needle);
  if (at == std::string::npos) return -1;
  std::string rest = json.substr(at + needle.size());
  rest = rest.substr(0, rest.find_first_of(",}"));
  double v = -1;
  return absl::SimpleAtod(rest, &v) ? v : -1;
}

class BenchTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (!HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
    auto server = ServerProcess::StartNbdkit({"memory", "16M"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  std::unique_ptr<ServerProcess> server_;
};

TEST_P(BenchTest, ReadJson) {
  Output o = Bench({server_->Uri(), "--op", "read", "--bs", "4K", "--qd", "8",
                    "--seconds", "1", "--adapter", GetParam(), "--json"});
  ASSERT_EQ(o.rc, kExitOk) << o.err;
  std::vector<std::string> lines =
      absl::StrSplit(o.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u) << o.out;
  const std::string& json = lines[0];
  EXPECT_TRUE(absl::StartsWith(json, "{")) << json;
  EXPECT_TRUE(absl::EndsWith(json, "}")) << json;
  EXPECT_TRUE(absl::StrContains(json, "\"op\": \"read\"")) << json;
  EXPECT_TRUE(absl::StrContains(
      json, absl::StrCat("\"adapter\": \"", GetParam(), "\"")))
      << json;
  EXPECT_GT(JsonNumber(json, "ops"), 0) << json;
  EXPECT_EQ(JsonNumber(json, "bs"), 4096) << json;
  EXPECT_EQ(JsonNumber(json, "bytes"), JsonNumber(json, "ops") * 4096) << json;
  EXPECT_GT(JsonNumber(json, "ops_per_sec"), 0) << json;
  EXPECT_GT(JsonNumber(json, "mib_per_sec"), 0) << json;
  // Every operation costs the client some CPU; 0 would mean it was not
  // measured.
  EXPECT_GT(JsonNumber(json, "cpu_us_per_op"), 0) << json;
  EXPECT_GT(JsonNumber(json, "syscalls_per_op"), 0) << json;
  EXPECT_GT(JsonNumber(json, "seconds"), 0.5) << json;
}

TEST_P(BenchTest, WriteText) {
  Output o =
      Bench({server_->Uri(), "--op", "write", "--bs", "64K", "--seconds", "0.5",
             "--connections", "2", "--random", "--adapter", GetParam()});
  ASSERT_EQ(o.rc, kExitOk) << o.err;
  EXPECT_TRUE(absl::StrContains(o.out, "ops/s")) << o.out;
  EXPECT_TRUE(absl::StrContains(o.out, "MiB/s")) << o.out;
  EXPECT_TRUE(absl::StrContains(o.out, "syscalls/op")) << o.out;
}

TEST_P(BenchTest, RunBenchCountsOperations) {
  BenchOptions options;
  options.uri = server_->Uri();
  options.duration = absl::Milliseconds(300);
  options.queue_depth = 4;
  options.adapter = *ParseAdapter(GetParam());
  absl::StatusOr<BenchResult> r = RunBench(options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->ops, 0u);
  EXPECT_EQ(r->bytes, r->ops * 4096);
  EXPECT_EQ(r->connections, 1u);
}

INSTANTIATE_TEST_SUITE_P(Adapters, BenchTest,
                         ::testing::Values("blocking", "epoll", "io_uring"));

// A server that stops answering: the error names the server, the oldest
// command and its offset, and the timeout.
TEST_P(BenchTest, StalledServerNamesCommandAndOffset) {
  auto slow = ServerProcess::StartNbdkit(
      {"--filter=delay", "memory", "1M", "delay-read=30"});
  ASSERT_TRUE(slow.ok()) << slow.status();
  GlobalOptions g;
  g.timeout = absl::Seconds(1);
  CaptureFd err(STDERR_FILENO);
  CaptureFd out(STDOUT_FILENO);
  int rc = BenchCommand(
      {(*slow)->Uri(), "--seconds", "5", "--adapter", GetParam()}, g);
  std::string text = err.Finish();
  out.Finish();
  EXPECT_EQ(rc, kExitError) << text;
  EXPECT_EQ(text, "nbd: bench: " + (*slow)->Uri() +
                      ": read at offset 0: no reply from the server for 1s\n");
}

TEST(BenchUsageTest, Errors) {
  EXPECT_EQ(Bench({}).rc, kExitUsage);
  EXPECT_EQ(Bench({"nbd://x", "--op", "erase"}).rc, kExitUsage);
  EXPECT_EQ(Bench({"nbd://x", "--qd", "0"}).rc, kExitUsage);
  EXPECT_EQ(Bench({"nbd://x", "--seconds", "soon"}).rc, kExitUsage);
  EXPECT_EQ(Bench({"nbd://x", "--adapter", "smoke-signals"}).rc, kExitUsage);
  Output o = Bench({"nbd+unix:///?socket=/nonexistent/sock", "--seconds", "1"});
  EXPECT_EQ(o.rc, kExitError);
  std::vector<std::string> lines =
      absl::StrSplit(o.err, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u) << o.err;
  EXPECT_TRUE(absl::StartsWith(lines[0], "nbd: bench: ")) << o.err;
}

}  // namespace
}  // namespace nbd::tool
