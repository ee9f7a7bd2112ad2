#pragma once
// N ranks of a data-parallel run simulated in one process, one thread per rank: the replay of an
// N-rank run without mpirun. Each rank's Training runs in its own thread with its own Collective (member());
// collective calls meet at a rendezvous, where the last rank to arrive computes the sum with the variant's
// own grouping (engine/collective.h): the tree, the exact sum, the arrival order (forced, or the order the
// threads arrived in), or Open MPI's algorithm as recorded.

#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/collective.h"

namespace trainrr {

// A rank left the run (it failed): the others stop at their next collective call.
class GroupAborted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// allreduce__mpi with an algorithm this process cannot emulate.
class CannotEmulate : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The other processes of a group that spans several (replay under mpirun with fewer processes than ranks):
// each process hosts some ranks; at each rendezvous the processes exchange what their ranks deposited.
class GroupExchange {
 public:
  virtual ~GroupExchange() = default;
  // Process 0's value, in every process.
  virtual uint64_t broadcast(uint64_t value) = 0;
  virtual std::vector<uint32_t> broadcast(std::vector<uint32_t> values) = 0;
  // Every process's `mine` (all of one size), in process order.
  virtual std::vector<float> allgather(const std::vector<float>& mine) = 0;
};

class LocalGroup {
 public:
  // `settings`: the recorded MPI library and allreduce settings (for allreduce__mpi). This process hosts ranks
  // first .. first + local - 1 of `size`; with `exchange`, the other processes host the rest, in order.
  LocalGroup(int size, CollectiveSettings settings, int first = 0, int local = -1, GroupExchange* exchange = nullptr);
  ~LocalGroup();
  int size() const { return size_; }
  Collective& member(int rank);
  // Wakes every rank waiting at a rendezvous; their calls (and later ones) throw GroupAborted.
  void abort(const std::string& why);

 private:
  class Member;
  friend class Member;
  // One rendezvous: every rank deposits, the last computes, all read.
  uint64_t broadcast(int rank, uint64_t value);
  void allreduce(int rank, std::string_view variant, const std::vector<std::span<const float>>& shards,
                 std::span<float> out, CollectiveCall& call);
  void wait_for_all(std::unique_lock<std::mutex>& lock, uint64_t generation);

  int size_;
  CollectiveSettings settings_;
  int first_ = 0, local_ = 0;
  GroupExchange* exchange_ = nullptr;
  std::vector<std::unique_ptr<Member>> members_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t generation_ = 0;  // completed rendezvous
  int arrived_ = 0;
  std::string aborted_;
  // This rendezvous' deposits.
  uint64_t bcast_value_ = 0;
  uint64_t bcast_done_[2] = {};
  std::vector<std::vector<std::vector<float>>> shards_;  // per rank, its shard gradients
  std::vector<uint32_t> arrivals_;
  std::vector<std::string> variants_;  // per rank, the variant it called this allreduce with
  std::vector<uint32_t> forced_order_;
  // Its outcome.
  std::vector<float> result_;
  std::vector<uint32_t> order_;
  CollectiveCall described_;
  std::string error_;
};

}  // namespace trainrr
