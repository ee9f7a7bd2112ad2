#pragma once
// The data loader: hands out batches of each epoch's order. Two implementations, selected like kernels at
// site "data/loader": `loader__ordered` gathers each batch when asked, in order; `loader__first_ready` has
// worker threads gather every batch and hands out whichever is ready first, as multi-worker loaders do, so
// the order can differ from run to run. Either way the hooks decide last (batch_order), and a forced batch
// is waited for. The workers live as long as the loader and wait between epochs, as persistent workers do.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "engine/data/dataset.h"

namespace trainrr {

struct Batch {
  Tensor x;               // [rows, ...sample]
  std::vector<float> y;   // rows labels
};

class Loader {
 public:
  // Throws std::system_error when the OS cannot start the workers (first_ready), after stopping those it
  // started.
  Loader(const Dataset& data, int64_t batch_size, bool first_ready, int workers);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Starts an epoch. `order`: its row order; `done`: batches already handed out (a resumed epoch). The
  // previous epoch's batches must all have been handed out, or none gathered (see abandon()).
  void start(std::vector<uint32_t> order, const std::vector<uint32_t>& done = {});
  int64_t batches() const { return batches_; }
  // The batch the loader would hand out next (first_ready: the first one gathered).
  int64_t propose();
  // Whether batch b is in this epoch and not handed out yet: what take() requires.
  bool can_take(int64_t b);
  // Hands out batch b (the proposal, or one the hooks forced); b must not have been handed out.
  Batch take(int64_t b);

 private:
  Batch gather(int64_t b) const;
  void work();
  void stop_workers();

  const Dataset& data_;
  int64_t batch_size_;
  bool first_ready_;
  std::vector<uint32_t> order_;
  int64_t batches_ = 0;
  std::vector<char> taken_;
  int64_t next_ordered_ = 0;

  // first_ready
  std::mutex mu_;
  std::condition_variable ready_cv_;  // a batch is gathered
  std::condition_variable work_cv_;   // an epoch started, or the loader stops
  std::condition_variable idle_cv_;   // no gather is in flight
  std::vector<Batch> slots_;
  std::vector<char> ready_;
  std::deque<int64_t> ready_order_;
  int64_t next_to_gather_ = 0;
  int in_flight_ = 0;  // gathers running outside the lock
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace trainrr
