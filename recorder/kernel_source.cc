#include "recorder/kernel_source.h"

namespace trainrr {

namespace {
KernelSourceFactory g_factory = nullptr;
}  // namespace

void set_kernel_source_factory(KernelSourceFactory factory) { g_factory = factory; }
KernelSourceFactory kernel_source_factory() { return g_factory; }

}  // namespace trainrr
