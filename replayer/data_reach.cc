#include "replayer/data_reach.h"

#include <algorithm>
#include <cstring>

#include "engine/data/split.h"
#include "engine/hooks.h"
#include "engine/random.h"
#include "engine/trainer.h"
#include "traces/trace_reader.h"

namespace trainrr {

namespace {

// Whether row `i` of two data sets of one shape differs bit for bit: its samples, its label.
struct RowDifference {
  bool features = false, label = false;
  bool any() const { return features || label; }
};

std::vector<RowDifference> row_differences(const Dataset& a, const Dataset& b) {
  std::vector<RowDifference> out(static_cast<size_t>(b.rows()));
  const int64_t per = b.rows() > 0 ? static_cast<int64_t>(b.x.data.size()) / b.rows() : 0;
  for (int64_t i = 0; i < b.rows(); ++i) {
    const size_t at = static_cast<size_t>(i * per);
    out[i].features =
        std::memcmp(&a.x.data[at], &b.x.data[at], static_cast<size_t>(per) * sizeof(float)) != 0;
    out[i].label = std::memcmp(&a.y[i], &b.y[i], sizeof(float)) != 0;
  }
  return out;
}

struct Copies {
  Dataset a, b;
};

Result<Copies> load_copies(const RunConfig& config, const DataConfig& other) {
  const uint64_t seed = config.seed.value_or(0);
  auto b = load_dataset(config.data, seed, config.file);
  if (!b) return b.error();
  auto a = load_dataset(other, seed, config.file);
  if (!a) return a.error();
  return Copies{std::move(a).value(), std::move(b).value()};
}

// Where the two copies' rows that differ once scaled by `config`'s data.scale are first read, as `schedule`
// reads them. `raw`: the rows that differ as the files hold them.
Result<DataReach> reach_scaled(const RunConfig& config, Dataset a, Dataset b, const SplitIndices& split,
                               const std::vector<RowDifference>& raw, const DataSchedule& schedule);

// Where the copies first reach the run, each side's scaler (data.scale) weighed: `config`'s, and where the
// other side's scales otherwise (`other_scale`), that one's too; the earlier reach is the data's, whichever
// side's run is the one the schedule is of (a change that one side's scaler carries into every row reaches
// that side's run from its first step).
Result<DataReach> reach_of(const RunConfig& config, Copies copies, const DataSchedule& schedule,
                           const std::string& other_scale) {
  Dataset& a = copies.a;
  Dataset& b = copies.b;
  if (a.rows() != b.rows())
    return Error{"the two copies of the data hold " + std::to_string(a.rows()) + " and " +
                 std::to_string(b.rows()) + " rows"};
  if (a.sample_shape() != b.sample_shape() || a.x.data.size() != b.x.data.size() || a.y.size() != b.y.size())
    return Error{"the two copies of the data hold samples of other shapes"};
  const bool labels_differ = std::memcmp(a.y.data(), b.y.data(), a.y.size() * sizeof(float)) != 0;
  if (config.data.test_fraction > 0) {
    if (!schedule.split) return Error{"the run's split is not known"};
    if (config.data.stratify && labels_differ && !schedule.split_served) {
      // The split reads the labels: it is known only where both copies' labels pick the rows the run's split
      // holds (with the run's seed; a seed drawn from the OS is not at hand, and nothing is then known).
      const std::optional<SplitMethod> method = parse_split_method(config.data.split);
      if (!method || !config.seed) return Error{"the split is stratified by the labels, and they differ"};
      Hooks none;
      RngStreams rng_a(*config.seed, none), rng_b(*config.seed, none);
      const SplitIndices sa =
          split_rows(a.y, a.num_classes, config.data.test_fraction, true, *method, rng_a, none);
      const SplitIndices sb =
          split_rows(b.y, b.num_classes, config.data.test_fraction, true, *method, rng_b, none);
      if (sb.train != schedule.split_train || sb.test != schedule.split_test || sa.train != sb.train ||
          sa.test != sb.test)
        return Error{
            "the split is stratified by the labels, and with the labels that differ it takes other rows"};
    }
  }
  const SplitIndices split{schedule.split_train, schedule.split_test};
  // The rows as the files hold them, before the split and the scaler: a scaler fit on the training rows
  // carries one row's change into every row.
  const std::vector<RowDifference> raw = row_differences(a, b);
  if (other_scale.empty() || other_scale == config.data.scale)
    return reach_scaled(config, std::move(a), std::move(b), split, raw, schedule);
  auto own = reach_scaled(config, a, b, split, raw, schedule);
  if (!own) return own;
  RunConfig scaled_otherwise = config;
  scaled_otherwise.data.scale = other_scale;
  auto other = reach_scaled(scaled_otherwise, std::move(a), std::move(b), split, raw, schedule);
  if (!other) return own;
  DataReach r =
      other->first_step >= 0 && (own->first_step < 0 || other->first_step < own->first_step) ? *other : *own;
  const DataReach& rest = &r == &*own ? *other : *own;
  r.features |= rest.features;
  r.labels |= rest.labels;
  r.validation |= rest.validation;
  r.test |= rest.test;
  r.rows_differ = std::max(r.rows_differ, rest.rows_differ);
  if (rest.first_feature_step >= 0 &&
      (r.first_feature_step < 0 || rest.first_feature_step < r.first_feature_step))
    r.first_feature_step = rest.first_feature_step;
  return r;
}

Result<DataReach> reach_scaled(const RunConfig& config, Dataset a, Dataset b, const SplitIndices& split,
                               const std::vector<RowDifference>& raw, const DataSchedule& schedule) {
  const SplitIndices* used = config.data.test_fraction > 0 ? &split : nullptr;
  auto pa = prepare_rows(config, std::move(a), used);
  if (!pa) return pa.error();
  auto pb = prepare_rows(config, std::move(b), used);
  if (!pb) return pb.error();

  DataReach r;
  const auto train = row_differences(pa->train, pb->train);
  for (const auto* set : {&pa->val, &pa->test}) {
    const Dataset& other_set = set == &pa->val ? pb->val : pb->test;
    for (const RowDifference& d : row_differences(*set, other_set)) {
      r.features |= d.features;
      r.labels |= d.label;
      (set == &pa->val ? r.validation : r.test) |= d.any();
    }
  }
  for (const RowDifference& d : train) {
    r.features |= d.features;
    r.labels |= d.label;
    r.rows_differ += d.any() ? 1 : 0;
  }
  // The data's row of a training row: the split's, in the split's order; validation takes the last rows.
  const auto data_row = [&](uint32_t position) -> int64_t {
    return used ? static_cast<int64_t>(split.train[position]) : static_cast<int64_t>(position);
  };
  const int64_t n = pb->train.rows(), batch_size = config.train.batch_size;
  if (!schedule.batches.empty()) r.from_step = r.steps = schedule.batches.front().step;
  // Without a shuffle, every epoch reads the rows in their order.
  std::vector<uint32_t> identity;
  if (!config.train.shuffle) {
    identity.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) identity[i] = static_cast<uint32_t>(i);
  }
  for (const DataSchedule::Taken& t : schedule.batches) {
    const std::vector<uint32_t>* order = nullptr;
    if (auto it = schedule.orders.find(t.epoch); it != schedule.orders.end()) {
      order = &it->second;
    } else if (!config.train.shuffle) {
      order = &identity;
    } else {
      break;  // an epoch whose order is not known: nothing past it is
    }
    if (static_cast<int64_t>(order->size()) != n || batch_size <= 0 || t.batch < 0 ||
        t.batch * batch_size >= n)
      return Error{"the schedule does not fit the " + std::to_string(n) + " training rows"};
    r.steps = t.step + 1;
    const int64_t from = t.batch * batch_size, to = std::min(n, from + batch_size);
    for (int64_t i = from; i < to; ++i) {
      const uint32_t position = (*order)[i];
      if (position >= train.size()) return Error{"the schedule names a training row the data lacks"};
      const RowDifference& d = train[position];
      if (d.any() && r.first_step < 0) {
        r.first_step = t.step;
        r.first_row = data_row(position);
      }
      if (d.features && r.first_feature_step < 0) r.first_feature_step = t.step;
    }
  }
  r.source = config.data.source;
  if (r.first_row >= 0 && r.first_row < static_cast<int64_t>(raw.size()) && !raw[r.first_row].any()) {
    r.scaled_only = true;
    for (int64_t p = 0; p < n; ++p)
      if (const int64_t row = data_row(static_cast<uint32_t>(p)); row < static_cast<int64_t>(raw.size()) &&
                                                                  raw[row].any() &&
                                                                  (r.changed_row < 0 || row < r.changed_row))
        r.changed_row = row;
  }
  return r;
}

Result<DataSchedule> recorded_schedule(const std::string& trace_path, uint64_t rows) {
  auto reader = trace::TraceReader::open(trace_path, trace::without_payloads());
  if (!reader) return reader.error();
  DataSchedule s;
  for (;;) {
    auto rec = (*reader)->next();
    if (!rec || !*rec) break;  // damage or a cut: the schedule goes as far as the steps read
    const auto* step = std::get_if<trace::TraceStep>(&(*rec)->value);
    if (!step) continue;
    for (const trace::Event& e : step->events) {
      if (const auto* split = std::get_if<trace::SplitEvent>(&e)) {
        s.split = true;
        s.split_train = split->train;
        s.split_test = split->test;
      } else if (const auto* shuffle = std::get_if<trace::ShuffleEvent>(&e)) {
        std::vector<uint32_t> order;
        if (shuffle->draw) {
          // The reader bounds a draw by the rows it permutes; the permutation is rebuilt as a replay does.
          if (shuffle->length > rows)
            return Error{trace_path + ": a shuffle of " + std::to_string(shuffle->length) +
                         " rows, where the data holds " + std::to_string(rows)};
          permutation_from_draw(*shuffle->draw, order, static_cast<uint32_t>(shuffle->length));
        } else {
          order = shuffle->permutation;
        }
        s.orders[shuffle->epoch] = std::move(order);
      }
    }
    // The batch the step took: its batch-order event where it has one.
    int64_t batch = step->batch;
    for (const trace::Event& e : step->events)
      if (const auto* b = std::get_if<trace::BatchOrderEvent>(&e)) batch = b->batch;
    if (step->end) s.batches.push_back({step->index, step->epoch, batch});
  }
  return s;
}

}  // namespace

namespace {

// The reach of `copies`, with where each copy's rows lie in its file.
Result<DataReach> reach_with_lines(const RunConfig& config, Copies copies, const DataSchedule& schedule,
                                   const std::string& other_scale) {
  auto lines_other = copies.a.line_runs, lines_run = copies.b.line_runs;
  auto r = reach_of(config, std::move(copies), schedule, other_scale);
  if (r) {
    r->lines_other = std::move(lines_other);
    r->lines_run = std::move(lines_run);
  }
  return r;
}

}  // namespace

Result<DataReach> data_reach(const RunConfig& config, const DataConfig& other, const DataSchedule& schedule) {
  auto copies = load_copies(config, other);
  if (!copies) return copies.error();
  return reach_with_lines(config, std::move(copies).value(), schedule, other.scale);
}

Result<DataReach> data_reach(const RunConfig& config, const DataConfig& other,
                             const std::string& trace_path) {
  auto copies = load_copies(config, other);
  if (!copies) return copies.error();
  auto schedule = recorded_schedule(trace_path, static_cast<uint64_t>(copies->b.rows()));
  if (!schedule) return schedule.error();
  return reach_with_lines(config, std::move(copies).value(), *schedule, other.scale);
}

std::string data_reach_words(const DataReach& r) {
  if (r.first_step < 0)
    return (r.steps <= r.from_step ? std::string("no step compared")
            : r.from_step > 0      ? "no step from step " + std::to_string(r.from_step) + " to step " +
                                    std::to_string(r.steps - 1)
                              : "no step up to step " + std::to_string(r.steps - 1)) +
           " reads a training row that differs" +
           (r.rows_differ > 0        ? std::string()
            : r.validation && r.test ? std::string(" (only validation and test rows differ)")
            : r.validation           ? std::string(" (only validation rows differ)")
            : r.test                 ? std::string(" (only test rows differ)")
                                     : std::string(" (no training row differs)"));
  if (r.scaled_only)
    return "step " + std::to_string(r.first_step) +
           " is the first to read a training row that differs once scaled (" + row_words(r, r.first_row) +
           ", the same in both copies of the data: the scaler (data.scale), fit on " +
           "the training rows, carries " +
           (r.changed_row >= 0 ? "the change of " + row_words(r, r.changed_row)
                               : std::string("their change")) +
           " into every row)";
  return "step " + std::to_string(r.first_step) + " is the first to read a training row that differs (" +
         row_words(r, r.first_row) + ")";
}

std::string row_words(const DataReach& r, int64_t row) {
  if (r.source == "csv") {
    Dataset other, run;  // only their line runs: where the rows lie
    other.line_runs = r.lines_other;
    run.line_runs = r.lines_run;
    const int64_t a = other.line_of(row), b = run.line_of(row);
    const std::string words = "data row " + std::to_string(row) + " (counting from 0), line ";
    if (a == b || a == 0 || b == 0) return words + std::to_string(a ? a : b) + " of the file";
    return words + std::to_string(a) + " (" + r.name_other + "), " + std::to_string(b) + " (" + r.name_run +
           ")";
  }
  return "row " + std::to_string(row) + " (counting from 0)";
}

std::string unread_data_words(const DataReach* r, int64_t last_step) {
  if (!r)
    return "the training read none of what differs (rows it only tests on, say), or what it read changed no "
           "value compared, or the files differ in their text alone (line endings, how a number is written), "
           "which only the recorded copy can tell (record with --embed-data to keep it)";
  if (r->first_step < 0) return data_reach_words(*r);
  if (r->first_step > last_step)
    return "no step compared reads a training row that differs (step " + std::to_string(r->first_step) +
           ", past the last compared, is the first)";
  return data_reach_words(*r) + ", and what it read changed no value compared";
}

}  // namespace trainrr
