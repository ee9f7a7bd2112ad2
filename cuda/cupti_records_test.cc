// CUPTI's activity buffers, converted without a GPU: the buffers are built here from the documented record structs
// (cupti_activity.h) as CUPTI lays them out, one record after another, each a whole struct (all of them 8-byte
// multiples), and walked by CUPTI's own cuptiActivityGetNextRecord, which needs no driver.

#include "cuda/cupti_records.h"

#include <cupti_activity.h>
#include <cupti_result.h>
#include <cupti_version.h>
#include <gtest/gtest.h>

#include <cstring>

namespace trainrr {
namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// An activity buffer as CUPTI hands one over: 8-byte aligned, records back to back.
class ActivityBuffer {
 public:
  template <class Record>
  size_t add(const Record& r) {
    static_assert(sizeof(Record) % 8 == 0, "CUPTI's records are whole 8-byte words");
    const size_t at = size_;
    words_.resize((size_ + sizeof r) / 8);
    std::memcpy(reinterpret_cast<uint8_t*>(words_.data()) + at, &r, sizeof r);
    size_ += sizeof r;
    return at;
  }
  uint8_t* data() { return reinterpret_cast<uint8_t*>(words_.data()); }
  size_t size() const { return size_; }

 private:
  std::vector<uint64_t> words_;
  size_t size_ = 0;
};

CUpti_ActivityExternalCorrelation correlation(uint32_t corr, uint64_t external,
                                              CUpti_ExternalCorrelationKind kind = CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0) {
  CUpti_ActivityExternalCorrelation e{};
  e.kind = CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION;
  e.externalKind = kind;
  e.externalId = external;
  e.correlationId = corr;
  return e;
}

CUpti_ActivityAPI api(CUpti_ActivityKind kind, uint32_t corr, uint32_t cbid) {
  CUpti_ActivityAPI a{};
  a.kind = kind;
  a.cbid = cbid;
  a.correlationId = corr;
  a.start = 10, a.end = 20;
  return a;
}

CUpti_ActivityKernel10 kernel(CUpti_ActivityKind kind, uint32_t corr, const char* name, uint64_t start, uint64_t end) {
  CUpti_ActivityKernel10 k{};
  k.kind = kind;
  k.correlationId = corr;
  k.name = name;
  k.gridX = 120, k.gridY = 2, k.gridZ = 1;
  k.blockX = 256, k.blockY = 1, k.blockZ = 1;
  k.staticSharedMemory = 16384;
  k.dynamicSharedMemory = 49152;
  k.start = start;
  k.end = end;
  k.streamId = 7;
  k.deviceId = 0;
  return k;
}

cuda::Cupti* cupti_or_skip() {
  auto c = cuda::Cupti::load();
  return c ? *c : nullptr;
}

#define TRAINRR_REQUIRE_CUPTI(c)                                               \
  cuda::Cupti* c = cupti_or_skip();                                            \
  if (!c) GTEST_SKIP() << cuda::Cupti::load().error().message

// Whether the loaded CUPTI is the headers' version, whose records the hand-built buffers lay out (another one
// walks records of its own sizes).
uint32_t loaded_version(cuda::Cupti* c) {
  auto v = c->version();
  return v ? *v : 0;
}
bool headers_layout(cuda::Cupti* c) { return cuda::Cupti::record_sizes_known(loaded_version(c)); }

#define TRAINRR_REQUIRE_HEADERS_LAYOUT(c)                                                                  \
  if (!headers_layout(c))                                                                                  \
  GTEST_SKIP() << "the loaded CUPTI (API version " << loaded_version(c) << ") is not the headers' ("       \
               << CUPTI_API_VERSION << "): buffers laid out with the headers' structs are not its records"

TEST(CuptiRecords, TheRecordStructsAreTheDocumentedOnes) {
  // GPU.md 2: CUpti_ActivityKernel10 is the kernel record of CUPTI 13, 216 bytes; the join needs these fields.
  EXPECT_EQ(sizeof(CUpti_ActivityKernel10), 216u);
  EXPECT_EQ(sizeof(CUpti_ActivityExternalCorrelation), 24u);
  EXPECT_EQ(sizeof(CUpti_ActivityAPI), 40u);
  EXPECT_EQ(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, static_cast<int>(kTrainrrExternalKind));
}

TEST(CuptiRecords, LoadsWithoutADriverAndNamesItsResults) {
  TRAINRR_REQUIRE_CUPTI(c);
  auto v = c->version();
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_GE(*v, 130000u);
  EXPECT_EQ(c->result_name(CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED),
            "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED");
  EXPECT_EQ(c->result_name(CUPTI_SUCCESS), "CUPTI_SUCCESS");
  EXPECT_EQ(cuda::Cupti::load().value(), c);  // one copy per process
}

TEST(CuptiRecords, AHandBuiltBufferIsWalkedByCuptiWithoutADriver) {
  TRAINRR_REQUIRE_CUPTI(c);
  TRAINRR_REQUIRE_HEADERS_LAYOUT(c);
  const uint64_t op1 = external_id(5, 1).value(), op2 = external_id(5, 2).value();
  ActivityBuffer b;
  // As CUPTI writes them: each external correlation before the API record of its call, kernels as they end.
  b.add(correlation(77, op1));
  b.add(api(CUPTI_ACTIVITY_KIND_RUNTIME, 77, 505));  // ___cudaLaunchKernel_v13000
  CUpti_ActivityMemcpy6 copy{};
  copy.kind = CUPTI_ACTIVITY_KIND_MEMCPY;
  copy.correlationId = 76;
  b.add(copy);
  b.add(correlation(78, op2));
  b.add(correlation(78, 4242, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM1));  // another tool's id on the same call
  b.add(api(CUPTI_ACTIVITY_KIND_DRIVER, 78, 307));  // cuLaunchKernel, from inside cuBLASLt
  b.add(kernel(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, 78, "sm90_xmma_gemm_f32f32", 3000, 5000));
  b.add(kernel(CUPTI_ACTIVITY_KIND_KERNEL, 77, "_ZN7trainrr4cuda12philox_drawEPjmm", 1000, 1500));

  auto read = c->read(b.data(), b.size());
  ASSERT_TRUE(read) << read.error().message;
  const cuda::ActivityRecords& r = *read;
  EXPECT_EQ(r.other, 1u);
  EXPECT_EQ(r.unread_bytes, 0u);
  ASSERT_EQ(r.external.size(), 3u);
  EXPECT_EQ(r.external[0], (ExternalCorrelationRecord{77, op1, kTrainrrExternalKind}));
  EXPECT_EQ(r.external[2], (ExternalCorrelationRecord{78, 4242, CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM1}));
  ASSERT_EQ(r.api.size(), 2u);
  EXPECT_EQ(r.api[0], (ApiRecord{77, 505, ApiDomain::runtime}));
  EXPECT_EQ(r.api[1], (ApiRecord{78, 307, ApiDomain::driver}));
  ASSERT_EQ(r.kernels.size(), 2u);
  KernelRecord want;
  want.correlation_id = 78;
  want.name = "sm90_xmma_gemm_f32f32";
  want.grid_x = 120, want.grid_y = 2, want.grid_z = 1;
  want.block_x = 256, want.block_y = 1, want.block_z = 1;
  want.static_shared = 16384, want.dynamic_shared = 49152;
  want.start_ns = 3000, want.end_ns = 5000;
  want.stream_id = 7, want.device_id = 0;
  EXPECT_EQ(r.kernels[0], want);
  EXPECT_EQ(r.kernels[1].name, "_ZN7trainrr4cuda12philox_drawEPjmm");
  EXPECT_EQ(r.kernels[1].correlation_id, 77u);

  // Converted, they join: each kernel to the op that launched it, in launch order.
  Attributor at({"dense_1/matmul.fwd", "dense_1/dropout.fwd", "dense_1/matmul.bwd"});
  for (const auto& e : r.external) at.add(e);
  for (const auto& a : r.api) at.add(a);
  for (const auto& k : r.kernels) at.add(k);
  const Attribution a = at.join();
  EXPECT_EQ(a.seen, 2u);
  EXPECT_EQ(a.attributed, 2u);
  ASSERT_EQ(a.kernels.size(), 2u);
  EXPECT_EQ(a.kernels[0].site, "dense_1/dropout.fwd");
  EXPECT_EQ(a.kernels[1].site, "dense_1/matmul.bwd");
  EXPECT_EQ(a.kernels[1].at, (StepOp{5, 2}));
  EXPECT_EQ(a.kernels[1].duration_ns(), 2000u);
}

TEST(CuptiRecords, AnEmptyBufferHoldsNoRecords) {
  TRAINRR_REQUIRE_CUPTI(c);
  ActivityBuffer b;
  b.add(correlation(1, 1));
  auto read = c->read(b.data(), 0);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_TRUE(read->external.empty());
  EXPECT_EQ(read->unread_bytes, 0u);
}

TEST(CuptiRecords, ARecordCutShortIsCountedNotLostWithoutAWord) {
  TRAINRR_REQUIRE_CUPTI(c);
  TRAINRR_REQUIRE_HEADERS_LAYOUT(c);
  ActivityBuffer b;
  b.add(correlation(1, 1));
  b.add(kernel(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, 1, "k", 1, 2));
  // CUPTI's walk stops before a record that does not fit, as at the end of the records.
  auto read = c->read(b.data(), b.size() - 16);
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(read->external.size(), 1u);
  EXPECT_TRUE(read->kernels.empty());
  EXPECT_EQ(read->unread_bytes, sizeof(CUpti_ActivityKernel10) - 16);
}

TEST(CuptiRecords, OnlyTheHeadersCuptiVersionWritesRecordsOfTheHeadersSizes) {
  // A record's end follows from its struct only for the CUPTI the headers describe; another version (13.2 writes
  // CUpti_ActivityKernel11 for kernels) would otherwise show every buffer ending in a kernel as cut short.
  EXPECT_TRUE(cuda::Cupti::record_sizes_known(CUPTI_API_VERSION));
  EXPECT_FALSE(cuda::Cupti::record_sizes_known(130200));
  EXPECT_FALSE(cuda::Cupti::record_sizes_known(0));
}

TEST(CuptiRecords, ARecordOfAnUnknownKindStopsTheWalkNamingWhere) {
  TRAINRR_REQUIRE_CUPTI(c);
  TRAINRR_REQUIRE_HEADERS_LAYOUT(c);
  ActivityBuffer b;
  b.add(correlation(1, 1));
  CUpti_ActivityExternalCorrelation damaged = correlation(2, 2);
  damaged.kind = static_cast<CUpti_ActivityKind>(0x7fff);
  b.add(damaged);
  auto read = c->read(b.data(), b.size());
  ASSERT_FALSE(read);
  EXPECT_TRUE(has(read.error().message, "CUPTI activity buffer of 48 bytes: cuptiActivityGetNextRecord failed after "
                                        "record 1 (at byte 24): CUPTI_ERROR_INVALID_KIND"))
      << read.error().message;
}

}  // namespace
}  // namespace trainrr
