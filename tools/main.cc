// trainrr: record, replay and explain neural-network training runs.

#include <cstdio>
#include <new>
#include <stdexcept>

#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "trainrr: a record-and-replay debugger for neural-network training.\n"
      "Records every source of run-to-run variation, replays a run from its trace, and names the\n"
      "step, op and cause of the first divergence."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("trainrr ") + TRAINRR_VERSION);
  int exit_code = trainrr::cli::kOk;
  trainrr::cli::add_train_command(app, exit_code);
  trainrr::cli::add_record_command(app, exit_code);
  trainrr::cli::add_replay_command(app, exit_code);
  trainrr::cli::add_diff_command(app, exit_code);
  trainrr::cli::add_bisect_command(app, exit_code);
  trainrr::cli::add_show_command(app, exit_code);
  trainrr::cli::add_dump_command(app, exit_code);
  trainrr::cli::add_export_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : trainrr::cli::kBadInput;
  } catch (const std::bad_alloc&) {
    // Training and model building report this with the step or layer; here it is the data, say.
    std::fprintf(stderr,
                 "trainrr: out of memory: the run's data or model does not fit in this machine's memory\n");
    return trainrr::cli::kBadInput;
  } catch (const std::length_error& e) {
    std::fprintf(stderr, "trainrr: too large: %s\n", e.what());
    return trainrr::cli::kBadInput;
  }
  return exit_code;
}
