// trainrr: record, replay and explain neural-network training runs.

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>

#include "engine/device.h"
#include "tools/commands.h"
#include "tools/trace_text.h"
#if TRAINRR_WITH_CUDA
#include "cuda/cupti_session.h"
#include "cuda/device.h"
#include "cuda/engine_device.h"
#include "recorder/kernel_source.h"
#endif

namespace {

// The error standard output met, if any (0: none). The write that failed may lie far back, its errno
// gone: the descriptor is then asked again.
int stdout_error() {
  std::cout.flush();
  errno = 0;
  if (std::fflush(stdout) != 0 && errno != 0) return errno;
  if (!std::ferror(stdout) && !std::cout.bad()) return 0;
  struct stat st;
  if (::fstat(STDOUT_FILENO, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
    pollfd p{STDOUT_FILENO, POLLOUT, 0};
    if (::poll(&p, 1, 0) == 1 && (p.revents & POLLERR)) return EPIPE;  // the reading end is closed
  }
  errno = 0;
  if (::write(STDOUT_FILENO, "", 0) < 0 && errno != 0) return errno;
  return EIO;
}

// What CLI11 reports as "A subcommand is required" when there is no command, the first word is no command,
// or an option other than --help and --version comes before the command: the message names the word instead.
std::optional<std::string> missing_command(const CLI::App& app, int argc, char** argv) {
  std::string commands;
  bool known = false;
  const std::string first = argc > 1 ? argv[1] : "";
  for (const CLI::App* sub : app.get_subcommands({})) {
    commands += (commands.empty() ? "" : ", ") + sub->get_name();
    known = known || sub->get_name() == first;
  }
  if (argc < 2) return "a command is required (commands: " + commands + "; --help says what each does)";
  if (known || first == "-h" || first == "--help" || first == "--version") return std::nullopt;
  if (first[0] == '-')
    return "unknown option '" + first +
           "' (before a command only --help and --version; commands: " + commands + ")";
  return "unknown command '" + first + "' (commands: " + commands + ")";
}

int run(int argc, char** argv) {
#if TRAINRR_WITH_CUDA
  // runtime.device = "cuda" asks the CUDA backend whether there is a GPU.
  trainrr::set_cuda_probe(&trainrr::cuda::probe_gpu);
  // ... and trains on it through the CUDA device.
  trainrr::set_cuda_backend(&trainrr::cuda::open_cuda_device);
  // ... and a recording there gathers its kernels with CUPTI.
  trainrr::set_kernel_source_factory(&trainrr::cuda::open_cupti_session);
#endif
  CLI::App app{
      "trainrr: a record-and-replay debugger for neural-network training.\n"
      "Records every source of run-to-run variation, replays a run from its trace, and names the\n"
      "step, op and cause of the first divergence."};
  app.require_subcommand(1);
  // CLI11's own errors (a missing argument, a bad value, an option check) speak as every other error does.
  app.failure_message(
      [](const CLI::App* a, const CLI::Error& e) { return "trainrr: " + CLI::FailureMessage::simple(a, e); });
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
  if (auto unknown = missing_command(app, argc, argv)) {
    trainrr::cli::print_error(*unknown);
    return trainrr::cli::kBadInput;
  }
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

}  // namespace

int main(int argc, char** argv) {
  // A reader that stops reading (`trainrr record ... | head`) must not kill a recording half written: writes
  // to the closed pipe fail instead, and the run goes on to its end.
  std::signal(SIGPIPE, SIG_IGN);
  const int exit_code = run(argc, argv);
  if (const int err = stdout_error(); err != 0) {
    if (err == EPIPE) return exit_code;  // the reader chose to stop: nothing to report
    std::fprintf(stderr, "trainrr: cannot write to standard output: %s\n", std::strerror(err));
    return trainrr::cli::kBadInput;
  }
  return exit_code;
}
