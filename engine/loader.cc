#include "engine/loader.h"

#include <algorithm>
#include <cstring>

namespace trainrr {

Loader::Loader(const Dataset& data, int64_t batch_size, bool first_ready, int workers)
    : data_(data), batch_size_(batch_size), first_ready_(first_ready) {
  if (!first_ready_) return;
  try {
    for (int w = 0; w < std::max(1, workers); ++w) workers_.emplace_back([this] { work(); });
  } catch (...) {
    stop_workers();  // the destructor does not run for a constructor that throws
    throw;
  }
}

Loader::~Loader() { stop_workers(); }

void Loader::stop_workers() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
}

void Loader::start(std::vector<uint32_t> order, const std::vector<uint32_t>& done) {
  std::unique_lock lock(mu_);
  // A gather of the previous epoch reads order_ outside the lock: let it finish first.
  idle_cv_.wait(lock, [this] { return in_flight_ == 0; });
  order_ = std::move(order);
  const int64_t n = static_cast<int64_t>(order_.size());
  batches_ = n / batch_size_ + (n % batch_size_ != 0);  // ceil, without overflow for a huge batch size
  taken_.assign(batches_, 0);
  for (uint32_t b : done) {
    TRAINRR_CHECK(b < batches_, "a resumed epoch names a batch it does not have");
    taken_[b] = 1;
  }
  next_ordered_ = 0;
  if (first_ready_) {
    slots_.assign(batches_, Batch{});
    ready_.assign(batches_, 0);
    ready_order_.clear();
    next_to_gather_ = 0;
    lock.unlock();
    work_cv_.notify_all();
  }
}

Batch Loader::gather(int64_t b) const {
  const int64_t lo = b * batch_size_, hi = std::min<int64_t>(lo + batch_size_, order_.size());
  Shape shape = data_.x.shape;
  shape[0] = hi - lo;
  Batch batch{Tensor(shape), std::vector<float>(hi - lo)};
  const int64_t row = shape_size(data_.sample_shape());
  for (int64_t i = lo; i < hi; ++i) {
    std::memcpy(batch.x.ptr() + (i - lo) * row, data_.x.ptr() + order_[i] * row, row * sizeof(float));
    batch.y[i - lo] = data_.y[order_[i]];
  }
  return batch;
}

void Loader::work() {
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [this] {
      while (next_to_gather_ < batches_ && taken_[next_to_gather_]) ++next_to_gather_;
      return stop_ || next_to_gather_ < batches_;
    });
    if (stop_) return;
    const int64_t b = next_to_gather_++;
    ++in_flight_;
    lock.unlock();
    Batch batch = gather(b);
    lock.lock();
    slots_[b] = std::move(batch);
    ready_[b] = 1;
    ready_order_.push_back(b);
    if (--in_flight_ == 0) idle_cv_.notify_all();
    ready_cv_.notify_all();
  }
}

int64_t Loader::propose() {
  if (!first_ready_) {
    while (next_ordered_ < batches_ && taken_[next_ordered_]) ++next_ordered_;
    return next_ordered_;
  }
  std::unique_lock lock(mu_);
  ready_cv_.wait(lock, [this] {
    while (!ready_order_.empty() && taken_[ready_order_.front()]) ready_order_.pop_front();
    return !ready_order_.empty();
  });
  return ready_order_.front();
}

bool Loader::can_take(int64_t b) {
  if (b < 0 || b >= batches_) return false;
  if (!first_ready_) return !taken_[b];
  std::unique_lock lock(mu_);
  return !taken_[b];
}

Batch Loader::take(int64_t b) {
  TRAINRR_CHECK(b >= 0 && b < batches_ && !taken_[b], "batch " + std::to_string(b) + " cannot be handed out");
  if (!first_ready_) {
    taken_[b] = 1;
    return gather(b);
  }
  std::unique_lock lock(mu_);
  ready_cv_.wait(lock, [&] { return ready_[b] != 0; });
  taken_[b] = 1;
  return std::move(slots_[b]);
}

}  // namespace trainrr
