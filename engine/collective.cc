#include "engine/collective.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "engine/result.h"

namespace trainrr {

bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr ||
         std::getenv("PMI_SIZE") != nullptr;
}

std::vector<Bucket> bucket_layout(const std::vector<std::pair<std::string, int64_t>>& params, int64_t cap_bytes) {
  std::vector<Bucket> out;
  int64_t offset = 0;
  for (const auto& [name, count] : params) {
    if (out.empty() || (out.back().count > 0 && (out.back().count + count) * 4 > cap_bytes)) {
      out.push_back({offset, 0, {}});
    }
    out.back().count += count;
    out.back().params.push_back(name);
    offset += count;
  }
  return out;
}

const char* mpi_algorithm_name(int a) {
  switch (a) {
    case 1: return "basic_linear";
    case 2: return "nonoverlapping";
    case 3: return "recursive_doubling";
    case 4: return "ring";
    case 5: return "segmented_ring";
    case 6: return "rabenseifner";
  }
  return "unknown";
}

MpiAlgorithm ompi414_decision(int ranks, int64_t bytes) {
  // ompi/mca/coll/tuned/coll_tuned_decision_fixed.c (v4.1.4), commutative operations: by communicator size,
  // then by message bytes, the first bound the message is below.
  struct Row {
    int64_t below;  // bytes; INT64_MAX: every message left
    MpiAlgorithm algorithm;
  };
  using enum MpiAlgorithm;
  constexpr int64_t rest = INT64_MAX;
  auto pick = [bytes](std::initializer_list<Row> rows) {
    for (const Row& r : rows)
      if (bytes < r.below) return r.algorithm;
    return unknown;
  };
  if (ranks < 4)
    return pick({{8, ring},
                 {4096, recursive_doubling},
                 {8192, ring},
                 {16384, recursive_doubling},
                 {65536, ring},
                 {262144, segmented_ring},
                 {rest, rabenseifner}});
  if (ranks < 8) return pick({{16, ring}, {8192, recursive_doubling}, {rest, rabenseifner}});
  if (ranks < 16) return pick({{8192, recursive_doubling}, {rest, rabenseifner}});
  if (ranks < 32) return pick({{64, segmented_ring}, {4096, recursive_doubling}, {rest, rabenseifner}});
  if (ranks < 64) return pick({{128, segmented_ring}, {rest, rabenseifner}});
  if (ranks < 128) return pick({{262144, recursive_doubling}, {rest, rabenseifner}});
  if (ranks < 256)
    return pick({{131072, nonoverlapping}, {262144, recursive_doubling}, {rest, rabenseifner}});
  if (ranks < 512) return pick({{4096, nonoverlapping}, {rest, rabenseifner}});
  if (ranks < 2048) return pick({{2048, nonoverlapping}, {16384, recursive_doubling}, {rest, rabenseifner}});
  if (ranks < 4096)
    return pick(
        {{2048, nonoverlapping}, {4096, segmented_ring}, {16384, recursive_doubling}, {rest, rabenseifner}});
  return pick({{2048, nonoverlapping}, {16384, segmented_ring}, {32768, recursive_doubling}, {rest, ring}});
}

MpiAlgorithm ompi414_effective(MpiAlgorithm a, int ranks, int64_t count, int64_t segment_bytes) {
  if (ranks == 1) return a;
  if (a == MpiAlgorithm::segmented_ring) {
    // COLL_BASE_COMPUTED_SEGCOUNT: no segment size (or one below an element) leaves one segment of the whole
    // message, and a message shorter than ranks * segment runs the plain ring.
    const int64_t segcount = segment_bytes >= 4 ? segment_bytes / 4 : count;
    if (count < ranks * segcount) a = MpiAlgorithm::ring;
    else return a;  // really segmented: not emulated
  }
  if (a == MpiAlgorithm::ring && count < ranks) return MpiAlgorithm::recursive_doubling;
  if (a == MpiAlgorithm::rabenseifner && count < static_cast<int64_t>(std::bit_floor(static_cast<unsigned>(ranks))))
    return MpiAlgorithm::basic_linear;
  return a;
}

namespace {

void tree_range(const std::vector<std::span<const float>>& parts, size_t lo, size_t n, std::span<float> out) {
  if (n == 1) {
    std::memcpy(out.data(), parts[lo].data(), out.size() * sizeof(float));
    return;
  }
  const size_t h = std::bit_floor(n - 1);
  std::vector<float> right(out.size());
  tree_range(parts, lo, h, out);
  tree_range(parts, lo + h, n - h, right);
  for (size_t i = 0; i < out.size(); ++i) out[i] = out[i] + right[i];
}

// Ranks folded in pairs (Open MPI's adjustment for a rank count that is not a power of two): the first
// 2 * (P - 2^k) ranks in pairs (2i, 2i+1), the rest as they are; then the balanced tree over the 2^k.
void folded_pairwise(const std::vector<std::span<const float>>& x, std::span<float> out) {
  const size_t p = x.size(), adj = std::bit_floor(p), extra = p - adj, n = out.size();
  std::vector<std::vector<float>> v(adj, std::vector<float>(n));
  for (size_t j = 0; j < adj; ++j) {
    if (j < extra) {
      for (size_t i = 0; i < n; ++i) v[j][i] = x[2 * j][i] + x[2 * j + 1][i];
    } else {
      std::memcpy(v[j].data(), x[j + extra].data(), n * sizeof(float));
    }
  }
  std::vector<std::span<const float>> spans(v.begin(), v.end());
  tree_range(spans, 0, adj, out);
}

}  // namespace

void tree_sum(const std::vector<std::span<const float>>& parts, std::span<float> out) {
  TRAINRR_CHECK(!parts.empty(), "a sum needs at least one part");
  tree_range(parts, 0, parts.size(), out);
}

std::string tree_description(int shards, int ranks) {
  return "pairwise tree over " + std::to_string(shards) + " shard" + (shards == 1 ? "" : "s") +
         (std::has_single_bit(static_cast<unsigned>(ranks)) ? ", recursive halving and doubling across ranks"
                                                            : ", allgather across ranks");
}

std::string CollectiveSettings::table_not_used() const {
  if (!components.empty()) {
    // A list of the components allowed, or one of those excluded after '^'.
    const bool exclude = components[0] == '^';
    bool named = false;
    for (size_t at = exclude ? 1 : 0; at <= components.size();) {
      const size_t comma = std::min(components.find(',', at), components.size());
      named |= components.substr(at, comma - at) == "tuned";
      at = comma + 1;
    }
    if (exclude == named)
      return "coll/tuned, whose decision table is known here, is not among the components allowed (coll = " +
             components + ")";
  }
  // The component of highest priority runs the allreduce: one at coll/tuned's, or above it, may run it
  // instead.
  if (!priorities.empty()) {
    std::vector<std::pair<std::string, int64_t>> each;
    for (size_t at = 0; at < priorities.size();) {
      const size_t space = std::min(priorities.find(' ', at), priorities.size());
      const std::string entry = priorities.substr(at, space - at);
      const size_t eq = entry.find('=');
      int64_t value = 0;
      if (eq == std::string::npos ||
          std::from_chars(entry.data() + eq + 1, entry.data() + entry.size(), value).ec != std::errc())
        return "the components' priorities are not readable (" + priorities + ")";
      each.emplace_back(entry.substr(0, eq), value);
      at = space + 1;
    }
    if (each.empty() || each[0].first != "tuned")
      return "coll/tuned's priority was not read (" + priorities + ")";
    const int64_t tuned = each[0].second;
    auto top = each.end();
    for (auto it = each.begin() + 1; it != each.end(); ++it)
      if (it->second >= tuned && (top == each.end() || it->second > top->second)) top = it;
    if (top != each.end())
      return "coll/" + top->first + "'s priority (" + std::to_string(top->second) + ") is " +
             (top->second == tuned ? "coll/tuned's too, and which of the two runs the allreduce is not said"
                                   : "above coll/tuned's (" + std::to_string(tuned) +
                                         "), and the component of highest priority that takes the "
                                         "communicator runs the allreduce") +
             ": only coll/tuned's decision table is known here (coll_" + top->first +
             "_priority, coll_tuned_priority)";
  }
  // coll/tuned runs it: an algorithm forced through MCA is the one that ran, and otherwise a rules file, or
  // the fixed table, decides.
  if (forced()) return "";
  if (dynamic_rules && !rules_file.empty())
    return "a rules file decides (coll_tuned_dynamic_rules_filename = " + rules_file + ")";
  return "";
}

std::string bucket_algorithms(const std::vector<CollectiveCall>& calls) {
  std::vector<std::pair<std::string, std::vector<int>>> ran;  // each algorithm, by its first bucket
  for (const CollectiveCall& c : calls) {
    auto it = std::find_if(ran.begin(), ran.end(), [&](const auto& r) { return r.first == c.algorithm; });
    if (it == ran.end())
      ran.push_back({c.algorithm, {c.bucket}});
    else
      it->second.push_back(c.bucket);
  }
  if (ran.size() == 1) return ran[0].first;
  std::string out;
  for (const auto& [algorithm, buckets] : ran) {
    out += (out.empty() ? "" : ", ") + algorithm + (buckets.size() == 1 ? " (bucket " : " (buckets ");
    for (size_t i = 0; i < buckets.size(); ++i) out += (i ? ", " : "") + std::to_string(buckets[i]);
    out += ")";
  }
  return out;
}

MpiAlgorithm describe_mpi_algorithm(const CollectiveSettings& settings, int ranks, int64_t bytes,
                                    CollectiveCall& call) {
  MpiAlgorithm a = MpiAlgorithm::unknown;
  if (ranks == 1) {
    // One process: Open MPI's coll/self (which outranks coll/tuned there, even with an algorithm forced
    // through MCA) copies the buffer. No algorithm runs.
    call.algorithm = "none: one rank, whose buffer Open MPI's coll/self copies";
    call.forced = false;
    call.algorithm_inferred = false;
    return a;
  }
  if (const std::string why = settings.table_not_used(); !why.empty()) {
    // Another component, or a rules file, chose (an algorithm forced for coll/tuned is not run where
    // coll/tuned does not run): which algorithm ran is not known here.
    call.forced = false;
    call.algorithm_inferred = false;
    call.algorithm = "not known: " + why;
    return a;
  } else if (settings.forced()) {
    a = settings.forced_algorithm >= 1 && settings.forced_algorithm <= 6
            ? static_cast<MpiAlgorithm>(settings.forced_algorithm)
            : MpiAlgorithm::unknown;
    call.forced = true;
    call.algorithm_inferred = false;
  } else {
    // The table is Open MPI 4.1's; another library's choice is not known here.
    if (settings.library.rfind("Open MPI v4.1", 0) == 0) a = ompi414_decision(ranks, bytes);
    call.forced = false;
    call.algorithm_inferred = true;
  }
  call.algorithm = mpi_algorithm_name(static_cast<int>(a));
  return a;
}

// --- the exact accumulator ---

namespace {

// Adds (or subtracts) m * 2^shift to the limbs, m < 2^24, 0 <= shift < 384 - 64: two limbs and the carry
// (or borrow) on from there.
void add_shifted(uint64_t* limb, uint64_t m, int shift, bool negative) {
  constexpr int n = ExactAccumulator::kLimbs;
  const int w = shift / 64, b = shift % 64;
  const uint64_t lo = m << b, hi = b ? m >> (64 - b) : 0;
  if (!negative) {
    const uint64_t s0 = limb[w] + lo;
    uint64_t carry = s0 < lo;
    limb[w] = s0;
    const uint64_t s1 = limb[w + 1] + hi;
    const uint64_t c1 = s1 < hi;
    const uint64_t s2 = s1 + carry;
    carry = c1 | (s2 < s1);
    limb[w + 1] = s2;
    for (int i = w + 2; carry && i < n; ++i) carry = ++limb[i] == 0;
  } else {
    const uint64_t d0 = limb[w] - lo;
    uint64_t borrow = limb[w] < lo;
    limb[w] = d0;
    const uint64_t d1 = limb[w + 1] - hi;
    const uint64_t b1 = limb[w + 1] < hi;
    const uint64_t d2 = d1 - borrow;
    borrow = b1 | (d1 < borrow);
    limb[w + 1] = d2;
    for (int i = w + 2; borrow && i < n; ++i) borrow = limb[i]-- == 0;
  }
}

}  // namespace

void ExactAccumulator::add(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const bool negative = bits >> 31;
  const uint32_t e = (bits >> 23) & 0xFF, frac = bits & 0x7FFFFF;
  if (e == 0xFF) {
    special |= frac ? 1 : negative ? 4 : 2;
    return;
  }
  if (e == 0 && frac == 0) return;
  // x = m * 2^(shift - 149) with m < 2^24: subnormals have e == 0 and no hidden bit.
  const uint64_t m = e == 0 ? frac : (frac | 0x800000u);
  const int shift = e == 0 ? 0 : static_cast<int>(e) - 1;
  add_shifted(limb, m, shift, negative);
}

void ExactAccumulator::add(const ExactAccumulator& o) {
  uint64_t carry = 0;
  for (int i = 0; i < kLimbs; ++i) {
    const uint64_t s1 = limb[i] + o.limb[i];
    const uint64_t c1 = s1 < limb[i];
    const uint64_t s2 = s1 + carry;
    carry = c1 | (s2 < s1);
    limb[i] = s2;
  }
  special |= o.special;
}

float ExactAccumulator::round() const {
  if (special & 1 || (special & 6) == 6) return std::numeric_limits<float>::quiet_NaN();
  if (special & 2) return std::numeric_limits<float>::infinity();
  if (special & 4) return -std::numeric_limits<float>::infinity();
  uint64_t mag[kLimbs];
  std::memcpy(mag, limb, sizeof mag);
  const bool negative = mag[kLimbs - 1] >> 63;
  if (negative) {
    uint64_t carry = 1;
    for (auto& x : mag) {
      x = ~x;
      const uint64_t s = x + carry;
      carry = s < x;
      x = s;
    }
  }
  int top = -1;  // highest set bit
  for (int i = kLimbs - 1; i >= 0 && top < 0; --i)
    if (mag[i]) top = i * 64 + 63 - std::countl_zero(mag[i]);
  if (top < 0) return 0.0f;
  // Bits lo .. lo + count - 1 (count <= 64) of the magnitude.
  auto bits = [&mag](int lo, int count) -> uint64_t {
    const int w = lo / 64, b = lo % 64;
    uint64_t v = mag[w] >> b;
    if (b && w + 1 < kLimbs) v |= mag[w + 1] << (64 - b);
    return count == 64 ? v : v & ((uint64_t{1} << count) - 1);
  };
  uint32_t result;  // the bits of the magnitude as a float
  if (top < 24) {
    // Below 2^-125 every multiple of 2^-149 is a float, whose bits are the multiple itself (subnormal, or
    // exponent field 1 with the hidden bit).
    result = static_cast<uint32_t>(mag[0]);
  } else {
    // The top 24 bits, rounded to nearest even on the bits below.
    uint64_t m = bits(top - 23, 24);
    const int low = top - 24;  // the first bit below the mantissa
    const bool half = bits(low, 1);
    bool sticky = false;
    for (int j = 0; j < low / 64 && !sticky; ++j) sticky = mag[j] != 0;
    if (!sticky && low % 64) sticky = (mag[low / 64] & ((uint64_t{1} << (low % 64)) - 1)) != 0;
    if (half && (sticky || (m & 1))) ++m;
    int field = top - 22;  // the exponent field of m * 2^(top - 23 - 149)
    if (m == (uint64_t{1} << 24)) m >>= 1, ++field;
    if (field >= 255) return negative ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::infinity();
    result = (static_cast<uint32_t>(field) << 23) | static_cast<uint32_t>(m & 0x7FFFFF);
  }
  return std::bit_cast<float>(result | (negative ? 0x80000000u : 0u));
}

namespace {

// The correctly rounded float of u * 2^(low - 149), u > 0: the rounding of ExactAccumulator::round on a
// 128-bit magnitude whose bit 0 sits at bit `low` of the accumulator's scale.
uint32_t round_magnitude(unsigned __int128 u, int low) {
  const int top = 127 - (static_cast<uint64_t>(u >> 64) ? std::countl_zero(static_cast<uint64_t>(u >> 64))
                                                         : 64 + std::countl_zero(static_cast<uint64_t>(u)));
  const int global = top + low;
  if (global < 24) return static_cast<uint32_t>(static_cast<uint64_t>(u) << low);  // exact, below 2^-125
  uint64_t m;
  bool half = false, sticky = false;
  if (top >= 24) {
    m = static_cast<uint64_t>(u >> (top - 23)) & 0xFFFFFF;
    half = (u >> (top - 24)) & 1;
    sticky = (u & ((static_cast<unsigned __int128>(1) << (top - 24)) - 1)) != 0;
  } else {
    m = static_cast<uint64_t>(u) << (23 - top);
  }
  if (half && (sticky || (m & 1))) ++m;
  int field = global - 22;
  if (m == (uint64_t{1} << 24)) m >>= 1, ++field;
  if (field >= 255) return 0x7F800000u;
  return (static_cast<uint32_t>(field) << 23) | static_cast<uint32_t>(m & 0x7FFFFF);
}

}  // namespace

void exact_sum(const std::vector<std::span<const float>>& parts, std::span<float> out) {
  // Two fast paths with the same (correctly rounded, so unique) result: when the element's values span at
  // most 24 binary orders of magnitude and there are at most 16 of them, their sum in double is exact; at most
  // 99, it fits a 128-bit integer aligned on the smallest. Otherwise (and for NaN and infinity) the 384-bit
  // accumulator.
  const size_t k = parts.size();
  for (size_t i = 0; i < out.size(); ++i) {
    int lo = 1 << 30, hi = -1;
    bool special = false;
    for (size_t j = 0; j < k; ++j) {
      const uint32_t bits = std::bit_cast<uint32_t>(parts[j][i]);
      const int e = static_cast<int>((bits >> 23) & 0xFF);
      if (e == 0xFF) special = true;
      if ((bits & 0x7FFFFFFF) == 0) continue;
      const int shift = e == 0 ? 0 : e - 1;
      lo = std::min(lo, shift), hi = std::max(hi, shift);
    }
    if (hi < 0 && !special) {
      out[i] = 0.0f;
      continue;
    }
    // Fewer than 2^4 values whose LSBs and tops lie within 24 binary orders of each other: every partial sum
    // needs at most 24 + 24 + 4 < 53 bits, so the double sum is exact in any order, and its conversion to float
    // is the one rounding, to nearest even, as in round_magnitude (an exact zero is +0 there too).
    if (!special && k <= 16 && hi - lo <= 24) {
      double sum = 0;
      for (size_t j = 0; j < k; ++j) sum += static_cast<double>(parts[j][i]);
      out[i] = sum == 0 ? 0.0f : static_cast<float>(sum);
      continue;
    }
    if (!special && k <= 16 && hi - lo <= 99) {
      __int128 acc = 0;
      for (size_t j = 0; j < k; ++j) {
        const uint32_t bits = std::bit_cast<uint32_t>(parts[j][i]);
        const uint32_t e = (bits >> 23) & 0xFF, frac = bits & 0x7FFFFF;
        if (e == 0 && frac == 0) continue;
        const __int128 m = static_cast<__int128>(e == 0 ? frac : (frac | 0x800000u)) << ((e == 0 ? 0 : e - 1) - lo);
        acc += bits >> 31 ? -m : m;
      }
      if (acc == 0) {
        out[i] = 0.0f;
        continue;
      }
      const bool negative = acc < 0;
      const uint32_t r = round_magnitude(static_cast<unsigned __int128>(negative ? -acc : acc), lo);
      out[i] = std::bit_cast<float>(r | (negative ? 0x80000000u : 0u));
      continue;
    }
    ExactAccumulator acc;
    for (const auto& p : parts) acc.add(p[i]);
    out[i] = acc.round();
  }
}

// --- Open MPI's groupings ---

bool ompi414_emulate(MpiAlgorithm a, const std::vector<std::span<const float>>& x, std::span<float> out) {
  const size_t p = x.size(), n = out.size();
  TRAINRR_CHECK(p >= 1, "an allreduce needs a rank");
  if (p == 1) {
    std::memcpy(out.data(), x[0].data(), n * sizeof(float));
    return true;
  }
  switch (a) {
    case MpiAlgorithm::recursive_doubling:
    case MpiAlgorithm::rabenseifner:
      // Both pair ranks r and r ^ mask for mask = 1, 2, 4, ... after the same folding of the first
      // 2 * (P - 2^k) ranks; a + b == b + a, so each element gets the same grouping.
      folded_pairwise(x, out);
      return true;
    case MpiAlgorithm::ring: {
      // Blocks as COLL_BASE_COMPUTE_BLOCKCOUNT cuts them: the first count % P blocks one element longer.
      // Block b starts at rank b and gathers ranks b+1, b+2, ... in a chain.
      const size_t early = n / p + (n % p != 0), late = n / p, split = n % p;
      for (size_t b = 0; b < p; ++b) {
        const size_t begin = b < split ? b * early : b * late + split;
        const size_t len = b < split ? early : late;
        for (size_t i = begin; i < begin + len; ++i) {
          float acc = x[b][i];
          for (size_t k = 1; k < p; ++k) acc = acc + x[(b + k) % p][i];
          out[i] = acc;
        }
      }
      return true;
    }
    case MpiAlgorithm::basic_linear:
      // Reduce to rank 0: the last rank's buffer, then ranks P-2 .. 0 added onto it; then a broadcast.
      for (size_t i = 0; i < n; ++i) {
        float acc = x[p - 1][i];
        for (size_t r = p - 1; r-- > 0;) acc = x[r][i] + acc;
        out[i] = acc;
      }
      return true;
    default:
      return false;
  }
}

void ordered_sum(const std::vector<std::span<const float>>& x, const std::vector<uint32_t>& order,
                 std::span<float> out) {
  TRAINRR_CHECK(order.size() == x.size(), "an arrival order names every rank once");
  std::memcpy(out.data(), x[order[0]].data(), out.size() * sizeof(float));
  for (size_t k = 1; k < order.size(); ++k)
    for (size_t i = 0; i < out.size(); ++i) out[i] = out[i] + x[order[k]][i];
}

}  // namespace trainrr
