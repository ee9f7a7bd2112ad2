#pragma once
// A kernel source for tests without a GPU: each push-pop period "launches" one kernel, delivered as CUPTI would
// deliver it (the kernel record, the external correlation of the launching call to the pushed id, the runtime API
// record of the call), so that a recorded run on the emulated device attributes one kernel to every op.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "recorder/kernel_source.h"

namespace trainrr::testing {

// The kernel the fake launches in op `op` of a step: its name and grid say which op launched it.
inline KernelRecord fake_kernel(uint32_t op, uint32_t correlation_id, uint64_t start_ns) {
  KernelRecord k;
  k.correlation_id = correlation_id;
  k.name = "_Z11fake_kernelILi" + std::to_string(op) + "EEvv";
  k.grid_x = op + 1, k.grid_y = 1, k.grid_z = 1;
  k.block_x = 128, k.block_y = 1, k.block_z = 1;
  k.static_shared = 256;
  k.start_ns = start_ns;
  k.end_ns = start_ns + 100 + op;
  return k;
}

class FakeKernelSource : public KernelSource {
 public:
  // What the recorder did with its sources, seen by the test after the recorder has dropped them.
  struct Log {
    int started = 0, stopped = 0;
    uint64_t pushes = 0, pops = 0, flushes = 0;
    bool nested = false;  // a push while one was open, or a pop without one
    std::string refuse;   // start() fails with this, when set
    uint64_t dropped_per_flush = 0;
    // Changes a kernel before it is delivered (a replay that launches another kernel in some op), when set.
    std::function<void(KernelRecord&)> edit;
  };
  explicit FakeKernelSource(std::shared_ptr<Log> log) : log_(std::move(log)) {}

  Status start() override {
    ++log_->started;
    if (!log_->refuse.empty()) return Error{log_->refuse};
    return {};
  }
  void push(uint64_t external_id) override {
    ++log_->pushes;
    if (open_) log_->nested = true;
    open_ = true;
    id_ = external_id;
  }
  void pop() override {
    ++log_->pops;
    if (!open_) {
      log_->nested = true;
      return;
    }
    open_ = false;
    const uint32_t correlation = ++correlation_;
    clock_ns_ += 1000;
    gathered_.kernels.push_back(fake_kernel(step_op(id_).op, correlation, clock_ns_));
    if (log_->edit) log_->edit(gathered_.kernels.back());
    gathered_.external.push_back({correlation, id_, kTrainrrExternalKind});
    gathered_.api.push_back({correlation, 505, ApiDomain::runtime});  // ___cudaLaunchKernel_v13000
  }
  KernelRecords flush() override {
    ++log_->flushes;
    gathered_.dropped = log_->dropped_per_flush;
    return std::exchange(gathered_, {});
  }
  void stop() override { ++log_->stopped; }

 private:
  std::shared_ptr<Log> log_;
  bool open_ = false;
  uint64_t id_ = 0;
  uint32_t correlation_ = 0;
  uint64_t clock_ns_ = 0;
  KernelRecords gathered_;
};

}  // namespace trainrr::testing
