#pragma once
// C++ lets the compiler fuse a*b+c into one FMA wherever the target has it (GCC does so by default, even
// in ISO mode). Kernels whose bits must not depend on -march mark themselves with TRAINRR_NO_FP_CONTRACT
// and open their body with TRAINRR_NO_FP_CONTRACT_BODY.

#if defined(__clang__)
#define TRAINRR_NO_FP_CONTRACT
#define TRAINRR_NO_FP_CONTRACT_BODY _Pragma("clang fp contract(off)")
#elif defined(__GNUC__)
#define TRAINRR_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#define TRAINRR_NO_FP_CONTRACT_BODY
#else
#define TRAINRR_NO_FP_CONTRACT
#define TRAINRR_NO_FP_CONTRACT_BODY
#endif
