// Every registered kernel of every computing op against results computed here in double precision.
// Tolerance: an element whose exact value is sum_t p_t (t < terms) may be off by
// 4 * (terms + 2) * FLT_EPSILON * sum_t |p_t|: a few times the worst-case bound of recursive float
// summation, whatever order a kernel adds in. A wrong index or a lost tile is off by far more.

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <variant>

#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/kernel_test_util.h"

namespace trainrr {
namespace {

using testing::ConvProblem;
using testing::ConvShape;
using testing::MatmulProblem;
using testing::MatmulShape;
using testing::ReduceProblem;
using testing::ReduceShape;

// 1, primes, sizes off every block (MR 4/6/12, NR 8/16/32, kc 256, 96-row and 256-column tasks), k split
// in several depth blocks, every transpose and accumulate combination.
const MatmulShape kMatmulShapes[] = {
    {1, 1, 1},          {1, 17, 1},           {17, 1, 5},           {7, 13, 17},
    {33, 33, 33},       {67, 5, 129},         {6, 16, 256},         {97, 130, 300},
    {200, 300, 40},     {13, 1, 600},         {2, 3, 2000},         {7, 13, 17, true},
    {33, 67, 19, false, true}, {67, 33, 260, true, true}, {12, 35, 7, false, false, true},
    {50, 70, 300, true, true, true}, {1, 1, 513, true, false, true}, {101, 259, 3, false, true, true},
};

const ReduceShape kReduceShapes[] = {
    {1, 1}, {1, 7}, {7, 1}, {17, 13}, {1000, 1}, {33, 67}, {129, 5}, {70001, 1}, {3001, 37}, {5, 5000},
};

const ConvShape kConvShapes[] = {
    {1, 5, 5, 1, 3, 3, 1, 1, 1},  {2, 7, 9, 3, 3, 3, 4, 1, 1}, {3, 8, 8, 2, 3, 3, 5, 2, 0},
    {2, 6, 5, 4, 1, 1, 3, 1, 0},  {2, 13, 11, 3, 5, 3, 7, 2, 2}, {9, 30, 30, 2, 3, 3, 3, 1, 1},
};

using Shape = std::variant<MatmulShape, ReduceShape, ConvShape>;

struct Case {
  std::string kernel;
  Shape shape;
};

std::string shape_name(const Shape& s) {
  return std::visit([](const auto& v) { return v.name(); }, s);
}

std::vector<Case> all_cases() {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  std::vector<Case> cases;
  for (const Kernel& k : registry.all()) {
    if (k.info.op == OpKind::matmul)
      for (const auto& s : kMatmulShapes) cases.push_back({k.info.id, s});
    if (k.info.op == OpKind::reduce)
      for (const auto& s : kReduceShapes) cases.push_back({k.info.id, s});
    if (testing::is_conv(k.info.op))
      for (const auto& s : kConvShapes) cases.push_back({k.info.id, s});
  }
  return cases;
}

// Exact values, the sums of |terms| and the term counts, per output element.
struct Expected {
  std::vector<double> value, magnitude;
  std::vector<int64_t> terms;
  explicit Expected(size_t size) : value(size), magnitude(size), terms(size) {}
  void add(size_t e, double term) {
    value[e] += term;
    magnitude[e] += std::fabs(term);
    ++terms[e];
  }
};

Expected expected_matmul(const MatmulProblem& p) {
  const auto& s = p.s;
  Expected ex(s.m * s.n);
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      if (s.accumulate) ex.add(i * s.n + j, p.c0[i * s.n + j]);
      for (int64_t l = 0; l < s.k; ++l) {
        const double a = s.trans_a ? p.a[l * s.m + i] : p.a[i * s.k + l];
        const double b = s.trans_b ? p.b[j * s.k + l] : p.b[l * s.n + j];
        ex.add(i * s.n + j, a * b);
      }
    }
  return ex;
}

Expected expected_reduce(const ReduceProblem& p) {
  Expected ex(p.s.cols);
  for (int64_t i = 0; i < p.s.rows; ++i)
    for (int64_t j = 0; j < p.s.cols; ++j) ex.add(j, p.x[i * p.s.cols + j]);
  return ex;
}

Expected expected_conv(const ConvProblem& p, OpKind op) {
  const Conv2dArgs& a = p.shape;
  Expected ex(p.out_size(op));
  for (int64_t n = 0; n < a.n; ++n)
    for (int64_t oy = 0; oy < a.out_h; ++oy)
      for (int64_t ox = 0; ox < a.out_w; ++ox)
        for (int64_t ky = 0; ky < a.kh; ++ky)
          for (int64_t kx = 0; kx < a.kw; ++kx) {
            const int64_t iy = oy * a.stride_h + ky - a.pad_top, ix = ox * a.stride_w + kx - a.pad_left;
            if (iy < 0 || iy >= a.h || ix < 0 || ix >= a.w) continue;
            for (int64_t ci = 0; ci < a.c_in; ++ci)
              for (int64_t co = 0; co < a.c_out; ++co) {
                const int64_t xi = ((n * a.h + iy) * a.w + ix) * a.c_in + ci;
                const int64_t fi = ((ky * a.kw + kx) * a.c_in + ci) * a.c_out + co;
                const int64_t yi = ((n * a.out_h + oy) * a.out_w + ox) * a.c_out + co;
                if (op == OpKind::conv2d_fwd) ex.add(yi, double(p.x[xi]) * p.filter[fi]);
                if (op == OpKind::conv2d_bwd_data) ex.add(xi, double(p.dy[yi]) * p.filter[fi]);
                if (op == OpKind::conv2d_bwd_filter) ex.add(fi, double(p.x[xi]) * p.dy[yi]);
              }
          }
  return ex;
}

class KernelMatchesExact : public ::testing::TestWithParam<Case> {
 protected:
  static ThreadPool& pool() {
    static ThreadPool p(2);
    return p;
  }
};

TEST_P(KernelMatchesExact, WithinSummationBound) {
  KernelRegistry registry;
  register_cpu_kernels(registry);
  const Kernel* k = registry.find(GetParam().kernel);
  ASSERT_NE(k, nullptr);
  if (k->info.isa > detect_isa()) GTEST_SKIP() << "this CPU lacks " << isa_name(k->info.isa);

  std::vector<float> got;
  const Expected ex = std::visit(
      [&](const auto& s) -> Expected {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, MatmulShape>) {
          MatmulProblem p(s, 11);
          got = p.run(*k, pool());
          return expected_matmul(p);
        } else if constexpr (std::is_same_v<S, ReduceShape>) {
          ReduceProblem p(s, 12);
          got = p.run(*k, pool());
          return expected_reduce(p);
        } else {
          ConvProblem p(s, 13);
          got = p.run(*k, pool());
          return expected_conv(p, k->info.op);
        }
      },
      GetParam().shape);

  ASSERT_EQ(got.size(), ex.value.size());
  int64_t bad = 0;
  for (size_t e = 0; e < got.size(); ++e) {
    const double tol = 4.0 * (ex.terms[e] + 2) * FLT_EPSILON * ex.magnitude[e];
    if (!(std::fabs(got[e] - ex.value[e]) <= tol) && bad++ < 5)
      ADD_FAILURE() << "element " << e << ": got " << got[e] << ", exact " << ex.value[e] << ", tolerance " << tol;
  }
  EXPECT_EQ(bad, 0) << "elements out of tolerance, of " << got.size();
}

INSTANTIATE_TEST_SUITE_P(KernelEveryCandidate, KernelMatchesExact, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.kernel + "_" + shape_name(info.param.shape);
                         });

}  // namespace
}  // namespace trainrr
