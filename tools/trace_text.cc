#include "tools/trace_text.h"

#include "engine/kernels/blaslt_choice.h"
#include "engine/kernels/conv_sites.h"
#include "engine/kernels/cudnn_choice.h"

#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <type_traits>

#include "engine/fingerprint.h"

namespace trainrr::cli {

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

std::string hex128(const trace::Digest128& d) { return hex64(d.high) + hex64(d.low); }

void append_item(std::string& list, size_t i, const char* separator, const std::string& item) {
  if (i) list += separator;
  list += item;
}

std::string number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string json_number(double v) { return std::isfinite(v) ? number(v) : "\"" + number(v) + "\""; }

std::string epoch_number(int64_t epoch) { return std::to_string(epoch + 1); }

void print_error(std::string_view message) {
  // One line: a newline in it came from a string it quotes.
  std::fprintf(stderr, "trainrr: %s\n", inline_text(message).c_str());
}

namespace {

template <class T>
std::string join_numbers(std::span<const T> values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    if constexpr (std::is_floating_point_v<T>)
      out += json_number(values[i]);
    else
      out += std::to_string(values[i]);
  }
  return out + "]";
}

// "a=1 b=2" for text lines.
std::string pairs_text(std::span<const std::pair<std::string, double>> values) {
  std::string out;
  for (const auto& [k, v] : values) out += (out.empty() ? "" : " ") + k + "=" + number(v);
  return out;
}

std::string pairs_text(std::span<const std::pair<std::string, uint64_t>> values) {
  std::string out;
  for (const auto& [k, v] : values) out += (out.empty() ? "" : " ") + k + "=" + hex64(v);
  return out;
}

std::string draw_text(const RngDraw& d) {
  return "stream=" + d.stream + " key=" + hex64(d.key) + " counter=" + std::to_string(d.counter) +
         " count=" + std::to_string(d.count);
}

std::string draw_json(const RngDraw& d) {
  return JsonObject()
      .str("site", d.site)
      .str("stream", d.stream)
      .str("key", hex64(d.key))
      .uinteger("counter", d.counter)
      .uinteger("count", d.count)
      .done();
}

std::string digest_of(const std::vector<uint32_t>& rows) {
  return hex64(digest(std::span<const uint32_t>(rows)));
}

// Event kinds beyond the six above (the accumulation order of completion-order kernels, and kinds added
// later): printed from what they hold, so a new kind never makes dump throw.
std::string other_event(int64_t step, const trace::Event& e, bool json) {
  return std::visit(
      [&](const auto& v) -> std::string {
        if constexpr (requires {
                        v.site;
                        v.order;
                      }) {
          std::span<const uint32_t> order(v.order);
          if (json)
            return JsonObject()
                .str("type", "accumulation")
                .integer("step", step)
                .str("site", v.site)
                .raw("order", json_array(order))
                .done();
          std::string line = "step " + std::to_string(step) + " accumulation " + v.site + " order=[";
          for (size_t i = 0; i < order.size(); ++i) append_item(line, i, " ", std::to_string(order[i]));
          return line + "]";
        } else {
          const std::string kind = "event kind " + std::to_string(e.index());
          if (json) return JsonObject().str("type", "unknown").integer("step", step).str("kind", kind).done();
          return "step " + std::to_string(step) + " " + kind + " (not known to this dump)";
        }
      },
      e);
}

}  // namespace


void JsonObject::key(std::string_view k) {
  if (text_.size() > 1) text_ += ',';
  text_ += json_string(k);
  text_ += ':';
}

JsonObject& JsonObject::str(std::string_view k, std::string_view value) {
  key(k);
  text_ += json_string(value);
  return *this;
}

JsonObject& JsonObject::num(std::string_view k, double value) {
  key(k);
  text_ += json_number(value);
  return *this;
}

JsonObject& JsonObject::integer(std::string_view k, int64_t value) {
  key(k);
  text_ += std::to_string(value);
  return *this;
}

JsonObject& JsonObject::uinteger(std::string_view k, uint64_t value) {
  key(k);
  text_ += std::to_string(value);
  return *this;
}

JsonObject& JsonObject::boolean(std::string_view k, bool value) {
  key(k);
  text_ += value ? "true" : "false";
  return *this;
}

JsonObject& JsonObject::null(std::string_view k) {
  key(k);
  text_ += "null";
  return *this;
}

JsonObject& JsonObject::raw(std::string_view k, std::string_view json) {
  key(k);
  text_ += json;
  return *this;
}

std::string json_array(std::span<const std::string> strings) {
  std::string out = "[";
  for (size_t i = 0; i < strings.size(); ++i) append_item(out, i, ",", json_string(strings[i]));
  return out + "]";
}

std::string json_array(std::span<const uint32_t> values) { return join_numbers(values); }
std::string json_array(std::span<const int64_t> values) { return join_numbers(values); }
std::string json_array(std::span<const double> values) { return join_numbers(values); }

std::string json_map(std::span<const std::pair<std::string, double>> values) {
  JsonObject o;
  for (const auto& [k, v] : values) o.num(k, v);
  return o.done();
}

std::string json_map(std::span<const std::pair<std::string, uint64_t>> values, bool hex) {
  JsonObject o;
  for (const auto& [k, v] : values) hex ? o.str(k, hex64(v)) : o.uinteger(k, v);
  return o.done();
}

std::string json_map(std::span<const std::pair<std::string, std::string>> values) {
  JsonObject o;
  for (const auto& [k, v] : values) o.str(k, v);
  return o.done();
}

std::string header_text(const trace::TraceHeader& h) {
  // One line each: the trace's strings are escaped to stay on theirs.
  const auto f = [](std::string_view s) { return inline_text(s); };
  std::string out = "header format=" + std::to_string(h.format_version) + " writer=" + f(h.writer_version) +
                    " min_reader=" + std::to_string(h.min_reader_version) + " config=" + f(h.config_path) +
                    " seed=" + std::to_string(h.seed) + (h.seed_from_entropy ? " (from the OS)" : "") +
                    " level=" + probe_level_name(h.level) +
                    " checkpoint_every=" + std::to_string(h.checkpoint_every) + "\n";
  for (const auto& o : h.config_overrides) out += "override " + f(o) + "\n";
  for (const auto& [k, v] : h.environment) out += "env " + f(k) + "=" + f(v) + "\n";
  for (const auto& d : h.datasets)
    out += "dataset " + f(d.name) + " path=" + f(d.path) + " size=" + std::to_string(d.size_bytes) +
           " digest=" + hex128(d.digest) + (d.is_embedded() ? " embedded" : "") + "\n";
  // Said only where there is something to say: a CPU trace has no GPU kernels to mention.
  if (h.kernels_recorded) out += "gpu_kernels recorded\n";
  else if (!h.kernels_not_recorded.empty())
    out += "gpu_kernels not_recorded reason=" + f(h.kernels_not_recorded) + "\n";
  return out;
}

std::string header_json(const trace::TraceHeader& h) {
  std::string datasets = "[";
  for (size_t i = 0; i < h.datasets.size(); ++i) {
    const auto& d = h.datasets[i];
    append_item(datasets, i, ",",
                JsonObject()
                    .str("name", d.name)
                    .str("path", d.path)
                    .uinteger("size_bytes", d.size_bytes)
                    .str("digest", hex128(d.digest))
                    .boolean("embedded", d.is_embedded())
                    .done());
  }
  datasets += "]";
  return JsonObject()
      .str("type", "header")
      .uinteger("format_version", h.format_version)
      .str("writer_version", h.writer_version)
      .uinteger("min_reader_version", h.min_reader_version)
      .str("config_path", h.config_path)
      .str("config", h.config)
      .raw("config_overrides", json_array(h.config_overrides))
      .uinteger("seed", h.seed)
      .boolean("seed_from_entropy", h.seed_from_entropy)
      .str("level", probe_level_name(h.level))
      .integer("checkpoint_every", h.checkpoint_every)
      .integer("rank", h.rank)
      .integer("world_size", h.world_size)
      .str("run_id", h.run_id)
      .raw("environment", json_map(h.environment))
      .raw("datasets", datasets)
      .boolean("kernels_recorded", h.kernels_recorded)
      .str("kernels_not_recorded", h.kernels_not_recorded)
      .done();
}

std::string step_begin_text(const trace::TraceStep& s) {
  return "step " + std::to_string(s.index) + " epoch=" + epoch_number(s.epoch) +
         " batch=" + std::to_string(s.batch) + " events=" + std::to_string(s.events.size()) +
         (s.end ? "" : " (no step end)");
}

std::string step_begin_json(const trace::TraceStep& s, uint64_t offset) {
  return JsonObject()
      .str("type", "step")
      .integer("step", s.index)
      .integer("epoch", s.epoch + 1)
      .integer("batch", s.batch)
      .uinteger("events", s.events.size())
      .boolean("has_end", s.end.has_value())
      .uinteger("offset", offset)
      .done();
}

namespace {

std::string launch_text(const LaunchShape& l) {
  return "grid(" + std::to_string(l.grid_x) + "," + std::to_string(l.grid_y) + "," + std::to_string(l.grid_z) +
         ") block(" + std::to_string(l.block_x) + "," + std::to_string(l.block_y) + "," + std::to_string(l.block_z) +
         ") shared=" + std::to_string(l.shared_bytes);
}

std::string launch_json(const LaunchShape& l) {
  const std::vector<int64_t> grid = {l.grid_x, l.grid_y, l.grid_z}, block = {l.block_x, l.block_y, l.block_z};
  return JsonObject()
      .raw("grid", json_array(std::span<const int64_t>(grid)))
      .raw("block", json_array(std::span<const int64_t>(block)))
      .uinteger("shared_bytes", l.shared_bytes)
      .done();
}

std::string blaslt_json(const std::vector<BlasLtAlgo>& algos) {
  std::string out = "[";
  for (size_t i = 0; i < algos.size(); ++i) {
    const BlasLtAlgo& a = algos[i];
    std::vector<std::string> words;
    for (uint64_t w : a.data) words.push_back(hex64(w));
    if (i) out += ',';
    out += JsonObject()
                                .integer("algo_id", a.id)
                                .uinteger("tile", a.tile)
                                .integer("split_k", a.split_k)
                                .uinteger("reduction_scheme", a.reduction)
                                .uinteger("swizzle", a.swizzle)
                                .uinteger("custom_option", a.custom)
                                .uinteger("stages", a.stages)
                                .uinteger("inner_shape", a.inner_shape)
                                .uinteger("cluster_shape", a.cluster_shape)
                                .uinteger("workspace_bytes", a.workspace)
                                .num("waves", a.waves)
                                .raw("data", json_array(std::span<const std::string>(words)))
                                .done();
  }
  return out + "]";
}

std::string cudnn_json(const std::vector<CudnnEngine>& engines) {
  std::string out = "[";
  for (size_t i = 0; i < engines.size(); ++i) {
    const CudnnEngine& e = engines[i];
    std::vector<int64_t> types, values, numerical(e.numerical_notes.begin(), e.numerical_notes.end()),
        behavior(e.behavior_notes.begin(), e.behavior_notes.end());
    for (const CudnnKnob& k : e.knobs) types.push_back(k.type), values.push_back(k.value);
    if (i) out += ',';
    out += JsonObject()
               .integer("global_index", e.global_index)
               .raw("knob_types", json_array(std::span<const int64_t>(types)))
               .raw("knob_values", json_array(std::span<const int64_t>(values)))
               .raw("numerical_notes", json_array(std::span<const int64_t>(numerical)))
               .raw("behavior_notes", json_array(std::span<const int64_t>(behavior)))
               .uinteger("workspace_bytes", e.workspace)
               .done();
  }
  return out + "]";
}

// What a GPU choice adds to its dump line: the cuBLASLt version and the chosen algorithm's description and
// workspace, TF32, the launch shape.
std::string gpu_choice_text(const KernelChoice& k) {
  std::string out;
  if (!k.blaslt.empty()) {
    out += " cublasLt=" + std::to_string(k.blaslt_version);
    if (const BlasLtAlgo* a = chosen_blaslt_algo(k))
      out += " chosen_algo=(" + blaslt_describe(*a) + ", workspace " + std::to_string(a->workspace) + " bytes)";
  }
  if (!k.cudnn.empty()) {
    out += " cudnn=" + std::to_string(k.cudnn_version);
    if (const CudnnEngine* e = chosen_cudnn_engine(k))
      out += " chosen_engine=(" + cudnn_describe(*e) + ", workspace " + std::to_string(e->workspace) + " bytes)";
  }
  if (!k.plan_json.empty()) out += " plan_json=" + std::to_string(k.plan_json.size()) + "B";
  if (k.tf32) out += " tf32";
  if (k.launch) out += " launch=" + launch_text(*k.launch);
  return out;
}

}  // namespace

std::string event_text(int64_t step, const trace::Event& e) {
  const std::string p = "step " + std::to_string(step) + " ";
  if (const auto* r = std::get_if<trace::RngDrawEvent>(&e))
    return p + "rng " + r->draw.site + " " + draw_text(r->draw) + " digest=" + hex64(r->digest);
  if (const auto* s = std::get_if<trace::SplitEvent>(&e))
    return p + "split " + s->site + " train=" + std::to_string(s->train.size()) +
           " rows test=" + std::to_string(s->test.size()) + " rows train_digest=" + digest_of(s->train) +
           " test_digest=" + digest_of(s->test);
  if (const auto* s = std::get_if<trace::ShuffleEvent>(&e)) {
    std::string line =
        p + "shuffle " + s->site + " epoch=" + epoch_number(s->epoch) + " rows=" + std::to_string(s->length);
    if (s->draw)
      line += " draw(" + draw_text(*s->draw) + ")";
    else
      line += " stored";
    return line + " digest=" + hex64(s->digest);
  }
  if (const auto* b = std::get_if<trace::BatchOrderEvent>(&e)) return p + "batch " + std::to_string(b->batch);
  if (const auto* k = std::get_if<KernelChoice>(&e)) {
    std::string line =
        p + "kernel " + k->site + " op=" + k->op + " -> " + k->chosen + " (" + k->reason + ") candidates=[";
    for (size_t i = 0; i < k->candidates.size(); ++i) append_item(line, i, ", ", k->candidates[i]);
    line += "]";
    if (!k->timings_us.empty()) {
      line += " timings_us=[";
      for (size_t i = 0; i < k->timings_us.size(); ++i) append_item(line, i, ", ", number(k->timings_us[i]));
      line += "]";
    }
    return line + gpu_choice_text(*k);
  }
  if (const auto* pr = std::get_if<trace::ProbeEvent>(&e)) {
    const Summary& s = pr->fingerprint.summary;
    return p + "probe " + pr->site + " " + phase_name(pr->phase) +
           " digest=" + hex64(pr->fingerprint.digest) + " count=" + std::to_string(s.count) +
           // A summary of no finite value holds zeros that stand for nothing.
           (no_finite_value(s)
                ? std::string(" (no finite value: no sum, min or max)")
                : " sum=" + number(s.sum) + " min=" + number(s.min) + " max=" + number(s.max)) +
           (s.non_finite ? " non_finite=" + std::to_string(s.non_finite) : "");
  }
  return other_event(step, e, false);
}

std::string event_json(int64_t step, const trace::Event& e) {
  JsonObject o;
  if (const auto* r = std::get_if<trace::RngDrawEvent>(&e)) {
    return o.str("type", "rng")
        .integer("step", step)
        .str("site", r->draw.site)
        .str("stream", r->draw.stream)
        .str("key", hex64(r->draw.key))
        .uinteger("counter", r->draw.counter)
        .uinteger("count", r->draw.count)
        .str("digest", hex64(r->digest))
        .done();
  }
  if (const auto* s = std::get_if<trace::SplitEvent>(&e)) {
    return o.str("type", "split")
        .integer("step", step)
        .str("site", s->site)
        .uinteger("train_rows", s->train.size())
        .uinteger("test_rows", s->test.size())
        .raw("train", json_array(std::span<const uint32_t>(s->train)))
        .raw("test", json_array(std::span<const uint32_t>(s->test)))
        .done();
  }
  if (const auto* s = std::get_if<trace::ShuffleEvent>(&e)) {
    o.str("type", "shuffle").integer("step", step).str("site", s->site).integer("epoch", s->epoch + 1);
    o.uinteger("length", s->length).str("digest", hex64(s->digest));
    if (s->draw)
      o.raw("draw", draw_json(*s->draw));
    else
      o.null("draw");
    // One drawn from the run's stream is its draw (a replay makes the permutation from it again): null, not
    // an empty list it does not hold.
    return o
        .raw("permutation", s->permutation.empty() && s->draw
                                ? std::string("null")
                                : json_array(std::span<const uint32_t>(s->permutation)))
        .done();
  }
  if (const auto* b = std::get_if<trace::BatchOrderEvent>(&e))
    return o.str("type", "batch").integer("step", step).integer("batch", b->batch).done();
  if (const auto* k = std::get_if<KernelChoice>(&e)) {
    return o.str("type", "kernel")
        .integer("step", step)
        .str("site", k->site)
        .str("op", k->op)
        .raw("candidates", json_array(k->candidates))
        .str("chosen", k->chosen)
        .str("reason", k->reason)
        .raw("timings_us", json_array(std::span<const double>(k->timings_us)))
        .raw("blaslt", blaslt_json(k->blaslt))
        .uinteger("blaslt_version", k->blaslt_version)
        .boolean("tf32", k->tf32)
        .raw("launch", k->launch ? launch_json(*k->launch) : "null")
        .raw("cudnn", cudnn_json(k->cudnn))
        .uinteger("cudnn_version", k->cudnn_version)
        .str("plan_json", k->plan_json)
        .done();
  }
  if (const auto* pr = std::get_if<trace::ProbeEvent>(&e)) {
    const Summary& s = pr->fingerprint.summary;
    return o.str("type", "probe")
        .integer("step", step)
        .str("site", pr->site)
        .str("phase", phase_name(pr->phase))
        .str("digest", hex64(pr->fingerprint.digest))
        .uinteger("count", s.count)
        // A summary of no finite value holds zeros that stand for nothing: null.
        .raw("sum", no_finite_value(s) ? "null" : json_number(s.sum))
        .raw("sum_sq", no_finite_value(s) ? "null" : json_number(s.sum_sq))
        .raw("min", no_finite_value(s) ? "null" : json_number(s.min))
        .raw("max", no_finite_value(s) ? "null" : json_number(s.max))
        .uinteger("non_finite", s.non_finite)
        .done();
  }
  return other_event(step, e, true);
}

namespace {

std::string digests_text(const std::vector<uint64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) append_item(s, i, ", ", hex64(v[i]));
  return s + "]";
}

std::string digests_json(const std::vector<uint64_t>& v) {
  std::vector<std::string> hex;
  for (uint64_t d : v) hex.push_back(hex64(d));
  return json_array(hex);
}

}  // namespace

std::string collective_text(const CollectiveCall& c) {
  std::string order;
  for (size_t i = 0; i < c.order.size(); ++i) append_item(order, i, ", ", std::to_string(c.order[i]));
  return "step " + std::to_string(c.step) + " allreduce bucket " + std::to_string(c.bucket) + " elements " +
         std::to_string(c.offset) + "+" + std::to_string(c.count) + " " + c.variant + " (" + c.algorithm +
         (c.algorithm_inferred ? ", inferred" : c.forced ? ", fixed" : "") + ") ranks=" + std::to_string(c.ranks) +
         " shards=" + std::to_string(c.first_shard) + ".." +
         std::to_string(c.first_shard + static_cast<int>(c.shard_digests.size()) - 1) + " of " +
         std::to_string(c.shards) + " rows=" + digests_text(c.shard_rows) + " gradients=" +
         digests_text(c.shard_digests) + " input=" + hex64(c.input_digest) + " result=" + hex64(c.result_digest) +
         (c.order.empty() ? "" : " order=[" + order + "]");
}

std::string collective_json(const CollectiveCall& c) {
  std::vector<std::string> order;
  for (uint32_t r : c.order) order.push_back(std::to_string(r));
  std::string order_json = "[";
  for (size_t i = 0; i < order.size(); ++i) order_json += (i ? "," : "") + order[i];
  order_json += "]";
  return JsonObject()
      .str("type", "allreduce")
      .integer("step", c.step)
      .integer("bucket", c.bucket)
      .integer("offset", c.offset)
      .integer("count", c.count)
      .str("variant", c.variant)
      .str("algorithm", c.algorithm)
      .boolean("algorithm_inferred", c.algorithm_inferred)
      .boolean("forced", c.forced)
      .integer("ranks", c.ranks)
      .integer("shards", c.shards)
      .integer("first_shard", c.first_shard)
      .raw("shard_rows", digests_json(c.shard_rows))
      .raw("shard_gradients", digests_json(c.shard_digests))
      .str("input", hex64(c.input_digest))
      .str("result", hex64(c.result_digest))
      .raw("order", order_json)
      .done();
}

std::string step_kernels_text(int64_t step, const trace::StepKernels& k) {
  return "step " + std::to_string(step) + " gpu_kernels count=" + std::to_string(k.count) +
         " digest=" + hex64(k.digest) + " unattributed=" + std::to_string(k.unattributed) +
         " dropped=" + std::to_string(k.dropped) + " launches=" + std::to_string(k.launches.size());
}

std::string step_kernels_json(int64_t step, const trace::StepKernels& k) {
  return JsonObject()
      .str("type", "gpu_kernels")
      .integer("step", step)
      .uinteger("count", k.count)
      .str("digest", hex64(k.digest))
      .uinteger("unattributed", k.unattributed)
      .uinteger("dropped", k.dropped)
      .uinteger("launches", k.launches.size())
      .done();
}

std::string kernel_launch_text(int64_t step, const trace::KernelLaunch& l) {
  return "step " + std::to_string(step) + " gpu_kernel " + l.site + " " + l.name + " grid(" +
         std::to_string(l.grid_x) + "," + std::to_string(l.grid_y) + "," + std::to_string(l.grid_z) + ") block(" +
         std::to_string(l.block_x) + "," + std::to_string(l.block_y) + "," + std::to_string(l.block_z) +
         ") shared=" + std::to_string(l.static_shared) + "+" + std::to_string(l.dynamic_shared) +
         " duration_ns=" + std::to_string(l.duration_ns);
}

std::string kernel_launch_json(int64_t step, const trace::KernelLaunch& l) {
  const std::vector<int64_t> grid = {l.grid_x, l.grid_y, l.grid_z}, block = {l.block_x, l.block_y, l.block_z};
  return JsonObject()
      .str("type", "gpu_kernel")
      .integer("step", step)
      .str("site", l.site)
      .str("name", l.name)
      .raw("grid", json_array(std::span<const int64_t>(grid)))
      .raw("block", json_array(std::span<const int64_t>(block)))
      .uinteger("static_shared_bytes", l.static_shared)
      .uinteger("dynamic_shared_bytes", l.dynamic_shared)
      .uinteger("duration_ns", l.duration_ns)
      .done();
}

std::string step_end_text(const trace::TraceStep& s) {
  const trace::StepEnd& e = *s.end;
  std::string line = "step " + std::to_string(s.index) + " end loss=" + number(e.loss);
  if (!e.metrics.empty()) line += " " + pairs_text(e.metrics);
  line += " params: " + pairs_text(e.params);
  if (!e.grads.empty()) line += " grads: " + pairs_text(e.grads);
  return line;
}

std::string step_end_json(const trace::TraceStep& s) {
  const trace::StepEnd& e = *s.end;
  return JsonObject()
      .str("type", "end")
      .integer("step", s.index)
      .integer("epoch", s.epoch + 1)
      .integer("batch", s.batch)
      .num("loss", e.loss)
      .raw("metrics", json_map(e.metrics))
      .raw("params", json_map(e.params, true))
      .raw("grads", json_map(e.grads, true))
      .done();
}

std::string epoch_text(const trace::TraceEpoch& e) {
  return "epoch " + epoch_number(e.epoch) + " " + pairs_text(e.logs);
}

std::string epoch_json(const trace::TraceEpoch& e, uint64_t offset) {
  return JsonObject()
      .str("type", "epoch")
      .integer("epoch", e.epoch + 1)
      .raw("logs", json_map(e.logs))
      .uinteger("offset", offset)
      .done();
}

std::string checkpoint_text(const trace::TraceCheckpoint& c, uint64_t offset) {
  // Where the run stood as counts done, which reads the same whether one counts epochs from 0 or 1.
  std::string line = "checkpoint step=" + std::to_string(c.step) + " epochs_done=" + std::to_string(c.epoch) +
                     " batch_in_epoch=" + std::to_string(c.batch_in_epoch) +
                     " offset=" + std::to_string(offset) + " tensors:";
  for (const auto& t : c.tensors) line += " " + t.name + shape_str(t.value.shape);
  line += " rng:";
  for (const auto& [k, v] : c.rng_offsets) line += " " + k + "=" + std::to_string(v);
  line += " permutation=" + std::to_string(c.permutation.size()) +
          " rows batches_done=" + std::to_string(c.batches_done.size());
  if (!c.scalars.empty()) line += " scalars: " + pairs_text(c.scalars);
  return line;
}

std::string checkpoint_json(const trace::TraceCheckpoint& c, uint64_t offset) {
  std::string tensors = "[";
  for (size_t i = 0; i < c.tensors.size(); ++i)
    append_item(tensors, i, ",",
                JsonObject()
                    .str("name", c.tensors[i].name)
                    .raw("shape", json_array(std::span<const int64_t>(c.tensors[i].value.shape)))
                    .str("digest", hex64(digest(c.tensors[i].value)))
                    .done());
  tensors += "]";
  return JsonObject()
      .str("type", "checkpoint")
      .integer("step", c.step)
      .integer("epochs_done", c.epoch)
      .integer("batch_in_epoch", c.batch_in_epoch)
      .uinteger("seed", c.seed)
      .raw("tensors", tensors)
      .raw("rng_offsets", json_map(c.rng_offsets, false))
      .uinteger("permutation_rows", c.permutation.size())
      .raw("batches_done", json_array(std::span<const uint32_t>(c.batches_done)))
      .raw("scalars", json_map(c.scalars))
      .uinteger("offset", offset)
      .done();
}

std::string footer_text(const trace::TraceFooter& f) {
  std::string line = "footer completed=" + std::string(f.completed ? "true" : "false") +
                     " reason=" + f.end_reason + " steps=" + std::to_string(f.step_count) +
                     " events=" + std::to_string(f.event_count) + " checkpoints=[";
  for (size_t i = 0; i < f.checkpoints.size(); ++i)
    append_item(line, i, ", ",
                std::to_string(f.checkpoints[i].step) + "@" + std::to_string(f.checkpoints[i].offset));
  return line + "]";
}

std::string footer_json(const trace::TraceFooter& f, uint64_t offset) {
  std::string index = "[";
  for (size_t i = 0; i < f.checkpoints.size(); ++i)
    append_item(index, i, ",",
                JsonObject()
                    .integer("step", f.checkpoints[i].step)
                    .uinteger("offset", f.checkpoints[i].offset)
                    .done());
  index += "]";
  return JsonObject()
      .str("type", "footer")
      .boolean("completed", f.completed)
      .str("end_reason", f.end_reason)
      .integer("step_count", f.step_count)
      .uinteger("event_count", f.event_count)
      .raw("checkpoints", index)
      .uinteger("offset", offset)
      .done();
}

}  // namespace trainrr::cli
