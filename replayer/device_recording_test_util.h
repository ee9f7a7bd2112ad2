#pragma once
// A run "on the GPU" that a machine without one can record: examples/breast_cancer.toml trained on a device
// (the emulated one, or a test's variant of it), recorded, its kernels from the fake source
// (recorder/kernel_source_test_util.h).

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/device_backend.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/trainer.h"
#include "recorder/kernel_source_test_util.h"
#include "recorder/recorder.h"

namespace trainrr::testing {

inline void record_on_device(DeviceBackend& device, const std::string& path, ProbeLevel level,
                             const std::vector<std::string>& overrides) {
  auto c = load_config(std::string(TRAINRR_SOURCE_DIR) + "/examples/breast_cancer.toml", overrides);
  ASSERT_TRUE(c.ok()) << c.error().message;
  RecordOptions o;
  o.path = path;
  o.level = level;
  auto rec = Recorder::create(*c, o);
  ASSERT_TRUE(rec.ok()) << rec.error().message;
  (*rec)->set_kernel_source(
      [log = std::make_shared<FakeKernelSource::Log>()] { return std::make_unique<FakeKernelSource>(log); });
  (*rec)->set_runtime(1, "test", "deterministic");
  KernelRegistry registry;
  register_cpu_kernels(registry);
  TrainingOptions t;
  t.registry = &registry;
  t.hooks = rec->get();
  t.device = &device;
  auto training = Training::create(*c, t);
  ASSERT_TRUE(training.ok()) << training.error().message;
  ASSERT_TRUE((*rec)->start().ok());
  ASSERT_TRUE((*training)->fit().ok());
  // With the final state, as trainrr record finishes a trace.
  ASSERT_TRUE((*rec)->finish((*training)->state(), true, "completed").ok());
}

}  // namespace trainrr::testing
