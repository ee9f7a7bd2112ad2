#pragma once
// Where the recorder gets the GPU kernels of a run: CUPTI's activity records (cuda/cupti_session.h) in a build
// with the CUDA backend, a fake in the tests. The recorder tags every op by pushing an external correlation id,
// (step << 20) | op index (recorder/kernel_attribution.h), around the op's work, and at each step's end flushes
// what the source gathered and joins it to the ops.

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "engine/result.h"
#include "recorder/kernel_attribution.h"

namespace trainrr {

// What a source gathered since its previous flush, in the order it delivered it.
struct KernelRecords {
  std::vector<KernelRecord> kernels;
  std::vector<ExternalCorrelationRecord> external;
  std::vector<ApiRecord> api;
  // Kernels known to be lost: activity records the source dropped (CUPTI's buffers were full), and at least one
  // for each buffer it could not read whole.
  uint64_t dropped = 0;
};

class KernelSource {
 public:
  virtual ~KernelSource() = default;
  // Starts gathering, or says why kernels cannot be recorded here ("CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED:
  // another profiler is attached", "cannot load CUPTI 13 ..."). Called once, before the first push.
  virtual Status start() = 0;
  // The kernels launched from this thread until the matching pop() carry `external_id`.
  virtual void push(uint64_t external_id) = 0;
  virtual void pop() = 0;
  // Everything gathered since the previous flush, once the kernels launched so far have run.
  virtual KernelRecords flush() = 0;
  // Stops gathering; what was not flushed is lost. Called once, after start() succeeded.
  virtual void stop() = 0;
};

// A source for a run on the GPU. A build with the CUDA backend registers CUPTI's (tools/main.cc,
// python/src/module.cc); without one, a run records no kernels.
using KernelSourceFactory = std::unique_ptr<KernelSource> (*)();
void set_kernel_source_factory(KernelSourceFactory factory);
KernelSourceFactory kernel_source_factory();

}  // namespace trainrr
