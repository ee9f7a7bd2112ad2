#pragma once
// How replay and diff align events: by (kind, site) within a step, occurrence by occurrence, so that an
// extra or missing event is reported as such and does not shift every event after it.

#include <string>
#include <string_view>
#include <vector>

#include "traces/trace.h"

namespace trainrr {

std::string key_rng(std::string_view site);
std::string key_split(std::string_view site);
std::string key_shuffle(std::string_view site);
std::string key_batch();
std::string key_kernel(std::string_view site);
std::string key_order(std::string_view site);
std::string key_probe(std::string_view site, Phase phase);

// The key of a recorded event, and the site a key names.
std::string event_key(const trace::Event& e);
std::string site_of_key(const std::string& key);
// The part of training the event a key names belongs to, as event_phase() says it: an event one side has
// and the other lacks is placed where it happens ("forward" for a dropout mask's draw).
std::string phase_of_key(const std::string& key);

// One step's events of two runs aligned: `a` and `b` index each run's events, an event one run alone holds
// has kAlone on the other side.
struct AlignedEvent {
  static constexpr size_t kAlone = static_cast<size_t>(-1);
  size_t a = kAlone, b = kAlone;
  bool operator==(const AlignedEvent&) const = default;
};
// The events of one step of two runs, by their keys in the order each run made them, aligned by key
// occurrence by occurrence and put in the order of the step, whichever run holds an event the other lacks:
// an event one run alone holds comes where it stands, ahead of the pairs after it. The order is the same with
// the runs swapped: where both hold an event alone at the same point, or two pairs cross (the same events in
// another order), the one earlier by position, then by key, comes first.
std::vector<AlignedEvent> align_events(const std::vector<std::string>& keys_a,
                                       const std::vector<std::string>& keys_b);

// "stream S key K counter C count N", for reports.
std::string draw_str(const RngDraw& d);
// A digest of recorded values in hexadecimal, as `trainrr dump` prints it ("digest=").
std::string digest_str(uint64_t digest);

}  // namespace trainrr
