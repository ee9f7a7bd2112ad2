#include "replayer/report_html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "engine/escape.h"

namespace trainrr {

namespace {

std::string fmt_double(double v) {
  if (std::isnan(v)) return "nan";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace

namespace {

// A line plot of one or two series as inline SVG; point i is at step first + i * stride.
std::string svg_lines(const std::vector<double>& a, const std::vector<double>& b, const std::string& la,
                      const std::string& lb, int64_t first, int64_t stride) {
  const int w = 720, h = 240, pad = 40;
  double lo = INFINITY, hi = -INFINITY;
  size_t n = std::max(a.size(), b.size());
  for (const auto* s : {&a, &b})
    for (double v : *s)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (n < 2 || !std::isfinite(lo)) return "<p>(no loss values)</p>";
  if (hi == lo) hi = lo + 1;
  auto path = [&](const std::vector<double>& s) {
    std::string p;
    bool pen = false;
    for (size_t i = 0; i < s.size(); ++i) {
      if (!std::isfinite(s[i])) {
        pen = false;
        continue;
      }
      const double x = pad + (w - 2 * pad) * static_cast<double>(i) / static_cast<double>(n - 1);
      const double y = h - pad - (h - 2 * pad) * (s[i] - lo) / (hi - lo);
      p += (pen ? " L" : " M") + fmt_double(x) + " " + fmt_double(y);
      pen = true;
    }
    return p;
  };
  std::ostringstream o;
  o << "<svg width=\"" << w << "\" height=\"" << h << "\" role=\"img\">"
    << "<rect x=\"0\" y=\"0\" width=\"" << w << "\" height=\"" << h << "\" fill=\"#fff\" stroke=\"#ccc\"/>"
    << "<path d=\"" << path(a) << "\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
    << "<path d=\"" << path(b)
    << "\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"/>"
    << "<text x=\"" << pad << "\" y=\"16\" font-size=\"12\" fill=\"#1f77b4\">" << html_escape(la) << "</text>"
    << "<text x=\"" << pad + 120 << "\" y=\"16\" font-size=\"12\" fill=\"#d62728\">" << html_escape(lb)
    << "</text>"
    << "<text x=\"4\" y=\"" << pad << "\" font-size=\"11\">" << fmt_double(hi) << "</text>"
    << "<text x=\"4\" y=\"" << h - pad << "\" font-size=\"11\">" << fmt_double(lo) << "</text>"
    << "<text x=\"" << pad << "\" y=\"" << h - 8 << "\" font-size=\"11\">step " << first << "</text>"
    << "<text x=\"" << w - pad << "\" y=\"" << h - 8 << "\" font-size=\"11\" text-anchor=\"end\">step "
    << first + static_cast<int64_t>(n - 1) * stride << "</text></svg>";
  return o.str();
}

}  // namespace

std::string report_html(const DivergenceReport& r) {
  std::ostringstream o;
  o << "<!doctype html><html><head><meta charset=\"utf-8\"><title>trainrr " << html_escape(r.command)
    << "</title><style>body{font-family:sans-serif;max-width:60em;margin:2em "
       "auto}table{border-collapse:collapse}"
       "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}pre{background:#f6f6f6;padding:1em}"
       ".strip{display:flex;height:14px}.strip div{flex:1}</style></head><body>";
  o << "<h1>trainrr " << html_escape(r.command) << ": "
    << status_name(r.status()) << "</h1><pre>" << html_escape(report_text(r))
    << "</pre>";
  // bisect re-executes only a window of steps, forced and free, and keeps no series of them.
  const std::string not_computed = "<p>Not computed by trainrr " + html_escape(r.command) +
                                   ": trainrr replay --keep-going or trainrr diff draws this view.</p>";
  o << "<h2>Loss per step</h2>";
  if (r.per_step_views)
    o << svg_lines(r.loss_a, r.loss_b, r.label_a, r.label_b, r.first_step, r.step_stride);
  else
    o << not_computed;
  o << "<h2>Divergence per layer over steps</h2>";
  if (!r.per_step_views)
    o << not_computed;
  else if (!r.layer_probes)
    o << "<p>The trace holds no layer-level probes (level step): record with --level layer or op for this "
         "view.</p>";
  else if (r.layer_divergence.empty())
    o << "<p>No layer-level probe differed.</p>";
  for (const auto& [layer, steps] : r.layer_divergence) {
    o << "<p>" << html_escape(layer) << "</p><div class=\"strip\">";
    for (int v : steps) o << "<div style=\"background:" << (v ? "#d62728" : "#2ca02c") << "\"></div>";
    o << "</div>";
  }
  o << "<h2>Environment</h2><table><tr><th>key</th><th>" << html_escape(r.label_a) << "</th><th>"
    << html_escape(r.label_b) << "</th></tr>";
  for (const auto& e : r.environment)
    o << "<tr><td>" << html_escape(e.key) << "</td><td>" << html_escape(e.recorded) << "</td><td>"
      << html_escape(e.replayed) << "</td></tr>";
  if (r.environment.empty()) o << "<tr><td colspan=\"3\">no differences</td></tr>";
  o << "</table></body></html>\n";
  return o.str();
}

}  // namespace trainrr
