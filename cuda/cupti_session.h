#pragma once
// CUPTI's activity API as the recorder's kernel source (recorder/kernel_source.h): every kernel of a run on the
// GPU (CONCURRENT_KERNEL records), joined to the op that launched it through the external correlation ids the
// recorder pushes (EXTERNAL_CORRELATION, RUNTIME and DRIVER records). libcupti.so.13 is opened at run time
// (cuda/dynamic_library.h), when a recording on the GPU starts. Host code only.
//
// CUPTI hands its buffers to callbacks that carry no pointer of the caller's, and a process has one set of them:
// one session gathers at a time, and a second one's start() says so.

#include <memory>

#include "recorder/kernel_source.h"

namespace trainrr::cuda {

// A session, not yet started: start() loads CUPTI and enables its activity kinds, or says why it cannot
// ("CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED ...": another profiler holds CUPTI; a library that cannot be
// loaded). The engine's KernelSourceFactory (set_kernel_source_factory).
std::unique_ptr<KernelSource> open_cupti_session();

}  // namespace trainrr::cuda
