#pragma once
// NVIDIA's libraries opened at run time (dlopen), once per process: cuBLASLt, cuDNN and CUPTI are hundreds of
// megabytes that only a run on the GPU needs, and a trainrr that does not link them starts as fast as one
// without the backend, and runs where they are not installed.

#include <dlfcn.h>

#include <memory>
#include <mutex>
#include <string>

#include "engine/result.h"

namespace trainrr::cuda {

class DynamicLibrary {
 public:
  // `file` as the loader finds it ("libcublasLt.so.13"); `what` names it for people ("cuBLASLt 13").
  static Result<DynamicLibrary> open(const char* file, const char* what) {
    void* handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* why = dlerror();
      return Error{std::string("cannot load ") + what + " (" + file + "): " + (why ? why : "unknown reason")};
    }
    return DynamicLibrary(handle, file, what);
  }

  // The function `name` into `out`, typed as the library's header declares it (decltype(&::name)).
  template <class F>
  Status resolve(F*& out, const char* name) const {
    out = reinterpret_cast<F*>(dlsym(handle_, name));
    if (!out) return Error{file_ + " has no " + name + ": it is not the " + what_ + " trainrr was built for"};
    return {};
  }

  // Never closed: the libraries keep process-wide state (handles, subscribers, buffers) past a dlclose.
  void* handle() const { return handle_; }

 private:
  DynamicLibrary(void* handle, std::string file, std::string what)
      : handle_(handle), file_(std::move(file)), what_(std::move(what)) {}
  void* handle_;
  std::string file_, what_;
};

// The process's one T, made by `make` (a Result<std::unique_ptr<T>>) on first use; a failure is kept and
// returned to every later call, so a missing library is looked for once.
template <class T, class Make>
Result<T*> load_once(const Make& make) {
  static std::mutex mu;
  static std::unique_ptr<T> loaded;
  static std::string failure;
  std::lock_guard<std::mutex> lock(mu);
  if (loaded) return loaded.get();
  if (!failure.empty()) return Error{failure};
  Result<std::unique_ptr<T>> made = make();
  if (!made) {
    failure = made.error().message;
    return Error{failure};
  }
  loaded = std::move(made).value();
  return loaded.get();
}

}  // namespace trainrr::cuda
