#include "python/src/py_stream.h"

#include <string_view>

namespace trainrr::py {
namespace {

namespace pyb = pybind11;

struct Target {
  pyb::object stream;
};

ssize_t write_to_python(void* cookie, const char* data, size_t size) {
  auto* target = static_cast<Target*>(cookie);
  pyb::gil_scoped_acquire gil;
  try {
    // The engine writes ASCII and UTF-8 names; a byte that is not UTF-8 must not stop a run.
    PyObject* text = PyUnicode_DecodeUTF8(data, static_cast<Py_ssize_t>(size), "replace");
    if (!text) throw pyb::error_already_set();
    target->stream.attr("write")(pyb::reinterpret_steal<pyb::object>(text));
    target->stream.attr("flush")();
  } catch (const pyb::error_already_set&) {
    // A closed or failing stream: the output is lost, the run is not.
  }
  return static_cast<ssize_t>(size);
}

int close_python(void* cookie) {
  pyb::gil_scoped_acquire gil;
  delete static_cast<Target*>(cookie);
  return 0;
}

}  // namespace

OwnedFile open_python_stream(pyb::object target) {
  if (target.is_none()) return nullptr;
  cookie_io_functions_t io{};
  io.write = write_to_python;
  io.close = close_python;
  FILE* f = fopencookie(new Target{std::move(target)}, "w", io);
  if (!f) return nullptr;
  // A line at a time: the progress bar flushes itself, and the epoch lines end in '\n'.
  std::setvbuf(f, nullptr, _IOLBF, 4096);
  return OwnedFile(f);
}

}  // namespace trainrr::py
