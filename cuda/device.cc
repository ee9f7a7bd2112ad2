#include "cuda/device.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>

#include "cuda/blaslt.h"

namespace trainrr::cuda {
namespace {

std::string runtime_error(const char* call, cudaError_t e) {
  return std::string(call) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

}  // namespace

std::string cuda_version_str(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

Result<GpuInfo> find_gpu(int index) {
  GpuInfo g;
  g.index = index;
  cudaRuntimeGetVersion(&g.runtime_version);
  cudaDriverGetVersion(&g.driver_version);
  // 0: "If no driver is installed, then 0 is returned" (cuda_runtime_api.h). Nothing else is asked then.
  if (g.driver_version == 0)
    return Error{"no CUDA driver on this machine (cudaDriverGetVersion reports none; trainrr's CUDA runtime is " +
                 cuda_version_str(g.runtime_version) + ")"};
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    std::string why = runtime_error("cudaGetDeviceCount", e);
    if (e == cudaErrorInsufficientDriver)
      why += ": the driver supports CUDA " + cuda_version_str(g.driver_version) + ", older than trainrr's runtime " +
             cuda_version_str(g.runtime_version);
    return Error{why};
  }
  if (count == 0) return Error{"the CUDA driver sees no GPU (cudaGetDeviceCount reports 0)"};
  if (index < 0 || index >= count)
    return Error{"there is no GPU " + std::to_string(index) + ": the CUDA driver sees " + std::to_string(count) +
                 (count == 1 ? " GPU (cuda:0)" : " GPUs (cuda:0 to cuda:" + std::to_string(count - 1) + ")")};
  cudaDeviceProp p{};
  if (cudaError_t e = cudaGetDeviceProperties(&p, index); e != cudaSuccess)
    return Error{runtime_error("cudaGetDeviceProperties", e)};
  g.name = p.name;
  g.cc_major = p.major;
  g.cc_minor = p.minor;
  g.sm_count = p.multiProcessorCount;
  g.memory_bytes = p.totalGlobalMem;
  return g;
}

Result<GpuFound> probe_gpu(int index) {
  auto g = find_gpu(index);
  if (!g) return g.error();
  char memory[32];
  std::snprintf(memory, sizeof memory, "%.1f GiB", static_cast<double>(g->memory_bytes) / (1024.0 * 1024 * 1024));
  return GpuFound{g->name + " (compute capability " + std::to_string(g->cc_major) + "." +
                  std::to_string(g->cc_minor) + ", " + std::to_string(g->sm_count) + " SMs, " + memory +
                  "), driver for CUDA " + cuda_version_str(g->driver_version)};
}

const std::vector<std::string>& cuda_numerics_variables() {
  static const std::vector<std::string> vars = {
      "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE", "CUDA_LAUNCH_BLOCKING", "CUBLASLT_WORKSPACE_SIZE",
      "CUDNN_DETERMINISTIC",     "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_MAX_CONNECTIONS", "CUDA_MODULE_LOADING",
      "CUBLAS_EMULATE_SINGLE_PRECISION"};
  return vars;
}

std::vector<std::pair<std::string, std::string>> gpu_environment(const GpuInfo& g) {
  std::vector<std::pair<std::string, std::string>> env = {
      {"gpu.name", g.name},
      {"gpu.compute_capability", std::to_string(g.cc_major) + "." + std::to_string(g.cc_minor)},
      {"gpu.sm_count", std::to_string(g.sm_count)},
      {"gpu.memory", std::to_string(g.memory_bytes)},
      {"cuda.driver", cuda_version_str(g.driver_version)},
      {"cuda.runtime", cuda_version_str(g.runtime_version)},
  };
  if (auto lt = BlasLt::load()) env.emplace_back("lib.cublasLt", std::to_string((*lt)->version()));
  for (const std::string& var : cuda_numerics_variables())
    if (const char* v = std::getenv(var.c_str())) env.emplace_back("env." + var, v);
  return env;
}

}  // namespace trainrr::cuda
