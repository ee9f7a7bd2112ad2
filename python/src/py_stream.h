#pragma once
// A C stream whose writes go to a Python file object (sys.stdout, a notebook's output), so that the engine's
// epoch lines and progress bar show where Python's own output does. The engine writes with the GIL
// released: each write takes it back for the length of the call.

#include <pybind11/pybind11.h>

#include <cstdio>
#include <memory>

namespace trainrr::py {

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};
using OwnedFile = std::unique_ptr<FILE, FileCloser>;

// Null when `target` is None. Writes that the Python object refuses are dropped (the run goes on).
OwnedFile open_python_stream(pybind11::object target);

}  // namespace trainrr::py
