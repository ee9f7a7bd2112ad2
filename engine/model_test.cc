#include "engine/model.h"

#include <gtest/gtest.h>

namespace trainrr {
namespace {

// The summary that record and train print (and the Python module returns) shows a layer's name as every
// string from a file reaching a terminal is shown: a name from a configuration the loader did not check (one
// a trace recorded before it refused control characters) cannot clear the screen or print a line of its own.
TEST(Sequential, TheSummaryEscapesControlCharactersInALayersName) {
  LayerSpec dense;
  dense.type = "Dense";
  dense.units = 2;
  dense.name = "a\x1b[2J\r\nb\xe2\x80\xae";
  auto m = Sequential::from_specs({dense});
  ASSERT_TRUE(m.ok()) << m.error().message;
  const std::string summary = m->summary();
  EXPECT_NE(summary.find("  a\\x1B[2J\\x0D\\x0Ab\\u202E (Dense) -> "), std::string::npos) << summary;
  for (char c : summary) EXPECT_TRUE(c == '\n' || static_cast<unsigned char>(c) >= 0x20) << summary;
  EXPECT_EQ(summary.find("\xe2\x80\xae"), std::string::npos) << summary;
}

}  // namespace
}  // namespace trainrr
