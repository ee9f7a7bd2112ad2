#pragma once
// Helpers for end-to-end tests: temporary folders, running the trainrr binary, example paths.

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

// TRAINRR_ASAN: 1 in a build with AddressSanitizer (GCC says so with __SANITIZE_ADDRESS__, clang with
// __has_feature), else 0.
#if defined(__SANITIZE_ADDRESS__)
#define TRAINRR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TRAINRR_ASAN 1
#endif
#endif
#ifndef TRAINRR_ASAN
#define TRAINRR_ASAN 0
#endif

namespace trainrr::testing {

inline std::string example(const std::string& name) {
  return std::string(TRAINRR_SOURCE_DIR) + "/examples/" + name;
}

// A fresh folder under the system's temporary directory, removed when the object goes.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("trainrr-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(file(name), std::ios::binary) << text;
    return file(name);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `ENV trainrr ARGS` through the shell, capturing its output and exit code.
inline CommandResult run_trainrr_env(const std::string& env, const std::string& args) {
  CommandResult r;
  const std::string cmd = env + " " + std::string(TRAINRR_BIN) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// Runs `trainrr ARGS` through the shell, capturing its output and exit code.
inline CommandResult run_trainrr(const std::string& args) { return run_trainrr_env("", args); }

}  // namespace trainrr::testing
