#include "engine/kernels/matmul_openblas.h"

#include <cblas.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <initializer_list>
#include <sstream>

#include "engine/thread_pool.h"

namespace trainrr {

void matmul_openblas_sgemm(const MatmulArgs& p, ThreadPool& pool) {
  if (p.m <= 0 || p.n <= 0) return;
  openblas_use_threads(pool.threads());
  // OpenBLAS rejects leading dimensions below 1 even when k == 0.
  const int lda = static_cast<int>(std::max<int64_t>(1, p.trans_a ? p.m : p.k));
  const int ldb = static_cast<int>(std::max<int64_t>(1, p.trans_b ? p.k : p.n));
  cblas_sgemm(CblasRowMajor, p.trans_a ? CblasTrans : CblasNoTrans, p.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(p.m), static_cast<int>(p.n), static_cast<int>(p.k), 1.0f, p.a, lda, p.b, ldb,
              p.accumulate ? 1.0f : 0.0f, p.c, static_cast<int>(p.n));
}

void openblas_use_threads(int threads) {
  if (openblas_get_num_threads() != threads) openblas_set_num_threads(threads);
}

std::string openblas_description(int threads) {
  // The configuration string starts "OpenBLAS <version>"; the rest (build options) is not needed to
  // tell two runs apart once the core type and thread count are known.
  std::istringstream config(openblas_get_config());
  std::string name, version;
  config >> name >> version;
  std::ostringstream out;
  out << name << ' ' << version << " core=" << openblas_core()
      << " threads=" << (threads > 0 ? threads : openblas_get_num_threads());
  return out.str();
}

std::string openblas_core() { return openblas_get_corename(); }

std::string openblas_core_in(std::string_view description) {
  const size_t at = description.find("core=");
  if (at == std::string_view::npos) return "";
  const std::string_view rest = description.substr(at + 5);
  return std::string(rest.substr(0, rest.find(' ')));
}

namespace {

bool same_core(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

struct CoreNeeds {
  const char* core;
  Isa isa;
  std::initializer_list<const char*> flags;
};

// The x86-64 cores of OpenBLAS's dynamic dispatch whose instruction sets are known here, and those sets.
const CoreNeeds* core_needs(std::string_view core) {
  static const CoreNeeds kCores[] = {
      {"Prescott", Isa::generic, {"sse2", "pni"}},
      {"Core2", Isa::generic, {"sse2", "pni", "ssse3"}},
      {"Atom", Isa::generic, {"sse2", "pni", "ssse3"}},
      {"Penryn", Isa::generic, {"sse2", "pni", "ssse3", "sse4_1"}},
      {"Dunnington", Isa::generic, {"sse2", "pni", "ssse3", "sse4_1"}},
      {"Nehalem", Isa::generic, {"sse2", "pni", "ssse3", "sse4_1", "sse4_2"}},
      {"Sandybridge", Isa::generic, {"avx"}},
      {"Haswell", Isa::avx2, {"avx", "avx2", "fma"}},
      {"Zen", Isa::avx2, {"avx", "avx2", "fma"}},
      {"SkylakeX", Isa::avx512, {"avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}},
      {"Cooperlake",
       Isa::avx512,
       {"avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"}},
      {"SapphireRapids",
       Isa::avx512,
       {"avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16",
        "avx512_fp16", "amx_tile", "amx_bf16"}},
  };
  for (const CoreNeeds& n : kCores)
    if (same_core(core, n.core)) return &n;
  return nullptr;
}

}  // namespace

bool openblas_core_known(std::string_view core) { return core_needs(core) != nullptr; }

bool openblas_runs_here() {
  static const bool runs = [] {
    const std::string core = openblas_core();
    // OpenBLAS's own pick runs here (it read the CPU's model); a core OPENBLAS_CORETYPE named runs only where
    // this check knows its instruction sets and the CPU has them (Bulldozer's FMA4 is not on a Zen).
    const char* named = std::getenv("OPENBLAS_CORETYPE");
    if (!openblas_core_known(core)) return !named || !*named;
    return openblas_core_runs_on(core, cpu_flags(), detect_isa());
  }();
  return runs;
}

bool openblas_core_runs_on(std::string_view core, const std::vector<std::string>& cpu_flags, Isa isa) {
  const CoreNeeds* n = core_needs(core);
  if (!n || n->isa > isa) return false;
  return std::all_of(n->flags.begin(), n->flags.end(), [&](const char* f) {
    return std::find(cpu_flags.begin(), cpu_flags.end(), f) != cpu_flags.end();
  });
}

bool openblas_same_core(std::string_view a, std::string_view b) { return same_core(a, b); }

std::string openblas_better_core(std::string_view core, const std::vector<std::string>& cpu_flags, Isa cpu) {
  const CoreNeeds* have = core_needs(core);
  if (!have || have->isa >= cpu) return "";
  const std::initializer_list<const char*> at_avx512 = {"Cooperlake", "SkylakeX"}, at_avx2 = {"Haswell"};
  for (const char* better : cpu == Isa::avx512 ? at_avx512 : at_avx2)
    if (openblas_core_runs_on(better, cpu_flags, cpu)) return better;
  return "";
}

}  // namespace trainrr
