#include "engine/data/file_io.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace trainrr {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

Error system_error(const std::string& path, const char* what) {
  return Error{path + ": cannot " + what + ": " + std::strerror(errno)};
}

}  // namespace

Result<std::string> read_file_bytes(const std::string& path) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) return system_error(path, "open");
  std::string bytes;
  char buf[1 << 16];
  // Read to the end rather than trusting a size from stat: pipes and /proc files report none.
  for (;;) {
    const size_t got = std::fread(buf, 1, sizeof buf, f.get());
    bytes.append(buf, got);
    if (got < sizeof buf) break;
  }
  if (std::ferror(f.get())) return system_error(path, "read");
  return bytes;
}

Status write_file_bytes(const std::string& path, std::string_view bytes) {
  File f(std::fopen(path.c_str(), "wb"));
  if (!f) return system_error(path, "create");
  if (std::fwrite(bytes.data(), 1, bytes.size(), f.get()) != bytes.size()) return system_error(path, "write");
  std::FILE* raw = f.release();
  if (std::fclose(raw) != 0) return system_error(path, "write");
  return {};
}

}  // namespace trainrr

namespace trainrr {

bool array_bytes_within(std::span<const int64_t> dims, uint64_t item_bytes, uint64_t limit, uint64_t& bytes) {
  for (int64_t d : dims) {
    if (d < 0) return false;
    // A zero dimension empties the array whatever the others claim.
    if (d == 0) return bytes = 0, true;
  }
  uint64_t n = item_bytes;
  for (int64_t d : dims) {
    if (n > limit / static_cast<uint64_t>(d)) return false;
    n *= static_cast<uint64_t>(d);
  }
  if (n > limit) return false;
  bytes = n;
  return true;
}

}  // namespace trainrr
