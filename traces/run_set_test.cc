#include "traces/run_set.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "traces/trace_reader.h"
#include "traces/trace_test_util.h"
#include "traces/trace_writer.h"

namespace trainrr::trace {
namespace {

namespace fs = std::filesystem;

std::string temp_folder(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("trainrr_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

CollectiveCall sample_call(int rank, int ranks) {
  CollectiveCall c;
  c.step = 0;
  c.bucket = 0;
  c.offset = 0;
  c.count = 4810;
  c.variant = "allreduce__mpi";
  c.algorithm = "rabenseifner";
  c.algorithm_inferred = true;
  c.ranks = ranks;
  c.shards = ranks * 2;
  c.first_shard = rank * 2;
  c.shard_rows = {11u + rank, 12u + rank};
  c.shard_digests = {21u + rank, 22u + rank};
  c.input_digest = 31;
  c.result_digest = 41;
  c.order = {0, 2, 1, 3};
  return c;
}

// One rank's trace of a run: a header with the run's id, one step with an allreduce call, a footer.
void write_rank(const std::string& path, int rank, int ranks, const std::string& run_id,
                std::optional<CollectiveCall> call = std::nullopt) {
  TraceHeader h = testing_util::sample_header();
  h.level = ProbeLevel::step;  // the step's one digest over all parameters
  h.rank = rank;
  h.world_size = ranks;
  h.run_id = run_id;
  auto w = TraceWriter::create(path, h);
  ASSERT_TRUE(w) << w.error().message;
  TraceStep s;
  s.index = 0;
  s.end = StepEnd{1.5, {}, {{"(all parameters)", 7}}, {}};
  s.collectives.push_back(call ? *call : sample_call(rank, ranks));
  ASSERT_TRUE((*w)->write_step(s));
  TraceFooter footer;
  footer.completed = true;
  footer.end_reason = "completed";
  ASSERT_TRUE((*w)->finish(footer));
}

TEST(DataParallelTrace, RankRunIdAndAllreduceCallsReadBackEqual) {
  const std::string dir = temp_folder("rt");
  write_rank(rank_trace_path(dir, 2), 2, 4, "00ff00ff00ff00ff");
  auto r = TraceReader::open(rank_trace_path(dir, 2));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ((*r)->header().rank, 2);
  EXPECT_EQ((*r)->header().world_size, 4);
  EXPECT_EQ((*r)->header().run_id, "00ff00ff00ff00ff");
  auto rec = (*r)->next();
  ASSERT_TRUE(rec && *rec);
  const auto& step = std::get<TraceStep>((*rec)->value);
  ASSERT_EQ(step.collectives.size(), 1u);
  const CollectiveCall& got = step.collectives[0];
  const CollectiveCall want = sample_call(2, 4);
  EXPECT_EQ(got.count, want.count);
  EXPECT_EQ(got.variant, want.variant);
  EXPECT_EQ(got.algorithm, want.algorithm);
  EXPECT_TRUE(got.algorithm_inferred);
  EXPECT_EQ(got.ranks, 4);
  EXPECT_EQ(got.shards, 8);
  EXPECT_EQ(got.first_shard, 4);
  EXPECT_EQ(got.shard_rows, want.shard_rows);
  EXPECT_EQ(got.shard_digests, want.shard_digests);
  EXPECT_EQ(got.input_digest, 31u);
  EXPECT_EQ(got.result_digest, 41u);
  EXPECT_EQ(got.order, want.order);
  fs::remove_all(dir);
}

TEST(DataParallelTrace, AnOrderNamingARankBeyondTheRunIsMalformed) {
  const std::string dir = temp_folder("bad");
  CollectiveCall c = sample_call(0, 4);
  c.order = {0, 1, 2, 9};
  write_rank(rank_trace_path(dir, 0), 0, 4, "1", c);
  auto r = TraceReader::open(rank_trace_path(dir, 0));
  ASSERT_TRUE(r);
  auto rec = (*r)->next();
  ASSERT_FALSE(rec);
  EXPECT_NE(rec.error().message.find("an order names a rank >= ranks"), std::string::npos) << rec.error().message;
  fs::remove_all(dir);
}

TEST(RunSet, AllRanksOfOneRunOpenByTheFolder) {
  const std::string dir = temp_folder("ok");
  for (int r = 0; r < 3; ++r) write_rank(rank_trace_path(dir, r), r, 3, "abc");
  auto run = open_run(dir);
  ASSERT_TRUE(run) << run.error().message;
  EXPECT_EQ(run->world_size, 3);
  EXPECT_EQ(run->run_id, "abc");
  EXPECT_EQ(run->paths.size(), 3u);
  fs::remove_all(dir);
}

// A second name for a rank (leading zeros) would make two traces of one rank, one read in place of the other
// by the folder's order while every message names rankN.trr: the folder is refused, naming the file.
TEST(RunSet, ARankTraceNamedWithLeadingZerosIsRefused) {
  const std::string dir = temp_folder("zeros");
  for (int r = 0; r < 2; ++r) write_rank(rank_trace_path(dir, r), r, 2, "abc");
  ASSERT_TRUE(open_run(dir));
  fs::copy_file(rank_trace_path(dir, 0), dir + "/rank00.trr");
  auto twice = open_run(dir);
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find(": rank00.trr is not the name of a rank trace (a rank's is rank0.trr, "
                                       "without leading zeros): move it out of the run's folder"),
            std::string::npos)
      << twice.error().message;
  EXPECT_TRUE(holds_rank_traces(dir));
  fs::remove(dir + "/rank00.trr");
  fs::rename(rank_trace_path(dir, 1), dir + "/rank000001.trr");
  auto renamed = open_run(dir);
  ASSERT_FALSE(renamed);
  EXPECT_NE(
      renamed.error().message.find("rank000001.trr is not the name of a rank trace (a rank's is rank1.trr"),
      std::string::npos)
      << renamed.error().message;
  fs::remove_all(dir);
}

TEST(RunSet, AMissingRankAMixedSetAndALoneRankAreRefused) {
  const std::string dir = temp_folder("refused");
  write_rank(rank_trace_path(dir, 0), 0, 3, "abc");
  write_rank(rank_trace_path(dir, 2), 2, 3, "abc");
  auto missing = open_run(dir);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("rank 1 of the 3-rank run abc is missing"), std::string::npos)
      << missing.error().message;
  write_rank(rank_trace_path(dir, 1), 1, 3, "other");
  auto mixed = open_run(dir);
  ASSERT_FALSE(mixed);
  // The run with fewer traces first: the stray among the others.
  EXPECT_NE(mixed.error().message.find(
                "a set mixed from 2 runs: rank1.trr is of run other; rank0.trr, rank2.trr are of run abc"),
            std::string::npos)
      << mixed.error().message;
  auto r = TraceReader::open(rank_trace_path(dir, 2));
  ASSERT_TRUE(r);
  Status alone = refuse_rank_alone((*r)->header(), rank_trace_path(dir, 2), "replay");
  ASSERT_FALSE(alone);
  EXPECT_NE(alone.error().message.find("replay needs every rank; give the run's folder (" + dir + ")"),
            std::string::npos)
      << alone.error().message;
  // A rank's trace copied out of its run's folder: its own folder is no run's.
  const std::string apart = temp_folder("apart");
  fs::copy_file(rank_trace_path(dir, 2), apart + "/z.trr");
  Status copied = refuse_rank_alone((*r)->header(), apart + "/z.trr", "replay");
  ASSERT_FALSE(copied);
  EXPECT_NE(
      copied.error().message.find(
          "replay needs every rank; give the folder that holds its 3 rank traces (rank0.trr .. rank2.trr)"),
      std::string::npos)
      << copied.error().message;
  fs::remove_all(apart);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace trainrr::trace
