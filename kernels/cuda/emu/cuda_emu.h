// A CPU emulation of the CUDA execution model, enough to run Spark's kernels (kernels/cuda/*.cu) unchanged as
// C++ on a machine without a GPU. One OS thread: every CUDA thread of a block is a fiber (ucontext) with its
// own stack, run by a scheduler until it reaches a barrier; __syncthreads waits for every live thread of the
// block, a warp shuffle for every live thread of its warp (values pass through per-thread slots); a thread that
// returns early leaves the barriers (as on the GPU); a barrier nobody can complete is reported as a deadlock.
// __shared__ variables are function statics (blocks run one after another, so a block owns them while it
// runs). It checks the kernels' logic — indexing, tiling, masking, online softmax, reductions,
// synchronisation — not the compiler, the hardware or performance: that is the GPU check's job.
#pragma once
#define SPARK_EMULATION 1

#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

namespace emu {
enum class Wait { None, Block, Warp };
struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  Wait wait = Wait::None;
  bool done = false;
  unsigned t = 0;
};
struct Block {
  std::vector<Fiber> fibers;
  ucontext_t sched;
  unsigned live = 0, arrived = 0;
  std::vector<unsigned> warp_live, warp_arrived;
  std::vector<std::uint64_t> slots;
  std::vector<double> dyn;  // dynamic shared memory (double-aligned)
  std::function<void()> body;
};
inline Block* block = nullptr;
inline Fiber* cur = nullptr;
inline dim3 tidx, bidx, bdim, gdim;
inline unsigned tid = 0;
constexpr std::size_t STACK = 256 * 1024;

inline void release(Wait w, unsigned warp) {
  for (auto& f : block->fibers)
    if (!f.done && f.wait == w && (w == Wait::Block || f.t / 32 == warp)) f.wait = Wait::None;
}
inline void check_block() {
  if (block->live > 0 && block->arrived == block->live) {
    block->arrived = 0;
    release(Wait::Block, 0);
  }
}
inline void check_warp(unsigned w) {
  if (block->warp_live[w] > 0 && block->warp_arrived[w] == block->warp_live[w]) {
    block->warp_arrived[w] = 0;
    release(Wait::Warp, w);
  }
}
inline void yield() { swapcontext(&cur->ctx, &block->sched); }
inline void sync_block() {
  cur->wait = Wait::Block;
  block->arrived++;
  check_block();
  while (cur->wait == Wait::Block) yield();
}
inline void sync_warp() {
  const unsigned w = cur->t / 32;
  cur->wait = Wait::Warp;
  block->warp_arrived[w]++;
  check_warp(w);
  while (cur->wait == Wait::Warp) yield();
}
inline void trampoline() {
  block->body();
  cur->done = true;
  block->live--;
  block->warp_live[cur->t / 32]--;
  check_block();
  check_warp(cur->t / 32);
}  // returns to uc_link: the scheduler

// Runs `f` as the kernel body over the grid, one block at a time, each with all its threads as fibers.
template <class F>
void launch(dim3 grid, dim3 blk, std::size_t dyn_bytes, F f) {
  gdim = grid;
  bdim = blk;
  const unsigned n = blk.x * blk.y * blk.z;
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        Block b;
        b.fibers.resize(n);
        b.live = n;
        b.warp_live.assign((n + 31) / 32, 0);
        b.warp_arrived.assign((n + 31) / 32, 0);
        b.slots.assign(n, 0);
        b.dyn.assign(dyn_bytes / sizeof(double) + 1, 0.0);
        b.body = f;
        block = &b;
        bidx = dim3{x, y, z};
        for (unsigned t = 0; t < n; t++) {
          Fiber& fb = b.fibers[t];
          fb.t = t;
          b.warp_live[t / 32]++;
          fb.stack.reset(new char[STACK]);
          getcontext(&fb.ctx);
          fb.ctx.uc_stack.ss_sp = fb.stack.get();
          fb.ctx.uc_stack.ss_size = STACK;
          fb.ctx.uc_link = &b.sched;
          makecontext(&fb.ctx, trampoline, 0);
        }
        for (;;) {
          bool ran = false, all_done = true;
          for (auto& fb : b.fibers) {
            if (fb.done) continue;
            all_done = false;
            if (fb.wait != Wait::None) continue;
            cur = &fb;
            tid = fb.t;
            tidx = dim3{fb.t % blk.x, (fb.t / blk.x) % blk.y, fb.t / (blk.x * blk.y)};
            swapcontext(&b.sched, &fb.ctx);
            ran = true;
          }
          if (all_done) break;
          if (!ran) {
            std::fprintf(stderr, "emulation: deadlock in block (%u, %u, %u): threads wait at a barrier others never reach\n", x, y, z);
            std::exit(3);
          }
        }
        block = nullptr;
        cur = nullptr;
      }
}

template <class T>
T shfl_from(T v, unsigned src) {
  static_assert(sizeof(T) <= 8);
  std::memcpy(&block->slots[tid], &v, sizeof(T));
  const unsigned me = tid;
  sync_warp();
  T r;
  std::memcpy(&r, &block->slots[src], sizeof(T));
  sync_warp();
  (void)me;
  return r;
}
}  // namespace emu

#define threadIdx emu::tidx
#define blockIdx emu::bidx
#define blockDim emu::bdim
#define gridDim emu::gdim
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static
#define __launch_bounds__(x)
#define __align__(n) alignas(n)
#define DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(emu::block->dyn.data())

inline void __syncthreads() { emu::sync_block(); }
template <class T>
T __shfl_xor_sync(unsigned, T v, int o) {
  return emu::shfl_from(v, (emu::tid / 32) * 32 + ((emu::tid % 32) ^ (unsigned)o));
}
template <class T>
T __shfl_up_sync(unsigned, T v, int o) {
  const unsigned lane = emu::tid % 32;
  return emu::shfl_from(v, lane >= (unsigned)o ? emu::tid - o : emu::tid);
}
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline unsigned atomicMin(unsigned* p, unsigned v) {
  std::atomic_ref<unsigned> a(*p);
  unsigned old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
inline float __expf(float x) { return std::exp(x); }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
template <class A, class B>
std::common_type_t<A, B> min(A a, B b) {
  return a < b ? a : b;
}
template <class A, class B>
std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}
