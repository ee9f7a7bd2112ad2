// A recording stopped before its end, over an earlier trace: killed, it leaves the earlier trace as it was;
// stopped by Ctrl-C, it replaces it with every step completed and the state it stopped in.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <thread>

#include "test_util.h"

namespace trainrr::testing {
namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The new trace a recording writes beside `folder`'s earlier trace until it replaces it ("" when none yet).
std::string pending_in(const std::filesystem::path& folder) {
  for (const auto& e : std::filesystem::directory_iterator(folder)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".trainrr-", 0) == 0 && name.size() > 9 && name.substr(name.size() - 9) == ".trr.part")
      return e.path().string();
  }
  return "";
}

class RecordStop : public ::testing::Test {
 protected:
  void SetUp() override {
    const CommandResult r =
        run_trainrr("record " + example("breast_cancer.toml") + " --set train.epochs=1 -o " + trace);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    earlier = read_all(trace);
  }

  // Starts a long recording over the earlier trace, waits until the new one holds some steps beside it,
  // sends `sig` and returns the wait status.
  int record_and_stop(int sig, std::vector<std::string> extra = {},
                      std::function<void()> before_signal = {}) {
    std::string bin = TRAINRR_BIN, verb = "record", config = example("breast_cancer.toml"), set = "--set",
                epochs = "train.epochs=100000", o = "-o";
    std::vector<char*> argv = {bin.data(),    verb.data(), config.data(), set.data(),
                               epochs.data(), o.data(),    trace.data()};
    for (std::string& e : extra) argv.push_back(e.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = 0;
    const int spawned = posix_spawn(&pid, bin.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (spawned != 0) return -1;
    last_pid = pid;
    for (int i = 0; i < 3000; ++i) {
      const std::string part = pending_in(dir.path());
      std::error_code ec;
      if (!part.empty() && std::filesystem::file_size(part, ec) > 64 * 1024 && !ec) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (before_signal) before_signal();
    ::kill(pid, sig);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
  }

  pid_t last_pid = 0;  // the recording record_and_stop started last
  TempDir dir;
  std::string trace = dir.file("run.trr"), log = dir.file("record.log");
  std::string earlier;
};

// The new trace removed beside the earlier one while it is recorded, then Ctrl-C: the recording says that its
// steps are lost, not that a trace holds them, and the earlier trace is as it was.
TEST_F(RecordStop, ANewTraceRemovedWhileRecordedIsSaidToBeLostWhenTheRunIsStopped) {
  const int status = record_and_stop(SIGINT, {}, [&] {
    const std::string part = pending_in(dir.path());
    if (!part.empty()) std::filesystem::remove(part);
  });
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << "status " << status;
  const std::string said = read_all(log);
  EXPECT_TRUE(has(said, "was removed while it was recorded: its ")) << said;
  EXPECT_TRUE(has(said, " steps are lost; " + trace + " holds the earlier trace, as it was")) << said;
  EXPECT_FALSE(has(said, "holds the steps written before the failure")) << said;
  EXPECT_EQ(read_all(trace), earlier) << "the earlier trace is as it was";
}

TEST_F(RecordStop, AKilledRecordingLeavesTheEarlierTraceAndItsOwnStepsBeside) {
  const int status = record_and_stop(SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  const std::string said = read_all(log);
  const std::string part = pending_in(dir.path());
  ASSERT_FALSE(part.empty()) << said;
  EXPECT_NE(said.find(trace +
                      " holds an earlier trace: the new one replaces it when this run ends; until then "
                      "it is " +
                      std::filesystem::path(part).filename().string() + " beside it"),
            std::string::npos)
      << said;
  EXPECT_EQ(read_all(trace), earlier) << "the earlier trace is as it was";
  const CommandResult show = run_trainrr("show " + part);
  EXPECT_NE(show.output.find("did not end cleanly"), std::string::npos) << show.output;
  const CommandResult replay = run_trainrr("replay " + trace);
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
}

TEST_F(RecordStop, ARecordingStoppedByCtrlCReplacesTheEarlierTraceAndKeepsItsLastState) {
  const int status = record_and_stop(SIGINT);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << "status " << status << "\n"
                                                               << read_all(log);
  EXPECT_EQ(pending_in(dir.path()), "");
  const CommandResult show = run_trainrr("show " + trace);
  ASSERT_EQ(show.exit_code, 0) << show.output;
  std::smatch stopped, kept;
  ASSERT_TRUE(std::regex_search(show.output, stopped, std::regex(R"(interrupted at step (\d+))")))
      << show.output;
  ASSERT_TRUE(std::regex_search(show.output, kept,
                                std::regex(R"(checkpoints: 2: the initial state, after (\d+) steps)")))
      << show.output;
  EXPECT_EQ(stopped[1].str(), kept[1].str()) << show.output;
  // The state it stopped in is exported as the trace's last, not the initial weights.
  const CommandResult exported =
      run_trainrr("export " + trace + " --step " + kept[1].str() + " -o " + dir.file("ck"));
  EXPECT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_EQ(exported.output.find("note:"), std::string::npos) << exported.output;
  const CommandResult replay = run_trainrr("replay " + trace);
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
}

// Against a run of more steps than it holds, a stopped recording ends first because it was stopped, not by
// its epochs: diff says so in its note, and its cause does not tie where it ends to train.epochs.
TEST_F(RecordStop, DiffSaysAStoppedRecordingEndsFirstBecauseItWasStopped) {
  const int status = record_and_stop(SIGINT, {"--set", "runtime.policy=deterministic"});
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << "status " << status << "\n"
                                                               << read_all(log);
  const CommandResult show = run_trainrr("show " + trace);
  std::smatch stopped;
  ASSERT_TRUE(std::regex_search(show.output, stopped, std::regex(R"(interrupted at step (\d+))")))
      << show.output;
  const std::string longer = dir.file("longer.trr");
  const int64_t epochs = std::stoll(stopped[1].str()) / 10 + 2;  // at least 10 steps an epoch
  ASSERT_EQ(run_trainrr("record " + example("breast_cancer.toml") + " --set runtime.policy=deterministic" +
                        " --set train.epochs=" + std::to_string(epochs) + " -o " + longer)
                .exit_code,
            0);
  const CommandResult diff = run_trainrr("diff " + longer + " " + trace);
  EXPECT_EQ(diff.exit_code, 1) << diff.output;
  EXPECT_NE(diff.output.find("  truncated: the recording of B (" + trace + ") ends after step " +
                             std::to_string(std::stoll(stopped[1].str()) - 1) +
                             ": it was stopped (interrupted at step " + stopped[1].str() +
                             ") before its run's end: nothing after it is compared"),
            std::string::npos)
      << diff.output;
  // Another recording of the same configuration stopped elsewhere: the steps both hold are the same, and the
  // status says that the runs were not compared to their ends (truncated, exit 0), not "identical".
  const std::string first = dir.file("first.trr");
  std::filesystem::copy_file(trace, first);
  const int again = record_and_stop(SIGINT, {"--set", "runtime.policy=deterministic"});
  ASSERT_TRUE(WIFEXITED(again) && WEXITSTATUS(again) == 130) << "status " << again;
  const CommandResult both = run_trainrr("diff " + first + " " + trace);
  EXPECT_EQ(both.exit_code, 0) << both.output;
  if (!has(both.output, "identical: the two runs")) {  // unless both stopped after the same step
    EXPECT_TRUE(both.output.starts_with("truncated: the recording of ")) << both.output;
    EXPECT_TRUE(has(both.output, "before its run's end; the steps both hold are identical")) << both.output;
    EXPECT_TRUE(has(run_trainrr("diff " + first + " " + trace + " --json").output, R"("reason":"stopped")"));
  }
  const size_t cause = diff.output.find("  cause: config: ");
  ASSERT_NE(cause, std::string::npos) << diff.output;
  EXPECT_EQ(diff.output.substr(cause, diff.output.find('\n', cause) - cause).find("ends first"),
            std::string::npos)
      << diff.output;
}

// SIGTERM and SIGHUP (a closed terminal) stop it as Ctrl-C does; the exit code says which, as the shell's.
TEST_F(RecordStop, SigtermAndSighupStopItAsCtrlCDoesWithTheirOwnExitCodes) {
  for (const auto& [sig, code] : {std::pair{SIGTERM, 143}, std::pair{SIGHUP, 129}}) {
    const int status = record_and_stop(sig);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == code) << "status " << status << "\n"
                                                                  << read_all(log);
    const CommandResult show = run_trainrr("show " + trace);
    EXPECT_NE(show.output.find("interrupted at step "), std::string::npos) << show.output;
    EXPECT_EQ(pending_in(dir.path()), "");
  }
}

// Whether process `pid` catches signal `sig` (its handler is installed), from /proc/PID/status.
bool catches(pid_t pid, int sig) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("SigCgt:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> (sig - 1)) & 1;
  return false;
}

// A signal the caller ignores stays ignored (`nohup trainrr record ... &`): SIGHUP does not stop the
// recording, which Ctrl-C still stops as before.
TEST_F(RecordStop, ASignalTheCallerIgnoresStaysIgnored) {
  struct sigaction ignore = {}, before = {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ASSERT_EQ(::sigaction(SIGHUP, &ignore, &before), 0);
  bool caught_hup = true, caught_int = false, ran_on = false;
  const int status = record_and_stop(SIGINT, {}, [&] {
    caught_hup = catches(last_pid, SIGHUP);
    caught_int = catches(last_pid, SIGINT);
    ::kill(last_pid, SIGHUP);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ran_on = ::waitpid(last_pid, nullptr, WNOHANG) == 0;
  });
  ::sigaction(SIGHUP, &before, nullptr);
  EXPECT_FALSE(caught_hup);
  EXPECT_TRUE(caught_int);
  EXPECT_TRUE(ran_on) << read_all(log);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << "status " << status << "\n"
                                                               << read_all(log);
  EXPECT_NE(run_trainrr("show " + trace).output.find("interrupted at step "), std::string::npos);
}

// Ctrl-C while the run is still being set up (its data loaded), before any step ended: nothing was recorded,
// so an earlier trace stays as it was and a path that held none is left without a trace.
TEST_F(RecordStop, ACtrlCBeforeAnyStepEndsRecordsNothingAndKeepsTheEarlierTrace) {
  // Data large enough that loading it takes a while: the signal arrives then, once the handler is in place.
  const std::string digits = read_all(example("data/digits.csv"));
  const std::string rows = digits.substr(digits.find('\n') + 1);
  std::string big = digits.substr(0, digits.find('\n') + 1);
  for (int i = 0; i < 100; ++i) big += rows;
  const std::string data = dir.write("big.csv", big);
  const std::string config =
      dir.write("big.toml", read_all(example("digits_mlp.toml"))
                                .replace(read_all(example("digits_mlp.toml")).find("data/digits.csv"),
                                         std::string("data/digits.csv").size(), data));
  for (const std::string& target : {trace, dir.file("new.trr")}) {
    std::string bin = TRAINRR_BIN, verb = "record", o = "-o", out = target, cfg = config;
    std::vector<char*> argv = {bin.data(), verb.data(), cfg.data(), o.data(), out.data(), nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, bin.c_str(), &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    for (int i = 0; i < 20000 && !catches(pid, SIGINT); ++i)
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    ::kill(pid, SIGINT);
    int status = 0;
    ::waitpid(pid, &status, 0);
    const std::string said = read_all(log);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << "status " << status << "\n" << said;
    if (said.find("interrupted at step 0") == std::string::npos) {
      GTEST_SKIP() << "the signal arrived after the first step: " << said;
    }
    EXPECT_EQ(pending_in(dir.path()), "") << said;
    if (target == trace) {
      EXPECT_NE(said.find("interrupted at step 0, before any step ended: nothing was recorded; " + trace +
                          " holds the earlier trace, as it was"),
                std::string::npos)
          << said;
      EXPECT_EQ(read_all(trace), earlier) << said;
    } else {
      EXPECT_NE(said.find("before any step ended: nothing was recorded; no trace was written"),
                std::string::npos)
          << said;
      EXPECT_FALSE(std::filesystem::exists(target)) << said;
    }
  }
}

// A write that fails (here the file size limit, as a full disk would) while an earlier trace waits to be
// replaced: the earlier trace stays as it was, and the messages say so, not that it holds the new steps.
TEST_F(RecordStop, AFailedWriteLeavesTheEarlierTraceAndSaysItIsTheEarlierOne) {
  const CommandResult r =
      run_trainrr_env("trap '' XFSZ; ulimit -f 160;",
                      "record " + example("digits_mlp.toml") + " --set train.epochs=50 -o " + trace);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(
      r.output.find(trace + " holds the earlier trace, as it was: the new one could not be written whole, "
                            "and its steps were not kept"),
      std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("holds the steps written before the failure"), std::string::npos) << r.output;
  EXPECT_EQ(read_all(trace), earlier);
  EXPECT_EQ(pending_in(dir.path()), "");
}

// A recording stopped by Ctrl-C keeps the state it stopped in: a replay that stops there compares it, and
// optimizer slots that only the replay keeps are a difference there, not "reproduced".
TEST_F(RecordStop, AReplayOfAStoppedRecordingComparesTheStateItStoppedIn) {
  const int status =
      record_and_stop(SIGINT, {"--set", "train.optimizer.type=sgd", "--set", "train.optimizer.momentum=0"});
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << "status " << status << "\n"
                                                               << read_all(log);
  EXPECT_EQ(run_trainrr("replay " + trace).exit_code, 0);
  const CommandResult r = run_trainrr("replay " + trace + " --set train.optimizer.momentum=1e-30");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged in the final state, after step ", 0), 0u) << r.output;
  EXPECT_NE(
      r.output.find("  cause: config: the run configuration differs: train.optimizer.momentum: 0 -> 1e-30"),
      std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace trainrr::testing
