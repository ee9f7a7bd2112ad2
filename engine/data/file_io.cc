#include "engine/data/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
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

// Opens `path` for reading if it is a regular file. O_NONBLOCK keeps the open of a named pipe from waiting
// for a writer; it changes nothing for a regular file.
Result<File> open_regular_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return system_error(path, "open");
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    Error e = system_error(path, "stat");
    ::close(fd);
    return e;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    const char* kind = special_file_kind(path);
    return Error{path + ": not a regular file" +
                 (kind ? std::string(" (it is ") + kind + ")" : std::string())};
  }
  File f(::fdopen(fd, "rb"));
  if (!f) {
    Error e = system_error(path, "open");
    ::close(fd);
    return e;
  }
  return f;
}

}  // namespace

const char* special_file_kind(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  switch (fs::status(path, ec).type()) {
    case fs::file_type::directory:
      return "a directory";
    case fs::file_type::character:
      return "a character device";
    case fs::file_type::block:
      return "a block device";
    case fs::file_type::fifo:
      return "a named pipe";
    case fs::file_type::socket:
      return "a socket";
    case fs::file_type::unknown:
      return "not a file";
    default:
      return nullptr;
  }
}

Result<std::string> read_file_bytes(const std::string& path) {
  Result<File> opened = open_regular_file(path);
  if (!opened) return opened.error();
  File f = std::move(opened).value();
  std::string bytes;
  char buf[1 << 16];
  // Read to the end rather than trusting a size from stat: /proc files report a size of 0.
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

bool float64_to_float32(const unsigned char* p, std::endian order, std::span<const int64_t> dims,
                        std::vector<float>& out, std::string& problem) {
  for (size_t i = 0; i < out.size(); ++i) {
    const unsigned char* at = p + i * sizeof(double);
    const double d = order == std::endian::little ? load_le<double>(at) : load_be<double>(at);
    out[i] = static_cast<float>(d);
    if (!std::isinf(out[i]) || std::isinf(d)) continue;
    const size_t per_row = dims.size() < 2 ? 1 : out.size() / static_cast<size_t>(dims[0]);
    char text[32];
    const auto [end, ec] = std::to_chars(text, text + sizeof text, d);  // shortest: 1e+300
    problem = "row " + std::to_string(i / per_row) + " holds " +
              std::string(text, ec == std::errc() ? end : text) + ", which float32 cannot hold";
    return false;
  }
  return true;
}

}  // namespace trainrr
