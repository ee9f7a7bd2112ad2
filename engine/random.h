#pragma once
// Counter-based randomness (Philox4x32-10, as in Random123 and cuRAND). A stream is a key and a position:
// word w of a stream is element w % 4 of the Philox block whose 128-bit counter is w / 4, so a draw is
// fully described by (key, counter, count) and gives the same values on any machine, thread or split
// into calls. Each named stream has its own key, derived from the run seed and the name: an extra draw in
// one stream never shifts another.

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/counter_rng.h"
#include "engine/hooks.h"
#include "engine/portable_math.h"

namespace trainrr {

class ThreadPool;

// One Philox4x32-10 block.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// Words offset .. offset + out.size() - 1 of the stream with `key` (key = k0 | k1 << 32).
void philox_words(uint64_t key, uint64_t offset, std::span<uint32_t> out);

uint64_t stream_key(uint64_t seed, std::string_view stream);

// A uniform float in [0, 1) from the top 24 bits of a word (engine/counter_rng.h, shared with the GPU).
inline float uniform01(uint32_t w) { return rng::uniform01(w); }
// The standard normal quantile (inverse CDF), refined to double accuracy, with glibc's log, exp and erfc.
double normal_quantile(double p);
// The same with the portable log, exp and erfc (engine/portable_math.h): the same bits on every x86-64 CPU.
double normal_quantile_portable(double p);

// The permutation of 0..n-1 that RngStreams::permutation makes from these n-1 words (Fisher-Yates,
// multiply-shift bounding): a recorded shuffle draw is enough to rebuild its permutation.
void permutation_from_words(std::span<const uint32_t> words, std::vector<uint32_t>& perm, uint32_t n);
// The same from a recorded draw (its key, counter and count of words): the draw's words are drawn again.
void permutation_from_draw(const RngDraw& draw, std::vector<uint32_t>& perm, uint32_t n);

// A seed from the operating system's entropy source, below 2^63 (as a configuration can give one).
uint64_t entropy_seed();

// The named streams of one run. Draws go through the hooks (decision before, values after).
class RngStreams {
 public:
  RngStreams(uint64_t seed, Hooks& hooks) : seed_(seed), hooks_(&hooks) {}

  uint64_t seed() const { return seed_; }
  // The family normal and truncated_normal compute their quantiles with (Runtime::math).
  void set_math(MathFamily math) { math_ = math; }

  void uniform(std::string_view site, std::string_view stream, std::span<float> out, float lo, float hi);
  void normal(std::string_view site, std::string_view stream, std::span<float> out, float mean, float stddev);
  // Normal values within two standard deviations of the mean (Keras' truncated_normal), by quantile.
  void truncated_normal(std::string_view site, std::string_view stream, std::span<float> out, float mean,
                        float stddev);
  void words(std::string_view site, std::string_view stream, std::span<uint32_t> out);
  // A draw made elsewhere (on a device): the hooks' decision for `count` words of the stream, which
  // advances past them. The caller draws the words at the returned key and counter and shows the values
  // through drawn().
  RngDraw reserve(std::string_view site, std::string_view stream, uint64_t count);
  void drawn(const RngDraw& draw, std::span<const std::byte> values) { hooks_->rng_values(draw, values); }
  // A uniformly random permutation of 0..n-1 (Fisher-Yates, one word per swap, multiply-shift bounding).
  // Returns the draw that produced it.
  RngDraw permutation(std::string_view site, std::string_view stream, std::vector<uint32_t>& perm, uint32_t n);

  // Draws made while a scope is set come from the stream named `stream + scope` ("dropout/dropout_1#shard3"):
  // a data-parallel run draws each micro-batch shard's masks from that shard's own streams, so the values do
  // not depend on which rank computes the shard. Empty: the streams as named.
  void set_scope(std::string scope) { scope_ = std::move(scope); }

  // Stream positions, for checkpoints.
  std::vector<std::pair<std::string, uint64_t>> offsets() const;
  void restore(const std::vector<std::pair<std::string, uint64_t>>& offsets);

 private:
  // Asks the hooks, fills `out` with the stream's words, advances the stream; returns the draw.
  RngDraw draw_words(std::string_view site, std::string_view stream, std::span<uint32_t> out);

  uint64_t seed_;
  Hooks* hooks_;
  MathFamily math_ = MathFamily::libm;
  std::map<std::string, uint64_t, std::less<>> offsets_;
  std::vector<uint32_t> scratch_;
  std::string scope_;
};

}  // namespace trainrr
