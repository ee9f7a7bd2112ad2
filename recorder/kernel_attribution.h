#pragma once
// Which step and op launched each GPU kernel. On the GPU the kernel that runs is chosen inside cuDNN or
// cuBLASLt, and only CUPTI sees it: its activity API reports each kernel with the correlation id of the API call
// that launched it, and, for every API call made while trainrr has pushed an external correlation id, a record
// joining that correlation id to trainrr's id, (step << 20) | op index. The Attributor joins the two.
//
// Plain C++: CUPTI's structs are converted to these records in cuda/cupti_records.h, so the join is built and
// tested without the CUDA Toolkit.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "traces/trace.h"

namespace trainrr {

// --- CUPTI's records, as plain values ---

// A CONCURRENT_KERNEL (or KERNEL) activity record: CUpti_ActivityKernel10.
struct KernelRecord {
  uint32_t correlation_id = 0;  // that of the runtime or driver API call that launched the kernel
  std::string name;             // as CUPTI gives it (mangled)
  uint32_t grid_x = 0, grid_y = 0, grid_z = 0;
  uint32_t block_x = 0, block_y = 0, block_z = 0;
  uint32_t static_shared = 0;   // bytes
  uint32_t dynamic_shared = 0;  // bytes
  uint64_t start_ns = 0, end_ns = 0;  // both 0: CUPTI gave no timestamps
  uint32_t stream_id = 0;
  uint32_t device_id = 0;
  bool operator==(const KernelRecord&) const = default;
};

// An EXTERNAL_CORRELATION record: CUpti_ActivityExternalCorrelation. CUPTI emits one before the API record of
// every call made inside a push/pop of an external id, one per external kind pushed.
struct ExternalCorrelationRecord {
  uint32_t correlation_id = 0;
  uint64_t external_id = 0;
  uint32_t external_kind = 0;  // CUpti_ExternalCorrelationKind
  bool operator==(const ExternalCorrelationRecord&) const = default;
};

enum class ApiDomain { runtime, driver };

// A RUNTIME or DRIVER activity record (CUpti_ActivityAPI): the call that launched a kernel, by callback id.
struct ApiRecord {
  uint32_t correlation_id = 0;
  uint32_t cbid = 0;  // cupti_runtime_cbid.h or cupti_driver_cbid.h, after `domain`
  ApiDomain domain = ApiDomain::runtime;
  bool operator==(const ApiRecord&) const = default;
};

// --- trainrr's external correlation ids ---

// The external kind trainrr pushes its ids under: CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0 (cupti_activity.h;
// cuda/cupti_records_test.cc checks the value against the header). Ids of other kinds belong to other tools.
inline constexpr uint32_t kTrainrrExternalKind = 3;
// The op index takes the low 20 bits of an external id, the step the rest.
inline constexpr int kOpIndexBits = 20;
inline constexpr uint32_t kMaxOpsPerStep = uint32_t{1} << kOpIndexBits;

struct StepOp {
  int64_t step = 0;
  uint32_t op = 0;
  bool operator==(const StepOp&) const = default;
};
// (step << 20) | op. `step` must be in [0, 2^43) and `op` < kMaxOpsPerStep; an Error says which is not.
Result<uint64_t> external_id(int64_t step, uint32_t op);
StepOp step_op(uint64_t external_id);

// --- the join ---

// One kernel, attributed or not.
struct AttributedKernel {
  KernelRecord kernel;
  std::optional<StepOp> at;  // the step and op that launched it; nullopt: unattributed
  std::string site;          // the op's site ("dense_1/matmul.fwd"); trace::kUnattributedSite when unattributed
  std::optional<ApiRecord> api;  // the call that launched it, when CUPTI delivered its record
  std::string why;               // unattributed: why no op could be named
  uint64_t duration_ns() const { return kernel.end_ns >= kernel.start_ns ? kernel.end_ns - kernel.start_ns : 0; }
};

struct Attribution {
  // Every kernel added, in launch order: by start time, then by correlation id (kernels without timestamps,
  // start 0, come first, in the order of their launches' ids).
  std::vector<AttributedKernel> kernels;
  uint64_t seen = 0;        // kernels.size()
  uint64_t attributed = 0;  // those with a step and op
  uint64_t dropped = 0;     // activity records CUPTI dropped (add_dropped): kernels that were never seen
  // Indices into `kernels` of those no op could be named for.
  std::vector<size_t> unattributed;
  // The steps attributed kernels belong to, in increasing order.
  std::vector<int64_t> steps() const;
};

class Attributor {
 public:
  // op_sites[i] is the site of op index i ("dense_1/matmul.fwd"), the same in every step.
  explicit Attributor(std::vector<std::string> op_sites);

  void add(KernelRecord k);
  void add(const ExternalCorrelationRecord& e);
  void add(const ApiRecord& a);
  // cuptiActivityGetNumDroppedRecords for a buffer's context and stream.
  void add_dropped(uint64_t n) { dropped_ += n; }

  // Joins everything added so far. Nothing added is left out: a kernel that cannot be attributed is listed
  // with why.
  Attribution join() const;
  // Forgets everything added: the records of one flush (CUPTI's forced flush at a step's end) are joined, then
  // cleared for the next.
  void clear();

  const std::vector<std::string>& op_sites() const { return op_sites_; }

 private:
  std::vector<std::string> op_sites_;
  std::vector<KernelRecord> kernels_;
  // correlation id -> the external ids CUPTI joined to it, of trainrr's kind and of any other.
  std::map<uint32_t, std::vector<uint64_t>> ours_;
  std::map<uint32_t, uint32_t> other_kind_;
  std::map<uint32_t, ApiRecord> api_;
  uint64_t dropped_ = 0;
};

// The kernel records of `step` for its trace message, at `level`: the kernels attributed to the step, in launch
// order. A flush can hold kernels of more than one step, and the kernels no op claims and the records CUPTI
// dropped belong to no step by themselves: they are charged to the one step `charged` says, the step whose end
// flushed them, under trace::kUnattributedSite and as its dropped count, so that each is counted once.
trace::StepKernels step_kernels(const Attribution& a, int64_t step, ProbeLevel level, bool charged);

}  // namespace trainrr
