#pragma once
// Whether a trace's recorded draws and shuffles are ones its run can have made, from the trace alone: a
// draw's key is the run seed and the stream's name alone (stream_key), its counter follows the trace's own
// earlier draws of the stream, and a shuffle's order is the one its recorded draw gives. replay and diff name
// a draw of another key, or an order its draw does not give, as the trace's (no run makes either, whatever a
// replay draws); bisect lists all three among the trace's suspects.

#include <cstdint>
#include <map>
#include <string>

#include "engine/random.h"
#include "traces/trace.h"

namespace trainrr {

// Why the run seeded `seed` cannot have drawn `draw` at its key (holding kKeyNotOfItsSeed), or "" when it
// can.
std::string key_not_of_its_seed(const RngDraw& draw, uint64_t seed);

// The trace's own draws of each stream, taken in order.
class DrawBook {
 public:
  // Takes `draw` (the next recorded draw of its stream) and says why it is not where the trace's earlier
  // draws of the stream leave it (holding kCounterNotWhereItsStreamStood), or "" when it is.
  std::string take(const RngDraw& draw);

 private:
  std::map<std::string, uint64_t> next_;
};

// Why a recorded shuffle's order is not the one its recorded draw gives (holding kOrderNotOfItsDraw), or ""
// when it is, or when it has no draw of its length to give one.
std::string order_not_of_its_draw(const trace::ShuffleEvent& shuffle);

}  // namespace trainrr
