#include "engine/kernels/device_sites.h"

#include <algorithm>

#include "engine/kernels/blaslt_choice.h"

namespace trainrr {

const char* device_reduce_id(DeviceReduce v) {
  return v == DeviceReduce::tree ? kDeviceReduceTreeId : kDeviceReduceAtomicId;
}

std::vector<std::string> device_reduce_candidates() { return {kDeviceReduceTreeId, kDeviceReduceAtomicId}; }

DeviceReduceRule device_reduce_rule(Policy policy) {
  DeviceReduceRule r;
  switch (policy) {
    case Policy::fast:
      r.variant = DeviceReduce::atomic;
      r.reason = "default: block partials added with atomicAdd, as frameworks reduce by default (the order of the "
                 "additions varies from call to call)";
      break;
    case Policy::deterministic:
      r.variant = DeviceReduce::tree;
      r.reason = "deterministic: fixed-order tree";
      break;
    case Policy::portable:
      r.variant = DeviceReduce::tree;
      r.reason = "portable: fixed-order tree, whose plan depends on the shape alone";
      break;
    case Policy::autotune:
      r.variant = DeviceReduce::tree;
      r.time_both = true;
      r.reason = "autotune";
      break;
    case Policy::forced:
      r.variant = DeviceReduce::atomic;  // the default's, for a site the hooks leave alone
      r.reason = "forced";
      break;
  }
  return r;
}

Result<DeviceReduce> device_reduce_from_id(std::string_view id) {
  if (id == kDeviceReduceTreeId) return DeviceReduce::tree;
  if (id == kDeviceReduceAtomicId) return DeviceReduce::atomic;
  return Error{"forced kernel '" + std::string(id) + "' is not a column-sum kernel of the CUDA device (it has " +
               kDeviceReduceTreeId + " and " + kDeviceReduceAtomicId + ")"};
}

Result<DeviceReduce> device_reduce_fastest(const std::vector<double>& timings_us) {
  auto best = fastest_candidate(timings_us, 2, "column-sum kernels");
  if (!best) return best.error();
  return *best == 0 ? DeviceReduce::tree : DeviceReduce::atomic;
}

BlasLtForcedTarget find_forced_blaslt(std::string_view chosen, const std::vector<BlasLtAlgo>& recorded,
                                      const std::vector<BlasLtAlgo>& here) {
  for (size_t i = 0; i < recorded.size(); ++i)
    if (blaslt_kernel_id(recorded[i]) == chosen) return {BlasLtForcedTarget::From::recorded, i};
  for (size_t i = 0; i < here.size(); ++i)
    if (blaslt_kernel_id(here[i]) == chosen) return {BlasLtForcedTarget::From::here, i};
  return {};
}

int64_t conv_col_floats_per_image(const Conv2dArgs& p) { return p.out_h * p.out_w * p.kh * p.kw * p.c_in; }

int64_t conv_chunk_images(const Conv2dArgs& p, size_t budget_bytes) {
  const double per_image = static_cast<double>(conv_col_floats_per_image(p)) * sizeof(float);
  if (p.n <= 1 || per_image <= 0) return std::max<int64_t>(p.n, 1);
  const int64_t fit = static_cast<int64_t>(static_cast<double>(budget_bytes) / per_image);
  for (int64_t images = std::min(fit, p.n); images > 1; --images)
    if (p.n % images == 0) return images;
  return 1;
}

MatmulArgs conv_chunk_matmul(OpKind op, const Conv2dArgs& p, int64_t img0, int64_t images, float* col) {
  const int64_t pixels = images * p.out_h * p.out_w, taps = p.kh * p.kw * p.c_in;
  const int64_t dy_offset = img0 * p.out_h * p.out_w * p.c_out;
  MatmulArgs m;
  switch (op) {
    case OpKind::conv2d_fwd:
      m.m = pixels, m.k = taps, m.n = p.c_out;
      m.a = col, m.b = p.filter, m.c = p.out + dy_offset;
      break;
    case OpKind::conv2d_bwd_data:
      // filter is [taps, c_out] as stored: [n, k] of a transposed B.
      m.m = pixels, m.k = p.c_out, m.n = taps;
      m.a = p.dy + dy_offset, m.b = p.filter, m.c = col, m.trans_b = true;
      break;
    case OpKind::conv2d_bwd_filter:
      // col is [pixels, taps] as stored: [k, m] of a transposed A.
      m.m = taps, m.k = pixels, m.n = p.c_out;
      m.a = col, m.b = p.dy + dy_offset, m.c = p.out, m.trans_a = true;
      m.accumulate = img0 > 0;
      break;
    default:
      TRAINRR_CHECK(false, std::string("conv_chunk_matmul of ") + op_name(op));
  }
  return m;
}

int64_t conv_least_aligned_chunk(const Conv2dArgs& p, int64_t images) { return images < p.n ? images : 0; }

uint32_t blaslt_alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

size_t device_block_bytes(size_t bytes) {
  return (std::max<size_t>(bytes, 1) + kDeviceBlockAlign - 1) / kDeviceBlockAlign * kDeviceBlockAlign;
}

bool device_block_fits(size_t block, size_t want) { return block >= want && block / 2 <= want; }

Result<DeviceOptimizerSlots> device_optimizer_slots(const OptimizerConfig& c) {
  DeviceOptimizerSlots s;
  auto next = [&s] { return static_cast<int>(s.count++); };
  if (c.type == "sgd") {
    if (c.momentum > 0) s.momentum = next();
  } else if (c.type == "adam" || c.type == "adamw") {
    s.m = next();
    s.v = next();
  } else if (c.type == "rmsprop") {
    s.velocity = next();
    if (c.momentum > 0) s.momentum = next();
    if (c.centered) s.average_gradient = next();
  } else {
    return Error{"the CUDA device has no optimizer '" + c.type + "' (sgd, adam, adamw, rmsprop)"};
  }
  return s;
}

}  // namespace trainrr
