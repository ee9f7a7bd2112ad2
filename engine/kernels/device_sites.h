#pragma once
// The CUDA device's decisions as host logic, with no CUDA type: which column-sum kernel each policy runs and
// what a forced id names, which cuBLASLt algorithm a forced matmul site runs, how a convolution is cut into
// image chunks and the matmul of each, which cached block the device's allocator reuses, and where an optimizer's
// slots are. The CUDA device (cuda/engine_device.cc) calls these; CI, which has no GPU, tests them.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/config.h"
#include "engine/kernels/gpu_choice.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/kernel_selector.h"
#include "engine/result.h"

namespace trainrr {

// ---- Column sums: the two kernels of cuda/ops.h (their ids are cuda::kReduceTreeId and kReduceAtomicId).

enum class DeviceReduce : uint8_t { tree, atomic };
inline constexpr const char* kDeviceReduceTreeId = "f32_sum__cuda_tree";
inline constexpr const char* kDeviceReduceAtomicId = "f32_sum__cuda_atomic";
const char* device_reduce_id(DeviceReduce v);
// The candidates in the order considered (and timed): tree, atomic.
std::vector<std::string> device_reduce_candidates();

// What a policy runs at a column-sum site before the hooks see it:
//   default (fast) and forced: atomic, the block partials added with atomicAdd, as frameworks' reductions do by
//     default (forced: what runs when the hooks leave the site alone);
//   deterministic and portable: the fixed-order tree (its plan is a function of the shape alone);
//   autotune: both timed on the real arguments, the faster kept (device_reduce_fastest).
struct DeviceReduceRule {
  DeviceReduce variant = DeviceReduce::tree;  // what runs unless `time_both`
  bool time_both = false;
  std::string reason;  // the KernelChoice's reason
};
DeviceReduceRule device_reduce_rule(Policy policy);
// A forced site: the kernel `id` names; any other id is an error naming it and the ids this device has.
Result<DeviceReduce> device_reduce_from_id(std::string_view id);
// Autotune: the faster of {tree, atomic} timings (a tie goes to the tree).
Result<DeviceReduce> device_reduce_fastest(const std::vector<double>& timings_us);

// ---- cuBLASLt under the forced policy: what the hooks' choice names once they have seen (and maybe replaced)
// it. `recorded` is the choice's blaslt after the hooks (a replay's recorded algorithms, or this machine's own
// when the hooks left them); `here` this machine's candidates.
struct BlasLtForcedTarget {
  enum class From : uint8_t {
    recorded,  // recorded[index] has the chosen id: force_blaslt decides whether it can run here
    here,      // no recorded algorithm has it, here[index] does: it runs
    unknown,   // neither: the forced id is not a cuBLASLt algorithm for this matmul
  };
  From from = From::unknown;
  size_t index = 0;
};
BlasLtForcedTarget find_forced_blaslt(std::string_view chosen, const std::vector<BlasLtAlgo>& recorded,
                                      const std::vector<BlasLtAlgo>& here);

// ---- Conv2D as im2col and matmul over image chunks (the doc of cuda/ops.h).

// Floats of one image's col buffer: out_h * out_w rows of kh * kw * c_in.
int64_t conv_col_floats_per_image(const Conv2dArgs& p);
// Images per chunk: all n when their col buffer fits `budget_bytes`, else the largest divisor of n whose col
// buffer fits (at least 1). A divisor, so that every chunk's matmul has the one shape the site's algorithm was
// chosen (and recorded) for.
int64_t conv_chunk_images(const Conv2dArgs& p, size_t budget_bytes);
// The matmul of `op` for images [img0, img0 + images), `col` being that chunk's col buffer ([images * out_h *
// out_w, kh * kw * c_in]):
//   conv2d_fwd:        y rows of the chunk = col * filter
//   conv2d_bwd_data:   col (dcol, then col2im'd into dx) = dy rows of the chunk * filter^T
//   conv2d_bwd_filter: dfilter (+)= col^T * dy rows of the chunk, accumulating after the first chunk (img0 > 0)
MatmulArgs conv_chunk_matmul(OpKind op, const Conv2dArgs& p, int64_t img0, int64_t images, float* col);
// The chunk whose matmul's pointers are the least aligned: the second, when there is one (every later chunk's
// offsets into dy and the output are multiples of the second's), else the only one. The site's algorithm runs
// every chunk, so it is chosen among those that accept this one's alignment.
int64_t conv_least_aligned_chunk(const Conv2dArgs& p, int64_t images);

// The alignment of `p` as cuBLASLt's CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES take it: the largest power of two
// dividing its address, at most 256 (the default, which every cudaMalloc'd block meets); 256 for null.
uint32_t blaslt_alignment(const void* p);

// ---- The device's caching allocator: blocks are cudaMalloc'd in sizes rounded up to a multiple of 256 bytes
// (cudaMalloc's own alignment), and a released block is kept by size for reuse.
inline constexpr size_t kDeviceBlockAlign = 256;
size_t device_block_bytes(size_t bytes);
// Whether a cached block of `block` bytes serves a request of block size `want`: large enough, and at most
// twice as large, so a small request does not hold on to a large block.
bool device_block_fits(size_t block, size_t want);

// ---- Optimizer slots in engine/optimizer.cc's order (slot_names): the index of each role, -1 when unused.
struct DeviceOptimizerSlots {
  size_t count = 0;
  int momentum = -1;          // sgd with momentum > 0; rmsprop with momentum > 0
  int m = -1, v = -1;         // adam, adamw
  int velocity = -1;          // rmsprop
  int average_gradient = -1;  // rmsprop centered
};
// An unknown type is an error naming it.
Result<DeviceOptimizerSlots> device_optimizer_slots(const OptimizerConfig& config);

}  // namespace trainrr
