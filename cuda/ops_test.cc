// The device ops of cuda/ops.h against the CPU engine's own functions, on the same seeded inputs. A GPU
// machine runs these (scripts/gpu-check.sh); elsewhere they skip, and cuda_on_host_tests runs the same
// kernels on the CPU (cuda/on_host/cuda_runtime.h).
//
// Tolerances, and why:
//   0 ULP (bit for bit): every op whose CPU code uses only +, -, *, /, sqrt and comparisons, since the device
//     does the same IEEE operations in the same order (--fmad=false; division and sqrt correctly rounded):
//     bias, relu, linear, every activation's backward, dropout's backward, the losses' gradients without exp,
//     max pooling, the batch-norm steps given the same sums, the optimizers, im2col and col2im, and the tree
//     reduction against a host model of its fixed order.
//   a few ULP: where exp, log, log1p or tanh enter. CUDA's expf and tanhf are within 2 ULP of the exact
//     value, logf and log1pf within 1 (CUDA C Programming Guide, "Mathematical Functions"); glibc's are
//     within 1 or 2 (its manual's table of known errors): two results can be 3 or 4 ULP apart for the
//     function alone, and some more after the arithmetic that follows (a sum of exps, a reciprocal, a
//     product). Each test says its figure.
//   an error bound: where the GPU sums in another order than the CPU (reductions, and what is computed from
//     them). Recursive summation in which every value passes through at most d additions is off by at most
//     d * u * sum |x_i| (u = 2^-24, Higham, Accuracy and Stability of Numerical Algorithms, 4.2), so two
//     orders with depths d1 and d2 differ by at most (d1 + d2) * u * sum |x_i|: a missing or doubled element
//     is far outside it.

#include "cuda/ops.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "cuda/gpu_test_util.h"
#include "engine/counter_rng.h"
#include "engine/kernels/conv_im2col.h"
#include "engine/kernels/reduce.h"
#include "engine/layers/activations.h"
#include "engine/layers/batch_normalization.h"
#include "engine/layers/layer_test_util.h"
#include "engine/layers/layer_util.h"
#include "engine/layers/loss.h"
#include "engine/layers/max_pool2d.h"
#include "engine/layers/padding.h"
#include "engine/optimizer.h"

namespace trainrr {
namespace {

using testing::random_tensor;
using testing::TestRuntime;

// ---------------------------------------------------------------------------------------------------------
// Device memory for a test: allocated, filled from the host, read back. A CUDA error fails the test.

template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    if (cudaError_t e = cudaMalloc(&p_, sizeof(T) * std::max<size_t>(n, 1)); e != cudaSuccess) {
      ADD_FAILURE() << "cudaMalloc: " << cudaGetErrorString(e);
      p_ = nullptr;
    }
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) {
    if (p_ && !host.empty()) {
      cudaError_t e = cudaMemcpy(p_, host.data(), sizeof(T) * n_, cudaMemcpyHostToDevice);
      if (e != cudaSuccess) ADD_FAILURE() << "cudaMemcpy to the device: " << cudaGetErrorString(e);
    }
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(p_); }

  T* get() { return p_; }
  // Waits for the queued work (a kernel's fault shows here) and copies the array back.
  std::vector<T> host() const {
    std::vector<T> out(n_);
    if (cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess)
      ADD_FAILURE() << "a kernel failed: " << cudaGetErrorName(e) << " (" << cudaGetErrorString(e) << ")";
    if (p_ && n_ > 0)
      if (cudaError_t e = cudaMemcpy(out.data(), p_, sizeof(T) * n_, cudaMemcpyDeviceToHost); e != cudaSuccess)
        ADD_FAILURE() << "cudaMemcpy to the host: " << cudaGetErrorString(e);
    return out;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

using Floats = DeviceArray<float>;

#define EXPECT_OK(status)                                          \
  do {                                                             \
    const ::trainrr::Status s_ = (status);                         \
    EXPECT_TRUE(s_.ok()) << s_.error().message;                    \
  } while (0)

// ---------------------------------------------------------------------------------------------------------
// Comparisons.

using cuda_testing::bit_distance;

struct Tolerance {
  int64_t ulp = 0;     // accepted when within this many ULP...
  double abs = 0;      // ...or within this absolute difference (for values near 0 after a cancellation)
};

// Element by element: reports the number of elements out of tolerance and the worst one.
void expect_close(const std::vector<float>& cpu, const std::vector<float>& gpu, Tolerance tol,
                  const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  size_t bad = 0, worst = 0;
  int64_t worst_ulp = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    const int64_t d = bit_distance(cpu[i], gpu[i]);
    const bool ok = d <= tol.ulp || std::fabs(static_cast<double>(cpu[i]) - gpu[i]) <= tol.abs;
    if (!ok && (bad++ == 0 || d > worst_ulp)) worst = i, worst_ulp = d;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << cpu.size() << " outside " << tol.ulp << " ULP / "
                     << tol.abs << " absolute; worst [" << worst << "] cpu " << cpu[worst] << " gpu " << gpu[worst]
                     << " (" << worst_ulp << " ULP)";
}

void expect_bitwise(const std::vector<float>& cpu, const std::vector<float>& gpu, const std::string& what) {
  expect_close(cpu, gpu, {}, what);
}

std::vector<float> random_values(int64_t n, uint64_t seed, float lo = -1, float hi = 1) {
  return random_tensor({n}, seed, lo, hi).data;
}

// ---------------------------------------------------------------------------------------------------------
// Bias and activations.

constexpr int64_t kRows = 97, kCols = 53;  // odd sizes, so no loop divides them evenly

TEST(GpuOps, AddBiasIsTheCpusBitForBit) {
  TRAINRR_REQUIRE_GPU();
  std::vector<float> y = random_values(kRows * kCols, 1), b = random_values(kCols, 2);
  Floats dy(y), db(b);
  EXPECT_OK(cuda::add_bias(dy.get(), db.get(), kRows, kCols, nullptr));
  add_bias(y.data(), b.data(), kRows, kCols);
  expect_bitwise(y, dy.host(), "add_bias");
}

// Forward: linear and relu are exact. sigmoid 1 / (1 + exp(-x)): the two exps up to 3 ULP apart (2 on the
// device, 1 in glibc), then 1 + e and the reciprocal may each round the other way: 6 ULP. tanh: 2 + 1 ULP, rounded
// up to 4. softmax: the exps 3 ULP apart, and the row sum, added in the same order but of slightly different
// terms, can round differently at each addition (a random walk of about sqrt(cols) ULP for these 53 columns,
// up to one per addition at worst), then a reciprocal and a product: 16 ULP.
Tolerance forward_tolerance(Activation a) {
  switch (a) {
    case Activation::linear:
    case Activation::relu:
      return {};
    case Activation::sigmoid:
      return {6, 0};
    case Activation::tanh:
      return {4, 0};
    case Activation::softmax:
      return {16, 0};
  }
  return {};
}

const Activation kActivations[] = {Activation::linear, Activation::relu, Activation::sigmoid, Activation::tanh,
                                   Activation::softmax};

TEST(GpuOps, ActivationForwardMatchesTheCpu) {
  TRAINRR_REQUIRE_GPU();
  // Beyond [-1, 1] so that sigmoid and tanh saturate somewhere and softmax's maximum matters.
  const std::vector<float> x = random_values(kRows * kCols, 3, -12, 12);
  for (Activation a : kActivations) {
    std::vector<float> cpu(x.size());
    activation_forward(a, x.data(), cpu.data(), kRows, kCols);
    Floats dx(x), dy(x.size());
    EXPECT_OK(cuda::activation_forward(a, dx.get(), dy.get(), kRows, kCols, nullptr));
    expect_close(cpu, dy.host(), forward_tolerance(a), std::string("forward ") + activation_name(a));
    // In place, as the layers call it.
    EXPECT_OK(cuda::activation_forward(a, dx.get(), dx.get(), kRows, kCols, nullptr));
    expect_close(cpu, dx.host(), forward_tolerance(a), std::string("in-place forward ") + activation_name(a));
  }
}

TEST(GpuOps, BiasActivationForwardMatchesTheCpu) {
  TRAINRR_REQUIRE_GPU();
  const std::vector<float> y0 = random_values(kRows * kCols, 4, -6, 6), b = random_values(kCols, 5);
  for (Activation a : kActivations) {
    for (bool with_bias : {true, false}) {
      std::vector<float> cpu = y0;
      bias_activation_forward(a, with_bias ? b.data() : nullptr, cpu.data(), kRows, kCols);
      Floats dy(y0), db(b);
      EXPECT_OK(cuda::bias_activation_forward(a, with_bias ? db.get() : nullptr, dy.get(), kRows, kCols, nullptr));
      expect_close(cpu, dy.host(), forward_tolerance(a),
                   std::string("bias_activation_forward ") + activation_name(a) + (with_bias ? "" : " (no bias)"));
    }
  }
}

// Backward takes the forward output y (the CPU's y, on both sides) and uses only products and differences:
// exact, softmax's row dot product included (one thread per row adds it in the CPU's order).
TEST(GpuOps, ActivationBackwardIsTheCpusBitForBit) {
  TRAINRR_REQUIRE_GPU();
  const std::vector<float> x = random_values(kRows * kCols, 6, -4, 4), g = random_values(kRows * kCols, 7);
  for (Activation a : kActivations) {
    std::vector<float> y(x.size()), cpu(x.size());
    activation_forward(a, x.data(), y.data(), kRows, kCols);
    activation_backward(a, y.data(), g.data(), cpu.data(), kRows, kCols);
    Floats dy(y), dg(g), ddx(x.size());
    EXPECT_OK(cuda::activation_backward(a, dy.get(), dg.get(), ddx.get(), kRows, kCols, nullptr));
    expect_bitwise(cpu, ddx.host(), std::string("backward ") + activation_name(a));
    EXPECT_OK(cuda::activation_backward(a, dy.get(), dg.get(), dg.get(), kRows, kCols, nullptr));
    expect_bitwise(cpu, dg.host(), std::string("in-place backward ") + activation_name(a));
  }
}

// The mask and the scale are the forward's; the arithmetic is rng::dropout_apply on both sides.
TEST(GpuOps, DropoutBackwardIsTheCpusBitForBit) {
  TRAINRR_REQUIRE_GPU();
  const int64_t n = 10007;
  const float rate = 0.3f, scale = static_cast<float>(1.0 / (1.0 - rate));
  const std::vector<float> u = random_values(n, 8, 0, 1), dy = random_values(n, 9);
  std::vector<uint8_t> keep(n);
  std::vector<float> cpu(n);
  for (int64_t i = 0; i < n; ++i) {
    keep[i] = rng::dropout_keeps(u[i], rate);
    cpu[i] = rng::dropout_apply(keep[i], dy[i], scale);
  }
  DeviceArray<uint8_t> dkeep(keep);
  Floats ddy(dy), ddx(n);
  EXPECT_OK(cuda::dropout_backward(dkeep.get(), scale, ddy.get(), ddx.get(), n, nullptr));
  expect_bitwise(cpu, ddx.host(), "dropout backward");
}

// ---------------------------------------------------------------------------------------------------------
// Losses: the device's per-sample losses and gradient against Loss::compute; the mean through the tree sum.

struct LossCase {
  std::string name;
  bool from_logits = false, softmax_output = false;
};

// The device loss: gradient and batch mean (per-sample losses summed by the tree kernel).
struct DeviceLoss {
  std::vector<float> grad;
  double mean = 0;
};

DeviceLoss device_loss(const LossCase& c, const Tensor& pred, const std::vector<float>& labels) {
  const int64_t batch = pred.dim(0), k = pred.size() / batch;
  Floats dp(pred.data), dl(labels), per(batch), grad(pred.size()), sum(1);
  if (c.name == "sparse_categorical_crossentropy")
    EXPECT_OK(cuda::sparse_categorical_crossentropy(dp.get(), dl.get(), batch, k, c.from_logits, c.softmax_output,
                                                    per.get(), grad.get(), nullptr));
  else if (c.name == "binary_crossentropy")
    EXPECT_OK(cuda::binary_crossentropy(dp.get(), dl.get(), batch, c.from_logits, per.get(), grad.get(), nullptr));
  else
    EXPECT_OK(cuda::mean_squared_error(dp.get(), dl.get(), batch, k, per.get(), grad.get(), nullptr));
  const cuda::ReducePlan plan = cuda::plan_column_sums(cuda::ReduceVariant::tree, batch, 1);
  Floats work(plan.workspace_bytes / sizeof(float));
  EXPECT_OK(cuda::column_sums_cuda_tree(per.get(), batch, 1, sum.get(), work.get(), nullptr));
  return {grad.host(), cuda::loss_mean_from_sum(sum.host()[0], batch)};
}

void expect_loss_matches(const LossCase& c, const Tensor& pred, const std::vector<float>& labels,
                         Tolerance grad_tol) {
  TestRuntime t;
  auto loss = make_loss(c.name, c.from_logits, c.softmax_output);
  ASSERT_TRUE(loss.ok()) << loss.error().message;
  const LossValue cpu = (*loss)->compute(pred, labels, t.rt);
  const DeviceLoss gpu = device_loss(c, pred, labels);
  const std::string what = c.name + (c.from_logits ? " from logits" : "") + (c.softmax_output ? " (softmax)" : "");
  expect_close(cpu.grad.data, gpu.grad, grad_tol, what + ": gradient");
  // The mean: per-sample losses within a few ULP (log, exp), summed in another order over at most 256 samples
  // (depth below 40 on each side: 80 * 2^-24 < 5e-6 of the sum of |loss|, which is the sum for these
  // non-negative losses). 1e-5 relative covers both.
  EXPECT_NEAR(cpu.loss, gpu.mean, 1e-5 * std::fabs(cpu.loss) + 1e-7) << what << ": mean loss";
}

constexpr int64_t kBatch = 200, kClasses = 7;

std::vector<float> class_labels(int64_t batch, int64_t k, uint64_t seed) {
  std::vector<float> labels = random_values(batch, seed, 0, static_cast<float>(k));
  for (float& l : labels) l = std::min(std::floor(l), static_cast<float>(k - 1));
  return labels;
}

// From logits: g = exp(z - m) / sum / batch (16 ULP, as softmax, plus one product), and g[y] -= 1/batch, a
// difference that can cancel: there 16 ULP of 1/batch absolute (1/batch < 2^-7: its ULP is 2^-31 at most), below
// 1e-6 / batch.
TEST(GpuOps, SparseCategoricalCrossentropyFromLogitsMatchesTheCpu) {
  TRAINRR_REQUIRE_GPU();
  const Tensor logits = random_tensor({kBatch, kClasses}, 10, -8, 8);
  expect_loss_matches({"sparse_categorical_crossentropy", true, false}, logits, class_labels(kBatch, kClasses, 11),
                      {17, 1e-6 / kBatch});
}

// Probabilities: the gradient is divisions only (bit for bit); the loss is a log. Rows of a softmax (the
// model's last layer), and rows that are not distributions, with values at and beyond the clip.
TEST(GpuOps, SparseCategoricalCrossentropyOnProbabilitiesMatchesTheCpu) {
  TRAINRR_REQUIRE_GPU();
  Tensor probs({kBatch, kClasses});
  const Tensor logits = random_tensor({kBatch, kClasses}, 12, -20, 20);
  activation_forward(Activation::softmax, logits.ptr(), probs.ptr(), kBatch, kClasses);
  const std::vector<float> labels = class_labels(kBatch, kClasses, 13);
  expect_loss_matches({"sparse_categorical_crossentropy", false, true}, probs, labels, {});
  Tensor scores = random_tensor({kBatch, kClasses}, 14, 0, 1);
  for (int64_t i = 0; i < kBatch; i += 9) scores[i * kClasses + static_cast<int64_t>(labels[i])] = 0.0f;
  expect_loss_matches({"sparse_categorical_crossentropy", false, false}, scores, labels, {});
}

// From logits: the gradient is (sigmoid(z) - y) / batch: sigmoid within 6 ULP (as the activation), then a
// difference that can cancel: 6 ULP of 1 (2^-23 each) over batch absolute, below 1e-6 / batch. On
// probabilities: divisions only, exact; values at and past the clip (0, 1, 1e-8) take the no-gradient branch
// on both sides.
TEST(GpuOps, BinaryCrossentropyMatchesTheCpu) {
  TRAINRR_REQUIRE_GPU();
  const std::vector<float> labels = class_labels(kBatch, 2, 15);
  const Tensor logits = random_tensor({kBatch, 1}, 16, -30, 30);
  expect_loss_matches({"binary_crossentropy", true, false}, logits, labels, {7, 1e-6 / kBatch});
  Tensor probs = random_tensor({kBatch, 1}, 17, 0, 1);
  probs[0] = 0.0f, probs[1] = 1.0f, probs[2] = 1e-8f, probs[3] = 1.0f - 1e-7f;
  expect_loss_matches({"binary_crossentropy", false, false}, probs, labels, {});
}

// Differences, squares and a sequential row sum: the gradient and each per-sample loss are exact.
TEST(GpuOps, MeanSquaredErrorMatchesTheCpu) {
  TRAINRR_REQUIRE_GPU();
  for (int64_t k : {int64_t{1}, int64_t{5}}) {
    const Tensor pred = random_tensor({kBatch, k}, 18, -3, 3);
    expect_loss_matches({"mse", false, false}, pred, random_values(kBatch * k, 19, -3, 3), {});
  }
}

// ---------------------------------------------------------------------------------------------------------
// MaxPool2D: comparisons and, backward, additions into each cell in output order on both sides: exact.

struct PoolCase {
  int64_t h, w, c, pool_h, pool_w, stride_h, stride_w;
  Padding padding;
};

TEST(GpuOps, MaxPoolForwardAndBackwardAreTheCpusBitForBit) {
  TRAINRR_REQUIRE_GPU();
  const PoolCase cases[] = {
      {8, 8, 3, 2, 2, 2, 2, Padding::valid},  // the common case
      {7, 9, 5, 3, 3, 2, 2, Padding::same},   // padding on both edges
      {6, 7, 4, 3, 2, 1, 1, Padding::valid},  // overlapping windows: a cell can be picked several times
      {5, 5, 2, 2, 3, 1, 2, Padding::same},
  };
  const int64_t n = 3;
  for (const PoolCase& pc : cases) {
    TestRuntime t;
    MaxPool2D layer("pool", {pc.pool_h, pc.pool_w}, {pc.stride_h, pc.stride_w}, pc.padding);
    ASSERT_TRUE(layer.build({pc.h, pc.w, pc.c}, t.rt).ok());
    // Values on a grid of quarters, so that windows hold ties and the first-maximum rule is exercised.
    Tensor x = random_tensor({n, pc.h, pc.w, pc.c}, 20, -2, 2);
    for (float& v : x.data) v = std::round(v * 4) / 4;
    const Tensor y = layer.forward(x, t.rt, true);
    const Tensor dy = random_tensor(y.shape, 21);
    const Tensor dx = layer.backward(dy, t.rt);

    const Window1d wy = window_1d(pc.h, pc.pool_h, pc.stride_h, pc.padding);
    const Window1d wx = window_1d(pc.w, pc.pool_w, pc.stride_w, pc.padding);
    cuda::PoolGeometry g;
    g.n = n, g.h = pc.h, g.w = pc.w, g.c = pc.c, g.pool_h = pc.pool_h, g.pool_w = pc.pool_w;
    g.stride_h = pc.stride_h, g.stride_w = pc.stride_w, g.pad_top = wy.pad_before, g.pad_left = wx.pad_before;
    g.out_h = wy.out, g.out_w = wx.out;
    Floats d_x(x.data), d_y(y.size()), d_dy(dy.data), d_dx(x.size());
    DeviceArray<int32_t> argmax(y.size());
    EXPECT_OK(cuda::max_pool_forward(g, d_x.get(), d_y.get(), argmax.get(), nullptr));
    EXPECT_OK(cuda::max_pool_backward(g, d_dy.get(), argmax.get(), d_dx.get(), nullptr));
    const std::string what = "pool " + std::to_string(pc.pool_h) + "x" + std::to_string(pc.pool_w) + " stride " +
                             std::to_string(pc.stride_h) + "x" + std::to_string(pc.stride_w) + " " +
                             padding_name(pc.padding);
    expect_bitwise(y.data, d_y.host(), what + ": forward");
    expect_bitwise(dx.data, d_dx.host(), what + ": backward");
  }
}

// ---------------------------------------------------------------------------------------------------------
// BatchNormalization: the layer's probes give its batch statistics and its backward sums, so the device's
// elementwise steps can start from the CPU's sums and must then give the CPU's bits; the whole pipeline with
// the device's own sums is compared within the reduction's error bound.

class ProbeCapture : public Hooks {
 public:
  void probe(std::string_view site, Phase, const Tensor& value) override { seen[std::string(site)] = value; }
  std::map<std::string, Tensor> seen;
};

constexpr int64_t kBnRows = 384, kBnChannels = 19;
constexpr double kBnMomentum = 0.9, kBnEpsilon = 1e-3;

struct BnLayer {
  ProbeCapture hooks;
  TestRuntime t{1, hooks, ProbeLevel::op};
  BatchNormalization layer{"bn", kBnMomentum, kBnEpsilon};

  BnLayer() {
    EXPECT_TRUE(layer.build({kBnChannels}, t.rt).ok());
    // gamma and beta away from their initial 1 and 0, so that a mix-up shows.
    std::vector<Param*> p = layer.params();
    p[0]->value = random_tensor({kBnChannels}, 30, 0.5f, 1.5f);
    p[1]->value = random_tensor({kBnChannels}, 31, -0.5f, 0.5f);
  }
  const Tensor& gamma() { return layer.params()[0]->value; }
  const Tensor& beta() { return layer.params()[1]->value; }
  Tensor& moving_mean() { return layer.state()[0]->value; }
  Tensor& moving_variance() { return layer.state()[1]->value; }
  const Tensor& probed(const std::string& site) { return hooks.seen.at("bn/" + site + ":out"); }
};

std::vector<float> slice(const Tensor& t, int64_t from, int64_t n) {
  return std::vector<float>(t.data.begin() + from, t.data.begin() + from + n);
}

TEST(GpuOps, BatchNormTrainingStepsAreTheCpusBitForBitFromTheSameSums) {
  TRAINRR_REQUIRE_GPU();
  BnLayer bn;
  const int64_t rows = kBnRows, c = kBnChannels;
  const Tensor x = random_tensor({rows, c}, 32, -1, 3);  // a mean away from 0
  const std::vector<float> mm0 = bn.moving_mean().data, mv0 = bn.moving_variance().data;
  const Tensor y = bn.layer.forward(x, bn.t.rt, true);
  const Tensor stats = bn.probed("bn_stats.fwd");  // (mean | var), after the division by rows
  const Tensor dy = random_tensor({rows, c}, 33);
  const Tensor dx = bn.layer.backward(dy, bn.t.rt);
  const Tensor sums = bn.probed("bn_sums.bwd");  // (dbeta | dgamma)

  Floats d_x(x.data), d_stats(stats.data), d_gamma(bn.gamma().data), d_beta(bn.beta().data), d_mm(mm0), d_mv(mv0);
  Floats inv_std(c), xhat(rows * c), d_y(rows * c), sq(rows * c);
  const float* mean = d_stats.get();
  const float* var = d_stats.get() + c;
  EXPECT_OK(cuda::batch_norm_statistics(mean, var, static_cast<float>(kBnEpsilon), static_cast<float>(kBnMomentum),
                                        static_cast<float>(1.0 - kBnMomentum), inv_std.get(), d_mm.get(), d_mv.get(),
                                        c, nullptr));
  EXPECT_OK(cuda::batch_norm_normalize(d_x.get(), mean, inv_std.get(), d_gamma.get(), d_beta.get(), xhat.get(),
                                       d_y.get(), rows, c, nullptr));
  expect_bitwise(y.data, d_y.host(), "batch norm forward (training)");
  expect_bitwise(bn.moving_mean().data, d_mm.host(), "moving mean");
  expect_bitwise(bn.moving_variance().data, d_mv.host(), "moving variance");

  // The squared deviations the variance is summed from: summed on the host in the CPU's reduction order, they
  // give the CPU's variance back.
  EXPECT_OK(cuda::batch_norm_square_deviations(d_x.get(), mean, sq.get(), rows, c, nullptr));
  std::vector<float> var_sum(c);
  ThreadPool pool(1);
  const std::vector<float> sq_host = sq.host();
  ReduceArgs r;
  r.x = sq_host.data(), r.rows = rows, r.cols = c, r.out = var_sum.data();
  run_reduce(*bn.t.rt.kernels, "bn/bn_stats.fwd", r);
  for (float& v : var_sum) v *= 1.0f / static_cast<float>(rows);
  expect_bitwise(slice(stats, c, c), var_sum, "variance from the device's squared deviations");

  Floats d_dy(dy.data), d_sums(sums.data), scratch(rows * 2 * c), d_dx(rows * c);
  EXPECT_OK(cuda::batch_norm_backward_columns(d_dy.get(), xhat.get(), scratch.get(), rows, c, nullptr));
  EXPECT_OK(cuda::batch_norm_backward_data(d_dy.get(), xhat.get(), d_gamma.get(), inv_std.get(), d_sums.get(),
                                           d_sums.get() + c, true, d_dx.get(), rows, c, nullptr));
  expect_bitwise(dx.data, d_dx.host(), "batch norm backward (training)");
  // The columns summed on the host in the CPU's order give the CPU's sums.
  std::vector<float> col_sums(2 * c);
  const std::vector<float> scratch_host = scratch.host();
  r.x = scratch_host.data(), r.cols = 2 * c, r.out = col_sums.data();
  run_reduce(*bn.t.rt.kernels, "bn/bn_sums.bwd", r);
  expect_bitwise(sums.data, col_sums, "backward columns (dbeta | dgamma)");
}

// Inference uses the moving statistics: no sums at all, so the whole forward and backward are exact.
TEST(GpuOps, BatchNormInferenceIsTheCpusBitForBit) {
  TRAINRR_REQUIRE_GPU();
  BnLayer bn;
  const int64_t rows = kBnRows, c = kBnChannels;
  bn.moving_mean() = random_tensor({c}, 34, -1, 1);
  bn.moving_variance() = random_tensor({c}, 35, 0.2f, 2);
  const Tensor x = random_tensor({rows, c}, 36, -2, 2);
  const Tensor y = bn.layer.forward(x, bn.t.rt, false);
  const Tensor dy = random_tensor({rows, c}, 37);
  const Tensor dx = bn.layer.backward(dy, bn.t.rt);

  Floats d_x(x.data), d_mm(bn.moving_mean().data), d_mv(bn.moving_variance().data), d_gamma(bn.gamma().data),
      d_beta(bn.beta().data), inv_std(c), xhat(rows * c), d_y(rows * c), d_dy(dy.data), d_dx(rows * c);
  EXPECT_OK(cuda::batch_norm_inverse_std(d_mv.get(), static_cast<float>(kBnEpsilon), inv_std.get(), c, nullptr));
  EXPECT_OK(cuda::batch_norm_normalize(d_x.get(), d_mm.get(), inv_std.get(), d_gamma.get(), d_beta.get(),
                                       xhat.get(), d_y.get(), rows, c, nullptr));
  EXPECT_OK(cuda::batch_norm_backward_data(d_dy.get(), xhat.get(), d_gamma.get(), inv_std.get(), nullptr, nullptr,
                                           false, d_dx.get(), rows, c, nullptr));
  expect_bitwise(y.data, d_y.host(), "batch norm forward (inference)");
  expect_bitwise(dx.data, d_dx.host(), "batch norm backward (inference)");
}

// The whole training forward on the device, its two sums by the tree kernel, as the engine will run it. The
// sums differ from the CPU's by the reduction bound: the mean by about 40 u (|x| < 3), the variance likewise,
// which moves y = xhat * gamma + beta (|xhat| < 4, gamma < 1.5) by well under 1e-5.
TEST(GpuOps, BatchNormTrainingWithDeviceSumsIsCloseToTheCpu) {
  TRAINRR_REQUIRE_GPU();
  BnLayer bn;
  const int64_t rows = kBnRows, c = kBnChannels;
  const Tensor x = random_tensor({rows, c}, 38, -1, 3);
  const std::vector<float> mm0 = bn.moving_mean().data, mv0 = bn.moving_variance().data;
  const Tensor y = bn.layer.forward(x, bn.t.rt, true);

  const float inv_rows = 1.0f / static_cast<float>(rows);
  const cuda::ReducePlan plan = cuda::plan_column_sums(cuda::ReduceVariant::tree, rows, c);
  Floats d_x(x.data), stats(2 * c), sq(rows * c), inv_std(c), xhat(rows * c), d_y(rows * c), d_mm(mm0), d_mv(mv0),
      d_gamma(bn.gamma().data), d_beta(bn.beta().data), work(plan.workspace_bytes / sizeof(float));
  float* mean = stats.get();
  float* var = stats.get() + c;
  EXPECT_OK(cuda::column_sums_cuda_tree(d_x.get(), rows, c, mean, work.get(), nullptr));
  EXPECT_OK(cuda::scale(mean, c, inv_rows, nullptr));
  EXPECT_OK(cuda::batch_norm_square_deviations(d_x.get(), mean, sq.get(), rows, c, nullptr));
  EXPECT_OK(cuda::column_sums_cuda_tree(sq.get(), rows, c, var, work.get(), nullptr));
  EXPECT_OK(cuda::scale(var, c, inv_rows, nullptr));
  EXPECT_OK(cuda::batch_norm_statistics(mean, var, static_cast<float>(kBnEpsilon), static_cast<float>(kBnMomentum),
                                        static_cast<float>(1.0 - kBnMomentum), inv_std.get(), d_mm.get(), d_mv.get(),
                                        c, nullptr));
  EXPECT_OK(cuda::batch_norm_normalize(d_x.get(), mean, inv_std.get(), d_gamma.get(), d_beta.get(), xhat.get(),
                                       d_y.get(), rows, c, nullptr));
  expect_close(bn.probed("bn_stats.fwd").data, stats.host(), {0, 1e-5}, "batch statistics (mean | var)");
  expect_close(y.data, d_y.host(), {0, 1e-5}, "batch norm forward with device sums");
  expect_close(bn.moving_mean().data, d_mm.host(), {0, 1e-6}, "moving mean with device sums");
  expect_close(bn.moving_variance().data, d_mv.host(), {0, 1e-6}, "moving variance with device sums");
}

// ---------------------------------------------------------------------------------------------------------
// Optimizers: three steps of the CPU optimizer and of the device update from the same start, every parameter
// value and slot compared bit for bit (products, sums, divisions and sqrt only, in the CPU's order; Adam's
// bias correction computed on the host as the CPU computes it).

struct OptimizerCase {
  OptimizerConfig config;
  MathFamily math = MathFamily::libm;
  std::string what;
};

std::vector<OptimizerCase> optimizer_cases() {
  std::vector<OptimizerCase> out;
  auto add = [&](std::string what, auto edit, MathFamily math = MathFamily::libm) {
    OptimizerCase c;
    edit(c.config);
    c.math = math;
    c.what = std::move(what);
    out.push_back(std::move(c));
  };
  add("sgd", [](OptimizerConfig& c) { c.type = "sgd", c.learning_rate = 0.01; });
  add("sgd momentum", [](OptimizerConfig& c) { c.type = "sgd", c.learning_rate = 0.01, c.momentum = 0.9; });
  add("sgd nesterov",
      [](OptimizerConfig& c) { c.type = "sgd", c.learning_rate = 0.01, c.momentum = 0.9, c.nesterov = true; });
  add("adam", [](OptimizerConfig& c) { c.type = "adam", c.learning_rate = 0.003; });
  add("adam, portable powers", [](OptimizerConfig& c) { c.type = "adam", c.learning_rate = 0.003; },
      MathFamily::portable);
  add("adamw", [](OptimizerConfig& c) { c.type = "adamw", c.learning_rate = 0.003, c.weight_decay = 0.01; });
  add("rmsprop", [](OptimizerConfig& c) { c.type = "rmsprop", c.learning_rate = 0.001; });
  add("rmsprop centered", [](OptimizerConfig& c) { c.type = "rmsprop", c.learning_rate = 0.001, c.centered = true; });
  add("rmsprop momentum", [](OptimizerConfig& c) { c.type = "rmsprop", c.learning_rate = 0.001, c.momentum = 0.5; });
  add("rmsprop centered momentum", [](OptimizerConfig& c) {
    c.type = "rmsprop", c.learning_rate = 0.001, c.momentum = 0.5, c.centered = true;
  });
  return out;
}

TEST(GpuOps, OptimizerUpdatesAreTheCpusBitForBit) {
  TRAINRR_REQUIRE_GPU();
  const int64_t n = 70001;  // more than one of the CPU's chunks of 2^14, and not a multiple of anything
  constexpr int kSteps = 3;
  for (const OptimizerCase& oc : optimizer_cases()) {
    SCOPED_TRACE(oc.what);
    const OptimizerConfig& c = oc.config;
    TestRuntime t;
    t.rt.math = oc.math;
    Param p{"w", random_tensor({n}, 40, -1, 1), Tensor({n})};
    auto cpu = make_optimizer(c);
    Floats w(p.value.data), g(n), s0(std::vector<float>(n, 0.0f)), s1(std::vector<float>(n, 0.0f)),
        s2(std::vector<float>(n, 0.0f));
    for (int step = 1; step <= kSteps; ++step) {
      p.grad = random_tensor({n}, 41 + step, -0.5f, 0.5f);
      cpu->step({&p}, t.rt);
      Floats dg(p.grad.data);
      if (c.type == "sgd") {
        EXPECT_OK(cuda::sgd_update(c, w.get(), dg.get(), c.momentum > 0 ? s0.get() : nullptr, n, nullptr));
      } else if (c.type == "adam" || c.type == "adamw") {
        EXPECT_OK(cuda::adam_update(c, step, oc.math, w.get(), dg.get(), s0.get(), s1.get(), n, nullptr));
      } else {
        // The CPU's slot order: velocity, then momentum (when used), then average_gradient (when centered).
        float* mom = c.momentum > 0 ? s1.get() : nullptr;
        float* avg = c.centered ? (c.momentum > 0 ? s2.get() : s1.get()) : nullptr;
        EXPECT_OK(cuda::rmsprop_update(c, w.get(), dg.get(), s0.get(), mom, avg, n, nullptr));
      }
    }
    expect_bitwise(p.value.data, w.host(), "parameter after " + std::to_string(kSteps) + " steps");
    const std::vector<NamedTensor> slots = cpu->state();
    Floats* device_slots[] = {&s0, &s1, &s2};
    ASSERT_LE(slots.size(), 3u);
    for (size_t i = 0; i < slots.size(); ++i) expect_bitwise(slots[i].value.data, device_slots[i]->host(), slots[i].name);
  }
}

// ---------------------------------------------------------------------------------------------------------
// im2col and col2im: copies and, col2im, the same additions per pixel in the same order: exact.

Conv2dArgs conv_geometry(int64_t n, int64_t h, int64_t w, int64_t c_in, int64_t k, int64_t stride, Padding pad) {
  Conv2dArgs p;
  p.n = n, p.h = h, p.w = w, p.c_in = c_in, p.kh = k, p.kw = k, p.c_out = 1;
  p.stride_h = p.stride_w = stride;
  const Window1d wy = window_1d(h, k, stride, pad), wx = window_1d(w, k, stride, pad);
  p.out_h = wy.out, p.out_w = wx.out, p.pad_top = wy.pad_before, p.pad_left = wx.pad_before;
  return p;
}

TEST(GpuOps, Im2colAndCol2imAreTheCpusBitForBit) {
  TRAINRR_REQUIRE_GPU();
  const Conv2dArgs cases[] = {
      conv_geometry(3, 9, 8, 3, 3, 1, Padding::same),   // padding all round, overlapping fields
      conv_geometry(3, 11, 9, 4, 3, 2, Padding::same),  // stride 2 with uneven padding
      conv_geometry(2, 8, 8, 2, 5, 1, Padding::valid),
      conv_geometry(2, 7, 7, 5, 1, 1, Padding::valid),  // pointwise
      conv_geometry(2, 9, 9, 3, 2, 3, Padding::valid),  // stride above the kernel: pixels no field reads
  };
  for (const Conv2dArgs& shape : cases) {
    const std::string what = "conv k" + std::to_string(shape.kh) + " s" + std::to_string(shape.stride_h) + " " +
                             std::to_string(shape.h) + "x" + std::to_string(shape.w) + "x" + std::to_string(shape.c_in);
    const int64_t pix = shape.out_h * shape.out_w, taps = shape.kh * shape.kw * shape.c_in;
    const int64_t image = shape.h * shape.w * shape.c_in;
    const Tensor x = random_tensor({shape.n, shape.h, shape.w, shape.c_in}, 50);
    const Tensor dcol = random_tensor({shape.n * pix, taps}, 51);
    // The CPU, image by image.
    Conv2dArgs p = shape;
    p.x = x.ptr();
    std::vector<float> col(shape.n * pix * taps), dx(shape.n * image);
    p.out = dx.data();
    for (int64_t img = 0; img < shape.n; ++img) {
      conv2d_im2col(p, img, col.data() + img * pix * taps);
      conv2d_col2im(p, dcol.ptr() + img * pix * taps, img);
    }
    // The device: all images at once, then images [1, n) alone (an offset range, as a chunk of a batch).
    Floats d_x(x.data), d_col(col.size()), d_dcol(dcol.data), d_dx(dx.size());
    EXPECT_OK(cuda::im2col(shape, d_x.get(), 0, shape.n, d_col.get(), nullptr));
    EXPECT_OK(cuda::col2im(shape, d_dcol.get(), 0, shape.n, d_dx.get(), nullptr));
    expect_bitwise(col, d_col.host(), what + ": im2col");
    expect_bitwise(dx, d_dx.host(), what + ": col2im");
    Floats part_col((shape.n - 1) * pix * taps), part_dx(std::vector<float>(dx.size(), -7.0f));
    EXPECT_OK(cuda::im2col(shape, d_x.get(), 1, shape.n - 1, part_col.get(), nullptr));
    EXPECT_OK(cuda::col2im(shape, d_dcol.get() + pix * taps, 1, shape.n - 1, part_dx.get(), nullptr));
    expect_bitwise(std::vector<float>(col.begin() + pix * taps, col.end()), part_col.host(), what + ": im2col [1, n)");
    std::vector<float> want_dx = dx;
    std::fill(want_dx.begin(), want_dx.begin() + image, -7.0f);  // image 0 untouched
    expect_bitwise(want_dx, part_dx.host(), what + ": col2im [1, n)");
  }
}

// The HWIO filter ([taps, c_out]) into cuDNN's KRSC ([c_out, taps]) and back: a copy, bit for bit.
TEST(GpuOps, TransposeIsACopyInTheOtherOrder) {
  TRAINRR_REQUIRE_GPU();
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{27, 5}, {1, 7}, {300, 1}, {576, 64}}) {
    const std::string what = "transpose " + std::to_string(rows) + "x" + std::to_string(cols);
    const std::vector<float> in = random_values(rows * cols, 60);
    std::vector<float> want(in.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) want[c * rows + r] = in[r * cols + c];
    Floats d_in(in), d_out(in.size()), d_back(in.size());
    EXPECT_OK(cuda::transpose(d_in.get(), d_out.get(), rows, cols, nullptr));
    EXPECT_OK(cuda::transpose(d_out.get(), d_back.get(), cols, rows, nullptr));
    expect_bitwise(want, d_out.host(), what);
    expect_bitwise(in, d_back.host(), what + " and back");
  }
}

// ---------------------------------------------------------------------------------------------------------
// Reductions.

struct ReduceShape {
  int64_t rows, cols;
};
const ReduceShape kReduceShapes[] = {
    {1000, 1},      // a plain sum (a loss mean), one block row
    {100000, 1},    // a plain sum over many block rows: partials, then the second launch
    {4097, 10},     // a bias gradient, fewer columns than a warp
    {300, 33},      // a column tile and a bit
    {20000, 38},    // the batch-norm backward sums (2c)
    {7, 1000},      // few rows, many columns
    {0, 5},         // no rows: zeros
    {2, 2100000},   // more column tiles than the grid's y limit: blocks loop over tiles
};

// The host model of f32_sum__cuda_tree's order (ops_reduce.cu): per block row and thread row, the grid-stride
// rows in order from 0; then the fixed-pairing tree over the block's rows; then the same over the partials.
std::vector<float> tree_model(const std::vector<float>& x, int64_t rows, int64_t cols, const cuda::ReducePlan& plan) {
  const int64_t by = plan.partials.block_y;
  auto pass = [&](const std::vector<float>& in, int64_t in_rows, int64_t gx) {
    std::vector<float> out(gx * cols), s(by);
    for (int64_t b = 0; b < gx; ++b)
      for (int64_t j = 0; j < cols; ++j) {
        for (int64_t ty = 0; ty < by; ++ty) {
          float acc = 0.0f;
          for (int64_t r = b * by + ty; r < in_rows; r += gx * by) acc += in[r * cols + j];
          s[ty] = acc;
        }
        for (int64_t w = by / 2; w > 0; w /= 2)
          for (int64_t ty = 0; ty < w; ++ty) s[ty] += s[ty + w];
        out[b * cols + j] = s[0];
      }
    return out;
  };
  const int64_t gx = plan.partials.grid_x;
  std::vector<float> part = pass(x, rows, gx);
  return plan.combines ? pass(part, gx, 1) : part;
}

// d for each order (see the top of the file): the rows one thread adds, plus the tree's levels, plus the
// second launch (tree) or the atomic additions of block sums into one output (atomic); the CPU's pairwise sum:
// a leaf of 16 rows, then log2(rows / 16) levels.
double depth(const cuda::ReducePlan& plan, cuda::ReduceVariant v) {
  const double levels = std::log2(static_cast<double>(plan.partials.block_y));
  double d = static_cast<double>(plan.rows_per_thread) + levels;
  if (v == cuda::ReduceVariant::atomic) return d + plan.partials.grid_x;
  if (plan.combines) d += std::ceil(static_cast<double>(plan.partials.grid_x) / plan.combine.block_y) + levels;
  return d;
}
double pairwise_depth(int64_t rows) { return 16 + std::ceil(std::log2(std::max<double>(1, rows / 16.0))) + 1; }

void expect_within_sum_bound(const std::vector<float>& x, int64_t rows, int64_t cols, const std::vector<float>& cpu,
                             const std::vector<float>& gpu, double d, const std::string& what) {
  size_t bad = 0, first = 0;
  for (int64_t j = 0; j < cols; ++j) {
    double abs_sum = 0;
    for (int64_t i = 0; i < rows; ++i) abs_sum += std::fabs(x[i * cols + j]);
    const double bound = 1.01 * d * 0x1p-24 * abs_sum;
    if (std::fabs(static_cast<double>(cpu[j]) - gpu[j]) > bound && bad++ == 0) first = j;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " columns outside the bound; first [" << first << "] cpu "
                     << cpu[first] << " gpu " << gpu[first];
}

std::vector<float> cpu_column_sums(const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<float> out(cols);
  ThreadPool pool(1);
  ReduceArgs r;
  r.x = x.data(), r.rows = rows, r.cols = cols, r.out = out.data();
  reduce_pairwise(r, pool);
  return out;
}

std::string shape_name(const ReduceShape& s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols); }

TEST(GpuOps, TreeReductionIsItsFixedOrderAndRepeatsItsBits) {
  TRAINRR_REQUIRE_GPU();
  EXPECT_STREQ(cuda::reduce_kernel_id(cuda::ReduceVariant::tree), "f32_sum__cuda_tree");
  for (const ReduceShape& s : kReduceShapes) {
    const std::string what = "tree " + shape_name(s);
    const std::vector<float> x = random_values(s.rows * s.cols, 60);
    const cuda::ReducePlan plan = cuda::plan_column_sums(cuda::ReduceVariant::tree, s.rows, s.cols);
    Floats d_x(x), out(s.cols), again(s.cols), work(plan.workspace_bytes / sizeof(float));
    EXPECT_OK(cuda::column_sums_cuda_tree(d_x.get(), s.rows, s.cols, out.get(), work.get(), nullptr));
    EXPECT_OK(cuda::column_sums(cuda::ReduceVariant::tree, d_x.get(), s.rows, s.cols, again.get(), work.get(),
                                nullptr));
    const std::vector<float> gpu = out.host();
    expect_bitwise(gpu, again.host(), what + ": a second call");
    expect_bitwise(tree_model(x, s.rows, s.cols, plan), gpu, what + ": the host model of its order");
    expect_within_sum_bound(x, s.rows, s.cols, cpu_column_sums(x, s.rows, s.cols), gpu,
                            depth(plan, cuda::ReduceVariant::tree) + pairwise_depth(s.rows), what + " against the CPU");
  }
}

TEST(GpuOps, AtomicReductionIsWithinTheSumBound) {
  TRAINRR_REQUIRE_GPU();
  EXPECT_STREQ(cuda::reduce_kernel_id(cuda::ReduceVariant::atomic), "f32_sum__cuda_atomic");
  for (const ReduceShape& s : kReduceShapes) {
    const std::vector<float> x = random_values(s.rows * s.cols, 61);
    const cuda::ReducePlan plan = cuda::plan_column_sums(cuda::ReduceVariant::atomic, s.rows, s.cols);
    EXPECT_FALSE(plan.combines);
    EXPECT_EQ(plan.workspace_bytes, 0u);
    // Garbage in the output first: the kernel clears it.
    Floats d_x(x), out(std::vector<float>(s.cols, 123.0f));
    EXPECT_OK(cuda::column_sums_cuda_atomic(d_x.get(), s.rows, s.cols, out.get(), nullptr));
    expect_within_sum_bound(x, s.rows, s.cols, cpu_column_sums(x, s.rows, s.cols), out.host(),
                            depth(plan, cuda::ReduceVariant::atomic) + pairwise_depth(s.rows),
                            "atomic " + shape_name(s) + " against the CPU");
  }
}

// The plan is what the engine records with the kernel choice: a function of the shape alone, with the launch
// dimensions the kernels are given.
TEST(GpuOps, ReductionPlansDependOnTheShapeOnly) {
  TRAINRR_REQUIRE_GPU();
  const cuda::ReducePlan sum = cuda::plan_column_sums(cuda::ReduceVariant::tree, 100000, 1);
  EXPECT_EQ(sum.partials.block_x, 1u);
  EXPECT_EQ(sum.partials.block_y, 256u);
  EXPECT_EQ(sum.partials.grid_x, 25u);  // ceil(100000 / (256 threads * 16 rows))
  EXPECT_EQ(sum.partials.grid_y, 1u);
  EXPECT_EQ(sum.partials.shared_bytes, 256 * sizeof(float));
  EXPECT_TRUE(sum.combines);
  EXPECT_EQ(sum.combine.grid_x, 1u);
  EXPECT_EQ(sum.workspace_bytes, 25 * sizeof(float));
  const cuda::ReducePlan bias = cuda::plan_column_sums(cuda::ReduceVariant::tree, 64, 10);
  EXPECT_EQ(bias.partials.block_x, 16u);
  EXPECT_EQ(bias.partials.block_y, 16u);
  EXPECT_EQ(bias.partials.grid_x, 1u);
  EXPECT_FALSE(bias.combines);
  EXPECT_EQ(bias.workspace_bytes, 0u);
  const cuda::ReducePlan wide = cuda::plan_column_sums(cuda::ReduceVariant::atomic, 2, 2100000);
  EXPECT_EQ(wide.partials.grid_y, 65535u);
}

}  // namespace
}  // namespace trainrr
