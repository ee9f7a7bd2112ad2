#pragma once
// The one interface through which every source of run-to-run variation passes (DESIGN.md, choice points).
// Decision hooks take their decision by reference: the engine fills in what it would do, a hook may
// replace it (that is how replay forces a recorded choice). Observation hooks only look.
// The default implementation does nothing and costs a virtual call.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/kernels/gpu_choice.h"
#include "engine/result.h"
#include "engine/tensor.h"

namespace trainrr {

struct CollectiveCall;  // engine/collective.h

enum class Phase : uint8_t { forward, backward, update };
const char* phase_name(Phase p);

// How much a run is probed: step summaries only, each layer's output, or every op's output.
enum class ProbeLevel : uint8_t { step = 0, layer = 1, op = 2 };
const char* probe_level_name(ProbeLevel l);

// One draw from a named Philox stream: word `counter` .. `counter + count - 1` of the stream with `key`.
struct RngDraw {
  std::string site;    // "init/dense_1.kernel", "dropout/dropout_1", "augment/noise", "data/shuffle"
  std::string stream;  // stream name; key = f(run seed, stream name)
  uint64_t key = 0;
  uint64_t counter = 0;  // offset in 32-bit words
  uint64_t count = 0;    // 32-bit words consumed
};

// One kernel (or loader) selection at a site, made once per site like cuDNN's per-configuration choice.
struct KernelChoice {
  std::string site;                     // "dense_1/matmul.fwd"
  std::string op;                       // "matmul"
  std::vector<std::string> candidates;  // ids considered, in the order considered
  std::string chosen;                   // id of the kernel that runs
  std::string reason;                   // "default: ...", "deterministic", "autotune", "forced"
  std::vector<double> timings_us;       // autotune: one per candidate; empty otherwise
  // A choice on the GPU (the CUDA backend).
  // A cuBLASLt site: one per candidate, in the order of `candidates`. At a conv site with the im2col + cuBLASLt
  // candidate (engine/kernels/conv_sites.h): the one algorithm that candidate runs.
  std::vector<BlasLtAlgo> blaslt{};
  uint64_t blaslt_version = 0;        // cublasLtGetVersion() where the choice was made; set with `blaslt`
  bool tf32 = false;                  // the matmul computed in TF32 (runtime.tf32), not float32
  std::optional<LaunchShape> launch{};  // how the chosen kernel was launched, where its result depends on it
  // A cuDNN convolution site: one per cuDNN candidate, covering the first cudnn.size() candidates in their
  // order (the im2col + cuBLASLt candidate after them has no entry).
  std::vector<CudnnEngine> cudnn{};
  uint64_t cudnn_version = 0;           // cudnnGetVersion() where the choice was made; set with `cudnn`
  std::string plan_json{};              // the chosen engine's execution plan as cuDNN serializes it, when it does
};

struct NamedTensor {
  std::string name;  // "dense_1.kernel", "adam.m/dense_1.kernel"
  Tensor value;
};

struct StepSummary {
  int64_t step = 0;   // global step, from 0
  int epoch = 0;      // from 0
  int64_t batch = 0;  // index of the batch within its epoch
  double loss = 0;
  std::vector<std::pair<std::string, double>> metrics;
  // After the update. Gradients are those of this step.
  std::vector<std::pair<std::string, const Tensor*>> params;
  std::vector<std::pair<std::string, const Tensor*>> grads;
};

struct EpochSummary {
  int epoch = 0;
  std::vector<std::pair<std::string, double>> logs;  // "loss", "accuracy", "val_loss", ...
};

// Everything needed to resume a run at a step boundary.
struct TrainState {
  int64_t step = 0;            // steps completed
  int epoch = 0;               // epoch of the next step
  int64_t batch_in_epoch = 0;  // batch index of the next step within its epoch
  uint64_t seed = 0;
  std::vector<NamedTensor> tensors;                           // parameters, then optimizer state
  std::vector<std::pair<std::string, uint64_t>> rng_offsets;  // stream name -> next word
  std::vector<uint32_t> permutation;                          // the current epoch's order (loader cursor)
  std::vector<uint32_t> batches_done;  // batches of the current epoch already handed out, in that order
  std::vector<std::pair<std::string, double>> scalars;        // optimizer iterations and the like
};

class Hooks {
 public:
  virtual ~Hooks() = default;

  // Run boundaries.
  virtual void run_begin() {}
  virtual void run_end(bool completed) { (void)completed; }

  // Decision: the run seed. `from_entropy` says the configuration gave none and the OS supplied it.
  virtual void seed(uint64_t& seed, bool from_entropy) { (void)seed, (void)from_entropy; }

  // Decision, before a draw: which key and counter the draw uses (count is fixed by the caller).
  virtual void rng_draw(RngDraw& draw) { (void)draw; }
  // Observation, after the draw: the values drawn, as bytes.
  virtual void rng_values(const RngDraw& draw, std::span<const std::byte> values) { (void)draw, (void)values; }
  // Whether rng_values reads the values. A draw made on a device is copied to the host for a listener that
  // does; one that does not spares the run that copy (and gets no rng_values call for such a draw).
  virtual bool reads_drawn_values() const { return true; }

  // Decision: which rows go to train and test.
  virtual void split(std::string_view site, std::vector<uint32_t>& train, std::vector<uint32_t>& test) {
    (void)site, (void)train, (void)test;
  }
  // Decision: the order of one epoch. `draw` is the draw that produced it, or null if none.
  virtual void shuffle(std::string_view site, int epoch, std::vector<uint32_t>& permutation,
                       const RngDraw* draw) {
    (void)site, (void)epoch, (void)permutation, (void)draw;
  }
  // Decision: which batch of the current epoch the loader hands out for this step.
  virtual void batch_order(int64_t step, int64_t& batch) { (void)step, (void)batch; }
  // The batch batch_order asked for cannot be handed out in this epoch (`why`); `instead` runs.
  virtual void batch_refused(int64_t step, int64_t asked, int64_t instead, const std::string& why) {
    (void)step, (void)asked, (void)instead, (void)why;
  }

  // Decision: which kernel runs at a site.
  virtual void kernel_selected(KernelChoice& choice) { (void)choice; }
  // Observation: the kernel a decision forced at `site` (kernel_selected) cannot run here, for the reason `why`
  // (a GPU library that cannot restore a recorded algorithm on this GPU or version, say); `ran` ran instead.
  virtual void kernel_replaced(std::string_view site, const std::string& ran, const std::string& why) {
    (void)site, (void)ran, (void)why;
  }
  // Decision, before a kernel that accumulates partial results in completion order runs at `site`: the
  // order to accumulate in (left empty: as the threads finish). Observation after: the order it took.
  virtual void accumulation_order(std::string_view site, std::vector<uint32_t>& order) { (void)site, (void)order; }
  virtual void accumulated(std::string_view site, const std::vector<uint32_t>& order) { (void)site, (void)order; }

  // Observation, in a data-parallel run: one gradient allreduce call of this rank (engine/collective.h).
  // The arrival order of allreduce__arrival is a decision through accumulation_order/accumulated, at the
  // site "allreduce/bucket_N".
  virtual void collective(const CollectiveCall& call) { (void)call; }

  // Observations: tensor probes at or below the level asked for. A probe in Phase::update sees its
  // parameter's value at the step's end: nothing writes a parameter after its update probe in that step.
  virtual ProbeLevel probe_level() const { return ProbeLevel::step; }
  virtual void probe(std::string_view site, Phase phase, const Tensor& value) {
    (void)site, (void)phase, (void)value;
  }
  // The same probe, of a tensor that the hooks' previous probe call saw and that nothing has written
  // since (a layer's output after its last op's). A listener may reuse what it computed from that call.
  virtual void probe_unchanged(std::string_view site, Phase phase, const Tensor& value) {
    probe(site, phase, value);
  }
  // Observation: the op `site` has queued all its work (on a device, launched its kernels; they may still
  // run). Every op of a step ends with one, whatever the probe level asks: a probe's site names its op
  // ("dense_1/matmul.fwd:out"), the loss is "loss", a parameter's update "<param>/update:out". A listener can
  // charge what happened since the previous op_done (the GPU kernels launched, say) to this op. Evaluation,
  // outside every step, calls it too.
  virtual void op_done(std::string_view site) { (void)site; }

  virtual void step_begin(int64_t step, int epoch, int64_t batch) { (void)step, (void)epoch, (void)batch; }
  virtual void step_end(const StepSummary& summary) { (void)summary; }
  // Whether step_end reads the step's parameters and gradients (StepSummary::params and grads). In a run on
  // a device they are copied to the host after every step for a listener that does; one that does not
  // spares the run that copy, and gets a summary without them.
  virtual bool reads_step_tensors() const { return true; }
  virtual void epoch_end(const EpochSummary& summary) { (void)summary; }

  // Checkpoints: the engine builds a TrainState only when asked for one, before the first step (0 steps
  // completed) and after each step.
  virtual bool wants_checkpoint(int64_t steps_completed) {
    (void)steps_completed;
    return false;
  }
  virtual void checkpoint(const TrainState& state) { (void)state; }

  // Asked before every step: an error stops the run there, with that error (a recorder that can no longer
  // write its trace, say, rather than train on unrecorded). The default never stops it.
  virtual Status health() const { return {}; }
};

// The hooks used when nobody listens.
Hooks& null_hooks();

}  // namespace trainrr
