#include "engine/kernels/kernel_registry.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

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

#if defined(__x86_64__)
namespace {

// The flags CPUID reports, named as Linux names them in /proc/cpuinfo. /proc/cpuinfo itself describes the
// machine's CPU, which is not always the CPU the process runs on (an emulator: qemu-x86_64 -cpu Nehalem
// reports the host's flags there, and Nehalem's through CPUID).
std::vector<std::string> cpuid_flags() {
  struct Bit {
    unsigned leaf, subleaf;
    int reg;  // 0 eax, 1 ebx, 2 ecx, 3 edx
    int bit;
    const char* name;
  };
  static const Bit kBits[] = {
      {1, 0, 3, 25, "sse"},          {1, 0, 3, 26, "sse2"},        {1, 0, 2, 0, "pni"},
      {1, 0, 2, 9, "ssse3"},         {1, 0, 2, 12, "fma"},         {1, 0, 2, 19, "sse4_1"},
      {1, 0, 2, 20, "sse4_2"},       {1, 0, 2, 23, "popcnt"},      {1, 0, 2, 28, "avx"},
      {1, 0, 2, 29, "f16c"},         {7, 0, 1, 3, "bmi1"},         {7, 0, 1, 5, "avx2"},
      {7, 0, 1, 8, "bmi2"},          {7, 0, 1, 16, "avx512f"},     {7, 0, 1, 17, "avx512dq"},
      {7, 0, 1, 21, "avx512ifma"},   {7, 0, 1, 28, "avx512cd"},    {7, 0, 1, 30, "avx512bw"},
      {7, 0, 1, 31, "avx512vl"},     {7, 0, 2, 1, "avx512vbmi"},   {7, 0, 2, 11, "avx512_vnni"},
      {7, 1, 0, 5, "avx512_bf16"},   {7, 0, 3, 22, "amx_bf16"},    {7, 0, 3, 23, "avx512_fp16"},
      {7, 0, 3, 24, "amx_tile"},     {7, 0, 3, 25, "amx_int8"},
  };
  unsigned max_leaf = 0, ebx = 0, ecx = 0, edx = 0;
  __cpuid(0, max_leaf, ebx, ecx, edx);
  // Registers wider than SSE are usable only where the OS saves them (XCR0), whatever CPUID says.
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  __cpuid(1, a1, b1, c1, d1);
  uint64_t xcr0 = 0;
  if (c1 & (1u << 27)) {  // OSXSAVE
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
  }
  const bool ymm = (xcr0 & 0x6) == 0x6, zmm = ymm && (xcr0 & 0xE0) == 0xE0, tiles = (xcr0 & 0x60000) == 0x60000;
  std::vector<std::string> flags;
  for (const Bit& b : kBits) {
    if (b.leaf > max_leaf) continue;
    unsigned r[4] = {};
    __cpuid_count(b.leaf, b.subleaf, r[0], r[1], r[2], r[3]);
    if (!(r[b.reg] & (1u << b.bit))) continue;
    const std::string_view name = b.name;
    if ((name == "avx" || name == "avx2" || name == "fma" || name == "f16c") && !ymm) continue;
    if (name.starts_with("avx512") && !zmm) continue;
    if (name.starts_with("amx") && !tiles) continue;
    flags.emplace_back(name);
  }
  return flags;
}

}  // namespace
#endif

std::vector<std::string> cpu_flags() {
#if defined(__x86_64__)
  return cpuid_flags();
#else
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0 && line.rfind("Features", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::istringstream words(line.substr(colon + 1));
    std::vector<std::string> flags;
    for (std::string f; words >> f;) flags.push_back(f);
    return flags;
  }
  return {};
#endif
}

std::string cpu_model() {
#if defined(__x86_64__)
  unsigned max_ext = 0, b = 0, c = 0, d = 0;
  __cpuid(0x80000000u, max_ext, b, c, d);
  if (max_ext >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      unsigned r[4] = {};
      __cpuid(0x80000002u + i, r[0], r[1], r[2], r[3]);
      std::memcpy(brand + 16 * i, r, 16);
    }
    std::string s = brand;
    const size_t first = s.find_first_not_of(' '), last = s.find_last_not_of(' ');
    if (first != std::string::npos) return s.substr(first, last - first + 1);
  }
#endif
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0)
      if (const size_t colon = line.find(':'); colon != std::string::npos && colon + 2 <= line.size())
        return line.substr(colon + 2);
  return "unknown";
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

std::optional<OpKind> kernel_op_in_any_build(std::string_view id) {
  using enum OpKind;
  // Kept with register_cpu_kernels and the CUDA backend's ids (engine/kernels/device_sites.h, conv_sites.h);
  // a test holds every registered kernel and every id the device makes to it.
  static constexpr std::pair<std::string_view, OpKind> kFixed[] = {
      {"f32_matmul__cpu_reference", matmul},
      {"f32_matmul__cpu_blocked_generic", matmul},
      {"f32_matmul__cpu_portable", matmul},
      {"f32_matmul__cpu_splitk_threads_generic", matmul},
      {"f32_matmul__cpu_blocked_avx2", matmul},
      {"f32_matmul__cpu_splitk_threads_avx2", matmul},
      {"f32_matmul__cpu_blocked_avx512", matmul},
      {"f32_matmul__openblas_sgemm", matmul},
      {"f32_sum__cpu_sequential", reduce},
      {"f32_sum__cpu_pairwise", reduce},
      {"f32_sum__cpu_chunked_threads", reduce},
      {"f32_sum__cpu_atomic_threads", reduce},
      {"f32_sum__cuda_tree", reduce},
      {"f32_sum__cuda_atomic", reduce},
      {"loader__ordered", loader},
      {"loader__first_ready", loader},
      {"allreduce__trainrr_tree", allreduce},
      {"allreduce__trainrr_exact", allreduce},
      {"allreduce__mpi", allreduce},
      {"allreduce__arrival", allreduce},
  };
  for (const auto& [name, op] : kFixed)
    if (id == name) return op;
  if (id.starts_with("f32_matmul__cublaslt_algo")) return matmul;
  // The convolutions: each of the CPU's variants, and the GPU's im2col + cuBLASLt and cuDNN engines.
  for (const OpKind op : {conv2d_fwd, conv2d_bwd_data, conv2d_bwd_filter}) {
    const std::string prefix = "f32_" + std::string(op_name(op)) + "__";
    if (!id.starts_with(prefix)) continue;
    const std::string_view rest = id.substr(prefix.size());
    for (std::string_view v : {"cpu_direct", "cpu_im2col_generic", "cpu_portable", "cpu_im2col_avx2",
                               "cpu_im2col_avx512", "cuda_im2col_cublaslt"})
      if (rest == v) return op;
    if (rest.starts_with("cudnn_engine")) return op;
  }
  return std::nullopt;
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
