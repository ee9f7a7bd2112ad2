#include "replayer/final_state.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "traces/trace_reader.h"

namespace trainrr {

CheckpointReader::CheckpointReader(std::string trace_path) : path_(std::move(trace_path)) {}
CheckpointReader::~CheckpointReader() = default;
CheckpointReader::CheckpointReader(CheckpointReader&&) noexcept = default;

std::optional<TrainState> CheckpointReader::read(uint64_t offset, int64_t steps) {
  if (!reader_ && !unreadable_) {
    trace::ReaderLimits limits = trace::without_payloads();
    limits.tensor_values = true;
    auto opened = trace::TraceReader::open(path_, limits);
    if (opened)
      reader_ = std::move(opened).value();
    else
      unreadable_ = true;
  }
  if (!reader_) return std::nullopt;
  auto state = reader_->read_checkpoint(offset);
  if (!state || state->step != steps) return std::nullopt;
  return std::move(state).value();
}

std::map<int64_t, uint64_t> state_offsets(const std::string& trace_path, const trace::TraceReader* read) {
  std::map<int64_t, uint64_t> out;
  if (read && read->footer()) {
    out[0] = read->header_size();
    for (const auto& c : read->footer()->checkpoints) out[c.step] = c.offset;
  } else if (auto scan = trace::TraceReader::open(trace_path, trace::without_payloads())) {
    out[0] = (*scan)->header_size();
    if (auto index = (*scan)->checkpoint_index())
      for (const auto& c : *index) out[c.step] = c.offset;
  }
  return out;
}

std::optional<TrainState> checkpoint_at(const std::string& trace_path,
                                        const std::vector<trace::CheckpointRef>& index, int64_t steps) {
  const auto at =
      std::find_if(index.begin(), index.end(), [steps](const auto& c) { return c.step == steps; });
  if (at == index.end()) return std::nullopt;
  return CheckpointReader(trace_path).read(at->offset, steps);
}

std::string state_headline(const FirstDivergence& d) {
  const std::string step = std::to_string(d.step);
  if (d.phase == "setup") return "diverged in the initial state, before step " + step;
  if (d.phase == "checkpoint")
    return "diverged in the checkpoint at step " + std::to_string(d.step + 1) + ", after step " + step;
  return "diverged in the final state, after step " + step;
}

bool same_tensor_bits(const Tensor& a, const Tensor& b) {
  return a.shape == b.shape && a.data.size() == b.data.size() &&
         (a.data.empty() || std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0);
}

namespace {

// What of the place in the run differs ("the random stream dropout/dropout_1's offset: 130 (recorded) vs 129
// (replayed)"), or "". The seed is the configuration's, compared there.
std::string place_difference(const TrainState& a, const TrainState& b, const std::string& name_a,
                             const std::string& name_b) {
  auto two = [&](const std::string& what, const std::string& x, const std::string& y) {
    return what + ": " + x + " (" + name_a + ") vs " + y + " (" + name_b + ")";
  };
  if (a.epoch != b.epoch)
    return two("the epoch of the next step", std::to_string(a.epoch), std::to_string(b.epoch));
  if (a.batch_in_epoch != b.batch_in_epoch)
    return two("the batches of its epoch done", std::to_string(a.batch_in_epoch),
               std::to_string(b.batch_in_epoch));
  // A stream one side alone has drawn from is no evidence: a choice served from the trace (a forced split)
  // is not drawn again.
  std::map<std::string, uint64_t> offsets(b.rng_offsets.begin(), b.rng_offsets.end());
  for (const auto& [stream, offset] : a.rng_offsets)
    if (const auto it = offsets.find(stream); it != offsets.end() && it->second != offset)
      return two("the random stream " + stream + "'s offset", std::to_string(offset),
                 std::to_string(it->second));
  if (a.permutation != b.permutation) return "the epoch's order of its training rows";
  if (a.batches_done != b.batches_done) return "the batches of its epoch handed out";
  return "";
}

}  // namespace

std::optional<FirstDivergence> state_difference(const TrainState& a, const TrainState& b, int64_t last_step,
                                                const std::string& name_a, const std::string& name_b,
                                                StatePlace place, std::optional<int64_t> same_before,
                                                bool resumed) {
  std::map<std::string, const Tensor*> other;
  for (const NamedTensor& t : b.tensors) other[t.name] = &t.value;
  std::vector<std::string> differ;
  for (const NamedTensor& t : a.tensors) {
    auto it = other.find(t.name);
    if (it == other.end()) {
      differ.push_back(t.name + " (" + name_a + " only)");
      continue;
    }
    if (!same_tensor_bits(t.value, *it->second)) differ.push_back(t.name);
    other.erase(it);
  }
  for (const auto& [name, value] : other) differ.push_back(name + " (" + name_b + " only)");
  const size_t tensors = a.tensors.size() + other.size();
  // The scalars (the optimizer's iterations, the epoch's running sums), after the tensors.
  std::map<std::string, double> scalars(b.scalars.begin(), b.scalars.end());
  std::vector<std::string> scalars_differ;
  for (const auto& [name, value] : a.scalars) {
    const auto it = scalars.find(name);
    if (it == scalars.end())
      scalars_differ.push_back(name + " (" + name_a + " only)");
    else if (!trainrr::same_bits(value, it->second))
      scalars_differ.push_back(name + " " + round_trip(value) + " (" + name_a + ") vs " +
                               round_trip(it->second) + " (" + name_b + ")");
    if (it != scalars.end()) scalars.erase(it);
  }
  for (const auto& [name, value] : scalars) scalars_differ.push_back(name + " (" + name_b + " only)");

  const std::string after = "step " + std::to_string(last_step);
  const std::string state = place == StatePlace::initial ? "the initial state (before step 0)"
                            : place == StatePlace::checkpoint
                                ? "the checkpoint at step " + std::to_string(last_step + 1) +
                                      " (the state after " + after + ", what export --step " +
                                      std::to_string(last_step + 1) + " gives and replay --from-step " +
                                      std::to_string(last_step + 1) + " resumes from)"
                                : "the state after the last step (" + after + ")";
  const std::string phase = place == StatePlace::initial      ? "setup"
                            : place == StatePlace::checkpoint ? "checkpoint"
                                                              : "final state";
  FirstDivergence d;
  if (!differ.empty() || !scalars_differ.empty()) {
    const std::string what =
        differ.empty() ? "its scalars: " + first_of(scalars_differ, 4)
                       : first_of(differ, 4) + " (" + std::to_string(differ.size()) + " of " +
                             std::to_string(tensors) + " tensors)" +
                             (scalars_differ.empty() ? std::string()
                                                     : " and its scalars " + first_of(scalars_differ, 2));
    // Why the steps did not show it, and which of them made it differ.
    const bool from_resumed = resumed && same_before;  // the state before is the checkpoint resumed from
    const std::string from = same_before ? std::to_string(*same_before) : "";
    const std::string steps = same_before && *same_before < last_step
                                  ? "steps " + from + ".." + std::to_string(last_step)
                                  : "step " + std::to_string(last_step);
    std::string why;
    if (from_resumed && differ.empty() &&
        std::all_of(scalars_differ.begin(), scalars_differ.end(),
                    [](const std::string& s) { return s.rfind("epoch.", 0) == 0; })) {
      // The epoch's running sums, every step since the same, are that checkpoint's alone.
      why = ": the epoch's running sums are its steps' sums, " + std::string(kResumedSums) + " at step " +
            from + " as recorded: that checkpoint does not hold the sums its steps made";
    } else {
      why =
          ": the steps do not compare all of it (an optimizer's slots; at level step, a batch "
          "normalization's moving statistics)";
      if (from_resumed)
        why += "; the replay resumed at step " + from +
               " from the recorded checkpoint, taking what its steps do not vouch for as it is recorded, so "
               "that "
               "checkpoint or " +
               steps + " made it differ";
      else if (same_before)
        why += "; the state before step " + from + " compared the same, so " + steps + " made it differ";
      else
        why += ", so the step whose update first made it differ is not known" +
               std::string(
                   std::any_of(differ.begin(), differ.end(),
                               [](const std::string& n) { return n.find("moving_") != std::string::npos; })
                       ? " (levels layer and op compare the moving statistics at every step)"
                       : "");
    }
    d = divergence(
        last_step, phase, "state",
        differ.empty() ? scalars_differ.front().substr(0, scalars_differ.front().find(' '))
                       : differ.front().substr(0, differ.front().find(" (")),
        state + " differs in " + what + ", though every value the steps compared is the same" + why);
    if (place == StatePlace::initial)
      d.detail = "the initial state (before step 0) differs in " + what +
                 ", though the draws of the initial weights are the same: the " + name_a +
                 " initial checkpoint (what export --step 0 gives) is not what the " + name_b +
                 " run sets up from them";
  } else if (const std::string where = place_difference(a, b, name_a, name_b); !where.empty()) {
    d = divergence(last_step, phase, "state", "(place in the run)",
                   state + " holds the same tensors and scalars, but another place in the run: " + where +
                       ", " + std::string(kOtherPlaceInTheRun) +
                       ": the steps before it drew the same words and handed out the same batches");
    return d;
  } else {
    return std::nullopt;
  }
  // The layer is the tensor's: "dense_1" of "dense_1.kernel" and of an optimizer slot
  // "adam.m/dense_1.kernel".
  if (!differ.empty()) {
    std::string tensor = d.site.substr(d.site.rfind('/') == std::string::npos ? 0 : d.site.rfind('/') + 1);
    d.layer = tensor.substr(0, tensor.find('.'));
  }
  return d;
}

}  // namespace trainrr
