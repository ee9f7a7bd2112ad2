#include "cuda/engine_device.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <limits>
#include <string_view>

#include "cuda/blaslt.h"
#include "cuda/device.h"
#include "cuda/ops.h"
#include "cuda/rng_kernels.h"
#include "engine/kernels/blaslt_choice.h"
#include "engine/runtime.h"

namespace trainrr::cuda {

// The engine's names for the reduction kernels are the kernels' own.
static_assert(std::string_view(kDeviceReduceTreeId) == kReduceTreeId);
static_assert(std::string_view(kDeviceReduceAtomicId) == kReduceAtomicId);

namespace {

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

std::string cuda_error(const char* call, cudaError_t e) {
  return std::string(call) + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

ReduceVariant to_variant(DeviceReduce v) {
  return v == DeviceReduce::tree ? ReduceVariant::tree : ReduceVariant::atomic;
}

trainrr::LaunchShape to_launch(const LaunchShape& l) {
  trainrr::LaunchShape s;
  s.grid_x = l.grid_x, s.grid_y = l.grid_y, s.grid_z = l.grid_z;
  s.block_x = l.block_x, s.block_y = l.block_y, s.block_z = l.block_z;
  s.shared_bytes = l.shared_bytes;
  return s;
}

// Activations that call exp or tanh (linear and relu call nothing of a math family).
bool uses_math(Activation a) { return a == Activation::sigmoid || a == Activation::tanh || a == Activation::softmax; }

}  // namespace

// ---- Opening and closing.

Result<std::unique_ptr<CudaDevice>> CudaDevice::open(int index) {
  auto gpu = find_gpu(index);
  if (!gpu) return gpu.error();
  const std::string where = "cuda:" + std::to_string(index) + ": ";
  if (cudaError_t e = cudaSetDevice(index); e != cudaSuccess) return Error{where + cuda_error("cudaSetDevice", e)};
  cudaStream_t stream = nullptr;
  if (cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking); e != cudaSuccess)
    return Error{where + cuda_error("cudaStreamCreateWithFlags", e)};
  return std::unique_ptr<CudaDevice>(new CudaDevice(index, gpu->name, stream));
}

Result<std::unique_ptr<DeviceBackend>> open_cuda_device(int index) {
  auto d = CudaDevice::open(index);
  if (!d) return d.error();
  return std::unique_ptr<DeviceBackend>(std::move(*d));
}

CudaDevice::CudaDevice(int index, std::string name, void* stream)
    : index_(index), name_(std::move(name)), stream_(stream) {}

CudaDevice::~CudaDevice() {
  // Errors are ignored here: there is no one to report them to, and the memory is the process's either way.
  cudaSetDevice(index_);
  cudaStreamSynchronize(as_stream(stream_));
  for (const auto& [bytes, p] : cached_) cudaFree(p);
  for (const auto& [p, bytes] : live_) cudaFree(p);
  cudaStreamDestroy(as_stream(stream_));
}

Status CudaDevice::supports(MathFamily math) const {
  if (math != MathFamily::portable) return {};
  return Error{"the portable policy computes exp, log and tanh with trainrr's own functions, which have no "
               "device version here (the GPU has CUDA's); use runtime.policy = \"deterministic\" on the GPU"};
}

std::vector<std::pair<std::string, std::string>> CudaDevice::environment() const {
  auto gpu = find_gpu(index_);
  if (!gpu) return {{"gpu.error", gpu.error().message}};
  return gpu_environment(*gpu);
}

std::string CudaDevice::describe() const { return "cuda:" + std::to_string(index_) + " (" + name_ + ")"; }

void CudaDevice::enter() const {
  if (cudaError_t e = cudaSetDevice(index_); e != cudaSuccess)
    throw DeviceError(describe() + ": " + cuda_error("cudaSetDevice", e));
}

void CudaDevice::check(int error, const char* call) const {
  const auto e = static_cast<cudaError_t>(error);
  if (e != cudaSuccess) throw DeviceError(describe() + ": " + cuda_error(call, e));
}

void CudaDevice::check(const Status& s) const {
  if (!s) throw DeviceError(describe() + ": " + s.error().message);
}

// ---- Memory.

void* CudaDevice::allocate(size_t bytes) {
  const size_t want = device_block_bytes(bytes);
  if (auto it = cached_.lower_bound(want); it != cached_.end() && device_block_fits(it->first, want)) {
    void* p = it->second;
    live_.emplace(p, it->first);
    cached_.erase(it);
    return p;
  }
  enter();
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, want);
  if (e == cudaErrorMemoryAllocation && !cached_.empty()) {
    cudaGetLastError();  // not sticky, but cleared so that no later call reports it
    free_cache();
    e = cudaMalloc(&p, want);
  }
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t in_use = 0;
    for (const auto& [q, b] : live_) in_use += b;
    throw DeviceError(describe() + ": out of device memory allocating " + std::to_string(bytes) + " bytes (" +
                      cuda_error("cudaMalloc", e) + "; " + std::to_string(in_use) + " bytes in " +
                      std::to_string(live_.size()) + " blocks in use by trainrr, its cache freed)");
  }
  check(e, "cudaMalloc");
  ++cuda_mallocs_;
  live_.emplace(p, want);
  return p;
}

void CudaDevice::release(void* p, size_t) {
  if (!p) return;
  auto it = live_.find(p);
  TRAINRR_CHECK(it != live_.end(), "release of a block this device did not allocate");
  cached_.emplace(it->second, p);
  live_.erase(it);
}

void CudaDevice::free_cache() {
  // Queued work may still read a cached block until the stream is done with it; cudaFree does not wait for a
  // non-blocking stream.
  cudaStreamSynchronize(as_stream(stream_));
  for (const auto& [bytes, p] : cached_) cudaFree(p);
  cached_.clear();
}

CudaDevice::MemoryStats CudaDevice::memory_stats() const {
  MemoryStats s;
  s.cuda_mallocs = cuda_mallocs_;
  s.live_blocks = live_.size();
  for (const auto& [p, b] : live_) s.live_bytes += b;
  s.cached_blocks = cached_.size();
  for (const auto& [b, p] : cached_) s.cached_bytes += b;
  return s;
}

void* CudaDevice::ensure(Buffer& b, size_t bytes) {
  if (b.bytes >= bytes && b.p) return b.p;
  void* fresh = allocate(bytes);
  if (b.p) release(b.p, b.bytes);
  b.p = fresh;
  b.bytes = device_block_bytes(bytes);
  return b.p;
}

void CudaDevice::copy(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  enter();
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_stream(stream_)), "cudaMemcpyAsync (device to device)");
}

void CudaDevice::upload(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  enter();
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, as_stream(stream_)), "cudaMemcpyAsync (host to device)");
  // The caller may reuse `src` on return.
  check(cudaStreamSynchronize(as_stream(stream_)), "cudaStreamSynchronize (after an upload)");
}

void CudaDevice::download(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  enter();
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream_)), "cudaMemcpyAsync (device to host)");
  check(cudaStreamSynchronize(as_stream(stream_)), "cudaStreamSynchronize (after a download)");
}

void CudaDevice::zero(void* dst, size_t bytes) {
  if (!bytes) return;
  enter();
  check(cudaMemsetAsync(dst, 0, bytes, as_stream(stream_)), "cudaMemsetAsync");
}

void CudaDevice::synchronize() {
  enter();
  check(cudaStreamSynchronize(as_stream(stream_)), "cudaStreamSynchronize");
}

// ---- Timing.

double CudaDevice::time_on_stream(const std::function<void()>& run) {
  cudaEvent_t start = nullptr, stop = nullptr;
  check(cudaEventCreate(&start), "cudaEventCreate");
  if (cudaError_t e = cudaEventCreate(&stop); e != cudaSuccess) {
    cudaEventDestroy(start);
    check(e, "cudaEventCreate");
  }
  struct Events {
    cudaEvent_t a, b;
    ~Events() { cudaEventDestroy(a), cudaEventDestroy(b); }
  } events{start, stop};
  run();  // warm-up: the kernel's first load, caches
  check(cudaEventRecord(start, as_stream(stream_)), "cudaEventRecord");
  for (int i = 0; i < kTimedRuns; ++i) run();
  check(cudaEventRecord(stop, as_stream(stream_)), "cudaEventRecord");
  check(cudaEventSynchronize(stop), "cudaEventSynchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  return static_cast<double>(ms) * 1000.0 / kTimedRuns;
}

// ---- Column sums.

void CudaDevice::run_reduce(DeviceReduce v, const ReduceArgs& a) {
  const ReducePlan plan = plan_column_sums(to_variant(v), a.rows, a.cols);
  float* workspace = plan.workspace_bytes ? static_cast<float*>(ensure(reduce_workspace_, plan.workspace_bytes)) : nullptr;
  check(cuda::column_sums(to_variant(v), a.x, a.rows, a.cols, a.out, workspace, stream_));
}

DeviceReduce CudaDevice::choose_reduce(Runtime& rt, std::string_view site, const ReduceArgs& a) {
  const Policy policy = rt.kernels->policy();
  const DeviceReduceRule rule = device_reduce_rule(policy);
  KernelChoice choice;
  choice.site = std::string(site);
  choice.op = op_name(OpKind::reduce);
  choice.candidates = device_reduce_candidates();
  choice.reason = rule.reason;
  DeviceReduce v = rule.variant;
  if (rule.time_both) {
    // On the real arguments: `out` is overwritten by every call, the real one included.
    for (DeviceReduce c : {DeviceReduce::tree, DeviceReduce::atomic})
      choice.timings_us.push_back(time_on_stream([&] { run_reduce(c, a); }));
    auto fastest = device_reduce_fastest(choice.timings_us);
    if (!fastest) throw DeviceError(describe() + ": " + fastest.error().message);
    v = *fastest;
  }
  choice.chosen = device_reduce_id(v);
  choice.launch = to_launch(plan_column_sums(to_variant(v), a.rows, a.cols).partials);
  rt.hooks->kernel_selected(choice);
  if (policy == Policy::forced) {
    auto forced = device_reduce_from_id(choice.chosen);
    if (!forced) throw DeviceError(describe() + ": at " + choice.site + ": " + forced.error().message);
    v = *forced;
  }
  return v;
}

void CudaDevice::column_sums(Runtime& rt, std::string_view site, const ReduceArgs& a) {
  if (a.cols <= 0) return;
  enter();
  auto it = reduce_sites_.find(site);
  if (it == reduce_sites_.end()) it = reduce_sites_.emplace(std::string(site), choose_reduce(rt, site, a)).first;
  run_reduce(it->second, a);
}

// ---- Matmul through cuBLASLt.

BlasLt& CudaDevice::blas() {
  if (!blas_) {
    auto lt = BlasLt::load();
    if (!lt) throw DeviceError(describe() + ": " + lt.error().message);
    blas_ = *lt;
  }
  return *blas_;
}

void CudaDevice::run_blaslt(const BlasLtAlgo& algo, const MatmulArgs& m) {
  void* workspace = algo.workspace ? ensure(blaslt_workspace_, algo.workspace) : nullptr;
  check(blas().matmul(algo, m, tf32_, workspace, algo.workspace ? blaslt_workspace_.bytes : 0, stream_));
}

BlasLtAlgo CudaDevice::choose_blaslt(Runtime& rt, std::string_view site, const char* op, const MatmulArgs& m) {
  BlasLt& lt = blas();
  tf32_ = rt.tf32;
  auto candidates = lt.candidates(m, tf32_, kMaxBlasLtWorkspace, kMaxBlasLtCandidates);
  if (!candidates) throw DeviceError(describe() + ": at " + std::string(site) + ": " + candidates.error().message);
  const Policy policy = rt.kernels->policy();
  KernelChoice choice;
  choice.site = std::string(site);
  choice.op = op;
  for (const BlasLtAlgo& a : *candidates) choice.candidates.push_back(blaslt_kernel_id(a));
  choice.blaslt = *candidates;
  choice.blaslt_version = lt.version();
  choice.tf32 = tf32_;
  if (policy == Policy::autotune && !candidates->empty()) {
    // On the real arguments, into C itself unless the matmul accumulates into it (then into scratch).
    MatmulArgs t = m;
    if (m.accumulate)
      t.c = static_cast<float*>(ensure(tune_out_, static_cast<size_t>(m.m * m.n) * sizeof(float)));
    for (const BlasLtAlgo& a : *candidates) {
      // A candidate that fails to run is never the fastest.
      try {
        choice.timings_us.push_back(time_on_stream([&] { run_blaslt(a, t); }));
      } catch (const DeviceError&) {
        choice.timings_us.push_back(std::numeric_limits<double>::infinity());
      }
    }
  }
  auto pick = pick_blaslt(policy, *candidates, choice.timings_us);
  if (!pick) throw DeviceError(describe() + ": at " + choice.site + ": " + pick.error().message);
  choice.chosen = choice.candidates[pick->index];
  choice.reason = policy == Policy::forced ? "forced" : pick->reason;
  rt.hooks->kernel_selected(choice);
  if (policy != Policy::forced) return (*candidates)[pick->index];

  // Forced: the algorithm the hooks' choice names, if it can run here.
  const BlasLtForcedTarget target = find_forced_blaslt(choice.chosen, choice.blaslt, *candidates);
  switch (target.from) {
    case BlasLtForcedTarget::From::recorded: {
      const BlasLtAlgo& recorded = choice.blaslt[target.index];
      const BlasLtForce f = force_blaslt(recorded, choice.blaslt_version, lt.version(),
                                         lt.valid_here(recorded, m, tf32_), choice.site);
      if (f.recorded) return recorded;
      rt.hooks->kernel_replaced(choice.site, blaslt_kernel_id((*candidates)[pick->index]), f.note);
      return (*candidates)[pick->index];
    }
    case BlasLtForcedTarget::From::here:
      return (*candidates)[target.index];
    case BlasLtForcedTarget::From::unknown:
      break;
  }
  throw DeviceError(describe() + ": at " + choice.site + ": forced kernel '" + choice.chosen +
                    "' is not a cuBLASLt algorithm for this matmul (neither recorded with the choice nor among the " +
                    std::to_string(candidates->size()) + " this GPU offers)");
}

const BlasLtAlgo& CudaDevice::blaslt_algo(Runtime& rt, std::string_view site, const char* op, const MatmulArgs& m) {
  const MatmulShape shape{m.trans_a, m.trans_b, m.m, m.n, m.k};
  auto it = matmul_sites_.find(site);
  if (it == matmul_sites_.end()) {
    MatmulSite s{shape, choose_blaslt(rt, site, op, m), {}};
    it = matmul_sites_.emplace(std::string(site), std::move(s)).first;
  }
  MatmulSite& s = it->second;
  if (shape == s.shape) return s.algo;
  if (auto o = s.other_shapes.find(shape); o != s.other_shapes.end()) return o->second;
  // Another shape at the same site (the last, smaller batch of an epoch): the site's algorithm when it can run
  // it, else the policy's pick for this shape, with a note.
  BlasLt& lt = blas();
  if (lt.valid_here(s.algo, m, tf32_)) return s.other_shapes.emplace(shape, s.algo).first->second;
  auto candidates = lt.candidates(m, tf32_, kMaxBlasLtWorkspace, kMaxBlasLtCandidates);
  if (!candidates) throw DeviceError(describe() + ": at " + std::string(site) + ": " + candidates.error().message);
  const Policy policy = rt.kernels->policy();
  const Policy rule = policy == Policy::deterministic || policy == Policy::portable ? policy : Policy::fast;
  auto pick = pick_blaslt(rule, *candidates);
  if (!pick) throw DeviceError(describe() + ": at " + std::string(site) + ": " + pick.error().message);
  const BlasLtAlgo& a = (*candidates)[pick->index];
  notes_.push_back(blaslt_kernel_id(s.algo) + " (at " + std::string(site) + ") cannot run the shape m=" +
                   std::to_string(m.m) + " n=" + std::to_string(m.n) + " k=" + std::to_string(m.k) + ": " +
                   blaslt_kernel_id(a) + " (" + pick->reason + ") ran it");
  return s.other_shapes.emplace(shape, a).first->second;
}

void CudaDevice::run_matmul(Runtime& rt, std::string_view site, const char* op, const MatmulArgs& m) {
  if (m.m <= 0 || m.n <= 0) return;
  if (m.k <= 0) {
    // An empty sum: C = 0, or C unchanged when accumulating.
    if (!m.accumulate) zero(m.c, static_cast<size_t>(m.m * m.n) * sizeof(float));
    return;
  }
  run_blaslt(blaslt_algo(rt, site, op, m), m);
}

void CudaDevice::matmul(Runtime& rt, std::string_view site, const MatmulArgs& m) {
  enter();
  run_matmul(rt, site, op_name(OpKind::matmul), m);
}

// ---- Conv2D: cuDNN's engines and the im2col + cuBLASLt variant (cuda/engine_conv.cc).

void CudaDevice::conv2d(Runtime& rt, std::string_view site, OpKind op, const Conv2dArgs& p) {
  if (op != OpKind::conv2d_fwd && op != OpKind::conv2d_bwd_data && op != OpKind::conv2d_bwd_filter)
    throw DeviceError(describe() + ": conv2d called for " + op_name(op) + " at " + std::string(site));
  enter();
  if (p.n <= 0) {
    // No image: dfilter is a sum over none; y and dx have no element.
    if (op == OpKind::conv2d_bwd_filter)
      zero(p.out, static_cast<size_t>(p.kh * p.kw * p.c_in * p.c_out) * sizeof(float));
    return;
  }
  run_conv(rt, site, op, p);
}

// ---- Bias and activations.

namespace {

void refuse_portable(const CudaDevice& d, MathFamily math, const char* op) {
  if (math == MathFamily::portable)
    throw DeviceError(d.describe() + ": " + op +
                      " with the portable math family: the device has only CUDA's exp, log and tanh, so the portable "
                      "policy runs on the CPU only");
}

}  // namespace

void CudaDevice::add_bias(float* y, const float* bias, int64_t rows, int64_t cols) {
  enter();
  check(cuda::add_bias(y, bias, rows, cols, stream_));
}

void CudaDevice::activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t cols,
                                    MathFamily math) {
  if (uses_math(a)) refuse_portable(*this, math, activation_name(a));
  enter();
  check(cuda::activation_forward(a, x, y, rows, cols, stream_));
}

void CudaDevice::activation_backward(Activation a, const float* y, const float* dy, float* dx, int64_t rows,
                                     int64_t cols) {
  enter();
  check(cuda::activation_backward(a, y, dy, dx, rows, cols, stream_));
}

void CudaDevice::bias_activation_forward(Activation a, const float* bias, float* y, int64_t rows, int64_t cols,
                                         MathFamily math) {
  if (uses_math(a)) refuse_portable(*this, math, activation_name(a));
  enter();
  check(cuda::bias_activation_forward(a, bias, y, rows, cols, stream_));
}

// ---- Randomness.

void CudaDevice::uniform(uint64_t key, uint64_t offset, float lo, float hi, float* out, int64_t n) {
  enter();
  check(uniform_on_device(key, offset, lo, hi, out, n, stream_));
}

void CudaDevice::dropout(uint64_t key, uint64_t offset, float rate, float scale, const float* x, float* y,
                         uint8_t* keep, int64_t n) {
  enter();
  check(dropout_on_device(key, offset, rate, scale, x, y, keep, n, stream_));
}

void CudaDevice::dropout_backward(const uint8_t* keep, float scale, const float* dy, float* dx, int64_t n) {
  enter();
  check(cuda::dropout_backward(keep, scale, dy, dx, n, stream_));
}

// ---- Losses.

void CudaDevice::sparse_categorical_crossentropy(const float* pred, const float* labels, int64_t batch, int64_t k,
                                                 bool from_logits, bool softmax_output, MathFamily math,
                                                 float* per_sample, float* grad) {
  refuse_portable(*this, math, "sparse_categorical_crossentropy");
  enter();
  check(cuda::sparse_categorical_crossentropy(pred, labels, batch, k, from_logits, softmax_output, per_sample, grad,
                                              stream_));
}

void CudaDevice::binary_crossentropy(const float* pred, const float* labels, int64_t batch, bool from_logits,
                                     MathFamily math, float* per_sample, float* grad) {
  refuse_portable(*this, math, "binary_crossentropy");
  enter();
  check(cuda::binary_crossentropy(pred, labels, batch, from_logits, per_sample, grad, stream_));
}

void CudaDevice::mean_squared_error(const float* pred, const float* targets, int64_t batch, int64_t k,
                                    float* per_sample, float* grad) {
  enter();
  check(cuda::mean_squared_error(pred, targets, batch, k, per_sample, grad, stream_));
}

// ---- MaxPool2D.

void CudaDevice::max_pool_forward(const PoolGeometry& g, const float* x, float* y, int32_t* argmax) {
  enter();
  check(cuda::max_pool_forward(g, x, y, argmax, stream_));
}

void CudaDevice::max_pool_backward(const PoolGeometry& g, const float* dy, const int32_t* argmax, float* dx) {
  enter();
  check(cuda::max_pool_backward(g, dy, argmax, dx, stream_));
}

// ---- BatchNormalization.

void CudaDevice::scale(float* v, int64_t n, float s) {
  enter();
  check(cuda::scale(v, n, s, stream_));
}

void CudaDevice::batch_norm_square_deviations(const float* x, const float* mean, float* sq, int64_t rows,
                                              int64_t c) {
  enter();
  check(cuda::batch_norm_square_deviations(x, mean, sq, rows, c, stream_));
}

void CudaDevice::batch_norm_statistics(const float* mean, const float* var, float epsilon, float momentum,
                                       float one_minus_momentum, float* inv_std, float* moving_mean,
                                       float* moving_variance, int64_t c) {
  enter();
  check(cuda::batch_norm_statistics(mean, var, epsilon, momentum, one_minus_momentum, inv_std, moving_mean,
                                    moving_variance, c, stream_));
}

void CudaDevice::batch_norm_inverse_std(const float* variance, float epsilon, float* inv_std, int64_t c) {
  enter();
  check(cuda::batch_norm_inverse_std(variance, epsilon, inv_std, c, stream_));
}

void CudaDevice::batch_norm_normalize(const float* x, const float* mean, const float* inv_std, const float* gamma,
                                      const float* beta, float* xhat, float* y, int64_t rows, int64_t c) {
  enter();
  check(cuda::batch_norm_normalize(x, mean, inv_std, gamma, beta, xhat, y, rows, c, stream_));
}

void CudaDevice::batch_norm_backward_columns(const float* dy, const float* xhat, float* scratch, int64_t rows,
                                             int64_t c) {
  enter();
  check(cuda::batch_norm_backward_columns(dy, xhat, scratch, rows, c, stream_));
}

void CudaDevice::batch_norm_backward_data(const float* dy, const float* xhat, const float* gamma,
                                          const float* inv_std, const float* dbeta, const float* dgamma,
                                          bool training, float* dx, int64_t rows, int64_t c) {
  enter();
  check(cuda::batch_norm_backward_data(dy, xhat, gamma, inv_std, dbeta, dgamma, training, dx, rows, c, stream_));
}

// ---- Optimizers.

void CudaDevice::optimizer_update(const OptimizerConfig& c, int64_t t, MathFamily math, float* w, const float* g,
                                  std::span<float* const> slots, int64_t n) {
  auto roles = device_optimizer_slots(c);
  if (!roles) throw DeviceError(describe() + ": " + roles.error().message);
  if (slots.size() < roles->count)
    throw DeviceError(describe() + ": optimizer " + c.type + " needs " + std::to_string(roles->count) +
                      " slots, given " + std::to_string(slots.size()));
  auto slot = [&](int i) { return i < 0 ? nullptr : slots[static_cast<size_t>(i)]; };
  enter();
  if (c.type == "sgd") {
    check(sgd_update(c, w, g, slot(roles->momentum), n, stream_));
  } else if (c.type == "adam" || c.type == "adamw") {
    // The powers of the bias correction are computed on the host, by `math` (portable included).
    check(adam_update(c, t, math, w, g, slot(roles->m), slot(roles->v), n, stream_));
  } else {
    check(rmsprop_update(c, w, g, slot(roles->velocity), slot(roles->momentum), slot(roles->average_gradient), n,
                         stream_));
  }
}

}  // namespace trainrr::cuda
