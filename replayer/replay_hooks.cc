#include "replayer/replay_hooks.h"

#include <algorithm>
#include <regex>

#include "engine/fingerprint.h"
#include "engine/random.h"
#include "recorder/recorder.h"
#include "replayer/cause.h"
#include "replayer/draw_consistency.h"
#include "replayer/event_keys.h"

namespace trainrr {

namespace {

// `id` built for the widest instruction set that `runnable` accepts, or "" where no other build of it runs:
// the kernels of one algorithm differ only in a suffix naming their instruction set (the widest one has none
// for some: f32_matmul__cpu_splitk_threads, ..._avx2, ..._generic).
std::string same_algorithm_here(const std::string& id,
                                const std::function<bool(const std::string&)>& runnable) {
  static const std::string kIsas[] = {"_avx512", "_avx2", "_generic"};
  std::string stem = id;
  for (const std::string& isa : kIsas)
    if (stem.ends_with(isa)) {
      stem.resize(stem.size() - isa.size());
      break;
    }
  for (const std::string& cand : {stem + kIsas[0], stem, stem + kIsas[1], stem + kIsas[2]})
    if (cand != id && runnable(cand)) return cand;
  return "";
}

}  // namespace

std::string launch_str(const trace::KernelLaunch& k, bool demangle) {
  auto dim = [](uint32_t x, uint32_t y, uint32_t z) {
    return "(" + std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + ")";
  };
  return (demangle ? demangled(k.name) : k.name) + " grid" + dim(k.grid_x, k.grid_y, k.grid_z) + " block" +
         dim(k.block_x, k.block_y, k.block_z);
}

bool same_launch(const trace::KernelLaunch& a, const trace::KernelLaunch& b) {
  return a.name == b.name && a.grid_x == b.grid_x && a.grid_y == b.grid_y && a.grid_z == b.grid_z &&
         a.block_x == b.block_x && a.block_y == b.block_y && a.block_z == b.block_z;
}

std::optional<KernelDifference> first_kernel_difference(const trace::StepKernels& recorded,
                                                        const trace::StepKernels& replayed,
                                                        const std::string& prefer_op, bool unattributed) {
  if (recorded.launches.empty() && replayed.launches.empty()) {
    // Level step keeps the count and the digest of the step's kernels only.
    if (recorded.count == replayed.count && recorded.digest == replayed.digest) return std::nullopt;
    return KernelDifference{"", std::to_string(recorded.count) + " kernels",
                            std::to_string(replayed.count) + " kernels" +
                                (recorded.count == replayed.count ? " (other ones)" : "")};
  }
  // Per op, its kernels in launch order; the ops in the order they first launched one, the recording's first.
  std::vector<std::string> ops;
  std::map<std::string, std::pair<std::vector<const trace::KernelLaunch*>, std::vector<const trace::KernelLaunch*>>>
      by_op;
  auto add = [&](const trace::StepKernels& k, bool replay) {
    for (const trace::KernelLaunch& l : k.launches) {
      if (l.site == trace::kUnattributedSite && !unattributed) continue;  // delivered late, or outside every op
      auto [it, added] = by_op.try_emplace(l.site);
      if (added) ops.push_back(l.site);
      (replay ? it->second.second : it->second.first).push_back(&l);
    }
  };
  add(recorded, false);
  add(replayed, true);
  auto difference = [&](const std::string& op) -> std::optional<KernelDifference> {
    auto it = by_op.find(op);
    if (it == by_op.end()) return std::nullopt;
    const auto& [a, b] = it->second;
    for (size_t i = 0; i < std::max(a.size(), b.size()); ++i)
      if (i >= a.size() || i >= b.size() || !same_launch(*a[i], *b[i]))
        return KernelDifference{op,
                                i < a.size() ? launch_str(*a[i], true) : "no kernel",
                                i < b.size() ? launch_str(*b[i], true) : "no kernel",
                                i,
                                i < a.size() ? a[i] : nullptr,
                                i < b.size() ? b[i] : nullptr,
                                a.size(),
                                b.size()};
    return std::nullopt;
  };
  if (!prefer_op.empty())
    if (auto d = difference(prefer_op)) return d;
  for (const std::string& op : ops)
    if (auto d = difference(op)) return d;
  return std::nullopt;
}

std::string impossible_kernel(const std::string& id, const std::string& op,
                              const trace::TraceHeader& header) {
  const std::optional<OpKind> of = kernel_op_in_any_build(id);
  if (!of) {
    // A later trainrr may have kernels this one does not know: only a trace of this version is held to its
    // kernels.
    if (header.writer_version != TRAINRR_VERSION) return "";
    return std::string("is no kernel of trainrr ") + TRAINRR_VERSION +
           " (which wrote the trace), on any instruction set or device";
  }
  if (op_name(*of) != op)
    return "is a kernel of op " + std::string(op_name(*of)) + ", and the site's op is " + op +
           ", so no machine runs it there";
  return "";
}

std::string impossible_choice(const KernelChoice& choice, const trace::TraceHeader& header) {
  if (std::string why = impossible_kernel(choice.chosen, choice.op, header); !why.empty()) return why;
  const auto& c = choice.candidates;
  if (!c.empty() && std::find(c.begin(), c.end(), choice.chosen) == c.end()) {
    std::string listed;
    for (size_t i = 0; i < c.size() && i < 4; ++i) listed += (i ? ", " : "") + c[i];
    if (c.size() > 4) listed += ", and " + std::to_string(c.size() - 4) + " more";
    return "is not among the candidates the choice records (" + listed + "), and a choice picks one of them";
  }
  return "";
}

ReplayHooks::ReplayHooks(trace::TraceReader& reader, ForceSet force, ProbeLevel level, bool compare)
    : reader_(&reader), force_(force), level_(std::max(level, reader.header().level)), compare_(compare) {}

bool ReplayHooks::load_next() {
  cur_ = Current{};
  for (;;) {
    auto rec = reader_->next();
    if (!rec) {
      if (status_.ok()) status_ = rec.error();
      cur_.exhausted = true;
      return false;
    }
    if (!rec->has_value()) {
      cur_.exhausted = true;
      return false;
    }
    if (auto* e = std::get_if<trace::TraceEpoch>(&(*rec)->value)) {
      views_.epoch_logs(0, e->epoch, e->logs);
      recorded_epochs_[e->epoch] = e->logs;
    }
    if (auto* s = std::get_if<trace::TraceStep>(&(*rec)->value)) {
      cur_.step = std::move(*s);
      cur_.loaded = true;
      last_step_at_ = {cur_.step.index, (*rec)->offset};
      for (size_t i = 0; i < cur_.step.events.size(); ++i) {
        const trace::Event& e = cur_.step.events[i];
        cur_.by_key[event_key(e)].push_back(i);
        if (auto* k = std::get_if<KernelChoice>(&e)) {
          recorded_kernels_.emplace(k->site, k->chosen);
          recorded_choices_.emplace(k->site, *k);
          recorded_choice_steps_.emplace(k->site, cur_.step.index);
        }
      }
      return true;
    }
  }
}

const trace::Event* ReplayHooks::peek(const std::string& key) {
  if (!cur_.loaded && !cur_.exhausted) load_next();
  auto it = cur_.by_key.find(key);
  if (it == cur_.by_key.end() || it->second.empty()) return nullptr;
  return &cur_.step.events[it->second.front()];
}

const trace::Event* ReplayHooks::take(const std::string& key) {
  const trace::Event* e = peek(key);
  cur_.last_found = e != nullptr;
  if (e) {
    auto& at = cur_.by_key[key];
    cur_.last_taken = static_cast<int64_t>(at.front());
    cur_.max_taken = std::max(cur_.max_taken, cur_.last_taken);
    at.pop_front();
  }
  return e;
}

void ReplayHooks::diverge(FirstDivergence d) {
  if (!compare_ || first_) return;
  if (d.step < 0) d.step = std::max<int64_t>(step_, cur_.loaded ? cur_.step.index : 0);
  if (cur_.loaded && d.step == cur_.step.index)
    cur_.first_order = cur_.last_found ? 2 * cur_.last_taken : 2 * cur_.max_taken + 1;
  // A run resumed from a checkpoint runs no step before it: what its set-up made again (the split, which the
  // recording holds with step 0) differs where the replay starts.
  if (resume_at_ > 0 && d.step < resume_at_) {
    d.detail += (d.detail.empty() ? "" : "; ") + std::string("recorded with step ") + std::to_string(d.step) +
                ", made again by the set-up of this replay, which resumed from the checkpoint at step " +
                std::to_string(resume_at_);
    d.step = resume_at_;
  }
  if (d.kind != "metrics") split_site(d.site, d.layer, d.op);  // a metric's name is no layer's
  if (d.kind == "probe" || d.kind == "step_end") {
    const std::string ks = kernel_site_of(d.site);
    if (auto it = recorded_kernels_.find(ks); it != recorded_kernels_.end()) d.kernel_recorded = it->second;
    if (auto it = replayed_kernels_.find(ks); it != replayed_kernels_.end()) d.kernel_replayed = it->second;
  }
  first_ = std::move(d);
}

bool ReplayHooks::probe_recorded(std::string_view site) const {
  return trace::probe_recorded_in(site, reader_->header());
}

Status ReplayHooks::skip_to(int64_t step) {
  while (!cur_.exhausted && (!cur_.loaded || cur_.step.index < step)) {
    if (!load_next()) break;
  }
  if (!cur_.loaded || cur_.step.index != step) {
    if (!status_.ok()) return status_;
    return Error{"the trace has no step " + std::to_string(step)};
  }
  return {};
}

void ReplayHooks::seed(uint64_t& seed, bool from_entropy) {
  (void)from_entropy;
  if (forced(force_.rng, "seed")) seed = reader_->header().seed;
  replayed_seed_ = seed;
}

void ReplayHooks::rng_draw(RngDraw& draw) {
  reached_.erase(draw.site);
  if (!forced(force_.rng, "rng:" + draw.stream)) return;
  const trace::Event* e = peek(key_rng(draw.site));
  if (!e) return;
  const RngDraw& rec = std::get<trace::RngDrawEvent>(*e).draw;
  if (rec.count == draw.count) {
    reached_[draw.site] = draw;
    draw.key = rec.key;
    draw.counter = rec.counter;
  }
}

void ReplayHooks::rng_values(const RngDraw& draw, std::span<const std::byte> values) {
  const trace::Event* e = take(key_rng(draw.site));
  if (resume_at_ > 0 && step_ < 0 && draw.site.rfind("init/", 0) == 0) return;  // the checkpoint replaces it
  if (!e) {
    diverge(divergence(-1, event_phase("rng", draw.site), "extra", draw.site,
                       "the replay draws " + std::to_string(draw.count) + " words from stream " +
                           draw.stream + " at " + draw.site + ", a draw the recording does not have"));
    return;
  }
  const auto& rec = std::get<trace::RngDrawEvent>(*e);
  if (!compare_) return;
  // A recorded draw of a key the trace's seed does not give its stream (draw_consistency.h) is named so,
  // whatever this replay draws.
  if (const std::string why = key_not_of_its_seed(rec.draw, reader_->header().seed); !why.empty()) {
    FirstDivergence fd = divergence(-1, event_phase("rng", draw.site), "rng", draw.site);
    fd.same_count = rec.draw.count == draw.count;
    fd.detail = "draw at " + draw.site + ": " + why;
    diverge(std::move(fd));
    return;
  }
  const uint64_t d = digest_bytes(values.data(), values.size());
  // The same values from another draw (another count, counter or key) are no match: the draw is recorded to
  // be compared as much as its values.
  const bool same_draw =
      rec.draw.key == draw.key && rec.draw.counter == draw.counter && rec.draw.count == draw.count;
  if (d == rec.digest && same_draw) {
    ++matched_draws_[draw.stream];
    return;
  }
  FirstDivergence fd = divergence(-1, event_phase("rng", draw.site), "rng", draw.site);
  fd.same_count = rec.draw.count == draw.count;
  fd.detail = "draw at " + draw.site + ": recorded " + draw_str(rec.draw) + ", replayed " + draw_str(draw);
  if (d == rec.digest) {
    fd.detail += " (the same values: the recording names another draw for them)";
    diverge(std::move(fd));
    return;
  }
  // The same words made into other values: what made them (a distribution's parameters in the
  // configuration, or the arithmetic of this build) is for the cause to say, from its evidence.
  fd.same_draw = same_draw;
  const auto reached = reached_.find(draw.site);
  if (same_draw && reached != reached_.end() &&
      (reached->second.key != rec.draw.key || reached->second.counter != rec.draw.counter)) {
    // Forced to a draw this run did not reach: its values at that draw are not the recorded ones. Either this
    // build makes other values of the same words, or the recorded draw is not the one its values came from.
    fd.same_draw = false;
    fd.detail +=
        " (forced to the recorded draw, which this run did not reach: it reached " +
        draw_str(reached->second) +
        "; the values at the recorded draw are not the recorded values, so "
        "either this build makes other values of the same words, or the recorded draw is not the one its "
        "values came from)";
  } else if (fd.same_draw) {
    fd.detail += " (the same draw, made into other values: digest " + digest_str(rec.digest) +
                 " (recorded) vs " + digest_str(d) + " (replayed))";
  }
  diverge(std::move(fd));
}

void ReplayHooks::split(std::string_view site, std::vector<uint32_t>& train, std::vector<uint32_t>& test) {
  split_checked(site, train, test);
  schedule_.split = true;
  schedule_.split_train = train;
  schedule_.split_test = test;
}

void ReplayHooks::split_checked(std::string_view site, std::vector<uint32_t>& train,
                                std::vector<uint32_t>& test) {
  const trace::Event* e = take(key_split(site));
  if (!e) {
    diverge(divergence(-1, "setup", "extra", std::string(site),
                       "the replay splits the data, the recording did not"));
    return;
  }
  const auto& rec = std::get<trace::SplitEvent>(*e);
  const bool same = rec.train == train && rec.test == test;
  std::string detail;
  if (!same) {
    detail = "recorded " + std::to_string(rec.train.size()) + " train / " + std::to_string(rec.test.size()) +
             " test rows, replayed " + std::to_string(train.size()) + " / " + std::to_string(test.size());
    for (size_t i = 0; i < std::min(rec.train.size(), train.size()); ++i)
      if (rec.train[i] != train[i]) {
        detail += "; training position " + std::to_string(i) + " holds row " + std::to_string(rec.train[i]) +
                  " recorded, row " + std::to_string(train[i]) + " replayed";
        break;
      }
  }
  if (forced(force_.split, "split")) {
    served_split_differs_ = !same;
    served_split_detail_ = detail;
    train = rec.train;
    test = rec.test;
    schedule_.split_served = true;
    return;
  }
  if (same) return;
  diverge(divergence(-1, "setup", "split", std::string(site), detail));
}

void ReplayHooks::shuffle(std::string_view site, int epoch, std::vector<uint32_t>& perm,
                          const RngDraw* draw) {
  shuffle_checked(site, epoch, perm, draw);
  schedule_.orders[epoch] = perm;
}

void ReplayHooks::shuffle_checked(std::string_view site, int epoch, std::vector<uint32_t>& perm,
                                  const RngDraw* draw) {
  (void)draw;
  const trace::Event* e = take(key_shuffle(site));
  if (!e) {
    diverge(divergence(
        -1, "input", "extra", std::string(site),
        "epoch " + std::to_string(int64_t{epoch} + 1) + ": the replay shuffles, the recording did not"));
    return;
  }
  const auto& rec = std::get<trace::ShuffleEvent>(*e);
  // Every epoch orders the run's training rows: a recorded order of another number of rows is none of this
  // run's, and nothing is made of its length or its draw (the reader ties the draw's count to the length).
  if (rec.length != perm.size()) {
    diverge(divergence(-1, "input", "shuffle", std::string(site),
                       "epoch " + std::to_string(int64_t{epoch} + 1) + ": the recorded shuffle of " +
                           std::to_string(rec.length) + " rows " + std::string(kShuffleOfOtherRows) + " " +
                           std::to_string(perm.size()) + " training rows"));
    return;
  }
  // A recorded order its own draw does not give (draw_consistency.h) is named so, whatever this replay makes.
  if (compare_)
    if (const std::string why = order_not_of_its_draw(rec); !why.empty()) {
      diverge(divergence(-1, "input", "shuffle", std::string(site),
                         "epoch " + std::to_string(int64_t{epoch} + 1) + ": " + why));
      return;
    }
  if (forced(force_.shuffle, "shuffle")) {
    if (rec.draw && rec.draw->count == (perm.size() > 1 ? perm.size() - 1 : 0)) {
      permutation_from_draw(*rec.draw, perm, static_cast<uint32_t>(rec.length));
    } else if (!rec.permutation.empty()) {
      perm = rec.permutation;
    }
  }
  if (!compare_) return;
  const uint64_t d = digest(std::span<const uint32_t>(perm));
  if (d == rec.digest) return;
  std::string detail = "epoch " + std::to_string(int64_t{epoch} + 1) + ": the order of the " +
                       std::to_string(perm.size()) + " rows differs";
  if (rec.draw && draw) detail += " (recorded " + draw_str(*rec.draw) + ", replayed " + draw_str(*draw) + ")";
  diverge(divergence(-1, "input", "shuffle", std::string(site), detail));
}

void ReplayHooks::batch_order(int64_t step, int64_t& batch) {
  batch_order_checked(step, batch);
  if (take_batch_ && take_batch_->first == step) batch = take_batch_->second;
  // The batch the step takes, forced or not (step_begin was told the loader's proposal).
  if (!schedule_.batches.empty() && schedule_.batches.back().step == step)
    schedule_.batches.back().batch = batch;
}

void ReplayHooks::batch_order_checked(int64_t step, int64_t& batch) {
  const trace::Event* e = take(key_batch());
  if (!e) return;
  const int64_t rec = std::get<trace::BatchOrderEvent>(*e).batch;
  if (forced(force_.loader, "loader")) {
    batch = rec;
    return;
  }
  if (rec != batch) {
    const std::string loader = replayed_kernels_.count("data/loader") ? replayed_kernels_.at("data/loader")
                                                                      : std::string("the loader");
    diverge(divergence(step, "input", "loader", "data/loader",
                       "step " + std::to_string(step) + ": recorded batch " + std::to_string(rec) +
                           ", replayed batch " + std::to_string(batch) + " (" + loader + ")"));
  }
}

void ReplayHooks::batch_refused(int64_t step, int64_t asked, int64_t instead, const std::string& why) {
  diverge(divergence(step, "input", "loader", "data/loader",
                     "step " + std::to_string(step) + ": the recorded batch " + std::to_string(asked) + " " +
                         std::string(kBatchRefused) + " (" + why + "); batch " + std::to_string(instead) +
                         " ran instead"));
}

std::optional<FirstDivergence> ReplayHooks::unmade_initial_draw() {
  if (!cur_.loaded) return std::nullopt;
  std::optional<size_t> first;
  for (const auto& [key, idx] : cur_.by_key)
    for (size_t i : idx)
      if (const auto* r = std::get_if<trace::RngDrawEvent>(&cur_.step.events[i]);
          r && r->draw.stream.rfind("init/", 0) == 0 && (!first || i < *first))
        first = i;
  if (!first) return std::nullopt;
  const auto& r = std::get<trace::RngDrawEvent>(cur_.step.events[*first]);
  const std::string site = site_of_key(event_key(cur_.step.events[*first]));
  FirstDivergence d = divergence(cur_.step.index, "setup", "missing", site,
                                 "the recording draws " + std::to_string(r.draw.count) +
                                     " words from stream " + r.draw.stream + " at " + site + " in step " +
                                     std::to_string(cur_.step.index) + ", a draw the replay did not make");
  split_site(d.site, d.layer, d.op);
  return d;
}

void ReplayHooks::kernel_selected(KernelChoice& choice) {
  (void)take(key_kernel(choice.site));  // recorded_kernels_ learned it when the step was loaded
  auto rec = recorded_kernels_.find(choice.site);
  const auto recorded_choice = recorded_choices_.find(choice.site);
  // A recorded kernel of another op than the site's, or one no build of this trainrr has, runs on no machine;
  // a recorded choice of another op than the site's, or of a kernel not among its own candidates, is no
  // choice a run made: the trace is refused (as diff refuses it), and nothing is forced here meanwhile.
  if (rec != recorded_kernels_.end()) {
    std::string why = impossible_kernel(rec->second, choice.op, reader_->header());
    if (why.empty() && recorded_choice != recorded_choices_.end()) {
      if (recorded_choice->second.op != choice.op)
        why = "is recorded as a choice of op " + recorded_choice->second.op + ", and the site's op is " +
              choice.op;
      else
        why = impossible_choice(recorded_choice->second, reader_->header());
    }
    if (!why.empty()) {
      if (!kernel_refusal_)
        kernel_refusal_ = "step " +
                          std::to_string(std::max<int64_t>(step_, cur_.loaded ? cur_.step.index : 0)) +
                          ": the recorded kernel " + rec->second + " at " + choice.site + " " + why;
      rec = recorded_kernels_.end();
    }
  }
  // A GPU library's choice, recorded and made here too: the device fills in its library's candidates (the CPU's
  // kernel selector never does), and the recording holds the library's own description of what it chose.
  auto library_choice = [](const KernelChoice& k) { return !k.blaslt.empty() || !k.cudnn.empty(); };
  const bool gpu_library = recorded_choice != recorded_choices_.end() && library_choice(recorded_choice->second);
  const bool on_gpu = library_choice(choice);
  if (forced(force_.kernels, "kernel:" + choice.site) && rec != recorded_kernels_.end() && gpu_library && on_gpu) {
    // A cuBLASLt algorithm or cuDNN engine: the device gets what the trace holds of it and restores it, whether
    // or not this machine's library offered it, or says why it cannot (kernel_replaced).
    const KernelChoice& r = recorded_choice->second;
    KernelChoice asked = choice;
    asked.chosen = rec->second;
    asked.reason = "forced: recorded";
    replayed_choices_[choice.site] = asked;
    choice.chosen = rec->second;
    choice.reason = asked.reason;
    choice.blaslt = r.blaslt;
    choice.blaslt_version = r.blaslt_version;
    choice.cudnn = r.cudnn;
    choice.cudnn_version = r.cudnn_version;
    choice.plan_json = r.plan_json;
    replayed_kernels_[choice.site] = choice.chosen;
    return;
  }
  if (forced(force_.kernels, "kernel:" + choice.site) && rec != recorded_kernels_.end()) {
    const auto& here = choice.candidates;
    const bool can_run =
        runnable_ ? runnable_(rec->second) : std::find(here.begin(), here.end(), rec->second) != here.end();
    if (can_run) {
      choice.chosen = rec->second;
      choice.reason = "forced: recorded";
    } else {
      // The recorded kernel cannot run here (another instruction set, another build): the same algorithm
      // built for the widest instruction set this machine runs takes its place where there is one, else this
      // machine's own choice, whatever the policy or the forcing of other sites; the difference is evidence
      // like any other kernel difference.
      if (runnable_)
        if (std::string same = same_algorithm_here(rec->second, runnable_); !same.empty())
          choice.chosen = same;
      choice.reason = "recorded " + rec->second + " is not available here";
      substituted_.push_back({choice.site, rec->second, choice.chosen, ""});
    }
  } else if (const auto pin = pinned_kernels_.find(choice.site);
             pin != pinned_kernels_.end() && pin->second != choice.chosen && !on_gpu &&
             std::find(choice.candidates.begin(), choice.candidates.end(), pin->second) !=
                 choice.candidates.end()) {
    choice.chosen = pin->second;
    choice.reason = "as replayed";
  }
  replayed_kernels_[choice.site] = choice.chosen;
  replayed_choices_[choice.site] = choice;
  const std::string recorded = rec == recorded_kernels_.end() ? "(none recorded)" : rec->second;
  if (recorded != choice.chosen) kernel_diffs_[choice.site] = {recorded, choice.chosen};
  // A run resumed from a checkpoint chooses, free, on the batch it resumes at what the recording chose on an
  // earlier step's batch: a choice that depends on the batch's size (the last batch of an epoch is short) can
  // differ for that alone.
  // The default rule names the size it chose by where the size decided ("131072 elements >= 65536",
  // "k=4096 > 8*m*n=..."): only choices of free sites whose sizes differ are said to.
  auto size_in = [](const std::string& reason) {
    std::smatch m;
    return std::regex_search(reason, m, std::regex(R"((\d+) elements|k=(\d+))")) ? m.str(0) : std::string();
  };
  if (resume_at_ > 0 && recorded != choice.chosen && rec != recorded_kernels_.end() &&
      !forced(force_.kernels, "kernel:" + choice.site))
    if (auto at = recorded_choice_steps_.find(choice.site);
        at != recorded_choice_steps_.end() && at->second < resume_at_) {
      const std::string& then = recorded_choices_.at(choice.site).reason;
      if (const std::string here = size_in(choice.reason), there = size_in(then);
          !here.empty() && !there.empty() && here != there)
        resumed_choices_.emplace(choice.site, ResumedChoice{at->second, choice.reason, then});
    }
}

void ReplayHooks::kernel_replaced(std::string_view site, const std::string& ran, const std::string& why) {
  const std::string s(site);
  auto rec = recorded_kernels_.find(s);
  const std::string recorded = rec == recorded_kernels_.end() ? "(none recorded)" : rec->second;
  substituted_.push_back({s, recorded, ran, why});
  replayed_kernels_[s] = ran;
  if (auto it = replayed_choices_.find(s); it != replayed_choices_.end()) it->second.chosen = ran;
  if (recorded != ran) kernel_diffs_[s] = {recorded, ran};
}

std::map<std::string, std::pair<std::string, std::string>> ReplayHooks::kernel_picks() const {
  std::map<std::string, std::pair<std::string, std::string>> out;
  for (const auto& [site, rec] : recorded_choices_) {
    auto here = replayed_choices_.find(site);
    std::pair<std::string, std::string> picks{kernel_pick(rec),
                                              here == replayed_choices_.end() ? "" : kernel_pick(here->second)};
    // A recorded kernel forced here that cannot run: the timings that picked either side's kernel are not why
    // they differ (what a GPU library's choice was still describes the kernel).
    if (std::any_of(substituted_.begin(), substituted_.end(),
                    [&site = site](const Substitution& x) { return x.site == site; }))
      for (std::string* p : {&picks.first, &picks.second})
        if (p->find("by timing") != std::string::npos) p->clear();
    if (!picks.first.empty() || !picks.second.empty()) out[site] = std::move(picks);
  }
  return out;
}

void ReplayHooks::accumulation_order(std::string_view site, std::vector<uint32_t>& order) {
  if (!forced(force_.kernels, "kernel:" + std::string(site))) return;
  if (const trace::Event* e = peek(key_order(site))) order = std::get<trace::AccumulationOrderEvent>(*e).order;
}

void ReplayHooks::accumulated(std::string_view site, const std::vector<uint32_t>& order) {
  const trace::Event* e = take(key_order(site));
  // A different order is evidence, not an outcome: the probe of the op's output says whether it mattered.
  // Only orders before the first divergence can explain it: an op after it (a backward sum after a forward
  // output that differs) cannot.
  if (e && !first_ && std::get<trace::AccumulationOrderEvent>(*e).order != order)
    order_diffs_.emplace(std::string(site), step_);
  // Forced, the kernel takes the recorded order where it names each of its partials once; any other order
  // it cannot serve, and it adds its partials as its threads finish: a note says so, as for a kernel.
  if (e && forced(force_.kernels, "kernel:" + std::string(site))) {
    const auto& recorded = std::get<trace::AccumulationOrderEvent>(*e).order;
    if (recorded != order)
      unserved_orders_.try_emplace(std::string(site),
                                   UnservedOrder{std::max<int64_t>(step_, 0), recorded.size(), order.size()});
  }
}

void ReplayHooks::probe(std::string_view site, Phase phase, const Tensor& value) {
  check_probe(site, phase, value, nullptr);
}

void ReplayHooks::probe_unchanged(std::string_view site, Phase phase, const Tensor& value) {
  const bool same = last_probe_.data && last_probe_.data == value.ptr() && last_probe_.size == value.size();
  check_probe(site, phase, value, same ? &last_probe_.digest : nullptr);
}

void ReplayHooks::check_probe(std::string_view site, Phase phase, const Tensor& value,
                              const uint64_t* known) {
  const uint64_t known_digest = known ? *known : 0;
  last_probe_ = {};
  if (step_ == capture_step_) captured_.push_back({std::string(site), phase, value});
  if (!probe_recorded(site)) return;
  const trace::Event* e = take(key_probe(site, phase));
  if (!compare_) return;
  if (!e) {
    diverge(divergence(
        -1, phase_name(phase), "extra", std::string(site),
        "the replay probes " + std::string(site) + ", the recording has no such probe in this step"));
    return;
  }
  const auto& rec = std::get<trace::ProbeEvent>(*e);
  const uint64_t replayed = known ? known_digest : digest(value);
  last_probe_ = {value.ptr(), value.size(), replayed};
  if (replayed == rec.fingerprint.digest) {
    // The same values: a summary that counts other values, or non-finite ones (which `show` reports), must
    // describe them too, or the trace was changed after it was written.
    // Its sums, minimum and maximum are computed in one order on every machine: the same values give the
    // same bits.
    const Summary& said = rec.fingerprint.summary;
    const Summary now = summarize(std::span<const float>(value.data));
    if (const std::string differs = summary_fields_differ(said, now); !differs.empty()) {
      diverge(divergence(
          -1, phase_name(phase), "summary", std::string(site),
          "the recording's summary of " + std::string(site) +
              " does not describe the values its digest is of, which the replay computed: " + differs));
      return;
    }
    views_.probe(site, phase_name(phase), nullptr, nullptr);
    return;
  }
  FirstDivergence d = divergence(-1, phase_name(phase), "probe", std::string(site));
  d.summary_recorded = rec.fingerprint.summary;
  d.summary_replayed = summarize(std::span<const float>(value.data));
  views_.probe(site, phase_name(phase), &*d.summary_recorded, &*d.summary_replayed);
  diverge(std::move(d));
}

void ReplayHooks::collective(const CollectiveCall& call) {
  if (!cur_.loaded || cur_.step.index != step_ || !compare_) return;
  const auto& recorded = cur_.step.collectives;
  if (collective_index_ >= recorded.size()) return;  // the step-end comparison reports what is missing
  const CollectiveCall& rec = recorded[collective_index_++];
  ++collectives_compared_;
  if (collective_mismatch_) return;
  auto first_differing = [](const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
    for (size_t i = 0; i < std::max(a.size(), b.size()); ++i)
      if (i >= a.size() || i >= b.size() || a[i] != b[i]) return static_cast<int>(i);
    return -1;
  };
  if (int k = first_differing(rec.shard_rows, call.shard_rows); k >= 0)
    collective_mismatch_ = CollectiveMismatch{"sharding", rec.first_shard + k, rec, call};
  else if (int k2 = first_differing(rec.shard_digests, call.shard_digests); k2 >= 0 || rec.input_digest != call.input_digest)
    collective_mismatch_ = CollectiveMismatch{"input", rec.first_shard + std::max(k2, 0), rec, call};
  else if (rec.result_digest != call.result_digest)
    collective_mismatch_ = CollectiveMismatch{"result", -1, rec, call};
}

void ReplayHooks::gather_kernels(std::unique_ptr<KernelSource> source) {
  if (Status s = gatherer_.start(std::move(source)); !s)
    kernel_notes_.push_back("the replay's GPU kernels were not gathered: " + s.error().message);
}

void ReplayHooks::op_done(std::string_view site) { gatherer_.op_done(site); }

void ReplayHooks::compare_kernels(int64_t step) {
  if (!gatherer_.in_step()) return;
  const trace::TraceHeader& h = reader_->header();
  std::optional<trace::StepKernels> here = gatherer_.step_end(h.level, kStepEndSite);
  const bool divergent_step = first_ && first_->step == step;
  if (divergent_step) divergent_kernels_ = here;
  if (!compare_ || !h.kernels_recorded || !cur_.loaded || cur_.step.index != step) return;
  if (first_ && !divergent_step) return;  // past the first divergence: its outputs differ anyway
  const trace::StepKernels none;
  const trace::StepKernels& rec = cur_.step.kernels ? *cur_.step.kernels : none;
  const trace::StepKernels& rep = here ? *here : none;
  if (divergent_step) {
    const std::string op = first_->kind == "probe" ? kernel_site_of(first_->site) : "";
    std::optional<KernelDifference> d = first_kernel_difference(rec, rep, op);
    // A probe's divergence names its op: the kernels of another op are no evidence about it.
    if (d && (op.empty() || d->op == op)) divergent_difference_ = std::move(d);
    return;
  }
  if (kernel_note_said_) return;
  if (std::optional<KernelDifference> d = first_kernel_difference(rec, rep)) {
    kernel_note_said_ = true;
    kernel_notes_.push_back("at step " + std::to_string(step) + ", " +
                            (d->op.empty() ? std::string("the step") : "op " + d->op) +
                            " launched other kernels than recorded: " + d->recorded + " vs " + d->replayed +
                            " (recorded vs replayed); the step's outputs match");
  }
}

void ReplayHooks::step_begin(int64_t step, int epoch, int64_t batch) {
  schedule_.batches.push_back({step, epoch, batch});
  (void)batch;
  gatherer_.step_begin(step);
  if (!cur_.loaded && !cur_.exhausted) load_next();
  step_ = step;
  collective_index_ = 0;
  // The recording's epoch beside the replay's: a replay may run epochs of another length (another batch
  // size).
  views_.begin_step(step, cur_.loaded && cur_.step.index == step ? cur_.step.epoch : -1, epoch);
  if (cur_.loaded && cur_.step.index != step && compare_ && !first_)
    diverge(divergence(step, "setup", "missing", "",
                       "the replay is at step " + std::to_string(step) + ", the trace at step " +
                           std::to_string(cur_.step.index)));
}

void ReplayHooks::compare_tensors(const trace::StepEnd& rec, const StepSummary& s) {
  // For the page: every gradient and parameter, each step, not only up to the first that differs.
  for (size_t i = 0; i < rec.grads.size() && i < s.grads.size(); ++i)
    views_.tensor(rec.grads[i].first, true,
                  rec.grads[i].first != s.grads[i].first || rec.grads[i].second != digest(*s.grads[i].second));
  if (trace::is_combined(rec.params)) {
    views_.tensor(rec.params[0].first, false,
                  rec.params[0].second != trace::parameter_digests(s.params, ProbeLevel::step)[0].second);
    return;
  }
  for (size_t i = 0; i < rec.params.size() && i < s.params.size(); ++i)
    views_.tensor(rec.params[i].first, false,
                  rec.params[i].first != s.params[i].first || rec.params[i].second != digest(*s.params[i].second));
}

void ReplayHooks::epoch_end(const EpochSummary& e) {
  views_.epoch_logs(1, e.epoch, e.logs);
  if (!compare_ || first_) return;
  // The recorded epoch message follows the epoch's last step: reading on to the next step reads it.
  at_end();
  const auto rec = recorded_epochs_.find(e.epoch);
  if (rec == recorded_epochs_.end()) return;
  // Metrics the step's compared values do not show: the evaluation's (validation loss, say) read the moving
  // statistics and the rows held out, which no step's probe compares.
  if (auto d = metrics_divergence(std::max<int64_t>(step_, 0), e.epoch, rec->second, e.logs, "recorded",
                                  "replayed"))
    diverge(std::move(*d));
}

void ReplayHooks::finish_views(PageViews& page) {
  // The recorded epoch message follows its last step's (checkpoints may lie between): the next step's load
  // reads it, and a replay that ends, or stops at a divergence, after an epoch's last step has loaded none.
  if (!cur_.loaded && !cur_.exhausted && status_.ok()) {
    for (;;) {
      auto rec = reader_->next();
      if (!rec || !rec->has_value()) break;
      if (std::holds_alternative<trace::TraceStep>((*rec)->value)) break;
      if (auto* e = std::get_if<trace::TraceEpoch>(&(*rec)->value)) views_.epoch_logs(0, e->epoch, e->logs);
    }
  }
  views_.finish(page);
}

void ReplayHooks::step_end(const StepSummary& s) {
  if (step_ == capture_step_) {
    for (const auto& [name, t] : s.grads) captured_.push_back({step_end_site(name, true), Phase::backward, *t, true});
    for (const auto& [name, t] : s.params) captured_.push_back({step_end_site(name, false), Phase::update, *t, true});
    captured_loss_ = s.loss;
  }
  if (cur_.loaded) {
    // Recorded events the replay never made (kernel choices and probes above the recorded level aside): the
    // earliest is the step's first difference unless one found during the step came before it (a recorded
    // draw the replay skipped comes before the output it would have changed).
    std::optional<std::pair<size_t, std::string>> missing;
    for (const auto& [key, idx] : cur_.by_key) {
      if (idx.empty() || key.rfind("kernel|", 0) == 0 || key.rfind("order|", 0) == 0) continue;
      if (!missing || idx.front() < missing->first) missing = {idx.front(), key};
    }
    if (missing && compare_ && first_ && first_->step == s.step && cur_.first_order &&
        static_cast<int64_t>(2 * missing->first) < *cur_.first_order)
      first_.reset();
    if (missing) {
      const std::string site = site_of_key(missing->second);
      const trace::Event& e = cur_.step.events[missing->first];
      const std::string in_step = " in step " + std::to_string(s.step);
      // The replay made some of the recording's events at this site (a site recorded twice, say): how many.
      const size_t recorded_here =
          std::count_if(cur_.step.events.begin(), cur_.step.events.end(),
                        [&](const trace::Event& x) { return event_key(x) == missing->second; });
      const size_t made = recorded_here - cur_.by_key[missing->second].size();
      std::string what = "the recording has an event at " + site + in_step + " that the replay did not make";
      if (made > 0)
        what = "the recording has " + std::to_string(recorded_here) + " events at " + site + in_step +
               ", the replay made " + std::to_string(made);
      else if (const auto* r = std::get_if<trace::RngDrawEvent>(&e))
        what = "the recording draws " + std::to_string(r->draw.count) + " words from stream " +
               r->draw.stream + " at " + site + in_step + ", a draw the replay did not make";
      else if (std::holds_alternative<trace::ProbeEvent>(e))
        what = "the recording probes " + site + in_step + ", the replay has no such probe";
      diverge(divergence(s.step, phase_of_key(missing->second), "missing", site, what));
    }
    if (cur_.step.end) {
      const trace::StepEnd& rec = *cur_.step.end;
      losses_.emplace_back(rec.loss, s.loss);
      views_.loss(rec.loss, s.loss);
      if (compare_) compare_tensors(rec, s);
      const bool loss_differs = !same_bits(rec.loss, s.loss);
      // The loss is computed in the forward pass, before the backward pass and the update: one that differs is
      // the step's first difference, ahead of the gradients and parameters compared here and of a probe of the
      // backward pass or the update that differed during the step. (A step of several shards, a data-parallel
      // run's, runs each shard's backward pass before the next shard's loss: its loss, their mean, does not tell
      // which came first, and the probe stays.)
      if (compare_ && loss_differs && first_ && first_->step == s.step &&
          (first_->phase == "backward" || first_->phase == "update") && cur_.step.collectives.empty() &&
          collective_index_ == 0)
        first_.reset();
      if (compare_ && !first_) {
        const auto [recorded, replayed] = side_by_side(rec.loss, s.loss);
        // A step's metrics (its batch's accuracy) come from the forward pass, as its loss does: one that
        // differs where the loss is the same bits is named after the loss, before the gradients.
        const std::string metric = first_metric_difference(rec.metrics, s.metrics);
        if (loss_differs) {
          diverge(divergence(s.step, "forward", "step_end", "loss",
                             "the loss differs: recorded " + recorded + ", replayed " + replayed));
        } else if (!metric.empty()) {
          diverge(divergence(s.step, "forward", "step_end", "metrics",
                             "the metrics of step " + std::to_string(s.step) + " differ (" + metric +
                                 ", recorded vs replayed), its loss the same (" + recorded + ")"));
        } else {
          // Step-level evidence: which gradient or parameter differs first (gradients come first in time).
          auto first_diff = [&](const std::vector<std::pair<std::string, uint64_t>>& recorded,
                                const std::vector<std::pair<std::string, const Tensor*>>& now) -> std::string {
            for (size_t i = 0; i < recorded.size() && i < now.size(); ++i)
              if (recorded[i].first != now[i].first || recorded[i].second != digest(*now[i].second))
                return now[i].first;
            return recorded.size() != now.size() ? "(parameter list)" : "";
          };
          const std::string g = rec.grads.empty() ? "" : first_diff(rec.grads, s.grads);
          std::string p;
          if (g.empty() && trace::is_combined(rec.params)) {
            if (rec.params[0].second != trace::parameter_digests(s.params, ProbeLevel::step)[0].second)
              p = rec.params[0].first;
          } else if (g.empty()) {
            p = first_diff(rec.params, s.params);
          }
          if (!g.empty() || !p.empty()) {
            const std::string name = g.empty() ? p : g;
            diverge(divergence(s.step, g.empty() ? "update" : "backward", "step_end",
                               step_end_site(name, !g.empty()),
                               what_differs(name, !g.empty()) + " after step " + std::to_string(s.step) +
                                   " (recorded loss " + recorded + ", replayed " + replayed + ")"));
          }
        }
      }
      // At level layer a layer's input gradient (L:dx) is probed after the layer computed its own parameters'
      // gradients (its bias's, then its kernel's or scale's), which the step's end compares: where L:dx
      // differs first and one of those differs too, that one came first and is named.
      if (compare_ && first_ && first_->step == s.step && first_->kind == "probe" &&
          first_->phase == "backward" && first_->site.size() > 3 && first_->site.ends_with(":dx") &&
          !rec.grads.empty()) {
        const std::string layer = first_->site.substr(0, first_->site.size() - 3);
        std::string g;
        for (const bool bias : {true, false})
          for (size_t i = 0; g.empty() && i < rec.grads.size() && i < s.grads.size(); ++i) {
            const std::string& name = rec.grads[i].first;
            if (name != s.grads[i].first || name.rfind(layer + ".", 0) != 0 ||
                name.ends_with(".bias") != bias)
              continue;
            if (rec.grads[i].second != digest(*s.grads[i].second)) g = name;
          }
        if (!g.empty()) {
          const auto [recorded, replayed] = side_by_side(rec.loss, s.loss);
          first_.reset();
          diverge(divergence(s.step, "backward", "step_end", step_end_site(g, true),
                             what_differs(g, true) + " after step " + std::to_string(s.step) +
                                 " (recorded loss " + recorded + ", replayed " + replayed +
                                 "), computed before " + layer + ":dx, which differs too"));
        }
      }
    }
  }
  compare_kernels(s.step);
  ++steps_compared_;
  cur_ = Current{};
}

}  // namespace trainrr
