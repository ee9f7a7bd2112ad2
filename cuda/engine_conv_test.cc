// The CUDA device's Conv2D sites (cuda/engine_conv.cc): cuDNN's engines and the im2col + cuBLASLt variant as
// one site's candidates. A GPU machine runs these (scripts/gpu-check.sh); elsewhere they skip, saying why.
//
// Each policy's pick runs and matches the CPU's direct convolution (engine/kernels/reference.h); a forced
// recorded cuDNN engine, and the forced im2col variant, give the recorded bits; a smaller last batch runs with
// the site's variant rebuilt for it; the KernelChoice is filled as engine/kernels/conv_sites.h lays it out.
//
// Tolerance against the CPU, per output element i, as cuda/cudnn_conv_test.cc explains: S_i is the sum of
// |a| * |b| over the products of element i and K the most products one element sums; a float sum of K
// products in any order is within K * u * S_i of the exact value (u = 2^-24), on each side, so
//   |gpu - cpu| <= (2K + 1) * u * S_i, plus 2^-9 * S_i for an engine cuDNN declares TENSOR_CORE or
//   DOWN_CONVERT_INPUTS (TF32 inputs), plus 2^-10 * max_i S_i for FFT or WINOGRAD (bounded normwise).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuda/engine_device.h"
#include "cuda/engine_device_test_util.h"
#include "cuda/gpu_test_util.h"
#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/conv_sites.h"
#include "engine/kernels/cudnn_choice.h"
#include "engine/kernels/reference.h"
#include "engine/layers/layer_test_util.h"
#include "engine/layers/padding.h"
#include "engine/runtime.h"

namespace trainrr {
namespace {

using cuda::CudaDevice;

using cuda_testing::ChoiceHooks;
using cuda_testing::Floats;
using cuda_testing::open_device;
using cuda_testing::SiteRuntime;

// ChoiceHooks that also keep what the device reports through kernel_replaced: a forced choice that cannot run
// here is said there, not in the device's notes.
struct ReplacedHooks : ChoiceHooks {
  std::vector<std::string> replaced;  // "site: ran: why"
  void kernel_replaced(std::string_view site, const std::string& ran, const std::string& why) override {
    replaced.push_back(std::string(site) + ": " + ran + ": " + why);
  }
};

Conv2dArgs geometry(int64_t n, int64_t h, int64_t w, int64_t c_in, int64_t k, int64_t c_out, int64_t stride,
                    Padding pad) {
  Conv2dArgs p;
  p.n = n, p.h = h, p.w = w, p.c_in = c_in, p.kh = k, p.kw = k, p.c_out = c_out;
  p.stride_h = p.stride_w = stride;
  const Window1d wy = window_1d(h, k, stride, pad), wx = window_1d(w, k, stride, pad);
  p.out_h = wy.out, p.out_w = wx.out, p.pad_top = wy.pad_before, p.pad_left = wx.pad_before;
  return p;
}

constexpr OpKind kOps[] = {OpKind::conv2d_fwd, OpKind::conv2d_bwd_data, OpKind::conv2d_bwd_filter};

int64_t out_size(OpKind op, const Conv2dArgs& p) {
  switch (op) {
    case OpKind::conv2d_fwd: return p.n * p.out_h * p.out_w * p.c_out;
    case OpKind::conv2d_bwd_data: return p.n * p.h * p.w * p.c_in;
    default: return p.kh * p.kw * p.c_in * p.c_out;
  }
}

int64_t products_per_element(OpKind op, const Conv2dArgs& p) {
  switch (op) {
    case OpKind::conv2d_fwd: return p.kh * p.kw * p.c_in;
    case OpKind::conv2d_bwd_data: return p.kh * p.kw * p.c_out;
    default: return p.n * p.out_h * p.out_w;
  }
}

void direct(OpKind op, const Conv2dArgs& p, ThreadPool& pool) {
  switch (op) {
    case OpKind::conv2d_fwd: return conv2d_fwd_direct(p, pool);
    case OpKind::conv2d_bwd_data: return conv2d_bwd_data_direct(p, pool);
    default: return conv2d_bwd_filter_direct(p, pool);
  }
}

// One op's inputs on the host and the device, and the CPU's answer and magnitudes.
struct Case {
  Case(CudaDevice& d, OpKind op_, const Conv2dArgs& shape_)
      : op(op_), shape(shape_),
        x(testing::random_tensor({shape.n * shape.h * shape.w * shape.c_in}, 90).data),
        f(testing::random_tensor({shape.kh * shape.kw * shape.c_in * shape.c_out}, 91).data),
        dy(testing::random_tensor({shape.n * shape.out_h * shape.out_w * shape.c_out}, 92).data),
        dev_x(d, x), dev_f(d, f), dev_dy(d, dy) {
    ThreadPool pool(1);
    cpu.assign(static_cast<size_t>(out_size(op, shape)), 0.0f);
    magnitude = cpu;
    Conv2dArgs p = shape;
    p.x = x.data(), p.filter = f.data(), p.dy = dy.data(), p.out = cpu.data();
    direct(op, p, pool);
    auto absolute = [](std::vector<float> v) {
      for (float& e : v) e = std::fabs(e);
      return v;
    };
    const std::vector<float> ax = absolute(x), af = absolute(f), ady = absolute(dy);
    p.x = ax.data(), p.filter = af.data(), p.dy = ady.data(), p.out = magnitude.data();
    direct(op, p, pool);
  }
  // Runs the site into fresh device memory (filled with 7s, which the op overwrites) and reads it back.
  std::vector<float> run(CudaDevice& d, Runtime& rt, const std::string& site) {
    Floats out(d, std::vector<float>(cpu.size(), 7.0f));
    Conv2dArgs p = shape;
    p.x = dev_x.get(), p.filter = dev_f.get(), p.dy = dev_dy.get(), p.out = out.get();
    d.conv2d(rt, site, op, p);
    return out.host();
  }
  OpKind op;
  Conv2dArgs shape;
  std::vector<float> x, f, dy, cpu, magnitude;
  Floats dev_x, dev_f, dev_dy;
};

// Within the bound above for what `choice` ran.
void expect_near_cpu(const Case& c, const KernelChoice& choice, const std::vector<float>& gpu, const std::string& what) {
  ASSERT_EQ(gpu.size(), c.cpu.size()) << what;
  bool tf32 = choice.tf32, transform = false;
  if (const CudnnEngine* e = chosen_cudnn_engine(choice))
    for (int32_t n : e->numerical_notes) {
      tf32 |= n == kCudnnNoteTensorCore || n == kCudnnNoteDownConvertInputs;
      transform |= n == kCudnnNoteFft || (n >= kCudnnNoteWinograd && n <= kCudnnNoteWinogradTile13x13);
    }
  const double k = static_cast<double>(products_per_element(c.op, c.shape));
  const double max_s = *std::max_element(c.magnitude.begin(), c.magnitude.end());
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    const double s = c.magnitude[i];
    const double bound = (2 * k + 1) * 0x1p-24 * s + (tf32 ? 0x1p-9 * s : 0) + (transform ? 0x1p-10 * max_s : 0) + 1e-30;
    if (!(std::fabs(static_cast<double>(gpu[i]) - c.cpu[i]) <= bound) && bad++ == 0) first = i;
  }
  EXPECT_EQ(bad, 0u) << what << " (" << choice.chosen << "): " << bad << " of " << gpu.size()
                     << " outside the bound; first [" << first << "] cpu " << c.cpu[first] << " gpu " << gpu[first];
}

// The KernelChoice of a conv site, as engine/kernels/conv_sites.h lays it out.
void expect_conv_choice(const KernelChoice& k, OpKind op, const std::string& site, Policy policy) {
  EXPECT_EQ(k.site, site);
  EXPECT_EQ(k.op, op_name(op));
  ASSERT_FALSE(k.candidates.empty());
  EXPECT_EQ(k.candidates.back(), conv_im2col_id(op));
  EXPECT_EQ(k.cudnn.size() + 1, k.candidates.size());
  EXPECT_EQ(k.candidates, conv_site_candidates(op, k.cudnn));
  if (!k.cudnn.empty()) {
    EXPECT_EQ(k.cudnn_version / 10000, 9u);
  }
  EXPECT_NE(std::find(k.candidates.begin(), k.candidates.end(), k.chosen), k.candidates.end()) << k.chosen;
  EXPECT_LE(k.blaslt.size(), 1u);
  if (!k.blaslt.empty()) {
    EXPECT_GT(k.blaslt_version, 0u);
  }
  EXPECT_EQ(gpu_choice_lists_error(k), "");
  EXPECT_FALSE(k.reason.empty());
  if (policy == Policy::autotune) {
    EXPECT_EQ(k.timings_us.size(), k.candidates.size());
  } else {
    EXPECT_TRUE(k.timings_us.empty());
  }
  if (policy == Policy::deterministic) {
    EXPECT_FALSE(k.chosen.ends_with("_nondeterministic")) << k.chosen;
    if (const BlasLtAlgo* a = chosen_blaslt_algo(k)) {
      EXPECT_TRUE(blaslt_deterministic(*a));
    }
  }
  if (chosen_cudnn_engine(k) && k.plan_json.empty())
    std::printf("%s: cuDNN gave no JSON for the plan of %s\n", site.c_str(), k.chosen.c_str());
}

std::vector<std::pair<std::string, Conv2dArgs>> geometries() {
  return {{"same, stride 1", geometry(4, 9, 8, 3, 3, 5, 1, Padding::same)},
          {"same, stride 2", geometry(3, 11, 9, 4, 3, 6, 2, Padding::same)}};
}

TEST(CudaConvSites, EachPolicysPickMatchesTheCpuAndIsRecorded) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  for (Policy policy : {Policy::fast, Policy::deterministic, Policy::autotune}) {
    ChoiceHooks hooks;
    SiteRuntime s(policy, hooks);
    for (const auto& [name, shape] : geometries())
      for (OpKind op : kOps) {
        const std::string site = std::string(policy_name(policy)) + "/" + name + "/" + op_name(op);
        Case c(*d, op, shape);
        const std::vector<float> gpu = c.run(*d, s.rt, site);
        ASSERT_FALSE(hooks.choices.empty());
        const KernelChoice& k = hooks.choices.back();
        expect_conv_choice(k, op, site, policy);
        expect_near_cpu(c, k, gpu, site);
        std::printf("%s -> %s (%s)\n", site.c_str(), k.chosen.c_str(), k.reason.c_str());
        if (policy == Policy::deterministic) {
          EXPECT_EQ(c.run(*d, s.rt, site), gpu) << site << ": the same site twice";
        }
      }
  }
  for (const std::string& n : d->notes()) std::printf("note: %s\n", n.c_str());
}

TEST(CudaConvSites, AForcedRecordedEngineOrTheIm2colVariantGivesTheRecordedBits) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  const Conv2dArgs shape = geometries()[0].second;
  for (OpKind op : kOps) {
    Case c(*d, op, shape);
    // Recorded: every candidate of the site, each run forced in a recording of its own.
    ChoiceHooks recording;
    SiteRuntime rec(Policy::deterministic, recording);
    c.run(*d, rec.rt, std::string("recorded/") + op_name(op));
    ASSERT_EQ(recording.choices.size(), 1u);
    const KernelChoice recorded = recording.choices[0];
    for (const std::string& id : recorded.candidates) {
      const bool nondeterministic = id.ends_with("_nondeterministic");
      std::vector<std::vector<float>> runs;
      for (int i = 0; i < 2; ++i) {
        ReplacedHooks hooks;
        hooks.force = [&](KernelChoice& k) {
          k.chosen = id;
          k.cudnn = recorded.cudnn;
          k.cudnn_version = recorded.cudnn_version;
          k.blaslt = recorded.blaslt;
          k.blaslt_version = recorded.blaslt_version;
        };
        SiteRuntime forced(Policy::forced, hooks);
        const size_t notes = d->notes().size();
        const std::string site = "forced" + std::to_string(i) + "/" + id;
        runs.push_back(c.run(*d, forced.rt, site));
        EXPECT_EQ(d->notes().size(), notes) << site << ": " << d->notes().back();
        EXPECT_TRUE(hooks.replaced.empty()) << site << ": " << hooks.replaced.front();
        ASSERT_EQ(hooks.choices.size(), 1u);
        expect_near_cpu(c, hooks.choices[0], runs.back(), site);
      }
      if (!nondeterministic) {
        EXPECT_EQ(runs[0], runs[1]) << id << ": forced twice, other bits";
      }
    }
    // Recorded by another cuDNN: this machine's pick runs, and kernel_replaced names the site and why.
    if (!recorded.cudnn.empty()) {
      ReplacedHooks hooks;
      hooks.force = [&](KernelChoice& k) {
        k.chosen = recorded.candidates[0];
        k.cudnn = recorded.cudnn;
        k.cudnn_version = recorded.cudnn_version + 100;
      };
      SiteRuntime forced(Policy::forced, hooks);
      const size_t notes = d->notes().size();
      const std::string site = std::string("other_version/") + op_name(op);
      const std::vector<float> gpu = c.run(*d, forced.rt, site);
      ASSERT_EQ(hooks.choices.size(), 1u);
      // What ran is this machine's pick under forced, cuDNN's heuristic's first: the choice's chosen.
      expect_near_cpu(c, hooks.choices[0], gpu, site);
      EXPECT_EQ(d->notes().size(), notes);
      ASSERT_EQ(hooks.replaced.size(), 1u);
      EXPECT_NE(hooks.replaced[0].find(site), std::string::npos) << hooks.replaced[0];
      EXPECT_NE(hooks.replaced[0].find("was recorded with cuDNN"), std::string::npos) << hooks.replaced[0];
    }
    // An id that is no candidate of this convolution.
    ChoiceHooks hooks;
    hooks.force = [](KernelChoice& k) { k.chosen = "f32_conv2d_fwd__cpu_im2col_avx2"; };
    SiteRuntime forced(Policy::forced, hooks);
    EXPECT_THROW(c.run(*d, forced.rt, std::string("unknown/") + op_name(op)), DeviceError);
  }
}

// A batch whose col buffer exceeds the budget runs in image chunks. Here a chunk's rows of dy and of the output
// (961 pixels of 3 channels an image, 65 images a chunk) start off a 256-byte boundary after the first: the
// variant's cuBLASLt algorithm must accept that alignment (cuBLASLt assumes 256 bytes unless told).
TEST(CudaConvSites, TheIm2colVariantRunsABatchInChunksWhateverTheirAlignment) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  const Conv2dArgs shape = geometry(130, 31, 31, 64, 3, 3, 1, Padding::same);
  ASSERT_GT(static_cast<size_t>(shape.n * conv_col_floats_per_image(shape)) * sizeof(float), CudaDevice::kConvColBudget);
  const int64_t chunk = conv_chunk_images(shape, CudaDevice::kConvColBudget);
  ASSERT_LT(chunk, shape.n);
  ASSERT_NE(chunk * shape.out_h * shape.out_w * shape.c_out % 64, 0) << "the second chunk is 256-byte aligned";
  for (OpKind op : kOps) {
    Case c(*d, op, shape);
    ChoiceHooks hooks;
    hooks.force = [op](KernelChoice& k) {
      k.chosen = conv_im2col_id(op);
      k.blaslt.clear();
    };
    SiteRuntime forced(Policy::forced, hooks);
    const std::string site = std::string("chunked/") + op_name(op);
    const std::vector<float> gpu = c.run(*d, forced.rt, site);
    ASSERT_EQ(hooks.choices.size(), 1u);
    expect_near_cpu(c, hooks.choices[0], gpu, site);
  }
}

TEST(CudaConvSites, ASmallerLastBatchRunsTheSitesVariantRebuiltForIt) {
  TRAINRR_REQUIRE_GPU();
  auto d = open_device();
  ASSERT_TRUE(d);
  for (Policy policy : {Policy::fast, Policy::deterministic}) {
    ChoiceHooks hooks;
    SiteRuntime s(policy, hooks);
    for (OpKind op : kOps) {
      const std::string site = std::string("batches/") + policy_name(policy) + "/" + op_name(op);
      Case full(*d, op, geometry(4, 9, 8, 3, 3, 5, 1, Padding::same));
      Case last(*d, op, geometry(3, 9, 8, 3, 3, 5, 1, Padding::same));
      const size_t notes = d->notes().size();
      full.run(*d, s.rt, site);
      ASSERT_FALSE(hooks.choices.empty());
      const KernelChoice k = hooks.choices.back();
      expect_near_cpu(last, k, last.run(*d, s.rt, site), site + " (3 images)");
      EXPECT_EQ(std::count_if(hooks.choices.begin(), hooks.choices.end(),
                              [&](const KernelChoice& c) { return c.site == site; }),
                1)
          << "one report per site";
      for (size_t i = notes; i < d->notes().size(); ++i)
        EXPECT_NE(d->notes()[i].find(site), std::string::npos) << d->notes()[i];
    }
  }
}

}  // namespace
}  // namespace trainrr
