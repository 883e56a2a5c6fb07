// A CPU stand-in for the part of CUDA's thread model that laic's SIMT-only kernels use, so that
// CI (no GPU) runs their real source: every thread of a block is an OS thread, blocks run one
// after another (so `__shared__` can be a function-local static), __syncthreads and the warp
// intrinsics are barriers over the block's or the warp's threads. Warp intrinsics need the full
// mask and whole warps (blockDim.x a multiple of 32), and every lane of the warp must reach the
// same intrinsic call: one reached from different places (a shuffle inside a branch that
// diverges within the warp, undefined on a GPU) fails, naming both places. A thread that
// returns leaves the barriers, as an exited CUDA thread no longer counts for __syncthreads. A
// block that has not finished after LAIC_EMU_BLOCK_TIMEOUT_S seconds (default 300) fails: some
// barrier was not reached by every thread.
//
// Dynamic shared memory: `launch`'s last argument sizes it, and LAIC_DYNAMIC_SMEM (the kernels'
// way to declare it) gives each block's threads the block's buffer.
//
// Named barriers (`bar.sync id, count`, which lets a block's warpgroups synchronise
// separately): `named_barrier`, one barrier per id and block, its thread count fixed by the
// first thread to reach it.
//
// Not emulated here: tensor cores, cp.async, half types (cuda_emu_mma.hpp, cuda_emu_wgmma.hpp).
// Build with -ffp-contract=off so that the host compiler, like the _rn intrinsics, fuses
// nothing.
#pragma once

#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <math.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <source_location>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
// Empty: a later library header's __attribute__((__noinline__)) still parses.
#define __noinline__
#define __restrict__

struct alignas(16) float4 {
    float x, y, z, w;
};

struct alignas(16) uint4 {
    unsigned x, y, z, w;
};


inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

inline int min(int a, int b) { return a < b ? a : b; }

inline int max(int a, int b) { return a > b ? a : b; }

namespace emu {

[[noreturn]] inline void fail(const char* what) {
    std::fprintf(stderr, "cuda_emu: %s\n", what);
    std::abort();
}

struct Warp {
    std::barrier<> sync{32};
    unsigned long long slot[32] = {};
    // Where each lane called the current warp intrinsic, and which lanes have returned.
    std::source_location site[32];
    std::atomic<bool> exited[32] = {};
};

struct Block {
    Block(unsigned threads, size_t smem_bytes) : sync(threads), smem(smem_bytes, 0xff) {
        for (unsigned w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<Warp>());
    }
    std::barrier<> sync;
    std::vector<std::unique_ptr<Warp>> warps;
    // Dynamic shared memory, NaN bytes until written (operator new aligns it to 16 bytes).
    std::vector<unsigned char> smem;
    // Named barriers 1..15 (0 is __syncthreads'), made by the first thread that reaches one.
    std::mutex named_mutex;
    std::unique_ptr<std::barrier<>> named[16];
    int named_count[16] = {};
};

inline thread_local Block* current = nullptr;

// Run by every thread when its kernel body returns (registered by the emulation headers that
// keep per-thread asynchronous state, to fail on work still in flight).
inline std::vector<void (*)()> at_thread_exit;

inline Warp& warp() { return *current->warps[threadIdx.x / 32]; }

inline unsigned lane() { return threadIdx.x & 31; }

template <class T>
unsigned long long bits(T v) {
    static_assert(sizeof(T) <= 8);
    unsigned long long b = 0;
    std::memcpy(&b, &v, sizeof v);
    return b;
}

template <class T>
T from_bits(unsigned long long b) {
    T v;
    std::memcpy(&v, &b, sizeof v);
    return v;
}

// Every lane of the warp publishes `v`; `all` receives the 32 values. `site` is where the
// lane called the intrinsic: all lanes must be at the same one.
inline void exchange(unsigned mask, unsigned long long v, unsigned long long all[32],
                     std::source_location site = std::source_location::current()) {
    if (mask != 0xffffffffu) fail("warp intrinsics need the full mask");
    Warp& w = warp();
    const unsigned me = lane();
    w.slot[me] = v;
    w.site[me] = site;
    w.sync.arrive_and_wait();
    for (unsigned l = 0; l < 32; ++l) {
        if (w.exited[l]) {
            std::fprintf(stderr, "cuda_emu: lane %u calls a full-mask warp intrinsic at %s:%u after lane %u returned\n",
                         me, site.file_name(), (unsigned)site.line(), l);
            std::abort();
        }
        const std::source_location& other = w.site[l];
        if (other.line() != site.line() ||
            (other.file_name() != site.file_name() && std::strcmp(other.file_name(), site.file_name()) != 0)) {
            std::fprintf(stderr,
                         "cuda_emu: a warp intrinsic reached from two places in one warp (divergent code): "
                         "lane %u at %s:%u, lane %u at %s:%u\n",
                         me, site.file_name(), (unsigned)site.line(), l, other.file_name(), (unsigned)other.line());
            std::abort();
        }
    }
    std::memcpy(all, w.slot, sizeof w.slot);
    w.sync.arrive_and_wait();
}

// Seconds a block may run before the emulation decides that it is stuck at a barrier.
inline double block_timeout_s() {
    const char* v = std::getenv("LAIC_EMU_BLOCK_TIMEOUT_S");
    return v != nullptr ? std::atof(v) : 300.0;
}

// Runs `body` as a kernel over `grid` blocks of `block` threads with `smem_bytes` of dynamic
// shared memory.
template <class F>
void launch(dim3 grid, dim3 block, F body, size_t smem_bytes = 0) {
    if (block.x == 0 || block.x % 32 != 0 || block.x > 1024 || block.y != 1 || block.z != 1) {
        fail("blocks must be 1-D with a multiple of 32 threads, at most 1024");
    }
    gridDim = grid;
    blockDim = block;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                Block b(block.x, smem_bytes);
                std::mutex done_mutex;
                std::condition_variable done_cv;
                unsigned done = 0;
                std::vector<std::thread> threads;
                for (unsigned t = 0; t < block.x; ++t) {
                    threads.emplace_back([&, t, x, y, z] {
                        threadIdx = {t, 0, 0};
                        blockIdx = {x, y, z};
                        current = &b;
                        body();
                        for (auto check : at_thread_exit) check();
                        warp().exited[lane()] = true;
                        warp().sync.arrive_and_drop();
                        b.sync.arrive_and_drop();
                        std::lock_guard<std::mutex> lock(done_mutex);
                        ++done;
                        done_cv.notify_one();
                    });
                }
                {
                    std::unique_lock<std::mutex> lock(done_mutex);
                    const auto limit = std::chrono::duration<double>(block_timeout_s());
                    if (!done_cv.wait_for(lock, limit, [&] { return done == block.x; })) {
                        std::fprintf(stderr,
                                     "cuda_emu: block (%u, %u, %u) still running after %g s: %u of %u threads "
                                     "returned; a barrier or warp intrinsic that not every thread reaches?\n",
                                     x, y, z, block_timeout_s(), done, block.x);
                        std::abort();
                    }
                }
                for (auto& t : threads) t.join();
            }
}

}  // namespace emu

#define LAIC_DYNAMIC_SMEM(T, name) T* name = reinterpret_cast<T*>(emu::current->smem.data())
// The alignment is not honoured (the shared base of cuda_emu_mma.hpp is 16-byte aligned): a
// kernel must not rely on it for more than 16 bytes.
#define LAIC_DYNAMIC_SMEM_ALIGNED(T, name, A) LAIC_DYNAMIC_SMEM(T, name)

inline void __syncthreads() { emu::current->sync.arrive_and_wait(); }

namespace emu {

// bar.sync id, count: waits until `count` threads of the block have arrived at barrier `id`.
inline void named_barrier(int id, int count) {
    if (id < 1 || id > 15 || count <= 0 || count % 32 != 0 || count > (int)blockDim.x) {
        fail("named barriers need an id of 1..15 and a thread count that is a multiple of 32");
    }
    Block& b = *current;
    std::barrier<>* bar;
    {
        std::lock_guard<std::mutex> lock(b.named_mutex);
        if (!b.named[id]) {
            b.named[id] = std::make_unique<std::barrier<>>(count);
            b.named_count[id] = count;
        }
        if (b.named_count[id] != count) fail("a named barrier used with two thread counts");
        bar = b.named[id].get();
    }
    bar->arrive_and_wait();
}

}  // namespace emu

inline void __syncwarp(unsigned mask = 0xffffffffu) {
    if (mask != 0xffffffffu) emu::fail("__syncwarp needs the full mask");
    emu::warp().sync.arrive_and_wait();
}

inline int __popc(unsigned v) { return __builtin_popcount(v); }

inline int __ffs(int v) { return __builtin_ffs(v); }

template <class T>
T __shfl_sync(unsigned mask, T v, int src, std::source_location site = std::source_location::current()) {
    unsigned long long all[32];
    emu::exchange(mask, emu::bits(v), all, site);
    return emu::from_bits<T>(all[src & 31]);
}

template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta,
                 std::source_location site = std::source_location::current()) {
    unsigned long long all[32];
    emu::exchange(mask, emu::bits(v), all, site);
    const unsigned l = emu::lane();
    return l >= delta ? emu::from_bits<T>(all[l - delta]) : v;
}

template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta,
                   std::source_location site = std::source_location::current()) {
    unsigned long long all[32];
    emu::exchange(mask, emu::bits(v), all, site);
    const unsigned l = emu::lane();
    return l + delta < 32 ? emu::from_bits<T>(all[l + delta]) : v;
}

template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask,
                  std::source_location site = std::source_location::current()) {
    unsigned long long all[32];
    emu::exchange(mask, emu::bits(v), all, site);
    return emu::from_bits<T>(all[(emu::lane() ^ lane_mask) & 31]);
}

template <class T>
unsigned __match_any_sync(unsigned mask, T v,
                          std::source_location site = std::source_location::current()) {
    unsigned long long all[32];
    emu::exchange(mask, emu::bits(v), all, site);
    unsigned group = 0;
    for (unsigned l = 0; l < 32; ++l) group |= (all[l] == all[emu::lane()] ? 1u : 0u) << l;
    return group;
}

inline int __any_sync(unsigned mask, int pred,
                      std::source_location site = std::source_location::current()) {
    unsigned long long all[32];
    emu::exchange(mask, pred != 0, all, site);
    for (unsigned l = 0; l < 32; ++l)
        if (all[l]) return 1;
    return 0;
}

inline unsigned __ballot_sync(unsigned mask, int pred,
                               std::source_location site = std::source_location::current()) {
    unsigned long long all[32];
    emu::exchange(mask, pred != 0, all, site);
    unsigned votes = 0;
    for (unsigned l = 0; l < 32; ++l) votes |= (all[l] ? 1u : 0u) << l;
    return votes;
}

template <class T>
T atomicAdd(T* address, T v) {
    return std::atomic_ref<T>(*address).fetch_add(v);
}

inline unsigned atomicOr(unsigned* address, unsigned v) {
    return std::atomic_ref<unsigned>(*address).fetch_or(v);
}

inline unsigned atomicMax(unsigned* address, unsigned v) {
    std::atomic_ref<unsigned> a(*address);
    unsigned old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {
    }
    return old;
}

inline unsigned __float_as_uint(float v) {
    unsigned u;
    std::memcpy(&u, &v, 4);
    return u;
}

inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }

inline double __dmul_rn(double a, double b) { return a * b; }

inline float __fsub_rn(float a, float b) { return a - b; }

inline float __double2float_rn(double v) { return (float)v; }
