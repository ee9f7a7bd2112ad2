#include "recorder/kernel_attribution.h"

#include <algorithm>
#include <set>
#include <utility>

namespace trainrr {

namespace {

// Steps fit the 64 bits above the op index with room to spare; the bound keeps (step << 20) from overflowing.
constexpr int64_t kMaxStep = int64_t{1} << (63 - kOpIndexBits);

const char* domain_name(ApiDomain d) { return d == ApiDomain::runtime ? "runtime" : "driver"; }

}  // namespace

Result<uint64_t> external_id(int64_t step, uint32_t op) {
  if (step < 0 || step >= kMaxStep)
    return Error{"step " + std::to_string(step) + " cannot be tagged: an external correlation id holds steps 0.." +
                 std::to_string(kMaxStep - 1)};
  if (op >= kMaxOpsPerStep)
    return Error{"op index " + std::to_string(op) + " of step " + std::to_string(step) +
                 " cannot be tagged: an external correlation id holds " + std::to_string(kMaxOpsPerStep) +
                 " ops per step"};
  return (static_cast<uint64_t>(step) << kOpIndexBits) | op;
}

StepOp step_op(uint64_t id) {
  return {static_cast<int64_t>(id >> kOpIndexBits), static_cast<uint32_t>(id & (kMaxOpsPerStep - 1))};
}

std::vector<int64_t> Attribution::steps() const {
  std::set<int64_t> s;
  for (const AttributedKernel& k : kernels)
    if (k.at) s.insert(k.at->step);
  return {s.begin(), s.end()};
}

Attributor::Attributor(std::vector<std::string> op_sites) : op_sites_(std::move(op_sites)) {}

void Attributor::add(KernelRecord k) { kernels_.push_back(std::move(k)); }

void Attributor::add(const ExternalCorrelationRecord& e) {
  if (e.external_kind != kTrainrrExternalKind) {
    other_kind_.emplace(e.correlation_id, e.external_kind);
    return;
  }
  std::vector<uint64_t>& ids = ours_[e.correlation_id];
  if (std::find(ids.begin(), ids.end(), e.external_id) == ids.end()) ids.push_back(e.external_id);
}

void Attributor::add(const ApiRecord& a) { api_[a.correlation_id] = a; }

void Attributor::clear() {
  kernels_.clear();
  ours_.clear();
  other_kind_.clear();
  api_.clear();
  dropped_ = 0;
}

Attribution Attributor::join() const {
  Attribution out;
  out.dropped = dropped_;
  out.kernels.reserve(kernels_.size());
  for (const KernelRecord& k : kernels_) {
    AttributedKernel a;
    a.kernel = k;
    const uint32_t corr = k.correlation_id;
    if (auto api = api_.find(corr); api != api_.end()) a.api = api->second;
    const std::string launched_by =
        a.api ? std::string("the ") + domain_name(a.api->domain) + " API call (cbid " + std::to_string(a.api->cbid) +
                    ", correlation id " + std::to_string(corr) + ")"
              : "its launch (correlation id " + std::to_string(corr) + ")";
    if (auto ours = ours_.find(corr); ours != ours_.end()) {
      const std::vector<uint64_t>& ids = ours->second;
      if (ids.size() > 1) {
        // Each kind has one id on top of its stack per call: two ids of trainrr's kind mean records of two runs
        // or two processes were mixed, and no op can be trusted.
        std::string list;
        for (uint64_t id : ids) list += (list.empty() ? "" : ", ") + std::to_string(id);
        a.why = launched_by + " carries " + std::to_string(ids.size()) + " of trainrr's external ids (" + list +
                "): which op launched it is ambiguous";
      } else {
        const StepOp at = step_op(ids.front());
        if (at.op >= op_sites_.size()) {
          a.why = launched_by + " carries op index " + std::to_string(at.op) + " of step " + std::to_string(at.step) +
                  ", which is not in the op site table (" + std::to_string(op_sites_.size()) + " ops)";
        } else {
          a.at = at;
          a.site = op_sites_[at.op];
        }
      }
    } else if (auto other = other_kind_.find(corr); other != other_kind_.end()) {
      a.why = launched_by + " carries another tool's external correlation id (kind " + std::to_string(other->second) +
              ") and none of trainrr's: it was launched outside every op";
    } else if (a.api) {
      a.why = launched_by + " carries no external correlation id: it was launched outside every op";
    } else {
      a.why = "CUPTI delivered neither the API record nor an external correlation for its launch (correlation id " +
              std::to_string(corr) +
              "): RUNTIME and DRIVER activity were not enabled, or their records were dropped";
    }
    if (!a.at) a.site = std::string(trace::kUnattributedSite);
    out.kernels.push_back(std::move(a));
  }
  // Launch order. The sort is stable, so two launches with the same start and correlation id (one call that
  // launched several kernels) keep the order CUPTI delivered them in.
  std::stable_sort(out.kernels.begin(), out.kernels.end(), [](const AttributedKernel& x, const AttributedKernel& y) {
    return std::pair(x.kernel.start_ns, x.kernel.correlation_id) < std::pair(y.kernel.start_ns, y.kernel.correlation_id);
  });
  out.seen = out.kernels.size();
  for (size_t i = 0; i < out.kernels.size(); ++i) {
    if (out.kernels[i].at)
      ++out.attributed;
    else
      out.unattributed.push_back(i);
  }
  return out;
}

trace::StepKernels step_kernels(const Attribution& a, int64_t step, ProbeLevel level, bool charged) {
  std::vector<trace::KernelLaunch> launches;
  for (const AttributedKernel& k : a.kernels) {
    if (k.at ? k.at->step != step : !charged) continue;
    const KernelRecord& r = k.kernel;
    launches.push_back({k.site, r.name, r.grid_x, r.grid_y, r.grid_z, r.block_x, r.block_y, r.block_z,
                        r.static_shared, r.dynamic_shared, k.duration_ns()});
  }
  return trace::step_kernels(std::move(launches), charged ? a.dropped : 0, level);
}

}  // namespace trainrr
