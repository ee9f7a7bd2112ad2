#include "engine/local_group.h"

#include <algorithm>
#include <cstring>

namespace trainrr {

class LocalGroup::Member : public Collective {
 public:
  Member(LocalGroup& group, int rank) : group_(&group), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return group_->size_; }
  uint64_t broadcast(uint64_t value) override { return group_->broadcast(rank_, value); }
  void allreduce(std::string_view variant, const std::vector<std::span<const float>>& shards, std::span<float> out,
                 CollectiveCall& call) override {
    group_->allreduce(rank_, variant, shards, out, call);
  }
  CollectiveSettings settings() const override { return group_->settings_; }

 private:
  LocalGroup* group_;
  int rank_;
};

LocalGroup::LocalGroup(int size, CollectiveSettings settings, int first, int local, GroupExchange* exchange)
    : size_(size), settings_(std::move(settings)), first_(first), local_(local < 0 ? size : local), exchange_(exchange) {
  for (int r = 0; r < local_; ++r) members_.push_back(std::make_unique<Member>(*this, first_ + r));
  shards_.resize(size);
  variants_.resize(size);
}

LocalGroup::~LocalGroup() = default;

Collective& LocalGroup::member(int rank) { return *members_.at(rank - first_); }

void LocalGroup::abort(const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (aborted_.empty()) aborted_ = why.empty() ? "a rank stopped" : why;
  cv_.notify_all();
}

void LocalGroup::wait_for_all(std::unique_lock<std::mutex>& lock, uint64_t generation) {
  cv_.wait(lock, [&] { return generation_ != generation || !aborted_.empty(); });
  if (generation_ == generation) throw GroupAborted(aborted_);
}

uint64_t LocalGroup::broadcast(int rank, uint64_t value) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!aborted_.empty()) throw GroupAborted(aborted_);
  const uint64_t generation = generation_;
  if (rank == 0) bcast_value_ = value;
  if (++arrived_ == local_) {
    if (exchange_) bcast_value_ = exchange_->broadcast(bcast_value_);
    // Rank 0 may deposit the next broadcast's value before a slow rank reads this one: one slot per parity.
    bcast_done_[generation % 2] = bcast_value_;
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
  } else {
    wait_for_all(lock, generation);
  }
  return bcast_done_[generation % 2];
}

void LocalGroup::allreduce(int rank, std::string_view variant, const std::vector<std::span<const float>>& shards,
                           std::span<float> out, CollectiveCall& call) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!aborted_.empty()) throw GroupAborted(aborted_);
  const uint64_t generation = generation_;
  auto& mine = shards_[rank];
  mine.clear();
  for (const auto& s : shards) mine.emplace_back(s.begin(), s.end());
  arrivals_.push_back(static_cast<uint32_t>(rank));
  variants_[rank] = variant;
  if (rank == 0) forced_order_ = call.order;
  if (++arrived_ == local_) {
    // The last rank in computes for all.
    arrived_ = 0;
    error_.clear();
    const size_t n = out.size();
    if (exchange_) {
      // Every rank's shards from every process (ranks in order, the same count of shards each).
      const size_t per = shards.size();
      std::vector<float> mine;
      for (int r = first_; r < first_ + local_; ++r)
        for (const auto& s : shards_[r]) mine.insert(mine.end(), s.begin(), s.end());
      const std::vector<float> all = exchange_->allgather(mine);
      for (int r = 0; r < size_; ++r) {
        shards_[r].assign(per, std::vector<float>(n));
        for (size_t k = 0; k < per; ++k)
          std::copy_n(all.begin() + (static_cast<size_t>(r) * per + k) * n, n, shards_[r][k].begin());
      }
      forced_order_ = exchange_->broadcast(forced_order_);
      // Without a forced order the ranks of other processes did not arrive here: rank order.
      arrivals_.resize(size_);
      for (int r = 0; r < size_; ++r) arrivals_[r] = static_cast<uint32_t>(r);
    }
    result_.assign(n, 0.0f);
    described_ = CollectiveCall{};
    std::vector<std::vector<float>> partial(size_, std::vector<float>(n));
    std::vector<std::span<const float>> partials;
    for (int r = 0; r < size_; ++r) {
      std::vector<std::span<const float>> parts(shards_[r].begin(), shards_[r].end());
      tree_sum(parts, partial[r]);
      partials.emplace_back(partial[r]);
    }
    const int total_shards = size_ * static_cast<int>(shards.size());
    // One allreduce has one variant. Ranks that chose different ones (a replay forcing the variant on some
    // ranks only) have no result: the last rank in would otherwise decide it, by chance.
    std::string others;
    for (int r = first_ + 1; r < first_ + local_; ++r)
      if (variants_[r] != variants_[first_]) others += ", rank " + std::to_string(r) + " " + variants_[r];
    if (!others.empty()) {
      error_ = "the ranks called one allreduce with different variants (rank " + std::to_string(first_) +
               " " + variants_[first_] + others + "): one allreduce has one variant";
    } else if (variant == kAllreduceTree) {
      tree_sum(partials, result_);
      described_.algorithm = tree_description(total_shards, size_);
      described_.forced = true;
    } else if (variant == kAllreduceExact) {
      std::vector<std::span<const float>> all;
      for (const auto& r : shards_)
        for (const auto& s : r) all.emplace_back(s);
      exact_sum(all, result_);
      described_.algorithm = kExactDescription;
      described_.forced = true;
    } else if (variant == kAllreduceArrival) {
      order_ = forced_order_.size() == static_cast<size_t>(size_) ? forced_order_ : arrivals_;
      ordered_sum(partials, order_, result_);
      described_.algorithm = kArrivalDescription;
      described_.forced = true;
    } else if (variant == kAllreduceMpi) {
      const MpiAlgorithm a = describe_mpi_algorithm(settings_, size_, static_cast<int64_t>(n * sizeof(float)), described_);
      const MpiAlgorithm effective = ompi414_effective(a, size_, static_cast<int64_t>(n), settings_.segment_bytes);
      if (!ompi414_emulate(effective, partials, result_))
        error_ = std::string("allreduce__mpi with Open MPI's ") + mpi_algorithm_name(static_cast<int>(effective)) +
                 " algorithm over " + std::to_string(size_) + " ranks cannot be emulated in one process";
    } else {
      error_ = "unknown allreduce variant " + std::string(variant);
    }
    arrivals_.clear();
    ++generation_;
    cv_.notify_all();
  } else {
    wait_for_all(lock, generation);
  }
  if (!error_.empty()) throw CannotEmulate(error_);
  std::memcpy(out.data(), result_.data(), out.size() * sizeof(float));
  call.algorithm = described_.algorithm;
  call.algorithm_inferred = described_.algorithm_inferred;
  call.forced = described_.forced;
  if (variant == kAllreduceArrival) call.order = order_;
}

}  // namespace trainrr
