#include "cuda/cupti_session.h"

#include <cuda_runtime_api.h>
#include <cupti_activity.h>
#include <cupti_result.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cuda/cupti_records.h"
#include "cuda/dynamic_library.h"

namespace trainrr::cuda {

namespace {

// The functions a session calls, looked up by name with the types of the CUPTI headers (cuda/cupti_records.cc
// looks up those that read a buffer).
#define TRAINRR_CUPTI_SESSION_FUNCTIONS(X)                                                                     \
  X(cuptiActivityRegisterCallbacks) X(cuptiActivityEnable) X(cuptiActivityDisable)                            \
  X(cuptiActivityPushExternalCorrelationId) X(cuptiActivityPopExternalCorrelationId) X(cuptiActivityFlushAll) \
  X(cuptiActivityGetNumDroppedRecords)

struct SessionApi {
#define TRAINRR_DECLARE(name) decltype(&::name) name = nullptr;
  TRAINRR_CUPTI_SESSION_FUNCTIONS(TRAINRR_DECLARE)
#undef TRAINRR_DECLARE
};

Result<SessionApi*> load_session_api() {
  return load_once<SessionApi>([]() -> Result<std::unique_ptr<SessionApi>> {
    auto lib = DynamicLibrary::open("libcupti.so.13", "CUPTI 13");
    if (!lib) return lib.error();
    auto api = std::make_unique<SessionApi>();
#define TRAINRR_RESOLVE(name) \
  if (Status s = lib->resolve(api->name, #name); !s) return s.error();
    TRAINRR_CUPTI_SESSION_FUNCTIONS(TRAINRR_RESOLVE)
#undef TRAINRR_RESOLVE
    return api;
  });
}

// Buffers of 8 MiB: a step of a small model fills a fraction of one with its kernel and API records, and CUPTI
// asks for another when one is full. Records are 8-byte aligned (CUPTI's requirement).
constexpr size_t kBufferBytes = size_t{8} << 20;
constexpr size_t kBufferAlign = 8;

// What the buffer callbacks deliver, for the one session gathering (CUPTI's callbacks carry no pointer of ours,
// so this is the process's).
struct Gathered {
  std::mutex mu;
  bool active = false;      // a session is gathering: completed buffers are read, else only freed
  const Cupti* cupti = nullptr;
  SessionApi* api = nullptr;
  KernelRecords records;    // since the last flush
};

Gathered& gathered() {
  static Gathered g;
  return g;
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(kBufferAlign, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;  // no memory: CUPTI drops records, and counts them
  *max_records = 0;                    // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext context, uint32_t stream_id, uint8_t* buffer, size_t /*size*/,
                               size_t valid_size) {
  Gathered& g = gathered();
  std::unique_lock<std::mutex> lock(g.mu);
  if (!g.active || !g.cupti) {
    lock.unlock();
    std::free(buffer);
    return;
  }
  const Cupti* cupti = g.cupti;
  SessionApi* api = g.api;
  lock.unlock();
  // Read outside the lock: CUPTI may complete buffers on its own thread while the recorder flushes.
  Result<ActivityRecords> read = ActivityRecords{};
  if (buffer && valid_size > 0) read = cupti->read(buffer, valid_size);
  std::free(buffer);
  size_t dropped = 0;
  if (api->cuptiActivityGetNumDroppedRecords(context, stream_id, &dropped) != CUPTI_SUCCESS) dropped = 0;

  lock.lock();
  if (!g.active) return;
  KernelRecords& out = g.records;
  out.dropped += dropped;
  if (!read) {
    ++out.dropped;  // a buffer that cannot be walked: at least one kernel is missing, and the trace says so
    return;
  }
  ActivityRecords& r = *read;
  if (r.unread_bytes > 0) ++out.dropped;  // a record cut short
  out.kernels.insert(out.kernels.end(), std::make_move_iterator(r.kernels.begin()),
                     std::make_move_iterator(r.kernels.end()));
  out.external.insert(out.external.end(), r.external.begin(), r.external.end());
  out.api.insert(out.api.end(), r.api.begin(), r.api.end());
}

const char* kind_name(CUpti_ActivityKind k) {
  switch (k) {
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
      return "CONCURRENT_KERNEL";
    case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION:
      return "EXTERNAL_CORRELATION";
    case CUPTI_ACTIVITY_KIND_RUNTIME:
      return "RUNTIME";
    case CUPTI_ACTIVITY_KIND_DRIVER:
      return "DRIVER";
    default:
      return "another kind";
  }
}

// Why CUPTI refused, for a trace's header: CUPTI's name for the result first, then what it most likely means.
std::string refusal(const Cupti& cupti, CUptiResult r, const std::string& call) {
  std::string why = cupti.result_name(r) + " (" + call + ")";
  if (r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED)
    why += ": another tool in this process (a profiler such as Nsight Systems, or a framework's own) holds CUPTI";
  else if (r == CUPTI_ERROR_NOT_INITIALIZED || r == CUPTI_ERROR_UNKNOWN)
    why += ": no usable CUDA driver or GPU for CUPTI";
  else if (r == CUPTI_ERROR_INSUFFICIENT_PRIVILEGES)
    why += ": profiling GPU activity is not permitted for this user";
  return why;
}

class CuptiSession final : public KernelSource {
 public:
  ~CuptiSession() override {
    if (started_) CuptiSession::stop();
  }

  Status start() override {
    auto cupti = Cupti::load();
    if (!cupti) return cupti.error();
    auto api = load_session_api();
    if (!api) return api.error();
    cupti_ = *cupti;
    api_ = *api;
    Gathered& g = gathered();
    {
      std::lock_guard<std::mutex> lock(g.mu);
      if (g.active)
        return Error{"another recording in this process is gathering GPU kernels (CUPTI has one set of buffers)"};
      g.active = true;
      g.cupti = cupti_;
      g.api = api_;
      g.records = {};
    }
    // Registered once per process: the callbacks read into whichever session is active.
    static const CUptiResult registered = api_->cuptiActivityRegisterCallbacks(&buffer_requested, &buffer_completed);
    if (registered != CUPTI_SUCCESS) {
      deactivate();
      return Error{refusal(*cupti_, registered, "cuptiActivityRegisterCallbacks")};
    }
    for (CUpti_ActivityKind kind : {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION,
                                    CUPTI_ACTIVITY_KIND_RUNTIME, CUPTI_ACTIVITY_KIND_DRIVER}) {
      if (CUptiResult r = api_->cuptiActivityEnable(kind); r != CUPTI_SUCCESS) {
        disable();
        deactivate();
        return Error{refusal(*cupti_, r, std::string("cuptiActivityEnable of ") + kind_name(kind))};
      }
      enabled_.push_back(kind);
    }
    started_ = true;
    return {};
  }

  void push(uint64_t external_id) override {
    // Refused (it never is once the kinds are enabled): the op's kernels carry no id of ours, and the trace lists
    // them as launched outside every op.
    pushed_ = api_->cuptiActivityPushExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, external_id) ==
              CUPTI_SUCCESS;
  }

  void pop() override {
    if (!pushed_) return;
    uint64_t last = 0;
    (void)api_->cuptiActivityPopExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, &last);
    pushed_ = false;
  }

  KernelRecords flush() override {
    // A flush does not wait for the GPU (cupti_activity.h): the kernels queued so far finish first, so that their
    // records are complete. A step's end has waited for its results already; this costs nothing more then.
    (void)cudaDeviceSynchronize();
    (void)api_->cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);  // the callbacks run before it returns
    Gathered& g = gathered();
    std::lock_guard<std::mutex> lock(g.mu);
    return std::exchange(g.records, {});
  }

  void stop() override {
    if (!started_) return;
    pop();
    disable();
    (void)api_->cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);  // CUPTI's buffers back, discarded
    deactivate();
    started_ = false;
  }

 private:
  void disable() {
    for (auto k = enabled_.rbegin(); k != enabled_.rend(); ++k) (void)api_->cuptiActivityDisable(*k);
    enabled_.clear();
  }
  static void deactivate() {
    Gathered& g = gathered();
    std::lock_guard<std::mutex> lock(g.mu);
    g.active = false;
    g.records = {};
  }

  const Cupti* cupti_ = nullptr;
  SessionApi* api_ = nullptr;
  std::vector<CUpti_ActivityKind> enabled_;
  bool started_ = false;
  bool pushed_ = false;
};

}  // namespace

std::unique_ptr<KernelSource> open_cupti_session() { return std::make_unique<CuptiSession>(); }

}  // namespace trainrr::cuda
