#pragma once
// A fixed pool of worker threads; the calling thread takes part in every parallel loop.
// Tasks are handed out dynamically (an atomic counter), so which thread runs which task, and in which
// order tasks finish, varies from run to run: kernels that must be deterministic never let that order
// reach their results.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace trainrr {

class ThreadPool {
 public:
  // threads >= 1, the caller included. Throws std::system_error when the OS cannot start that many.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_; }

  // Runs fn(task, thread) for task in [0, tasks); returns when all have run. Not reentrant.
  void parallel_for(int64_t tasks, const std::function<void(int64_t task, int thread)>& fn);

  // The number of cores this process may run on (its CPU affinity: taskset, a cluster's cpuset), else the
  // number the OS reports (at least 1).
  static int hardware_threads();

 private:
  void stop_workers();
  // One parallel_for. Workers hold it by shared_ptr: a worker that wakes late, after the caller has
  // returned, finds no task left and touches nothing of the caller's (fn is read only for a claimed task,
  // and a claimed task keeps the caller waiting).
  struct Job {
    const std::function<void(int64_t, int)>* fn = nullptr;
    int64_t tasks = 0;
    std::atomic<int64_t> next{0};      // the next task to hand out
    std::atomic<int64_t> finished{0};  // tasks that have run
    // The first exception a task threw (out of memory, a failed check), rethrown by parallel_for once every
    // task has run or thrown: no task is left holding the caller's function after parallel_for returns.
    std::mutex error_mu;
    std::exception_ptr error;
  };
  void worker(int thread);
  static void run_tasks(Job& job, int thread);

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::shared_ptr<Job> job_;  // the latest job; guarded by mu_
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
};

}  // namespace trainrr
