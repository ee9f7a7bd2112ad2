// Data that differs is named as a cause only where it can have made the first difference: where both copies
// are at hand, the rows that differ are found once split and scaled as the run does, and the step that first
// reads one, from the run's schedule; a difference before that step, or in what is drawn before the first
// step while the copies hold as many rows of one shape, has another cause, which is named, with the data
// beside.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/random.h"
#include "test_util.h"
#include "traces/trace_reader.h"

namespace trainrr::testing {
namespace {

bool has(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// The breast-cancer model on one thread, deterministic kernels (the ordered loader), unscaled data.
std::string config(const std::string& data, const std::string& extra = "") {
  return "seed = 3\n[data]\npath = \"" + data +
         "\"\nlabel = \"benign\"\ntest_fraction = 0.2\nscale = \"none\"\n"
         "[[model.layers]]\ntype = \"Dense\"\nunits = 16\nactivation = \"relu\"\n"
         "[[model.layers]]\ntype = \"Dense\"\nunits = 1\nactivation = \"sigmoid\"\n"
         "[train]\nepochs = 1\nbatch_size = 32\nloss = \"binary_crossentropy\"\n" +
         extra + "[runtime]\nthreads = 1\npolicy = \"deterministic\"\n";
}

class DataReachAnswers : public ::testing::Test {
 protected:
  void SetUp() override {
    csv = dir.file("bc.csv");
    std::filesystem::copy_file(example("data/breast_cancer.csv"), csv);
    a = record("a", config(csv));
    // The row the run reads first in step 3: the fourth batch of the first epoch's order, through the split.
    auto reader = trace::TraceReader::open(a, trace::without_payloads());
    ASSERT_TRUE(reader.ok());
    std::vector<uint32_t> train, order;
    while (order.empty()) {
      auto rec = (*reader)->next();
      ASSERT_TRUE(rec && *rec);
      if (const auto* s = std::get_if<trace::TraceStep>(&(*rec)->value))
        for (const auto& e : s->events) {
          if (const auto* split = std::get_if<trace::SplitEvent>(&e)) train = split->train;
          if (const auto* sh = std::get_if<trace::ShuffleEvent>(&e); sh && sh->draw) {
            std::vector<uint32_t> words(sh->draw->count);
            philox_words(sh->draw->key, sh->draw->counter, words);
            permutation_from_words(words, order, static_cast<uint32_t>(sh->length));
          }
        }
    }
    ASSERT_GT(order.size(), 3u * 32u);
    row = train.at(order[3 * 32]);
  }

  std::string record(const std::string& name, const std::string& text, const std::string& env = "",
                     const std::string& extra = "") {
    const std::string trace = dir.file(name + ".trr");
    const CommandResult r = run_trainrr_env(
        env, "record " + dir.write(name + ".toml", text) + " -o " + trace + " --level op" + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return trace;
  }

  // A copy of the data with `row`'s first value, or its label (the last column), changed.
  std::string changed(const std::string& name, bool label) {
    std::ifstream in(csv, std::ios::binary);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    std::string& l = lines.at(row + 1);  // the header is line 0
    if (label) {
      const size_t comma = l.rfind(',');
      l = l.substr(0, comma + 1) + (l.substr(comma + 1) == "0" ? "1" : "0");
    } else {
      l = "99.5" + l.substr(l.find(','));
    }
    std::string text;
    for (const std::string& line : lines) text += line + "\n";
    return dir.write(name, text);
  }

  TempDir dir;
  std::string csv, a;
  uint32_t row = 0;
};

TEST_F(DataReachAnswers, AChangedRowIsNamedAtTheStepThatFirstReadsIt) {
  const std::string b = record("b", config(changed("changed.csv", false)));
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(first_line(r.output), "diverged at step 3, forward, dense_1 matmul.fwd (dense_1/matmul.fwd:out)")
      << r.output;
  EXPECT_TRUE(has(r.output, "  cause: data: ")) << r.output;
  EXPECT_TRUE(has(r.output, "; step 3 is the first to read a training row that differs (data row " +
                                std::to_string(row) + " (counting from 0), line " + std::to_string(row + 2) +
                                " of the file)"))
      << r.output;
  EXPECT_FALSE(has(r.output, "before any step runs")) << r.output;
}

// Another instruction set makes step 0 differ at the matmul; the changed row is first read at step 3.
TEST_F(DataReachAnswers, AKernelDifferenceBeforeTheRowIsReadIsTheCauseInDiffAndReplay) {
  const std::string data = changed("changed.csv", false);
  const std::string b = record("b", config(data), "TRAINRR_ISA=generic");
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(first_line(r.output), "diverged at step 0, forward, dense_1 matmul.fwd (dense_1/matmul.fwd:out)")
      << r.output;
  EXPECT_TRUE(has(r.output, "  cause: kernel: a different kernel ran at dense_1/matmul.fwd")) << r.output;
  EXPECT_TRUE(has(r.output,
                  "the data differs too, but cannot have made this difference (step 3 is the first "
                  "to read a training row that differs"))
      << r.output;

  const CommandResult replay =
      run_trainrr_env("TRAINRR_ISA=generic", "replay " + a + " --data " + data + " --allow-data-change");
  ASSERT_EQ(replay.exit_code, 1) << replay.output;
  EXPECT_TRUE(has(replay.output, "  cause: kernel: a different kernel ran at dense_1/matmul.fwd"))
      << replay.output;
  EXPECT_TRUE(has(replay.output, "the data differs too, but cannot have made this difference"))
      << replay.output;
}

// Only the label differs: no layer's forward pass reads it, whatever file holds it.
TEST_F(DataReachAnswers, ALabelThatDiffersIsNotBlamedForALayersForwardPass) {
  const std::string b = record("b", config(changed("label.csv", true)), "TRAINRR_ISA=generic");
  const CommandResult r = run_trainrr("diff " + a + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "  cause: kernel: ")) << r.output;
  EXPECT_TRUE(has(r.output, "the data differs too, but cannot have made this difference")) << r.output;

  const std::string c = record("c", config(dir.file("label.csv")));
  const CommandResult alone = run_trainrr("diff " + a + " " + c);
  EXPECT_EQ(first_line(alone.output), "diverged at step 3, forward, loss") << alone.output;
  EXPECT_TRUE(has(alone.output, "  cause: data: ")) << alone.output;
}

// A configuration difference that changes what is drawn before the first step, or the input pipeline, is the
// cause: the two copies hold as many rows, of one shape.
TEST_F(DataReachAnswers, AConfigurationDifferenceBeforeTheFirstStepIsTheCauseBesideChangedData) {
  const std::string data = changed("changed.csv", false);
  std::string units = config(data);
  units.replace(units.find("units = 16"), 10, "units = 8");
  const CommandResult r = run_trainrr("diff " + a + " " + record("units", units));
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(first_line(r.output), "diverged at step 0, setup, dense_1 init (init/dense_1.kernel)")
      << r.output;
  EXPECT_TRUE(has(r.output,
                  "  cause: config: the run configuration differs: model.layers[0].units: 16 -> 8; the "
                  "data differs too, but cannot have made this difference (the two copies of the data "
                  "hold as many rows, of one shape"))
      << r.output;

  const CommandResult s =
      run_trainrr("diff " + a + " " + record("noshuffle", config(data, "shuffle = false\n")));
  ASSERT_EQ(s.exit_code, 1) << s.output;
  EXPECT_TRUE(has(s.output,
                  "  cause: config: the run configuration differs: train.shuffle: true -> false; the "
                  "data differs too, but cannot have made this difference"))
      << s.output;
}

// A replay that stops before the row is read says so, rather than that the training reads none of it.
TEST_F(DataReachAnswers, AReplayThatStopsBeforeTheRowIsReadSaysWhereItIsRead) {
  const std::string data = changed("changed.csv", false);
  const CommandResult r = run_trainrr("replay " + a + " --data " + data + " --allow-data-change --to-step 3");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "  cause: data: ")) << r.output;
  EXPECT_TRUE(has(r.output,
                  "no value of any step compared differs: no step up to step 2 reads a training row "
                  "that differs\n"))
      << r.output;
}

// A replay resumed from a checkpoint inside an epoch takes that epoch's order from the checkpoint: the row
// read at step 3 is not read by step 2, where another activation of the first layer first makes a difference.
TEST_F(DataReachAnswers, AReplayResumedInsideAnEpochKnowsWhereTheRowIsRead) {
  const std::string b = record("every", config(csv), "", " --checkpoint-every 2");
  const CommandResult r =
      run_trainrr("replay " + b + " --data " + changed("changed.csv", false) +
                  " --allow-data-change --from-step 2 --set model.layers[0].activation=tanh");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output.rfind("diverged at step 2, forward, dense_1 ", 0), 0u) << r.output;
  EXPECT_TRUE(has(r.output,
                  "  cause: config: the run configuration differs: model.layers[0].activation: relu -> tanh"))
      << r.output;
  EXPECT_TRUE(has(r.output,
                  "the data differs too, but cannot have made this difference (no step from step 2 to "
                  "step 2 reads a training row that differs"))
      << r.output;
}

// Standardized, one changed training row moves the scaler's statistics, and every row differs once scaled:
// the row first read is named as one that differs only once scaled, with the row whose values changed.
TEST_F(DataReachAnswers, AStandardizedRunNamesTheChangedRowBesideTheScaledRowFirstRead) {
  std::string standardize = config(csv);
  standardize.replace(standardize.find("scale = \"none\""), 14, "scale = \"standardize\"");
  const std::string base = record("std_a", standardize);
  std::string changed_text = standardize;
  changed_text.replace(changed_text.find(csv), csv.size(), changed("changed.csv", false));
  const CommandResult r = run_trainrr("diff " + base + " " + record("std_b", changed_text));
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(
      has(r.output, "; step 0 is the first to read a training row that differs once scaled (data row "))
      << r.output;
  EXPECT_TRUE(has(r.output,
                  ", the same in both copies of the data: the scaler (data.scale), fit on the training "
                  "rows, carries the change of data row " +
                      std::to_string(row) + " (counting from 0), line " + std::to_string(row + 2) +
                      " of the file into every row)"))
      << r.output;
}

// Where one side standardizes and the other does not, the changed row is carried into every row by the one
// side's scaler: the data reaches step 0 under it, whichever side of diff that is. Weighed under one side's
// scaler alone, diff named the data in one order and called it unable to make the difference in the other.
TEST_F(DataReachAnswers, AScalerOfOneSideIsWeighedWhicheverSideItIs) {
  std::string standardize = config(changed("changed.csv", false));
  standardize.replace(standardize.find("scale = \"none\""), 14, "scale = \"standardize\"");
  const std::string b = record("std_b", standardize);
  for (const std::string& command : {"diff " + a + " " + b, "diff " + b + " " + a}) {
    const CommandResult r = run_trainrr(command);
    ASSERT_EQ(r.exit_code, 1) << command << "\n" << r.output;
    EXPECT_TRUE(has(r.output, "  cause: data: ")) << command << "\n" << r.output;
    EXPECT_TRUE(
        has(r.output, "; step 0 is the first to read a training row that differs once scaled (data row "))
        << command << "\n"
        << r.output;
    EXPECT_TRUE(has(r.output, "; the run configuration differs too: data.scale: ")) << command << "\n"
                                                                                    << r.output;
    EXPECT_FALSE(has(r.output, "cannot have made this difference")) << command << "\n" << r.output;
  }
}

// A dropout mask's draw of another size (another batch size) is the batch size's doing, not the data's, even
// where the changed row is read in that very step: no draw reads what a row holds.
TEST_F(DataReachAnswers, ADrawOfAnotherSizeIsNotBlamedOnARowReadInItsStep) {
  std::string dropout = config(csv);
  const std::string last = "[[model.layers]]\ntype = \"Dense\"\nunits = 1";
  dropout.replace(dropout.find(last), last.size(),
                  "[[model.layers]]\ntype = \"Dropout\"\nrate = 0.2\n" + last);
  const std::string trace = dir.file("dropout.trr");
  ASSERT_EQ(run_trainrr("record " + dir.write("dropout.toml", dropout) + " -o " + trace).exit_code, 0);
  // With batches of 128 rows, step 0 reads the row the recording read first at step 3 (the 97th of the
  // order).
  const CommandResult r = run_trainrr("replay " + trace + " --data " + changed("changed.csv", false) +
                                      " --allow-data-change --set train.batch_size=128");
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(first_line(r.output), "diverged at step 0, forward, dropout_1 dropout (dropout/dropout_1)")
      << r.output;
  EXPECT_TRUE(has(r.output,
                  "  cause: config: the run configuration differs: train.batch_size: 32 -> 128; the data "
                  "differs too, but cannot have made this difference (the two copies of the data hold as "
                  "many rows, of one shape, and no draw reads what a row holds"))
      << r.output;
}

// Arrays are told by row and element, counted from 0 as numpy indexes them, and their rows likewise.
TEST_F(DataReachAnswers, ArraysThatDifferAreToldByRowAndElementFromZero) {
  // The CSV's features and labels as two .npy files (float32, C order), row `row` changed in the second copy.
  auto npy = [&](const std::string& name, const std::vector<float>& values, std::vector<int64_t> shape) {
    std::string dims;
    for (int64_t d : shape) dims += std::to_string(d) + ",";
    if (shape.size() > 1) dims.pop_back();
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string bytes = "\x93NUMPY";
    bytes += '\x01';
    bytes += '\x00';
    bytes += static_cast<char>(header.size() & 0xff);
    bytes += static_cast<char>(header.size() >> 8);
    bytes += header;
    bytes.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
    return dir.write(name, bytes);
  };
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // the header
  std::vector<float> x, y;
  int64_t rows = 0, cols = 0;
  for (; std::getline(in, line); ++rows) {
    std::vector<float> values;
    for (size_t at = 0; at != std::string::npos;) {
      const size_t comma = line.find(',', at);
      values.push_back(std::stof(line.substr(at, comma == std::string::npos ? comma : comma - at)));
      at = comma == std::string::npos ? comma : comma + 1;
    }
    cols = static_cast<int64_t>(values.size()) - 1;
    y.push_back(values.back());
    x.insert(x.end(), values.begin(), values.end() - 1);
  }
  const std::string y_path = npy("y.npy", y, {rows});
  auto npy_config = [&](const std::string& x_path) {
    std::string text = config(x_path);
    text.replace(text.find("label = \"benign\""), 16, "labels = \"" + y_path + "\"");
    return text;
  };
  const std::string base = record("npy_a", npy_config(npy("x.npy", x, {rows, cols})), "", " --embed-data");
  x[row * cols + 2] += 1.5f;
  const std::string b = record("npy_b", npy_config(npy("x2.npy", x, {rows, cols})), "", " --embed-data");
  const CommandResult r = run_trainrr("diff " + base + " " + b);
  ASSERT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(has(r.output, "; first difference at row " + std::to_string(row) +
                                ", element 2 of the row (counting from 0): "))
      << r.output;
  EXPECT_TRUE(has(r.output, "; step 3 is the first to read a training row that differs (row " +
                                std::to_string(row) + " (counting from 0))"))
      << r.output;
}

}  // namespace
}  // namespace trainrr::testing
