#pragma once
// How replay and diff align events: by (kind, site) within a step, occurrence by occurrence, so that an
// extra or missing event is reported as such and does not shift every event after it.

#include <string>
#include <string_view>

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

// "stream S key K counter C count N", for reports.
std::string draw_str(const RngDraw& d);

}  // namespace trainrr
