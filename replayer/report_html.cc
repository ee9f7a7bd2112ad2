#include "replayer/report_html.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

#include "engine/escape.h"
#include "replayer/report_file.h"
#include "traces/trace.h"

// The page, top to bottom: the answer (a card), the loss of both runs with their difference on a log scale,
// the divergence map (every probed tensor, step by step, coloured by how much it differs), notes and facts,
// then the kernel choices and the environment of both sides. Pure HTML, CSS and inline SVG: no script, no
// request to anywhere. Every string that came from a trace or a path goes through html_escape.

namespace trainrr {
namespace {

using std::string;

string esc(std::string_view s) { return html_escape(s); }

// A command line with each word kept whole (a span that does not wrap; the line breaks at the spaces between
// words), so that "--keep-going" is never split at its hyphen into what reads as two words.
string command_html(std::string_view command) {
  string out = "<span>";
  for (const char c : command) out += c == ' ' ? string("</span> <span>") : esc(std::string_view(&c, 1));
  return out + "</span>";
}

string num(double v, int digits = 4) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

// "step 20" or "steps 20-29".
string step_range(int64_t first, int64_t last) {
  return first == last ? "step " + std::to_string(first)
                       : "steps " + std::to_string(first) + "-" + std::to_string(last);
}

// The least distance between two epoch lines drawn, in SVG units: closer ones are left out.
constexpr double kMinEpochGap = 8;

// Coordinates in SVG: two decimals are plenty.
string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  string s = buf;
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s == "-0" ? "0" : s;
}

// The label of an epoch that starts at `ex` ("epoch 12"), at height `y`: after its line, or, near the panel's
// right edge `right`, ending at it, where it does not run into the label before it (that one ends at
// `after`). Where it would, none is drawn. Where the label drawn ends, or `after`.
double epoch_label(std::ostream& o, double ex, double right, double y, int epoch, double after) {
  const string text = "epoch " + std::to_string(epoch);
  const double width = 6.5 * static_cast<double>(text.size());  // the tick font's width, generously
  const bool end = ex > right - 56;
  const double from = end ? ex - 3 - width : ex + 3;
  if (from < after + 6) return after;
  o << "<text class=\"etick\" x=\"" << px(end ? ex - 3 : ex + 3) << "\" y=\"" << px(y) << "\" text-anchor=\""
    << (end ? "end" : "start") << "\">" << text << "</text>";
  return from + width;
}

// "1e-08" reads worse than "1e-8".
string decade(int e) {
  if (e == 0) return "1";
  if (e == 1) return "10";
  if (e == -1) return "0.1";
  if (e == -2) return "0.01";
  return "1e" + std::to_string(e);
}

// hi - lo for finite lo <= hi, or half of it where the difference is past what a double holds (-1e308 to
// 1e308): `halved` says which.
double span(double lo, double hi, bool& halved) {
  const double d = hi - lo;
  halved = !std::isfinite(d);
  return halved ? hi / 2 - lo / 2 : d;
}

// About `target` round values covering [lo, hi] (finite): every one finite, and at most a few more than
// `target` (a range narrower than the doubles around it can tell apart gets its ends).
std::vector<double> nice_ticks(double lo, double hi, int target) {
  std::vector<double> t;
  if (!(hi > lo)) return {lo};
  bool halved = false;
  const double raw = span(lo, hi, halved) / std::max(1, target) * (halved ? 2 : 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  // Each tick is counted from the first, not added to the last: a step below the doubles' resolution at lo
  // would never move past it.
  const double first = std::ceil(lo / step - 1e-9);
  for (int i = 0; i <= 2 * std::max(1, target) + 2; ++i) {
    const double v = (first + i) * step;
    if (!std::isfinite(v) || v > hi + step * 1e-9) break;
    if (!t.empty() && v <= t.back()) return {lo, hi};
    t.push_back(std::fabs(v) < step * 1e-9 ? 0 : v);
  }
  if (t.empty()) return {lo, hi};
  return t;
}

const string* fact(const DivergenceReport& r, const string& key) {
  for (const auto& [k, v] : r.facts)
    if (k == key) return &v;
  return nullptr;
}

string base_name(const string& path) {
  const string b = std::filesystem::path(path).filename().string();
  return b.empty() ? path : b;
}

// What each side is called on the page: the traces by name, not A and B.
struct Names {
  string a, b;
};

Names side_names(const DivergenceReport& r) {
  if (r.command == "diff" || r.two_recordings) {
    const string* a = fact(r, "A");
    const string* b = fact(r, "B");
    if (a && b) {
      if (base_name(*a) != base_name(*b)) return {base_name(*a), base_name(*b)};
      return {*a, *b};
    }
  }
  if (const string* t = fact(r, "trace")) return {base_name(*t) + " (recorded)", "replay here"};
  return {r.label_a, r.label_b};
}

struct Look {
  string word;   // what the badge says
  string klass;  // bad | ok | warn
};

Look status_look(const DivergenceReport& r) {
  const ReportStatus s = r.status();
  return {status_name(s), s == ReportStatus::diverged                                    ? "bad"
                          : s == ReportStatus::damaged || s == ReportStatus::truncated ? "warn"
                                                                                       : "ok"};
}

// "run_b.trr was changed after it was written: reading stopped at byte 812, after step 41".
string stop_words(const TraceStop& s) {
  const string who = s.side.empty() ? s.trace : s.side + " (" + s.trace + ")";
  const string after = "after step " + std::to_string(s.after_step);
  const string at = s.offset ? " at byte " + std::to_string(*s.offset) : string();
  if (s.damaged) return who + " was changed after it was written: reading stopped" + at + ", " + after;
  if (!s.stopped.empty()) return trace_stop_words(s);
  return who + " is cut short" + at + ", " + after + " (a recording killed or cut there)";
}

// A difference in a state (the initial one, a checkpoint, the final one) lies between steps, where no value a
// step compares shows it: where it lies, in words and on the step axis.
struct StateMark {
  string words;   // "the checkpoint at step 5 (the state after step 4)"
  string label;   // "checkpoint at step 5 differs": the marker's
  double at = 0;  // on the step axis, between two steps
};

std::optional<StateMark> state_mark(const DivergenceReport& r) {
  if (!r.diverged || !r.first || r.first->kind != "state") return std::nullopt;
  const int64_t s = r.first->step;
  const string step = std::to_string(s), next = std::to_string(s + 1);
  if (r.first->phase == "setup")
    return StateMark{"the initial state, before step " + step, "initial state differs",
                     static_cast<double>(s) - 0.5};
  if (r.first->phase == "checkpoint")
    return StateMark{"the checkpoint at step " + next + " (the state after step " + step + ")",
                     "checkpoint at step " + next + " differs", static_cast<double>(s) + 0.5};
  return StateMark{"the final state, after step " + step, "final state differs",
                   static_cast<double>(s) + 0.5};
}

// What the plots say where the runs differ in nothing they draw: a state's difference, or the inputs' alone
// (a divergence with no value compared that differs). Empty where the plots show the first divergence.
string not_plotted_words(const DivergenceReport& r) {
  if (const auto m = state_mark(r))
    return "The runs first differ in " + m->words + (r.first->site.empty() ? "" : ", at " + r.first->site) +
           ": no value drawn here covers it, as the steps compare their losses and probed tensors, not the "
           "whole state.";
  if (r.diverged && !r.first)
    return "No value compared differs: the runs differ in their inputs only (see the cause), which no value "
           "drawn here shows.";
  return "";
}

// "The runs' epochs have other lengths: a.trr's begin at steps 45 and 90, b.trr's at steps 41 and 82" (HTML).
string epoch_lengths_words(const PageViews& p, const Names& n) {
  auto starts = [](const std::vector<EpochMark>& epochs) {
    std::vector<string> s;
    for (const auto& e : epochs)
      if (e.epoch > 1) s.push_back(std::to_string(e.step));
    return s.empty() ? string("no step compared") : (s.size() == 1 ? "step " : "steps ") + first_of(s, 6);
  };
  return "The runs' epochs have other lengths: those of " + esc(n.a) + " begin at " + starts(p.epochs) +
         ", those of " + esc(n.b) + " at " + starts(p.epochs_b);
}

// --- the answer ---

void answer_card(std::ostringstream& o, const DivergenceReport& r, const Names& n) {
  const Look look = status_look(r);
  o << "<section class=\"card " << look.klass << "\"><div class=\"badge " << look.klass << "\">" << look.word
    << "</div>";
  const string* compared = fact(r, "steps compared");
  const bool identical = r.status() == ReportStatus::identical;
  if (!r.diverged && r.stop) {
    o << "<h1>"
      << (r.stop->damaged            ? "The trace is damaged"
          : !r.stop->stopped.empty() ? "The recording of " + r.stop->side + " was stopped"
                                     : "The trace is cut short")
      << " after step " << r.stop->after_step << "</h1><p class=\"sub\">"
      << (r.two_recordings        ? "The steps both traces hold before it are identical"
          : r.command == "bisect" ? "A free replay reproduces the steps before it bit for bit"
          : r.stop->to_step >= 0
              ? "The steps before --to-step " + std::to_string(r.stop->to_step) + " reproduced bit for bit"
              : "The steps before it reproduced bit for bit")
      << (compared ? " (" + esc(*compared) + " steps compared)" : string())
      << (r.stop->to_step >= 0 ? "; the steps after them were not replayed.</p>"
                               : "; nothing after it is compared.</p>");
  } else if (!r.diverged) {
    o << "<h1>" << (identical ? "The two runs computed the same bits" : "Reproduced bit for bit") << "</h1>";
    if (compared) o << "<p class=\"sub\">" << esc(*compared) << " steps compared</p>";
    if (identical && !r.same_choices)
      o << "<p>Some kernel choices differ, yet every compared value is the same (see the kernel table).</p>";
    else if (identical && r.other_orders)
      o << "<p>Some accumulation orders differ, yet every compared value is the same (see the notes).</p>";
    else if (identical && r.choices_unknown)
      o << "<p>One trace holds kernel choices the other does not: those cannot be compared (see the "
           "notes).</p>";
  } else if (r.first) {
    const FirstDivergence& d = *r.first;
    // A state's difference (the final one's) arose at a step the steps' comparisons do not show.
    if (d.kind == "state" && d.phase == "checkpoint")
      o << "<h1>Diverged in the checkpoint at step " << d.step + 1 << ", after step " << d.step;
    else
      o << (d.kind == "state" && d.phase == "setup" ? "<h1>Diverged in the initial state, before step "
            : d.kind == "state"                     ? "<h1>Diverged in the final state, after step "
                                                    : "<h1>Diverged at step ")
        << d.step;
    if (!d.phase.empty() && d.kind != "state") o << ", " << esc(d.phase);
    o << "</h1><p class=\"sub\">";
    if (!d.layer.empty() && d.layer != d.site) o << "layer <b>" << esc(d.layer) << "</b> ";
    if (!d.op.empty()) o << "op <b>" << esc(d.op) << "</b> ";
    if (!d.site.empty()) o << "<code>" << esc(d.site) << "</code>";
    o << "</p>";
  } else {
    o << "<h1>Diverged in the inputs only</h1><p class=\"sub\">No value compared differs"
      << (compared ? " (" + esc(*compared) + " steps compared)" : string()) << "</p>";
  }
  o << "<dl>";
  if (r.stop)
    o << "<dt>"
      << (r.stop->damaged            ? "Damaged"
          : !r.stop->stopped.empty() ? "Stopped"
                                     : "Cut short")
      << "</dt><dd class=\"hl\">" << esc(stop_words(*r.stop))
      << (r.stop->detail.empty() ? string() : ": " + esc(r.stop->detail)) << "</dd>";
  if (r.diverged) {
    o << "<dt>Cause</dt><dd><span class=\"tag\">" << esc(r.cause.category) << "</span> " << esc(r.cause.detail)
      << "</dd>";
  }
  if (r.first) {
    const FirstDivergence& d = *r.first;
    if (what_adds_to_cause(r)) o << "<dt>What differs</dt><dd>" << esc(d.detail) << "</dd>";
    if (!d.kernel_recorded.empty() || !d.kernel_replayed.empty()) {
      const bool same = d.kernel_recorded == d.kernel_replayed;
      o << "<dt>Kernel</dt><dd>";
      if (same)
        o << "<code>" << esc(d.kernel_recorded) << "</code> on both sides";
      else
        o << "<span class=\"hl\"><code>" << esc(d.kernel_recorded.empty() ? "?" : d.kernel_recorded)
          << "</code> in " << esc(n.a) << ", <code>" << esc(d.kernel_replayed.empty() ? "?" : d.kernel_replayed)
          << "</code> in " << esc(n.b) << "</span>";
      o << "</dd>";
    }
    if (d.has_element) {
      const bool distance = has_distance(d);
      const auto [va, vb] = element_values(d);
      o << "<dt>First differing element</dt><dd><table class=\"vals\"><tr><th>index</th><th>" << esc(n.a)
        << "</th><th>" << esc(n.b) << "</th>" << (distance ? "<th>|diff|</th><th>ULP</th>" : "")
        << "</tr><tr><td>" << d.index << "</td><td class=\"mono\">" << esc(va) << "</td><td class=\"mono\">"
        << esc(vb) << "</td>";
      if (distance)
        o << "<td class=\"mono\">" << num(d.abs_diff, 9) << "</td><td class=\"mono\">" << d.ulp << "</td>";
      o << "</tr></table>";
      if (!distance)
        o << "<p class=\"caption\">No distance between them: a NaN or an infinity has no place on the number "
             "line to count ULPs from.</p>";
      // The terminal's caveat beside a huge ULP count near zero.
      if (const string caveat = near_zero(d); !caveat.empty())
        o << "<p class=\"caption\">" << d.ulp << " ULP" << esc(caveat) << ".</p>";
      o << "</dd>";
    }
    if (d.summary_recorded && d.summary_replayed) {
      o << "<dt>Tensor summary</dt><dd><table class=\"vals\"><tr><th></th><th>sum</th><th>min</th><th>max</th>"
           "<th>non-finite</th></tr>";
      // As many digits as tell the two sides' values apart.
      const Summary &a = *d.summary_recorded, &b = *d.summary_replayed;
      const auto sum = side_by_side(a.sum, b.sum, 9), min = side_by_side(a.min, b.min, 9),
                 max = side_by_side(a.max, b.max, 9);
      for (int side = 0; side < 2; ++side) {
        auto pick = [side](const std::pair<string, string>& p) { return side ? p.second : p.first; };
        o << "<tr><td>" << esc(side ? n.b : n.a) << "</td>";
        // A summary of no finite value holds zeros that stand for nothing.
        if (no_finite_value(side ? b : a))
          o << "<td colspan=\"3\">no finite value</td>";
        else
          o << "<td class=\"mono\">" << pick(sum) << "</td><td class=\"mono\">" << pick(min)
            << "</td><td class=\"mono\">" << pick(max) << "</td>";
        o << "<td class=\"mono\">" << (side ? b : a).non_finite << "</td></tr>";
      }
      o << "</table>";
      if (same_summary(a, b))
        o << "<p>The sums, minima and maxima are the same bits: the values differ where these do not "
             "show.</p>";
      o << "</dd>";
    }
  }
  // bisect's command is the replay that reproduces the recording; the others' show their comparison again.
  if (!r.page.command.empty())
    o << "<dt>"
      << (r.command == "bisect" && r.page.command.rfind("trainrr replay", 0) == 0 ? "Reproduces the recording"
          : r.diverged || r.command == "bisect"                                   ? "Reproduce with"
                                                                                  : "Command")
      << "</dt><dd><code class=\"cmd\">" << command_html(r.page.command) << "</code></dd>";
  o << "</dl>";
  if (r.page.stopped_at_first && r.first)
    o << "<p class=\"callout\">The replay stopped at its first divergence, "
      << (state_mark(r)               ? "in " + state_mark(r)->words
          : r.first->phase == "setup" ? "in the run's set-up, before step 0 ran"
                                      : "step " + std::to_string(r.first->step))
      << ". To see how far the runs drift after it, replay on to step " << r.page.would_end
      << ": <code class=\"cmd\">" << command_html(r.page.command + " --keep-going") << "</code></p>";
  o << "</section>\n";
}

// --- what bisect found on the way ---

// A line as the terminal prints it, with `quoted commands` as code.
string line_html(const string& line) {
  string out;
  bool code = false;
  size_t at = 0;
  for (size_t tick = line.find('`'); tick != string::npos; tick = line.find('`', at)) {
    // An opening quote with no closing one is left as it is.
    if (!code && line.find('`', tick + 1) == string::npos) break;
    out += code ? "<code>" + esc(line.substr(at, tick - at)) + "</code>" : esc(line.substr(at, tick - at));
    code = !code;
    at = tick + 1;
  }
  return out + esc(line.substr(at));
}

void stages_section(std::ostringstream& o, const DivergenceReport& r) {
  if (r.stages.empty()) return;
  o << "<section><h2>What bisect did</h2><ul class=\"notes\">";
  for (const string& line : r.stages)
    o << "<li" << (line.rfind("result:", 0) == 0 ? " class=\"result\"" : "") << ">" << line_html(line)
      << "</li>";
  o << "</ul></section>\n";
}

// --- the loss of both runs ---

constexpr int kWidth = 1100;

struct Axis {
  double lo, hi;  // data range
  double p0, p1;  // pixel range
  // Finite for every finite v in [lo, hi], however far apart lo and hi (-1e308 to 1e308): the fraction of the
  // range comes first, then the pixels.
  double at(double v) const {
    if (!(hi > lo)) return (p0 + p1) / 2;
    bool halved = false;
    const double range = span(lo, hi, halved);
    const double from_lo = halved ? v / 2 - lo / 2 : v - lo;
    return p0 + (p1 - p0) * (from_lo / range);
  }
};

string legend_line(const string& colour, bool dashed, double width = 2.5, double opacity = 1) {
  return "<svg class=\"sw\" width=\"28\" height=\"10\" viewBox=\"0 0 28 10\"><line x1=\"0\" y1=\"5\" x2=\"28\" "
         "y2=\"5\" stroke=\"" +
         colour + "\" stroke-width=\"" + px(width) + "\" stroke-opacity=\"" + px(opacity) + "\"" + (dashed ? " stroke-dasharray=\"5 3\"" : "") + "/></svg>";
}

string legend_mark(const string& colour, bool square) {
  return string("<svg class=\"sw\" width=\"12\" height=\"12\" viewBox=\"0 0 12 12\">") +
         (square ? "<rect x=\"2.5\" y=\"2.5\" width=\"7\" height=\"7\"" : "<circle cx=\"6\" cy=\"6\" r=\"4.5\"") +
         " fill=\"#fff\" stroke=\"" + colour + "\" stroke-width=\"2\"/></svg>";
}

// Where the first divergence is marked on the step axis: at its step, or between two steps for a state's.
struct DivergenceMark {
  double at = 0;
  string label;
  // Whether it lies on the axis `x` (a state after the last step drawn sits at its right edge).
  bool on(const Axis& x) const { return at >= x.lo - 0.5 && at <= x.hi + 0.5; }
};

std::optional<DivergenceMark> divergence_mark(const DivergenceReport& r) {
  if (const auto m = state_mark(r)) return DivergenceMark{m->at, m->label};
  if (r.diverged && r.first)
    return DivergenceMark{static_cast<double>(r.first->step),
                          "first divergence, step " + std::to_string(r.first->step)};
  return std::nullopt;
}

// The x axis of the loss panels: steps, with the epochs' first steps and the first divergence marked.
void step_axis(std::ostringstream& o, const Axis& x, double top, double bottom, bool labels,
               const std::vector<EpochMark>& epochs, const std::vector<EpochMark>& epochs_b,
               const std::optional<DivergenceMark>& mark) {
  // Epochs closer together than a few pixels: a line every few epochs, as the labels are thinned, rather than
  // a haze of lines.
  const auto sparse = [](double ex, double& last) {
    if (ex - last < kMinEpochGap) return false;
    last = ex;
    return true;
  };
  // B's epochs, where they have other lengths than A's: lines of its colour, unlabelled.
  double last_b = -1e9;
  for (const auto& e : epochs_b) {
    const double ex = x.at(static_cast<double>(e.step) - 0.5);
    if (ex > x.p0 + 1 && sparse(ex, last_b))
      o << "<line class=\"epochb\" x1=\"" << px(ex) << "\" y1=\"" << px(top) << "\" x2=\"" << px(ex)
        << "\" y2=\"" << px(bottom) << "\"/>";
  }
  for (double t : nice_ticks(x.lo, x.hi, 8)) {
    if (t != std::floor(t)) continue;
    o << "<line class=\"grid\" x1=\"" << px(x.at(t)) << "\" y1=\"" << px(top) << "\" x2=\"" << px(x.at(t))
      << "\" y2=\"" << px(bottom) << "\"/>";
    if (labels)
      o << "<text class=\"tick\" x=\"" << px(x.at(t)) << "\" y=\"" << px(bottom + 16)
        << "\" text-anchor=\"middle\">" << static_cast<int64_t>(t) << "</text>";
  }
  const size_t every = std::max<size_t>(1, (epochs.size() + 11) / 12);
  double labels_end = -1e9;  // where the last epoch label drawn ends: none is drawn over it
  double last_line = -1e9;
  for (size_t i = 0; i < epochs.size(); ++i) {
    // The first epoch compared may begin before the first step compared: its label sits at the left edge.
    double ex = x.at(static_cast<double>(epochs[i].step) - 0.5);
    if (ex <= x.p0 + 1)
      ex = x.p0;
    else if (sparse(ex, last_line))
      o << "<line class=\"epoch\" x1=\"" << px(ex) << "\" y1=\"" << px(top) << "\" x2=\"" << px(ex)
        << "\" y2=\"" << px(bottom) << "\"/>";
    if (!labels && i % every == 0)
      labels_end = epoch_label(o, ex, x.p1, top + 11, epochs[i].epoch, labels_end);
  }
  if (mark && mark->on(x)) {
    const double dx = std::clamp(x.at(mark->at), x.p0, x.p1);
    o << "<line class=\"first\" x1=\"" << px(dx) << "\" y1=\"" << px(top) << "\" x2=\"" << px(dx) << "\" y2=\""
      << px(bottom) << "\"/>";
    if (!labels) {
      const bool right = dx > x.p0 + (x.p1 - x.p0) * 0.7;
      o << "<text class=\"firstlabel\" x=\"" << px(right ? dx - 4 : dx + 4) << "\" y=\"" << px(bottom - 6)
        << "\" text-anchor=\"" << (right ? "end" : "start") << "\">" << mark->label << "</text>";
    }
  }
}

void loss_section(std::ostringstream& o, const DivergenceReport& r, const Names& n) {
  const PageViews& p = r.page;
  o << "<section><h2>Loss per step</h2>";
  if (!p.per_step) {
    o << "<p class=\"muted\">Not computed by trainrr " << esc(r.command)
      << ", which keeps no loss per step of the runs it re-executes: <code>trainrr replay "
         "--keep-going</code> or <code>trainrr "
         "diff</code> draws the loss curves and the divergence map.</p></section>\n";
    return;
  }
  const size_t points = p.loss_a.size();
  auto step_of = [&](size_t i) { return static_cast<double>(p.first_step + static_cast<int64_t>(i) * p.step_stride); };
  double lo = INFINITY, hi = -INFINITY;
  for (const auto* s : {&p.loss_a, &p.loss_b})
    for (double v : *s)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  for (const auto& v : p.val_loss)
    for (double x : {v.a, v.b})
      if (std::isfinite(x)) lo = std::min(lo, x), hi = std::max(hi, x);
  if (points == 0 || !std::isfinite(lo)) {
    o << "<p class=\"muted\">No step compared holds a "
      << (p.non_finite_a.steps + p.non_finite_b.steps > 0 ? "finite loss (NaN or infinite at every step)"
                                                          : "loss on both sides")
      << ".</p></section>\n";
    return;
  }
  const bool has_val = !p.val_loss.empty();
  // Panel 1: the two losses.
  const double t1 = 12, b1 = 262;
  if (hi == lo) {
    // A flat curve sits mid-panel: widened by 1% each way, within the doubles (1e308 and up).
    const double pad = std::max(1e-6, std::fabs(lo) * 0.01);
    hi = std::min(lo + pad, DBL_MAX);
    lo = std::max(lo - pad, -DBL_MAX);
  } else if (const double room = (hi - lo) * 0.04; std::isfinite(room)) {
    // Room above and below the curves: the wide line and the markers at the extremes stay inside the frame.
    hi = std::min(hi + room, DBL_MAX);
    lo = std::max(lo - room, -DBL_MAX);
  }
  const std::vector<double> yt = nice_ticks(lo, hi, 5);
  const Axis y{std::min(lo, yt.front()), std::max(hi, yt.back()), b1, t1};
  // As many digits as tell the ticks apart (losses a few ULPs apart need 8) and show their equal steps
  // (0.6190975 rounded to 0.619098 beside 0.619095 reads as a step of 3e-6, not 2.5e-6), at least 4.
  int tick_digits = 4;
  const double tick_step = yt.size() > 1 ? yt[1] - yt[0] : 0;
  for (bool off = true; off && tick_digits < 17;) {
    off = false;
    for (size_t i = 0; i < yt.size(); ++i) {
      off = off || (i > 0 && num(yt[i], tick_digits) == num(yt[i - 1], tick_digits)) ||
            std::fabs(std::strtod(num(yt[i], tick_digits).c_str(), nullptr) - yt[i]) > tick_step * 1e-3;
    }
    if (off) ++tick_digits;
  }
  // A wide label moves the plots right, clear of the axis's title.
  size_t widest = 0;
  for (double t : yt) widest = std::max(widest, num(t, tick_digits).size());
  const double left = 74 + 7.0 * static_cast<double>(std::max<size_t>(widest, 6) - 6);
  const double right = kWidth - 16;
  // A replay that stopped at its first divergence keeps the axis of the whole run, the rest marked as not
  // replayed.
  double x_lo = step_of(0), x_hi = std::max(step_of(points - 1), static_cast<double>(p.would_end));
  if (x_hi - x_lo < 1) x_lo -= 0.5, x_hi += 0.5;
  const Axis x{x_lo, x_hi, left, right};
  auto not_replayed = [&](double top, double bottom, bool label) {
    if (!p.stopped_at_first || p.would_end <= p.last_step) return;
    const double nx = x.at(static_cast<double>(p.last_step) + 0.5);
    o << "<rect class=\"notrun\" x=\"" << px(nx) << "\" y=\"" << px(top) << "\" width=\"" << px(right - nx)
      << "\" height=\"" << px(bottom - top) << "\"/>";
    if (label)
      o << "<text class=\"note\" x=\"" << px((nx + right) / 2) << "\" y=\"" << px((top + bottom) / 2)
        << "\" text-anchor=\"middle\">" << step_range(p.last_step + 1, p.would_end)
        << " not replayed: the replay stopped at its first divergence</text>";
  };
  // A difference in a state is marked between the steps it lies between; one in the inputs alone is not.
  const std::optional<DivergenceMark> mark = divergence_mark(r);
  // The legend names the divergence's marker only where one is drawn.
  o << "<div class=\"legend\"><span>" << legend_line("var(--a)", false, 6, 0.35) << esc(n.a)
    << "</span><span>" << legend_line("var(--b)", false, 1.6) << esc(n.b) << "</span>";
  // Each side's validation loss where that side has one (a run may hold out no validation rows).
  const bool val_a =
      std::any_of(p.val_loss.begin(), p.val_loss.end(), [](const auto& v) { return !std::isnan(v.a); });
  const bool val_b =
      std::any_of(p.val_loss.begin(), p.val_loss.end(), [](const auto& v) { return !std::isnan(v.b); });
  if (val_a) o << "<span>" << legend_mark("var(--a)", false) << "validation loss, " << esc(n.a) << "</span>";
  if (val_b) o << "<span>" << legend_mark("var(--b)", true) << "validation loss, " << esc(n.b) << "</span>";
  if (mark && mark->on(x)) o << "<span>" << legend_line("var(--bad)", false) << "first divergence</span>";
  if (p.epochs_b.empty())
    o << "<span>" << legend_line("#9aa5b1", true) << "epoch start</span></div>";
  else
    o << "<span>" << legend_line("#9aa5b1", true) << "epoch start, " << esc(n.a) << "</span><span>"
      << legend_line("var(--b)", true, 1.2) << "epoch start, " << esc(n.b) << "</span></div>";

  // Panel 2: |loss difference|, log scale.
  const double t2 = 310, b2 = 450;
  double dlo = INFINITY, dhi = -INFINITY;
  std::vector<double> diff(points, NAN);
  // Losses that are the same bits, a NaN beside the same NaN too: the green band.
  std::vector<bool> same(points, false);
  bool all_same = true;
  for (size_t i = 0; i < points; ++i) {
    const double a = p.loss_a[i], b = i < p.loss_b.size() ? p.loss_b[i] : NAN;
    same[i] = same_bits(a, b);
    all_same = all_same && same[i];
    if (!std::isfinite(a) || !std::isfinite(b)) continue;
    // A difference past what a double holds (1e308 against -1e308) is left out, as a non-finite loss is.
    if (!std::isfinite(a - b)) continue;
    diff[i] = std::fabs(a - b);
    if (diff[i] > 0) dlo = std::min(dlo, diff[i]), dhi = std::max(dhi, diff[i]);
  }
  const bool any_diff = std::isfinite(dlo);
  int e_lo = any_diff ? static_cast<int>(std::floor(std::log10(dlo))) : -8;
  int e_hi = any_diff ? static_cast<int>(std::ceil(std::log10(dhi))) : 0;
  if (e_hi <= e_lo) e_hi = e_lo + 1;
  const double zero_band = b2 + 0;  // identical steps sit on the axis, drawn as a band below the panel
  const Axis yl{static_cast<double>(e_lo), static_cast<double>(e_hi), b2 - 14, t2};

  o << "<svg viewBox=\"0 0 " << kWidth << " 492\" role=\"img\" aria-label=\"loss per step, steps "
    << static_cast<int64_t>(step_of(0)) << " to " << static_cast<int64_t>(step_of(points - 1)) << "\">";
  // Panel 1.
  o << "<rect class=\"plot\" x=\"" << px(left) << "\" y=\"" << px(t1) << "\" width=\"" << px(right - left)
    << "\" height=\"" << px(b1 - t1) << "\"/>";
  not_replayed(t1, b1, true);
  for (double t : yt) {
    o << "<line class=\"grid\" x1=\"" << px(left) << "\" y1=\"" << px(y.at(t)) << "\" x2=\"" << px(right)
      << "\" y2=\"" << px(y.at(t)) << "\"/><text class=\"tick\" x=\"" << px(left - 6) << "\" y=\""
      << px(y.at(t) + 4) << "\" text-anchor=\"end\">" << num(t, tick_digits) << "</text>";
  }
  step_axis(o, x, t1, b1, false, p.epochs, p.epochs_b, mark);
  auto path = [&](const std::vector<double>& s, const Axis& ya, bool log) {
    string d;
    bool pen = false;
    for (size_t i = 0; i < s.size(); ++i) {
      const double v = s[i];
      if (!std::isfinite(v) || (log && !(v > 0))) {
        pen = false;
        continue;
      }
      d += pen ? 'L' : 'M';
      d += px(x.at(step_of(i)));
      d += ' ';
      d += px(ya.at(log ? std::log10(v) : v));
      pen = true;
    }
    return d;
  };
  auto dots = [&](const std::vector<double>& s, const Axis& ya, bool log, const string& klass) {
    // Points with no neighbour to join show as dots.
    for (size_t i = 0; i < s.size(); ++i) {
      auto ok = [&](size_t j) { return j < s.size() && std::isfinite(s[j]) && (!log || s[j] > 0); };
      if (!ok(i) || (i > 0 && ok(i - 1)) || ok(i + 1)) continue;
      o << "<circle class=\"" << klass << "\" cx=\"" << px(x.at(step_of(i))) << "\" cy=\""
        << px(ya.at(log ? std::log10(s[i]) : s[i])) << "\" r=\"3\"/>";
    }
  };
  o << "<path class=\"la\" d=\"" << path(p.loss_a, y, false) << "\"/><path class=\"lb\" d=\""
    << path(p.loss_b, y, false) << "\"/>";
  dots(p.loss_a, y, false, "da");
  dots(p.loss_b, y, false, "db");
  // Losses that are not finite have no place on the axis: a band of the side's colour over the top edge.
  for (int side = 0; side < 2; ++side) {
    const std::vector<double>& s = side ? p.loss_b : p.loss_a;
    for (size_t i = 0; i < s.size(); ++i) {
      if (std::isfinite(s[i])) continue;
      size_t j = i;
      while (j + 1 < s.size() && !std::isfinite(s[j + 1])) ++j;
      const double half = points == 1 ? 6 : (x.at(step_of(1)) - x.at(step_of(0))) / 2;
      const double x0 = std::max(left, x.at(step_of(i)) - half),
                   x1 = std::min(right, x.at(step_of(j)) + half);
      o << "<rect class=\"" << (side ? "nfb" : "nfa") << "\" x=\"" << px(x0) << "\" y=\""
        << px(t1 - 10 + 5 * side) << "\" width=\"" << px(x1 - x0) << "\" height=\"4\"><title>"
        << step_range(static_cast<int64_t>(step_of(i)),
                      std::min(p.last_step, static_cast<int64_t>(step_of(j)) + p.step_stride - 1))
        << ": the loss of " << esc(side ? n.b : n.a) << " is not finite</title></rect>";
      i = j;
    }
  }
  // Each side's validation loss at its own epoch's last step.
  for (const auto& v : p.val_loss) {
    double vx = x.at(static_cast<double>(v.step));
    if (std::isfinite(v.a) && v.step >= 0)
      o << "<circle class=\"va\" cx=\"" << px(vx) << "\" cy=\"" << px(y.at(v.a)) << "\" r=\"6.5\"><title>epoch "
        << v.epoch << " validation loss " << num(v.a, 7) << " (" << esc(n.a) << ")</title></circle>";
    vx = x.at(static_cast<double>(v.step_b));
    if (std::isfinite(v.b) && v.step_b >= 0)
      o << "<rect class=\"vb\" x=\"" << px(vx - 3.5) << "\" y=\"" << px(y.at(v.b) - 3.5)
        << "\" width=\"7\" height=\"7\"><title>epoch " << v.epoch << " validation loss " << num(v.b, 7) << " ("
        << esc(n.b) << ")</title></rect>";
  }
  o << "<text class=\"axis\" transform=\"translate(16 " << px((t1 + b1) / 2) << ") rotate(-90)\" "
       "text-anchor=\"middle\">loss</text>";
  // Panel 2.
  o << "<rect class=\"plot\" x=\"" << px(left) << "\" y=\"" << px(t2) << "\" width=\"" << px(right - left)
    << "\" height=\"" << px(b2 - t2) << "\"/>";
  not_replayed(t2, b2, false);
  const int every = std::max(1, (e_hi - e_lo + 5) / 6);
  for (int e = e_lo; e <= e_hi; ++e) {
    if ((e - e_lo) % every) continue;
    o << "<line class=\"grid\" x1=\"" << px(left) << "\" y1=\"" << px(yl.at(e)) << "\" x2=\"" << px(right)
      << "\" y2=\"" << px(yl.at(e)) << "\"/><text class=\"tick\" x=\"" << px(left - 6) << "\" y=\""
      << px(yl.at(e) + 4) << "\" text-anchor=\"end\">" << decade(e) << "</text>";
  }
  step_axis(o, x, t2, b2, true, p.epochs, p.epochs_b, mark);
  // Steps whose losses are the same bits: a band along the bottom of the panel.
  for (size_t i = 0; i < points; ++i) {
    if (!same[i]) continue;
    size_t j = i;
    while (j + 1 < points && same[j + 1]) ++j;
    const double half = points == 1 ? 6 : (x.at(step_of(1)) - x.at(step_of(0))) / 2;
    o << "<rect class=\"same\" x=\"" << px(std::max(left, x.at(step_of(i)) - half)) << "\" y=\""
      << px(zero_band - 9) << "\" width=\""
      << px(std::min(right, x.at(step_of(j)) + half) - std::max(left, x.at(step_of(i)) - half))
      << "\" height=\"8\"><title>"
      << step_range(static_cast<int64_t>(step_of(i)), static_cast<int64_t>(step_of(j)))
      << ": the same loss, bit for bit</title></rect>";
    i = j;
  }
  o << "<path class=\"ld\" d=\"" << path(diff, yl, true) << "\"/>";
  dots(diff, yl, true, "dd");
  if (!any_diff && !all_same)
    o << "<text class=\"note\" x=\"" << px(left + 12) << "\" y=\"" << px((t2 + b2) / 2)
      << "\" text-anchor=\"start\">no difference to draw: where the losses differ, one of them is not "
         "finite</text>";
  else if (!any_diff)
    o << "<text class=\"note\" x=\"" << px(left + 12) << "\" y=\"" << px((t2 + b2) / 2)
      << "\" text-anchor=\"start\">the losses are the same bits at every step compared"
      << (state_mark(r)            ? "; the runs differ in " + state_mark(r)->words
          : r.diverged && !r.first ? "; the runs differ in their inputs only"
                                   : "")
      << "</text>";
  o << "<text class=\"axis\" transform=\"translate(16 " << px((t2 + b2) / 2) << ") rotate(-90)\" "
       "text-anchor=\"middle\">|loss difference|</text>"
    << "<text class=\"axis\" x=\"" << px((left + right) / 2) << "\" y=\"488\" text-anchor=\"middle\">step</text>";
  o << "</svg>";
  o << "<p class=\"caption\">Top: the training loss of each step (where the runs agree, the thin line runs inside "
       "the wide one)"
    << (has_val ? ", and each epoch's validation loss" : "")
    << ". Bottom: the absolute difference of the two losses on a log scale; a green band marks steps whose losses "
       "are the same bits.";
  if (p.step_stride > 1) o << " One point per " << p.step_stride << " steps.";
  const bool alike =
      p.non_finite_a.steps == p.non_finite_b.steps && p.non_finite_a.first == p.non_finite_b.first;
  for (int side = alike ? 1 : 0; side < 2; ++side) {
    const NonFiniteLosses& nf = side ? p.non_finite_b : p.non_finite_a;
    if (nf.steps == 0) continue;
    o << " <b>The loss of " << (alike ? string("both runs") : esc(side ? n.b : n.a)) << " is not finite at "
      << counted(nf.steps, "step") << (nf.steps == 1 ? ", " : ", the first ") << "step " << nf.first << " ("
      << num(nf.first_value) << "): such a loss has no place on the axis; a band of "
      << (alike ? "each run's" : "its") << " colour over the plot's top edge marks it.</b>";
  }
  if (!p.epochs_b.empty())
    o << " " << epoch_lengths_words(p, n)
      << " (the dashed lines of its colour); each run's validation loss is "
      << "drawn at its own epoch's end.";
  if (const string words = not_plotted_words(r); !words.empty())
    o << " <b>" << esc(words) << "</b>" << (mark && mark->on(x) ? " The red line marks where it lies." : "");
  if (has_val && val_a != val_b)
    o << " " << esc(val_a ? n.b : n.a)
      << " has no validation loss in the epochs compared (no validation rows, or no epoch of it ended "
         "there).";
  if (!has_val)
    o << (!p.validation ? " The run holds out no validation rows (train.validation_split = 0): there is no "
                          "validation loss to draw."
          : p.epochs_ended == 0 && p.per_step
              ? " No epoch ended within the steps compared, so no validation loss is drawn."
              : " No validation loss in the epochs compared (train.validation_split draws one per epoch).");
  o << "</p></section>\n";
}

// --- the divergence map ---

// Colours of the sizes of differences: a sequential scale of relative size, one colour per two decades.
constexpr const char* kScale[] = {"#ffe38a", "#fec44f", "#fd8d3c", "#f03b20", "#d7191c", "#a50f15", "#67000d", "#2b0006"};
constexpr int kBuckets = 8;
constexpr const char* kSameColour = "#cfe8cf";
constexpr const char* kUnknownColour = "#a3acb8";
constexpr const char* kNotComparedColour = "#f1f3f5";
// Off the scale's hues: a difference with no relative size (non-finite values, another number of values) is
// not read as a large one.
constexpr const char* kNoSizeColour = "#7b3294";

// The colour class of a cell: 0..7 the scale, 8 same bits, 9 size unknown, 10 not compared, 11 no size.
int bucket(float size) {
  if (size == MapRow::kNotCompared) return 10;
  if (size == MapRow::kSizeUnknown) return 9;
  if (size == MapRow::kSame) return 8;
  if (size >= MapRow::kOtherCount) return 11;  // the stand-ins for no size
  const double e = std::log10(static_cast<double>(size));
  if (e < -12) return 0;
  return std::min(kBuckets - 1, 1 + static_cast<int>(std::floor((e + 12) / 2)));
}

string bucket_label(int b) {
  if (b == 0) return "below 1e-12";
  if (b == kBuckets - 1) return "1 and above";
  return decade(-12 + 2 * (b - 1)) + " to " + decade(-10 + 2 * (b - 1));
}

// A map row's label in about `n` characters: a long one loses the middle, keeping what follows its layer's
// name
// (":out", ".kernel:grad"), which tells the layer's rows apart, whole where it takes at most half.
string elided(const string& site, const string& layer, size_t n) {
  if (site.size() <= n || n < 8) return site.size() <= n ? site : site.substr(0, n);
  const size_t suffix = site.rfind(layer, 0) == 0 ? site.size() - layer.size() : 0;
  size_t tail = site.size() - std::min(std::max<size_t>(suffix, n / 3), n / 2);
  size_t head = n - 1 - (site.size() - tail);  // the ellipsis is one character wide
  // Cut where UTF-8 characters begin.
  auto continuation = [&](size_t at) {
    return at < site.size() && (static_cast<unsigned char>(site[at]) & 0xC0) == 0x80;
  };
  while (head > 0 && continuation(head)) --head;
  while (continuation(tail)) ++tail;
  return site.substr(0, head) + "\u2026" + site.substr(tail);
}

string block_title(const string& block) {
  if (block == "forward") return "forward: layer outputs";
  if (block == "backward") return "backward: gradients";
  return "update: parameters after the step";
}

void map_section(std::ostringstream& o, const DivergenceReport& r, const Names& n) {
  const PageViews& p = r.page;
  o << "<section><h2>Where the runs differ, step by step</h2>";
  if (!p.per_step) {
    o << "<p class=\"muted\">Not computed by trainrr " << esc(r.command) << ".</p></section>\n";
    return;
  }
  if (!p.layer_probes) {
    // Two traces of different levels are compared at the shallower one, which the notes say.
    const auto shallower = std::find_if(r.notes.begin(), r.notes.end(), [](const string& n) {
      return n.find(": compared at level step") != string::npos;
    });
    if (shallower != r.notes.end())
      o << "<p class=\"callout\">" << esc(*shallower)
        << ": only the loss and one digest of all the trainable parameters per step (the row "
           "<code>(all parameters)</code>) are compared. Record both runs with "
           "<code>--level layer</code> or <code>--level op</code> to see each layer here.</p>";
    else
      o << "<p class=\"callout\">The trace holds no layer-level probes (level step): only the loss and one "
           "digest of all the trainable parameters per step (the row <code>(all parameters)</code>). Record "
           "with <code>--level layer</code> or <code>--level "
           "op</code> "
           "to see each layer here.</p>";
  }
  const size_t points = p.loss_a.size();
  if (p.rows.empty() || points == 0) {
    o << "<p class=\"muted\">No tensor was compared.</p></section>\n";
    return;
  }
  if (const string words = not_plotted_words(r); !words.empty())
    o << "<p class=\"callout\">" << esc(words) << "</p>";
  if (p.sites_left_out > 0)
    o << "<p class=\"callout\">The traces name more than " << p.rows.size()
      << " sites: the map shows the first " << p.rows.size() << " only.</p>";
  size_t longest = 0;
  for (const auto& row : p.rows) longest = std::max(longest, row.site.size());
  const double label_w = std::clamp(static_cast<double>(longest) * 6.9 + 16, 140.0, 360.0);
  const size_t max_chars = static_cast<size_t>((label_w - 16) / 6.9);
  const double left = label_w, right = kWidth - 16, top = 30;
  const double row_h = p.rows.size() > 60 ? 10 : 17, gap = 20;
  // Columns through the step a replay stopped short of, when it stopped at its first divergence.
  const size_t columns = p.stopped_at_first && p.would_end > p.last_step
                             ? points + static_cast<size_t>((p.would_end - p.last_step + p.step_stride - 1) / p.step_stride)
                             : points;
  const double cw = (right - left) / static_cast<double>(columns);
  std::vector<double> row_y;
  double yy = top;
  string block;
  for (const auto& row : p.rows) {
    if (row.block != block) yy += gap, block = row.block;
    row_y.push_back(yy);
    yy += row_h;
  }
  const double bottom = yy;
  const double height = bottom + 44;
  auto x_of_step = [&](double s) {
    return left + (s - static_cast<double>(p.first_step)) / static_cast<double>(p.step_stride) * cw;
  };
  o << "<svg viewBox=\"0 0 " << kWidth << " " << px(height) << "\" role=\"img\" aria-label=\"divergence map\">";
  // The steps not replayed first: the parts' titles, which may run past the label column, are drawn over it.
  if (columns > points) {
    const double nx = left + cw * static_cast<double>(points);
    o << "<rect class=\"notrun\" x=\"" << px(nx) << "\" y=\"" << px(top) << "\" width=\"" << px(right - nx)
      << "\" height=\"" << px(bottom - top) << "\"/><text class=\"note\" x=\"" << px((nx + right) / 2)
      << "\" y=\"" << px((top + bottom) / 2) << "\" text-anchor=\"middle\">"
      << step_range(p.last_step + 1, p.would_end) << " not replayed</text>";
  }
  block.clear();
  // The parts' titles, drawn last: over the epoch lines that cross them.
  std::ostringstream titles;
  bool any_no_size = false;  // whether a cell has no relative size, which the key then names
  for (size_t ri = 0; ri < p.rows.size(); ++ri) {
    const MapRow& row = p.rows[ri];
    const double ry = row_y[ri];
    if (row.block != block) {
      block = row.block;
      titles << "<text class=\"block\" x=\"4\" y=\"" << px(ry - 6) << "\">" << block_title(block)
             << "</text>";
    }
    const string label = elided(row.site, row.layer, max_chars);
    const bool at = r.diverged && r.first && row.site == r.first->site;
    o << "<text class=\"rowlabel" << (at ? " at" : "") << "\" x=\"" << px(left - 8) << "\" y=\""
      << px(ry + row_h * 0.72) << "\" text-anchor=\"end\">" << esc(label) << "<title>" << esc(row.site)
      << (row.site == trace::kAllParameters
              ? ": one digest of all the trainable parameters after the step; the rest of the state (a batch "
                "normalization's moving statistics, the optimizer's slots) is compared in the checkpoints "
                "and "
                "the final state"
              : "")
      << "</title></text>";
    for (size_t i = 0; i < points;) {
      const int b = bucket(row.size[i]);
      size_t j = i;
      float largest = row.size[i];
      // A run of cells with no size (non-finite values, another count) is not merged with sized ones.
      auto no_size = [](float v) { return v >= MapRow::kOtherCount ? v : 0.f; };
      while (j + 1 < points && bucket(row.size[j + 1]) == b &&
             no_size(row.size[j + 1]) == no_size(row.size[i]))
        largest = std::max(largest, row.size[++j]);
      const char* fill = b < kBuckets ? kScale[b]
                         : b == 8     ? kSameColour
                         : b == 9     ? kUnknownColour
                         : b == 11    ? kNoSizeColour
                                      : kNotComparedColour;
      any_no_size = any_no_size || b == 11;
      const int64_t s0 = p.first_step + static_cast<int64_t>(i) * p.step_stride;
      const int64_t s1 = p.first_step + static_cast<int64_t>(j + 1) * p.step_stride - 1;
      o << "<rect x=\"" << px(left + cw * static_cast<double>(i)) << "\" y=\"" << px(ry) << "\" width=\""
        << px(cw * static_cast<double>(j + 1 - i)) << "\" height=\"" << px(row_h - 1) << "\" fill=\"" << fill
        << "\"><title>" << esc(row.site) << ", step" << (s0 == s1 ? " " : "s ") << s0;
      if (s1 != s0) o << "-" << s1;
      o << ": "
        << (b == 10  ? string("not compared")
            : b == 9 ? string("differs (the trace keeps its digest only, no size)")
            : b == 8 ? string("same bits")
            // relative_difference()'s stand-in for digests that differ under equal summaries: no size to
            // give.
            : largest == std::numeric_limits<float>::min()
                ? string("differs, with the same summary (its digests differ; its min, max, mean and RMS do "
                         "not)")
            : largest == MapRow::kNonFinite
                ? string(
                      "differs, with non-finite values (NaN or infinite, in the tensor or its summary): no "
                      "relative size")
            : largest == MapRow::kOtherCount ? string("differs in its number of values: no relative size")
                                             : "differs, relative size up to " + num(largest, 2))
        << "</title></rect>";
      i = j + 1;
    }
  }
  // Epoch starts, the first divergence, and the step axis.
  double last_line = -1e9;
  for (const auto& e : p.epochs) {
    const double ex = x_of_step(static_cast<double>(e.step));
    if (ex <= left + 0.5 || ex - last_line < kMinEpochGap) continue;
    last_line = ex;
    o << "<line class=\"mapepoch\" x1=\"" << px(ex) << "\" y1=\"" << px(top) << "\" x2=\"" << px(ex)
      << "\" y2=\"" << px(bottom) << "\"/>";
  }
  o << titles.str();
  const size_t every = std::max<size_t>(1, (p.epochs.size() + 11) / 12);
  double labels_end = -1e9;
  for (size_t i = 0; i < p.epochs.size(); i += every)
    labels_end = epoch_label(o, std::max(left, x_of_step(static_cast<double>(p.epochs[i].step))), right,
                             top - 6, p.epochs[i].epoch, labels_end);
  if (r.diverged && r.first && r.first->kind != "state" && r.first->step >= p.first_step &&
      r.first->step <= p.last_step) {
    const double fx = x_of_step(static_cast<double>(r.first->step)) + cw / 2;
    for (size_t ri = 0; ri < p.rows.size(); ++ri)
      if (p.rows[ri].site == r.first->site)
        o << "<rect class=\"here\" x=\"" << px(fx - cw / 2) << "\" y=\"" << px(row_y[ri] - 1) << "\" width=\""
          << px(cw) << "\" height=\"" << px(row_h + 1) << "\"><title>first divergence: " << esc(r.first->site)
          << ", step " << r.first->step << "</title></rect>";
    o << "<path class=\"marker\" d=\"M" << px(fx - 6) << " " << px(bottom + 12) << "L" << px(fx + 6) << " "
      << px(bottom + 12) << "L" << px(fx) << " " << px(bottom + 4) << "Z\"><title>first divergence, step "
      << r.first->step << "</title></path>";
  }
  const int64_t axis_end = std::max({p.last_step, p.first_step, columns > points ? p.would_end : int64_t{-1}});
  // A state's difference: marked between the steps it lies between (the final state's at the right edge).
  if (const auto m = state_mark(r);
      m && m->at >= static_cast<double>(p.first_step) - 0.5 && m->at <= static_cast<double>(axis_end) + 0.5) {
    const double fx = std::clamp(x_of_step(m->at + 0.5), left, right);
    o << "<line class=\"first\" x1=\"" << px(fx) << "\" y1=\"" << px(top) << "\" x2=\"" << px(fx)
      << "\" y2=\"" << px(bottom) << "\"/><path class=\"marker\" d=\"M" << px(fx - 6) << " "
      << px(bottom + 12) << "L" << px(fx + 6) << " " << px(bottom + 12) << "L" << px(fx) << " "
      << px(bottom + 4) << "Z\"><title>" << m->label << "</title></path>";
  }
  for (double t : nice_ticks(static_cast<double>(p.first_step), static_cast<double>(axis_end), 8)) {
    if (t != std::floor(t)) continue;
    o << "<text class=\"tick\" x=\"" << px(x_of_step(t) + cw / 2) << "\" y=\"" << px(bottom + 26)
      << "\" text-anchor=\"middle\">" << static_cast<int64_t>(t) << "</text>";
  }
  o << "<text class=\"axis\" x=\"" << px((left + right) / 2) << "\" y=\"" << px(height - 4)
    << "\" text-anchor=\"middle\">step</text></svg>";
  // The key.
  o << "<div class=\"key\"><span class=\"keytitle\">relative difference of the tensor's summary (min, max, mean, "
       "RMS over its largest magnitude):</span>";
  for (int b = 0; b < kBuckets; ++b)
    o << "<span><i style=\"background:" << kScale[b] << "\"></i>" << bucket_label(b) << "</span>";
  o << "<span><i style=\"background:" << kSameColour
    << "\"></i>same bits</span><span><i style=\"background:" << kUnknownColour
    << "\"></i>differs, size not recorded (digest only)</span><span><i style=\"background:"
    << kNotComparedColour << "\"></i>not compared</span>";
  if (any_no_size)
    o << "<span><i style=\"background:" << kNoSizeColour
      << "\"></i>differs, no relative size (NaN or infinite values, or another number of values)</span>";
  o << "</div>";
  o << "<p class=\"caption\">One row per probed tensor, layers in model order within each part of the step; "
       "one "
       "column per step"
    << (p.step_stride > 1 ? " (per " + std::to_string(p.step_stride) + " steps, the largest difference)"
                          : string())
    << ". A float32 rounding difference is about 1e-7 relative. Hover a cell for its value."
    << (p.epochs_b.empty()
            ? string()
            : " " + epoch_lengths_words(p, n) + ": the white lines are the epochs of " + esc(n.a) + ".")
    << "</p></section>\n";
}

// --- notes and facts ---

void notes_section(std::ostringstream& o, const DivergenceReport& r) {
  if (r.notes.empty() && r.facts.empty()) return;
  o << "<section><h2>Notes and facts</h2>";
  if (!r.notes.empty()) {
    o << "<ul class=\"notes\">";
    for (const auto& nt : r.notes) o << "<li>" << esc(nt) << "</li>";
    o << "</ul>";
  }
  if (!r.facts.empty()) {
    o << "<table class=\"facts\"><colgroup><col style=\"width:30%\"><col></colgroup>";
    for (const auto& [k, v] : r.facts) o << "<tr><th>" << esc(k) << "</th><td>" << esc(v) << "</td></tr>";
    o << "</table>";
  }
  o << "</section>\n";
}

// --- kernel choices and environment ---

// An environment value one side lacks or holds empty, in the words the text report uses.
void value_cell(std::ostringstream& o, const string& key, const string& v, bool held) {
  if (v.empty())
    o << "<td class=\"absent\">" << esc(environment_value_shown(key, held ? &v : nullptr)) << "</td>";
  else
    o << "<td>" << esc(v) << "</td>";
}

// A kernel id may break after each underscore ("f32_matmul__cpu_blocked_avx512" in a narrow column), not
// anywhere in a word.
void kernel_cell(std::ostringstream& o, const string& v) {
  if (v.empty()) {
    o << "<td class=\"absent\">(none)</td>";
    return;
  }
  string out;
  for (size_t at = 0; at < v.size();) {
    const size_t end = std::min(v.find('_', at), v.size() - 1) + 1;  // through the next underscore
    out += esc(std::string_view(v).substr(at, end - at)) + (v[end - 1] == '_' ? "<wbr>" : "");
    at = end;
  }
  o << "<td class=\"id\">" << out << "</td>";
}

void kernel_section(std::ostringstream& o, const DivergenceReport& r, const Names& n) {
  const PageViews& p = r.page;
  if (p.kernels.empty()) return;
  // Sites in model order, as the map's rows are; sites of no layer (the loader, the loss) first.
  std::map<string, size_t> rank;
  for (const auto& row : p.rows) rank.emplace(row.layer, rank.size() + 1);
  std::vector<SideBySide> rows = p.kernels;
  std::stable_sort(rows.begin(), rows.end(), [&](const SideBySide& a, const SideBySide& b) {
    string la, lb, op;
    split_site(a.key, la, op);
    split_site(b.key, lb, op);
    const size_t ra = rank.count(la) ? rank[la] : 0, rb = rank.count(lb) ? rank[lb] : 0;
    return ra < rb;
  });
  const string here = r.diverged && r.first ? kernel_site_of(r.first->site) : string();
  size_t differ = 0;
  for (const auto& k : rows) differ += k.differs();
  o << "<section><h2>Kernel choices</h2><p class=\"sub\">" << differ << " of " << rows.size()
    << " sites chose differently" << (differ ? " (highlighted)" : "") << ".</p>"
    << "<table class=\"side\"><colgroup><col style=\"width:32%\"><col><col></colgroup><tr><th>site</th><th>"
    << esc(n.a) << "</th><th>" << esc(n.b) << "</th></tr>";
  for (const auto& k : rows) {
    o << "<tr" << (k.differs() ? " class=\"diff\"" : k.key == here ? " class=\"here\"" : "") << "><td><code>"
      << esc(k.key) << "</code>" << (k.key == here ? " <span class=\"tag\">first divergence</span>" : "") << "</td>";
    kernel_cell(o, k.a);
    kernel_cell(o, k.b);
    o << "</tr>";
  }
  o << "</table></section>\n";
}

// --- the GPU kernels of the divergent step ---

// At most `n` bytes of `s`, cut where a UTF-8 character begins, with an ellipsis where it was cut.
string clipped(const string& s, size_t n) {
  if (s.size() <= n) return s;
  size_t at = n;
  while (at > 0 && (static_cast<unsigned char>(s[at]) & 0xC0) == 0x80) --at;
  return s.substr(0, at) + "\u2026";
}

string duration_words(uint64_t ns) {
  if (ns < 1000) return std::to_string(ns) + " ns";
  const double v = static_cast<double>(ns);
  return ns < 1000000 ? num(v / 1e3, 3) + " \u00b5s" : num(v / 1e6, 4) + " ms";
}

// The colour of the i-th op to launch a kernel: hues a golden angle apart and three lightnesses in turn, so that
// ops launched one after the other differ however many there are.
string op_colour(size_t i, bool unattributed) {
  if (unattributed) return "#9aa5b1";
  static constexpr int kLightness[] = {50, 36, 64};
  char buf[40];
  std::snprintf(buf, sizeof buf, "hsl(%d,62%%,%d%%)",
                static_cast<int>(std::fmod(static_cast<double>(i) * 137.508 + 210, 360)), kLightness[i % 3]);
  return buf;
}

constexpr size_t kMaxBars = 300;     // per run; the rest are counted, not drawn
constexpr size_t kMaxLegend = 40;    // ops named in the legend

void timeline_section(std::ostringstream& o, const DivergenceReport& r, const Names& n) {
  const KernelTimeline& tl = r.page.timeline;
  if (!r.diverged || !r.first || tl.step < 0) return;
  const string step = std::to_string(tl.step);
  o << "<section><h2>GPU kernels of step " << step << "</h2>";
  struct Row {
    string name;
    const trace::StepKernels* k;
  };
  std::vector<Row> rows;
  std::vector<string> said;  // one sentence for each side that is not drawn
  std::vector<std::pair<string, const trace::StepKernels*>> counts_only;
  for (int side = 0; side < 2; ++side) {
    const auto& k = side ? tl.b : tl.a;
    const string& name = side ? n.b : n.a;
    const string& missing = side ? tl.missing_b : tl.missing_a;
    if (k && !k->launches.empty())
      rows.push_back({name, &*k});
    else if (!missing.empty())
      said.push_back(esc(missing));
    else if (k && k->count == 0)
      said.push_back(esc(name) + " ran no GPU kernel in step " + step + ".");
    else if (k)
      counts_only.emplace_back(name, &*k);
  }
  // Level step keeps a step's kernel count and digest, not the kernels.
  if (counts_only.size() == 2)
    said.push_back(esc(counts_only[0].first) + " ran " + std::to_string(counts_only[0].second->count) + " and " +
                   esc(counts_only[1].first) + " " + std::to_string(counts_only[1].second->count) +
                   " GPU kernels in step " + step +
                   ", but both traces were recorded at level step, which keeps only the count and digest of a "
                   "step's kernels: record at level layer or op to see them here.");
  else if (counts_only.size() == 1)
    said.push_back(esc(counts_only[0].first) + " ran " + std::to_string(counts_only[0].second->count) +
                   " GPU kernels in step " + step +
                   ", but its trace was recorded at level step, which keeps only their count and digest.");
  if (rows.empty()) {
    for (const string& s : said) o << "<p class=\"muted\">" << s << "</p>";
    o << "</section>\n";
    return;
  }

  // The op where the runs first differ; at level layer the layer, whose ops are all highlighted.
  const string here = kernel_site_of(r.first->site);
  auto at_here = [&here](const string& site) {
    return !here.empty() && (site == here || (here.find('/') == string::npos && site.size() > here.size() &&
                                              site.compare(0, here.size(), here) == 0 && site[here.size()] == '/'));
  };
  // Ops in the order they first launched, with a colour each.
  std::map<string, size_t> op_index;
  std::vector<string> ops;
  for (const Row& row : rows)
    for (const auto& l : row.k->launches) {
      if (op_index.emplace(l.site, ops.size()).second) ops.push_back(l.site);
    }
  auto colour_of = [&](const string& site) { return op_colour(op_index[site], site == trace::kUnattributedSite); };

  // Widths: each kernel its duration, back to back, on one scale for both runs, so that the longer run fills the
  // width. Every kernel stays visible: one with no duration is 3 pixels wide, a shorter one than a pixel is 1.
  const double left = 190, right = kWidth - 16, width = right - left;
  bool any_duration = false;
  size_t most = 0;
  for (const Row& row : rows) {
    const size_t drawn = std::min(row.k->launches.size(), kMaxBars);
    most = std::max(most, drawn);
    for (size_t i = 0; i < drawn; ++i) any_duration |= row.k->launches[i].duration_ns > 0;
  }
  const double no_duration = any_duration ? 3 : std::min(24.0, width / static_cast<double>(most));
  auto bar = [&](const trace::KernelLaunch& l, double scale) {
    return l.duration_ns ? std::max(1.0, static_cast<double>(l.duration_ns) * scale) : no_duration;
  };
  auto longest = [&](double scale) {
    double w = 0;
    for (const Row& row : rows) {
      double s = 0;
      for (size_t i = 0; i < std::min(row.k->launches.size(), kMaxBars); ++i) s += bar(row.k->launches[i], scale);
      w = std::max(w, s);
    }
    return w;
  };
  double scale = 0;
  if (any_duration && longest(0) < width) {
    double lo = 0, hi = 1;
    while (longest(hi) < width) hi *= 2;
    for (int i = 0; i < 60; ++i) (longest((lo + hi) / 2) < width ? lo : hi) = (lo + hi) / 2;
    scale = lo;
  }
  const double squeeze = longest(scale) > width ? width / longest(scale) : 1;  // minimal widths alone overflow
  // The time axis holds where few bars were widened: elsewhere the bars show order and relative length only.
  double widened = 0;
  for (const Row& row : rows) {
    double w = 0;
    for (size_t i = 0; i < std::min(row.k->launches.size(), kMaxBars); ++i) {
      const auto& l = row.k->launches[i];
      w += bar(l, scale) - static_cast<double>(l.duration_ns) * scale;
    }
    widened = std::max(widened, w);
  }
  const bool time_axis = any_duration && squeeze == 1 && widened <= width * 0.02;

  o << "<p class=\"sub\">The step where the runs first differ, each run's kernels back to back in launch order"
    << (any_duration ? ", each as long as it ran" : "") << "; colour: the op that launched it";
  if (!here.empty()) o << "; op <code>" << esc(here) << "</code>, where the runs first differ, is outlined";
  o << ". Hover a bar for the kernel.</p>";
  for (const string& s : said) o << "<p class=\"muted\">" << s << "</p>";

  const double row_h = 26, pitch = 70, top = 14;
  const double height = top + pitch * static_cast<double>(rows.size()) + (time_axis ? 30 : 4);
  o << "<svg viewBox=\"0 0 " << kWidth << " " << px(height) << "\" role=\"img\" aria-label=\"GPU kernels of step "
    << step << "\">";
  if (time_axis) {
    const double total_ns = width / scale;
    for (double t : nice_ticks(0, total_ns, 8)) {
      const double x = left + t * scale;
      if (x > right + 0.5) continue;
      o << "<line class=\"grid\" x1=\"" << px(x) << "\" y1=\"" << px(top - 4) << "\" x2=\"" << px(x) << "\" y2=\""
        << px(height - 26) << "\"/><text class=\"tick\" x=\"" << px(x) << "\" y=\"" << px(height - 12)
        << "\" text-anchor=\"middle\">" << duration_words(static_cast<uint64_t>(std::llround(t))) << "</text>";
    }
  }
  size_t missing_duration = 0;
  std::vector<string> not_drawn, dropped;
  bool here_ran = false;
  for (size_t ri = 0; ri < rows.size(); ++ri) {
    const Row& row = rows[ri];
    const auto& launches = row.k->launches;
    const double y = top + pitch * static_cast<double>(ri);
    const size_t drawn = std::min(launches.size(), kMaxBars);
    uint64_t total_ns = 0;
    for (const auto& l : launches) total_ns += l.duration_ns;
    o << "<text class=\"klabel\" x=\"" << px(left - 10) << "\" y=\"" << px(y + 11) << "\" text-anchor=\"end\">"
      << esc(clipped(row.name, 26)) << "<title>" << esc(row.name) << "</title></text><text class=\"tick\" x=\""
      << px(left - 10) << "\" y=\"" << px(y + 27) << "\" text-anchor=\"end\">" << launches.size() << " kernel"
      << (launches.size() == 1 ? "" : "s");
    if (total_ns) o << ", " << duration_words(total_ns);
    o << "</text>";
    if (drawn < launches.size()) {
      o << "<text class=\"more\" x=\"" << px(left - 10) << "\" y=\"" << px(y + 42) << "\" text-anchor=\"end\">"
        << launches.size() - drawn << " more not drawn</text>";
      not_drawn.push_back(std::to_string(launches.size() - drawn) + (not_drawn.empty() ? " more kernels" : " more") +
                          " not drawn in " + esc(row.name));
    }
    if (row.k->dropped)
      dropped.push_back(esc(row.name) + " lost " + std::to_string(row.k->dropped) +
                        " (CUPTI dropped their records)");
    // The bars, then the band of ops beneath them: each run of kernels of one op, as one segment.
    std::vector<double> xs(drawn + 1, left);
    for (size_t i = 0; i < drawn; ++i) xs[i + 1] = xs[i] + bar(launches[i], scale) * squeeze;
    for (size_t i = 0; i < drawn; ++i) {
      const auto& l = launches[i];
      const bool at = at_here(l.site);
      here_ran |= at;
      missing_duration += l.duration_ns == 0;
      const string shown = demangled(l.name);
      // A thin bar has no white edge, which would wash out its colour.
      o << "<rect class=\"kb" << (at ? " kat" : xs[i + 1] - xs[i] >= 4 ? " kw" : "") << "\" x=\"" << px(xs[i]) << "\" y=\"" << px(y) << "\" width=\""
        << px(xs[i + 1] - xs[i]) << "\" height=\"" << px(row_h) << "\" fill=\"" << colour_of(l.site) << "\"><title>"
        << esc(clipped(shown, 600)) << "\nop: " << esc(l.site) << "\ngrid (" << l.grid_x << ", " << l.grid_y << ", "
        << l.grid_z << "), block (" << l.block_x << ", " << l.block_y << ", " << l.block_z << ")\nshared memory: "
        << uint64_t{l.static_shared} + l.dynamic_shared << " bytes (static " << l.static_shared << ", dynamic "
        << l.dynamic_shared << ")\nduration: " << (l.duration_ns ? duration_words(l.duration_ns) : "not recorded")
        << "\nkernel " << i + 1 << " of " << launches.size();
      if (shown != l.name) o << "\nmangled: " << esc(clipped(l.name, 600));
      o << "</title></rect>";
    }
    for (size_t i = 0; i < drawn;) {
      size_t j = i;
      uint64_t ns = launches[i].duration_ns;
      while (j + 1 < drawn && launches[j + 1].site == launches[i].site) ns += launches[++j].duration_ns;
      const string& site = launches[i].site;
      const double x0 = xs[i], x1 = xs[j + 1];
      o << "<rect x=\"" << px(x0) << "\" y=\"" << px(y + row_h + 3) << "\" width=\"" << px(x1 - x0)
        << "\" height=\"5\" fill=\"" << colour_of(site) << "\"><title>op " << esc(site) << ": " << j + 1 - i
        << " kernel" << (j == i ? "" : "s") << (ns ? ", " + duration_words(ns) : string()) << "</title></rect>";
      // An op's name under its segment, where it fits.
      const size_t fits = static_cast<size_t>(std::max(0.0, x1 - x0 - 6) / (at_here(site) ? 7.6 : 7.0));
      if (fits >= 8)
        o << "<text class=\"kop" << (at_here(site) ? " at" : "") << "\" x=\"" << px(x0 + 1) << "\" y=\""
          << px(y + row_h + 20) << "\">" << esc(clipped(site, fits)) << "</text>";
      i = j + 1;
    }
    // The op where the runs first differ: marked above the bars too, as thin bars can hide an outline.
    for (size_t i = 0; i < drawn; ++i) {
      if (!at_here(launches[i].site)) continue;
      size_t j = i;
      while (j + 1 < drawn && at_here(launches[j + 1].site)) ++j;
      o << "<rect class=\"katmark\" x=\"" << px(xs[i]) << "\" y=\"" << px(y - 6) << "\" width=\""
        << px(std::max(2.0, xs[j + 1] - xs[i])) << "\" height=\"3\"><title>" << esc(here)
        << ": where the runs first differ</title></rect>";
      i = j;
    }
  }
  if (time_axis)
    o << "<text class=\"axis\" x=\"" << px(left - 26) << "\" y=\"" << px(height - 12)
      << "\" text-anchor=\"end\">GPU time</text>";
  o << "</svg>";
  // The legend: ops in the order they first launched.
  o << "<div class=\"key\"><span class=\"keytitle\">ops, in the order they launched kernels:</span>";
  for (size_t i = 0; i < ops.size() && i < kMaxLegend; ++i) {
    const bool at = at_here(ops[i]);
    o << "<span" << (at ? " class=\"kat\"" : "") << "><i style=\"background:" << colour_of(ops[i]) << "\"></i><code>"
      << esc(ops[i]) << "</code>" << (at ? " <span class=\"tag\">first divergence</span>" : "")
      << "</span>";
  }
  if (ops.size() > kMaxLegend) o << "<span>and " << ops.size() - kMaxLegend << " more ops</span>";
  o << "</div>";
  std::vector<string> notes;
  if (!here.empty() && !here_ran)
    notes.push_back("The op where the runs first differ, <code>" + esc(here) + "</code>, launched no kernel drawn here.");
  if (missing_duration)
    notes.push_back(std::to_string(missing_duration) + (missing_duration == 1 ? " kernel has" : " kernels have") +
                    " no duration (CUPTI gave no timestamps): drawn " + (any_duration ? "at a minimal width" : "with equal widths") + ".");
  if (!any_duration || !time_axis)
    notes.push_back(any_duration ? "Kernels shorter than a pixel are widened to stay visible, so the bars show order "
                                   "and relative length, not exact times."
                                 : "Durations were missing: the bars show launch order only.");
  if (!not_drawn.empty()) {
    string s = "The first " + std::to_string(kMaxBars) + " kernels of each run are drawn: ";
    for (size_t i = 0; i < not_drawn.size(); ++i) s += (i ? ", " : "") + not_drawn[i];
    notes.push_back(s + ".");
  }
  for (const string& s : dropped) notes.push_back("Kernels are missing: " + s + ".");
  o << "<p class=\"caption\">Bars are back to back: the gaps between kernels, and kernels that overlapped on other "
       "streams, are not shown. The band beneath groups each op's consecutive kernels.";
  for (const string& s : notes) o << " " << s;
  o << "</p></section>\n";
}

void environment_section(std::ostringstream& o, const DivergenceReport& r, const Names& n) {
  const PageViews& p = r.page;
  o << "<section><h2>Environment</h2>";
  if (p.environment.empty()) {
    // Commands that keep only the differences (bisect).
    if (r.environment.empty()) {
      o << "<p class=\"sub\">No recorded key differs.</p></section>\n";
      return;
    }
    o << "<table class=\"side\"><colgroup><col style=\"width:24%\"><col><col></colgroup><tr><th>key</th><th>"
      << esc(n.a) << "</th><th>" << esc(n.b) << "</th></tr>";
    for (const auto& e : r.environment)
      o << "<tr class=\"diff\"><td><code>" << esc(e.key) << "</code></td><td>" << esc(e.recorded) << "</td><td>"
        << esc(e.replayed) << "</td></tr>";
    o << "</table></section>\n";
    return;
  }
  size_t differ = 0;
  for (const auto& e : p.environment) differ += e.differs();
  o << "<p class=\"sub\">" << differ << " of " << p.environment.size() << " recorded keys differ"
    << (differ ? " (highlighted, listed first)" : "") << ".</p>"
    << "<table class=\"side\"><colgroup><col style=\"width:24%\"><col><col></colgroup><tr><th>key</th><th>"
    << esc(n.a) << "</th><th>" << esc(n.b) << "</th></tr>";
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& e : p.environment) {
      if (e.differs() != (pass == 0)) continue;
      o << "<tr" << (e.differs() ? " class=\"diff\"" : "") << "><td><code>" << esc(e.key) << "</code></td>";
      value_cell(o, e.key, e.a, e.in_a);
      value_cell(o, e.key, e.b, e.in_b);
      o << "</tr>";
    }
  o << "</table></section>\n";
}

constexpr const char* kStyle =
    ":root{--a:#1f6fb5;--b:#e8710a;--bad:#c62828;--ok:#2e7d32;--warn:#b26a00;--ink:#1d2330;--mute:#5f6b7a;"
    "--line:#dde2e8;--bg:#f5f6f8}"
    "*{box-sizing:border-box}"
    "body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,'Segoe UI',"
    "Roboto,'Helvetica Neue',Arial,sans-serif}"
    "main{max-width:1160px;margin:0 auto;padding:20px 24px 40px}"
    "header{display:flex;flex-wrap:wrap;gap:4px 16px;align-items:baseline;color:var(--mute)}"
    "header b{color:var(--ink);font-size:17px}"
    "code,.mono{font-family:ui-monospace,'SFMono-Regular',Menlo,Consolas,'DejaVu Sans Mono',monospace;"
    "font-size:13px}"
    "code,td,th,dd,li,p,h1{overflow-wrap:anywhere}p code{white-space:nowrap}"
    // A site's name under the headline is one word that may be longer than the window: it breaks.
    ".sub code{white-space:normal}"
    // A number or a command's word is never broken across lines: a value split in two reads as two.
    "td.mono{white-space:nowrap}td.id{overflow-wrap:normal}table.vals th,table.vals td{overflow-wrap:normal}"
    "code.cmd{display:inline-block;max-width:100%;overflow-x:auto;background:#f0f2f5;border:1px solid "
    "var(--line);"
    "border-radius:4px;padding:2px 6px;white-space:pre-wrap}code.cmd span{white-space:nowrap}"
    "section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 20px;margin:14px 0}"
    "h1{font-size:24px;margin:6px 0 2px}h2{font-size:18px;margin:0 0 8px}"
    ".card{border-left:8px solid var(--bad)}.card.ok{border-left-color:var(--ok)}"
    ".card.warn{border-left-color:var(--warn)}"
    ".badge{display:inline-block;color:#fff;background:var(--bad);border-radius:4px;padding:1px 10px;"
    "font-weight:700;text-transform:uppercase;letter-spacing:.05em;font-size:13px}"
    ".badge.ok{background:var(--ok)}.badge.warn{background:var(--warn)}"
    ".sub{color:var(--mute);margin:2px 0 8px}"
    "dl{display:grid;grid-template-columns:190px 1fr;gap:6px 16px;margin:12px 0 4px}"
    "dt{color:var(--mute);font-weight:600}dd{margin:0;min-width:0}"
    // A narrow window (a phone): each answer's label above its value, the page's margins smaller.
    "@media (max-width:640px){dl{grid-template-columns:1fr;gap:2px 0}dd{margin-bottom:6px}"
    "main{padding:12px 8px 24px}section{padding:10px 10px}}"
    ".tag{display:inline-block;background:#fde7e7;color:var(--bad);border-radius:4px;padding:0 6px;"
    "font-weight:700;font-size:13px}"
    ".hl{background:#fff2cc}"
    ".callout{background:#fff8e6;border:1px solid #f3d58a;border-radius:6px;padding:8px 12px}"
    ".muted,.caption{color:var(--mute)}.caption{font-size:13px;margin:6px 0 0}"
    "table{border-collapse:collapse;width:100%;table-layout:fixed}"
    "td,th{padding:3px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}"
    "th{color:var(--mute);font-weight:600}"
    "table.vals{width:auto;table-layout:auto;display:block;max-width:100%;overflow-x:auto}table.vals "
    "td,table.vals th{padding:2px 14px 2px 0}"
    "tr.diff td{background:#fdecec}tr.diff td:first-child{box-shadow:inset 4px 0 var(--bad)}"
    "tr.here td{background:#fff8e6}"
    "td.absent{color:var(--mute);font-style:italic}"
    ".legend{display:flex;flex-wrap:wrap;gap:4px 22px;margin:4px 0 6px;font-size:14px}"
    ".legend span{display:inline-flex;align-items:center;gap:6px}"
    ".key{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:13px;margin-top:4px}"
    ".key span{display:inline-flex;align-items:center;gap:5px}.keytitle{flex-basis:100%;color:var(--mute)}"
    ".key i{display:inline-block;width:16px;height:12px;border:1px solid #0002}"
    "ul.notes{margin:0 0 10px;padding-left:20px}li.result{font-weight:600}"
    "svg{display:block;width:100%;height:auto}svg.sw{display:inline;width:auto}"
    "svg text{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;fill:var(--ink)}"
    ".plot{fill:#fff;stroke:#c4cbd3}.grid{stroke:#eceff2}.tick{font-size:12px;fill:var(--mute)}"
    ".axis{font-size:13px;fill:var(--mute)}.etick{font-size:11px;fill:#7b8794}"
    ".epoch{stroke:#9aa5b1;stroke-dasharray:4 3}.epochb{stroke:var(--b);stroke-width:1.2;stroke-dasharray:2 "
    "4}.mapepoch{stroke:#fff;stroke-width:2}"
    ".first{stroke:var(--bad);stroke-width:1.5}.firstlabel{font-size:12px;fill:var(--bad)}"
    ".la{fill:none;stroke:var(--a);stroke-width:6;stroke-opacity:.35;stroke-linejoin:round}"
    ".lb{fill:none;stroke:var(--b);stroke-width:1.6}.ld{fill:none;stroke:#5b3a8e;stroke-width:1.8}"
    ".da{fill:var(--a)}.db{fill:var(--b)}.dd{fill:#5b3a8e}"
    ".va{fill:#fff;stroke:var(--a);stroke-width:2}.vb{fill:#fff;stroke:var(--b);stroke-width:2}"
    ".same{fill:#7cc47c}.nfa{fill:var(--a)}.nfb{fill:var(--b)}.note{font-size:13px;fill:var(--mute)}"
    ".block{font-size:12px;font-weight:700;fill:var(--mute);paint-order:stroke;stroke:#fff;stroke-width:4px;"
    "stroke-linejoin:round}"
    ".rowlabel{font-family:ui-monospace,Menlo,Consolas,'DejaVu Sans Mono',monospace;font-size:11.5px}"
    ".marker{fill:var(--bad)}.here{fill:none;stroke:#000;stroke-width:2}.rowlabel.at{fill:var(--bad);font-"
    "weight:700}"
    ".notrun{fill:#f3f4f6}"
    ".klabel{font-size:13px;font-weight:600}.kop{font-size:11px;fill:var(--mute)}.kop.at{fill:var(--bad);"
    "font-weight:700}.more{font-size:12px;fill:var(--bad)}"
    ".kb.kw{stroke:#fff;stroke-width:.5}.kb.kat{stroke:var(--bad);stroke-width:1.5}.katmark{fill:var(--bad)}"
    ".key span.kat{font-weight:700}";

}  // namespace

std::string report_html(const DivergenceReport& r) {
  const Names n = side_names(r);
  std::ostringstream o;
  o << kReportStart << " " << TRAINRR_VERSION
    << "\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
       "<link rel=\"icon\" href=\"data:,\"><title>trainrr "
    << esc(r.command) << ": " << status_look(r).word << "</title><style>" << kStyle
    << "</style></head><body><main>";
  o << "<header><b>trainrr " << esc(r.command) << "</b><span>" << esc(n.a) << " vs " << esc(n.b)
    << "</span></header>\n";
  answer_card(o, r, n);
  stages_section(o, r);
  loss_section(o, r, n);
  map_section(o, r, n);
  notes_section(o, r);
  timeline_section(o, r, n);
  kernel_section(o, r, n);
  environment_section(o, r, n);
  o << "</main></body></html>\n";
  return o.str();
}

}  // namespace trainrr
