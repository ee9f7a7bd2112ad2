#pragma once
// What of the machine and process can change a run's numbers: CPU, instruction set, threads, compiler,
// library versions and the environment variables that steer numerics.

#include <string>
#include <utility>
#include <vector>

namespace trainrr {

using Environment = std::vector<std::pair<std::string, std::string>>;

// `threads` and `isa` are the run's own; the rest is read from the machine.
Environment capture_environment(int threads, const std::string& isa, const std::string& policy);

// Whether an environment variable can change a run's numbers (OMP_*, OPENBLAS_*, MKL_*, CUDA_*, ...).
bool numerics_variable(const std::string& name);

}  // namespace trainrr
