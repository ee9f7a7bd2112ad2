#include "tools/run_common.h"

#include "engine/device.h"
#include "engine/device_backend.h"

#include "engine/escape.h"

namespace trainrr::cli {

Status check_run_device(const RunConfig& config) {
  auto device = parse_device(config.runtime.device);
  if (!device) return Error{"runtime.device: " + device.error().message};
  if (Status s = usable_device(*device); !s)
    return Error{"runtime.device = \"" + config.runtime.device + "\": " + s.error().message};
  return {};
}


void print_run_header(FILE* out, const RunConfig& config, Training& t) {
  std::fprintf(out, "run: %s\n", inline_text(config.file).c_str());
  std::fprintf(out, "seed: %llu%s\n", static_cast<unsigned long long>(t.seed()),
               t.seed_from_entropy() ? " (drawn from the OS: the configuration gives none)" : "");
  const DataConfig& d = config.data;
  const std::string split =
      t.test_data().rows() ? " (" + d.split + " split" + (d.stratify ? ", stratified" : "") + ")" : "";
  std::fprintf(out, "data: %lld training rows, %lld validation, %lld test%s; sample shape %s\n",
               static_cast<long long>(t.train_data().rows()),
               static_cast<long long>(t.validation_data().rows()),
               static_cast<long long>(t.test_data().rows()), split.c_str(),
               shape_str(t.train_data().sample_shape()).c_str());
  std::fprintf(out, "runtime: %d threads, policy %s, isa %s\n", t.threads(), policy_name(t.policy()),
               isa_name(t.isa()));
  if (const DeviceBackend* device = t.device())
    std::fprintf(out, "device: %s%s\n", device->describe().c_str(),
                 config.runtime.tf32 ? ", matmuls in TF32 (runtime.tf32)" : ", float32 (TF32 off)");
  std::fprintf(out, "model:\n%s", t.model().summary().c_str());
  std::fflush(out);
}

void print_final_metrics(FILE* out, Training& t) {
  if (!t.has_test()) return;
  Evaluation ev = t.evaluate(t.test_data());
  std::fprintf(out, "test: loss %.4f", shown_number(ev.loss));
  if (t.config().train.loss != "mse") std::fprintf(out, " - accuracy %.4f", shown_number(ev.accuracy));
  std::fprintf(out, " (%lld rows)\n", static_cast<long long>(ev.rows));
  std::fflush(out);
}

}  // namespace trainrr::cli
