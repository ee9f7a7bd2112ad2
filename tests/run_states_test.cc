// A data-parallel run's traces hold each rank's states (the initial one, those of --checkpoint-every, the
// final one), which hold what the steps do not compare: an optimizer's slots, the epoch's counts, the random
// streams' offsets. replay (in one process and under mpirun) and diff of a run's folder compare them, as for
// one process: a rank's checkpoint changed after it was written is not reproduced, nor identical.
// Skipped where trainrr was built without MPI or mpirun is missing.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "tests/test_util.h"
#include "tests/trace_rewrite.h"
#include "traces/run_set.h"

namespace trainrr::testing {
namespace {

namespace fs = std::filesystem;

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// mpirun as root, with more ranks than cores, over loopback and shared memory (tests/mpi_test.sh's settings).
const std::string kMpirun =
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "
    "OMPI_MCA_btl=self,vader ASAN_OPTIONS=detect_leaks=0 mpirun -n 2";

class RunStates : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef TRAINRR_WITH_MPI
    GTEST_SKIP() << "trainrr was built without MPI";
#else
    if (std::system("command -v mpirun >/dev/null 2>&1") != 0) GTEST_SKIP() << "mpirun is not installed";
#endif
  }

  // A copy of the run at `from` whose rank `rank` has `edit` applied to its checkpoint after `step` steps.
  std::string edited(const std::string& from, const std::string& name, int rank, int64_t step,
                     const std::function<void(trace::TraceCheckpoint&)>& edit) {
    const std::string to = dir.file(name);
    fs::create_directories(to);
    for (int r = 0; r < 2; ++r) {
      const std::string in = trace::rank_trace_path(from, r), out = trace::rank_trace_path(to, r);
      if (r != rank) {
        fs::copy_file(in, out);
        continue;
      }
      EXPECT_EQ(rewrite_trace(
                    in, out, [](trace::TraceHeader&) {}, {},
                    [&](trace::TraceCheckpoint& c) {
                      if (c.step == step) edit(c);
                      return true;
                    }),
                "");
    }
    return to;
  }

  TempDir dir;
};

TEST_F(RunStates, ARanksCheckpointChangedAfterItWasWrittenIsNotReproduced) {
  const std::string run = dir.file("run.trr");
  const CommandResult recorded = run_trainrr_env(
      kMpirun, "record " + example("digits_mlp.toml") +
                   " --set train.epochs=1 --set runtime.threads=1 --checkpoint-every 5 -o " + run);
  ASSERT_EQ(recorded.exit_code, 0) << recorded.output;
  // The recording reproduces, and is identical to itself, its states compared.
  const CommandResult same = run_trainrr("replay " + run);
  EXPECT_EQ(same.exit_code, 0) << same.output;
  EXPECT_EQ(run_trainrr("diff " + run + " " + run).exit_code, 0);

  // Rank 1's Adam slots in its checkpoint after 5 steps, multiplied by 1000.
  const std::string slots = edited(run, "slots.trr", 1, 5, [](trace::TraceCheckpoint& c) {
    for (auto& t : c.tensors)
      if (t.name.starts_with("m/"))
        for (float& v : t.value.data) v *= 1000;
  });
  for (const std::string& command : {"replay " + slots, "bisect " + slots, "diff " + run + " " + slots}) {
    const CommandResult r = run_trainrr(command);
    EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output,
                    "diverged in the checkpoint at step 5, after step 4, rank 1, dense_1 (m/dense_1.kernel)"))
        << command << "\n"
        << r.output;
    EXPECT_TRUE(has(r.output,
                    "cause: unexplained: same kernel selections, every value the steps compared the "
                    "same, a different state, and nothing recorded differs"))
        << command << "\n"
        << r.output;
    EXPECT_TRUE(has(r.output, "differs in m/dense_1.kernel")) << command << "\n" << r.output;
  }
  const CommandResult under_mpirun = run_trainrr_env(kMpirun, "replay " + slots);
  EXPECT_EQ(under_mpirun.exit_code, 1) << under_mpirun.output;
  EXPECT_TRUE(has(under_mpirun.output,
                  "diverged in the checkpoint at step 5, after step 4, rank 1, dense_1 (m/dense_1.kernel)"))
      << under_mpirun.output;

  // The same tensors at another place in the run (rank 0's random streams' offsets): the recorded choices
  // fix that place, and the trace is named.
  const std::string offsets = edited(run, "offsets.trr", 0, 10, [](trace::TraceCheckpoint& c) {
    for (auto& [stream, offset] : c.rng_offsets) offset += 1;
  });
  for (const std::string& command : {"replay " + offsets, "diff " + run + " " + offsets}) {
    const CommandResult r = run_trainrr(command);
    EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output,
                    "diverged in the checkpoint at step 10, after step 9, rank 0 ((place in the run))\n"
                    "  cause: trace: the checkpoint at step 10"))
        << command << "\n"
        << r.output;
  }

  // Rank 0's final state and initial state, each changed alone.
  const std::string final_state = edited(run, "final.trr", 0, 45, [](trace::TraceCheckpoint& c) {
    for (auto& [name, value] : c.scalars)
      if (name == "optimizer.iterations") value += 1;
  });
  for (const std::string& command : {"replay " + final_state, "diff " + run + " " + final_state}) {
    const CommandResult r = run_trainrr(command);
    EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output, "diverged in the final state, after step 44, rank 0")) << command << "\n"
                                                                                     << r.output;
  }
  const std::string initial = edited(run, "initial.trr", 1, 0, [](trace::TraceCheckpoint& c) {
    for (auto& t : c.tensors)
      if (t.name == "dense_1.bias") t.value.data[0] += 1;
  });
  for (const std::string& command : {"replay " + initial, "diff " + run + " " + initial}) {
    const CommandResult r = run_trainrr(command);
    EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output, "diverged in the initial state, before step 0, rank 1")) << command << "\n"
                                                                                       << r.output;
  }
}

}  // namespace
}  // namespace trainrr::testing
