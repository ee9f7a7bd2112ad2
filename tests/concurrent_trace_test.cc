// End-to-end tests of one trace path used by several processes at once: two recordings to one path, readers
// of a trace that is still being recorded, and a trace replaced under a reader that has it open.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/recording_util.h"
#include "tests/test_util.h"
#include "traces/trace_reader.h"

extern char** environ;

namespace trainrr::testing {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t count_lines_matching(const std::string& text, const std::regex& re) {
  std::istringstream in(text);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) n += std::regex_search(line, re);
  return n;
}

// Starts `trainrr ARGS` with its stdout and stderr to `output`; the pid, or -1.
pid_t spawn_trainrr(const std::vector<std::string>& args, const std::string& output) {
  std::string bin = TRAINRR_BIN;
  std::vector<std::string> copy = args;
  std::vector<char*> argv{bin.data()};
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, bin.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

int exit_code_of(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A run that takes a few tenths of a second: long enough that two started together overlap.
std::vector<std::string> record_args(const std::string& out, int epochs) {
  return {"record", example("digits_mlp.toml"),
          "--set",  "runtime.threads=1",
          "--set",  "train.epochs=" + std::to_string(epochs),
          "-o",     out};
}

TEST(TwoRecordingsToOnePath, OneWritesAnIntactTraceAndTheOtherIsRefusedWithExitTwoNamingThePathAndPid) {
  TempDir d;
  const std::string out = d.file("same.trr");
  // The first trial records to a new path, the others over the trace the trial before left there.
  for (int trial = 0; trial < 10; ++trial) {
    const std::string log_a = d.file("a.log"), log_b = d.file("b.log");
    const pid_t a = spawn_trainrr(record_args(out, 60), log_a);
    const pid_t b = spawn_trainrr(record_args(out, 60), log_b);
    ASSERT_GT(a, 0);
    ASSERT_GT(b, 0);
    const int rc_a = exit_code_of(a), rc_b = exit_code_of(b);
    const std::string out_a = read_text(log_a), out_b = read_text(log_b);
    ASSERT_TRUE((rc_a == 0 && rc_b == 2) || (rc_a == 2 && rc_b == 0))
        << "trial " << trial << ": exit codes " << rc_a << " and " << rc_b << "\nA:\n"
        << out_a.substr(out_a.size() > 1500 ? out_a.size() - 1500 : 0) << "\nB:\n"
        << out_b.substr(out_b.size() > 1500 ? out_b.size() - 1500 : 0);
    const bool a_won = rc_a == 0;
    const pid_t winner = a_won ? a : b;
    const std::string& won = a_won ? out_a : out_b;
    const std::string& refused = a_won ? out_b : out_a;
    EXPECT_NE(won.find("trace: " + out + ", 2700 steps"), std::string::npos) << "trial " << trial << ":\n"
                                                                             << won;
    EXPECT_NE(refused.find("trainrr: " + out + ": another trainrr (process " + std::to_string(winner) +
                           ") is recording to this trace; choose another trace path (-o) or wait for it to "
                           "finish"),
              std::string::npos)
        << "trial " << trial << ":\n"
        << refused;
    EXPECT_EQ(refused.find("trace: "), std::string::npos) << "trial " << trial << ":\n" << refused;

    const CommandResult show = run_trainrr("show " + out);
    ASSERT_EQ(show.exit_code, 0) << "trial " << trial << ":\n" << show.output;
    EXPECT_NE(show.output.find("ended cleanly: the run completed (completed), 2700 steps"), std::string::npos)
        << "trial " << trial << ":\n"
        << show.output;
    // Nothing but the trace and the two logs is left in the folder.
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(d.path()), {}), 3) << "trial " << trial;
  }
  const CommandResult replay = run_trainrr("replay " + out);
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_NE(replay.output.find("reproduced bit for bit"), std::string::npos) << replay.output;
}

// Runs `trainrr` commands when the run reaches step `at`: the recorder has written the steps before it.
class ReadAtStep : public ForwardingHooks {
 public:
  ReadAtStep(Hooks& inner, int64_t at, std::function<void()> read)
      : ForwardingHooks(inner), at_(at), read_(std::move(read)) {}
  void step_begin(int64_t s, int e, int64_t b) override {
    if (s == at_) read_();
    ForwardingHooks::step_begin(s, e, b);
  }

 private:
  int64_t at_;
  std::function<void()> read_;
};

// export of a trace being recorded says so, as show and dump do: its checkpoints are those written so far.
TEST(ATraceBeingRecorded, ExportSaysItIsStillBeingRecorded) {
  TempDir d;
  const std::string live = d.file("live.trr");
  CommandResult exported;
  const std::string error = record_via_api(
      example("digits_mlp.toml"), {"train.epochs=1", "runtime.threads=1"}, live,
      [&](Hooks& recorder) {
        return std::make_unique<ReadAtStep>(recorder, 7, [&] {
          exported = run_trainrr("export " + live + " --step 100 -o " + d.file("ck"));
        });
      },
      ProbeLevel::step, 2);
  ASSERT_EQ(error, "");
  EXPECT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_NE(exported.output.find("note: " + live + ": still being recorded (process " +
                                 std::to_string(::getpid()) + "): read up to its last complete step"),
            std::string::npos)
      << exported.output;
}

TEST(ATraceBeingRecorded, ShowDumpReplayAndDiffReadItsCompleteStepsWithANoteAndNoDamage) {
  TempDir d;
  const std::string cfg = example("digits_mlp.toml");
  const std::vector<std::string> overrides = {"train.epochs=1", "runtime.threads=1"};
  const std::string full = d.file("full.trr"), live = d.file("live.trr");
  ASSERT_EQ(record_via_api(cfg, overrides, full), "");
  CommandResult show, dump, replay, diff;
  const std::string error = record_via_api(cfg, overrides, live, [&](Hooks& recorder) {
    return std::make_unique<ReadAtStep>(recorder, 6, [&] {
      show = run_trainrr("show " + live);
      dump = run_trainrr("dump " + live);
      replay = run_trainrr("replay " + live);
      diff = run_trainrr("diff " + live + " " + full);
    });
  });
  ASSERT_EQ(error, "");
  const std::string note = live + ": still being recorded (process " + std::to_string(::getpid()) +
                           "): read up to its last complete step";

  EXPECT_EQ(show.exit_code, 0) << show.output;
  EXPECT_NE(show.output.find("note: " + note + "\n"), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("still being recorded: 6 complete steps readable so far"), std::string::npos)
      << show.output;
  EXPECT_EQ(dump.exit_code, 0) << dump.output;
  EXPECT_NE(dump.output.find("note " + note + "\n"), std::string::npos) << dump.output;
  EXPECT_EQ(count_lines_matching(dump.output, std::regex(R"(^step \d+ end )")), 6u) << dump.output;
  EXPECT_NE(dump.output.find("still being recorded: 6 complete steps readable so far"), std::string::npos)
      << dump.output;
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_NE(replay.output.find("reproduced bit for bit (6 steps compared)"), std::string::npos)
      << replay.output;
  EXPECT_NE(replay.output.find("note: " + note + "\n"), std::string::npos) << replay.output;
  EXPECT_EQ(diff.exit_code, 0) << diff.output;
  EXPECT_NE(diff.output.find("note: " + note + "\n"), std::string::npos) << diff.output;
  EXPECT_NE(diff.output.find("A ends first, after 6 steps"), std::string::npos) << diff.output;
  for (const CommandResult* r : {&show, &dump, &replay, &diff}) {
    EXPECT_EQ(r->output.find("damaged"), std::string::npos) << r->output;
    EXPECT_EQ(r->output.find("truncated"), std::string::npos) << r->output;
    EXPECT_EQ(r->output.find("did not end cleanly"), std::string::npos) << r->output;
  }
  // Once recorded, the trace is whole and says nothing of a recording.
  const CommandResult after = run_trainrr("show " + live);
  EXPECT_EQ(after.exit_code, 0) << after.output;
  EXPECT_NE(after.output.find("ended cleanly: the run completed"), std::string::npos) << after.output;
  EXPECT_EQ(after.output.find("still being recorded"), std::string::npos) << after.output;
}

// A real recording read over and over while it runs: each read ends at a message the writer may be halfway
// through, and none may call the trace damaged or cut.
TEST(ATraceBeingRecorded, ShowAndDumpWhileTheRecordingRunsNeverCallItDamagedOrCut) {
  TempDir d;
  const std::string out = d.file("run.trr");
  const pid_t pid = spawn_trainrr(record_args(out, 300), d.file("record.log"));
  ASSERT_GT(pid, 0);
  int reads = 0, live_reads = 0;
  for (;;) {
    int status = 0;
    const bool ended = waitpid(pid, &status, WNOHANG) == pid;
    std::error_code ec;
    if (std::filesystem::exists(out, ec)) {
      const bool show = reads % 2 == 0;
      const CommandResult r = run_trainrr((show ? "show " : "dump ") + out);
      ++reads;
      ASSERT_EQ(r.exit_code, 0) << r.output.substr(r.output.size() > 2000 ? r.output.size() - 2000 : 0);
      const bool is_live = r.output.find("still being recorded: ") != std::string::npos;
      live_reads += is_live;
      if (is_live) {
        EXPECT_NE(r.output.find(out + ": still being recorded (process " + std::to_string(pid) + ")"),
                  std::string::npos)
            << r.output.substr(0, 2000);
      } else if (show) {
        EXPECT_NE(r.output.find("ended cleanly: the run completed"), std::string::npos) << r.output;
      }
      EXPECT_EQ(r.output.find("did not end cleanly"), std::string::npos) << r.output.substr(0, 2000);
    }
    if (ended) {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_text(d.file("record.log"));
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE(live_reads, 3) << "of " << reads << " reads, too few landed while the recording ran";
}

TEST(ATraceReplacedByARecording, AReaderThatHadItOpenReadsTheEarlierTraceToItsEndUnharmed) {
  TempDir d;
  const std::string out = d.file("run.trr"), copy = d.file("copy.trr");
  // Checkpoints make the trace far larger than the reader's read-ahead: it reads the file again after the
  // replacement, and would read the new trace's bytes if the file were rewritten in place.
  const CommandResult first = run_trainrr("record " + example("digits_mlp.toml") +
                                          " --set train.epochs=1 --checkpoint-every 1 -o " + out);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  ASSERT_GT(std::filesystem::file_size(out), uint64_t{1} << 20);
  std::filesystem::copy_file(out, copy);
  auto reader = trace::TraceReader::open(out);
  ASSERT_TRUE(reader) << reader.error().message;
  auto step0 = (*reader)->next();
  ASSERT_TRUE(step0 && *step0);

  const CommandResult second =
      run_trainrr("record " + example("breast_cancer.toml") + " --set train.epochs=2 -o " + out);
  ASSERT_EQ(second.exit_code, 0) << second.output;

  // What the reader reads on is what a reader of the earlier trace's copy reads after its first message.
  auto reference = trace::TraceReader::open(copy);
  ASSERT_TRUE(reference) << reference.error().message;
  ASSERT_TRUE((*reference)->next());
  int messages = 0;
  for (;;) {
    auto rec = (*reader)->next();
    ASSERT_TRUE(rec) << rec.error().message;
    auto want = (*reference)->next();
    ASSERT_TRUE(want) << want.error().message;
    ASSERT_EQ(rec->has_value(), want->has_value()) << "after " << messages << " messages";
    if (!*rec) break;
    EXPECT_EQ((*rec)->offset, (*want)->offset);
    EXPECT_EQ((*rec)->value.index(), (*want)->value.index());
    ++messages;
  }
  EXPECT_GE(messages, 90) << "45 steps and their checkpoints";
  EXPECT_TRUE((*reader)->ended_cleanly());
  const CommandResult show = run_trainrr("show " + out);
  EXPECT_NE(show.output.find("breast_cancer.toml"), std::string::npos) << "the new trace is at the path:\n"
                                                                       << show.output;
}

}  // namespace
}  // namespace trainrr::testing
