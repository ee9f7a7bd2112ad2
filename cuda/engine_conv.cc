// The CUDA device's Conv2D sites (cuda/engine_device.h): cuDNN's engine configurations for the op and geometry
// (cuda/cudnn_conv.h), then the im2col (or col2im) + cuBLASLt variant over image chunks, chosen by the policy
// (engine/kernels/conv_sites.h has the rules and the KernelChoice's layout) on a site's first call, reported
// through the hooks and kept by site and geometry. The cuDNN calls are compiled where cuDNN's headers were
// found (TRAINRR_CUDNN); elsewhere the im2col variant is every site's only candidate, and a note says why.

#include <cuda_runtime_api.h>

#include <array>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cuda/blaslt.h"
#include "cuda/cudnn_conv.h"
#include "cuda/engine_device.h"
#include "cuda/ops.h"
#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/conv_sites.h"
#include "engine/kernels/cudnn_choice.h"
#include "engine/runtime.h"

namespace trainrr::cuda {

namespace {

// A conv geometry without its pointers: what a site's variant was chosen (or rebuilt) for.
using ConvShape = std::array<int64_t, 13>;

ConvShape conv_shape(const Conv2dArgs& p) {
  return {p.n,        p.h,        p.w,       p.c_in,     p.kh,    p.kw,   p.c_out,
          p.stride_h, p.stride_w, p.pad_top, p.pad_left, p.out_h, p.out_w};
}

std::string shape_text(OpKind op, const Conv2dArgs& p) {
  auto s = [](int64_t v) { return std::to_string(v); };
  return std::string(op_name(op)) + " n" + s(p.n) + " " + s(p.h) + "x" + s(p.w) + "x" + s(p.c_in) + " -> " +
         s(p.out_h) + "x" + s(p.out_w) + "x" + s(p.c_out) + ", filter " + s(p.kh) + "x" + s(p.kw) + ", stride " +
         s(p.stride_h) + "x" + s(p.stride_w);
}

// cuDNN's calls, where it is built in; elsewhere no CudnnConv is ever loaded (ConvSites::dnn stays null), and
// these are not reached.
#ifdef TRAINRR_CUDNN
Result<std::vector<CudnnEngine>> dnn_candidates(CudnnConv& d, OpKind op, const Conv2dArgs& p) {
  return d.candidates(op, p);
}
Result<CudnnConv::Plan> dnn_build(CudnnConv& d, OpKind op, const Conv2dArgs& p, const CudnnEngine& e) {
  return d.build(op, p, e);
}
Status dnn_run(CudnnConv& d, const CudnnConv::Plan& plan, const Conv2dArgs& p, void* workspace, void* stream) {
  return d.run(plan, p, workspace, stream);
}
uint64_t dnn_version(const CudnnConv& d) { return d.version(); }
#else
const char* const kNoCudnn = "this build has no cuDNN";
Result<std::vector<CudnnEngine>> dnn_candidates(CudnnConv&, OpKind, const Conv2dArgs&) { return Error{kNoCudnn}; }
Result<CudnnConv::Plan> dnn_build(CudnnConv&, OpKind, const Conv2dArgs&, const CudnnEngine&) {
  return Error{kNoCudnn};
}
Status dnn_run(CudnnConv&, const CudnnConv::Plan&, const Conv2dArgs&, void*, void*) { return Error{kNoCudnn}; }
uint64_t dnn_version(const CudnnConv&) { return 0; }
#endif

}  // namespace

struct CudaDevice::ConvVariant {
  std::string id;  // the candidate's id (cudnn_kernel_id or conv_im2col_id)
  bool im2col = false;
  BlasLtAlgo algo;        // im2col: its cuBLASLt algorithm
  CudnnConv::Plan plan;   // cuDNN: the engine's plan for the geometry
  uint32_t alignment =
      256;  // im2col: the least alignment of any chunk's pointers the algorithm was taken for
};

struct CudaDevice::ConvSite {
  ConvShape shape;  // the geometry the choice was made for
  ConvVariant variant;
  std::map<ConvShape, ConvVariant> other_shapes;  // what runs each later geometry
};

struct CudaDevice::ConvSites {
  bool cudnn_tried = false;
  CudnnConv* dnn = nullptr;  // null: cuDNN is not built in or did not load (cudnn_missing says why)
  std::string cudnn_missing;
  std::map<std::string, ConvSite, std::less<>> sites;
};

struct CudaDevice::Im2colPick {
  std::optional<BlasLtAlgo> algo;  // none: the variant has no algorithm under the policy (why_not says why)
  std::string reason;
  std::string why_not;
  uint64_t version = 0;  // cublasLtGetVersion()
  uint32_t alignment = 256;  // the least alignment of any chunk's pointers, which the candidates accept
};

namespace {

// The least alignment of the pointers of any chunk's matmul for `p` (cuBLASLt's MIN_ALIGNMENT preferences): a
// later chunk's offset into dy or the output need not be a multiple of 256 bytes.
uint32_t chunk_alignment(OpKind op, const Conv2dArgs& p, float* col) {
  const int64_t chunk = conv_chunk_images(p, CudaDevice::kConvColBudget);
  const MatmulArgs m = conv_chunk_matmul(op, p, conv_least_aligned_chunk(p, chunk), chunk, col);
  return std::min({blaslt_alignment(m.a), blaslt_alignment(m.b), blaslt_alignment(m.c)});
}

}  // namespace

void CudaDevice::ConvSitesDelete::operator()(ConvSites* s) const { delete s; }

CudaDevice::ConvSites& CudaDevice::conv_sites() {
  if (!conv_sites_) conv_sites_.reset(new ConvSites());
  ConvSites& c = *conv_sites_;
  if (!c.cudnn_tried) {
    c.cudnn_tried = true;
#ifdef TRAINRR_CUDNN
    auto dnn = CudnnConv::load();
    if (dnn)
      c.dnn = *dnn;
    else
      c.cudnn_missing = "cuDNN does not load (" + dnn.error().message + ")";
#else
    c.cudnn_missing = "this build has no cuDNN (its headers, cudnn_graph.h, were not found when it was built)";
#endif
    if (!c.dnn)
      notes_.push_back(c.cudnn_missing + ": every Conv2D site's only candidate is the im2col + cuBLASLt variant");
  }
  return c;
}

// ---- Running a variant.

void CudaDevice::run_im2col_variant(const BlasLtAlgo& algo, OpKind op, const Conv2dArgs& p) {
  const int64_t chunk = conv_chunk_images(p, kConvColBudget);
  float* col = static_cast<float*>(
      ensure(col_, static_cast<size_t>(chunk * conv_col_floats_per_image(p)) * sizeof(float)));
  for (int64_t img0 = 0; img0 < p.n; img0 += chunk) {
    if (op != OpKind::conv2d_bwd_data) check(im2col(p, p.x, img0, chunk, col, stream_));
    const MatmulArgs m = conv_chunk_matmul(op, p, img0, chunk, col);
    if (m.m > 0 && m.n > 0) {
      if (m.k > 0)
        run_blaslt(algo, m);
      else if (!m.accumulate)
        zero(m.c, static_cast<size_t>(m.m * m.n) * sizeof(float));  // an empty sum
    }
    if (op == OpKind::conv2d_bwd_data) check(col2im(p, col, img0, chunk, p.out, stream_));
  }
}

void CudaDevice::run_conv_variant(const ConvVariant& v, OpKind op, const Conv2dArgs& p) {
  if (v.im2col) return run_im2col_variant(v.algo, op, p);
  CudnnConv* dnn = conv_sites().dnn;
  if (!dnn) throw DeviceError(describe() + ": " + v.id + " needs cuDNN, and " + conv_sites().cudnn_missing);
  void* workspace = v.plan.workspace ? ensure(cudnn_workspace_, v.plan.workspace) : nullptr;
  // cuDNN's filter is KRSC ([c_out, taps], cuda/cudnn_conv.h), trainrr's HWIO ([taps, c_out]).
  const int64_t taps = p.kh * p.kw * p.c_in;
  float* krsc = static_cast<float*>(ensure(filter_krsc_, static_cast<size_t>(taps * p.c_out) * sizeof(float)));
  Conv2dArgs q = p;
  if (op == OpKind::conv2d_bwd_filter) {
    q.out = krsc;
    check(dnn_run(*dnn, v.plan, q, workspace, stream_));
    check(transpose(krsc, p.out, p.c_out, taps, stream_));
  } else {
    check(transpose(p.filter, krsc, taps, p.c_out, stream_));
    q.filter = krsc;
    check(dnn_run(*dnn, v.plan, q, workspace, stream_));
  }
}

// ---- Choosing.

CudaDevice::Im2colPick CudaDevice::pick_im2col_algo(Policy policy, OpKind op, const Conv2dArgs& p) {
  Im2colPick pick;
  BlasLt* lt = nullptr;
  try {
    lt = &blas();
  } catch (const DeviceError& e) {
    pick.why_not = e.what();
    return pick;
  }
  pick.version = lt->version();
  // The first chunk's matmul: every chunk has its shape (conv_chunk_images divides n).
  const int64_t chunk = conv_chunk_images(p, kConvColBudget);
  float* col = static_cast<float*>(
      ensure(col_, static_cast<size_t>(chunk * conv_col_floats_per_image(p)) * sizeof(float)));
  const MatmulArgs m = conv_chunk_matmul(op, p, 0, chunk, col);
  // Candidates that accept every chunk's pointers: a later chunk's offset into dy or the output need not be a
  // multiple of 256 bytes.
  const MatmulArgs least_aligned = conv_chunk_matmul(op, p, conv_least_aligned_chunk(p, chunk), chunk, col);
  pick.alignment = chunk_alignment(op, p, col);
  auto candidates = lt->candidates(least_aligned, tf32_, kMaxBlasLtWorkspace, kMaxBlasLtCandidates);
  if (!candidates) {
    pick.why_not = "cuBLASLt: " + candidates.error().message;
    return pick;
  }
  std::vector<double> timings;
  if (policy == Policy::autotune && !candidates->empty()) {
    // On the real arguments: the first chunk's col buffer, into the output the real call overwrites (the
    // first chunk does not accumulate).
    if (op != OpKind::conv2d_bwd_data) check(im2col(p, p.x, 0, chunk, col, stream_));
    for (const BlasLtAlgo& a : *candidates) {
      try {
        timings.push_back(time_on_stream([&] { run_blaslt(a, m); }));
      } catch (const DeviceError&) {
        timings.push_back(std::numeric_limits<double>::infinity());
      }
    }
  }
  const Policy rule = policy == Policy::forced ? Policy::fast : policy;
  auto chosen = pick_blaslt(rule, *candidates, timings);
  if (!chosen) {
    pick.why_not = chosen.error().message;
    return pick;
  }
  pick.algo = (*candidates)[chosen->index];
  pick.reason = chosen->reason;
  return pick;
}

CudaDevice::ConvVariant CudaDevice::pick_conv_variant(Policy policy, std::string_view site, OpKind op,
                                                      const Conv2dArgs& p, KernelChoice& choice) {
  ConvSites& sites = conv_sites();
  const std::string where = describe() + ": at " + std::string(site) + ": ";
  std::vector<CudnnEngine> engines;
  if (sites.dnn) {
    auto offered = dnn_candidates(*sites.dnn, op, p);
    if (offered)
      // runtime.tf32 = false: float32 engines only (tf32_ is set from the run before a choice).
      engines = conv_engines_for_precision(*offered, tf32_);
    else
      notes_.push_back(std::string(site) + ": cuDNN has no engine for " + shape_text(op, p) + " (" +
                       offered.error().message + "): the im2col + cuBLASLt variant is its only candidate");
  }
  const Im2colPick inner = pick_im2col_algo(policy, op, p);
  ConvIm2col im2col;
  im2col.runs = inner.algo.has_value();
  im2col.deterministic = inner.algo && blaslt_deterministic(*inner.algo);
  im2col.why_not = inner.why_not;
  if (inner.algo && !im2col.deterministic)
    im2col.why_not = "its cuBLASLt algorithm " + blaslt_kernel_id(*inner.algo) + " is not deterministic (" +
                     blaslt_describe(*inner.algo) + ")";

  // Plans built so far, by candidate (autotune builds them all).
  std::vector<std::optional<CudnnConv::Plan>> plans(engines.size());
  auto plan_of = [&](size_t i) -> Result<CudnnConv::Plan> {
    if (plans[i]) return *plans[i];
    auto built = dnn_build(*sites.dnn, op, p, engines[i]);
    if (built) plans[i] = *built;
    return built;
  };

  std::vector<double> timings;
  if (policy == Policy::autotune) {
    // Every candidate on the real arguments; one that fails is never the fastest.
    for (size_t i = 0; i < engines.size(); ++i) {
      double us = std::numeric_limits<double>::infinity();
      if (auto plan = plan_of(i)) {
        try {
          us = time_on_stream([&] { run_conv_variant(ConvVariant{"", false, {}, *plan}, op, p); });
        } catch (const DeviceError&) {
        }
      }
      timings.push_back(us);
    }
    double us = std::numeric_limits<double>::infinity();
    if (inner.algo) {
      try {
        us = time_on_stream([&] { run_im2col_variant(*inner.algo, op, p); });
      } catch (const DeviceError&) {
      }
    }
    timings.push_back(us);
  }

  auto pick = pick_conv(policy, engines, im2col, timings);
  if (!pick) throw DeviceError(where + pick.error().message);

  choice.site = std::string(site);
  choice.op = op_name(op);
  choice.candidates = conv_site_candidates(op, engines);
  choice.chosen = choice.candidates[pick->index];
  choice.reason = pick->reason;
  choice.timings_us = std::move(timings);
  choice.cudnn = engines;
  choice.cudnn_version = sites.dnn && !engines.empty() ? dnn_version(*sites.dnn) : 0;
  choice.blaslt.clear();
  choice.blaslt_version = 0;
  if (inner.algo) {
    choice.blaslt = {*inner.algo};
    choice.blaslt_version = inner.version;
  }

  ConvVariant v;
  v.id = choice.chosen;
  // TF32 allowed (runtime.tf32): for a cuDNN engine as for the variant's matmul.
  choice.tf32 = tf32_;
  if (pick->index == engines.size()) {
    v.im2col = true;
    v.algo = *inner.algo;  // pick_conv takes the variant only when it runs
    v.alignment = inner.alignment;
    if (!inner.reason.empty()) choice.reason += "; its cuBLASLt algorithm: " + inner.reason;
    return v;
  }
  auto plan = plan_of(pick->index);
  if (!plan) throw DeviceError(where + plan.error().message);
  v.plan = std::move(*plan);
  choice.plan_json = v.plan.json;
  return v;
}

CudaDevice::ConvVariant CudaDevice::choose_conv(Runtime& rt, std::string_view site, OpKind op,
                                                const Conv2dArgs& p) {
  tf32_ = rt.tf32;
  const Policy policy = rt.kernels->policy();
  KernelChoice choice;
  ConvVariant mine = pick_conv_variant(policy, site, op, p, choice);
  if (policy == Policy::forced) choice.reason = "forced";
  const std::vector<CudnnEngine> here = choice.cudnn;
  rt.hooks->kernel_selected(choice);
  if (policy != Policy::forced) return mine;

  // Forced: what the hooks' choice names, if it can run here.
  ConvSites& sites = conv_sites();
  const ConvForcedTarget target = find_forced_conv(choice.chosen, op, choice.cudnn, here);
  switch (target.from) {
    case ConvForcedTarget::From::recorded:
    case ConvForcedTarget::From::here: {
      const bool recorded = target.from == ConvForcedTarget::From::recorded;
      const CudnnEngine& engine = recorded ? choice.cudnn[target.index] : here[target.index];
      if (!sites.dnn) {
        rt.hooks->kernel_replaced(choice.site, mine.id, "it needs cuDNN, and " + sites.cudnn_missing);
        return mine;
      }
      if (mine.id == choice.chosen && !mine.im2col && recorded &&
          choice.cudnn_version == dnn_version(*sites.dnn))
        return mine;  // the engine this machine picked, from the same cuDNN
      auto built = dnn_build(*sites.dnn, op, p, engine);
      const uint64_t version = recorded ? choice.cudnn_version : dnn_version(*sites.dnn);
      const CudnnForce f = force_cudnn(engine, op, version, dnn_version(*sites.dnn), built.ok(), choice.site);
      if (!f.recorded) {
        rt.hooks->kernel_replaced(choice.site, mine.id,
                                  f.note + (built ? std::string() : "; cuDNN: " + built.error().message));
        return mine;
      }
      ConvVariant v;
      v.id = choice.chosen;
      v.plan = std::move(*built);
      return v;
    }
    case ConvForcedTarget::From::im2col: {
      ConvVariant v;
      v.id = choice.chosen;
      v.im2col = true;
      v.alignment = chunk_alignment(op, p, static_cast<float*>(col_.p));
      // The recorded algorithm of the variant when the choice has one, as a forced matmul site's.
      const std::optional<BlasLtAlgo> ours = mine.im2col ? std::optional<BlasLtAlgo>(mine.algo) : std::nullopt;
      std::optional<BlasLtAlgo> fallback = ours;
      if (!fallback) {
        const Im2colPick inner = pick_im2col_algo(Policy::fast, op, p);
        fallback = inner.algo;
        if (!fallback)
          throw DeviceError(describe() + ": at " + choice.site + ": forced kernel '" + choice.chosen +
                            "' cannot run here: " + inner.why_not);
      }
      if (choice.blaslt.size() != 1) {
        v.algo = *fallback;
        return v;
      }
      const BlasLtAlgo& recorded = choice.blaslt[0];
      const int64_t chunk = conv_chunk_images(p, kConvColBudget);
      const MatmulArgs m = conv_chunk_matmul(op, p, 0, chunk, static_cast<float*>(col_.p));
      BlasLt& lt = blas();
      const BlasLtForce f =
          force_blaslt(recorded, choice.blaslt_version, lt.version(), lt.valid_here(recorded, m, tf32_), choice.site);
      if (f.recorded) {
        v.algo = recorded;
      } else {
        rt.hooks->kernel_replaced(choice.site, choice.chosen + " with " + blaslt_kernel_id(*fallback),
                                  f.note + " (inside " + choice.chosen + ")");
        v.algo = *fallback;
      }
      return v;
    }
    case ConvForcedTarget::From::unknown:
      break;
  }
  throw DeviceError(describe() + ": at " + choice.site + ": forced kernel '" + choice.chosen +
                    "' is not a candidate of this convolution (neither a cuDNN engine recorded with the choice, nor "
                    "one of the " + std::to_string(here.size()) + " cuDNN offers here, nor " + conv_im2col_id(op) +
                    ")");
}

const CudaDevice::ConvVariant& CudaDevice::conv_variant(Runtime& rt, std::string_view site, OpKind op,
                                                        const Conv2dArgs& p) {
  ConvSites& sites = conv_sites();
  const ConvShape shape = conv_shape(p);
  auto it = sites.sites.find(site);
  if (it == sites.sites.end()) {
    ConvSite s{shape, choose_conv(rt, site, op, p), {}};
    it = sites.sites.emplace(std::string(site), std::move(s)).first;
  }
  ConvSite& s = it->second;
  if (shape == s.shape) return s.variant;
  if (auto o = s.other_shapes.find(shape); o != s.other_shapes.end()) return o->second;
  // Another geometry at the same site (the last, smaller batch of an epoch): the site's variant when it can
  // run it (the same engine rebuilt for it, or the same cuBLASLt algorithm inside im2col), else the policy's
  // pick for this geometry, with a note.
  const ConvVariant& first = s.variant;
  std::string why;
  if (first.im2col) {
    const int64_t chunk = conv_chunk_images(p, kConvColBudget);
    float* col = static_cast<float*>(
        ensure(col_, static_cast<size_t>(chunk * conv_col_floats_per_image(p)) * sizeof(float)));
    // cublasLtMatmulAlgoCheck sees no pointer: an algorithm taken for chunks aligned to 256 bytes can refuse
    // a chunk of this geometry that lies at a lesser alignment.
    const uint32_t here = chunk_alignment(op, p, col);
    if (here < first.alignment)
      why = "its cuBLASLt algorithm " + blaslt_kernel_id(first.algo) +
            " was taken for chunk pointers aligned to " + std::to_string(first.alignment) +
            " bytes, and this geometry's chunks lie at " + std::to_string(here);
    else if (blas().valid_here(first.algo, conv_chunk_matmul(op, p, 0, chunk, col), tf32_))
      return s.other_shapes.emplace(shape, first).first->second;
    else
      why = "its cuBLASLt algorithm " + blaslt_kernel_id(first.algo) + " cannot run this geometry's matmul";
  } else if (sites.dnn) {
    auto built = dnn_build(*sites.dnn, op, p, first.plan.engine);
    if (built) {
      ConvVariant v = first;
      v.plan = std::move(*built);
      return s.other_shapes.emplace(shape, std::move(v)).first->second;
    }
    why = built.error().message;
  } else {
    why = sites.cudnn_missing;
  }
  const Policy policy = rt.kernels->policy();
  const Policy rule = policy == Policy::deterministic || policy == Policy::portable ? policy : Policy::fast;
  KernelChoice repick;
  ConvVariant v = pick_conv_variant(rule, site, op, p, repick);
  notes_.push_back(first.id + " (at " + std::string(site) + ") cannot run " + shape_text(op, p) + " (" + why +
                   "): " + v.id + " (" + repick.reason + ") ran it");
  return s.other_shapes.emplace(shape, std::move(v)).first->second;
}

void CudaDevice::run_conv(Runtime& rt, std::string_view site, OpKind op, const Conv2dArgs& p) {
  run_conv_variant(conv_variant(rt, site, op, p), op, p);
}

}  // namespace trainrr::cuda
