#pragma once
// CUPTI's activity buffers as the plain records the Attributor joins (recorder/kernel_attribution.h).
// libcupti.so.13 is opened at run time (dlopen), as cuBLASLt is (cuda/blaslt.h): only a run that records kernels
// on the GPU needs it, and trainrr starts and runs without it. Host code only.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/result.h"
#include "recorder/kernel_attribution.h"

namespace trainrr::cuda {

// What one activity buffer holds, in the order CUPTI wrote it.
struct ActivityRecords {
  std::vector<KernelRecord> kernels;                  // KERNEL and CONCURRENT_KERNEL records
  std::vector<ExternalCorrelationRecord> external;    // EXTERNAL_CORRELATION records
  std::vector<ApiRecord> api;                         // RUNTIME and DRIVER records
  uint64_t other = 0;  // records of other kinds (memory copies, say), walked past and counted
  // Bytes after the last whole record that the walk did not return: a record cut short, which CUPTI's walk
  // passes over without a word. Known when the last record walked is of a kind converted here (whose size is
  // known: the loaded CUPTI is the headers' version, Cupti::record_sizes_known) or when there is none; 0
  // otherwise.
  uint64_t unread_bytes = 0;
};

class Cupti {
 public:
  // The process's one copy: loaded on first use; the error names the library and dlerror's reason.
  static Result<Cupti*> load();

  // cuptiGetVersion(): CUPTI's API version (CUPTI_API_VERSION of the library, 130001 for CUDA 13.0).
  Result<uint32_t> version() const;
  // The records of a buffer as CUPTI's buffer-complete callback hands it over (`valid_size` bytes of records),
  // walked with cuptiActivityGetNextRecord. Kernel names are copied: CUPTI owns the strings it points to. An
  // Error names the record the walk stopped at and CUPTI's reason.
  Result<ActivityRecords> read(uint8_t* buffer, size_t valid_size) const;
  // Whether a CUPTI of API version `library_version` (cuptiGetVersion) writes the records converted here with
  // the sizes of the structs trainrr was built with: only the headers' own version (CUPTI_API_VERSION) is known
  // to. Another one may write a newer, longer struct for a kind (CUPTI 13.2 reports kernels as
  // CUpti_ActivityKernel11).
  static bool record_sizes_known(uint32_t library_version);
  // CUPTI's name for a CUptiResult ("CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED"): what a trace's header
  // gives as the reason kernels were not recorded.
  std::string result_name(int result) const;

  struct Api;  // the functions looked up (cuda/cupti_records.cc)
  ~Cupti();

 private:
  Cupti();
  std::unique_ptr<Api> api_;
  void* library_ = nullptr;
  bool record_sizes_known_ = false;  // record_sizes_known(the loaded library's version)
};

}  // namespace trainrr::cuda
