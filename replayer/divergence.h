#pragma once
// What a replay or a diff found: the first divergence, its cause with evidence, and the environment
// differences beside it. Rendered as text (answer first) or JSON with stable keys; replayer/report_html.h
// renders it as an HTML page.

#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/fingerprint.h"
#include "replayer/page_views.h"

namespace trainrr {

struct FirstDivergence {
  int64_t step = -1;
  std::string phase;  // forward | backward | update | setup | input | step_end (see event_phase)
  std::string kind;   // probe | step_end | rng | split | shuffle | loader | missing | extra
  std::string site;   // "dense_1/matmul.fwd:out", "dropout/dropout_1", "data/shuffle", ...
  std::string layer;  // "dense_1" when the site names one
  std::string op;     // "matmul.fwd" when the site names one
  std::string kernel_recorded, kernel_replayed;
  // The kernel the trace records at the site, where kernel_recorded is the one that ran in its place in a
  // re-execution of the recorded choices here (the recorded one cannot run on this machine).
  std::string kernel_substituted_for;
  // Element-level detail, when values were at hand (re-execution both ways).
  bool has_element = false;
  int64_t index = -1;
  double recorded = 0, replayed = 0, abs_diff = 0;
  uint64_t ulp = 0;  // in float32 ULPs: a tensor's elements are float32, and so is the loss (held in a double)
  // Numeric summaries from the trace and the replay, when the site was probed.
  std::optional<Summary> summary_recorded, summary_replayed;
  std::string detail;  // what differs, in words
  bool same_draw = false;  // rng: the recorded key, counter and count, made into other values
  bool same_count = false;  // rng: a draw of as many words on both sides (its key or counter may differ)
};

// Bit-for-bit equality of two recorded values: a NaN loss equals the same NaN, and 0.0 is not -0.0.
inline bool same_bits(double a, double b) { return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b); }

// The part of training an event that is not an op's belongs to: "setup" for what happens once before the
// first step (initializers' draws, the split), "input" for the input pipeline (each epoch's shuffle, the
// loader's batches, augmentation draws), "forward" for the other draws within a step (dropout's masks).
std::string event_phase(const std::string& kind, const std::string& site);

// Whether `d` is in the draws of the initial weights (an initializer's, "init/<param>"), which come before
// everything else a run does: found before the first step runs.
inline bool in_initial_weights(const FirstDivergence& d) {
  return d.phase == "setup" && d.site.rfind("init/", 0) == 0;
}

// A divergence with its place and what differs (step -1: the step in progress).
FirstDivergence divergence(int64_t step, std::string phase, std::string kind, std::string site,
                           std::string detail = "");
// In a metrics divergence's detail, after a log that one side has and the other does not.
inline constexpr const char* kMetricOnOneSide = " none (";
// The evaluation that ended epoch `epoch` (0-based) at `step`, when metrics of one name differ bit for bit on
// the two sides ("val_loss 2.09335 (A) vs 1.94148 (B)"), or one side has a log the other does not
// ("val_loss 2.09335 (A), none (B)"); nothing when none does.
std::optional<FirstDivergence> metrics_divergence(int64_t step, int epoch,
                                                  const std::vector<std::pair<std::string, double>>& a,
                                                  const std::vector<std::pair<std::string, double>>& b,
                                                  const std::string& name_a, const std::string& name_b);
// "parameter dense_1.kernel differs", "gradient of dense_1.bias differs", "the parameters differ" (for the one
// digest over all parameters that level step records).
std::string what_differs(const std::string& name, bool gradient);
// The site of a step-end difference: "dense_1.kernel:value", "dense_1.bias:grad", "(all parameters)".
std::string step_end_site(const std::string& name, bool gradient);

struct Cause {
  std::string category;  // config | data | rng | shuffle | split | loader | kernel | numeric | environment
  std::string detail;
};

struct EnvDifference {
  std::string key, recorded, replayed;
};

// What a report says happened: the first word of its text and its JSON "status".
enum class ReportStatus {
  reproduced,  // replay: every value compared matched; bisect: a free replay reproduces
  identical,   // diff: the two traces hold the same values
  diverged,    // a value differs (bisect: narrowed to the choices that must be forced)
  damaged,     // no difference before a trace's damage (a message changed after it was written)
  truncated,   // no difference in the steps that a trace cut short (a killed recording) holds
};
const char* status_name(ReportStatus s);

// Where a trace stops before the steps to compare end: damage, or a cut (a killed recording).
struct TraceStop {
  bool damaged = false;  // else cut short (or stopped, below)
  std::string trace;     // its path
  std::string side;      // "A" or "B" in a diff; empty for the one trace of a replay or a bisect
  int64_t after_step = -1;         // the last step read whole; nothing after it was read
  std::optional<uint64_t> offset;  // the byte where reading stopped (none: the file ends after step
                                   // `after_step`'s message, with no footer)
  std::string detail;              // the reader's words
  // The replay was asked to stop before this step (--to-step), before the stop: what it compared ends there,
  // and the rest was read only to check the trace.
  int64_t to_step = -1;
  // A diff: the trace ends whole, with its footer, where its recording was stopped before its run's end
  // (Ctrl-C, an error): the footer's reason ("interrupted"). Empty for a cut or damage.
  std::string stopped;
};

struct DivergenceReport {
  std::string command;  // replay | diff | bisect
  bool diverged = false;
  // Set when a trace stops before the steps to compare end: what was compared lies before it.
  std::optional<TraceStop> stop;
  // Two recordings are compared (diff, bisect --against), not a recording and a replay: equal ones are
  // "identical".
  bool two_recordings = false;
  ReportStatus status() const;
  std::optional<FirstDivergence> first;
  Cause cause;
  std::vector<EnvDifference> environment;
  // Every configuration key whose value differs ("train.epochs: 2 -> 3"); a cause names at most the first 8.
  std::vector<std::string> config_differences;
  std::vector<std::pair<std::string, std::string>> facts;  // ("force", "all"), ("steps replayed", "150"), ...
  std::vector<std::string> notes;
  std::string label_a = "recorded", label_b = "replayed";
  bool same_choices = true;  // diff: false when identical runs selected different kernels somewhere
  bool other_orders = false;     // diff: identical runs whose recorded accumulation orders differ somewhere
  bool choices_unknown = false;  // diff: one trace holds kernel choices at sites where the other holds none
  PageViews page;            // what the HTML page draws beyond the text: curves, the divergence map, tables
  std::vector<std::string> stages;  // bisect: its stage and result lines, as the terminal prints them
};

// The shortest text that reads back as the same double ("0.1", not "0.10000000000000001"): two different
// values never print alike.
std::string round_trip(double v);
// Two values to show side by side, with 6 significant digits or as many more as tell them apart (values
// that differ never print alike; equal ones print alike).
std::pair<std::string, std::string> side_by_side(double a, double b, int digits = 6);
// The first metric whose values are not the same bits, "accuracy 0.75 vs 0.8125", or that one side has and
// the other does not ("accuracy 0.75 vs none", "no accuracy vs accuracy 0.8125"); "" where none is.
std::string first_metric_difference(const std::vector<std::pair<std::string, double>>& a,
                                    const std::vector<std::pair<std::string, double>>& b);
// Two tensors' summaries side by side, as the reports print them: "sum S, min M, max X", each value with 9
// significant digits or as many more as tell it from the other side's.
// The fields of two summaries of the same values that are not the same bits ("sum 1.5 (recorded) vs 2.25
// (replayed); max ..."), or "" where all are. A summary is computed in one order on every machine and build,
// so two of the same values differ only where a trace was changed after it was written.
std::string summary_fields_differ(const Summary& a, const Summary& b, const std::string& name_a = "recorded",
                                  const std::string& name_b = "replayed");
std::pair<std::string, std::string> summaries_side_by_side(const Summary& a, const Summary& b);
// Whether two summaries are the same bits: the tensors then differ in values their sums, minima and maxima
// do not show, which the reports say.
bool same_summary(const Summary& a, const Summary& b);
// "WHO was changed after it was written: reading stopped at byte N, AFTER", "WHO is cut short at byte N,
// AFTER
// (...)" or "WHO ends AFTER with no footer (...)": where a trace stops, for the reports.
std::string stop_sentence(const std::string& who, const std::string& after, bool damaged,
                          const std::optional<uint64_t>& offset);
// "B (b.trr) was changed after it was written: reading stopped at byte 812, after step 41".
std::string trace_stop_words(const TraceStop& s);
// A recording stopped before its run's end, from its footer's reason: "it was stopped (interrupted at step
// 10)", "an error stopped it (step 5: ...)".
// `source` leads the reason inside the parentheses ("rank 0's footer: ").
std::string stopped_words(const std::string& end_reason, const std::string& source = "");
// Where in the model a divergence lies, as a report's first line says it after its step and phase:
// ", dense_1 matmul.fwd (dense_1/matmul.fwd:out)", ", dense_1 (m/dense_1.kernel)"; "" for none.
std::string site_words(const FirstDivergence& d);
// "1 step", "2 steps".
std::string counted(int64_t n, const std::string& noun);
// The first `shown` of `items` joined by `separator`, and how many more there are: "a, b and 3 more".
std::string first_of(const std::vector<std::string>& items, size_t shown,
                     const std::string& separator = ", ");

// " (near zero, where a ULP is tiny: the values differ by X in absolute terms)" where a first differing
// element's ULP count is large only because its values lie near zero (or on both sides of it); else "".
std::string near_zero(const FirstDivergence& d);

// Whether a first differing element's two values have a distance (|diff|, ULPs): a NaN or an infinity lies
// on no number line, and a count of ULPs to it says nothing (it follows a NaN's unprinted sign bit).
inline bool has_distance(const FirstDivergence& d) {
  return std::isfinite(d.recorded) && std::isfinite(d.replayed);
}
// A first differing element's two values as the reports print them: two NaNs, which differ in their bits
// alone, with their float32 bits ("nan (bits 0xffc00000)").
std::pair<std::string, std::string> element_values(const FirstDivergence& d);

// Whether a report's "what differs" adds to its cause: a loader's, a split's or a shuffle's cause opens with
// it.
bool what_adds_to_cause(const DivergenceReport& r);
std::string report_text(const DivergenceReport& r);
std::string report_json(const DivergenceReport& r);

// "dense_1/matmul.fwd:out" -> layer "dense_1", op "matmul.fwd"; kernel site "dense_1/matmul.fwd".
void split_site(const std::string& site, std::string& layer, std::string& op);
std::string kernel_site_of(const std::string& probe_site);

// An environment key's value as reports show it (`value` null: the side lacks the key): an unset variable, a
// GPU's key on the CPU, a key the trainrr that wrote the trace did not record, an MPI setting recorded empty.
std::string environment_value_shown(const std::string& key, const std::string* value);

}  // namespace trainrr
