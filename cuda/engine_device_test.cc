// The CUDA device (cuda/engine_device.h) against the CPU engine: its memory, its ops on device memory it
// allocated, and its kernel sites with the choices they report. A GPU machine runs these
// (scripts/gpu-check.sh); elsewhere every test skips but the one about opening without a GPU. Tolerances as in
// cuda/ops_test.cc, which explains each: bit for bit where the CPU uses only +, -, *, / and sqrt; a few ULP
// where exp, log or tanh enter; a summation bound where the device sums in another order.

#include "cuda/engine_device.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cuda/engine_device_test_util.h"
#include "cuda/gpu_test_util.h"
#include "cuda/ops.h"
#include "engine/counter_rng.h"
#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/reduce.h"
#include "engine/kernels/reference.h"
#include "engine/layers/activations.h"
#include "engine/layers/layer_test_util.h"
#include "engine/layers/layer_util.h"
#include "engine/layers/loss.h"
#include "engine/layers/padding.h"
#include "engine/optimizer.h"
#include "engine/random.h"

namespace trainrr {
namespace {

using cuda::CudaDevice;
using testing::random_tensor;

// ---------------------------------------------------------------------------------------------------------
// A device, arrays in its memory, a runtime with a chosen policy and hooks that record (and may force) choices.

using cuda_testing::ChoiceHooks;
using cuda_testing::Floats;
using cuda_testing::open_device;
using cuda_testing::SiteRuntime;

using cuda_testing::bit_distance;

void expect_close(const std::vector<float>& cpu, const std::vector<float>& gpu, int64_t ulp, double abs,
                  const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < cpu.size(); ++i)
    if (bit_distance(cpu[i], gpu[i]) > ulp && std::fabs(static_cast<double>(cpu[i]) - gpu[i]) > abs && bad++ == 0)
      first = i;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << cpu.size() << " outside " << ulp << " ULP / " << abs
                     << "; first [" << first << "] cpu " << cpu[first] << " gpu " << gpu[first];
}

void expect_bitwise(const std::vector<float>& cpu, const std::vector<float>& gpu, const std::string& what) {
  expect_close(cpu, gpu, 0, -1, what);
}

// |cpu - gpu| <= 1.01 * depth * 2^-24 * magnitude, element by element (Higham 4.2; magnitude = the sum of the
// absolute values of the terms, depth = the additions one term passes through on both sides together).
void expect_within_sum_bound(const std::vector<float>& cpu, const std::vector<float>& gpu,
                             const std::vector<float>& magnitude, double depth, const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < cpu.size(); ++i)
    if (std::fabs(static_cast<double>(cpu[i]) - gpu[i]) > 1.01 * depth * 0x1p-24 * magnitude[i] + 1e-30 &&
        bad++ == 0)
      first = i;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << cpu.size() << " outside the bound; first [" << first
                     << "] cpu " << cpu[first] << " gpu " << gpu[first];
}

std::vector<float> values(int64_t n, uint64_t seed, float lo = -1, float hi = 1) {
  return random_tensor({n}, seed, lo, hi).data;
}

std::vector<float> absolute(std::vector<float> v) {
  for (float& x : v) x = std::fabs(x);
  return v;
}

// ---------------------------------------------------------------------------------------------------------
// Opening and memory.

TEST(CudaDevice, OpeningSaysWhyItCannot) {
  auto gpu = cuda::find_gpu(0);
  if (!gpu) {
    // No GPU here: the factory says what the probe says.
    auto d = cuda::open_cuda_device(0);
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().message, gpu.error().message);
    return;
  }
  auto d = cuda::open_cuda_device(4096);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("no GPU 4096"), std::string::npos) << d.error().message;
}

TEST(CudaDevice, DescribesItself) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  const std::string name = cuda::find_gpu(0)->name;
  EXPECT_EQ(d->describe(), "cuda:0 (" + name + ")");
  EXPECT_NE(d->stream(), nullptr);
}

TEST(CudaDevice, AllocatorReusesReleasedBlocks) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  void* a = d->allocate(1000);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(d->memory_stats().cuda_mallocs, 1u);
  EXPECT_EQ(d->memory_stats().live_bytes, 1024u);  // rounded to 256 bytes
  d->release(a, 1000);
  EXPECT_EQ(d->memory_stats().cached_blocks, 1u);
  void* b = d->allocate(900);  // the same 1024-byte block
  EXPECT_EQ(b, a);
  EXPECT_EQ(d->memory_stats().cuda_mallocs, 1u);
  EXPECT_EQ(d->memory_stats().cached_blocks, 0u);
  void* c = d->allocate(100);  // the only block is in use: a new one
  EXPECT_NE(c, a);
  EXPECT_EQ(d->memory_stats().cuda_mallocs, 2u);
  d->release(b, 900);
  void* e = d->allocate(300);  // 512 bytes: a 1024-byte block is at most twice that, reused
  EXPECT_EQ(e, a);
  d->release(e, 300);
  void* f = d->allocate(100);  // 256 bytes: the 1024-byte block is more than twice that
  EXPECT_NE(f, a);
  EXPECT_EQ(d->memory_stats().cuda_mallocs, 3u);
  d->release(c, 100);
  d->release(f, 100);
  EXPECT_EQ(d->memory_stats().live_blocks, 0u);
  EXPECT_EQ(d->memory_stats().cached_blocks, 3u);
}

TEST(CudaDevice, UploadDownloadCopyAndZeroRoundTrip) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  const std::vector<float> x = values(10007, 1);
  Floats a(*d, x), b(*d, x.size());
  expect_bitwise(x, a.host(), "upload then download");
  d->copy(b.get(), a.get(), x.size() * sizeof(float));
  expect_bitwise(x, b.host(), "device to device copy");
  d->zero(b.get(), 10 * sizeof(float));
  d->synchronize();
  std::vector<float> want = x;
  std::fill(want.begin(), want.begin() + 10, 0.0f);
  expect_bitwise(want, b.host(), "zero");
  // A tensor through the engine's placing functions.
  Tensor t({3, 5}, 2.5f);
  to_device(*d, t);
  ASSERT_TRUE(t.on_device());
  t.data.assign(t.data.size(), 0.0f);
  to_host(*d, t);
  EXPECT_EQ(t.data, std::vector<float>(15, 2.5f));
}

// ---------------------------------------------------------------------------------------------------------
// Elementwise ops.

constexpr int64_t kRows = 97, kCols = 53;

int64_t forward_ulp(Activation a) {
  switch (a) {
    case Activation::sigmoid: return 6;
    case Activation::tanh: return 4;
    case Activation::softmax: return 16;
    default: return 0;
  }
}

TEST(CudaDevice, BiasAndActivationsMatchTheCpu) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  const std::vector<float> x = values(kRows * kCols, 2, -8, 8), bias = values(kCols, 3), g = values(kRows * kCols, 4);
  {
    std::vector<float> cpu = x;
    add_bias(cpu.data(), bias.data(), kRows, kCols);
    Floats y(*d, x), b(*d, bias);
    d->add_bias(y.get(), b.get(), kRows, kCols);
    expect_bitwise(cpu, y.host(), "add_bias");
  }
  for (Activation a : {Activation::linear, Activation::relu, Activation::sigmoid, Activation::tanh,
                       Activation::softmax}) {
    const std::string name = activation_name(a);
    std::vector<float> y(x.size()), dx(x.size());
    activation_forward(a, x.data(), y.data(), kRows, kCols);
    activation_backward(a, y.data(), g.data(), dx.data(), kRows, kCols);
    Floats dev_x(*d, x), dev_y(*d, x.size()), dev_cpu_y(*d, y), dev_g(*d, g), dev_dx(*d, x.size());
    d->activation_forward(a, dev_x.get(), dev_y.get(), kRows, kCols, MathFamily::libm);
    expect_close(y, dev_y.host(), forward_ulp(a), 0, "forward " + name);
    // Backward from the CPU's y on both sides: bit for bit.
    d->activation_backward(a, dev_cpu_y.get(), dev_g.get(), dev_dx.get(), kRows, kCols);
    expect_bitwise(dx, dev_dx.host(), "backward " + name);
    std::vector<float> fused = x;
    bias_activation_forward(a, bias.data(), fused.data(), kRows, kCols);
    Floats dev_fused(*d, x), b(*d, bias);
    d->bias_activation_forward(a, b.get(), dev_fused.get(), kRows, kCols, MathFamily::libm);
    expect_close(fused, dev_fused.host(), forward_ulp(a), 0, "bias_activation_forward " + name);
  }
}

TEST(CudaDevice, PortableMathIsRefusedWhereTheDeviceWouldCallLibm) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  Floats x(*d, values(8, 5)), labels(*d, std::vector<float>(4, 1.0f)), per(*d, 4), grad(*d, 8);
  EXPECT_THROW(d->activation_forward(Activation::sigmoid, x.get(), x.get(), 2, 4, MathFamily::portable), DeviceError);
  EXPECT_THROW(d->sparse_categorical_crossentropy(x.get(), labels.get(), 4, 2, true, false, MathFamily::portable,
                                                  per.get(), grad.get()),
               DeviceError);
  try {
    d->binary_crossentropy(x.get(), labels.get(), 4, true, MathFamily::portable, per.get(), grad.get());
    ADD_FAILURE() << "no error";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("CPU only"), std::string::npos) << e.what();
  }
  // relu calls no math function: allowed.
  EXPECT_NO_THROW(d->activation_forward(Activation::relu, x.get(), x.get(), 2, 4, MathFamily::portable));
}

TEST(CudaDevice, RandomnessIsTheCpusStreams) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  const uint64_t key = stream_key(99, "dropout/d"), offset = 13;
  const int64_t n = 10007;
  std::vector<uint32_t> w(n);
  philox_words(key, offset, w);
  std::vector<float> uniform(n), dropped(n);
  const std::vector<float> x = values(n, 6);
  const float rate = 0.3f, scale = static_cast<float>(1.0 / (1.0 - rate));
  std::vector<uint8_t> keep(n);
  for (int64_t i = 0; i < n; ++i) {
    uniform[i] = rng::uniform_between(w[i], -0.5f, 0.5f);
    keep[i] = rng::dropout_keeps(rng::uniform01(w[i]), rate);
    dropped[i] = rng::dropout_apply(keep[i], x[i], scale);
  }
  Floats u(*d, n), dx(*d, x), dy(*d, n), back(*d, n);
  d->uniform(key, offset, -0.5f, 0.5f, u.get(), n);
  expect_bitwise(uniform, u.host(), "uniform");
  DeviceArray mask;
  mask.resize(*d, n);
  d->dropout(key, offset, rate, scale, dx.get(), dy.get(), static_cast<uint8_t*>(mask.get()), n);
  expect_bitwise(dropped, dy.host(), "dropout");
  std::vector<uint8_t> device_keep(n);
  d->download(device_keep.data(), mask.get(), n);
  EXPECT_EQ(keep, device_keep);
  d->dropout_backward(static_cast<uint8_t*>(mask.get()), scale, dx.get(), back.get(), n);
  expect_bitwise(dropped, back.host(), "dropout backward");
}

TEST(CudaDevice, LossesMatchTheCpu) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  constexpr int64_t batch = 200, k = 7;
  testing::TestRuntime t;
  std::vector<float> labels = values(batch, 7, 0, static_cast<float>(k));
  for (float& l : labels) l = std::min(std::floor(l), static_cast<float>(k - 1));
  const Tensor logits = random_tensor({batch, k}, 8, -8, 8);
  {
    auto loss = make_loss("sparse_categorical_crossentropy", true);
    ASSERT_TRUE(loss);
    const LossValue cpu = (*loss)->compute(logits, labels, t.rt);
    Floats p(*d, logits.data), l(*d, labels), per(*d, batch), grad(*d, batch * k);
    d->sparse_categorical_crossentropy(p.get(), l.get(), batch, k, true, false, MathFamily::libm, per.get(),
                                       grad.get());
    expect_close(cpu.grad.data, grad.host(), 17, 1e-6 / batch, "sparse_categorical_crossentropy gradient");
    double mean = 0;
    for (float v : per.host()) mean += v;
    EXPECT_NEAR(cpu.loss, mean / batch, 1e-5 * std::fabs(cpu.loss) + 1e-7);
  }
  {
    auto loss = make_loss("mse", false);
    ASSERT_TRUE(loss);
    const std::vector<float> targets = values(batch * k, 9, -3, 3);
    const LossValue cpu = (*loss)->compute(logits, targets, t.rt);
    Floats p(*d, logits.data), l(*d, targets), per(*d, batch), grad(*d, batch * k);
    d->mean_squared_error(p.get(), l.get(), batch, k, per.get(), grad.get());
    expect_bitwise(cpu.grad.data, grad.host(), "mse gradient");
  }
}

TEST(CudaDevice, OptimizerUpdatesAreTheCpusBitForBit) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  const int64_t n = 7001;
  std::vector<OptimizerConfig> configs(5);
  configs[0].type = "sgd", configs[0].learning_rate = 0.01;
  configs[1].type = "sgd", configs[1].learning_rate = 0.01, configs[1].momentum = 0.9;
  configs[2].type = "adam", configs[2].learning_rate = 0.003;
  configs[3].type = "adamw", configs[3].learning_rate = 0.003, configs[3].weight_decay = 0.01;
  configs[4].type = "rmsprop", configs[4].momentum = 0.5, configs[4].centered = true;
  for (const OptimizerConfig& c : configs) {
    SCOPED_TRACE(c.type + (c.momentum > 0 ? " with momentum" : ""));
    testing::TestRuntime t;
    Param p{"w", random_tensor({n}, 10, -1, 1), Tensor({n})};
    auto cpu = make_optimizer(c);
    Floats w(*d, p.value.data), s0(*d, std::vector<float>(n, 0.0f)), s1(*d, std::vector<float>(n, 0.0f)),
        s2(*d, std::vector<float>(n, 0.0f));
    float* slots[] = {s0.get(), s1.get(), s2.get()};
    for (int step = 1; step <= 3; ++step) {
      p.grad = random_tensor({n}, 11 + step, -0.5f, 0.5f);
      cpu->step({&p}, t.rt);
      Floats g(*d, p.grad.data);
      d->optimizer_update(c, step, MathFamily::libm, w.get(), g.get(), slots, n);
    }
    expect_bitwise(p.value.data, w.host(), "parameter");
    const std::vector<NamedTensor> state = cpu->state();
    Floats* device_slots[] = {&s0, &s1, &s2};
    for (size_t i = 0; i < state.size(); ++i) expect_bitwise(state[i].value.data, device_slots[i]->host(), state[i].name);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Column sums.

std::vector<float> cpu_column_sums(const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<float> out(cols);
  ThreadPool pool(1);
  ReduceArgs r;
  r.x = x.data(), r.rows = rows, r.cols = cols, r.out = out.data();
  reduce_sequential(r, pool);
  return out;
}

TEST(CudaDevice, TreeSumsRepeatTheirBitsAndReportTheChoice) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  ChoiceHooks hooks;
  SiteRuntime s(Policy::deterministic, hooks);
  const int64_t rows = 20000, cols = 38;
  const std::vector<float> x = values(rows * cols, 12);
  Floats dx(*d, x), out(*d, cols), again(*d, cols);
  ReduceArgs r;
  r.x = dx.get(), r.rows = rows, r.cols = cols, r.out = out.get();
  d->column_sums(s.rt, "bn/sums", r);
  r.out = again.get();
  d->column_sums(s.rt, "bn/sums", r);
  const std::vector<float> first = out.host();
  expect_bitwise(first, again.host(), "a second call");
  expect_within_sum_bound(cpu_column_sums(x, rows, cols), first, cpu_column_sums(absolute(x), rows, cols),
                          2.0 * rows, "against the CPU");
  ASSERT_EQ(hooks.choices.size(), 1u);  // chosen once per site
  const KernelChoice& c = hooks.choices[0];
  EXPECT_EQ(c.site, "bn/sums");
  EXPECT_EQ(c.op, "reduce");
  EXPECT_EQ(c.candidates, (std::vector<std::string>{"f32_sum__cuda_tree", "f32_sum__cuda_atomic"}));
  EXPECT_EQ(c.chosen, "f32_sum__cuda_tree");
  EXPECT_EQ(c.reason, "deterministic: fixed-order tree");
  EXPECT_TRUE(c.timings_us.empty());
  ASSERT_TRUE(c.launch.has_value());
  const cuda::LaunchShape plan = cuda::plan_column_sums(cuda::ReduceVariant::tree, rows, cols).partials;
  EXPECT_EQ(c.launch->grid_x, plan.grid_x);
  EXPECT_EQ(c.launch->block_y, plan.block_y);
}

TEST(CudaDevice, EachPolicyPicksItsSum) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  const int64_t rows = 100000, cols = 3;
  const std::vector<float> x = values(rows * cols, 13);
  Floats dx(*d, x), out(*d, cols);
  ReduceArgs r;
  r.x = dx.get(), r.rows = rows, r.cols = cols, r.out = out.get();
  const std::vector<float> cpu = cpu_column_sums(x, rows, cols), mag = cpu_column_sums(absolute(x), rows, cols);
  {
    ChoiceHooks hooks;
    SiteRuntime s(Policy::fast, hooks);
    d->column_sums(s.rt, "fast", r);
    expect_within_sum_bound(cpu, out.host(), mag, 2.0 * rows, "atomic");
    ASSERT_EQ(hooks.choices.size(), 1u);
    EXPECT_EQ(hooks.choices[0].chosen, "f32_sum__cuda_atomic");
    EXPECT_TRUE(hooks.choices[0].reason.starts_with("default: ")) << hooks.choices[0].reason;
  }
  {
    ChoiceHooks hooks;
    SiteRuntime s(Policy::autotune, hooks);
    d->column_sums(s.rt, "tuned", r);
    expect_within_sum_bound(cpu, out.host(), mag, 2.0 * rows, "autotuned");
    ASSERT_EQ(hooks.choices.size(), 1u);
    EXPECT_EQ(hooks.choices[0].reason, "autotune");
    ASSERT_EQ(hooks.choices[0].timings_us.size(), 2u);
    for (double t : hooks.choices[0].timings_us) EXPECT_GT(t, 0.0);
  }
  {
    // Forced: the hooks' kernel runs (the tree: the deterministic run's bits).
    ChoiceHooks det_hooks;
    SiteRuntime det(Policy::deterministic, det_hooks);
    d->column_sums(det.rt, "sum", r);
    const std::vector<float> tree = out.host();
    ChoiceHooks hooks;
    hooks.force = [](KernelChoice& c) { c.chosen = "f32_sum__cuda_tree"; };
    SiteRuntime s(Policy::forced, hooks);
    d->column_sums(s.rt, "forced_sum", r);
    expect_bitwise(tree, out.host(), "forced tree");
    EXPECT_EQ(hooks.choices[0].reason, "forced");
    ChoiceHooks bad;
    bad.force = [](KernelChoice& c) { c.chosen = "f32_sum__cpu_pairwise"; };
    SiteRuntime b(Policy::forced, bad);
    try {
      d->column_sums(b.rt, "forced_bad", r);
      ADD_FAILURE() << "no error";
    } catch (const DeviceError& e) {
      EXPECT_NE(std::string(e.what()).find("f32_sum__cpu_pairwise"), std::string::npos) << e.what();
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Matmul and Conv2D through cuBLASLt.

struct MatmulCase {
  bool trans_a, trans_b, accumulate;
  int64_t m, n, k;
};

TEST(CudaDevice, MatmulMatchesTheReferenceAndReportsItsAlgorithm) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  ChoiceHooks hooks;
  SiteRuntime s(Policy::deterministic, hooks);
  ThreadPool pool(1);
  const MatmulCase cases[] = {{false, false, false, 33, 17, 65},
                              {true, false, false, 40, 9, 128},
                              {false, true, false, 31, 64, 27},
                              {false, false, true, 33, 17, 65},
                              {true, true, true, 8, 5, 300}};
  int site = 0;
  for (const MatmulCase& mc : cases) {
    const std::string what = std::string(mc.trans_a ? "T" : "N") + (mc.trans_b ? "T" : "N") +
                             (mc.accumulate ? " accumulate " : " ") + std::to_string(mc.m) + "x" +
                             std::to_string(mc.n) + "x" + std::to_string(mc.k);
    const std::vector<float> a = values(mc.m * mc.k, 20 + site), b = values(mc.k * mc.n, 40 + site),
                             c0 = values(mc.m * mc.n, 60 + site);
    MatmulArgs m;
    m.trans_a = mc.trans_a, m.trans_b = mc.trans_b, m.accumulate = mc.accumulate;
    m.m = mc.m, m.n = mc.n, m.k = mc.k;
    std::vector<float> cpu = c0, mag(c0.size());
    const std::vector<float> abs_a = absolute(a), abs_b = absolute(b);
    m.a = a.data(), m.b = b.data(), m.c = cpu.data();
    matmul_reference(m, pool);
    MatmulArgs am = m;
    if (mc.accumulate) mag = absolute(c0);
    am.a = abs_a.data(), am.b = abs_b.data(), am.c = mag.data();
    matmul_reference(am, pool);
    Floats da(*d, a), db(*d, b), dc(*d, c0);
    m.a = da.get(), m.b = db.get(), m.c = dc.get();
    const std::string name = "dense_" + std::to_string(site++) + "/matmul.fwd";
    d->matmul(s.rt, name, m);
    expect_within_sum_bound(cpu, dc.host(), mag, 2.0 * (mc.k + 1), what);
    ASSERT_EQ(hooks.choices.size(), static_cast<size_t>(site));
    const KernelChoice& c = hooks.choices.back();
    EXPECT_EQ(c.site, name);
    EXPECT_EQ(c.op, "matmul");
    ASSERT_FALSE(c.candidates.empty());
    ASSERT_EQ(c.blaslt.size(), c.candidates.size());
    for (size_t i = 0; i < c.candidates.size(); ++i) EXPECT_EQ(c.candidates[i], blaslt_kernel_id(c.blaslt[i]));
    EXPECT_NE(std::find(c.candidates.begin(), c.candidates.end(), c.chosen), c.candidates.end()) << c.chosen;
    EXPECT_GT(c.blaslt_version, 0u);
    EXPECT_FALSE(c.tf32);
    EXPECT_TRUE(c.reason.starts_with("deterministic")) << c.reason;
  }
  // The site's choice is kept: another call at a site reports nothing.
  const std::vector<float> a = values(33 * 65, 90), b = values(65 * 17, 91);
  Floats da(*d, a), db(*d, b), dc(*d, 33 * 17);
  MatmulArgs m;
  m.m = 33, m.n = 17, m.k = 65, m.a = da.get(), m.b = db.get(), m.c = dc.get();
  d->matmul(s.rt, "dense_0/matmul.fwd", m);
  d->synchronize();
  EXPECT_EQ(hooks.choices.size(), static_cast<size_t>(site));
  EXPECT_TRUE(d->notes().empty());
}

// ChoiceHooks that also keep what kernel_replaced reports ("site: ran: why").
class ReplacedHooks : public ChoiceHooks {
 public:
  std::vector<std::string> replaced;
  void kernel_replaced(std::string_view site, const std::string& ran, const std::string& why) override {
    replaced.push_back(std::string(site) + ": " + ran + ": " + why);
  }
};

TEST(CudaDevice, ForcedMatmulRunsTheRecordedAlgorithmOrSaysWhyNot) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  const std::vector<float> a = values(64 * 32, 70), b = values(32 * 16, 71);
  Floats da(*d, a), db(*d, b), dc(*d, 64 * 16);
  MatmulArgs m;
  m.m = 64, m.n = 16, m.k = 32, m.a = da.get(), m.b = db.get(), m.c = dc.get();
  {
    // The hooks leave the choice alone: it runs, nothing replaced, no note.
    ReplacedHooks hooks;
    hooks.force = [](KernelChoice&) {};
    SiteRuntime s(Policy::forced, hooks);
    d->matmul(s.rt, "same", m);
    d->synchronize();
    EXPECT_EQ(hooks.choices.at(0).reason, "forced");
    EXPECT_TRUE(hooks.replaced.empty());
    EXPECT_TRUE(d->notes().empty());
  }
  {
    // Recorded by another cuBLASLt version: this machine's pick runs, and the hooks are told why
    // (kernel_replaced, which the replay reports; not a device note as well).
    ReplacedHooks hooks;
    hooks.force = [](KernelChoice& c) { c.blaslt_version += 100; };
    SiteRuntime s(Policy::forced, hooks);
    d->matmul(s.rt, "other_version", m);
    d->synchronize();
    ASSERT_EQ(hooks.replaced.size(), 1u);
    EXPECT_NE(hooks.replaced[0].find("other_version"), std::string::npos) << hooks.replaced[0];
    EXPECT_NE(hooks.replaced[0].find("cuBLASLt"), std::string::npos) << hooks.replaced[0];
    EXPECT_TRUE(d->notes().empty());
  }
  {
    ChoiceHooks hooks;
    hooks.force = [](KernelChoice& c) {
      c.chosen = "f32_matmul__cpu_blocked_generic";
      c.blaslt.clear();
    };
    SiteRuntime s(Policy::forced, hooks);
    EXPECT_THROW(d->matmul(s.rt, "cpu_kernel", m), DeviceError);
  }
}

// The conv sites (cuDNN engines and the im2col + cuBLASLt variant): cuda/engine_conv_test.cc.

}  // namespace
}  // namespace trainrr
