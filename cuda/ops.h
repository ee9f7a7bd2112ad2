#pragma once
// The engine's ops on the GPU: the same arithmetic as the CPU layers, losses, optimizers and kernels, in the
// same order, on device arrays. Host-callable, with no CUDA type in sight: a stream is a cudaStream_t passed
// as void* (null: the default stream), every float*/int32_t*/uint8_t* argument is a device pointer unless
// said otherwise. Each launcher queues its kernels on the stream and returns at once; a failed launch comes
// back as an error naming the kernel (errors of the kernel itself show at the next synchronisation).
//
// What "the same" means here: where the CPU uses only +, -, *, / and sqrt, the device computes the same
// operations in the same order (nvcc --fmad=false keeps every product and sum rounded apart, and division and
// sqrt are IEEE-rounded on both sides), so the bits are the CPU's. Where the CPU calls exp, log, log1p or tanh
// (glibc's, MathFamily::libm) the device calls CUDA's expf, logf, log1pf and tanhf, which are within 1-2 ULP of
// the exact value, as glibc's are: the results can differ in the last bits, and only there. The CPU's
// MathFamily::portable functions have no device counterpart here.
//
// Reductions are the exception to "the same order": a sum over rows on the GPU is a tree or atomics (the two
// variants below), never the CPU's order. Ops that need a sum take it from column_sums, as the CPU layers take
// theirs from the reduction kernel of their site, so that the sum's kernel stays a recorded choice.

#include <cstddef>
#include <cstdint>

#include "engine/config.h"
#include "engine/device_backend.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/layers/activations.h"
#include "engine/portable_math.h"
#include "engine/result.h"

namespace trainrr::cuda {

// A kernel launch's shape, as CUPTI reports it: part of a reduction kernel's identity, since the bits of a
// fixed-order reduction depend on it.
struct LaunchShape {
  unsigned grid_x = 1, grid_y = 1, grid_z = 1;
  unsigned block_x = 1, block_y = 1, block_z = 1;
  size_t shared_bytes = 0;  // dynamic shared memory
};

// ---------------------------------------------------------------------------------------------------------
// Bias and activations (engine/layers/activations.h, layer_util.h), over a row-major [rows, cols] block.

// y[r, j] += bias[j].
Status add_bias(float* y, const float* bias, int64_t rows, int64_t cols, void* stream);
// y = a(x); x == y is allowed. Softmax is row-wise (one thread per row, so that the row's sum is added in the
// CPU's order); the others are elementwise.
Status activation_forward(Activation a, const float* x, float* y, int64_t rows, int64_t cols, void* stream);
// dx = dy * a'(x) from the forward OUTPUT y (as the CPU: every derivative is written in terms of y);
// dy == dx is allowed.
Status activation_backward(Activation a, const float* y, const float* dy, float* dx, int64_t rows, int64_t cols,
                           void* stream);
// y = a(y + bias), bias may be null: the bits of add_bias then activation_forward, in one pass where the
// activation is elementwise.
Status bias_activation_forward(Activation a, const float* bias, float* y, int64_t rows, int64_t cols,
                               void* stream);

// Dropout's backward (the forward is dropout_on_device in cuda/rng_kernels.h): dx = keep ? dy * scale : 0,
// with the forward's keep mask and scale = 1 / (1 - rate) rounded to float as the layer keeps it. dy == dx
// is allowed. Only for a forward that masked (training with rate > 0); otherwise the layer's dx is dy itself.
Status dropout_backward(const uint8_t* keep, float scale, const float* dy, float* dx, int64_t n, void* stream);

// ---------------------------------------------------------------------------------------------------------
// Losses (engine/layers/loss.cc). Each writes the per-sample loss (per_sample[batch]) and d loss / d pred
// (grad, the shape of pred, every element written); the batch mean is column_sums over per_sample (rows =
// batch, cols = 1) followed by loss_mean_from_sum on the host, as the CPU's "loss/mean" site does.
// Labels are device floats, one per sample (a class index for sparse categorical cross-entropy, 0/1 for binary
// cross-entropy). The CPU aborts on a label that is not a class index; the device cannot, so the caller checks
// labels on the host, where they are read. An invalid label reaching the device gives a NaN loss for its row
// and a zero gradient row, never an access out of bounds.

// pred [batch, k]. from_logits: log-softmax form; else softmax_output: pred rows are a softmax's output;
// else each row is first scaled to sum to 1 (Keras). Clipping to [1e-7, 1 - 1e-7] as the CPU, no gradient
// outside the clip.
Status sparse_categorical_crossentropy(const float* pred, const float* labels, int64_t batch, int64_t k,
                                       bool from_logits, bool softmax_output, float* per_sample, float* grad,
                                       void* stream);
// pred [batch] (one value per sample), logits or probabilities.
Status binary_crossentropy(const float* pred, const float* labels, int64_t batch, bool from_logits,
                           float* per_sample, float* grad, void* stream);
// pred and targets [batch, k] (k = 1 for one target per row): per_sample = mean over k of (pred - target)^2.
Status mean_squared_error(const float* pred, const float* targets, int64_t batch, int64_t k, float* per_sample,
                          float* grad, void* stream);
// The CPU's batch mean from the reduced sum of per-sample losses (host arithmetic).
inline double loss_mean_from_sum(float sum, int64_t batch) {
  return static_cast<double>(sum / static_cast<float>(batch));
}

// ---------------------------------------------------------------------------------------------------------
// MaxPool2D (engine/layers/max_pool2d.cc), NHWC. The geometry is the layer's (Keras' window_1d).
using trainrr::PoolGeometry;  // engine/device_backend.h
// y [n, out_h, out_w, c] and argmax (same shape): the index of each maximum from its image's start, as the
// layer keeps it. The window is clipped to the input (padding never wins); ties go to the first cell in
// row-major window order; a NaN first cell stays the maximum, as on the CPU. An image must fit int32.
Status max_pool_forward(const PoolGeometry& g, const float* x, float* y, int32_t* argmax, void* stream);
// dx [n, h, w, c]: each output's gradient sent to its argmax, the contributions to one cell added in output
// order from 0 (a gather, one thread per cell: the CPU's bits without atomics).
Status max_pool_backward(const PoolGeometry& g, const float* dy, const int32_t* argmax, float* dx, void* stream);

// ---------------------------------------------------------------------------------------------------------
// BatchNormalization (engine/layers/batch_normalization.cc) over [rows, c], c = channels (the last axis).
// The layer's steps, with the two sums left to column_sums:
//   training forward:  column_sums(x) -> mean (c); scale(mean, 1 / rows); batch_norm_square_deviations;
//                      column_sums(sq) -> var (c); scale(var, 1 / rows); batch_norm_statistics;
//                      batch_norm_normalize(x, mean, ...)
//   inference forward: batch_norm_inverse_std(moving_variance); batch_norm_normalize(x, moving_mean, ...)
//   backward:          batch_norm_backward_columns; column_sums(scratch, rows, 2c) -> (dbeta | dgamma);
//                      batch_norm_backward_data
// with 1 / rows = 1.0f / static_cast<float>(rows), as the layer computes it.

// v[i] *= s for i < n (a column sum into a mean).
Status scale(float* v, int64_t n, float s, void* stream);
// sq[i, j] = (x[i, j] - mean[j])^2, rounded after the subtraction as the layer's stored deviation is.
Status batch_norm_square_deviations(const float* x, const float* mean, float* sq, int64_t rows, int64_t c,
                                    void* stream);
// Per channel: inv_std = 1 / sqrt(var + epsilon); moving = moving * momentum + batch * one_minus_momentum
// (momentum and epsilon as the layer rounds them to float; one_minus_momentum = float(1.0 - momentum) in double).
Status batch_norm_statistics(const float* mean, const float* var, float epsilon, float momentum,
                             float one_minus_momentum, float* inv_std, float* moving_mean,
                             float* moving_variance, int64_t c, void* stream);
// Inference: inv_std = 1 / sqrt(moving_variance + epsilon).
Status batch_norm_inverse_std(const float* variance, float epsilon, float* inv_std, int64_t c, void* stream);
// xhat = (x - mean) * inv_std, y = xhat * gamma + beta; mean is the batch mean (training) or the moving mean.
Status batch_norm_normalize(const float* x, const float* mean, const float* inv_std, const float* gamma,
                            const float* beta, float* xhat, float* y, int64_t rows, int64_t c, void* stream);
// scratch [rows, 2c]: columns [0, c) = dy, [c, 2c) = dy * xhat, to be reduced into (dbeta | dgamma).
Status batch_norm_backward_columns(const float* dy, const float* xhat, float* scratch, int64_t rows, int64_t c,
                                   void* stream);
// dx: training (batch statistics): gamma * inv_std * (1/m) * (m * dy - dbeta - xhat * dgamma), m = rows;
// inference: dy * gamma * inv_std.
Status batch_norm_backward_data(const float* dy, const float* xhat, const float* gamma, const float* inv_std,
                                const float* dbeta, const float* dgamma, bool training, float* dx, int64_t rows,
                                int64_t c, void* stream);

// ---------------------------------------------------------------------------------------------------------
// Optimizer updates (engine/optimizer.cc), elementwise over one parameter of n values. The hyperparameters
// come from the run's OptimizerConfig and are rounded to float exactly as the CPU optimizer rounds them;
// Adam's bias correction is computed on the host in double (adam_scalars), as the CPU does.

// sgd: w -= lr * g; with momentum > 0 (momentum slot required): m = momentum * m - lr * g; w += m, or with
// nesterov w += momentum * m - lr * g.
Status sgd_update(const OptimizerConfig& c, float* w, const float* g, float* momentum, int64_t n, void* stream);

// The per-step floats of Adam and AdamW: lr_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) in double (the powers
// by `math`, as the CPU's Optimizer::power), then each rounded to float once.
struct AdamScalars {
  float lr_t = 0, one_minus_beta_1 = 0, one_minus_beta_2 = 0, epsilon = 0;
  float decay = 0;  // lr * weight_decay for adamw (0 for adam): w -= w * decay first
};
AdamScalars adam_scalars(const OptimizerConfig& c, int64_t t, MathFamily math);
// adam or adamw (c.type) at the 1-based iteration t: m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
// w -= lr_t * m / (sqrt(v) + eps).
Status adam_update(const OptimizerConfig& c, int64_t t, MathFamily math, float* w, const float* g, float* m,
                   float* v, int64_t n, void* stream);
// rmsprop: velocity always; momentum slot when c.momentum > 0; average_gradient slot when c.centered (the
// slots not used may be null).
Status rmsprop_update(const OptimizerConfig& c, float* w, const float* g, float* velocity, float* momentum,
                      float* average_gradient, int64_t n, void* stream);

// ---------------------------------------------------------------------------------------------------------
// Conv2D's layout steps (engine/kernels/conv_im2col.h), NHWC input, HWIO filter; only the geometry fields of
// `p` are read (its pointers are ignored). A forward convolution is then col [n * out_h * out_w, kh * kw * c_in]
// times the filter [kh * kw * c_in, c_out] = y [n, out_h, out_w, c_out]; the data gradient is
// dcol = dy * filter^T followed by col2im; the filter gradient is col^T * dy.

// col = the receptive fields of images [img0, img0 + images) of x, one image's rows after another's (the CPU's
// per-image layout, concatenated): [images * out_h * out_w, kh * kw * c_in], zero outside the image.
Status im2col(const Conv2dArgs& p, const float* x, int64_t img0, int64_t images, float* col, void* stream);
// dx for images [img0, img0 + images) = dcol's rows added back to the pixels they were gathered from: each
// pixel sums its contributions in increasing (oy, ox) from 0, as the CPU's col2im (gathered per pixel, no
// atomics). dx is overwritten; dcol is [images * out_h * out_w, kh * kw * c_in].
Status col2im(const Conv2dArgs& p, const float* dcol, int64_t img0, int64_t images, float* dx, void* stream);
// out [cols, rows] = in [rows, cols] transposed, as stored row-major: out[c * rows + r] = in[r * cols + c]. The
// HWIO filter, as [kh * kw * c_in, c_out], becomes cuDNN's KRSC ([c_out, kh * kw * c_in]) and back.
Status transpose(const float* in, float* out, int64_t rows, int64_t cols, void* stream);

// ---------------------------------------------------------------------------------------------------------
// Column sums out[j] = sum over i < rows of x[i * cols + j] (the ReduceArgs of engine/kernels/reduce.h): bias
// gradients, the batch-norm sums, the loss mean. rows == 0 gives zeros. Two kernels, with ids in the CPU's
// naming (f32_sum__cpu_...):
//   f32_sum__cuda_tree    fixed order. Each thread sums a fixed grid-stride set of rows in increasing order;
//                         the threads of a block are combined by a shared-memory tree with fixed pairing; each
//                         block writes its partial; a second launch of fixed shape combines the partials the same
//                         way. Bitwise deterministic for a given plan, and the plan is a function of (rows, cols)
//                         alone (not of the GPU), so the bits are too.
//   f32_sum__cuda_atomic  the same per-block partials added into out with atomicAdd (out is zeroed first, by a
//                         cudaMemsetAsync, not a kernel): the order of the additions is the order in which blocks
//                         finish, so the bits can vary from call to call (not where the plan has one block row:
//                         one addition per output). Recorded as a nondeterministic kernel choice.
inline constexpr const char* kReduceTreeId = "f32_sum__cuda_tree";
inline constexpr const char* kReduceAtomicId = "f32_sum__cuda_atomic";

enum class ReduceVariant : uint8_t { tree, atomic };
const char* reduce_kernel_id(ReduceVariant v);

struct ReducePlan {
  LaunchShape partials;          // the first launch: per-block partial sums (atomic: added into out)
  bool combines = false;         // tree only: a second launch combines the partials (none when one block row)
  LaunchShape combine;           // that second launch's shape
  size_t workspace_bytes = 0;    // device scratch the caller provides (the partials), 0 when none
  int64_t rows_per_thread = 0;   // the most rows one thread adds in sequence (for error bounds)
};
ReducePlan plan_column_sums(ReduceVariant v, int64_t rows, int64_t cols);

// workspace: at least plan_column_sums(...).workspace_bytes of device memory (may be null when that is 0).
Status column_sums_cuda_tree(const float* x, int64_t rows, int64_t cols, float* out, float* workspace,
                             void* stream);
Status column_sums_cuda_atomic(const float* x, int64_t rows, int64_t cols, float* out, void* stream);
Status column_sums(ReduceVariant v, const float* x, int64_t rows, int64_t cols, float* out, float* workspace,
                   void* stream);

}  // namespace trainrr::cuda
