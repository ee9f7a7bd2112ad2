#include "replayer/report_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "replayer/report_html.h"

namespace trainrr {
namespace {

namespace fs = std::filesystem;

class ReportFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("trainrr-report-file-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  static void write(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
  }
  static std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  static mode_t mode(const std::string& path) {
    struct stat st {};
    ::stat(path.c_str(), &st);
    return st.st_mode & 0777;
  }
  fs::path dir_;
};

std::string a_report() {
  DivergenceReport r;
  r.command = "replay";
  return report_html(r);
}

TEST_F(ReportFile, EveryReportStartsWithTheMarkThatNamesTrainrr) {
  const std::string page = a_report();
  EXPECT_EQ(page.rfind(kReportStart, 0), 0u) << page.substr(0, 200);
  EXPECT_EQ(page.rfind(std::string(kReportStart) + " " + TRAINRR_VERSION + "\">", 0), 0u)
      << page.substr(0, 200);
}

TEST_F(ReportFile, AnHtmlPageTrainrrDidNotWriteIsRefusedAndKept) {
  const std::string page = file("thesis.html");
  const std::string mine = "<!doctype html>\n<html><body>precious work</body></html>\n";
  write(page, mine);
  const ReportPathCheck c = check_html_report_path(page);
  EXPECT_EQ(c.problem, ReportPathProblem::not_a_report);
  EXPECT_EQ(c.message, page +
                           " exists and is not an HTML report (a report trainrr wrote names trainrr as its "
                           "generator in its first bytes): refusing to overwrite it");
  EXPECT_EQ(read(page), mine);
  // The mark only part-way, or further in than the start: not a report either.
  write(page, std::string(kReportStart.substr(0, 40)));
  EXPECT_EQ(check_html_report_path(page).problem, ReportPathProblem::not_a_report);
  write(page, "<!doctype html>" + std::string(kReportStart));
  EXPECT_EQ(check_html_report_path(page).problem, ReportPathProblem::not_a_report);
}

TEST_F(ReportFile, AnEarlierReportOrAnEmptyFileIsReplacedWhole) {
  const std::string report = file("r.html"), empty = file("empty.html");
  write(report, a_report() + "<!-- from before -->");
  write(empty, "");
  for (const std::string& path : {report, empty, file("new.html")}) {
    EXPECT_EQ(check_html_report_path(path).problem, ReportPathProblem::none) << path;
    ASSERT_TRUE(write_html_report(path, a_report()).ok()) << path;
    EXPECT_EQ(read(path), a_report()) << path;
  }
  EXPECT_EQ(names(), (std::vector<std::string>{"empty.html", "new.html", "r.html"}));
}

TEST_F(ReportFile, AReplacedReportKeepsItsPermissions) {
  const std::string report = file("r.html");
  write(report, a_report());
  ::chmod(report.c_str(), 0600);
  ASSERT_TRUE(write_html_report(report, a_report() + "again").ok());
  EXPECT_EQ(read(report), a_report() + "again");
  EXPECT_EQ(mode(report), 0600u);
  ::chmod(report.c_str(), 0640);
  ASSERT_TRUE(write_html_report(report, a_report()).ok());
  EXPECT_EQ(mode(report), 0640u);
}

TEST_F(ReportFile, ALinkToAnEarlierReportReplacesTheReportAndKeepsTheLink) {
  const std::string report = file("r.html"), link = file("link.html");
  write(report, a_report() + "<!-- from before -->");
  fs::create_symlink(report, link);
  EXPECT_EQ(check_html_report_path(link).problem, ReportPathProblem::none);
  ASSERT_TRUE(write_html_report(link, a_report()).ok());
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(link)));
  EXPECT_EQ(read(report), a_report());
  EXPECT_EQ(names(), (std::vector<std::string>{"link.html", "r.html"}));
}

TEST_F(ReportFile, ALinkToNothingIsRefusedSayingSo) {
  const std::string link = file("dangling.html"), nowhere = file("gone/new.html");
  fs::create_symlink(nowhere, link);
  const ReportPathCheck c = check_html_report_path(link);
  EXPECT_EQ(c.problem, ReportPathProblem::dangling_link);
  EXPECT_EQ(c.message, link + " is a symbolic link to " + nowhere +
                           ", which does not exist: a report is written through a link only to an earlier "
                           "report; give the report's own path");
}

}  // namespace
}  // namespace trainrr
