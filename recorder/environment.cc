#include "recorder/environment.h"

#include <capnp/common.h>
#if __has_include(<gnu/libc-version.h>)
#include <gnu/libc-version.h>
#define TRAINRR_HAS_GLIBC 1
#endif
#include <sys/utsname.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <set>
#include <thread>

#include "engine/device.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/matmul_openblas.h"
#include "engine/thread_pool.h"

extern char** environ;

namespace trainrr {
namespace {

// The CPU flags that decide which kernels can run and how they round.
std::string numeric_cpu_flags() {
  static const char* kRelevant[] = {"sse4_1",      "sse4_2",      "avx",      "avx2",     "fma",
                                    "f16c",        "avx512f",     "avx512dq", "avx512bw", "avx512vl",
                                    "avx512_bf16", "avx512_fp16", "amx_tile", "neon"};
  const std::vector<std::string> have = cpu_flags();
  std::string out;
  for (const char* r : kRelevant)
    for (const auto& h : have)
      if (h == r) {
        if (!out.empty()) out += ' ';
        out += h;
      }
  return out;
}

}  // namespace

bool numerics_variable(const std::string& name) {
  static const char* kPrefixes[] = {"OMP_",   "OPENBLAS_",   "MKL_",     "GOTO", "CUDA_", "CUBLAS_",
                                    "CUDNN_", "NVIDIA_TF32", "TRAINRR_", "KMP_", "BLIS_",
                                    "OMPI_MCA_coll"};
  // Where the toolkit is installed (CUDA_HOME, CUDA_PATH, CUDA_TOOLKIT_ROOT_DIR) changes no value computed.
  for (const char* where : {"_HOME", "_PATH", "_ROOT", "_DIR"})
    if (name.rfind("CUDA_", 0) == 0 && name.ends_with(where)) return false;
  for (const char* p : kPrefixes)
    if (name.rfind(p, 0) == 0) return true;
  return false;
}

Environment capture_environment(int threads, const std::string& isa, const std::string& policy,
                                const std::string& device) {
  Environment env;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  env.emplace_back("host", host);
  env.emplace_back("cpu.model", cpu_model());
  env.emplace_back("cpu.flags", numeric_cpu_flags());
  // The machine's cores, whatever this process is confined to (mpirun binds each rank to its own): the run's
  // threads say what it used.
  env.emplace_back("cpu.cores", std::to_string(std::max(1u, std::thread::hardware_concurrency())));
  env.emplace_back("threads", std::to_string(threads));
  env.emplace_back("isa", isa);
  env.emplace_back("policy", policy);
  env.emplace_back("device", device);
  struct utsname u;
  if (uname(&u) == 0) {
    env.emplace_back("os", std::string(u.sysname) + " " + u.machine);
    env.emplace_back("kernel", u.release);
  }
  env.emplace_back("compiler", TRAINRR_COMPILER);
  env.emplace_back("compiler.flags", TRAINRR_CXX_FLAGS);
  env.emplace_back("lib.trainrr", TRAINRR_VERSION);
  env.emplace_back("lib.capnproto", std::to_string(CAPNP_VERSION_MAJOR) + "." +
                                        std::to_string(CAPNP_VERSION_MINOR) + "." +
                                        std::to_string(CAPNP_VERSION_MICRO));
  // OpenBLAS's thread count is the run's (each sgemm sets it), not the library's default of all cores. It is
  // not set here: a run that never calls OpenBLAS leaves its threads as they are (a count of the
  // configuration's, started by OpenBLAS, would each take a buffer of 128 MiB).
  // OpenBLAS left out of the kernels (OPENBLAS_CORETYPE named code this CPU cannot run) made no number: said
  // so, so that a replay does not take its code for the recording's.
  env.emplace_back("lib.openblas", openblas_description(threads) +
                                       (openblas_runs_here() ? "" : std::string(kOpenBlasLeftOut)));
#if defined(TRAINRR_HAS_GLIBC)
  // The C library's exp, log and tanh round differently from version to version.
  env.emplace_back("lib.libc", std::string("glibc ") + gnu_get_libc_version());
#endif
  env.emplace_back("lib.zstd", ZSTD_versionString());
  env.emplace_back("lib.xxhash", std::to_string(XXH_versionNumber()));
  env.emplace_back("cuda.backend", cuda_backend_built() ? "built" : "not built");
  // Once each: an environment can hold a name twice (execve takes any list), and getenv, which every library
  // reads it by, returns the first.
  std::set<std::string> seen;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    const size_t eq = kv.find('=');
    if (eq == std::string::npos) continue;
    const std::string name = kv.substr(0, eq);
    if (numerics_variable(name) && seen.insert(name).second)
      env.emplace_back("env." + name, kv.substr(eq + 1));
  }
  return env;
}

}  // namespace trainrr
