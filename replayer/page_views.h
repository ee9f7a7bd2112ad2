#pragma once
// What the HTML page draws beyond the text report: both runs' loss step by step, where each probed tensor
// differed and by how much, and the two sides' environment and kernel choices in full. The commands that
// read every step (replay, diff) collect it with StepViews; replayer/report_html.cc draws it.

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/fingerprint.h"
#include "traces/trace.h"

namespace trainrr {

// One key with the value of each side: an environment value, the kernel chosen at a site.
struct SideBySide {
  std::string key, a, b;
  bool in_a = false, in_b = false;  // whether each side holds the key (its value may be empty)
  bool differs() const { return a != b; }
};

// One row of the divergence map: a probed tensor, or a parameter or its gradient at the step's end, with
// how much it differed at each point of the per-step views.
struct MapRow {
  static constexpr float kNotCompared = -2;  // no such value in the point's steps
  static constexpr float kSizeUnknown = -1;  // the digests differ; the trace holds nothing to size it by
  static constexpr float kSame = 0;          // same bits in every step of the point
  // Differs with non-finite values (NaN or infinite) in the tensor or its summary: no relative size.
  static constexpr float kNonFinite = std::numeric_limits<float>::infinity();
  // Differs in its number of values: no relative size.
  static constexpr float kOtherCount = std::numeric_limits<float>::max();
  std::string site;   // "conv2d_1:out", "dense_1.kernel:grad", "dense_1.kernel:value"
  std::string layer;  // "conv2d_1"; empty for a site of no layer
  std::string block;  // forward | backward | update: the part of a step it belongs to
  // Per point: one of the constants above, or the largest relative difference (> 0) in the point's steps.
  std::vector<float> size;
};

struct EpochMark {
  int64_t step = 0;  // the epoch's first step
  int epoch = 1;     // counted from 1, as Keras prints epochs
};

struct ValidationLoss {
  int epoch = 1;     // from 1
  int64_t step = 0;  // the epoch's last step in A (-1: A's epoch did not end within the steps compared)
  double a = 0, b = 0;  // NaN where a side has none
  int64_t step_b = -1;  // the epoch's last step in B, which runs epochs of another length where they differ
};

// The GPU kernels of the step where the two runs first differ, as each side holds them (CUPTI's records in a
// trace): the page draws them along time, one row per side.
struct KernelTimeline {
  int64_t step = -1;  // the divergent step; -1 where neither side recorded GPU kernels (nothing is drawn)
  std::optional<trace::StepKernels> a, b;  // none where a side holds no record of the step's kernels
  // Why a side has none, in one sentence, where it has none ("The replay ran on the CPU, ...").
  std::string missing_a, missing_b;
};

// The map's rows, at most: a model's sites (layers times ops and phases) are far fewer; a crafted trace whose
// steps name ever new sites would otherwise hold a row of every point for each.
inline constexpr size_t kMaxMapRows = 4096;

// The steps of one side whose loss is NaN or infinite.
struct NonFiniteLosses {
  int64_t steps = 0;
  int64_t first = -1;      // the first of them; -1 where there is none
  double first_value = 0;  // its loss
};

struct PageViews {
  bool per_step = false;     // the command read every step (replay, diff); bisect re-executes a window only
  bool layer_probes = true;  // the traces hold layer probes (level layer or op); none at level step
  bool validation = true;    // a side's run holds out validation rows (train.validation_split > 0)
  // Point i covers steps first_step + i * step_stride .. + step_stride - 1 (at most 4096 points).
  int64_t first_step = 0;
  int64_t step_stride = 1;
  int64_t last_step = -1;  // the last step compared
  std::vector<double> loss_a, loss_b;  // per point, its first step's loss; NaN where a side has none
  NonFiniteLosses non_finite_a, non_finite_b;  // over every step compared, not only the points'
  std::vector<EpochMark> epochs;               // where each epoch compared begins (in A)
  std::vector<EpochMark> epochs_b;  // where B's begin, where B's epochs have other lengths; else empty
  std::vector<ValidationLoss> val_loss;
  size_t epochs_ended = 0;  // epochs that ended within the steps compared
  // Blocks in the order forward, backward, update; in each, layers in model order.
  std::vector<MapRow> rows;
  size_t sites_left_out =
      0;  // marks of sites past the map's first kMaxMapRows (a trace naming ever new sites)
  std::vector<SideBySide> environment;  // every key of either side
  std::vector<SideBySide> kernels;      // every kernel site of either side
  std::string command;                  // the command line that shows this divergence again
  // A replay that stopped at its first divergence (no --keep-going), and the last step it would have compared.
  bool stopped_at_first = false;
  int64_t would_end = -1;
  KernelTimeline timeline;  // the divergent step's kernels, where a side recorded them
};

// How far apart two summaries of one tensor are, relative to its largest magnitude: the largest difference
// of min, max, mean and root mean square. Greater than 0 for summaries of tensors whose digests differ;
// MapRow::kOtherCount for tensors of other sizes, MapRow::kNonFinite where non-finite values differ or make
// the summaries' difference non-finite.
float relative_difference(const Summary& a, const Summary& b);

// Every key of two environments, in the order of the first with the second's own keys after it.
// Every key of two sides, in the order of the first with the second's own keys after it; a side without
// the key has "".
std::vector<SideBySide> side_by_side_table(const std::vector<std::pair<std::string, std::string>>& a,
                                           const std::vector<std::pair<std::string, std::string>>& b);
std::vector<SideBySide> side_by_side_table(const std::map<std::string, std::string>& a,
                                           const std::map<std::string, std::string>& b);

// A word for a command line: as it is when the shell leaves it so, else in single quotes.
std::string shell_word(const std::string& word);

// The kernels that the trace at `path` recorded for step `step`: none where it recorded none, cannot be read
// that far, or has no such step.
std::optional<trace::StepKernels> recorded_step_kernels(const std::string& path, int64_t step);

// What a replay on the GPU gathered of the kernels it launched in its divergent step.
struct ReplayedKernels {
  bool gathered = false;  // a kernel source gathered the replay's kernels (else: none registered, or it failed)
  std::optional<trace::StepKernels> kernels;  // the divergent step's; none where it ran no kernel
};

// The timeline of a replay (or bisect) that diverged at `step`: the trace's kernels of that step on the recorded
// side; on the replayed side those the replay gathered (`replayed`), where it ran on the GPU and gathered them,
// else none (on the CPU there are none; on the GPU without a kernel source, or one that failed, a replay does
// not gather them). Left empty where the trace recorded no kernels.
KernelTimeline replay_timeline(const trace::TraceHeader& header, const std::string& path, int64_t step, bool on_gpu,
                               const ReplayedKernels* replayed = nullptr);

// A C++ kernel's name as people read it ("trainrr::cuda::relu(float*, int)"); any other name as it is. The
// name comes from a trace: a long or odd one is left mangled rather than handed to the demangler, and one
// whose back-references could make it demangle to gigabytes is demangled in a child process bounded in
// memory and time (left mangled where the bound stops it).
std::string demangled(const std::string& name);

struct ReplayOptions;
// The `trainrr replay` command line of these options.
std::string replay_command_line(const ReplayOptions& o);

// Collects the per-step views of a comparison, step by step, thinned to at most 4096 points so memory stays
// bounded however long the run.
class StepViews {
 public:
  // The next step compared begins (steps come in increasing order). `epoch` counts from 0.
  void begin_step(int64_t step, int epoch) { begin_step(step, epoch, epoch); }
  // The same, where each side's step is of its own epoch (runs whose epochs have other lengths); -1 where a
  // side's epoch is not known (it has no such step).
  void begin_step(int64_t step, int epoch_a, int epoch_b);
  // The current step's loss on both sides (NaN where a side has none).
  void loss(double a, double b);
  // A probe of the current step, compared: both summaries when the digests differ, null when they match.
  void probe(std::string_view site, std::string_view phase, const Summary* a, const Summary* b);
  // A parameter's gradient or its value after the update, compared by digest alone.
  void tensor(const std::string& name, bool gradient, bool differs);
  // The logs of an epoch (counted from 0) on side 0 (the recording, A) or 1 (the replay, B).
  void epoch_logs(int side, int epoch, const std::vector<std::pair<std::string, double>>& logs);
  // Moves what was collected into `page`.
  void finish(PageViews& page);

 private:
  static constexpr size_t kMaxPoints = 4096;
  void mark(const std::string& site, const std::string& layer, const std::string& block, float size);
  void halve();
  int64_t first_step_ = 0, stride_ = 1, count_ = 0, last_step_ = -1;
  std::vector<double> loss_a_, loss_b_;
  NonFiniteLosses non_finite_a_, non_finite_b_;
  // Per side (A, B).
  int last_epoch_[2] = {-1, -1};
  std::vector<EpochMark> epochs_[2];
  std::map<int, int64_t> epoch_end_[2];  // epoch -> its last step seen
  std::set<int> epochs_logged_[2];       // epochs whose end (their logs) was read
  std::map<int, std::pair<double, double>> val_loss_;
  std::vector<MapRow> rows_;
  size_t sites_left_out_ = 0;
  std::map<std::string, size_t> row_of_;  // block + '\n' + site -> index in rows_
  std::map<std::string, size_t> layer_rank_;  // layers in the order first seen: model order
};

}  // namespace trainrr
