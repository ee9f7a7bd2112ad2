#pragma once
// Recording through the C++ API with a hook in front of the recorder, so that a test can make a recording
// whose choices differ from what a free run makes in one known place (as a race or another machine would).

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/kernels/kernel_registry.h"
#include "engine/trainer.h"
#include "recorder/recorder.h"

namespace trainrr::testing {

// Passes every hook on to `inner`; subclasses change one decision before the recorder sees it.
class ForwardingHooks : public Hooks {
 public:
  explicit ForwardingHooks(Hooks& inner) : in_(inner) {}
  void run_begin() override { in_.run_begin(); }
  void run_end(bool c) override { in_.run_end(c); }
  void seed(uint64_t& s, bool e) override { in_.seed(s, e); }
  void rng_draw(RngDraw& d) override { in_.rng_draw(d); }
  void rng_values(const RngDraw& d, std::span<const std::byte> v) override { in_.rng_values(d, v); }
  void split(std::string_view s, std::vector<uint32_t>& a, std::vector<uint32_t>& b) override { in_.split(s, a, b); }
  void shuffle(std::string_view s, int e, std::vector<uint32_t>& p, const RngDraw* d) override {
    in_.shuffle(s, e, p, d);
  }
  void batch_order(int64_t step, int64_t& b) override { in_.batch_order(step, b); }
  void batch_refused(int64_t step, int64_t asked, int64_t instead, const std::string& why) override {
    in_.batch_refused(step, asked, instead, why);
  }
  void kernel_selected(KernelChoice& c) override { in_.kernel_selected(c); }
  void accumulation_order(std::string_view s, std::vector<uint32_t>& o) override { in_.accumulation_order(s, o); }
  void accumulated(std::string_view s, const std::vector<uint32_t>& o) override { in_.accumulated(s, o); }
  ProbeLevel probe_level() const override { return in_.probe_level(); }
  void probe(std::string_view s, Phase p, const Tensor& t) override { in_.probe(s, p, t); }
  void probe_unchanged(std::string_view s, Phase p, const Tensor& t) override {
    in_.probe_unchanged(s, p, t);
  }
  void op_done(std::string_view s) override { in_.op_done(s); }
  void step_begin(int64_t s, int e, int64_t b) override {
    step_ = s;
    in_.step_begin(s, e, b);
  }
  void step_end(const StepSummary& s) override { in_.step_end(s); }
  bool reads_step_tensors() const override { return in_.reads_step_tensors(); }
  bool reads_drawn_values() const override { return in_.reads_drawn_values(); }
  void epoch_end(const EpochSummary& e) override { in_.epoch_end(e); }
  bool wants_checkpoint(int64_t s) override { return in_.wants_checkpoint(s); }
  void checkpoint(const TrainState& s) override { in_.checkpoint(s); }
  Status health() const override { return in_.health(); }

 protected:
  Hooks& in_;
  int64_t step_ = -1;  // the step in progress (-1: setup)
};

// Replaces the kernel chosen at one site, as an autotuner timing the candidates differently would.
class OtherKernel : public ForwardingHooks {
 public:
  OtherKernel(Hooks& in, std::string site, std::string id) : ForwardingHooks(in), site_(site), id_(id) {}
  void kernel_selected(KernelChoice& c) override {
    // A kernel given to the selector by name joins its candidates, as the engine's preferred kernels do.
    if (c.site == site_) {
      c.chosen = id_;
      if (std::find(c.candidates.begin(), c.candidates.end(), id_) == c.candidates.end())
        c.candidates.push_back(id_);
    }
    in_.kernel_selected(c);
  }

 private:
  std::string site_, id_;
};

// Step 0 takes batch `last` (the epoch's last) where the loader proposed another, as a first-ready loader's
// race may: every batch is still untaken at step 0, whichever loader runs, and a free replay, whose loader
// hands out an earlier batch first, differs there.
class LastBatchFirst : public ForwardingHooks {
 public:
  LastBatchFirst(Hooks& in, int64_t last) : ForwardingHooks(in), last_(last) {}
  void batch_order(int64_t step, int64_t& b) override {
    if (step == 0) b = last_;
    in_.batch_order(step, b);
  }

 private:
  int64_t last_;
};

// Records `config_path` (with overrides) to `trace_path`, with `wrap` (if given) in front of the recorder.
inline std::string record_via_api(const std::string& config_path, const std::vector<std::string>& overrides,
                                  const std::string& trace_path,
                                  const std::function<std::unique_ptr<Hooks>(Hooks&)>& wrap = {},
                                  ProbeLevel level = ProbeLevel::step, int64_t checkpoint_every = 0,
                                  bool new_run = true) {
  auto config = load_config(config_path, overrides);
  if (!config) return config.error().message;
  auto recorder = Recorder::create(*config, {trace_path, level, checkpoint_every, false});
  if (!recorder) return recorder.error().message;
  auto isa = runtime_isa();
  if (!isa) return isa.error().message;
  const int threads = config->runtime.threads > 0 ? config->runtime.threads : ThreadPool::hardware_threads();
  (*recorder)->set_runtime(threads, isa_name(*isa), config->runtime.policy);
  std::unique_ptr<Hooks> front = wrap ? wrap(**recorder) : nullptr;
  KernelRegistry registry;
  register_cpu_kernels(registry);
  TrainingOptions opts;
  opts.registry = &registry;
  opts.hooks = front ? front.get() : recorder->get();
  opts.new_run = new_run;  // false: as a trainrr that took names new runs now refuse recorded it
  auto training = Training::create(*config, opts);
  if (!training) return training.error().message;
  Status fit = (*training)->fit();
  // As trainrr record: a run that completes keeps its final state.
  Status done = fit.ok() ? (*recorder)->finish((*training)->state(), true, "completed")
                         : (*recorder)->finish(false, fit.error().message);
  if (!fit) return fit.error().message;
  if (!done) return done.error().message;
  return "";
}

}  // namespace trainrr::testing
