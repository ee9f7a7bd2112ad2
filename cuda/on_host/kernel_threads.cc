// A launch's threads on the host (cuda/on_host/cuda_runtime.h says what this shows and what not). Threads of
// a block that share memory run as fibers, switched at __syncthreads; AddressSanitizer is told of each
// switch, so that it follows the fibers' stacks. On x86-64 a switch saves the registers the ABI asks a callee
// to keep and swaps stacks (trainrr_switch_stacks below); elsewhere it is ucontext's swapcontext, which also
// asks the kernel for the signal mask at every switch: a reduction over two million columns switches some
// 10^8 times.

#include <fmt/format.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#define TRAINRR_ASAN_FIBERS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TRAINRR_ASAN_FIBERS 1
#endif
#endif
#if defined(TRAINRR_ASAN_FIBERS)
#include <sanitizer/common_interface_defs.h>
#endif

namespace trainrr::host_kernels {
namespace {

cudaError_t pending_error = cudaSuccess;

// A fiber's stack: generous, since sanitizers grow frames.
constexpr size_t kStackBytes = 256 * 1024;

enum class State { running, waiting, done };

#if defined(__x86_64__)
// Saves rbp, rbx, r12-r15, MXCSR and the x87 control word on the current stack and its pointer in *save, then
// continues on `to`, a stack saved so (or prepared by new_stack).
extern "C" void trainrr_switch_stacks(void** save, void* to);
asm(R"(
  .text
  .globl trainrr_switch_stacks
  .type trainrr_switch_stacks, @function
trainrr_switch_stacks:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size trainrr_switch_stacks, .-trainrr_switch_stacks
  .section .note.GNU-stack,"",@progbits
  .text
)");

struct Context {
  void* sp = nullptr;
};

void switch_context(Context& from, Context& to) { trainrr_switch_stacks(&from.sp, to.sp); }

// A stack on which switching to `c` calls entry() (which must never return): the frame trainrr_switch_stacks
// pops, with entry as its return address, placed so that entry starts with the stack aligned as after a call.
void make_context(Context& c, void* stack, size_t bytes, void (*entry)()) {
  auto top = reinterpret_cast<uintptr_t>(stack) + bytes;
  top &= ~uintptr_t{15};
  auto* frame = reinterpret_cast<uint64_t*>(top - 72);
  uint32_t control[2];
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(control[0]), "=m"(control[1]));
  frame[0] = control[0] | (static_cast<uint64_t>(control[1] & 0xffff) << 32);  // MXCSR, then the x87 word
  for (int r = 1; r <= 6; ++r) frame[r] = 0;                                   // r15 ... rbp
  frame[7] = reinterpret_cast<uint64_t>(entry);
  frame[8] = 0;  // entry's return address: it never returns
  c.sp = frame;
}
#else
struct Context {
  ucontext_t uc;
};

void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }

void make_context(Context& c, void* stack, size_t bytes, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = bytes;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
#endif

struct Fiber {
  Context context;
  void* stack = nullptr;
  State state = State::running;
  uint3 index;
  void* fake_stack = nullptr;  // AddressSanitizer's, while switched away
};

// Who touched a shared word in which phase (the span between two barriers of the block; 0: none yet).
struct WordAccess {
  uint32_t write_phase = 0, read_phase = 0;
  int64_t writer = -1, reader = -1;  // a thread's index in the block; reader kSeveral: more than one
};
constexpr int64_t kSeveral = -2;

struct Launch {
  const char* kernel = "";
  std::vector<WordAccess> words;  // of the shared memory
  uint32_t phase = 1;
  const std::function<void()>* thread = nullptr;
  std::vector<unsigned char> shared;
  bool fibers = false;
  std::vector<Fiber> pool;  // stacks kept from launch to launch
  size_t current = 0;
  Context scheduler;
  const void* scheduler_stack = nullptr;  // AddressSanitizer's view of the scheduler's stack
  size_t scheduler_stack_bytes = 0;
};

Launch& state() {
  static Launch launch;
  return launch;
}

[[noreturn]] void stop(const std::string& why) {
  std::fprintf(stderr, "trainrr host kernels: %s\n", why.c_str());
  std::abort();
}

void to_fiber(Launch& l, Fiber& f) {
#if defined(TRAINRR_ASAN_FIBERS)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack, kStackBytes);
  switch_context(l.scheduler, f.context);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  switch_context(l.scheduler, f.context);
#endif
}

// From the running fiber back to the scheduler; `ending` when the fiber will not be resumed.
void to_scheduler(Launch& l, Fiber& f, bool ending) {
#if defined(TRAINRR_ASAN_FIBERS)
  __sanitizer_start_switch_fiber(ending ? nullptr : &f.fake_stack, l.scheduler_stack,
                                 l.scheduler_stack_bytes);
  switch_context(f.context, l.scheduler);
  __sanitizer_finish_switch_fiber(f.fake_stack, &l.scheduler_stack, &l.scheduler_stack_bytes);
#else
  (void)ending;
  switch_context(f.context, l.scheduler);
#endif
}

void fiber_main() {
  Launch& l = state();
#if defined(TRAINRR_ASAN_FIBERS)
  __sanitizer_finish_switch_fiber(nullptr, &l.scheduler_stack, &l.scheduler_stack_bytes);
#endif
  (*l.thread)();
  Fiber& f = l.pool[l.current];
  f.state = State::done;
  to_scheduler(l, f, true);
}

// Runs the threads of the current block as fibers, phase by phase between barriers, the last thread first.
void run_block_as_fibers(Launch& l, size_t threads) {
  while (l.pool.size() < threads) {
    Fiber f;
    f.stack = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (f.stack == MAP_FAILED) throw std::bad_alloc();
    l.pool.push_back(f);
  }
  for (size_t t = 0; t < threads; ++t) {
    Fiber& f = l.pool[t];
    f.state = State::running;
    f.index = uint3{static_cast<unsigned>(t % blockDim.x), static_cast<unsigned>(t / blockDim.x % blockDim.y),
                    static_cast<unsigned>(t / (blockDim.x * blockDim.y))};
    make_context(f.context, f.stack, kStackBytes, fiber_main);
  }
  for (;;) {
    for (size_t t = threads; t-- > 0;) {
      Fiber& f = l.pool[t];
      if (f.state != State::running) continue;
      l.current = t;
      threadIdx = f.index;
      to_fiber(l, f);
    }
    size_t waiting = 0, done = 0;
    for (size_t t = 0; t < threads; ++t) (l.pool[t].state == State::waiting ? waiting : done) += 1;
    if (waiting == 0) return;
    if (done > 0)
      stop(fmt::format(
          "{}: in block ({}, {}, {}), {} threads wait at __syncthreads while {} have returned: the "
          "GPU's behaviour is undefined",
          l.kernel, blockIdx.x, blockIdx.y, blockIdx.z, waiting, done));
    for (size_t t = 0; t < threads; ++t) l.pool[t].state = State::running;
    ++l.phase;
  }
}

std::string dims(dim3 d) { return fmt::format("({}, {}, {})", d.x, d.y, d.z); }

// Why CUDA would refuse this launch shape, or empty.
std::string refused(dim3 grid, dim3 block, size_t shared_bytes) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return "a grid dimension is 0: grid " + dims(grid);
  if (block.x == 0 || block.y == 0 || block.z == 0) return "a block dimension is 0: block " + dims(block);
  if (grid.y > 65535 || grid.z > 65535) return "grid " + dims(grid) + ": y and z are at most 65535";
  if (grid.x > 2147483647u) return "grid " + dims(grid) + ": x is at most 2^31 - 1";
  if (block.x > 1024 || block.y > 1024 || block.z > 64)
    return "block " + dims(block) + ": x and y are at most 1024, z at most 64";
  if (static_cast<uint64_t>(block.x) * block.y * block.z > 1024)
    return "block " + dims(block) + ": more than 1024 threads";
  if (shared_bytes > 48 * 1024)
    return std::to_string(shared_bytes) + " bytes of dynamic shared memory: more than 48 KiB needs an opt-in";
  return {};
}

}  // namespace

void run(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes,
         const std::function<void()>& thread) {
  if (std::string why = refused(grid, block, shared_bytes); !why.empty()) {
    std::fprintf(stderr, "trainrr host kernels: %s: launch refused: %s\n", kernel, why.c_str());
    pending_error = cudaErrorInvalidConfiguration;
    return;
  }
  Launch& l = state();
  if (l.thread) stop(std::string(kernel) + ": launched from inside the kernel " + l.kernel);
  l.kernel = kernel;
  l.thread = &thread;
  l.fibers = shared_bytes > 0;
  gridDim = grid;
  blockDim = block;
  const size_t threads = static_cast<size_t>(block.x) * block.y * block.z;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = uint3{x, y, z};
        l.shared.assign(shared_bytes, 0xff);
        l.words.assign((shared_bytes + 3) / 4, WordAccess{});
        l.phase = 1;
        if (l.fibers) {
          run_block_as_fibers(l, threads);
          continue;
        }
        for (unsigned tz = 0; tz < block.z; ++tz)
          for (unsigned ty = 0; ty < block.y; ++ty)
            for (unsigned tx = 0; tx < block.x; ++tx) {
              threadIdx = uint3{tx, ty, tz};
              thread();
            }
      }
  l.thread = nullptr;
}

void* shared_memory() {
  Launch& l = state();
  if (!l.thread) stop("shared memory asked for outside a launch");
  return l.shared.empty() ? nullptr : l.shared.data();
}

namespace {

std::string thread_str(int64_t t) {
  const int64_t x = t % blockDim.x, y = t / blockDim.x % blockDim.y,
                z = t / (int64_t{blockDim.x} * blockDim.y);
  return fmt::format("thread ({}, {}, {})", x, y, z);
}

[[noreturn]] void race(const Launch& l, size_t word, const std::string& what) {
  stop(fmt::format(
      "{}: a race on shared memory in block ({}, {}, {}): word {} (byte {}) {}, with no __syncthreads "
      "between",
      l.kernel, blockIdx.x, blockIdx.y, blockIdx.z, word, word * 4, what));
}

// The words of [offset, offset + bytes), checked to lie in the launch's shared memory.
std::pair<size_t, size_t> words_of(const Launch& l, size_t offset, size_t bytes) {
  if (!l.fibers) stop("shared memory accessed outside a launch that has it");
  if (offset % 4 != 0 || offset + bytes > l.shared.size())
    stop(fmt::format("{}: shared memory bytes [{}, {}) are outside the launch's {} bytes", l.kernel, offset,
                     offset + bytes, l.shared.size()));
  return {offset / 4, (offset + bytes + 3) / 4};
}

}  // namespace

void shared_access(size_t offset, size_t bytes, bool write) {
  Launch& l = state();
  const auto [first, end] = words_of(l, offset, bytes);
  const int64_t t = static_cast<int64_t>(l.current);
  // Put in words only for a race: this runs at every access.
  const auto how = [&] { return (write ? "written by " : "read by ") + thread_str(t) + " after "; };
  for (size_t w = first; w < end; ++w) {
    WordAccess& a = l.words[w];
    if (a.write_phase == l.phase && a.writer != t) race(l, w, how() + thread_str(a.writer) + " wrote it");
    if (write) {
      if (a.read_phase == l.phase && a.reader != t)
        race(l, w,
             how() + (a.reader == kSeveral ? std::string("several threads") : thread_str(a.reader)) +
                 " read it");
      a.write_phase = l.phase, a.writer = t;
    } else if (a.read_phase != l.phase) {
      a.read_phase = l.phase, a.reader = t;
    } else if (a.reader != t) {
      a.reader = kSeveral;
    }
  }
}

void sync_threads() {
  Launch& l = state();
  if (!l.thread) stop("__syncthreads called outside a launch");
  if (!l.fibers)
    stop(std::string(l.kernel) +
         ": calls __syncthreads in a launch without dynamic shared memory, whose threads run one after "
         "another "
         "here (cuda/on_host/cuda_runtime.h)");
  Fiber& f = l.pool[l.current];
  f.state = State::waiting;
  to_scheduler(l, f, false);
}

}  // namespace trainrr::host_kernels

using trainrr::host_kernels::pending_error;

cudaError_t cudaGetLastError() {
  const cudaError_t e = pending_error;
  pending_error = cudaSuccess;
  return e;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
  }
  return "unknown error";
}

cudaError_t cudaMalloc(void** pointer, size_t bytes) {
  *pointer = std::malloc(bytes > 0 ? bytes : 1);
  return *pointer ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaFree(void* pointer) {
  std::free(pointer);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* pointer, int value, size_t bytes, cudaStream_t) {
  if (bytes > 0) std::memset(pointer, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
