#pragma once
// The kernels a run launches, step by step, from a kernel source (recorder/kernel_source.h): each op of a step
// is tagged with its external id, (step << 20) | op index, pushed at the step's begin and re-pushed after each
// op_done; at the step's end what the source gathered is flushed and joined to the ops. The recorder writes what
// it gathers into the trace; a replay on the GPU gathers its own to compare with the recorded ones.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "recorder/kernel_source.h"
#include "traces/trace.h"

namespace trainrr {

class KernelGatherer {
 public:
  KernelGatherer() = default;
  KernelGatherer(const KernelGatherer&) = delete;
  KernelGatherer& operator=(const KernelGatherer&) = delete;
  ~KernelGatherer() { stop(); }

  // Starts gathering from `source`, or says why it cannot: no source (a build without CUPTI), or the source's
  // own words when it does not start.
  Status start(std::unique_ptr<KernelSource> source);
  bool gathering() const { return source_ != nullptr; }
  // Between step_begin and step_end.
  bool in_step() const { return in_step_; }

  void step_begin(int64_t step);
  // `site` is an op's (a probe's site names its op with the suffix ":out", which is dropped).
  void op_done(std::string_view site);
  // The kernels of the step, at `level`, once the kernels its ops launched have run; none when the step ran no
  // kernel (or none is in progress). The site of the kernels after the last op is `end_site`.
  std::optional<trace::StepKernels> step_end(ProbeLevel level, std::string_view end_site);
  // Stops gathering; kernels launched since the last step's end (a final evaluation) belong to no step.
  void stop();

 private:
  void tag(uint32_t op);
  std::unique_ptr<KernelSource> source_;
  bool in_step_ = false;               // between step_begin and step_end
  bool tagged_ = false;                // an external id is pushed
  int64_t step_ = 0;                   // the step in progress
  uint32_t op_ = 0;                    // the index of the op in progress in this step
  std::vector<std::string> op_sites_;  // op index -> site, this step's first op_ entries
};

}  // namespace trainrr
