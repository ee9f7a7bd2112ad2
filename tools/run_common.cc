#include "tools/run_common.h"

#include <cstdlib>

#include "engine/device.h"
#include "engine/device_backend.h"
#include "engine/escape.h"
#include "tools/commands.h"
#include "tools/trace_text.h"

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

bool refused_under_mpirun(const char* verb, const std::string& what) {
  auto number = [](const char* name) -> long {
    const char* v = std::getenv(name);
    return v ? std::strtol(v, nullptr, 10) : -1;
  };
  long size = number("OMPI_COMM_WORLD_SIZE");
  if (size < 0) size = number("PMI_SIZE");
  if (size <= 1) return false;
  long rank = number("OMPI_COMM_WORLD_RANK");
  if (rank < 0) rank = number("PMI_RANK");
  if (rank <= 0 && what.empty())
    print_error(std::string(verb) + " does not run under mpirun: each of the " + std::to_string(size) +
                " processes would run it whole; run `trainrr " + verb +
                "` once, without mpirun (replay and record "
                "are the verbs that take mpirun)");
  else if (rank <= 0)
    print_error(what + ": under mpirun each of the " + std::to_string(size) + " processes would " + verb +
                " it whole; run `trainrr " + verb + "` once, without mpirun");
  return true;
}

}  // namespace trainrr::cli
