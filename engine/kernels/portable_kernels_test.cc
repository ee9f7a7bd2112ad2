// The portable kernels compute the generic kernels' arithmetic with wider registers: the same bits as
// f32_matmul__cpu_blocked_generic and the generic im2col convolutions, whatever the shape and thread count.
// (That the generic code gives the same bits on other CPUs is tests/other_cpu_test.cc's part.)

#include <gtest/gtest.h>

#include "engine/kernels/kernel_registry.h"
#include "engine/kernels/kernel_test_util.h"
#include "engine/thread_pool.h"

namespace trainrr::testing {
namespace {

const Kernel& kernel(const KernelRegistry& r, const char* id) {
  const Kernel* k = r.find(id);
  EXPECT_NE(k, nullptr) << id;
  return *k;
}

TEST(PortableKernels, MatmulHasTheGenericKernelsBitsForEveryShape) {
  KernelRegistry r;
  register_cpu_kernels(r);
  const Kernel& portable = kernel(r, "f32_matmul__cpu_portable");
  const Kernel& generic = kernel(r, "f32_matmul__cpu_blocked_generic");
  EXPECT_TRUE(portable.info.portable && generic.info.portable);
  const MatmulShape shapes[] = {{1, 1, 1},          {7, 13, 5},           {12, 32, 300},
                                {13, 33, 301},      {64, 10, 64, true},   {64, 64, 1437, false, true},
                                {100, 70, 513, true, true, true},         {300, 200, 700},
                                {5, 40, 0, false, false, true}};
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    uint32_t seed = 1;
    for (const MatmulShape& s : shapes) {
      const MatmulProblem p(s, seed++);
      EXPECT_TRUE(same_bits(p.run(portable, pool), p.run(generic, pool))) << s.name() << ", " << threads;
    }
  }
}

TEST(PortableKernels, ConvolutionsHaveTheGenericIm2colBits) {
  KernelRegistry r;
  register_cpu_kernels(r);
  const std::pair<const char*, const char*> pairs[] = {
      {"f32_conv2d_fwd__cpu_portable", "f32_conv2d_fwd__cpu_im2col_generic"},
      {"f32_conv2d_bwd_data__cpu_portable", "f32_conv2d_bwd_data__cpu_im2col_generic"},
      {"f32_conv2d_bwd_filter__cpu_portable", "f32_conv2d_bwd_filter__cpu_im2col_generic"}};
  const ConvShape shapes[] = {{2, 8, 8, 1, 3, 3, 16, 1, 1}, {3, 9, 7, 5, 3, 3, 7, 2, 0},
                              {64, 4, 4, 16, 3, 3, 32, 1, 1}, {4, 6, 6, 8, 1, 1, 12, 1, 0}};
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    uint32_t seed = 7;
    for (const auto& [portable_id, generic_id] : pairs)
      for (const ConvShape& s : shapes) {
        const ConvProblem p(s, seed++);
        const Kernel& portable = kernel(r, portable_id);
        EXPECT_TRUE(portable.info.portable);
        EXPECT_TRUE(same_bits(p.run(portable, pool), p.run(kernel(r, generic_id), pool)))
            << portable_id << " " << s.name() << ", " << threads;
      }
  }
}

TEST(PortableKernels, NoKernelThatDependsOnTheCpuOrTheThreadsIsDeclaredPortable) {
  KernelRegistry r;
  register_cpu_kernels(r);
  int portable = 0;
  for (const Kernel& k : r.all()) {
    if (!k.info.portable) continue;
    ++portable;
    EXPECT_EQ(k.info.isa, Isa::generic) << k.info.id;
    EXPECT_TRUE(k.info.deterministic && !k.info.thread_dependent) << k.info.id;
    EXPECT_EQ(k.info.id.find("openblas"), std::string::npos) << k.info.id;
    EXPECT_EQ(k.info.id.find("splitk"), std::string::npos) << k.info.id;
  }
  EXPECT_GE(portable, 10);
}

}  // namespace
}  // namespace trainrr::testing
