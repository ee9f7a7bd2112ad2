#pragma once
// Which recorded choices a replay forces: all, none, or a list of rng, split, shuffle, loader, kernels.

#include <string>
#include <string_view>

#include "engine/result.h"

namespace trainrr {

struct ForceSet {
  bool rng = false;
  bool split = false;
  bool shuffle = false;
  bool loader = false;
  bool kernels = false;

  static ForceSet all() { return {true, true, true, true, true}; }
  static ForceSet none() { return {}; }
  bool any() const { return rng || split || shuffle || loader || kernels; }
  bool everything() const { return rng && split && shuffle && loader && kernels; }
  std::string str() const;  // "all", "none", or "rng,loader"
};

// "all", "none", or a comma-separated list; an unknown word is an error that lists the accepted ones.
Result<ForceSet> parse_force(std::string_view text);

// Sets in `f` the one kind that `word` names (rng, split, shuffle, loader, kernels; kernel as kernels); false
// for any other word.
bool add_force_kind(ForceSet& f, std::string_view word);

}  // namespace trainrr
