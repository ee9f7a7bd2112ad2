// A data-parallel run's traces hold each rank's states (the initial one, those of --checkpoint-every, the
// final one), which hold what the steps do not compare: an optimizer's slots, the epoch's counts, the random
// streams' offsets. replay (in one process and under mpirun) and diff of a run's folder compare them, as for
// one process: a rank's checkpoint changed after it was written is not reproduced, nor identical.
// Skipped where trainrr was built without MPI or mpirun is missing.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

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
  // A rank trace cut short: the checkpoints before the cut are compared all the same.
  const std::string slots_cut = dir.file("slots_cut.trr");
  fs::create_directories(slots_cut);
  for (int r = 0; r < 2; ++r)
    fs::copy_file(trace::rank_trace_path(slots, r), trace::rank_trace_path(slots_cut, r));
  fs::resize_file(trace::rank_trace_path(slots_cut, 0),
                  fs::file_size(trace::rank_trace_path(slots_cut, 0)) * 3 / 4);
  const CommandResult cut = run_trainrr("diff " + slots_cut + " " + run);
  EXPECT_EQ(cut.exit_code, 1) << cut.output;
  EXPECT_TRUE(has(cut.output,
                  "diverged in the checkpoint at step 5, after step 4, rank 1, dense_1 (m/dense_1.kernel)"))
      << cut.output;
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

// A replay asked for fewer epochs than recorded stops first: the traces are whole, not cut. A run that ends
// first by its epochs is compared with a longer one cut further on: the cut is a note, past the steps
// compared, not the report's status.
// Each rank records its own loss (of its shards) and its own parameters: diff of two run folders compares
// them rank by rank, never rank 0's alone.
TEST_F(RunStates, DiffComparesEveryRanksLossAndParameters) {
  const std::string run = dir.file("run.trr");
  const CommandResult recorded =
      run_trainrr_env(kMpirun, "record " + example("digits_mlp.toml") +
                                   " --set train.epochs=1 --set runtime.threads=1 -o " + run);
  ASSERT_EQ(recorded.exit_code, 0) << recorded.output;
  auto rank1_edited = [&](const std::string& name, const std::function<void(trace::TraceStep&)>& edit) {
    const std::string to = dir.file(name);
    fs::create_directories(to);
    fs::copy_file(trace::rank_trace_path(run, 0), trace::rank_trace_path(to, 0));
    EXPECT_EQ(rewrite_trace(
                  trace::rank_trace_path(run, 1), trace::rank_trace_path(to, 1), [](trace::TraceHeader&) {},
                  [&](trace::TraceStep& s) {
                    if (s.index == 5 && s.end) edit(s);
                  }),
              "");
    return to;
  };
  const std::string loss = rank1_edited("loss.trr", [](trace::TraceStep& s) { s.end->loss += 9; });
  const CommandResult l = run_trainrr("diff " + run + " " + loss);
  EXPECT_EQ(l.exit_code, 1) << l.output;
  EXPECT_TRUE(has(l.output, "diverged at step 5, rank 1, loss (forward)")) << l.output;
  EXPECT_TRUE(has(l.output,
                  "cause: unexplained: the rank's shards hold the same rows of the data set and its "
                  "draws match"))
      << l.output;
  // replay finds it too, and places it before the allreduce, where the loss is computed.
  const CommandResult replayed = run_trainrr("replay " + loss);
  EXPECT_EQ(replayed.exit_code, 1) << replayed.output;
  EXPECT_TRUE(has(replayed.output, "diverged at step 5, rank 1, loss (forward)")) << replayed.output;
  EXPECT_TRUE(has(replayed.output,
                  "cause: the loss alone: every shard's gradient and every allreduce call of the "
                  "step matched the recording, and the rank's loss, computed before them, "
                  "differs"))
      << replayed.output;
  // A step's accuracy of rank 1's shards, its loss the same.
  const std::string accuracy = rank1_edited("accuracy.trr", [](trace::TraceStep& s) {
    for (auto& [name, value] : s.end->metrics) value += 0.25;
  });
  const CommandResult m = run_trainrr("diff " + run + " " + accuracy);
  EXPECT_EQ(m.exit_code, 1) << m.output;
  EXPECT_TRUE(has(m.output, "diverged at step 5, rank 1, metrics (forward)")) << m.output;
  EXPECT_TRUE(
      has(m.output, "the metrics of step 5 differ on rank 1, over its shards of the batch (accuracy "))
      << m.output;
  const std::string params = rank1_edited("params.trr", [](trace::TraceStep& s) {
    for (auto& [name, digest] : s.end->params) digest ^= 1;
  });
  const CommandResult p = run_trainrr("diff " + run + " " + params);
  EXPECT_EQ(p.exit_code, 1) << p.output;
  EXPECT_TRUE(has(p.output, "diverged at step 5, the parameters after the update (rank 1)")) << p.output;
}

// A stratified split reads the labels: with one label changed, the same draw splits other rows, and that is
// the runs' first difference, before any step.
TEST_F(RunStates, DiffOfRunFoldersComparesTheRowsOfTheSplit) {
  std::ifstream in(example("data/digits.csv"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t row = text.find('\n') + 1, end = text.find('\n', row), last = text.rfind(',', end) + 1;
  text.replace(last, end - last, std::to_string((std::stoi(text.substr(last, end - last)) + 1) % 10));
  const std::string changed = dir.write("digits.csv", text);
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  const std::string record =
      "record " + example("digits_mlp.toml") + " --set train.epochs=1 --set runtime.threads=1";
  ASSERT_EQ(run_trainrr_env(kMpirun, record + " -o " + a).exit_code, 0);
  ASSERT_EQ(run_trainrr_env(kMpirun, record + " --set data.path=" + changed + " -o " + b).exit_code, 0);
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "diverged at step 0, data/split (setup)")) << r.output;
  EXPECT_TRUE(has(r.output, "  cause: data: ")) << r.output;
  EXPECT_TRUE(has(r.output, "split: the train/test rows differ (")) << r.output;
  // A replay with another seed differs first where the run draws its initial weights, before any shard.
  const CommandResult seeded = run_trainrr("replay " + a + " --force none --set seed=8");
  EXPECT_EQ(seeded.exit_code, 1) << seeded.output;
  EXPECT_TRUE(has(seeded.output, "diverged at step 0, rank 0, init/dense_1.kernel (setup)")) << seeded.output;
  EXPECT_TRUE(has(seeded.output, "  cause: config: the run configuration differs: seed: ")) << seeded.output;
}

// A pixel of data row 100 changed, first read in a later step, beside a learning rate that makes step 0
// differ: the data is no cause of step 0, as for one process, and alone it is named at the step that reads
// it.
TEST_F(RunStates, DiffOfRunFoldersWeighsWhereTheChangedRowsAreRead) {
  std::ifstream in(example("data/digits.csv"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t at = 0;
  for (int line = 0; line < 101; ++line) at = text.find('\n', at) + 1;  // line 102: data row 100
  size_t field = at;
  for (int c = 0; c < 10; ++c) field = text.find(',', field) + 1;  // column p10
  const size_t comma = text.find(',', field);
  text.replace(field, comma - field, text.substr(field, comma - field) == "3" ? "4" : "3");
  const std::string changed = dir.write("digits.csv", text);
  const std::string record =
      "record " + example("digits_mlp.toml") + " --set train.epochs=1 --set runtime.threads=1";
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr"), c = dir.file("c.trr");
  ASSERT_EQ(run_trainrr_env(kMpirun, record + " -o " + a).exit_code, 0);
  ASSERT_EQ(run_trainrr_env(kMpirun, record + " --set data.path=" + changed + " -o " + b).exit_code, 0);
  ASSERT_EQ(run_trainrr_env(kMpirun, record + " --set data.path=" + changed +
                                         " --set train.optimizer.learning_rate=0.003 -o " + c)
                .exit_code,
            0);
  const CommandResult data = run_trainrr("diff " + a + " " + b);
  EXPECT_EQ(data.exit_code, 1) << data.output;
  EXPECT_TRUE(has(data.output,
                  " is the first to read a training row that differs (data row 100 (counting from "
                  "0), line 102 of the file)"))
      << data.output;
  EXPECT_FALSE(has(data.output, "before any step runs")) << data.output;
  for (const std::string& command : {"diff " + a + " " + c, "diff " + c + " " + a}) {
    const CommandResult both = run_trainrr(command);
    EXPECT_EQ(both.exit_code, 1) << both.output;
    EXPECT_TRUE(has(both.output, "diverged at step 0, the parameters after the update (rank 0)"))
        << both.output;
    EXPECT_TRUE(
        has(both.output, "  cause: config: the run configuration differs: train.optimizer.learning_rate: "))
        << both.output;
    EXPECT_TRUE(has(both.output, "  note: the data differs too, but cannot have made this difference (step "))
        << both.output;
  }
}

TEST_F(RunStates, ARunThatEndsFirstIsNotCalledCut) {
  const std::string one = dir.file("one.trr"), two = dir.file("two.trr");
  for (const auto& [epochs, path] : {std::pair{1, one}, std::pair{2, two}})
    ASSERT_EQ(run_trainrr_env(kMpirun, "record " + example("digits_mlp.toml") + " --set train.epochs=" +
                                           std::to_string(epochs) + " --set runtime.threads=1 -o " + path)
                  .exit_code,
              0);
  const CommandResult fewer = run_trainrr("replay " + two + " --set train.epochs=1");
  EXPECT_EQ(fewer.exit_code, 0) << fewer.output;
  EXPECT_TRUE(has(fewer.output,
                  "note: the replay stops first, at the end of its 45 steps: the traces' steps from "
                  "step 45 on are not compared"))
      << fewer.output;
  EXPECT_FALSE(has(fewer.output, "no footer")) << fewer.output;
  EXPECT_TRUE(has(fewer.output, "train.epochs changes how many steps run, not what a step computes"))
      << fewer.output;

  const std::string cut = dir.file("cut.trr");
  fs::create_directories(cut);
  fs::copy_file(trace::rank_trace_path(two, 1), trace::rank_trace_path(cut, 1));
  fs::copy_file(trace::rank_trace_path(two, 0), trace::rank_trace_path(cut, 0));
  fs::resize_file(trace::rank_trace_path(cut, 0), fs::file_size(trace::rank_trace_path(cut, 0)) * 9 / 10);
  const CommandResult d = run_trainrr("diff " + one + " " + cut);
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_EQ(d.output.rfind("diverged in the inputs only: no value compared differs (45 steps compared)\n", 0),
            0u)
      << d.output;
  EXPECT_TRUE(has(d.output, ": A ends first, after 45 steps")) << d.output;
  EXPECT_TRUE(has(d.output, "note: past the steps compared, B rank 0 (")) << d.output;
  // Cut before the other run ends: the inputs differ (train.epochs), as for one process, and the cut follows.
  fs::resize_file(trace::rank_trace_path(cut, 0), fs::file_size(trace::rank_trace_path(cut, 0)) / 3);
  const CommandResult early = run_trainrr("diff " + one + " " + cut);
  EXPECT_EQ(early.exit_code, 1) << early.output;
  EXPECT_EQ(early.output.rfind("diverged in the inputs only: no value compared differs (", 0), 0u)
      << early.output;
  EXPECT_TRUE(has(early.output, "\n  truncated: B rank 0 (")) << early.output;
}

}  // namespace
}  // namespace trainrr::testing
