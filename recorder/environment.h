#pragma once
// What of the machine and process can change a run's numbers: CPU, instruction set, threads, compiler,
// library versions and the environment variables that steer numerics.

#include <string>
#include <utility>
#include <vector>

namespace trainrr {

using Environment = std::vector<std::pair<std::string, std::string>>;

// `threads`, `isa`, `policy` and `device` are the run's own (device as DeviceSpec::str() writes it: "cpu",
// "cuda:0"); the rest is read from the machine and this program (cuda.backend: whether it has the CUDA
// backend). A run on a GPU adds the GPU's entries (DeviceBackend::environment).
Environment capture_environment(int threads, const std::string& isa, const std::string& policy,
                                const std::string& device);

// Whether an environment variable can change a run's numbers (OMP_*, OPENBLAS_*, MKL_*, CUDA_*, ...).
bool numerics_variable(const std::string& name);

}  // namespace trainrr
