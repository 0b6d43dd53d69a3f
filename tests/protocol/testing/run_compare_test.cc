// ReportRuns (protocol/testing/run_compare.h): what the runners report when
// the replays of one scenario disagree. The cores never disagree with
// themselves, so the summaries here are made up. Also the small pieces of
// //protocol/testing:common the runners are built on.
#include "protocol/testing/run_compare.h"

#include <cstddef>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "protocol/testing/modes.h"
#include "protocol/testing/pending_input.h"

namespace nbd::testing {
namespace {

std::vector<RunSummary> TwoRuns() {
  RunSummary a{"a", {"x", "y"}, {"", ""}, {}, {{"client bytes", {1, 2, 3}}}};
  return {a, a};
}

TEST(ReportRuns, AgreeingRunsReportNothing) {
  EXPECT_TRUE(ReportRuns(TwoRuns()));
}

TEST(ReportRuns, ALogDifferenceNamesTheLine) {
  std::vector<RunSummary> runs = TwoRuns();
  runs[1].mode = "b";
  runs[1].log[1] = "z";
  EXPECT_NONFATAL_FAILURE(ReportRuns(runs),
                          "log of b differs from a at line 1: \"y\" vs \"z\"");
}

TEST(ReportRuns, AMessageDifferenceIsReported) {
  std::vector<RunSummary> runs = TwoRuns();
  runs[1].mode = "b";
  runs[1].messages[0] = "why";
  EXPECT_NONFATAL_FAILURE(ReportRuns(runs),
                          "messages of b differ from a at line 0");
}

TEST(ReportRuns, AnOutputDifferenceNamesTheByte) {
  std::vector<RunSummary> runs = TwoRuns();
  runs[1].mode = "b";
  runs[1].outputs["client bytes"] = {1, 2, 4, 5};
  EXPECT_NONFATAL_FAILURE(
      ReportRuns(runs),
      "client bytes of b differ from a at byte 2 (0x03 vs 0x04; 3 vs 4 "
      "bytes)");
}

TEST(ReportRuns, AFailureIsReportedOnceWithItsModes) {
  std::vector<RunSummary> runs = TwoRuns();
  runs[1].mode = "b";
  runs[0].failures = {"step 3 (expect): no"};
  runs[1].failures = {"step 3 (expect): no"};
  EXPECT_NONFATAL_FAILURE(ReportRuns(runs),
                          "step 3 (expect): no  [modes: a, b]");
}

TEST(LogMatchers, LinesStartingWithAndContainsInOrder) {
  const std::vector<std::string> log = {"a 1", "b", "a 2", "c"};
  EXPECT_THAT(LinesStartingWith(log, "a "),
              ::testing::ElementsAre("a 1", "a 2"));
  EXPECT_THAT(log, ContainsInOrder(std::vector<std::string>{"a 1", "c"}));
  EXPECT_THAT(log, ::testing::Not(
                       ContainsInOrder(std::vector<std::string>{"c", "a 1"})));
}

TEST(PendingInput, ConsumesFromTheFrontAcrossCompactions) {
  PendingInput in;
  Bytes all;
  for (int i = 0; i < 10000; ++i) all.push_back(static_cast<uint8_t>(i * 7));
  in.Append(all);
  size_t consumed = 0;
  while (consumed < 9000) {
    ASSERT_EQ(in.view().front(), all[consumed]);
    in.Consume(3);
    consumed += 3;
  }
  in.Append(Bytes{1, 2});
  EXPECT_EQ(in.size(), all.size() - consumed + 2);
  EXPECT_EQ(in.view().back(), 2);
  in.Consume(in.size());
  EXPECT_TRUE(in.empty());
}

TEST(Modes, NineModesStartingWithFeedWhole) {
  const std::vector<Mode> modes = AllModes();
  ASSERT_EQ(modes.size(), 9u);
  EXPECT_EQ(modes.front().name, "feed-whole");
  Splitter one_byte(modes[1]);
  EXPECT_EQ(one_byte.Piece(100), 1u);
  Splitter random(modes[2]);
  for (int i = 0; i < 1000; ++i) {
    const size_t piece = random.Piece(7);
    EXPECT_GE(piece, 1u);
    EXPECT_LE(piece, 7u);
  }
}

}  // namespace
}  // namespace nbd::testing
