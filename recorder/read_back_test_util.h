#pragma once
// Every message of a trace, read back with TraceReader and sorted by kind (tests only); a read error is a test
// failure.

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "traces/trace_reader.h"

namespace trainrr::testing {

struct ReadBack {
  trace::TraceHeader header;
  std::vector<trace::TraceStep> steps;
  std::vector<trace::TraceCheckpoint> checkpoints;
  std::vector<trace::TraceEpoch> epochs;
  std::optional<trace::TraceFooter> footer;
};

inline ReadBack read_all(const std::string& path) {
  ReadBack out;
  auto r = trace::TraceReader::open(path);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  if (!r) return out;
  out.header = (*r)->header();
  for (;;) {
    auto m = (*r)->next();
    EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().message);
    if (!m || !*m) break;
    auto& v = (*m)->value;
    if (auto* s = std::get_if<trace::TraceStep>(&v))
      out.steps.push_back(std::move(*s));
    else if (auto* c = std::get_if<trace::TraceCheckpoint>(&v))
      out.checkpoints.push_back(std::move(*c));
    else if (auto* e = std::get_if<trace::TraceEpoch>(&v))
      out.epochs.push_back(std::move(*e));
    else
      out.footer = std::get<trace::TraceFooter>(v);
  }
  return out;
}

}  // namespace trainrr::testing
