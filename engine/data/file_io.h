#pragma once
// Whole-file reads and writes for the data readers, with errors that name the file and the system's reason,
// and loads of fixed-size values from untrusted bytes in a stated byte order, whatever the host's.

#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "engine/result.h"

namespace trainrr {

// For messages: what a path that exists but is not a regular file is ("a directory", "a character device",
// "a named pipe", ...); null for a regular file, or a path that does not exist or cannot be examined.
const char* special_file_kind(const std::string& path);

// The bytes of `path`, which must be a regular file: a directory, a device (/dev/zero never ends) or a pipe
// is refused with "PATH: not a regular file". Memory used is bounded by the file's real size, never by what
// its contents claim.
Result<std::string> read_file_bytes(const std::string& path);

// Writes `bytes` to `path`, replacing it.
Status write_file_bytes(const std::string& path, std::string_view bytes);

// The byte count of an array with `dims` and `item_bytes` per element, or false when it would exceed
// `limit` (or overflow on the way): a bogus header must never turn into an allocation.
bool array_bytes_within(std::span<const int64_t> dims, uint64_t item_bytes, uint64_t limit, uint64_t& bytes);

// Converts the `out.size()` float64 values at `p`, stored in byte order `order`, to float32. A finite value
// beyond float32's range would turn into an infinity that the file does not hold: then false, with `problem`
// naming the first such value and its row ("row 2 holds 1e+300, which float32 cannot hold"), rows counted
// along the first of `dims` as the trainer counts them (a scalar or a vector: one row per value).
bool float64_to_float32(const unsigned char* p, std::endian order, std::span<const int64_t> dims,
                        std::vector<float>& out, std::string& problem);

namespace detail {
template <size_t N>
using UintOf = std::conditional_t<N == 1, uint8_t,
                                  std::conditional_t<N == 2, uint16_t, std::conditional_t<N == 4, uint32_t, uint64_t>>>;
}  // namespace detail

template <class T>
T load_le(const unsigned char* p) {
  using U = detail::UintOf<sizeof(T)>;
  U u = 0;
  for (size_t i = 0; i < sizeof(T); ++i) u |= static_cast<U>(static_cast<U>(p[i]) << (8 * i));
  return std::bit_cast<T>(u);
}

template <class T>
T load_be(const unsigned char* p) {
  using U = detail::UintOf<sizeof(T)>;
  U u = 0;
  for (size_t i = 0; i < sizeof(T); ++i) u = static_cast<U>((static_cast<uint64_t>(u) << 8) | p[i]);
  return std::bit_cast<T>(u);
}

}  // namespace trainrr
