#include "python/src/sigint.h"

namespace trainrr::py {
namespace {

// The flag Ctrl-C sets: a signal handler can only reach a global.
std::atomic<std::atomic<bool>*> g_sigint_target{nullptr};
extern "C" void on_sigint(int) {
  if (std::atomic<bool>* target = g_sigint_target.load()) target->store(true);
}

}  // namespace

SigintScope::SigintScope(bool active, std::atomic<bool>& target) : active_(active) {
  if (!active_) return;
  g_sigint_target.store(&target);
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  active_ = sigaction(SIGINT, &sa, &previous_) == 0;
  // A Ctrl-C the process ignores (a script a shell started in the background) stays ignored, as Python
  // leaves it.
  if (active_ && previous_.sa_handler == SIG_IGN) {
    sigaction(SIGINT, &previous_, nullptr);
    g_sigint_target.store(nullptr);
    active_ = false;
  }
}

SigintScope::~SigintScope() {
  if (!active_) return;
  sigaction(SIGINT, &previous_, nullptr);
  g_sigint_target.store(nullptr);
}

}  // namespace trainrr::py
