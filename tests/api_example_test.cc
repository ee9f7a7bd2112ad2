// The README's C++ API example: its text is the program's, and the program records a run that replays.

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "tests/test_util.h"

namespace trainrr::testing {
namespace {

std::string file_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The lines between "// README begin" and "// README end", less the function body's two-space indent.
std::string marked_region(const std::string& source) {
  const std::string begin = "  // README begin\n", end = "  // README end\n";
  const size_t from = source.find(begin), to = source.find(end);
  if (from == std::string::npos || to == std::string::npos || to < from) return "";
  std::istringstream lines(source.substr(from + begin.size(), to - from - begin.size()));
  std::string out;
  for (std::string line; std::getline(lines, line);)
    out += (line.rfind("  ", 0) == 0 ? line.substr(2) : line) + "\n";
  return out;
}

// The first block fenced as `language` after the README's heading.
std::string readme_block(const std::string& heading, const std::string& language) {
  const std::string readme = file_text(std::string(TRAINRR_SOURCE_DIR) + "/README.md");
  const size_t section = readme.find(heading + "\n");
  if (section == std::string::npos) return "";
  const std::string fence = "```" + language + "\n";
  const size_t open = readme.find(fence, section);
  if (open == std::string::npos) return "";
  const size_t from = open + fence.size(), to = readme.find("```\n", from);
  return to == std::string::npos ? "" : readme.substr(from, to - from);
}

TEST(ApiExample, TheReadmeQuotesTheProgramVerbatim) {
  const std::string region =
      marked_region(file_text(std::string(TRAINRR_SOURCE_DIR) + "/examples/api_example.cc"));
  ASSERT_FALSE(region.empty());
  EXPECT_EQ(readme_block("## The C++ API", "cpp"), region);
}

TEST(ReadmeConfiguration, TheExampleIsAConfigurationThatTrains) {
  const std::string text = readme_block("## Configuration", "toml");
  ASSERT_FALSE(text.empty());
  TempDir dir;
  const std::string path = dir.write("readme.toml", text);
  // Its data path is relative to examples/, as the README's example is the breast-cancer one.
  const std::string data = std::string(TRAINRR_SOURCE_DIR) + "/examples/data/breast_cancer.csv";
  CommandResult r = run_trainrr("train " + path + " --set data.path=\"" + data + "\" --set train.epochs=1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("test: loss"), std::string::npos) << r.output;
}

#ifdef TRAINRR_API_EXAMPLE
TEST(ApiExample, RecordsARunThatReplaysBitForBit) {
  TempDir dir;
  const std::string trace = dir.file("api.trr");
  const std::string cmd =
      std::string(TRAINRR_API_EXAMPLE) + " " + example("breast_cancer.toml") + " " + trace + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p)) output += buf;
  ASSERT_EQ(pclose(p), 0) << output;
  EXPECT_NE(output.find("test: loss "), std::string::npos) << output;
  const CommandResult replay = run_trainrr("replay " + trace);
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_NE(replay.output.find("reproduced bit for bit (45 steps compared)"), std::string::npos)
      << replay.output;
  // Its initial and its final state, as every trace keeps them.
  const CommandResult show = run_trainrr("show " + trace);
  EXPECT_NE(show.output.find("checkpoints: 2: the initial state, after 45 steps\n"), std::string::npos)
      << show.output;
  // The recorder, not only the command line, refuses to write a trace over what is not one.
  const std::string notes = dir.write("notes.txt", "keep me\n");
  FILE* q =
      popen((std::string(TRAINRR_API_EXAMPLE) + " " + example("breast_cancer.toml") + " " + notes + " 2>&1")
                .c_str(),
            "r");
  ASSERT_NE(q, nullptr);
  std::string refused;
  while (std::fgets(buf, sizeof buf, q)) refused += buf;
  EXPECT_NE(pclose(q), 0) << refused;
  EXPECT_NE(refused.find("notes.txt: exists and is not a trainrr trace"), std::string::npos) << refused;
  EXPECT_EQ(file_text(notes), "keep me\n");
}
#endif

}  // namespace
}  // namespace trainrr::testing
