#include "traces/trace.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>

#include "engine/config.h"
#include "engine/data/file_io.h"
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

bool is_known_dataset_name(std::string_view name) {
  return name == "data" || name == "features" || name == "labels";
}

std::string known_dataset_names() { return "'data', 'features' or 'labels'"; }

std::optional<Schedule> recorded_schedule(const TraceHeader& header, uint64_t train_rows) {
  auto config = parse_config(header.config, "the recorded configuration", "", header.config_overrides);
  if (!config || config->train.batch_size <= 0 || config->train.epochs < 0 ||
      train_rows > static_cast<uint64_t>(INT64_MAX))
    return std::nullopt;
  const auto rows = static_cast<int64_t>(train_rows), batch = config->train.batch_size;
  return Schedule{config->train.epochs, rows / batch + (rows % batch != 0)};  // as Training::steps_per_epoch
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

bool is_moving_statistics_probe(std::string_view site) {
  return site.ends_with("/moving_stats.fwd:out") || site.ends_with(":moving_stats");
}

bool probe_recorded_in(std::string_view site, const TraceHeader& h) {
  return probe_recorded_at(site, h.level) && (h.moving_statistics || !is_moving_statistics_probe(site));
}

bool is_combined(const std::vector<std::pair<std::string, uint64_t>>& recorded) {
  return recorded.size() == 1 && recorded[0].first == kAllParameters;
}

std::string parameters_disagree(const std::vector<std::pair<std::string, uint64_t>>& model,
                                const std::vector<std::pair<std::string, uint64_t>>& recorded) {
  if (recorded.empty()) return "";
  if (is_combined(recorded)) {
    // A model without parameters (an Activation layer alone) has the digest over none of them.
    for (size_t n = model.empty() ? 0 : 1; n <= model.size(); ++n) {
      std::vector<std::pair<std::string, uint64_t>> first(model.begin(),
                                                          model.begin() + static_cast<std::ptrdiff_t>(n));
      if (parameter_digests(std::move(first), ProbeLevel::step)[0].second == recorded[0].second) return "";
    }
    return "the digest over all of them differs";
  }
  for (const auto& entry : recorded) {
    const std::string& name = entry.first;
    auto it = std::find_if(model.begin(), model.end(), [&name](const auto& m) { return m.first == name; });
    if (it == model.end()) return "it holds no parameter '" + name + "'";
    if (it->second != entry.second) return "the digest of '" + name + "' differs";
  }
  return "";
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

struct KernelSequenceDigest::State {
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> xxh{XXH3_createState(), &XXH3_freeState};
};

KernelSequenceDigest::KernelSequenceDigest() : state_(std::make_unique<State>()) {
  if (!state_->xxh) throw std::bad_alloc();
  XXH3_64bits_reset(state_->xxh.get());
}

KernelSequenceDigest::~KernelSequenceDigest() = default;

void KernelSequenceDigest::add(std::string_view name, const uint32_t (&grid)[3], const uint32_t (&block)[3]) {
  uint8_t word[4];
  auto put = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) word[i] = static_cast<uint8_t>(v >> (8 * i));
    XXH3_64bits_update(state_->xxh.get(), word, sizeof word);
  };
  put(static_cast<uint32_t>(name.size()));
  XXH3_64bits_update(state_->xxh.get(), name.data(), name.size());
  for (uint32_t v : grid) put(v);
  for (uint32_t v : block) put(v);
}

void KernelSequenceDigest::add(const KernelLaunch& k) {
  const uint32_t grid[3] = {k.grid_x, k.grid_y, k.grid_z}, block[3] = {k.block_x, k.block_y, k.block_z};
  add(k.name, grid, block);
}

uint64_t KernelSequenceDigest::value() const { return XXH3_64bits_digest(state_->xxh.get()); }

uint64_t kernel_sequence_digest(std::span<const KernelLaunch> launches) {
  KernelSequenceDigest d;
  for (const KernelLaunch& k : launches) d.add(k);
  return d.value();
}

StepKernels step_kernels(std::vector<KernelLaunch> launches, uint64_t dropped, ProbeLevel level) {
  StepKernels out;
  out.count = launches.size();
  out.digest = kernel_sequence_digest(launches);
  out.dropped = dropped;
  for (const KernelLaunch& k : launches) out.unattributed += k.site == kUnattributedSite;
  if (level != ProbeLevel::step) out.launches = std::move(launches);
  return out;
}

std::string check_step_kernels(const StepKernels& k, ProbeLevel level) {
  if (k.unattributed > k.count)
    return "kernel records: " + std::to_string(k.unattributed) + " unattributed of " + std::to_string(k.count) +
           " kernels";
  if (k.launches.empty()) return {};
  if (level == ProbeLevel::step) return "kernel records: a step at level step lists its launches";
  if (k.launches.size() != k.count)
    return "kernel records: " + std::to_string(k.launches.size()) + " launches listed for a count of " +
           std::to_string(k.count);
  uint64_t unattributed = 0;
  for (size_t i = 0; i < k.launches.size(); ++i) {
    const KernelLaunch& l = k.launches[i];
    if (!l.grid_x || !l.grid_y || !l.grid_z || !l.block_x || !l.block_y || !l.block_z)
      return "kernel records: launch " + std::to_string(i) + " has a grid or block dimension of 0";
    unattributed += l.site == kUnattributedSite;
  }
  if (unattributed != k.unattributed)
    return "kernel records: " + std::to_string(unattributed) + " launches at " + std::string(kUnattributedSite) +
           " for an unattributed count of " + std::to_string(k.unattributed);
  if (kernel_sequence_digest(k.launches) != k.digest)
    return "kernel records: the digest is not that of the launches listed";
  return {};
}

Digest128 digest128_bytes(std::span<const uint8_t> bytes) {
  XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return {h.low64, h.high64};
}

Result<FileDigest> digest_regular_file(const std::string& path, std::optional<uint64_t> expected_size) {
  // O_NONBLOCK: the open of a named pipe does not wait for a writer, and a file that only looks regular
  // (/proc/kmsg) answers EAGAIN rather than blocking; a real regular file reads as without it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Error{path + ": cannot open for digesting: " + std::strerror(errno)};
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) return Error{path + ": cannot examine: " + std::strerror(errno)};
  if (!S_ISREG(st.st_mode)) {
    const char* kind = special_file_kind(path);
    return Error{path + ": not a regular file (it is " + (kind ? kind : "not a file") +
                 "); a data set is a file"};
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (expected_size && size != *expected_size) return FileDigest{Digest128{}, size, false};
  std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(), &XXH3_freeState);
  XXH3_128bits_reset(state.get());
  // A fixed block keeps memory flat whatever the size of the data set.
  constexpr size_t kBlock = 1 << 20;
  std::unique_ptr<uint8_t[]> block(new uint8_t[kBlock]);
  uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, block.get(), kBlock);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error{path + ": read failed while digesting: " + std::strerror(errno)};
    if (n == 0) break;
    total += static_cast<uint64_t>(n);
    // Reading stops at the size the file had when it was opened, and one block more: a file that keeps
    // growing is not read forever.
    if (total > size + kBlock)
      return Error{path + ": the file grew while it was being read (" + std::to_string(size) + " bytes at first)"};
    XXH3_128bits_update(state.get(), block.get(), static_cast<size_t>(n));
  }
  XXH128_hash_t h = XXH3_128bits_digest(state.get());
  return FileDigest{Digest128{h.low64, h.high64}, total, true};
}

Result<Digest128> digest128_file(const std::string& path) {
  auto d = digest_regular_file(path);
  if (!d) return d.error();
  return d->digest;
}

}  // namespace trainrr::trace
