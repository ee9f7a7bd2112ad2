#pragma once
// How much memory this process may still take before the kernel refuses it or kills the process: what a run
// checks its tensors against before it allocates them.

#include <cstdint>
#include <optional>
#include <string>

namespace trainrr {

struct FreeMemory {
  uint64_t bytes = 0;
  std::string source;  // what says so: "MemAvailable and SwapFree in /proc/meminfo", "ulimit -v", ...
};

// The least of: the memory and swap the kernel counts available, its page cache included (MemAvailable and
// SwapFree in /proc/meminfo); all that the process's cgroup allows (memory.max and memory.swap.max: what the
// cgroup holds besides is not subtracted, as some of it is cache the kernel can drop); and what ulimit -v
// and ulimit -d leave of this process's address space and data (VmSize and VmData in /proc/self/status).
// Each is a bound that a process cannot pass: more than the least of them cannot be allocated and written.
// Nullopt where none of them can be read.
std::optional<FreeMemory> free_memory();

// The same from the text of those sources ("" where one is absent), for tests: meminfo is /proc/meminfo,
// status /proc/self/status, cgroup_max and cgroup_swap_max the cgroup's memory.max and memory.swap.max;
// rlimit_as and rlimit_data are the soft limits in bytes (nullopt: unlimited).
std::optional<FreeMemory> free_memory_from(const std::string& meminfo, const std::string& status,
                                           const std::string& cgroup_max, const std::string& cgroup_swap_max,
                                           std::optional<uint64_t> rlimit_as,
                                           std::optional<uint64_t> rlimit_data);

// A byte count for people: "812 B", "35.2 KiB", "4176.0 MiB", "12.0 GiB" (the unit below 10 of the next).
std::string human_bytes(uint64_t n);

}  // namespace trainrr
