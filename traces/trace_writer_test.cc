#include "traces/trace_writer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>

#include "traces/trace_lock.h"
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
  EXPECT_TRUE(got.kernels_recorded);
  EXPECT_EQ(got.kernels_not_recorded, "");
  EXPECT_TRUE(got.moving_statistics);

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
  ASSERT_EQ(checkpoints.size(), 2u);  // after step 2, and the final state
  EXPECT_TRUE(checkpoints[0] == sample.checkpoints[0]);
  EXPECT_TRUE(checkpoints[1] == sample.checkpoints[1]);
  ASSERT_TRUE(footer);
  EXPECT_TRUE(reader.ended_cleanly());
  EXPECT_TRUE(footer->completed);
  EXPECT_EQ(footer->end_reason, "completed");
  EXPECT_EQ(footer->step_count, 5);
  uint64_t events = 0;
  for (const auto& s : sample.steps) events += s.events.size();
  EXPECT_EQ(footer->event_count, events);
  ASSERT_EQ(footer->checkpoints.size(), 2u);
  EXPECT_EQ(footer->checkpoints[0], (CheckpointRef{3, checkpoint_offsets[0]}));
  EXPECT_EQ(footer->checkpoints[1], (CheckpointRef{5, checkpoint_offsets[1]}));
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
  ASSERT_EQ(index->size(), 2u);
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

// A trace removed, or moved away, while it is recorded is not at its path when the recording ends: finish
// says so rather than report a trace that is not there.
TEST(TraceWriterChecks, ATraceRemovedOrMovedAwayWhileRecordedIsSaidToBeGone) {
  const std::string path = temp_path("gone.trr"), moved = temp_path("moved.trr");
  for (bool move : {false, true}) {
    auto w = TraceWriter::create(path, sample_header());
    ASSERT_TRUE(w);
    if (move)
      ASSERT_EQ(std::rename(path.c_str(), moved.c_str()), 0);
    else
      ASSERT_EQ(std::remove(path.c_str()), 0);
    const Status st = (*w)->finish({});
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message.find(
                  move ? path + ": the trace was moved away while it was recorded: its 0 steps "
                                "are wherever it was moved to"
                       : path + ": the trace was removed while it was recorded: its 0 steps are "
                                "lost"),
              std::string::npos)
        << st.error().message;
  }
  // Moved, it is whole where it went.
  auto r = TraceReader::open(moved);
  ASSERT_TRUE(r) << r.error().message;
  for (auto rec = (*r)->next(); rec && *rec; rec = (*r)->next()) {
  }
  EXPECT_TRUE((*r)->footer());
  std::remove(moved.c_str());
}

// A checkpoint holds at most kMaxCheckpointTensors tensors (each an .npy file, exported): the writer writes
// no more than the reader takes.
TEST(TraceWriterChecks, RefusesACheckpointOfMoreTensorsThanATraceHolds) {
  const std::string path = temp_path("many.trr");
  auto w = TraceWriter::create(path, sample_header());
  ASSERT_TRUE(w);
  TrainState c;
  c.tensors.resize(kMaxCheckpointTensors + 1);
  for (size_t i = 0; i < c.tensors.size(); ++i) c.tensors[i].name = "t" + std::to_string(i);
  const Status st = (*w)->write_checkpoint(c);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("65537 tensors, more than a trace holds (65536)"), std::string::npos)
      << st.error().message;
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

TEST(TraceWriterChecks, RefusesAGpuChoiceWhoseIdsAreNotItsAlgorithms) {
  std::string path = temp_path("refuse_gpu.trr");
  auto w = TraceWriter::create(path, sample_header());
  ASSERT_TRUE(w);
  auto refused = [&](const KernelChoice& k) {
    TraceStep s = sample_step(0);
    s.events = {k};
    Status st = (*w)->write_step(s);
    return st ? std::string() : st.error().message;
  };
  KernelChoice relabelled = sample_gpu_matmul_choice();
  relabelled.candidates[1] = "f32_matmul__cublaslt_algo21_tile18_stages20";  // the other algorithm's id
  EXPECT_NE(refused(relabelled).find("is not the id of its cuBLASLt algorithm"), std::string::npos);
  KernelChoice short_list = sample_gpu_matmul_choice();
  short_list.blaslt.pop_back();
  EXPECT_NE(refused(short_list).find("not one per candidate"), std::string::npos);
  KernelChoice no_version = sample_gpu_matmul_choice();
  no_version.blaslt_version = 0;
  EXPECT_NE(refused(no_version).find("no version"), std::string::npos);
  // A conv site with the im2col candidate: cuDNN's engines cover the first candidates, and the variant runs one
  // cuBLASLt algorithm.
  KernelChoice two_algos = sample_gpu_conv_site_choice();
  two_algos.blaslt.push_back(two_algos.blaslt[0]);
  EXPECT_NE(refused(two_algos).find("not the one that candidate runs"), std::string::npos);
  KernelChoice swapped = sample_gpu_conv_site_choice();
  std::swap(swapped.candidates[0], swapped.candidates[1]);
  EXPECT_NE(refused(swapped).find("is not the id of its cuDNN engine"), std::string::npos);
  KernelChoice no_cudnn_version = sample_gpu_conv_site_choice();
  no_cudnn_version.cudnn_version = 0;
  EXPECT_NE(refused(no_cudnn_version).find("no version"), std::string::npos);
  KernelChoice empty_launch = sample_gpu_matmul_choice();
  empty_launch.launch = LaunchShape{0, 1, 1, 256, 1, 1, 0};
  EXPECT_NE(refused(empty_launch).find("dimension of 0"), std::string::npos);
  std::remove(path.c_str());
}

TEST(TraceKernels, ALevelStepTraceKeepsEachStepsCountAndDigestAndAReasonReadsBack) {
  std::string path = temp_path("kernels_step.trr");
  TraceHeader h = sample_header();
  h.level = ProbeLevel::step;
  // What a step records at level step: no probe, one digest over all parameters.
  auto at_level_step = [](TraceStep s) {
    std::erase_if(s.events, [](const Event& e) { return std::holds_alternative<ProbeEvent>(e); });
    s.end->params = parameter_digests(s.end->params, ProbeLevel::step);
    return s;
  };
  {
    auto w = TraceWriter::create(path, h);
    ASSERT_TRUE(w) << w.error().message;
    TraceStep s = at_level_step(sample_step(0));
    s.kernels = step_kernels(sample_kernels(0).launches, 3, ProbeLevel::step);
    ASSERT_TRUE(s.kernels->launches.empty());
    ASSERT_TRUE((*w)->write_step(s));
    TraceStep no_kernels = at_level_step(sample_step(1));
    no_kernels.kernels.reset();  // CUPTI delivered nothing for this step
    ASSERT_TRUE((*w)->write_step(no_kernels));
    ASSERT_TRUE((*w)->finish(TraceFooter{true, "completed", 0, 0, {}}));
  }
  auto r = TraceReader::open(path);
  ASSERT_TRUE(r) << r.error().message;
  auto first = (*r)->next();
  ASSERT_TRUE(first && *first) << (first ? "" : first.error().message);
  const TraceStep& got = std::get<TraceStep>((*first)->value);
  ASSERT_TRUE(got.kernels);
  EXPECT_EQ(got.kernels->count, 4u);
  EXPECT_EQ(got.kernels->unattributed, 1u);
  EXPECT_EQ(got.kernels->dropped, 3u);
  EXPECT_EQ(got.kernels->digest, kernel_sequence_digest(sample_kernels(0).launches));
  EXPECT_TRUE(got.kernels->launches.empty());
  auto second = (*r)->next();
  ASSERT_TRUE(second && *second);
  EXPECT_FALSE(std::get<TraceStep>((*second)->value).kernels);

  // A GPU run without kernel records says why.
  h.kernels_recorded = false;
  h.kernels_not_recorded = "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED";
  {
    auto w = TraceWriter::create(path, h);
    ASSERT_TRUE(w) << w.error().message;
    ASSERT_TRUE((*w)->finish({true, "completed", 0, 0, {}}));
  }
  r = TraceReader::open(path);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE((*r)->header().kernels_recorded);
  EXPECT_EQ((*r)->header().kernels_not_recorded, "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED");
  std::remove(path.c_str());
}

TEST(TraceKernels, TheDigestSeesNamesGridsAndBlocksNotDurations) {
  std::vector<KernelLaunch> a = sample_kernels(0).launches;
  const uint64_t base = kernel_sequence_digest(a);
  std::vector<KernelLaunch> b = a;
  b[0].duration_ns += 1000;
  b[1].static_shared = 0;
  EXPECT_EQ(kernel_sequence_digest(b), base);
  b = a;
  b[1].block_x = 128;
  EXPECT_NE(kernel_sequence_digest(b), base);
  b = a;
  std::swap(b[0], b[1]);
  EXPECT_NE(kernel_sequence_digest(b), base) << "the order is part of the sequence";
  b = a;
  b[0].name += "x";
  EXPECT_NE(kernel_sequence_digest(b), base);
  // The name's length is part of each item: a name cannot borrow bytes from the next item.
  KernelLaunch one{"s", "ab", 1, 1, 1, 1, 1, 1, 0, 0, 0}, two{"s", "a", 1, 1, 1, 1, 1, 1, 0, 0, 0};
  EXPECT_NE(kernel_sequence_digest(std::vector<KernelLaunch>{one}), kernel_sequence_digest(std::vector<KernelLaunch>{two}));
}

TEST(TraceWriterChecks, RefusesMalformedKernelRecords) {
  std::string path = temp_path("refuse_kernels.trr");
  {
    TraceHeader both = sample_header();
    both.kernels_not_recorded = "no driver";
    auto w = TraceWriter::create(path, both);
    ASSERT_FALSE(w);
    EXPECT_NE(w.error().message.find(path + ": the header says GPU kernels were recorded and gives a reason"),
              std::string::npos)
        << w.error().message;
  }
  auto refused = [&](const TraceHeader& h, const StepKernels& k) {
    auto w = TraceWriter::create(path, h);
    if (!w) return "create: " + w.error().message;
    TraceStep s = sample_step(0);
    s.kernels = k;
    Status st = (*w)->write_step(s);
    return st ? std::string() : st.error().message;
  };
  const TraceHeader h = sample_header();
  EXPECT_EQ(refused(h, sample_kernels(0)), "");
  TraceHeader cpu = h;
  cpu.kernels_recorded = false;
  EXPECT_NE(refused(cpu, sample_kernels(0)).find(": step 0: kernel records in a trace whose header says GPU kernels "
                                                 "were not recorded"),
            std::string::npos);
  StepKernels k = sample_kernels(0);
  k.count = 5;
  EXPECT_NE(refused(h, k).find("4 launches listed for a count of 5"), std::string::npos) << refused(h, k);
  k = sample_kernels(0);
  k.digest ^= 1;
  EXPECT_NE(refused(h, k).find("the digest is not that of the launches listed"), std::string::npos);
  k = sample_kernels(0);
  k.launches[1].grid_y = 0;
  EXPECT_NE(refused(h, k).find("launch 1 has a grid or block dimension of 0"), std::string::npos);
  k = sample_kernels(0);
  k.unattributed = 2;
  EXPECT_NE(refused(h, k).find("1 launches at (unattributed) for an unattributed count of 2"), std::string::npos)
      << refused(h, k);
  k = step_kernels({}, 0, ProbeLevel::op);
  k.unattributed = 1;
  EXPECT_NE(refused(h, k).find("1 unattributed of 0 kernels"), std::string::npos) << refused(h, k);
  TraceHeader step_level = h;
  step_level.level = ProbeLevel::step;
  EXPECT_NE(refused(step_level, sample_kernels(0)).find("a step at level step lists its launches"), std::string::npos);
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

// --- one writer per path ---

// A folder of its own, removed at the end: the tests look at everything in it.
struct Folder {
  std::filesystem::path path = temp_path("folder-" + std::to_string(::time(nullptr)));
  Folder() { std::filesystem::create_directories(path); }
  ~Folder() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path))
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

// Counts what a reader reads to the end: steps, whether it stopped (and whether at a cut), the footer.
struct ReadBack {
  int steps = 0;
  std::optional<ReadStop> stop;
  bool clean = false;
};
ReadBack read_back(TraceReader& r) {
  ReadBack out;
  for (;;) {
    auto rec = r.next();
    if (!rec) {
      out.stop = r.stopped();
      break;
    }
    if (!*rec) break;
    out.steps += std::holds_alternative<TraceStep>((*rec)->value);
  }
  out.clean = r.ended_cleanly();
  return out;
}

// A child process that writes a header and `steps` steps to `path`, tells the parent through a pipe, and
// waits there, writer open, until it is killed. Returns its pid, once it has written.
pid_t writer_in_child(const std::string& path, int steps) {
  int ready[2];
  if (::pipe(ready) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(ready[0]);
    auto w = TraceWriter::create(path, sample_header());
    char ok = w ? '1' : '0';
    for (int i = 0; w && i < steps; ++i) {
      ok = (*w)->write_step(sample_step(i)) ? ok : '0';
      if (i % 2 == 1) ok = (*w)->write_epoch(TraceEpoch{i / 2, {{"loss", 0.5}}}) ? ok : '0';
    }
    if (::write(ready[1], &ok, 1) != 1) ::_exit(1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char ok = 0;
  const bool told = ::read(ready[0], &ok, 1) == 1 && ok == '1';
  ::close(ready[0]);
  if (!told) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return -1;
  }
  return pid;
}

TEST(OneWriterPerPath, ASecondWriterWhileAnotherProcessWritesIsRefusedWithItsPidAndTouchesNothing) {
  Folder f;
  const std::string path = f.file("same.trr");
  const pid_t child = writer_in_child(path, 3);
  ASSERT_GT(child, 0);
  const std::vector<uint8_t> before = read_file(path);
  auto second = TraceWriter::create(path, sample_header());
  ASSERT_FALSE(second) << "a second writer must be refused";
  EXPECT_EQ(second.error().message,
            path + ": another trainrr (process " + std::to_string(child) +
                ") is recording to this trace; choose another trace path (-o) or wait "
                "for it to finish");
  EXPECT_EQ(read_file(path), before) << "the refused writer changed the trace";
  EXPECT_EQ(f.names(), std::vector<std::string>{"same.trr"}) << "the refused writer left a file behind";
  EXPECT_EQ(writer_of(path), std::optional<pid_t>(child));

  // kill -9 frees the path: the partial trace reads as a recording cut short, and a new writer may replace
  // it.
  ::kill(child, SIGKILL);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_EQ(writer_of(path), std::nullopt);
  auto r = TraceReader::open(path);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)->still_recording(), std::nullopt);
  const ReadBack killed = read_back(**r);
  EXPECT_EQ(killed.steps, 3);
  EXPECT_FALSE(killed.clean);
  EXPECT_FALSE(killed.stop) << killed.stop->why;
  auto third = TraceWriter::create(path, sample_header());
  ASSERT_TRUE(third) << third.error().message;
}

TEST(OneWriterPerPath, ASecondWriterInTheSameProcessIsRefusedToo) {
  Folder f;
  const std::string path = f.file("same.trr");
  {
    auto first = TraceWriter::create(path, sample_header());
    ASSERT_TRUE(first) << first.error().message;
    auto second = TraceWriter::create(path, sample_header());
    ASSERT_FALSE(second);
    EXPECT_NE(second.error().message.find("(process " + std::to_string(::getpid()) + ")"), std::string::npos)
        << second.error().message;
    ASSERT_TRUE((*first)->write_step(sample_step(0)));
    ASSERT_TRUE((*first)->finish({true, "completed", 0, 0, {}}));
    // Finished and closed: the path is free although the writer object lives on.
    EXPECT_EQ(writer_of(path), std::nullopt);
    auto third = TraceWriter::create(path, sample_header());
    EXPECT_TRUE(third) << third.error().message;
  }
  EXPECT_EQ(f.names(), std::vector<std::string>{"same.trr"});
}

TEST(OneWriterPerPath, AReplacedTraceIsReadToItsEndByAReaderThatHadItOpen) {
  Folder f;
  const std::string path = f.file("run.trr");
  {
    // A checkpoint of random floats (zstd cannot shrink them) makes the trace larger than the reader's
    // read-ahead: the reader must read the file again after the replacement.
    TraceHeader h = sample_header();
    h.checkpoint_every = 1;
    auto w = TraceWriter::create(path, h);
    ASSERT_TRUE(w) << w.error().message;
    ASSERT_TRUE((*w)->write_step(sample_step(0)));
    TrainState big = sample_checkpoint(1);
    std::mt19937 rng(5);
    std::vector<float> values(size_t{1} << 20);
    for (float& v : values) v = std::uniform_real_distribution<float>(-1, 1)(rng);
    big.tensors.push_back({"big", Tensor({static_cast<int64_t>(values.size())}, values)});
    ASSERT_TRUE((*w)->write_checkpoint(big));
    for (int i = 1; i < 5; ++i) {
      ASSERT_TRUE((*w)->write_step(sample_step(i)));
      if (i % 2 == 1) {
        ASSERT_TRUE((*w)->write_epoch(TraceEpoch{i / 2, {{"loss", 0.5}}}));
      }
    }
    TrainState last = sample_checkpoint(5);  // a run's checkpoints hold the same tensors
    last.tensors.push_back(big.tensors.back());
    ASSERT_TRUE((*w)->write_checkpoint(last));
    ASSERT_TRUE((*w)->finish({true, "completed", 0, 0, {}}));
  }
  ASSERT_GT(std::filesystem::file_size(path), uint64_t{2} << 20);
  auto old = TraceReader::open(path);
  ASSERT_TRUE(old) << old.error().message;
  auto first = (*old)->next();
  ASSERT_TRUE(first && *first);
  write_sample_trace(path, 2);
  const ReadBack rest = read_back(**old);
  EXPECT_FALSE(rest.stop) << rest.stop->why;
  EXPECT_TRUE(rest.clean);
  EXPECT_EQ(rest.steps, 4) << "steps 1 to 4 of the old trace";
  auto fresh = TraceReader::open(path);
  ASSERT_TRUE(fresh) << fresh.error().message;
  EXPECT_EQ(read_back(**fresh).steps, 2) << "the new trace is at the path";
  EXPECT_EQ(f.names(), std::vector<std::string>{"run.trr"});
}

// A recording that replaces an earlier trace and stops before it finishes (killed, or its writer dropped)
// leaves the earlier trace as it was and the new steps beside it; one that finishes replaces it.
TEST(OneWriterPerPath, AnEarlierTraceIsReplacedOnlyWhenTheNewOneIsFinished) {
  Folder f;
  const std::string path = f.file("run.trr");
  write_sample_trace(path, 2);
  const auto before = std::filesystem::file_size(path);
  std::string pending;
  {
    auto w = TraceWriter::create(path, sample_header());
    ASSERT_TRUE(w) << w.error().message;
    pending = (*w)->pending_name();
    ASSERT_FALSE(pending.empty());
    ASSERT_TRUE((*w)->write_step(sample_step(0)));
    // While it records, a second writer is refused as at a trace being written.
    auto second = TraceWriter::create(path, sample_header());
    ASSERT_FALSE(second);
    EXPECT_NE(second.error().message.find("(process " + std::to_string(::getpid()) + ")"), std::string::npos)
        << second.error().message;
    auto earlier = TraceReader::open(path);
    ASSERT_TRUE(earlier) << earlier.error().message;
    EXPECT_EQ(read_back(**earlier).steps, 2) << "the earlier trace is at the path while the new one records";
  }
  EXPECT_EQ(std::filesystem::file_size(path), before);
  EXPECT_EQ(f.names(), (std::vector<std::string>{pending, "run.trr"}));
  auto kept = TraceReader::open(f.file(pending));
  ASSERT_TRUE(kept) << kept.error().message;
  EXPECT_EQ(read_back(**kept).steps, 1) << "the new trace's step is kept beside it";
  std::filesystem::remove(f.file(pending));

  // One that holds no step keeps nothing; one that finishes takes the path.
  { ASSERT_TRUE(TraceWriter::create(path, sample_header())); }
  EXPECT_EQ(f.names(), std::vector<std::string>{"run.trr"});
  write_sample_trace(path, 3);
  auto now = TraceReader::open(path);
  ASSERT_TRUE(now) << now.error().message;
  EXPECT_EQ(read_back(**now).steps, 3);
  EXPECT_EQ(f.names(), std::vector<std::string>{"run.trr"});
}

TEST(OneWriterPerPath, ATraceBehindASymbolicLinkIsReplacedWhereTheLinkPoints) {
  Folder f;
  std::filesystem::create_directories(f.path / "runs");
  const std::string target = f.file("runs/a.trr"), link = f.file("latest.trr");
  write_sample_trace(target, 2);
  std::filesystem::create_symlink("runs/a.trr", link);
  write_sample_trace(link, 4);
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  auto r = TraceReader::open(target);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(read_back(**r).steps, 4);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"latest.trr", "runs"}));
}

// Through a link to a trace in another folder, the new trace waits beside that trace: its pending name says
// where, so that a recording killed meanwhile leaves its steps where the user is told they are.
TEST(OneWriterPerPath, ThePendingNameOfATraceReplacedThroughALinkIsInTheLinkedFolder) {
  Folder f;
  std::filesystem::create_directories(f.path / "runs");
  const std::string target = f.file("runs/a.trr"), link = f.file("latest.trr");
  write_sample_trace(target, 2);
  std::filesystem::create_symlink("runs/a.trr", link);
  auto w = TraceWriter::create(link, sample_header());
  ASSERT_TRUE(w) << w.error().message;
  const std::string pending = (*w)->pending_name();
  EXPECT_TRUE(pending.starts_with(f.file("runs") + "/.trainrr-")) << pending;
  EXPECT_TRUE(std::filesystem::exists(pending)) << pending;
  // Beside the trace, its bare name.
  write_sample_trace(f.file("b.trr"), 2);
  auto beside = TraceWriter::create(f.file("b.trr"), sample_header());
  ASSERT_TRUE(beside) << beside.error().message;
  EXPECT_TRUE(beside.value()->pending_name().starts_with(".trainrr-")) << beside.value()->pending_name();
}

// A link another user put in a sticky folder anyone may write (/tmp) is not followed, as the kernel follows
// none under fs.protected_symlinks: it could name any file this process may replace.
TEST(OneWriterPerPath, ALinkAnotherUserPutInAStickyFolderIsNotFollowed) {
  if (::geteuid() != 0) GTEST_SKIP() << "giving a link to another user takes root";
  Folder f;
  std::filesystem::create_directories(f.path / "sticky");
  ASSERT_EQ(::chmod((f.path / "sticky").c_str(), 01777), 0);
  const std::string victim = f.file("victim.trr"), link = f.file("sticky/run.trr");
  write_sample_trace(victim, 2);
  const std::vector<uint8_t> before = read_file(victim);
  std::filesystem::create_symlink(victim, link);
  ASSERT_EQ(::lchown(link.c_str(), 65534, 65534), 0);
  auto w = TraceWriter::create(link, sample_header());
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().message, link +
                                   " is a symbolic link that another user (uid 65534) put in a sticky folder "
                                   "anyone may write (" +
                                   f.file("sticky") +
                                   "): it is not followed, as the kernel follows no such link "
                                   "(fs.protected_symlinks); give the trace's own path");
  EXPECT_EQ(read_file(victim), before);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"sticky", "victim.trr"}));
  // This user's own link there is followed, as the kernel follows it.
  ASSERT_EQ(::lchown(link.c_str(), ::geteuid(), ::getegid()), 0);
  auto own = TraceWriter::create(link, sample_header());
  EXPECT_TRUE(own) << own.error().message;
}

// A link to nothing would put the trace in whichever folder it names: refused, as --html refuses it.
TEST(OneWriterPerPath, ALinkToNothingIsRefusedAndNothingIsWritten) {
  Folder f;
  std::filesystem::create_directories(f.path / "elsewhere");
  const std::string link = f.file("latest.trr");
  std::filesystem::create_symlink("elsewhere/new.trr", link);
  auto w = TraceWriter::create(link, sample_header());
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().message, link + ": a symbolic link to " + f.file("elsewhere/new.trr") +
                                   ", which does not exist: a trace is written through a link only to an "
                                   "earlier trace; give the trace's own path");
  EXPECT_TRUE(std::filesystem::is_empty(f.path / "elsewhere"));
  EXPECT_EQ(f.names(), (std::vector<std::string>{"elsewhere", "latest.trr"}));
  // Nor is a link in a loop replaced by the trace.
  const std::string self = f.file("self.trr");
  std::filesystem::create_symlink("self.trr", self);
  auto loop = TraceWriter::create(self, sample_header());
  ASSERT_FALSE(loop);
  EXPECT_EQ(loop.error().message, self +
                                      ": a symbolic link in a loop of links: a trace is written through a "
                                      "link only to an earlier trace; give the trace's own path");
  EXPECT_TRUE(std::filesystem::is_symlink(self));
}

TEST(OneWriterPerPath, WhatIsNotARegularFileIsRefused) {
  Folder f;
  auto w = TraceWriter::create(f.path.string(), sample_header());
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().message, f.path.string() + ": not a regular file; a trace needs a file path");
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

// A new recording aimed at an earlier trace holds it (so that no second writer starts) while it writes beside
// it: a reader of the earlier trace reads it as what it is, whole, or cut (no footer) and not a trace still
// being recorded whose end is where its writer has got to; a trace being written at its own path is one.
TEST(OneWriterPerPath, AnEarlierTraceThatANewRecordingWillReplaceIsReadAsWhatItIs) {
  for (const bool cut : {false, true}) {
    Folder f;
    const std::string path = f.file("earlier.trr");
    write_sample_trace(path, 3);
    if (cut) std::filesystem::resize_file(path, std::filesystem::file_size(path) - 7);
    auto w = TraceWriter::create(path, sample_header());
    ASSERT_TRUE(w) << w.error().message;
    ASSERT_FALSE((*w)->pending_name().empty());
    ASSERT_TRUE((*w)->write_step(sample_step(0)));
    auto r = TraceReader::open(path);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ((*r)->still_recording(), std::nullopt) << "cut: " << cut;
    const ReadBack back = read_back(**r);
    EXPECT_EQ(back.clean, !cut);
    EXPECT_EQ(back.stop.has_value(), cut);
    if (back.stop) EXPECT_TRUE(back.stop->truncated) << back.stop->why;
  }
  Folder f;
  const std::string fresh = f.file("fresh.trr");
  auto live = TraceWriter::create(fresh, sample_header());
  ASSERT_TRUE(live) << live.error().message;
  ASSERT_TRUE((*live)->write_step(sample_step(0)));
  auto rl = TraceReader::open(fresh);
  ASSERT_TRUE(rl) << rl.error().message;
  EXPECT_TRUE((*rl)->still_recording().has_value());
}

// A trace open for reading only (its owner made it read-only: a writer other than root cannot open it for
// writing) is held by read locks, which keep out a second writer as a writer's lock does, and tell readers
// that no one writes it.
TEST(OneWriterPerPath, AReadOnlyEarlierTraceIsHeldByReadLocks) {
  Folder f;
  const std::string path = f.file("earlier.trr");
  write_sample_trace(path, 2);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 7);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(lock_for_replacing(fd, path, false));
  EXPECT_FALSE(waits_to_replace(fd)) << "its own locks are not another's";
  EXPECT_EQ(writer_of(path), std::optional<pid_t>(::getpid()));
  auto second = TraceWriter::create(path, sample_header());
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("(process " + std::to_string(::getpid()) + ")"), std::string::npos)
      << second.error().message;
  auto r = TraceReader::open(path);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)->still_recording(), std::nullopt);
  // A second writer that also can only read it is kept out too, though read locks share.
  const int other = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(other, 0);
  Status again = lock_for_replacing(other, path, false);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("(process " + std::to_string(::getpid()) + ")"), std::string::npos)
      << again.error().message;
  ::close(other);
  ::close(fd);
  EXPECT_EQ(writer_of(path), std::nullopt);
}

// A finished trace that cannot be put in place of the earlier one (here a folder now stands at its path)
// stays whole beside it, under the name the error gives.
TEST(OneWriterPerPath, AFinishedTraceThatCannotBePutInPlaceStaysWholeUnderTheNameTheErrorGives) {
  Folder f;
  const std::string path = f.file("earlier.trr");
  write_sample_trace(path, 2);
  auto w = TraceWriter::create(path, sample_header());
  ASSERT_TRUE(w) << w.error().message;
  const std::string part = f.file((*w)->pending_name());
  ASSERT_TRUE((*w)->write_step(sample_step(0)));
  std::filesystem::remove(path);
  std::filesystem::create_directory(path);
  std::ofstream(path + "/kept") << "x";
  ASSERT_TRUE((*w)->write_checkpoint(sample_checkpoint(1)));
  const Status done = (*w)->finish(TraceFooter{true, "completed", 0, 0, {}});
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().message.find(path + ": cannot put the new trace in place: "), 0u)
      << done.error().message;
  EXPECT_NE(done.error().message.find(": the new trace is whole in " + part), std::string::npos)
      << done.error().message;
  EXPECT_EQ(done.error().message.find("(at byte"), std::string::npos) << done.error().message;
  w->reset();
  auto r = TraceReader::open(part);
  ASSERT_TRUE(r) << r.error().message;
  const ReadBack kept = read_back(**r);
  EXPECT_EQ(kept.steps, 1);
  EXPECT_TRUE(kept.clean);
}

}  // namespace
}  // namespace trainrr::trace
