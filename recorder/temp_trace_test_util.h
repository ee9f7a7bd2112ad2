#pragma once
// A trace path in the system's temporary folder, removed when the test is done with it (tests only).

#include <filesystem>
#include <random>
#include <string>

namespace trainrr::testing {

class TempFile {
 public:
  explicit TempFile(const std::string& stem) {
    std::random_device rd;
    path_ = (std::filesystem::temp_directory_path() / (stem + "-" + std::to_string(rd()) + ".trr")).string();
  }
  ~TempFile() { std::filesystem::remove(path_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace trainrr::testing
