// Writes the seed corpus of the reader's fuzz target: small real traces of every shape the reader meets
// (finished, cut, header only, with later-version messages). Into $TRAINRR_FUZZ_CORPUS, or
// <build>/fuzz_corpus/trace_reader.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "traces/trace_reader.h"
#include "traces/trace_test_util.h"

namespace trainrr::trace {
namespace {

using namespace testing_util;

TEST(TraceFuzzCorpus, WritesSeedTracesThatReadBack) {
  const char* env = std::getenv("TRAINRR_FUZZ_CORPUS");
  std::filesystem::path dir = env ? env : std::string(TRAINRR_BINARY_DIR) + "/fuzz_corpus/trace_reader";
  std::filesystem::create_directories(dir);
  write_sample_trace((dir / "finished.trr").string(), 4);
  write_sample_trace((dir / "unfinished.trr").string(), 3, /*finish=*/false);
  write_sample_trace((dir / "header_only.trr").string(), 0, /*finish=*/false);
  write_sample_trace((dir / "one_step.trr").string(), 1);
  auto full = read_file((dir / "finished.trr").string());
  write_file((dir / "cut.trr").string(), std::vector<uint8_t>(full.begin(), full.begin() + full.size() * 2 / 3));
  for (const char* name : {"finished.trr", "unfinished.trr", "header_only.trr", "one_step.trr"}) {
    auto r = TraceReader::open((dir / name).string());
    ASSERT_TRUE(r) << name << ": " << r.error().message;
  }
}

}  // namespace
}  // namespace trainrr::trace
