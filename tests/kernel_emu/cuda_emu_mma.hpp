// The tensor-core side of the CPU emulation (cuda_emu.hpp): the half types and their
// conversions, and the inline-PTX helpers of kernels/tiles.cuh and operands.cuh (cp.async,
// ldmatrix, mma.sync m16n8k16, ex2), so that the mma.sync kernels' source runs on the CPU.
// Include it before the kernels.
//
// cp.async: the destination turns to NaN bytes when the copy is issued and gets its data when
// the thread waits for the copy's group (cp.async.wait_group), the two ends of what the PTX
// ISA allows, so that a read of a stage before its wait, a refill of a stage that is still to
// be read, or a copy never waited for (checked when the thread returns; an empty group may
// stay in flight) shows. Shared addresses (`smem_addr`) are offsets into the block's dynamic
// shared memory from a base that is 16- but not 128-byte aligned (`emu::SHARED_BASE`), so
// that kernels that align their tiles themselves must do it. ldmatrix and mma exchange the
// warp's registers through the
// warp barrier and compute each lane's fragment by the PTX ISA's layouts; mma adds the 16
// exact products in f64 and rounds once into the f32 accumulator (the hardware's order of
// additions is unspecified). ex2 is exp2f with subnormal results flushed to zero.
#pragma once

#include "cuda_emu.hpp"

#include <cstdint>
#include <cstring>
#include <deque>

#define __align__(n) alignas(n)
// Tells the kernels' headers that the half types below exist.
#define LAIC_EMU_HALF_TYPES 1

struct __half {
    uint16_t x;
};
struct __nv_bfloat16 {
    uint16_t x;
};
struct __half2 {
    __half x, y;
};
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
struct alignas(8) float2 {
    float x, y;
};

inline float __half2float(__half h) {
    _Float16 f;
    std::memcpy(&f, &h.x, 2);
    return (float)f;
}

inline __half __float2half_rn(float v) {
    const _Float16 f = (_Float16)v;  // round to nearest even
    __half h;
    std::memcpy(&h.x, &f, 2);
    return h;
}

inline float __bfloat162float(__nv_bfloat16 b) {
    const uint32_t u = (uint32_t)b.x << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline __nv_bfloat16 __float2bfloat16_rn(float v) {
    uint32_t u;
    std::memcpy(&u, &v, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40)};  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1);                                             // nearest even
    return {(uint16_t)(u >> 16)};
}

inline __half2 __floats2half2_rn(float lo, float hi) { return {__float2half_rn(lo), __float2half_rn(hi)}; }

inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
    return {__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}

template <class T>
T __ldg(const T* p) {
    return *p;
}

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

namespace emu {

// An operand or input element as a float, and a float rounded to one (for the drivers).
inline float to_float(float v) { return v; }
inline float to_float(__half h) { return __half2float(h); }
inline float to_float(__nv_bfloat16 b) { return __bfloat162float(b); }

template <class T>
T from_float(float v);
template <>
inline float from_float<float>(float v) { return v; }
template <>
inline __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Every value rounded to the input type T (what a kernel reads).
template <class T>
std::vector<T> rounded(const std::vector<float>& v) {
    std::vector<T> o;
    o.reserve(v.size());
    for (float x : v) o.push_back(from_float<T>(x));
    return o;
}

inline size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

// The two 16-bit operands packed in a register, low half first, as floats.
template <class T>
void unpack(uint32_t r, float& lo, float& hi) {
    T a, b;
    const uint16_t l = (uint16_t)(r & 0xffffu), h = (uint16_t)(r >> 16);
    std::memcpy(&a, &l, 2);
    std::memcpy(&b, &h, 2);
    lo = to_float(a);
    hi = to_float(b);
}

// mma.sync.m16n8k16.row.col with f32 accumulators, operands of type T.
template <class T>
void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    unsigned long long a01[32], a23[32], b[32];
    exchange(0xffffffffu, a[0] | (unsigned long long)a[1] << 32, a01);
    exchange(0xffffffffu, a[2] | (unsigned long long)a[3] << 32, a23);
    exchange(0xffffffffu, b0 | (unsigned long long)b1 << 32, b);
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; ++l) {
        const int g = l >> 2, t = l & 3;
        const uint32_t regs[4] = {(uint32_t)a01[l], (uint32_t)(a01[l] >> 32), (uint32_t)a23[l],
                                  (uint32_t)(a23[l] >> 32)};
        // a0: (g, 2t..), a1: (g + 8, 2t..), a2: (g, 2t + 8..), a3: (g + 8, 2t + 8..).
        for (int i = 0; i < 4; ++i) {
            const int row = g + (i & 1) * 8, col = 2 * t + (i >> 1) * 8;
            unpack<T>(regs[i], A[row][col], A[row][col + 1]);
        }
        // b0: rows (k) 2t, 2t + 1 of column g; b1: rows 2t + 8, 2t + 9.
        unpack<T>((uint32_t)b[l], B[2 * t][g], B[2 * t + 1][g]);
        unpack<T>((uint32_t)(b[l] >> 32), B[2 * t + 8][g], B[2 * t + 9][g]);
    }
    const int g = lane() >> 2, t = lane() & 3;
    // d0, d1: row g, columns 2t, 2t + 1; d2, d3: row g + 8.
    for (int i = 0; i < 4; ++i) {
        const int row = g + (i >> 1) * 8, col = 2 * t + (i & 1);
        double s = 0.0;
        for (int k = 0; k < 16; ++k) s += (double)A[row][k] * B[k][col];
        d[i] = (float)((double)d[i] + s);
    }
}

// The row addresses that lanes supply to ldmatrix.
inline void row_addresses(const void* smem, unsigned long long (&rows)[32]) {
    exchange(0xffffffffu, (unsigned long long)(uintptr_t)smem, rows);
}

inline uint16_t element(unsigned long long row, int col) {
    uint16_t v;
    std::memcpy(&v, reinterpret_cast<const unsigned char*>((uintptr_t)row) + 2 * col, 2);
    return v;
}

}  // namespace emu

namespace emu {

// The shared address of the first byte of dynamic shared memory.
constexpr uint32_t SHARED_BASE = 0x410;

// The shared address of `p`, which must point into the block's dynamic shared memory.
inline uint32_t shared_address(const void* p) {
    const auto* b = static_cast<const unsigned char*>(p);
    const std::vector<unsigned char>& m = current->smem;
    if (b < m.data() || b > m.data() + m.size()) fail("smem_addr of memory outside the dynamic shared memory");
    return SHARED_BASE + (uint32_t)(b - m.data());
}

// The `bytes` bytes at shared address `addr`, which must lie in the dynamic shared memory.
inline const unsigned char* shared_bytes(uint32_t addr, size_t bytes) {
    if (addr < SHARED_BASE || addr - SHARED_BASE + bytes > current->smem.size()) {
        fail("a shared address outside the dynamic shared memory");
    }
    return current->smem.data() + (addr - SHARED_BASE);
}

// Operations a thread issues asynchronously and waits for by commit groups (cp.async, wgmma):
// those not yet committed, and the committed groups, oldest first.
template <class Op>
struct AsyncGroups {
    std::vector<Op> open;
    std::deque<std::vector<Op>> groups;

    void commit() {
        groups.push_back(std::move(open));
        open.clear();
    }

    // Completes (`done`) the operations of all but the n most recent groups.
    template <class Done>
    void wait(size_t n, Done done) {
        while (groups.size() > n) {
            for (const Op& op : groups.front()) done(op);
            groups.pop_front();
        }
    }

    // Whether an operation for which `match` holds is in flight, committed or not.
    template <class Match>
    bool in_flight(Match match) const {
        for (const Op& op : open)
            if (match(op)) return true;
        for (const auto& group : groups)
            for (const Op& op : group)
                if (match(op)) return true;
        return false;
    }

    // Fails with `what` if any operation is in flight when the thread returns (empty groups
    // are harmless).
    void check_drained(const char* what) {
        if (in_flight([](const Op&) { return true; })) fail(what);
        groups.clear();
    }
};

struct AsyncCopy {
    void* dst;
    const void* src;
};
inline thread_local AsyncGroups<AsyncCopy> async_copies;

inline void copies_drained() {
    async_copies.check_drained("a thread returned with cp.async copies it never committed or waited for");
}

// Every thread, on return, checks the asynchronous work it leaves behind.
inline const bool copies_checked_at_exit = (at_thread_exit.push_back(copies_drained), true);

}  // namespace emu

namespace laic {

inline uint32_t smem_addr(const void* p) { return emu::shared_address(p); }

// The destination holds NaN bytes from the issue until the wait (its contents are undefined
// then): a read before the wait, or a refill of bytes that are still to be read, shows.
inline void cp_async_16(void* smem, const void* gmem) {
    std::memset(smem, 0xff, 16);
    emu::async_copies.open.push_back({smem, gmem});
}

inline void cp_async_commit() { emu::async_copies.commit(); }

// The copies of all but the N most recent groups land now.
template <int N>
void cp_async_wait() {
    emu::async_copies.wait(N, [](const emu::AsyncCopy& a) { std::memcpy(a.dst, a.src, 16); });
}

// ldmatrix .xN (not transposed): lane l gets row l/4, columns 2(l%4) and 2(l%4) + 1 of each of
// the N matrices.
template <int N>
void ldmatrix_rows(uint32_t (&r)[N], const void* smem) {
    unsigned long long rows[32];
    emu::row_addresses(smem, rows);
    const int l = emu::lane();
    for (int i = 0; i < N; ++i) {
        const unsigned long long row = rows[i * 8 + l / 4];
        r[i] = emu::element(row, 2 * (l % 4)) | (uint32_t)emu::element(row, 2 * (l % 4) + 1) << 16;
    }
}

inline void ldmatrix_x4(uint32_t (&r)[4], const void* smem) { ldmatrix_rows<4>(r, smem); }

inline void ldmatrix_x2(uint32_t (&r)[2], const void* smem) { ldmatrix_rows<2>(r, smem); }

// Transposed: lane l gets rows 2(l%4) and 2(l%4) + 1 of column l/4 of each matrix.
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
    unsigned long long rows[32];
    emu::row_addresses(smem, rows);
    const int l = emu::lane();
    for (int i = 0; i < 4; ++i) {
        r[i] = emu::element(rows[i * 8 + 2 * (l % 4)], l / 4) |
               (uint32_t)emu::element(rows[i * 8 + 2 * (l % 4) + 1], l / 4) << 16;
    }
}

template <typename T>
struct Mma;

template <>
struct Mma<__half> {
    static void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
        emu::mma_16816<__half>(d, a, b0, b1);
    }
};

template <>
struct Mma<__nv_bfloat16> {
    static void run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
        emu::mma_16816<__nv_bfloat16>(d, a, b0, b1);
    }
};

inline float ex2(float x) {
    const float y = exp2f(x);
    return std::fpclassify(y) == FP_SUBNORMAL ? 0.0f : y;
}

}  // namespace laic
