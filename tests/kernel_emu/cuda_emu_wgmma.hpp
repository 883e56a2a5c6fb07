// The Hopper side of the CPU emulation: kernels/wgmma.cuh's inline PTX (wgmma.mma_async
// m64n128k16 with f32 accumulation, its fences and commit/wait, named barriers), so that the
// wgmma kernels' source (gradnorm_wgmma.cu, kmeans_wgmma.cu) runs on the CPU. Include it
// before the kernels.
//
// - Operands are read through their matrix descriptors as the hardware reads them: a K-major
//   operand with the 128-byte swizzle, rows 128 bytes apart within a group of 8 and groups
//   `stride byte offset` apart, the swizzle applied to the shared address (bits 4-6 XOR bits
//   7-9; emu::SHARED_BASE is not 1024-byte aligned, so a kernel must align its tiles). Any
//   other layout, a base offset, or an address outside the dynamic shared memory fails.
// - wgmma reads its operands when issued and again when the thread waits for its group
//   (wgmma.wait_group), the two ends of what the PTX ISA allows, and fails if they differ (a
//   stage refilled, or not yet landed, while products that read it are in flight: with
//   cp.async's NaN bytes between issue and wait, cuda_emu_mma.hpp, either shows). The products
//   are written at the wait: accumulators read before it are stale. `fence_regs` on
//   accumulators with products in flight, and a thread that returns with products in flight,
//   fail at once.
// - Each thread computes its own 64 accumulators by the m64nNk16 layout of the PTX ISA (warp w
//   of the warpgroup: rows 16 w + g + 8 i; lane 4 g + t: columns 8 nt + 2 t + j, register
//   4 nt + 2 i + j), the 16 exact products added in f64 and rounded once into the accumulator,
//   as the mma.sync emulation does.
#pragma once

#include "cuda_emu_mma.hpp"

#include <cstdint>
#include <type_traits>
#include <vector>

namespace emu {

// The element at (row, k) of a K-major, 128-byte-swizzled operand of 16-bit elements.
inline uint16_t swizzled_element(uint64_t desc, int row, int k) {
    const uint32_t start = (uint32_t)(desc & 0x3FFF) << 4;
    const uint32_t stride = (uint32_t)((desc >> 32) & 0x3FFF) << 4;
    const uint32_t linear = start + (uint32_t)(row / 8) * stride + (uint32_t)(row % 8) * 128 + (uint32_t)k * 2;
    const uint32_t addr = linear ^ (((linear >> 7) & 7) << 4);
    uint16_t v;
    std::memcpy(&v, shared_bytes(addr, 2), 2);
    return v;
}

inline void check_descriptor(uint64_t desc) {
    if (desc >> 62 != 1) fail("wgmma: only the 128-byte swizzle is emulated");
    if (((desc >> 49) & 7) != 0) fail("wgmma: a descriptor with a base offset");
    if (((desc >> 32) & 0x3FFF) == 0) fail("wgmma: a descriptor without a stride byte offset");
}

// The operand elements one thread's accumulators need: rows 16 w + g and + 8 of A, columns
// 8 nt + 2 t + j of B, 16 k each.
struct WgmmaOperands {
    uint16_t a[2][16], b[32][16];
    bool operator==(const WgmmaOperands&) const = default;
};

inline WgmmaOperands read_operands(uint64_t a, uint64_t b) {
    check_descriptor(a);
    check_descriptor(b);
    const int w = (threadIdx.x / 32) % 4, g = lane() >> 2, t = lane() & 3;
    WgmmaOperands o;
    for (int i = 0; i < 2; ++i)
        for (int k = 0; k < 16; ++k) o.a[i][k] = swizzled_element(a, 16 * w + g + 8 * i, k);
    for (int nt = 0; nt < 16; ++nt)
        for (int j = 0; j < 2; ++j)
            for (int k = 0; k < 16; ++k) o.b[2 * nt + j][k] = swizzled_element(b, 8 * nt + 2 * t + j, k);
    return o;
}

// One wgmma.m64n128k16 of a thread: its accumulators, the operands' descriptors and what they
// held at the issue.
struct WgmmaOp {
    float* d;
    uint64_t a, b;
    bool accumulate;
    bool bf16;
    WgmmaOperands issued;
};
inline thread_local AsyncGroups<WgmmaOp> wgmma_queue;

template <class T>
float operand(uint16_t bits) {
    T v;
    std::memcpy(&v, &bits, 2);
    return to_float(v);
}

// This thread's 64 accumulators of one product, D (+)= A (64 x 16) * B (128 x 16)^T.
inline void wgmma_execute(const WgmmaOp& op) {
    const WgmmaOperands o = read_operands(op.a, op.b);
    if (!(o == op.issued)) fail("wgmma operands changed in shared memory while the product was in flight");
    auto value = [&](uint16_t bits) {
        return (double)(op.bf16 ? operand<__nv_bfloat16>(bits) : operand<__half>(bits));
    };
    for (int nt = 0; nt < 16; ++nt)
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 2; ++j) {
                double s = 0.0;
                for (int k = 0; k < 16; ++k) s += value(o.a[i][k]) * value(o.b[2 * nt + j][k]);
                float& d = op.d[4 * nt + 2 * i + j];
                d = (float)((op.accumulate ? (double)d : 0.0) + s);
            }
}

inline void wgmma_drained() { wgmma_queue.check_drained("a thread returned with wgmma products in flight"); }

inline const bool wgmma_checked_at_exit = (at_thread_exit.push_back(wgmma_drained), true);

}  // namespace emu

namespace laic {
namespace wg {

inline void wgmma_fence() {}

inline void wgmma_commit() { emu::wgmma_queue.commit(); }

// The products of all but the N most recent groups happen now.
template <int N>
void wgmma_wait() {
    emu::wgmma_queue.wait(N, emu::wgmma_execute);
}

inline void named_barrier(int id, int count) { emu::named_barrier(id, count); }

inline void fence_proxy_async() {}

inline void fence_regs(float (&d)[64]) {
    if (emu::wgmma_queue.in_flight([&](const emu::WgmmaOp& op) { return op.d == d; })) {
        emu::fail("accumulators read while their wgmma are in flight");
    }
}

template <typename TM>
struct Wgmma {
    static void run(float (&d)[64], uint64_t a, uint64_t b, int accumulate) {
        if (blockDim.x % 128 != 0) emu::fail("wgmma needs whole warpgroups");
        emu::wgmma_queue.open.push_back(
            {d, a, b, accumulate != 0, std::is_same_v<TM, __nv_bfloat16>, emu::read_operands(a, b)});
    }
};

}  // namespace wg
}  // namespace laic
