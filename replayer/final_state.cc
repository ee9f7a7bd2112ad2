#include "replayer/final_state.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "traces/trace_reader.h"

namespace trainrr {

Result<std::optional<TrainState>> checkpoint_at(const std::string& trace_path,
                                                const std::vector<trace::CheckpointRef>& index,
                                                int64_t steps) {
  const auto at =
      std::find_if(index.begin(), index.end(), [steps](const auto& c) { return c.step == steps; });
  if (at == index.end()) return std::optional<TrainState>();
  trace::ReaderLimits limits = trace::without_payloads();
  limits.tensor_values = true;
  auto reader = trace::TraceReader::open(trace_path, limits);
  if (!reader) return reader.error();
  auto state = (*reader)->read_checkpoint(at->offset);
  if (!state || state->step != steps) return std::optional<TrainState>();
  return std::optional<TrainState>(std::move(state).value());
}

namespace {

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape == b.shape && a.data.size() == b.data.size() &&
         (a.data.empty() || std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0);
}

}  // namespace

std::optional<FirstDivergence> state_difference(const std::vector<NamedTensor>& a,
                                                const std::vector<NamedTensor>& b, int64_t last_step,
                                                const std::string& name_a, const std::string& name_b,
                                                bool initial) {
  std::map<std::string, const Tensor*> other;
  for (const NamedTensor& t : b) other[t.name] = &t.value;
  std::vector<std::string> differ;
  for (const NamedTensor& t : a) {
    auto it = other.find(t.name);
    if (it == other.end()) {
      differ.push_back(t.name + " (" + name_a + " only)");
      continue;
    }
    if (!same_bits(t.value, *it->second)) differ.push_back(t.name);
    other.erase(it);
  }
  for (const auto& [name, value] : other) differ.push_back(name + " (" + name_b + " only)");
  const size_t tensors = a.size() + other.size();
  if (differ.empty()) return std::nullopt;
  FirstDivergence d = divergence(
      last_step, "final state", "state", differ.front().substr(0, differ.front().find(" (")),
      "the state after the last step (step " + std::to_string(last_step) + ") differs in " +
          first_of(differ, 4) + " (" + std::to_string(differ.size()) + " of " + std::to_string(tensors) +
          " tensors), though every value the steps compared is the same: the steps do not compare all of it "
          "(an optimizer's slots; at level step, a batch normalization's moving statistics), so the step "
          "whose update first made it differ is not known (levels layer and op compare the moving statistics "
          "at every step)");
  if (initial) {
    d.phase = "setup";
    d.detail = "the initial state (before step 0) differs in " + first_of(differ, 4) + " (" +
               std::to_string(differ.size()) + " of " + std::to_string(tensors) +
               " tensors), though the draws of the initial weights are the same: the " + name_a +
               " initial checkpoint (what export --step 0 gives) is not what the " + name_b +
               " run sets up from them";
  }
  // The layer is the tensor's: "dense_1" of "dense_1.kernel" and of an optimizer slot
  // "adam.m/dense_1.kernel".
  std::string tensor = d.site.substr(d.site.rfind('/') == std::string::npos ? 0 : d.site.rfind('/') + 1);
  d.layer = tensor.substr(0, tensor.find('.'));
  return d;
}

}  // namespace trainrr
