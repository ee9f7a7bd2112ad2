#include "tools/openblas_core.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/matmul_openblas.h"

namespace trainrr::cli {
namespace {

// Set in the restarted process to this CPU's own OpenBLAS code, for the note; removed before the
// environment is captured.
constexpr const char* kRestartedFrom = "TRAINRR_OPENBLAS_RESTARTED_FROM";

std::string recorded_openblas(const trace::TraceHeader& h) {
  for (const auto& [key, value] : h.environment)
    if (key == "lib.openblas") return value;
  return "";
}

// This process's arguments, as it was started.
std::vector<std::string> own_arguments() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::vector<std::string> args;
  for (size_t at = 0; at < all.size();) {
    const size_t end = all.find('\0', at);
    args.push_back(all.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return args;
}

// Runs this program again with the same arguments; returns only if that failed (the reason).
std::string restart() {
  std::vector<std::string> args = own_arguments();
  if (args.empty()) return "its arguments could not be read from /proc/self/cmdline";
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  ::execv("/proc/self/exe", argv.data());
  return std::strerror(errno);
}

}  // namespace

std::vector<std::string> use_recorded_openblas_core(const trace::TraceHeader& recorded) {
  const std::string want = openblas_core_in(recorded_openblas(recorded));
  const std::string have = openblas_core();
  if (const char* from = std::getenv(kRestartedFrom)) {
    const std::string own = from;
    ::unsetenv(kRestartedFrom);
    if (have == want)
      return {"OpenBLAS runs its " + want +
              " code, as recorded: the replay restarted with OPENBLAS_CORETYPE=" + want +
              " (this CPU's own pick is " + own + ")"};
    return {"OpenBLAS did not take OPENBLAS_CORETYPE=" + want + " and runs its " + have +
            " code; the recording's ran its " + want + " code"};
  }
  if (want.empty() || want == have) return {};
  if (const char* set = std::getenv("OPENBLAS_CORETYPE"))
    return {std::string("OPENBLAS_CORETYPE=") + set + " is set here: OpenBLAS runs its " + have +
            " code; the recording's ran its " + want + " code"};
  auto isa = runtime_isa();
  if (!isa) return {};  // the replay reports the bad TRAINRR_ISA
  if (!openblas_core_runs_on(want, cpu_flags(), *isa))
    return {"the recording's OpenBLAS ran its " + want + " code, which this CPU cannot run" +
            (*isa < detect_isa() ? std::string(" under TRAINRR_ISA=") + isa_name(*isa) : std::string()) +
            ": OpenBLAS runs its " + have + " code here"};
  ::setenv("OPENBLAS_CORETYPE", want.c_str(), 1);
  ::setenv(kRestartedFrom, have.c_str(), 1);
  const std::string why = restart();
  ::unsetenv("OPENBLAS_CORETYPE");
  ::unsetenv(kRestartedFrom);
  return {"the recording's OpenBLAS ran its " + want + " code; restarting with OPENBLAS_CORETYPE=" + want +
          " failed (" + why + "): OpenBLAS runs its " + have + " code here"};
}

}  // namespace trainrr::cli
