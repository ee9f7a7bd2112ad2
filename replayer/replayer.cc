#include "replayer/replayer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "engine/data/file_io.h"
#include "engine/device.h"
#include "engine/device_backend.h"
#include "engine/fingerprint.h"
#include "engine/kernels/kernel_registry.h"
#include "engine/model.h"
#include "engine/trainer.h"
#include "recorder/environment.h"
#include "recorder/recorder.h"
#include "replayer/cause.h"
#include "replayer/data_difference.h"
#include "replayer/final_state.h"
#include "replayer/replay_hooks.h"
#include "traces/run_set.h"
#include "traces/trace_reader.h"

namespace trainrr {
namespace fs = std::filesystem;

std::string config_folder(const trace::TraceHeader& h) {
  std::error_code ec;
  const fs::path folder = fs::path(h.config_path).parent_path();
  const fs::path absolute = fs::absolute(folder.empty() ? fs::path(".") : folder, ec);
  return ec ? folder.string() : absolute.lexically_normal().string();
}

std::vector<EnvDifference> environment_differences(
    const std::vector<std::pair<std::string, std::string>>& a,
    const std::vector<std::pair<std::string, std::string>>& b) {
  std::map<std::string, std::pair<std::optional<std::string>, std::optional<std::string>>> both;
  for (const auto& [k, v] : a) both[k].first = v;
  for (const auto& [k, v] : b) both[k].second = v;
  std::vector<EnvDifference> out;
  for (const auto& [k, v] : both) {
    if (v.first.value_or("") == v.second.value_or("")) continue;
    // What the program was built with, not what the run ran on; "cuda" is what a trainrr before
    // cuda.backend wrote, "not built" whatever its build.
    if (k == "cuda.backend" || k == "cuda") continue;
    // A variable an older trainrr recorded that changes no value (CUDA_HOME, where the toolkit lies).
    if (k.rfind("env.", 0) == 0 && !numerics_variable(k.substr(4))) continue;
    // A trace written before "device" was recorded: its configuration names the device, and a replay on
    // another device says so in a note.
    if (k == "device" && (v.first.value_or("").empty() || v.second.value_or("").empty())) continue;
    out.push_back({k, environment_value_shown(k, v.first ? &*v.first : nullptr),
                   environment_value_shown(k, v.second ? &*v.second : nullptr)});
  }
  return out;
}

std::vector<std::string> unchanged_overrides(const RunConfig& recorded, const RunConfig& replayed,
                                             const std::vector<std::string>& overrides) {
  std::map<std::string, std::string> before, after;
  for (auto& [k, v] : flatten_config(recorded)) before[k] = v;
  for (auto& [k, v] : flatten_config(replayed)) after[k] = v;
  std::vector<std::string> out;
  std::set<std::string> seen;
  // The last --set of a key is the one that counts.
  for (auto it = overrides.rbegin(); it != overrides.rend(); ++it) {
    const size_t eq = it->find('=');
    if (eq == std::string::npos) continue;
    const std::string key = it->substr(0, eq);
    if (!seen.insert(key).second) continue;
    const auto b = before.find(key), a = after.find(key);
    if (b == before.end() || a == after.end() || a->second != b->second) continue;
    out.push_back("--set " + *it + " changes nothing: the recorded configuration has " + key + " = " +
                  (b->second.empty() ? "(none)" : b->second) + " already");
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// A data file's path that the trace's configuration names (`named`, the header's datasets[i]'s file) where
// its record of that file names another: what a trace that trainrr record wrote never holds.
static std::string path_not_recorded(const trace::TraceHeader& h, size_t i, const std::string& named,
                                     bool labels, const std::string& trace_path) {
  const trace::DatasetInfo& info = h.datasets[i];
  return (trace_path.empty() ? std::string() : trace_path + ": ") + "the trace's configuration reads its " +
         info.name + " file from " + named + " (" + (labels ? "data.labels" : "data.path") +
         " in the header's config, resolved, where relative, against the folder of the header's "
         "configPath, " +
         h.config_path + "), but the trace's record of that file (the header's datasets[" +
         std::to_string(i) + "].path, which show lists with its digest) names " + info.path +
         ": in a trace that trainrr record wrote they are one path, so the trace was changed after it was "
         "recorded";
}

std::optional<std::string> data_path_not_recorded(const trace::TraceHeader& h,
                                                  const std::string& trace_path) {
  auto own = parse_config(h.config, h.config_path + " (in the trace)", config_folder(h), h.config_overrides);
  if (!own) return std::nullopt;  // reported where the configuration is read
  for (size_t i = 0; i < h.datasets.size(); ++i)
    for (const auto& [name, member] : data_files(own->data))
      if (name == h.datasets[i].name && !h.datasets[i].is_embedded() &&
          own->data.*member != h.datasets[i].path)
        return path_not_recorded(h, i, own->data.*member, member == &DataConfig::labels, trace_path);
  return std::nullopt;
}

Result<RebuiltRun> rebuild_config(const trace::TraceHeader& h, const std::vector<std::string>& overrides,
                                  const std::string& data_path, bool allow_change, ScratchDir& scratch,
                                  const std::string& refusal, const std::string& trace_path) {
  std::vector<std::string> all = h.config_overrides;
  all.insert(all.end(), overrides.begin(), overrides.end());
  auto config = parse_config(h.config, h.config_path + " (in the trace)", config_folder(h), all);
  if (!config) return config.error();
  RebuiltRun r{std::move(config).value(), false, "", {}, {}};
  DataConfig& d = r.config.data;
  // The trace's configuration alone, without the user's overrides: a data path that comes from it must be
  // the one its data set record names, the path show and dump list and whose digest the trace holds.
  auto own = parse_config(h.config, h.config_path + " (in the trace)", config_folder(h), h.config_overrides);
  if (own) r.notes = unchanged_overrides(*own, r.config, overrides);
  // Every file the run reads is described by the trace, and nothing else is: a file the trace does not
  // vouch for (by size and digest) is never read.
  const auto files = data_files(d);
  for (const auto& [name, key] : files) {
    bool found = false;
    for (const trace::DatasetInfo& info : h.datasets) found = found || info.name == name;
    if (!found)
      return Error{"the trace describes no data set '" + name + "' for its " + d.source +
                   " data: it was not written by trainrr record"};
  }
  for (size_t i = 0; i < h.datasets.size(); ++i) {
    const trace::DatasetInfo& info = h.datasets[i];
    for (size_t j = 0; j < i; ++j)
      if (h.datasets[j].name == info.name)
        return Error{"the trace describes data set '" + info.name.substr(0, 64) + "' twice"};
    std::string* target = nullptr;
    std::string DataConfig::*member = nullptr;
    for (const auto& [name, key] : files)
      if (name == info.name) target = &(d.*(member = key));
    if (!target)
      return Error{"the trace's data set '" + info.name.substr(0, 64) + "' is not read by its " + d.source +
                   " data"};
    // The user's file: --data for the samples, or a --set of the key that names this file (data.labels, say),
    // which the trace's embedded copy must not silently replace.
    const bool data_flag = !data_path.empty() && info.name != "labels";
    const bool user_set = !data_flag && own && own.value().data.*member != *target;
    const bool user_copy = data_flag || user_set;
    const std::string chosen = data_flag ? data_path : *target;
    const std::string how =
        data_flag ? "--data"
                  : std::string("--set ") + (member == &DataConfig::labels ? "data.labels" : "data.path");
    // The path the trace's own configuration names must be the one its record of the file names: in a trace
    // that trainrr record wrote they are one. (An embedded copy is read from the trace, by trainrr's own
    // name: its recorded path is for people.)
    const std::string& named = own ? own.value().data.*member : *target;
    const bool from_trace = !user_copy && *target == named;
    if (from_trace && named != info.path && !info.is_embedded())
      return Error{
          path_not_recorded(h, i, named, member == &DataConfig::labels, trace_path) +
          "; replay reads neither (" +
          (info.name == "labels" ? std::string("--set data.labels=PATH") : std::string("--data PATH")) +
          " replays with a file of your choice)"};
    if (!info.embedded.empty() && !user_copy) {
      // The name is trainrr's own; the trace's names and paths never reach the file system.
      const std::string ext = d.source == "npy" ? ".npy" : d.source == "idx" ? ".idx" : ".csv";
      auto file = scratch.write_file("dataset-" + std::to_string(i) + ext, info.embedded);
      if (!file) return file.error();
      *target = *file;
      continue;
    }
    if (user_copy) {
      if (!info.embedded.empty())
        r.notes.push_back("data: " + chosen + " (" + how + ") is used in place of the copy the trace embeds");
      else if (chosen != info.path)
        r.notes.push_back("data: " + chosen + " (" + how + ") is read in place of " + info.path +
                          ", the file the run recorded");
      *target = chosen;
    }
    const std::string what = "data file " + *target + (*target == info.path ? "" : " (recorded as " + info.path + ")");
    // The size is compared first: a file of another size differs without being read.
    auto file = trace::digest_regular_file(*target, info.size_bytes);
    if (!file) {
      if (!std::filesystem::exists(*target))
        return Error{user_copy ? "data file " + *target + " (" + how + ") does not exist" +
                                     (user_set && !d.set_relative_to.empty()
                                          ? " (a relative path given with --set resolves against the "
                                            "configuration's folder, " +
                                                d.set_relative_to + ", as the file's own paths do)"
                                          : std::string())
                     : info.is_embedded()
                         ? what + " is missing"
                         : what + " is missing: pass --data PATH, or record with --embed-data"};
      return file.error();
    }
    std::string differs;
    if (!file->digested)
      differs = what + " differs from the recorded one (" + std::to_string(info.size_bytes) +
                " bytes recorded, " + std::to_string(file->size) + " bytes now)";
    else if (!(file->digest == info.digest) || file->size != info.size_bytes)
      differs = what + " differs from the recorded one (" + std::to_string(info.size_bytes) +
                " bytes recorded; digests differ)";
    if (differs.empty()) continue;
    // With the recorded copy at hand (embedded, or at its recorded path with the recorded digest) and the
    // user's, say where they first differ.
    std::vector<uint8_t> read;
    const std::span<const uint8_t> recorded = recorded_copy(info, read);
    if (!recorded.empty() && file->size <= (uint64_t{1} << 30))
      if (auto now = read_file_bytes(*target); now && now->size() == file->size) {
        // The recorded copy as the recording read it, the user's as this replay reads it.
        const std::string recorded_label =
            d.source == "csv" && own && own.value().data.source == "csv" ? own.value().data.label : "";
        const DataDifference where =
            first_data_difference(recorded, *now, d.source == "csv", "recorded", "now", recorded_label,
                                  d.source == "csv" ? d.label : "");
        if (where.same_values) {
          // Other bytes, the same data: the run reads from this file what it read from the recorded one.
          r.notes.push_back("data: " + what.substr(std::string_view("data file ").size()) +
                            " holds the recorded data in other bytes: " + where.where);
          continue;
        }
        if (!where.where.empty()) differs += "; " + where.where;
      }
    if (!allow_change)
      return Error{differs + "; " +
                   (refusal.empty() ? "pass --allow-data-change to replay anyway" : refusal)};
    r.data_changed = true;
    r.data_detail += (r.data_detail.empty() ? "" : "; ") + differs;
    r.data_sets_changed.push_back(info.name);
    // Not the recorded file, at a path the trace chose: it may be anything readable here, and no message
    // repeats what it holds. (A file the user chose is theirs to see.)
    if (from_trace) d.quote_text = false;
  }
  return r;
}

namespace {

// Synthetic data is sized by the configuration alone and generated before the first step is compared (up to
// kMaxSyntheticValues floats). A trace whose own configuration gives it other rows than its step 0 split or
// shuffled does not follow the run that configuration describes: it is refused before anything is generated.
Status synthetic_rows_follow_step_zero(const std::string& trace_path, const trace::TraceHeader& h) {
  auto own = parse_config(h.config, h.config_path + " (in the trace)", config_folder(h), h.config_overrides);
  if (!own || own->data.source != "synthetic") return {};
  const int64_t rows = own->data.samples;
  const std::optional<int64_t> training = training_rows(*own, rows);
  auto reader = trace::TraceReader::open(trace_path, trace::without_payloads());
  if (!reader) return {};  // the replay's own reader says why
  auto contradicts = [&](const std::string& recorded, int64_t want, const std::string& what) {
    return Error{
        trace_path + ": step 0 " + recorded + ", but its configuration (" + own->file +
        ") gives the synthetic data " + std::to_string(want) + " " + what +
        " (data.samples = " + std::to_string(rows) +
        "): the trace does not follow the run its configuration describes, and its data is not generated"};
  };
  for (;;) {
    auto rec = (*reader)->next();
    if (!rec || !*rec) return {};  // damage or a cut: the replay says so where it reads it
    const auto* step = std::get_if<trace::TraceStep>(&(*rec)->value);
    if (!step) continue;
    if (step->index != 0) return {};
    for (const trace::Event& e : step->events) {
      if (const auto* split = std::get_if<trace::SplitEvent>(&e)) {
        const int64_t n = static_cast<int64_t>(split->train.size() + split->test.size());
        if (n != rows) return contradicts("splits " + std::to_string(n) + " rows", rows, "rows");
      } else if (const auto* shuffle = std::get_if<trace::ShuffleEvent>(&e); shuffle && training) {
        const int64_t n = static_cast<int64_t>(shuffle->length);
        if (n != *training)
          return contradicts("orders " + std::to_string(n) + " training rows", *training, "training rows");
      }
    }
    return {};
  }
}

}  // namespace

ReplaySide::ReplaySide() = default;
ReplaySide::ReplaySide(ReplaySide&&) noexcept = default;
ReplaySide::~ReplaySide() = default;

namespace {
thread_local const std::atomic<bool>* t_interrupt = nullptr;  // the innermost ReplayInterruptScope's flag
}  // namespace

ReplayInterruptScope::ReplayInterruptScope(const std::atomic<bool>* flag) : previous_(t_interrupt) {
  t_interrupt = flag;
}
ReplayInterruptScope::~ReplayInterruptScope() { t_interrupt = previous_; }

// The values a replay's model may take (Runtime::param_budget): 16 times those of the recorded initial state
// (its parameters and statistics), and at least 2^24; -1 where the trace holds no initial state to bound it
// by, or where the replay's model or data is not the trace's (a --set or --data of the user's). The
// configuration inside a trace someone else wrote is not to size a model of gigabytes before the first draw
// of its initial weights is compared.
int64_t replay_param_budget(const std::string& trace_path, const RunConfig& config) {
  auto reader = trace::TraceReader::open(trace_path, trace::without_payloads());
  if (!reader) return -1;
  // A model or data the user asked for (--set model.layers..., --data) is the user's to size: the bound is on
  // the trace's own.
  for (const std::string& d : config_differences((*reader)->header(), config))
    if (d.rfind("model.", 0) == 0 || d.rfind("data.", 0) == 0) return -1;
  auto initial = (*reader)->read_checkpoint((*reader)->header_size());
  if (!initial) return -1;
  int64_t values = 0;
  // Shapes only: the reader leaves the values compressed.
  for (const NamedTensor& t : initial->tensors) {
    int64_t n = 1;
    for (int64_t d : t.value.shape)
      if (d < 0 || __builtin_mul_overflow(n, d, &n)) return -1;
    if (__builtin_add_overflow(values, n, &values)) return -1;
  }
  int64_t budget = 0;
  if (__builtin_mul_overflow(values, int64_t{16}, &budget)) return -1;
  return std::max<int64_t>(budget, int64_t{1} << 24);
}

namespace {

// What the steps a trace records before a checkpoint say of the place in the run it must hold: where each
// random stream's draws end, the epoch of the last step, the batches that epoch handed out, whether it ended,
// and the order its shuffle made.
struct PlaceBefore {
  std::map<std::string, uint64_t> stream_ends;  // stream -> the word after its last draw
  int64_t steps = 0;                            // complete steps before the checkpoint
  int last_epoch = -1;                          // the epoch of the last of them
  bool epoch_ended = false;                     // that epoch's end was recorded after it
  std::vector<uint32_t> batches;                // the batches of that epoch, in the order they ran
  std::optional<trace::ShuffleEvent> shuffle;   // that epoch's shuffle (without its stored permutation)
};

// Reads the trace from its start through the checkpoint at `offset` (read_through: damage before it, or in
// it, is an error), collecting what the steps before it say of its place in the run.
Result<PlaceBefore> read_up_to_checkpoint(const std::string& path, uint64_t offset) {
  PlaceBefore p;
  Status read = trace::read_through(path, offset, [&p](const trace::TraceRecord& rec) {
    if (const auto* e = std::get_if<trace::TraceEpoch>(&rec.value)) {
      if (e->epoch == p.last_epoch) p.epoch_ended = true;
      return;
    }
    const auto* st = std::get_if<trace::TraceStep>(&rec.value);
    if (!st) return;
    std::optional<int64_t> batch;
    for (const trace::Event& ev : st->events) {
      if (const auto* d = std::get_if<trace::RngDrawEvent>(&ev)) {
        p.stream_ends[d->draw.stream] = d->draw.counter + d->draw.count;
      } else if (const auto* sh = std::get_if<trace::ShuffleEvent>(&ev)) {
        if (sh->draw) p.stream_ends[sh->draw->stream] = sh->draw->counter + sh->draw->count;
        trace::ShuffleEvent kept = *sh;
        kept.permutation.clear();
        p.shuffle = std::move(kept);
      } else if (const auto* b = std::get_if<trace::BatchOrderEvent>(&ev)) {
        batch = b->batch;
      }
    }
    if (!st->end) return;
    if (st->epoch != p.last_epoch) {
      p.batches.clear();
      p.epoch_ended = false;
    }
    p.last_epoch = st->epoch;
    p.batches.push_back(static_cast<uint32_t>(batch.value_or(st->batch)));
    ++p.steps;
  });
  if (!read) return read.error();
  return p;
}

// Where a checkpoint's place in the run (its epoch, the order of its rows, the batches handed out, the random
// streams' offsets) is not the one the steps before it lead to, as the recording that took it was: "" where
// it is. The steps are vouched for by the probes a replay compares; the checkpoint, which a resumed replay
// starts from, by this.
std::string place_contradiction(const PlaceBefore& p, const TrainState& s) {
  if (p.steps == 0) return "";
  auto list = [](const std::vector<uint32_t>& v) {
    std::string out;
    for (size_t i = 0; i < v.size() && i < 8; ++i) out += (i ? ", " : "") + std::to_string(v[i]);
    if (v.size() > 8) out += ", ... (" + std::to_string(v.size()) + " in all)";
    return v.empty() ? std::string("none") : out;
  };
  const bool open = !s.permutation.empty();
  if (p.epoch_ended) {
    if (open || s.epoch != p.last_epoch + 1)
      return "the step before it ended epoch " + std::to_string(p.last_epoch + 1) +
             ", so the run was to start epoch " + std::to_string(p.last_epoch + 2) + ", and the checkpoint " +
             (open ? "holds an epoch in progress"
                   : "is at the start of epoch " + std::to_string(s.epoch + 1));
  } else {
    if (!open || s.epoch != p.last_epoch)
      return "the steps before it are in epoch " + std::to_string(p.last_epoch + 1) +
             ", which had not ended, and the checkpoint " +
             (open ? "is in epoch " + std::to_string(s.epoch + 1) : "holds no epoch in progress");
    if (s.batches_done != p.batches) {
      const std::string epoch = "epoch " + std::to_string(p.last_epoch + 1);
      if (s.batches_done.size() != p.batches.size())
        return epoch + "'s " + std::to_string(p.batches.size()) + " steps before it handed out " +
               std::to_string(p.batches.size()) + " batches (" + list(p.batches) +
               "), and the checkpoint says " + std::to_string(s.batches_done.size()) + " were (" +
               list(s.batches_done) + ")";
      size_t i = 0;
      while (s.batches_done[i] == p.batches[i]) ++i;
      return epoch + "'s step " + std::to_string(i + 1) + " (step " +
             std::to_string(p.steps - static_cast<int64_t>(p.batches.size() - i)) + ") ran batch " +
             std::to_string(p.batches[i]) + ", and the checkpoint says it ran batch " +
             std::to_string(s.batches_done[i]);
    }
    if (p.shuffle && p.shuffle->epoch == p.last_epoch &&
        (p.shuffle->length != s.permutation.size() ||
         p.shuffle->digest != digest(std::span<const uint32_t>(s.permutation))))
      return p.shuffle->length != s.permutation.size()
                 ? "the epoch's shuffle ordered " + std::to_string(p.shuffle->length) +
                       " training rows, and the checkpoint's order of them holds " +
                       std::to_string(s.permutation.size())
                 : "its order of the epoch's " + std::to_string(p.shuffle->length) +
                       " training rows is not the one the epoch's shuffle made (their digests differ)";
  }
  const std::map<std::string, uint64_t> offsets(s.rng_offsets.begin(), s.rng_offsets.end());
  for (const auto& [stream, end] : p.stream_ends) {
    const auto it = offsets.find(stream);
    if (it == offsets.end())
      return "the steps before it drew from the random stream " + stream + " up to word " +
             std::to_string(end) + ", and the checkpoint holds no offset for it";
    if (it->second != end)
      return "the steps before it drew from the random stream " + stream + " up to word " +
             std::to_string(end) + ", and the checkpoint puts it at word " + std::to_string(it->second);
  }
  return "";
}

}  // namespace

Result<ReplaySide> make_replay_side(const std::string& trace_path, const RunConfig& config,
                                    const KernelRegistry& registry, ForceSet force,
                                    std::function<bool(const std::string&)> filter, ProbeLevel level,
                                    bool compare, int64_t from, Collective* collective, DeviceBackend* device) {
  ReplaySide s;
  // The replay follows the steps: the checkpoints it passes and the embedded data (rebuilt already, in
  // `config`) are not decompressed.
  auto reader = trace::TraceReader::open(trace_path, trace::without_payloads());
  if (!reader) return reader.error();
  s.reader = std::move(reader).value();
  if (config.data.source == "synthetic")
    if (Status st = synthetic_rows_follow_step_zero(trace_path, s.reader->header()); !st) return st.error();
  s.hooks = std::make_unique<ReplayHooks>(*s.reader, force, level, compare);
  if (filter) s.hooks->set_force_filter(std::move(filter));
  if (auto isa = runtime_isa())
    s.hooks->set_runnable([&registry, isa = *isa](const std::string& id) {
      const Kernel* k = registry.find(id);
      return k && k->info.isa <= isa;
    });
  TrainingOptions t;
  t.hooks = s.hooks.get();
  t.registry = &registry;
  t.param_budget = replay_param_budget(trace_path, config);
  t.new_run = false;
  t.collective = collective;
  t.device = device;
  t.interrupt = t_interrupt;
  // With every kernel forced, nothing is selected here (no autotune timing); a partial forcing selects
  // as the run's policy says and the hooks replace the forced sites.
  if (force.kernels && !s.hooks->filtered()) t.policy = Policy::forced;
  // The checkpoint to resume from is found before the run is set up: the hooks then leave out of the
  // comparison what the set-up draws for the initial weights, which the checkpoint replaces.
  std::unique_ptr<trace::TraceReader> cr;
  std::optional<trace::CheckpointRef> cp;
  Result<std::vector<trace::CheckpointRef>> index = std::vector<trace::CheckpointRef>{};
  bool initial = false;
  if (from > 0) {
    trace::ReaderLimits values = trace::without_payloads();
    values.tensor_values = true;
    auto opened = trace::TraceReader::open(trace_path, values);
    if (!opened) return opened.error();
    cr = std::move(opened).value();
    index = cr->checkpoint_index();
    // The last checkpoint at or before `from` after the start: a replay from the initial state (step 0) is
    // one from step 0, which runs the initialization as recorded.
    if (index)
      for (const auto& c : *index) {
        initial = initial || c.step == 0;
        if (c.step > 0 && c.step <= from && (!cp || c.step > cp->step)) cp = c;
      }
    if (cp) s.hooks->resume_at(cp->step);
  }
  auto training = Training::create(config, t);
  if (!training) return training.error();
  s.training = std::move(training).value();
  if (from >= s.training->total_steps())
    return Error{"step " + std::to_string(from) + " is past the run's end: it has steps 0.." +
                 std::to_string(s.training->total_steps() - 1)};
  if (from > 0) {
    // A trace that stops before its run's end (cut short, killed, interrupted) holds no step past its last:
    // a start there is refused as one past the run's end is, naming the steps the trace holds.
    // (A damaged one is left to the checks below, which say where it is damaged.)
    int64_t last = -1;
    bool clean = false, completed = false, damaged = false;
    if (auto scan = trace::TraceReader::open(trace_path, trace::without_payloads())) {
      for (;;) {
        auto rec = (*scan)->next();
        if (!rec || !*rec) break;
        if (const auto* st = std::get_if<trace::TraceStep>(&(*rec)->value); st && st->end) last = st->index;
      }
      clean = (*scan)->ended_cleanly();
      completed = clean && (*scan)->footer()->completed;
      damaged = (*scan)->stopped() && !(*scan)->stopped()->truncated;
    }
    if (!completed && !damaged && from > last)
      return Error{"step " + std::to_string(from) + " is past the end of the trace: " +
                   (last < 0 ? std::string("it holds no complete step")
                             : "it holds steps 0.." + std::to_string(last)) +
                   (clean ? " (its run stopped there)" : " (it did not end cleanly)")};
  }
  if (from > 0) {
    // The checkpoint resumes this run's model: a tensor it does not have, or of another shape, is refused
    // before it is decompressed.
    cr->expect_tensors(s.training->state_shapes());
    const std::string at = " at or before step " + std::to_string(from);
    if (cp) {
      // Read from the start to it, the checkpoint is checked against the steps before it: one out of place,
      // or holding other parameters than the step before it recorded, is damage, and nothing resumes from it.
      auto before = read_up_to_checkpoint(trace_path, cp->offset);
      if (!before)
        return Error{before.error().message + ": the checkpoint at step " + std::to_string(cp->step) +
                     " (byte " + std::to_string(cp->offset) + ") cannot be resumed from"};
      // A checkpoint this run's model cannot take, where the configuration differs from the recording's (a
      // --set of a layer's units), is the difference's doing, not the trace's.
      auto with_config = [&](std::string message) -> Error {
        const std::vector<std::string> differ = config_differences(s.reader->header(), config);
        if (differ.empty()) return Error{std::move(message)};
        std::string keys;
        for (const std::string& d : differ) keys += (keys.empty() ? "" : "; ") + d;
        return Error{message + ": the configuration differs from the recording's (" + keys +
                     "), and the run it sets up cannot resume from the recorded checkpoint at step " +
                     std::to_string(cp->step) + "; replay from step 0 to compare the two runs"};
      };
      auto state = cr->read_checkpoint(cp->offset);
      if (!state) return with_config(state.error().message);
      // Nor one whose place in the run is not where the steps before it lead: the replay would run other
      // batches or draws than the recording did and blame them on a cause of its own.
      if (const std::string why = place_contradiction(*before, *state); !why.empty())
        return Error{trace_path + ": byte " + std::to_string(cp->offset) + ": the checkpoint at step " +
                     std::to_string(cp->step) +
                     " does not follow the steps the trace records before it: " + why +
                     ": it was changed after it was written (it is damaged), and nothing resumes from it"};
      if (Status st = s.hooks->skip_to(state->step); !st) return st.error();
      if (!state->permutation.empty()) s.hooks->resumed_order(state->epoch, state->permutation);
      // What the run cannot take from the checkpoint is said at the checkpoint's byte, as the reader says
      // what it refuses in one.
      if (Status st = s.training->restore(*state); !st)
        return with_config(trace_path + ": byte " + std::to_string(cp->offset) + ": " + st.error().message);
      s.resumed_at = state->step;
      s.from_checkpoint = true;
    } else if (!index) {
      s.why_from_step_zero = "the trace's checkpoints cannot be read (" + index.error().message + ")";
    } else if (initial) {
      s.why_from_step_zero = "the last checkpoint" + at + " is the initial state";
    } else {
      s.why_from_step_zero = "the trace has no checkpoint" + at;
    }
  }
  return s;
}

std::optional<std::string> device_change_note(const trace::TraceHeader& h, const RunConfig& config) {
  auto recorded = parse_config(h.config, h.config_path + " (in the trace)", config_folder(h), h.config_overrides);
  if (!recorded || recorded->runtime.device == config.runtime.device) return std::nullopt;
  return "recorded with runtime.device = \"" + recorded->runtime.device + "\", replayed with runtime.device = \"" +
         config.runtime.device + "\": the kernels recorded on one device cannot run on the other, so this "
         "machine's choices run in their place, and the first op whose results differ is named with the kernel "
         "on each side";
}

std::optional<std::string> moving_statistics_note(const trace::TraceHeader& h, const std::string& who) {
  if (h.moving_statistics || h.level == ProbeLevel::step) return std::nullopt;
  auto recorded =
      parse_config(h.config, h.config_path + " (in the trace)", config_folder(h), h.config_overrides);
  if (!recorded || std::none_of(recorded->layers.begin(), recorded->layers.end(),
                                [](const LayerSpec& l) { return l.type == "BatchNormalization"; }))
    return std::nullopt;
  return who +
         " was written by a trainrr that did not probe batch normalization's moving statistics: they are "
         "not compared (a new recording holds them)";
}

Status device_for_replay(const trace::TraceHeader& h, const RunConfig& config) {
  auto device = parse_device(config.runtime.device);
  if (!device) return Error{"runtime.device: " + device.error().message};
  Status usable = usable_device(*device);
  if (usable) return {};
  auto recorded =
      parse_config(h.config, h.config_path + " (in the trace)", config_folder(h), h.config_overrides);
  if (recorded && recorded->runtime.device != config.runtime.device) {
    // The GPU was asked for by --set, not by the recording: replaying on the CPU is dropping that --set.
    return Error{"--set runtime.device=" + config.runtime.device +
                 " asks for the GPU, which cannot run here: " + usable.error().message +
                 ". The run was recorded with runtime.device = \"" + recorded->runtime.device +
                 "\": replay it without that --set"};
  }
  return Error{
      "this run is set to run on the GPU (runtime.device = \"" + config.runtime.device +
      "\") and cannot here: " + usable.error().message +
      ". To replay it on the CPU: --set runtime.device=cpu (the report then names the first op whose "
      "results differ, with the kernel on each side)"};
}

std::string kernel_refusal_message(const std::string& trace_path, const std::string& refusal) {
  return trace_path + ": " + refusal +
         "; the trace does not follow the run it describes (it was changed after it was written)";
}

void substitution_notes(const ReplayHooks& hooks, std::vector<std::string>& notes) {
  for (const auto& sub : hooks.substituted())
    notes.push_back("kernel " + sub.recorded + " (at " + sub.site + ") cannot run here" +
                    (sub.why.empty() ? std::string() : " (" + sub.why + ")") + ": replayed with " +
                    (sub.replayed.empty() ? std::string("nothing") : sub.replayed) + ", this machine's choice");
  for (const auto& [site, u] : hooks.unserved_orders())
    notes.push_back("the recorded accumulation order at " + site + " (step " + std::to_string(u.step) +
                    ") cannot be forced: it orders " + counted(static_cast<int64_t>(u.recorded), "partial") +
                    ", and the kernel made " + std::to_string(u.made) +
                    " here; it added them in the order its threads finished");
}

Result<std::vector<std::pair<std::string, std::string>>> current_environment(const RunConfig& config) {
  auto isa = runtime_isa();
  if (!isa) return isa.error();
  const int threads = config.runtime.threads > 0 ? config.runtime.threads : ThreadPool::hardware_threads();
  const Result<DeviceSpec> device = parse_device(config.runtime.device);
  return capture_environment(threads, isa_name(*isa), config.runtime.policy,
                             device.ok() ? device->str() : config.runtime.device);
}

namespace {

// The batch a replay's schedule says step `step` took, if it holds that step.
std::optional<int64_t> replayed_batch_of(const DataSchedule& s, int64_t step) {
  for (const DataSchedule::Taken& t : s.batches)
    if (t.step == step) return t.batch;
  return std::nullopt;
}

// The first element at which two tensors of one shape differ bit for bit, or -1.
int64_t first_differing_element(const Tensor& a, const Tensor& b) {
  for (size_t j = 0; j < a.data.size() && j < b.data.size(); ++j)
    if (std::memcmp(&a.data[j], &b.data[j], sizeof(float)) != 0) return static_cast<int64_t>(j);
  return -1;
}

// Whether a double holds a float32 value. A step's loss does: Loss::compute takes the batch's mean in float
// and widens it to double.
bool is_float32(double v) {
  return !std::isfinite(v) ||
         (std::fabs(v) <= std::numeric_limits<float>::max() && static_cast<double>(static_cast<float>(v)) == v);
}

std::string where(const CapturedProbe& p) { return p.site + " (" + phase_name(p.phase) + ")"; }

}  // namespace

// A configuration or data cause's own words, without its opening and without the kernel selections it names
// beside itself, which the cause that replaces it names.
static std::string without_prefix(const std::string& detail) {
  const std::string words = "the run configuration differs: ";
  std::string own = detail.rfind(words, 0) == 0 ? detail.substr(words.size()) : detail;
  for (const std::string_view beside : {kKernelsToo, kKernelAtOpToo})
    if (const size_t at = own.find(beside); at != std::string::npos) own.resize(at);
  return own;
}

// Where in a step an event of `phase` happens: set-up and input before the forward pass, then the backward
// pass, the update, and the evaluation after the step.
static int phase_rank(const std::string& phase) {
  for (int i = 0; const char* p : {"setup", "input", "forward", "backward", "update", "evaluation"}) {
    if (phase == p) return i;
    ++i;
  }
  return 2;
}

// Whether `a` happens no later in the run than `b`: by step, phase, then, within a phase, by layer in the
// model's order (`layers`; the backward pass runs them last to first).
static bool no_later_than(const FirstDivergence& a, const FirstDivergence& b,
                          const std::vector<std::string>& layers) {
  if (a.step != b.step) return a.step < b.step;
  if (phase_rank(a.phase) != phase_rank(b.phase)) return phase_rank(a.phase) < phase_rank(b.phase);
  const auto ia = std::find(layers.begin(), layers.end(), a.layer),
             ib = std::find(layers.begin(), layers.end(), b.layer);
  if (a.layer.empty() || b.layer.empty() || ia == layers.end() || ib == layers.end() || ia == ib) return true;
  return a.phase == "backward" ? ia > ib : ia < ib;
}

bool refine_cause(Cause& cause, const FirstDivergence& d, const CauseInputs& ci,
                  const std::optional<FirstDivergence>& recorded_itself,
                  const std::optional<FirstDivergence>& op_first, std::vector<std::string>& notes) {
  if (op_first && d.kind == "step_end" &&
      (cause.category == "numeric" || cause.category == "kernel" || cause.category == "environment" ||
       cause.category == "unexplained")) {
    // Below level op the step's end shows that something differs, not where: the re-execution, every op
    // probed, shows the first op whose output differs, its inputs the same, and the cause is that op's. Every
    // op before it computed the same output, whatever kernel it ran, and the ops after it ran later: another
    // kernel at any other site is no cause of it.
    CauseInputs at_its_op = ci;
    at_its_op.kernel_differences.clear();
    if (auto it = ci.kernel_differences.find(kernel_site_of(op_first->site));
        it != ci.kernel_differences.end())
      at_its_op.kernel_differences.insert(*it);
    Cause at_op = classify(*op_first, at_its_op);
    if (at_op.category != "config" && at_op.category != "data")
      cause = {at_op.category, "at " + op_first->site + " (" + op_first->phase +
                                   "), the first op whose output differs when step " +
                                   std::to_string(d.step) +
                                   " is re-executed with every op probed: " + at_op.detail};
  }
  if ((cause.category == "config" || cause.category == "data") && recorded_itself &&
      !no_later_than(*recorded_itself, d, ci.layer_names) && recorded_itself->step == d.step) {
    // The recorded run, on its own configuration and data, differs later in this step than the difference
    // found: that difference is the configuration's or the data's, not the kernels' (which ran there too,
    // with the same result); this machine's comes after it.
    for (const std::string_view beside : {kKernelsToo, kKernelAtOpToo})
      if (const size_t at = cause.detail.find(beside); at != std::string::npos) cause.detail.resize(at);
    notes.push_back(
        "the recorded run, re-executed here on its own configuration and data with every recorded "
        "choice forced, differs from the recording only later in step " +
        std::to_string(d.step) + ", at " + recorded_itself->phase + " " + recorded_itself->site +
        ": this machine makes a difference of its own there, after the one the " +
        (cause.category == "config" ? "configuration" : "data") + " made");
  }
  if ((cause.category == "config" || cause.category == "data") && recorded_itself &&
      no_later_than(*recorded_itself, d, ci.layer_names)) {
    // The configuration or the data reaches the difference, but the recorded run, on its own configuration
    // and data, differs here by then too: this machine (kernels it cannot run, other code in a library) makes
    // a difference without them, and that is the cause the evidence shows; what they add cannot be told
    // apart.
    CauseInputs without = ci;
    without.config_differences.clear();
    without.data_changed = false;
    without.data_detail.clear();
    Cause kernels = classify(d, without);
    if (kernels.category != "config" && kernels.category != "data") {
      notes.push_back(
          "the " + std::string(cause.category == "config" ? "configuration" : "data") +
          " differs from the recording's too (" + without_prefix(cause.detail) +
          "), and can have made this difference as well; but the recorded run, re-executed here on its own "
          "configuration and data with every recorded choice forced, differs from the recording at step " +
          std::to_string(recorded_itself->step) + ", " + recorded_itself->site +
          ", as well: this machine makes a difference without them, and the cause names what differs here");
      cause = std::move(kernels);
      return true;
    }
  }
  return false;
}

void locate_element(const std::string& trace_path, ForceSet force, const RunConfig& recorded,
                    const RunConfig& config, const KernelRegistry& registry, int64_t step, FirstDivergence& d,
                    int64_t& executed, std::vector<std::string>& notes, DeviceBackend* recorded_device,
                    std::optional<FirstDivergence>* recorded_itself, std::optional<FirstDivergence>* op_first,
                    std::optional<int64_t> replayed_batch,
                    const std::map<std::string, std::string>* replayed_kernels) {
  // The site and step come from the replay's comparison with the recording; the re-execution only adds the
  // values at that site, when it shows the difference there first, as the replay did.
  const std::string again =
      "re-executing step " + std::to_string(step) + " here from its recorded state both ways (" +
      (recorded.runtime.device == config.runtime.device
           ? std::string("recorded choices forced, and as replayed)")
           : "recorded choices forced on " + recorded.runtime.device + ", and as replayed on " +
                 config.runtime.device + ")");
  // The recorded run at the start of the step: its own configuration (threads included), every recorded
  // choice forced, from the nearest checkpoint. It is compared with the trace: its values stand for the
  // recorded ones only where it reproduces them.
  // It runs on the recorded device: only there do the recorded kernels run and give the recorded values. A
  // run recorded on the GPU and replayed on the CPU (--set runtime.device=cpu) gets its values where this
  // machine has that GPU; elsewhere the trace, which keeps digests, has none to give.
  RunConfig here = recorded;
  // runtime.threads = 0 is every core of the machine that runs it: the recorded run ran on the count its
  // environment records, which a machine of fewer (or more) cores would not take.
  if (here.runtime.threads == 0)
    if (auto reader = trace::TraceReader::open(trace_path, trace::without_payloads()))
      for (const auto& [key, value] : (*reader)->header().environment)
        if (key == "threads") {
          int n = 0;
          const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
          if (ec == std::errc() && end == value.data() + value.size() && n >= 1 && n <= kMaxThreads)
            here.runtime.threads = n;
        }
  DeviceBackend* device = nullptr;
  if (recorded.runtime.device != config.runtime.device) {
    Result<DeviceSpec> spec = parse_device(recorded.runtime.device);
    if (recorded_device) {
      device = recorded_device;
    } else if (!spec) {
      notes.push_back("no element detail: the recorded runtime.device: " + spec.error().message);
      return;
    } else if (Status usable = spec->is_cpu() ? Status{} : usable_device(*spec); !usable) {
      notes.push_back("no element detail: only the recorded device (runtime.device = \"" + recorded.runtime.device +
                      "\") gives the recorded values, and this machine cannot run it: " + usable.error().message +
                      ". The trace keeps digests, not values; replayed with --set runtime.device=" +
                      config.runtime.device + " on a machine with that GPU, the report gives the first element "
                      "that differs, both values and their distance in ULPs");
      return;
    }
  }
  auto a = make_replay_side(trace_path, here, registry, ForceSet::all(), {}, ProbeLevel::op, true, step, nullptr,
                            device);
  if (!a) {
    notes.push_back("no element detail: " + a.error().message);
    return;
  }
  if (!a->training->fit(step).ok()) {
    notes.push_back("no element detail: the re-execution could not select its kernels");
    return;
  }
  executed += step - a->resumed_at;
  const TrainState start = a->training->state();
  a->hooks->capture_step(step);
  if (!a->training->fit(step + 1).ok()) {
    notes.push_back("no element detail: the re-execution of step " + std::to_string(step) + " failed");
    return;
  }
  ++executed;
  if (a->hooks->diverged()) {
    const FirstDivergence& fa = *a->hooks->first();
    if (recorded_itself) *recorded_itself = fa;
    // Which recorded kernels could not run here: evidence beside the difference, not its place.
    const auto& subs = a->hooks->substituted();
    std::vector<std::string> replaced;
    for (const auto& sub : subs) replaced.push_back(sub.site);
    notes.push_back(
        "no element detail: re-executed here with every recorded choice forced, the recorded run itself "
        "differs from the recording at step " +
        std::to_string(fa.step) + ", " + fa.site +
        (subs.empty()
             ? std::string()
             : " (" + counted(static_cast<int64_t>(subs.size()), "recorded kernel") +
                   " could not run here and ran as this machine's choice: " + first_of(replaced, 3) + ")") +
        ", so its values are not the recorded ones; the trace keeps digests, not values");
    return;
  }
  const trace::TraceHeader& header = a->reader->header();
  const ProbeLevel level = header.level;
  // What the replay compares, in the order of the step: the probes recorded at the trace's level, the forward
  // pass's, then the loss (compared at the step's end, though computed before the backward pass), then the
  // backward pass's and the update's; at the step's end, the gradients (recorded at level layer only) and the
  // parameters (all in one digest at level step).
  auto compared = [&header, level](const CapturedProbe& p) {
    if (!p.step_end) return trace::probe_recorded_in(p.site, header);
    return p.phase != Phase::backward || level == ProbeLevel::layer;
  };
  auto at_site = [&d](const CapturedProbe& p) {
    return p.site == d.site || (d.site == trace::kAllParameters && p.step_end && p.phase == Phase::update);
  };
  const auto& ca = a->hooks->captured();
  const std::string loss_where = "loss (forward)";
  std::string elsewhere;  // where an attempt showed its first difference instead of d's site
  // The same step from the same state as replayed. A nondeterministic step may need a few tries to show its
  // difference again, and at the same site.
  const int attempts = 5;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    auto b = make_replay_side(trace_path, config, registry, force, {}, ProbeLevel::op, false, 0);
    if (!b) {
      notes.push_back("no element detail: " + b.error().message);
      return;
    }
    if (!b->hooks->skip_to(step).ok() || !b->training->restore(start).ok()) {
      notes.push_back("no element detail: the replayed run cannot take the recorded state of step " +
                      std::to_string(step));
      return;
    }
    b->hooks->capture_step(step);
    if (replayed_batch) b->hooks->take_batch(step, *replayed_batch);
    if (replayed_kernels) b->hooks->pin_kernels(*replayed_kernels);
    if (!b->training->fit(step + 1).ok()) {
      notes.push_back("no element detail: the replayed re-execution of step " + std::to_string(step) + " failed");
      return;
    }
    ++executed;
    const auto& cb = b->hooks->captured();
    const std::optional<double>& loss_a = a->hooks->captured_loss();
    const std::optional<double>& loss_b = b->hooks->captured_loss();
    const bool loss_differs = loss_a && loss_b && !same_bits(*loss_a, *loss_b);
    bool loss_passed = false;  // the values compared so far reach past the loss
    std::string first_any;     // where the first value that differs is, compared by the trace or not
    std::string differs_at;    // the first value that differs where the trace compares it, not at d's site
    const CapturedProbe* first_op = nullptr;  // first_any, where it is an op's output
    // The re-execution gives the values at d's site: the notes say where they come from, and where the step
    // shows a difference first among the values that the trace does not compare.
    auto given = [&](const std::string& at, const std::string& which) {
      notes.push_back("element values from " + again + ": the trace keeps digests, not values" + which);
      if (first_op && op_first) {
        // The first op whose output differs, every op before it the same: its kernel on each side.
        FirstDivergence f;
        f.step = step;
        f.kind = "probe";
        f.phase = phase_name(first_op->phase);
        f.site = first_op->site;
        split_site(f.site, f.layer, f.op);
        const std::string ks = kernel_site_of(f.site);
        if (auto k = a->hooks->replayed_kernels().find(ks); k != a->hooks->replayed_kernels().end())
          f.kernel_recorded = k->second;
        for (const auto& sub : a->hooks->substituted())
          if (sub.site == ks && sub.recorded != f.kernel_recorded) f.kernel_substituted_for = sub.recorded;
        if (auto k = b->hooks->replayed_kernels().find(ks); k != b->hooks->replayed_kernels().end())
          f.kernel_replayed = k->second;
        *op_first = std::move(f);
      }
      // A parameter's update is compared, as the parameter after the step, where the step's parameters are.
      const bool compared_parameter =
          d.phase == "update" && first_any.find("/update:out") != std::string::npos;
      if (first_any != at && !compared_parameter)
        notes.push_back("re-executed with every op probed, step " + std::to_string(step) +
                        " shows a difference first at " + first_any + ", which the trace, recorded at level " +
                        probe_level_name(level) + ", does not compare");
    };
    const size_t n = std::min(ca.size(), cb.size());
    for (size_t i = 0; i <= n; ++i) {
      // The loss, in its place: after the forward pass, before everything else.
      if (!loss_passed && (i == n || ca[i].phase != Phase::forward)) {
        loss_passed = true;
        if (loss_differs) {
          if (first_any.empty()) first_any = loss_where;
          if (d.site != "loss") {
            differs_at = loss_where;
            break;
          }
          const double va = *loss_a, vb = *loss_b;
          // The loss is a float32 held in a double: its distance is counted in float32 ULPs, as an element's.
          if (!is_float32(va) || !is_float32(vb)) {
            notes.push_back("no element detail: the loss of step " + std::to_string(step) +
                            " is not a float32 value, and the report counts float32 ULPs");
            return;
          }
          d.has_element = true;
          d.index = 0;
          d.recorded = va;
          d.replayed = vb;
          d.abs_diff = std::fabs(va - vb);
          d.ulp = ulp_distance(static_cast<float>(va), static_cast<float>(vb));
          given(loss_where, "");
          return;
        }
      }
      if (i == n) break;
      if (ca[i].site != cb[i].site) {
        notes.push_back("the two re-executions take different paths at " + ca[i].site + " / " + cb[i].site);
        return;
      }
      if (ca[i].value.shape != cb[i].value.shape) {
        notes.push_back("the two re-executions give " + ca[i].site +
                        " different shapes: " + shape_str(ca[i].value.shape) + " (recorded) vs " +
                        shape_str(cb[i].value.shape) + " (replayed)");
        return;
      }
      const int64_t j = first_differing_element(ca[i].value, cb[i].value);
      if (j < 0) continue;
      if (first_any.empty()) {
        first_any = where(ca[i]);
        if (!ca[i].step_end) first_op = &ca[i];
      }
      if (!compared(ca[i])) continue;
      if (!at_site(ca[i])) {
        differs_at = where(ca[i]);
        break;
      }
      const float va = ca[i].value.data[j], vb = cb[i].value.data[j];
      d.has_element = true;
      d.index = j;
      d.recorded = va;
      d.replayed = vb;
      d.abs_diff = std::fabs(static_cast<double>(va) - vb);
      d.ulp = ulp_distance(va, vb);
      if (!d.summary_recorded || !d.summary_replayed) {
        d.summary_recorded = summarize(std::span<const float>(ca[i].value.data));
        d.summary_replayed = summarize(std::span<const float>(cb[i].value.data));
      }
      given(where(ca[i]), d.site == trace::kAllParameters
                              ? "; the element is one of " + ca[i].site.substr(0, ca[i].site.rfind(':')) +
                                    ", the first parameter that differs"
                              : std::string());
      return;
    }
    if (differs_at.empty()) differs_at = first_any;
    if (!differs_at.empty()) elsewhere = differs_at;
  }
  if (!elsewhere.empty())
    notes.push_back(again + ", the first value that differs is at " + elsewhere + ", not at " + d.site +
                    " where the replay found the difference: the re-execution did not repeat it there, so no "
                    "element values are given");
  else {
    // Not recurring from the recorded state need not be a race: what the replay carried into the step may
    // not be in that state.
    std::vector<std::string> why;
    const OptimizerConfig &ro = recorded.train.optimizer, &co = config.train.optimizer;
    if (ro.type != co.type || (ro.momentum != 0) != (co.momentum != 0) || ro.centered != co.centered)
      why.push_back(
          "the replay's optimizer keeps other state than the recorded one (its settings differ): the "
          "recorded state of step " +
          std::to_string(step) + " holds none of what the replay's carried into the step");
    if (config.runtime.policy == "autotune" && !force.kernels)
      why.push_back("the replay picks its kernels by timing (autotune), again in each try");
    std::string reasons;
    for (size_t i = 0; i < why.size(); ++i) reasons += (i ? "; or " : "") + why[i];
    notes.push_back(again + " gives the recorded values in each of " + std::to_string(attempts) +
                    " tries: the difference at " + d.site + " did not recur, so no element values are given" +
                    (reasons.empty() ? std::string() : " (it need not be a race: " + reasons + ")"));
  }
}

std::string with_environment(const std::string& command, const std::vector<EnvDifference>& differences) {
  std::string set;
  for (const EnvDifference& e : differences)
    if (e.key.rfind("env.", 0) == 0 && e.replayed != "(unset)" && e.replayed != "(not recorded)")
      set += e.key.substr(4) + "=" + (e.replayed == "(empty)" ? std::string() : shell_word(e.replayed)) + " ";
  return set + command;
}

std::vector<std::string> take_served(std::vector<std::string>& differences, bool seed_served,
                                     bool split_forced, const FirstDivergence* first) {
  const bool split_drawn_otherwise = first && first->site == "data/split";
  std::vector<std::string> served;
  std::erase_if(differences, [&](const std::string& difference) {
    auto is = [&difference](const char* key) { return difference.rfind(std::string(key) + ": ", 0) == 0; };
    const bool is_served = (is("seed") && seed_served) ||
                           (split_forced && !split_drawn_otherwise &&
                            (is("data.test_fraction") || is("data.stratify") || is("data.split")));
    if (is_served) served.push_back(difference);
    return is_served;
  });
  return served;
}

namespace {

// Whether a configuration difference changes only the initial weights (an initializer), which a run resumed
// from a checkpoint takes from there instead.
bool changes_only_initial_weights(const std::string& difference) {
  const std::string key = difference.substr(0, difference.find(": "));
  return key.rfind("model.layers[", 0) == 0 && key.ends_with("_initializer");
}

std::string joined(const std::vector<std::string>& differences) {
  std::string s;
  for (const std::string& c : differences) s += (s.empty() ? "" : "; ") + c;
  return s;
}

// "seed and data.test_fraction": the keys of configuration differences.
std::string key_list(const std::vector<std::string>& differences) {
  std::string s;
  for (size_t i = 0; i < differences.size(); ++i)
    s += (i == 0 ? "" : i + 1 == differences.size() ? " and " : ", ") + differences[i].substr(0, differences[i].find(':'));
  return s;
}

std::string changes_words(const std::vector<std::string>& v) {
  return key_list(v) + (v.size() == 1 ? " changes" : " change");
}

ReplayResult fail(int code, std::string msg) {
  ReplayResult r;
  r.exit_code = code;
  r.error = std::move(msg);
  return r;
}

// What a replay compares, by the trace's level.
std::string compared_at(ProbeLevel level) {
  switch (level) {
    case ProbeLevel::step:
      return "each step's loss, metrics and parameters (level step)";
    case ProbeLevel::layer:
      return "each step's loss, metrics, parameters and gradients, and every layer's output (level layer)";
    case ProbeLevel::op:
      return "every op's output, and each step's loss, metrics and parameters (level op)";
  }
  return "";
}

}  // namespace

Status require_replayable_trace(const std::string& path, const std::string& what) {
  if (trace::is_run_folder(path)) {
    if (!trace::holds_rank_traces(path))
      return Error{path +
                   " is a folder, not a trace, and holds no rank traces (rank0.trr, rank1.trr, ...) of a "
                   "data-parallel run"};
    return Error{path + " is the folder of a data-parallel run: " + what +
                 " here takes one process's trace; `trainrr " + what +
                 "` on the command line takes a run's folder"};
  }
  auto reader = trace::TraceReader::open(path, trace::without_payloads());
  if (!reader) return reader.error();
  // A rank's trace names its run's folder, which this function does not take: the command line does.
  if (Status s = trace::refuse_rank_alone((*reader)->header(), path, what); !s)
    return Error{s.error().message + " to `trainrr " + what +
                 "` on the command line, which replays a run's folder (here, only a trace of one process)"};
  if (Status s = seed_follows_config((*reader)->header(), path); !s) return s;
  return require_complete_step(path);
}

Status seed_follows_config(const trace::TraceHeader& h, const std::string& path) {
  auto config =
      parse_config(h.config, h.config_path + " (in the trace)", config_folder(h), h.config_overrides);
  if (!config) return {};  // said where the configuration is read
  const bool says = config->seed.has_value();
  if (says == !h.seed_from_entropy && (!says || *config->seed == h.seed)) return {};
  const std::string changed = "so the trace was changed after it was written";
  if (says == !h.seed_from_entropy)  // both give a seed: not the same one
    return Error{path + ": the header's seed is " + std::to_string(h.seed) +
                 " (from the configuration), but the configuration in the trace gives seed = " +
                 std::to_string(*config->seed) + ": in a trace trainrr record wrote they agree, " + changed};
  // Where the seed came from: the OS exactly when the configuration gives none.
  return Error{
      path + ": the header's seedFromEntropy is " +
      (h.seed_from_entropy ? "true (its seed, " + std::to_string(h.seed) +
                                 ", was drawn from the OS), but the configuration in the trace gives "
                                 "one (seed = " +
                                 std::to_string(*config->seed) + ")"
                           : "false (its seed, " + std::to_string(h.seed) +
                                 ", came from the configuration), but the configuration in the trace "
                                 "gives none") +
      ": trainrr record draws a seed from the OS exactly when the configuration gives none, " + changed};
}

Status require_complete_step(const std::string& path) {
  auto reader = trace::TraceReader::open(path);
  if (!reader) return reader.error();
  for (;;) {
    auto rec = (*reader)->next();
    std::string why;
    if (!rec) {
      const auto& stop = (*reader)->stopped();
      if (stop && !stop->truncated)  // damage, not a cut: the file may hold steps that cannot be trusted
        return Error{path +
                     ": no complete step can be read: the trace is damaged before its first step ends (" +
                     rec.error().message + "): there is nothing to compare"};
      why = rec.error().message;
    } else if (!rec->has_value()) {
      const auto& footer = (*reader)->footer();
      why = footer ? "the run stopped before it: " + footer->end_reason
                   : "the file ends before the first step's end: the recording was killed or cut during it";
    } else if (auto* step = std::get_if<trace::TraceStep>(&(*rec)->value); !step || !step->end) {
      continue;
    } else {
      return {};
    }
    return Error{path + ": the trace holds no complete step (" + why + "): there is nothing to compare"};
  }
}

ReplayResult replay(const ReplayOptions& o) {
  if (Status s = require_replayable_trace(o.trace_path, "replay"); !s) return fail(2, s.error().message);
  trace::ReaderLimits header_only;  // the embedded data, for the run to train on
  header_only.tensor_values = false;
  auto reader = trace::TraceReader::open(o.trace_path, header_only);
  if (!reader) return fail(2, reader.error().message);
  const trace::TraceHeader header = (*reader)->header();
  reader->reset();
  auto scratch = ScratchDir::create("trainrr-replay");
  if (!scratch) return fail(2, scratch.error().message);
  auto rebuilt =
      rebuild_config(header, o.overrides, o.data_path, o.allow_data_change, *scratch, "", o.trace_path);
  if (!rebuilt) return fail(2, rebuilt.error().message);
  const RunConfig& config = rebuilt->config;
  if (Status s = device_for_replay(header, config); !s) return fail(3, s.error().message);
  const std::optional<std::string> device_note = device_change_note(header, config);
  auto env = current_environment(config);
  if (!env) return fail(2, env.error().message);

  ReplayResult res;
  DivergenceReport& rep = res.report;
  rep.command = "replay";
  rep.notes.insert(rep.notes.end(), rebuilt->notes.begin(), rebuilt->notes.end());
  if (device_note) rep.notes.push_back(*device_note);
  if (auto note = moving_statistics_note(header, "the trace")) rep.notes.push_back(*note);

  KernelRegistry registry;
  register_cpu_kernels(registry);
  auto side = make_replay_side(o.trace_path, config, registry, o.force, {}, header.level, true, o.from_step,
                               nullptr, o.test_device);
  if (!side) {
    // --data names the samples' file: a file of one value per row given there is the labels, most likely,
    // which have a key of their own.
    const bool labels_apart = std::any_of(header.datasets.begin(), header.datasets.end(),
                                          [](const trace::DatasetInfo& ds) { return ds.name == "labels"; });
    if (!o.data_path.empty() && labels_apart &&
        side.error().message.starts_with(o.data_path + ": features need a rows dimension"))
      return fail(2, side.error().message +
                         " (--data replaces the samples' file; the labels' file is "
                         "replaced with --set data.labels=PATH)");
    if (side.error().machine) return fail(3, "cannot replay here: " + side.error().message);
    return fail(2, side.error().message);
  }
  // A replay on the GPU gathers the kernels it launches, as the recording did, to compare them with the
  // recorded ones.
  if (o.test_kernel_source) {
    side->hooks->gather_kernels(o.test_kernel_source());
  } else if (const Result<DeviceSpec> spec = parse_device(config.runtime.device); spec.ok() && !spec->is_cpu()) {
    if (KernelSourceFactory factory = kernel_source_factory()) side->hooks->gather_kernels(factory());
  }
  const int64_t resumed = side->resumed_at;
  Training& t = *side->training;
  // A replay on a GPU compares that GPU's entries with the recorded ones, as the CPU's.
  if (DeviceBackend* device = t.device()) {
    const auto gpu = device->environment();
    env->insert(env->end(), gpu.begin(), gpu.end());
  }
  rep.environment = environment_differences(header.environment, *env);
  ReplayHooks& hooks = *side->hooks;
  // With the trace's own configuration and data and its draws served, this run makes the split it recorded:
  // another says the trace does not follow its configuration (its split settings changed after it was
  // written).
  if (o.force.rng && o.force.split && o.overrides.empty() && !rebuilt->data_changed && resumed == 0 &&
      hooks.served_split_differs()) {
    FirstDivergence d =
        divergence(0, "setup", "split", "data/split",
                   hooks.served_split_detail() + "; " + std::string(kSplitNotOfItsConfiguration));
    d.op = d.site;  // as a split that differs is named: "setup data/split"
    hooks.diverge_at_end(std::move(d));
  }
  const int64_t end = o.to_step >= 0 ? std::min(o.to_step, t.total_steps()) : t.total_steps();
  // A range of steps that runs past the run's end is replayed to the end; one that starts past it holds no
  // step and was refused (make_replay_side).
  if (o.to_step > t.total_steps())
    rep.notes.push_back("--to-step " + std::to_string(o.to_step) + " is past the run's end: it has steps 0.." +
                        std::to_string(t.total_steps() - 1) + ", replayed to the last");
  const trace::TraceReader& read = *side->reader;
  bool cut_short = false;
  // The recorded initial state against the one this run sets up from the recorded draws, which a run that
  // starts at step 0 makes before any step: the trace's initial checkpoint is what export --step 0 gives.
  // A recorded draw of the initial weights that the set-up here did not make (another initializer) comes
  // first.
  if (resumed == 0 && !hooks.diverged() && t.step() == 0 && end > 0)
    if (auto d = initial_state_difference(o.trace_path, *side)) hooks.diverge_at_end(std::move(*d));
  while (t.step() < end) {
    if (hooks.at_end()) {
      // Damage is said in the report's first line and on stderr, with the reader's words.
      if (!hooks.trace_damage())
        rep.notes.push_back(
            "the trace ends after step " + std::to_string(t.step() - 1) + ": " +
            (!hooks.status().ok()     ? "reading stopped there: " + hooks.status().error().message
             : read.still_recording() ? std::string("the recording had got that far when it was read")
             : read.footer() && read.footer()->completed
                 ? "the recorded run ended there, its schedule done; this replay's configuration "
                   "runs " +
                       counted(t.total_steps(), "step")
                 : std::string("the recording stopped there")));
      cut_short = true;
      break;
    }
    // A first divergence in the initial weights' draws (a model of another shape, another seed) is found
    // before any step runs, and nothing a step does comes before it: the replay stops there, rather than
    // train a step of a model that may be far larger than the recorded one.
    if (hooks.first() && (in_initial_weights(*hooks.first()) || hooks.first()->kind == "state") &&
        !o.keep_going && t.step() == resumed) {
      rep.notes.push_back(std::string(hooks.first()->kind == "state"
                                          ? "the first difference is in the initial state"
                                          : "the first difference is in the draws of "
                                            "the initial weights") +
                          ", before step " + std::to_string(resumed) +
                          " runs: the replay stopped there, with no step run (--keep-going trains on)");
      break;
    }
    Status s = t.fit(t.step() + 1);
    if (const auto& refused = hooks.kernel_refusal())
      return fail(2, kernel_refusal_message(o.trace_path, *refused));
    if (!s) return fail(3, "cannot replay here: " + s.error().message);
    ++res.steps_executed;
    if (o.log && isatty(fileno(o.log)) && (t.step() % 100 == 0 || t.step() == end))
      std::fprintf(o.log, "\rreplayed %lld/%lld steps", static_cast<long long>(t.step()),
                   static_cast<long long>(end));
    // A checkpoint the run passes (--checkpoint-every) against the state it is in there: what the steps do
    // not compare (an optimizer's slots, the random streams' offsets) is compared there, as at the end.
    if (!hooks.diverged())
      if (auto d = checkpoint_difference(o.trace_path, *side)) hooks.diverge_at_end(std::move(*d));
    if (hooks.diverged() && !o.keep_going) break;
  }
  if (o.log && isatty(fileno(o.log))) std::fprintf(o.log, "\n");
  if (DeviceBackend* device = t.device())
    for (const std::string& note : device->device_notes()) rep.notes.push_back(note);
  // A trace cut short (a killed recording) is compared as far as it goes, as show and diff read it, and the
  // report's status says where it stops, damaged or cut, wherever the cut falls: also after the last step,
  // in the final checkpoint or the footer (what a recording killed at its end leaves). A trace still being
  // recorded stops where the recording had got to, and one with a footer where its run ended (a replay
  // asked for more steps): neither is cut.
  const bool whole_run = !cut_short && t.step() == t.total_steps();
  // The state the run ends in against the recorded final checkpoint, where every step compared the same: what
  // the steps do not compare (a batch normalization's moving statistics at level step) is compared there.
  // A recording stopped early (Ctrl-C) holds the state it stopped in: a replay that stops there with it
  // compares it.
  if ((whole_run || cut_short) && !hooks.diverged() && t.step() > resumed && hooks.at_end() &&
      hooks.trace_ended_cleanly() && !hooks.trace_damage())
    if (auto d = final_state_difference(o.trace_path, *side)) hooks.diverge_at_end(std::move(*d));
  const bool cut_after_last_step = whole_run && hooks.at_end() && !hooks.trace_ended_cleanly();
  res.damage = hooks.trace_damage();
  if (res.damage ||
      ((cut_short || cut_after_last_step) && !read.still_recording() && !read.ended_cleanly())) {
    TraceStop& stop = rep.stop.emplace();
    stop.damaged = res.damage.has_value();
    stop.trace = o.trace_path;
    stop.after_step = t.step() - 1;
    if (read.stopped()) stop.offset = read.stopped()->offset;
    stop.detail = hooks.status().ok() ? "the file ends after a complete message, with no footer"
                                      : hooks.status().error().message;
  } else if (!read.still_recording() && t.step() < t.total_steps() &&
             ((hooks.diverged() && !o.keep_going) || t.step() == end)) {
    // Stopped at its first divergence or at --to-step, the replay read the trace no further: the rest is read
    // now (without its tensors), so that damage or a cut past where it stopped is reported as diff reports
    // it, and a damaged trace is not said to have reproduced.
    if (auto rest = trace::TraceReader::open(o.trace_path, trace::without_payloads())) {
      int64_t last = -1;
      Status status;
      for (;;) {
        auto rec = (*rest)->next();
        if (!rec) {
          status = rec.error();
          break;
        }
        if (!rec->has_value()) break;
        if (const auto* st = std::get_if<trace::TraceStep>(&(*rec)->value)) last = st->index;
      }
      const auto& at = (*rest)->stopped();
      const bool damaged = at && !at->truncated && !status.ok();
      if (damaged || (at && at->truncated) || (!(*rest)->ended_cleanly() && !(*rest)->still_recording())) {
        if (damaged) res.damage = status.error().message;
        TraceStop& stop = rep.stop.emplace();
        stop.damaged = damaged;
        stop.trace = o.trace_path;
        stop.after_step = last;
        if (!hooks.diverged() && t.step() == end) stop.to_step = end;
        if (at) stop.offset = at->offset;
        stop.detail =
            status.ok() ? "the file ends after a complete message, with no footer" : status.error().message;
      }
    }
  }

  substitution_notes(hooks, rep.notes);
  rep.notes.insert(rep.notes.end(), hooks.kernel_notes().begin(), hooks.kernel_notes().end());
  rep.facts.emplace_back("trace", o.trace_path);
  rep.facts.emplace_back("force", o.force.str());
  if (resumed > 0) rep.facts.emplace_back("resumed from checkpoint at step", std::to_string(resumed));
  if (!side->why_from_step_zero.empty()) rep.notes.push_back(side->why_from_step_zero + ": replayed from step 0");
  rep.facts.emplace_back("steps compared", std::to_string(hooks.steps_compared()));
  hooks.finish_views(rep.page);
  rep.page.per_step = true;
  rep.page.layer_probes = header.level != ProbeLevel::step;
  rep.page.validation = config.train.validation_split > 0;
  rep.page.environment = side_by_side_table(header.environment, *env);
  // A replay that stopped in the set-up (a first divergence in the initial weights) ran no step, and chose
  // no kernel where the recording chose one in its first step: that is no difference in the choices.
  if (res.steps_executed > 0) {
    rep.page.kernels = side_by_side_table(hooks.recorded_kernels(), hooks.replayed_kernels());
  } else {
    std::map<std::string, std::string> reached;
    for (const auto& [site, kernel] : hooks.recorded_kernels())
      if (hooks.replayed_kernels().count(site)) reached.emplace(site, kernel);
    rep.page.kernels = side_by_side_table(reached, hooks.replayed_kernels());
  }
  rep.page.command = with_environment(replay_command_line(o), rep.environment);
  rep.page.stopped_at_first = hooks.diverged() && !o.keep_going && t.step() < end;
  if (rep.page.stopped_at_first) rep.page.would_end = end - 1;
  // A trace cut or damaged holds no step past where it stops: none is drawn as one the replay did not reach.
  if (rep.page.stopped_at_first && rep.stop && rep.stop->after_step >= 0)
    rep.page.would_end = std::min(rep.page.would_end, rep.stop->after_step);
  if (rep.page.stopped_at_first && hooks.first() && t.step() > resumed && rep.page.would_end >= t.step())
    rep.notes.push_back("the replay stopped at the end of step " + std::to_string(t.step() - 1) +
                        ", its first divergence; --keep-going replays on to step " +
                        std::to_string(rep.page.would_end) + " to show how far the runs drift");
  if (o.keep_going && hooks.diverged() && !hooks.losses().empty()) {
    // How far the run drifted by the last step compared, past its first divergence.
    const auto& [recorded, replayed] = hooks.losses().back();
    rep.facts.emplace_back(
        "loss at step " + std::to_string(resumed + static_cast<int64_t>(hooks.losses().size()) - 1),
        round_trip(recorded) + " (recorded) vs " + round_trip(replayed) + " (replayed)");
  }

  CauseInputs ci;
  ci.resumed_at = resumed;
  ci.outputs_compared = header.level != ProbeLevel::step;
  ci.op_outputs_compared = header.level == ProbeLevel::op;
  ci.data_changed = rebuilt->data_changed;
  ci.data_detail = rebuilt->data_detail;
  set_changed_data_sets(ci, rebuilt->data_sets_changed);
  // A configuration difference that the forced choices override changes nothing the run computes: the run
  // got the recorded seed, or the recorded split. It is reported, never blamed.
  // Nor does one that changes only the initial weights in a run resumed from a checkpoint, which replaces
  // them.
  std::vector<std::string> rest = config_differences(header, config), replaced;
  const std::vector<std::string> served = take_served(
      rest, hooks.replayed_seed() == header.seed, o.force.split, hooks.first() ? &*hooks.first() : nullptr);
  for (const std::string& c : rest)
    (resumed > 0 && changes_only_initial_weights(c) ? replaced : ci.config_differences).push_back(c);
  ci.layer_names = layer_names(config.layers);
  rep.config_differences = ci.config_differences;
  rep.config_differences.insert(rep.config_differences.end(), served.begin(), served.end());
  rep.config_differences.insert(rep.config_differences.end(), replaced.begin(), replaced.end());
  const std::string checkpoint_replaces = "the run resumed from the checkpoint at step " +
                                          std::to_string(resumed) + " takes its weights from there";
  ci.kernel_differences = hooks.kernel_differences();
  ci.environment = rep.environment;
  ci.registry = &registry;
  ci.seed_recorded = header.seed;
  ci.seed_replayed = hooks.replayed_seed();
  ci.seed_from_entropy = header.seed_from_entropy;
  ci.matched_draws = hooks.matched_draws();
  ci.order_differences = hooks.order_differences();
  ci.kernels = hooks.recorded_kernels();
  ci.kernel_picks = hooks.kernel_picks();
  for (const auto& [site, u] : hooks.unserved_orders())
    if (u.recorded != u.made && std::none_of(hooks.substituted().begin(), hooks.substituted().end(),
                                             [&site = site](const auto& x) { return x.site == site; }))
      ci.orders_of_other_shapes[site] = {u.step, "the recorded accumulation order at " + site + " (step " +
                                                     std::to_string(u.step) + ") orders " +
                                                     counted(static_cast<int64_t>(u.recorded), "partial") +
                                                     ", and the same kernel makes " + std::to_string(u.made) +
                                                     " of the shapes the trace's configuration gives"};

  // With the recorded copy of the data at hand (embedded, or at its path as recorded), where the rows that
  // differ are first read, as this replay's schedule reads them.
  if (rebuilt->data_changed && header.world_size == 0)
    if (auto scratch = ScratchDir::create("trainrr-reach"))
      if (auto recorded = rebuild_config(header, {}, "", false, *scratch);
          recorded && recorded->config.data.source == config.data.source) {
        DataConfig other = config.data;
        for (const auto& file : data_files(other)) other.*file.second = recorded->config.data.*file.second;
        other.scale = recorded->config.data.scale;  // the recording's scaler, weighed beside the replay's
        if (auto reach = data_reach(config, other, hooks.schedule())) ci.data_reach = *reach;
      }

  if (!hooks.diverged() && !rebuilt->data_changed) {
    rep.diverged = false;
    res.exit_code = 0;
    rep.facts.emplace_back("compared", compared_at(header.level));
    // A --set that the forced choices override (a seed, a test fraction under a forced split), or that
    // changes nothing compared, is no divergence, but the run asked for is not the one recorded.
    if (!ci.config_differences.empty() || !served.empty() || !replaced.empty()) {
      std::vector<std::string> all = served;
      all.insert(all.end(), ci.config_differences.begin(), ci.config_differences.end());
      all.insert(all.end(), replaced.begin(), replaced.end());
      // Why each difference left the compared steps alike, from what ran.
      std::vector<std::string> why;
      if (!served.empty())
        why.push_back("the forced choices (--force " + o.force.str() + ") serve the recorded values in place of " +
                      key_list(served));
      if (!replaced.empty())
        why.push_back(changes_words(replaced) + " only the initial weights, and " + checkpoint_replaces);
      // Which side has steps the other lacks: those are not compared.
      const Unmatched unmatched = cut_short                     ? Unmatched::trace_first
                                  : hooks.at_end()              ? Unmatched::none
                                  : t.step() == t.total_steps() ? Unmatched::replay_run_end
                                                                : Unmatched::replay_to_step;
      rep.notes.push_back(
          config_matched_note(all, why, ci.config_differences, hooks.steps_compared(), t.step(), unmatched));
    }
    // Below level op, a difference inside a step that rounding removes before the step's end leaves no
    // trace: say so when this machine differs from the recording's, as that is when it happens.
    if (header.level != ProbeLevel::op && !rep.environment.empty())
      rep.notes.push_back(std::string("recorded at level ") + probe_level_name(header.level) +
                          ": values inside a step were not recorded, so a difference that rounding removed "
                          "before the step's end does not show; record with --level op to compare every op");
    return res;
  }
  rep.diverged = true;
  res.exit_code = 1;
  FirstDivergence d = hooks.first() ? *hooks.first() : FirstDivergence{};
  if (!hooks.first()) {
    d.step = 0;
    d.kind = "data";
    d.phase = "setup";
    d.site = "data";
    d.detail = rebuilt->data_detail;
  }
  // Where the recorded run, re-executed here (its configuration and data, every recorded choice forced),
  // differs from the recording itself: this machine alone makes a difference by that step.
  std::optional<FirstDivergence> recorded_itself;
  // Where the trace does not compare every op: the first op whose output differs in the re-execution.
  std::optional<FirstDivergence> op_first;
  bool config_in_note = false;  // a note below names the configuration's differences already
  if (o.element_detail && (d.kind == "probe" || d.kind == "step_end")) {
    // The recorded side of the re-execution runs on the recorded data: with the data changed, the copy the
    // replay ran on is not it.
    // In a folder of its own: the replay's copies of the embedded data files are still in use where they are.
    auto recorded_scratch = ScratchDir::create("trainrr-replay");
    Result<RebuiltRun> recorded = Error{recorded_scratch ? "" : recorded_scratch.error().message};
    if (recorded_scratch)
      recorded = rebuilt->data_changed ? rebuild_config(header, {}, "", false, *recorded_scratch)
                                       : rebuild_config(header, {}, o.data_path, false, *recorded_scratch);
    if (recorded) {
      locate_element(o.trace_path, o.force, recorded->config, config, registry, d.step, d, res.steps_executed,
                     rep.notes, o.test_recorded_device, &recorded_itself, &op_first,
                     replayed_batch_of(hooks.schedule(), d.step), &hooks.replayed_kernels());
    } else {
      const bool embedded = std::any_of(header.datasets.begin(), header.datasets.end(),
                                        [](const auto& ds) { return !ds.embedded.empty(); });
      rep.notes.push_back(
          std::string("no element detail: the recorded run cannot be set up again here") +
          (embedded ? ""
                    : ", as its data is not at hand (record with --embed-data to keep it in the trace)") +
          ": " +
          recorded.error().message.substr(0, recorded.error().message.find("; pass --allow-data-change")));
    }
  }
  rep.cause = classify(d, ci);
  config_in_note = refine_cause(rep.cause, d, ci, recorded_itself, op_first, rep.notes);
  // A kernel the resumed run chose, free, on the batch it resumed at, where the recording chose at an earlier
  // step: the difference may come from resuming alone.
  for (const auto& [site, choice] : hooks.resumed_choices()) {
    const std::string words =
        "the replay, resumed at step " + std::to_string(resumed) +
        " with kernels free, chose the kernel at " + site + " on that step's batch (" + choice.reason_here +
        "), where the recording chose it at step " + std::to_string(choice.recorded_step) + " (" +
        choice.reason_recorded +
        "): a choice made on another batch's size can differ for that alone; a replay from step 0 (without "
        "--from-step), or one that forces the kernels, tells";
    if (rep.cause.category == "kernel" && rep.cause.detail.find(site) != std::string::npos)
      rep.cause.detail += "; but " + words;
    else
      rep.notes.push_back(words);
  }
  // The last step of a trace cut short has no message after it to vouch for its record.
  if (const auto u = hooks.unvouched_step(); u && *u == d.step && hooks.first() && d.kind != "state")
    rep.cause.detail +=
        "; but step " + std::to_string(d.step) +
        "'s record is the last whole message of a trace cut short, which no message after it "
        "vouches for: a change made to it after it was written would read as this difference too";
  if (!hooks.first() && rebuilt->data_changed) {
    rep.cause.detail =
        rebuilt->data_detail + "; no value of any step compared differs: " +
        unread_data_words(ci.data_reach ? &*ci.data_reach : nullptr, resumed + hooks.steps_compared() - 1);
  }
  // Run past the divergence, a replay with fewer steps than the trace leaves the rest of the trace unread.
  if (o.keep_going && !cut_short && t.step() == t.total_steps() && !hooks.at_end())
    rep.notes.push_back("the replay stops first, at the end of its " + counted(t.step(), "step") +
                        ": the trace's steps from step " + std::to_string(t.step()) + " on are not compared");
  // Configuration differences that the cause does not name, each with what it does to the run.
  if (!served.empty())
    rep.notes.push_back("the configuration differs from the recording's (" + joined(served) +
                        "), but the forced choices (--force " + o.force.str() + ") serve the recorded values in its place");
  if (!replaced.empty())
    rep.notes.push_back("the configuration differs from the recording's (" + joined(replaced) +
                        ") in the initial weights only, and " + checkpoint_replaces);
  // A resumed run starts from what its checkpoint holds, which is vouched for in part only.
  if (hooks.first() && resumed > 0 &&
      (rep.cause.category == "unexplained" || rep.cause.category == "numeric"))
    rep.notes.push_back(
        "the replay resumed from the checkpoint at step " + std::to_string(resumed) +
        " as it is recorded: its parameters are checked against the digests step " +
        std::to_string(resumed - 1) +
        " recorded, and its place in the run (its epoch, order of rows, batches handed out and "
        "random streams' offsets) against the steps before it; its optimizer's slots, the "
        "epoch's running sums and, at level step, a batch normalization's moving statistics are not; a "
        "replay from step 0 compares the whole checkpoint with "
        "the state the run is in there");
  // A resumed run is set up again: a difference there is dated to the step the replay resumes at, and its
  // detail says the step the trace keeps the set-up in.
  if (hooks.first() && resumed > 0 && d.step == resumed && d.site == "data/split")
    rep.notes.push_back(
        "the run resumed from the checkpoint at step " + std::to_string(resumed) +
        ", but no checkpoint holds the data's split: the resumed run splits the data again when it "
        "is set up, before the first step, and trains on the rows it selects");
  {
    // A configuration cause names the differences that reach the first difference (a data cause names them
    // too); every other difference gets a note, whatever the cause.
    std::vector<std::string> length, within;
    for (const std::string& c : ci.config_differences) (changes_only_length(c) ? length : within).push_back(c);
    if (!length.empty())
      rep.notes.push_back("the configuration differs from the recording's (" + joined(length) +
                          "), which changes how many steps run, not what a step computes");
    // Those that cannot change the first difference, and those the cause does not name already.
    std::vector<std::string> apart, other;
    for (const std::string& c : within)
      (difference_reaches(c, d, ci.layer_names) ? other : apart).push_back(c);
    if (!apart.empty())
      rep.notes.push_back("the configuration differs from the recording's too (" + joined(apart) +
                          "), in nothing the first difference depends on: " + reach_words(apart, d));
    if (!other.empty() && rep.cause.category != "data" && rep.cause.category != "config" && !config_in_note)
      rep.notes.push_back("the configuration differs from the recording's too (" + joined(other) + ")");
  }
  if (const auto& k = hooks.divergent_kernel_difference())
    rep.notes.push_back("at the first divergence, " + (k->op.empty() ? std::string("step ") + std::to_string(d.step)
                                                                     : "op " + k->op) +
                        " launched other GPU kernels than recorded: the first that differs is " + k->recorded +
                        " in the recording, " + k->replayed + " in the replay");
  // Data that differs while every compared value matched the recording: no step, no op differs.
  if (hooks.first()) rep.first = d;
  const ReplayedKernels replayed{hooks.gathers_kernels(), hooks.divergent_step_kernels()};
  rep.page.timeline = replay_timeline(header, o.trace_path, d.step, t.device() != nullptr, &replayed);
  return res;
}

std::optional<FirstDivergence> initial_state_difference(const std::string& trace_path, ReplaySide& side) {
  if (auto d = side.hooks->unmade_initial_draw()) return d;
  auto recorded = checkpoint_at(trace_path, {{0, side.reader->header_size()}}, 0);
  if (!recorded) return std::nullopt;
  return state_difference(*recorded, side.training->state(), 0, "recorded", "replayed", StatePlace::initial);
}

std::optional<FirstDivergence> final_state_difference(const std::string& trace_path, ReplaySide& side) {
  Training& t = *side.training;
  if (!side.reader->footer()) return std::nullopt;
  auto recorded = checkpoint_at(trace_path, side.reader->footer()->checkpoints, t.step());
  if (!recorded) return std::nullopt;
  return state_difference(*recorded, t.state(), t.step() - 1, "recorded", "replayed", StatePlace::end);
}

std::optional<FirstDivergence> checkpoint_difference(const std::string& trace_path, ReplaySide& side) {
  Training& t = *side.training;
  if (t.step() <= 0) return std::nullopt;
  // The trace's checkpoints, once.
  if (!side.checkpoints) {
    side.checkpoints = state_offsets(trace_path, side.reader.get());
    side.checkpoint_reader = std::make_unique<CheckpointReader>(trace_path);
  }
  const auto at = side.checkpoints->find(t.step());
  // None here, or the last: the final state's, compared at the end.
  if (at == side.checkpoints->end() || std::next(at) == side.checkpoints->end()) return std::nullopt;
  auto recorded = side.checkpoint_reader->read(at->second, t.step());
  if (!recorded) return std::nullopt;
  const TrainState here = t.state();
  // Trainable parameters the step before compared the same and the checkpoint holds otherwise: the reader
  // finds the checkpoint damaged when it reads on (its parameters are not those the step recorded), and
  // says so.
  std::map<std::string, const Tensor*> params;
  for (const Param* p : t.model().params()) params[p->name] = nullptr;
  for (const NamedTensor& n : here.tensors)
    if (auto it = params.find(n.name); it != params.end()) it->second = &n.value;
  for (const NamedTensor& n : recorded->tensors)
    if (auto it = params.find(n.name);
        it != params.end() && it->second && !same_tensor_bits(n.value, *it->second))
      return std::nullopt;
  // The checkpoint before it was compared the same (or is the one the replay resumed from), and the initial
  // state before any.
  const std::optional<int64_t> same_before =
      at == side.checkpoints->begin() ? std::nullopt : std::optional<int64_t>(std::prev(at)->first);
  return state_difference(*recorded, here, t.step() - 1, "recorded", "replayed", StatePlace::checkpoint,
                          same_before, side.resumed_at > 0 && same_before == side.resumed_at);
}

std::string config_matched_note(const std::vector<std::string>& differences, std::vector<std::string> why,
                                const std::vector<std::string>& unblamed, int64_t compared, int64_t stopped,
                                Unmatched unmatched) {
  for (std::string& w : unblamed_config_words(unblamed)) why.push_back(std::move(w));
  const std::string from = std::to_string(stopped);
  const std::string rest =
      unmatched == Unmatched::trace_first
          ? ", and the trace stops first: the replay's steps from step " + from + " on are not compared"
      : unmatched == Unmatched::replay_run_end
          ? ", and the replay stops first, at the end of its " + counted(stopped, "step") +
                ": the trace's steps from step " + from + " on are not compared"
      : unmatched == Unmatched::replay_to_step
          ? ", and the replay stops first at --to-step " + from + ": the trace's steps from step " + from +
                " on are not compared"
          : std::string();
  return "the configuration differs from the recording's (" + joined(differences) + "), yet the " +
         counted(compared, "step") + " compared matched it: " + joined(why) + rest;
}

std::vector<std::string> unblamed_config_words(const std::vector<std::string>& differences) {
  std::vector<std::string> length, other, why;
  for (const std::string& c : differences) (changes_only_length(c) ? length : other).push_back(c);
  if (!length.empty()) why.push_back(changes_words(length) + " how many steps run, not what a step computes");
  if (!other.empty()) why.push_back(changes_words(other) + " nothing that was compared");
  return why;
}

}  // namespace trainrr
