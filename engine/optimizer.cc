#include "engine/optimizer.h"

#include <cmath>

#include "engine/portable_math.h"

namespace trainrr {

Optimizer::Slots& Optimizer::slots_for(const Param& p) {
  for (auto& s : slots_)
    if (s.param == p.name) return s;
  Slots s{p.name, {}, p.name + "/update:out"};
  for (size_t i = 0; i < slot_names().size(); ++i) s.tensors.emplace_back(p.value.shape, 0.0f);
  slots_.push_back(std::move(s));
  return slots_.back();
}

double Optimizer::power(double b, int64_t t) const {
  return math_ == MathFamily::portable ? pow_portable(b, t) : std::pow(b, static_cast<double>(t));
}

void Optimizer::step(const std::vector<Param*>& params, Runtime& rt) {
  math_ = rt.math;
  ++iterations_;
  const int64_t t = iterations_;
  for (Param* p : params) {
    Slots& s = slots_for(*p);
    if (rt.device) {
      DeviceBackend& d = *rt.device;
      std::vector<float*> slot_ptrs;
      for (auto& st : s.tensors) {
        if (!st.on_device()) to_device(d, st);  // fresh zeros, or restored from a checkpoint
        slot_ptrs.push_back(st.dptr());
      }
      d.optimizer_update(config_, t, rt.math, p->value.dptr(), p->grad.dptr(), slot_ptrs, p->value.size());
      rt.probe(s.probe_site, Phase::update, p->value, ProbeLevel::op);  // the update is done (Runtime::probe)
      continue;
    }
    // Chunks of a fixed size: the update is elementwise, so the split never changes a bit. A small
    // parameter is updated on the calling thread, where waking the pool would cost more than the update.
    constexpr int64_t kChunk = 1 << 14, kParallelMin = 1 << 16;
    const int64_t n = p->value.size();
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    auto chunk = [&](int64_t c, int) {
      const int64_t lo = c * kChunk, len = std::min(kChunk, n - lo);
      std::vector<float*> slot_ptrs;
      slot_ptrs.reserve(s.tensors.size());
      for (auto& st : s.tensors) slot_ptrs.push_back(st.ptr() + lo);
      update(p->value.ptr() + lo, p->grad.ptr() + lo, slot_ptrs, len, t);
    };
    if (n < kParallelMin) {
      for (int64_t c = 0; c < chunks; ++c) chunk(c, 0);
    } else {
      rt.pool().parallel_for(chunks, chunk);
    }
    rt.probe(s.probe_site, Phase::update, p->value, ProbeLevel::op);
  }
}

std::vector<NamedTensor> Optimizer::state() const {
  std::vector<NamedTensor> out;
  const auto names = slot_names();
  for (const auto& s : slots_)
    for (size_t i = 0; i < names.size(); ++i)
      out.push_back({names[i] + "/" + s.param, Tensor(s.tensors[i].shape, s.tensors[i].data)});
  return out;
}

void Optimizer::slots_to_host(DeviceBackend& device) {
  for (auto& s : slots_)
    for (auto& t : s.tensors)
      if (t.on_device()) to_host(device, t);
}

Status Optimizer::restore(const std::vector<NamedTensor>& tensors, int64_t iterations) {
  slots_.clear();
  const auto names = slot_names();
  for (const auto& nt : tensors) {
    const size_t slash = nt.name.find('/');
    const std::string slot = nt.name.substr(0, slash);
    size_t idx = 0;
    while (idx < names.size() && names[idx] != slot) ++idx;
    if (slash == std::string::npos || idx == names.size())
      return Error{"optimizer state '" + nt.name + "' does not belong to this optimizer"};
    const std::string param = nt.name.substr(slash + 1);
    Slots* s = nullptr;
    for (auto& cand : slots_)
      if (cand.param == param) s = &cand;
    if (!s) {
      slots_.push_back({param, std::vector<Tensor>(names.size()), param + "/update:out"});
      s = &slots_.back();
    }
    s->tensors[idx] = nt.value;
  }
  for (auto& s : slots_)
    for (size_t i = 0; i < names.size(); ++i)
      if (s.tensors[i].shape.empty() && !s.tensors[0].shape.empty())
        return Error{"optimizer state " + names[i] + "/" + s.param + " is missing"};
  iterations_ = iterations;
  return {};
}

namespace {

// Keras: m = momentum * m - lr * g; w += m (Nesterov: w += momentum * m - lr * g). Plain: w -= lr * g.
class Sgd : public Optimizer {
 public:
  explicit Sgd(const OptimizerConfig& c) : lr_(c.learning_rate), mom_(c.momentum), nesterov_(c.nesterov) {}
  std::vector<std::string> slot_names() const override {
    return mom_ > 0 ? std::vector<std::string>{"momentum"} : std::vector<std::string>{};
  }
  void update(float* w, const float* g, std::vector<float*>& s, int64_t n, int64_t) const override {
    if (mom_ == 0) {
      for (int64_t i = 0; i < n; ++i) w[i] -= lr_ * g[i];
      return;
    }
    float* m = s[0];
    for (int64_t i = 0; i < n; ++i) {
      m[i] = mom_ * m[i] - lr_ * g[i];
      w[i] += nesterov_ ? mom_ * m[i] - lr_ * g[i] : m[i];
    }
  }

 private:
  float lr_, mom_;
  bool nesterov_;
};

// Keras 3: lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t); m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
// w -= lr_t * m / (sqrt(v) + eps). AdamW first decays: w -= lr * wd * w.
class Adam : public Optimizer {
 public:
  Adam(const OptimizerConfig& c, bool decoupled)
      : lr_(c.learning_rate), b1_(c.beta_1), b2_(c.beta_2), eps_(c.epsilon),
        wd_(decoupled ? c.weight_decay : 0) {}
  std::vector<std::string> slot_names() const override { return {"m", "v"}; }
  void update(float* w, const float* g, std::vector<float*>& s, int64_t n, int64_t t) const override {
    const float lr_t = static_cast<float>(lr_ * std::sqrt(1 - power(b2_, t)) / (1 - power(b1_, t)));
    const float one_b1 = static_cast<float>(1 - b1_), one_b2 = static_cast<float>(1 - b2_);
    const float eps = static_cast<float>(eps_), decay = static_cast<float>(lr_ * wd_);
    if (decay != 0)
      run<true>(w, g, s[0], s[1], n, lr_t, one_b1, one_b2, eps, decay);
    else
      run<false>(w, g, s[0], s[1], n, lr_t, one_b1, one_b2, eps, decay);
  }

 private:
  // The parameter, its grad and the slots are distinct tensors: restrict lets the loop vectorise.
  template <bool kDecay>
  static void run(float* __restrict w, const float* __restrict g, float* __restrict m, float* __restrict v,
                  int64_t n, float lr_t, float one_b1, float one_b2, float eps, float decay) {
    for (int64_t i = 0; i < n; ++i) {
      if (kDecay) w[i] -= w[i] * decay;
      m[i] += (g[i] - m[i]) * one_b1;
      v[i] += (g[i] * g[i] - v[i]) * one_b2;
      w[i] -= lr_t * m[i] / (std::sqrt(v[i]) + eps);
    }
  }

  double lr_, b1_, b2_, eps_, wd_;
};

// Keras 3: v = rho * v + (1 - rho) * g^2; centered: a = rho * a + (1 - rho) * g, d = v - a^2 + eps, else
// d = v + eps; increment = lr * g / sqrt(d); with momentum: m = momentum * m + increment, w -= m; else
// w -= increment.
class RmsProp : public Optimizer {
 public:
  explicit RmsProp(const OptimizerConfig& c)
      : lr_(c.learning_rate), rho_(c.rho), eps_(c.epsilon), mom_(c.momentum), centered_(c.centered) {}
  std::vector<std::string> slot_names() const override {
    std::vector<std::string> names{"velocity"};  // Keras' names and order
    if (mom_ > 0) names.push_back("momentum");
    if (centered_) names.push_back("average_gradient");
    return names;
  }
  void update(float* w, const float* g, std::vector<float*>& s, int64_t n, int64_t) const override {
    float* m = mom_ > 0 ? s[1] : nullptr;
    float* a = centered_ ? s.back() : nullptr;
    if (centered_ && mom_ > 0)
      run<true, true>(w, g, s[0], a, m, n);
    else if (centered_)
      run<true, false>(w, g, s[0], a, m, n);
    else if (mom_ > 0)
      run<false, true>(w, g, s[0], a, m, n);
    else
      run<false, false>(w, g, s[0], a, m, n);
  }

 private:
  template <bool kCentered, bool kMomentum>
  void run(float* __restrict w, const float* __restrict g, float* __restrict v, float* __restrict a,
           float* __restrict m, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) {
      v[i] = rho_ * v[i] + (1 - rho_) * g[i] * g[i];
      float denominator;
      if (kCentered) {
        a[i] = rho_ * a[i] + (1 - rho_) * g[i];
        denominator = v[i] - a[i] * a[i] + eps_;
      } else {
        denominator = v[i] + eps_;
      }
      const float increment = lr_ * g[i] / std::sqrt(denominator);
      if (kMomentum) {
        m[i] = mom_ * m[i] + increment;
        w[i] -= m[i];
      } else {
        w[i] -= increment;
      }
    }
  }

  float lr_, rho_, eps_, mom_;
  bool centered_;
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& c) {
  std::unique_ptr<Optimizer> o;
  if (c.type == "sgd") o = std::make_unique<Sgd>(c);
  if (c.type == "adam") o = std::make_unique<Adam>(c, false);
  if (c.type == "adamw") o = std::make_unique<Adam>(c, true);
  if (c.type == "rmsprop") o = std::make_unique<RmsProp>(c);
  TRAINRR_CHECK(o != nullptr, "optimizer type was validated with the configuration: " + c.type);
  o->config_ = c;
  return o;
}

void apply_optimizer_update(const OptimizerConfig& config, MathFamily math, int64_t t, float* w, const float* g,
                            std::span<float* const> slots, int64_t n) {
  std::unique_ptr<Optimizer> o = make_optimizer(config);
  o->math_ = math;
  std::vector<float*> s(slots.begin(), slots.end());
  o->update(w, g, s, n, t);
}

}  // namespace trainrr
