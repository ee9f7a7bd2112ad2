#include "replayer/force.h"

namespace trainrr {

std::string ForceSet::str() const {
  if (everything()) return "all";
  if (!any()) return "none";
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ',';
    s += name;
  };
  add(rng, "rng");
  add(split, "split");
  add(shuffle, "shuffle");
  add(loader, "loader");
  add(kernels, "kernels");
  return s;
}

bool add_force_kind(ForceSet& f, std::string_view word) {
  bool* kind = word == "rng"                           ? &f.rng
               : word == "split"                       ? &f.split
               : word == "shuffle"                     ? &f.shuffle
               : word == "loader"                      ? &f.loader
               : word == "kernels" || word == "kernel" ? &f.kernels
                                                       : nullptr;
  if (kind) *kind = true;
  return kind != nullptr;
}

Result<ForceSet> parse_force(std::string_view text) {
  if (text == "all") return ForceSet::all();
  if (text == "none") return ForceSet::none();
  ForceSet f;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string_view word =
        text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    if (!add_force_kind(f, word)) {
      if (word == "all" || word == "none")
        return Error{
            "--force '" + std::string(text) + "': " + std::string(word) +
            " cannot be combined with other choices (give all, none, or a list of rng, split, shuffle, "
            "loader, kernels)"};
      return Error{"--force: unknown choice '" + std::string(word) +
                   "' (expected all, none, or a list of rng, split, shuffle, loader, kernels)"};
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return f;
}

}  // namespace trainrr
