#pragma once
// The CUDA device as the engine's DeviceBackend (engine/device_backend.h): one GPU, one non-blocking stream on
// which every op is queued in the order called, a caching allocator, the elementwise ops of cuda/ops.h and
// cuda/rng_kernels.h, and the three kernel sites:
//   column_sums  f32_sum__cuda_tree or f32_sum__cuda_atomic, by the policy (engine/kernels/device_sites.h);
//   matmul       a cuBLASLt algorithm from its heuristic's candidates (engine/kernels/blaslt_choice.h);
//   conv2d       cuDNN's engines for the op and geometry, then the im2col (or col2im) + cuBLASLt variant over
//                image chunks, its matmul's algorithm picked inside it by the same policy
//                (engine/kernels/conv_sites.h; cuda/engine_conv.cc). Without cuDNN (not built in, or
//                libcudnn.so.9 does not load) the im2col variant is the only candidate, and a note says why.
// Each site's choice is made on its first call, reported through rt.hooks->kernel_selected and kept by site
// name. Host code only: no CUDA type in sight (the stream is a cudaStream_t kept as void*).
//
// Memory: blocks are cudaMalloc'd in multiples of 256 bytes; a released block goes to a free list keyed by its
// size and serves a later request of at most its size and at least half of it (device_block_fits). cudaMalloc
// is called only when no cached block fits; when it fails, the cache is freed and it is tried once more. All
// blocks are freed with the device. Since every op is on the one stream, a block released while queued work
// still reads it is only reused by work queued after that work.
//
// Every CUDA error throws DeviceError naming the device, the call and the CUDA runtime's words for the error.

#include <map>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "engine/device_backend.h"
#include "engine/kernels/device_sites.h"
#include "engine/kernels/gpu_choice.h"
#include "engine/result.h"

namespace trainrr::cuda {

class BlasLt;

class CudaDevice final : public DeviceBackend {
 public:
  // Device `index` made current, its stream created; cuBLASLt is loaded on the first matmul or convolution,
  // cuDNN on the first convolution.
  static Result<std::unique_ptr<CudaDevice>> open(int index);
  ~CudaDevice() override;
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  // The byte budget of a convolution's col buffer: a batch whose buffer is larger runs in image chunks.
  static constexpr size_t kConvColBudget = size_t{256} << 20;
  // What a cuBLASLt candidate may ask for as workspace, and how many candidates the heuristic is asked for.
  static constexpr size_t kMaxBlasLtWorkspace = size_t{32} << 20;
  static constexpr int kMaxBlasLtCandidates = 8;
  // Timed calls per candidate under the autotune policy (after one untimed warm-up call).
  static constexpr int kTimedRuns = 3;

  std::string describe() const override;  // "cuda:0 (NVIDIA H200)"

  void* allocate(size_t bytes) override;
  void release(void* p, size_t bytes) override;
  void copy(void* dst, const void* src, size_t bytes) override;
  void upload(void* dst, const void* src, size_t bytes) override;
  void download(void* dst, const void* src, size_t bytes) override;
  void zero(void* dst, size_t bytes) override;
  void synchronize() override;

  void matmul(Runtime& rt, std::string_view site, const MatmulArgs& args) override;
  void column_sums(Runtime& rt, std::string_view site, const ReduceArgs& args) override;
  void conv2d(Runtime& rt, std::string_view site, OpKind op, const Conv2dArgs& args) override;

  void add_bias(float* y, const float* bias, int64_t rows, int64_t cols) override;
  // MathFamily::portable is refused (DeviceError) where the op would call exp, log or tanh: the device has only
  // CUDA's libm-like functions, so the portable policy runs on the CPU only.
  void activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t cols,
                          MathFamily math) override;
  void activation_backward(Activation a, const float* y, const float* dy, float* dx, int64_t rows,
                           int64_t cols) override;
  void bias_activation_forward(Activation a, const float* bias, float* y, int64_t rows, int64_t cols,
                               MathFamily math) override;

  void uniform(uint64_t key, uint64_t offset, float lo, float hi, float* out, int64_t n) override;
  void dropout(uint64_t key, uint64_t offset, float rate, float scale, const float* x, float* y, uint8_t* keep,
               int64_t n) override;
  void dropout_backward(const uint8_t* keep, float scale, const float* dy, float* dx, int64_t n) override;

  void sparse_categorical_crossentropy(const float* pred, const float* labels, int64_t batch, int64_t k,
                                       bool from_logits, bool softmax_output, MathFamily math, float* per_sample,
                                       float* grad) override;
  void binary_crossentropy(const float* pred, const float* labels, int64_t batch, bool from_logits,
                           MathFamily math, float* per_sample, float* grad) override;
  void mean_squared_error(const float* pred, const float* targets, int64_t batch, int64_t k, float* per_sample,
                          float* grad) override;

  void max_pool_forward(const PoolGeometry& g, const float* x, float* y, int32_t* argmax) override;
  void max_pool_backward(const PoolGeometry& g, const float* dy, const int32_t* argmax, float* dx) override;

  void scale(float* v, int64_t n, float s) override;
  void batch_norm_square_deviations(const float* x, const float* mean, float* sq, int64_t rows,
                                    int64_t c) override;
  void batch_norm_statistics(const float* mean, const float* var, float epsilon, float momentum,
                             float one_minus_momentum, float* inv_std, float* moving_mean, float* moving_variance,
                             int64_t c) override;
  void batch_norm_inverse_std(const float* variance, float epsilon, float* inv_std, int64_t c) override;
  void batch_norm_normalize(const float* x, const float* mean, const float* inv_std, const float* gamma,
                            const float* beta, float* xhat, float* y, int64_t rows, int64_t c) override;
  void batch_norm_backward_columns(const float* dy, const float* xhat, float* scratch, int64_t rows,
                                   int64_t c) override;
  void batch_norm_backward_data(const float* dy, const float* xhat, const float* gamma, const float* inv_std,
                                const float* dbeta, const float* dgamma, bool training, float* dx, int64_t rows,
                                int64_t c) override;

  // sgd (slot: momentum when config.momentum > 0), adam and adamw (m, v), rmsprop (velocity, then momentum
  // when config.momentum > 0, then average_gradient when config.centered): engine/optimizer.cc's order.
  void optimizer_update(const OptimizerConfig& config, int64_t t, MathFamily math, float* w, const float* g,
                        std::span<float* const> slots, int64_t n) override;

  // What the sites could not do as asked, for people, in the order it happened: a site's algorithm that could
  // not run a later call's shape (a re-pick for that shape ran), the same for a conv site's cuDNN engine, and
  // why a conv site has no cuDNN candidate. A forced algorithm or engine that cannot run here (another library
  // version, or the library refused it; this machine's pick ran) is reported through rt.hooks->kernel_replaced
  // instead, not here.
  const std::vector<std::string>& notes() const { return notes_; }
  std::vector<std::string> device_notes() const override { return notes_; }
  Status supports(MathFamily math) const override;
  std::vector<std::pair<std::string, std::string>> environment() const override;

  // The allocator's counts, for tests and reports.
  struct MemoryStats {
    size_t cuda_mallocs = 0;  // blocks cudaMalloc'd so far
    size_t live_blocks = 0, live_bytes = 0;
    size_t cached_blocks = 0, cached_bytes = 0;
  };
  MemoryStats memory_stats() const;

  int index() const { return index_; }
  void* stream() const { return stream_; }  // the cudaStream_t every op is queued on

 private:
  CudaDevice(int index, std::string name, void* stream);

  // Device memory the device owns (workspaces, col buffers): grown as needed, kept.
  struct Buffer {
    void* p = nullptr;
    size_t bytes = 0;
  };
  void* ensure(Buffer& b, size_t bytes);

  // Makes this device current on the calling thread (the runtime's current device is per thread).
  void enter() const;
  // Throws DeviceError for a CUDA error of `call`, or for a failed launcher's status.
  void check(int cuda_error, const char* call) const;
  void check(const Status& s) const;
  void free_cache();
  BlasLt& blas();

  // Microseconds per call of `run` on the stream (one warm-up call, then kTimedRuns between two events).
  double time_on_stream(const std::function<void()>& run);

  DeviceReduce choose_reduce(Runtime& rt, std::string_view site, const ReduceArgs& args);
  void run_reduce(DeviceReduce v, const ReduceArgs& args);

  // The cuBLASLt algorithm at `site` for `args`' shape: chosen and reported on the site's first call (`op`
  // names the site's op in the report: "matmul", or the convolution's).
  const BlasLtAlgo& blaslt_algo(Runtime& rt, std::string_view site, const char* op, const MatmulArgs& args);
  BlasLtAlgo choose_blaslt(Runtime& rt, std::string_view site, const char* op, const MatmulArgs& args);
  void run_blaslt(const BlasLtAlgo& algo, const MatmulArgs& args);
  void run_matmul(Runtime& rt, std::string_view site, const char* op, const MatmulArgs& args);

  // ---- Conv2D sites (cuda/engine_conv.cc).
  struct ConvVariant;  // what runs at a conv site for one geometry: a cuDNN plan, or im2col and its algorithm
  struct ConvSite;     // a site's variant for the geometry of its first call, and for each later one
  struct ConvSites;    // the sites by name, and cuDNN as loaded (or why not)
  struct ConvSitesDelete {
    void operator()(ConvSites* s) const;
  };
  struct Im2colPick;  // the im2col variant's cuBLASLt algorithm as a policy picks it
  ConvSites& conv_sites();
  void run_conv(Runtime& rt, std::string_view site, OpKind op, const Conv2dArgs& p);
  const ConvVariant& conv_variant(Runtime& rt, std::string_view site, OpKind op, const Conv2dArgs& p);
  ConvVariant choose_conv(Runtime& rt, std::string_view site, OpKind op, const Conv2dArgs& p);
  // This machine's pick for `p` by `policy` (autotune times the candidates on p's arrays), filling `choice`'s
  // candidates, chosen, reason, timings and records.
  ConvVariant pick_conv_variant(Policy policy, std::string_view site, OpKind op, const Conv2dArgs& p,
                                KernelChoice& choice);
  Im2colPick pick_im2col_algo(Policy policy, OpKind op, const Conv2dArgs& p);
  void run_conv_variant(const ConvVariant& v, OpKind op, const Conv2dArgs& p);
  void run_im2col_variant(const BlasLtAlgo& algo, OpKind op, const Conv2dArgs& p);

  using MatmulShape = std::tuple<bool, bool, int64_t, int64_t, int64_t>;  // trans_a, trans_b, m, n, k
  struct MatmulSite {
    MatmulShape shape;  // the shape the choice was made for
    BlasLtAlgo algo;
    std::map<MatmulShape, BlasLtAlgo> other_shapes;  // the algorithm for each later shape
  };

  int index_;
  std::string name_;
  void* stream_;
  BlasLt* blas_ = nullptr;

  std::multimap<size_t, void*> cached_;     // released blocks by size
  std::unordered_map<void*, size_t> live_;  // allocated blocks and their sizes
  size_t cuda_mallocs_ = 0;

  Buffer reduce_workspace_, blaslt_workspace_, col_, tune_out_, cudnn_workspace_;
  Buffer filter_krsc_;  // a cuDNN convolution's filter (or filter gradient) as KRSC (run_conv_variant)
  std::unique_ptr<ConvSites, ConvSitesDelete> conv_sites_;
  std::map<std::string, DeviceReduce, std::less<>> reduce_sites_;
  std::map<std::string, MatmulSite, std::less<>> matmul_sites_;
  std::vector<std::string> notes_;
  bool tf32_ = false;  // runtime.tf32, as the last matmul choice read it
};

// CudaDevice::open as the engine's factory (engine/device.h, set_cuda_backend).
Result<std::unique_ptr<DeviceBackend>> open_cuda_device(int index);

}  // namespace trainrr::cuda
