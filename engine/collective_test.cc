#include "engine/collective.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "engine/local_group.h"

namespace trainrr {
namespace {

std::vector<std::vector<float>> random_parts(size_t parts, size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> mag(-3, 3);
  std::uniform_int_distribution<int> sign(0, 1);
  std::vector<std::vector<float>> out(parts, std::vector<float>(n));
  for (auto& p : out)
    for (auto& x : p) x = (sign(gen) ? 1.0f : -1.0f) * std::pow(10.0f, mag(gen));
  return out;
}

std::vector<std::span<const float>> spans(const std::vector<std::vector<float>>& v) {
  return std::vector<std::span<const float>>(v.begin(), v.end());
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The reference for the exact sum: x86's 64-bit long double holds these sums exactly (terms within 2^20 of
// each other in magnitude), and one conversion to float rounds to nearest even.
TEST(ExactSum, EqualsTheCorrectlyRoundedSumInAnyOrder) {
  const auto parts = random_parts(12, 20000, 1);
  std::vector<float> forward(20000), backward(20000);
  exact_sum(spans(parts), forward);
  auto reversed = parts;
  std::reverse(reversed.begin(), reversed.end());
  exact_sum(spans(reversed), backward);
  EXPECT_TRUE(same_bits(forward, backward));
  int same = 0;
  for (size_t i = 0; i < forward.size(); ++i) {
    long double s = 0;
    for (const auto& p : parts) s += p[i];
    same += std::bit_cast<uint32_t>(static_cast<float>(s)) == std::bit_cast<uint32_t>(forward[i]);
  }
  EXPECT_EQ(same, 20000);
}

// exact_sum takes a 128-bit path where the values span few orders of magnitude: it must give the accumulator's
// bits, for narrow and wide ranges, cancellations, ties and subnormals alike.
TEST(ExactSum, TheFastPathGivesTheAccumulatorsBits) {
  std::mt19937 gen(7);
  std::uniform_int_distribution<int> exp(-149, 127), narrow(-20, 20), count(1, 20), pick(0, 5);
  for (int trial = 0; trial < 20000; ++trial) {
    const int k = count(gen);
    std::vector<std::vector<float>> parts(k, std::vector<float>(1));
    for (auto& p : parts) {
      const int kind = pick(gen);
      const float base = std::ldexp(1.0f + static_cast<float>(gen() % 8388608) / 8388608.0f,
                                    kind == 0 ? exp(gen) : narrow(gen));
      p[0] = kind == 5 ? -parts[0][0] : (gen() & 1 ? -base : base);  // exact cancellations too
      if (kind == 4) p[0] = std::numeric_limits<float>::denorm_min() * static_cast<float>(gen() % 1000);
    }
    std::vector<float> fast(1);
    exact_sum(spans(parts), fast);
    ExactAccumulator acc;
    for (const auto& p : parts) acc.add(p[0]);
    const float slow = acc.round();
    ASSERT_EQ(std::bit_cast<uint32_t>(fast[0]), std::bit_cast<uint32_t>(slow)) << "trial " << trial;
  }
}

// The double path: up to 16 values within 24 binary orders of magnitude (its limit), ties and cancellations
// included, must give the accumulator's bits too.
TEST(ExactSum, TheDoublePathGivesTheAccumulatorsBits) {
  std::mt19937 gen(11);
  std::uniform_int_distribution<int> start(-140, 100), offset(0, 24), count(1, 16);
  for (int trial = 0; trial < 50000; ++trial) {
    const int k = count(gen), e0 = start(gen);
    std::vector<std::vector<float>> parts(k, std::vector<float>(1));
    for (auto& p : parts) {
      // Few mantissa bits make ties and exact cancellations common.
      const float mantissa = 1.0f + static_cast<float>(gen() % 4) / 4.0f;
      p[0] = std::ldexp(gen() & 1 ? -mantissa : mantissa, e0 + offset(gen));
    }
    std::vector<float> fast(1);
    exact_sum(spans(parts), fast);
    ExactAccumulator acc;
    for (const auto& p : parts) acc.add(p[0]);
    ASSERT_EQ(std::bit_cast<uint32_t>(fast[0]), std::bit_cast<uint32_t>(acc.round())) << "trial " << trial;
  }
}

TEST(ExactSum, CancelsExactlyAndRoundsHalfToEven) {
  ExactAccumulator a;
  a.add(1e30f);
  a.add(1.0f);
  a.add(-1e30f);
  EXPECT_EQ(a.round(), 1.0f);
  // 1 + 2^-24 is a tie between 1 and 1 + 2^-23: to even, 1.
  ExactAccumulator t;
  t.add(1.0f);
  t.add(std::ldexp(1.0f, -24));
  EXPECT_EQ(t.round(), 1.0f);
  t.add(std::ldexp(1.0f, -40));  // just above the tie
  EXPECT_EQ(t.round(), 1.0f + std::ldexp(1.0f, -23));
  ExactAccumulator d;  // subnormals add exactly
  d.add(std::numeric_limits<float>::denorm_min());
  d.add(std::numeric_limits<float>::denorm_min());
  EXPECT_EQ(d.round(), 2 * std::numeric_limits<float>::denorm_min());
  ExactAccumulator inf;
  inf.add(std::numeric_limits<float>::infinity());
  inf.add(-std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(inf.round()));
}

TEST(ExactSum, AccumulatorsMergeExactly) {
  const auto parts = random_parts(6, 100, 5);
  for (size_t i = 0; i < 100; ++i) {
    ExactAccumulator whole, a, b;
    for (size_t k = 0; k < 6; ++k) {
      whole.add(parts[k][i]);
      (k < 3 ? a : b).add(parts[k][i]);
    }
    b.add(a);
    EXPECT_EQ(std::bit_cast<uint32_t>(whole.round()), std::bit_cast<uint32_t>(b.round()));
  }
}

TEST(TreeSum, RankSubtreesThenRanksIsTheTreeOverShards) {
  const auto shards = random_parts(8, 1000, 2);
  std::vector<float> whole(1000);
  tree_sum(spans(shards), whole);
  for (size_t ranks : {1, 2, 4, 8}) {
    const size_t per = 8 / ranks;
    std::vector<std::vector<float>> partial(ranks, std::vector<float>(1000));
    for (size_t r = 0; r < ranks; ++r) {
      std::vector<std::span<const float>> mine(shards.begin() + r * per, shards.begin() + (r + 1) * per);
      tree_sum(mine, partial[r]);
    }
    std::vector<float> out(1000);
    tree_sum(spans(partial), out);
    EXPECT_TRUE(same_bits(whole, out)) << ranks << " ranks";
  }
}

// The emulators follow Open MPI's groupings: written out by hand for 3 ranks.
TEST(Ompi414Emulation, GroupsAsTheAlgorithmsDo) {
  const auto x = random_parts(3, 7, 3);
  std::vector<float> out(7);
  ASSERT_TRUE(ompi414_emulate(MpiAlgorithm::recursive_doubling, spans(x), out));
  for (int i = 0; i < 7; ++i) EXPECT_EQ(out[i], (x[0][i] + x[1][i]) + x[2][i]);
  ASSERT_TRUE(ompi414_emulate(MpiAlgorithm::basic_linear, spans(x), out));
  for (int i = 0; i < 7; ++i) EXPECT_EQ(out[i], x[0][i] + (x[1][i] + x[2][i]));
  ASSERT_TRUE(ompi414_emulate(MpiAlgorithm::ring, spans(x), out));
  // 7 elements in 3 blocks: 3, 2, 2; block b starts at rank b.
  const int block[7] = {0, 0, 0, 1, 1, 2, 2};
  for (int i = 0; i < 7; ++i) {
    const int b = block[i];
    EXPECT_EQ(out[i], (x[b][i] + x[(b + 1) % 3][i]) + x[(b + 2) % 3][i]) << i;
  }
  EXPECT_FALSE(ompi414_emulate(MpiAlgorithm::nonoverlapping, spans(x), out));
}

TEST(Ompi414Decision, FollowsTheFixedTable) {
  EXPECT_EQ(ompi414_decision(2, 4000), MpiAlgorithm::recursive_doubling);
  EXPECT_EQ(ompi414_decision(2, 19240), MpiAlgorithm::ring);
  EXPECT_EQ(ompi414_decision(3, 100000), MpiAlgorithm::segmented_ring);
  EXPECT_EQ(ompi414_decision(2, 1 << 20), MpiAlgorithm::rabenseifner);
  EXPECT_EQ(ompi414_decision(4, 19240), MpiAlgorithm::rabenseifner);
  EXPECT_EQ(ompi414_decision(4, 4000), MpiAlgorithm::recursive_doubling);
  EXPECT_EQ(ompi414_decision(3, 4), MpiAlgorithm::ring);
  EXPECT_EQ(ompi414_decision(8, 2052), MpiAlgorithm::recursive_doubling);
  EXPECT_EQ(ompi414_decision(15, 8192), MpiAlgorithm::rabenseifner);
  EXPECT_EQ(ompi414_decision(16, 32), MpiAlgorithm::segmented_ring);
  EXPECT_EQ(ompi414_decision(31, 4095), MpiAlgorithm::recursive_doubling);
  EXPECT_EQ(ompi414_decision(32, 128), MpiAlgorithm::rabenseifner);
  EXPECT_EQ(ompi414_decision(64, 200000), MpiAlgorithm::recursive_doubling);
  EXPECT_EQ(ompi414_decision(128, 1000), MpiAlgorithm::nonoverlapping);
  EXPECT_EQ(ompi414_decision(200, 200000), MpiAlgorithm::recursive_doubling);
  EXPECT_EQ(ompi414_decision(300, 4096), MpiAlgorithm::rabenseifner);
  EXPECT_EQ(ompi414_decision(1024, 8192), MpiAlgorithm::recursive_doubling);
  EXPECT_EQ(ompi414_decision(2048, 3000), MpiAlgorithm::segmented_ring);
  EXPECT_EQ(ompi414_decision(4096, 40000), MpiAlgorithm::ring);
  for (int ranks : {1, 2, 5, 9, 17, 33, 65, 129, 257, 513, 2049, 4097, 1 << 20})
    for (int64_t bytes : {int64_t{0}, int64_t{4}, int64_t{1} << 40})
      EXPECT_NE(ompi414_decision(ranks, bytes), MpiAlgorithm::unknown) << ranks << " " << bytes;
  EXPECT_EQ(ompi414_effective(MpiAlgorithm::ring, 4, 3, 0), MpiAlgorithm::recursive_doubling);
  EXPECT_EQ(ompi414_effective(MpiAlgorithm::segmented_ring, 4, 1000, 0), MpiAlgorithm::ring);
  EXPECT_EQ(ompi414_effective(MpiAlgorithm::rabenseifner, 4, 3, 0), MpiAlgorithm::basic_linear);
}

// With one rank Open MPI runs no allreduce algorithm (coll/self copies the buffer), forced or not.
TEST(Ompi414Decision, OneRankRunsNoAlgorithm) {
  CollectiveSettings settings;
  settings.library = "Open MPI v4.1.4, package: Debian OpenMPI";
  for (const int forced : {0, 4}) {
    settings.dynamic_rules = forced != 0;
    settings.forced_algorithm = forced;
    CollectiveCall one, two;
    describe_mpi_algorithm(settings, 1, 19240, one);
    EXPECT_EQ(one.algorithm, "none: one rank, whose buffer Open MPI's coll/self copies");
    EXPECT_FALSE(one.algorithm_inferred);
    EXPECT_FALSE(one.forced);
    describe_mpi_algorithm(settings, 2, 19240, two);
    EXPECT_EQ(two.algorithm, "ring");
  }
}

// Where coll/tuned is not allowed, or a rules file decides, the fixed decision table says nothing of the
// algorithm that ran: it is not known, and not inferred.
TEST(Ompi414Decision, TheTableIsNotReadWhereTunedDidNotDecide) {
  CollectiveSettings settings;
  settings.library = "Open MPI v4.1.4, package: Debian OpenMPI";
  CollectiveCall call;
  EXPECT_EQ(describe_mpi_algorithm(settings, 4, 19240, call), MpiAlgorithm::rabenseifner);
  EXPECT_TRUE(call.algorithm_inferred);
  for (const std::string allowed : {"^tuned", "^hcoll,tuned", "basic,self,libnbc"}) {
    settings.components = allowed;
    EXPECT_EQ(describe_mpi_algorithm(settings, 4, 19240, call), MpiAlgorithm::unknown) << allowed;
    EXPECT_FALSE(call.algorithm_inferred);
    EXPECT_EQ(call.algorithm,
              "not known: coll/tuned, whose decision table is known here, is not among the "
              "components allowed (coll = " +
                  allowed + ")");
  }
  for (const std::string allowed : {"^hcoll", "tuned,basic,self", ""}) {
    settings.components = allowed;
    EXPECT_EQ(describe_mpi_algorithm(settings, 4, 19240, call), MpiAlgorithm::rabenseifner) << allowed;
    EXPECT_TRUE(call.algorithm_inferred);
  }
  settings.dynamic_rules = true;
  settings.rules_file = "/etc/rules.conf";
  EXPECT_EQ(describe_mpi_algorithm(settings, 4, 19240, call), MpiAlgorithm::unknown);
  EXPECT_EQ(call.algorithm,
            "not known: a rules file decides (coll_tuned_dynamic_rules_filename = /etc/rules.conf)");
  // An algorithm forced through MCA is the one that ran.
  settings.forced_algorithm = 4;
  EXPECT_EQ(describe_mpi_algorithm(settings, 4, 19240, call), MpiAlgorithm::ring);
  EXPECT_TRUE(call.forced);
}

// The component of highest priority runs the allreduce: coll/tuned's table says which algorithm ran only
// where every other component that can run it has a lower priority.
TEST(Ompi414Decision, AComponentOfCollTunedsPriorityOrAboveLeavesTheAlgorithmNotKnown) {
  CollectiveSettings settings;
  settings.library = "Open MPI v4.1.4, package: Debian OpenMPI";
  CollectiveCall call;
  settings.priorities = "tuned=30 sm=0 basic=10 han=0";
  EXPECT_EQ(settings.table_not_used(), "");
  EXPECT_EQ(describe_mpi_algorithm(settings, 4, 19240, call), MpiAlgorithm::rabenseifner);
  EXPECT_TRUE(call.algorithm_inferred);
  settings.priorities = "tuned=0 sm=0 basic=10 han=0";
  EXPECT_EQ(describe_mpi_algorithm(settings, 4, 19240, call), MpiAlgorithm::unknown);
  EXPECT_EQ(call.algorithm,
            "not known: coll/basic's priority (10) is above coll/tuned's (0), and the component of highest "
            "priority that takes the communicator runs the allreduce: only coll/tuned's decision table is "
            "known here (coll_basic_priority, "
            "coll_tuned_priority)");
  settings.priorities = "tuned=30 sm=0 basic=30 han=0";
  EXPECT_NE(settings.table_not_used().find("coll/basic's priority (30) is coll/tuned's too"),
            std::string::npos);
  settings.priorities = "tuned=30 hcoll=90 basic=10";
  EXPECT_NE(settings.table_not_used().find("coll/hcoll's priority (90) is above coll/tuned's (30)"),
            std::string::npos);
  settings.priorities = "basic=10";
  EXPECT_NE(settings.table_not_used().find("coll/tuned's priority was not read"), std::string::npos);
  // An algorithm forced through MCA is coll/tuned's to run, and runs only where coll/tuned runs.
  settings.dynamic_rules = true;
  settings.forced_algorithm = 4;
  settings.priorities = "tuned=30 basic=100";
  EXPECT_EQ(describe_mpi_algorithm(settings, 4, 19240, call), MpiAlgorithm::unknown);
  EXPECT_FALSE(call.forced);
  settings.priorities = "tuned=30 basic=10";
  EXPECT_EQ(describe_mpi_algorithm(settings, 4, 19240, call), MpiAlgorithm::ring);
  EXPECT_TRUE(call.forced);
  settings.priorities = "";
  settings.components = "^tuned";
  EXPECT_EQ(describe_mpi_algorithm(settings, 4, 19240, call), MpiAlgorithm::unknown);
}

TEST(BucketLayout, WholeParametersInModelOrderUnderTheCap) {
  const auto b = bucket_layout({{"a", 100}, {"b", 100}, {"c", 300}, {"d", 10}}, 800);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].params, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(b[1].offset, 200);
  EXPECT_EQ(b[1].count, 300);
  EXPECT_EQ(b[2].params, (std::vector<std::string>{"d"}));
}

TEST(LocalGroup, RanksInThreadsGetOneSumAndRankZerosBroadcast) {
  const int n = 4;
  LocalGroup group(n, {});
  const auto shards = random_parts(n, 50, 4);
  std::vector<std::vector<float>> out(n, std::vector<float>(50));
  std::vector<uint64_t> seen(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      seen[r] = group.member(r).broadcast(100 + r);
      CollectiveCall call;
      group.member(r).allreduce(kAllreduceTree, {shards[r]}, out[r], call);
    });
  for (auto& t : threads) t.join();
  std::vector<float> expected(50);
  tree_sum(spans(shards), expected);
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(seen[r], 100u);
    EXPECT_TRUE(same_bits(out[r], expected)) << r;
  }
}

TEST(LocalGroup, RanksThatCallOneAllreduceWithDifferentVariantsAllGetTheErrorWhicheverArrivesLast) {
  // Whichever rank arrives last, every rank is told, and none gets a sum: the last one in does not decide.
  const int n = 3;
  const auto shards = random_parts(n, 8, 4);
  for (int last = 0; last < n; ++last) {
    LocalGroup group(n, {});
    std::vector<std::string> errors(n);
    std::vector<std::thread> threads;
    std::mutex mu;
    std::condition_variable cv;
    int in = 0;
    for (int r = 0; r < n; ++r)
      threads.emplace_back([&, r] {
        {
          // The rank `last` calls only after the others are waiting in the allreduce.
          std::unique_lock lock(mu);
          if (r == last) cv.wait(lock, [&] { return in == n - 1; });
        }
        std::vector<float> out(8);
        CollectiveCall call;
        const std::string_view variant = r == 1 ? kAllreduceExact : kAllreduceTree;
        if (r != last) {
          std::lock_guard lock(mu);
          ++in;
          cv.notify_all();
        }
        try {
          group.member(r).allreduce(variant, {shards[r]}, out, call);
        } catch (const CannotEmulate& e) {
          errors[r] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    for (int r = 0; r < n; ++r)
      EXPECT_EQ(errors[r], "the ranks called one allreduce with different variants (rank 0 " +
                               std::string(kAllreduceTree) + ", rank 1 " + std::string(kAllreduceExact) +
                               "): one allreduce has one variant")
          << "last " << last << ", rank " << r;
  }
}

// Buckets of other sizes may run other algorithms: each is named with its buckets, in the order of the first
// bucket that ran it; one that every bucket ran is named alone.
TEST(BucketAlgorithms, NamesTheOneEveryBucketRanOrEachWithItsBuckets) {
  std::vector<CollectiveCall> calls(3);
  for (int b = 0; b < 3; ++b) calls[b].bucket = b, calls[b].algorithm = "ring";
  EXPECT_EQ(bucket_algorithms(calls), "ring");
  calls[0].algorithm = "rabenseifner";
  EXPECT_EQ(bucket_algorithms(calls), "rabenseifner (bucket 0), ring (buckets 1, 2)");
  calls[2].algorithm = "rabenseifner";
  EXPECT_EQ(bucket_algorithms(calls), "rabenseifner (buckets 0, 2), ring (bucket 1)");
  EXPECT_EQ(bucket_algorithms({}), "");
}

}  // namespace
}  // namespace trainrr
