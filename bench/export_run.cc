// Trains a configuration and writes what another framework needs to train the same model the same way: the
// scaled training and test rows, the initial parameters, the rows of every step's batch, and trainrr's final
// parameters and test metrics. bench/crosscheck_pytorch.py reads the file, trains in PyTorch from the same
// state with the same batches, and compares.
//
//   export_run CONFIG OUT [--set KEY=VALUE]...
//
// The file is text, one record per line: a tag, then fields separated by spaces.
//   model ACTIVATION:BIAS ...         each Dense layer in order: its activation, 1 if it has a bias, else 0
//                                     (other layer types are refused)
//   optimizer TYPE LR BETA_1 BETA_2 EPSILON MOMENTUM NESTEROV
//   loss NAME
//   x_train ROWS COLS v...   y_train ROWS v...   x_test ROWS COLS v...   y_test ROWS v...
//   init NAME DIM0 DIM1 v...          one per parameter, in model order: a kernel [inputs, units], a bias [units, 1]
//   batch STEP ROWS r...              the training rows of each step, in the order the loader gave them
//   final NAME DIM0 DIM1 v...
//   test LOSS ACCURACY

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/hooks.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/trainer.h"

namespace trainrr {
namespace {

constexpr const char* kUsage =
    "usage: export_run CONFIG OUT [--set KEY=VALUE]...\n"
    "Trains CONFIG and writes its data, initial and final parameters and batch order to OUT\n"
    "(read by bench/crosscheck_pytorch.py). Dense-only models.\n";

// The order of each epoch and the batch each step took from it.
class BatchRows : public Hooks {
 public:
  void shuffle(std::string_view, int epoch, std::vector<uint32_t>& permutation, const RngDraw*) override {
    orders[epoch] = permutation;
  }
  void step_begin(int64_t, int epoch, int64_t batch) override { steps.emplace_back(epoch, batch); }

  std::map<int, std::vector<uint32_t>> orders;
  std::vector<std::pair<int, int64_t>> steps;
};

void write_values(FILE* f, const float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) std::fprintf(f, " %.9g", v[i]);
  std::fprintf(f, "\n");
}

void write_rows(FILE* f, const char* x_tag, const char* y_tag, const Dataset& d) {
  const int64_t cols = d.rows() == 0 ? 0 : d.x.size() / d.rows();
  std::fprintf(f, "%s %lld %lld", x_tag, static_cast<long long>(d.rows()), static_cast<long long>(cols));
  write_values(f, d.x.ptr(), d.x.size());
  std::fprintf(f, "%s %lld", y_tag, static_cast<long long>(d.y.size()));
  write_values(f, d.y.data(), static_cast<int64_t>(d.y.size()));
}

void write_params(FILE* f, const char* tag, Sequential& model) {
  for (const Param* p : model.params()) {
    const int64_t d0 = p->value.rank() > 0 ? p->value.dim(0) : 1;
    std::fprintf(f, "%s %s %lld %lld", tag, p->name.c_str(), static_cast<long long>(d0),
                 static_cast<long long>(p->value.size() / d0));
    write_values(f, p->value.ptr(), p->value.size());
  }
}

int run(int argc, char** argv) {
  std::vector<std::string> positional, overrides;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (!std::strcmp(argv[i], "--set") && i + 1 < argc) {
      overrides.emplace_back(argv[++i]);
    } else if (argv[i][0] == '-') {
      std::fprintf(stderr, "export_run: unknown option '%s'\n%s", argv[i], kUsage);
      return 2;
    } else {
      positional.emplace_back(argv[i]);
    }
  }
  if (positional.size() != 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  auto config = load_config(positional[0], overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "export_run: %s\n", config.error().message.c_str());
    return 2;
  }
  for (const LayerSpec& l : config->layers)
    if (l.type != "Dense") {
      std::fprintf(stderr, "export_run: %s: layer type %s; only Dense layers can be exported\n",
                   positional[0].c_str(), l.type.c_str());
      return 2;
    }

  KernelRegistry registry;
  register_cpu_kernels(registry);
  BatchRows hooks;
  TrainingOptions options;
  options.registry = &registry;
  options.hooks = &hooks;
  auto training = Training::create(*config, options);
  if (!training.ok()) {
    std::fprintf(stderr, "export_run: %s\n", training.error().message.c_str());
    return 2;
  }
  Training& t = **training;
  FILE* f = std::fopen(positional[1].c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "export_run: cannot write %s: %s\n", positional[1].c_str(), std::strerror(errno));
    return 2;
  }
  std::fprintf(f, "model");
  for (const LayerSpec& l : config->layers) std::fprintf(f, " %s:%d", l.activation.c_str(), l.use_bias ? 1 : 0);
  const OptimizerConfig& o = config->train.optimizer;
  std::fprintf(f, "\noptimizer %s %.9g %.9g %.9g %.9g %.9g %d\n", o.type.c_str(), o.learning_rate, o.beta_1,
               o.beta_2, o.epsilon, o.momentum, o.nesterov ? 1 : 0);
  std::fprintf(f, "loss %s\n", config->train.loss.c_str());
  write_rows(f, "x_train", "y_train", t.train_data());
  write_rows(f, "x_test", "y_test", t.test_data());
  write_params(f, "init", t.model());

  if (Status s = t.fit(); !s.ok()) {
    std::fprintf(stderr, "export_run: %s\n", s.error().message.c_str());
    std::fclose(f);
    return 1;
  }
  const int64_t batch_size = config->train.batch_size;
  for (size_t step = 0; step < hooks.steps.size(); ++step) {
    const auto [epoch, batch] = hooks.steps[step];
    const std::vector<uint32_t>& order = hooks.orders[epoch];
    const int64_t begin = batch * batch_size;
    const int64_t end = std::min<int64_t>(begin + batch_size, static_cast<int64_t>(order.size()));
    std::fprintf(f, "batch %zu %lld", step, static_cast<long long>(end - begin));
    for (int64_t i = begin; i < end; ++i) std::fprintf(f, " %u", order[i]);
    std::fprintf(f, "\n");
  }
  write_params(f, "final", t.model());
  const Evaluation test = t.evaluate(t.test_data());
  std::fprintf(f, "test %.9g %.9g\n", test.loss, test.accuracy);
  if (std::fclose(f) != 0) {
    std::fprintf(stderr, "export_run: cannot write %s: %s\n", positional[1].c_str(), std::strerror(errno));
    return 2;
  }
  std::printf("%s: %zu steps, test accuracy %.4f (%lld rows)\n", positional[1].c_str(), hooks.steps.size(),
              test.accuracy, static_cast<long long>(test.rows));
  return 0;
}

}  // namespace
}  // namespace trainrr

int main(int argc, char** argv) { return trainrr::run(argc, argv); }
