#pragma once
// OpenBLAS sgemm. Its bits depend on the OpenBLAS version, the core type it dispatched to
// (OPENBLAS_CORETYPE) and its thread count, so a recorded choice carries openblas_description().

#include <string>
#include <string_view>
#include <vector>

#include "engine/kernels/kernel_registry.h"

namespace trainrr {

// Runs cblas_sgemm with OpenBLAS set to the pool's thread count.
void matmul_openblas_sgemm(const MatmulArgs& p, ThreadPool& pool);

// "OpenBLAS 0.3.21 core=Haswell threads=2": version, core type and thread count: `threads`, the count it runs
// with once a run calls it (matmul_openblas_sgemm sets it), or its current one where that is not given.
std::string openblas_description(int threads = -1);

// Sets OpenBLAS's thread count (matmul_openblas_sgemm does so on every call).
void openblas_use_threads(int threads);

// The code OpenBLAS picked for this CPU when it loaded ("Cooperlake", "Haswell", "Prescott"), or the one
// OPENBLAS_CORETYPE named. An OpenBLAS that does not know a CPU model falls back to older code, so two
// machines with the same instruction sets can still compute different bits.
std::string openblas_core();

// The core in an openblas_description() ("OpenBLAS 0.3.21 core=Cooperlake threads=2" -> "Cooperlake"), or "".
std::string openblas_core_in(std::string_view description);

// Whether OpenBLAS's code for `core` runs on a CPU with these flags (/proc/cpuinfo's names) and this
// instruction set (TRAINRR_ISA lowers it). False for a core this check does not know: OpenBLAS itself does
// not check a core it is told to use, and an instruction the CPU lacks kills the process.
bool openblas_core_runs_on(std::string_view core, const std::vector<std::string>& cpu_flags, Isa isa);
// Whether the check above knows the instruction sets of `core`.
bool openblas_core_known(std::string_view core);
// When OpenBLAS's pick `core` needs less than this CPU's instruction set `cpu` (an OpenBLAS that does not
// know the CPU falls back to older code), the code it would run at that instruction set; else "".
std::string openblas_better_core(std::string_view core, const std::vector<std::string>& cpu_flags, Isa cpu);
// Whether the code OpenBLAS loaded (openblas_core()) runs on this CPU, read once. False only where
// OPENBLAS_CORETYPE named a core whose instruction sets this CPU lacks (CPUID's flags): OpenBLAS takes any
// core it is told to, and would die of SIGILL at its first product. The OpenBLAS kernel is then not
// registered. A core this check does not know counts as runnable where OpenBLAS picked it for this CPU, and
// not where OPENBLAS_CORETYPE named it.
bool openblas_runs_here();
// What a recording's lib.openblas ends with where OpenBLAS was left out of its kernels (openblas_runs_here).
inline constexpr std::string_view kOpenBlasLeftOut = " (left out: not run)";
// Core names compare without case, as OPENBLAS_CORETYPE does ("haswell" is Haswell).
bool openblas_same_core(std::string_view a, std::string_view b);

}  // namespace trainrr
