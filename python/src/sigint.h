#pragma once
// Ctrl-C for what the module runs with the GIL released (fit, replay, bisect): while a SigintScope lives,
// SIGINT sets a flag that the run checks between steps, in place of Python's handler, which would only raise
// KeyboardInterrupt once the call returned. The handler before it (Python's own) comes back afterwards.

#include <signal.h>

#include <atomic>

namespace trainrr::py {

class SigintScope {
 public:
  // `active`: only in Python's main thread, where Python itself handles SIGINT.
  SigintScope(bool active, std::atomic<bool>& target);
  ~SigintScope();
  SigintScope(const SigintScope&) = delete;
  SigintScope& operator=(const SigintScope&) = delete;

 private:
  bool active_;
  struct sigaction previous_ {};
};

}  // namespace trainrr::py
