#pragma once
// The `trainrr` verbs. Each adds its subcommand to the app and, when chosen, runs and sets the exit code:
// 0 success (reproduced), 1 diverged, 2 bad input or usage, 3 cannot replay here.

#include <CLI/CLI.hpp>

namespace trainrr::cli {

enum ExitCode { kOk = 0, kDiverged = 1, kBadInput = 2, kCannotReplay = 3 };

void add_train_command(CLI::App& app, int& exit_code);
void add_record_command(CLI::App& app, int& exit_code);
void add_replay_command(CLI::App& app, int& exit_code);
void add_diff_command(CLI::App& app, int& exit_code);
void add_bisect_command(CLI::App& app, int& exit_code);
void add_show_command(CLI::App& app, int& exit_code);
void add_dump_command(CLI::App& app, int& exit_code);
void add_export_command(CLI::App& app, int& exit_code);

// A verb that reads traces once (show, dump, diff, bisect, export) started by mpirun with several processes,
// each of which would run it whole (print its report, write its export): refused, rank 0 saying why, with
// exit code 2 on every process. False (nothing said) otherwise.
// `what`, where given, opens the message in place of the verb's own words ("run.trr is the recording of one
// process, ...").
bool refused_under_mpirun(const char* verb, const std::string& what = "");

}  // namespace trainrr::cli
