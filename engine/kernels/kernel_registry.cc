#include "engine/kernels/kernel_registry.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace trainrr {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::generic: return "generic";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

Result<Isa> parse_isa(std::string_view name) {
  if (name == "generic") return Isa::generic;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  return Error{"unknown instruction set '" + std::string(name) + "' (expected generic, avx2 or avx512)"};
}

Isa detect_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::generic;
}

std::vector<std::string> cpu_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::istringstream words(line.substr(colon + 1));
    std::vector<std::string> flags;
    for (std::string f; words >> f;) flags.push_back(f);
    return flags;
  }
  return {};
}

Result<Isa> runtime_isa() {
  const Isa cpu = detect_isa();
  const char* env = std::getenv("TRAINRR_ISA");
  if (!env || !*env) return cpu;
  auto asked = parse_isa(env);
  if (!asked) return Error{"TRAINRR_ISA: " + asked.error().message};
  if (*asked > cpu)
    return Error{std::string("TRAINRR_ISA=") + env + ": this CPU supports at most " + isa_name(cpu)};
  return *asked;
}

const char* op_name(OpKind op) {
  switch (op) {
    case OpKind::matmul: return "matmul";
    case OpKind::reduce: return "reduce";
    case OpKind::conv2d_fwd: return "conv2d_fwd";
    case OpKind::conv2d_bwd_data: return "conv2d_bwd_data";
    case OpKind::conv2d_bwd_filter: return "conv2d_bwd_filter";
    case OpKind::loader: return "loader";
    case OpKind::allreduce: return "allreduce";
  }
  return "?";
}

void KernelRegistry::add(Kernel kernel) {
  TRAINRR_CHECK(find(kernel.info.id) == nullptr, "kernel registered twice: " + kernel.info.id);
  kernels_.push_back(std::move(kernel));
}

const Kernel* KernelRegistry::find(std::string_view id) const {
  for (const auto& k : kernels_)
    if (k.info.id == id) return &k;
  return nullptr;
}

std::vector<const Kernel*> KernelRegistry::candidates(OpKind op, Isa isa) const {
  std::vector<const Kernel*> out;
  for (const auto& k : kernels_)
    if (k.info.op == op && k.info.isa <= isa) out.push_back(&k);
  return out;
}

}  // namespace trainrr
