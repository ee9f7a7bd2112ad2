#pragma once
// The HTML page of a replay, diff or bisect report: self-contained, for people to look at.

#include <string>

#include "replayer/divergence.h"

namespace trainrr {

std::string report_html(const DivergenceReport& r);

}  // namespace trainrr
