// Unit tests of the `nbd` tool's argument parsing and output helpers.
#include "tools/nbd/args.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tools/nbd/extents.h"
#include "tools/nbd/json.h"

namespace nbd::tool {
namespace {

TEST(ParseSizeTest, SuffixesLikeNbdkit) {
  EXPECT_EQ(*ParseSize("0"), 0u);
  EXPECT_EQ(*ParseSize("512"), 512u);
  EXPECT_EQ(*ParseSize("1k"), 1024u);
  EXPECT_EQ(*ParseSize("1M"), 1048576u);
  EXPECT_EQ(*ParseSize("2G"), uint64_t{2} << 30);
  EXPECT_EQ(*ParseSize("1T"), uint64_t{1} << 40);
  EXPECT_EQ(*ParseSize("3s"), 1536u);
  EXPECT_EQ(*ParseSize("7b"), 7u);
  for (const char* bad : {"", "M", "1Q", "1MB", "-1", "1.5M", "16E", " 1"}) {
    EXPECT_FALSE(ParseSize(bad).ok()) << bad;
  }
}

TEST(ParseSecondsTest, Fractions) {
  EXPECT_EQ(*ParseSeconds("1"), absl::Seconds(1));
  EXPECT_EQ(*ParseSeconds("0.5"), absl::Milliseconds(500));
  EXPECT_FALSE(ParseSeconds("x").ok());
  EXPECT_FALSE(ParseSeconds("-1").ok());
}

TEST(GlobalOptionsTest, AnywhereAndRemoved) {
  std::vector<std::string> args = {"--debug", "info",          "--timeout", "2",
                                   "nbd://h", "--timeout=3.5", "--json"};
  GlobalOptions g;
  bool help = false;
  ASSERT_TRUE(ExtractGlobalOptions(args, &g, &help).ok());
  EXPECT_TRUE(g.debug);
  EXPECT_FALSE(help);
  EXPECT_EQ(g.timeout, absl::Milliseconds(3500));
  EXPECT_EQ(args, (std::vector<std::string>{"info", "nbd://h", "--json"}));

  std::vector<std::string> missing = {"info", "--timeout"};
  EXPECT_FALSE(ExtractGlobalOptions(missing, &g, &help).ok());
  std::vector<std::string> zero = {"--timeout", "0"};
  EXPECT_FALSE(ExtractGlobalOptions(zero, &g, &help).ok());
}

TEST(ParseArgsTest, OptionsBeforeAndAfterPositionals) {
  auto a = ParseArgs({"--json", "uri", "--memory", "1M", "--socket=/s", "x"},
                     {"--json"}, {"--memory", "--socket"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->positional, (std::vector<std::string>{"uri", "x"}));
  EXPECT_TRUE(a->Has("--json"));
  EXPECT_EQ(*a->Value("--memory"), "1M");
  EXPECT_EQ(*a->Value("--socket"), "/s");
  EXPECT_EQ(a->Value("--other"), nullptr);
  EXPECT_FALSE(ParseArgs({"--nope"}, {}, {}).ok());
  EXPECT_FALSE(ParseArgs({"--memory"}, {}, {"--memory"}).ok());
  EXPECT_FALSE(ParseArgs({"--json=1"}, {"--json"}, {}).ok());
  auto dashdash = ParseArgs({"--", "--json"}, {"--json"}, {});
  ASSERT_TRUE(dashdash.ok());
  EXPECT_EQ(dashdash->positional, (std::vector<std::string>{"--json"}));
}

TEST(FindCommandTest, SkipsOptionsAndTheirValues) {
  using Args = std::vector<std::string>;
  EXPECT_EQ(FindCommand(Args{"info", "nbd://h"}), 0u);
  EXPECT_EQ(FindCommand(Args{"--json", "info", "nbd://h"}), 1u);
  // A valued option before the command: its value is not the command.
  EXPECT_EQ(FindCommand(Args{"--adapter", "epoll", "copy", "a", "b"}), 2u);
  EXPECT_EQ(FindCommand(Args{"--adapter=epoll", "copy", "a", "b"}), 1u);
  EXPECT_EQ(FindCommand(Args{"--memory", "1M", "--read-only", "serve"}), 3u);
  EXPECT_EQ(FindCommand(Args{"--", "copy"}), 1u);
  EXPECT_EQ(FindCommand(Args{"--adapter"}), 1u);  // none
  EXPECT_EQ(FindCommand(Args{}), 0u);
  // An unknown word is still reported as the (unknown) command.
  EXPECT_EQ(FindCommand(Args{"frobnicate", "info"}), 0u);
}

TEST(OptionsForTest, EachCommandParsesItsOwnOptions) {
  auto copy = ParseArgs(
      {"--adapter", "epoll", "a", "--flush", "b", "--requests=3"}, "copy");
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->positional, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(*copy->Value("--adapter"), "epoll");
  EXPECT_EQ(*copy->Value("--requests"), "3");
  EXPECT_TRUE(copy->Has("--flush"));
  EXPECT_FALSE(ParseArgs({"--json"}, "copy").ok());  // bench's, not copy's
  EXPECT_TRUE(ParseArgs({"--json"}, "bench").ok());
  EXPECT_TRUE(ParseArgs({"--read-only", "--null", "1M"}, "serve").ok());
  EXPECT_FALSE(ParseArgs({"--json"}, "frobnicate").ok());
  EXPECT_TRUE(OptionsFor("frobnicate").flags.empty());
  EXPECT_TRUE(OptionsFor("frobnicate").valued.empty());
}

TEST(ExtentsTest, MergeAndFormat) {
  std::vector<MappedExtent> map;
  AppendExtents(0, {{4096, 0}, {4096, 0}, {8192, 3}}, &map);
  AppendExtents(16384, {{4096, 3}, {4096, 2}}, &map);
  ASSERT_EQ(map.size(), 3u);
  EXPECT_EQ(map[0], (MappedExtent{0, 8192, 0}));
  EXPECT_EQ(map[1], (MappedExtent{8192, 12288, 3}));
  EXPECT_EQ(map[2], (MappedExtent{20480, 4096, 2}));
  EXPECT_EQ(FormatExtentLine(map[1]), "      8192       12288    3  hole,zero");
  EXPECT_EQ(ExtentDescription(1), "hole");
  EXPECT_EQ(ExtentDescription(2), "zero");
  EXPECT_EQ(FormatExtentsJson({map[0]}),
            "[\n{ \"offset\": 0, \"length\": 8192, \"type\": 0, "
            "\"description\": \"data\"}\n]\n");
}

TEST(JsonTest, Escapes) {
  EXPECT_EQ(JsonString("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
  EXPECT_EQ(JsonString(std::string("\x01\xff", 2)), "\"\\u0001\\u00ff\"");
  EXPECT_EQ(JsonString("d\xc3\xa9j\xc3\xa0"), "\"d\xc3\xa9j\xc3\xa0\"");
}

}  // namespace
}  // namespace nbd::tool
