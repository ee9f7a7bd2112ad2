// A layer's output probe repeats its last op's probe of the same tensor, and the recorder reuses that
// fingerprint (Hooks::probe_unchanged). Every recorded probe must still hold its own tensor's fingerprint.

#include <gtest/gtest.h>

#include <variant>

#include "engine/fingerprint.h"
#include "tests/recording_util.h"
#include "tests/test_util.h"
#include "traces/trace_reader.h"

namespace trainrr::testing {
namespace {

// What the run probed: each tensor's own fingerprint, in order, and how many probes were of a tensor
// unchanged.
struct Probed {
  std::vector<std::pair<std::string, Fingerprint>> seen;
  int64_t unchanged = 0;
};

// Fingerprints every probed tensor itself before the recorder sees it.
class FreshFingerprints : public ForwardingHooks {
 public:
  FreshFingerprints(Hooks& inner, Probed& out) : ForwardingHooks(inner), out_(out) {}
  void probe(std::string_view s, Phase p, const Tensor& t) override {
    out_.seen.push_back({std::string(s), fingerprint(t)});
    ForwardingHooks::probe(s, p, t);
  }
  void probe_unchanged(std::string_view s, Phase p, const Tensor& t) override {
    out_.seen.push_back({std::string(s), fingerprint(t)});
    ++out_.unchanged;
    ForwardingHooks::probe_unchanged(s, p, t);
  }

 private:
  Probed& out_;
};

bool same(const Fingerprint& a, const Fingerprint& b) {
  // Bit for bit: NaN sums would compare unequal, and none arise here.
  return a.digest == b.digest && a.summary.count == b.summary.count && a.summary.sum == b.summary.sum &&
         a.summary.sum_sq == b.summary.sum_sq && a.summary.min == b.summary.min &&
         a.summary.max == b.summary.max && a.summary.non_finite == b.summary.non_finite;
}

struct Case {
  const char* example;
  ProbeLevel level;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.example << " at level " << probe_level_name(c.level);
}

class ProbeUnchangedTest : public ::testing::TestWithParam<Case> {};

TEST_P(ProbeUnchangedTest, EveryRecordedProbeHoldsItsTensorsFingerprint) {
  const Case c = GetParam();
  TempDir dir;
  const std::string trace = dir.file("run.trr");
  Probed front;
  ASSERT_EQ(record_via_api(
                example(c.example), {"train.epochs=1", "runtime.threads=1", "runtime.policy=deterministic"},
                trace, [&](Hooks& rec) { return std::make_unique<FreshFingerprints>(rec, front); }, c.level),
            "");
  ASSERT_FALSE(front.seen.empty());
  // At level op every layer's output follows its last op's probe; at level layer that op probe is not
  // made, so nothing is known and every probe is hashed.
  if (c.level == ProbeLevel::op)
    EXPECT_GT(front.unchanged, 0);
  else
    EXPECT_EQ(front.unchanged, 0);

  auto reader = trace::TraceReader::open(trace);
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  size_t next = 0;
  for (;;) {
    auto m = (*reader)->next();
    ASSERT_TRUE(m.ok()) << m.error().message;
    if (!*m) break;
    const auto* step = std::get_if<trace::TraceStep>(&(*m)->value);
    if (!step) continue;
    for (const trace::Event& e : step->events) {
      const auto* p = std::get_if<trace::ProbeEvent>(&e);
      if (!p) continue;
      ASSERT_LT(next, front.seen.size()) << "more recorded probes than made";
      EXPECT_EQ(p->site, front.seen[next].first) << "probe " << next;
      EXPECT_TRUE(same(p->fingerprint, front.seen[next].second))
          << "step " << step->index << ", " << p->site << ": the recorded fingerprint is not its tensor's";
      ++next;
    }
  }
  EXPECT_EQ(next, front.seen.size());
}

INSTANTIATE_TEST_SUITE_P(Examples, ProbeUnchangedTest,
                         ::testing::Values(Case{"breast_cancer.toml", ProbeLevel::op},
                                           Case{"digits_mlp.toml", ProbeLevel::op},
                                           Case{"digits_bn.toml", ProbeLevel::op},
                                           Case{"digits_cnn.toml", ProbeLevel::layer}),
                         [](const auto& info) {
                           std::string name = info.param.example;
                           name = name.substr(0, name.find('.'));
                           return name + "_" + probe_level_name(info.param.level);
                         });

}  // namespace
}  // namespace trainrr::testing
