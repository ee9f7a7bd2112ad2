#include "replayer/event_keys.h"

#include <cstdio>

#include "replayer/divergence.h"

namespace trainrr {

std::string key_rng(std::string_view site) { return "rng|" + std::string(site); }
std::string key_split(std::string_view site) { return "split|" + std::string(site); }
std::string key_shuffle(std::string_view site) { return "shuffle|" + std::string(site); }
std::string key_batch() { return "batch|data/loader"; }
std::string key_kernel(std::string_view site) { return "kernel|" + std::string(site); }
std::string key_order(std::string_view site) { return "order|" + std::string(site); }
std::string key_probe(std::string_view site, Phase phase) {
  return "probe|" + std::string(site) + "|" + phase_name(phase);
}

std::string event_key(const trace::Event& e) {
  if (auto* r = std::get_if<trace::RngDrawEvent>(&e)) return key_rng(r->draw.site);
  if (auto* s = std::get_if<trace::SplitEvent>(&e)) return key_split(s->site);
  if (auto* s = std::get_if<trace::ShuffleEvent>(&e)) return key_shuffle(s->site);
  if (std::holds_alternative<trace::BatchOrderEvent>(e)) return key_batch();
  if (auto* k = std::get_if<KernelChoice>(&e)) return key_kernel(k->site);
  if (auto* a = std::get_if<trace::AccumulationOrderEvent>(&e)) return key_order(a->site);
  const auto& p = std::get<trace::ProbeEvent>(e);
  return key_probe(p.site, p.phase);
}

std::string site_of_key(const std::string& key) {
  const std::string rest = key.substr(key.find('|') + 1);
  return rest.substr(0, rest.find('|'));
}

std::string phase_of_key(const std::string& key) {
  const std::string kind = key.substr(0, key.find('|'));
  if (kind == "probe") return key.substr(key.rfind('|') + 1);
  if (kind == "batch") return event_phase("loader", site_of_key(key));
  return event_phase(kind, site_of_key(key));
}

// The key in hexadecimal, as `trainrr dump` prints it.
std::string draw_str(const RngDraw& d) {
  char key[17];
  std::snprintf(key, sizeof key, "%016llx", static_cast<unsigned long long>(d.key));
  return "stream " + d.stream + " key " + key + " counter " + std::to_string(d.counter) + " count " +
         std::to_string(d.count);
}

}  // namespace trainrr
