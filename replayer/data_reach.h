#pragma once
// Where two copies of a run's data first reach its training: the rows that differ once loaded, split,
// held out for validation and scaled as the run does, and the first step whose batch holds one, from the
// run's schedule (its split, each epoch's order of the training rows, the batch each step took). Data that
// no step up to the first difference reads cannot have made it, whatever else differs.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/result.h"

namespace trainrr {

// One run's schedule, as recorded or as a replay made it.
struct DataSchedule {
  bool split = false;                             // a split was made (data.test_fraction > 0)
  std::vector<uint32_t> split_train, split_test;  // its rows of the data, as the run's split gave them
  // The split was served from the recording (a replay that forces it): both runs took these rows, whatever
  // labels a stratified split would have read.
  bool split_served = false;
  std::map<int, std::vector<uint32_t>> orders;    // epoch (from 0) -> its order of the training rows
  struct Taken {
    int64_t step = 0;
    int epoch = 0;
    int64_t batch = 0;  // of the epoch's batches
  };
  std::vector<Taken> batches;  // in step order
};

struct DataReach {
  bool features = false,
       labels = false;              // a row's samples, a row's label, differ (training, validation, test)
  bool validation = false;          // a validation row differs
  bool test = false;                // a test row differs
  int64_t first_step = -1;          // the first step whose batch holds a training row that differs
  int64_t first_feature_step = -1;  // ... a training row whose samples differ
  int64_t first_row = -1;           // that step's first such row, as a row of the data file (from 0)
  int64_t from_step = 0;            // the first step the schedule covers (a replay resumed later)
  int64_t steps = 0;                // the steps the schedule covers end before this one
  int64_t rows_differ = 0;          // training rows that differ
  std::string source;               // the data's kind (data.source): how its rows are counted in words
  // The first row read that differs is the same in both copies of the data, and differs once scaled: a
  // scaler fit on the training rows carries another row's change into every row. That row (the first training
  // row whose values differ in the copies; -1 where none is known).
  bool scaled_only = false;
  int64_t changed_row = -1;
  // Where a CSV file's rows lie in each copy (Dataset::line_runs): the other copy's (the recorded, A's) and
  // the run's (now, B's), and the names that tell them apart in words.
  std::vector<std::pair<int64_t, int64_t>> lines_other, lines_run;
  std::string name_other = "recorded", name_run = "now";
};

// A row of the data (from 0) in words: "data row 447 (counting from 0), line 449 of the file" for a CSV (its
// line in each copy where the copies hold it on other lines: "line 449 (recorded), 450 (now)"), "row 447
// (counting from 0)" for arrays (npy, idx): rows count from 0, as numpy, dump's split lists and export's
// permutation count them.
std::string row_words(const DataReach& r, int64_t row);

// `config`: the run whose schedule it is, reading one copy of the data; `other`: its data configuration
// reading the other copy, with the other side's scaler (data.scale): where the two scale otherwise, the rows
// are compared under each, and the earlier reach is the data's. An error where the copies cannot be compared
// row by row (other row counts or sample shapes, a stratified split that reads labels that differ, a schedule
// that does not fit the rows): then nothing is known of where the data reaches.
Result<DataReach> data_reach(const RunConfig& config, const DataConfig& other, const DataSchedule& schedule);

// The same, with the schedule recorded in `trace_path` (the run `config` describes), read without tensors as
// far as it can be read, each shuffle bounded by the data's rows before it is rebuilt.
Result<DataReach> data_reach(const RunConfig& config, const DataConfig& other, const std::string& trace_path);

// What a cause says of data that differs where the copies were not compared row by row (one cannot be read,
// or their rows do not line up): neither which rows differ nor the first step that reads one is known.
inline constexpr const char* kDataReachUnknown =
    "the copies were not compared row by row, so which step first reads a row that differs is not known";

// The first step that reads a row that differs, and that row (row_words()).
std::string data_reach_words(const DataReach& r);

// Why data that differs changed no value of the steps compared (the last is `last_step`), from where its
// rows are read (`r`; null: not known), in words.
std::string unread_data_words(const DataReach* r, int64_t last_step);

}  // namespace trainrr
