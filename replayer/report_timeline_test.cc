// The HTML report's timeline of the GPU kernels of the divergent step: one row per run, one bar per kernel.

#include <gtest/gtest.h>

#include <string>

#include "replayer/report_html.h"

namespace trainrr {
namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

size_t count(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t at = s.find(part); at != std::string::npos; at = s.find(part, at + part.size())) ++n;
  return n;
}

// The timeline's section of the page.
std::string timeline(const std::string& page) {
  const size_t at = page.find("<h2>GPU kernels of step");
  return at == std::string::npos ? "" : page.substr(at, page.find("</section>", at) - at);
}

const std::string kGemm = "sm90_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize64x64x8_stage3";

std::vector<trace::KernelLaunch> step_launches() {
  return {
      {"dense_1/matmul.fwd", kGemm, 4, 2, 1, 128, 1, 1, 16384, 0, 9000},
      {"dense_1/bias.fwd", "_ZN7trainrr4cuda8bias_addEPfPKfii", 8, 1, 1, 256, 1, 1, 0, 0, 1000},
      {"dense_1/relu.fwd", "_ZN7trainrr4cuda4reluEPfi", 8, 1, 1, 256, 1, 1, 0, 0, 800},
      {"dense_2/matmul.fwd", kGemm, 1, 2, 1, 128, 1, 1, 16384, 0, 3000},
      {"dense_1/matmul.bwd_weight", kGemm, 4, 2, 1, 128, 1, 1, 16384, 0, 12000},
      {"dense_1/matmul.bwd_weight", "_ZN8cublasLt19splitKreduce_kernelIffEEvv", 2, 1, 1, 32, 1, 1, 0, 512, 500},
  };
}

// A diff of two GPU traces at level op that first differ at step 7, in dense_2/matmul.fwd's output.
DivergenceReport diverged_diff() {
  DivergenceReport r;
  r.command = "diff";
  r.diverged = true;
  r.two_recordings = true;
  FirstDivergence d = divergence(7, "forward", "probe", "dense_2/matmul.fwd:out");
  split_site(d.site, d.layer, d.op);
  r.first = d;
  r.cause = {"kernel", "other kernels"};
  r.facts = {{"A", "/x/monday.trr"}, {"B", "/y/tuesday.trr"}, {"steps compared", "45"}};
  KernelTimeline& t = r.page.timeline;
  t.step = 7;
  t.a = trace::step_kernels(step_launches(), 0, ProbeLevel::op);
  auto b = step_launches();
  b[3].name = "sm90_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize128x64x8_stage4";
  t.b = trace::step_kernels(b, 0, ProbeLevel::op);
  return r;
}

TEST(ReportTimeline, DrawsEachRunsKernelsOfTheDivergentStepAsBarsWithALegendOfOps) {
  const std::string page = report_html(diverged_diff());
  ASSERT_TRUE(has(page, "<h2>GPU kernels of step 7</h2>")) << page;
  EXPECT_TRUE(has(page, "aria-label=\"GPU kernels of step 7\""));
  EXPECT_EQ(count(page, "<rect class=\"kb"), 12u);  // 6 kernels in each run
  // One row per run, named as the page names the traces.
  EXPECT_TRUE(has(page, ">monday.trr<title>monday.trr</title></text>")) << page;
  EXPECT_TRUE(has(page, ">tuesday.trr<title>tuesday.trr</title></text>"));
  EXPECT_TRUE(has(page, ">6 kernels, 26.3 \u00b5s</text>"));
  // The legend: each op once, in the order they first launched.
  for (const char* op : {"dense_1/matmul.fwd", "dense_1/bias.fwd", "dense_1/relu.fwd", "dense_2/matmul.fwd",
                         "dense_1/matmul.bwd_weight"})
    EXPECT_EQ(count(page, "</i><code>" + std::string(op) + "</code>"), 1u) << op;
  EXPECT_LT(page.find("</i><code>dense_1/relu.fwd</code>"), page.find("</i><code>dense_2/matmul.fwd</code>"));
  // Where the runs first differ: its bars outlined in both runs, and named in the legend.
  EXPECT_EQ(count(page, "<rect class=\"kb kat\""), 2u);
  EXPECT_TRUE(has(page, "<code>dense_2/matmul.fwd</code> <span class=\"tag\">first divergence</span>"));
  EXPECT_TRUE(has(page, "op <code>dense_2/matmul.fwd</code>, where the runs first differ, is outlined"));
  // Durations are known: a time axis, and no word of missing ones.
  EXPECT_TRUE(has(page, ">GPU time</text>"));
  EXPECT_FALSE(has(page, "no duration"));
  // Before the table of kernel choices; the page still fetches nothing and runs nothing.
  EXPECT_FALSE(has(page, "<script"));
  EXPECT_FALSE(has(page, "http"));
}

TEST(ReportTimeline, EachBarsTooltipGivesTheKernelDemangledItsShapeSharedMemoryDurationAndOp) {
  const std::string page = report_html(diverged_diff());
  EXPECT_TRUE(has(page, "<title>trainrr::cuda::relu(float*, int)\nop: dense_1/relu.fwd\ngrid (8, 1, 1), block "
                        "(256, 1, 1)\nshared memory: 0 bytes (static 0, dynamic 0)\nduration: 800 ns\nkernel 3 of "
                        "6\nmangled: _ZN7trainrr4cuda4reluEPfi</title>"))
      << page;
  EXPECT_TRUE(has(page, "<title>" + kGemm + "\nop: dense_1/matmul.fwd\ngrid (4, 2, 1), block (128, 1, 1)\nshared "
                        "memory: 16384 bytes (static 16384, dynamic 0)\nduration: 9 \u00b5s\nkernel 1 of 6</title>"));
  EXPECT_TRUE(has(page, "cublasLt::splitKreduce_kernel&lt;float, float&gt;()"));
  // The band beneath the bars: each op's consecutive kernels as one segment.
  EXPECT_TRUE(has(page, "<title>op dense_1/matmul.bwd_weight: 2 kernels, 12.5 \u00b5s</title>"));
}

TEST(ReportTimeline, KernelNamesAndSitesFromTheTraceAreEscaped) {
  DivergenceReport r = diverged_diff();
  r.page.timeline.a->launches[0].name = "<script>alert(1)</script>";
  r.page.timeline.b->launches[1].site = "<img src=x onerror=alert(1)>";
  r.page.timeline.b->launches[2].name = "_Z<script>";
  const std::string page = report_html(r);
  EXPECT_FALSE(has(page, "<script")) << page;
  EXPECT_FALSE(has(page, "<img"));
  EXPECT_TRUE(has(page, "<title>&lt;script&gt;alert(1)&lt;/script&gt;\nop: dense_1/matmul.fwd"));
  EXPECT_TRUE(has(page, "<code>&lt;img src=x onerror=alert(1)&gt;</code>"));
  EXPECT_TRUE(has(page, "<title>_Z&lt;script&gt;\nop:"));
}

TEST(ReportTimeline, HundredsOfKernelsAreCappedAndTheRestCounted) {
  DivergenceReport r = diverged_diff();
  std::vector<trace::KernelLaunch> many;
  for (int i = 0; i < 450; ++i) many.push_back(step_launches()[static_cast<size_t>(i % 6)]);
  r.page.timeline.a = trace::step_kernels(many, 0, ProbeLevel::op);
  const std::string page = report_html(r);
  EXPECT_EQ(count(page, "<rect class=\"kb"), 300u + 6u) << page;
  EXPECT_TRUE(has(page, ">150 more not drawn</text>"));
  EXPECT_TRUE(has(page, "150 more kernels not drawn in monday.trr"));
  EXPECT_TRUE(has(page, ">450 kernels, "));
  // Every bar inside the page's width.
  for (size_t at = page.find("<rect class=\"kb"); at != std::string::npos; at = page.find("<rect class=\"kb", at + 1)) {
    const size_t x = page.find(" x=\"", at) + 4, w = page.find(" width=\"", at) + 8;
    EXPECT_LE(std::stod(page.substr(x)) + std::stod(page.substr(w)), 1100 - 16 + 0.01);
  }
}

TEST(ReportTimeline, KernelsWithoutADurationAreDrawnNarrowAndThePageSaysSo) {
  DivergenceReport r = diverged_diff();
  r.page.timeline.a->launches[2].duration_ns = 0;
  std::string page = report_html(r);
  EXPECT_TRUE(has(page, "1 kernel has no duration (CUPTI gave no timestamps): drawn at a minimal width.")) << page;
  EXPECT_TRUE(has(page, "\nduration: not recorded\n"));
  for (auto& l : r.page.timeline.a->launches) l.duration_ns = 0;
  for (auto& l : r.page.timeline.b->launches) l.duration_ns = 0;
  page = report_html(r);
  EXPECT_TRUE(has(page, "12 kernels have no duration")) << page;
  EXPECT_TRUE(has(page, "Durations were missing: the bars show launch order only."));
  EXPECT_FALSE(has(page, ">GPU time</text>"));
  EXPECT_EQ(count(page, "<rect class=\"kb"), 12u);
}

TEST(ReportTimeline, AtLevelLayerEveryOpOfTheDivergentLayerIsHighlighted) {
  DivergenceReport r = diverged_diff();
  r.first->site = "dense_1:out";
  const std::string page = report_html(r);
  EXPECT_EQ(count(page, "<rect class=\"kb kat\""), 10u) << page;  // 5 of dense_1's kernels in each run
  EXPECT_EQ(count(page, "<span class=\"tag\">first divergence</span>"), 4u);  // 4 ops in the legend
}

TEST(ReportTimeline, AReplayDrawsTheRecordedKernelsAloneAndSaysWhyInOneSentence) {
  DivergenceReport r = diverged_diff();
  r.command = "replay";
  r.facts = {{"trace", "/runs/gpu.trr"}};
  r.page.timeline.b.reset();
  r.page.timeline.missing_b =
      "The replay ran on the CPU, which launches no GPU kernels: the recorded kernels are drawn alone.";
  const std::string page = report_html(r);
  EXPECT_TRUE(has(page, "<p class=\"muted\">The replay ran on the CPU, which launches no GPU kernels: the recorded "
                        "kernels are drawn alone.</p>"))
      << page;
  EXPECT_EQ(count(page, "<rect class=\"kb"), 6u);
  EXPECT_TRUE(has(page, ">gpu.trr (recorded)<title>"));
}

TEST(ReportTimeline, WithNothingToDrawItSaysWhyInOneSentence) {
  // Level step keeps each step's kernel count and digest, not the kernels.
  DivergenceReport r = diverged_diff();
  r.page.timeline.a = trace::step_kernels(step_launches(), 0, ProbeLevel::step);
  auto five = step_launches();
  five.pop_back();
  r.page.timeline.b = trace::step_kernels(five, 0, ProbeLevel::step);
  std::string page = report_html(r);
  EXPECT_TRUE(has(page, "<p class=\"muted\">monday.trr ran 6 and tuesday.trr 5 GPU kernels in step 7, but both traces "
                        "were recorded at level step, which keeps only the count and digest of a step's kernels: "
                        "record at level layer or op to see them here.</p></section>"))
      << page;
  EXPECT_EQ(count(timeline(page), "<p class=\"muted\">"), 1u);
  EXPECT_FALSE(has(page, "aria-label=\"GPU kernels"));
  // One side without kernel records, the other at level step.
  r.page.timeline.b.reset();
  r.page.timeline.missing_b = "B (/y/tuesday.trr) holds no GPU kernel records: its side is not drawn.";
  page = report_html(r);
  EXPECT_TRUE(has(page, "<p class=\"muted\">B (/y/tuesday.trr) holds no GPU kernel records: its side is not drawn.</p>"));
  EXPECT_TRUE(has(page, "monday.trr ran 6 GPU kernels in step 7, but its trace was recorded at level step"));
  EXPECT_FALSE(has(page, "aria-label=\"GPU kernels"));
  // A step that launched no kernel.
  r = diverged_diff();
  r.page.timeline.a = trace::step_kernels({}, 0, ProbeLevel::op);
  page = report_html(r);
  EXPECT_TRUE(has(page, "<p class=\"muted\">monday.trr ran no GPU kernel in step 7.</p>")) << page;
  EXPECT_EQ(count(page, "<rect class=\"kb"), 6u);
}

TEST(ReportTimeline, NoSectionWithoutKernelRecordsOrWithoutADivergence) {
  DivergenceReport r = diverged_diff();
  r.page.timeline = KernelTimeline{};
  EXPECT_FALSE(has(report_html(r), "GPU kernels of step"));
  r = diverged_diff();
  r.diverged = false;
  r.first.reset();
  EXPECT_FALSE(has(report_html(r), "GPU kernels of step"));
}

TEST(ReportTimeline, ADivergentOpThatLaunchedNoKernelIsNamed) {
  DivergenceReport r = diverged_diff();
  r.first->site = "dense_3/matmul.fwd:out";
  const std::string page = report_html(r);
  EXPECT_TRUE(has(page, "The op where the runs first differ, <code>dense_3/matmul.fwd</code>, launched no kernel drawn "
                        "here."))
      << page;
  EXPECT_EQ(count(page, "<rect class=\"kb kat\""), 0u);
}

}  // namespace
}  // namespace trainrr
