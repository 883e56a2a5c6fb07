// The Hopper side of the CPU emulation: kernels/wgmma.cuh's inline PTX (wgmma.mma_async
// m64n128k16 and m64n64k16 with f32 accumulation, A from shared memory or registers, its fences
// and commit/wait, named barriers), so that the wgmma kernels' source (gradnorm_wgmma.cu,
// kmeans_wgmma.cu, retrieve_wgmma.cu) runs on the CPU. Include it before the kernels.
//
// - Operands are read through their matrix descriptors as the hardware reads them, with the
//   128-byte swizzle applied to the shared address (bits 4-6 XOR bits 7-9; emu::SHARED_BASE is
//   not 1024-byte aligned, so a kernel must align its tiles). K-major: rows 128 bytes apart
//   within a group of 8, groups `stride byte offset` apart. N-major B (`imm-trans-b` = 1,
//   stored [k][n]): k rows 128 bytes apart within a group of 8, groups `stride byte offset`
//   apart, each row 64 consecutive n, the next 64 n `leading byte offset` further (the PTX
//   ISA's canonical layout ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO))). Any other layout, a base
//   offset, or an address outside the dynamic shared memory fails.
// - A in registers: the quad of lanes that holds a row (4 g .. 4 g + 3 of warp w: row
//   16 w + g and + 8) publishes its four b16x2 registers at the issue (a warp exchange, so
//   every lane must issue it from the same place), and each thread takes its two rows' 16 k
//   from them by the m64nNk16 A-fragment layout (a[q]: row g + 8 (q & 1), columns
//   8 (q >> 1) + 2 t, + 1).
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

// The 16-bit element at byte offset `linear` (before the swizzle) of the shared memory.
inline uint16_t swizzled_at(uint32_t linear) {
    const uint32_t addr = linear ^ (((linear >> 7) & 7) << 4);
    uint16_t v;
    std::memcpy(&v, shared_bytes(addr, 2), 2);
    return v;
}

inline uint32_t descriptor_start(uint64_t desc) { return (uint32_t)(desc & 0x3FFF) << 4; }
inline uint32_t descriptor_lbo(uint64_t desc) { return (uint32_t)((desc >> 16) & 0x3FFF) << 4; }
inline uint32_t descriptor_sbo(uint64_t desc) { return (uint32_t)((desc >> 32) & 0x3FFF) << 4; }

// The element at (row, k) of a K-major, 128-byte-swizzled operand of 16-bit elements.
inline uint16_t swizzled_element(uint64_t desc, int row, int k) {
    return swizzled_at(descriptor_start(desc) + (uint32_t)(row / 8) * descriptor_sbo(desc) +
                       (uint32_t)(row % 8) * 128 + (uint32_t)k * 2);
}

// The element at (n, k) of an N-major, 128-byte-swizzled B operand of 16-bit elements.
inline uint16_t n_major_element(uint64_t desc, int n, int k) {
    return swizzled_at(descriptor_start(desc) + (uint32_t)(n / 64) * descriptor_lbo(desc) +
                       (uint32_t)(k / 8) * descriptor_sbo(desc) + (uint32_t)(k % 8) * 128 +
                       (uint32_t)(n % 64) * 2);
}

inline void check_descriptor(uint64_t desc, bool n_major, int n) {
    if (desc >> 62 != 1) fail("wgmma: only the 128-byte swizzle is emulated");
    if (((desc >> 49) & 7) != 0) fail("wgmma: a descriptor with a base offset");
    if (descriptor_sbo(desc) == 0) fail("wgmma: a descriptor without a stride byte offset");
    if (n_major && n > 64 && descriptor_lbo(desc) < 1024) {
        fail("wgmma: an N-major operand wider than 64 whose leading byte offset overlaps its first 64 columns");
    }
}

// The operand elements one thread's accumulators need: rows 16 w + g and + 8 of A, columns
// 8 nt + 2 t + j of B (nt < N / 8), 16 k each.
struct WgmmaOperands {
    uint16_t a[2][16], b[32][16];
    bool operator==(const WgmmaOperands&) const = default;
};

// One wgmma.m64nNk16 of a thread: its accumulators (N / 2), where its operands are and what
// they held at the issue.
struct WgmmaOp {
    float* d;
    int n;
    uint64_t a, b;     // descriptors (a: unused when A is in registers)
    bool a_in_registers;
    bool b_n_major;
    bool accumulate;
    bool bf16;
    WgmmaOperands issued;
};
inline thread_local AsyncGroups<WgmmaOp> wgmma_queue;

// Reads what `op` needs from shared memory into `o` (A too, unless it is in registers).
inline void read_operands(const WgmmaOp& op, WgmmaOperands& o) {
    check_descriptor(op.b, op.b_n_major, op.n);
    const int w = (threadIdx.x / 32) % 4, g = lane() >> 2, t = lane() & 3;
    if (!op.a_in_registers) {
        check_descriptor(op.a, false, 64);
        for (int i = 0; i < 2; ++i)
            for (int k = 0; k < 16; ++k) o.a[i][k] = swizzled_element(op.a, 16 * w + g + 8 * i, k);
    }
    for (int nt = 0; nt < op.n / 8; ++nt)
        for (int j = 0; j < 2; ++j)
            for (int k = 0; k < 16; ++k) {
                const int col = 8 * nt + 2 * t + j;
                o.b[2 * nt + j][k] = op.b_n_major ? n_major_element(op.b, col, k) : swizzled_element(op.b, col, k);
            }
}

// A's two rows of this thread from the four b16x2 registers of each lane of its quad.
inline void gather_register_a(const uint32_t (&a)[4], WgmmaOperands& o,
                              std::source_location site = std::source_location::current()) {
    unsigned long long lo[32], hi[32];
    exchange(0xffffffffu, (unsigned long long)a[0] | (unsigned long long)a[1] << 32, lo, site);
    exchange(0xffffffffu, (unsigned long long)a[2] | (unsigned long long)a[3] << 32, hi, site);
    const unsigned quad = lane() & ~3u;
    for (unsigned tt = 0; tt < 4; ++tt) {
        const uint32_t reg[4] = {(uint32_t)lo[quad + tt], (uint32_t)(lo[quad + tt] >> 32),
                                 (uint32_t)hi[quad + tt], (uint32_t)(hi[quad + tt] >> 32)};
        for (int q = 0; q < 4; ++q)
            for (int e = 0; e < 2; ++e) o.a[q & 1][8 * (q >> 1) + 2 * tt + e] = (uint16_t)(reg[q] >> (16 * e));
    }
}

template <class T>
float operand(uint16_t bits) {
    T v;
    std::memcpy(&v, &bits, 2);
    return to_float(v);
}

// This thread's N / 2 accumulators of one product, D (+)= A (64 x 16) * B (N x 16)^T.
inline void wgmma_execute(const WgmmaOp& op) {
    WgmmaOperands o = op.issued;
    read_operands(op, o);
    if (!(o == op.issued)) fail("wgmma operands changed in shared memory while the product was in flight");
    auto value = [&](uint16_t bits) {
        return (double)(op.bf16 ? operand<__nv_bfloat16>(bits) : operand<__half>(bits));
    };
    for (int nt = 0; nt < op.n / 8; ++nt)
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 2; ++j) {
                double s = 0.0;
                for (int k = 0; k < 16; ++k) s += value(o.a[i][k]) * value(o.b[2 * nt + j][k]);
                float& d = op.d[4 * nt + 2 * i + j];
                d = (float)((op.accumulate ? (double)d : 0.0) + s);
            }
}

// Queues one product with both operands in shared memory (read at the issue, executed at the
// wait).
inline void wgmma_issue(WgmmaOp op) {
    if (blockDim.x % 128 != 0) fail("wgmma needs whole warpgroups");
    read_operands(op, op.issued);
    wgmma_queue.open.push_back(op);
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

template <int N>
void fence_regs(float (&d)[N]) {
    if (emu::wgmma_queue.in_flight([&](const emu::WgmmaOp& op) { return op.d == d; })) {
        emu::fail("accumulators read while their wgmma are in flight");
    }
}

template <typename TM>
struct Wgmma {
    static void run(float (&d)[64], uint64_t a, uint64_t b, int accumulate) {
        emu::wgmma_issue({d, 128, a, b, false, false, accumulate != 0, std::is_same_v<TM, __nv_bfloat16>, {}});
    }
};

template <typename TM>
struct Wgmma64 {
    static void run(float (&d)[32], uint64_t a, uint64_t b, int accumulate) {
        emu::wgmma_issue({d, 64, a, b, false, false, accumulate != 0, std::is_same_v<TM, __nv_bfloat16>, {}});
    }
};

template <typename TM, int B_N_MAJOR = 1>
struct WgmmaRegA {
    static void run(float (&d)[64], const uint32_t (&a)[4], uint64_t b, int accumulate,
                    std::source_location site = std::source_location::current()) {
        if (blockDim.x % 128 != 0) emu::fail("wgmma needs whole warpgroups");
        emu::WgmmaOp op{d, 128, 0, b, true, B_N_MAJOR != 0, accumulate != 0, std::is_same_v<TM, __nv_bfloat16>, {}};
        emu::gather_register_a(a, op.issued, site);
        emu::read_operands(op, op.issued);
        emu::wgmma_queue.open.push_back(op);
    }
};

}  // namespace wg
}  // namespace laic
