// libFuzzer target for the trace reader: any bytes, read as a trace from start to end, with the checkpoint
// index and a seek to every checkpoint. A crash, a sanitizer report or an allocation beyond the limits below
// (libFuzzer's -rss_limit_mb) is a bug. Seeds: traces_tests --gtest_filter='TraceFuzzCorpus.*' writes real
// traces into $TRAINRR_FUZZ_CORPUS.

#include <cstddef>
#include <cstdint>
#include <span>

#include "traces/trace_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trainrr::trace;
  ReaderLimits limits;
  limits.max_message_bytes = 64 << 20;
  limits.max_tensor_bytes = 16 << 20;
  limits.max_checkpoint_bytes = 64 << 20;
  auto reader = TraceReader::open_memory(std::span<const uint8_t>(data, size), "fuzz", limits);
  if (!reader) return 0;
  TraceReader& r = **reader;
  for (int i = 0; i < 100000; ++i) {
    auto rec = r.next();
    if (!rec || !*rec) break;
  }
  auto index = r.checkpoint_index();
  if (index) {
    for (const CheckpointRef& ref : *index) (void)r.read_checkpoint(ref.offset);
  }
  return 0;
}
