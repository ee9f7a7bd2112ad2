// The library's replay, diff and bisect (what the Python module and the C++ API call, not only the CLI) refuse
// one rank's trace of a data-parallel run and a run's folder: replayed alone, a rank's trace would "diverge"
// at its first shard's random draw, a wrong cause.

#include <gtest/gtest.h>

#include <filesystem>

#include "replayer/bisect.h"
#include "replayer/diff.h"
#include "replayer/replayer.h"
#include "tests/test_util.h"
#include "tests/trace_rewrite.h"
#include "traces/run_set.h"

namespace trainrr::testing {
namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(RankAlone, TheLibrarysReplayDiffAndBisectRefuseOneRankAndARunsFolder) {
  TempDir dir;
  const std::string plain = dir.file("plain.trr");
  ASSERT_EQ(run_trainrr("record " + example("breast_cancer.toml") + " --set train.epochs=1 -o " + plain).exit_code,
            0);
  const std::string folder = dir.file("run.trr");
  std::filesystem::create_directories(folder);
  const std::string rank1 = trace::rank_trace_path(folder, 1);
  ASSERT_EQ(rewrite_trace(plain, rank1,
                          [](trace::TraceHeader& h) {
                            h.rank = 1;
                            h.world_size = 2;
                            h.run_id = "abc";
                          }),
            "");

  ReplayOptions o;
  o.trace_path = rank1;
  const ReplayResult r = replay(o);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(has(r.error, "is rank 1 of the 2-rank run abc: replay needs every rank")) << r.error;

  const DiffResult d = diff_traces(plain, rank1);
  EXPECT_EQ(d.exit_code, 2);
  EXPECT_TRUE(has(d.error, "diff needs every rank")) << d.error;

  BisectOptions b;
  b.trace_path = rank1;
  const BisectResult bi = bisect(b);
  EXPECT_EQ(bi.exit_code, 2);
  EXPECT_TRUE(has(bi.error, "bisect needs every rank")) << bi.error;

  o.trace_path = folder;
  const ReplayResult f = replay(o);
  EXPECT_EQ(f.exit_code, 2);
  EXPECT_TRUE(has(f.error,
                  "is the folder of a data-parallel run: replay here takes one process's trace; "
                  "`trainrr replay` on the command line takes a run's folder"))
      << f.error;
  // A folder that holds no rank trace is not called a run.
  const std::string empty = folder + "-empty";
  std::filesystem::create_directory(empty);
  o.trace_path = empty;
  const ReplayResult e = replay(o);
  EXPECT_EQ(e.exit_code, 2);
  EXPECT_TRUE(has(e.error, empty + " is a folder, not a trace, and holds no rank traces")) << e.error;

  // A trace of one process is not affected.
  o.trace_path = plain;
  EXPECT_EQ(replay(o).exit_code, 0);
}

}  // namespace
}  // namespace trainrr::testing
