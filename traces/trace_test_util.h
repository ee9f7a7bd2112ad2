#pragma once
// A small trace holding every kind of message and event, shared by the tests and the fuzz corpus generator.

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/fingerprint.h"
#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/conv_sites.h"
#include "engine/kernels/cudnn_choice.h"
#include "traces/trace.h"
#include "traces/trace_writer.h"

namespace trainrr {

// A cuBLASLt choice as the CUDA backend records one: two candidates, the second split over K.
inline KernelChoice sample_gpu_matmul_choice() {
  KernelChoice k{"dense_2/matmul.fwd", "matmul", {}, "", "default: cuBLASLt's heuristic's first", {}};
  BlasLtAlgo a;
  a.data = {0x15, 0x12, 0x1400000000, 0, 0, 0, 0, 0xffffffffffffffff};
  a.id = 21, a.tile = 18, a.stages = 20, a.workspace = 0, a.waves = 0.25f;
  BlasLtAlgo b = a;
  b.data[2] = 0x1400000004;
  b.split_k = 4, b.reduction = 1, b.workspace = 1 << 20, b.waves = 1.0f, b.cluster_shape = 2;
  k.blaslt = {a, b};
  for (const BlasLtAlgo& x : k.blaslt) k.candidates.push_back(blaslt_kernel_id(x));
  k.chosen = k.candidates[0];
  k.blaslt_version = 130100;
  return k;
}

// A cuDNN choice: two engines, the first declared nondeterministic, taken by the deterministic policy's rules.
inline KernelChoice sample_gpu_conv_choice() {
  KernelChoice k{"conv2d_1/conv.bwd_filter", "conv2d_bwd_filter", {}, "", "deterministic: the heuristic's first "
                 "engine not declared nondeterministic (1 rejected)", {}};
  CudnnEngine a;
  a.global_index = 3;
  a.numerical_notes = {kCudnnNoteNondeterministic};
  a.workspace = 4096;
  CudnnEngine b;
  b.global_index = 34;
  b.knobs = {{2, 3}, {14, 4}};
  b.numerical_notes = {kCudnnNoteTensorCore};
  b.behavior_notes = {4};
  k.cudnn = {a, b};
  for (const CudnnEngine& e : k.cudnn) k.candidates.push_back(cudnn_kernel_id(OpKind::conv2d_bwd_filter, e));
  k.chosen = k.candidates[1];
  k.cudnn_version = 91900;
  k.plan_json = R"({"engineId":34,"knobs":{"TILE_SIZE":3}})";
  return k;
}

// A conv site as the CUDA device records one: cuDNN's two engines, then the im2col + cuBLASLt variant, which
// the deterministic policy took (every engine nondeterministic), with the one cuBLASLt algorithm it runs.
inline KernelChoice sample_gpu_conv_site_choice() {
  KernelChoice k{"conv2d_1/conv.fwd", "conv2d_fwd", {}, "", "deterministic: the im2col + cuBLASLt variant, every "
                 "cuDNN engine being declared nondeterministic (2 rejected)", {}};
  CudnnEngine a;
  a.global_index = 3;
  a.numerical_notes = {kCudnnNoteNondeterministic};
  CudnnEngine b;
  b.global_index = 57;
  b.knobs = {{17, 2}};
  b.numerical_notes = {kCudnnNoteTensorCore, kCudnnNoteNondeterministic};
  b.workspace = 1 << 16;
  k.cudnn = {a, b};
  k.candidates = conv_site_candidates(OpKind::conv2d_fwd, k.cudnn);
  k.cudnn_version = 91900;
  BlasLtAlgo algo;
  algo.data = {0x6, 0x12, 0x1400000000, 0, 0, 0, 0, 0x42};
  algo.id = 6, algo.tile = 18, algo.stages = 20, algo.waves = 0.5f;
  k.blaslt = {algo};
  k.blaslt_version = 130100;
  k.chosen = k.candidates.back();
  return k;
}

// Equality of the engine types the trace carries, for comparing what was written with what was read.
inline bool operator==(const RngDraw& a, const RngDraw& b) {
  return a.site == b.site && a.stream == b.stream && a.key == b.key && a.counter == b.counter && a.count == b.count;
}
inline bool operator==(const KernelChoice& a, const KernelChoice& b) {
  return a.site == b.site && a.op == b.op && a.candidates == b.candidates && a.chosen == b.chosen &&
         a.reason == b.reason && a.timings_us == b.timings_us && a.blaslt == b.blaslt &&
         a.blaslt_version == b.blaslt_version && a.tf32 == b.tf32 && a.launch == b.launch && a.cudnn == b.cudnn &&
         a.cudnn_version == b.cudnn_version && a.plan_json == b.plan_json;
}
inline bool operator==(const Summary& a, const Summary& b) {
  return a.count == b.count && a.sum == b.sum && a.sum_sq == b.sum_sq && a.min == b.min && a.max == b.max &&
         a.non_finite == b.non_finite;
}
inline bool operator==(const Fingerprint& a, const Fingerprint& b) {
  return a.digest == b.digest && a.summary == b.summary;
}
inline bool operator==(const Tensor& a, const Tensor& b) { return a.shape == b.shape && a.data == b.data; }
inline bool operator==(const NamedTensor& a, const NamedTensor& b) { return a.name == b.name && a.value == b.value; }
inline bool operator==(const TrainState& a, const TrainState& b) {
  return a.step == b.step && a.epoch == b.epoch && a.batch_in_epoch == b.batch_in_epoch && a.seed == b.seed &&
         a.tensors == b.tensors && a.rng_offsets == b.rng_offsets && a.permutation == b.permutation &&
         a.scalars == b.scalars && a.batches_done == b.batches_done;
}

namespace trace {

inline bool operator==(const RngDrawEvent& a, const RngDrawEvent& b) { return a.draw == b.draw && a.digest == b.digest; }
inline bool operator==(const SplitEvent& a, const SplitEvent& b) {
  return a.site == b.site && a.train == b.train && a.test == b.test;
}
inline bool operator==(const ShuffleEvent& a, const ShuffleEvent& b) {
  return a.site == b.site && a.epoch == b.epoch && a.length == b.length && a.digest == b.digest && a.draw == b.draw &&
         a.permutation == b.permutation;
}
inline bool operator==(const BatchOrderEvent& a, const BatchOrderEvent& b) { return a.batch == b.batch; }
inline bool operator==(const AccumulationOrderEvent& a, const AccumulationOrderEvent& b) {
  return a.site == b.site && a.order == b.order;
}
inline bool operator==(const ProbeEvent& a, const ProbeEvent& b) {
  return a.site == b.site && a.phase == b.phase && a.fingerprint == b.fingerprint;
}
inline bool operator==(const StepEnd& a, const StepEnd& b) {
  return a.loss == b.loss && a.metrics == b.metrics && a.params == b.params && a.grads == b.grads;
}
inline bool operator==(const TraceStep& a, const TraceStep& b) {
  return a.index == b.index && a.epoch == b.epoch && a.batch == b.batch && a.events == b.events && a.end == b.end &&
         a.kernels == b.kernels;
}
inline bool operator==(const TraceEpoch& a, const TraceEpoch& b) { return a.epoch == b.epoch && a.logs == b.logs; }

namespace testing_util {

inline TraceHeader sample_header() {
  TraceHeader h;
  h.config = "[model]\nlayers = [\"dense 8 relu\", \"dense 2\"]\n[train]\nepochs = 2\n";
  h.config_path = "examples/tiny.toml";
  h.config_overrides = {"train.epochs=2", "optimizer.lr=0.01"};
  h.seed = 42;
  h.level = ProbeLevel::op;
  h.checkpoint_every = 3;
  h.environment = {{"host", "testhost"}, {"cpu.flags", "avx2 fma"}, {"env.OPENBLAS_CORETYPE", "Haswell"}};
  DatasetInfo d;
  d.name = "features";
  d.path = "data/tiny.npy";
  d.embedded = {'a', ',', 'b', '\n', '1', ',', '2', '\n'};
  d.size_bytes = d.embedded.size();
  d.digest = digest128_bytes(d.embedded);
  h.datasets.push_back(d);
  h.datasets.push_back({"labels", "data/tiny_labels.npy", 1234, {7, 8}, {}});
  h.kernels_recorded = true;  // the sample steps carry kernel records
  h.moving_statistics = true;
  return h;
}

inline std::vector<uint32_t> sample_permutation(uint32_t n, uint32_t salt) {
  std::vector<uint32_t> p(n);
  for (uint32_t i = 0; i < n; ++i) p[i] = (i * 7 + salt) % n;  // a permutation when gcd(7, n) = 1
  return p;
}

// The GPU kernels of sample step `i`, as CUPTI attributed them: a cuBLASLt matmul, a reduction, one kernel no op
// launched; step 2 ran another matmul kernel, in another grid, and CUPTI dropped records in step 3.
inline StepKernels sample_kernels(int64_t i) {
  const std::string gemm = i == 2 ? "sm90_xmma_gemm_f32f32_tf32f32_f32_tn_n_tilesize128x128x32_cgasize1x2x1"
                                  : "sm90_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize64x64x8_stage3";
  std::vector<KernelLaunch> launches = {
      {"dense_1/matmul.fwd", gemm, i == 2 ? 8u : 4u, 2, 1, 128, 1, 1, 16384, 0, 5200 + static_cast<uint64_t>(i)},
      {"dense_1/bias.bwd", "_ZN7trainrr4cuda11reduce_rowsEPKfPfii", 40, 1, 1, 256, 1, 1, 1024, 0, 1800},
      {std::string(kUnattributedSite), "_ZN8cublasLt19splitKreduce_kernelIffEEvv", 1, 1, 1, 32, 1, 1, 0, 512, 0},
      {"dense_1/matmul.fwd", "_ZN7trainrr4cuda9bias_add_EPfPKfii", 2, 1, 1, 256, 1, 1, 0, 0, 900},
  };
  return step_kernels(std::move(launches), i == 3 ? 17 : 0, ProbeLevel::op);
}

inline TrainState sample_checkpoint(int64_t step);

// Step `i` of the sample: the first one carries the run's one-off events, every one a probe and an end. Its
// parameters' digests are those of the sample checkpoint's tensors, which a checkpoint after it holds.
inline TraceStep sample_step(int64_t i) {
  TraceStep s;
  s.index = i;
  s.epoch = static_cast<int>(i / 2);
  s.batch = i % 2;
  if (i == 0) {
    s.events.push_back(RngDrawEvent{{"init/dense_1.kernel", "init", 11, 0, 64}, 0x1234});
    s.events.push_back(SplitEvent{"data/split", {0, 2, 3, 5}, {1, 4}});
    s.events.push_back(KernelChoice{"dense_1/matmul.fwd", "matmul", {"f32_matmul__cpu_naive", "f32_matmul__cpu_blocked"},
                                    "f32_matmul__cpu_blocked", "autotune", {12.5, 3.25}});
    s.events.push_back(KernelChoice{"dense_1/sum", "sum", {"f32_sum__cpu"}, "f32_sum__cpu", "default: only one", {}});
    s.events.push_back(sample_gpu_matmul_choice());
    KernelChoice reduce{"dense_1/bias.bwd", "reduce", {"f32_reduce__cuda_atomic", "f32_reduce__cuda_tree"},
                        "f32_reduce__cuda_atomic", "default: the atomic variant", {}};
    reduce.launch = LaunchShape{40, 1, 1, 256, 1, 1, 1024};
    s.events.push_back(reduce);
    s.events.push_back(sample_gpu_conv_choice());
    s.events.push_back(sample_gpu_conv_site_choice());
  }
  if (i % 2 == 0) {
    ShuffleEvent sh;
    sh.site = "data/shuffle";
    sh.epoch = s.epoch;
    if (s.epoch % 2 == 0) {
      sh.permutation = sample_permutation(10, static_cast<uint32_t>(i));
      sh.length = sh.permutation.size();
      sh.digest = digest(std::span<const uint32_t>(sh.permutation));
    } else {
      sh.length = 10;
      sh.digest = 99;
      sh.draw = RngDraw{"data/shuffle", "shuffle", 5, 40 * static_cast<uint64_t>(i), 9};  // n - 1 words
    }
    s.events.push_back(sh);
  }
  s.events.push_back(BatchOrderEvent{s.batch});
  s.events.push_back(RngDrawEvent{{"dropout/dropout_1", "dropout", 9, 100 * static_cast<uint64_t>(i), 16}, 77 + static_cast<uint64_t>(i)});
  Fingerprint fp{0xabcdef00 + static_cast<uint64_t>(i), {16, 1.5, 3.25, -1.0f, 2.0f, 0}};
  s.events.push_back(ProbeEvent{"dense_1/matmul.fwd:out", Phase::forward, fp});
  s.events.push_back(ProbeEvent{"dense_1/matmul.bwd:dx", Phase::backward, fp});
  s.events.push_back(AccumulationOrderEvent{"batch_normalization_1/bn_stats.fwd", {3, 0, 2, 1}});
  // A step opens with its batch order (stored in a field of its own) or not (stored in the event list):
  // both must read back in place, and a second batch order stays an event.
  if (i == 3) s.events.push_back(BatchOrderEvent{7});
  StepEnd end;
  end.loss = 0.5 / static_cast<double>(i + 1);
  end.metrics = {{"accuracy", 0.25 * static_cast<double>(i % 4)}};
  const TrainState after = sample_checkpoint(i + 1);
  end.params = {{"dense_1.kernel", digest(after.tensors[0].value)},
                {"dense_1.bias", digest(after.tensors[1].value)}};
  end.grads = {{"dense_1.kernel", 300 + static_cast<uint64_t>(i)}, {"dense_1.bias", 400 + static_cast<uint64_t>(i)}};
  if (i >= 3) end.metrics.push_back({"auc", 0.75});  // a name list that changes mid-run
  s.end = end;
  s.kernels = sample_kernels(i);
  return s;
}

inline TrainState sample_checkpoint(int64_t step) {
  TrainState c;
  c.step = step;
  c.epoch = static_cast<int>(step / 2);
  c.batch_in_epoch = step % 2;
  c.seed = 42;
  std::vector<float> k(8 * 3);
  for (size_t i = 0; i < k.size(); ++i) k[i] = 0.125f * static_cast<float>(i) - 1.0f;
  c.tensors.push_back({"dense_1.kernel", Tensor({8, 3}, k)});
  c.tensors.push_back({"dense_1.bias", Tensor({3}, 0.5f)});
  c.tensors.push_back({"empty", Tensor({0, 4})});
  c.rng_offsets = {{"dropout", 100 * static_cast<uint64_t>(step)}, {"shuffle", 40}};
  c.permutation = sample_permutation(10, 3);
  c.scalars = {{"adam.iterations", static_cast<double>(step)}};
  c.batches_done = {1, 0};
  return c;
}

struct SampleTrace {
  std::vector<TraceStep> steps;
  std::vector<TrainState> checkpoints;
  std::vector<uint64_t> message_ends;  // byte offset after each message, header first
};

// Writes header, `steps` steps with an epoch end every 2 and a checkpoint after step 2 (checkpointEvery 3),
// and, when `finish`, the final state and a footer that says the run completed.
inline SampleTrace write_sample_trace(const std::string& path, int steps = 4, bool finish = true) {
  SampleTrace out;
  auto w = TraceWriter::create(path, sample_header());
  if (!w) throw std::runtime_error(w.error().message);
  out.message_ends.push_back((*w)->bytes_written());
  for (int i = 0; i < steps; ++i) {
    out.steps.push_back(sample_step(i));
    if (Status s = (*w)->write_step(out.steps.back()); !s) throw std::runtime_error(s.error().message);
    out.message_ends.push_back((*w)->bytes_written());
    if (i % 2 == 1) {
      if (Status s = (*w)->write_epoch(TraceEpoch{i / 2, {{"loss", 0.5}, {"accuracy", 0.75}}}); !s)
        throw std::runtime_error(s.error().message);
      out.message_ends.push_back((*w)->bytes_written());
    }
    if (i == 2) {
      out.checkpoints.push_back(sample_checkpoint(3));
      if (Status s = (*w)->write_checkpoint(out.checkpoints.back()); !s) throw std::runtime_error(s.error().message);
      out.message_ends.push_back((*w)->bytes_written());
    }
  }
  if (finish) {
    if (steps > 0 && steps != 3) {
      out.checkpoints.push_back(sample_checkpoint(steps));
      if (Status s = (*w)->write_checkpoint(out.checkpoints.back()); !s)
        throw std::runtime_error(s.error().message);
      out.message_ends.push_back((*w)->bytes_written());
    }
    if (Status s = (*w)->finish(TraceFooter{true, "completed", 0, 0, {}}); !s)
      throw std::runtime_error(s.error().message);
    out.message_ends.push_back((*w)->bytes_written());
  }
  return out;
}

inline std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace testing_util
}  // namespace trace
}  // namespace trainrr
