#include "replayer/cause.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>

#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/conv_sites.h"
#include "engine/kernels/cudnn_choice.h"
#include "engine/kernels/matmul_openblas.h"
#include "engine/model.h"
#include "replayer/final_state.h"
#include "replayer/replayer.h"

namespace trainrr {

std::vector<std::string> config_differences(const RunConfig& a, const RunConfig& b) {
  // A layer's name as the run has it: one given that is the name the engine would give (dense_1) is the same
  // run as none given. Where one side gives a layer a name, it is compared with the name the other side's
  // layer has, given or the engine's; where neither does, the engine's numbering follows from the keys that
  // are compared (the types, the names given).
  auto named = [](RunConfig c, const RunConfig& other) {
    const std::vector<std::string> names = layer_names(c.layers);
    for (size_t i = 0; i < c.layers.size(); ++i)
      if (i < other.layers.size() && !other.layers[i].name.empty()) c.layers[i].name = names[i];
    return c;
  };
  std::map<std::string, std::pair<std::string, std::string>> both;
  for (const auto& [k, v] : flatten_config(named(a, b))) both[k].first = v;
  for (const auto& [k, v] : flatten_config(named(b, a))) both[k].second = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : both) {
    // Data files are identified by their digests, not their paths; runtime settings are environment.
    if (k.rfind("runtime.", 0) == 0 || k == "data.path" || k == "data.labels") continue;
    if (v.first != v.second)
      out.push_back(k + ": " + (v.first.empty() ? "(none)" : v.first) + " -> " +
                    (v.second.empty() ? "(none)" : v.second));
  }
  return out;
}

std::vector<std::string> config_differences(const trace::TraceHeader& h, const RunConfig& replayed) {
  auto recorded = parse_config(h.config, h.config_path, config_folder(h), h.config_overrides);
  if (!recorded) return {"the recorded configuration no longer parses: " + recorded.error().message};
  // A recorded run without a seed ran with the one it drew from the OS: a replay that names a seed is
  // compared with that one. Two configurations without a seed do not differ in it; the seeds the runs drew
  // are evidence for the rng cause, not configuration.
  const bool drawn = !recorded->seed && replayed.seed;
  if (drawn) recorded->seed = h.seed;
  std::vector<std::string> out = config_differences(*recorded, replayed);
  if (drawn)
    for (std::string& d : out)
      if (d.rfind("seed: ", 0) == 0)
        d = "seed: " + std::to_string(h.seed) + " (drawn from the OS: the configuration gives none) -> " +
            std::to_string(*replayed.seed);
  return out;
}

namespace {

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

// The first few of a configuration's differences, and how many more: two different models differ in dozens
// of keys, which `trainrr show` of each trace lists.
std::string join_some(const std::vector<std::string>& v) { return first_of(v, 8, "; "); }

std::string env_value(const std::vector<EnvDifference>& env, const std::string& key, bool recorded) {
  for (const auto& e : env)
    if (e.key == key) return recorded ? e.recorded : e.replayed;
  return "";
}

bool is_openblas(const std::string& kernel) { return kernel.rfind("f32_matmul__openblas", 0) == 0; }

// The keys of the environment that differ, less OpenBLAS's (its code, OPENBLAS_* variables) where neither
// side ran an OpenBLAS kernel up to the divergence: they could not have made a number differ.
std::vector<std::string> environment_that_may_matter(const CauseInputs& in) {
  const bool openblas =
      std::any_of(in.kernels.begin(), in.kernels.end(),
                  [](const auto& k) { return is_openblas(k.second); }) ||
      std::any_of(in.kernel_differences.begin(), in.kernel_differences.end(),
                  [](const auto& k) { return is_openblas(k.second.first) || is_openblas(k.second.second); });
  std::vector<std::string> keys;
  for (const auto& e : in.environment)
    if (openblas || (e.key != "lib.openblas" && !e.key.starts_with("env.OPENBLAS_"))) keys.push_back(e.key);
  return keys;
}

std::string category_of_site(const std::string& site) {
  if (site.rfind("init/", 0) == 0 || site.rfind("dropout/", 0) == 0 || site.rfind("augment/", 0) == 0)
    return "rng";
  if (site == "data/shuffle") return "shuffle";
  if (site == "data/split") return "split";
  if (site == "data/loader") return "loader";
  return "";
}

}  // namespace

bool changes_only_length(const std::string& difference) { return difference.rfind("train.epochs:", 0) == 0; }

std::vector<std::string> differences_within_steps(const std::vector<std::string>& differences) {
  std::vector<std::string> out;
  for (const std::string& d : differences)
    if (!changes_only_length(d)) out.push_back(d);
  return out;
}

// The layer an event belongs to: "dense_1" for "dense_1/matmul.fwd:out", "init/dense_1.kernel" and
// "dropout/dropout_1"; "" for the loss and the input pipeline.
std::string layer_of(const FirstDivergence& d) {
  if (d.site.rfind("init/", 0) == 0) {
    const std::string rest = d.site.substr(5);
    return rest.substr(0, rest.find('.'));
  }
  if (d.site.rfind("dropout/", 0) == 0) return d.site.substr(8);
  if (!d.layer.empty()) return d.layer;
  std::string layer, op;
  split_site(d.site, layer, op);
  return layer;
}

// The kind of op a divergence's site names ("matmul" of "dense_1/matmul.fwd:out"); "" for none.
static std::string op_kind(const FirstDivergence& d) {
  std::string layer, op = d.op;
  if (op.empty()) split_site(d.site, layer, op);
  return op.substr(0, op.find('.'));
}

bool difference_reaches(const std::string& difference, const FirstDivergence& d,
                        const std::vector<std::string>& layers) {
  // No event differs (kind "config"): the inputs do, and every difference is theirs. The final state (kind
  // "state") holds all the run computed: every key reaches it.
  if (d.kind == "config" || d.kind == "state") return true;
  const std::string key = difference.substr(0, difference.find(": "));
  const bool optimizer = key.rfind("train.optimizer.", 0) == 0;
  const bool loss = key == "train.loss" || key == "train.from_logits";
  // "model.layers[2].units", or "model.layers: 3 -> 4" (a layer from index 3 on exists on one side only).
  std::optional<size_t> layer_index;
  // A layer's name names its draws' streams and its sites, and a name given moves the engine's numbering of
  // the unnamed layers of its type ("dense_1" those named dense_N), before or after it: it reaches an event
  // of a layer of either name, or of their type's numbering.
  if (key.rfind("model.layers[", 0) == 0 && key.ends_with("].name")) {
    const std::string values = difference.substr(difference.find(": ") + 2);
    const size_t arrow = values.find(" -> ");
    if (arrow == std::string::npos) return true;
    auto base = [](const std::string& name) {
      const size_t us = name.find_last_of('_');
      return us != std::string::npos && us + 1 < name.size() &&
                     name.find_first_not_of("0123456789", us + 1) == std::string::npos
                 ? name.substr(0, us)
                 : name;
    };
    const std::string of = layer_of(d);
    if (of.empty()) return d.kind == "config" || d.kind == "state";
    for (const std::string& name : {values.substr(0, arrow), values.substr(arrow + 4)})
      if (name == of || base(name) == base(of)) return true;
    return false;
  }
  if (key.rfind("model.layers[", 0) == 0) {
    layer_index = std::strtoull(key.c_str() + 13, nullptr, 10);
  } else if (key == "model.layers") {
    const std::string values = difference.substr(difference.find(": ") + 2);
    const size_t arrow = values.find(" -> ");
    if (arrow != std::string::npos)
      layer_index = std::min(std::strtoull(values.c_str(), nullptr, 10),
                             std::strtoull(values.c_str() + arrow + 4, nullptr, 10));
  }
  // An initial weight's draw depends on the seed, on the shapes and names of the layers up to its own (the
  // samples' shape and the layers' shape keys; a name given can renumber the unnamed layers of its type) and
  // on its own layer's name and initializer: its stream is its own, named by its parameter, its counter
  // starts at 0, its size is its tensor's. Training, the input pipeline's order and scaling, the runtime's
  // threads and policy, the shards, and the activations, rates and batch normalization constants change none
  // of that.
  if (in_initial_weights(d)) {
    static const char* const elsewhere[] = {"train.",          "augment.",       "distributed.",
                                            "runtime.threads", "runtime.policy", "data.test_fraction",
                                            "data.stratify",   "data.split",     "data.scale",
                                            "data.samples"};
    for (const char* prefix : elsewhere)
      if (key.rfind(prefix, 0) == 0) return false;
    if (layer_index && key != "model.layers") {
      const std::string field = key.substr(key.find("].") + 2);
      static const char* const constants[] = {"activation", "rate", "momentum", "epsilon", "use_bias"};
      for (const char* c : constants)
        if (field == c) return false;
      const auto own = std::find(layers.begin(), layers.end(), layer_of(d));
      static const char* const shapes[] = {"type",        "name",    "units",     "filters",
                                           "kernel_size", "strides", "pool_size", "padding"};
      bool shape = false;
      for (const char* s : shapes) shape |= field == s;
      // A layer before the weight's own reaches it through the shapes alone.
      if (own != layers.end() && *layer_index < static_cast<size_t>(own - layers.begin()) && !shape)
        return false;
    }
  }
  // A run's allreduce variant changes the sum of the shards' gradients and what follows from it (the update,
  // the parameters, the evaluation), not the batch, its sharding or a shard's gradient. Its shard count
  // changes how the global batch is cut and each shard's random streams, not which batch the input pipeline
  // (rank 0's loader) hands out.
  // A data-parallel step's parameters are compared after every allreduce call of the step, which matched
  // where they are the first difference: the variant made no other sum there.
  if (key == "distributed.allreduce")
    return d.kind == "config" || d.kind == "metrics" || d.phase == "allreduce" ||
           (d.phase == "update" && d.kind != "step_end") || d.phase == "evaluation";
  if (key == "distributed.shards") return d.kind != "split" && d.kind != "shuffle" && d.kind != "loader";
  if (!optimizer && !loss && !layer_index) return true;
  // The input pipeline (split, shuffle, loader, augmentation) computes nothing of the model's.
  if (d.phase == "input" || d.kind == "split" || d.kind == "shuffle" || d.kind == "loader") return false;
  if (optimizer) return d.phase == "update";
  const std::string layer = layer_of(d);
  const auto at = std::find(layers.begin(), layers.end(), layer);
  const bool forward_of_a_layer = (d.phase == "forward" || d.phase == "setup") && at != layers.end();
  if (loss) return !forward_of_a_layer;
  // A batch normalization's momentum enters only its moving statistics, which training never reads
  // (evaluation does): of a step's events, it reaches their update alone, and the evaluation's metrics.
  // (Kind "config": no event differs.)
  if (key.ends_with("].momentum"))
    return d.kind == "config" || d.kind == "state" || d.phase == "evaluation" ||
           (*layer_index < layers.size() && layer == layers[*layer_index] &&
            trace::is_moving_statistics_probe(d.site));
  // A layer's activation runs after its own matmul (or convolution) and bias: it reaches neither.
  if (key.ends_with("].activation") && forward_of_a_layer &&
      static_cast<size_t>(at - layers.begin()) == *layer_index) {
    const std::string op = op_kind(d);
    if (op == "matmul" || op == "bias" || op == "conv2d" || op == "im2col") return false;
  }
  // A layer's keys change its own initial values and forward pass, and those of the layers after it.
  return !forward_of_a_layer || static_cast<size_t>(at - layers.begin()) >= *layer_index;
}

std::string reach_words(const std::vector<std::string>& differences, const FirstDivergence& d) {
  if (d.kind == "sharding") return "none of them changes how the global batch is cut into shards";
  if (in_initial_weights(d))
    return "an initial weight's draw depends only on the seed, on its own layer's name (the draw's stream) "
           "and initializer, and on the shapes of the layers up to it and the names given to any layer "
           "(a name given can renumber the unnamed layers of its type, before it or after it)";
  if (d.phase == "input" || d.kind == "split" || d.kind == "shuffle" || d.kind == "loader")
    return "none of them changes the input pipeline (the split, the shuffle, the batches)";
  bool optimizer = false, loss = false, layer = false, momentum = false, allreduce = false,
       activation = false;
  for (const std::string& d : differences) {
    allreduce |= d.rfind("distributed.allreduce:", 0) == 0;
    optimizer |= d.rfind("train.optimizer.", 0) == 0;
    loss |= d.rfind("train.loss:", 0) == 0 || d.rfind("train.from_logits:", 0) == 0;
    const bool of_layer = d.rfind("model.layers", 0) == 0;
    const bool is_momentum = of_layer && d.substr(0, d.find(": ")).ends_with("].momentum");
    const bool is_activation = of_layer && d.substr(0, d.find(": ")).ends_with("].activation");
    momentum |= is_momentum;
    activation |= is_activation;
    layer |= of_layer && !is_momentum;
  }
  // Said where the difference is in an op a layer runs before its activation.
  const std::string op = op_kind(d);
  activation = activation && d.phase == "forward" && (op == "matmul" || op == "bias" || op == "conv2d");
  std::vector<std::string> why;
  if (allreduce)
    why.push_back(
        d.phase == "update" && d.kind == "step_end"
            ? "the allreduce variant changes only the sum of the shards' gradients, and every allreduce "
              "call of the step gave the recorded sum: the update that differs took the same sums"
            : "the allreduce variant changes only the sum of the shards' gradients and what follows it");
  if (optimizer) why.push_back("an optimizer's keys change only the update");
  if (loss) why.push_back("the loss's keys change no layer's forward pass");
  if (layer)
    why.push_back(std::string("a layer's keys change nothing before that layer's forward pass") +
                  (activation
                       ? " (its activation nothing before the activation runs, after the layer's matmul or "
                         "convolution and bias)"
                       : ""));
  if (momentum)
    why.push_back(
        "a batch normalization's momentum changes only its moving statistics, which evaluation reads "
        "and training does not");
  std::string out;
  for (size_t i = 0; i < why.size(); ++i) out += (i ? "; " : "") + why[i];
  return out;
}

namespace {

// What a GPU choice ran, in the library's terms: the cuBLASLt algorithm or cuDNN engine chosen. At a conv site
// the im2col + cuBLASLt variant is trainrr's own im2col (or col2im) around a cuBLASLt matmul, whose algorithm
// the choice records apart from the cuDNN engines (engine/kernels/conv_sites.h).
std::string gpu_pick(const KernelChoice& choice) {
  if (const CudnnEngine* e = chosen_cudnn_engine(choice)) return "ran " + cudnn_describe(*e);
  const bool im2col = is_conv_im2col_id(choice.chosen);
  if (const BlasLtAlgo* a = chosen_blaslt_algo(choice))
    return im2col ? "ran im2col and a cuBLASLt matmul (not cuDNN), " + blaslt_describe(*a) : "ran " + blaslt_describe(*a);
  if (im2col && has_conv_im2col_candidate(choice)) return "ran im2col and a cuBLASLt matmul (not cuDNN)";
  return "";
}

// Why a GPU kernel gives other bits from the same inputs, from its id: the atomic reductions and the cuDNN
// engines cuDNN declares nondeterministic. "" for the others.
std::string gpu_nondeterminism(const std::string& kernel) {
  if (kernel.ends_with("__cuda_atomic"))
    return "same kernel " + kernel + ", same inputs, different output: it adds its partial sums with atomicAdd, "
           "in the order the GPU's threads arrive (declared nondeterministic; the deterministic policy takes the "
           "fixed-order tree instead)";
  const size_t at = kernel.find("__cudnn_engine");
  if (at != std::string::npos && kernel.ends_with("_nondeterministic")) {
    const size_t digits = at + std::string("__cudnn_engine").size();
    const std::string engine = kernel.substr(digits, kernel.find_first_not_of("0123456789", digits) - digits);
    return "cuDNN engine " + engine + " is declared nondeterministic (CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC): same "
           "engine (" + kernel + "), same inputs, different output";
  }
  return "";
}

}  // namespace

std::string kernel_pick(const KernelChoice& choice) {
  if (choice.reason.rfind("autotune", 0) != 0 || choice.timings_us.size() != choice.candidates.size())
    return gpu_pick(choice);
  std::string out = "picked " + choice.chosen + " by timing (autotune):";
  for (size_t i = 0; i < choice.candidates.size(); ++i) {
    char us[32];
    std::snprintf(us, sizeof us, "%.3g us", choice.timings_us[i]);
    out += std::string(i ? "," : "") + " " + choice.candidates[i] + " " + us;
  }
  return out;
}

std::string trace_not_following(bool replayed) {
  return std::string(replayed ? "the trace does" : "a trace does") +
         " not follow the run its configuration describes (it was changed after it was written, or written "
         "by "
         "another version of trainrr)";
}

Cause epoch_log_cause(const std::string& metric, int64_t resumed_at, bool replayed) {
  const std::string trace_words = trace_not_following(replayed);
  // An epoch's loss and accuracy are its steps' (the sums of their losses and correct predictions, in step
  // order), and every step's loss and metrics compared the same: no arithmetic of its own makes them differ.
  if (metric.rfind("val_", 0) != 0) {
    if (resumed_at > 0)
      return {
          "trace",
          "the epoch's " + metric + " sums its steps', and every step since the replay resumed at step " +
              std::to_string(resumed_at) +
              " compared the same: the steps before it come in through the checkpoint's running sums "
              "(epoch.loss_sum, epoch.correct, epoch.rows), which a resumed replay takes as recorded, and "
              "those are not the sums the recorded steps made (a replay from step 0 compares them); " +
              trace_words};
    return {"trace",
            "the epoch's " + metric +
                " sums its steps', and every step compared the same: the recorded epoch log is not the "
                "one its steps make; " +
                trace_words};
  }
  return {"numeric",
          "the evaluation after the step computed other metrics, though every value compared in the steps "
          "before it is the same: its arithmetic differs (the trace records no op of the evaluation)"};
}

std::string data_not_reaching(const FirstDivergence& d, bool seeds_differ, const std::string& loader_a,
                              const std::string& loader_b) {
  std::string kind = d.kind;
  if (kind == "extra" || kind == "missing") {
    const std::string c = category_of_site(d.site);
    if (!c.empty()) kind = c;
  }
  // The seed makes other words of a draw of the same size; the size itself may come from the data's shape.
  if (kind == "rng" && seeds_differ && d.same_count)
    return "a draw's key comes from the run's seed alone, the seeds differ, and the draw is of the "
           "same size on both sides";
  // An op's probes come before the update (level op): an update reads the data only through the gradients,
  // which were the same.
  if (kind == "probe" && d.phase == "update")
    return "an update reads the data only through the gradients, and they were the same";
  if (kind != "loader") return "";
  // Whether the recorded batch exists at all depends on how many rows there are.
  if (d.detail.find(kBatchRefused) != std::string::npos) return "";
  const auto first_ready = [](const std::string& loader) {
    return loader.find("first_ready") != std::string::npos;
  };
  if ((!loader_a.empty() && !loader_b.empty() && loader_a != loader_b) || first_ready(loader_a) ||
      first_ready(loader_b) || d.detail.find("first_ready") != std::string::npos)
    return "which batch a loader hands out next does not depend on what the rows hold";
  return "";
}

void set_changed_data_sets(CauseInputs& in, const std::vector<std::string>& names) {
  in.features_changed = in.labels_changed = false;
  for (const std::string& name : names) {
    in.features_changed |= name != "labels";
    in.labels_changed |= name != "features";
  }
}

namespace {

// Why data that differs cannot have made `d`, from what the model reads of it, or "": the rows enter the
// model through its first layer, the labels through the loss alone, and the initial weights are drawn
// before any row is read, their sizes fixed by the data's shape and the layers' keys. (data_not_reaching()
// gives the reasons that hold for any event.)
std::string data_not_reaching_model(const FirstDivergence& d, const CauseInputs& in) {
  const std::string layer = layer_of(d);
  const auto at = std::find(in.layer_names.begin(), in.layer_names.end(), layer);
  const bool in_a_layer = at != in.layer_names.end();
  // Another draw's words made into other values (augmentation noise, a dropout mask): the words are the same,
  // and what makes values of them (the distribution's parameters, the arithmetic) does not read the rows.
  if (d.kind == "rng" && d.same_draw && !in_initial_weights(d))
    return "the draw is the same words on both sides, and what makes its values of them does not "
           "read the rows";
  if (in_initial_weights(d)) {
    if (!in.features_changed) return "the initial weights are drawn before any label is read";
    // A draw of the same words (key, counter, size) made into other values: the size is the layer's
    // parameter count, which with the same layer keys fixes the shape the samples' shape would change. A
    // layer key that changes (units, filters, the model's layers) may have changed the shape too.
    if (!d.same_draw) return "";
    for (const std::string& c : in.config_differences) {
      const std::string key = c.substr(0, c.find(": "));
      if (key.rfind("model.", 0) == 0 && !key.ends_with("_initializer")) return "";
    }
    return "the initial weights are drawn before any row is read, and this draw is the same on both "
           "sides: its size, which the samples' shape would change, is the same";
  }
  if (d.phase != "forward") return "";
  if (in_a_layer) {
    if (!in.features_changed)
      return "the labels are read by the loss alone, after every layer's forward pass";
    // Every layer's output is compared at levels layer and op, the first layer's before any other's.
    if (in.outputs_compared && at != in.layer_names.begin())
      return "the rows enter the model through its first layer, " + in.layer_names.front() +
             ", whose output in "
             "step " +
             std::to_string(d.step) + " is the same on both sides";
    return "";
  }
  // The loss reads the labels, and the rows only through the model's output.
  if (layer == "loss" && !in.labels_changed && in.outputs_compared && !in.layer_names.empty())
    return "the loss reads the rows only through the model's output, which is the same on both sides in "
           "step " +
           std::to_string(d.step) + ", and the labels are the same";
  return "";
}

}  // namespace

// Why data that differs cannot have made `d`, from where its rows that differ are first read (data_reach.h),
// or "": the two copies hold as many rows of one shape, so what a run draws before its first step and its
// input pipeline's order are the same on both; a step's values can differ with the data only from the first
// step whose batch holds a row that differs (with only its labels differing, only from the loss on), and an
// evaluation's only where a validation or test row differs too.
std::string data_not_reaching_rows(const FirstDivergence& d, const CauseInputs& in) {
  // "config", "data": no event differs (the inputs alone do).
  if (!in.data_reach || d.kind == "config" || d.kind == "data") return "";
  const DataReach& r = *in.data_reach;
  if (d.phase == "setup" || d.phase == "input")
    return "the two copies of the data hold as many rows, of one shape, and what is drawn before the first "
           "step and the input pipeline's order depend on how many rows there are, not on what they hold";
  // A draw in a step (a dropout mask, augmentation noise): its key, counter and size follow from the seed,
  // the draws before it and the shapes, none from what a row holds.
  if (d.kind == "rng")
    return "the two copies of the data hold as many rows, of one shape, and no draw reads what a row holds: "
           "a "
           "draw's key, counter and size follow from the seed, the draws before it and the shapes";
  const bool read_by = r.first_step >= 0 && r.first_step <= d.step;
  if (d.phase == "evaluation") {
    if (read_by || r.validation || r.test) return "";
    return data_reach_words(r) + ", and no validation or test row differs";
  }
  // The steps after the schedule's last are not known.
  if (r.first_step < 0 && d.step >= r.steps) return "";
  if (!read_by) return data_reach_words(r) + "; the first difference is in step " + std::to_string(d.step);
  const std::string layer = layer_of(d);
  const bool a_layers_forward =
      d.phase == "forward" && d.step == r.first_step &&
      std::find(in.layer_names.begin(), in.layer_names.end(), layer) != in.layer_names.end();
  if (a_layers_forward && (r.first_feature_step < 0 || r.first_feature_step > d.step))
    return "step " + std::to_string(d.step) +
           " reads training rows whose labels alone differ, and the labels are read by the loss alone, after "
           "every layer's forward pass";
  return "";
}

// Two kernels of the same bits for every input (KernelInfo::same_bits_as): a selection between them changes
// no number.
static bool same_bits_kernels(const CauseInputs& in, const std::string& a, const std::string& b) {
  if (!in.registry) return false;
  const Kernel* x = in.registry->find(a);
  const Kernel* y = in.registry->find(b);
  if (!x || !y) return false;
  auto bits = [](const Kernel* k) {
    return k->info.same_bits_as.empty() ? k->info.id : k->info.same_bits_as;
  };
  return bits(x) == bits(y);
}

// The sites whose kernel selections differ and can have made the first difference `d`, those likeliest to
// have made it first: the divergent layer's ops of its phase first (kernel_differences holds the selections).
static std::vector<std::string> kernel_sites_reaching(const FirstDivergence& d, const CauseInputs& in) {
  // Sites that cannot have made the difference are left out: the loader decides the order of the batches
  // alone, compared before any value; the loss is computed in the forward pass, before any backward op or
  // update runs, and where the layers' outputs were compared (the same) and the loss's own sites differ, they
  // are what computed it.
  std::vector<std::string> sites;
  if (d.kernel_replayed.empty()) {
    const bool at_loss = d.site == "loss";
    bool loss_sites = false;
    for (const auto& [site, ab] : in.kernel_differences) loss_sites |= site.rfind("loss/", 0) == 0;
    for (const auto& [site, ab] : in.kernel_differences) {
      if (site == "data/loader" || same_bits_kernels(in, ab.first, ab.second)) continue;
      if (at_loss && (site.find(".bwd") != std::string::npos ||
                      (loss_sites && in.outputs_compared && site.rfind("loss/", 0) != 0)))
        continue;
      sites.push_back(site);
    }
  }
  // A difference in a layer's output in the forward pass comes from the forward ops of that layer or of the
  // layers before it: the backward ops and the later layers run after it. Where the layers' outputs were
  // compared (level layer or op) and this is the first that differs, the layers before it computed the same
  // outputs, whatever kernels they ran: only the layer's own forward ops can have made the difference (none
  // of them may differ: then no kernel selection is the cause).
  if (const std::string layer = layer_of(d);
      d.kind == "probe" && d.phase == "forward" && in.outputs_compared && !layer.empty()) {
    std::vector<std::string> own;
    for (const std::string& site : sites)
      if (site.find(".bwd") == std::string::npos && site.rfind(layer + "/", 0) == 0) own.push_back(site);
    sites = std::move(own);
  } else if (const std::string layer = layer_of(d);
             d.phase == "forward" && !layer.empty() && !in.layer_names.empty() && sites.size() > 1) {
    const auto at = std::find(in.layer_names.begin(), in.layer_names.end(), layer);
    if (at != in.layer_names.end()) {
      std::vector<std::string> before;
      for (const std::string& site : sites) {
        if (site.find(".bwd") != std::string::npos) continue;
        const std::string of = site.substr(0, site.find('/'));
        if (std::find(in.layer_names.begin(), at + 1, of) != at + 1) before.push_back(site);
      }
      if (!before.empty()) sites = std::move(before);
    }
  }
  // At level op every op's output was compared: where the first to differ is a forward op's, the ops before
  // it (its layer's matmul before its activation, say) computed the same outputs whatever kernels they ran,
  // and only the op's own kernel can have made the difference.
  if (d.kind == "probe" && d.phase == "forward" && in.op_outputs_compared && !layer_of(d).empty() &&
      d.site.find('/') != std::string::npos) {
    const std::string own = kernel_site_of(d.site);
    std::erase_if(sites, [&](const std::string& site) { return site != own; });
  }
  // The sites that can have made the difference first: the divergent layer's ops of its phase (a layer's
  // output comes from its forward ops, not its backward ones), then its other ops, then the rest.
  const std::string layer = layer_of(d);
  auto rank = [&](const std::string& site) {
    if (layer.empty() || site.rfind(layer + "/", 0) != 0) return 2;
    const bool backward_op = site.find(".bwd") != std::string::npos;
    const bool of_phase = d.phase == "forward" ? !backward_op : d.phase == "backward" ? backward_op : true;
    return of_phase ? 0 : 1;
  };
  std::stable_sort(sites.begin(), sites.end(),
                   [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
  return sites;
}

// Beside a cause in the data or the configuration: the kernel selections that differ too and can have made
// the same difference, which is as much evidence; "" when none does. Another kernel at the op that differs
// first is evidence in hand. Where no op's output was compared (level step), any selection that differs in
// the part of the step before the difference can have made it first, and nothing in the traces says which
// did.
static std::string kernels_too(const FirstDivergence& d, const CauseInputs& in) {
  // Only a value the ops compute: a split, a draw, a shuffle or a batch order is made by no kernel.
  if (d.kind != "probe" && d.kind != "step_end") return "";
  if (!d.kernel_recorded.empty() && !d.kernel_replayed.empty() && d.kernel_recorded != d.kernel_replayed &&
      !same_bits_kernels(in, d.kernel_recorded, d.kernel_replayed))
    return std::string(kKernelAtOpToo) + kernel_site_of(d.site) + " too, " + d.kernel_recorded + " (" +
           in.name_a + ") vs " + d.kernel_replayed + " (" + in.name_b + "), which can have made it as well";
  // At level op every op's output was compared: the op that differs first has its kernel named above, or
  // none differs. At level layer a layer's output is, and any of its own ops' kernels can have made it.
  if (in.op_outputs_compared || (in.outputs_compared && layer_of(d).empty())) return "";
  std::vector<std::string> ks;
  for (const std::string& site : kernel_sites_reaching(d, in)) {
    const auto& ab = in.kernel_differences.at(site);
    ks.push_back(site + ": " + ab.first + " vs " + ab.second);
  }
  if (ks.empty()) return "";
  std::string isa;
  if (const std::string a = env_value(in.environment, "isa", true); !a.empty())
    isa = " (instruction set " + a + " vs " + env_value(in.environment, "isa", false) + ")";
  return std::string(kKernelsToo) + isa + ", which can have made it as well: " + first_of(ks, 4, "; ") +
         (in.outputs_compared
              ? "; the trace holds the layer's output, not its ops' (level layer), to tell which "
                "made the first difference: record with --level op to see"
              : "; the trace holds no op's output (level step) to tell which made the first "
                "difference: record with --level op to see");
}

Cause classify(const FirstDivergence& d, const CauseInputs& in_given) {
  // The same values summarized otherwise: no configuration, data or arithmetic makes that.
  if (d.kind == "summary")
    return {"trace", d.detail + ": " + (in_given.name_b == "replayed" ? "the trace was" : "a trace was") +
                         " changed after it was written"};
  if (in_given.data_changed) {
    // Data that cannot have made this event is named beside the cause the other evidence gives.
    const auto side = [&](bool a) -> std::string {
      if (auto it = in_given.kernel_differences.find("data/loader"); it != in_given.kernel_differences.end())
        return a ? it->second.first : it->second.second;
      auto it = in_given.kernels.find("data/loader");
      return it != in_given.kernels.end() ? it->second : "";
    };
    std::string why =
        data_not_reaching(d, in_given.seed_recorded != in_given.seed_replayed, side(true), side(false));
    if (why.empty()) why = data_not_reaching_model(d, in_given);
    if (why.empty()) why = data_not_reaching_rows(d, in_given);
    if (!why.empty()) {
      CauseInputs without = in_given;
      without.data_changed = false;
      Cause c = classify(d, without);
      c.detail += "; the data differs too, but cannot have made this difference (" + why +
                  "): " + in_given.data_detail;
      return c;
    }
  }
  // Accumulation orders that differed where they can have made the first difference: in an earlier step, or
  // in its step but not in a backward op when the difference is in the forward pass or before it (a backward
  // sum runs after a forward output and cannot change it).
  CauseInputs in = in_given;
  const bool before_backward = d.phase == "forward" || d.phase == "input" || d.phase == "setup";
  std::erase_if(in.order_differences, [&](const auto& site_step) {
    return site_step.second > d.step || (site_step.second == d.step && before_backward &&
                                         site_step.first.find(".bwd") != std::string::npos);
  });
  // A difference that cannot change the first divergent event is not its cause; the reports name it apart.
  std::vector<std::string> within;
  for (const std::string& c : differences_within_steps(in.config_differences))
    if (difference_reaches(c, d, in.layer_names)) within.push_back(c);
  // The op that differs first accumulates in completion order, and its order differs here from the other
  // side's, its inputs being the same: the order is evidence in hand. A configuration difference that reaches
  // the op may add to it, and is named beside it.
  if (!in.data_changed && !within.empty() && d.kind == "probe") {
    const std::string site = kernel_site_of(d.site);
    const std::string kernel = d.kernel_replayed.empty() ? d.kernel_recorded : d.kernel_replayed;
    const Kernel* k = in.registry && !kernel.empty() ? in.registry->find(kernel) : nullptr;
    const auto order = in.order_differences.find(site);
    if (k && !k->info.deterministic && d.kernel_recorded == d.kernel_replayed &&
        order != in.order_differences.end() && order->second == d.step)
      return {
          "numeric",
          "same kernel " + kernel +
              ", same inputs, different output: it accumulates in completion "
              "order (declared nondeterministic), and its partials were combined in another order in the " +
              in.name_a + " and the " + in.name_b +
              " run; the run configuration differs too: " + join_some(within)};
  }
  if (in.data_changed) {
    // Both may differ: neither is the whole cause, so the configuration's differences are named too.
    // Where the rows that differ are first read, when both copies were compared; else before any step.
    const DataReach* r = in.data_reach ? &*in.data_reach : nullptr;
    const bool read_by = r && r->first_step >= 0 && r->first_step <= d.step;
    std::string detail =
        in.data_detail + "; " +
        (read_by ? data_reach_words(*r)
         : r && d.phase == "evaluation" && r->validation
             ? "a validation row differs, which the evaluation reads"
         : r && d.phase == "evaluation" && r->test ? "a test row differs, which the evaluation reads"
         : r || d.phase == "setup" || d.site == "data/split" ? "the data differs before any step runs"
                                                             : kDataReachUnknown);
    if (!within.empty()) detail += "; the run configuration differs too: " + join_some(within);
    return {"data", detail + kernels_too(d, in)};
  }
  if (!within.empty())
    return {"config", "the run configuration differs: " + join_some(within) + kernels_too(d, in)};

  // A recorded order of partials that the same kernel, on the shapes the configuration gives, does not make
  // (another count of them), at or before the first difference: the recorded run did not run those shapes.
  // Not where the first difference is in what a step reads (another batch, a short one, has other shapes).
  const bool in_input = d.phase == "input" || d.phase == "setup" || d.kind == "loader" ||
                        d.kind == "shuffle" || d.kind == "split" || d.kind == "rng";
  if (in.config_differences.empty() && !in.data_changed && !in_input)
    for (const auto& [site, at] : in.orders_of_other_shapes)
      if (at.first <= d.step)
        return {"trace", at.second + ": no run of this configuration records that: " +
                             trace_not_following(in.name_b == "replayed")};

  std::string kind = d.kind;
  if (kind == "extra" || kind == "missing") {
    const std::string c = category_of_site(d.site);
    if (!c.empty()) kind = c;
  }
  // With the same configuration and data (either would be the cause otherwise), two runs make the same events
  // in each step: an event one side has and the other lacks, or a recorded batch that no loader can hand out,
  // says that a trace does not follow the run its configuration describes.
  const std::string trace_words =
      std::string(in.name_b == "replayed" ? "the trace does" : "a trace does") +
      " not follow the run its configuration describes: with the same configuration and data, runs make the "
      "same events (it was changed after it was written, or written by another version of trainrr)";
  if (kind == "extra" || kind == "missing") return {"trace", d.detail + "; " + trace_words};
  // An epoch's logs are named by the configuration (its metrics, a validation split): a log one side has and
  // the other lacks is no arithmetic.
  if (kind == "metrics") {
    if (d.detail.find(kMetricOnOneSide) != std::string::npos)
      return {"trace", "one side holds an epoch log the other's run does not make; " + trace_words};
    return epoch_log_cause(d.site, in.resumed_at, in.name_b == "replayed");
  }
  // The initial weights come from the draws, which were the same, and from the configuration, which is.
  if (kind == "state" && d.phase == "setup") return {"trace", d.detail + "; " + trace_words};
  // A state's place in the run (its epoch, order, cursor, random offsets) follows from the choices the steps
  // compared the same.
  if (kind == "state" && (d.detail.find(kOtherPlaceInTheRun) != std::string::npos ||
                          d.detail.find(kResumedSums) != std::string::npos))
    return {"trace", d.detail + "; " + trace_words};

  if (kind == "loader" && d.detail.find(kBatchRefused) != std::string::npos)
    return {"trace", d.detail + "; no loader hands out such a batch, so " + trace_words};
  if (kind == "split" && d.detail.find(kSplitNotOfItsConfiguration) != std::string::npos)
    return {"trace", d.detail + "; " + trace_words};
  if (kind == "shuffle" && d.detail.find(kShuffleOfOtherRows) != std::string::npos)
    return {"trace", d.detail + "; every epoch shuffles the run's training rows, so " + trace_words};
  if ((kind == "rng" && d.detail.find(kKeyNotOfItsSeed) != std::string::npos) ||
      (kind == "shuffle" && d.detail.find(kOrderNotOfItsDraw) != std::string::npos))
    return {"trace", d.detail + "; no run records that: " + trace_not_following(in.name_b == "replayed")};
  if (kind == "rng") {
    if (in.seed_recorded != in.seed_replayed)
      return {"rng", "the run seed differs: " + std::to_string(in.seed_recorded) + " (" + in.name_a + ") vs " +
                         std::to_string(in.seed_replayed) + " (" + in.name_b + ")" +
                         (in.seed_from_entropy ? ", as a run whose configuration gives no seed draws one from the OS"
                                               : "") +
                         "; first affected draw: " + d.site};
    // Before the first step, a run of one seed, configuration and data draws the same words: each stream's
    // key comes from the seed, its counter starts at 0, and a count is a tensor's size (an initial weight's,
    // the split's). Another draw there says the trace does not follow its configuration; the numbers drawn
    // from the words are another matter (below).
    if (!d.same_draw && in_initial_weights(d)) return {"trace", d.detail + "; " + trace_words};
    std::string detail = d.detail;
    if (d.same_draw) {
      // The configuration is the same (it would be the cause otherwise): the arithmetic that makes values of
      // the words is what differs.
      std::vector<std::string> env;
      env = environment_that_may_matter(in);
      detail += "; with the same configuration, the same words make other values: the arithmetic that turns "
                "them into values differs (another build or math library)" +
                (env.empty() ? std::string(", though nothing recorded about the environment differs")
                             : "; the environment differs in " + join(env, ", "));
    }
    std::vector<std::string> fine;
    std::string own_stream = d.site;
    for (const auto& [stream, n] : in.matched_draws)
      if (stream != own_stream) fine.push_back(stream + " (" + counted(n, "draw") + ")");
    if (!fine.empty()) detail += "; other streams unaffected: " + join(fine, ", ");
    return {"rng", detail};
  }
  if (kind == "split" || kind == "shuffle" || kind == "loader") {
    std::string detail = d.detail;
    if (kind == "loader") {
      auto it = in.kernel_differences.find("data/loader");
      if (it != in.kernel_differences.end()) {
        detail += "; loader " + it->second.first + " (" + in.name_a + "), " + it->second.second + " (" +
                  in.name_b + ")";
        // The thread count picks the loader under the default policy (first-ready with several threads).
        if (const std::string th_a = env_value(in.environment, "threads", true); !th_a.empty())
          detail += "; threads " + th_a + " vs " + env_value(in.environment, "threads", false);
        // The side that ran a first-ready loader had its order from a race.
        const bool a_raced = it->second.first.find("first_ready") != std::string::npos,
                   b_raced = it->second.second.find("first_ready") != std::string::npos;
        if (a_raced || b_raced)
          detail += "; a first-ready loader hands out batches in the order its workers finish, so the " +
                    (a_raced ? in.name_a : in.name_b) + " order was a race";
      } else {
        // The loader the first side ran, as recorded; the replay's message names it too.
        auto ran = in.kernels.find("data/loader");
        const std::string loader = ran != in.kernels.end() ? ran->second : "";
        if (loader == "loader__ordered" || (loader.empty() && d.detail.find("loader__ordered") != std::string::npos))
          detail += "; the ordered loader hands out the next batch, so the recorded order came from elsewhere "
                    "(a first-ready loader's race in the recording, or a hook)";
        else if (loader.find("first_ready") != std::string::npos ||
                 d.detail.find("first_ready") != std::string::npos)
          detail += "; a first-ready loader hands out batches in the order its workers finish";
      }
    }
    return {kind, detail};
  }

  // A probe or a step's parameters: the kernel at the op, then numerics. A kernel difference comes with the
  // instruction sets and thread counts when they differ, as they usually decide it.
  // The instruction sets are named where they can have decided the kernels that differ: where a kernel one
  // side ran needs more than the other side's instruction set (an AVX-512 kernel against AVX2), or is not
  // known here.
  std::string context;
  const std::string isa_a = env_value(in.environment, "isa", true),
                    isa_b = env_value(in.environment, "isa", false);
  auto isa_decides = [&](const std::vector<std::pair<std::string, std::string>>& pairs) {
    if (isa_a.empty()) return false;
    auto a = parse_isa(isa_a), b = parse_isa(isa_b);
    if (!a || !b || !in.registry) return true;
    for (const auto& [ka, kb] : pairs) {
      const Kernel* x = in.registry->find(ka);
      const Kernel* y = in.registry->find(kb);
      if (!x || !y || x->info.isa > *b || y->info.isa > *a) return true;
    }
    return false;
  };
  const std::string th_a = env_value(in.environment, "threads", true),
                    th_b = env_value(in.environment, "threads", false);
  // The thread count is named beside kernels that differ only where it can have decided them: the selector
  // takes a kernel whose bits depend on the thread count or its completion order (split-K, atomic sums, the
  // first-ready loader) or OpenBLAS (run on the pool's threads) by the thread count, and a timed pick
  // (autotune) measures the kernels on those threads. Two blocked kernels of other instruction sets are not
  // its doing.
  auto threads_decide = [&](const std::vector<std::pair<std::string, std::string>>& pairs,
                            const std::string& how) {
    if (th_a.empty()) return false;
    if (!in.registry || how.find("by timing") != std::string::npos) return true;
    for (const auto& [ka, kb] : pairs)
      for (const std::string* id : {&ka, &kb}) {
        const Kernel* x = in.registry->find(*id);
        if (!x || x->info.thread_dependent || !x->info.deterministic || is_openblas(*id)) return true;
      }
    return false;
  };
  auto with_threads = [&](const std::vector<std::pair<std::string, std::string>>& pairs,
                          const std::string& how) {
    return threads_decide(pairs, how) ? "; threads " + th_a + " vs " + th_b : std::string();
  };
  auto with_isa = [&](const std::vector<std::pair<std::string, std::string>>& pairs, const std::string& how,
                      const std::string& rest) {
    return (isa_decides(pairs) ? "; instruction set " + isa_a + " vs " + isa_b : std::string()) +
           with_threads(pairs, how) + rest;
  };
  // The policy picks the kernel at each site.
  if (const std::string policy_a = env_value(in.environment, "policy", true); !policy_a.empty())
    context += "; policy " + policy_a + " vs " + env_value(in.environment, "policy", false);
  // OpenBLAS ran other machine code on the two sides at the sites that chose it: as likely a cause as the
  // kernels that differ, and named beside them.
  {
    const std::string ca = openblas_core_in(env_value(in.environment, "lib.openblas", true)),
                      cb = openblas_core_in(env_value(in.environment, "lib.openblas", false));
    // Where both sides ran OpenBLAS: where one ran another kernel, OpenBLAS's code there made no number of
    // it.
    // And only at sites that run before the first difference, or at it: at level op, the op itself (the ops
    // before it computed the same outputs); in the forward pass, the forward ops of its layer and the layers
    // before it.
    const std::string layer = layer_of(d);
    const auto upto = std::find(in.layer_names.begin(), in.layer_names.end(), layer);
    auto can_reach = [&](const std::string& site) {
      if (d.kind == "probe" && in.op_outputs_compared && d.site.find('/') != std::string::npos)
        return site == kernel_site_of(d.site);
      if (d.phase == "forward" && upto != in.layer_names.end()) {
        if (site.find(".bwd") != std::string::npos) return false;
        const std::string of = site.substr(0, site.find('/'));
        return std::find(in.layer_names.begin(), upto + 1, of) != upto + 1;
      }
      return true;
    };
    std::vector<std::string> at;
    for (const auto& [site, kernel] : in.kernels) {
      const auto other = in.kernel_differences.find(site);
      if (is_openblas(kernel) &&
          (other == in.kernel_differences.end() || is_openblas(other->second.second)) && can_reach(site))
        at.push_back(site);
    }
    if (!ca.empty() && !cb.empty() && ca != cb && !at.empty())
      context += "; OpenBLAS ran its " + ca + " code (" + in.name_a + ") and its " + cb + " code (" +
                 in.name_b + ") at " + first_of(at, 3);
  }
  // How each side picked the kernel at `site` when it timed the candidates (autotune).
  auto picks = [&](const std::string& site) {
    std::string out;
    if (auto it = in.kernel_picks.find(site); it != in.kernel_picks.end()) {
      if (!it->second.first.empty()) out += "; " + in.name_a + " " + it->second.first;
      if (!it->second.second.empty()) out += "; " + in.name_b + " " + it->second.second;
    }
    return out;
  };
  // A timing is a measurement of that moment on that machine: the pick itself varies run to run.
  auto timed = [](const std::string& text) {
    return text.find("by timing") == std::string::npos
               ? text
               : text + " (timings vary from run to run, so an autotuned pick does too)";
  };
  // A GPU kernel (CUDA, cuBLASLt, cuDNN: "__cu" after the op) ran on the device: the host's instruction set
  // and thread count say nothing of what it computed.
  auto on_gpu = [](const std::string& kernel) { return kernel.find("__cu") != std::string::npos; };
  if (!d.kernel_recorded.empty() && !d.kernel_replayed.empty() && d.kernel_recorded != d.kernel_replayed &&
      !same_bits_kernels(in, d.kernel_recorded, d.kernel_replayed))
    return {"kernel", "a different kernel ran at " + kernel_site_of(d.site) + ": " + d.kernel_recorded +
                          " (" + in.name_a +
                          (d.kernel_substituted_for.empty()
                               ? std::string()
                               : ", in place of " + d.kernel_substituted_for + ", which cannot run here") +
                          "), " + d.kernel_replayed + " (" + in.name_b + ")" +
                          timed(picks(kernel_site_of(d.site))) +
                          (on_gpu(d.kernel_recorded) || on_gpu(d.kernel_replayed)
                               ? std::string()
                               : with_isa({{d.kernel_recorded, d.kernel_replayed}},
                                          picks(kernel_site_of(d.site)), context))};
  const std::vector<std::string> sites = kernel_sites_reaching(d, in);
  if (!sites.empty()) {
    std::vector<std::string> ks;
    std::vector<std::pair<std::string, std::string>> pairs;
    std::string how;
    for (const std::string& site : sites) {
      const auto& ab = in.kernel_differences.at(site);
      ks.push_back(site + ": " + ab.first + " vs " + ab.second);
      pairs.push_back(ab);
      how += picks(site);
    }
    // Where no op's output was compared (level step), sums in completion order that combined their partials
    // in other orders by then can have made the difference as well as the kernels: nothing says which did.
    std::string orders;
    if (!in.outputs_compared && !in.order_differences.empty()) {
      std::vector<std::string> at;
      for (const auto& [site, step] : in.order_differences)
        at.push_back(site + " (step " + std::to_string(step) + ")");
      orders =
          "; kernels that accumulate in completion order (declared nondeterministic) combined their "
          "partials in different orders too, at " +
          first_of(at, 3) +
          ", which can have made it as well: the trace holds no op's output (level step) to tell which "
          "made the first difference";
    }
    return {"kernel", "kernel selections differ: " + join(ks, "; ") + timed(how) +
                          with_isa(pairs, how, context) + orders};
  }
  const std::string kernel = d.kernel_replayed.empty() ? d.kernel_recorded : d.kernel_replayed;
  const Kernel* k = in.registry && !kernel.empty() ? in.registry->find(kernel) : nullptr;
  if (const std::string why = k ? std::string() : gpu_nondeterminism(kernel); !why.empty()) return {"numeric", why};
  if (k && !k->info.deterministic)
    return {"numeric", "same kernel " + kernel +
                           ", same inputs, different output: it accumulates in completion "
                           "order (declared nondeterministic)"};
  // OpenBLAS picks its code by CPU when it loads: the same kernel id, different machine code.
  const std::string core_a = openblas_core_in(env_value(in.environment, "lib.openblas", true)),
                    core_b = openblas_core_in(env_value(in.environment, "lib.openblas", false));
  const bool ran_openblas =
      is_openblas(kernel) ||
      (kernel.empty() && std::any_of(in.kernels.begin(), in.kernels.end(), [](const auto& site_kernel) {
         return is_openblas(site_kernel.second);
       }));
  // Only where TRAINRR_ISA is set on a side did trainrr choose OpenBLAS's code; elsewhere OpenBLAS picked it.
  // (Not where the user set OPENBLAS_CORETYPE: trainrr leaves it as it is.)
  auto differs_in = [&](const char* key) {
    return std::any_of(in.environment.begin(), in.environment.end(),
                       [&](const EnvDifference& e) { return e.key == key; });
  };
  const bool isa_set_by_trainrr_isa = differs_in("env.TRAINRR_ISA") && !differs_in("env.OPENBLAS_CORETYPE");
  if (ran_openblas && !core_a.empty() && !core_b.empty() && core_a != core_b && in.order_differences.empty())
    return {"numeric",
            "same kernel " + (is_openblas(kernel) ? kernel : std::string("f32_matmul__openblas_sgemm")) +
                ", same inputs, different output: OpenBLAS ran its " + core_a + " code (" + in.name_a +
                ") and its " + core_b + " code (" + in.name_b +
                "); it picks its code for the CPU it loads on, or the one OPENBLAS_CORETYPE names" +
                (isa_a.empty()
                     ? std::string()
                     : "; the instruction sets differ (" + isa_a + " vs " + isa_b + ")" +
                           (isa_set_by_trainrr_isa
                                ? ", and trainrr sets OPENBLAS_CORETYPE to keep OpenBLAS within TRAINRR_ISA"
                                : std::string())) +
                (th_a.empty() ? std::string()
                              : "; the thread count differs too (" + th_a + " vs " + th_b +
                                    "), on which OpenBLAS's split of the work can depend")};
  // Named after OpenBLAS's code, which makes other numbers whatever the threads (and a thread count alone
  // leaves OpenBLAS's sgemm at many shapes as it was).
  if (k && k->info.thread_dependent && !th_a.empty())
    return {"numeric", "same kernel " + kernel + ", same inputs: its result depends on the thread count, " +
                           th_a + " threads (" + in.name_a + "), " + th_b + " (" + in.name_b + ")"};
  if (!in.order_differences.empty()) {
    std::vector<std::string> sites;
    for (const auto& [site, step] : in.order_differences) sites.push_back(site + " (step " + std::to_string(step) + ")");
    return {"numeric",
            "kernels that accumulate in completion order (declared nondeterministic) combined their "
            "partials in different orders in the " +
                in.name_a + " and the " + in.name_b + " run at " + join(sites, ", ")};
  }
  // The portable policy computes exp, log, log1p and tanh (activations, losses) and Adam's powers with
  // trainrr's own functions, every other policy with glibc's: the same kernels, other elementwise roundings.
  const std::string policy_a = env_value(in.environment, "policy", true),
                    policy_b = env_value(in.environment, "policy", false);
  const bool elementwise_math = d.site.find("softmax") != std::string::npos ||
                                d.site.find("sigmoid") != std::string::npos ||
                                d.site.find("tanh") != std::string::npos || d.site.starts_with("loss") ||
                                d.phase == "update";
  if (policy_a != policy_b && (policy_a == "portable" || policy_b == "portable") && elementwise_math)
    return {"numeric", "same kernel" + (kernel.empty() ? std::string() : " " + kernel) +
                           ", same inputs, different output: the policy differs, " + policy_a + " (" + in.name_a +
                           ") vs " + policy_b + " (" + in.name_b +
                           "), and under portable the activations, losses and Adam take trainrr's own exp, log, "
                           "log1p, tanh and powers instead of glibc's, which round differently"};
  const std::vector<std::string> env = environment_that_may_matter(in);
  // At a step's end (below level op) the values inside the step were not compared: what was the same is what
  // the step started from and every kernel selection.
  const std::string same =
      d.kind == "state"
          ? std::string("same kernel selections, every value the steps compared the same, a different state")
          : (d.kind == "step_end" && kernel.empty()
                 ? std::string("same kernel selections, same parameters and batch at the step's start")
                 : "same kernel" + (kernel.empty() ? std::string() : " " + kernel) + ", same inputs") +
                ", different output";
  if (!env.empty()) return {"numeric", same + "; the environment differs in " + join(env, ", ")};
  // A kernel not known here (another device's) may be nondeterministic without this trainrr knowing it.
  auto deterministic_here = [&](const std::string& id) {
    const Kernel* known = in.registry ? in.registry->find(id) : nullptr;
    return known && known->info.deterministic;
  };
  const bool every_kernel_known = kernel.empty()
                                      ? std::all_of(in.kernels.begin(), in.kernels.end(),
                                                    [&](const auto& site_kernel) {
                                                      // A loader computes no value: its choice is which batch
                                                      // comes next.
                                                      return site_kernel.first.rfind("data/", 0) == 0 ||
                                                             deterministic_here(site_kernel.second);
                                                    })
                                      : deterministic_here(kernel);
  if (!every_kernel_known)
    return {"numeric",
            same +
                ": nothing recorded about the environment differs (trainrr's version is recorded, not "
                "its build: a recording by another build of the same version would not show here)"};
  // Nothing recorded differs, and every kernel is deterministic: rounding is no answer the evidence gives.
  const bool replay = in.name_a == "recorded";
  return {
      "unexplained",
      same + ", and nothing recorded differs (configuration, data, recorded choices, environment): either " +
          (replay ? "the trace does not hold what its run did (changed after it was written), or the build "
                    "of trainrr that recorded it computes otherwise than this one"
                  : "a trace does not hold what its run did (changed after it was written), or the builds "
                    "of trainrr that recorded them compute otherwise") +
          " (trainrr's version is recorded, not its build)"};
}

}  // namespace trainrr
