#include "traces/trace_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "traces/trace_reader.h"
#include "traces/trace_test_util.h"

namespace trainrr::trace {
namespace {

using namespace testing_util;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("trainrr_" + std::to_string(::getpid()) + "_" + name)).string();
}

TEST(TraceRoundTrip, EveryMessageAndEventKindReadsBackEqual) {
  std::string path = temp_path("roundtrip.trr");
  SampleTrace sample = write_sample_trace(path, 5);
  auto r = TraceReader::open(path);
  ASSERT_TRUE(r) << r.error().message;
  TraceReader& reader = **r;

  TraceHeader want = sample_header();
  const TraceHeader& got = reader.header();
  EXPECT_EQ(got.format_version, kFormatVersion);
  EXPECT_EQ(got.min_reader_version, kMinReaderVersion);
  EXPECT_EQ(got.writer_version, TRAINRR_VERSION);
  EXPECT_EQ(got.config, want.config);
  EXPECT_EQ(got.config_path, want.config_path);
  EXPECT_EQ(got.config_overrides, want.config_overrides);
  EXPECT_EQ(got.seed, want.seed);
  EXPECT_EQ(got.seed_from_entropy, want.seed_from_entropy);
  EXPECT_EQ(got.level, want.level);
  EXPECT_EQ(got.checkpoint_every, want.checkpoint_every);
  EXPECT_EQ(got.environment, want.environment);
  EXPECT_EQ(got.datasets, want.datasets);

  std::vector<TraceStep> steps;
  std::vector<TraceEpoch> epochs;
  std::vector<TrainState> checkpoints;
  std::vector<uint64_t> checkpoint_offsets;
  std::optional<TraceFooter> footer;
  for (;;) {
    auto rec = reader.next();
    ASSERT_TRUE(rec) << rec.error().message;
    if (!*rec) break;
    if (auto* s = std::get_if<TraceStep>(&(*rec)->value)) steps.push_back(*s);
    if (auto* e = std::get_if<TraceEpoch>(&(*rec)->value)) epochs.push_back(*e);
    if (auto* c = std::get_if<TrainState>(&(*rec)->value)) {
      checkpoints.push_back(*c);
      checkpoint_offsets.push_back((*rec)->offset);
    }
    if (auto* f = std::get_if<TraceFooter>(&(*rec)->value)) footer = *f;
  }
  ASSERT_EQ(steps.size(), sample.steps.size());
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_TRUE(steps[i] == sample.steps[i]) << "step " << i;
  ASSERT_EQ(epochs.size(), 2u);
  EXPECT_TRUE(epochs[1] == (TraceEpoch{1, {{"loss", 0.5}, {"accuracy", 0.75}}}));
  ASSERT_EQ(checkpoints.size(), 1u);
  EXPECT_TRUE(checkpoints[0] == sample.checkpoints[0]);
  ASSERT_TRUE(footer);
  EXPECT_TRUE(reader.ended_cleanly());
  EXPECT_TRUE(footer->completed);
  EXPECT_EQ(footer->end_reason, "completed");
  EXPECT_EQ(footer->step_count, 5);
  uint64_t events = 0;
  for (const auto& s : sample.steps) events += s.events.size();
  EXPECT_EQ(footer->event_count, events);
  ASSERT_EQ(footer->checkpoints.size(), 1u);
  EXPECT_EQ(footer->checkpoints[0], (CheckpointRef{3, checkpoint_offsets[0]}));
  EXPECT_TRUE(reader.notes().empty());
  std::remove(path.c_str());
}

TEST(TraceRoundTrip, SeekToCheckpointThenStepsStillResolveNames) {
  std::string path = temp_path("seek.trr");
  SampleTrace sample = write_sample_trace(path, 5);
  auto r = TraceReader::open(path);
  ASSERT_TRUE(r) << r.error().message;
  auto index = (*r)->checkpoint_index();
  ASSERT_TRUE(index) << index.error().message;
  ASSERT_EQ(index->size(), 1u);
  EXPECT_EQ((*index)[0].step, 3);
  auto c = (*r)->read_checkpoint((*index)[0].offset);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(*c == sample.checkpoints[0]);
  // The steps after the checkpoint use names introduced before it.
  auto next = (*r)->next();
  ASSERT_TRUE(next) << next.error().message;
  ASSERT_TRUE(*next);
  auto* step = std::get_if<TraceStep>(&(*next)->value);
  ASSERT_NE(step, nullptr);
  EXPECT_TRUE(*step == sample.steps[3]);
  // Seeking to a step (not a checkpoint) recovers the names by scanning.
  ASSERT_TRUE((*r)->seek(sample.message_ends[1]));
  auto step1 = (*r)->next();
  ASSERT_TRUE(step1 && *step1) << (step1 ? "end" : step1.error().message);
  EXPECT_TRUE(std::get<TraceStep>((*step1)->value) == sample.steps[1]);
  // An offset inside a message is refused.
  EXPECT_FALSE((*r)->seek(sample.message_ends[1] + 8));
  std::remove(path.c_str());
}

TEST(TraceRoundTrip, CheckpointIndexWithoutFooterComesFromAScan) {
  std::string path = temp_path("nofooter.trr");
  SampleTrace sample = write_sample_trace(path, 4, /*finish=*/false);
  auto r = TraceReader::open(path);
  ASSERT_TRUE(r) << r.error().message;
  auto index = (*r)->checkpoint_index();
  ASSERT_TRUE(index) << index.error().message;
  ASSERT_EQ(index->size(), 1u);
  int steps = 0;
  for (;;) {
    auto rec = (*r)->next();
    ASSERT_TRUE(rec) << rec.error().message;
    if (!*rec) break;
    steps += std::holds_alternative<TraceStep>((*rec)->value);
  }
  EXPECT_EQ(steps, 4);
  EXPECT_FALSE((*r)->ended_cleanly());
  std::remove(path.c_str());
}

TEST(TraceRoundTrip, LargeTensorIsChunkedAndRestored) {
  std::string path = temp_path("large.trr");
  auto w = TraceWriter::create(path, sample_header());
  ASSERT_TRUE(w);
  TrainState c;
  std::vector<float> big((size_t{64} << 20) / 4 + 1000);  // just over one 64 MiB chunk
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i % 1000);
  c.tensors.push_back({"big", Tensor({static_cast<int64_t>(big.size())}, big)});
  ASSERT_TRUE((*w)->write_checkpoint(c));
  ASSERT_TRUE((*w)->finish({}));
  auto r = TraceReader::open(path);
  ASSERT_TRUE(r);
  auto index = (*r)->checkpoint_index();
  ASSERT_TRUE(index && index->size() == 1);
  auto got = (*r)->read_checkpoint((*index)[0].offset);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_TRUE(got->tensors[0].value.data == big);
  // A reader with a smaller tensor limit refuses before allocating.
  ReaderLimits small;
  small.max_tensor_bytes = 1 << 20;
  auto r2 = TraceReader::open(path, small);
  ASSERT_TRUE(r2);
  auto refused = (*r2)->next();
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("exceed the limit"), std::string::npos) << refused.error().message;
  std::remove(path.c_str());
}

TEST(TraceWriterChecks, RefusesWhatTheReaderWouldRefuse) {
  std::string path = temp_path("refuse.trr");
  auto w = TraceWriter::create(path, sample_header());
  ASSERT_TRUE(w);
  TraceStep s = sample_step(0);
  ASSERT_TRUE((*w)->write_step(s));
  EXPECT_FALSE((*w)->write_step(s)) << "a repeated step index";
  TraceStep bad = sample_step(1);
  ShuffleEvent sh;
  sh.length = 3;
  sh.permutation = {2, 0, 1};
  sh.digest = 1;  // not its digest
  bad.events.push_back(sh);
  Status st = (*w)->write_step(bad);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("digest"), std::string::npos);
  std::remove(path.c_str());
}

// Bytes a step costs at level `step`: what the size target is about. Printed for the record.
TEST(TraceSize, StepWithoutProbesIsSmall) {
  std::string path = temp_path("size.trr");
  auto w = TraceWriter::create(path, sample_header());
  ASSERT_TRUE(w);
  auto step = [](int64_t i, int params) {
    TraceStep s;
    s.index = i;
    s.batch = i;
    s.events.push_back(BatchOrderEvent{i});
    StepEnd end;
    end.loss = 0.25;
    end.metrics = {{"accuracy", 0.5}};
    // Digests look random: no zero byte for packing to drop.
    for (uint64_t p = 0; p < static_cast<uint64_t>(params); ++p) {
      end.params.push_back({"dense_" + std::to_string(p) + ".kernel", 0x9E3779B97F4A7C15ULL * (2 * p + 1)});
      end.grads.push_back({"dense_" + std::to_string(p) + ".kernel", 0xC2B2AE3D27D4EB4FULL * (2 * p + 1)});
    }
    s.end = end;
    return s;
  };
  const int n = 1000;
  ASSERT_TRUE((*w)->write_step(step(0, 0)));
  uint64_t before = (*w)->bytes_written();
  for (int i = 1; i <= n; ++i) ASSERT_TRUE((*w)->write_step(step(i, 0)));
  double bare = static_cast<double>((*w)->bytes_written() - before) / n;
  ASSERT_TRUE((*w)->write_step(step(n + 1, 6)));
  before = (*w)->bytes_written();
  for (int i = n + 2; i <= 2 * n + 1; ++i) ASSERT_TRUE((*w)->write_step(step(i, 6)));
  double with_digests = static_cast<double>((*w)->bytes_written() - before) / n;
  std::printf("bytes per step: %.1f (batch order, loss, one metric); %.1f (plus 6 param and 6 grad digests)\n",
              bare, with_digests);
  RecordProperty("bytes_per_step_bare", std::to_string(bare));
  RecordProperty("bytes_per_step_6_params", std::to_string(with_digests));
  // Names are interned: a digest adds its 8 bytes and packing's tag byte (fewer when adjacent digests share
  // one run), nothing per name.
  EXPECT_GE(with_digests - bare, 12 * 8);
  EXPECT_LE(with_digests - bare, 12 * 9);
  EXPECT_LE(bare, 40);
  std::remove(path.c_str());
}

TEST(TraceCapnpDecode, StandardToolPrintsAWrittenTrace) {
  if (std::system("capnp --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "the capnp tool is not installed";
  std::string path = temp_path("decode.trr");
  std::string out = temp_path("decode.txt");
  write_sample_trace(path, 4);
  std::string schema = std::string(TRAINRR_SOURCE_DIR) + "/traces/trace.capnp";
  std::string cmd = "capnp decode --packed '" + schema + "' Message < '" + path + "' > '" + out + "' 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  for (const char* want : {"header = (", "magic = 3553993552138687060", "step = (", "checkpoint = (",
                           "epochEnd = (", "footer = (", "\"dense_1/matmul.fwd:out\"", "completed = true"})
    EXPECT_NE(s.find(want), std::string::npos) << want << " missing in:\n" << s.substr(0, 2000);
  std::remove(path.c_str());
  std::remove(out.c_str());
}

TEST(TraceDigest, FileDigestMatchesBytesDigest) {
  std::string path = temp_path("data.bin");
  std::vector<uint8_t> bytes(3 << 20);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 31 + (i >> 9));
  write_file(path, bytes);
  auto d = digest128_file(path);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(*d, digest128_bytes(bytes));
  EXPECT_NE(d->low, 0u);
  EXPECT_FALSE(digest128_file(path + ".missing"));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace trainrr::trace
