#include "replayer/bisect.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace trainrr {
namespace {

// A run whose replay reproduces where the seed is forced, or else every one of four streams it keys: ddmin
// alone can settle on the four streams (no single one of them can go), while the seed alone is smaller.
TEST(SmallestForcedSet, TheSeedTakesThePlaceOfTheUnitsItDecidesWhereThatIsSmaller) {
  const std::vector<std::string> all = {"kernel:a/matmul.fwd", "rng:data/shuffle",  "rng:data/split",
                                        "rng:init/a.kernel",   "rng:init/b.kernel", "seed"};
  const std::set<std::string> streams = {"rng:data/shuffle", "rng:data/split", "rng:init/a.kernel",
                                         "rng:init/b.kernel"};
  auto reproduces = [&](const std::vector<std::string>& units) {
    const std::set<std::string> set(units.begin(), units.end());
    if (set.count("seed")) return true;
    for (const std::string& s : streams)
      if (!set.count(s)) return false;
    return true;
  };
  // ddmin's first halves: the four streams, which reproduce, so it goes on with them and leaves the seed.
  const std::vector<std::string> streams_first = {
      "rng:data/shuffle",    "rng:data/split",      "rng:init/a.kernel",   "rng:init/b.kernel",
      "kernel:a/matmul.fwd", "kernel:b/matmul.fwd", "kernel:c/matmul.fwd", "seed"};
  EXPECT_EQ(smallest_forced_set(streams_first, {"loader"}, reproduces),
            (std::vector<std::string>{"loader", "seed"}));
  EXPECT_EQ(smallest_forced_set(all, {}, reproduces), (std::vector<std::string>{"seed"}));
}

// Where the seed does not serve (another test fraction splits other rows whatever the seed), the units stay.
TEST(SmallestForcedSet, TheSeedIsKeptOutWhereItDoesNotReproduce) {
  const std::vector<std::string> all = {"rng:data/split", "rng:init/a.kernel", "seed", "split"};
  auto reproduces = [&](const std::vector<std::string>& units) {
    const std::set<std::string> set(units.begin(), units.end());
    return set.count("split") && set.count("rng:init/a.kernel");
  };
  EXPECT_EQ(smallest_forced_set(all, {}, reproduces),
            (std::vector<std::string>{"rng:init/a.kernel", "split"}));
}

}  // namespace
}  // namespace trainrr
