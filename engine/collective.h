#pragma once
// Data-parallel training: the ranks of a run and the gradient allreduce between them. The engine sees one
// interface, Collective; an MPI implementation (distributed/) and an in-process group of simulated ranks
// (replay on one machine) provide it. The sums themselves are here, as plain functions over float vectors,
// so that a replay without MPI applies exactly the grouping a recorded run used (../shared/DISTRIBUTED.md).
//
// A step of a data-parallel run: the global batch (train.batch_size rows) is cut into `shards` micro-batch
// shards of consecutive rows; rank r computes shards [r*K/P, (r+1)*K/P) one after the other, each from its
// own random streams, so a shard's gradient does not depend on the rank count. The allreduce sums the K
// shard gradients; every rank divides by K and takes the same optimizer step.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trainrr {

// The registered allreduce variants (kernel ids of op `allreduce`).
inline constexpr std::string_view kAllreduceTree = "allreduce__trainrr_tree";
inline constexpr std::string_view kAllreduceExact = "allreduce__trainrr_exact";
inline constexpr std::string_view kAllreduceMpi = "allreduce__mpi";
inline constexpr std::string_view kAllreduceArrival = "allreduce__arrival";

// Whether this process was started by mpirun (Open MPI's or a PMIx launcher's variables are set).
bool launched_by_mpirun();

// One bucket of the gradient allreduce: a contiguous range of the flattened gradients, whole parameters in
// model order. The layout depends only on the model and the bucket size, never on timing.
struct Bucket {
  int64_t offset = 0;  // first element in the flattened gradients
  int64_t count = 0;   // elements (float32)
  std::vector<std::string> params;
};
// Parameters (name, elements) in model order, cut into buckets of at most `cap_bytes` (a parameter larger
// than that is a bucket of its own).
std::vector<Bucket> bucket_layout(const std::vector<std::pair<std::string, int64_t>>& params, int64_t cap_bytes);
inline constexpr int64_t kBucketBytes = 1 << 20;

// Open MPI's allreduce algorithms (coll_tuned_allreduce_algorithm).
enum class MpiAlgorithm : int {
  unknown = 0,
  basic_linear = 1,
  nonoverlapping = 2,
  recursive_doubling = 3,
  ring = 4,
  segmented_ring = 5,
  rabenseifner = 6,
};
const char* mpi_algorithm_name(int algorithm);  // "ring", ...; "unknown" outside 1..6
// The algorithm Open MPI 4.1.4's coll/tuned fixed decision table picks for a commutative allreduce of
// `bytes` over `ranks` ranks.
MpiAlgorithm ompi414_decision(int ranks, int64_t bytes);
// What an algorithm does with this many elements: ring falls back to recursive doubling below one element
// per rank, rabenseifner to basic linear below the largest power of two <= ranks, segmented ring with no
// segment size is the ring.
MpiAlgorithm ompi414_effective(MpiAlgorithm algorithm, int ranks, int64_t count, int64_t segment_bytes);

// What the MPI library says about its allreduce, recorded in each rank's header.
struct CollectiveSettings {
  std::string library;  // MPI_Get_library_version, first line
  bool dynamic_rules = false;
  int forced_algorithm = 0;  // coll_tuned_allreduce_algorithm (0: the library decides)
  int64_t segment_bytes = 0;  // coll_tuned_allreduce_algorithm_segmentsize
  std::string components;  // coll: the collective components allowed ("" every one, "^tuned" all but tuned)
  std::string rules_file;  // coll_tuned_dynamic_rules_filename
  // The priorities of coll/tuned and of the other components that can run the allreduce in its place, as
  // "tuned=30 basic=10 han=0 sm=0" (coll/tuned's first): the one of highest priority runs it. "" where they
  // were not read (a trace recorded before they were).
  std::string priorities;
  // The algorithm the library runs: forced, or inferred from the decision table.
  bool forced() const { return dynamic_rules && forced_algorithm != 0; }
  // Why Open MPI's fixed decision table does not say which algorithm ran, in words: coll/tuned is not among
  // the components allowed, another component's priority is at or above its own (either may run the
  // allreduce, an algorithm forced for coll/tuned then included), or a rules file decides in its place; ""
  // when the table does, or coll/tuned runs the algorithm forced through MCA.
  std::string table_not_used() const;
};

// What one rank records about one allreduce call.
struct CollectiveCall {
  int64_t step = 0;
  int bucket = 0;
  int64_t offset = 0;   // the bucket's first element in the flattened gradients
  int64_t count = 0;    // elements
  std::string variant;  // kernel id, allreduce__*
  bool forced = false;  // the grouping was fixed: a trainrr variant, or an MPI algorithm forced through MCA
  std::string algorithm;  // how the sum was grouped ("ring", "pairwise tree over 4 shards", ...)
  bool algorithm_inferred = false;  // allreduce__mpi: read from the decision table, not forced
  int ranks = 1;
  int shards = 1;
  int first_shard = 0;  // this rank's shards: first_shard .. first_shard + shard_digests.size() - 1
  std::vector<uint64_t> shard_rows;     // each of this rank's shards: digest of its row indices (sharding)
  std::vector<uint64_t> shard_digests;  // each of this rank's shard gradients, this bucket's range
  uint64_t input_digest = 0;   // this rank's shard gradients, concatenated (its input to the sum)
  uint64_t result_digest = 0;  // the sum, as every rank gets it
  std::vector<uint32_t> order;  // allreduce__arrival: ranks in the order their sums were added
};

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Rank 0's value, on every rank.
  virtual uint64_t broadcast(uint64_t value) = 0;
  // Sums the K shard gradients of the run (this rank's own in `shards`, K/P of them, each `count` long)
  // with `variant` into `out` (count elements), identical on every rank. Fills the call's algorithm and,
  // for allreduce__arrival, its order: on entry the order to add in (empty: as they arrive).
  virtual void allreduce(std::string_view variant, const std::vector<std::span<const float>>& shards,
                         std::span<float> out, CollectiveCall& call) = 0;
  virtual CollectiveSettings settings() const = 0;
};

// --- the sums, shared by the MPI ranks and the simulated ones ---

// The fixed pairwise tree over `parts` (each `count` long): parts[lo..lo+n) sums as the tree over its first
// h = bit_floor(n - 1) parts plus the tree over the rest. For n a power of two this is the balanced tree, so
// a rank's subtree over its shards followed by recursive doubling across ranks is the same tree.
void tree_sum(const std::vector<std::span<const float>>& parts, std::span<float> out);

// An exact sum: each float added into a 384-bit fixed-point accumulator (LSB 2^-149), order-independent;
// rounded once to float, to nearest even, in integer arithmetic (no long double: the same bits on any CPU).
struct ExactAccumulator {
  static constexpr int kLimbs = 6;
  uint64_t limb[kLimbs] = {};  // two's complement, little-endian limbs
  uint64_t special = 0;        // bit 0: a NaN, bit 1: +inf, bit 2: -inf was added
  void add(float x);
  void add(const ExactAccumulator& other);
  float round() const;
};
static_assert(sizeof(ExactAccumulator) == 7 * sizeof(uint64_t));
void exact_sum(const std::vector<std::span<const float>>& parts, std::span<float> out);

// Open MPI 4.1.4's grouping of a commutative float sum over `ranks` inputs (one per rank), as
// coll_base_allreduce.c computes it: ring (block b chained from rank b), recursive doubling and
// rabenseifner (pairwise after folding the first 2*(P - 2^k) ranks in pairs), basic linear (reduce to rank
// 0 from the last rank down). False where the algorithm is not emulated here (nonoverlapping: its reduce
// has its own decision table).
bool ompi414_emulate(MpiAlgorithm algorithm, const std::vector<std::span<const float>>& ranks,
                     std::span<float> out);

// The arrival-order sum: acc = inputs[order[0]], then acc += inputs[order[i]].
void ordered_sum(const std::vector<std::span<const float>>& ranks, const std::vector<uint32_t>& order,
                 std::span<float> out);

// How a variant groups its sum, for the record.
std::string tree_description(int shards, int ranks);
inline constexpr const char* kExactDescription = "exact 384-bit fixed-point sum, rounded once to nearest even";
inline constexpr const char* kArrivalDescription = "rank sums added at rank 0 in arrival order, then broadcast";
// allreduce__mpi: the algorithm the library runs for `bytes` over `ranks` ranks, as far as it is known: forced
// through MCA, else Open MPI 4.1's decision table (inferred), else unknown. Fills call.algorithm,
// call.algorithm_inferred and call.forced.
MpiAlgorithm describe_mpi_algorithm(const CollectiveSettings& settings, int ranks, int64_t bytes,
                                    CollectiveCall& call);
// The algorithms of one step's buckets: the one they all ran ("ring"), or each with its buckets where they
// ran others ("rabenseifner (bucket 0), segmented_ring (buckets 1, 2)"). Empty for no call.
std::string bucket_algorithms(const std::vector<CollectiveCall>& calls);

}  // namespace trainrr
