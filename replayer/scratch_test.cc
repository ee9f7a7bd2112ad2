#include "replayer/scratch.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>

namespace trainrr {
namespace {
namespace fs = std::filesystem;

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

const uint8_t kBytes[] = {'a', ',', 'b', '\n'};

TEST(ScratchDir, IsAPrivateFolderRemovedWithItsFiles) {
  std::string path, file;
  {
    auto s = ScratchDir::create("trainrr-scratch-test");
    ASSERT_TRUE(s) << s.error().message;
    path = s->path();
    EXPECT_EQ(fs::status(path).permissions() & fs::perms::all, fs::perms::owner_all);
    auto f = s->write_file("dataset-0.csv", kBytes);
    ASSERT_TRUE(f) << f.error().message;
    file = *f;
    EXPECT_EQ(fs::path(file).parent_path(), fs::path(path));
    EXPECT_EQ(read(file), "a,b\n");
  }
  EXPECT_FALSE(fs::exists(file));
  EXPECT_FALSE(fs::exists(path));
}

TEST(ScratchDir, RefusesNamesThatAreNotOneComponentOfItsOwn) {
  auto s = ScratchDir::create("trainrr-scratch-test");
  ASSERT_TRUE(s) << s.error().message;
  for (const char* bad : {"", "../x.csv", "/tmp/x.csv", "a/b.csv", ".hidden", "..", "x\n.csv", "dataset 0.csv"}) {
    EXPECT_FALSE(is_scratch_file_name(bad)) << bad;
    EXPECT_FALSE(s->write_file(bad, kBytes)) << bad;
  }
  EXPECT_FALSE(is_scratch_file_name(std::string(64, 'a')));
  EXPECT_TRUE(is_scratch_file_name("dataset-1.npy"));
  EXPECT_TRUE(fs::is_empty(s->path()));
}

TEST(ScratchDir, NeverWritesThroughALinkPlantedInAFilesPlace) {
  const fs::path outside = fs::temp_directory_path() / ("trainrr-scratch-outside-" + std::to_string(::getpid()));
  std::ofstream(outside) << "keep";
  {
    auto s = ScratchDir::create("trainrr-scratch-test");
    ASSERT_TRUE(s) << s.error().message;
    fs::create_symlink(outside, fs::path(s->path()) / "dataset-0.csv");
    auto f = s->write_file("dataset-0.csv", kBytes);
    ASSERT_FALSE(f);
    EXPECT_NE(f.error().message.find("dataset-0.csv: cannot create: File exists"), std::string::npos)
        << f.error().message;
    // A dangling link is refused the same way.
    fs::create_symlink(fs::path(s->path()) / "nowhere", fs::path(s->path()) / "dataset-1.csv");
    EXPECT_FALSE(s->write_file("dataset-1.csv", kBytes));
    EXPECT_FALSE(fs::exists(fs::path(s->path()) / "nowhere"));
  }
  // The planted links went with the folder; what they pointed at is as it was.
  EXPECT_EQ(read(outside.string()), "keep");
  fs::remove(outside);
}

TEST(ScratchDir, SeveralAtOnceAreEachRemoved) {
  std::vector<std::string> paths;
  {
    auto a = ScratchDir::create("trainrr-scratch-test");
    auto b = ScratchDir::create("trainrr-scratch-test");
    ASSERT_TRUE(a && b);
    EXPECT_NE(a->path(), b->path());
    ASSERT_TRUE(a->write_file("x.csv", kBytes));
    ASSERT_TRUE(b->write_file("x.csv", kBytes));
    ScratchDir moved = std::move(*a);
    paths = {moved.path(), b->path()};
  }
  for (const auto& p : paths) EXPECT_FALSE(fs::exists(p)) << p;
}

}  // namespace
}  // namespace trainrr
