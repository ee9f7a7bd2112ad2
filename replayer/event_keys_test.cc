#include "replayer/event_keys.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace trainrr {
namespace {

constexpr size_t kAlone = AlignedEvent::kAlone;

// The alignment written out by keys: "x" for a pair, "a:x" for an event only A holds, "b:x" only B.
std::vector<std::string> aligned(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<std::string> out;
  for (const AlignedEvent& e : align_events(a, b)) {
    if (e.a != kAlone && e.b != kAlone) {
      EXPECT_EQ(a[e.a], b[e.b]);
      out.push_back(a[e.a]);
    } else {
      out.push_back(e.a != kAlone ? "a:" + a[e.a] : "b:" + b[e.b]);
    }
  }
  return out;
}

// The same alignment with the runs swapped, written as from A and B again.
std::vector<std::string> swapped(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<std::string> out = aligned(b, a);
  for (std::string& s : out)
    if (s.rfind("a:", 0) == 0)
      s[0] = 'b';
    else if (s.rfind("b:", 0) == 0)
      s[0] = 'a';
  return out;
}

TEST(AlignEvents, AnEventOnlyBHoldsComesWhereItStandsAheadOfThePairsAfterIt) {
  const std::vector<std::string> a = {"batch", "probe|conv:out", "probe|dense:out"};
  const std::vector<std::string> b = {"batch", "rng|augment/noise", "probe|conv:out", "probe|dense:out"};
  const std::vector<std::string> want = {"batch", "b:rng|augment/noise", "probe|conv:out", "probe|dense:out"};
  EXPECT_EQ(aligned(a, b), want);
  EXPECT_EQ(swapped(a, b), want);
}

TEST(AlignEvents, EventsOfOneKeyPairOccurrenceByOccurrenceAndTheOneLeftOverIsAlone) {
  const std::vector<std::string> a = {"rng|dropout", "probe|x", "rng|dropout", "probe|y"};
  const std::vector<std::string> b = {"rng|dropout", "probe|x", "probe|y"};
  const std::vector<std::string> want = {"rng|dropout", "probe|x", "a:rng|dropout", "probe|y"};
  EXPECT_EQ(aligned(a, b), want);
  EXPECT_EQ(swapped(a, b), want);
}

// Both runs hold an event alone at the same point: the same one comes first whichever run is A.
TEST(AlignEvents, EventsBothRunsHoldAloneAtOnePointComeInTheSameOrderEitherWay) {
  const std::vector<std::string> a = {"batch", "probe|p", "end"};
  const std::vector<std::string> b = {"batch", "probe|q", "end"};
  const std::vector<std::string> want = {"batch", "a:probe|p", "b:probe|q", "end"};
  EXPECT_EQ(aligned(a, b), want);
  EXPECT_EQ(swapped(a, b), want);
}

// The same events in another order: the pair earlier by position in both runs together comes first (y at 1
// and 0, x at 0 and 2, z at 2 and 1), whichever run is A.
TEST(AlignEvents, PairsThatCrossComeEarlierByPositionFirstEitherWay) {
  const std::vector<std::string> a = {"x", "y", "z"};
  const std::vector<std::string> b = {"y", "z", "x"};
  const std::vector<std::string> want = {"y", "x", "z"};
  EXPECT_EQ(aligned(a, b), want);
  EXPECT_EQ(swapped(a, b), want);
}

TEST(AlignEvents, WhatOneRunHoldsPastTheOthersLastEventIsAlone) {
  EXPECT_EQ(aligned({}, {"p", "q"}), (std::vector<std::string>{"b:p", "b:q"}));
  EXPECT_EQ(aligned({"p", "q"}, {"p"}), (std::vector<std::string>{"p", "a:q"}));
  EXPECT_TRUE(aligned({}, {}).empty());
}

}  // namespace
}  // namespace trainrr
