// The data readers' fuzzing seeds (engine/data/fuzz_corpus) are valid files: each parses, through the same
// in-memory entry points the fuzzer calls, to what the file says.

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "engine/data/csv.h"
#include "engine/data/file_io.h"
#include "engine/data/idx.h"
#include "engine/data/npy.h"

namespace trainrr {
namespace {

TEST(DataReaderSeeds, EverySeedParses) {
  const std::filesystem::path dir = std::filesystem::path(TRAINRR_SOURCE_DIR) / "engine/data/fuzz_corpus";
  std::map<int, int> per_reader;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    Result<std::string> file = read_file_bytes(entry.path().string());
    ASSERT_TRUE(file.ok()) << file.error().message;
    ASSERT_FALSE(file->empty()) << entry.path();
    const std::string_view bytes = std::string_view(*file).substr(1);
    const std::string name = entry.path().filename().string();
    const int reader = static_cast<unsigned char>((*file)[0]) % 3;
    ++per_reader[reader];
    if (reader == 0) {
      const std::string label = name == "csv_basic" ? "y" : "label";
      auto d = parse_csv(bytes, name, label);
      ASSERT_TRUE(d.ok()) << name << ": " << d.error().message;
      EXPECT_GT(d->rows(), 0) << name;
    } else {
      auto t = reader == 1 ? parse_npy(bytes, name) : parse_idx(bytes, name);
      ASSERT_TRUE(t.ok()) << name << ": " << t.error().message;
      EXPECT_GT(t->size(), 0) << name;
    }
  }
  EXPECT_GE(per_reader[0], 2);
  EXPECT_GE(per_reader[1], 2);
  EXPECT_GE(per_reader[2], 2);
}

TEST(DataReaderSeeds, IdxSeedHoldsItsBigEndianValues) {
  const std::filesystem::path path =
      std::filesystem::path(TRAINRR_SOURCE_DIR) / "engine/data/fuzz_corpus/idx_f4";
  Result<std::string> file = read_file_bytes(path.string());
  ASSERT_TRUE(file.ok()) << file.error().message;
  auto t = parse_idx(std::string_view(*file).substr(1), "idx_f4");
  ASSERT_TRUE(t.ok()) << t.error().message;
  ASSERT_EQ(t->size(), 3);
  EXPECT_EQ((*t)[0], 1.5f);
  EXPECT_EQ((*t)[1], -2.0f);
  EXPECT_EQ((*t)[2], 0.0f);
}

}  // namespace
}  // namespace trainrr
