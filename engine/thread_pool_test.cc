#include "engine/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <new>
#include <set>
#include <thread>

namespace trainrr {
namespace {

TEST(ThreadPool, RunsEveryTaskOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 3, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, [&](int64_t t, int th) {
        EXPECT_LT(th, threads);
        hits[t]++;
      });
      for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    }
  }
}

TEST(ThreadPool, UsesSeveralThreads) {
  ThreadPool pool(2);
  std::atomic<int> arrived{0};
  std::set<int> seen;
  std::mutex mu;
  // Each task waits for the other to start: only two threads at once can finish both.
  pool.parallel_for(2, [&](int64_t, int th) {
    arrived++;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (arrived.load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    std::lock_guard lock(mu);
    seen.insert(th);
  });
  EXPECT_EQ(arrived.load(), 2);
  EXPECT_EQ(seen.size(), 2u);
}

// A task that throws (out of memory, a failed check) on any thread: every other task still runs, and the
// exception reaches parallel_for's caller, who may go on using the pool.
TEST(ThreadPool, ATaskThatThrowsOnAnyThreadReachesTheCallerOnceEveryTaskHasRun) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (int64_t bad : {0, 1, 499, 999}) {
      std::atomic<int> ran{0};
      try {
        pool.parallel_for(1000, [&](int64_t t, int) {
          if (t == bad) throw std::bad_alloc();
          ran++;
        });
        ADD_FAILURE() << "no exception, " << threads << " threads";
      } catch (const std::bad_alloc&) {
      }
      // With one thread the loop stops at the throw; with several every other task has run.
      if (threads > 1) EXPECT_EQ(ran.load(), 999);
      std::atomic<int> again{0};
      pool.parallel_for(100, [&](int64_t, int) { again++; });
      EXPECT_EQ(again.load(), 100);
    }
  }
}

}  // namespace
}  // namespace trainrr
