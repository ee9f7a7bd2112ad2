#include "replayer/event_keys.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>

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

std::vector<AlignedEvent> align_events(const std::vector<std::string>& keys_a,
                                       const std::vector<std::string>& keys_b) {
  constexpr size_t kAlone = AlignedEvent::kAlone;
  const size_t na = keys_a.size(), nb = keys_b.size();
  std::vector<size_t> partner_a(na, kAlone), partner_b(nb, kAlone);
  {
    std::map<std::string_view, std::deque<size_t>> in_b;
    for (size_t j = 0; j < nb; ++j) in_b[keys_b[j]].push_back(j);
    for (size_t i = 0; i < na; ++i)
      if (auto& q = in_b[keys_a[i]]; !q.empty()) {
        partner_a[i] = q.front();
        partner_b[q.front()] = i;
        q.pop_front();
      }
  }
  std::vector<AlignedEvent> out;
  out.reserve(std::max(na, nb));
  std::vector<bool> done_a(na), done_b(nb);
  auto take = [&](size_t i, size_t j) {
    out.push_back({i, j});
    if (i != kAlone) done_a[i] = true;
    if (j != kAlone) done_b[j] = true;
  };
  for (size_t i = 0, j = 0;;) {
    while (i < na && done_a[i]) ++i;
    while (j < nb && done_b[j]) ++j;
    if (i == na && j == nb) break;
    // Once one run's events are all taken, the other's that are left it holds alone.
    const bool alone_a = i < na && partner_a[i] == kAlone, alone_b = j < nb && partner_b[j] == kAlone;
    if (i < na && j < nb && partner_a[i] == j) {
      take(i, j);
    } else if (alone_a && (!alone_b || keys_a[i] < keys_b[j])) {
      take(i, kAlone);
    } else if (alone_b) {
      take(kAlone, j);
    } else {
      // Two pairs that cross, (i, partner_a[i]) and (partner_b[j], j): the earlier by position first.
      const size_t at_a = i + partner_a[i], at_b = partner_b[j] + j;
      if (at_a < at_b || (at_a == at_b && keys_a[i] < keys_b[j]))
        take(i, partner_a[i]);
      else
        take(partner_b[j], j);
    }
  }
  return out;
}

// The key in hexadecimal, as `trainrr dump` prints it.
std::string draw_str(const RngDraw& d) {
  char key[17];
  std::snprintf(key, sizeof key, "%016llx", static_cast<unsigned long long>(d.key));
  return "stream " + d.stream + " key " + key + " counter " + std::to_string(d.counter) + " count " +
         std::to_string(d.count);
}

std::string digest_str(uint64_t digest) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(digest));
  return hex;
}

}  // namespace trainrr
