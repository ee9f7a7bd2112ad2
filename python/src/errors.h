#pragma once
// Errors the module raises in Python: the engine's message, with the kind of input that was wrong.
// module.cc translates each kind to its exception class (trainrr.ConfigError, DataError, TraceError; Ctrl-C
// that stopped a replay or bisect: KeyboardInterrupt).

#include <stdexcept>
#include <string>

namespace trainrr::py {

// machine: the input is right and this machine lacks what it takes (memory): DeviceError, as exit status 3.
enum class ErrorKind { config, data, trace, interrupted, machine };

struct PyError : std::runtime_error {
  PyError(ErrorKind k, const std::string& message) : std::runtime_error(message), kind(k) {}
  ErrorKind kind;
};

[[noreturn]] inline void raise(ErrorKind kind, const std::string& message) { throw PyError(kind, message); }

}  // namespace trainrr::py
