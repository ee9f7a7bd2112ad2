// Bad input gets one clear message and exit code 2: never a crash, never a silent default.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "engine/data/npy.h"
#include "replayer/report_file.h"
#include "tests/test_util.h"

namespace trainrr::testing {
namespace {

const char* kModel = R"(
[[model.layers]]
type = "Dense"
units = 4
activation = "relu"

[[model.layers]]
type = "Dense"
units = 1
activation = "sigmoid"

[train]
epochs = 1
batch_size = 2
loss = "binary_crossentropy"
)";

class BadInput : public ::testing::Test {
 protected:
  // A valid run over `csv`, with `extra` appended (later keys of a table must not repeat earlier ones).
  std::string config(const std::string& csv_name, const std::string& top = "", const std::string& extra = "") {
    return dir.write("run.toml", "seed = 1\n" + top + "[data]\npath = \"" + csv_name + "\"\nlabel = \"y\"\n" +
                                     std::string(kModel) + extra);
  }
  void expect_error(const std::string& args, const std::string& expected) {
    CommandResult r = run_trainrr(args);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(expected), std::string::npos) << "expected '" << expected << "' in:\n" << r.output;
    EXPECT_EQ(r.output.find("internal check failed"), std::string::npos) << r.output;
  }
  TempDir dir;
  const std::string good_csv = "a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n";
};

TEST_F(BadInput, ValidRunTrains) {
  dir.write("d.csv", good_csv);
  CommandResult r = run_trainrr("train " + config("d.csv"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// [distributed] sets up a data-parallel run, which mpirun starts: one process records, and says it does not
// use it, rather than leave the user to think the batch was sharded.
TEST_F(BadInput, DistributedSettingsOfAOneProcessRecordingAreSaidToBeUnused) {
  dir.write("d.csv", good_csv);
  const std::string cfg = config("d.csv", "", "[distributed]\nshards = 2\n");
  CommandResult r = run_trainrr("record " + cfg + " -o " + dir.file("one.trr"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(
      r.output.find("note: " + cfg +
                    ": [distributed] (shards = 2) sets up a data-parallel run, which "
                    "mpirun starts; this run is one process, which takes each batch whole, and does not "
                    "use it"),
      std::string::npos)
      << r.output;
  CommandResult plain = run_trainrr("record " + config("d.csv") + " -o " + dir.file("two.trr"));
  EXPECT_EQ(plain.output.find("[distributed]"), std::string::npos) << plain.output;
}

TEST_F(BadInput, MissingConfigFileIsNamed) {
  expect_error("train " + dir.file("nope.toml"), dir.file("nope.toml") + ": cannot open");
}

TEST_F(BadInput, ConfigurationThatIsAFolderOrEmptyIsRefusedAsSuch) {
  expect_error("train " + dir.path().string(),
               dir.path().string() + ": not a regular file (it is a directory)");
  expect_error("record " + dir.path().string() + " -o " + dir.file("r.trr"), "not a regular file");
  expect_error("train " + dir.write("empty.toml", ""), "empty.toml: the configuration is empty");
  expect_error("train " + dir.write("blank.toml", "\n  \n"), "blank.toml: the configuration is empty");
}

// Each mistake is named by the key that makes it, where the file or --set gave it: an unknown data source
// (not a key it would read), a value inside a table --set gave, an empty label, a test split that leaves no
// training rows, a layer that does not fit its input, a reshape past any size, a relative path from --set.
TEST_F(BadInput, EachMistakeNamesTheKeyThatMakesIt) {
  dir.write("d.csv", good_csv);
  const std::string run = config("d.csv");
  expect_error("train " + run + " --set data.source=CSV",
               "run.toml (--set): data.source: unknown data source 'CSV' (did you mean 'csv'?)");
  expect_error("train " + run + " --set 'train={epochs=0,loss=\"mse\"}'",
               "run.toml (--set): train.epochs must be at least 1, got 0");
  expect_error("train " + run + " --set 'data.label=\"\"'", "run.toml (--set): data.label is empty");
  expect_error("train " + run + " --set data.test_fraction=0.9",
               "run.toml: data.test_fraction = 0.9 of the 4 rows of " + dir.file("d.csv") +
                   " leaves no training rows");
  expect_error("train " + run + " --set 'model.layers[0]={type=\"Conv2D\",filters=2,kernel_size=3}'",
               "run.toml: layer shapes do not fit at model.layers[0]: conv2d_1");
  expect_error("train " + run + " --set 'data.reshape=[4611686018427387920, 4]'",
               "run.toml: data.reshape (4611686018427387920, 4) holds more values than a sample can");
  expect_error("train " + run + " --set train.optimizer.learning_rate=.001",
               "train.optimizer.learning_rate must be a number, got a string (\".001\")");
  expect_error("train " + run + " --set data.path=elsewhere/d.csv",
               "(a relative path given with --set resolves against the configuration's folder, " +
                   dir.path().string());
}

TEST_F(BadInput, MissingDataFileIsNamed) {
  expect_error("train " + config("absent.csv"), "absent.csv");
}

TEST_F(BadInput, RaggedCsvRowGivesFileLineColumn) {
  dir.write("d.csv", "a,b,y\n1,2,0\n3,4\n");
  expect_error("train " + config("d.csv"), "d.csv:3:");
}

TEST_F(BadInput, NonNumberGivesFileLineColumn) {
  dir.write("d.csv", "a,b,y\n1,2,0\n3,x7,1\n");
  expect_error("train " + config("d.csv"), "d.csv:3:3");
}

TEST_F(BadInput, MissingValueInCsvGivesFileLineColumn) {
  dir.write("d.csv", "a,b,y\n1,2,0\n3,nan,1\n5,6,0\n");
  expect_error("train " + config("d.csv"),
               "d.csv:3:3: column \"b\": expected a finite number, found \"nan\"");
  dir.write("e.csv", "a,b,y\n1,2,0\n3,4,1\n-inf,6,0\n");
  expect_error("train " + config("e.csv"),
               "e.csv:4:1: column \"a\": expected a finite number, found \"-inf\"");
}

TEST_F(BadInput, MissingValueInNpyNamesFileAndRow) {
  Tensor x({4, 2}, 1.0f);
  x[5] = std::numeric_limits<float>::quiet_NaN();  // row 2
  ASSERT_TRUE(write_npy(dir.file("x.npy"), x).ok());
  ASSERT_TRUE(write_npy(dir.file("y.npy"), Tensor({4}, 0.0f)).ok());
  const std::string path =
      dir.write("n.toml", "seed = 1\n[data]\npath = \"x.npy\"\nlabels = \"y.npy\"\n" + std::string(kModel));
  expect_error("train " + path, dir.file("x.npy") + ": row 2 holds nan");
}

TEST_F(BadInput, EmptyDataSet) {
  dir.write("d.csv", "a,b,y\n");
  expect_error("train " + config("d.csv"), "empty");
}

TEST_F(BadInput, UnknownKeyNamesKeyAndLine) {
  dir.write("d.csv", good_csv);
  expect_error("train " + config("d.csv", "", "epoch = 3\n"), "unknown key 'train.epoch'");
  expect_error("train " + config("d.csv", "", "epoch = 3\n"), "run.toml:20:");
}

// A layer's name is printed in the model's summary: one that would clear the screen or print a line of its
// own is refused, the key named and the name shown escaped.
TEST_F(BadInput, ALayerNameWithControlCharactersIsRefusedAndNeverPrintedRaw) {
  dir.write("d.csv", good_csv);
  for (const std::string& name : {std::string("\\u001b[2J"), std::string("x\\r\\nended cleanly")}) {
    std::string text = "seed = 1\n[data]\npath = \"d.csv\"\nlabel = \"y\"\n" + std::string(kModel);
    text.insert(text.find("units = 4"), "name = \"" + name + "\"\n");
    const std::string path = dir.write("run.toml", text);
    for (const std::string& args : {"train " + path, "record " + path + " -o " + dir.file("run.trr")}) {
      CommandResult r = run_trainrr(args);
      EXPECT_EQ(r.exit_code, 2) << r.output;
      EXPECT_NE(r.output.find("run.toml:8: model.layers[0].name must be text without control characters"),
                std::string::npos)
          << r.output;
      EXPECT_EQ(r.output.find('\x1b'), std::string::npos) << r.output;
      EXPECT_EQ(r.output.find('\r'), std::string::npos) << r.output;
      EXPECT_EQ(r.output.find("model:"), std::string::npos) << r.output;
    }
  }
}

TEST_F(BadInput, UnknownTableMadeBySetSaysSetNotALine) {
  dir.write("d.csv", good_csv);
  expect_error("train " + config("d.csv") + " --set train.runtime.threads=1", "(--set): unknown key 'train.runtime'");
}

TEST_F(BadInput, WrongTypeNamesKeyAndLine) {
  dir.write("d.csv", good_csv);
  expect_error("train " + config("d.csv") + " --set train.epochs='\"three\"'", "train.epochs must be an integer");
  const std::string path = dir.write("t.toml", "seed = \"x\"\n");
  expect_error("train " + path, "t.toml:1: seed");
}

TEST_F(BadInput, MissingLabelColumnListsColumns) {
  dir.write("d.csv", good_csv);
  expect_error("train " + config("d.csv") + " --set data.label=target", "target");
}

TEST_F(BadInput, ZeroBatchSize) {
  dir.write("d.csv", good_csv);
  expect_error("train " + config("d.csv") + " --set train.batch_size=0", "train.batch_size must be at least 1");
}

TEST_F(BadInput, NegativeLearningRate) {
  dir.write("d.csv", good_csv);
  expect_error("train " + config("d.csv", "", "[train.optimizer]\nlearning_rate = -0.1\n"),
               "train.optimizer.learning_rate must be positive");
}

TEST_F(BadInput, InfiniteOrNaNNumberNamesKeyAndLine) {
  dir.write("d.csv", good_csv);
  const std::string path = config("d.csv", "", "[train.optimizer]\nlearning_rate = inf\n");
  expect_error("train " + path,
               "run.toml:21: train.optimizer.learning_rate must be a finite number, got inf");
  expect_error("train " + config("d.csv") + " --set train.optimizer.beta_1=nan",
               "(--set): train.optimizer.beta_1 must be a finite number, got nan");
}

TEST_F(BadInput, OptimizerCoefficientsOutOfRange) {
  dir.write("d.csv", good_csv);
  const std::string path = config("d.csv");
  expect_error("train " + path + " --set train.optimizer.beta_1=1",
               "train.optimizer.beta_1 must be in [0, 1)");
  expect_error("train " + path + " --set train.optimizer.beta_2=-0.5",
               "train.optimizer.beta_2 must be in [0, 1)");
  expect_error("train " + path + " --set train.optimizer.type='rmsprop' --set train.optimizer.rho=1.5",
               "train.optimizer.rho must be in [0, 1)");
  expect_error("train " + path + " --set train.optimizer.type='adamw' --set train.optimizer.weight_decay=-1",
               "train.optimizer.weight_decay must not be negative");
}

TEST_F(BadInput, IntegerOutOfRangeIsNotWrapped) {
  dir.write("d.csv", good_csv);
  expect_error("train " + config("d.csv") + " --set train.epochs=4294967297", "train.epochs is out of range");
}

TEST_F(BadInput, ModelTooLargeForMemoryNamesTheLayer) {
  dir.write("d.csv", good_csv);
  // 2 x 10^15 floats: no machine's memory holds them, so they are refused before any allocation.
  expect_error("train " + config("d.csv") + " --set 'model.layers=[{type=\"Dense\",units=1000000000000000}]'",
               "dense_1: its parameters for input shape (2,) do not fit in this machine's memory");
}

TEST_F(BadInput, ModelPastAnElementCountNamesTheLayer) {
  dir.write("d.csv", good_csv);
  expect_error(
      "train " + config("d.csv") +
          " --set 'model.layers=[{type=\"Dense\",units=8000000000000000000},{type=\"Dense\",units=1}]'",
      "dense_1: its parameters for input shape (2,) are too large");
}

TEST_F(BadInput, SyntheticDataTooLargeIsRefused) {
  const std::string path = dir.write("s.toml",
                                     "seed = 1\n[data]\nsource = \"synthetic\"\nshape = [784]\n"
                                     "classes = 10\nsamples = 100000000000000000\n" +
                                         std::string(kModel));
  expect_error("train " + path, "data.samples times the sample shape is too many values");
}

// A model whose layer outputs for a batch take more memory than the process can have is refused before the
// first step, naming the largest and the limit, and records no trace.
TEST_F(BadInput, AModelLargerThanTheMemoryLeftIsRefusedBeforeItsFirstStep) {
  if (TRAINRR_ASAN) GTEST_SKIP() << "AddressSanitizer reserves more address space than ulimit -v leaves";
  // 128 images of 256 x 256, half of them held out: 32 MiB of data, and a batch of the 64 training rows
  // (train.batch_size asks for 128); Conv2D's output for it, 64 x 256 x 256 x 64 values, is 1 GiB.
  const std::string path = dir.write("big.toml", R"(seed = 1
[data]
source = "synthetic"
shape = [256, 256, 1]
classes = 2
samples = 128
test_fraction = 0.5
[[model.layers]]
type = "Conv2D"
filters = 64
kernel_size = 3
padding = "same"
[[model.layers]]
type = "Flatten"
[[model.layers]]
type = "Dense"
units = 2
activation = "softmax"
[train]
epochs = 1
batch_size = 128
loss = "sparse_categorical_crossentropy"
)");
  const std::string trace = (dir.path() / "big.trr").string();
  CommandResult r = run_trainrr_env("ulimit -v 900000;", "record " + path + " -o " + trace);
  EXPECT_EQ(r.exit_code, 3) << r.output;  // cannot run here: this machine, not the input
  for (const char* part :
       {"the model's tensors for a batch of 64 take at least ",
        " MiB (the largest, conv2d_1's output: 64 samples of shape (256, 256, 64))",
        "(the address-space limit (ulimit -v)): a smaller train.batch_size, data shape or model"})
    EXPECT_NE(r.output.find(part), std::string::npos) << part << " in:\n" << r.output;
  EXPECT_FALSE(std::filesystem::exists(trace));
}

// Under an address-space limit, a recording of many threads ends (refused or recorded), never hangs:
// OpenBLAS, which a run of the default policy does not call, is not made to start a thread (and a buffer of
// 128 MiB) for each as the environment is captured.
TEST_F(BadInput, ManyThreadsUnderAMemoryLimitEndTheRunInsteadOfHangingIt) {
  if (TRAINRR_ASAN) GTEST_SKIP() << "AddressSanitizer reserves more address space than ulimit -v leaves";
  for (const char* threads : {"32", "1024"}) {
    CommandResult r = run_trainrr_env("ulimit -v 3000000; timeout -s KILL 120",
                                      "record " + example("digits_mlp.toml") +
                                          " --set train.epochs=1 --set runtime.threads=" + threads + " -o " +
                                          (dir.path() / (std::string("t") + threads + ".trr")).string());
    EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 2) << threads << ": exit " << r.exit_code << "\n"
                                                      << r.output;
    if (r.exit_code == 2) {
      EXPECT_NE(r.output.find(std::string("cannot start ") + threads + " threads here"), std::string::npos)
          << r.output;
    }
  }
}

TEST_F(BadInput, LayersThatDoNotFitNameLayersAndShapes) {
  dir.write("d.csv", good_csv);
  const std::string path = dir.write("c.toml", R"(seed = 1
[data]
path = "d.csv"
label = "y"
[[model.layers]]
type = "Conv2D"
filters = 2
kernel_size = 3
[train]
loss = "binary_crossentropy"
)");
  expect_error("train " + path, "conv2d_1");
  expect_error("train " + path, "(2,)");
}

// Labels the loss or the split cannot use stopped the run with an internal check (exit 134) mid-training,
// or trained silently to a negative loss.
TEST_F(BadInput, LabelsTheLossCannotUseNameFileAndRow) {
  dir.write("d.csv", "a,b,y\n1,2,0\n3,4,1\n5,6,2\n7,8,1\n");
  expect_error("train " + config("d.csv"), dir.file("d.csv") +
                                               ": the label (column \"y\") of data row 2 (counting from 0; "
                                               "line 4 of the file) is 2: binary_crossentropy needs "
                                               "labels in [0, 1]");
  // A blank line holds no row: the row is named by the line that holds it.
  dir.write("blank.csv", "a,b,y\n1,2,0\n\n3,4,1\n5,6,2\n7,8,1\n");
  expect_error("train " + config("blank.csv"), "of data row 2 (counting from 0; line 5 of the file) is 2");
  dir.write("e.csv", "a,b,y\n1,2,0\n3,4,1\n5,6,-1\n7,8,1\n");
  const std::string scce =
      " --set 'model.layers[1]={type=\"Dense\",units=2}' "
      "--set train.loss=sparse_categorical_crossentropy --set train.from_logits=true";
  expect_error("train " + config("e.csv") + scce,
               "of data row 2 (counting from 0; line 4 of the file) is -1: sparse_categorical_crossentropy "
               "needs class indices");
  dir.write("f.csv", "a,b,y\n1,2,0\n3,4,1.5\n5,6,0\n7,8,1\n");
  expect_error("train " + config("f.csv") + scce,
               "of data row 1 (counting from 0; line 3 of the file) is 1.5: sparse_categorical_crossentropy");
  // Too few scores for labels that count from 0: no word about counting from 1.
  dir.write("h.csv", good_csv);
  const CommandResult narrow =
      run_trainrr("train " + config("h.csv") + " --set train.loss=sparse_categorical_crossentropy");
  EXPECT_EQ(narrow.exit_code, 2) << narrow.output;
  EXPECT_NE(narrow.output.find("outputs 1 value per sample (one score per class) but the labels go up to 1"),
            std::string::npos)
      << narrow.output;
  EXPECT_EQ(narrow.output.find("count from 1"), std::string::npos) << narrow.output;
  // A label float32 cannot hold as it is (2^24 + 1) is named as it was read, and not as a fraction or below
  // 0.
  dir.write("i.csv", "a,b,y\n1,2,1\n3,4,16777217\n5,6,0\n");
  expect_error(
      "train " + config("i.csv") + scce,
      "of data row 1 (counting from 0; line 3 of the file) is 16777216 as float32, too large for a class "
      "index: sparse_categorical_crossentropy needs class indices, integers from 0 below the model's "
      "outputs (and below 16777216)");
  // Labels counted from 1: the message says so.
  dir.write("g.csv", "a,b,y\n1,2,1\n3,4,2\n5,6,1\n7,8,2\n");
  expect_error("train " + config("g.csv") + scce,
               "the labels go up to 2, 3 classes counting from 0 (no label is 0: if the labels count from 1, "
               "subtract 1");
}

TEST_F(BadInput, StratifyNeedsClassLabelsWithTwoRowsEach) {
  dir.write("r.csv", "a,b,y\n1,2,0.5\n3,4,1.25\n5,6,7\n7,8,1\n");
  const std::string mse =
      " --set 'model.layers[1].activation=\"linear\"' --set train.loss=mse "
      "--set data.test_fraction=0.5 --set data.stratify=true";
  expect_error("train " + config("r.csv") + mse,
               "of data row 0 (counting from 0; line 2 of the file) is 0.5: data.stratify needs class "
               "labels, integers from 0");
  // Integer targets in the millions were taken as that many classes, in time quadratic in them.
  dir.write("s.csv", "a,b,y\n1,2,16000000\n3,4,1\n5,6,16000000\n7,8,1\n9,9,3\n");
  expect_error("train " + config("s.csv") + mse,
               "of data row 4 (counting from 0; line 6 of the file) is 3, the only row of that class: "
               "data.stratify needs at least 2 rows");
}

TEST_F(BadInput, MseNeedsOneOutputPerSample) {
  dir.write("d.csv", good_csv);
  expect_error(
      "train " + config("d.csv") + " --set 'model.layers[1].units=3' --set train.loss=mse",
      "mse compares one output value per sample with the row's target, but the model outputs 3 values");
}

TEST_F(BadInput, ImageAugmentationNeedsImages) {
  dir.write("d.csv", good_csv);
  expect_error("train " + config("d.csv") + " --set augment.flip=true",
               "augment.flip needs images, samples of shape [height, width, channels]");
  dir.write("i.csv", "a,b,c,d,y\n1,2,3,4,0\n5,6,7,8,1\n1,2,3,4,0\n5,6,7,8,1\n");
  const std::string images = " --set 'data.reshape=[2,2,1]' --set 'model.layers[0]={type=\"Flatten\"}'";
  expect_error("train " + config("i.csv") + images + " --set augment.shift=2",
               "augment.shift = 2 must be less than the images' height and width (2x2)");
  CommandResult ok =
      run_trainrr("train " + config("i.csv") + images + " --set augment.shift=1 --set augment.flip=true");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

// Images that are not shaped as images: the configuration's data.reshape is named with its file, and a first
// layer that wants another shape says that its input is the data's samples, which data.reshape shapes.
TEST_F(BadInput, ShapesOfTheDataNameTheConfigurationAndDataReshape) {
  dir.write("i.csv", "a,b,c,d,y\n1,2,3,4,0\n5,6,7,8,1\n1,2,3,4,0\n5,6,7,8,1\n");
  const std::string cfg = config("i.csv");
  expect_error("train " + cfg + " --set 'data.reshape=[2,2,2]'",
               "trainrr: " + cfg + ": data.reshape (2, 2, 2) holds 8 values but each sample of ");
  expect_error(
      "train " + cfg + " --set 'model.layers[0]={type=\"Conv2D\",filters=2,kernel_size=1}'",
      "conv2d_1 expects input of rank 3 per sample (height, width, channels), got (4,) (its input is the "
      "data's samples, of shape (4,); data.reshape gives them another)");
}

TEST_F(BadInput, ValidationSplitIsKerasRoundingAndNeverLeavesTrainingEmpty) {
  dir.write("d.csv", good_csv);
  expect_error("train " + config("d.csv") + " --set train.validation_split=0.9",
               "train.validation_split = 0.9 of 4 training rows leaves no training rows");
  // As Keras: floor(4 * (1 - 0.3)) = 2 training rows, 2 validation rows; floor(4 * 0.9) = 3 and 1.
  CommandResult r = run_trainrr("train " + config("d.csv") + " --set train.validation_split=0.3");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("2 training rows, 2 validation"), std::string::npos) << r.output;
  r = run_trainrr("train " + config("d.csv") + " --set train.validation_split=0.1");
  EXPECT_NE(r.output.find("3 training rows, 1 validation"), std::string::npos) << r.output;
}

TEST_F(BadInput, TheRunHeaderNamesTheSplit) {
  dir.write("d.csv", good_csv);
  CommandResult r =
      run_trainrr("train " + config("d.csv") + " --set data.test_fraction=0.5 --set data.split=sklearn");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("2 training rows, 0 validation, 2 test (sklearn split);"), std::string::npos)
      << r.output;
  r = run_trainrr("train " + config("d.csv") + " --set data.test_fraction=0.5 --set data.stratify=true");
  EXPECT_NE(r.output.find("2 test (philox split, stratified);"), std::string::npos) << r.output;
  expect_error(
      "train " + config("d.csv") + " --set data.test_fraction=0.5 --set data.split=sklearn --set seed=" +
          std::to_string(uint64_t{1} << 32),
      "(--set): data.split = \"sklearn\" draws the split as numpy's RandomState(seed) does, so it needs "
      "a seed from 0 to 4294967295, got 4294967296");
}

TEST_F(BadInput, AHugeBatchSizeIsOneBatchPerEpoch) {
  dir.write("d.csv", good_csv);
  CommandResult r = run_trainrr("train " + config("d.csv") + " --set train.batch_size=9223372036854775807");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Epoch 1/1 - 1 step - "), std::string::npos) << r.output;
}

TEST_F(BadInput, SettingsThatTrainButNotAsMeantAreWarnedAbout) {
  dir.write("d.csv", good_csv);
  CommandResult linear =
      run_trainrr("train " + config("d.csv") + " --set 'model.layers[1].activation=\"linear\"'");
  EXPECT_EQ(linear.exit_code, 0) << linear.output;
  EXPECT_NE(
      linear.output.find("warning: binary_crossentropy with train.from_logits = false takes the outputs as "
                         "probabilities, but the model's last activation is linear"),
      std::string::npos)
      << linear.output;
  // A relu's outputs are no logits either: the advice is to end in a sigmoid.
  CommandResult relu =
      run_trainrr("train " + config("d.csv") + " --set 'model.layers[1].activation=\"relu\"'");
  EXPECT_NE(
      relu.output.find("but the model's last activation is relu (end in sigmoid, or in a linear output with "
                       "from_logits = true)"),
      std::string::npos)
      << relu.output;
  CommandResult softmax =
      run_trainrr("train " + config("d.csv") + " --set 'model.layers[1].activation=\"softmax\"'");
  EXPECT_NE(softmax.output.find("warning: the model ends in a softmax over 1 value, which is always 1"),
            std::string::npos)
      << softmax.output;
  CommandResult mse_softmax = run_trainrr(
      "train " + config("d.csv") + " --set 'model.layers[1].activation=\"softmax\"' --set train.loss=mse");
  EXPECT_NE(mse_softmax.output.find("warning: the model ends in a softmax over 1 value"), std::string::npos)
      << mse_softmax.output;
  CommandResult good = run_trainrr("train " + config("d.csv"));
  EXPECT_EQ(good.output.find("warning:"), std::string::npos) << good.output;
  // A learning rate that blows the loss up: the first non-finite loss is named once.
  dir.write("r.csv", "a,b,y\n1,2,100\n3,4,-200\n5,6,300\n7,8,-400\n");
  CommandResult diverged = run_trainrr(
      "train " + config("r.csv") + " --set 'model.layers[1].activation=\"linear\"' --set train.loss=mse " +
      "--set train.optimizer.type=sgd --set train.optimizer.learning_rate=1e30 --set train.epochs=20");
  EXPECT_EQ(diverged.exit_code, 0) << diverged.output;
  const size_t at = diverged.output.find("warning: the loss is ");
  EXPECT_NE(at, std::string::npos) << diverged.output;
  EXPECT_EQ(diverged.output.find("warning: the loss is ", at + 1), std::string::npos) << diverged.output;
}

// A configuration from a pipe (train <(generate-config)) is read; a folder is not.
TEST_F(BadInput, ConfigurationFromAPipeIsRead) {
  dir.write("d.csv", good_csv);
  const std::string cfg = dir.write("piped.toml", "seed = 1\n[data]\npath = \"" + dir.file("d.csv") +
                                                      "\"\nlabel = \"y\"\n" + std::string(kModel));
  CommandResult r = run_trainrr_env("cat " + cfg + " |", "train /dev/stdin");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Epoch 1/1"), std::string::npos) << r.output;
}

// A configuration from standard input or a pipe has no folder of its own: a relative data path in it is
// refused, saying so (never resolved against /dev), and an absolute one is recorded and replays.
TEST_F(BadInput, ConfigurationFromStandardInputNeedsAbsoluteDataPaths) {
  dir.write("d.csv", good_csv);
  const std::string relative = config("d.csv");
  for (const std::string& how : {"cat " + relative + " |", "<" + relative}) {
    for (const std::string& verb :
         {std::string("train /dev/stdin"), "record /dev/stdin -o " + dir.file("t.trr")}) {
      const CommandResult r = run_trainrr_env("cd " + dir.path().string() + " && " + how, verb);
      EXPECT_EQ(r.exit_code, 2) << how << " " << verb << ": " << r.output;
      EXPECT_NE(
          r.output.find("/dev/stdin: data.path = \"d.csv\" is a relative path, but a configuration read "
                        "from a pipe or standard input has no folder to resolve it against"),
          std::string::npos)
          << r.output;
      EXPECT_EQ(r.output.find("/dev/d.csv"), std::string::npos) << r.output;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("t.trr")));
  const CommandResult set =
      run_trainrr_env("cat " + relative + " |",
                      "record /dev/stdin --set data.path=" + dir.file("d.csv") + " -o " + dir.file("t.trr"));
  EXPECT_EQ(set.exit_code, 0) << set.output;
  const CommandResult replay = run_trainrr("replay " + dir.file("t.trr"));
  EXPECT_EQ(replay.exit_code, 0) << replay.output;
}

TEST_F(BadInput, RecordNeverOverwritesWhatIsNotATrace) {
  dir.write("d.csv", good_csv);
  const std::string cfg = config("d.csv");
  expect_error("record " + cfg + " -o " + cfg, "this is the run's configuration; writing the trace there");
  expect_error("record " + cfg + " -o " + dir.file("d.csv"), "this is the run's data file");
  const std::string notes = dir.write("notes.txt", "keep me\n");
  expect_error("record " + cfg + " -o " + notes, "notes.txt: exists and is not a trainrr trace");
  std::ifstream in(notes);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "keep me\n");
  // An earlier trace, or an empty file, is replaced.
  const std::string trace = dir.file("run.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  CommandResult again = run_trainrr("record " + cfg + " -o " + trace);
  EXPECT_EQ(again.exit_code, 0) << again.output;
  const std::string empty = dir.write("empty.trr", "");
  CommandResult into_empty = run_trainrr("record " + cfg + " -o " + empty);
  EXPECT_EQ(into_empty.exit_code, 0) << into_empty.output;
  // A trace cut inside its header (a recording killed as it began), which show calls one, is replaced too.
  std::ifstream whole(trace, std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(whole), {}};
  const std::string cut = dir.write("cut.trr", bytes.substr(0, 20));
  const CommandResult show = run_trainrr("show " + cut);
  EXPECT_NE(show.output.find("cut.trr: truncated inside its header"), std::string::npos) << show.output;
  CommandResult into_cut = run_trainrr("record " + cfg + " -o " + cut);
  EXPECT_EQ(into_cut.exit_code, 0) << into_cut.output;
  EXPECT_EQ(run_trainrr("show " + cut).exit_code, 0);
}

TEST_F(BadInput, RecordRefusedBeforeTrainingKeepsTheEarlierTrace) {
  dir.write("d.csv", good_csv);
  const std::string cfg = config("d.csv");
  const std::string trace = dir.file("prev.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  auto bytes = [&trace] {
    std::ifstream in(trace, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string before = bytes();
  ASSERT_FALSE(before.empty());
  expect_error("record " + cfg + " -o " + trace + " --set data.label=yy", "no column named");
  expect_error("record " + cfg + " -o " + trace + " --set model.layers[0].units=0", "units");
  EXPECT_TRUE(bytes() == before) << "the earlier trace was changed";
  // Nothing is left beside it either.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 3)
      << "d.csv, run.toml, prev.trr";
}

TEST_F(BadInput, RecordIntoWhatIsNotARegularFileIsRefusedBeforeTraining) {
  dir.write("d.csv", good_csv);
  const std::string cfg = config("d.csv");
  for (const auto& [out, kind] :
       {std::pair<std::string, std::string>{"/dev/null", "it is a character device"},
        {dir.path().string(), "it is a directory"}}) {
    CommandResult r = run_trainrr("record " + cfg + " -o " + out);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(out + ": not a regular file (" + kind + ")"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("recording to"), std::string::npos) << "refused before training:\n" << r.output;
  }
}

TEST_F(BadInput, RecordToAnEmptyPathIsRefusedSayingSo) {
  dir.write("d.csv", good_csv);
  const std::string cfg = config("d.csv");
  CommandResult r = run_trainrr("record " + cfg + " -o ''");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("trainrr: --output: the trace needs a file path, got an empty one"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("recording to"), std::string::npos) << "refused before training:\n" << r.output;
}

// A trace that only its owner may read stays so when it is recorded again: the new one is never more
// readable than the one it replaces.
TEST_F(BadInput, RecordOverAnEarlierTraceKeepsItsPermissions) {
  dir.write("d.csv", good_csv);
  const std::string cfg = config("d.csv");
  const std::string trace = dir.file("run.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  namespace fs = std::filesystem;
  for (const fs::perms mode : {fs::perms(0600), fs::perms(0640)}) {
    fs::permissions(trace, mode);
    CommandResult again = run_trainrr("record " + cfg + " -o " + trace + " --set seed=2");
    EXPECT_EQ(again.exit_code, 0) << again.output;
    EXPECT_EQ(fs::status(trace).permissions(), mode);
  }
}

TEST_F(BadInput, HtmlReportNeverOverwritesWhatIsNotAReport) {
  dir.write("d.csv", good_csv);
  const std::string cfg = config("d.csv");
  const std::string trace = dir.file("run.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  expect_error("replay " + trace + " --html " + trace, "exists and is not an HTML report");
  expect_error("diff " + trace + " " + trace + " --html " + cfg, "exists and is not an HTML report");
  // An HTML page that trainrr did not write, though it starts as every page does.
  const std::string page = "<!doctype html>\n<html><body>precious work</body></html>\n";
  const std::string thesis = dir.write("thesis.html", page);
  expect_error("diff " + trace + " " + trace + " --html " + thesis,
               "--html: " + thesis +
                   " exists and is not an HTML report (a report trainrr wrote names trainrr "
                   "as its generator in its first bytes): refusing to overwrite it");
  std::ifstream in(thesis, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), page);
  // A report written before is replaced.
  const std::string html = dir.file("r.html");
  EXPECT_EQ(run_trainrr("replay " + trace + " --html " + html).exit_code, 0);
  CommandResult again = run_trainrr("replay " + trace + " --html " + html);
  EXPECT_EQ(again.exit_code, 0) << again.output;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::vector<std::string> names_in(const std::filesystem::path& folder) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(folder))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Files past 1 KiB cannot be written (EFBIG, the signal ignored): a report is far bigger.
TEST_F(BadInput, HtmlReportThatCannotBeWrittenWholeLeavesTheEarlierReportAndNoOtherFile) {
  dir.write("d.csv", good_csv);
  const std::string cfg = config("d.csv");
  const std::string trace = dir.file("run.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  const std::string html = dir.file("r.html");
  ASSERT_EQ(run_trainrr("replay " + trace + " --html " + html).exit_code, 0);
  const std::string before = file_bytes(html);
  const std::vector<std::string> names = names_in(dir.path());
  for (const std::string& to : {html, dir.file("new.html")}) {
    CommandResult r = run_trainrr_env("trap '' XFSZ; ulimit -f 1;", "replay " + trace + " --html " + to);
    EXPECT_EQ(r.exit_code, 2) << to << "\n" << r.output;
    EXPECT_NE(r.output.find(to + ": cannot write the HTML report: File too large"), std::string::npos)
        << r.output;
    EXPECT_EQ(file_bytes(html), before) << "the earlier report was changed";
    EXPECT_EQ(names_in(dir.path()), names) << "a file was left";
  }
}

TEST_F(BadInput, HtmlReportThroughALinkToNothingIsRefusedSayingSo) {
  const std::string trace = dir.file("missing.trr");  // never read: the option is checked first
  const std::string link = dir.file("dangling.html");
  std::filesystem::create_symlink(dir.file("elsewhere/new.html"), link);
  expect_error("replay " + trace + " --html " + link,
               "--html: " + link + " is a symbolic link to " + dir.file("elsewhere/new.html") +
                   ", which does not exist: a report is written through a link only to an earlier report; "
                   "give the report's own path");
}

// The path comes from the user, but may hold what a terminal acts on (pasted, or from a script's variable).
TEST_F(BadInput, HtmlReportPathIsPrintedWithItsControlCharactersEscaped) {
  dir.write("d.csv", good_csv);
  const std::string cfg = config("d.csv");
  const std::string trace = dir.file("run.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  const std::string html = dir.file("r\x1b]0;title\x07.html");
  CommandResult r = run_trainrr("replay " + trace + " --html '" + html + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(html));
  EXPECT_NE(r.output.find("report: " + dir.file("r\\x1B]0;title\\x07.html") + "\n"), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find('\x1b'), std::string::npos) << r.output;
}

TEST_F(BadInput, UnknownCommandIsUsageError) {
  CommandResult r = run_trainrr("frobnicate");
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

TEST_F(BadInput, UnknownCommandOrOptionIsNamedWithTheCommands) {
  CommandResult r = run_trainrr("replya bc.trr");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(
      r.output.find("trainrr: unknown command 'replya' (commands: train, record, replay, diff, bisect, show, "
                    "dump, export)"),
      std::string::npos)
      << r.output;
  for (const std::string args : {"--bogus", "--bogus record x.toml -o x.trr", "-z replay x.trr"}) {
    CommandResult o = run_trainrr(args);
    EXPECT_EQ(o.exit_code, 2) << args << ": " << o.output;
    const std::string option = args.substr(0, args.find(' '));
    EXPECT_NE(o.output.find("trainrr: unknown option '" + option + "'"), std::string::npos) << o.output;
    EXPECT_EQ(o.output.find("A subcommand is required"), std::string::npos) << o.output;
  }
  CommandResult none = run_trainrr("");
  EXPECT_EQ(none.exit_code, 2) << none.output;
  EXPECT_NE(none.output.find("trainrr: a command is required (commands: train, record,"), std::string::npos)
      << none.output;
}

TEST_F(BadInput, HtmlReportInAMissingFolderIsRefusedBeforeAnyReplay) {
  const std::string trace = dir.file("missing.trr");  // never read: the option is checked first
  for (const std::string& cmd : {"replay " + trace, "bisect " + trace, "diff " + trace + " " + trace}) {
    CommandResult r = run_trainrr(cmd + " --html " + dir.file("absent/report.html"));
    EXPECT_EQ(r.exit_code, 2) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find("--html: folder " + dir.file("absent") + " does not exist"), std::string::npos)
        << r.output;
  }
}

// Where no file can be made whatever the permissions say (procfs takes none, even from root).
TEST_F(BadInput, HtmlReportWhereNoFileCanBeCreatedIsRefusedBeforeAnyReplay) {
  if (!std::filesystem::is_directory("/proc/self")) GTEST_SKIP() << "no procfs";
  const std::string trace = dir.file("missing.trr");  // never read: the option is checked first
  for (const std::string& cmd : {"replay " + trace, "bisect " + trace, "diff " + trace + " " + trace}) {
    CommandResult r = run_trainrr(cmd + " --html /proc/trainrr-report.html");
    EXPECT_EQ(r.exit_code, 2) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find("--html: cannot create"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("/proc"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("missing.trr"), std::string::npos) << "refused before the trace is read:\n"
                                                               << r.output;
  }
}

TEST_F(BadInput, HtmlReportThatIsAFolderIsRefusedBeforeAnyReplay) {
  const std::string trace = dir.file("missing.trr");  // never read: the option is checked first
  for (const std::string& cmd : {"replay " + trace, "bisect " + trace, "diff " + trace + " " + trace}) {
    CommandResult r = run_trainrr(cmd + " --html " + dir.path().string());
    EXPECT_EQ(r.exit_code, 2) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find(dir.path().string() + " is a directory"), std::string::npos) << r.output;
    CommandResult empty = run_trainrr(cmd + " --html ''");
    EXPECT_EQ(empty.exit_code, 2) << cmd << "\n" << empty.output;
    EXPECT_NE(empty.output.find("--html needs a file path, got an empty one"), std::string::npos)
        << empty.output;
  }
}

// Permissions decide for the user running trainrr; root passes every permission check, so as root the
// commands run as nobody.
TEST_F(BadInput, HtmlReportIsRefusedWhenTheFileCannotBeWrittenNotWhenItsFolderIsReadOnly) {
  std::string as_user;
  if (::geteuid() == 0) {
    if (std::system("command -v setpriv >/dev/null 2>&1") != 0) GTEST_SKIP() << "root without setpriv";
    as_user = "setpriv --reuid=65534 --regid=65534 --clear-groups";
  }
  dir.write("d.csv", good_csv);
  const std::string cfg = config("d.csv");
  const std::string trace = dir.file("run.trr");
  ASSERT_EQ(run_trainrr("record " + cfg + " -o " + trace).exit_code, 0);
  namespace fs = std::filesystem;
  fs::create_directory(dir.file("ro"));
  const std::string report = dir.file("ro/r.html"), locked = dir.file("ro/locked.html");
  for (const std::string& f : {report, locked}) std::ofstream(f) << kReportStart << " 0.1\"><title>";
  fs::permissions(report, fs::perms(0666));          // anyone may rewrite the report
  fs::permissions(locked, fs::perms(0444));          // no one may
  fs::permissions(dir.file("ro"), fs::perms(0555));  // nor add a file to the folder
  CommandResult replaced = run_trainrr_env(as_user, "replay " + trace + " --html " + report);
  EXPECT_EQ(replaced.exit_code, 0) << replaced.output;
  std::ifstream in(report);
  EXPECT_GT(std::string(std::istreambuf_iterator<char>(in), {}).size(), 100u) << "the report was rewritten";
  CommandResult refused = run_trainrr_env(as_user, "replay " + trace + " --html " + locked);
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_NE(refused.output.find("cannot write " + locked), std::string::npos) << refused.output;
  EXPECT_EQ(refused.output.find("reproduced"), std::string::npos) << "refused before the replay:\n"
                                                                  << refused.output;
  CommandResult created = run_trainrr_env(as_user, "replay " + trace + " --html " + dir.file("ro/new.html"));
  EXPECT_EQ(created.exit_code, 2) << created.output;
  EXPECT_NE(created.output.find("cannot create a file in " + dir.file("ro")), std::string::npos)
      << created.output;
  fs::permissions(dir.file("ro"), fs::perms::owner_all, fs::perm_options::add);
}

TEST_F(BadInput, ForceAllOrNoneCannotBeCombinedWithOtherChoices) {
  const std::string trace = dir.file("missing.trr");  // never read: the option is checked first
  expect_error("replay " + trace + " --force all,rng",
               "--force 'all,rng': all cannot be combined with other choices");
  expect_error("replay " + trace + " --force rng,none", "none cannot be combined with other choices");
  expect_error("replay " + trace + " --force rng,bogus", "unknown choice 'bogus'");
}

// A binary file given by mistake must not put raw bytes on the terminal: they are shown as \xNN.
TEST_F(BadInput, MessagesShowBytesThatAreNotPrintableEscaped) {
  auto printable = [](const std::string& text) {
    for (unsigned char c : text)
      if ((c < 0x20 && c != '\n' && c != '\t') || c >= 0x7F) return false;
    return true;
  };
  dir.write("d.csv", std::string("a\xff\x01") + "b,c\n1,2\n3,4\n");
  CommandResult r = run_trainrr("train " + config("d.csv"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("the columns are: a\\xFF\\x01b, c"), std::string::npos) << r.output;
  EXPECT_TRUE(printable(r.output)) << r.output;

  dir.write("good.csv", good_csv);
  const std::string trace = dir.file("run.trr");
  ASSERT_EQ(run_trainrr("record " + config("good.csv") + " -o " + trace).exit_code, 0);
  CommandResult data = run_trainrr("replay " + trace + " --data " + trace + " --allow-data-change");
  EXPECT_EQ(data.exit_code, 2) << data.output;
  EXPECT_NE(data.output.find("no column named"), std::string::npos) << data.output;
  EXPECT_TRUE(printable(data.output)) << data.output;
}

// What the command-line parser refuses reads as every other error: "trainrr: ...", exit code 2.
TEST_F(BadInput, CommandLineErrorsStartWithTrainrrLikeEveryOtherError) {
  const std::string trace = dir.file("missing.trr");
  for (const std::string& cmd :
       {std::string("replay"), "record " + trace, "record --level bogus x.toml -o " + trace,
        "export " + trace + " --step x -o " + dir.file("ck"), "replay " + trace + " --bogus",
        "diff " + trace}) {
    CommandResult r = run_trainrr(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd << "\n" << r.output;
    EXPECT_EQ(r.output.rfind("trainrr: ", 0), 0u) << cmd << "\n" << r.output;
  }
}

TEST_F(BadInput, HelpOnEveryCommandSucceeds) {
  for (const char* cmd : {"--help", "train --help", "record --help", "replay --help", "diff --help", "bisect --help",
                          "show --help", "dump --help", "export --help"}) {
    CommandResult r = run_trainrr(cmd);
    EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find("Usage"), std::string::npos) << r.output;
    if (std::string(cmd) != "--help") {
      EXPECT_NE(r.output.find("Exit codes: 0 "), std::string::npos) << r.output;
    }
  }
  // The commands that take a run's folder say so.
  for (const char* cmd : {"replay --help", "diff --help", "bisect --help", "show --help"})
    EXPECT_NE(run_trainrr(cmd).output.find("or the folder of a run recorded under mpirun"), std::string::npos)
        << cmd;
}

// The options each command refuses for a run's folder (tools/run_folder.cc's refuse_options_for_run, and
// bisect's --against) say in its help that they take one process's trace.
TEST_F(BadInput, HelpSaysWhichOptionsTakeOneProcesssTraceOnly) {
  const std::map<std::string, std::vector<std::string>> refused = {
      {"replay", {"--json", "--html", "--data", "--allow-data-change", "--from-step", "--keep-going"}},
      {"diff", {"--json", "--html"}},
      {"bisect", {"--json", "--html", "--data", "--against"}}};
  for (const auto& [verb, options] : refused) {
    const std::string help = run_trainrr(verb + " --help").output;
    for (const std::string& option : options) {
      const size_t at = help.find("\n  " + option + " ");
      ASSERT_NE(at, std::string::npos) << verb << " " << option << "\n" << help;
      const std::string line = help.substr(at + 1, help.find('\n', at + 1) - at - 1);
      EXPECT_NE(line.find("for a trace of one process only, not a run's folder"), std::string::npos)
          << verb << ": " << line;
    }
  }
  // Those a run's folder takes do not say it.
  for (const auto& [verb, option] :
       {std::pair<std::string, std::string>{"replay", "--to-step"}, {"bisect", "--set"}}) {
    const std::string help = run_trainrr(verb + " --help").output;
    const size_t at = help.find("\n  " + option + " ");
    ASSERT_NE(at, std::string::npos) << help;
    EXPECT_EQ(help.substr(at + 1, help.find('\n', at + 1) - at - 1).find("one process only"),
              std::string::npos);
  }
}

// Under mpirun -o names the run's folder, not a trace file: record's help says so.
TEST_F(BadInput, RecordHelpSaysOutputIsTheRunsFolderUnderMpirun) {
  const std::string help = run_trainrr("record --help").output;
  const size_t at = help.find("\n  -o,--output ");
  ASSERT_NE(at, std::string::npos) << help;
  // Its description may be on the next line (CLI11 wraps after a long option name).
  const std::string line = help.substr(at + 1, help.find("\n  -", at + 1) - at - 1);
  EXPECT_NE(line.find("under mpirun, the run's folder, which gets a trace per rank"), std::string::npos)
      << line;
  EXPECT_EQ(line.find(":FILE"), std::string::npos) << line;
}

}  // namespace
}  // namespace trainrr::testing
