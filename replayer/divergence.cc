#include "replayer/divergence.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <regex>
#include <sstream>
#include <string_view>

#include "engine/escape.h"
#include "replayer/final_state.h"
#include "traces/trace.h"

namespace trainrr {

void split_site(const std::string& site, std::string& layer, std::string& op) {
  // "dense_1/matmul.fwd:out" -> ("dense_1", "matmul.fwd"); "dense_1:out" -> ("dense_1", "");
  // "dense_1.kernel/update:out" -> ("dense_1", "update"); "dropout/dropout_1" -> ("dropout_1", "dropout");
  // "data/loader" -> ("", "data/loader").
  std::string s = site.substr(0, site.find(':'));
  const size_t slash = s.find('/');
  std::string head = slash == std::string::npos ? s : s.substr(0, slash);
  std::string tail = slash == std::string::npos ? "" : s.substr(slash + 1);
  if (head == "data" || head == "augment") {  // not a layer's: the data pipeline's own sites
    layer.clear();
    op = s;
    return;
  }
  if (head == "dropout" || head == "init") {
    layer = tail.substr(0, tail.find('.'));
    op = head;
    return;
  }
  layer = head.substr(0, head.find('.'));
  op = tail;
}

std::string event_phase(const std::string& kind, const std::string& site) {
  if (kind == "split") return "setup";
  if (kind == "shuffle" || kind == "loader") return "input";
  if (kind == "rng") {
    if (site.rfind("init/", 0) == 0) return "setup";
    if (site.rfind("augment/", 0) == 0 || site.rfind("data/", 0) == 0) return "input";
    return "forward";
  }
  return "setup";
}

FirstDivergence divergence(int64_t step, std::string phase, std::string kind, std::string site,
                           std::string detail) {
  FirstDivergence d;
  d.step = step;
  d.phase = std::move(phase);
  d.kind = std::move(kind);
  d.site = std::move(site);
  d.detail = std::move(detail);
  return d;
}

std::string what_differs(const std::string& name, bool gradient) {
  if (gradient) return "gradient of " + name + " differs";
  return name == trace::kAllParameters ? std::string("the parameters differ") : "parameter " + name + " differs";
}

std::string step_end_site(const std::string& name, bool gradient) {
  if (name == trace::kAllParameters) return name;
  return name + (gradient ? ":grad" : ":value");
}

std::string kernel_site_of(const std::string& probe_site) {
  return probe_site.substr(0, probe_site.find(':'));
}

std::string environment_value_shown(const std::string& key, const std::string* value) {
  if (value && !value->empty()) return *value;
  // Open MPI's setting that nothing set reads back empty.
  if (value) return key.rfind("mpi.", 0) == 0 ? "(unset)" : "(empty)";
  const bool of_gpu = key.rfind("gpu.", 0) == 0 || key.rfind("cuda.", 0) == 0 || key == "lib.cublasLt";
  return key.rfind("env.", 0) == 0 ? "(unset)" : of_gpu ? "(not on a GPU)" : "(not recorded)";
}

std::string round_trip(double v) {
  if (std::isnan(v)) return "nan";  // a NaN's sign means nothing: "-nan" beside "nan" reads as two values
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::pair<std::string, std::string> side_by_side(double a, double b, int digits) {
  char sa[40], sb[40];
  for (;; ++digits) {
    std::snprintf(sa, sizeof sa, "%.*g", digits, std::isnan(a) ? std::fabs(a) : a);
    std::snprintf(sb, sizeof sb, "%.*g", digits, std::isnan(b) ? std::fabs(b) : b);
    if (std::string_view(sa) != sb || same_bits(a, b) || digits >= 17) return {sa, sb};
  }
}

namespace {
// The value named `name` in `list`, or nullptr.
const double* metric_named(const std::vector<std::pair<std::string, double>>& list, const std::string& name) {
  for (const auto& [k, v] : list)
    if (k == name) return &v;
  return nullptr;
}
}  // namespace

std::string first_metric_difference(const std::vector<std::pair<std::string, double>>& a,
                                    const std::vector<std::pair<std::string, double>>& b) {
  for (const auto& [k, va] : a) {
    const double* vb = metric_named(b, k);
    if (!vb) return k + " " + round_trip(va) + " vs none";
    if (!same_bits(va, *vb)) return k + " " + round_trip(va) + " vs " + round_trip(*vb);
  }
  for (const auto& [k, vb] : b)
    if (!metric_named(a, k)) return "no " + k + " vs " + k + " " + round_trip(vb);
  return "";
}

std::string summary_fields_differ(const Summary& a, const Summary& b, const std::string& name_a,
                                  const std::string& name_b) {
  std::vector<std::string> out;
  auto field = [&](const char* name, bool same, const std::string& va, const std::string& vb) {
    if (!same)
      out.push_back(std::string(name) + " " + va + " (" + name_a + ") vs " + vb + " (" + name_b + ")");
  };
  auto bits = [](auto x, auto y) { return std::memcmp(&x, &y, sizeof x) == 0; };
  field("count", a.count == b.count, std::to_string(a.count), std::to_string(b.count));
  field("not finite", a.non_finite == b.non_finite, std::to_string(a.non_finite),
        std::to_string(b.non_finite));
  field("sum", bits(a.sum, b.sum), round_trip(a.sum), round_trip(b.sum));
  field("sum of squares", bits(a.sum_sq, b.sum_sq), round_trip(a.sum_sq), round_trip(b.sum_sq));
  field("min", bits(a.min, b.min), round_trip(a.min), round_trip(b.min));
  field("max", bits(a.max, b.max), round_trip(a.max), round_trip(b.max));
  std::string text;
  for (size_t i = 0; i < out.size(); ++i) text += (i ? "; " : "") + out[i];
  return text;
}

std::pair<std::string, std::string> summaries_side_by_side(const Summary& a, const Summary& b) {
  const auto sum = side_by_side(a.sum, b.sum, 9), min = side_by_side(a.min, b.min, 9),
             max = side_by_side(a.max, b.max, 9);
  auto line = [](const Summary& x, const std::string& s, const std::string& lo, const std::string& hi) {
    // A summary of no finite value holds zeros that stand for nothing.
    if (no_finite_value(x))
      return x.count ? "no finite value: all " + std::to_string(x.count) + " are NaN or infinite"
                     : "no value";
    return "sum " + s + ", min " + lo + ", max " + hi +
           (x.non_finite ? ", " + std::to_string(x.non_finite) + " non-finite" : "");
  };
  return {line(a, sum.first, min.first, max.first), line(b, sum.second, min.second, max.second)};
}

bool same_summary(const Summary& a, const Summary& b) {
  // Two summaries of no finite value show nothing to be the same in.
  if (no_finite_value(a) || no_finite_value(b)) return false;
  return a.count == b.count && same_bits(a.sum, b.sum) && same_bits(a.min, b.min) &&
         same_bits(a.max, b.max) && a.non_finite == b.non_finite;
}

std::optional<FirstDivergence> metrics_divergence(int64_t step, int epoch,
                                                  const std::vector<std::pair<std::string, double>>& a,
                                                  const std::vector<std::pair<std::string, double>>& b,
                                                  const std::string& name_a, const std::string& name_b) {
  std::string metrics, first_metric;
  auto add = [&](const std::string& name, const std::string& text) {
    metrics += (metrics.empty() ? "" : ", ") + text;
    if (first_metric.empty()) first_metric = name;
  };
  // By name: a log that one side has and the other does not (val_loss where no data was held out) differs
  // too.
  for (const auto& [k, v] : a) {
    const double* v2 = metric_named(b, k);
    if (!v2) {
      add(k, k + " " + side_by_side(v, v).first + " (" + name_a + ")," + kMetricOnOneSide + name_b + ")");
    } else if (!same_bits(v, *v2)) {
      const auto [va, vb] = side_by_side(v, *v2);
      add(k, k + " " + va + " (" + name_a + ") vs " + vb + " (" + name_b + ")");
    }
  }
  for (const auto& [k, v] : b)
    if (!metric_named(a, k))
      add(k, k + kMetricOnOneSide + name_a + "), " + side_by_side(v, v).first + " (" + name_b + ")");
  if (metrics.empty()) return std::nullopt;
  return divergence(step, "evaluation", "metrics", first_metric,
                    "the metrics of epoch " + std::to_string(epoch + 1) + " differ: " + metrics +
                        "; every value compared in the steps before it is the same");
}

std::string first_of(const std::vector<std::string>& items, size_t shown, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < shown; ++i) out += (i ? separator : "") + items[i];
  if (items.size() > shown) out += separator + "and " + std::to_string(items.size() - shown) + " more";
  return out;
}

std::string counted(int64_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

std::string site_words(const FirstDivergence& d) {
  return (d.layer.empty() ? "" : ", " + d.layer) + (d.op.empty() ? "" : " " + d.op) +
         (d.site != d.op && d.site != d.layer ? " (" + d.site + ")" : "");
}

std::string stopped_words(const std::string& end_reason, const std::string& source) {
  return end_reason.starts_with("error: ") ? "an error stopped it (" + source + end_reason.substr(7) + ")"
                                           : "it was stopped (" + source + end_reason + ")";
}

std::string trace_stop_words(const TraceStop& s) {
  const std::string who = s.side.empty() ? std::string("the trace") : s.side + " (" + s.trace + ")";
  if (!s.stopped.empty())
    return "the recording of " + who + " ends after step " + std::to_string(s.after_step) + ": " +
           stopped_words(s.stopped) + " before its run's end";
  return stop_sentence(who, "after step " + std::to_string(s.after_step), s.damaged, s.offset);
}

std::string stop_sentence(const std::string& who, const std::string& after, bool damaged,
                          const std::optional<uint64_t>& offset) {
  if (damaged)
    return who + " was changed after it was written: reading stopped at byte " +
           (offset ? std::to_string(*offset) : std::string("?")) + ", " + after;
  if (offset)
    return who + " is cut short at byte " + std::to_string(*offset) + ", " + after +
           " (a recording killed or cut there)";
  return who + " ends " + after + " with no footer (a recording killed or cut there)";
}

namespace {

std::string fmt_double(double v) {
  if (std::isnan(v)) return "nan";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// A fact's name as a JSON key: "steps compared" -> "steps_compared", "racy choices, always forced" ->
// "racy_choices_always_forced".
std::string snake_case(const std::string& name) {
  std::string out;
  for (char c : name) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) {
      out += static_cast<char>(std::tolower(u));
    } else if (!out.empty() && out.back() != '_') {
      out += '_';
    }
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out.empty() ? "fact" : out;
}

// A fact's value: a JSON number when the whole text is one ("15", "-3", "0.25"), else a string.
std::string json_value(const std::string& text) {
  if (!text.empty() && text.find_first_not_of("0123456789-+.eE") == std::string::npos) {
    double v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    const size_t digits = text[0] == '-' ? 1 : 0;  // JSON takes no '+', no leading zero, no bare '.'
    const bool leading_zero = text.size() > digits + 1 && text[digits] == '0' && std::isdigit(static_cast<unsigned char>(text[digits + 1]));
    if (ec == std::errc() && end == text.data() + text.size() && std::isfinite(v) && text[0] != '+' &&
        text.back() != '.' && text[digits] != '.' && !leading_zero && text.find(".e") == std::string::npos &&
        text.find(".E") == std::string::npos)
      return text;
  }
  return json_string(text);
}

// An infinity or a NaN, which JSON has no number for, as the string "inf", "-inf" or "nan", as dump --json
// writes them: the value a divergence found is never dropped.
std::string json_num(double v) {
  if (std::isfinite(v)) return fmt_double(v);
  return std::isnan(v) ? "\"nan\"" : v > 0 ? "\"inf\"" : "\"-inf\"";
}

// " (42 steps compared)", from the report's facts; "" when it has no such fact.
std::string steps_compared(const DivergenceReport& r) {
  for (const auto& [k, v] : r.facts) {
    if (k != "steps compared") continue;
    int64_t n = 0;
    const auto parsed = std::from_chars(v.data(), v.data() + v.size(), n);
    return " (" + (parsed.ec == std::errc() ? counted(n, "step") : v + " steps") + " compared)";
  }
  return "";
}

}  // namespace

// Near zero, floats are dense and a ULP is tiny: many ULPs there can be a very small difference. Said beside
// the count, so that "4000000 ULP" between 1e-12 and -3e-12 is read by its absolute size.
std::string near_zero(const FirstDivergence& d) {
  // A NaN or an infinity has no place on the number line to be near zero or across it from.
  if (!std::isfinite(d.recorded) || !std::isfinite(d.replayed)) return "";
  const double a = std::fabs(d.recorded), b = std::fabs(d.replayed);
  const bool straddles = (d.recorded < 0) != (d.replayed < 0) && d.recorded != 0 && d.replayed != 0;
  if (d.ulp < 1000 || !(std::max(a, b) < 1e-6 || straddles)) return "";
  // Values of other signs far from zero: the count runs across zero, and says so, not that it is small.
  if (straddles && std::max(a, b) >= 1e-6)
    return " (the values have other signs: the count runs across zero; they differ by " +
           fmt_double(d.abs_diff) + " in absolute terms)";
  return " (near zero, where a ULP is tiny: the values differ by " + fmt_double(d.abs_diff) +
         " in absolute terms)";
}

std::pair<std::string, std::string> element_values(const FirstDivergence& d) {
  if (!std::isnan(d.recorded) || !std::isnan(d.replayed))
    return {fmt_double(d.recorded), fmt_double(d.replayed)};
  auto bits = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "nan (bits 0x%08x)", std::bit_cast<uint32_t>(static_cast<float>(v)));
    return std::string(buf);
  };
  return {bits(d.recorded), bits(d.replayed)};
}

const char* status_name(ReportStatus s) {
  switch (s) {
    case ReportStatus::reproduced:
      return "reproduced";
    case ReportStatus::identical:
      return "identical";
    case ReportStatus::diverged:
      return "diverged";
    case ReportStatus::damaged:
      return "damaged";
    case ReportStatus::truncated:
      return "truncated";
  }
  return "?";
}

ReportStatus DivergenceReport::status() const {
  if (diverged) return ReportStatus::diverged;
  if (stop) return stop->damaged ? ReportStatus::damaged : ReportStatus::truncated;
  return two_recordings ? ReportStatus::identical : ReportStatus::reproduced;
}

bool what_adds_to_cause(const DivergenceReport& r) {
  return r.first && !r.first->detail.empty() && r.cause.detail.rfind(r.first->detail, 0) != 0;
}

std::string report_text(const DivergenceReport& r) {
  // Each string the report quotes (sites, kernels, causes, notes, environment values: the trace's and made of
  // them) stays on its line: a newline in one cannot print a line of its own.
  const auto f = [](std::string_view s) { return inline_text(s); };
  std::ostringstream o;
  if (!r.diverged && r.stop) {
    // What was compared matched; the headline says first where the comparison had to stop, and why.
    const bool damaged = r.stop->damaged;
    const std::string steps = r.stop->to_step >= 0
                                  ? "the steps before --to-step " + std::to_string(r.stop->to_step)
                              : damaged          ? "the steps before it"
                              : r.two_recordings ? "the steps both hold"
                                                 : "the steps it holds";
    o << status_name(r.status()) << ": " << f(trace_stop_words(*r.stop)) << "; "
      << (r.two_recordings        ? steps + " are identical"
          : r.command == "bisect" ? "a free replay reproduces " + steps + " bit for bit"
                                  : steps + " reproduced bit for bit")
      << steps_compared(r) << "\n";
  } else if (!r.diverged) {
    o << (r.status() == ReportStatus::reproduced ? "reproduced bit for bit"
          : !r.same_choices
              ? "identical: the two runs computed the same bits, with other kernels at some sites"
          : r.other_orders
              ? "identical: the two runs computed the same bits, with other accumulation orders at some sites"
          : r.choices_unknown ? "identical: the two runs computed the same bits; one trace holds kernel "
                                "choices the other does not"
                              : "identical: the two runs made the same choices and computed the same bits")
      << steps_compared(r) << "\n";
  } else if (r.first) {
    const FirstDivergence& d = *r.first;
    o << (d.kind == "state" ? state_headline(d) : "diverged at step " + std::to_string(d.step));
    if (!d.phase.empty() && d.kind != "state") o << ", " << f(d.phase);
    o << f(site_words(d)) << "\n";
    o << "  cause: " << f(r.cause.category) << ": " << f(r.cause.detail) << "\n";
    if (what_adds_to_cause(r)) o << "  what: " << f(d.detail) << "\n";
    if (!d.kernel_recorded.empty() || !d.kernel_replayed.empty())
      o << "  kernel: " << (d.kernel_recorded.empty() ? "?" : f(d.kernel_recorded)) << " (" << r.label_a
        << "), " << (d.kernel_replayed.empty() ? "?" : f(d.kernel_replayed)) << " (" << r.label_b << ")\n";
    if (d.has_element) {
      const auto [va, vb] = element_values(d);
      o << "  first differing element: " << d.index << ": " << va << " (" << r.label_a << ") vs " << vb
        << " (" << r.label_b << ")";
      if (has_distance(d))
        o << ", |diff| " << fmt_double(d.abs_diff) << ", " << d.ulp << " ULP" << near_zero(d) << "\n";
      else
        o << ": no distance between them (a NaN or an infinity has no place on the number line to count "
             "ULPs from)\n";
    }
    if (d.summary_recorded && d.summary_replayed) {
      const auto [a, b] = summaries_side_by_side(*d.summary_recorded, *d.summary_replayed);
      o << "  " << r.label_a << ": " << a << "\n  " << r.label_b << ": " << b << "\n";
      if (same_summary(*d.summary_recorded, *d.summary_replayed))
        o << "  the sums, minima and maxima are the same bits: the values differ where these do not show\n";
    }
  } else {
    // The runs' inputs differ (data, configuration), yet no value compared does.
    o << "diverged in the inputs only: no value compared differs" << steps_compared(r)
      << "\n  cause: " << f(r.cause.category) << ": " << f(r.cause.detail) << "\n";
  }
  if (r.diverged && r.stop)
    o << "  " << (r.stop->damaged ? "damaged" : "truncated") << ": " << f(trace_stop_words(*r.stop))
      << ": nothing after it is compared\n";
  if (!r.environment.empty()) {
    o << "environment differences:\n";
    for (const auto& e : r.environment)
      o << "  " << f(e.key) << ": " << f(e.recorded) << " (" << r.label_a << ") vs " << f(e.replayed) << " ("
        << r.label_b << ")\n";
  }
  // Past the 8 a cause names, every one.
  if (r.config_differences.size() > 8) {
    o << "configuration differences:\n";
    for (const auto& c : r.config_differences) o << "  " << f(c) << "\n";
  }
  for (const auto& [k, v] : r.facts) o << f(k) << ": " << f(v) << "\n";
  for (const auto& n : r.notes) o << "note: " << f(n) << "\n";
  return o.str();
}

std::string report_json(const DivergenceReport& r) {
  std::ostringstream o;
  o << "{\"command\":" << json_string(r.command)
    << ",\"status\":" << json_string(status_name(r.status()));
  o << ",\"first_divergence\":";
  if (r.first) {
    const FirstDivergence& d = *r.first;
    o << "{\"step\":" << d.step << ",\"phase\":" << json_string(d.phase) << ",\"kind\":" << json_string(d.kind)
      << ",\"site\":" << json_string(d.site) << ",\"layer\":" << json_string(d.layer)
      << ",\"op\":" << json_string(d.op) << ",\"kernel_recorded\":" << json_string(d.kernel_recorded)
      << ",\"kernel_replayed\":" << json_string(d.kernel_replayed);
    // A state that differs: the steps done when it was taken, as show, export --step and --from-step count
    // a checkpoint (the initial state 0, the checkpoint "at step 20" after step 19: 20); null otherwise.
    o << ",\"checkpoint\":"
      << (d.kind != "state" ? std::string("null") : std::to_string(d.phase == "setup" ? 0 : d.step + 1));
    if (d.has_element)
      o << ",\"index\":" << d.index << ",\"recorded\":" << json_num(d.recorded)
        << ",\"replayed\":" << json_num(d.replayed)
        << ",\"abs_diff\":" << (has_distance(d) ? json_num(d.abs_diff) : "null")
        << ",\"ulp\":" << (has_distance(d) ? std::to_string(d.ulp) : "null");
    else
      o << ",\"index\":null,\"recorded\":null,\"replayed\":null,\"abs_diff\":null,\"ulp\":null";
    o << ",\"detail\":" << json_string(d.detail) << "}";
  } else {
    o << "null";
  }
  o << ",\"cause\":";
  if (r.diverged)
    o << "{\"category\":" << json_string(r.cause.category) << ",\"detail\":" << json_string(r.cause.detail) << "}";
  else
    o << "null";
  o << ",\"trace_stop\":";
  if (r.stop)
    o << "{\"trace\":" << json_string(r.stop->trace) << ",\"side\":" << json_string(r.stop->side)
      << ",\"reason\":"
      << json_string(r.stop->damaged            ? "damaged"
                     : !r.stop->stopped.empty() ? "stopped"
                                                : "truncated")
      << ",\"after_step\":" << r.stop->after_step
      << ",\"offset\":" << (r.stop->offset ? std::to_string(*r.stop->offset) : std::string("null"))
      << ",\"detail\":" << json_string(r.stop->detail)
      << ",\"to_step\":" << (r.stop->to_step >= 0 ? std::to_string(r.stop->to_step) : std::string("null"))
      << "}";
  else
    o << "null";
  o << ",\"environment_differences\":[";
  for (size_t i = 0; i < r.environment.size(); ++i)
    o << (i ? "," : "") << "{\"key\":" << json_string(r.environment[i].key)
      << ",\"recorded\":" << json_string(r.environment[i].recorded)
      << ",\"replayed\":" << json_string(r.environment[i].replayed) << "}";
  o << "],\"config_differences\":[";
  for (size_t i = 0; i < r.config_differences.size(); ++i)
    o << (i ? "," : "") << json_string(r.config_differences[i]);
  o << "],\"facts\":{";
  for (size_t i = 0; i < r.facts.size(); ++i) {
    const auto& [key, value] = r.facts[i];
    o << (i ? "," : "");
    // Keys that hold a step and values in words get keys of their own, the same in every report, with the
    // numbers as numbers: "loss at step 59" -> "last_loss": {"step": 59, "recorded": ..., "replayed": ...}.
    const std::string loss_at = "loss at step ";
    if (key.rfind(loss_at, 0) == 0) {
      std::smatch m;
      static const std::regex sides(R"(^(\S+) \(([^()]+)\) vs (\S+) \(([^()]+)\)$)");
      o << "\"last_loss\":{\"step\":" << json_value(key.substr(loss_at.size()));
      if (std::regex_match(value, m, sides))
        o << "," << json_string(m[2].str()) << ":" << json_value(m[1].str()) << "," << json_string(m[4].str())
          << ":" << json_value(m[3].str());
      else
        o << ",\"text\":" << json_string(value);
      o << "}";
      continue;
    }
    if (key == "trainable parameters identical through step") {
      // A step, or none (null); the words beside it.
      size_t digits = 0;
      while (digits < value.size() && std::isdigit(static_cast<unsigned char>(value[digits]))) ++digits;
      o << json_string(snake_case(key)) << ":" << (digits > 0 ? value.substr(0, digits) : std::string("null"))
        << ",\"trainable_parameters_identical_words\":" << json_string(value);
      continue;
    }
    o << json_string(snake_case(key)) << ":" << json_value(value);
  }
  o << "},\"notes\":[";
  for (size_t i = 0; i < r.notes.size(); ++i) o << (i ? "," : "") << json_string(r.notes[i]);
  o << "]}\n";
  return o.str();
}

}  // namespace trainrr
