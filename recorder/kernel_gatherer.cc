#include "recorder/kernel_gatherer.h"

#include <algorithm>

namespace trainrr {

Status KernelGatherer::start(std::unique_ptr<KernelSource> source) {
  stop();
  if (!source) return Error{"this trainrr was built without a kernel source (CUPTI, the CUDA backend)"};
  if (Status s = source->start(); !s)
    return Error{s.error().message.empty() ? "the kernel source did not start" : s.error().message};
  source_ = std::move(source);
  return {};
}

void KernelGatherer::step_begin(int64_t step) {
  if (!source_) return;
  if (tagged_) source_->pop();
  tagged_ = false;
  in_step_ = true;
  step_ = step;
  op_ = 0;
  tag(0);
}

void KernelGatherer::op_done(std::string_view site) {
  if (!source_ || !in_step_) return;  // evaluation, outside every step
  // A probe's site names its op with the probe's suffix: "dense_1/matmul.fwd:out" is the op "dense_1/matmul.fwd",
  // "dense_1:out" the layer's work after its last probed op (its fused bias and activation, say).
  if (site.ends_with(":out")) site.remove_suffix(4);
  if (op_ < op_sites_.size()) {
    if (op_sites_[op_] != site) op_sites_[op_].assign(site);  // the same sites every step: no allocation
  } else {
    op_sites_.emplace_back(site);
  }
  if (tagged_) source_->pop();
  tagged_ = false;
  tag(op_ + 1);
}

void KernelGatherer::tag(uint32_t op) {
  op_ = op;
  // An id that cannot be formed (a step past 2^43, an op past 2^20) leaves the op's kernels untagged: they are
  // gathered as launched outside every op.
  Result<uint64_t> id = external_id(step_, op);
  tagged_ = id.ok();
  if (tagged_) source_->push(*id);
}

std::optional<trace::StepKernels> KernelGatherer::step_end(ProbeLevel level, std::string_view end_site) {
  if (!source_ || !in_step_) return std::nullopt;
  if (tagged_) source_->pop();
  tagged_ = false;
  in_step_ = false;
  // The kernels of the step's ops have run: the trainer read the step's results back before its end.
  KernelRecords records = source_->flush();
  std::vector<std::string> sites(op_sites_.begin(), op_sites_.begin() + std::min<size_t>(op_, op_sites_.size()));
  sites.emplace_back(end_site);  // op index op_: after the last op
  Attributor attributor(std::move(sites));
  for (KernelRecord& k : records.kernels) attributor.add(std::move(k));
  for (const ExternalCorrelationRecord& e : records.external) attributor.add(e);
  for (const ApiRecord& a : records.api) attributor.add(a);
  attributor.add_dropped(records.dropped);
  Attribution attribution = attributor.join();
  if (attribution.seen == 0 && attribution.dropped == 0) return std::nullopt;  // the step ran no kernel
  // A kernel tagged with another step's id (delivered after that step's end) cannot join that step, whose
  // record is done: it is kept in this one, unattributed, rather than lost.
  for (AttributedKernel& k : attribution.kernels)
    if (k.at && k.at->step != step_) {
      k.why = "launched by op " + std::to_string(k.at->op) + " of step " + std::to_string(k.at->step) +
              ", delivered after that step's end";
      k.at.reset();
      k.site = std::string(trace::kUnattributedSite);
    }
  return step_kernels(attribution, step_, level, true);
}

void KernelGatherer::stop() {
  if (!source_) return;
  if (tagged_) source_->pop();
  tagged_ = false;
  in_step_ = false;
  source_->stop();
  source_.reset();
}

}  // namespace trainrr
