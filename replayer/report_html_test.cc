#include "replayer/report_html.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string_view>

namespace trainrr {
namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A replay that diverged at step 9 of a 60-step run, at level layer.
DivergenceReport diverged_replay() {
  DivergenceReport r;
  r.command = "replay";
  r.diverged = true;
  FirstDivergence d = divergence(9, "forward", "probe", "batch_normalization_1:out");
  split_site(d.site, d.layer, d.op);
  d.has_element = true;
  d.index = 4;
  d.recorded = -0.0362259187;
  d.replayed = -0.036225915;
  d.abs_diff = 3.7e-9;
  d.ulp = 1;
  r.first = d;
  r.cause = {"numeric", "kernels that accumulate in completion order combined their partials in different orders"};
  r.facts = {{"trace", "/runs/bn.trr"}, {"force", "rng,split,shuffle,loader"}, {"steps compared", "10"}};
  PageViews& p = r.page;
  p.per_step = true;
  p.last_step = 9;
  for (int s = 0; s < 10; ++s) {
    p.loss_a.push_back(3.0 / (s + 1));
    p.loss_b.push_back(3.0 / (s + 1) + (s == 9 ? 1e-7 : 0));
  }
  p.epochs = {{0, 1}, {5, 2}};
  MapRow row{"batch_normalization_1:out", "batch_normalization_1", "forward",
             std::vector<float>(10, MapRow::kSame)};
  row.size[9] = 1e-7f;
  p.rows.push_back(row);
  MapRow grad{"dense_1.kernel:grad", "dense_1", "backward", std::vector<float>(10, MapRow::kSame)};
  grad.size[9] = MapRow::kSizeUnknown;
  p.rows.push_back(grad);
  p.environment = {{"threads", "2", "1"}, {"os", "Linux x86_64", "Linux x86_64"}};
  p.kernels = {{"batch_normalization_1/bn_stats.fwd", "f32_sum__cpu_atomic_threads", "f32_sum__cpu_chunked_threads"}};
  p.command = "trainrr replay /runs/bn.trr --force rng,split,shuffle,loader";
  p.stopped_at_first = true;
  p.would_end = 59;
  return r;
}

TEST(ReportHtml, IsOnePageWithNoScriptNoPreformattedBlockAndNothingFetched) {
  const std::string page = report_html(diverged_replay());
  EXPECT_EQ(page.rfind("<!doctype html>", 0), 0u);
  EXPECT_FALSE(has(page, "<script"));
  EXPECT_FALSE(has(page, "<pre"));  // a <pre> runs off the right edge
  EXPECT_FALSE(has(page, "http"));
  EXPECT_FALSE(has(page, "url("));
  EXPECT_TRUE(has(page, "</main></body></html>"));
}

// A kernel id breaks after an underscore in a narrow column, never inside a word.
TEST(ReportHtml, KernelIdsBreakOnlyAfterAnUnderscore) {
  const std::string page = report_html(diverged_replay());
  EXPECT_TRUE(has(page, "<td class=\"id\">f32_<wbr>sum_<wbr>_<wbr>cpu_<wbr>atomic_<wbr>threads</td>"))
      << page;
  EXPECT_TRUE(has(page, "td.id{overflow-wrap:normal}"));
}

TEST(ReportHtml, TheAnswerComesFirstWithItsElementAndTheCommandThatShowsItAgain) {
  const std::string page = report_html(diverged_replay());
  const size_t card = page.find("Diverged at step 9, forward");
  ASSERT_NE(card, std::string::npos) << page;
  EXPECT_LT(card, page.find("Loss per step"));
  EXPECT_TRUE(has(page, "<span class=\"tag\">numeric</span>"));
  EXPECT_TRUE(has(page, "-0.0362259187"));
  EXPECT_TRUE(has(page, "-0.036225915"));
  EXPECT_TRUE(has(page, "3.7e-09"));
  // Each word of the command is kept whole (its own span), the line breaking only between words.
  EXPECT_TRUE(has(page,
                  "<span>trainrr</span> <span>replay</span> <span>/runs/bn.trr</span> <span>--force</span> "
                  "<span>rng,split,shuffle,loader</span></code>"));
}

TEST(ReportHtml, AReplayStoppedAtItsFirstDivergenceDrawsItsCurvesAndSuggestsKeepGoing) {
  const std::string page = report_html(diverged_replay());
  EXPECT_TRUE(has(page, "aria-label=\"loss per step, steps 0 to 9\"")) << page;
  EXPECT_TRUE(has(page, "steps 10-59 not replayed"));
  EXPECT_TRUE(has(
      page, "<span>--force</span> <span>rng,split,shuffle,loader</span> <span>--keep-going</span></code>"));
  EXPECT_FALSE(has(page, "no loss values"));
  EXPECT_FALSE(has(page, "No step compared holds a loss"));
  // No epoch ended in the steps it compared: that is why no validation loss is drawn, not the configuration.
  EXPECT_TRUE(has(page, "No epoch ended within the steps compared, so no validation loss is drawn.")) << page;
  EXPECT_FALSE(has(page, "train.validation_split draws one per epoch")) << page;
  // A run that holds out no validation rows has none to draw, whatever the steps compared.
  DivergenceReport none = diverged_replay();
  none.page.validation = false;
  const std::string without = report_html(none);
  EXPECT_TRUE(has(without,
                  "The run holds out no validation rows (train.validation_split = 0): there is no "
                  "validation loss to draw."))
      << without;
  EXPECT_FALSE(has(without, "No epoch ended within the steps compared")) << without;
}

// The number of times `part` occurs in `s`.
size_t count(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t at = s.find(part); at != std::string::npos; at = s.find(part, at + part.size())) ++n;
  return n;
}

// A difference in the final state is at no step: no step is marked as the first divergence; the end of the
// run is, and the plots say that the difference lies in a state they do not draw.
TEST(ReportHtml, AFinalStateDifferenceIsMarkedAtTheEndAndSaidUnderThePlots) {
  DivergenceReport r = diverged_replay();
  FirstDivergence d = divergence(9, "final state", "state", "batch_normalization_1.moving_mean");
  d.layer = "batch_normalization_1";
  r.first = d;
  r.page.stopped_at_first = false;
  r.page.would_end = -1;
  r.page.loss_b = r.page.loss_a;
  const std::string page = report_html(r);
  EXPECT_TRUE(has(page, "Diverged in the final state, after step 9")) << page;
  EXPECT_FALSE(has(page, "first divergence, step")) << page;
  EXPECT_TRUE(has(report_html(diverged_replay()), "first divergence, step 9"));
  // The marker at the right edge (step 9.5 on an axis ending at step 9) in the loss plot, and the words.
  EXPECT_EQ(count(page, "<line class=\"first\" x1=\"1084\""), 3u) << page;  // both panels and the map
  EXPECT_TRUE(has(page, ">final state differs</text>")) << page;
  EXPECT_TRUE(
      has(page,
          "The runs first differ in the final state, after step 9, at batch_normalization_1.moving_mean: "
          "no value drawn here covers it"))
      << page;
  EXPECT_TRUE(has(page,
                  "the losses are the same bits at every step compared; the runs differ in the final state, "
                  "after step 9</text>"));
  // Said both under the loss plot and over the map.
  EXPECT_EQ(count(page, "no value drawn here covers it"), 2u) << page;
}

// A checkpoint that differs lies between two steps: the marker sits between them, the legend's entry has its
// line, and the callout of a replay that stopped there names the checkpoint, not the step before it.
TEST(ReportHtml, ACheckpointDifferenceIsMarkedBetweenItsStepsAndTheCalloutNamesIt) {
  DivergenceReport r = diverged_replay();
  r.first = divergence(4, "checkpoint", "state", "batch_normalization_1.moving_mean");
  r.page.last_step = 4;
  r.page.loss_a.resize(5);
  r.page.loss_b = r.page.loss_a;
  for (auto& row : r.page.rows) row.size.assign(5, MapRow::kSame);
  const std::string page = report_html(r);
  EXPECT_TRUE(has(page, "Diverged in the checkpoint at step 5, after step 4")) << page;
  EXPECT_TRUE(has(page,
                  "The replay stopped at its first divergence, in the checkpoint at step 5 (the state after "
                  "step 4). To see"))
      << page;
  EXPECT_FALSE(has(page, "first divergence, step 4")) << page;
  // Step 4.5 of steps 0-59 on 74..1084 px.
  EXPECT_TRUE(has(page, "<line class=\"first\" x1=\"151.03\"")) << page;
  EXPECT_TRUE(has(page, ">checkpoint at step 5 differs</text>")) << page;
  EXPECT_TRUE(has(page, "<title>checkpoint at step 5 differs</title></path>")) << page;  // under the map
  EXPECT_TRUE(has(page, "first divergence</span>"));
  EXPECT_TRUE(has(page, "The runs first differ in the checkpoint at step 5 (the state after step 4)"))
      << page;
}

// A divergence in the inputs only has no value compared that differs: no marker, so no legend entry for one,
// and the plots say why they show no difference.
TEST(ReportHtml, ADivergenceInTheInputsOnlyPromisesNoMarkerAndSaysSo) {
  DivergenceReport r = diverged_replay();
  r.first.reset();
  r.cause = {"data", "a test row differs"};
  r.page.stopped_at_first = false;
  r.page.loss_b = r.page.loss_a;
  for (auto& row : r.page.rows) row.size.assign(10, MapRow::kSame);
  const std::string page = report_html(r);
  EXPECT_TRUE(has(page, "Diverged in the inputs only")) << page;
  EXPECT_FALSE(has(page, "first divergence")) << page;
  EXPECT_FALSE(has(page, "<line class=\"first\"")) << page;
  EXPECT_TRUE(has(page, "No value compared differs: the runs differ in their inputs only")) << page;
  EXPECT_TRUE(has(page,
                  "the losses are the same bits at every step compared; the runs differ in their inputs "
                  "only</text>"));
}

// Runs whose epochs have other lengths: each run's validation loss at its own epoch's end, and each run's
// epoch starts, so that the page of diff A B draws what the page of diff B A does.
TEST(ReportHtml, RunsWithEpochsOfOtherLengthsDrawEachRunsValidationAtItsOwnEpochsEnd) {
  DivergenceReport r = diverged_replay();
  r.page.stopped_at_first = false;
  r.page.would_end = -1;
  r.page.epochs = {{0, 1}, {5, 2}};
  r.page.epochs_b = {{0, 1}, {4, 2}, {8, 3}};
  r.page.val_loss = {{1, 4, 0.5, 0.6, 3}};
  const std::string page = report_html(r);
  // Steps 0-9 on 74..1084 px: step 4 at 522.89, step 3 at 410.67 (the square's corner 3.5 px left and up).
  EXPECT_TRUE(has(page, "<circle class=\"va\" cx=\"522.89\"")) << page;
  EXPECT_TRUE(has(page, "<rect class=\"vb\" x=\"407.17\"")) << page;
  // B's epoch starts, at steps 3.5 and 7.5, in both panels.
  EXPECT_EQ(count(page, "<line class=\"epochb\" x1=\"466.78\""), 2u) << page;
  EXPECT_EQ(count(page, "<line class=\"epochb\" x1=\"915.67\""), 2u) << page;
  EXPECT_TRUE(has(page, "epoch start, replay here</span>")) << page;
  EXPECT_TRUE(has(page,
                  "The runs' epochs have other lengths: those of bn.trr (recorded) begin at step 5, those "
                  "of replay here at steps 4, 8"))
      << page;
  // Epochs of one length: one kind of line, said once.
  r.page.epochs_b.clear();
  const std::string alike = report_html(r);
  EXPECT_FALSE(has(alike, "<line class=\"epochb\"")) << alike;
  EXPECT_FALSE(has(alike, "other lengths")) << alike;
}

// At level step the map's one row is a digest of the trainable parameters: the page says so where it
// describes the row, and the row keeps its name.
TEST(ReportHtml, TheLevelStepRowIsSaidToCoverTheTrainableParameters) {
  DivergenceReport r = diverged_replay();
  r.page.layer_probes = false;
  r.page.rows = {{"(all parameters)", "", "update", std::vector<float>(10, MapRow::kSame)}};
  const std::string page = report_html(r);
  EXPECT_TRUE(has(page,
                  "one digest of all the trainable parameters per step (the row <code>(all "
                  "parameters)</code>)"))
      << page;
  EXPECT_FALSE(has(page, "digest of all parameters")) << page;
  EXPECT_TRUE(
      has(page, "<title>(all parameters): one digest of all the trainable parameters after the step"));
  EXPECT_TRUE(has(page, "<title>(all parameters), steps 0-9: same bits</title>")) << page;
}

// A huge ULP count between values near zero is a tiny difference: the page says so beside the count, as the
// terminal does.
TEST(ReportHtml, AHugeUlpCountNearZeroCarriesTheTerminalsCaveat) {
  DivergenceReport r = diverged_replay();
  r.first->recorded = 2.1327287e-07;
  r.first->replayed = 2.15135515e-07;
  r.first->abs_diff = 1.86264515e-09;
  r.first->ulp = 131072;
  const std::string page = report_html(r);
  EXPECT_TRUE(has(page,
                  "131072 ULP (near zero, where a ULP is tiny: the values differ by 1.86264515e-09 in "
                  "absolute terms)."))
      << page;
  EXPECT_FALSE(has(report_html(diverged_replay()), "near zero"));  // 1 ULP: nothing to say
}

TEST(ReportHtml, TheLegendNamesTheTracesNotAAndB) {
  DivergenceReport r = diverged_replay();
  r.command = "diff";  // its text says A and B
  r.facts = {{"A", "/x/monday.trr"}, {"B", "/y/tuesday.trr"}};
  const std::string page = report_html(r);
  EXPECT_TRUE(has(page, "</svg>monday.trr</span>")) << page;
  EXPECT_TRUE(has(page, "</svg>tuesday.trr</span>")) << page;
  EXPECT_FALSE(has(page, "</svg>A</span>"));
  // bisect --against compares two recordings as diff does: its page names them too.
  r.command = "bisect";
  r.two_recordings = true;
  const std::string bisect = report_html(r);
  EXPECT_TRUE(has(bisect, "</svg>monday.trr</span>")) << bisect;
  EXPECT_FALSE(has(bisect, "</svg>A</span>"));
}

TEST(ReportHtml, TheMapSaysForEachCellWhetherAndHowMuchItDiffered) {
  const std::string page = report_html(diverged_replay());
  EXPECT_TRUE(has(page, "<title>batch_normalization_1:out, steps 0-8: same bits</title>")) << page;
  EXPECT_TRUE(has(page, "<title>batch_normalization_1:out, step 9: differs, relative size up to 1e-07</title>"));
  EXPECT_TRUE(has(page, "<title>dense_1.kernel:grad, step 9: differs (the trace keeps its digest only"));
  // Digests that differ under equal summaries have no size to give, only that they differ.
  DivergenceReport same_summary = diverged_replay();
  same_summary.page.rows[0].size[9] = relative_difference(Summary{}, Summary{});
  EXPECT_TRUE(
      has(report_html(same_summary),
          "<title>batch_normalization_1:out, step 9: differs, with the same summary (its digests differ; "
          "its min, max, mean and RMS do not)</title>"));
  EXPECT_TRUE(has(page, "<title>first divergence: batch_normalization_1:out, step 9</title>"));
  // A cell with no relative size (non-finite values) is not painted as a large difference, and the key names
  // its colour; a page without one does not.
  EXPECT_FALSE(has(page, "no relative size (NaN or infinite values")) << page;
  DivergenceReport non_finite = diverged_replay();
  non_finite.page.rows[0].size[9] = MapRow::kNonFinite;
  const std::string nf = report_html(non_finite);
  EXPECT_TRUE(has(nf,
                  "fill=\"#7b3294\"><title>batch_normalization_1:out, step 9: differs, with non-finite "
                  "values"))
      << nf;
  EXPECT_TRUE(has(nf,
                  "<i style=\"background:#7b3294\"></i>differs, no relative size (NaN or infinite values, "
                  "or another number of values)"))
      << nf;
  // Layers in the order given (model order), not sorted by name.
  EXPECT_LT(page.find(">batch_normalization_1:out<title>"), page.find(">dense_1.kernel:grad<title>"));
}

TEST(ReportHtml, DifferingEnvironmentKeysAndKernelChoicesAreHighlighted) {
  const std::string page = report_html(diverged_replay());
  EXPECT_TRUE(has(page, "<tr class=\"diff\"><td><code>threads</code>")) << page;
  EXPECT_TRUE(has(page, "<tr><td><code>os</code>"));
  EXPECT_TRUE(has(page, "<tr class=\"diff\"><td><code>batch_normalization_1/bn_stats.fwd</code>"));
  EXPECT_TRUE(has(page, "1 of 2 recorded keys differ"));
}

TEST(ReportHtml, EveryStringFromTheTraceIsEscaped) {
  DivergenceReport r = diverged_replay();
  const std::string bad = "<img src=x onerror=alert(1)>";
  r.first->site = bad;
  r.first->detail = bad;
  r.cause.detail = bad;
  r.notes = {bad};
  r.facts.emplace_back(bad, bad);
  r.page.rows[0].site = bad;
  r.page.environment.push_back({bad, bad, bad});
  r.page.kernels.push_back({bad, bad, bad});
  r.page.command = bad;
  const std::string page = report_html(r);
  EXPECT_FALSE(has(page, "<img")) << page;
  EXPECT_TRUE(has(page, "&lt;img src=x onerror=alert(1)&gt;"));
}

TEST(ReportHtml, BisectSaysItDrawsNoCurves) {
  DivergenceReport r = diverged_replay();
  r.command = "bisect";
  r.page = PageViews{};
  const std::string page = report_html(r);
  EXPECT_TRUE(has(page, "Not computed by trainrr bisect"));
  EXPECT_FALSE(has(page, "<title>batch_normalization_1:out"));
}

// A long layer name loses its middle in the map's labels, not the suffix that tells its rows apart.
// Many epochs: the labels drawn (every few epochs) never overlap, the last one ending at the panel's edge
// included; "epoch 71" and "epoch 78" overprinted each other.
TEST(ReportHtml, EpochLabelsOfALongRunDoNotOverlap) {
  DivergenceReport r = diverged_replay();
  PageViews& p = r.page;
  p.loss_a.clear();
  p.loss_b.clear();
  p.epochs.clear();
  for (auto& row : p.rows) row.size.assign(3280, MapRow::kSame);
  for (int s = 0; s < 3280; ++s) {
    p.loss_a.push_back(1.0);
    p.loss_b.push_back(1.0);
  }
  for (int e = 0; e < 80; ++e) p.epochs.push_back({e * 41, e + 1});
  p.last_step = 3279;
  p.stopped_at_first = false;
  const std::string html = report_html(r);
  // Each label: its x, anchor and text; its extent at 6.5 px a character, as the page lays it out.
  std::map<std::string, std::vector<std::pair<double, double>>> by_y;
  for (size_t at = html.find("class=\"etick\""); at != std::string::npos;
       at = html.find("class=\"etick\"", at + 1)) {
    const double x = std::stod(html.substr(html.find("x=\"", at) + 3));
    const size_t y_at = html.find("y=\"", at) + 3;
    const std::string y = html.substr(y_at, html.find('"', y_at) - y_at);
    const bool end = html.find("text-anchor=\"end\"", at) < html.find("</text>", at);
    const size_t text_at = html.find('>', at) + 1;
    const double width = 6.5 * static_cast<double>(html.find("</text>", at) - text_at);
    by_y[y].push_back(end ? std::pair{x - width, x} : std::pair{x, x + width});
  }
  ASSERT_FALSE(by_y.empty());
  for (auto& [y, spans] : by_y) {
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i) EXPECT_LE(spans[i - 1].second, spans[i].first) << "at y " << y;
  }
}

// A run with no validation loss gets no legend entry for one, and the caption says it has none.
TEST(ReportHtml, ARunWithoutValidationLossIsNotPromisedOneInTheLegend) {
  DivergenceReport r = diverged_replay();
  r.page.val_loss = {{1, 4, NAN, 1.25}, {2, 9, NAN, 1.0}};
  const std::string html = report_html(r);
  EXPECT_FALSE(has(html, "validation loss, bn.trr (recorded)</span>"));
  EXPECT_TRUE(has(html, "validation loss, replay here</span>"));
  EXPECT_TRUE(has(html, "bn.trr (recorded) has no validation loss in the epochs compared"));
}

TEST(ReportHtml, LongRowLabelsKeepTheSuffixThatTellsALayersRowsApart) {
  DivergenceReport r = diverged_replay();
  const std::string layer = "encoder_block_3_attention_output_proj_EXTRALONGNAME_abcdefghijklmnopqrstuvwxyz";
  r.page.rows.clear();
  for (const char* suffix : {":out", ".kernel:grad", ".bias:grad", ".kernel:value", ".bias:value"})
    r.page.rows.push_back({layer + suffix, layer, "forward", std::vector<float>(10, MapRow::kSame)});
  const std::string page = report_html(r);
  std::set<std::string> labels;
  const std::regex label("<text class=\"rowlabel[^>]*>([^<]*)<title>");
  for (auto it = std::sregex_iterator(page.begin(), page.end(), label); it != std::sregex_iterator(); ++it)
    labels.insert((*it)[1].str());
  ASSERT_EQ(labels.size(), 5u) << page;  // five labels, all different
  for (const std::string& l : labels) {
    EXPECT_EQ(l.rfind("encoder_block_3_", 0), 0u) << l;
    EXPECT_TRUE(has(l, "\u2026")) << l;
    EXPECT_LE(l.size(), 49u + 2) << l;  // 49 characters, the widest label column's (the ellipsis: 3 bytes)
  }
  EXPECT_TRUE(std::any_of(labels.begin(), labels.end(), [](const std::string& l) {
    return l.size() > 13 && l.compare(l.size() - 13, 13, ".kernel:value") == 0;
  })) << page;
  EXPECT_TRUE(std::any_of(labels.begin(), labels.end(), [](const std::string& l) {
    return l.size() > 4 && l.compare(l.size() - 4, 4, ":out") == 0;
  })) << page;
}

// The bisect page says what bisect found on the way, as the terminal does: its stage lines and its result,
// right under the answer, a quoted command as code.
TEST(ReportHtml, BisectsStagesAndResultFollowTheAnswer) {
  DivergenceReport r = diverged_replay();
  r.command = "bisect";
  r.page = PageViews{};
  r.stages = {
      "stage 2: lockstep replay from step 0: forced reproduces, free diverges at step 10",
      "result: force loader (1 of 18 choices) to reproduce; `trainrr replay <b>.trr --force loader` does"};
  const std::string page = report_html(r);
  const size_t stages = page.find("<h2>What bisect did</h2>");
  ASSERT_NE(stages, std::string::npos) << page;
  EXPECT_LT(page.find("Diverged at step 9"), stages);
  EXPECT_LT(stages, page.find("Loss per step"));
  EXPECT_TRUE(has(
      page, "<li>stage 2: lockstep replay from step 0: forced reproduces, free diverges at step 10</li>"));
  EXPECT_TRUE(has(page,
                  "<li class=\"result\">result: force loader (1 of 18 choices) to reproduce; <code>trainrr "
                  "replay &lt;b&gt;.trr --force loader</code> does</li>"))
      << page;
  r.stages.clear();
  EXPECT_FALSE(has(report_html(r), "What bisect did"));
}

TEST(ReportHtml, AReproducedReplaySaysSoAndMarksNoDivergence) {
  DivergenceReport r = diverged_replay();
  r.diverged = false;
  r.first.reset();
  r.page.stopped_at_first = false;
  for (auto& row : r.page.rows) row.size.assign(10, MapRow::kSame);
  r.page.loss_b = r.page.loss_a;
  const std::string page = report_html(r);
  EXPECT_TRUE(has(page, "Reproduced bit for bit"));
  EXPECT_FALSE(has(page, "first divergence"));
  EXPECT_TRUE(has(page, "the losses are the same bits at every step compared"));
}

// Losses that are NaN or infinite have no place on the axis: the caption says how many from which step, a
// band marks them, and the same NaN on both sides is the same bits (the green band), not a gap.
TEST(ReportHtml, LossesThatAreNotFiniteAreSaidAndTheSameNaNIsTheSameBits) {
  DivergenceReport r = diverged_replay();
  r.diverged = false;
  r.first.reset();
  r.page.stopped_at_first = false;
  for (auto& row : r.page.rows) row.size.assign(10, MapRow::kSame);
  for (size_t i = 1; i < 10; ++i) r.page.loss_a[i] = i == 1 ? INFINITY : NAN;
  r.page.loss_b = r.page.loss_a;
  r.page.non_finite_a = r.page.non_finite_b = {9, 1, INFINITY};
  const std::string page = report_html(r);
  EXPECT_TRUE(has(page, "<title>steps 0-9: the same loss, bit for bit</title>")) << page;
  EXPECT_TRUE(has(page, "The loss of both runs is not finite at 9 steps, the first step 1 (inf)")) << page;
  EXPECT_TRUE(has(page, "<title>steps 1-9: the loss of replay here is not finite</title>")) << page;
  EXPECT_TRUE(has(page, "the losses are the same bits at every step compared")) << page;
  // Finite on one side, not on the other: no difference to draw, and not "the same bits".
  r.page.loss_a = diverged_replay().page.loss_a;
  r.page.non_finite_a = {};
  const std::string one_side = report_html(r);
  EXPECT_FALSE(has(one_side, "the same bits at every step")) << one_side;
  EXPECT_TRUE(has(one_side, "<title>step 0: the same loss, bit for bit</title>")) << one_side;
  EXPECT_FALSE(has(one_side, "The loss of bn.trr (recorded) is not finite")) << one_side;
  EXPECT_TRUE(has(one_side, "The loss of replay here is not finite at 9 steps, the first step 1 (inf)"))
      << one_side;
}

// A map cell whose tensor holds non-finite values has no relative size: its tooltip says so, not 3.4e+38.
TEST(ReportHtml, AMapCellWithNonFiniteValuesSaysSoNotAHugeSize) {
  DivergenceReport r = diverged_replay();
  Summary a, b;
  a.count = b.count = 32;
  b.non_finite = 32;
  r.page.rows[0].size[9] = relative_difference(a, b);
  r.page.rows[0].size[8] = 1.5f;  // a size in the same colour's range: told apart from no size
  const std::string page = report_html(r);
  EXPECT_TRUE(has(page, "<title>batch_normalization_1:out, step 8: differs, relative size up to 1.5</title>"))
      << page;
  EXPECT_TRUE(has(page,
                  "<title>batch_normalization_1:out, step 9: differs, with non-finite values (NaN or "
                  "infinite, in the tensor or its summary): no relative size</title>"))
      << page;
  EXPECT_FALSE(has(page, "e+38")) << page;
}

// Every coordinate in the page's drawings (x, y, cx, cy, width, height, a path's points): numbers, finite.
// "" or the first that is not.
std::string first_coordinate_not_finite(const std::string& page) {
  static const std::regex attribute(R"re(\s(x|y|x1|y1|x2|y2|cx|cy|r|width|height|d)="([^"]*)")re");
  for (auto it = std::sregex_iterator(page.begin(), page.end(), attribute); it != std::sregex_iterator();
       ++it) {
    std::string value = (*it)[2];
    if ((*it)[1] == "d")  // a path's commands, and the commas between its numbers
      for (char& c : value)
        if (std::string_view("MLHVZCSQTAmlhvzcsqta,").find(c) != std::string_view::npos) c = ' ';
    std::istringstream words(value);
    for (std::string w; words >> w;) {
      char* end = nullptr;
      const double v = std::strtod(w.c_str(), &end);
      if (*end != '\0' || !std::isfinite(v)) return (*it).str();
    }
  }
  return "";
}

// The loss panel's scale is computed so that no coordinate overflows, whatever finite losses the traces hold:
// 1e308 beside 2 once made max - min times the panel's height -inf, and the curve "-inf".
TEST(ReportHtml, EveryCoordinateOfTheLossChartIsFiniteForAnyFiniteLosses) {
  const double tiny = std::numeric_limits<double>::denorm_min();
  const std::vector<std::pair<std::string, std::vector<double>>> cases = {
      {"1e308 at one step", {3, 1.5, 1, 0.75, 0.6, 1e308, 0.43, 0.38, 0.33, 0.3}},
      {"the largest double", {3, DBL_MAX, 1, 0.75, 0.6, 0.5, 0.43, 0.38, 0.33, 0.3}},
      {"both ends of the doubles", {-DBL_MAX, DBL_MAX, 1, -1e308, 1e308, 0.5, 0.43, NAN, INFINITY, -tiny}},
      {"every step the largest double", std::vector<double>(10, DBL_MAX)},
      {"every step the lowest double", std::vector<double>(10, -DBL_MAX)},
      {"subnormal", {tiny, 2 * tiny, 3 * tiny, 4 * tiny, 0, tiny, tiny, tiny, tiny, tiny}},
  };
  for (const auto& [what, losses] : cases) {
    DivergenceReport r = diverged_replay();
    r.page.loss_b = losses;
    r.page.val_loss = {{1, 4, losses[3], losses[4], 4}};
    const std::string page = report_html(r);
    EXPECT_EQ(first_coordinate_not_finite(page), "") << what;
    const size_t chart = page.find("aria-label=\"loss per step");
    ASSERT_NE(chart, std::string::npos) << what;
    const std::string svg = page.substr(chart, page.find("</svg>", chart) - chart);
    EXPECT_FALSE(has(svg, "inf")) << what << "\n" << svg;
    EXPECT_FALSE(has(svg, "nan")) << what << "\n" << svg;
    EXPECT_TRUE(has(page, "<path class=\"lb\" d=\"M")) << what;  // the curve is drawn
  }
}

// Two losses one double apart at every step: the ticks of a range narrower than the doubles near it can step
// through are its ends (a tick added to the last once never moved past it, and the list grew without end).
TEST(ReportHtml, ALossRangeNarrowerThanTheDoublesResolveEndsItsTicks) {
  DivergenceReport r = diverged_replay();
  r.page.loss_a.assign(10, 1.0);
  r.page.loss_b.assign(10, std::nextafter(1.0, 2.0));
  const std::string page = report_html(r);
  EXPECT_EQ(first_coordinate_not_finite(page), "");
  EXPECT_TRUE(has(page, "<path class=\"lb\" d=\"M")) << page;
}

// Losses a few float32 ULPs apart: the loss axis's ticks are told apart, with as many digits as that takes.
TEST(ReportHtml, LossTicksOfANarrowRangeHaveDigitsEnoughToDiffer) {
  for (const auto& [lo, hi] : {std::pair{3.2140377, 3.2140379}, std::pair{0.6190915, 0.6191025}}) {
    DivergenceReport r = diverged_replay();
    r.page.loss_a.assign(10, lo);
    r.page.loss_b.assign(10, hi);
    const std::string page = report_html(r);
    // The loss panel's ticks, up to its axis title.
    const size_t chart = page.find("aria-label=\"loss per step");
    const std::string panel = page.substr(chart, page.find(">loss</text>", chart) - chart);
    const std::regex tick(
        "<text class=\"tick\" x=\"([0-9.]+)\" y=\"[0-9.]+\" text-anchor=\"end\">([^<]*)</text>");
    std::vector<std::string> labels;
    for (auto it = std::sregex_iterator(panel.begin(), panel.end(), tick); it != std::sregex_iterator();
         ++it) {
      labels.push_back((*it)[2].str());
      // Clear of the axis title "loss" (x 16, 13 px high when turned), at about 7 px a character.
      EXPECT_GE(std::stod((*it)[1].str()) - 7.0 * static_cast<double>(labels.back().size()), 24.0)
          << labels.back();
    }
    ASSERT_GE(labels.size(), 3u) << page;
    for (size_t i = 1; i < labels.size(); ++i) EXPECT_NE(labels[i], labels[i - 1]) << labels[i];
    // Equal steps between the ticks read as equal steps (0.619098 beside 0.619095 and 0.6191 did not).
    const double step = std::stod(labels[1]) - std::stod(labels[0]);
    for (size_t i = 2; i < labels.size(); ++i)
      EXPECT_NEAR(std::stod(labels[i]) - std::stod(labels[i - 1]), step, std::fabs(step) * 1e-3)
          << labels[i - 1] << " " << labels[i];
  }
}

// A diff of a layer-level and a step-level trace compares at level step: the page says that, not that a
// trace lacks what one of them holds.
TEST(ReportHtml, ADiffAtTheShallowerLevelSaysWhyNoLayerIsShown) {
  DivergenceReport r = diverged_replay();
  r.command = "diff";
  r.page.layer_probes = false;
  r.notes = {"A was recorded at level layer, B at level step: compared at level step"};
  std::string page = report_html(r);
  EXPECT_TRUE(
      has(page, "A was recorded at level layer, B at level step: compared at level step: only the loss"))
      << page;
  EXPECT_FALSE(has(page, "The trace holds no layer-level probes"));
  r.notes.clear();
  page = report_html(r);
  EXPECT_TRUE(has(page, "The trace holds no layer-level probes (level step)"));
}

// A loader's cause opens with the batches that differ: the page does not say them twice.
TEST(ReportHtml, ACauseThatOpensWithWhatDiffersIsNotRepeated) {
  DivergenceReport r = diverged_replay();
  r.first->detail = "step 3: recorded batch 3, replayed batch 4 (loader__first_ready)";
  r.cause = {"loader",
             r.first->detail + "; a first-ready loader hands out batches in the order its workers finish"};
  EXPECT_FALSE(has(report_html(r), "<dt>What differs</dt>"));
  r.cause = {"numeric", "same kernel, same inputs, different output"};
  EXPECT_TRUE(has(report_html(r), "<dt>What differs</dt>"));
}

}  // namespace
}  // namespace trainrr
