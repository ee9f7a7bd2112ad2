#pragma once
// Shared by the kernel tests: random problems for each op, run through any kernel of that op.

#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/kernels/kernel_registry.h"
#include "engine/thread_pool.h"

namespace trainrr::testing {

inline std::vector<float> random_floats(int64_t count, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(count);
  for (auto& x : v) x = dist(gen);
  return v;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct MatmulShape {
  int64_t m, n, k;
  bool trans_a = false, trans_b = false, accumulate = false;
  std::string name() const {
    return std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) + (trans_a ? "_ta" : "") +
           (trans_b ? "_tb" : "") + (accumulate ? "_acc" : "");
  }
};

struct ReduceShape {
  int64_t rows, cols;
  std::string name() const { return std::to_string(rows) + "x" + std::to_string(cols); }
};

// Symmetric padding; out_h and out_w follow from it.
struct ConvShape {
  int64_t n, h, w, c_in, kh, kw, c_out, stride, pad;
  std::string name() const {
    std::ostringstream o;
    o << 'n' << n << '_' << h << 'x' << w << 'x' << c_in << "_k" << kh << 'x' << kw << 'x' << c_out << "_s" << stride
      << "_p" << pad;
    return o.str();
  }
  Conv2dArgs args() const {
    Conv2dArgs a;
    a.n = n, a.h = h, a.w = w, a.c_in = c_in, a.kh = kh, a.kw = kw, a.c_out = c_out;
    a.stride_h = a.stride_w = stride, a.pad_top = a.pad_left = pad;
    a.out_h = (h + 2 * pad - kh) / stride + 1;
    a.out_w = (w + 2 * pad - kw) / stride + 1;
    return a;
  }
};

// Inputs of one matmul; run() gives C.
struct MatmulProblem {
  MatmulShape s;
  std::vector<float> a, b, c0;
  MatmulProblem(const MatmulShape& shape, uint32_t seed)
      : s(shape), a(random_floats(s.m * s.k, seed)), b(random_floats(s.k * s.n, seed + 1)),
        c0(random_floats(s.m * s.n, seed + 2)) {}
  MatmulArgs args(float* c) const {
    MatmulArgs p;
    p.trans_a = s.trans_a, p.trans_b = s.trans_b, p.m = s.m, p.n = s.n, p.k = s.k;
    p.a = a.data(), p.b = b.data(), p.c = c, p.accumulate = s.accumulate;
    return p;
  }
  std::vector<float> run(const Kernel& k, ThreadPool& pool) const {
    std::vector<float> c = c0;
    k.matmul(args(c.data()), pool);
    return c;
  }
};

struct ReduceProblem {
  ReduceShape s;
  std::vector<float> x;
  ReduceProblem(const ReduceShape& shape, std::vector<float> values) : s(shape), x(std::move(values)) {}
  ReduceProblem(const ReduceShape& shape, uint32_t seed) : s(shape), x(random_floats(s.rows * s.cols, seed)) {}
  std::vector<float> run(const Kernel& k, ThreadPool& pool) const {
    std::vector<float> out(s.cols, 12345.0f);  // kernels overwrite
    k.reduce({x.data(), s.rows, s.cols, out.data()}, pool);
    return out;
  }
};

struct ConvProblem {
  ConvShape s;
  Conv2dArgs shape;
  std::vector<float> x, filter, dy;
  ConvProblem(const ConvShape& cs, uint32_t seed) : s(cs), shape(cs.args()) {
    x = random_floats(shape.n * shape.h * shape.w * shape.c_in, seed);
    filter = random_floats(shape.kh * shape.kw * shape.c_in * shape.c_out, seed + 1);
    dy = random_floats(shape.n * shape.out_h * shape.out_w * shape.c_out, seed + 2);
  }
  int64_t out_size(OpKind op) const {
    if (op == OpKind::conv2d_fwd) return shape.n * shape.out_h * shape.out_w * shape.c_out;
    if (op == OpKind::conv2d_bwd_data) return shape.n * shape.h * shape.w * shape.c_in;
    return shape.kh * shape.kw * shape.c_in * shape.c_out;
  }
  std::vector<float> run(const Kernel& k, ThreadPool& pool) const {
    std::vector<float> out(out_size(k.info.op), 12345.0f);  // kernels overwrite
    Conv2dArgs a = shape;
    a.x = x.data(), a.filter = filter.data(), a.dy = dy.data(), a.out = out.data();
    k.conv(a, pool);
    return out;
  }
};

inline bool is_conv(OpKind op) {
  return op == OpKind::conv2d_fwd || op == OpKind::conv2d_bwd_data || op == OpKind::conv2d_bwd_filter;
}

}  // namespace trainrr::testing
