#pragma once
// A fixed pool of worker threads; the calling thread takes part in every parallel loop.
// Tasks are handed out dynamically (an atomic counter), so which thread runs which task, and in which
// order tasks finish, varies from run to run: kernels that must be deterministic never let that order
// reach their results.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace trainrr {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads >= 1, the caller included
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_; }

  // Runs fn(task, thread) for task in [0, tasks); returns when all have run. Not reentrant.
  void parallel_for(int64_t tasks, const std::function<void(int64_t task, int thread)>& fn);

  // The number of cores the OS reports (at least 1).
  static int hardware_threads();

 private:
  void worker(int thread);
  void run_tasks(int thread);

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int64_t, int)>* job_ = nullptr;
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<uint64_t> generation_{0};
  int active_ = 0;  // workers still inside the current job
  bool stop_ = false;
};

}  // namespace trainrr
