#include "traces/trace.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "engine/fingerprint.h"

namespace trainrr::trace {

std::vector<std::pair<std::string, uint64_t>> parameter_digests(
    const std::vector<std::pair<std::string, const Tensor*>>& params, ProbeLevel level) {
  std::vector<std::pair<std::string, uint64_t>> each;
  each.reserve(params.size());
  for (const auto& [name, t] : params) each.emplace_back(name, digest(*t));
  return parameter_digests(std::move(each), level);
}

std::vector<std::pair<std::string, uint64_t>> parameter_digests(std::vector<std::pair<std::string, uint64_t>> each,
                                                               ProbeLevel level) {
  if (level != ProbeLevel::step) return each;
  std::vector<uint64_t> digests;
  digests.reserve(each.size());
  for (const auto& [name, d] : each) digests.push_back(d);
  return {{std::string(kAllParameters), digest_bytes(digests.data(), digests.size() * sizeof(uint64_t))}};
}

bool probe_recorded_at(std::string_view site, ProbeLevel level) {
  switch (level) {
    case ProbeLevel::op:
      return true;
    case ProbeLevel::layer:
      return site.find('/') == std::string_view::npos;
    case ProbeLevel::step:
      return false;
  }
  return false;
}

bool is_combined(const std::vector<std::pair<std::string, uint64_t>>& recorded) {
  return recorded.size() == 1 && recorded[0].first == kAllParameters;
}

uint32_t message_digest(std::span<const uint8_t> packed) {
  const uint32_t low = static_cast<uint32_t>(XXH3_64bits(packed.data(), packed.size()));
  return low == 0 ? 1 : low;
}

uint32_t footer_digest(const TraceFooter& f) {
  std::vector<uint8_t> bytes;
  auto put = [&bytes](uint64_t v) {
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  put(f.completed ? 1 : 0);
  put(static_cast<uint64_t>(f.step_count));
  put(f.event_count);
  put(f.checkpoints.size());
  for (const CheckpointRef& c : f.checkpoints) {
    put(static_cast<uint64_t>(c.step));
    put(c.offset);
  }
  bytes.insert(bytes.end(), f.end_reason.begin(), f.end_reason.end());
  return message_digest(bytes);
}

Digest128 digest128_bytes(std::span<const uint8_t> bytes) {
  XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return {h.low64, h.high64};
}

Result<Digest128> digest128_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{path + ": cannot open for digesting: " + std::strerror(errno)};
  XXH3_state_t* state = XXH3_createState();
  XXH3_128bits_reset(state);
  // A fixed block keeps memory flat whatever the size of the data set.
  std::unique_ptr<uint8_t[]> block(new uint8_t[1 << 20]);
  for (;;) {
    ssize_t n = ::read(fd, block.get(), 1 << 20);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string why = std::strerror(errno);
      XXH3_freeState(state);
      ::close(fd);
      return Error{path + ": read failed while digesting: " + why};
    }
    if (n == 0) break;
    XXH3_128bits_update(state, block.get(), static_cast<size_t>(n));
  }
  XXH128_hash_t h = XXH3_128bits_digest(state);
  XXH3_freeState(state);
  ::close(fd);
  return Digest128{h.low64, h.high64};
}

}  // namespace trainrr::trace
