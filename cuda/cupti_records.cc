#include "cuda/cupti_records.h"

#include <cupti_activity.h>
#include <cupti_result.h>
#include <cupti_version.h>

#include <cstring>
#include <memory>

#include "cuda/dynamic_library.h"

namespace trainrr::cuda {

static_assert(kTrainrrExternalKind == CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
              "trainrr's external ids are pushed under CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0");

// The functions trainrr calls, looked up by name; the types come from the CUPTI headers, so a signature that
// changed in another version fails to compile here rather than at run time.
#define TRAINRR_CUPTI_FUNCTIONS(X) X(cuptiActivityGetNextRecord) X(cuptiGetResultString) X(cuptiGetVersion)

struct Cupti::Api {
#define TRAINRR_DECLARE(name) decltype(&::name) name = nullptr;
  TRAINRR_CUPTI_FUNCTIONS(TRAINRR_DECLARE)
#undef TRAINRR_DECLARE
};

namespace {

const char* const kLibrary = "libcupti.so.13";

// A field of a record read by copying it out: the buffer is CUPTI's bytes, and a record's place in it is
// aligned as CUPTI aligns it, not necessarily as the struct would be on its own.
template <class Record>
Record copy_of(const CUpti_Activity* at) {
  Record r;
  std::memcpy(&r, at, sizeof r);
  return r;
}

KernelRecord kernel_record(const CUpti_ActivityKernel10& k) {
  KernelRecord out;
  out.correlation_id = k.correlationId;
  if (k.name) out.name = k.name;
  out.grid_x = static_cast<uint32_t>(k.gridX), out.grid_y = static_cast<uint32_t>(k.gridY),
  out.grid_z = static_cast<uint32_t>(k.gridZ);
  out.block_x = static_cast<uint32_t>(k.blockX), out.block_y = static_cast<uint32_t>(k.blockY),
  out.block_z = static_cast<uint32_t>(k.blockZ);
  out.static_shared = static_cast<uint32_t>(k.staticSharedMemory);
  out.dynamic_shared = static_cast<uint32_t>(k.dynamicSharedMemory);
  out.start_ns = k.start;
  out.end_ns = k.end;
  out.stream_id = k.streamId;
  out.device_id = k.deviceId;
  return out;
}

}  // namespace

Cupti::Cupti() = default;
// The library stays loaded: CUPTI keeps process-wide state (subscribers, buffers) that outlives a dlclose.
Cupti::~Cupti() = default;

Result<Cupti*> Cupti::load() {
  return load_once<Cupti>([]() -> Result<std::unique_ptr<Cupti>> {
    auto lib = DynamicLibrary::open(kLibrary, "CUPTI 13");
    if (!lib) return lib.error();
    std::unique_ptr<Cupti> c(new Cupti());
    c->library_ = lib->handle();
    c->api_ = std::make_unique<Api>();
#define TRAINRR_RESOLVE(name) \
  if (Status s = lib->resolve(c->api_->name, #name); !s) return s.error();
    TRAINRR_CUPTI_FUNCTIONS(TRAINRR_RESOLVE)
#undef TRAINRR_RESOLVE
    uint32_t v = 0;
    c->record_sizes_known_ = c->api_->cuptiGetVersion(&v) == CUPTI_SUCCESS && record_sizes_known(v);
    return c;
  });
}

bool Cupti::record_sizes_known(uint32_t library_version) { return library_version == CUPTI_API_VERSION; }

std::string Cupti::result_name(int result) const {
  const char* s = nullptr;
  if (api_->cuptiGetResultString(static_cast<CUptiResult>(result), &s) != CUPTI_SUCCESS || !s)
    return "CUPTI result " + std::to_string(result);
  return s;
}

Result<uint32_t> Cupti::version() const {
  uint32_t v = 0;
  if (CUptiResult r = api_->cuptiGetVersion(&v); r != CUPTI_SUCCESS)
    return Error{std::string(kLibrary) + ": cuptiGetVersion failed: " + result_name(r)};
  return v;
}

Result<ActivityRecords> Cupti::read(uint8_t* buffer, size_t valid_size) const {
  ActivityRecords out;
  CUpti_Activity* record = nullptr;
  size_t walked = 0;
  size_t end_known = 0;     // the end of the last record walked, where its size is known
  bool end_is_known = true;  // no record yet: the buffer's start
  for (;;) {
    const CUptiResult r = api_->cuptiActivityGetNextRecord(buffer, valid_size, &record);
    if (r == CUPTI_ERROR_MAX_LIMIT_REACHED) break;  // the end of the records
    if (r != CUPTI_SUCCESS) {
      const std::string where = walked == 0 ? std::string("at its first record")
                                            : "after record " + std::to_string(walked) +
                                                  (end_is_known ? " (at byte " + std::to_string(end_known) + ")" : "");
      return Error{"CUPTI activity buffer of " + std::to_string(valid_size) + " bytes: cuptiActivityGetNextRecord failed " +
                   where + ": " + result_name(r) +
                   (r == CUPTI_ERROR_INVALID_KIND ? " (a record of a kind CUPTI does not know: the buffer is damaged)" : "")};
    }
    ++walked;
    const size_t at = static_cast<size_t>(reinterpret_cast<const uint8_t*>(record) - buffer);
    // Where the record ends is known from its struct only when this CUPTI writes the headers' structs.
    end_is_known = record_sizes_known_;
    switch (record->kind) {
      case CUPTI_ACTIVITY_KIND_KERNEL:
      case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
        // Both kinds deliver CUpti_ActivityKernel10 in CUPTI 13 (cupti_activity.h).
        out.kernels.push_back(kernel_record(copy_of<CUpti_ActivityKernel10>(record)));
        end_known = at + sizeof(CUpti_ActivityKernel10);
        break;
      case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
        const auto e = copy_of<CUpti_ActivityExternalCorrelation>(record);
        out.external.push_back({e.correlationId, e.externalId, static_cast<uint32_t>(e.externalKind)});
        end_known = at + sizeof(CUpti_ActivityExternalCorrelation);
        break;
      }
      case CUPTI_ACTIVITY_KIND_RUNTIME:
      case CUPTI_ACTIVITY_KIND_DRIVER: {
        const auto a = copy_of<CUpti_ActivityAPI>(record);
        out.api.push_back({a.correlationId, a.cbid,
                           record->kind == CUPTI_ACTIVITY_KIND_RUNTIME ? ApiDomain::runtime : ApiDomain::driver});
        end_known = at + sizeof(CUpti_ActivityAPI);
        break;
      }
      default:
        // Its size is CUPTI's to know: the walk goes on past it, and what follows the last record is then unknown.
        ++out.other;
        end_is_known = false;
        break;
    }
  }
  if (end_is_known && end_known < valid_size) out.unread_bytes = valid_size - end_known;
  return out;
}

}  // namespace trainrr::cuda
