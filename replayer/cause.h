#pragma once
// The cause of a divergence, from the evidence at the first divergent event: data and configuration
// first (they change everything after them), then the kind of event, then the kernel at the op, then
// numerics, with the kernel's declared properties and the environment as evidence.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/config.h"
#include "engine/kernels/kernel_registry.h"
#include "replayer/data_reach.h"
#include "replayer/divergence.h"
#include "traces/trace.h"

namespace trainrr {

struct CauseInputs {
  bool data_changed = false;
  std::string data_detail;
  // Which of the data differs, where data_changed: the samples (a CSV file holds both) and the labels.
  bool features_changed = true, labels_changed = true;
  std::vector<std::string> config_differences;  // "train.optimizer.learning_rate: 0.001 -> 0.01"
  // The model's layers in order (layer_names()): which layers come before the one a difference is in.
  std::vector<std::string> layer_names;
  std::map<std::string, std::pair<std::string, std::string>> kernel_differences;  // site -> (a, b)
  std::vector<EnvDifference> environment;
  const KernelRegistry* registry = nullptr;
  uint64_t seed_recorded = 0, seed_replayed = 0;
  bool seed_from_entropy = false;
  std::map<std::string, int64_t> matched_draws;  // stream -> draws that matched before the divergence
  std::map<std::string, int64_t> order_differences;  // kernel site -> first step its accumulation order differed
  // Recorded accumulation orders the same kernel could not take in the replay, as it made another count of
  // partials from the shapes the trace's configuration gives: site -> (step, words). With the same
  // configuration and data, no run records that.
  std::map<std::string, std::pair<int64_t, std::string>> orders_of_other_shapes;
  std::map<std::string, std::string>
      kernels;  // kernel site -> the kernel the first side (recorded, A) ran there
  std::string name_a = "recorded", name_b = "replayed";  // how the report names the two sides ("A", "B")
  // Kernel site -> how each side picked its kernel there, when it was not a fixed rule: by timing (autotune),
  // with the timings (kernel_pick below).
  std::map<std::string, std::pair<std::string, std::string>> kernel_picks;
  // The layers' outputs were compared (level layer or op): a loss that differs first had the same inputs on
  // both sides. At level step they were not, and a forward op may have made the loss differ.
  bool outputs_compared = false;
  // Every op's output was compared too (level op): a layer's output that differs first had ops that did not.
  bool op_outputs_compared = false;
  // Where the data that differs first reaches the run (data_reach.h), where both copies could be read and
  // compared row by row; nullopt where they could not.
  std::optional<DataReach> data_reach;
  // The step a replay resumed at from a checkpoint (0: it ran from the start).
  int64_t resumed_at = 0;
};

// How a kernel choice was made, for a cause: "picked by timing (autotune): f32_matmul__a 12.1 us,
// f32_matmul__b 15.3 us", or "" when a fixed rule picked it (default, deterministic, forced).
std::string kernel_pick(const KernelChoice& choice);

Cause classify(const FirstDivergence& d, const CauseInputs& in);

// The layer an event is of: a site's layer, an initial weight's ("init/dense_1.kernel": dense_1), a dropout
// draw's; "" where it is none.
std::string layer_of(const FirstDivergence& d);

// Sets in.features_changed and in.labels_changed from the trace's names of the data sets that differ: a CSV
// file ("data") holds both, "features" the samples and "labels" the labels of an npy or idx source.
void set_changed_data_sets(CauseInputs& in, const std::vector<std::string>& names);

// The words that open what a configuration or data cause names beside itself: the kernel selections that
// differ too and can have made the same difference (a cause that replaces it names them itself).
inline constexpr std::string_view kKernelsToo = "; kernel selections differ too";
inline constexpr std::string_view kKernelAtOpToo = "; a different kernel ran at ";

// The words a loader divergence's detail holds where the recorded batch could not be handed out at all (one
// past the epoch's batches, or one handed out already), which classify() and data_not_reaching() read.
inline constexpr std::string_view kBatchRefused = "cannot be handed out here";

// The words a shuffle divergence's detail holds where the recorded order is of another number of rows than
// the run trains on ("the recorded shuffle of N rows is not an order of the run's M training rows"), which
// classify() reads: with the same data and configuration, no run shuffles other rows.
inline constexpr std::string_view kShuffleOfOtherRows = "is not an order of the run's";
// In a split divergence's detail: with every recorded choice served, the trace's configuration makes another
// split from the recorded draws than the one the trace holds.
inline constexpr std::string_view kSplitNotOfItsConfiguration =
    "the recorded split (served here) is not the one the trace's configuration makes from its recorded draws";

// In an rng divergence's detail: the recorded draw's key is not the one its stream has under the trace's own
// seed (a key is the seed and the stream's name alone). In a shuffle divergence's detail: the recorded order
// is not the one its recorded draw gives. No run writes such a trace; classify() names the trace. In a
// bisect suspect: the recorded draw's counter is not where the trace's own earlier draws of its stream leave
// it.
inline constexpr std::string_view kKeyNotOfItsSeed = "is not the key the trace's seed gives stream";
inline constexpr std::string_view kCounterNotWhereItsStreamStood =
    "is not where the trace's own earlier draws leave stream";
inline constexpr std::string_view kOrderNotOfItsDraw =
    "the recorded order is not the one its recorded draw gives";

// Why data that differs cannot have made the first divergent event `d`, in words, or "" when it can. Whatever
// is computed from the rows can differ with them, and the input pipeline and the random draws with the data's
// shape (its rows and features); but a draw's key comes from the seed alone, so a draw whose seeds differ
// differs for that; a first-ready loader hands out batches in the order its workers finish, and two different
// loaders in their own orders, whatever the rows hold; and an update (probed at level op, after every op of
// the step) reads the data only through the gradients, which matched. `loader_a`, `loader_b`: the loader
// each side ran ("" when not known).
std::string data_not_reaching(const FirstDivergence& d, bool seeds_differ, const std::string& loader_a,
                              const std::string& loader_b);

// Why the data that differs cannot have made `d`, from where its rows are first read (in.data_reach, with
// in.layer_names): a step before that reads none of them, a layer's forward pass reads no label; "" where
// it can have, or nothing is known.
std::string data_not_reaching_rows(const FirstDivergence& d, const CauseInputs& in);

// That the trace (`replayed`: the one replayed; otherwise one of two compared) does not follow the run its
// configuration describes, and why it may not: the words that close a cause of category "trace".
std::string trace_not_following(bool replayed);

// The cause of an epoch's log `metric` that differs after steps that match, where neither the data nor the
// configuration reaches it: a validation metric's (val_*) is the evaluation's own arithmetic; the training
// loss and accuracy are the steps' own sums, so the trace does not hold them as its steps made them (in the
// checkpoint a replay resumed from at `resumed_at`, where it did).
Cause epoch_log_cause(const std::string& metric, int64_t resumed_at, bool replayed);

// Whether a configuration difference (as config_differences() words it) changes only how many steps run,
// not what any step computes: `train.epochs`. Such a difference explains no divergence in the steps both
// runs have.
bool changes_only_length(const std::string& difference);
// The differences that may change what a step computes.
std::vector<std::string> differences_within_steps(const std::vector<std::string>& differences);
// Whether a configuration difference can change the first divergent event `d`, everything before it being
// the same on both sides: an optimizer's keys change only the update, a layer's keys nothing in the forward
// pass of the layers before it, the loss's keys nothing in any layer's forward pass, and none of these the
// input pipeline; a run's distributed.allreduce only its allreduce and what follows, its distributed.shards
// nothing of the input pipeline. Other keys (seed, data, batch size) are taken to reach everything. `layers`:
// the model's layer names in order.
bool difference_reaches(const std::string& difference, const FirstDivergence& d,
                        const std::vector<std::string>& layers);
// Why differences that difference_reaches() turned down leave the first divergent event alone, in words:
// "an optimizer's keys change only the update".
std::string reach_words(const std::vector<std::string>& differences, const FirstDivergence& d);

// Configuration keys whose effective values differ (runtime.* aside: threads and policy are reported
// with the environment). `a` is the recorded configuration.
std::vector<std::string> config_differences(const RunConfig& a, const RunConfig& b);
// The recorded configuration of a trace against the replay's, by the values the recorded run used: a seed
// the recorded run drew from the OS is compared with the seed the replay's configuration names.
std::vector<std::string> config_differences(const trace::TraceHeader& recorded, const RunConfig& replayed);

}  // namespace trainrr
