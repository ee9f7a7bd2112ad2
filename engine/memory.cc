#include "engine/memory.h"

#include <sys/resource.h>

#include <cstdio>
#include <sstream>

#include "engine/data/file_io.h"

namespace trainrr {
namespace {

// A file's text, or "" where it cannot be read (a limit this machine does not have).
std::string file_text(const std::string& path) {
  Result<std::string> bytes = read_file_bytes(path);
  return bytes ? *bytes : std::string();
}

// "Key:   1234 kB" in /proc/meminfo or /proc/self/status, in bytes.
std::optional<uint64_t> kb_field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    unsigned long long kb = 0;
    char unit[8] = {};
    if (std::sscanf(line.c_str() + key.size() + 1, "%llu %7s", &kb, unit) < 1) return std::nullopt;
    if (kb > (UINT64_MAX >> 10)) return std::nullopt;
    return static_cast<uint64_t>(kb) << 10;
  }
  return std::nullopt;
}

// A cgroup limit's text: a byte count, or "max" (cgroup v2) or a count near 2^63 (v1) for none.
std::optional<uint64_t> cgroup_limit(const std::string& text) {
  unsigned long long n = 0;
  if (text.empty() || text.rfind("max", 0) == 0 || std::sscanf(text.c_str(), "%llu", &n) != 1)
    return std::nullopt;
  if (n >= (uint64_t{1} << 62)) return std::nullopt;
  return n;
}

void take_least(std::optional<FreeMemory>& least, uint64_t bytes, const std::string& source) {
  if (!least || bytes < least->bytes) least = FreeMemory{bytes, source};
}

// The process's cgroup folder under a controller's mount: /proc/self/cgroup's line for it ("0::PATH" for
// cgroup v2, "N:memory:PATH" for v1's memory controller) places it there, or it is the mount itself (a cgroup
// namespace shows the process its own cgroup as the root).
std::string cgroup_folder(const std::string& mount, bool v2) {
  std::istringstream in(file_text("/proc/self/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    const bool match =
        v2 ? line.rfind("0::", 0) == 0 : ("," + controllers + ",").find(",memory,") != std::string::npos;
    if (match && path != "/" && !file_text(mount + path + "/cgroup.procs").empty()) return mount + path;
  }
  return mount;
}

}  // namespace

std::optional<FreeMemory> free_memory_from(const std::string& meminfo, const std::string& status,
                                           const std::string& cgroup_max, const std::string& cgroup_swap_max,
                                           std::optional<uint64_t> rlimit_as,
                                           std::optional<uint64_t> rlimit_data) {
  std::optional<FreeMemory> least;
  const auto available = kb_field(meminfo, "MemAvailable");
  const auto swap_free = kb_field(meminfo, "SwapFree");
  if (available)
    take_least(least, *available + swap_free.value_or(0), "MemAvailable and SwapFree in /proc/meminfo");
  // A cgroup's swap limit, where it has none of its own ("max", or not known), is the machine's.
  if (const auto max = cgroup_limit(cgroup_max)) {
    const auto swap = cgroup_limit(cgroup_swap_max);
    if (swap || swap_free)
      take_least(least, *max + (swap ? *swap : *swap_free), "the memory limit of this process's cgroup");
  }
  if (rlimit_as) {
    const uint64_t used = kb_field(status, "VmSize").value_or(0);
    take_least(least, *rlimit_as > used ? *rlimit_as - used : 0, "the address-space limit (ulimit -v)");
  }
  if (rlimit_data) {
    const uint64_t used = kb_field(status, "VmData").value_or(0);
    take_least(least, *rlimit_data > used ? *rlimit_data - used : 0, "the data limit (ulimit -d)");
  }
  return least;
}

std::optional<FreeMemory> free_memory() {
  std::string cgroup_max, cgroup_swap_max;
  const std::string v2 = cgroup_folder("/sys/fs/cgroup", true);
  cgroup_max = file_text(v2 + "/memory.max");
  if (!cgroup_max.empty()) {
    cgroup_swap_max = file_text(v2 + "/memory.swap.max");
  } else {
    // cgroup v1: memory.memsw.limit_in_bytes bounds memory and swap together.
    const std::string v1 = cgroup_folder("/sys/fs/cgroup/memory", false);
    cgroup_max = file_text(v1 + "/memory.limit_in_bytes");
    const auto mem = cgroup_limit(cgroup_max);
    const auto memsw = cgroup_limit(file_text(v1 + "/memory.memsw.limit_in_bytes"));
    if (mem && memsw && *memsw >= *mem) cgroup_swap_max = std::to_string(*memsw - *mem);
  }
  auto limit = [](int resource) -> std::optional<uint64_t> {
    rlimit r{};
    if (::getrlimit(resource, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return std::nullopt;
    return static_cast<uint64_t>(r.rlim_cur);
  };
  return free_memory_from(file_text("/proc/meminfo"), file_text("/proc/self/status"), cgroup_max,
                          cgroup_swap_max, limit(RLIMIT_AS), limit(RLIMIT_DATA));
}

std::string human_bytes(uint64_t n) {
  char buf[32];
  if (n < 10 * 1024)
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  else if (n < 10ull * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f KiB", n / 1024.0);
  else if (n < 10ull * 1024 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f MiB", n / 1048576.0);
  else
    std::snprintf(buf, sizeof buf, "%.1f GiB", n / 1073741824.0);
  return buf;
}

}  // namespace trainrr
