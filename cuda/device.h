#pragma once
// The GPU this process can use, as the CUDA runtime reports it. Host code only: no CUDA header leaks out.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/device.h"
#include "engine/result.h"

namespace trainrr::cuda {

struct GpuInfo {
  int index = 0;
  std::string name;          // "NVIDIA H200"
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  uint64_t memory_bytes = 0;
  int driver_version = 0;    // cudaDriverGetVersion: 13000 is CUDA 13.0
  int runtime_version = 0;   // cudaRuntimeGetVersion
};

// "13.0" from 13000.
std::string cuda_version_str(int version);

// Device `index`, or why it cannot be used, in the CUDA runtime's words: no driver (cudaDriverGetVersion
// reports 0), a driver older than this runtime, no device, or no device of that number.
Result<GpuInfo> find_gpu(int index);

// find_gpu as the engine's probe (engine/device.h, set_cuda_probe).
Result<GpuFound> probe_gpu(int index);

// What a run on `gpu` records in its header's environment: gpu.name, gpu.compute_capability, gpu.sm_count,
// gpu.memory, cuda.driver, cuda.runtime, lib.cublasLt (when it loads), and the numerics variables
// (env.CUBLAS_WORKSPACE_CONFIG, env.NVIDIA_TF32_OVERRIDE, env.CUDA_LAUNCH_BLOCKING, ...) that are set.
std::vector<std::pair<std::string, std::string>> gpu_environment(const GpuInfo& gpu);

// The environment variables that change what the CUDA libraries compute or how they schedule it.
const std::vector<std::string>& cuda_numerics_variables();

}  // namespace trainrr::cuda
