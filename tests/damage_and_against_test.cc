// End-to-end tests of what replay, diff, bisect, show and dump say when a trace is damaged or cut short,
// when bisect is given a second recording, and when a range of steps runs past the end: the first line and
// the JSON status say what happened.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "engine/kernels/kernel_registry.h"
#include "tests/recording_util.h"
#include "tests/test_util.h"
#include "tests/trace_rewrite.h"
#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

namespace trainrr::testing {
namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Where step `step`'s message starts and ends in the trace, and its loss; {0, 0, 0} if it is not there.
struct StepMessage {
  uint64_t from = 0, to = 0;
  double loss = 0;
};
StepMessage step_message(const std::string& trace, int64_t step) {
  auto reader = trace::TraceReader::open(trace);
  if (!reader) return {};
  for (;;) {
    auto rec = (*reader)->next();
    if (!rec || !*rec) return {};
    if (auto* s = std::get_if<trace::TraceStep>(&(*rec)->value); s && s->index == step && s->end)
      return {(*rec)->offset, (*rec)->offset + (*rec)->size, s->end->loss};
  }
}

// A copy of `trace` with one byte changed inside the first step from `step` on whose loss lies verbatim in
// the file (packing keeps a word's nonzero bytes in order after a tag byte), as trace_cli_test does: the
// damaged step, or -1 when no loss could be found for sure.
int64_t damage_a_step(const std::string& trace, const std::string& out, int64_t step) {
  std::string bytes = read_file(trace);
  for (const int64_t last = step + 15; step < last; ++step) {
    const StepMessage m = step_message(trace, step);
    if (m.to == 0) return -1;
    char raw[8];
    std::memcpy(raw, &m.loss, 8);
    std::string pattern;
    for (char c : raw)
      if (c != 0) pattern.push_back(c);
    if (pattern.size() < 4) continue;
    const size_t at = bytes.find(pattern, m.from);
    if (at == std::string::npos || at + pattern.size() > m.to) continue;
    char& changed = bytes[at + pattern.size() / 2];
    changed = static_cast<char>(changed ^ 0x01);
    if (changed == 0) changed = 0x02;
    write_file(out, bytes);
    return step;
  }
  return -1;
}

std::string record(const TempDir& dir, const std::string& name, const std::string& sets) {
  const std::string trace = dir.file(name);
  const CommandResult r = run_trainrr("record " + example("breast_cancer.toml") + " -o " + trace + " " + sets);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return trace;
}

// A run with no race: one thread, deterministic kernels, the ordered loader. A free replay reproduces it.
const char* const kDeterministic =
    "--set train.epochs=2 --set runtime.threads=1 --set runtime.policy=deterministic";

TEST(DamagedTraceReport, ReplaySaysDamagedWithTheStepTheByteAndWhatWasCompared) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=2");
  const std::string damaged = dir.file("damaged.trr");
  const int64_t step = damage_a_step(trace, damaged, 10);
  ASSERT_GE(step, 1) << "no step's loss lies verbatim in the file";
  const uint64_t at = step_message(trace, step).from;

  const CommandResult text = run_trainrr("replay " + damaged);
  EXPECT_EQ(text.exit_code, 2) << text.output;
  EXPECT_EQ(text.output.rfind("damaged: the trace was changed after it was written: reading stopped at byte " +
                                  std::to_string(at) + ", after step " + std::to_string(step - 1) +
                                  "; the steps before it reproduced bit for bit (" + std::to_string(step) +
                                  " steps compared)\n",
                              0),
            0u)
      << text.output;

  const CommandResult json = run_trainrr("replay --json " + damaged);
  EXPECT_EQ(json.exit_code, 2) << json.output;
  EXPECT_TRUE(has(json.output, "\"status\":\"damaged\"")) << json.output;
  EXPECT_TRUE(has(json.output, "\"trace_stop\":{\"trace\":" + std::string("\"") + damaged +
                                   "\",\"side\":\"\",\"reason\":\"damaged\",\"after_step\":" +
                                   std::to_string(step - 1) + ",\"offset\":" + std::to_string(at)))
      << json.output;
  EXPECT_TRUE(has(json.output, "\"steps_compared\":" + std::to_string(step) + ",")) << json.output;
}

// A replay asked to stop before the damage (--to-step) still reads the rest of the trace, without its
// tensors: a damaged trace is not said to have reproduced (exit 2), and one cut past --to-step says so (exit
// 0).
TEST(DamagedTraceReport, ReplayToAStepBeforeTheDamageSaysTheTraceIsDamaged) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=2");
  const std::string damaged = dir.file("damaged.trr");
  const int64_t step = damage_a_step(trace, damaged, 10);
  ASSERT_GE(step, 4) << "no step's loss lies verbatim in the file";
  const uint64_t at = step_message(trace, step).from;

  const CommandResult text = run_trainrr("replay " + damaged + " --to-step 3");
  EXPECT_EQ(text.exit_code, 2) << text.output;
  EXPECT_EQ(
      text.output.rfind("damaged: the trace was changed after it was written: reading stopped at byte " +
                            std::to_string(at) + ", after step " + std::to_string(step - 1) +
                            "; the steps before --to-step 3 reproduced bit for bit (3 steps compared)\n",
                        0),
      0u)
      << text.output;
  const CommandResult json = run_trainrr("replay --json " + damaged + " --to-step 3");
  EXPECT_TRUE(has(json.output, "\"status\":\"damaged\"")) << json.output;
  EXPECT_TRUE(has(json.output, "\"to_step\":3}")) << json.output;

  const std::string bytes = read_file(trace);
  const std::string cut = dir.file("cut.trr");
  write_file(cut, bytes.substr(0, at + 10));
  const CommandResult cut_replay = run_trainrr("replay " + cut + " --to-step 3");
  EXPECT_EQ(cut_replay.exit_code, 0) << cut_replay.output;
  EXPECT_EQ(cut_replay.output.rfind("truncated: the trace is cut short at byte " + std::to_string(at) +
                                        ", after step " + std::to_string(step - 1) +
                                        " (a recording killed or cut there); the steps before --to-step 3 "
                                        "reproduced bit for bit (3 steps compared)\n",
                                    0),
            0u)
      << cut_replay.output;

  const CommandResult whole = run_trainrr("replay " + trace + " --to-step 3");
  EXPECT_EQ(whole.exit_code, 0) << whole.output;
  EXPECT_EQ(whole.output.rfind("reproduced bit for bit (3 steps compared)\n", 0), 0u) << whole.output;
}

// export of a trace damaged after the checkpoint asked for exports it, as replay compares the steps before
// the damage, and names the byte replay names, whether the change is to a message's bytes or to its framing.
TEST(DamagedTraceReport, ExportOfATraceDamagedAfterTheCheckpointNamesTheByteReplayNames) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=2");
  const std::string bytes = read_file(trace);
  const StepMessage m = step_message(trace, 10);
  ASSERT_GT(m.to, m.from);
  const auto byte_after = [](const std::string& text, const std::string& before) -> int64_t {
    const size_t at = text.find(before);
    return at == std::string::npos ? -1 : std::atoll(text.c_str() + at + before.size());
  };
  int framing = 0;
  for (uint64_t flip = m.from; flip < m.from + 12; ++flip) {
    std::string changed = bytes;
    changed[flip] = static_cast<char>(changed[flip] ^ 0x40);
    const std::string damaged = dir.file("damaged" + std::to_string(flip) + ".trr");
    write_file(damaged, changed);
    const CommandResult replay = run_trainrr("replay " + damaged);
    ASSERT_EQ(replay.exit_code, 2) << "byte " << flip << ": " << replay.output;
    const int64_t said = byte_after(replay.output, "reading stopped at byte ");
    ASSERT_GT(said, 0) << replay.output;
    framing += has(replay.output, "cannot be read") ? 1 : 0;
    const std::string out = dir.file("ex" + std::to_string(flip));
    const CommandResult ex = run_trainrr("export " + damaged + " --step 0 -o " + out);
    EXPECT_EQ(ex.exit_code, 0) << "byte " << flip << ": " << ex.output;
    EXPECT_EQ(byte_after(ex.output, "until reading stopped: " + damaged + ": byte "), said)
        << "byte " << flip << ": " << ex.output << "\n"
        << replay.output;
    EXPECT_TRUE(std::filesystem::exists(out + "/manifest.json")) << ex.output;
  }
  EXPECT_GT(framing, 0) << "no flip changed a message's framing";
}

// A trace cut right after a step's record has nothing after that record to vouch for it: a difference there
// is reported with that said, as a change to the record would read the same.
TEST(DamagedTraceReport, ADifferenceInTheLastRecordOfACutTraceSaysNothingVouchesForIt) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", kDeterministic);
  const std::string damaged = dir.file("damaged.trr");
  const int64_t step = damage_a_step(trace, damaged, 10);
  ASSERT_GE(step, 10) << "no step's loss lies verbatim in the file";
  const std::string cut = dir.file("cut.trr");
  write_file(cut, read_file(damaged).substr(0, step_message(trace, step).to));
  const CommandResult r = run_trainrr("replay " + cut);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step " + std::to_string(step) + ", ", 0), 0u) << r.output;
  EXPECT_TRUE(
      has(r.output, "; but step " + std::to_string(step) +
                        "'s record is the last whole message of a trace cut short, which no message after "
                        "it vouches for"))
      << r.output;
  const CommandResult d = run_trainrr("diff " + trace + " " + cut);
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_TRUE(has(d.output, "; but step " + std::to_string(step) +
                                "'s record in B is the last whole message of a trace cut short"))
      << d.output;
  // The same cut without the change reproduces.
  const std::string clean = dir.file("clean.trr");
  write_file(clean, read_file(trace).substr(0, step_message(trace, step).to));
  EXPECT_EQ(run_trainrr("replay " + clean).exit_code, 0);
}

// A header that cannot be read in a file that ends with an intact footer was changed, not cut: every command
// says so first, whatever the reader found wrong in it (its size, its version, its fields).
TEST(DamagedTraceReport, AHeaderThatCannotBeReadInAWholeFileIsSaidToBeChanged) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=1");
  const std::string bytes = read_file(trace);
  int changed = 0;
  for (const auto& [at, bit] : {std::pair{0, 6}, std::pair{3, 0}, std::pair{20, 0}, std::pair{31, 7}}) {
    std::string b = bytes;
    b[at] = static_cast<char>(b[at] ^ (1 << bit));
    const std::string damaged = dir.file("header" + std::to_string(at) + ".trr");
    write_file(damaged, b);
    for (const std::string command : {"show ", "replay "}) {
      const CommandResult r = run_trainrr(command + damaged);
      EXPECT_EQ(r.exit_code, 2) << command << at << "\n" << r.output;
      if (has(r.output, damaged +
                            ": byte 0: the header was changed after it was written (the file ends with an "
                            "intact footer, at byte "))
        ++changed;
      EXPECT_FALSE(has(r.output, "killed or cut")) << r.output;
      EXPECT_EQ(r.output.find('\0'), std::string::npos);
    }
  }
  EXPECT_GE(changed, 6);
}

// A replay that diverges before the damage stops there, but the rest of the trace is still read: the report
// says it is damaged (exit 2) or cut, as diff of the same file does.
TEST(DamagedTraceReport, AReplayThatDivergesBeforeTheDamageStillSaysTheTraceIsDamaged) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", kDeterministic);
  const std::string damaged = dir.file("damaged.trr");
  const int64_t step = damage_a_step(trace, damaged, 10);
  ASSERT_GE(step, 1) << "no step's loss lies verbatim in the file";
  const uint64_t at = step_message(trace, step).from;
  // Another learning rate: the replay differs at step 0's update, long before the damage.
  const std::string other = " --force none --set train.optimizer.learning_rate=0.5";
  const CommandResult text = run_trainrr("replay " + damaged + other);
  EXPECT_EQ(text.exit_code, 2) << text.output;
  EXPECT_EQ(text.output.rfind("diverged at step 0", 0), 0u) << text.output;
  EXPECT_TRUE(
      has(text.output, "\n  damaged: the trace was changed after it was written: reading stopped at byte " +
                           std::to_string(at) + ", after step " + std::to_string(step - 1) +
                           ": nothing after it is compared\n"))
      << text.output;
  const CommandResult json = run_trainrr("replay --json " + damaged + other);
  EXPECT_EQ(json.exit_code, 2) << json.output;
  EXPECT_TRUE(has(json.output, "\"reason\":\"damaged\",\"after_step\":" + std::to_string(step - 1)))
      << json.output;
  // The same file cut inside that step: truncated, and the divergence's exit code.
  write_file(dir.file("cut.trr"), read_file(trace).substr(0, at + 10));
  const CommandResult cut = run_trainrr("replay " + dir.file("cut.trr") + other);
  EXPECT_EQ(cut.exit_code, 1) << cut.output;
  EXPECT_TRUE(has(cut.output, "\n  truncated: the trace is cut short at byte " + std::to_string(at) +
                                  ", after step " + std::to_string(step - 1)))
      << cut.output;
  // Undamaged, the same replay says nothing of the kind.
  const CommandResult whole = run_trainrr("replay " + trace + other);
  EXPECT_EQ(whole.exit_code, 1) << whole.output;
  EXPECT_FALSE(has(whole.output, "damaged") || has(whole.output, "truncated")) << whole.output;
}

// A changed step whose next message reads as cut short by the end of the file (its framing changed so that it
// runs past the end), in a file that ends with its intact footer: nothing vouches for the step, so the replay
// reports the damage there and never compares the changed step.
TEST(DamagedTraceReport, ReplaySaysDamagedWhereTheNextMessageSeemsCutButTheFooterIsIntact) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=2");
  const std::string damaged = dir.file("damaged.trr");
  const int64_t step = damage_a_step(trace, damaged, 10);
  ASSERT_GE(step, 1) << "no step's loss lies verbatim in the file";
  const StepMessage m = step_message(trace, step);
  // The next message's start: one segment of 2^24 words, its root 2^22 words in (packed).
  std::string bytes = read_file(damaged);
  const std::string cut_looking = "\x80\x01\x58\x01\x01\x50";
  bytes.replace(m.to, cut_looking.size(), cut_looking);
  write_file(damaged, bytes);

  const CommandResult text = run_trainrr("replay " + damaged);
  EXPECT_EQ(text.exit_code, 2) << text.output;
  EXPECT_EQ(
      text.output.rfind("damaged: the trace was changed after it was written: reading stopped at byte " +
                            std::to_string(m.from) + ", after step " + std::to_string(step - 1) + ";",
                        0),
      0u)
      << text.output;
  EXPECT_FALSE(has(text.output, "diverged")) << text.output;
  const CommandResult json = run_trainrr("replay --json " + damaged);
  EXPECT_EQ(json.exit_code, 2) << json.output;
  EXPECT_TRUE(has(json.output, "\"status\":\"damaged\"")) << json.output;
}

// One bit of the header turns format 3 into format 2, which chains no messages: the digests the messages hold
// say the header was changed, and show, dump and replay call the trace damaged instead of reading it
// unchecked.
TEST(DamagedTraceReport, AHeaderChangedToFormatTwoIsDamagedNotReadWithoutItsChecks) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=1");
  std::string bytes = read_file(trace);
  // The header's first data words, packed: the magic (copied verbatim after tag 0xff, then a count of 0
  // further verbatim words), then minReaderVersion and formatVersion (tag 0x11: bytes 0 and 4 of the word).
  const size_t magic = bytes.find("TRAINRR1");
  ASSERT_NE(magic, std::string::npos);
  ASSERT_EQ(bytes.substr(magic + 8, 2), std::string("\x00\x11", 2)) << "the header packs otherwise";
  ASSERT_EQ(bytes[magic + 11], '\x03');
  bytes[magic + 11] = '\x02';  // formatVersion 3 -> 2: one bit
  const std::string downgraded = dir.file("downgraded.trr");
  write_file(downgraded, bytes);
  for (const std::string command : {"show", "dump", "replay"}) {
    const CommandResult r = run_trainrr(command + " " + downgraded);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.output;
    EXPECT_TRUE(
        has(r.output, "the header's formatVersion was changed after it was written (the file is damaged)"))
        << command << "\n"
        << r.output;
  }
}

// A copy of `from` that holds its header, its initial checkpoint and its first `steps` steps, then a footer,
// written by the writer (the chain and the footer's check are whole), that says the run completed.
std::string first_steps_said_completed(const std::string& from, const std::string& to, int64_t steps) {
  auto reader = trace::TraceReader::open(from);
  if (!reader) return reader.error().message;
  auto writer = trace::TraceWriter::create(to, (*reader)->header());
  if (!writer) return writer.error().message;
  for (;;) {
    auto rec = (*reader)->next();
    if (!rec) return rec.error().message;
    if (!*rec) break;
    Status s;
    if (const auto* step = std::get_if<trace::TraceStep>(&(*rec)->value); step && step->index < steps)
      s = (*writer)->write_step(*step);
    else if (const auto* c = std::get_if<trace::TraceCheckpoint>(&(*rec)->value); c && c->step == 0)
      s = (*writer)->write_checkpoint(*c);
    if (!s) return s.error().message;
  }
  Status done = (*writer)->finish(trace::TraceFooter{true, "completed", 0, 0, {}});
  return done ? "" : done.error().message;
}

// What replay, diff, show and export say of a trace damaged at a message after step `after`: damaged, with
// the reason, exit 2, the steps before it compared and found equal.
void expect_damaged_after(const std::string& trace, const std::string& damaged, int64_t after,
                          const std::string& why) {
  const CommandResult replay = run_trainrr("replay " + damaged);
  EXPECT_EQ(replay.exit_code, 2) << replay.output;
  EXPECT_EQ(
      replay.output.rfind("damaged: the trace was changed after it was written: reading stopped at byte ", 0),
      0u)
      << replay.output;
  EXPECT_TRUE(has(replay.output, ", after step " + std::to_string(after) +
                                     "; the steps before it reproduced bit for bit (" +
                                     std::to_string(after + 1) + " steps compared)"))
      << replay.output;
  EXPECT_TRUE(has(replay.output, why)) << replay.output;
  EXPECT_FALSE(has(replay.output, "diverged")) << replay.output;
  const CommandResult diff = run_trainrr("diff --json " + trace + " " + damaged);
  EXPECT_EQ(diff.exit_code, 2) << diff.output;
  EXPECT_TRUE(has(diff.output, "\"status\":\"damaged\"")) << diff.output;
  EXPECT_TRUE(
      has(diff.output, "\"side\":\"B\",\"reason\":\"damaged\",\"after_step\":" + std::to_string(after)))
      << diff.output;
  const CommandResult show = run_trainrr("show " + damaged);
  EXPECT_EQ(show.exit_code, 2) << show.output;
  EXPECT_TRUE(has(show.output, "damaged: " + std::to_string(after + 1) + " complete steps readable"))
      << show.output;
  EXPECT_TRUE(has(show.output, why)) << show.output;
}

// The footer's "completed" is a claim about the schedule the configuration gives (epochs times batches): a
// trace that ends early under it cannot be as recorded, and is not reported as a run that reproduced.
TEST(DamagedTraceReport, AFooterThatSaysCompletedBeforeTheScheduleEndsIsDamage) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=2");
  const std::string shortened = dir.file("short.trr");
  ASSERT_EQ(first_steps_said_completed(trace, shortened, 5), "");
  const std::string why =
      "the footer says the run completed its schedule, but the file holds 5 complete steps of the 30 its "
      "configuration schedules (2 epochs of 15 batches)";
  expect_damaged_after(trace, shortened, 4, why);
  const CommandResult json = run_trainrr("replay --json " + shortened);
  EXPECT_EQ(json.exit_code, 2) << json.output;
  EXPECT_TRUE(has(json.output, "\"status\":\"damaged\"")) << json.output;
  for (const std::string command : {"show", "dump"}) {
    const CommandResult r = run_trainrr(command + " " + shortened);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output, "damaged: 5 complete steps readable; reading stopped at byte ")) << r.output;
    EXPECT_TRUE(has(r.output, why)) << r.output;
    EXPECT_FALSE(has(r.output, "ended cleanly")) << r.output;
  }
  // The whole recording is what its footer says.
  EXPECT_EQ(run_trainrr("show " + trace).exit_code, 0);
  EXPECT_EQ(run_trainrr("replay " + trace).exit_code, 0);
}

// What the header and the footer say of the checkpoints and of the run's end, against what the file holds:
// a periodic checkpoint under a header that schedules none, a completed run without its final state, a footer
// whose completed flag its end reason contradicts. Each is damage where it is read, as in every command.
TEST(DamagedTraceReport, AHeaderOrFooterThatContradictsTheCheckpointsOrTheEndIsDamage) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=2 --checkpoint-every 10");  // 30 steps
  const std::string unscheduled = dir.file("unscheduled.trr");
  ASSERT_EQ(rewrite_trace(trace, unscheduled, [](trace::TraceHeader& h) { h.checkpoint_every = 0; }), "");
  expect_damaged_after(trace, unscheduled, 9,
                       "step 10 follows the checkpoint at step 10, which the header's checkpointEvery (0: no "
                       "periodic checkpoints) does not schedule: a checkpoint off that schedule is the final "
                       "state, which only the footer follows");
  const std::string no_final = dir.file("no_final.trr");
  ASSERT_EQ(rewrite_trace(
                trace, no_final, [](trace::TraceHeader&) {}, {},
                [](trace::TraceCheckpoint& c) { return c.step != 30; }),
            "");
  const std::string missing =
      "footer.completed is true, but the file holds no final state (a checkpoint at step 30, after its 30 "
      "complete steps): its last checkpoint is at step 20";
  expect_damaged_after(trace, no_final, 29, missing);
  const CommandResult exported = run_trainrr("export " + no_final + " --step 1000 -o " + dir.file("ck"));
  EXPECT_TRUE(has(exported.output, "the trace is damaged after step 29")) << exported.output;
  EXPECT_TRUE(has(exported.output, missing)) << exported.output;
  EXPECT_FALSE(has(exported.output, "past the trace's end")) << exported.output;
  const std::string not_completed = dir.file("not_completed.trr");
  ASSERT_EQ(rewrite_trace(
                trace, not_completed, [](trace::TraceHeader&) {}, {}, {},
                [](trace::TraceFooter& f) { f.completed = false; }),
            "");
  expect_damaged_after(trace, not_completed, 29, "footer.completed is false but its endReason is completed");
  for (const std::string& bad : {unscheduled, no_final, not_completed}) {
    const CommandResult dump = run_trainrr("dump " + bad);
    EXPECT_EQ(dump.exit_code, 2) << bad << "\n" << dump.output;
    EXPECT_TRUE(has(dump.output, "(the file is damaged)")) << bad << "\n" << dump.output;
    EXPECT_FALSE(has(run_trainrr("show " + bad).output, "ended cleanly")) << bad;
  }
}

// The schedule is epochs times batches, counted without wrapping: 4 epochs of 2^62 + 15 batches are more
// steps than int64_t holds, not the 60 the product wraps to, and a footer that says the run completed them in
// the 60 steps the file holds is damage. Every epoch's shuffle is made to claim the rows (one that claims
// other rows than the first is damage of its own).
TEST(DamagedTraceReport, AScheduleTooLongToCountIsNotTheStepsTheFileHolds) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=4");  // 4 epochs of 15 batches
  const std::string changed = dir.file("overflow.trr");
  const uint64_t rows = (uint64_t{1} << 62) + 15;  // a batch each, with train.batch_size=1
  bool edited = false;
  ASSERT_EQ(rewrite_trace(
                trace, changed,
                [](trace::TraceHeader& h) {
                  h.config_overrides.push_back("train.epochs=4");
                  h.config_overrides.push_back("train.batch_size=1");
                },
                [&](trace::TraceStep& s) {
                  for (auto& e : s.events)
                    if (auto* sh = std::get_if<trace::ShuffleEvent>(&e)) {
                      ASSERT_TRUE(sh->draw.has_value());
                      sh->length = rows;
                      sh->draw->count = rows - 1;
                      edited = true;
                    }
                }),
            "");
  ASSERT_TRUE(edited);
  const std::string why =
      "the footer says the run completed its schedule, but the file holds 60 complete steps of the more than "
      "9223372036854775807 its configuration schedules (4 epochs of 4611686018427387919 batches)";
  for (const std::string command : {"show", "dump"}) {
    const CommandResult r = run_trainrr(command + " " + changed);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output, why)) << r.output;
    EXPECT_FALSE(has(r.output, "ended cleanly")) << r.output;
  }
}

// A draw is compared whole, not only its values: a count (or counter, or key) the replay did not draw is a
// difference, even where the values drawn match the recorded digest.
// `trace` with its first recorded draw changed by `edit`, written to `name` in `dir`.
std::string with_first_draw(const TempDir& dir, const std::string& trace, const std::string& name,
                            const std::function<void(RngDraw&)>& edit) {
  const std::string changed = dir.file(name);
  bool edited = false;
  EXPECT_EQ(rewrite_trace(
                trace, changed, [](trace::TraceHeader&) {},
                [&](trace::TraceStep& s) {
                  for (auto& e : s.events)
                    if (auto* d = std::get_if<trace::RngDrawEvent>(&e); d && !edited) {
                      edit(d->draw);
                      edited = true;
                    }
                }),
            "");
  EXPECT_TRUE(edited);
  return changed;
}

TEST(DamagedTraceReport, ADrawOfAnotherCountWithTheSameValuesIsADifference) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=1");
  const std::string changed =
      with_first_draw(dir, trace, "count.trr", [](RngDraw& d) { d.count = uint64_t{1} << 62; });
  for (const std::string& args : {"replay " + changed, "diff " + trace + " " + changed}) {
    const CommandResult r = run_trainrr(args);
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.output;
    EXPECT_TRUE(has(r.output, "count 4611686018427387904")) << args << "\n" << r.output;
  }
}

// A recorded counter the run never reaches, its values those of the counter it did reach: forced to it, the
// replay draws other values. That is not put down to this build's arithmetic alone: the recorded draw may not
// be the one its values came from, and the report says which counter the run reached. Before the first step,
// where the seed, configuration and data fix every draw, the trace is the cause.
TEST(DamagedTraceReport, ARecordedCounterTheRunDidNotReachIsNotPutDownToTheArithmeticAlone) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=1");
  const std::string changed =
      with_first_draw(dir, trace, "counter.trr", [](RngDraw& d) { d.counter = ~uint64_t{0} - d.count; });
  const CommandResult r = run_trainrr("replay " + changed);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "cause: trace: ")) << r.output;
  EXPECT_TRUE(has(r.output, "the trace does not follow the run its configuration describes")) << r.output;
  EXPECT_TRUE(has(r.output, "(forced to the recorded draw, which this run did not reach: it reached "))
      << r.output;
  EXPECT_TRUE(has(r.output, "or the recorded draw is not the one its values came from")) << r.output;
  EXPECT_FALSE(has(r.output, "the arithmetic that turns them into values differs")) << r.output;
}

TEST(DamagedTraceReport, DiffOfATraceAndItsDamagedCopySaysDamagedNotIdentical) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=2");
  const std::string damaged = dir.file("damaged.trr");
  const int64_t step = damage_a_step(trace, damaged, 10);
  ASSERT_GE(step, 1);
  const uint64_t at = step_message(trace, step).from;

  const CommandResult text = run_trainrr("diff " + trace + " " + damaged);
  EXPECT_EQ(text.exit_code, 2) << text.output;
  EXPECT_EQ(text.output.rfind("damaged: B (" + damaged + ") was changed after it was written: reading stopped at "
                                  "byte " + std::to_string(at) + ", after step " + std::to_string(step - 1) +
                                  "; the steps before it are identical (" + std::to_string(step) +
                                  " steps compared)\n",
                              0),
            0u)
      << text.output;
  EXPECT_FALSE(has(text.output, "identical: the two runs")) << text.output;

  const CommandResult json = run_trainrr("diff --json " + damaged + " " + trace);
  EXPECT_EQ(json.exit_code, 2) << json.output;
  EXPECT_TRUE(has(json.output, "\"status\":\"damaged\"")) << json.output;
  EXPECT_TRUE(has(json.output, "\"side\":\"A\",\"reason\":\"damaged\",\"after_step\":" + std::to_string(step - 1)))
      << json.output;
  // Two whole copies of one run are identical, and their status says that word.
  const CommandResult same = run_trainrr("diff --json " + trace + " " + trace);
  EXPECT_EQ(same.exit_code, 0) << same.output;
  EXPECT_TRUE(has(same.output, "\"status\":\"identical\"")) << same.output;
  EXPECT_TRUE(has(same.output, "\"trace_stop\":null")) << same.output;
}

// A killed recording is not damage: what it holds is compared, the status says it is cut short, and the
// exit code is that of the comparison (0: what both hold is the same).
TEST(TruncatedTraceReport, ReplayAndDiffSayTheTraceIsCutShortAndTheStepsItHoldsMatch) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=2");
  const std::string bytes = read_file(trace);
  const int64_t step = 12;
  const uint64_t at = step_message(trace, step).from;
  ASSERT_GT(at, 0u);
  const std::string cut = dir.file("cut.trr"), boundary = dir.file("boundary.trr");
  write_file(cut, bytes.substr(0, at + 10));  // inside step 12's message
  write_file(boundary, bytes.substr(0, at));  // after step 11's message, with no footer

  const CommandResult replay = run_trainrr("replay " + cut);
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_EQ(replay.output.rfind("truncated: the trace is cut short at byte " + std::to_string(at) +
                                    ", after step 11 (a recording killed or cut there); the steps it holds "
                                    "reproduced bit for bit (12 steps compared)\n",
                                0),
            0u)
      << replay.output;
  const CommandResult replay_json = run_trainrr("replay --json " + cut);
  EXPECT_TRUE(has(replay_json.output, "\"status\":\"truncated\"")) << replay_json.output;
  EXPECT_TRUE(has(replay_json.output, "\"reason\":\"truncated\",\"after_step\":11,\"offset\":" +
                                          std::to_string(at)))
      << replay_json.output;

  const CommandResult diff = run_trainrr("diff " + trace + " " + cut);
  EXPECT_EQ(diff.exit_code, 0) << diff.output;
  EXPECT_EQ(diff.output.rfind("truncated: B (" + cut + ") is cut short at byte " + std::to_string(at) +
                                  ", after step 11 (a recording killed or cut there); the steps both hold are "
                                  "identical (12 steps compared)\n",
                              0),
            0u)
      << diff.output;
  EXPECT_TRUE(has(diff.output, "note: B ends first, after 12 steps")) << diff.output;
  const CommandResult diff_json = run_trainrr("diff --json " + boundary + " " + trace);
  EXPECT_EQ(diff_json.exit_code, 0) << diff_json.output;
  EXPECT_TRUE(has(diff_json.output, "\"status\":\"truncated\"")) << diff_json.output;
  EXPECT_TRUE(has(diff_json.output, "\"side\":\"A\",\"reason\":\"truncated\",\"after_step\":11,\"offset\":null"))
      << diff_json.output;
  const CommandResult diff_boundary = run_trainrr("diff " + boundary + " " + trace);
  EXPECT_EQ(diff_boundary.output.rfind("truncated: A (" + boundary +
                                           ") ends after step 11 with no footer (a recording killed or cut "
                                           "there); the steps both hold are identical (12 steps compared)\n",
                                       0),
            0u)
      << diff_boundary.output;
}

// A recording killed after its last step loses its final checkpoint and footer, or part of them: every step
// is there, yet the trace is cut, and replay, diff and bisect say so as for a cut anywhere else.
TEST(TruncatedTraceReport, ATraceCutAfterItsLastStepIsTruncatedInReplayDiffAndBisect) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", kDeterministic);
  const std::string bytes = read_file(trace);
  int64_t last = 0;
  while (step_message(trace, last + 1).to > 0) ++last;
  const uint64_t end_of_steps = step_message(trace, last).to;
  ASSERT_GT(end_of_steps, 0u);
  const std::string after = " after step " + std::to_string(last) + " ";
  const std::string steps = "(" + std::to_string(last + 1) + " steps compared)\n";
  // After the last step's message; inside the final checkpoint; inside the footer.
  for (const uint64_t size : {end_of_steps, end_of_steps + 100, uint64_t{bytes.size() - 3}}) {
    const std::string cut = dir.file("cut" + std::to_string(size) + ".trr");
    write_file(cut, bytes.substr(0, size));
    const CommandResult replay = run_trainrr("replay " + cut);
    EXPECT_EQ(replay.exit_code, 0) << replay.output;
    EXPECT_EQ(replay.output.rfind("truncated: the trace ", 0), 0u) << size << ": " << replay.output;
    EXPECT_TRUE(has(replay.output, after)) << replay.output;
    EXPECT_TRUE(has(replay.output, "; the steps it holds reproduced bit for bit " + steps)) << replay.output;
    const CommandResult replay_json = run_trainrr("replay --json " + cut);
    EXPECT_TRUE(has(replay_json.output, "\"status\":\"truncated\"")) << replay_json.output;
    EXPECT_TRUE(has(replay_json.output, "\"reason\":\"truncated\",\"after_step\":" + std::to_string(last)))
        << replay_json.output;

    for (const bool cut_is_a : {true, false}) {
      const CommandResult diff = run_trainrr("diff " + (cut_is_a ? cut + " " + trace : trace + " " + cut));
      EXPECT_EQ(diff.exit_code, 0) << diff.output;
      EXPECT_EQ(diff.output.rfind(std::string("truncated: ") + (cut_is_a ? "A (" : "B (") + cut + ") ", 0),
                0u)
          << size << ": " << diff.output;
      EXPECT_TRUE(has(diff.output, "; the steps both hold are identical " + steps)) << diff.output;
    }
    const CommandResult diff_json = run_trainrr("diff --json " + trace + " " + cut);
    EXPECT_TRUE(has(diff_json.output, "\"status\":\"truncated\"")) << diff_json.output;
    EXPECT_TRUE(has(diff_json.output,
                    "\"side\":\"B\",\"reason\":\"truncated\",\"after_step\":" + std::to_string(last)))
        << diff_json.output;
  }
  const std::string cut = dir.file("cut" + std::to_string(end_of_steps + 100) + ".trr");
  const CommandResult bisect = run_trainrr("bisect --json " + cut);
  EXPECT_EQ(bisect.exit_code, 0) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "\"status\":\"truncated\"")) << bisect.output;
  // The trace itself, whole, is none of these.
  const CommandResult whole = run_trainrr("replay --json " + trace);
  EXPECT_TRUE(has(whole.output, "\"status\":\"reproduced\"")) << whole.output;
  EXPECT_TRUE(has(whole.output, "\"trace_stop\":null")) << whole.output;
}

TEST(DamagedTraceReport, BisectSaysDamagedWhenAFreeReplayReproducesTheStepsBeforeIt) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", kDeterministic);
  const std::string damaged = dir.file("damaged.trr");
  const int64_t step = damage_a_step(trace, damaged, 10);
  ASSERT_GE(step, 1);
  const uint64_t at = step_message(trace, step).from;

  const CommandResult bisect = run_trainrr("bisect " + damaged);
  EXPECT_EQ(bisect.exit_code, 2) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "\ndamaged: the trace was changed after it was written: reading stopped at byte " +
                                     std::to_string(at) + ", after step " + std::to_string(step - 1) +
                                     "; a free replay reproduces the steps before it bit for bit\n"))
      << bisect.output;
  EXPECT_FALSE(has(bisect.output, "reproduced bit for bit")) << bisect.output;
  const CommandResult json = run_trainrr("bisect --json " + damaged);
  EXPECT_TRUE(has(json.output, "\"status\":\"damaged\"")) << json.output;

  // Against its damaged copy, bisect compares what both hold, as diff does, and says the copy is damaged.
  const CommandResult against = run_trainrr("bisect --json " + trace + " --against " + damaged);
  EXPECT_EQ(against.exit_code, 2) << against.output;
  EXPECT_TRUE(has(against.output, "\"status\":\"damaged\"")) << against.output;
  EXPECT_TRUE(has(against.output, "\"side\":\"B\",\"reason\":\"damaged\"")) << against.output;
}

// bisect --against B bisects where the two recordings differ, as diff finds it, even when a free replay here
// reproduces A: the recordings still differ.
TEST(BisectAgainst, ReportsTheDifferenceBetweenTheRecordingsWhenAFreeReplayReproducesA) {
  if (detect_isa() == Isa::generic) GTEST_SKIP() << "this CPU runs only the generic kernels";
  TempDir dir;
  const std::string a = record(dir, "a.trr", kDeterministic);
  const std::string b = dir.file("b.trr");
  const CommandResult rec = run_trainrr_env(
      "TRAINRR_ISA=generic", "record " + example("breast_cancer.toml") + " -o " + b + " " + kDeterministic);
  ASSERT_EQ(rec.exit_code, 0) << rec.output;
  const CommandResult diff = run_trainrr("diff --json " + a + " " + b);
  ASSERT_EQ(diff.exit_code, 1) << diff.output;
  ASSERT_TRUE(has(diff.output, "\"first_divergence\":{\"step\":0,")) << diff.output;

  const CommandResult bisect = run_trainrr("bisect --json " + a + " --against " + b);
  EXPECT_EQ(bisect.exit_code, 1) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "\"status\":\"diverged\"")) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "\"first_divergence\":{\"step\":0,")) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "\"category\":\"kernel\"")) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "\"free_replay_here\":\"reproduces A through step 0: the difference between A "
                                 "and B does not recur here\""))
      << bisect.output;
}

// Hands out the next batch of the epoch, in place of the ordered loader's, at some steps: a recording that a
// free replay (the ordered loader) differs from at those steps, and no other.
class OtherBatches : public ForwardingHooks {
 public:
  OtherBatches(Hooks& in, std::set<int64_t> steps) : ForwardingHooks(in), steps_(std::move(steps)) {}
  void batch_order(int64_t step, int64_t& b) override {
    if (steps_.count(step)) b = b + 1;
    in_.batch_order(step, b);
  }

 private:
  std::set<int64_t> steps_;
};

// A and B both take another batch at step 3, and B another at step 7 too: the recordings differ at step 7.
// A free replay here differs from A first at step 3; bisect reports both, the recordings' difference first.
TEST(BisectAgainst, ReportsTheRecordingsDifferenceFirstAndAFreeReplaysOwnBesideIt) {
  TempDir dir;
  const std::vector<std::string> sets = {"train.epochs=1", "runtime.threads=1", "runtime.policy=deterministic"};
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(record_via_api(example("breast_cancer.toml"), sets, a,
                           [](Hooks& in) { return std::make_unique<OtherBatches>(in, std::set<int64_t>{3}); }),
            "");
  ASSERT_EQ(record_via_api(example("breast_cancer.toml"), sets, b,
                           [](Hooks& in) { return std::make_unique<OtherBatches>(in, std::set<int64_t>{3, 7}); }),
            "");
  const CommandResult diff = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(diff.exit_code, 1) << diff.output;
  ASSERT_EQ(diff.output.rfind("diverged at step 7, input data/loader\n", 0), 0u) << diff.output;
  // The loader's cause opens with the batches that differ: no what line says them again.
  EXPECT_TRUE(has(diff.output, "\n  cause: loader: batch 7 (A), batch 8 (B); ")) << diff.output;
  EXPECT_FALSE(has(diff.output, "\n  what: ")) << diff.output;

  const CommandResult bisect = run_trainrr("bisect " + a + " --against " + b);
  EXPECT_EQ(bisect.exit_code, 1) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "\ndiverged at step 7, input data/loader\n  cause: loader: ")) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "\nfree replay here: diverges from A first at step 3, input, data/loader (loader: "))
      << bisect.output;
  EXPECT_TRUE(has(bisect.output, "a difference of its own before A and B differ\n")) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "\ndivergent step: 7\n")) << bisect.output;
  // Forcing what it names reproduces A through the step where the recordings differ.
  EXPECT_TRUE(has(bisect.output, "\nminimal forced choices: loader\n")) << bisect.output;
  const CommandResult json = run_trainrr("bisect --json " + a + " --against " + b);
  EXPECT_TRUE(has(json.output, "\"first_divergence\":{\"step\":7,\"phase\":\"input\",\"kind\":\"loader\""))
      << json.output;
}

// A free replay here under another policy differs from A first at a probe of step 0, whose divergence carries
// no words of its own: the report gives its cause's, and the result line's punctuation and command are whole.
TEST(BisectAgainst, NamesTheCauseOfAFreeReplaysDifferenceAtAProbe) {
  if (detect_isa() == Isa::generic) GTEST_SKIP() << "this CPU runs only the generic kernels";
  TempDir dir;
  const std::vector<std::string> sets = {"train.epochs=1", "runtime.threads=1"};
  const std::string a = dir.file("a.trr"), b = dir.file("b.trr");
  ASSERT_EQ(record_via_api(example("breast_cancer.toml"), sets, a, {}, ProbeLevel::layer), "");
  ASSERT_EQ(record_via_api(example("breast_cancer.toml"), sets, b,
                           [](Hooks& in) { return std::make_unique<OtherBatches>(in, std::set<int64_t>{5}); },
                           ProbeLevel::layer),
            "");
  const CommandResult bisect = run_trainrr("bisect " + a + " --against " + b + " --set runtime.policy=portable");
  EXPECT_EQ(bisect.exit_code, 1) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "\ndiverged at step 5, input data/loader\n")) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "\nfree replay here: diverges from A first at step 0, forward, ")) << bisect.output;
  EXPECT_TRUE(has(bisect.output, ":out (kernel: kernel selections differ: ")) << bisect.output;
  EXPECT_FALSE(has(bisect.output, ": )")) << bisect.output;
  EXPECT_TRUE(has(bisect.output, "to reproduce A through step 5, where A and B differ; `trainrr replay " + a +
                                     " --force ")) << bisect.output;
  EXPECT_FALSE(has(bisect.output, ",;")) << bisect.output;
  EXPECT_TRUE(has(bisect.output, " --set runtime.policy=portable --to-step 6` does\n")) << bisect.output;
}

TEST(ShowOfAFileThatIsNoTrace, SaysNotATraceAndNothingOfARecordingWhileACutHeaderSaysTruncated) {
  const CommandResult csv = run_trainrr("show " + example("data/digits.csv"));
  EXPECT_EQ(csv.exit_code, 2) << csv.output;
  EXPECT_TRUE(has(csv.output, "digits.csv: not a trainrr trace (it does not start with a trace header)"))
      << csv.output;
  for (const char* word : {"truncated", "recording", "cleanly", "byte"})
    EXPECT_FALSE(has(csv.output, word)) << word << ": " << csv.output;

  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=1");
  const std::string cut = dir.file("cut.trr");
  write_file(cut, read_file(trace).substr(0, 100));  // inside the header, after its magic
  for (const std::string& command : {"show " + cut, "dump " + cut, "replay " + cut}) {
    const CommandResult r = run_trainrr(command);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output, cut + ": truncated inside its header: the header needs at least ")) << r.output;
    EXPECT_TRUE(has(r.output, " bytes, the file holds 100 (the recording was killed or cut before it had written "
                              "its header): nothing in it can be read"))
        << r.output;
    EXPECT_FALSE(has(r.output, "not a trainrr trace")) << command << "\n" << r.output;
  }
}

// A range of steps that starts past the end holds nothing and is refused, as --from-step past the end is;
// one that runs past the end is done to the end, and says so.
TEST(StepRangesPastTheEnd, DumpRefusesARangeWithNoStepAndNotesOneThatRunsPast) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=2");  // steps 0..29
  for (const std::string range : {"40:", "30", "35:50"}) {
    const CommandResult r = run_trainrr("dump " + trace + " --steps " + range);
    EXPECT_EQ(r.exit_code, 2) << range << ": " << r.output;
    EXPECT_TRUE(has(r.output, "--steps '" + range + "': no step of " + trace + " is in the range: its steps are "
                              "0..29"))
        << r.output;
    // Nothing of the trace is printed before the refusal: the error is the whole output.
    EXPECT_EQ(r.output.rfind("trainrr: --steps '", 0), 0u) << r.output;
  }
  const CommandResult past = run_trainrr("dump " + trace + " --steps 28:40");
  EXPECT_EQ(past.exit_code, 0) << past.output;
  EXPECT_TRUE(has(past.output, "\nnote --steps '28:40' runs past the last step of the trace: its steps are 0..29; "
                               "printed steps 28..29\n"))
      << past.output;
  const CommandResult json = run_trainrr("dump --json " + trace + " --steps 29:31");
  EXPECT_EQ(json.exit_code, 0) << json.output;
  EXPECT_TRUE(has(json.output, "{\"type\":\"note\",\"text\":\"--steps '29:31' runs past the last step of the "
                               "trace: its steps are 0..29; printed step 29\"}"))
      << json.output;
  const CommandResult inside = run_trainrr("dump " + trace + " --steps 28:30");
  EXPECT_EQ(inside.exit_code, 0) << inside.output;
  EXPECT_FALSE(has(inside.output, "runs past")) << inside.output;
}

TEST(StepRangesPastTheEnd, ReplayToStepPastTheEndReplaysToItAndSaysSo) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=2");  // steps 0..29
  const CommandResult past = run_trainrr("replay " + trace + " --to-step 45");
  EXPECT_EQ(past.exit_code, 0) << past.output;
  EXPECT_EQ(past.output.rfind("reproduced bit for bit (30 steps compared)\n", 0), 0u) << past.output;
  EXPECT_TRUE(has(past.output, "\nnote: --to-step 45 is past the run's end: it has steps 0..29, replayed to the "
                               "last\n"))
      << past.output;
  const CommandResult from = run_trainrr("replay " + trace + " --from-step 45");
  EXPECT_EQ(from.exit_code, 2) << from.output;
  EXPECT_TRUE(has(from.output, "step 45 is past the run's end: it has steps 0..29")) << from.output;
  const CommandResult at_end = run_trainrr("replay " + trace + " --to-step 30");
  EXPECT_EQ(at_end.exit_code, 0) << at_end.output;
  EXPECT_FALSE(has(at_end.output, "past the run's end")) << at_end.output;
}

// --- Messages out of their recorded order or at odds with each other ---

// Every message of `trace` after its header, as the reader returns them, footer last.
std::vector<trace::TraceRecord> messages_of(const std::string& trace) {
  std::vector<trace::TraceRecord> out;
  auto reader = trace::TraceReader::open(trace);
  EXPECT_TRUE(reader) << reader.error().message;
  if (!reader) return out;
  for (;;) {
    auto rec = (*reader)->next();
    EXPECT_TRUE(rec) << rec.error().message;
    if (!rec || !*rec) return out;
    out.push_back(std::move(**rec));
  }
}

// `trace` rewritten to `name` in `dir` by the project's writer (which chains the messages and counts them in
// the footer), after `edit` has changed its header and messages: a file changed after it was written, whose
// every digest is right.
std::string rewritten(
    const TempDir& dir, const std::string& trace, const std::string& name,
    const std::function<void(trace::TraceHeader&, std::vector<trace::TraceRecord>&)>& edit) {
  const std::string to = dir.file(name);
  auto reader = trace::TraceReader::open(trace);
  EXPECT_TRUE(reader);
  if (!reader) return to;
  trace::TraceHeader header = (*reader)->header();
  header.writer_version.clear();
  std::vector<trace::TraceRecord> messages = messages_of(trace);
  edit(header, messages);
  auto writer = trace::TraceWriter::create(to, header);
  EXPECT_TRUE(writer) << writer.error().message;
  if (!writer) return to;
  for (const trace::TraceRecord& m : messages) {
    Status s;
    if (const auto* step = std::get_if<trace::TraceStep>(&m.value)) s = (*writer)->write_step(*step);
    if (const auto* epoch = std::get_if<trace::TraceEpoch>(&m.value)) s = (*writer)->write_epoch(*epoch);
    if (const auto* cp = std::get_if<trace::TraceCheckpoint>(&m.value)) s = (*writer)->write_checkpoint(*cp);
    if (const auto* footer = std::get_if<trace::TraceFooter>(&m.value)) s = (*writer)->finish(*footer);
    EXPECT_TRUE(s) << s.error().message;
  }
  return to;
}

// The index in `messages` of the step of index `step`, and of the checkpoint at `step`.
size_t step_at(const std::vector<trace::TraceRecord>& messages, int64_t step) {
  for (size_t i = 0; i < messages.size(); ++i)
    if (const auto* s = std::get_if<trace::TraceStep>(&messages[i].value); s && s->index == step) return i;
  ADD_FAILURE() << "no step " << step;
  return 0;
}
size_t checkpoint_at(const std::vector<trace::TraceRecord>& messages, int64_t step) {
  for (size_t i = 0; i < messages.size(); ++i)
    if (const auto* c = std::get_if<trace::TraceCheckpoint>(&messages[i].value); c && c->step == step)
      return i;
  ADD_FAILURE() << "no checkpoint at step " << step;
  return 0;
}

TEST(MessagesOutOfOrder, AStepLeftOutOrRenumberedIsDamageAtItNotADivergence) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=1");
  const std::string dropped =
      rewritten(dir, trace, "dropped.trr", [](auto&, auto& m) { m.erase(m.begin() + step_at(m, 6)); });
  expect_damaged_after(trace, dropped, 5, "step 7 follows step 5, where step 6 was due");
  const std::string renumbered = rewritten(dir, trace, "renumbered.trr", [](auto&, auto& m) {
    for (auto& r : m)
      if (auto* s = std::get_if<trace::TraceStep>(&r.value); s && s->index >= 6) s->index += 594;
  });
  expect_damaged_after(trace, renumbered, 5, "step 600 follows step 5, where step 6 was due");
}

TEST(MessagesOutOfOrder, AnEpochEndRepeatedOrACheckpointAtAnotherStepIsDamageAndIsNotExported) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=1");
  const std::string repeated = rewritten(dir, trace, "repeated.trr", [](auto&, auto& m) {
    for (size_t i = 0; i < m.size(); ++i)
      if (std::holds_alternative<trace::TraceEpoch>(m[i].value)) {
        m.insert(m.begin() + static_cast<std::ptrdiff_t>(i) + 1, m[i]);
        return;
      }
  });
  expect_damaged_after(trace, repeated, 14,
                       "the end of epoch 1 follows the end of epoch 1, where the end of epoch 2 was due");
  const std::string moved = rewritten(dir, trace, "moved.trr", [](auto&, auto& m) {
    std::get<trace::TraceCheckpoint>(m[checkpoint_at(m, 15)].value).step = 7;
  });
  expect_damaged_after(trace, moved, 14, "checkpoint at step 7 (taken after 7 steps) follows step 14");
  const CommandResult exported = run_trainrr("export " + moved + " --step 10 -o " + dir.file("ck"));
  EXPECT_EQ(exported.exit_code, 2) << exported.output;
  EXPECT_TRUE(has(exported.output, "checkpoint at step 7 (taken after 7 steps) follows step 14"))
      << exported.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("ck")));
  const CommandResult resumed = run_trainrr("replay " + moved + " --from-step 10");
  EXPECT_EQ(resumed.exit_code, 2) << resumed.output;
  EXPECT_TRUE(has(resumed.output, "checkpoint at step 7 (taken after 7 steps) follows step 14"))
      << resumed.output;
  EXPECT_FALSE(has(resumed.output, "diverged")) << resumed.output;
}

// The tensors of the checkpoint at step `from` put into the checkpoint at step `into`.
std::function<void(trace::TraceHeader&, std::vector<trace::TraceRecord>&)> checkpoint_replaced(int64_t into,
                                                                                               int64_t from) {
  return [into, from](trace::TraceHeader&, std::vector<trace::TraceRecord>& m) {
    const auto& source = std::get<trace::TraceCheckpoint>(m[checkpoint_at(m, from)].value);
    std::get<trace::TraceCheckpoint>(m[checkpoint_at(m, into)].value).tensors = source.tensors;
  };
}

TEST(CheckpointAgainstItsStep, AFinalCheckpointThatIsNotTheLastStepsStateIsDamageAndIsNotExported) {
  TempDir dir;
  for (const std::string level : {"op", "step"}) {
    const std::string trace =
        record(dir, level + ".trr", "--set train.epochs=2 --checkpoint-every 5 --level " + level);
    const std::string swapped = rewritten(dir, trace, level + "_swapped.trr", checkpoint_replaced(30, 0));
    expect_damaged_after(
        trace, swapped, 29,
        "checkpoint at step 30: its parameters are not those step 29 recorded after its update");
    const CommandResult exported = run_trainrr("export " + swapped + " --step 30 -o " + dir.file("ck"));
    EXPECT_EQ(exported.exit_code, 2) << exported.output;
    EXPECT_TRUE(has(exported.output, "checkpoint at step 30: its parameters are not those step 29 recorded"))
        << exported.output;
    EXPECT_FALSE(std::filesystem::exists(dir.file("ck")));
  }
}

TEST(CheckpointAgainstItsStep, AMiddleCheckpointThatIsNotItsStepsStateIsNotResumedFromOrExported) {
  TempDir dir;
  const std::string trace = record(dir, "run.trr", "--set train.epochs=2 --checkpoint-every 5 --level op");
  const std::string swapped = rewritten(dir, trace, "swapped.trr", checkpoint_replaced(25, 0));
  const std::string why =
      "checkpoint at step 25: its parameters are not those step 24 recorded after its update";
  const CommandResult resumed = run_trainrr("replay " + swapped + " --from-step 25");
  EXPECT_EQ(resumed.exit_code, 2) << resumed.output;
  EXPECT_TRUE(has(resumed.output, why)) << resumed.output;
  EXPECT_FALSE(has(resumed.output, "numeric")) << resumed.output;
  const CommandResult exported = run_trainrr("export " + swapped + " --step 27 -o " + dir.file("ck"));
  EXPECT_EQ(exported.exit_code, 2) << exported.output;
  EXPECT_TRUE(has(exported.output, why)) << exported.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("ck")));
  expect_damaged_after(trace, swapped, 24, why);
  // The checkpoints before it are as recorded: a resumed replay and an export from them stand.
  EXPECT_EQ(run_trainrr("export " + swapped + " --step 24 -o " + dir.file("ck")).exit_code, 0);
  // The recording itself resumes and exports from that checkpoint.
  EXPECT_EQ(run_trainrr("replay " + trace + " --from-step 25").exit_code, 0);
  EXPECT_EQ(run_trainrr("export " + trace + " --step 27 -o " + dir.file("ck2")).exit_code, 0);
}

TEST(LevelAgainstSteps, AHeaderWhoseLevelIsNotWhatItsStepsRecordIsDamageNotANumericDivergence) {
  TempDir dir;
  const std::string step_trace = record(dir, "step.trr", "--set train.epochs=1");
  const std::string as_op =
      rewritten(dir, step_trace, "as_op.trr", [](auto& h, auto&) { h.level = ProbeLevel::op; });
  const CommandResult replay = run_trainrr("replay " + as_op);
  EXPECT_EQ(replay.exit_code, 2) << replay.output;
  EXPECT_TRUE(has(replay.output, "step 0 holds none of the probes a trace recorded at level op"))
      << replay.output;
  EXPECT_FALSE(has(replay.output, "numeric")) << replay.output;
  const CommandResult show = run_trainrr("show " + as_op);
  EXPECT_EQ(show.exit_code, 2) << show.output;
  EXPECT_FALSE(has(show.output, "none in any probe")) << show.output;

  const std::string op_trace = record(dir, "op.trr", "--set train.epochs=1 --level op");
  const std::string as_layer =
      rewritten(dir, op_trace, "as_layer.trr", [](auto& h, auto&) { h.level = ProbeLevel::layer; });
  const CommandResult layer = run_trainrr("replay " + as_layer);
  EXPECT_EQ(layer.exit_code, 2) << layer.output;
  EXPECT_TRUE(has(layer.output,
                  "step 0 holds a probe of dense_1/matmul.fwd:out, which a trace recorded at level layer"))
      << layer.output;
  EXPECT_FALSE(has(layer.output, "numeric")) << layer.output;
}

}  // namespace
}  // namespace trainrr::testing
