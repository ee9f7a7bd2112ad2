#include "replayer/page_views.h"

#include <cxxabi.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <set>

#include "replayer/divergence.h"
#include "replayer/replayer.h"
#include "traces/trace_reader.h"

namespace trainrr {

float relative_difference(const Summary& a, const Summary& b) {
  // Another shape or other non-finite values: as far apart as it gets, with no size to give.
  if (a.count != b.count) return MapRow::kOtherCount;
  // As many non-finite values on both sides: the summary covers the finite ones alone (all zeros where none
  // is), and the tensors differ where it does not show: no size either.
  if (a.non_finite != b.non_finite || a.non_finite > 0) return MapRow::kNonFinite;
  const double n = static_cast<double>(std::max<uint64_t>(a.count, 1));
  const double scale = std::max({std::fabs(double{a.min}), std::fabs(double{a.max}), std::fabs(double{b.min}),
                                 std::fabs(double{b.max})});
  // The RMS where both sums of squares are finite: a square of finite values past float32's range (about
  // 1.8e19 and up, an exploding run) is an infinity that no value is.
  const double rms =
      std::isfinite(a.sum_sq) && std::isfinite(b.sum_sq)
          ? std::fabs(std::sqrt(std::max(a.sum_sq, 0.0) / n) - std::sqrt(std::max(b.sum_sq, 0.0) / n))
          : 0.0;
  const double d = std::max({std::fabs(double{a.min} - double{b.min}),
                             std::fabs(double{a.max} - double{b.max}), std::fabs(a.sum - b.sum) / n, rms});
  const double r = scale > 0 ? d / scale : d;
  // Finite values alone (both sides counted none that is not): as far apart as a size goes.
  if (!std::isfinite(r)) return 1e38f;
  // Digests that differ under equal summaries: a difference below what the summary resolves.
  if (r <= 0) return std::numeric_limits<float>::min();
  // Below the two stand-ins above (a finite summary's relative difference is at most about 2).
  return static_cast<float>(std::min(r, 1e38));
}

std::vector<SideBySide> side_by_side_table(const std::vector<std::pair<std::string, std::string>>& a,
                                           const std::vector<std::pair<std::string, std::string>>& b) {
  std::vector<SideBySide> out;
  std::map<std::string, size_t> at;
  for (const auto& [k, v] : a)
    if (at.emplace(k, out.size()).second) out.push_back({k, v, "", true, false});
  for (const auto& [k, v] : b) {
    auto [it, added] = at.emplace(k, out.size());
    if (added) {
      out.push_back({k, "", v, false, true});
    } else {
      out[it->second].b = v;
      out[it->second].in_b = true;
    }
  }
  return out;
}

std::vector<SideBySide> side_by_side_table(const std::map<std::string, std::string>& a,
                                           const std::map<std::string, std::string>& b) {
  return side_by_side_table(std::vector<std::pair<std::string, std::string>>(a.begin(), a.end()),
                            std::vector<std::pair<std::string, std::string>>(b.begin(), b.end()));
}

std::string shell_word(const std::string& word) {
  const bool plain = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("/._-+=,:@%").find(c) != std::string_view::npos;
  });
  if (plain) return word;
  std::string q = "'";
  for (char c : word) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string replay_command_line(const ReplayOptions& o) {
  std::string c = "trainrr replay " + shell_word(o.trace_path) + " --force " + o.force.str();
  for (const std::string& s : o.overrides) c += " --set " + shell_word(s);
  if (!o.data_path.empty()) c += " --data " + shell_word(o.data_path);
  if (o.allow_data_change) c += " --allow-data-change";
  if (o.from_step > 0) c += " --from-step " + std::to_string(o.from_step);
  if (o.to_step >= 0) c += " --to-step " + std::to_string(o.to_step);
  if (o.keep_going) c += " --keep-going";
  return c;
}

void StepViews::begin_step(int64_t step, int epoch_a, int epoch_b) {
  if (count_ == 0) first_step_ = step;
  if (count_ % stride_ == 0) {
    loss_a_.push_back(NAN);
    loss_b_.push_back(NAN);
    for (auto& row : rows_) row.size.push_back(MapRow::kNotCompared);
  }
  ++count_;
  last_step_ = step;
  for (int side = 0; side < 2; ++side) {
    const int epoch = side ? epoch_b : epoch_a;
    if (epoch < 0) continue;
    if (epoch != last_epoch_[side]) epochs_[side].push_back({step, epoch + 1});
    last_epoch_[side] = epoch;
    epoch_end_[side][epoch] = step;
  }
  if (loss_a_.size() >= kMaxPoints) halve();
}

void StepViews::loss(double a, double b) {
  for (auto [v, n] : {std::pair{a, &non_finite_a_}, std::pair{b, &non_finite_b_}})
    if (!std::isfinite(v)) {
      if (n->steps++ == 0) n->first = last_step_, n->first_value = v;
    }
  // A point shows its first step's loss.
  if (loss_a_.empty() || (count_ - 1) % stride_ != 0) return;
  loss_a_.back() = a;
  loss_b_.back() = b;
}

namespace {

// The larger of two sizes of one point: a measured difference over an unmeasured one over same bits.
float combine(float x, float y) {
  if (x > 0 || y > 0) return std::max(x, y);
  return std::max(x, y) == MapRow::kSame ? MapRow::kSame
         : (x == MapRow::kSizeUnknown || y == MapRow::kSizeUnknown) ? MapRow::kSizeUnknown
                                                                    : MapRow::kNotCompared;
}

std::string block_of(std::string_view phase) {
  if (phase == "backward" || phase == "update") return std::string(phase);
  return "forward";
}

}  // namespace

void StepViews::mark(const std::string& site, const std::string& layer, const std::string& block, float size) {
  if (loss_a_.empty()) return;  // no step begun
  layer_rank_.emplace(layer, layer_rank_.size());
  std::string key = block + '\n' + site;
  auto it = row_of_.find(key);
  if (it == row_of_.end()) {
    if (rows_.size() >= kMaxMapRows) {
      ++sites_left_out_;
      return;
    }
    it = row_of_.emplace(std::move(key), rows_.size()).first;
    rows_.push_back({site, layer, block, std::vector<float>(loss_a_.size(), MapRow::kNotCompared)});
  }
  float& cell = rows_[it->second].size.back();
  // kNotCompared is the least of the sizes, so the first mark of a point replaces it.
  cell = combine(cell, size);
}

void StepViews::probe(std::string_view site, std::string_view phase, const Summary* a, const Summary* b) {
  std::string layer, op;
  split_site(std::string(site), layer, op);
  mark(std::string(site), layer, block_of(phase), a && b ? relative_difference(*a, *b) : MapRow::kSame);
}

void StepViews::tensor(const std::string& name, bool gradient, bool differs) {
  std::string layer, op;
  split_site(name, layer, op);
  mark(step_end_site(name, gradient), layer, gradient ? "backward" : "update",
       differs ? MapRow::kSizeUnknown : MapRow::kSame);
}

void StepViews::epoch_logs(int side, int epoch, const std::vector<std::pair<std::string, double>>& logs) {
  epochs_logged_[side ? 1 : 0].insert(epoch);
  for (const auto& [k, v] : logs) {
    if (k != "val_loss") continue;
    auto [it, added] = val_loss_.emplace(epoch, std::pair<double, double>{NAN, NAN});
    (side == 0 ? it->second.first : it->second.second) = v;
  }
}

void StepViews::halve() {
  // Points 2i and 2i+1 become point i: the first one's losses, the larger of the two sizes. A step added
  // later opens a point only at a multiple of the new stride, which the point before it then covers.
  for (auto* v : {&loss_a_, &loss_b_}) {
    for (size_t i = 0; i < (v->size() + 1) / 2; ++i) (*v)[i] = (*v)[2 * i];
    v->resize((v->size() + 1) / 2);
  }
  for (auto& row : rows_) {
    auto& s = row.size;
    for (size_t i = 0; i < (s.size() + 1) / 2; ++i)
      s[i] = 2 * i + 1 < s.size() ? combine(s[2 * i], s[2 * i + 1]) : s[2 * i];
    s.resize((s.size() + 1) / 2);
  }
  stride_ *= 2;
}

void StepViews::finish(PageViews& page) {
  page.first_step = first_step_;
  page.step_stride = stride_;
  page.last_step = last_step_;
  page.loss_a = std::move(loss_a_);
  page.loss_b = std::move(loss_b_);
  page.non_finite_a = non_finite_a_;
  page.non_finite_b = non_finite_b_;
  // A's epochs, or B's where A's are not known (a replay past the end of its recording).
  const bool a_known = !epochs_[0].empty();
  page.epochs = std::move(epochs_[a_known ? 0 : 1]);
  auto same = [](const EpochMark& x, const EpochMark& y) { return x.step == y.step && x.epoch == y.epoch; };
  if (a_known &&
      !std::equal(page.epochs.begin(), page.epochs.end(), epochs_[1].begin(), epochs_[1].end(), same))
    page.epochs_b = std::move(epochs_[1]);
  // An epoch ended within the steps compared where its logs, which follow its last step, were read.
  const int k = a_known ? 0 : 1;
  for (const int e : epochs_logged_[k]) page.epochs_ended += epoch_end_[k].count(e);
  // Each side's validation loss at its own epoch's last step.
  for (const auto& [epoch, ab] : val_loss_) {
    int64_t at[2] = {-1, -1};
    for (int side = 0; side < 2; ++side)
      if (auto end = epoch_end_[side].find(epoch); end != epoch_end_[side].end()) at[side] = end->second;
    const double a = at[0] >= 0 ? ab.first : NAN, b = at[1] >= 0 ? ab.second : NAN;
    if (!std::isnan(a) || !std::isnan(b)) page.val_loss.push_back({epoch + 1, at[0], a, b, at[1]});
  }
  // Blocks in the order a step runs them; layers in model order within each, a layer's rows as first seen.
  auto block_rank = [](const std::string& b) { return b == "forward" ? 0 : b == "backward" ? 1 : 2; };
  std::vector<size_t> order(rows_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    const MapRow &a = rows_[x], &b = rows_[y];
    return std::pair(block_rank(a.block), layer_rank_[a.layer]) < std::pair(block_rank(b.block), layer_rank_[b.layer]);
  });
  page.rows.clear();
  page.sites_left_out = sites_left_out_;
  for (size_t i : order) {
    rows_[i].size.resize(page.loss_a.size(), MapRow::kNotCompared);
    page.rows.push_back(std::move(rows_[i]));
  }
  rows_.clear();
  row_of_.clear();
}

std::optional<trace::StepKernels> recorded_step_kernels(const std::string& path, int64_t step) {
  auto reader = trace::TraceReader::open(path, trace::without_payloads());
  if (!reader || !(*reader)->header().kernels_recorded) return std::nullopt;
  for (;;) {
    auto rec = (*reader)->next();
    if (!rec || !rec->has_value()) return std::nullopt;
    if (auto* s = std::get_if<trace::TraceStep>(&(*rec)->value)) {
      if (s->index == step) return std::move(s->kernels);
      if (s->index > step) return std::nullopt;
    }
  }
}

namespace {

// Back-references in a mangled name (S_, S0_, T_, T1_, ...): each may repeat a component that holds others,
// so that a few hundred bytes demangle to gigabytes.
size_t back_references(const std::string& name) {
  size_t n = 0;
  for (size_t i = 0; i + 1 < name.size(); ++i) {
    if (name[i] != 'S' && name[i] != 'T') continue;
    size_t j = i + 1;
    while (j < name.size() && (std::isdigit(static_cast<unsigned char>(name[j])) ||
                               std::isupper(static_cast<unsigned char>(name[j]))))
      ++j;
    if (j < name.size() && name[j] == '_') ++n;
  }
  return n;
}

constexpr size_t kMaxDemangled = size_t{64} << 10;  // longer than anyone reads as a name

std::optional<std::string> demangle_here(const std::string& name) {
  int status = 0;
  char* out = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
  std::optional<std::string> s;
  if (status == 0 && out && std::strlen(out) <= kMaxDemangled) s = std::string(out);
  std::free(out);
  return s;
}

// The demangler has no bound on its output: a name of many back-references is demangled in a child process
// with a bound on its memory (256 MiB past this process's) and its time (2 s), and its result read back.
std::optional<std::string> demangle_apart(const std::string& name) {
  int fds[2];
  if (::pipe(fds) != 0) return std::nullopt;
  uint64_t pages = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%" SCNu64, &pages) != 1) pages = 0;
    std::fclose(f);
  }
  const uint64_t limit = pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) + (uint64_t{256} << 20);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]), ::close(fds[1]);
    return std::nullopt;
  }
  if (pid == 0) {
    ::close(fds[0]);
    if (pages > 0) {
      const rlimit r{limit, limit};
      ::setrlimit(RLIMIT_AS, &r);
    }
    ::signal(SIGALRM, SIG_DFL);
    ::alarm(2);
    int status = 0;
    char* out = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
    if (status != 0 || !out) ::_exit(1);
    const size_t n = std::strlen(out);
    if (n > kMaxDemangled) ::_exit(1);
    for (size_t done = 0; done < n;) {
      const ssize_t w = ::write(fds[1], out + done, n - done);
      if (w <= 0) ::_exit(1);
      done += static_cast<size_t>(w);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string got;
  char buf[4096];
  for (;;) {
    const ssize_t r = ::read(fds[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (got.size() <= kMaxDemangled) got.append(buf, static_cast<size_t>(r));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || got.empty() || got.size() > kMaxDemangled)
    return std::nullopt;
  return got;
}

}  // namespace

std::string demangled(const std::string& name) {
  if (name.size() < 3 || name.size() > 4096 || name.compare(0, 2, "_Z") != 0 ||
      name.find('\0') != std::string::npos)
    return name;
  // A name of few back-references demangles to at most a few times its length (2^8 times a 4 KiB name at
  // the very most): here. One of more may be built to demangle to gigabytes: apart.
  const std::optional<std::string> s =
      back_references(name) <= 8 ? demangle_here(name) : demangle_apart(name);
  return s ? *s : name;
}

KernelTimeline replay_timeline(const trace::TraceHeader& header, const std::string& path, int64_t step, bool on_gpu,
                               const ReplayedKernels* replayed) {
  KernelTimeline t;
  if (!header.kernels_recorded || step < 0) return t;
  t.step = step;
  t.a = recorded_step_kernels(path, step);
  if (!t.a) t.missing_a = "The trace holds no kernel record for step " + std::to_string(step) + ".";
  if (on_gpu && replayed && replayed->gathered) {
    t.b = replayed->kernels;
    if (!t.b) t.missing_b = "The replay gathered its kernels, but none ran in step " + std::to_string(step) + ".";
    return t;
  }
  t.missing_b = on_gpu ? "The replay ran on the GPU, but a replay does not gather the kernels it launches: the "
                         "recorded kernels are drawn alone."
                       : "The replay ran on the CPU, which launches no GPU kernels: the recorded kernels are drawn "
                         "alone.";
  return t;
}

}  // namespace trainrr
