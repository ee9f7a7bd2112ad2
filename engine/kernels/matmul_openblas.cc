#include "engine/kernels/matmul_openblas.h"

#include <cblas.h>

#include <algorithm>
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

std::string openblas_description() {
  // The configuration string starts "OpenBLAS <version>"; the rest (build options) is not needed to
  // tell two runs apart once the core type and thread count are known.
  std::istringstream config(openblas_get_config());
  std::string name, version;
  config >> name >> version;
  std::ostringstream out;
  out << name << ' ' << version << " core=" << openblas_get_corename() << " threads=" << openblas_get_num_threads();
  return out.str();
}

}  // namespace trainrr
