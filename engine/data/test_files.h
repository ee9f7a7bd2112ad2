#pragma once
// For the data tests only: files in a per-process temporary folder, named after the running test.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace trainrr::testing {

inline std::filesystem::path temp_dir() {
  return std::filesystem::temp_directory_path() / ("trainrr_data_test_" + std::to_string(::getpid()));
}

// Removes this process's folder when the test program exits.
struct TempDirRemover {
  ~TempDirRemover() {
    std::error_code ec;
    std::filesystem::remove_all(temp_dir(), ec);
  }
};
inline TempDirRemover temp_dir_remover;

inline std::string temp_file(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const auto dir = temp_dir();
  std::filesystem::create_directories(dir);
  return (dir / (std::string(info->test_suite_name()) + "." + info->name() + "." + name)).string();
}

inline std::string write_temp(const std::string& name, std::string_view bytes) {
  const std::string path = temp_file(name);
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// Paths that exist but are not regular files, for the readers to refuse: a directory, a named pipe without a
// writer (opening it for reading waits for one) and /dev/zero (reading it never ends).
inline std::vector<std::string> not_regular_files() {
  const std::string dir = temp_file("dir");
  std::filesystem::create_directories(dir);
  const std::string fifo = temp_file("fifo");
  EXPECT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << fifo;
  std::vector<std::string> paths{dir, fifo};
  if (std::filesystem::exists("/dev/zero")) paths.push_back("/dev/zero");
  return paths;
}

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace trainrr::testing
