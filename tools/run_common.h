#pragma once
// What the verbs that train share: loading a configuration and printing a run's outcome.

#include <cstdio>
#include <string>
#include <vector>

#include "engine/trainer.h"

namespace trainrr::cli {

// Prints the run's header (seed, threads, policy, model) to `out`.
void print_run_header(FILE* out, const RunConfig& config, Training& training);
// Whether the run's runtime.device can run here (always for the CPU); the error names the setting and what
// the CUDA runtime reported. train and record check it before anything is written, and exit 3 on it.
Status check_run_device(const RunConfig& config);
// Evaluates the test split (if any) and prints the final metrics.
void print_final_metrics(FILE* out, Training& training);

}  // namespace trainrr::cli
