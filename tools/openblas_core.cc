#include "tools/openblas_core.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>

#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/matmul_openblas.h"
#include "tools/commands.h"
#include "tools/trace_text.h"

namespace trainrr::cli {
namespace {

// Set for the restarted process: the note it reports once OpenBLAS runs the code it was restarted for.
// Removed before the run captures its environment.
constexpr const char* kRestartNote = "TRAINRR_OPENBLAS_RESTART_NOTE";
// Set for the restarted process too: the CPU the restart was decided on, and OPENBLAS_CORETYPE as the user
// started trainrr with it ("=VALUE", or "" where unset). Removed before the run captures its environment.
constexpr const char* kRestartCpu = "TRAINRR_OPENBLAS_RESTART_CPU";
constexpr const char* kRestartUserCore = "TRAINRR_OPENBLAS_RESTART_USER_CORE";

// The CPU this process runs on, as trainrr detects it (CPUID: an emulator's model where one runs it).
std::string this_cpu() { return cpu_model() + ", instruction set " + isa_name(detect_isa()); }

// A value of the recording's environment ("lib.openblas", "env.OPENBLAS_CORETYPE"), or "".
std::string recorded_value(const trace::TraceHeader& h, const std::string& key) {
  for (const auto& [k, value] : h.environment)
    if (k == key) return value;
  return "";
}

// Whether the recorded run ran on a GPU: its environment names the device ("cuda:0"), or, written before
// it did, holds the GPU's entries.
bool recorded_on_a_gpu(const trace::TraceHeader& h) {
  const std::string device = recorded_value(h, "device");
  if (!device.empty()) return device != "cpu";
  return !recorded_value(h, "gpu.name").empty() || !recorded_value(h, "gpu.error").empty();
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

// Runs this program again with the same arguments and OPENBLAS_CORETYPE=core; the restarted process reports
// `note`. Returns only if that failed: a note saying so.
std::vector<std::string> restart_with(const std::string& core, const std::string& note) {
  std::vector<std::string> args = own_arguments();
  std::string why = "its arguments could not be read from /proc/self/cmdline";
  if (!args.empty()) {
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const char* user = std::getenv("OPENBLAS_CORETYPE");
    ::setenv(kRestartUserCore, user ? ("=" + std::string(user)).c_str() : "", 1);
    ::setenv(kRestartCpu, this_cpu().c_str(), 1);
    ::setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
    ::setenv(kRestartNote, note.c_str(), 1);
    std::fflush(stdout);
    std::fflush(stderr);
    ::execv("/proc/self/exe", argv.data());
    why = std::strerror(errno);
    if (user)
      ::setenv("OPENBLAS_CORETYPE", std::getenv(kRestartUserCore) + 1, 1);
    else
      ::unsetenv("OPENBLAS_CORETYPE");
    ::unsetenv(kRestartNote);
    ::unsetenv(kRestartCpu);
    ::unsetenv(kRestartUserCore);
  }
  return {"restarting with OPENBLAS_CORETYPE=" + core + " failed (" + why + "): OpenBLAS runs its " +
          openblas_core() + " code"};
}

// In a restarted process: its note, or why OpenBLAS does not run the code asked for. nullopt otherwise.
// A restart that runs on another CPU than the one it was decided on (an emulator such as qemu-x86_64 runs
// the program a process starts natively) would replay or record on that CPU, not the one asked about: it
// stops with exit 3, saying how to run without a restart.
std::optional<std::vector<std::string>> restarted_notes() {
  const char* note = std::getenv(kRestartNote);
  if (!note) return std::nullopt;
  const std::string text = note;
  const char* from = std::getenv(kRestartCpu);
  const std::string from_cpu = from ? from : "";
  const char* user_core = std::getenv(kRestartUserCore);
  const std::string user = user_core ? user_core : "";
  ::unsetenv(kRestartNote);
  ::unsetenv(kRestartCpu);
  ::unsetenv(kRestartUserCore);
  const char* asked_env = std::getenv("OPENBLAS_CORETYPE");
  const std::string asked = asked_env ? asked_env : "";
  if (!from_cpu.empty() && from_cpu != this_cpu()) {
    print_error("trainrr restarted itself with OPENBLAS_CORETYPE=" + asked +
                " (OpenBLAS reads it only as it loads), and the restarted trainrr runs on another CPU (" +
                this_cpu() + ") than the one it was started on (" + from_cpu +
                "): an emulator that runs the programs a process starts natively (qemu-x86_64 without "
                "binfmt_misc) does this. Set OPENBLAS_CORETYPE=" +
                asked + " before starting trainrr, and it runs without a restart (OPENBLAS_CORETYPE=" +
                asked + " qemu-x86_64 -cpu MODEL trainrr ...)");
    std::exit(kCannotReplay);
  }
  // OpenBLAS has loaded its code: the run's environment is the one the user started trainrr with, so that
  // the trace and the replay's environment differences show the user's OPENBLAS_CORETYPE (the note says
  // what the restart set).
  if (user.starts_with("="))
    ::setenv("OPENBLAS_CORETYPE", user.c_str() + 1, 1);
  else if (user_core)
    ::unsetenv("OPENBLAS_CORETYPE");
  if (asked_env && openblas_same_core(openblas_core(), asked)) return std::vector<std::string>{text};
  return std::vector<std::string>{"OpenBLAS did not take OPENBLAS_CORETYPE=" + asked + " and runs its " +
                                  openblas_core() + " code"};
}

// Where OPENBLAS_CORETYPE made OpenBLAS load code this CPU cannot run: the note that says so. OpenBLAS was
// left out of the kernels (openblas_runs_here), so nothing dies of SIGILL. nullopt otherwise.
std::optional<std::vector<std::string>> unrunnable_core_notes() {
  if (openblas_runs_here()) return std::nullopt;
  const char* set = std::getenv("OPENBLAS_CORETYPE");
  return std::vector<std::string>{
      "OPENBLAS_CORETYPE=" + std::string(set ? set : "") + " makes OpenBLAS run its " + openblas_core() +
      " code, which this CPU (" + cpu_model() + ", instruction set " + isa_name(detect_isa()) + ") " +
      (openblas_core_known(openblas_core())
           ? "cannot run"
           : "may not run (trainrr does not know the instruction sets it takes)") +
      ": f32_matmul__openblas_sgemm is left out of the kernels and trainrr's own run instead"};
}

// OpenBLAS's best code within an instruction set, when this CPU runs it.
std::string best_core_within(Isa isa, const std::vector<std::string>& flags) {
  const char* core = isa == Isa::avx512 ? "SkylakeX" : isa == Isa::avx2 ? "Haswell" : "Prescott";
  return openblas_core_runs_on(core, flags, isa) ? core : "";
}

// Keeps OpenBLAS within TRAINRR_ISA, restarting with its best code there when its own pick needs more.
// `before` (a note about the recording's code, or "") leads the note.
std::vector<std::string> within_isa(const std::string& before) {
  const std::string have = openblas_core();
  auto unchanged = [&]() {
    return before.empty() ? std::vector<std::string>{}
                          : std::vector{before + ": OpenBLAS runs its " + have + " code here"};
  };
  auto isa = runtime_isa();
  if (!isa || *isa == detect_isa()) return unchanged();
  const std::vector<std::string> flags = cpu_flags();
  if (openblas_core_runs_on(have, flags, *isa)) return unchanged();
  const std::string want = best_core_within(*isa, flags);
  if (want.empty()) return unchanged();
  return restart_with(want, before + (before.empty() ? "" : ": ") + "OpenBLAS runs its " + want +
                                " code, the best within TRAINRR_ISA=" + isa_name(*isa) +
                                ", restarted with OPENBLAS_CORETYPE=" + want + " (this CPU's own pick is " +
                                have + ")");
}

}  // namespace

std::vector<std::string> use_recorded_openblas_core(const trace::TraceHeader& recorded) {
  if (auto notes = restarted_notes()) return *notes;
  if (auto notes = unrunnable_core_notes()) return *notes;
  // Only autotune ever picks OpenBLAS (it times it against trainrr's own kernels): a run of any other policy
  // called no OpenBLAS, and there is nothing to match and nothing to restart for. (A trace that does not
  // record its policy may have.)
  if (const std::string policy = recorded_value(recorded, "policy"); !policy.empty() && policy != "autotune")
    return {};
  // A run on a GPU ran its matmuls in cuBLASLt: the OpenBLAS code of its host made none of its numbers, and
  // a replay on the CPU runs this CPU's own (within TRAINRR_ISA).
  if (recorded_on_a_gpu(recorded)) return within_isa("");
  const std::string recorded_openblas = recorded_value(recorded, "lib.openblas");
  // The recording left OpenBLAS out of its kernels: its code made none of its numbers.
  if (recorded_openblas.ends_with(kOpenBlasLeftOut)) return within_isa("");
  const std::string want = openblas_core_in(recorded_openblas);
  const std::string have = openblas_core();
  if (const char* set = std::getenv("OPENBLAS_CORETYPE")) {
    if (want.empty() || want == have) return {};
    return {std::string("OPENBLAS_CORETYPE=") + set + " is set here: OpenBLAS runs its " + have +
            " code; the recording's ran its " + want + " code"};
  }
  auto isa = runtime_isa();
  if (!isa) return {};  // the replay reports the bad TRAINRR_ISA
  if (want.empty() || want == have) return within_isa("");
  if (openblas_core_runs_on(want, cpu_flags(), *isa)) {
    // The recording's own spelling, when it named the core itself: the environments then match.
    const std::string spelled = recorded_value(recorded, "env.OPENBLAS_CORETYPE");
    const std::string name = openblas_same_core(spelled, want) ? spelled : want;
    return restart_with(name, "OpenBLAS runs its " + want +
                                  " code, as recorded: the replay restarted with OPENBLAS_CORETYPE=" + name +
                                  " (this CPU's own pick is " + have + ")");
  }
  if (!openblas_core_known(want))
    return within_isa("the recording's OpenBLAS ran its " + want +
                      " code, whose instruction sets trainrr does not know, so it is not forced");
  return within_isa(
      "the recording's OpenBLAS ran its " + want + " code, which this CPU cannot run" +
      (*isa < detect_isa() ? std::string(" under TRAINRR_ISA=") + isa_name(*isa) : std::string()));
}

std::vector<std::string> keep_openblas_within_isa() {
  if (auto notes = restarted_notes()) return *notes;
  if (auto notes = unrunnable_core_notes()) return *notes;
  if (std::getenv("OPENBLAS_CORETYPE")) return {};  // the user's choice
  return within_isa("");
}

std::vector<std::string> openblas_fallback_notes() {
  if (std::getenv("OPENBLAS_CORETYPE")) return {};  // chosen, not a fallback
  auto isa = runtime_isa();
  if (!isa || *isa != detect_isa()) return {};
  const std::string have = openblas_core();
  const std::string better = openblas_better_core(have, cpu_flags(), *isa);
  if (better.empty()) return {};
  return {"OpenBLAS runs its " + have + " code on this CPU, which has " + isa_name(*isa) +
          ": this OpenBLAS does not know the CPU and falls back to older code, which is slower and rounds "
          "differently from OpenBLAS on CPUs it knows (OPENBLAS_CORETYPE=" +
          better + " runs its " + isa_name(*isa) + " code)"};
}

}  // namespace trainrr::cli
