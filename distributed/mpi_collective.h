#pragma once
// The ranks of a data-parallel run over MPI (built only where CMake finds MPI). One instance per process:
// it initialises MPI on creation and finalises it on destruction.

#include <memory>
#include <string>
#include <vector>

#include "engine/collective.h"
#include "engine/local_group.h"
#include "engine/result.h"

namespace trainrr {

class MpiCollective : public Collective, public GroupExchange {
 public:
  static Result<std::unique_ptr<MpiCollective>> init();
  ~MpiCollective() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  uint64_t broadcast(uint64_t value) override;
  std::vector<uint32_t> broadcast(std::vector<uint32_t> values) override;
  std::vector<float> allgather(const std::vector<float>& mine) override;
  void allreduce(std::string_view variant, const std::vector<std::span<const float>>& shards, std::span<float> out,
                 CollectiveCall& call) override;
  CollectiveSettings settings() const override { return settings_; }

  // Every rank's string, on rank 0 (empty elsewhere).
  std::vector<std::string> gather(const std::string& mine);
  // Every rank's string, on every rank. Allgather only: it runs as it does whatever the allreduce settings
  // of each rank, which it serves to compare.
  std::vector<std::string> allgather(const std::string& mine);
  // The largest of every rank's value, on every rank.
  int max(int value);
  void barrier();
  // Ends every rank of the run (a rank that fails alone would leave the others waiting in a collective).
  [[noreturn]] void abort(int code);

 private:
  MpiCollective() = default;
  int rank_ = 0, size_ = 1;
  CollectiveSettings settings_;
  std::vector<float> local_, theirs_, send_, recv_;
};

}  // namespace trainrr
