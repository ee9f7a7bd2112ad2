#include "engine/thread_pool.h"

#if defined(__linux__)
#include <sched.h>
#endif

#include "engine/result.h"

namespace trainrr {

ThreadPool::ThreadPool(int threads) : threads_(threads) {
  TRAINRR_CHECK(threads >= 1, "a pool needs at least one thread");
  try {
    for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { worker(t); });
  } catch (...) {
    stop_workers();  // the destructor does not run for a constructor that throws
    throw;
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
}

int ThreadPool::hardware_threads() {
#if defined(__linux__)
  // The cores this process may run on: taskset or a cluster's cpuset confines it to fewer than the machine
  // has.
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void ThreadPool::run_tasks(Job& job, int thread) {
  for (;;) {
    const int64_t t = job.next.fetch_add(1, std::memory_order_relaxed);
    if (t >= job.tasks) return;
    try {
      (*job.fn)(t, thread);
    } catch (...) {
      std::lock_guard lock(job.error_mu);
      if (!job.error) job.error = std::current_exception();
    }
    if (job.finished.fetch_add(1, std::memory_order_acq_rel) + 1 == job.tasks) job.finished.notify_one();
  }
}

void ThreadPool::parallel_for(int64_t tasks, const std::function<void(int64_t, int)>& fn) {
  if (tasks <= 0) return;
  if (threads_ == 1 || tasks == 1) {
    for (int64_t t = 0; t < tasks; ++t) fn(t, 0);
    return;
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->tasks = tasks;
  {
    std::lock_guard lock(mu_);
    job_ = job;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  run_tasks(*job, 0);
  // Wait for the tasks other threads claimed, not for the threads: on a loaded machine a worker may not
  // be scheduled until long after the caller has run every task itself.
  for (int i = 0; i < 2000 && job->finished.load(std::memory_order_acquire) != tasks; ++i) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  for (int64_t f; (f = job->finished.load(std::memory_order_acquire)) != tasks;) job->finished.wait(f);
  if (job->error) std::rethrow_exception(job->error);
}

void ThreadPool::worker(int thread) {
  uint64_t seen = 0;
  for (;;) {
    // Spin briefly before sleeping: training steps issue many short parallel loops back to back.
    for (int i = 0; i < 4000 && generation_.load(std::memory_order_acquire) == seen; ++i) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    }
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
      if (stop_) return;
      seen = generation_.load(std::memory_order_acquire);
      job = job_;
    }
    run_tasks(*job, thread);
  }
}

}  // namespace trainrr
