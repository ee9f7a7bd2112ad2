// cuDNN's convolutions through the backend API (cuda/cudnn_conv.h).
//
// Without a GPU (these run on any machine where libcudnn.so.9 loads, and skip, saying why, where it does
// not): the library loads and reports a cuDNN 9; the tensor, convolution and operation descriptors of each op
// are built and finalized (cuDNN's own check of the geometry, which needs no driver); and without a driver
// the handle cannot be created and the error says why.
//
// With a GPU (TRAINRR_REQUIRE_GPU): every candidate engine of each op, on three small geometries, runs and is
// compared with the CPU's reference kernels (engine/kernels/reference.h); a plan rebuilt from the recorded
// form (global index and knobs only) gives the same bits as the first run of that engine unless cuDNN
// declares it nondeterministic; the deterministic policy never picks an engine declared nondeterministic; a
// plan's JSON is there or its absence is explained.
//
// Tolerance against the CPU, per output element i, and why. Let S_i be the sum of |a| * |b| over the products
// that make element i (computed by the same reference kernel on the inputs' absolute values) and K the most
// products one element sums (forward kh * kw * c_in, backward-data kh * kw * c_out, backward-filter
// n * out_h * out_w). A float sum of K products in any order, fused or not, is within K * u * S_i of the
// exact value (u = 2^-24; Higham, Accuracy and Stability of Numerical Algorithms, 3.1 and 4.2), whatever
// order the engine chose, atomics and split-K included. The CPU and cuDNN each err that much, so:
//   plain float engines:      |gpu - cpu| <= (2K + 1) * u * S_i  (the + 1 covers S_i's own rounding)
//   TENSOR_CORE or DOWN_CONVERT_INPUTS (TF32: inputs cut to 10 mantissa bits, rounded or truncated, so each
//   product is off by at most (1 + 2^-10)^2 - 1 < 2^-9 of itself): add 2^-9 * S_i
//   FFT or WINOGRAD: these transform the data, so their error is bounded normwise, not per element; add
//   2^-10 * max_i S_i. That is far above these transforms' float error for 3x3 filters on 8x8 images (a few u
//   times the transform's growth and log2 of its size) and far below what a wrong tap, a wrong padding side
//   or a missing image gives (an error of the order of S_i itself).
// Elements are first set to NaN on the device, so one the engine does not write fails.

#ifdef TRAINRR_CUDNN

#include "cuda/cudnn_conv.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "cuda/gpu_test_util.h"
#include "engine/kernels/cudnn_choice.h"
#include "engine/kernels/reference.h"
#include "engine/layers/layer_test_util.h"
#include "engine/layers/padding.h"
#include "engine/thread_pool.h"

namespace trainrr {
namespace {

using cuda::CudnnConv;

#define TRAINRR_REQUIRE_CUDNN(var)                                                                 \
  auto var##_loaded = CudnnConv::load();                                                           \
  if (!var##_loaded) GTEST_SKIP() << "cuDNN does not load here: " << var##_loaded.error().message; \
  CudnnConv* var = *var##_loaded

// Fails with the error's message; more can be streamed after it, as after EXPECT_TRUE.
#define EXPECT_OK(status)                                 \
  switch (0)                                              \
  case 0:                                                 \
  default:                                                \
    if (const ::trainrr::Status s_ = (status); s_.ok()) { \
    } else                                                \
      ADD_FAILURE() << s_.error().message << " "

// NHWC input, HWIO filter as the Conv2D layer builds them (engine/layers/padding.h's windows).
Conv2dArgs geometry(int64_t n, int64_t h, int64_t w, int64_t c_in, int64_t k, int64_t c_out, int64_t stride,
                    Padding pad) {
  Conv2dArgs p;
  p.n = n, p.h = h, p.w = w, p.c_in = c_in, p.kh = p.kw = k, p.c_out = c_out;
  p.stride_h = p.stride_w = stride;
  const Window1d wy = window_1d(h, k, stride, pad), wx = window_1d(w, k, stride, pad);
  p.out_h = wy.out, p.out_w = wx.out, p.pad_top = wy.pad_before, p.pad_left = wx.pad_before;
  return p;
}

// Same padding at stride 1 (one row and column each side); valid at stride 2 (the last row and column
// unread); same at stride 2 on 9x8 (the odd padding goes after, Keras' way: asymmetric, cuDNN's
// post-padding).
std::vector<std::pair<std::string, Conv2dArgs>> geometries() {
  return {{"same, stride 1", geometry(2, 8, 8, 3, 3, 4, 1, Padding::same)},
          {"valid, stride 2", geometry(2, 8, 8, 3, 3, 4, 2, Padding::valid)},
          {"same, stride 2, 9x8", geometry(2, 9, 8, 3, 3, 4, 2, Padding::same)}};
}

constexpr OpKind kOps[] = {OpKind::conv2d_fwd, OpKind::conv2d_bwd_data, OpKind::conv2d_bwd_filter};

// ---------------------------------------------------------------------------------------------------------
// Without a GPU.

TEST(CudnnConv, LoadsAndReportsACudnn9) {
  TRAINRR_REQUIRE_CUDNN(dnn);
  const uint64_t v = dnn->version();
  EXPECT_EQ(v / 10000, 9u) << "cudnnGetVersion() = " << v;
  EXPECT_EQ(CudnnConv::load().value(), dnn) << "one copy per process";
}

TEST(CudnnConv, DescribesEveryOpWithoutAGpu) {
  TRAINRR_REQUIRE_CUDNN(dnn);
  for (const auto& [name, shape] : geometries())
    for (OpKind op : kOps) EXPECT_OK(dnn->describe(op, shape)) << op_name(op) << ", " << name;
  // cuDNN's operation checks the output size against the input, filter, stride and both paddings (seen: a
  // missing row of post-padding fails CUDNN_STATUS_BAD_PARAM, "is_valid_spatial_dim"): so trainrr's padding
  // after, derived from the output size, must agree with it for every window Keras' paddings make.
  for (int64_t h : {7, 8, 9})
    for (int64_t k : {1, 2, 3, 5})
      for (int64_t stride : {1, 2, 3})
        for (Padding pad : {Padding::same, Padding::valid}) {
          const Conv2dArgs g = geometry(1, h, 6, 2, k, 3, stride, pad);
          if (g.out_h <= 0 || g.out_w <= 0) continue;
          for (OpKind op : kOps)
            EXPECT_OK(dnn->describe(op, g))
                << op_name(op) << " h " << h << " k " << k << " stride " << stride;
        }
  // A pointwise convolution with a wide filter bank, and a stride above the filter (pixels nobody reads).
  EXPECT_OK(dnn->describe(OpKind::conv2d_fwd, geometry(3, 7, 7, 16, 1, 32, 1, Padding::valid)));
  EXPECT_OK(dnn->describe(OpKind::conv2d_bwd_filter, geometry(2, 9, 9, 3, 2, 5, 3, Padding::valid)));
}

TEST(CudnnConv, RejectsWhatIsNotAConvolution) {
  TRAINRR_REQUIRE_CUDNN(dnn);
  Conv2dArgs p = geometry(2, 8, 8, 3, 3, 4, 1, Padding::same);
  Status s = dnn->describe(OpKind::matmul, p);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("matmul is not a convolution"), std::string::npos) << s.error().message;
  // An output that ends before the input does: no padding after makes it. (A longer one is padding after,
  // which both sides read as zeros.)
  p = geometry(2, 8, 8, 3, 3, 4, 1, Padding::valid);
  p.out_h -= 1;
  s = dnn->describe(OpKind::conv2d_fwd, p);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("the output height 5"), std::string::npos) << s.error().message;
}

TEST(CudnnConv, WithoutADriverTheHandleErrorSaysWhy) {
  TRAINRR_REQUIRE_CUDNN(dnn);
  if (cuda::find_gpu(0)) GTEST_SKIP() << "a GPU is here: the GPU tests create the handle";
  const Conv2dArgs p = geometry(2, 8, 8, 3, 3, 4, 1, Padding::same);
  auto c = dnn->candidates(OpKind::conv2d_fwd, p);
  ASSERT_FALSE(c.ok());
  const std::string& m = c.error().message;
  EXPECT_NE(m.find("cudnnCreate failed: CUDNN_STATUS_"), std::string::npos) << m;
  EXPECT_NE(m.find("; cuDNN: "), std::string::npos) << "no reason from cudnnGetLastErrorString: " << m;
  std::printf("without a GPU: %s\n", m.c_str());
  auto plan = dnn->build(OpKind::conv2d_fwd, p, CudnnEngine{});
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.error().message.find("cudnnCreate failed"), std::string::npos) << plan.error().message;
  Status s = dnn->run(CudnnConv::Plan{}, p, nullptr, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("not built"), std::string::npos) << s.error().message;
}

// ---------------------------------------------------------------------------------------------------------
// With a GPU.

class DeviceFloats {
 public:
  explicit DeviceFloats(const std::vector<float>& host) : n_(host.size()) {
    if (cudaError_t e = cudaMalloc(&p_, sizeof(float) * std::max<size_t>(n_, 1)); e != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc: " << cudaGetErrorString(e);
      p_ = nullptr;
      return;
    }
    if (cudaError_t e = cudaMemcpy(p_, host.data(), sizeof(float) * n_, cudaMemcpyHostToDevice);
        e != cudaSuccess)
      ADD_FAILURE() << "cudaMemcpy to the device: " << cudaGetErrorString(e);
  }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;
  ~DeviceFloats() { cudaFree(p_); }
  float* get() const { return p_; }
  // Waits for the queued work (an engine's fault shows here) and copies back.
  std::vector<float> host() const {
    std::vector<float> out(n_, std::numeric_limits<float>::quiet_NaN());
    if (cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess)
      ADD_FAILURE() << "the convolution failed: " << cudaGetErrorName(e) << " (" << cudaGetErrorString(e)
                    << ")";
    else if (p_ && n_ > 0)
      if (cudaError_t e2 = cudaMemcpy(out.data(), p_, sizeof(float) * n_, cudaMemcpyDeviceToHost);
          e2 != cudaSuccess)
        ADD_FAILURE() << "cudaMemcpy to the host: " << cudaGetErrorString(e2);
    return out;
  }

 private:
  float* p_ = nullptr;
  size_t n_;
};

class DeviceBytes {
 public:
  explicit DeviceBytes(uint64_t n) {
    if (n == 0) return;
    if (cudaError_t e = cudaMalloc(&p_, n); e != cudaSuccess)
      ADD_FAILURE() << "cudaMalloc workspace: " << cudaGetErrorString(e);
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  ~DeviceBytes() { cudaFree(p_); }
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
};

bool has_note(const CudnnEngine& e, std::initializer_list<int32_t> notes) {
  for (int32_t n : e.numerical_notes)
    if (std::find(notes.begin(), notes.end(), n) != notes.end()) return true;
  return false;
}

// out [cols, rows] = in [rows, cols] transposed: trainrr's HWIO filter ([taps, c_out]) as cuDNN's KRSC ([c_out,
// taps], cuda/cudnn_conv.h) and back.
std::vector<float> transposed(const std::vector<float>& in, int64_t rows, int64_t cols) {
  std::vector<float> out(in.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = in[r * cols + c];
  return out;
}

// The op on the host: inputs, the reference output and S (see the top of the file).
struct Case {
  std::vector<float> x, filter, dy;  // the inputs the op reads
  std::vector<float> want, bound;    // reference output; S_i
  int64_t terms = 0;                 // K
};

Case reference(OpKind op, const Conv2dArgs& shape, ThreadPool& pool) {
  Case c;
  c.x = testing::random_tensor({shape.n, shape.h, shape.w, shape.c_in}, 71).data;
  c.filter = testing::random_tensor({shape.kh, shape.kw, shape.c_in, shape.c_out}, 72).data;
  c.dy = testing::random_tensor({shape.n, shape.out_h, shape.out_w, shape.c_out}, 73).data;
  size_t out_size = 0;
  void (*kernel)(const Conv2dArgs&, ThreadPool&) = nullptr;
  switch (op) {
    case OpKind::conv2d_fwd:
      out_size = c.dy.size(), kernel = conv2d_fwd_direct, c.terms = shape.kh * shape.kw * shape.c_in;
      break;
    case OpKind::conv2d_bwd_data:
      out_size = c.x.size(), kernel = conv2d_bwd_data_direct, c.terms = shape.kh * shape.kw * shape.c_out;
      break;
    default:
      out_size = c.filter.size(), kernel = conv2d_bwd_filter_direct,
      c.terms = shape.n * shape.out_h * shape.out_w;
      break;
  }
  auto run = [&](const std::vector<float>& x, const std::vector<float>& f, const std::vector<float>& dy) {
    std::vector<float> out(out_size);
    Conv2dArgs p = shape;
    p.x = x.data(), p.filter = f.data(), p.dy = dy.data(), p.out = out.data();
    kernel(p, pool);
    return out;
  };
  auto abs_of = [](std::vector<float> v) {
    for (float& f : v) f = std::fabs(f);
    return v;
  };
  c.want = run(c.x, c.filter, c.dy);
  c.bound = run(abs_of(c.x), abs_of(c.filter), abs_of(c.dy));
  return c;
}

void expect_within(const Case& c, const std::vector<float>& got, const CudnnEngine& e,
                   const std::string& what) {
  ASSERT_EQ(got.size(), c.want.size()) << what;
  const double u = std::ldexp(1.0, -24);
  const bool tf32 = has_note(e, {kCudnnNoteTensorCore, kCudnnNoteDownConvertInputs});
  const bool transform = has_note(e, {kCudnnNoteFft, kCudnnNoteWinograd, 6, 7, kCudnnNoteWinogradTile13x13});
  const double per_element =
      (2.0 * static_cast<double>(c.terms) + 1) * u + (tf32 ? std::ldexp(1.0, -9) : 0.0);
  const double normwise =
      transform ? std::ldexp(1.0, -10) * *std::max_element(c.bound.begin(), c.bound.end()) : 0.0;
  size_t bad = 0, worst = 0;
  double worst_excess = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(got[i]) - c.want[i]);
    const double tol = per_element * c.bound[i] + normwise;
    if (!(diff <= tol)) {  // NaN fails too
      const double excess = std::isnan(diff) ? INFINITY : diff / std::max(tol, 1e-300);
      if (bad++ == 0 || excess > worst_excess) worst = i, worst_excess = excess;
    }
  }
  EXPECT_EQ(bad, 0u) << what << " (" << cudnn_describe(e) << "): " << bad << " of " << got.size()
                     << " outside the bound; worst [" << worst << "] cpu " << c.want[worst] << " gpu "
                     << got[worst] << ", S " << c.bound[worst] << ", " << worst_excess << " times the bound";
}

TEST(CudnnConvGpu, EveryCandidateMatchesTheCpuAndRebuildsBitForBit) {
  TRAINRR_REQUIRE_GPU();
  TRAINRR_REQUIRE_CUDNN(dnn);
  ThreadPool pool(1);
  for (const auto& [name, shape] : geometries()) {
    for (OpKind op : kOps) {
      const std::string where = std::string(op_name(op)) + ", " + name;
      SCOPED_TRACE(where);
      const Case c = reference(op, shape, pool);
      std::vector<std::string> left_out;
      auto cands = dnn->candidates(op, shape, &left_out);
      ASSERT_TRUE(cands.ok()) << cands.error().message;
      ASSERT_FALSE(cands->empty());
      std::printf("%s: %zu candidates, %zu left out\n", where.c_str(), cands->size(), left_out.size());
      for (const std::string& l : left_out) std::printf("  left out: %s\n", l.c_str());

      // The deterministic policy's pick carries no NONDETERMINISTIC note; where it finds none, every
      // candidate carries one.
      auto pick = pick_cudnn(Policy::deterministic, *cands);
      if (pick.ok())
        EXPECT_FALSE(cudnn_nondeterministic((*cands)[pick->index])) << cudnn_describe((*cands)[pick->index]);
      else
        for (const CudnnEngine& e : *cands) EXPECT_TRUE(cudnn_nondeterministic(e)) << pick.error().message;

      // cuDNN reads the filter, and writes a filter gradient, as KRSC.
      const int64_t taps = shape.kh * shape.kw * shape.c_in;
      auto as_hwio = [&](std::vector<float> out) {
        return op == OpKind::conv2d_bwd_filter ? transposed(out, shape.c_out, taps) : out;
      };
      DeviceFloats x(c.x), filter(transposed(c.filter, taps, shape.c_out)), dy(c.dy);
      const std::vector<float> nans(c.want.size(), std::numeric_limits<float>::quiet_NaN());
      for (const CudnnEngine& e : *cands) {
        const std::string id = cudnn_kernel_id(op, e);
        auto plan = dnn->build(op, shape, e);
        ASSERT_TRUE(plan.ok()) << plan.error().message;
        EXPECT_EQ(plan->workspace, e.workspace) << id;
        EXPECT_EQ(plan->engine.numerical_notes, e.numerical_notes) << id;
        if (plan->json.empty())
          EXPECT_FALSE(plan->json_note.empty()) << id << ": no JSON and no reason";
        else
          EXPECT_EQ(plan->json.front(), '{') << id << ": " << plan->json.substr(0, 80);
        std::printf("  %s: workspace %llu, JSON %zu bytes%s%s\n", id.c_str(),
                    static_cast<unsigned long long>(plan->workspace), plan->json.size(),
                    plan->json.empty() ? ": " : "", plan->json_note.c_str());

        DeviceBytes workspace(plan->workspace);
        DeviceFloats out(nans);
        Conv2dArgs args = shape;
        args.x = x.get(), args.filter = filter.get(), args.dy = dy.get(), args.out = out.get();
        EXPECT_OK(dnn->run(*plan, args, workspace.get(), nullptr));
        const std::vector<float> first = as_hwio(out.host());
        expect_within(c, first, e, id);

        if (cudnn_nondeterministic(e)) continue;
        // The recorded form only: global index and knobs, as a trace holds them.
        CudnnEngine recorded;
        recorded.global_index = e.global_index;
        recorded.knobs = e.knobs;
        auto again = dnn->build(op, shape, recorded);
        ASSERT_TRUE(again.ok()) << again.error().message;
        DeviceBytes workspace2(again->workspace);
        DeviceFloats out2(nans);
        args.out = out2.get();
        EXPECT_OK(dnn->run(*again, args, workspace2.get(), nullptr));
        const std::vector<float> second = as_hwio(out2.host());
        size_t differ = 0;
        for (size_t i = 0; i < first.size(); ++i)
          differ += std::memcmp(&first[i], &second[i], sizeof(float)) != 0;
        EXPECT_EQ(differ, 0u) << id << ": the rebuilt plan's bits differ from the first run's";
      }
    }
  }
}

// A plan runs only the geometry it was built for, and on pointers its tensors' alignment allows.
TEST(CudnnConvGpu, RunRejectsAnotherGeometryAndMisalignedPointers) {
  TRAINRR_REQUIRE_GPU();
  TRAINRR_REQUIRE_CUDNN(dnn);
  const Conv2dArgs shape = geometry(2, 8, 8, 3, 3, 4, 1, Padding::same);
  auto cands = dnn->candidates(OpKind::conv2d_fwd, shape);
  ASSERT_TRUE(cands.ok()) << cands.error().message;
  auto plan = dnn->build(OpKind::conv2d_fwd, shape, cands->front());
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  DeviceFloats x(std::vector<float>(shape.n * shape.h * shape.w * shape.c_in + 4, 1.0f));
  DeviceFloats f(std::vector<float>(shape.kh * shape.kw * shape.c_in * shape.c_out, 1.0f));
  DeviceFloats y(std::vector<float>(shape.n * shape.out_h * shape.out_w * shape.c_out, 0.0f));
  DeviceBytes workspace(plan->workspace);
  Conv2dArgs args = shape;
  args.x = x.get() + 1, args.filter = f.get(), args.out = y.get();  // 4 bytes past a 256-byte boundary
  Status s = dnn->run(*plan, args, workspace.get(), nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("not aligned"), std::string::npos) << s.error().message;
  args.x = x.get();
  args.c_out = 5;
  s = dnn->run(*plan, args, workspace.get(), nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("cannot run"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace trainrr

#endif  // TRAINRR_CUDNN
