#include "replayer/draw_consistency.h"

#include <span>
#include <vector>

#include "engine/fingerprint.h"
#include "replayer/cause.h"
#include "replayer/event_keys.h"

namespace trainrr {

std::string key_not_of_its_seed(const RngDraw& draw, uint64_t seed) {
  const uint64_t key = stream_key(seed, draw.stream);
  if (draw.key == key) return {};
  return "the recorded key " + digest_str(draw.key) + " " + std::string(kKeyNotOfItsSeed) + " " +
         draw.stream + " (seed " + std::to_string(seed) + " gives it " + digest_str(key) + ")";
}

std::string DrawBook::take(const RngDraw& draw) {
  const auto next = next_.find(draw.stream);
  const uint64_t expected = next == next_.end() ? 0 : next->second;
  next_[draw.stream] = draw.counter + draw.count;
  if (draw.counter == expected) return {};
  return "the recorded counter " + std::to_string(draw.counter) + " " +
         std::string(kCounterNotWhereItsStreamStood) + " " + draw.stream + " (counter " +
         std::to_string(expected) + ")";
}

std::string order_not_of_its_draw(const trace::ShuffleEvent& shuffle) {
  if (!shuffle.draw || shuffle.length > UINT32_MAX ||
      shuffle.draw->count != (shuffle.length > 1 ? shuffle.length - 1 : 0))
    return {};
  std::vector<uint32_t> perm;
  permutation_from_draw(*shuffle.draw, perm, static_cast<uint32_t>(shuffle.length));
  if (digest(std::span<const uint32_t>(perm)) == shuffle.digest) return {};
  return std::string(kOrderNotOfItsDraw) + " (" + draw_str(*shuffle.draw) + ")";
}

}  // namespace trainrr
