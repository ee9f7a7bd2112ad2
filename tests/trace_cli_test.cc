// End-to-end tests of `trainrr show`, `dump` and `export` on real recordings, killed recordings and
// hostile files.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <thread>
#include <tuple>

#include "engine/data/npy.h"
#include "engine/fingerprint.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/trainer.h"
#include "tests/test_util.h"
#include "tests/trace_rewrite.h"
#include "traces/trace_reader.h"

extern char** environ;

namespace trainrr::testing {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

size_t count_matching(const std::string& text, const std::regex& re) {
  size_t n = 0;
  for (const auto& line : lines_of(text)) n += std::regex_search(line, re);
  return n;
}

// The groups of the first line that matches (empty if none): std::regex on a whole dump recurses too deep.
std::vector<std::string> first_match(const std::string& text, const std::regex& re) {
  for (const auto& line : lines_of(text)) {
    std::smatch m;
    if (std::regex_search(line, m, re)) return std::vector<std::string>(m.begin(), m.end());
  }
  return {};
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Runs the shell script (trainrr is $T in it): its exit code, and what it wrote on stderr.
CommandResult run_script(const std::string& script, const std::string& stderr_file) {
  const std::string cmd = "T='" + std::string(TRAINRR_BIN) + "'; { " + script + "; } 2>'" + stderr_file + "'";
  const int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.output = read_file(stderr_file);
  return r;
}

// A strict JSON reader just big enough to check that each dump line is one well-formed object.
class JsonCheck {
 public:
  explicit JsonCheck(const std::string& s) : s_(s) {}
  // True if the text is exactly one JSON object; `type` gets its top-level "type" string.
  bool object_with_type(std::string& type) {
    ws();
    if (!peek('{')) return false;
    top_ = true;
    if (!value()) return false;
    ws();
    type = type_;
    return i_ == s_.size();
  }

 private:
  bool peek(char c) const { return i_ < s_.size() && s_[i_] == c; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool literal(const char* w) {
    const std::string word(w);
    if (s_.compare(i_, word.size(), word) != 0) return false;
    i_ += word.size();
    return true;
  }
  bool string(std::string* out) {
    if (!peek('"')) return false;
    ++i_;
    while (i_ < s_.size() && s_[i_] != '"') {
      const unsigned char c = s_[i_];
      if (c < 0x20) return false;
      if (c == '\\') {
        ++i_;
        if (i_ >= s_.size()) return false;
        const char e = s_[i_];
        if (e == 'u') {
          for (int k = 1; k <= 4; ++k)
            if (i_ + k >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_ + k]))) return false;
          i_ += 4;
        } else if (std::string("\"\\/bfnrt").find(e) == std::string::npos) {
          return false;
        }
      } else if (out) {
        *out += static_cast<char>(c);
      }
      ++i_;
    }
    if (!peek('"')) return false;
    ++i_;
    return true;
  }
  bool number() {
    const size_t start = i_;
    if (peek('-')) ++i_;
    if (!(i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_])))) return false;
    while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' ||
                              s_[i_] == 'e' || s_[i_] == 'E' || s_[i_] == '+' || s_[i_] == '-'))
      ++i_;
    return i_ > start;
  }
  bool value() {
    ws();
    if (i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '{') {
      const bool top = top_;
      top_ = false;
      ++i_;
      ws();
      if (peek('}')) return ++i_, true;
      for (;;) {
        ws();
        std::string key;
        if (!string(&key)) return false;
        ws();
        if (!peek(':')) return false;
        ++i_;
        ws();
        if (top && key == "type") {
          std::string v;
          if (!string(&v)) return false;
          type_ = v;
        } else if (!value()) {
          return false;
        }
        ws();
        if (peek('}')) return ++i_, true;
        if (!peek(',')) return false;
        ++i_;
      }
    }
    if (c == '[') {
      ++i_;
      ws();
      if (peek(']')) return ++i_, true;
      for (;;) {
        if (!value()) return false;
        ws();
        if (peek(']')) return ++i_, true;
        if (!peek(',')) return false;
        ++i_;
      }
    }
    if (c == '"') return string(nullptr);
    if (c == 't') return literal("true");
    if (c == 'f') return literal("false");
    if (c == 'n') return literal("null");
    return number();
  }

  const std::string& s_;
  size_t i_ = 0;
  bool top_ = false;
  std::string type_;
};

// Counts of what a trace holds, read through the library: what the CLI's output must account for.
struct TraceCounts {
  std::map<std::string, size_t> events;  // rng, split, shuffle, batch, kernel, probe
  size_t steps = 0, ends = 0, epochs = 0, checkpoints = 0, footers = 0;
  std::vector<std::string> kernel_sites;
  uint64_t header_size = 0;
};

TraceCounts count_trace(const std::string& path) {
  TraceCounts c;
  auto r = trace::TraceReader::open(path);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  if (!r) return c;
  c.header_size = (*r)->header_size();
  for (;;) {
    auto m = (*r)->next();
    EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
    if (!m || !*m) break;
    const auto& v = (*m)->value;
    if (const auto* s = std::get_if<trace::TraceStep>(&v)) {
      ++c.steps;
      c.ends += s->end.has_value();
      for (const auto& e : s->events) {
        // Kinds past these six (accumulation orders) are counted together; dump names them itself.
        static const char* kNames[] = {"rng", "split", "shuffle", "batch", "kernel", "probe"};
        ++c.events[e.index() < std::size(kNames) ? kNames[e.index()] : "other"];
        if (const auto* k = std::get_if<KernelChoice>(&e)) c.kernel_sites.push_back(k->site);
      }
    } else if (std::holds_alternative<trace::TraceEpoch>(v)) {
      ++c.epochs;
    } else if (std::holds_alternative<trace::TraceCheckpoint>(v)) {
      ++c.checkpoints;
    } else {
      ++c.footers;
    }
  }
  return c;
}

// One recording of breast_cancer (10 epochs of 15 steps, level op, a checkpoint every 50 steps), shared by
// the tests that only read it.
class TraceCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    trace_ = dir_->file("bc.trr");
    const CommandResult r = run_trainrr("record " + example("breast_cancer.toml") + " -o " + trace_ +
                                        " --level op --checkpoint-every 50");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static TempDir* dir_;
  static std::string trace_;
};
TempDir* TraceCliTest::dir_ = nullptr;
std::string TraceCliTest::trace_;

TEST_F(TraceCliTest, DumpShowsEveryInitDrawTheSplitEachShuffleAndEachKernelSelection) {
  const CommandResult r = run_trainrr("dump " + trace_);
  ASSERT_EQ(r.exit_code, 0) << r.output.substr(0, 2000);
  const TraceCounts c = count_trace(trace_);

  EXPECT_EQ(
      count_matching(
          r.output,
          std::regex(
              R"(^step 0 rng init/dense_1\.kernel stream=\S+ key=[0-9a-f]{16} counter=\d+ count=\d+ digest=[0-9a-f]{16}$)")),
      1u);
  EXPECT_EQ(count_matching(r.output, std::regex(R"(^step 0 rng init/dense_2\.kernel )")), 1u);
  EXPECT_EQ(count_matching(r.output, std::regex(R"(^step \d+ rng )")), c.events.at("rng"));
  // The split's sizes depend on its rounding rule; what must hold is that it covers the file's 569 rows and
  // that each epoch shuffles exactly the training rows (the run has no validation split).
  const auto split =
      first_match(r.output, std::regex(R"(^step 0 split data/split train=(\d+) rows test=(\d+) rows )"));
  ASSERT_EQ(split.size(), 3u) << r.output.substr(0, 3000);
  EXPECT_EQ(count_matching(r.output, std::regex(R"(^step \d+ split )")), 1u);
  EXPECT_EQ(std::stoul(split[1]) + std::stoul(split[2]), 569u);
  for (int epoch = 1; epoch <= 10; ++epoch)  // counted from 1, as training prints them
    EXPECT_EQ(count_matching(r.output, std::regex("^step \\d+ shuffle data/shuffle epoch=" +
                                                  std::to_string(epoch) + " rows=" + split[1] +
                                                  " draw\\(stream=\\S+ .*\\) digest=[0-9a-f]{16}$")),
              1u)
        << "epoch " << epoch;
  ASSERT_FALSE(c.kernel_sites.empty());
  EXPECT_EQ(
      count_matching(r.output, std::regex(R"(^step \d+ kernel \S+ op=\S+ -> \S+ \(.*\) candidates=\[.+\])")),
      c.kernel_sites.size());
  for (const auto& site : c.kernel_sites)
    EXPECT_EQ(count_matching(
                  r.output,
                  std::regex("^step \\d+ kernel " +
                             std::regex_replace(site, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") + " ")),
              1u)
        << site;
  EXPECT_EQ(count_matching(r.output, std::regex(R"(^step \d+ batch \d+$)")), 150u);
  EXPECT_EQ(count_matching(r.output, std::regex(R"(^step \d+ probe \S+ (forward|backward|update) digest=)")),
            c.events.at("probe"));
  EXPECT_EQ(count_matching(r.output,
                           std::regex(R"(^step \d+ end loss=\S+ .*params: dense_1\.kernel=[0-9a-f]{16})")),
            150u);
  EXPECT_EQ(count_matching(r.output, std::regex(R"(^epoch \d+ loss=)")), 10u);
  EXPECT_EQ(count_matching(r.output, std::regex(R"(^(epoch 10 |step 0 epoch=1 |step 149 epoch=10 ))")), 3u);
  EXPECT_EQ(count_matching(r.output, std::regex(R"((^epoch 0 | epoch=0 ))")), 0u);
  EXPECT_EQ(count_matching(r.output, std::regex(R"(^checkpoint step=50 epochs_done=3 batch_in_epoch=5 )")),
            1u);
  EXPECT_EQ(
      count_matching(r.output,
                     std::regex(R"(^checkpoint step=(50|100|150) .* tensors: dense_1\.kernel\(30, 16\))")),
      3u);
  EXPECT_EQ(count_matching(r.output, std::regex(R"(^footer completed=true reason=completed steps=150 )")),
            1u);
}

TEST_F(TraceCliTest, DumpJsonIsOneObjectWithATypePerMessageAndEvent) {
  const CommandResult r = run_trainrr("dump --json " + trace_);
  ASSERT_EQ(r.exit_code, 0) << r.output.substr(0, 2000);
  const TraceCounts c = count_trace(trace_);
  std::map<std::string, size_t> types;
  for (const auto& line : lines_of(r.output)) {
    std::string type;
    ASSERT_TRUE(JsonCheck(line).object_with_type(type)) << line.substr(0, 500);
    ASSERT_FALSE(type.empty()) << line.substr(0, 500);
    ++types[type];
  }
  EXPECT_EQ(types["header"], 1u);
  EXPECT_EQ(types["step"], c.steps);
  EXPECT_EQ(types["end"], c.ends);
  for (const auto& [kind, n] : c.events) {
    if (kind == "other") continue;
    EXPECT_EQ(types[kind], n) << kind;
  }
  EXPECT_EQ(types["unknown"], 0u) << "dump names every kind of event this build records";
  EXPECT_EQ(types["epoch"], c.epochs);
  EXPECT_EQ(types["checkpoint"], c.checkpoints);
  EXPECT_EQ(types["footer"], 1u);
  EXPECT_EQ(types["incomplete"], 0u);
  EXPECT_NE(r.output.find(R"({"type":"rng","step":0,"site":"init/dense_1.kernel","stream":)"),
            std::string::npos);
}

// A tensor whose every value is NaN or infinite has a summary of zeros that stand for nothing: dump says it
// has no finite value (the text) and gives null (the JSON), never "min=0 max=0".
TEST_F(TraceCliTest, DumpOfATensorWithNoFiniteValueGivesNoSumMinOrMax) {
  // Unscaled features under mse and plain SGD: the loss is infinite by step 2 and every output NaN after.
  const std::string config = dir_->write(
      "blowup.toml", "seed = 42\n[data]\npath = \"" + example("data/breast_cancer.csv") +
                         "\"\nlabel = \"benign\"\ntest_fraction = 0.2\nscale = \"none\"\n"
                         "[[model.layers]]\ntype = \"Dense\"\nunits = 16\nactivation = \"linear\"\n"
                         "[[model.layers]]\ntype = \"Dense\"\nunits = 1\n"
                         "[train]\nepochs = 1\nbatch_size = 32\nloss = \"mse\"\n"
                         "[train.optimizer]\ntype = \"sgd\"\nlearning_rate = 0.01\n"
                         "[runtime]\nthreads = 1\npolicy = \"deterministic\"\n");
  const std::string trace = dir_->file("blowup.trr");
  ASSERT_EQ(run_trainrr("record " + config + " -o " + trace + " --level layer").exit_code, 0);
  const CommandResult text = run_trainrr("dump " + trace);
  ASSERT_EQ(text.exit_code, 0) << text.output.substr(0, 2000);
  const auto none_finite = first_match(
      text.output,
      std::regex(R"(^step \d+ probe (\S+) \S+ digest=[0-9a-f]{16} count=(\d+) \(no finite value: no )"
                 R"(sum, min or max\) non_finite=(\d+)$)"));
  ASSERT_EQ(none_finite.size(), 4u) << text.output.substr(0, 4000);
  EXPECT_EQ(none_finite[2], none_finite[3]);
  EXPECT_EQ(count_matching(text.output, std::regex(R"(min=0 max=0 non_finite=)")), 0u);
  const CommandResult json = run_trainrr("dump --json " + trace);
  ASSERT_EQ(json.exit_code, 0);
  EXPECT_GT(count_matching(json.output, std::regex(R"("sum":null,"sum_sq":null,"min":null,"max":null,)")),
            0u);
  EXPECT_EQ(count_matching(json.output, std::regex(R"("min":0,"max":0,"non_finite":[1-9])")), 0u);
}

// A model without parameters (an Activation layer alone: Keras fits it too) records a trace that every reader
// takes as whole: the digest over none of its parameters is the one the steps recorded.
TEST_F(TraceCliTest, AModelWithoutParametersRecordsATraceEveryReaderReads) {
  std::string csv = "x,y\n";
  for (int i = 0; i < 40; ++i) csv += std::to_string(i % 7 - 3) + "," + std::to_string(i % 2) + "\n";
  const std::string config =
      dir_->write("noparams.toml", "seed = 1\n[data]\npath = \"" + dir_->write("one.csv", csv) +
                                       "\"\nlabel = \"y\"\ntest_fraction = 0.2\n"
                                       "[[model.layers]]\ntype = \"Activation\"\nactivation = \"sigmoid\"\n"
                                       "[train]\nepochs = 2\nbatch_size = 8\nloss = \"binary_crossentropy\"\n"
                                       "[runtime]\nthreads = 1\n");
  const std::string trace = dir_->file("noparams.trr");
  const CommandResult rec = run_trainrr("record " + config + " -o " + trace + " --checkpoint-every 2");
  ASSERT_EQ(rec.exit_code, 0) << rec.output;
  const CommandResult replay = run_trainrr("replay " + trace);
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_NE(replay.output.find("reproduced bit for bit (8 steps compared)"), std::string::npos)
      << replay.output;
  const CommandResult show = run_trainrr("show " + trace);
  EXPECT_EQ(show.exit_code, 0) << show.output;
  EXPECT_EQ(show.output.find("damaged"), std::string::npos) << show.output;
  EXPECT_EQ(run_trainrr("export " + trace + " --step 8 -o " + dir_->file("noparams-ck")).exit_code, 0);
}

TEST_F(TraceCliTest, DumpStepsLimitsToTheRangeAndRejectsBadSyntax) {
  const CommandResult r = run_trainrr("dump " + trace_ + " --steps 3:5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count_matching(r.output, std::regex(R"(^step \d+ end )")), 2u);
  EXPECT_EQ(count_matching(r.output, std::regex(R"(^step [34] end )")), 2u);
  EXPECT_EQ(count_matching(r.output, std::regex(R"(^step \d+ epoch=)")), 2u);

  const CommandResult tail = run_trainrr("dump --json " + trace_ + " --steps 140:");
  ASSERT_EQ(tail.exit_code, 0);
  EXPECT_EQ(count_matching(tail.output, std::regex(R"(^\{"type":"end")")), 10u);
  const CommandResult head = run_trainrr("dump " + trace_ + " --steps :1");
  ASSERT_EQ(head.exit_code, 0);
  EXPECT_EQ(count_matching(head.output, std::regex(R"(^step 0 end )")), 1u);
  EXPECT_EQ(count_matching(head.output, std::regex(R"(^step [1-9]\d* )")), 0u);

  for (const char* bad : {"x", "3-5", "5:3", ":", "-1:4", "1:2:3", "1.5:", "5:5", ":0"}) {
    const CommandResult b = run_trainrr("dump " + trace_ + " --steps " + bad);
    EXPECT_EQ(b.exit_code, 2) << bad << ": " << b.output;
    EXPECT_NE(b.output.find("--steps"), std::string::npos) << b.output;
  }
}

TEST_F(TraceCliTest, ShowSummarizesTheRunAndSaysItEndedCleanly) {
  const CommandResult r = run_trainrr("show " + trace_);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("breast_cancer.toml"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("seed: 42 (from the configuration)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("level: op, checkpoint every 50 steps"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("threads: 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("libraries: trainrr "), std::string::npos) << r.output;
  // The compiler's flags without the space CMake leaves where its general flags are empty.
  EXPECT_TRUE(std::regex_search(r.output, std::regex("\n  compiler: [^\n]*, flags: [^ \n]"))) << r.output;
  EXPECT_NE(r.output.find("breast_cancer.csv"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not embedded"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("steps: 150 in 10 epochs (1..10)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("checkpoints: 4: the initial state, after 50, 100, 150 steps"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("final metrics (epoch 10): loss"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ended cleanly: the run completed (completed), 150 steps"), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("did not end cleanly"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("non-finite values: none in any probe"), std::string::npos) << r.output;
  EXPECT_LE(lines_of(r.output).size(), 30u) << "one screen";
}

// A regression whose SGD steps are far too large: the squared error overflows in step 1's loss, and the
// update that follows makes the first layer's kernel infinite.
TEST(TraceCliNonFiniteTest, ShowNamesWhereNaNOrInfinityFirstAppears) {
  TempDir d;
  const std::string cfg = d.write(
      "explode.toml",
      "seed = 1\n[data]\nsource = \"synthetic\"\nshape = [8]\nclasses = 2\nsamples = 256\n"
      "[[model.layers]]\ntype = \"Dense\"\nunits = 8\nactivation = \"relu\"\n"
      "[[model.layers]]\ntype = \"Dense\"\nunits = 1\n"
      "[train]\nepochs = 1\nbatch_size = 32\nloss = \"mse\"\n"
      "[train.optimizer]\ntype = \"sgd\"\nlearning_rate = 1e12\n"
      "[runtime]\nthreads = 1\npolicy = \"deterministic\"\n");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + d.file("op.trr") + " --level op").exit_code, 0);
  const CommandResult op = run_trainrr("show " + d.file("op.trr"));
  ASSERT_EQ(op.exit_code, 0) << op.output;
  EXPECT_NE(op.output.find("non-finite values: first at step 1, dense_1.kernel/update:out (update): 64 of 64 "
                           "values are NaN or infinite"),
            std::string::npos)
      << op.output;
  EXPECT_NE(op.output.find("  loss: first non-finite at step 1 (inf)"), std::string::npos) << op.output;
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + d.file("step.trr")).exit_code, 0);
  const CommandResult step = run_trainrr("show " + d.file("step.trr"));
  ASSERT_EQ(step.exit_code, 0) << step.output;
  EXPECT_NE(step.output.find("non-finite values: in the loss (a level-step trace holds no probes: record with "
                             "--level op to find the op)"),
            std::string::npos)
      << step.output;
  EXPECT_NE(step.output.find("  loss: first non-finite at step 1 (inf)"), std::string::npos) << step.output;
  // JSON has no number for them: an infinite loss and a NaN one are the strings "inf" and "nan", never one
  // null for both.
  const CommandResult json = run_trainrr("dump --json " + d.file("step.trr"));
  ASSERT_EQ(json.exit_code, 0) << json.output;
  EXPECT_NE(json.output.find("\"step\":1,\"epoch\":1,\"batch\":1,\"loss\":\"inf\""), std::string::npos)
      << json.output;
  EXPECT_NE(json.output.find("\"step\":2,\"epoch\":1,\"batch\":2,\"loss\":\"nan\""), std::string::npos)
      << json.output;
  EXPECT_NE(json.output.find("\"logs\":{\"loss\":\"nan\"}"), std::string::npos) << json.output;
  EXPECT_EQ(json.output.find("\"loss\":null"), std::string::npos) << json.output;
  // A run gone to NaN is what one replays: its NaN losses must compare equal to themselves.
  for (const std::string& trace : {d.file("op.trr"), d.file("step.trr")}) {
    const CommandResult replay = run_trainrr("replay " + trace);
    EXPECT_EQ(replay.exit_code, 0) << replay.output;
    EXPECT_NE(replay.output.find("reproduced bit for bit"), std::string::npos) << replay.output;
    const CommandResult diff = run_trainrr("diff " + trace + " " + trace);
    EXPECT_EQ(diff.exit_code, 0) << diff.output;
  }
}

TEST_F(TraceCliTest, ReplayFromAStepResumesAtTheCheckpointBeforeItAndStopsWhereAsked) {
  const CommandResult from = run_trainrr("replay " + trace_ + " --from-step 120");
  EXPECT_EQ(from.exit_code, 0) << from.output;
  EXPECT_NE(from.output.find("reproduced bit for bit (50 steps compared)"), std::string::npos) << from.output;
  EXPECT_NE(from.output.find("resumed from checkpoint at step: 100"), std::string::npos) << from.output;
  const CommandResult window = run_trainrr("replay " + trace_ + " --from-step 60 --to-step 80");
  EXPECT_EQ(window.exit_code, 0) << window.output;
  EXPECT_NE(window.output.find("reproduced bit for bit (30 steps compared)"), std::string::npos) << window.output;
  EXPECT_NE(window.output.find("resumed from checkpoint at step: 50"), std::string::npos) << window.output;
  const CommandResult past = run_trainrr("replay " + trace_ + " --from-step 1000");
  EXPECT_EQ(past.exit_code, 2) << past.output;
  EXPECT_NE(past.output.find("step 1000 is past the run's end: it has steps 0..149"), std::string::npos)
      << past.output;
}

// A resumed replay's loss chart counts its steps from the checkpoint it resumed at, as the trace does.
TEST_F(TraceCliTest, ReplayHtmlLossChartNamesTheStepsItReplayed) {
  TempDir out;
  const CommandResult r = run_trainrr("replay " + trace_ + " --from-step 120 --html " + out.file("r.html"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string html = read_file(out.file("r.html"));
  EXPECT_NE(html.find("aria-label=\"loss per step, steps 100 to 149\""), std::string::npos) << html;
  EXPECT_EQ(html.find("aria-label=\"loss per step, steps 0 "), std::string::npos) << html;
}

// Before the first periodic checkpoint, the last checkpoint is the initial state: the replay runs from step 0.
TEST_F(TraceCliTest, ReplayFromAStepBeforeEveryCheckpointSaysItStartedAtStepZero) {
  const CommandResult early = run_trainrr("replay " + trace_ + " --from-step 20 --to-step 22");
  EXPECT_EQ(early.exit_code, 0) << early.output;
  EXPECT_NE(early.output.find("note: the last checkpoint at or before step 20 is the initial state: replayed from "
                              "step 0"),
            std::string::npos)
      << early.output;
  EXPECT_EQ(early.output.find("no checkpoint"), std::string::npos) << early.output;
  EXPECT_NE(early.output.find("(22 steps compared)"), std::string::npos) << early.output;
  const CommandResult later = run_trainrr("replay " + trace_ + " --from-step 60 --to-step 62");
  EXPECT_EQ(later.exit_code, 0) << later.output;
  EXPECT_EQ(later.output.find("replayed from step 0"), std::string::npos) << later.output;
}

// A trace without the initial state (written before it was kept), or without any checkpoint (of a run that
// failed, which keeps no final state either), has none to start from before its first: the replay runs from
// step 0 and says so.
TEST_F(TraceCliTest, ReplayFromAStepBeforeATracesFirstCheckpointSaysItHasNone) {
  TempDir out;
  const std::string older = out.file("older.trr"), none = out.file("none.trr");
  ASSERT_EQ(rewrite_trace(
                trace_, older, [](trace::TraceHeader&) {}, {},
                [](trace::TraceCheckpoint& cp) { return cp.step > 0; }),
            "");
  ASSERT_EQ(rewrite_trace(
                trace_, none, [](trace::TraceHeader&) {}, {}, [](trace::TraceCheckpoint&) { return false; },
                [](trace::TraceFooter& f) {
                  f.completed = false;
                  f.end_reason = "error: out of memory";
                }),
            "");
  for (const std::string& t : {older, none}) {
    const CommandResult r = run_trainrr("replay " + t + " --from-step 20 --to-step 22");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("note: the trace has no checkpoint at or before step 20: replayed from step 0"),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("(22 steps compared)"), std::string::npos) << r.output;
  }
  // Past its first periodic checkpoint, the trace without the initial state resumes there.
  const CommandResult later = run_trainrr("replay " + older + " --from-step 60 --to-step 62");
  EXPECT_EQ(later.exit_code, 0) << later.output;
  EXPECT_NE(later.output.find("resumed from checkpoint at step: 50"), std::string::npos) << later.output;
}

// Another batch size gives the first layer's matmul another shape: the note says so rather than naming the
// same site twice as two paths.
TEST_F(TraceCliTest, ReplayWithAnotherBatchSizeSaysTheShapesDiffer) {
  const CommandResult r = run_trainrr("replay " + trace_ + " --set train.batch_size=16 --from-step 60");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(
      r.output.find("note: the two re-executions give dense_1/matmul.fwd:out different shapes: (32, 16) "
                    "(recorded) vs (16, 16) (replayed)"),
      std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("different paths"), std::string::npos) << r.output;
}

// RMSprop with momentum and centered keeps three slots per parameter; a checkpoint holds them all, so a
// replay that resumes from one reproduces the run, and an export writes them.
TEST(TraceCliRmsPropTest, CheckpointHoldsEverySlotAndAReplayResumesFromItBitForBit) {
  TempDir d;
  const std::string trace = d.file("rms.trr");
  const CommandResult rec = run_trainrr("record " + example("breast_cancer.toml") + " -o " + trace +
                                        " --set train.optimizer.type=rmsprop --set "
                                        "train.optimizer.momentum=0.9 --set train.optimizer.centered=true"
                                        " --set train.epochs=6 --checkpoint-every 40");
  ASSERT_EQ(rec.exit_code, 0) << rec.output;
  const CommandResult from = run_trainrr("replay " + trace + " --from-step 70");
  EXPECT_EQ(from.exit_code, 0) << from.output;
  EXPECT_NE(from.output.find("resumed from checkpoint at step: 40"), std::string::npos) << from.output;
  EXPECT_NE(from.output.find("reproduced bit for bit (50 steps compared)"), std::string::npos) << from.output;

  const CommandResult out = run_trainrr("export " + trace + " --step 40 -o " + d.file("ck"));
  ASSERT_EQ(out.exit_code, 0) << out.output;
  for (const char* slot : {"velocity", "momentum", "average_gradient"}) {
    auto t = read_npy(d.file(std::string("ck/") + slot + "__dense_1.kernel.npy"));
    ASSERT_TRUE(t.ok()) << slot;
    EXPECT_EQ(t->shape, (Shape{30, 16})) << slot;
    EXPECT_NE(std::count(t->data.begin(), t->data.end(), 0.0f), t->size())
        << slot << " holds the run's state";
  }
}

TEST_F(TraceCliTest, ReplayRefusesAnEmptyReversedOrNegativeStepRange) {
  for (const std::string range : {"--to-step 0", "--from-step 20 --to-step 10", "--from-step 10 --to-step 3",
                                  "--from-step 10 --to-step 10", "--to-step -7"}) {
    const CommandResult r = run_trainrr("replay " + trace_ + " " + range);
    EXPECT_EQ(r.exit_code, 2) << range << ": " << r.output;
    EXPECT_NE(r.output.find("--to-step"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("reproduced"), std::string::npos) << range << ": " << r.output;
  }
  const CommandResult reversed = run_trainrr("replay " + trace_ + " --from-step 20 --to-step 10");
  EXPECT_NE(reversed.output.find("--from-step 20 --to-step 10: the range of steps is empty or reversed"),
            std::string::npos)
      << reversed.output;
  const CommandResult one = run_trainrr("replay " + trace_ + " --to-step 1");
  EXPECT_EQ(one.exit_code, 0) << one.output;
  EXPECT_NE(one.output.find("reproduced bit for bit (1 step compared)"), std::string::npos) << one.output;
}

// Past the trace's end, export writes the last checkpoint (the final weights), as --help and docs/traces.md
// say, and a note names the trace's steps; a trace cut short has no final state, and the note says so.
TEST_F(TraceCliTest, ExportPastTheLastStepWritesTheLastCheckpointWithANote) {
  TempDir out;
  const CommandResult last = run_trainrr("export " + trace_ + " --step 150 -o " + out.file("last"));
  EXPECT_EQ(last.exit_code, 0) << last.output;
  EXPECT_EQ(last.output.find("note:"), std::string::npos) << last.output;
  for (const char* step : {"151", "99999999999999999999"}) {
    const std::string ck = out.file(std::string("ck") + step);
    const CommandResult r = run_trainrr("export " + trace_ + " --step " + step + " -o " + ck);
    EXPECT_EQ(r.exit_code, 0) << step << ": " << r.output;
    EXPECT_NE(r.output.find("exported the checkpoint after the trace's last step, 149 (150 steps done"),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("\nnote: --step "), std::string::npos) << r.output;
    EXPECT_NE(
        r.output.find(" is past the trace's end: it has steps 0..149; its last checkpoint was exported\n"),
        std::string::npos)
        << r.output;
    EXPECT_NE(read_file(ck + "/manifest.json").find("\"step\":150,"), std::string::npos) << step;
  }
  // Cut short: its last checkpoint is the initial state or a periodic one, not the final weights.
  const std::string bytes = read_file(trace_);
  const std::string cut = out.file("cut.trr");
  write_file(cut, bytes.substr(0, bytes.size() / 8));
  const CommandResult r = run_trainrr("export " + cut + " --step 1000 -o " + out.file("cut"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(
                " (it did not end cleanly: its final state is not in it); its last checkpoint was exported"),
            std::string::npos)
      << r.output;
}

TEST_F(TraceCliTest, ExportWritesTheCheckpointAtOrBeforeTheStepAsNpyAndAManifest) {
  TempDir out;
  const CommandResult r = run_trainrr("export " + trace_ + " --step 120 -o " + out.file("ck"));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // The model's own parameters, from the engine: the files must hold exactly these names and shapes.
  KernelRegistry registry;
  register_cpu_kernels(registry);
  TrainingOptions opts;
  opts.registry = &registry;
  auto config = load_config(example("breast_cancer.toml"));
  ASSERT_TRUE(config.ok());
  auto training = Training::create(*config, opts);
  ASSERT_TRUE(training.ok());
  const std::string manifest = read_file(out.file("ck/manifest.json"));
  std::string type;
  std::string tagged = manifest;
  tagged.insert(1, "\"type\":\"manifest\",");
  ASSERT_TRUE(JsonCheck(tagged).object_with_type(type)) << manifest.substr(0, 500);
  EXPECT_NE(manifest.find("\"step\":100,"), std::string::npos) << manifest.substr(0, 300);
  // Epochs count from 1 as training prints them: step 100 is in the 7th epoch of 15 steps; 6 are done.
  EXPECT_NE(manifest.find("{\"step\":100,\"epoch\":7,"), std::string::npos) << manifest.substr(0, 300);
  EXPECT_NE(manifest.find("\"epochs_done\":6,"), std::string::npos) << manifest.substr(0, 300);
  EXPECT_NE(manifest.find("\"seed\":42,"), std::string::npos);
  EXPECT_NE(manifest.find("\"batch_order_until\":\"checkpoint at step 150\""), std::string::npos);
  EXPECT_EQ(count_matching(std::regex_replace(manifest, std::regex(R"(\},\{)"), "}\n{"),
                           std::regex(R"("step":1[0-4]\d,"epoch":\d+,"batch":\d+)")),
            50u)
      << "the batch order of steps 100..149";

  // Values: the checkpoint through the library, against the .npy files.
  auto reader = trace::TraceReader::open(trace_);
  ASSERT_TRUE(reader.ok());
  auto index = (*reader)->checkpoint_index();
  ASSERT_TRUE(index.ok());
  ASSERT_EQ(index->size(), 4u);  // the initial state, then after 50, 100 and 150 steps
  auto state = (*reader)->read_checkpoint((*index)[2].offset);
  ASSERT_TRUE(state.ok());
  ASSERT_EQ(state->step, 100);

  for (Param* p : (*training)->model().params()) {
    const std::string file = out.file("ck/" + p->name + ".npy");
    auto t = read_npy(file);
    ASSERT_TRUE(t.ok()) << file << ": " << (t.ok() ? "" : t.error().message);
    EXPECT_EQ(t->shape, p->value.shape) << p->name;
    EXPECT_NE(manifest.find("\"name\":\"" + p->name + "\",\"shape\":"), std::string::npos) << p->name;
  }
  size_t files = 0;
  for (const auto& t : state->tensors) {
    std::string name = std::regex_replace(t.name, std::regex("/"), "__");
    auto back = read_npy(out.file("ck/" + name + ".npy"));
    ASSERT_TRUE(back.ok()) << name;
    EXPECT_EQ(back->shape, t.value.shape) << name;
    EXPECT_EQ(digest(*back), digest(t.value)) << name << ": the values must be the checkpoint's, bit for bit";
    ++files;
  }
  EXPECT_GT(files, (*training)->model().params().size()) << "optimizer state is exported too";
}

// A trace damaged after the checkpoint exported is read no further: the note says the damage, not an end of
// the trace there; and a trace cut before its initial state is whole is said to be that, not one without
// checkpoints.
TEST_F(TraceCliTest, ExportSaysDamageAndACutBeforeTheInitialStateForWhatTheyAre) {
  auto reader = trace::TraceReader::open(trace_);
  ASSERT_TRUE(reader.ok());
  auto index = (*reader)->checkpoint_index();
  ASSERT_TRUE(index.ok());
  ASSERT_EQ(index->size(), 4u);
  std::string bytes;
  {
    std::ifstream in(trace_, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  TempDir out;
  std::string damaged = bytes;
  damaged[((*index)[2].offset + (*index)[3].offset) / 2] ^= 0x10;
  const std::string flipped = out.write("flipped.trr", damaged);
  const CommandResult r = run_trainrr("export " + flipped + " --step 140 -o " + out.file("ck"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("exported the checkpoint before step 100 "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("note: the trace is damaged after step "), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("past the trace's end"), std::string::npos) << r.output;

  const std::string cut = out.write("cut.trr", bytes.substr(0, (*index)[0].offset + 50));
  const CommandResult c = run_trainrr("export " + cut + " --step 0 -o " + out.file("ck0"));
  EXPECT_EQ(c.exit_code, 2) << c.output;
  EXPECT_NE(c.output.find(
                "the trace holds no whole checkpoint: reading stopped before its initial state was whole: "),
            std::string::npos)
      << c.output;
  EXPECT_EQ(c.output.find("--checkpoint-every"), std::string::npos) << c.output;

  // Cut where a message starts (the last checkpoint's): dump says where the file ends, and that it is cut,
  // not damaged, as show does.
  const std::string at = std::to_string((*index)[3].offset);
  const std::string ends = out.write("ends.trr", bytes.substr(0, (*index)[3].offset));
  const CommandResult j = run_trainrr("dump --json " + ends);
  EXPECT_NE(j.output.find("{\"type\":\"incomplete\",\"complete_steps\":150,\"offset\":" + at +
                          ",\"truncated\":true,\"damaged\":false,\"reason\":\"no footer\"}"),
            std::string::npos)
      << j.output.substr(j.output.size() > 400 ? j.output.size() - 400 : 0);
  const CommandResult t = run_trainrr("dump " + ends);
  EXPECT_NE(t.output.find("did not end cleanly: 150 complete steps readable; the file ends at byte " + at),
            std::string::npos)
      << t.output.substr(t.output.size() > 400 ? t.output.size() - 400 : 0);
  const CommandResult d = run_trainrr("dump --json " + flipped);
  EXPECT_NE(d.output.find("\"truncated\":false,\"damaged\":true,"), std::string::npos)
      << d.output.substr(d.output.size() > 400 ? d.output.size() - 400 : 0);
}

// An export replaces an earlier one whole (no stale file from it is kept) and never anything else; nothing is
// left beside the folder.
// A checkpoint's step counts the steps done: the checkpoint at step 100 holds the state before step 100,
// 100 steps into the run (6 epochs of 15 batches, and 10 batches of the seventh).
TEST_F(TraceCliTest, ExportSaysTheCheckpointHoldsTheStateBeforeItsStep) {
  TempDir out;
  const CommandResult mid = run_trainrr("export " + trace_ + " --step 120 -o " + out.file("ck"));
  ASSERT_EQ(mid.exit_code, 0) << mid.output;
  EXPECT_NE(
      mid.output.find("exported the checkpoint before step 100 (100 steps done: 6 epochs and 10 batches) "
                      "to "),
      std::string::npos)
      << mid.output;
  EXPECT_NE(mid.output.find("the batch order of 50 following steps (until checkpoint at step 150)"),
            std::string::npos)
      << mid.output;
  const CommandResult last = run_trainrr("export " + trace_ + " --step 150 -o " + out.file("ck"));
  ASSERT_EQ(last.exit_code, 0) << last.output;
  EXPECT_NE(last.output.find("exported the checkpoint after the trace's last step, 149 (150 steps done: 10 "
                             "epochs and 0 batches) to "),
            std::string::npos)
      << last.output;
}

TEST_F(TraceCliTest, ExportReplacesAnEarlierExportWholeAndRefusesAnyOtherFolder) {
  namespace fs = std::filesystem;
  TempDir out;
  const std::string ck = out.file("ck");
  ASSERT_EQ(run_trainrr("export " + trace_ + " --step 120 -o " + ck).exit_code, 0);
  // A tensor the earlier export had and the new one has not (its manifest lists the file).
  std::string manifest = read_file(out.file("ck/manifest.json"));
  const size_t tensors = manifest.find("\"tensors\":[");
  ASSERT_NE(tensors, std::string::npos);
  manifest.insert(tensors + 11, R"({"name":"gone","shape":[1],"file":"stale.npy","digest":"0"},)");
  write_file(out.file("ck/manifest.json"), manifest);
  write_file(out.file("ck/stale.npy"), "from before");
  const CommandResult again = run_trainrr("export " + trace_ + " --step 50 -o " + ck + "/");
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_FALSE(fs::exists(out.file("ck/stale.npy"))) << "a file of the earlier export was kept";
  EXPECT_NE(read_file(out.file("ck/manifest.json")).find("\"step\":50,"), std::string::npos);
  EXPECT_EQ(fs::status(ck).permissions() & fs::perms::others_read, fs::perms::others_read)
      << "as mkdir makes it";
  // "-o ." from inside an earlier export, or an empty folder, names that folder.
  const CommandResult here = run_trainrr_env("cd " + ck + " &&", "export " + trace_ + " --step 60 -o .");
  EXPECT_EQ(here.exit_code, 0) << here.output;
  EXPECT_NE(read_file(out.file("ck/manifest.json")).find("\"step\":60,"), std::string::npos);
  fs::create_directory(out.file("empty"));
  const CommandResult dot =
      run_trainrr_env("cd " + out.file("empty") + " &&", "export " + trace_ + " --step 60 -o .");
  EXPECT_EQ(dot.exit_code, 0) << dot.output;
  EXPECT_TRUE(fs::exists(out.file("empty/manifest.json")));

  fs::create_directory(out.file("notes"));
  write_file(out.file("notes/keep.txt"), "keep me");
  const CommandResult other = run_trainrr("export " + trace_ + " --step 50 -o " + out.file("notes"));
  EXPECT_EQ(other.exit_code, 2) << other.output;
  EXPECT_NE(other.output.find(out.file("notes") + ": exists and is not an earlier export"), std::string::npos)
      << other.output;
  EXPECT_EQ(read_file(out.file("notes/keep.txt")), "keep me");
  EXPECT_EQ(std::distance(fs::directory_iterator(out.file("notes")), {}), 1);

  const CommandResult file = run_trainrr("export " + trace_ + " --step 50 -o " + out.file("notes/keep.txt"));
  EXPECT_EQ(file.exit_code, 2) << file.output;
  EXPECT_EQ(read_file(out.file("notes/keep.txt")), "keep me");

  fs::create_directory(out.file("empty"));
  EXPECT_EQ(run_trainrr("export " + trace_ + " --step 50 -o " + out.file("empty")).exit_code, 0);
  EXPECT_TRUE(fs::exists(out.file("empty/manifest.json")));

  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(out.path())) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"ck", "empty", "notes"}));
}

// As record -o and --html: an empty -o is refused, and so is one in a folder that does not exist (it is not
// created, nor any folder above it).
TEST_F(TraceCliTest, ExportToAnEmptyPathOrIntoAMissingFolderIsRefusedNamingIt) {
  namespace fs = std::filesystem;
  TempDir out;
  const CommandResult empty = run_trainrr("export " + trace_ + " --step 0 -o ''");
  EXPECT_EQ(empty.exit_code, 2) << empty.output;
  EXPECT_NE(empty.output.find("trainrr: -o needs a folder path, got an empty one"), std::string::npos)
      << empty.output;
  const CommandResult missing =
      run_trainrr("export " + trace_ + " --step 0 -o " + out.file("absent/deeper/ck"));
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find(out.file("absent/deeper/ck") + ": its folder " + out.file("absent/deeper") +
                                " does not exist"),
            std::string::npos)
      << missing.output;
  EXPECT_FALSE(fs::exists(out.file("absent")));
}

// An earlier export that only its owner may read stays so: the new one is never more readable.
TEST_F(TraceCliTest, ExportOverAnEarlierExportKeepsItsPermissions) {
  namespace fs = std::filesystem;
  TempDir out;
  const std::string ck = out.file("ck");
  ASSERT_EQ(run_trainrr("export " + trace_ + " --step 0 -o " + ck).exit_code, 0);
  for (const fs::perms mode : {fs::perms(0700), fs::perms(0750)}) {
    fs::permissions(ck, mode);
    const CommandResult again = run_trainrr("export " + trace_ + " --step 50 -o " + ck);
    EXPECT_EQ(again.exit_code, 0) << again.output;
    EXPECT_EQ(fs::status(ck).permissions(), mode);
  }
}

// An earlier export is replaced only when it holds nothing but what an export writes there (its
// manifest.json and the .npy files the manifest lists), and never when it holds the trace being read: any
// other file in it is named and kept.
TEST_F(TraceCliTest, ExportRefusesToReplaceAFolderHoldingTheTraceOrAFileAnExportDidNotWrite) {
  namespace fs = std::filesystem;
  TempDir out;
  const std::string ck = out.file("ck");
  ASSERT_EQ(run_trainrr("export " + trace_ + " --step 0 -o " + ck).exit_code, 0);
  const std::string manifest = read_file(out.file("ck/manifest.json"));
  const auto unchanged = [&](const std::string& what) {
    EXPECT_EQ(read_file(out.file("ck/manifest.json")), manifest) << what;
  };

  // The trace being read, copied into the earlier export, with notes beside it.
  fs::copy_file(trace_, out.file("ck/run.trr"));
  write_file(out.file("ck/notes.txt"), "notes");
  const CommandResult inside = run_trainrr("export " + out.file("ck/run.trr") + " --step 40 -o " + ck);
  EXPECT_EQ(inside.exit_code, 2) << inside.output;
  EXPECT_NE(inside.output.find(ck + ": holds the trace being read (" + out.file("ck/run.trr") + ")"),
            std::string::npos)
      << inside.output;
  EXPECT_TRUE(read_file(out.file("ck/run.trr")) == read_file(trace_)) << "the trace being read was changed";
  EXPECT_EQ(read_file(out.file("ck/notes.txt")), "notes");
  unchanged("the trace inside");
  const CommandResult cd_inside = run_trainrr_env("cd " + ck + " &&", "export run.trr --step 40 -o .");
  EXPECT_EQ(cd_inside.exit_code, 2) << cd_inside.output;
  EXPECT_TRUE(fs::exists(out.file("ck/run.trr")));

  // Another trace: the first file the export did not write is named.
  const CommandResult other = run_trainrr("export " + trace_ + " --step 40 -o " + ck);
  EXPECT_EQ(other.exit_code, 2) << other.output;
  EXPECT_NE(other.output.find(ck + ": holds notes.txt, which trainrr export did not write there"),
            std::string::npos)
      << other.output;
  EXPECT_EQ(read_file(out.file("ck/notes.txt")), "notes");
  unchanged("notes.txt");

  // An .npy file the manifest does not list, a folder, a link: each is refused and kept.
  fs::remove(out.file("ck/run.trr"));
  fs::remove(out.file("ck/notes.txt"));
  write_file(out.file("ck/analysis.npy"), "mine");
  const CommandResult npy = run_trainrr("export " + trace_ + " --step 40 -o " + ck);
  EXPECT_EQ(npy.exit_code, 2) << npy.output;
  EXPECT_NE(npy.output.find("holds analysis.npy, which trainrr export did not write"), std::string::npos)
      << npy.output;
  EXPECT_EQ(read_file(out.file("ck/analysis.npy")), "mine");
  fs::remove(out.file("ck/analysis.npy"));
  fs::create_directory(out.file("ck/plots"));
  const CommandResult folder = run_trainrr("export " + trace_ + " --step 40 -o " + ck);
  EXPECT_EQ(folder.exit_code, 2) << folder.output;
  EXPECT_NE(folder.output.find("holds plots,"), std::string::npos) << folder.output;
  EXPECT_TRUE(fs::is_directory(out.file("ck/plots")));
  fs::remove(out.file("ck/plots"));
  unchanged("an unlisted .npy file or a folder");

  // A listed file that is a hard link to the trace being read.
  const std::string copy = out.file("copy.trr");
  fs::copy_file(trace_, copy);
  std::string listed;
  for (const auto& e : fs::directory_iterator(ck))
    if (e.path().extension() == ".npy") listed = e.path().string();
  ASSERT_FALSE(listed.empty());
  const std::string listed_bytes = read_file(listed);
  fs::remove(listed);
  fs::create_hard_link(copy, listed);
  const CommandResult linked = run_trainrr("export " + copy + " --step 40 -o " + ck);
  EXPECT_EQ(linked.exit_code, 2) << linked.output;
  EXPECT_NE(linked.output.find("holds the trace being read"), std::string::npos) << linked.output;
  EXPECT_TRUE(read_file(copy) == read_file(trace_)) << "the trace being read was changed";
  fs::remove(listed);
  write_file(listed, listed_bytes);

  // What an export writes, and nothing else: replaced.
  const CommandResult again = run_trainrr("export " + trace_ + " --step 40 -o " + ck);
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(read_file(out.file("ck/manifest.json")), manifest);
}

// A failed export leaves no folder of partial files behind, and an earlier export as it was.
TEST_F(TraceCliTest, FailedExportLeavesNothingAndKeepsTheEarlierExport) {
  TempDir out;
  const std::string ck = out.file("ck");
  ASSERT_EQ(run_trainrr("export " + trace_ + " --step 50 -o " + ck).exit_code, 0);
  const std::string manifest = read_file(out.file("ck/manifest.json"));
  // Files past 1 KiB cannot be written (EFBIG, the signal ignored): the first tensor's file fails.
  for (const std::string& to : {out.file("new"), ck}) {
    const CommandResult r = run_script(
        "trap '' XFSZ; ulimit -f 2; $T export " + trace_ + " --step 120 -o " + to, out.file("err"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("File too large"), std::string::npos) << r.output;
    // The message names what the user asked for, not only the folder the export was being made in.
    EXPECT_NE(r.output.find("; nothing was exported (" + to + " is as it was)"), std::string::npos)
        << r.output;
    std::filesystem::remove(out.file("err"));
    std::vector<std::string> left;
    for (const auto& e : std::filesystem::directory_iterator(out.path()))
      left.push_back(e.path().filename().string());
    EXPECT_EQ(left, std::vector<std::string>{"ck"}) << to;
  }
  EXPECT_EQ(read_file(out.file("ck/manifest.json")), manifest);
}

// An export run under strace, held at one system call for a few seconds (`inject`: mkdir of the staging
// folder, or the removal of its marker just before it is put in place), so that a signal reaches it while
// the staging folder exists. Returns its pid and strace's; strace exits as trainrr does.
struct HeldExport {
  pid_t strace = -1;
  pid_t trainrr = -1;
};

bool strace_works() { return std::system("strace -qq -o /dev/null true > /dev/null 2>&1") == 0; }

// The process whose parent is `parent` (strace's one child), or -1 when there is none yet.
pid_t child_of(pid_t parent) {
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    long long ppid = 0;
    if (rest >> state >> ppid && ppid == parent) return static_cast<pid_t>(std::stoll(name));
  }
  return -1;
}

HeldExport start_held_export(const std::string& inject, const std::string& args, const std::string& err) {
  const std::string bin = TRAINRR_BIN;
  // LeakSanitizer cannot run under a tracer (an AddressSanitizer build): the leak check is left out there.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string asan_options = std::string(asan ? std::string(asan) + ":" : "") + "detect_leaks=0";
  std::vector<std::string> words = {
      "strace",           "-f", "-qq", "-o", "/dev/null", "-E", "ASAN_OPTIONS=" + asan_options, "-e",
      "inject=" + inject, bin};
  std::istringstream in(args);
  for (std::string w; in >> w;) words.push_back(w);
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  HeldExport h;
  if (posix_spawnp(&h.strace, "strace", &actions, nullptr, argv.data(), environ) != 0) h.strace = -1;
  posix_spawn_file_actions_destroy(&actions);
  return h;
}

// Waits (up to 20 s) for a file under `parent` whose path matches `re`.
bool wait_for(const std::string& parent, const std::regex& re) {
  for (int i = 0; i < 2000; ++i) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(parent, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
      if (std::regex_search(it->path().string(), re)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

std::vector<std::string> names_in(const std::string& folder) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(folder))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// SIGINT or SIGTERM while an export is being written: the staging folder goes, an earlier export stays as it
// was, and the exit code says which signal (130, 143).
TEST_F(TraceCliTest, ExportInterruptedBySigintOrSigtermLeavesNothingBehind) {
  if (!strace_works()) GTEST_SKIP() << "strace is not installed or cannot trace here";
  TempDir out;
  const std::string ck = out.file("ck");
  ASSERT_EQ(run_trainrr("export " + trace_ + " --step 50 -o " + ck).exit_code, 0);
  const std::string manifest = read_file(out.file("ck/manifest.json"));
  TempDir logs;
  for (const auto& [sig, code, to] :
       {std::tuple{SIGINT, 130, ck}, std::tuple{SIGTERM, 143, out.file("new")}}) {
    const std::string err = logs.file("err-" + std::to_string(sig));
    HeldExport h =
        start_held_export("mkdir:delay_exit=2000000", "export " + trace_ + " --step 120 -o " + to, err);
    ASSERT_GT(h.strace, 0);
    ASSERT_TRUE(wait_for(out.path(), std::regex(R"(\.partial-[^/]+$)"))) << "no staging folder appeared";
    pid_t pid = -1;
    for (int i = 0; i < 500 && pid < 0; ++i, std::this_thread::sleep_for(std::chrono::milliseconds(10)))
      pid = child_of(h.strace);
    ASSERT_GT(pid, 0);
    kill(pid, sig);
    int status = 0;
    ASSERT_EQ(waitpid(h.strace, &status, 0), h.strace);
    const std::string said = read_file(err);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == code)
        << "ended with " << (WIFEXITED(status) ? "exit code " : "signal ")
        << (WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status)) << ": " << said;
    EXPECT_NE(said.find(std::string("trainrr: interrupted (") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                        "): nothing was exported"),
              std::string::npos)
        << said;
    EXPECT_EQ(names_in(out.path()), std::vector<std::string>{"ck"}) << said;
    EXPECT_EQ(read_file(out.file("ck/manifest.json")), manifest);
  }
}

// An export killed outright (SIGKILL) leaves its staging folder; the next export to the same folder removes
// it, as the process that wrote it is gone, and names any other DIR.partial-* it finds without touching it.
TEST_F(TraceCliTest, ExportRemovesTheStagingFolderOfAKilledExportAndNamesAnyOther) {
  if (!strace_works()) GTEST_SKIP() << "strace is not installed or cannot trace here";
  TempDir out;
  const std::string ck = out.file("ck");
  TempDir logs;
  const std::string err = logs.file("err");
  // Held just before the staging folder's marker is removed: every file is written.
  HeldExport h = start_held_export("unlink,unlinkat:delay_enter=3000000",
                                   "export " + trace_ + " --step 120 -o " + ck, err);
  ASSERT_GT(h.strace, 0);
  ASSERT_TRUE(wait_for(out.path(), std::regex(R"(ck\.partial-[^/]+/manifest\.json$)")));
  pid_t pid = -1;
  for (int i = 0; i < 500 && pid < 0; ++i, std::this_thread::sleep_for(std::chrono::milliseconds(10)))
    pid = child_of(h.strace);
  ASSERT_GT(pid, 0);
  kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(h.strace, &status, 0), h.strace);
  std::vector<std::string> left = names_in(out.path());
  ASSERT_EQ(left.size(), 1u);
  const std::string stale = left[0];
  ASSERT_EQ(stale.rfind("ck.partial-", 0), 0u) << stale;

  // Someone's own folder under a name like it is kept.
  std::filesystem::create_directory(out.file("ck.partial-mine"));
  write_file(out.file("ck.partial-mine/notes.txt"), "mine");
  const CommandResult next = run_trainrr("export " + trace_ + " --step 50 -o " + ck);
  EXPECT_EQ(next.exit_code, 0) << next.output;
  EXPECT_NE(next.output.find("note: removed " + out.file(stale) + ", which an export to " + ck +
                             " left when it was killed (process " + std::to_string(pid) + ")"),
            std::string::npos)
      << next.output;
  EXPECT_NE(next.output.find("note: " + out.file("ck.partial-mine") + " is beside " + ck +
                             " under the name of an "
                             "export's staging folder"),
            std::string::npos)
      << next.output;
  EXPECT_EQ(names_in(out.path()), (std::vector<std::string>{"ck", "ck.partial-mine"}));
  EXPECT_EQ(read_file(out.file("ck.partial-mine/notes.txt")), "mine");
  for (const std::string& name : names_in(ck))
    EXPECT_NE(name[0], '.') << name << ": an export holds no marker";
}

TEST_F(TraceCliTest, ExportStepZeroWritesTheInitialWeights) {
  // Every recording keeps the state before its first step: the weights a cross-check starts from.
  TempDir out;
  const CommandResult r = run_trainrr("export " + trace_ + " --step 0 -o " + out.file("ck"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("exported the checkpoint before step 0 (0 steps done"), std::string::npos) << r.output;
  auto reader = trace::TraceReader::open(trace_);
  ASSERT_TRUE(reader.ok());
  auto index = (*reader)->checkpoint_index();
  ASSERT_TRUE(index.ok());
  ASSERT_FALSE(index->empty());
  auto initial = (*reader)->read_checkpoint(index->front().offset);
  ASSERT_TRUE(initial.ok()) << initial.error().message;
  EXPECT_EQ(initial->step, 0);
  ASSERT_FALSE(initial->tensors.empty());
  for (const auto& t : initial->tensors) {
    if (t.name.find('/') != std::string::npos) continue;  // optimizer state: not a parameter file
    auto npy = read_npy(out.file("ck/" + t.name + ".npy"));
    ASSERT_TRUE(npy.ok()) << t.name;
    EXPECT_EQ(npy->data, t.value.data) << t.name;
  }
}

TEST_F(TraceCliTest, ExportWithoutACheckpointAtOrBeforeTheStepNamesTheStepsThatHaveOne) {
  // A trace without the initial state (written before it was kept, or with it removed here).
  TempDir out;
  const std::string older = out.file("older.trr");
  ASSERT_EQ(rewrite_trace(
                trace_, older, [](trace::TraceHeader&) {}, {},
                [](trace::TraceCheckpoint& cp) { return cp.step > 0; }),
            "");
  const CommandResult r = run_trainrr("export " + older + " --step 49 -o " + out.file("ck"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(older), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("50, 100, 150"), std::string::npos) << r.output;
}

TEST_F(TraceCliTest, CapnpDecodeReadsARealTraceWithTheShippedSchema) {
  if (std::system("command -v capnp > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "the capnp tool is not installed";
  const std::string schema = std::string(TRAINRR_SOURCE_DIR) + "/traces/trace.capnp";
  TempDir out;
  const std::string cmd =
      "capnp decode --packed " + schema + " Message < " + trace_ + " > " + out.file("decoded.txt") + " 2>&1";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << cmd;
  const std::string decoded = read_file(out.file("decoded.txt"));
  ASSERT_EQ(WEXITSTATUS(status), 0) << decoded.substr(0, 2000);
  EXPECT_NE(decoded.find("header = "), std::string::npos) << decoded.substr(0, 500);
  EXPECT_NE(decoded.find("footer = "), std::string::npos);
}

// --- hostile input through the command line ---

// show and dump on a damaged file: a clear error (2) or a clean partial read (0, said so), never a crash.
void expect_handled(const std::string& path, const std::string& what) {
  for (const char* verb : {"show", "dump", "dump --json"}) {
    const CommandResult r = run_trainrr(std::string(verb) + " " + path);
    EXPECT_LT(r.exit_code, 128) << what << ": " << verb << " crashed\n" << r.output.substr(0, 2000);
    EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 2) << what << ": " << verb << " exit " << r.exit_code;
    if (r.exit_code == 2) {
      EXPECT_NE(r.output.find(path), std::string::npos) << what << ": " << r.output.substr(0, 2000);
    }
    if (r.exit_code == 0 && verb == std::string("show")) {
      EXPECT_TRUE(r.output.find("\nended cleanly: ") != std::string::npos ||
                  r.output.find("\ndid not end cleanly: ") != std::string::npos)
          << what << ": " << r.output;
    }
  }
}

TEST_F(TraceCliTest, HostileNonTraceAndRandomBytesAreRefusedWithExitTwo) {
  TempDir d;
  const std::string text = d.write("notes.txt", "this is not a trace, just text\n");
  std::mt19937 rng(1234);
  std::string noise(4096, '\0');
  for (char& c : noise) c = static_cast<char>(rng());
  const std::string random = d.file("random.bin");
  write_file(random, noise);
  const std::string empty = d.write("empty.trr", "");
  for (const auto& f : {text, random, empty}) {
    for (const char* verb : {"show", "dump"}) {
      const CommandResult r = run_trainrr(std::string(verb) + " " + f);
      EXPECT_EQ(r.exit_code, 2) << verb << " " << f << ": " << r.output;
      EXPECT_NE(r.output.find(f), std::string::npos) << r.output;
    }
  }
  const CommandResult missing = run_trainrr("show " + d.file("absent.trr"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("absent.trr"), std::string::npos) << missing.output;
}

TEST_F(TraceCliTest, HostileTruncatedTraceIsAnErrorOrACleanPartialRead) {
  const std::string bytes = read_file(trace_);
  const TraceCounts c = count_trace(trace_);
  ASSERT_GT(bytes.size(), c.header_size + 64);
  TempDir d;
  const uint64_t h = c.header_size;
  for (uint64_t cut : {uint64_t{1}, uint64_t{7}, uint64_t{8}, uint64_t{20}, h - 1, h, h + 4, h + 8, h + 37,
                       bytes.size() / 3, bytes.size() / 2, bytes.size() - 9, bytes.size() - 1}) {
    const std::string f = d.file("cut-" + std::to_string(cut) + ".trr");
    write_file(f, bytes.substr(0, cut));
    expect_handled(f, "cut at " + std::to_string(cut));
    if (cut > h) {
      const CommandResult r = run_trainrr("show " + f);
      EXPECT_EQ(r.exit_code, 0) << "a cut after the header is a clean partial read: " << r.output;
      EXPECT_NE(r.output.find("did not end cleanly: "), std::string::npos) << r.output;
    }
  }
}

// A changed bit in the framing of a message (its segment table, its root pointer) can make what follows read
// as a message that runs past the end of the file. show and dump call that damage, with exit 2, never a cut.
TEST_F(TraceCliTest, AChangedBitInAMessagesFramingIsDamageNotACut) {
  const std::string bytes = read_file(trace_);
  const TraceCounts c = count_trace(trace_);
  ASSERT_GT(bytes.size(), c.header_size + 64);
  TempDir d;
  const std::string f = d.file("changed.trr");
  int checked = 0;
  for (uint64_t at = c.header_size; at < c.header_size + 6; ++at) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string changed = bytes;
      changed[at] = static_cast<char>(changed[at] ^ (1 << bit));
      write_file(f, changed);
      const CommandResult show = run_trainrr("show " + f);
      EXPECT_EQ(show.exit_code, 2) << "byte " << at << " bit " << bit << ": " << show.output;
      EXPECT_EQ(show.output.find("did not end cleanly"), std::string::npos)
          << "byte " << at << " bit " << bit << ": " << show.output;
      if (show.output.find("\ndamaged: ") == std::string::npos &&
          show.output.find("damaged, not cut") == std::string::npos)
        ADD_FAILURE() << "byte " << at << " bit " << bit << " not called damage: " << show.output;
      const CommandResult dump = run_trainrr("dump " + f);
      EXPECT_EQ(dump.exit_code, 2) << "byte " << at << " bit " << bit << ": " << dump.output.substr(0, 2000);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 48);
}

// replay, diff and bisect read a trace cut short as show does: its complete steps are compared, and a trace
// without one is refused rather than blamed on a cause or called identical.
TEST_F(TraceCliTest, ReplayDiffAndBisectAgreeOnATraceCutShort) {
  const std::string bytes = read_file(trace_);
  const CommandResult dump = run_trainrr("dump --json " + trace_);
  ASSERT_EQ(dump.exit_code, 0);
  auto offset_of_step = [&](int step) -> uint64_t {
    const auto m = first_match(dump.output, std::regex("\"type\":\"step\",\"step\":" + std::to_string(step) +
                                                       ",.*\"offset\":([0-9]+)"));
    EXPECT_EQ(m.size(), 2u) << "step " << step;
    return m.size() == 2 ? std::stoull(m[1]) : 0;
  };
  TempDir d;
  const std::string none = d.file("none.trr"), mid = d.file("mid.trr"), tail = d.file("tail.trr");
  write_file(none, bytes.substr(0, offset_of_step(0)));
  write_file(mid, bytes.substr(0, offset_of_step(5) + 30));
  write_file(tail, bytes.substr(0, bytes.size() - 9));
  for (const std::string& cmd : {"replay " + none, "diff " + none + " " + trace_, "bisect " + none}) {
    const CommandResult r = run_trainrr(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find("none.trr: the trace holds no complete step"), std::string::npos) << r.output;
  }
  // show says the epoch the cut fell in is unfinished (breast_cancer: 15 steps an epoch; steps 0..4 are
  // whole).
  const CommandResult show_mid = run_trainrr("show " + mid);
  EXPECT_NE(show_mid.output.find("steps: 5 in 1 epoch (1..1; epoch 1 unfinished)"), std::string::npos)
      << show_mid.output;
  const CommandResult replay_mid = run_trainrr("replay " + mid);
  EXPECT_EQ(replay_mid.exit_code, 0) << replay_mid.output;
  EXPECT_NE(replay_mid.output.find("truncated: the trace is cut short at byte "), std::string::npos)
      << replay_mid.output;
  EXPECT_NE(replay_mid.output.find(", after step 4 (a recording killed or cut there); the steps it holds "
                                   "reproduced bit for bit (5 steps compared)"),
            std::string::npos)
      << replay_mid.output;
  EXPECT_NE(replay_mid.output.find("note: the trace ends after step 4: reading stopped there"),
            std::string::npos)
      << replay_mid.output;
  EXPECT_EQ(run_trainrr("diff " + mid + " " + trace_).exit_code, 0);
  const CommandResult replay_tail = run_trainrr("replay " + tail);
  EXPECT_EQ(replay_tail.exit_code, 0) << replay_tail.output;
  // Every step is there, but not the final checkpoint and footer: cut all the same.
  EXPECT_EQ(replay_tail.output.rfind("truncated: the trace is cut short at byte ", 0), 0u)
      << replay_tail.output;
  const CommandResult replay_full = run_trainrr("replay " + trace_);
  EXPECT_EQ(replay_full.output.rfind("reproduced bit for bit", 0), 0u) << replay_full.output;
}

TEST_F(TraceCliTest, HostileHugeSegmentCountOrSizeAndBitFlipsNeverCrash) {
  const std::string bytes = read_file(trace_);
  const TraceCounts c = count_trace(trace_);
  TempDir d;
  // A message whose segment table starts with `count_minus_one` and `size` put at `at` (the header or the
  // first message after it), packed as the writer packs: a tag byte saying which bytes are nonzero, those
  // bytes, and for a tag of 0xff the count of verbatim words that follow (none here).
  auto patched = [&](uint64_t at, uint32_t count_minus_one, uint32_t size, const std::string& name) {
    uint8_t word[8];
    std::memcpy(word, &count_minus_one, 4);
    std::memcpy(word + 4, &size, 4);
    std::string head(1, '\0');
    for (int i = 0; i < 8; ++i)
      if (word[i]) head[0] = static_cast<char>(head[0] | (1 << i)), head.push_back(static_cast<char>(word[i]));
    if (static_cast<uint8_t>(head[0]) == 0xff) head.push_back('\0');
    const std::string f = d.file(name);
    write_file(f, bytes.substr(0, at) + head + bytes.substr(at));
    return f;
  };
  for (uint64_t at : {uint64_t{0}, c.header_size}) {
    const std::string count = patched(at, 0xFFFFFFF0u, 1, "count-" + std::to_string(at) + ".trr");
    for (const char* verb : {"show", "dump"}) {
      const CommandResult r = run_trainrr(std::string(verb) + " " + count);
      EXPECT_EQ(r.exit_code, 2) << verb << " huge segment count at " << at << ": "
                                << r.output.substr(0, 2000);
      EXPECT_NE(r.output.find("segments"), std::string::npos) << r.output.substr(0, 2000);
    }
    expect_handled(patched(at, 0, 0xFFFFFFF0u, "size-" + std::to_string(at) + ".trr"), "huge segment size");
  }
  std::mt19937 rng(99);
  for (int trial = 0; trial < 6; ++trial) {
    std::string b = bytes;
    for (int k = 0; k < 4; ++k) b[rng() % b.size()] ^= static_cast<char>(1u << (rng() % 8));
    const std::string f = d.file("flip-" + std::to_string(trial) + ".trr");
    write_file(f, b);
    expect_handled(f, "bit flips, trial " + std::to_string(trial));
  }
}

// --- standard output ---

TEST_F(TraceCliTest, AnOutputThatCannotBeWrittenIsExitTwoWithTheReason) {
  TempDir d;
  for (const std::string& args :
       {"dump --json " + trace_, "show " + trace_, "diff " + trace_ + " " + trace_, std::string("--help")}) {
    const CommandResult r = run_script("$T " + args + " >/dev/full", d.file("err"));
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.output;
    EXPECT_NE(r.output.find("trainrr: cannot write to standard output: No space left on device"),
              std::string::npos)
        << args << ": " << r.output;
  }
}

TEST(TraceCliPipeTest, AReaderThatStopsReadingNeitherKillsNorCutsARecording) {
  TempDir d;
  const std::string out = d.file("run.trr");
  // The run prints a line per epoch, long after `head` has taken its two lines and gone.
  const std::string script = "{ $T record " + example("breast_cancer.toml") + " --set train.epochs=40 -o " +
                             out + "; echo $? >" + d.file("rc") + "; } | head -2 >/dev/null";
  const CommandResult r = run_script(script, d.file("err"));
  EXPECT_EQ(read_file(d.file("rc")), "0\n") << r.output;
  EXPECT_EQ(r.output, "") << "a reader that stopped reading is no error";
  const CommandResult show = run_trainrr("show " + out);
  EXPECT_EQ(show.exit_code, 0) << show.output;
  EXPECT_NE(show.output.find("ended cleanly: the run completed"), std::string::npos) << show.output;
}

// --- crash ---

pid_t spawn_record(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  std::string bin = TRAINRR_BIN;
  argv.push_back(bin.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, bin.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

TEST(TraceCliCrashTest, KilledRecordingLeavesATraceShowOpensWithEveryCompletedStep) {
  TempDir d;
  const std::vector<std::string> base = {"record",
                                         example("digits_mlp.toml"),
                                         "--set",
                                         "train.epochs=50",
                                         "--level",
                                         "op",
                                         "--checkpoint-every",
                                         "20",
                                         "-o"};
  auto args_for = [&](const std::string& out) {
    auto a = base;
    a.push_back(out);
    return a;
  };
  {
    const pid_t pid = spawn_record(args_for(d.file("full.trr")));
    ASSERT_GT(pid, 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the uninterrupted recording must succeed";
  }
  const CommandResult full = run_trainrr("show " + d.file("full.trr"));
  ASSERT_EQ(full.exit_code, 0);
  ASSERT_NE(full.output.find("ended cleanly: the run completed"), std::string::npos) << full.output;
  const auto full_size = static_cast<double>(std::filesystem::file_size(d.file("full.trr")));

  // Each kill lands once the trace has grown past a size drawn over the whole recording: by the trace's
  // progress, not the clock, so that a machine's load moves no kill past the run's end.
  std::mt19937 rng(20240607);
  std::uniform_real_distribution<double> fraction(0.0, 0.9);
  const std::regex steps_re(R"(did not end cleanly: (\d+) complete steps? readable)");
  int killed = 0, partial = 0;
  for (int trial = 0; trial < 12; ++trial) {
    const std::string out = d.file("killed-" + std::to_string(trial) + ".trr");
    const double target = fraction(rng) * full_size;
    const pid_t pid = spawn_record(args_for(out));
    ASSERT_GT(pid, 0);
    int status = 0;
    pid_t waited = 0;
    for (;;) {
      std::error_code ec;
      const auto size = std::filesystem::file_size(out, ec);
      if (!ec && static_cast<double>(size) >= target) {
        kill(pid, SIGKILL);
        break;
      }
      if ((waited = waitpid(pid, &status, WNOHANG)) == pid) break;  // ended before its trace grew that far
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (waited != pid) {
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
    }
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) continue;  // finished before the kill
    ++killed;
    std::error_code ec;
    if (std::filesystem::file_size(out, ec) == 0 || ec) continue;  // killed before the header was written

    const CommandResult show = run_trainrr("show " + out);
    ASSERT_EQ(show.exit_code, 0) << "trial " << trial << " (at " << target << " bytes): " << show.output;
    // The kill can land after the footer is on disk, while the process exits (LeakSanitizer's check at exit
    // under ASan takes a while): the trace is then complete, which is right too.
    if (show.output.find("ended cleanly: the run completed") != std::string::npos) continue;
    const auto m = first_match(show.output, steps_re);
    ASSERT_EQ(m.size(), 2u) << "trial " << trial << ": " << show.output;
    const size_t steps = std::stoul(m[1]);
    ++partial;
    const CommandResult dump = run_trainrr("dump " + out);
    ASSERT_EQ(dump.exit_code, 0) << "trial " << trial << ": "
                                 << dump.output.substr(dump.output.size() > 2000 ? dump.output.size() - 2000
                                                                                 : 0);
    EXPECT_EQ(count_matching(dump.output, std::regex(R"(^step \d+ end )")), steps) << "trial " << trial;
    // The complete steps are the first ones, with none missing.
    if (steps > 0) {
      EXPECT_EQ(count_matching(dump.output, std::regex("^step " + std::to_string(steps - 1) + " end ")), 1u);
    }
  }
  EXPECT_GE(killed, 9) << "kills should land while recording";
  EXPECT_GE(partial, 6) << "most kills should leave a partial trace";
}

}  // namespace
}  // namespace trainrr::testing

namespace trainrr::testing {
namespace {

// A recording with one byte changed inside step `target`'s loss: packing keeps a word's nonzero bytes in
// order after a tag byte, so the loss's nonzero bytes lie in the file as a run. "" when they are too few to
// be found for sure.
std::string with_a_changed_loss(const std::string& trace, const std::string& out, int64_t target) {
  auto reader = trace::TraceReader::open(trace);
  if (!reader) return "";
  uint64_t from = 0, to = 0;
  double loss = 0;
  for (;;) {
    auto rec = (*reader)->next();
    if (!rec || !*rec) return "";
    if (auto* s = std::get_if<trace::TraceStep>(&(*rec)->value); s && s->index == target && s->end) {
      from = (*rec)->offset, to = (*rec)->offset + (*rec)->size, loss = s->end->loss;
      break;
    }
  }
  std::ifstream in(trace, std::ios::binary);
  std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  char raw[8];
  std::memcpy(raw, &loss, 8);
  std::vector<char> pattern;
  for (char c : raw)
    if (c != 0) pattern.push_back(c);
  if (pattern.size() < 4) return "";
  auto at = std::search(bytes.begin() + static_cast<int64_t>(from), bytes.begin() + static_cast<int64_t>(to),
                        pattern.begin(), pattern.end());
  if (at == bytes.begin() + static_cast<int64_t>(to)) return "";
  char& changed = at[static_cast<int64_t>(pattern.size() / 2)];
  changed = static_cast<char>(changed ^ 0x01);
  if (changed == 0) changed = 0x02;
  std::ofstream(out, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return out;
}

TEST(DamagedTrace, AChangedStepIsNotComparedAndEveryReaderSaysTheFileIsDamaged) {
  TempDir dir;
  const std::string trace = dir.file("run.trr");
  ASSERT_EQ(run_trainrr("record " + example("breast_cancer.toml") + " -o " + trace + " --set train.epochs=2")
                .exit_code,
            0);
  std::string damaged;
  int64_t step = 10;
  for (; step < 25 && damaged.empty(); ++step)
    damaged = with_a_changed_loss(trace, dir.file("damaged.trr"), step);
  --step;
  ASSERT_FALSE(damaged.empty()) << "no step's loss lies verbatim in the file";
  const std::string why = "was changed after it was written (the file is damaged, not cut)";

  // The steps before the changed one are compared; the changed one is not taken for a divergence, and the
  // report and the exit code say the trace is damaged.
  const CommandResult replay = run_trainrr("replay " + damaged);
  EXPECT_EQ(replay.exit_code, 2) << replay.output;
  EXPECT_EQ(replay.output.rfind("damaged: the trace was changed after it was written: reading stopped at byte ", 0),
            0u)
      << replay.output;
  EXPECT_NE(replay.output.find(", after step " + std::to_string(step - 1) +
                               "; the steps before it reproduced bit for bit (" + std::to_string(step) +
                               " steps compared)"),
            std::string::npos)
      << replay.output;
  EXPECT_NE(replay.output.find(why), std::string::npos) << replay.output;
  const CommandResult show = run_trainrr("show " + damaged);
  EXPECT_EQ(show.exit_code, 2) << show.output;
  EXPECT_NE(show.output.find(std::to_string(step) + " complete steps readable"), std::string::npos)
      << show.output;
  EXPECT_NE(show.output.find(why), std::string::npos) << show.output;
  const CommandResult diff = run_trainrr("diff " + trace + " " + damaged);
  EXPECT_EQ(diff.exit_code, 2) << diff.output;
  EXPECT_NE(diff.output.find("B ends first, after " + std::to_string(step) + " steps"), std::string::npos)
      << diff.output;
  EXPECT_NE(diff.output.find(why), std::string::npos) << diff.output;
  const CommandResult bisect = run_trainrr("bisect " + damaged);
  EXPECT_EQ(bisect.exit_code, 2) << bisect.output;
  EXPECT_NE(bisect.output.find(why), std::string::npos) << bisect.output;
}

TEST(DamagedTrace, AChangedHeaderIsRefusedByEveryReader) {
  TempDir dir;
  const std::string trace = dir.file("run.trr");
  ASSERT_EQ(run_trainrr("record " + example("breast_cancer.toml") + " -o " + trace + " --set train.epochs=1")
                .exit_code,
            0);
  // The configuration text lies in the header verbatim: change its learning rate.
  std::ifstream in(trace, std::ios::binary);
  std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const size_t at = bytes.find("learning_rate = 0.001");
  ASSERT_NE(at, std::string::npos);
  bytes[at + std::string("learning_rate = 0.00").size()] = '3';
  const std::string damaged = dir.file("damaged.trr");
  std::ofstream(damaged, std::ios::binary) << bytes;
  for (const std::string& command :
       {"show " + damaged, "replay " + damaged, "diff " + trace + " " + damaged}) {
    const CommandResult r = run_trainrr(command);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.output;
    EXPECT_NE(r.output.find("byte 0: this message, or the digest of it that the next message"),
              std::string::npos)
        << command << "\n"
        << r.output;
  }
  // A changed byte in the header's structure, so that it no longer decodes: damaged, in those words.
  bytes = std::string{std::istreambuf_iterator<char>(std::ifstream(trace, std::ios::binary).rdbuf()), {}};
  bytes[50] = static_cast<char>(bytes[50] ^ 0x01);
  std::ofstream(damaged, std::ios::binary | std::ios::trunc) << bytes;
  const CommandResult show = run_trainrr("show " + damaged);
  EXPECT_EQ(show.exit_code, 2) << show.output;
  EXPECT_NE(show.output.find(damaged + ": byte 0: the trace's header cannot be read ("), std::string::npos)
      << show.output;
  EXPECT_NE(show.output.find("): the file is damaged"), std::string::npos) << show.output;
}

}  // namespace
}  // namespace trainrr::testing
