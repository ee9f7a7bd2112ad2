#include "cuda/blaslt.h"

#include <cublasLt.h>

#include <cstring>
#include <utility>

#include "cuda/dynamic_library.h"
#include "engine/kernels/device_sites.h"

namespace trainrr::cuda {

// The functions trainrr calls, looked up by name; the types come from cublasLt.h, so a signature that changed
// in another version fails to compile here rather than at run time.
#define TRAINRR_BLASLT_FUNCTIONS(X)                                                                          \
  X(cublasLtGetVersion) X(cublasLtGetStatusName) X(cublasLtCreate) X(cublasLtDestroy)                       \
  X(cublasLtMatmulDescCreate) X(cublasLtMatmulDescDestroy) X(cublasLtMatmulDescSetAttribute)                \
  X(cublasLtMatrixLayoutCreate) X(cublasLtMatrixLayoutDestroy) X(cublasLtMatrixLayoutSetAttribute)          \
  X(cublasLtMatmulPreferenceCreate) X(cublasLtMatmulPreferenceDestroy) X(cublasLtMatmulPreferenceSetAttribute) \
  X(cublasLtMatmulAlgoGetHeuristic) X(cublasLtMatmulAlgoCheck) X(cublasLtMatmulAlgoConfigGetAttribute)      \
  X(cublasLtMatmul)

struct BlasLt::Api {
#define TRAINRR_DECLARE(name) decltype(&::name) name = nullptr;
  TRAINRR_BLASLT_FUNCTIONS(TRAINRR_DECLARE)
#undef TRAINRR_DECLARE
};

namespace {

const char* const kLibrary = "libcublasLt.so.13";

// The descriptors of one matmul shape, destroyed together.
struct Descriptors {
  const BlasLt::Api* api = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  ~Descriptors() {
    if (!api) return;
    if (c) api->cublasLtMatrixLayoutDestroy(c);
    if (b) api->cublasLtMatrixLayoutDestroy(b);
    if (a) api->cublasLtMatrixLayoutDestroy(a);
    if (op) api->cublasLtMatmulDescDestroy(op);
  }
};

}  // namespace

Result<BlasLt*> BlasLt::load() {
  return load_once<BlasLt>([]() -> Result<std::unique_ptr<BlasLt>> {
    auto lib = DynamicLibrary::open(kLibrary, "cuBLASLt 13");
    if (!lib) return lib.error();
    std::unique_ptr<BlasLt> lt(new BlasLt());
    lt->library_ = lib->handle();
    lt->api_ = std::make_unique<Api>();
#define TRAINRR_RESOLVE(name) \
  if (Status s = lib->resolve(lt->api_->name, #name); !s) return s.error();
    TRAINRR_BLASLT_FUNCTIONS(TRAINRR_RESOLVE)
#undef TRAINRR_RESOLVE
    return lt;
  });
}

BlasLt::~BlasLt() {
  if (handle_ && api_) api_->cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_));
  // The library stays loaded: cuBLASLt registers process-wide state that outlives a dlclose.
}

uint64_t BlasLt::version() const { return api_->cublasLtGetVersion(); }

Status BlasLt::ensure_handle() {
  if (handle_) return {};
  cublasLtHandle_t h = nullptr;
  if (cublasStatus_t s = api_->cublasLtCreate(&h); s != CUBLAS_STATUS_SUCCESS)
    return Error{std::string("cublasLtCreate failed: ") + api_->cublasLtGetStatusName(s)};
  handle_ = h;
  return {};
}

namespace {

// Row-major float32 layouts and the operation for MatmulArgs' C[m, n] = op(A)[m, k] op(B)[k, n].
Result<std::unique_ptr<Descriptors>> describe(const BlasLt::Api& api, const MatmulArgs& m, bool tf32) {
  auto d = std::make_unique<Descriptors>();
  d->api = &api;
  auto check = [&](cublasStatus_t s, const char* what) -> Status {
    if (s == CUBLAS_STATUS_SUCCESS) return {};
    return Error{std::string(what) + " failed: " + api.cublasLtGetStatusName(s)};
  };
  const cublasComputeType_t compute = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  if (Status s = check(api.cublasLtMatmulDescCreate(&d->op, compute, CUDA_R_32F), "cublasLtMatmulDescCreate"); !s)
    return s.error();
  const cublasOperation_t ta = m.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = m.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (Status s = check(api.cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
                       "cublasLtMatmulDescSetAttribute(TRANSA)");
      !s)
    return s.error();
  if (Status s = check(api.cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
                       "cublasLtMatmulDescSetAttribute(TRANSB)");
      !s)
    return s.error();
  const cublasLtOrder_t row = CUBLASLT_ORDER_ROW;
  auto layout = [&](cublasLtMatrixLayout_t* l, int64_t rows, int64_t cols) -> Status {
    if (Status s = check(api.cublasLtMatrixLayoutCreate(l, CUDA_R_32F, rows, cols, cols), "cublasLtMatrixLayoutCreate");
        !s)
      return s;
    return check(api.cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_ORDER, &row, sizeof row),
                 "cublasLtMatrixLayoutSetAttribute(ORDER)");
  };
  // As stored: A is [m, k] or, transposed, [k, m]; B is [k, n] or [n, k].
  if (Status s = m.trans_a ? layout(&d->a, m.k, m.m) : layout(&d->a, m.m, m.k); !s) return s.error();
  if (Status s = m.trans_b ? layout(&d->b, m.n, m.k) : layout(&d->b, m.k, m.n); !s) return s.error();
  if (Status s = layout(&d->c, m.m, m.n); !s) return s.error();
  return d;
}

// One configuration attribute of `algo` into `out` (the type cublasLt.h gives it); an error names the
// attribute, so that a field that could not be read never passes for its zero.
template <class T>
Status config_attribute(const BlasLt::Api& api, const cublasLtMatmulAlgo_t& algo,
                        cublasLtMatmulAlgoConfigAttributes_t attr, const char* name, T& out) {
  T v{};
  size_t written = 0;
  const cublasStatus_t s = api.cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof v, &written);
  if (s != CUBLAS_STATUS_SUCCESS)
    return Error{std::string("cublasLtMatmulAlgoConfigGetAttribute(") + name + ") failed: " +
                 api.cublasLtGetStatusName(s)};
  out = v;
  return {};
}

Result<BlasLtAlgo> decode(const BlasLt::Api& api, const cublasLtMatmulHeuristicResult_t& r) {
  BlasLtAlgo a;
  static_assert(sizeof(r.algo) == sizeof(a.data));
  std::memcpy(a.data.data(), &r.algo, sizeof a.data);
#define TRAINRR_ATTRIBUTE(attr, field) \
  if (Status s = config_attribute(api, r.algo, attr, #attr, field); !s) return s.error();
  TRAINRR_ATTRIBUTE(CUBLASLT_ALGO_CONFIG_ID, a.id)
  TRAINRR_ATTRIBUTE(CUBLASLT_ALGO_CONFIG_TILE_ID, a.tile)
  TRAINRR_ATTRIBUTE(CUBLASLT_ALGO_CONFIG_SPLITK_NUM, a.split_k)
  TRAINRR_ATTRIBUTE(CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, a.reduction)
  TRAINRR_ATTRIBUTE(CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, a.swizzle)
  TRAINRR_ATTRIBUTE(CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, a.custom)
  TRAINRR_ATTRIBUTE(CUBLASLT_ALGO_CONFIG_STAGES_ID, a.stages)
  TRAINRR_ATTRIBUTE(CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, a.inner_shape)
  TRAINRR_ATTRIBUTE(CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, a.cluster_shape)
#undef TRAINRR_ATTRIBUTE
  a.workspace = r.workspaceSize;
  a.waves = r.wavesCount;
  return a;
}

cublasLtMatmulAlgo_t restore(const BlasLtAlgo& a) {
  cublasLtMatmulAlgo_t algo;
  std::memcpy(&algo, a.data.data(), sizeof algo);
  return algo;
}

}  // namespace

Result<std::vector<BlasLtAlgo>> BlasLt::candidates(const MatmulArgs& shape, bool tf32, size_t max_workspace,
                                                   int max_candidates) {
  if (Status s = ensure_handle(); !s) return s.error();
  auto d = describe(*api_, shape, tf32);
  if (!d) return d.error();
  cublasLtMatmulPreference_t pref = nullptr;
  if (cublasStatus_t s = api_->cublasLtMatmulPreferenceCreate(&pref); s != CUBLAS_STATUS_SUCCESS)
    return Error{std::string("cublasLtMatmulPreferenceCreate failed: ") + api_->cublasLtGetStatusName(s)};
  const uint64_t ws = max_workspace;
  if (cublasStatus_t s =
          api_->cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
      s != CUBLAS_STATUS_SUCCESS) {
    api_->cublasLtMatmulPreferenceDestroy(pref);
    return Error{std::string("cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES) failed: ") +
                 api_->cublasLtGetStatusName(s)};
  }
  // Only algorithms that accept the pointers' alignment (cuBLASLt assumes 256 bytes unless told).
  const std::pair<cublasLtMatmulPreferenceAttributes_t, const void*> aligned[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, shape.a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, shape.b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, shape.c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, shape.c}};
  for (const auto& [attr, ptr] : aligned) {
    const uint32_t bytes = blaslt_alignment(ptr);
    if (cublasStatus_t s = api_->cublasLtMatmulPreferenceSetAttribute(pref, attr, &bytes, sizeof bytes);
        s != CUBLAS_STATUS_SUCCESS) {
      api_->cublasLtMatmulPreferenceDestroy(pref);
      return Error{std::string("cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT) failed: ") +
                   api_->cublasLtGetStatusName(s)};
    }
  }
  std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<size_t>(max_candidates));
  int returned = 0;
  const cublasLtHandle_t h = static_cast<cublasLtHandle_t>(handle_);
  const cublasStatus_t s = api_->cublasLtMatmulAlgoGetHeuristic(h, (*d)->op, (*d)->a, (*d)->b, (*d)->c, (*d)->c, pref,
                                                                max_candidates, results.data(), &returned);
  api_->cublasLtMatmulPreferenceDestroy(pref);
  if (s != CUBLAS_STATUS_SUCCESS)
    return Error{std::string("cublasLtMatmulAlgoGetHeuristic failed: ") + api_->cublasLtGetStatusName(s)};
  std::vector<BlasLtAlgo> out;
  for (int i = 0; i < returned; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    auto a = decode(*api_, results[i]);
    if (!a) return a.error();
    out.push_back(*a);
  }
  return out;
}

bool BlasLt::valid_here(const BlasLtAlgo& algo, const MatmulArgs& shape, bool tf32) {
  if (!ensure_handle()) return false;
  auto d = describe(*api_, shape, tf32);
  if (!d) return false;
  const cublasLtMatmulAlgo_t a = restore(algo);
  cublasLtMatmulHeuristicResult_t result{};
  return api_->cublasLtMatmulAlgoCheck(static_cast<cublasLtHandle_t>(handle_), (*d)->op, (*d)->a, (*d)->b, (*d)->c,
                                       (*d)->c, &a, &result) == CUBLAS_STATUS_SUCCESS &&
         result.workspaceSize <= algo.workspace;
}

Status BlasLt::matmul(const BlasLtAlgo& algo, const MatmulArgs& m, bool tf32, void* workspace,
                      size_t workspace_bytes, void* stream) {
  if (Status s = ensure_handle(); !s) return s;
  auto d = describe(*api_, m, tf32);
  if (!d) return d.error();
  const float one = 1.0f, beta = m.accumulate ? 1.0f : 0.0f;
  const cublasLtMatmulAlgo_t a = restore(algo);
  const cublasStatus_t s =
      api_->cublasLtMatmul(static_cast<cublasLtHandle_t>(handle_), (*d)->op, &one, m.a, (*d)->a, m.b, (*d)->b, &beta,
                           m.c, (*d)->c, m.c, (*d)->c, &a, workspace, workspace_bytes, static_cast<cudaStream_t>(stream));
  if (s != CUBLAS_STATUS_SUCCESS) return Error{std::string("cublasLtMatmul failed: ") + api_->cublasLtGetStatusName(s)};
  return {};
}

}  // namespace trainrr::cuda
