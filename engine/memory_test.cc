#include "engine/memory.h"

#include <gtest/gtest.h>

namespace trainrr {
namespace {

const char* kMeminfo =
    "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n"
    "SwapTotal:       2000000 kB\nSwapFree:        1000000 kB\n";
const char* kStatus = "Name:\ttrainrr\nVmSize:\t  300000 kB\nVmData:\t  100000 kB\n";

TEST(FreeMemory, TheKernelsCountIsAvailableMemoryAndFreeSwap) {
  auto m = free_memory_from(kMeminfo, kStatus, "", "", std::nullopt, std::nullopt);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->bytes, uint64_t{9000000} << 10);
  EXPECT_EQ(m->source, "MemAvailable and SwapFree in /proc/meminfo");
}

TEST(FreeMemory, ACgroupLimitBelowItIsTheBoundWithItsOwnSwapOrTheMachines) {
  auto m = free_memory_from(kMeminfo, kStatus, "1073741824\n", "0\n", std::nullopt, std::nullopt);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->bytes, uint64_t{1} << 30);
  EXPECT_EQ(m->source, "the memory limit of this process's cgroup");
  // "max" swap (v2), or none known (v1 without memsw): the machine's free swap.
  for (const char* swap : {"max\n", ""}) {
    m = free_memory_from(kMeminfo, kStatus, "1073741824\n", swap, std::nullopt, std::nullopt);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->bytes, (uint64_t{1} << 30) + (uint64_t{1000000} << 10)) << swap;
  }
  // No limit: "max" (v2), or v1's count near 2^63.
  for (const char* none : {"max\n", "9223372036854771712\n"}) {
    m = free_memory_from(kMeminfo, kStatus, none, "", std::nullopt, std::nullopt);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->source, "MemAvailable and SwapFree in /proc/meminfo") << none;
  }
}

TEST(FreeMemory, UlimitsLeaveTheirLimitLessWhatTheProcessHolds) {
  auto m = free_memory_from(kMeminfo, kStatus, "", "", uint64_t{1000000} << 10, std::nullopt);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->bytes, uint64_t{700000} << 10);
  EXPECT_EQ(m->source, "the address-space limit (ulimit -v)");
  m = free_memory_from(kMeminfo, kStatus, "", "", std::nullopt, uint64_t{150000} << 10);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->bytes, uint64_t{50000} << 10);
  EXPECT_EQ(m->source, "the data limit (ulimit -d)");
  // A limit the process already passed leaves nothing.
  m = free_memory_from(kMeminfo, kStatus, "", "", uint64_t{1000} << 10, std::nullopt);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->bytes, 0u);
}

TEST(FreeMemory, NothingReadableIsNoBound) {
  EXPECT_FALSE(free_memory_from("", "", "", "", std::nullopt, std::nullopt));
  EXPECT_FALSE(free_memory_from("garbage\n", "", "max\n", "", std::nullopt, std::nullopt));
}

TEST(FreeMemory, ThisMachineSaysSomething) {
  auto m = free_memory();
  ASSERT_TRUE(m);  // /proc/meminfo is there on Linux
  EXPECT_GT(m->bytes, 0u);
}

TEST(FreeMemory, HumanBytes) {
  EXPECT_EQ(human_bytes(1000), "1000 B");
  EXPECT_EQ(human_bytes(uint64_t{36} << 10), "36.0 KiB");
  EXPECT_EQ(human_bytes(uint64_t{5} << 29), "2560.0 MiB");
  EXPECT_EQ(human_bytes(uint64_t{12} << 30), "12.0 GiB");
}

}  // namespace
}  // namespace trainrr
