#pragma once
// Errors at the boundaries (files, configuration, traces, command line) come back as values.
// Inside the engine a failed check is a bug: TRAINRR_CHECK aborts with the condition and place.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace trainrr {

struct Error {
  std::string message;
  // Not the input's fault: this machine has not what the run takes (its memory). A replay says "cannot replay
  // here" for it.
  bool machine = false;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design, like std::expected
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success or an error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

[[noreturn]] inline void check_failed(const char* cond, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "trainrr: internal check failed: %s at %s:%d %s\n", cond, file, line, msg.c_str());
  std::abort();
}

}  // namespace trainrr

#define TRAINRR_CHECK(cond, ...)                                                    \
  do {                                                                              \
    if (!(cond)) ::trainrr::check_failed(#cond, __FILE__, __LINE__, std::string{__VA_ARGS__}); \
  } while (0)
