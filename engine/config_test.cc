#include "engine/config.h"

#include <gtest/gtest.h>

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
       {"model.layers[0].units=\"3\"", "run.toml (--set): model.layers[0].units must be an integer"}});
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
                     {"train.optimizer.learning_rate=-1", "learning_rate must be positive"},
                     {"runtime.policy=fastest", "runtime.policy must be default, deterministic or autotune"},
                     {"data.test_fraction=1.5", "data.test_fraction must be in [0, 1)"},
                     {"train.optimizer.type=adagrad", "train.optimizer.type must be"},
                     {"nonsense", "expected key=value"}});
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

TEST(Config, MissingFileIsNamed) {
  auto c = load_config("/nonexistent/run.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("/nonexistent/run.toml: cannot open"), std::string::npos);
}

}  // namespace
}  // namespace trainrr
