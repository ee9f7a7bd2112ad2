// A trace someone else recorded is untrusted input. These tests craft traces with the project's own writer
// (a real recording, rewritten) and check that replay and the other commands refuse them or stay inside
// their scratch folder, never hang on a data file that is not a file, and never pass the trace's bytes on
// raw to a terminal, a JSON reader or a web page. After each run the file system is checked.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <numeric>
#include <set>
#include <thread>
#include <tuple>

#include "replayer/replayer.h"
#include "replayer/scratch.h"
#include "tests/test_util.h"
#include "tests/trace_rewrite.h"
#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

extern char** environ;

namespace trainrr::testing {
namespace {
namespace fs = std::filesystem;

// Every file and folder under `root`, links included (not followed).
std::vector<std::string> listing(const fs::path& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::none, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec))
    out.push_back(fs::relative(it->path(), root).string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

bool has_python_json() { return std::system("python3 -c 'import json' >/dev/null 2>&1") == 0; }

class UntrustedTrace : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared_ = new TempDir;
    const std::string cfg = example("breast_cancer.toml");
    // One epoch at level layer: a few seconds under the sanitizers, with probes whose sites a page shows.
    for (const auto& [name, embed] : {std::pair{"embedded.trr", true}, std::pair{"plain.trr", false}}) {
      CommandResult r = run_trainrr("record " + cfg + " --set train.epochs=1 --level layer -o " +
                                    shared_->file(name) + (embed ? " --embed-data" : ""));
      ASSERT_EQ(r.exit_code, 0) << r.output;
    }
  }
  static void TearDownTestSuite() {
    delete shared_;
    shared_ = nullptr;
  }
  void SetUp() override {
    fs::create_directories(tmp());
    fs::create_directories(target());
    fs::create_directories(work());
  }

  static std::string embedded() { return shared_->file("embedded.trr"); }
  static std::string plain() { return shared_->file("plain.trr"); }
  // TMPDIR for the commands run here: where their scratch folders go, checked empty after each.
  fs::path tmp() const { return dir.path() / "tmp"; }
  // A folder a crafted trace aims at: it must stay empty.
  fs::path target() const { return dir.path() / "target"; }
  // The commands' working folder.
  fs::path work() const { return dir.path() / "work"; }

  // The breast-cancer example, one epoch, with a checkpoint every 5 steps, recorded into this test's folder.
  std::string checkpointed_trace() {
    const std::string path = dir.file("cp.trr");
    const CommandResult rec = run_trainrr("record " + example("breast_cancer.toml") +
                                          " --set train.epochs=1 --checkpoint-every 5 -o " + path);
    EXPECT_EQ(rec.exit_code, 0) << rec.output;
    return path;
  }

  // checkpointed_trace() with the tensor `name` of its checkpoint at step 5 changed by `edit`, as bad.trr.
  std::string with_checkpoint_tensor(const std::string& name, const std::function<void(Tensor&)>& edit) {
    const std::string bad = dir.file("bad.trr");
    bool edited = false;
    EXPECT_EQ(rewrite_trace(
                  checkpointed_trace(), bad, [](trace::TraceHeader&) {}, {},
                  [&](trace::TraceCheckpoint& cp) {
                    for (auto& t : cp.tensors)
                      if (cp.step == 5 && t.name == name) {
                        edit(t.value);
                        edited = true;
                      }
                    return true;
                  }),
              "");
    EXPECT_TRUE(edited) << name;
    return bad;
  }

  // `wrapper` runs before trainrr, e.g. "timeout 10".
  CommandResult run(const std::string& args, const std::string& wrapper = "") const {
    return run_trainrr_env(
        "cd " + shell_quote(work().string()) + " && TMPDIR=" + shell_quote(tmp().string()) + " " + wrapper, args);
  }

  // Nothing was written: not in the target, not in the working folder, nothing left in TMPDIR, and
  // nothing beside them in the test's folder but the traces and files the test made itself.
  void expect_nothing_written(const std::vector<std::string>& made = {}) const {
    EXPECT_EQ(listing(target()), std::vector<std::string>{}) << "a file was written where the trace aimed";
    EXPECT_EQ(listing(work()), std::vector<std::string>{}) << "a file was written in the working folder";
    EXPECT_EQ(listing(tmp()), std::vector<std::string>{}) << "the scratch folder was left behind";
    std::vector<std::string> expected = {"target", "tmp", "work"};
    expected.insert(expected.end(), made.begin(), made.end());
    std::sort(expected.begin(), expected.end());
    std::vector<std::string> top;
    for (const auto& e : fs::directory_iterator(dir.path())) top.push_back(e.path().filename().string());
    std::sort(top.begin(), top.end());
    EXPECT_EQ(top, expected);
    for (const auto& e : listing(shared_->path())) EXPECT_EQ(e.find("pwned"), std::string::npos) << e;
  }

  // The embedded trace with its data set renamed.
  std::string with_dataset_name(const std::string& name) const {
    const std::string bad = dir.file("bad.trr");
    EXPECT_EQ(rewrite_trace(embedded(), bad, [&](trace::TraceHeader& h) { h.datasets.at(0).name = name; }), "");
    return bad;
  }

  static TempDir* shared_;
  TempDir dir;
};
TempDir* UntrustedTrace::shared_ = nullptr;

TEST_F(UntrustedTrace, DatasetNameThatClimbsOutOfTheScratchFolderIsRefused) {
  // The name that wrote TARGET/pwned-breast_cancer.csv: scratch/NAME-FILE with NAME climbing out of it.
  const std::string bad = with_dataset_name("../../../../../../../../.." + target().string() + "/pwned");
  CommandResult r = run("replay " + bad);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("byte 0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("data set name"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("reproduced"), std::string::npos) << r.output;
  expect_nothing_written({"bad.trr"});
}

TEST_F(UntrustedTrace, AbsoluteDatasetNameIsRefused) {
  const std::string bad = with_dataset_name(target().string() + "/pwned");
  for (const char* command : {"replay ", "bisect ", "show ", "dump "}) {
    CommandResult r = run(command + bad);
    EXPECT_EQ(r.exit_code, 2) << command << r.output;
    EXPECT_NE(r.output.find("is not one of 'data', 'features' or 'labels'"), std::string::npos) << r.output;
  }
  expect_nothing_written({"bad.trr"});
}

TEST_F(UntrustedTrace, DatasetNameWithNulOrClimbingOutIsRefusedByTheReplayItself) {
  // The writer stores a name up to its first NUL, so a name with a NUL inside cannot be written with it (the
  // reader's own refusal is tested in traces_tests); rebuild_config, given such a header directly, refuses it
  // too, and writes nothing.
  auto reader = trace::TraceReader::open(embedded());
  ASSERT_TRUE(reader) << reader.error().message;
  for (const std::string& name : {std::string("data\0/../../pwned", 17), "../../../../../../.." + target().string() + "/pwned",
                                  target().string() + "/pwned", std::string("labels")}) {
    trace::TraceHeader h = (*reader)->header();
    h.datasets.at(0).name = name;
    auto scratch = ScratchDir::create("trainrr-untrusted-test");
    ASSERT_TRUE(scratch) << scratch.error().message;
    auto rebuilt = rebuild_config(h, {}, "", false, *scratch);
    EXPECT_FALSE(rebuilt) << name;
    if (!rebuilt) {
      EXPECT_NE(rebuilt.error().message.find("data set"), std::string::npos) << rebuilt.error().message;
    }
    EXPECT_TRUE(fs::is_empty(scratch->path()));
  }
  expect_nothing_written();
}

TEST_F(UntrustedTrace, VeryLongDatasetNameIsRefusedInAShortMessage) {
  const std::string bad = with_dataset_name(std::string(100000, 'a'));
  CommandResult r = run("replay " + bad);
  EXPECT_EQ(r.exit_code, 2) << r.output.substr(0, 500);
  EXPECT_LT(r.output.size(), 1000u) << r.output.substr(0, 500);
  EXPECT_NE(r.output.find("(100000 bytes)"), std::string::npos) << r.output.substr(0, 500);
  expect_nothing_written({"bad.trr"});
}

TEST_F(UntrustedTrace, DatasetPathNeverNamesAScratchFile) {
  // The recorded path is for people: whatever it holds, the embedded copy gets trainrr's own name, and the
  // replay reproduces. A file name past the file system's limit made the replay fail before.
  const std::vector<std::string> paths = {"../../../../../../.." + target().string() + "/pwned.sh",
                                          target().string() + "/pwned.sh", std::string(300, 'p') + ".csv",
                                          std::string("x.csv\0/../../pwned", 18), "..", ""};
  for (const std::string& path : paths) {
    const std::string bad = dir.file("bad.trr");
    ASSERT_EQ(rewrite_trace(embedded(), bad, [&](trace::TraceHeader& h) { h.datasets.at(0).path = path; }), "");
    CommandResult r = run("replay " + bad);
    EXPECT_EQ(r.exit_code, 0) << path.substr(0, 40) << ": " << r.output;
    EXPECT_NE(r.output.find("reproduced bit for bit"), std::string::npos) << r.output;
    expect_nothing_written({"bad.trr"});
  }
}

TEST_F(UntrustedTrace, ScratchFolderIsRemovedOnSuccessAndOnError) {
  CommandResult ok = run("replay " + embedded());
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  expect_nothing_written();
  // An error after the embedded data was written: a configuration the replay cannot build.
  CommandResult bad = run("replay " + embedded() + " --set 'model.layers=[{type=\"Dense\",units=0}]'");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  expect_nothing_written();
  CommandResult bisect = run("bisect " + embedded());
  EXPECT_NE(bisect.exit_code, 2) << bisect.output;
  expect_nothing_written();
}

TEST_F(UntrustedTrace, ScratchFolderIsRemovedWhenTheReplayIsKilledBySignal) {
  // A run long enough to be caught in the middle: 2000 epochs of the example (30,000 steps, about half a
  // second to replay); the signal comes as soon as the scratch folder holds the data.
  const std::string trace = dir.file("long.trr");
  CommandResult rec = run_trainrr("record " + example("breast_cancer.toml") +
                                  " --set train.epochs=2000 --embed-data -o " + trace);
  ASSERT_EQ(rec.exit_code, 0) << rec.output;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    const std::string env_tmpdir = "TMPDIR=" + tmp().string();
    std::vector<std::string> env_strings = {env_tmpdir};
    for (char** e = environ; *e; ++e)
      if (std::string(*e).rfind("TMPDIR=", 0) != 0) env_strings.push_back(*e);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string bin = TRAINRR_BIN, verb = "replay", quiet = "--json";
    std::vector<char*> argv = {bin.data(), verb.data(), const_cast<char*>(trace.c_str()), quiet.data(), nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, bin.c_str(), &actions, nullptr, argv.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
    // Wait until the scratch folder holds the embedded data, then signal.
    bool seen = false;
    for (int i = 0; i < 2000 && !seen; ++i) {
      for (const auto& e : listing(tmp())) seen = seen || e.find("dataset-0.csv") != std::string::npos;
      if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    int status = 0;
    if (!seen) {
      ::waitpid(pid, &status, 0);
      GTEST_SKIP() << "the replay ended before its scratch folder was seen";
    }
    ::kill(pid, sig);
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    // The process ends by the signal, as it would without the clean-up, and leaves nothing behind.
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << "status " << status;
    expect_nothing_written({"long.trr"});
  }
}

// A plain trace (data not embedded) whose configuration and data set name `path` as the data file.
std::string aimed_at(const TempDir& dir, const std::string& from, const std::string& path) {
  const std::string bad = dir.file("bad.trr");
  const std::string error = rewrite_trace(from, bad, [&](trace::TraceHeader& h) {
    const size_t at = h.config.find("path = \"data/breast_cancer.csv\"");
    h.config.replace(at, std::string("path = \"data/breast_cancer.csv\"").size(), "path = \"" + path + "\"");
    h.datasets.at(0).path = path;
  });
  EXPECT_EQ(error, "");
  return bad;
}

// A plain trace whose configuration names `path` as the data file while its data set record (what show and
// dump list, with the digest) still names the recorded file.
std::string config_aimed_at(const TempDir& dir, const std::string& from, const std::string& path) {
  const std::string bad = dir.file("bad.trr");
  const std::string error = rewrite_trace(from, bad, [&](trace::TraceHeader& h) {
    const std::string recorded = "path = \"data/breast_cancer.csv\"";
    h.config.replace(h.config.find(recorded), recorded.size(), "path = \"" + path + "\"");
  });
  EXPECT_EQ(error, "");
  return bad;
}

// Replay reads only the data file the trace shows: a configuration that names another file than the trace's
// data set record is refused, naming the trace, both paths and the header fields that hold them, before
// either is opened; `--data` still replays it with the user's file.
TEST_F(UntrustedTrace, ConfigurationDataPathThatIsNotTheRecordedOneIsRefusedNamingBoth) {
  auto reader = trace::TraceReader::open(plain());
  ASSERT_TRUE(reader.ok());
  const std::string recorded = (*reader)->header().datasets.at(0).path;
  const std::string secret = dir.write("secret.csv", "secret-column,other\nsecret-value,1\n");
  // Absolute, and relative to the recorded configuration's folder.
  for (const std::string& path : {secret, "../../" + fs::relative(secret, "/").string()}) {
    const std::string bad = config_aimed_at(dir, plain(), path);
    for (const std::string& args :
         {"replay " + bad, "replay " + bad + " --allow-data-change", "bisect " + bad}) {
      const CommandResult r = run(args);
      EXPECT_EQ(r.exit_code, 2) << args << ": " << r.output;
      EXPECT_NE(r.output.find(bad + ": the trace's configuration reads its data file from "),
                std::string::npos)
          << args << ": " << r.output;
      EXPECT_NE(
          r.output.find(" (data.path in the header's config, resolved, where relative, against the folder "
                        "of the header's configPath, "),
          std::string::npos)
          << args << ": " << r.output;
      EXPECT_NE(r.output.find("the header's datasets[0].path, which show lists with its digest) names " +
                              recorded + ": in a trace that trainrr record wrote they are one path"),
                std::string::npos)
          << args << ": " << r.output;
      EXPECT_EQ(r.output.find("secret-"), std::string::npos) << args << ": " << r.output;
    }
    // diff compares the trace with another as it is: refused too.
    const CommandResult d = run("diff " + plain() + " " + bad);
    EXPECT_EQ(d.exit_code, 2) << d.output;
    EXPECT_NE(d.output.find(bad + ": the trace's configuration reads its data file from "), std::string::npos)
        << d.output;
    // The user's own copy of the data is read in its place.
    const CommandResult own = run("replay " + bad + " --data " + recorded);
    EXPECT_EQ(own.exit_code, 0) << own.output;
    EXPECT_NE(own.output.find("reproduced bit for bit"), std::string::npos) << own.output;
  }
  expect_nothing_written({"bad.trr", "secret.csv"});
}

// A data file the trace names (configuration and record agree) that is not the recorded one: replayed only
// with --allow-data-change, and then no message repeats what the file holds.
TEST_F(UntrustedTrace, ChangedDataFileTheTraceNamesIsNeverQuoted) {
  const std::string secret =
      dir.write("secret.csv", "root:x:0:0:root:/root:/bin/bash\nsecret:x:1:1::/:/bin/sh\n");
  const std::string bad = aimed_at(dir, plain(), secret);
  const CommandResult refused = run("replay " + bad);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("data file " + secret + " differs from the recorded one"), std::string::npos)
      << refused.output;
  const CommandResult allowed = run("replay " + bad + " --allow-data-change");
  EXPECT_NE(allowed.exit_code, 0) << allowed.output;
  EXPECT_NE(allowed.output.find(secret +
                                ":1:1: no column named \"benign\" for the label (the header has 1 column;"),
            std::string::npos)
      << allowed.output;
  EXPECT_EQ(allowed.output.find("root:"), std::string::npos) << allowed.output;
  EXPECT_EQ(allowed.output.find("secret:"), std::string::npos) << allowed.output;
  // The same file given by the user with --data is the user's: its columns are named.
  const CommandResult given = run("replay " + plain() + " --data " + secret + " --allow-data-change");
  EXPECT_NE(given.output.find("the columns are: root:x:0:0:root"), std::string::npos) << given.output;
  expect_nothing_written({"bad.trr", "secret.csv"});
}

TEST_F(UntrustedTrace, DataFileThatIsADeviceAPipeOrAFolderIsRefusedAtOnce) {
  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/dev/zero", "a character device"}, {fifo, "a named pipe"}, {target().string(), "a directory"}};
  for (const auto& [path, kind] : cases) {
    const std::string bad = aimed_at(dir, plain(), path);
    // Refused before a byte is read: reading /dev/zero or a pipe nobody writes would never end, and `timeout`
    // turns such a hang into exit 124, a failure here rather than a stalled suite. (No wall-clock bound: the
    // exit code is the evidence.)
    CommandResult r = run_trainrr_env("timeout 10", "replay " + bad);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(path + ": not a regular file (it is " + kind + ")"), std::string::npos) << r.output;
    // The same file given with --data, to a trace that embeds its data or not.
    for (const std::string& trace : {plain(), embedded()}) {
      r = run("replay " + trace + " --data " + path, "timeout 10");
      EXPECT_EQ(r.exit_code, 2) << r.output;
      EXPECT_NE(r.output.find(path + ": not a regular file (it is " + kind + ")"), std::string::npos) << r.output;
    }
  }
  expect_nothing_written({"bad.trr", "fifo"});
}

TEST_F(UntrustedTrace, DataFileOfAnotherSizeIsRefusedBeforeItIsRead) {
  const std::string shorter = dir.write("short.csv", "benign,x\n1,2\n");
  CommandResult r = run("replay " + plain() + " --data " + shorter);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("bytes recorded, 13 bytes now"), std::string::npos) << r.output;
  expect_nothing_written({"short.csv"});
}

TEST_F(UntrustedTrace, DataFileTheTraceDoesNotDescribeIsNotRead) {
  const std::string bad = dir.file("bad.trr");
  ASSERT_EQ(rewrite_trace(plain(), bad, [](trace::TraceHeader& h) { h.datasets.clear(); }), "");
  CommandResult r = run("replay " + bad);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("the trace describes no data set 'data'"), std::string::npos) << r.output;
  expect_nothing_written({"bad.trr"});
}

// A configuration inside the trace that makes a model of gigabytes is refused before its parameters are
// allocated (bounded by the recorded initial state: 16 times its values, at least 2^24), by replay and bisect
// alike; a --set that grows the model within that bound replays, its first draw naming the configuration.
TEST_F(UntrustedTrace, AConfigurationThatMakesAModelOfGigabytesIsRefusedBeforeItIsBuilt) {
  const std::string big = dir.file("units.trr");
  ASSERT_EQ(rewrite_trace(plain(), big,
                          [](trace::TraceHeader& h) {
                            const size_t at = h.config.find("units = 16");
                            ASSERT_NE(at, std::string::npos);
                            h.config.replace(at, 10, "units = 200000000");
                          }),
            "");
  for (const std::string verb : {"replay ", "bisect "}) {
    CommandResult r = run(verb + big);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("dense_1: its parameters (6200000000 values) are more than this replay takes"),
              std::string::npos)
        << r.output;
  }
  CommandResult grown = run("replay " + plain() + " --set model.layers[0].units=64");
  EXPECT_EQ(grown.exit_code, 1) << grown.output;
  EXPECT_NE(grown.output.find("cause: config"), std::string::npos) << grown.output;
  expect_nothing_written({"units.trr"});
}

// The reader checks a completed run's steps against the schedule its configuration makes; where this trainrr
// cannot read that configuration (a key of a newer trainrr, say), show says the footer's word was not
// checked.
TEST_F(UntrustedTrace, ShowSaysACompletionItCouldNotCheckAgainstTheScheduleIsTheFootersWord) {
  const std::string newer = dir.file("newer.trr");
  ASSERT_EQ(rewrite_trace(plain(), newer,
                          [](trace::TraceHeader& h) { h.config += "\nkey_of_a_newer_trainrr = 1\n"; }),
            "");
  CommandResult r = run("show " + newer);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ended cleanly: the run completed (completed), 15 steps, "), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("(as its footer says: this trainrr cannot read the configuration in the trace ("),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("key_of_a_newer_trainrr"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("), so the steps it schedules are not checked)"), std::string::npos) << r.output;
  r = run("show " + plain());
  EXPECT_EQ(r.output.find("as its footer says"), std::string::npos) << r.output;
}

TEST_F(UntrustedTrace, ConfigurationTooLargeOrTooDeepIsRefused) {
  const std::string big = dir.file("big.trr");
  ASSERT_EQ(rewrite_trace(embedded(), big, [](trace::TraceHeader& h) { h.config += "\n#" + std::string(2 << 20, 'x'); }),
            "");
  CommandResult r = run("replay " + big);
  EXPECT_EQ(r.exit_code, 2) << r.output.substr(0, 300);
  EXPECT_NE(r.output.find("the configuration is larger than"), std::string::npos) << r.output.substr(0, 300);
  const std::string deep = dir.file("deep.trr");
  ASSERT_EQ(rewrite_trace(embedded(), deep,
                    [](trace::TraceHeader& h) {
                      h.config = "deep = " + std::string(100000, '[') + std::string(100000, ']') + "\n" + h.config;
                    }),
            "");
  r = run("replay " + deep);
  EXPECT_EQ(r.exit_code, 2) << r.output.substr(0, 300);
  EXPECT_NE(r.output.find("nest"), std::string::npos) << r.output.substr(0, 300);
  expect_nothing_written({"big.trr", "deep.trr"});
}

// Strings that would act on a terminal, a JSON parser or a web page if passed on raw.
const std::string kEscape = "\x1b[2J\x1b]0;pwned\x07\x1b[31m";
const std::string kScript = "<script>alert(1)</script>";
const std::string kNotUtf8 = "\xff\xfe\xc3";

// The layer-level trace with every string the commands show replaced by hostile ones: paths, environment
// values, sites, kernel names, metric and parameter names stay as they are (renaming them changes what the
// replay compares), but each step's probe sites get the script, so a report names one. A name (a site, a
// kernel) holds no control byte, which the reader refuses in a name (trace_reader_test.cc): the names get the
// script and bytes that are not UTF-8, the header's strings the escape sequences too.
// With `kernels`, each step also carries GPU kernel records whose names and op sites are hostile too.
std::string hostile(const TempDir& dir, const std::string& from, bool kernels = false) {
  const std::string bad = dir.file("hostile.trr");
  const std::string error = rewrite_trace(
      from, bad,
      [kernels](trace::TraceHeader& h) {
        h.kernels_recorded = kernels;
        h.config_path = "/x/" + kScript + kEscape + kNotUtf8 + ".toml";
        h.writer_version = "9" + kScript + kEscape;
        for (auto& [k, v] : h.environment) v += kScript + kEscape + kNotUtf8;
        h.environment.emplace_back("env.EVIL" + kScript + kEscape, kScript + kEscape);
        h.datasets.at(0).path = "/data/" + kScript + kEscape + kNotUtf8 + ".csv";
      },
      [kernels](trace::TraceStep& s) {
        for (auto& e : s.events) {
          if (auto* p = std::get_if<trace::ProbeEvent>(&e)) {
            // Without '/', which in a probe's site names an op: a layer-level trace holds no op's probe.
            std::string prefix = kScript + kNotUtf8;
            std::replace(prefix.begin(), prefix.end(), '/', '\\');
            p->site = prefix + p->site;
          }
          if (auto* k = std::get_if<KernelChoice>(&e)) {
            for (auto& c : k->candidates) c = kScript + c;
            k->chosen = kScript + k->chosen;
          }
        }
        if (kernels)
          s.kernels = trace::step_kernels({{kScript + kNotUtf8 + "dense_1/matmul.fwd",
                                            "_Z" + kScript + kNotUtf8, 1, 1, 1, 32, 1, 1, 0, 0, 1000},
                                           {"dense_1/bias.fwd", "_ZN7trainrr4cuda8bias_addEPfPKfii" + kScript,
                                            1, 1, 1, 32, 1, 1, 0, 0, 0}},
                                          0, ProbeLevel::layer);
      });
  EXPECT_EQ(error, "");
  return bad;
}

TEST_F(UntrustedTrace, TerminalOutputCarriesNoControlCharactersFromTheTrace) {
  const std::string bad = hostile(dir, embedded());
  for (const std::string& args : {"show " + bad, "dump " + bad, "replay " + bad, "replay " + bad + " --force none",
                                  "diff " + embedded() + " " + bad, "bisect " + bad}) {
    CommandResult r = run(args);
    EXPECT_NE(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_EQ(r.output.find('\x1b'), std::string::npos) << args << "\n" << r.output;
    EXPECT_EQ(r.output.find('\x07'), std::string::npos) << args << "\n" << r.output;
    EXPECT_EQ(r.output.find("\xff\xfe"), std::string::npos) << args;
  }
  CommandResult shown = run("show " + bad);
  EXPECT_NE(shown.output.find("\\x1B[2J"), std::string::npos) << shown.output;
  expect_nothing_written({"hostile.trr"});
}

// A string of the trace stays on the line that quotes it: a newline in a configuration path or an environment
// value cannot print a line of its own (a forged "ended cleanly" or "reproduced"), and C1 controls and
// bidirectional overrides, valid UTF-8 though they are, reach the terminal escaped.
TEST_F(UntrustedTrace, AStringOfTheTraceCannotPrintALineOfItsOwn) {
  const std::string csi = "\xC2\x9B", rlo = "\xE2\x80\xAE";
  const std::string bad = dir.file("forged.trr");
  ASSERT_EQ(rewrite_trace(embedded(), bad,
                          [&](trace::TraceHeader& h) {
                            h.config_path =
                                "/x.toml\nended cleanly: forged\r" + csi + "31m" + rlo + "lmth.exe";
                            for (auto& [k, v] : h.environment) v += "\nreproduced bit for bit (forged)";
                          }),
            "");
  for (const std::string& args : {"show " + bad, "dump " + bad, "replay " + bad, "replay --force none " + bad,
                                  "diff " + embedded() + " " + bad}) {
    CommandResult r = run(args);
    EXPECT_NE(r.exit_code, 2) << args << "\n" << r.output;
    for (const std::string forged : {"\nended cleanly: forged", "\nreproduced bit for bit (forged)", "\r"})
      EXPECT_EQ(r.output.find(forged), std::string::npos) << args << "\n" << r.output;
    EXPECT_EQ(r.output.find(csi), std::string::npos) << args;
    EXPECT_EQ(r.output.find(rlo), std::string::npos) << args;
  }
  CommandResult shown = run("show " + bad);
  EXPECT_NE(shown.output.find("/x.toml\\x0Aended cleanly: forged\\x0D\\u009B31m\\u202Elmth.exe"),
            std::string::npos)
      << shown.output;
  // The replay lists the environment's differences: each value stays on its line.
  CommandResult replayed = run("replay " + bad);
  EXPECT_NE(replayed.output.find("\\x0Areproduced bit for bit (forged) (recorded) vs "), std::string::npos)
      << replayed.output;
  expect_nothing_written({"forged.trr"});
}

// A NUL inside a string of the trace is shown with what follows it: show does not end the string there, which
// would show a path other than the one the trace holds.
TEST_F(UntrustedTrace, ANulInAStringOfTheTraceIsShownWithWhatFollowsIt) {
  const std::string bad = dir.file("nul.trr");
  ASSERT_EQ(
      rewrite_trace(embedded(), bad,
                    [&](trace::TraceHeader& h) { h.config_path += std::string(1, '\0') + "/../elsewhere"; }),
      "");
  const CommandResult shown = run("show " + bad);
  EXPECT_NE(shown.output.find("\\x00/../elsewhere"), std::string::npos) << shown.output;
  EXPECT_EQ(shown.output.find('\0'), std::string::npos) << shown.output;
}

TEST_F(UntrustedTrace, JsonOutputParsesWhateverBytesTheTraceHolds) {
  if (!has_python_json()) GTEST_SKIP() << "python3 is not installed: no JSON parser to check with";
  const std::string bad = hostile(dir, embedded());
  const std::string out = dir.file("out.json");
  for (const std::string& args : {"dump --json " + bad, "replay --json " + bad, "replay --json --force none " + bad,
                                  "diff --json " + embedded() + " " + bad, "bisect --json " + bad}) {
    // Standard output alone: progress and messages go to standard error.
    const std::string command = "cd " + shell_quote(work().string()) + " && TMPDIR=" + shell_quote(tmp().string()) +
                                " " + TRAINRR_BIN + " " + args + " > " + shell_quote(out) + " 2>/dev/null";
    const int status = std::system(command.c_str());
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 2) << args;
    // One JSON document, or one per line (dump --json).
    const std::string check =
        "python3 -c 'import json,sys\nt=open(sys.argv[1],encoding=\"utf-8\").read()\n"
        "try:\n json.loads(t)\nexcept ValueError:\n [json.loads(l) for l in t.splitlines() if l]' " +
        shell_quote(out);
    EXPECT_EQ(std::system(check.c_str()), 0) << args;
  }
  expect_nothing_written({"hostile.trr", "out.json"});
}

TEST_F(UntrustedTrace, HtmlReportEscapesEveryStringOfTheTrace) {
  const std::string bad = hostile(dir, embedded(), true);
  for (const std::string& args :
       {"replay " + bad, "replay --force none --keep-going " + bad, "diff " + embedded() + " " + bad}) {
    const std::string page = dir.file("page.html");
    fs::remove(page);
    CommandResult r = run(args + " --html " + page);
    EXPECT_NE(r.exit_code, 2) << args << "\n" << r.output;
    std::ifstream in(page, std::ios::binary);
    const std::string html((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_FALSE(html.empty()) << args;
    std::string lower = html;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_EQ(lower.find("<script"), std::string::npos) << args;
    EXPECT_NE(html.find("&lt;script&gt;"), std::string::npos) << args;
    EXPECT_EQ(html.find('\x1b'), std::string::npos) << args;
    EXPECT_EQ(html.find("\xff\xfe"), std::string::npos) << args;
    // The timeline of the divergent step's kernels draws the hostile kernels, escaped.
    EXPECT_NE(html.find("<h2>GPU kernels of step"), std::string::npos) << args;
    EXPECT_NE(html.find("<title>_Z&lt;script&gt;"), std::string::npos) << args;
  }
  expect_nothing_written({"hostile.trr", "page.html"});
}

TEST_F(UntrustedTrace, ExportKeepsTensorNamesInsideItsFolder) {
  // Checkpoint tensor names become file names: a name that climbs out is rewritten, not followed. The reader
  // takes a '/' only in an optimizer's state of a parameter the checkpoint holds ("m/pwned" beside "pwned").
  const std::string with_checkpoint = checkpointed_trace();
  ASSERT_FALSE(HasFailure());
  const std::string bad = dir.file("bad.trr");
  ASSERT_EQ(rewrite_trace(
                with_checkpoint, bad, [](trace::TraceHeader&) {}, {},
                [&](trace::TraceCheckpoint& cp) {
                  if (cp.step != 0) return true;
                  cp.tensors.at(0).name = "pwned";
                  const Tensor value = cp.tensors.at(0).value;
                  cp.tensors.push_back({"../pwned", value});
                  cp.tensors.push_back({"/pwned", value});
                  return true;
                }),
            "");
  const std::string out = (work() / "ck").string();
  // The initial state: no step before it recorded the parameters these renamed tensors no longer match.
  CommandResult r = run("export " + bad + " --step 0 -o " + out);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(listing(target()), std::vector<std::string>{});
  for (const auto& e : listing(work())) EXPECT_EQ(e.find('/', 3), std::string::npos) << e;  // ck/FILE only
  fs::remove_all(out);
  expect_nothing_written({"bad.trr", "cp.trr"});
}

// A file name has at most 255 bytes: a longer tensor name is cut and ends with its digest, so two names that
// differ only past the cut get two files; the manifest names each one's file.
TEST_F(UntrustedTrace, ExportCutsLongTensorNamesIntoDistinctFileNames) {
  const std::string bad = dir.file("long.trr");
  const std::string a = std::string(300, 'w') + "/a", b = std::string(300, 'w') + "/b";
  ASSERT_EQ(rewrite_trace(
                plain(), bad, [](trace::TraceHeader&) {}, {},
                [&](trace::TraceCheckpoint& cp) {
                  if (cp.step != 0) return true;
                  // An optimizer's state of two parameters the checkpoint holds, as the reader requires.
                  cp.tensors.at(0).name = "a";
                  cp.tensors.at(1).name = "b";
                  cp.tensors.push_back({a, cp.tensors.at(0).value});
                  cp.tensors.push_back({b, cp.tensors.at(1).value});
                  return true;
                }),
            "");
  const std::string out = (work() / "ck").string();
  const CommandResult r = run("export " + bad + " --step 0 -o " + out);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(out + "/manifest.json");
  const std::string manifest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::set<std::string> files;
  for (const std::string& name : {a, b}) {
    const size_t at = manifest.find("{\"name\":\"" + name + "\"");
    ASSERT_NE(at, std::string::npos) << name;
    const size_t file = manifest.find("\"file\":\"", at) + 8;
    const std::string f = manifest.substr(file, manifest.find('"', file) - file);
    EXPECT_LE(f.size(), 255u) << f;
    EXPECT_TRUE(fs::is_regular_file(out + "/" + f)) << f;
    files.insert(f);
  }
  EXPECT_EQ(files.size(), 2u);
  fs::remove_all(out);
  expect_nothing_written({"long.trr"});
}

// -o naming a symbolic link to a folder is refused as a link, and what it points to is kept.
TEST_F(UntrustedTrace, ExportToASymbolicLinkSaysItIsOne) {
  const fs::path folder = dir.path() / "real";
  fs::create_directory(folder);
  fs::create_directory_symlink(folder, work() / "ck");
  const CommandResult r = run("export " + plain() + " --step 0 -o ck");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find((work() / "ck").string() + " is a symbolic link (to " + folder.string() + ")"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("is not a folder"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::is_symlink(work() / "ck"));
  fs::remove(work() / "ck");
  expect_nothing_written({"real"});
}

// Row indices from a trace are served to the loader, which copies the rows they name: one past the data, or
// a row taken twice, is a malformed trace, named with its step and field, and never used.
TEST_F(UntrustedTrace, AShufflePermutationNamingRowsTheDataDoesNotHaveIsRefusedAsMalformed) {
  for (const uint32_t first : {4000000000u, 1u}) {
    const std::string bad = dir.file("perm.trr");
    bool edited = false;
    ASSERT_EQ(rewrite_trace(
                  plain(), bad, [](trace::TraceHeader&) {},
                  [&](trace::TraceStep& s) {
                    for (auto& e : s.events)
                      if (auto* sh = std::get_if<trace::ShuffleEvent>(&e); sh && s.index == 0) {
                        // The recorded draw replaced by an explicit order with its digest recomputed.
                        sh->draw.reset();
                        sh->permutation.resize(sh->length);
                        std::iota(sh->permutation.begin(), sh->permutation.end(), 0u);
                        sh->permutation[0] = first;
                        sh->digest = digest(std::span<const uint32_t>(sh->permutation));
                        edited = true;
                      }
                  }),
              "");
    ASSERT_TRUE(edited);
    CommandResult r = run("replay " + bad);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("step 0: shuffle permutation[" +
                            std::string(first == 1 ? "1] = 1 repeats" : "0] = 4000000000 is not <")),
              std::string::npos)
        << r.output;
    fs::remove(bad);
  }
  expect_nothing_written();
}

TEST_F(UntrustedTrace, ACheckpointPermutationNamingRowsTheDataDoesNotHaveIsRefusedAsMalformed) {
  const std::string with_checkpoint = checkpointed_trace();
  ASSERT_FALSE(HasFailure());
  const std::string bad = dir.file("bad.trr");
  ASSERT_EQ(rewrite_trace(
                with_checkpoint, bad, [](trace::TraceHeader&) {}, {},
                [](trace::TraceCheckpoint& cp) {
                  if (cp.step == 5) cp.permutation.at(0) = 3000000000u;
                  return true;
                }),
            "");
  for (const std::string& args : {"replay " + bad + " --from-step 5", "replay " + bad}) {
    CommandResult r = run(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("checkpoint at step 5: permutation[0] = 3000000000 is not <"), std::string::npos)
        << args << "\n"
        << r.output;
  }
  expect_nothing_written({"bad.trr", "cp.trr"});
}

// An optimizer's state is updated elementwise beside its parameter: a slot of another shape is refused when
// the checkpoint is read, against its parameter in the same checkpoint, not read or written past its end.
TEST_F(UntrustedTrace, AnOptimizerSlotOfAnotherShapeThanItsParameterIsRefused) {
  const std::string bad =
      with_checkpoint_tensor("m/dense_1.kernel", [](Tensor& t) { t = Tensor({1}, 0.0f); });
  ASSERT_FALSE(HasFailure());
  for (const std::string& args : {"replay " + bad + " --from-step 5", "replay " + bad}) {
    CommandResult r = run(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    // Refused as the checkpoint is read, before it is decompressed, and by the restore itself where the
    // reader is not asked (Training.ARestoredOptimizerSlotMustHaveItsParametersShape).
    EXPECT_NE(
        r.output.find("checkpoint tensor 'm/dense_1.kernel': has shape (1,), its parameter dense_1.kernel "
                      "(30, 16): an optimizer's state holds one value per value of its parameter"),
        std::string::npos)
        << args << "\n"
        << r.output;
  }
  expect_nothing_written({"bad.trr", "cp.trr"});
}

// A checkpoint whose optimizer state claims far more values than its parameter has, or whose model tensor
// has grown since the checkpoint before it, is refused before anything of it is decompressed or written:
// export writes no file, where it wrote the claimed size (64 MiB here) from a small trace.
TEST_F(UntrustedTrace, ExportRefusesACheckpointTensorLargerThanTheModelBeforeWritingIt) {
  for (const auto& [name, why] :
       {std::pair{
            std::string("m/dense_1.kernel"),
            std::string("checkpoint tensor 'm/dense_1.kernel': has shape (4096, 4096), its parameter "
                        "dense_1.kernel (30, 16): an optimizer's state holds one value per value of its "
                        "parameter")},
        std::pair{
            std::string("dense_1.bias"),
            std::string("checkpoint tensor 'dense_1.bias': has shape (4096, 4096), the checkpoint at step "
                        "0 (16,): a run's model keeps the shapes of its tensors")}}) {
    const std::string bad = with_checkpoint_tensor(name, [](Tensor& t) { t = Tensor({4096, 4096}, 0.0f); });
    ASSERT_FALSE(HasFailure());
    const std::string out = (target() / "ck").string();
    const CommandResult r = run("export " + bad + " --step 5 -o " + out);
    EXPECT_EQ(r.exit_code, 2) << name << "\n" << r.output;
    EXPECT_NE(r.output.find(why), std::string::npos) << name << "\n" << r.output;
    EXPECT_FALSE(fs::exists(out)) << name;
    const CommandResult show = run("show " + bad);
    EXPECT_EQ(show.exit_code, 2) << name << "\n" << show.output;
    EXPECT_NE(show.output.find(why), std::string::npos) << name << "\n" << show.output;
    expect_nothing_written({"bad.trr", "cp.trr"});
  }
}

// A checkpoint's scalars are counts and a sum the run resumes with: one that is not a count the checkpoint's
// step allows (nan, 1e300) or a negative loss sum is damage, named with its step, not resumed from
// (converting it to an integer was undefined) and not reported as a divergence of the run's arithmetic.
TEST_F(UntrustedTrace, ACheckpointScalarThatIsNoCountItsStepAllowsIsRefusedAsDamage) {
  const std::string with_checkpoint = checkpointed_trace();
  ASSERT_FALSE(HasFailure());
  const std::string bad = dir.file("bad.trr");
  for (const auto& [name_, value_, why] :
       {std::tuple{"optimizer.iterations", static_cast<double>(NAN),
                   "nan is not a whole number from 0 to 5 (its step)"},
        std::tuple{"optimizer.iterations", 1e300,
                   "1.0000000000000001e+300 is not a whole number from 0 to 5 (its step)"},
        std::tuple{"epoch.rows", -1.0, "-1 is not a whole number from 0 to "},
        std::tuple{"epoch.loss_sum", -5.0, "-5 is negative, where no loss is"}}) {
    // Copies: a lambda cannot capture a structured binding in C++20 as clang 14 implements it.
    const std::string name = name_;
    const double value = value_;
    bool edited = false;
    ASSERT_EQ(rewrite_trace(
                  with_checkpoint, bad, [](trace::TraceHeader&) {}, {},
                  [&](trace::TraceCheckpoint& cp) {
                    for (auto& [k, v] : cp.scalars)
                      if (cp.step == 5 && k == name) v = value, edited = true;
                    return true;
                  }),
              "");
    ASSERT_TRUE(edited) << name;
    CommandResult r = run("replay " + bad + " --from-step 5");
    EXPECT_EQ(r.exit_code, 2) << name << "\n" << r.output;
    EXPECT_NE(r.output.find(": byte "), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("checkpoint at step 5: its scalar " + std::string(name) + " = " + why),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("the checkpoint was changed after it was taken (it is damaged)"),
              std::string::npos)
        << r.output;
    EXPECT_EQ(r.output.find("diverged"), std::string::npos) << r.output;
  }
  expect_nothing_written({"bad.trr", "cp.trr"});
}

// What a checkpoint costs to read is bounded by the model that takes it: a tensor of another shape than the
// model's (than the first checkpoint's, which the steps check) is refused before it is decompressed, however
// small its compressed frames; a summary, which decompresses no checkpoint, says so too.
TEST_F(UntrustedTrace, ACheckpointTensorOfAnotherShapeThanTheModelsIsRefusedBeforeItIsDecompressed) {
  const std::string bad = with_checkpoint_tensor("dense_1.kernel", [](Tensor& t) { t.shape = {1, 480}; });
  ASSERT_FALSE(HasFailure());
  for (const std::string& args : {"replay " + bad + " --from-step 5", "show " + bad}) {
    CommandResult r = run(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(
        r.output.find("checkpoint tensor 'dense_1.kernel': has shape (1, 480), the checkpoint at step 0 "
                      "(30, 16): a run's model keeps the shapes of its tensors"),
        std::string::npos)
        << args << "\n"
        << r.output;
  }
  expect_nothing_written({"bad.trr", "cp.trr"});
}

// A replay starts the threads its configuration asks for: a trace cannot make it start more than any machine
// has cores (each a process id of the machine's), nor record one that could. Refused before anything is
// written, the embedded data's scratch folder included.
TEST_F(UntrustedTrace, RuntimeThreadsPastTheBoundIsRefusedNamingTheKeyTheValueAndTheBound) {
  const std::string bad = dir.file("bad.trr");
  ASSERT_EQ(rewrite_trace(embedded(), bad,
                          [](trace::TraceHeader& h) {
                            const size_t at = h.config.find("threads = 2");
                            ASSERT_NE(at, std::string::npos);
                            h.config.replace(at, 11, "threads = 20000");
                          }),
            "");
  for (const std::string& args : {"replay " + bad, "bisect " + bad}) {
    CommandResult r = run(args, "timeout 60");
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("(in the trace):37: runtime.threads must be at most 1024, got 20000"),
              std::string::npos)
        << args << "\n"
        << r.output;
  }
  CommandResult r = run("record " + example("breast_cancer.toml") + " --set runtime.threads=1025 -o " +
                        (target() / "r.trr").string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("breast_cancer.toml (--set): runtime.threads must be at most 1024, got 1025"),
            std::string::npos)
      << r.output;
  expect_nothing_written({"bad.trr"});
}

// The ranks of a run folder replayed in one process share it: their threads together are bounded as one
// run's are, where each rank's alone is within the bound (a crafted folder of many ranks would start them
// all).
TEST_F(UntrustedTrace, TheRanksOfARunFolderReplayedInOneProcessAskNoMoreThreadsThanOneRun) {
  const fs::path folder = dir.path() / "run";
  fs::create_directory(folder);
  for (int rank = 0; rank < 2; ++rank)
    ASSERT_EQ(rewrite_trace(embedded(), (folder / ("rank" + std::to_string(rank) + ".trr")).string(),
                            [&](trace::TraceHeader& h) {
                              const size_t at = h.config.find("threads = 2");
                              ASSERT_NE(at, std::string::npos);
                              h.config.replace(at, 11, "threads = 600");
                              h.rank = rank;
                              h.world_size = 2;
                              h.run_id = "crafted";
                            }),
              "");
  const CommandResult r = run("replay " + folder.string(), "timeout 60");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(
      r.output.find("the 2 ranks replayed in this process would run 1200 threads together (runtime.threads "
                    "of each), more than the 1024 one process may: replay the run under mpirun"),
      std::string::npos)
      << r.output;
}

// A named pipe where a trace should be would keep an open for reading waiting for a writer forever: given as
// the trace, or as a rank's trace in a run folder (received from someone else), it is refused at once.
// `timeout` turns a hang into exit 124, a failure here rather than a stalled suite.
TEST_F(UntrustedTrace, ATraceThatIsANamedPipeIsRefusedAtOnce) {
  const std::string fifo = dir.file("fifo.trr");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const fs::path folder = dir.path() / "run";
  fs::create_directory(folder);
  const std::string rank0 = (folder / "rank0.trr").string();
  ASSERT_EQ(::mkfifo(rank0.c_str(), 0600), 0);
  fs::copy_file(plain(), folder / "rank1.trr");
  const std::vector<std::pair<std::string, std::string>> cases = {{"show " + fifo, fifo},
                                                                  {"dump " + fifo, fifo},
                                                                  {"replay " + fifo, fifo},
                                                                  {"diff " + fifo + " " + plain(), fifo},
                                                                  {"bisect " + fifo, fifo},
                                                                  {"show " + folder.string(), rank0},
                                                                  {"replay " + folder.string(), rank0}};
  for (const auto& [args, path] : cases) {
    CommandResult r = run(args, "timeout 20");
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(path + ": not a regular file (it is a named pipe)"), std::string::npos)
        << args << "\n"
        << r.output;
  }
  expect_nothing_written({"fifo.trr", "run"});
}

// Synthetic data is sized by the trace's configuration alone. Past its bound it is refused as any
// configuration is; within it, a configuration that gives the data other rows than step 0 split or shuffled
// is refused before the data is generated (a replay would otherwise generate it, up to 1 GiB, before finding
// at step 0 that the trace does not follow its configuration).
TEST_F(UntrustedTrace, SyntheticDataTheTraceDoesNotRecordIsRefusedBeforeItIsGenerated) {
  const std::string cfg = dir.write("syn.toml",
                                    "seed = 1\n[data]\nsource = \"synthetic\"\nshape = [4]\nclasses = 2\n"
                                    "samples = 64\n[[model.layers]]\ntype = \"Dense\"\nunits = 2\n"
                                    "activation = \"softmax\"\n[train]\nepochs = 1\nbatch_size = 32\n"
                                    "loss = \"sparse_categorical_crossentropy\"\n[runtime]\nthreads = 1\n");
  const std::string syn = dir.file("syn.trr");
  CommandResult rec = run("record " + cfg + " -o " + syn);
  ASSERT_EQ(rec.exit_code, 0) << rec.output;
  auto crafted = [&](const std::string& name, const std::string& samples, const std::string& shape,
                     const std::string& extra = "") {
    const std::string bad = dir.file(name);
    EXPECT_EQ(rewrite_trace(syn, bad,
                            [&](trace::TraceHeader& h) {
                              h.config.replace(h.config.find("samples = 64"), 12, "samples = " + samples);
                              h.config.replace(h.config.find("shape = [4]"), 11, "shape = " + shape);
                              h.config.replace(h.config.find("[train]\n"), 8, "[train]\n" + extra);
                            }),
              "");
    return bad;
  };
  // 700000 x 1000 values (2.8 GB): past the bound.
  const std::string huge = crafted("huge.trr", "700000", "[1000]");
  // 262144 x 1024 values: 1 GiB, the most synthetic data holds, for a trace whose step 0 shuffled 64 rows.
  const std::string most = crafted("most.trr", "262144", "[1024]");
  // The same with a validation split: step 0 shuffled 64 rows, the configuration gives 235929.
  const std::string validated = crafted("validated.trr", "262144", "[4]", "validation_split = 0.1\n");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"replay " + huge,
       "data.samples times the sample shape is too many values for synthetic data: 700000 x 1000, where it "
       "may "
       "hold at most 268435456 (1 GiB of float32)"},
      {"replay " + most,
       most + ": step 0 orders 64 training rows, but its configuration (" + cfg +
           " (in the trace)) gives the synthetic data 262144 training rows (data.samples = 262144): the "
           "trace "
           "does not follow the run its configuration describes, and its data is not generated"},
      {"bisect " + most, most + ": step 0 orders 64 training rows"},
      {"replay " + validated, "gives the synthetic data 235929 training rows (data.samples = 262144)"}};
  for (const auto& [args, expected] : cases) {
    CommandResult r = run(args, "timeout 60");
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(expected), std::string::npos) << args << "\n" << r.output;
  }
  expect_nothing_written({"syn.toml", "syn.trr", "huge.trr", "most.trr", "validated.trr"});
}

}  // namespace
}  // namespace trainrr::testing
