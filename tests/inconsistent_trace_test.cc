// A trace that does not follow the run its own configuration describes (an event no run of it makes, an
// event it makes twice, a batch no loader can hand out, a configuration this trainrr cannot read): replay and
// diff say so, and never blame the arithmetic, a loader's race or a configuration difference for it.

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <vector>

#include "tests/test_util.h"
#include "tests/trace_rewrite.h"

namespace trainrr::testing {
namespace {

bool has(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

class InconsistentTrace : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_ = new TempDir;
    const CommandResult r =
        run_trainrr("record " + example("breast_cancer.toml") +
                    " --set train.epochs=1 --set runtime.policy=deterministic --level layer -o " +
                    shared_->file("a.trr"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() {
    delete shared_;
    shared_ = nullptr;
  }
  static std::string recorded() { return shared_->file("a.trr"); }

  // The recording with `edit` applied to its step `step`, as bad.trr.
  std::string with_step(int64_t step, const std::function<void(trace::TraceStep&)>& edit) {
    const std::string bad = dir.file("bad.trr");
    EXPECT_EQ(rewrite_trace(
                  recorded(), bad, [](trace::TraceHeader&) {},
                  [&](trace::TraceStep& s) {
                    if (s.index == step) edit(s);
                  }),
              "");
    return bad;
  }

  // The recording with step `step`'s batch-order event saying it took batch `batch`.
  std::string with_batch(int64_t step, int64_t batch) {
    bool edited = false;
    const std::string bad = with_step(step, [&](trace::TraceStep& s) {
      for (auto& e : s.events)
        if (auto* b = std::get_if<trace::BatchOrderEvent>(&e)) {
          b->batch = batch;
          edited = true;
        }
    });
    EXPECT_TRUE(edited) << "step " << step << " holds no batch-order event";
    return bad;
  }

  static TempDir* shared_;
  TempDir dir;
};
TempDir* InconsistentTrace::shared_ = nullptr;

const std::string kTrace = "the trace does not follow the run its configuration describes";
const std::string kATrace = "a trace does not follow the run its configuration describes";

TEST_F(InconsistentTrace, AProbeOfALayerTheModelDoesNotHaveIsNoArithmetic) {
  bool edited = false;
  const std::string bad = with_step(0, [&](trace::TraceStep& s) {
    for (auto& e : s.events)
      if (auto* p = std::get_if<trace::ProbeEvent>(&e); p && p->site == "dense_1:out" && !edited) {
        p->site = "ghost_9:out";
        edited = true;
      }
  });
  ASSERT_TRUE(edited);
  const CommandResult r = run_trainrr("replay " + bad);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output,
                  "  cause: trace: the replay probes dense_1:out, the recording has no such probe in this "
                  "step; " +
                      kTrace))
      << r.output;
  EXPECT_FALSE(has(r.output, "numeric")) << r.output;
  const CommandResult d = run_trainrr("diff " + recorded() + " " + bad);
  ASSERT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "  cause: trace: ")) << d.output;
  EXPECT_TRUE(has(d.output, kATrace)) << d.output;
}

TEST_F(InconsistentTrace, AProbeRecordedTwiceIsCountedAndNamedAsTheTrace) {
  const std::string bad = with_step(1, [&](trace::TraceStep& s) {
    std::vector<trace::Event> twice;
    for (const auto& e : s.events) {
      twice.push_back(e);
      if (std::holds_alternative<trace::ProbeEvent>(e)) twice.push_back(e);
    }
    s.events = std::move(twice);
  });
  const CommandResult r = run_trainrr("replay " + bad);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step 1, forward, dense_1 (dense_1:out)\n", 0), 0u) << r.output;
  EXPECT_TRUE(has(
      r.output,
      "  cause: trace: the recording has 2 events at dense_1:out in step 1, the replay made 1; " + kTrace))
      << r.output;
}

TEST_F(InconsistentTrace, ABatchNoLoaderCanHandOutIsNoLoaderRace) {
  for (const int64_t batch : {int64_t{15}, int64_t{0}}) {  // one past the epoch's 15 batches; step 0's again
    const std::string bad = with_batch(1, batch);
    const CommandResult r = run_trainrr("replay " + bad);
    ASSERT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(has(r.output, "  cause: trace: step 1: the recorded batch " + std::to_string(batch) +
                                  " cannot be handed out here ("))
        << r.output;
    EXPECT_TRUE(has(r.output, "no loader hands out such a batch, so " + kTrace)) << r.output;
    EXPECT_FALSE(has(r.output, "hands out batches in the order its workers finish")) << r.output;
  }
}

TEST_F(InconsistentTrace, AConfigurationThisTrainrrCannotReadIsNamedInADiff) {
  const std::string bad = dir.file("bad.trr");
  ASSERT_EQ(rewrite_trace(recorded(), bad, [](trace::TraceHeader& h) { h.config += "\nunknown_key = 1\n"; }),
            "");
  const CommandResult d = run_trainrr("diff " + recorded() + " " + bad);
  EXPECT_TRUE(has(d.output, "the configuration texts differ, and this trainrr cannot read B's ("))
      << d.output;
}

// A summary claiming values the digest's values do not have (non-finite ones, which show reports, another
// sum, minimum or maximum: a summary is computed in one order on every machine): replay and diff say the
// trace was changed, where they said it reproduced, or the runs were identical.
TEST_F(InconsistentTrace, ASummaryThatDoesNotDescribeItsDigestsValuesIsNamed) {
  struct Edit {
    std::function<void(Summary&)> edit;
    std::string field, value;  // as the reports name them
  };
  const std::vector<Edit> edits = {
      {[](Summary& x) { x.non_finite = 5; }, "not finite", "5"},
      {[](Summary& x) { x.sum = 12345.5; }, "sum", "12345.5"},
      {[](Summary& x) { x.sum_sq = 0.5; }, "sum of squares", "0.5"},
      {[](Summary& x) { x.min = -1000; }, "min", "-1000"},
      {[](Summary& x) { x.max = std::numeric_limits<float>::quiet_NaN(); }, "max", "nan"},
  };
  for (const Edit& edit : edits) {
    bool edited = false;
    const std::string bad = with_step(1, [&](trace::TraceStep& s) {
      for (auto& e : s.events)
        if (auto* p = std::get_if<trace::ProbeEvent>(&e); p && p->site == "dense_1:out") {
          edit.edit(p->fingerprint.summary);
          edited = true;
        }
    });
    ASSERT_TRUE(edited);
    const CommandResult r = run_trainrr("replay " + bad);
    ASSERT_EQ(r.exit_code, 1) << r.output;
    EXPECT_EQ(r.output.rfind("diverged at step 1, forward, dense_1 (dense_1:out)\n", 0), 0u) << r.output;
    EXPECT_TRUE(has(r.output,
                    "  cause: trace: the recording's summary of dense_1:out does not describe the values its "
                    "digest is of, which the replay computed: " +
                        edit.field + " " + edit.value + " (recorded) vs "))
        << r.output;
    EXPECT_TRUE(has(r.output, "the trace was changed after it was written")) << r.output;
    const CommandResult d = run_trainrr("diff " + recorded() + " " + bad);
    ASSERT_EQ(d.exit_code, 1) << d.output;
    EXPECT_TRUE(has(d.output, "summaries: " + edit.field + " ")) << d.output;
    EXPECT_TRUE(has(d.output, " vs " + edit.value + " (B): a trace was changed after it was written"))
        << d.output;
  }
}

// A step's recorded metric (its batch's accuracy) that is not what the step computes: the replay compares it,
// as its report says ("each step's loss, metrics and parameters"), as diff does.
TEST_F(InconsistentTrace, AStepsMetricThatIsNotWhatTheStepComputesIsNamed) {
  const std::string bad = with_step(1, [](trace::TraceStep& s) {
    ASSERT_TRUE(s.end && !s.end->metrics.empty());
    s.end->metrics[0].second = 0.999;
  });
  const CommandResult r = run_trainrr("replay " + bad);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step 1, forward, metrics\n", 0), 0u) << r.output;
  EXPECT_TRUE(has(r.output, "the metrics of step 1 differ (accuracy 0.999 vs ")) << r.output;
  EXPECT_FALSE(has(r.output, "reproduced")) << r.output;
  const CommandResult free = run_trainrr("replay " + bad + " --force none");
  EXPECT_EQ(free.exit_code, 1) << free.output;
  EXPECT_TRUE(has(free.output, "the metrics of step 1 differ")) << free.output;
}

// An epoch's logs under other names (val_loss, val_accuracy, where the run holds out no data): compared by
// name, not by position.
TEST_F(InconsistentTrace, AnEpochsLogsUnderOtherNamesAreNamed) {
  const std::string bad = dir.file("bad.trr");
  ASSERT_EQ(rewrite_trace(
                recorded(), bad, [](trace::TraceHeader&) {}, {}, {}, {},
                [](trace::TraceEpoch& e) {
                  for (auto& [name, value] : e.logs) name = "val_" + name;
                }),
            "");
  const CommandResult r = run_trainrr("replay " + bad);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "the metrics of epoch 1 differ: val_loss ")) << r.output;
  EXPECT_TRUE(has(r.output, " (recorded), none (replayed)")) << r.output;
  EXPECT_TRUE(has(r.output, "loss none (recorded), ")) << r.output;
  EXPECT_TRUE(has(
      r.output,
      "  cause: trace: one side holds an epoch log the other's run does not make; the trace does not follow"))
      << r.output;
  EXPECT_FALSE(has(r.output, "arithmetic")) << r.output;
  const CommandResult d = run_trainrr("diff " + recorded() + " " + bad);
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "the metrics of epoch 1 differ: loss ")) << d.output;
  EXPECT_TRUE(has(d.output, " (A), none (B)")) << d.output;
}

// A configuration whose split settings were changed after the trace was written: the split served (every
// recorded choice forced) is not the one that configuration makes from the recorded draws.
TEST_F(InconsistentTrace, ASplitTheConfigurationDoesNotMakeIsNamed) {
  const std::string bad = dir.file("bad.trr");
  ASSERT_EQ(rewrite_trace(recorded(), bad,
                          [](trace::TraceHeader& h) {
                            const std::string was = "test_fraction = 0.2";
                            ASSERT_NE(h.config.find(was), std::string::npos) << h.config;
                            h.config.replace(h.config.find(was), was.size(), "test_fraction = 0.25");
                          }),
            "");
  const CommandResult r = run_trainrr("replay " + bad);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step 0, setup data/split\n  cause: trace: recorded ", 0), 0u)
      << r.output;
  EXPECT_TRUE(has(r.output,
                  "the recorded split (served here) is not the one the trace's configuration makes from "
                  "its recorded draws; " +
                      kTrace))
      << r.output;
  // The user's own --set of the split is a configuration difference the served split answers, as before.
  const CommandResult set = run_trainrr("replay " + recorded() + " --set data.test_fraction=0.25");
  EXPECT_FALSE(has(set.output, "cause: trace")) << set.output;
}

// Without the kernel choices of one trace, the two runs are not known to have made the same choices.
TEST_F(InconsistentTrace, ADiffOfATraceWithoutKernelChoicesDoesNotSayTheChoicesAreTheSame) {
  const std::string bad = dir.file("bad.trr");
  ASSERT_EQ(rewrite_trace(
                recorded(), bad, [](trace::TraceHeader&) {},
                [](trace::TraceStep& s) {
                  std::erase_if(s.events, [](const trace::Event& e) {
                    return std::holds_alternative<KernelChoice>(e);
                  });
                }),
            "");
  const CommandResult d = run_trainrr("diff " + recorded() + " " + bad);
  ASSERT_EQ(d.exit_code, 0) << d.output;
  EXPECT_EQ(d.output.rfind(
                "identical: the two runs computed the same bits; one trace holds kernel choices the other "
                "does not",
                0),
            0u)
      << d.output;
  EXPECT_TRUE(has(d.output, "A holds kernel choices that B does not, at ")) << d.output;
  EXPECT_FALSE(has(d.output, "made the same choices")) << d.output;
}

// A configuration whose model is not the one the recorded initial weights were drawn for: with the same seed,
// configuration and data a run draws the same words before its first step, so the draw is not the cause.
TEST_F(InconsistentTrace, AnInitialDrawItsConfigurationDoesNotMakeIsNoRngCause) {
  const std::string bad = dir.file("bad.trr");
  ASSERT_EQ(rewrite_trace(recorded(), bad,
                          [](trace::TraceHeader& h) {
                            const auto at = h.config.find("units = 16");
                            ASSERT_NE(at, std::string::npos);
                            h.config.replace(at, 10, "units = 17");
                          }),
            "");
  const CommandResult r = run_trainrr("replay " + bad);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step 0, setup, dense_1 init (init/dense_1.kernel)\n", 0), 0u)
      << r.output;
  EXPECT_TRUE(
      has(r.output, "  cause: trace: draw at init/dense_1.kernel: recorded stream init/dense_1.kernel"))
      << r.output;
  EXPECT_TRUE(has(r.output, " count 480, replayed stream init/dense_1.kernel")) << r.output;
  EXPECT_TRUE(has(r.output, " count 510; " + kTrace)) << r.output;
  EXPECT_FALSE(has(r.output, "cause: rng")) << r.output;
}

// A shuffle recorded as ordering far more rows than the run trains on (455), with a draw of that many words
// and a footer that claims no schedule: replay, diff and bisect name the trace before anything is made of
// the length, rather than reproducing it, calling the runs the same, or running out of memory on it.
TEST_F(InconsistentTrace, AShuffleOfRowsTheRunDoesNotHaveIsTheTraceNotTheMachine) {
  const uint64_t rows = uint64_t{1} << 40;
  const std::string bad = dir.file("bad.trr");
  bool edited = false;
  ASSERT_EQ(rewrite_trace(
                recorded(), bad, [](trace::TraceHeader&) {},
                [&](trace::TraceStep& s) {
                  for (auto& e : s.events)
                    if (auto* sh = std::get_if<trace::ShuffleEvent>(&e); sh && sh->draw && s.index == 0) {
                      sh->length = rows;
                      sh->draw->count = rows - 1;
                      edited = true;
                    }
                },
                {},
                [](trace::TraceFooter& f) {
                  f.completed = false;
                  f.end_reason = "interrupted";
                }),
            "");
  ASSERT_TRUE(edited);
  const std::string what = "epoch 1: the recorded shuffle of " + std::to_string(rows) +
                           " rows is not an order of the run's 455 training rows";
  const CommandResult r = run_trainrr("replay " + bad);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step 0, input data/shuffle\n", 0), 0u) << r.output;
  EXPECT_TRUE(has(r.output,
                  "  cause: trace: " + what + "; every epoch shuffles the run's training rows, so " + kTrace))
      << r.output;
  const CommandResult d = run_trainrr("diff " + recorded() + " " + bad);
  ASSERT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "  cause: trace: epoch 1: the recorded shuffles order 455 rows (A) and " +
                                std::to_string(rows) +
                                " rows (B): one of them is not an order of the run's "
                                "training rows; every epoch shuffles the run's training rows, so " +
                                kATrace))
      << d.output;
  EXPECT_FALSE(has(d.output, "same choices")) << d.output;
  const CommandResult b = run_trainrr("bisect " + bad);
  ASSERT_EQ(b.exit_code, 1) << b.output;
  EXPECT_TRUE(has(b.output, "first suspect step 0: " + what)) << b.output;
  EXPECT_TRUE(has(b.output, "  cause: trace: " + what)) << b.output;
  EXPECT_FALSE(has(b.output, "out of memory")) << b.output;
}

// diff says what replay says of a recorded batch that no loader can hand out (one past the epoch's 15
// batches, or one the epoch handed out already): the trace, not a loader's race.
TEST_F(InconsistentTrace, ADiffOfABatchNoLoaderCanHandOutNamesTheTraceNotTheLoader) {
  for (const auto& item : {std::pair{int64_t{15}, std::string("epoch 1 has batches 0..14")},
                           std::pair{int64_t{0}, std::string("epoch 1 handed it out already")},
                           std::pair{int64_t{1} << 62, std::string("epoch 1 has batches 0..14")}}) {
    // Named, not bound: a lambda below takes them (clang 14 captures no structured binding).
    const int64_t batch = item.first;
    const std::string& why = item.second;
    const std::string bad = with_batch(1, batch);
    const CommandResult d = run_trainrr("diff " + recorded() + " " + bad);
    ASSERT_EQ(d.exit_code, 1) << d.output;
    EXPECT_TRUE(has(d.output, "  cause: trace: batch 1 (A), batch " + std::to_string(batch) +
                                  " (B); B's recorded batch " + std::to_string(batch) +
                                  " cannot be handed out here (" + why +
                                  "); no loader hands out such a batch, so " + kATrace))
        << d.output;
    EXPECT_FALSE(has(d.output, "cause: loader")) << d.output;
    EXPECT_FALSE(has(d.output, "the recorded order came from elsewhere")) << d.output;
  }
}

// A kernel recorded at a site of another op (a sum kernel at a matmul), or one no build of this trainrr has,
// is bad input naming the trace, the step, the site and the kernel (exit 2): not this machine's lack of a
// kernel (exit 3), and not another choice two runs made.
TEST_F(InconsistentTrace, AKernelNoMachineCanRunAtItsSiteIsBadInputNamingTheTrace) {
  for (const auto& item :
       {std::pair{std::string("f32_sum__cpu_pairwise"),
                  std::string(
                      "is a kernel of op reduce, and the site's op is matmul, so no machine runs it there")},
        std::pair{std::string("f32_matmul__cuda_nope"),
                  std::string("(which wrote the trace), on any instruction "
                              "set or device")}}) {
    const std::string& kernel = item.first;
    const std::string& why = item.second;
    bool edited = false;
    const std::string bad = with_step(0, [&](trace::TraceStep& s) {
      for (auto& e : s.events)
        if (auto* k = std::get_if<KernelChoice>(&e); k && k->site == "dense_1/matmul.fwd") {
          k->chosen = kernel;
          edited = true;
        }
    });
    ASSERT_TRUE(edited);
    const std::string what = bad + ": step 0: the recorded kernel " + kernel + " at dense_1/matmul.fwd ";
    for (const std::string& args : {"replay " + bad, "bisect " + bad, "diff " + recorded() + " " + bad}) {
      const CommandResult r = run_trainrr(args);
      EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
      EXPECT_TRUE(has(r.output, what)) << args << "\n" << r.output;
      EXPECT_TRUE(has(r.output, why + "; the trace does not follow the run it describes")) << args << "\n"
                                                                                           << r.output;
      EXPECT_FALSE(has(r.output, "cannot replay here")) << args << "\n" << r.output;
      EXPECT_FALSE(has(r.output, "identical")) << args << "\n" << r.output;
    }
  }
}

// A recorded accumulation order is a choice replay forces: one the kernel cannot serve (one partial, where it
// makes more) is named in a note, as a kernel that cannot run is; and two recordings whose orders differ made
// other choices, whatever bits they computed.
TEST_F(InconsistentTrace, AnAccumulationOrderThatCannotBeForcedIsNamedAndOtherOrdersAreOtherChoices) {
  const std::string bn = dir.file("bn.trr");
  const CommandResult rec =
      run_trainrr("record " + example("digits_bn.toml") + " --set train.epochs=1 -o " + bn);
  ASSERT_EQ(rec.exit_code, 0) << rec.output;
  std::string site;
  size_t partials = 0;
  auto edited = [&](const std::string& to, const std::function<void(std::vector<uint32_t>&)>& edit) {
    EXPECT_EQ(rewrite_trace(
                  bn, to, [](trace::TraceHeader&) {},
                  [&](trace::TraceStep& s) {
                    if (s.index != 0) return;
                    for (auto& e : s.events)
                      if (auto* o = std::get_if<trace::AccumulationOrderEvent>(&e);
                          o && o->order.size() > 1) {
                        site = o->site;
                        partials = o->order.size();
                        edit(o->order);
                        return;
                      }
                  }),
              "");
    return to;
  };
  const std::string one = edited(dir.file("one.trr"), [](std::vector<uint32_t>& o) { o = {0}; });
  ASSERT_FALSE(site.empty()) << "no accumulation order of several partials in step 0";
  const CommandResult r = run_trainrr("replay " + one);
  EXPECT_NE(r.exit_code, 2) << r.output;
  EXPECT_TRUE(has(r.output, "note: the recorded accumulation order at " + site +
                                " (step 0) cannot be forced: it orders 1 partial, and the kernel made " +
                                std::to_string(partials) +
                                " here; it added them in the order its threads finished"))
      << r.output;
  const std::string reversed =
      edited(dir.file("reversed.trr"), [](std::vector<uint32_t>& o) { std::reverse(o.begin(), o.end()); });
  const CommandResult d = run_trainrr("diff " + bn + " " + reversed);
  ASSERT_EQ(d.exit_code, 0) << d.output;
  EXPECT_EQ(
      d.output.rfind("identical: the two runs computed the same bits, with other accumulation orders at some "
                     "sites",
                     0),
      0u)
      << d.output;
  EXPECT_TRUE(has(d.output, "the recorded accumulation orders differ at 1 site (" + site + " from step 0)"))
      << d.output;
  EXPECT_FALSE(has(d.output, "same choices")) << d.output;
}

// A header's seed that its configuration does not give: show, replay and diff say the trace was changed,
// where they said the seed came from the configuration and the run reproduced.
TEST_F(InconsistentTrace, AHeaderSeedTheConfigurationDoesNotGiveIsNamed) {
  const std::string bad = dir.file("seed.trr");
  uint64_t seed = 0;
  ASSERT_EQ(rewrite_trace(recorded(), bad,
                          [&](trace::TraceHeader& h) {
                            h.seed += 1;
                            seed = h.seed;
                          }),
            "");
  const std::string said = ": the header's seed is " + std::to_string(seed) +
                           " (from the configuration), but the configuration in the trace gives seed = " +
                           std::to_string(seed - 1) + ": in a trace trainrr record wrote they agree";
  for (const std::string& command : {"show " + bad, "replay " + bad, "diff " + recorded() + " " + bad}) {
    const CommandResult r = run_trainrr(command);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output, bad + said)) << command << "\n" << r.output;
  }
}

// A header that says its seed was drawn from the OS, beside a configuration that gives one (the same seed):
// the message names the flag that disagrees, not the seed, which agrees.
TEST_F(InconsistentTrace, AHeaderSeedDrawnFromTheOSBesideAConfigurationThatGivesOneIsNamed) {
  const std::string bad = dir.file("entropy.trr");
  uint64_t seed = 0;
  ASSERT_EQ(rewrite_trace(recorded(), bad,
                          [&](trace::TraceHeader& h) {
                            h.seed_from_entropy = true;
                            seed = h.seed;
                          }),
            "");
  const std::string said =
      ": the header's seedFromEntropy is true (its seed, " + std::to_string(seed) +
      ", was drawn from the OS), but the configuration in the trace gives one (seed = " +
      std::to_string(seed) +
      "): trainrr record draws a seed from the OS exactly when the configuration gives none";
  for (const std::string& command : {"show " + bad, "replay " + bad, "diff " + recorded() + " " + bad}) {
    const CommandResult r = run_trainrr(command);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output, bad + said)) << command << "\n" << r.output;
    EXPECT_FALSE(has(r.output, "but the configuration in the trace gives seed = ")) << command << "\n"
                                                                                    << r.output;
  }
}

// An initial checkpoint that holds other weights than the recorded draws make: replay says the trace does not
// follow its run, where it said reproduced (export --step 0 would give those weights).
TEST_F(InconsistentTrace, AnInitialCheckpointThatIsNotTheRunsSetUpIsNamed) {
  const std::string bad = dir.file("initial.trr");
  ASSERT_EQ(rewrite_trace(
                recorded(), bad, [](trace::TraceHeader&) {}, {},
                [](trace::TraceCheckpoint& c) {
                  if (c.step == 0)
                    for (auto& t : c.tensors)
                      if (t.name == "dense_1.kernel") t.value.data[0] *= 2;
                  return true;
                }),
            "");
  const CommandResult r = run_trainrr("replay " + bad);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(
      r.output.rfind(
          "diverged in the initial state, before step 0, dense_1 (dense_1.kernel)\n  cause: trace: ", 0),
      0u)
      << r.output;
  EXPECT_TRUE(has(r.output, "note: the first difference is in the initial state, before step 0 runs"))
      << r.output;
  EXPECT_EQ(run_trainrr("replay " + recorded()).exit_code, 0);
}

// A configuration edited after the recording (a learning rate): the replay's update differs with nothing
// recorded differing, which no rounding explains: the cause says what can, not "numeric".
TEST_F(InconsistentTrace, AnUpdateThatDiffersWithNothingRecordedDifferingIsUnexplainedNotNumeric) {
  const std::string bad = dir.file("lr.trr");
  ASSERT_EQ(rewrite_trace(recorded(), bad,
                          [&](trace::TraceHeader& h) {
                            const std::string was = "learning_rate = 0.001";
                            const auto at = h.config.find(was);
                            ASSERT_NE(at, std::string::npos) << h.config;
                            h.config.replace(at, was.size(), "learning_rate = 0.002");
                          }),
            "");
  for (const std::string& command : {"replay " + bad, "bisect " + bad}) {
    const CommandResult r = run_trainrr(command);
    EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.output;
    EXPECT_TRUE(
        has(r.output,
            "diverged at step 0, update, dense_1 (dense_1.kernel:value)\n  cause: unexplained: same "
            "kernel selections, same parameters and batch at the step's start, different output, and "
            "nothing recorded differs (configuration, data, recorded choices, environment): either the "
            "trace does not hold what its run did (changed after it was written), or the build of "
            "trainrr that recorded it computes otherwise than this one"))
        << command << "\n"
        << r.output;
    EXPECT_FALSE(has(r.output, "numeric")) << command << "\n" << r.output;
  }
}

// A checkpoint on the way (--checkpoint-every) holds what the steps do not compare: an optimizer's slots, the
// epoch's running counts, the random streams' offsets. One changed after it was written is not the state the
// run reaches there: replay, bisect and diff compare it, where they said reproduced and identical.
TEST_F(InconsistentTrace, ACheckpointOnTheWayIsComparedWhole) {
  const std::string trace = dir.file("every5.trr");
  const CommandResult recorded = run_trainrr(
      "record " + example("breast_cancer.toml") +
      " --set train.epochs=1 --set runtime.policy=deterministic --checkpoint-every 5 -o " + trace);
  ASSERT_EQ(recorded.exit_code, 0) << recorded.output;
  auto edited = [&](const std::string& name, const std::function<void(trace::TraceCheckpoint&)>& edit,
                    int64_t at = 5) {
    const std::string bad = dir.file(name);
    EXPECT_EQ(rewrite_trace(
                  trace, bad, [](trace::TraceHeader&) {}, {},
                  [&](trace::TraceCheckpoint& c) {
                    if (c.step == at) edit(c);
                    return true;
                  }),
              "");
    return bad;
  };
  const std::string slots = edited("slots.trr", [](trace::TraceCheckpoint& c) {
    for (auto& t : c.tensors)
      if (t.name.find('/') != std::string::npos)
        for (float& v : t.value.data) v *= 1000;
  });
  const std::string heading =
      "diverged in the checkpoint at step 5, after step 4, dense_1 (m/dense_1.kernel)\n"
      "  cause: unexplained: same kernel selections, every value the steps compared the "
      "same, a different state, and nothing recorded differs";
  for (const std::string& command : {"replay " + slots, "replay --keep-going " + slots, "bisect " + slots,
                                     "diff " + trace + " " + slots}) {
    const CommandResult r = run_trainrr(command);
    EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output, heading)) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output,
                    "the checkpoint at step 5 (the state after step 4, what export --step 5 gives and "
                    "replay --from-step 5 resumes from) differs in m/dense_1.kernel"))
        << command << "\n"
        << r.output;
  }
  // Resumed from it, the replay says what it took on trust.
  const CommandResult resumed = run_trainrr("replay " + slots + " --from-step 5");
  EXPECT_EQ(resumed.exit_code, 1) << resumed.output;
  EXPECT_TRUE(
      has(resumed.output,
          "note: the replay resumed from the checkpoint at step 5 as it is recorded: its "
          "parameters are checked against the digests step 4 recorded, and its place in the run "
          "(its epoch, order of rows, batches handed out and random streams' offsets) against the "
          "steps before it; its optimizer's slots, the epoch's running sums and, at level step, a batch "
          "normalization's moving statistics are not"))
      << resumed.output;
  // The same tensors at another place in the run: the choices fix that place, and the trace is named.
  const std::string offsets = edited("offsets.trr", [](trace::TraceCheckpoint& c) {
    for (auto& [stream, offset] : c.rng_offsets) offset += 1;
  });
  for (const std::string& command : {"replay " + offsets, "diff " + trace + " " + offsets}) {
    const CommandResult r = run_trainrr(command);
    EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output,
                    "diverged in the checkpoint at step 5, after step 4 ((place in the run))\n  cause: "
                    "trace: the checkpoint at step 5"))
        << command << "\n"
        << r.output;
    EXPECT_TRUE(
        has(r.output, "holds the same tensors and scalars, but another place in the run: the random stream "))
        << command << "\n"
        << r.output;
  }
  const std::string count = edited("count.trr", [](trace::TraceCheckpoint& c) {
    for (auto& [name, value] : c.scalars)
      if (name == "epoch.correct") value = 0;
  });
  const CommandResult r = run_trainrr("replay " + count);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "differs in its scalars: epoch.correct 0 (recorded) vs ")) << r.output;
  // Resumed from such a checkpoint, a replay would run other draws or batches than the recording did and
  // blame a cause of its own: the checkpoint's place in the run is checked against the steps before it, and
  // nothing resumes from one out of place.
  const std::string out_of_place =
      "the checkpoint at step 5 does not follow the steps the trace records before "
      "it: ";
  const std::string swapped = edited("order.trr", [](trace::TraceCheckpoint& c) {
    ASSERT_GE(c.permutation.size(), 2u);
    std::swap(c.permutation[0], c.permutation.back());
  });
  const std::string batches = edited("batches.trr", [](trace::TraceCheckpoint& c) {
    ASSERT_EQ(c.batches_done.size(), 5u);
    c.batches_done[3] = 7;
  });
  const std::string dropped = edited("dropped.trr", [](trace::TraceCheckpoint& c) {
    std::erase_if(c.rng_offsets, [](const auto& o) { return o.first == "data/shuffle"; });
  });
  for (const auto& [bad, why] : std::vector<std::pair<std::string, std::string>>{
           {offsets, "the steps before it drew from the random stream "},
           {swapped, "its order of the epoch's "},
           {batches, "epoch 1's step 4 (step 3) ran batch 3, and the checkpoint says it ran batch 7"},
           {dropped, "the steps before it drew from the random stream data/shuffle up to word "}}) {
    for (const std::string& force : {"", " --force none"}) {
      const CommandResult r = run_trainrr("replay " + bad + " --from-step 5" + force);
      EXPECT_EQ(r.exit_code, 2) << bad << force << "\n" << r.output;
      EXPECT_TRUE(has(r.output, out_of_place + why)) << bad << force << "\n" << r.output;
      EXPECT_FALSE(has(r.output, "reproduced")) << bad << force << "\n" << r.output;
    }
  }
  // The epoch's running sums are the steps': every step after the checkpoint the same, sums or an epoch loss
  // that differ later are the checkpoint's, not the steps' or arithmetic.
  auto doubled_sum = [](trace::TraceCheckpoint& c) {
    for (auto& [name, value] : c.scalars)
      if (name == "epoch.loss_sum") value *= 2;
  };
  const std::string sums = edited("sums.trr", doubled_sum);
  const CommandResult resumed_sums = run_trainrr("replay " + sums + " --from-step 5");
  EXPECT_EQ(resumed_sums.exit_code, 1) << resumed_sums.output;
  EXPECT_TRUE(
      has(resumed_sums.output,
          "cause: trace: the checkpoint at step 10 (the state after step 9, what export --step 10 gives "
          "and replay --from-step 10 resumes from) differs in its scalars: epoch.loss_sum "))
      << resumed_sums.output;
  EXPECT_TRUE(
      has(resumed_sums.output,
          "though every value the steps compared is the same: the epoch's running sums are its steps' "
          "sums, which the replay took from the checkpoint it resumed from at step 5 as recorded: that "
          "checkpoint does not hold the sums its steps made"))
      << resumed_sums.output;
  const std::string last_sums = edited("last-sums.trr", doubled_sum, 10);
  const CommandResult resumed_last = run_trainrr("replay " + last_sums + " --from-step 10");
  EXPECT_EQ(resumed_last.exit_code, 1) << resumed_last.output;
  EXPECT_TRUE(
      has(resumed_last.output,
          "cause: trace: the epoch's loss sums its steps', and every step since the replay resumed at "
          "step 10 compared the same: the steps before it come in through the checkpoint's running sums"))
      << resumed_last.output;
  for (const CommandResult* r : {&resumed_sums, &resumed_last})
    EXPECT_FALSE(has(r->output, "numeric") || has(r->output, "unexplained")) << r->output;
  EXPECT_EQ(run_trainrr("replay " + trace + " --from-step 5").exit_code, 0);
  // The recording itself reproduces and is identical to itself, its checkpoints compared.
  EXPECT_EQ(run_trainrr("replay " + trace).exit_code, 0);
  EXPECT_EQ(run_trainrr("bisect " + trace).exit_code, 0);
  EXPECT_EQ(run_trainrr("diff " + trace + " " + trace).exit_code, 0);
}

}  // namespace
}  // namespace trainrr::testing
