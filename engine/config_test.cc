#include "engine/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>

#include "engine/model.h"

namespace trainrr {
namespace {

const char* kBase = R"(seed = 3
[data]
path = "d.csv"
label = "y"

[[model.layers]]
type = "Dense"
units = 4
activation = "relu"

[train]
epochs = 2
loss = "binary_crossentropy"
)";

// Each --set value, alone on kBase, is refused with a message containing its expected text.
void expect_set_errors(const std::vector<std::pair<std::string, std::string>>& cases) {
  for (const auto& [override, expected] : cases) {
    auto c = parse_config(kBase, "run.toml", "", {override});
    ASSERT_FALSE(c.ok()) << override;
    EXPECT_NE(c.error().message.find(expected), std::string::npos) << c.error().message;
  }
}

TEST(Config, ReadsKerasNamedKeys) {
  auto c = parse_config(kBase, "run.toml", "/base");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(*c->seed, 3u);
  EXPECT_EQ(c->data.path, "/base/d.csv");
  EXPECT_EQ(c->data.source, "csv");
  EXPECT_EQ(c->train.epochs, 2);
  EXPECT_EQ(c->train.batch_size, 32);  // Keras' default
  EXPECT_EQ(c->train.optimizer.type, "adam");
  EXPECT_DOUBLE_EQ(c->train.optimizer.epsilon, 1e-7);
  ASSERT_EQ(c->layers.size(), 1u);
  EXPECT_EQ(c->layers[0].units, 4);
  EXPECT_EQ(c->layers[0].activation, "relu");
  EXPECT_EQ(c->text, kBase);
}

// The value a run goes by: a pooling layer's strides are its pool size unless given, and Keras' other names
// of a layer or a loss (MaxPooling2D, mean_squared_error) are the same run's configuration, not another.
TEST(Config, FlattenedConfigurationsCompareWhatTheRunUses) {
  auto flat_of = [](const std::string& layer, const std::string& loss) {
    std::string text = kBase;
    text.replace(text.find("[[model.layers]]"), 0, layer);
    text.replace(text.find("binary_crossentropy"), 19, loss);
    auto c = parse_config(text, "run.toml", "");
    EXPECT_TRUE(c.ok()) << c.error().message;
    return c ? flatten_config(*c) : std::vector<std::pair<std::string, std::string>>{};
  };
  auto value = [](const std::vector<std::pair<std::string, std::string>>& flat, const std::string& key) {
    for (const auto& [k, v] : flat)
      if (k == key) return v;
    return std::string("(none)");
  };
  const auto plain = flat_of("[[model.layers]]\ntype = \"MaxPool2D\"\npool_size = 2\n", "mse");
  EXPECT_EQ(value(plain, "model.layers[0].strides"), "2x2");
  const auto given = flat_of("[[model.layers]]\ntype = \"MaxPool2D\"\npool_size = 2\nstrides = 2\n", "mse");
  const auto alias =
      flat_of("[[model.layers]]\ntype = \"MaxPooling2D\"\npool_size = 2\n", "mean_squared_error");
  EXPECT_EQ(plain, given);
  EXPECT_EQ(plain, alias);
  const auto one = flat_of("[[model.layers]]\ntype = \"MaxPool2D\"\npool_size = 2\nstrides = 1\n", "mse");
  EXPECT_EQ(value(one, "model.layers[0].strides"), "1x1");
  auto c = parse_config(
      std::string(kBase).replace(std::string(kBase).find("binary_crossentropy"), 19, "mean_squared_error"),
      "run.toml", "");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->train.loss, "mse");  // a regression: no accuracy is reported for it
}

TEST(Config, RmsPropTakesMomentumAndCentered) {
  std::string text = kBase;
  text += "[train.optimizer]\ntype = \"rmsprop\"\nmomentum = 0.9\ncentered = true\n";
  auto c = parse_config(text, "run.toml", "");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_DOUBLE_EQ(c->train.optimizer.momentum, 0.9);
  EXPECT_TRUE(c->train.optimizer.centered);
  const auto flat = flatten_config(*c);
  EXPECT_NE(std::find(flat.begin(), flat.end(),
                      std::pair<std::string, std::string>{"train.optimizer.centered", "true"}),
            flat.end());

  // Errors name the file, the line and the key.
  std::string bad = text;
  bad.replace(bad.find("momentum = 0.9"), 14, "momentum = 1.0");
  auto one = parse_config(bad, "run.toml", "");
  ASSERT_FALSE(one.ok());
  EXPECT_EQ(one.error().message, "run.toml:16: train.optimizer.momentum must be in [0, 1), got 1");
  bad = text;
  bad.replace(bad.find("centered = true"), 15, "centered = 1");
  auto centered = parse_config(bad, "run.toml", "");
  ASSERT_FALSE(centered.ok());
  EXPECT_NE(centered.error().message.find("run.toml:17: train.optimizer.centered must be true or false"),
            std::string::npos)
      << centered.error().message;
  for (const auto& [override, expected] : std::vector<std::pair<std::string, std::string>>{
           {"train.optimizer.momentum=-0.5",
            "run.toml (--set): train.optimizer.momentum must be in [0, 1), got -0.5"},
           {"train.optimizer.centered=\"yes\"",
            "run.toml (--set): train.optimizer.centered must be true or false"}}) {
    auto r = parse_config(text, "run.toml", "", {override});
    ASSERT_FALSE(r.ok()) << override;
    EXPECT_NE(r.error().message.find(expected), std::string::npos) << r.error().message;
  }
}

TEST(Config, OmittedSeedMeansUnseeded) {
  std::string text = kBase;
  text.replace(0, text.find('\n') + 1, "");
  auto c = parse_config(text, "run.toml", "");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_FALSE(c->seed.has_value());
}

TEST(Config, SetOverridesAnyKey) {
  auto c = parse_config(kBase, "run.toml", "",
                        {"train.epochs=5", "train.optimizer.learning_rate=0.5", "runtime.policy=deterministic",
                         "seed=9", "data.label=target"});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->train.epochs, 5);
  EXPECT_DOUBLE_EQ(c->train.optimizer.learning_rate, 0.5);
  EXPECT_EQ(c->runtime.policy, "deterministic");
  EXPECT_EQ(*c->seed, 9u);
  EXPECT_EQ(c->data.label, "target");
}

TEST(Config, SetReachesIntoAnArrayOfTablesByIndex) {
  auto c =
      parse_config(kBase, "run.toml", "", {"model.layers[0].units=7", "model.layers[0].activation=tanh"});
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->layers.size(), 1u);
  EXPECT_EQ(c->layers[0].units, 7);
  EXPECT_EQ(c->layers[0].activation, "tanh");
  // A whole entry replaced.
  c = parse_config(kBase, "run.toml", "", {"model.layers[0]={type=\"Dense\",units=2}"});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->layers[0].units, 2);
  EXPECT_EQ(c->layers[0].activation, "linear");

  expect_set_errors(
      {{"model.layers[1].units=3",
        "--set model.layers[1].units=3: 'model.layers' has 1 entry, so [1] is past its end"},
       {"model.layers[-1].units=3", "'layers[-1]' is not NAME[INDEX]"},
       {"model.layers[0.units=3", "'layers[0' is not NAME[INDEX]"},
       {"train[0].epochs=3", "'train' is not an array"},
       {"model.layers[0].unitz=3", "run.toml (--set): unknown key 'model.layers[0].unitz'"},
       {"model.layers[0].units=\"3\"", "run.toml (--set): model.layers[0].units must be an integer"},
       // An entry named with a dot, as in some other tools.
       {"model.layers.0.units=3",
        "--set model.layers.0.units=3: 'model.layers' is an array: name one of its entries, as in "
        "model.layers[0].units"},
       {"model.layers.units=3", "as in model.layers[0].units"}});
}

TEST(Config, AKeyGivenInAnotherTableIsToldWhereItBelongs) {
  expect_set_errors(
      {{"epochs=3", "run.toml (--set): unknown key 'epochs' (did you mean 'train.epochs'?)"},
       {"optimizer.learning_rate=0.1", "unknown key 'optimizer' (did you mean 'train.optimizer'?)"},
       {"train.learning_rate=0.1",
        "unknown key 'train.learning_rate' (did you mean "
        "'train.optimizer.learning_rate'?)"},
       {"runtime.seed=1", "unknown key 'runtime.seed' (did you mean 'seed'?)"},
       {"model.layers[0].learning_rate=0.1", "(did you mean 'train.optimizer.learning_rate'?)"},
       // A longer or shorter form of a table's name.
       {"training.epochs=3", "unknown key 'training' (did you mean 'train'?)"},
       {"run.threads=1", "unknown key 'run' (did you mean 'runtime'?)"},
       // A misspelling is still one.
       {"runtime.polcy=\"default\"", "unknown key 'runtime.polcy' (did you mean 'runtime.policy'?)"}});
  // Where it says a key belongs, the reader reads it there: set there, it is never an unknown key (except one
  // that only some data sources or optimizers take, which says whose it is).
  for (const auto& [key, where] : fixed_table_keys()) {
    auto c = parse_config(kBase, "run.toml", "", {where + "=\"x\""});
    if (c.ok()) continue;
    const std::string& m = c.error().message;
    if (m.find("unknown key '" + where + "'") != std::string::npos) {
      EXPECT_NE(m.find("unknown key '" + where + "' for "), std::string::npos) << m;
    }
  }
}

TEST(Config, UnknownKeyNamesKeyLineAndSuggestion) {
  std::string text = std::string(kBase) + "batch_sise = 3\n";
  auto c = parse_config(text, "run.toml", "");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("run.toml:14: unknown key 'train.batch_sise'"), std::string::npos)
      << c.error().message;
  EXPECT_NE(c.error().message.find("did you mean 'train.batch_size'"), std::string::npos) << c.error().message;
}

TEST(Config, WrongTypeNamesKeyAndLine) {
  std::string text = kBase;
  text.replace(text.find("epochs = 2"), 10, "epochs = \"2\"");
  auto c = parse_config(text, "run.toml", "");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("run.toml:12: train.epochs must be an integer, got a string"), std::string::npos)
      << c.error().message;
}

TEST(Config, BadValuesAreRefused) {
  expect_set_errors({{"train.batch_size=0", "train.batch_size must be at least 1"},
                     {"train.optimizer.learning_rate=-1", "learning_rate must be positive, got -1"},
                     {"runtime.policy=fastest",
                      "runtime.policy: unknown policy 'fastest' (expected one of: default, deterministic, autotune, portable)"},
                     {"data.test_fraction=1.5", "data.test_fraction must be in [0, 1), got 1.5"},
                     {"train.optimizer.type=adagrad", "train.optimizer.type: unknown optimizer 'adagrad'"},
                     {"nonsense", "expected key=value"}});
}

// A configuration (a trace's among them) cannot make a run start more threads than any machine has cores.
TEST(Config, ThreadsPastTheBoundAreRefusedNamingTheValueAndTheBound) {
  auto most = parse_config(kBase, "run.toml", "", {"runtime.threads=1024"});
  ASSERT_TRUE(most.ok()) << most.error().message;
  EXPECT_EQ(most->runtime.threads, kMaxThreads);
  expect_set_errors(
      {{"runtime.threads=1025", "run.toml (--set): runtime.threads must be at most 1024, got 1025"},
       {"runtime.threads=2147483647", "runtime.threads must be at most 1024, got 2147483647"}});
  std::string text = std::string(kBase) + "[runtime]\nthreads = 20000\n";
  auto c = parse_config(text, "run.toml", "");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("run.toml:15: runtime.threads must be at most 1024, got 20000"),
            std::string::npos)
      << c.error().message;
}

// Synthetic data is generated from the configuration alone: its size is bounded before anything is generated,
// in its samples and in its classes' means.
TEST(Config, SyntheticDataPastItsBoundIsRefusedNamingTheKey) {
  std::string text = kBase;
  text.replace(text.find("path = \"d.csv\"\nlabel = \"y\"\n"), 26, "source = \"synthetic\"\n");
  auto synthetic = [&](const std::string& shape, const std::string& classes, const std::string& samples) {
    return parse_config(text, "run.toml", "",
                        {"data.shape=" + shape, "data.classes=" + classes, "data.samples=" + samples});
  };
  auto most = synthetic("[1024]", "2", "262144");  // 2^28 values: 1 GiB of float32
  ASSERT_TRUE(most.ok()) << most.error().message;
  for (const auto& [shape, classes, samples, expected] :
       std::vector<std::tuple<std::string, std::string, std::string, std::string>>{
           {"[1024]", "2", "262145",
            "data.samples times the sample shape is too many values for synthetic data: 262145 x 1024, where "
            "it may hold at most 268435456 (1 GiB of float32)"},
           {"[1000]", "10", "700000", "data.samples times the sample shape is too many values"},
           {"[65536, 65536]", "2", "1",
            "data.shape holds more values per sample than synthetic data may hold"},
           {"[4611686018427387904, 4]", "2", "1", "data.shape holds more values per sample"},
           {"[1024]", "262145", "2",
            "data.classes times the sample shape is too many values for synthetic "
            "data's class means: 262145 x 1024"}}) {
    auto c = synthetic(shape, classes, samples);
    ASSERT_FALSE(c.ok()) << shape << " " << classes << " " << samples;
    EXPECT_NE(c.error().message.find("run.toml (--set): " + expected.substr(0, 12)), std::string::npos)
        << c.error().message;
    EXPECT_NE(c.error().message.find(expected), std::string::npos) << c.error().message;
  }
}

// A layer's value out of range is refused by the model as it builds the layers, saying where the
// configuration gave it, as every other value error does, with the number as written.
TEST(Config, LayerValuesOutOfRangeGiveFileLineAndKey) {
  auto model_error = [](const std::string& text, const std::vector<std::string>& overrides) {
    auto c = parse_config(text, "run.toml", "", overrides);
    if (!c) return "parse: " + c.error().message;
    auto m = Sequential::from_specs(c->layers);
    return m ? std::string("built") : m.error().message;
  };
  std::string text = kBase;
  text.replace(text.find("units = 4"), 9, "units = -3");
  EXPECT_EQ(model_error(text, {}), "run.toml:8: model.layers[0].units must be positive, got -3");
  const std::string dropout = std::string(kBase) + "\n[[model.layers]]\ntype = \"Dropout\"\nrate = 0.5\n";
  for (const auto& [override, expected] : std::vector<std::pair<std::string, std::string>>{
           {"model.layers[1].rate=2", "run.toml (--set): model.layers[1].rate must be in [0, 1), got 2"},
           {"model.layers[1].rate=-0.25",
            "run.toml (--set): model.layers[1].rate must be in [0, 1), got -0.25"},
           {"model.layers[0].units=0", "run.toml (--set): model.layers[0].units must be positive, got 0"}})
    EXPECT_EQ(model_error(dropout, {override}), expected);
  const std::string bn =
      std::string(kBase) + "\n[[model.layers]]\ntype = \"BatchNormalization\"\nepsilon = 0.0\n";
  EXPECT_EQ(model_error(bn, {}), "run.toml:17: model.layers[1].epsilon must be positive, got 0");
  EXPECT_EQ(model_error(dropout, {}), "built");
}

TEST(Config, UnknownNamesGiveFileLineKeyAndTheClosestName) {
  std::string text = kBase;
  text.replace(text.find("activation = \"relu\""), 19, "activation = \"ReLU\"");
  auto c = parse_config(text, "run.toml", "");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message, "run.toml:9: model.layers[0].activation: unknown activation 'ReLU' (did you mean 'relu'?)");
  expect_set_errors(
      {{"model.layers[0].kernel_initializer=\"GlorotUniform\"",
        "run.toml (--set): model.layers[0].kernel_initializer: unknown initializer 'GlorotUniform' "
        "(did you mean 'glorot_uniform'?)"},
       {"train.loss=\"BinaryCrossentropy\"",
        "run.toml (--set): train.loss: unknown loss 'BinaryCrossentropy' (did you mean "
        "'binary_crossentropy'?)"},
       {"train.optimizer.type=\"Adam\"",
        "run.toml (--set): train.optimizer.type: unknown optimizer 'Adam' (did you mean 'adam'?)"},
       {"data.scale=\"standardise\"",
        "data.scale: unknown scaling 'standardise' (did you mean 'standardize'?)"},
       {"train.loss=\"margin\"", "unknown loss 'margin' (expected one of: binary_crossentropy,"}});
}

TEST(Config, SklearnSplitNeedsASeedNumpyTakes) {
  auto c = parse_config(kBase, "run.toml", "", {"data.split=sklearn", "data.test_fraction=0.2"});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->data.split, "sklearn");
  EXPECT_EQ(parse_config(kBase, "run.toml", "")->data.split, "philox");
  expect_set_errors(
      {{"data.split=numpy", "run.toml (--set): data.split: unknown split 'numpy' (expected one of: philox, sklearn)"}});
  // numpy's RandomState(seed) takes seeds below 2^32.
  auto big = parse_config(kBase, "run.toml", "",
                          {"data.split=sklearn", "data.test_fraction=0.2", "seed=4294967296"});
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.error().message.find("run.toml (--set): data.split = \"sklearn\" draws the split as numpy's "
                                     "RandomState(seed) does, so it needs a seed from 0 to 4294967295, got "
                                     "4294967296"),
            std::string::npos)
      << big.error().message;
  // An unseeded run is fine: the trainer draws a seed numpy takes.
  std::string unseeded = std::string(kBase).substr(std::string(kBase).find('\n') + 1);
  auto none2 = parse_config(unseeded, "run.toml", "", {"data.split=sklearn", "data.test_fraction=0.2"});
  EXPECT_TRUE(none2.ok()) << none2.error().message;
  // Without a test split there is nothing to draw.
  EXPECT_TRUE(parse_config(unseeded, "run.toml", "", {"data.split=sklearn"}).ok());
}

TEST(Config, SyntaxErrorGivesLineAndColumn) {
  auto c = parse_config("seed = \n", "bad.toml", "");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("bad.toml:1:"), std::string::npos) << c.error().message;
}

TEST(Config, LayerKeysAreChecked) {
  std::string text = std::string(kBase) + "\n[[model.layers]]\ntype = \"Dense\"\nunit = 3\n";
  auto c = parse_config(text, "run.toml", "");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("unknown key 'model.layers[1].unit'"), std::string::npos) << c.error().message;
}

TEST(Config, ErrorsInAValueGivenBySetSayTheyComeFromSet) {
  expect_set_errors(
      {{"train.epochs=\"2\"", "run.toml (--set): train.epochs must be an integer, got a string"},
       {"model.layers=3", "run.toml (--set): model.layers must be an array of tables"},
       {"model.layers=[1]", "run.toml (--set): model.layers[0] must be a table"},
       {"model.layers=[{units=1}]", "run.toml (--set): model.layers[0].type is missing"},
       {"model.layers=[{type=\"Dense\",units=\"x\"}]",
        "run.toml (--set): model.layers[0].units must be an integer, got a string"},
       {"model.layers=[{type=\"Dense\",unit=3}]", "run.toml (--set): unknown key 'model.layers[0].unit'"}});
  // A key of the file beside the one --set gave keeps its line.
  std::string text = kBase;
  text.replace(text.find("epochs = 2"), 10, "epochs = \"2\"");
  auto c = parse_config(text, "run.toml", "", {"train.batch_size=8"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("run.toml:12: train.epochs must be an integer"), std::string::npos)
      << c.error().message;
}

TEST(Config, AKeyOfAnotherKindOfLayerNamesTheLayersThatTakeItNotAMisspelling) {
  expect_set_errors({{"model.layers[0].rate=0.5",
                      "unknown key 'model.layers[0].rate' for a Dense layer (its keys: activation, "
                      "kernel_initializer, name, type, units, use_bias) ('rate' is a key of Dropout layers)"},
                     {"model.layers[0].strides=2", "('strides' is a key of Conv2D and MaxPool2D layers)"}});
  auto c = parse_config(kBase, "run.toml", "", {"model.layers[0].rate=0.5"});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message.find("did you mean"), std::string::npos) << c.error().message;
}

TEST(Config, AnOptimizerKeyRefusedNamesExactlyTheOptimizersThatTakeIt) {
  const std::vector<std::string> types = {"sgd", "adam", "adamw", "rmsprop"};
  const std::vector<std::pair<std::string, std::string>> keys = {
      {"momentum", "0.5"}, {"nesterov", "true"},     {"beta_1", "0.8"}, {"beta_2", "0.99"},
      {"epsilon", "1e-6"}, {"weight_decay", "0.01"}, {"rho", "0.8"},    {"centered", "true"}};
  for (const auto& [key, value] : keys) {
    std::vector<std::string> taking;
    for (const auto& type : types)
      if (parse_config(kBase, "run.toml", "",
                       {"train.optimizer.type=" + type, "train.optimizer." + key + "=" + value})
              .ok())
        taking.push_back(type);
    ASSERT_FALSE(taking.empty()) << key;
    for (const auto& type : types) {
      if (std::find(taking.begin(), taking.end(), type) != taking.end()) continue;
      auto c = parse_config(kBase, "run.toml", "",
                            {"train.optimizer.type=" + type, "train.optimizer." + key + "=" + value});
      ASSERT_FALSE(c.ok());
      const std::string& m = c.error().message;
      const size_t at = m.find("('" + key + "' is a key of the ");
      ASSERT_NE(at, std::string::npos) << m;
      const std::string whose = m.substr(at);
      // Every optimizer that takes it is named, and none that does not.
      for (const auto& t : types) {
        const bool named =
            whose.find(" " + t + " ") != std::string::npos || whose.find(" " + t + ",") != std::string::npos;
        EXPECT_EQ(named, std::find(taking.begin(), taking.end(), t) != taking.end())
            << key << " / " << t << ": " << m;
      }
    }
  }
}

// Two runs' configurations are compared key by key: only the keys a layer or an optimizer takes are there.
TEST(Config, FlatKeysAreThoseEachLayerAndOptimizerTakes) {
  auto c = parse_config(kBase, "run.toml", "", {"model.layers[0].use_bias=false"});
  ASSERT_TRUE(c.ok()) << c.error().message;
  std::vector<std::string> keys;
  for (const auto& [k, v] : flatten_config(*c)) keys.push_back(k);
  auto holds = [&](const std::string& k) { return std::find(keys.begin(), keys.end(), k) != keys.end(); };
  EXPECT_TRUE(holds("model.layers[0].units"));
  EXPECT_TRUE(holds("model.layers[0].use_bias"));
  for (const char* absent : {"model.layers[0].filters", "model.layers[0].rate", "model.layers[0].epsilon",
                             "model.layers[0].pool_size", "train.optimizer.momentum", "train.optimizer.rho"})
    EXPECT_FALSE(holds(absent)) << absent;
  EXPECT_TRUE(holds("train.optimizer.beta_1"));
}

TEST(Config, KeysOfAnotherKindOfLayerOptimizerOrSourceAreRefused) {
  // Each would otherwise be read and then do nothing.
  expect_set_errors(
      {{"model.layers[0].type=\"BatchNormalization\"",
        "run.toml:9: unknown key 'model.layers[0].activation' for a BatchNormalization layer (its keys: "},
       {"model.layers[0]={type=\"Dropout\",rate=0.5,units=3}",
        "run.toml (--set): unknown key 'model.layers[0].units' for a Dropout layer"},
       {"model.layers[0]={type=\"MaxPool2D\",activation=\"relu\"}",
        "unknown key 'model.layers[0].activation' for a MaxPool2D layer"},
       {"model.layers[0]={type=\"Dense\",units=3,filters=2}",
        "unknown key 'model.layers[0].filters' for a Dense layer"},
       {"train.optimizer.weight_decay=0.1",
        "unknown key 'train.optimizer.weight_decay' for the adam optimizer"},
       {"train.optimizer.momentum=0.9", "unknown key 'train.optimizer.momentum' for the adam optimizer"},
       {"data.samples=10",
        "unknown key 'data.samples' for data.source = \"csv\" (from the name of data.path)"},
       {"data.labels=\"y.npy\"", "unknown key 'data.labels' for data.source = \"csv\""}});
  for (const char* key : {"momentum=0.9", "centered=true", "rho=0.5"}) {
    auto adam = parse_config(kBase, "run.toml", "",
                             {"train.optimizer.type=\"adam\"", std::string("train.optimizer.") + key});
    ASSERT_FALSE(adam.ok()) << key;
    EXPECT_NE(adam.error().message.find("unknown key 'train.optimizer." +
                                        std::string(key).substr(0, std::string(key).find('=')) +
                                        "' for the adam optimizer"),
              std::string::npos)
        << adam.error().message;
  }
  auto sgd = parse_config(
      kBase, "run.toml", "",
      {"train.optimizer.type=\"sgd\"", "train.optimizer.momentum=0.9", "train.optimizer.nesterov=true"});
  ASSERT_TRUE(sgd.ok()) << sgd.error().message;
  EXPECT_DOUBLE_EQ(sgd->train.optimizer.momentum, 0.9);
  auto adamw = parse_config(kBase, "run.toml", "",
                            {"train.optimizer.type=\"adamw\"", "train.optimizer.weight_decay=0.1"});
  ASSERT_TRUE(adamw.ok()) << adamw.error().message;
  EXPECT_DOUBLE_EQ(adamw->train.optimizer.weight_decay, 0.1);
}

TEST(Config, ArgumentsKerasRequiresMustBeGiven) {
  expect_set_errors(
      {{"model.layers[0]={type=\"Dropout\"}", "run.toml (--set): model.layers[0] (Dropout) needs rate"},
       {"model.layers[0]={type=\"Activation\"}", "(Activation) needs activation"},
       {"model.layers[0]={type=\"Dense\"}", "(Dense) needs units"},
       {"model.layers[0]={type=\"Conv2D\",filters=4}", "(Conv2D) needs kernel_size"},
       {"model.layers[0].type=\"Dense2\"",
        "run.toml (--set): model.layers[0].type: unknown layer type 'Dense2' (did you mean 'Dense'?)"},
       {"model.layers[0].name=\"block/dense\"", "model.layers[0].name must not contain '/'"},
       {"model.layers=[]", "run.toml (--set): model.layers is empty"},
       {"model.layers[0]=1", "run.toml (--set): model.layers[0] must be a table"}});
}

// A trace names a layer's ops NAME/op:out and its tensors NAME.kernel, beside trainrr's own sites: a new run
// refuses a name that would be read back as another layer, op or site, naming the file, line and key. The
// configuration of a trace recorded before parses as it was (a replay re-runs the run with its names).
TEST(Config, ANewRunRefusesALayerNameATraceWouldReadBackAsAnother) {
  for (const auto& [name, why] :
       {std::pair{"enc.fc",
                  "model.layers[0].name must not contain '/', '.' or ':' (a trace names a layer's ops "
                  "and tensors NAME/op:out and NAME.kernel), got 'enc.fc'"},
        std::pair{"enc:out", "model.layers[0].name must not contain '/', '.' or ':'"},
        std::pair{"init",
                  "model.layers[0].name = 'init' is a word trainrr's own sites begin with (data, augment, "
                  "dropout, init, loss, allreduce): choose another name"},
        std::pair{"dropout", "model.layers[0].name = 'dropout' is a word trainrr's own sites"}}) {
    std::string text = kBase;
    text.replace(text.find("type = \"Dense\"\n"), 15,
                 "type = \"Dense\"\nname = \"" + std::string(name) + "\"\n");
    auto c = parse_config(text, "run.toml", "");
    ASSERT_TRUE(c) << c.error().message;
    const Status s = check_new_run_layer_names(*c);
    ASSERT_FALSE(s) << name;
    EXPECT_NE(s.error().message.find(why), std::string::npos) << s.error().message;
    EXPECT_EQ(s.error().message.rfind("run.toml:", 0), 0u) << s.error().message;
  }
  auto c = parse_config(kBase, "run.toml", "");
  ASSERT_TRUE(c);
  EXPECT_TRUE(check_new_run_layer_names(*c));
}

// A layer's name is printed in the model's summary: one with a control character (an escape sequence that
// clears the screen, a line break that prints a line of its own) or bytes that are not UTF-8 is refused, as
// a '/' is, naming the key and showing the name escaped. Other text is a name.
TEST(Config, ALayerNameWithControlCharactersIsRefused) {
  std::string text = kBase;
  text.replace(text.find("type = \"Dense\"\n"), 15, "type = \"Dense\"\nname = \"a\\u001b[2Jb\"\n");
  auto c = parse_config(text, "run.toml", "");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(
      c.error().message,
      "run.toml:8: model.layers[0].name must be text without control characters (a line break, an escape, "
      "a tab) or bytes that are not UTF-8, got 'a\\x1B[2Jb'");
  expect_set_errors({{"model.layers[0].name=\"x\\r\\ny\"",
                      "model.layers[0].name must be text without control "
                      "characters (a line break, an escape, a tab) or bytes "
                      "that are not UTF-8, got 'x\\x0D\\x0Ay'"},
                     {"model.layers[0].name=\"x\\ty\"", "got 'x\\x09y'"},
                     {"model.layers[0].name=\"x\\u202Ey\"", "got 'x\\u202Ey'"},
                     {"model.layers[0].name=\"x\\u009By\"", "got 'x\\u009By'"}});
  for (const std::string name : {"dense 1", "couche_é", "层", "a\\\\b"}) {
    auto ok = parse_config(kBase, "run.toml", "", {"model.layers[0].name=\"" + name + "\""});
    EXPECT_TRUE(ok.ok()) << name << ": " << ok.error().message;
  }
}

TEST(Config, DataSourceFollowsThePathOrTheSyntheticKeys) {
  struct Case {
    std::string path, source;
  };
  for (const Case& c : std::vector<Case>{{"train-images-idx3-ubyte", "idx"},
                                         {"train-images.idx3-ubyte", "idx"},
                                         {"t10k-images-idx3-ubyte.gz", "idx"},
                                         {"images.idx", "idx"},
                                         {"x.npy", "npy"},
                                         {"table.csv", "csv"},
                                         {"table.txt", "csv"},
                                         {"ubyte_counts.csv", "csv"},
                                         {"run-idx.csv", "csv"}}) {
    const std::string label_key = c.source == "csv" ? "data.label=\"y\"" : "data.labels=\"labels\"";
    std::string text = kBase;
    text.replace(text.find("label = \"y\"\n"), 12, "");
    auto r = parse_config(text, "run.toml", "", {"data.path=\"" + c.path + "\"", label_key});
    ASSERT_TRUE(r.ok()) << c.path << ": " << r.error().message;
    EXPECT_EQ(r->data.source, c.source) << c.path;
  }
  // Without a path: synthetic data when its keys are there, else the path is what is missing.
  std::string text = kBase;
  text.replace(text.find("path = \"d.csv\"\nlabel = \"y\"\n"), 26, "");
  auto missing = parse_config(text, "run.toml", "");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("run.toml: data.path is missing"), std::string::npos)
      << missing.error().message;
  auto synthetic = parse_config(text, "run.toml", "", {"data.shape=[4]", "data.classes=2", "data.samples=8"});
  ASSERT_TRUE(synthetic.ok()) << synthetic.error().message;
  EXPECT_EQ(synthetic->data.source, "synthetic");
  expect_set_errors(
      {{"data.path=\"arrays.npz\"", "data.path is an .npz archive, which trainrr does not read"}});
}

TEST(Config, NumbersPastFloat32AreRefused) {
  expect_set_errors(
      {{"train.optimizer.learning_rate=1e300",
        "run.toml (--set): train.optimizer.learning_rate is too large: float32 holds at most"}});
  auto c = parse_config(kBase, "run.toml", "", {"train.optimizer.learning_rate=3e38"});
  EXPECT_TRUE(c.ok()) << c.error().message;
  // A setting float32 rounds to 0 (a learning rate that trains nothing, an epsilon that divides by 0), or a
  // dropout rate it rounds to 1 (every unit dropped), is read (a recording made with one replays as it ran),
  // and a new run refuses it, saying where it was given.
  for (const auto& [set, expected] : std::vector<std::pair<std::string, std::string>>{
           {"train.optimizer.learning_rate=1e-50",
            "run.toml (--set): train.optimizer.learning_rate is too small: float32, in which the run uses "
            "it, "
            "rounds it to 0 (its smallest positive value is 1.4e-45): the run would train nothing"},
           {"train.optimizer.epsilon=1e-50", "run.toml (--set): train.optimizer.epsilon is too small"},
           {"model.layers[0]={type=\"Dropout\",rate=0.99999999}",
            "run.toml (--set): model.layers[0].rate is 0.99999999, which float32, in which the layer draws, "
            "rounds to 1"},
           {"model.layers[0]={type=\"BatchNormalization\",epsilon=1e-50}",
            "run.toml (--set): model.layers[0].epsilon is too small"}}) {
    auto tiny = parse_config(kBase, "run.toml", "", {set});
    ASSERT_TRUE(tiny.ok()) << tiny.error().message;
    EXPECT_EQ(new_run_problem(*tiny).rfind(expected, 0), 0u) << new_run_problem(*tiny);
  }
  // A negative one is out of range, and a value used in double (a test fraction) is no problem.
  expect_set_errors({{"train.optimizer.learning_rate=-1e-50", "must be positive, got -1e-50"}});
  for (const char* fine :
       {"train.optimizer.learning_rate=1e-40", "train.optimizer.beta_1=1e-50", "data.test_fraction=1e-50"}) {
    auto c = parse_config(kBase, "run.toml", "", {fine});
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(new_run_problem(*c), "") << fine;
  }
  for (const char* fine : {"train.optimizer.learning_rate=1e-40", "train.optimizer.beta_1=0"})
    EXPECT_TRUE(parse_config(kBase, "run.toml", "", {fine}).ok()) << fine;
}

TEST(Config, AMalformedStructuredValueInSetIsReportedNotTakenAsAString) {
  expect_set_errors({{"data.reshape=[8,8,", "--set data.reshape=[8,8,: the value is not valid TOML"},
                     {"model.layers[0]={type=\"Dense\",", "the value is not valid TOML"},
                     {"data.label=\"y", "the value is not valid TOML"}});
  // A bare word is still a string.
  auto c = parse_config(kBase, "run.toml", "", {"runtime.policy=deterministic"});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->runtime.policy, "deterministic");
}

TEST(Config, EverySeedTheOsCanDrawCanBeWrittenBack) {
  expect_set_errors({{"seed=-1", "seed must be an integer from 0 to 9223372036854775807"}});
  auto c = parse_config(kBase, "run.toml", "", {"seed=9223372036854775807"});
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(*c->seed, 9223372036854775807u);
}

TEST(Config, MissingFileIsNamed) {
  auto c = load_config("/nonexistent/run.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("/nonexistent/run.toml: cannot open"), std::string::npos);
}

}  // namespace
}  // namespace trainrr
