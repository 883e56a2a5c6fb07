// Hopper (sm_90a) tensor-core primitives shared by the wgmma kernels (gradnorm_wgmma.cu,
// kmeans_wgmma.cu, retrieve_wgmma.cu): the 128-byte-swizzled shared layout, the chunk copies
// into it and its matrix descriptors (K-major, and N-major for a B operand stored [k][n]), the
// wgmma fences, commit/wait, and wgmma.m64nNk16 with f32 accumulation for f16 and bf16
// operands: m64n128k16 and m64n64k16 with both operands in shared memory, and m64n128k16 with
// A in registers and B N-major. Include only from files compiled for sm_90a (first line
// `// laic-arch: sm_90a`). On the CPU (tests/kernel_emu, no __CUDACC__) the emulation supplies
// the inline-PTX functions.
//
// Accumulator layout of m64nN (what the epilogues rely on): thread (warp w of the
// warpgroup, lane = 4 g + t) holds d[4 nt + 2 i + j] = row 16 w + g + 8 i, column 8 nt + 2 t + j,
// nt = 0..N/8 - 1, i, j = 0..1.
//
// A in registers (m64nNk16, 16-bit operands): four b16x2 registers per thread, a[q] = row
// 16 w + g + 8 (q & 1), columns 8 (q >> 1) + 2 t and + 1 (low half first). That is the
// accumulator layout of columns 16 kk .. 16 kk + 15: a[q] packs d[8 kk + 2 q] and
// d[8 kk + 2 q + 1], so a product's f32 results become the next product's A operand in place.
#pragma once

#include "tiles.cuh"

namespace laic {
namespace wg {

constexpr int ROW = 128;          // bytes per chunk row: 64 16-bit operands

// Byte offset of 16-byte unit u (0..7) of row r in a 128-byte-swizzled tile whose base is
// 1024-byte aligned: the unit index is XORed with the row's position in its 8-row group.
__device__ __forceinline__ uint32_t swizzled(int r, int u) {
    return (uint32_t)(r * ROW + ((u ^ (r & 7)) << 4));
}

// wgmma matrix descriptor of an N-major (MN-major, `imm-trans-b` = 1), 128-byte-swizzled B
// operand starting at shared address `addr`, stored [k][n]: each k row holds 64 consecutive n
// (128 bytes) in the same swizzled 8-row groups as above, so 8-row groups of k are 1024 bytes
// apart (stride byte offset) and the next 64 n sit `lbo` bytes further (leading byte offset:
// PTX ISA, canonical layout ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)) with T = 8).
__device__ __forceinline__ uint64_t descriptor_n_major(uint32_t addr, uint32_t lbo) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo & 0x3FFFF) >> 4) << 16) |
           ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

// wgmma matrix descriptor of a K-major, 128-byte-swizzled operand starting at shared address
// `addr`: the same fields, the leading byte offset unused by swizzled K-major layouts (set to
// 16 bytes, encoded 1).
__device__ __forceinline__ uint64_t descriptor(uint32_t addr) { return descriptor_n_major(addr, 16); }

// One thread's share of copying 64-column chunks of 16-bit rows into the swizzled layout with
// cp.async, THREADS threads together: the thread copies 16-byte unit tid % 8 of rows tid / 8,
// tid / 8 + THREADS / 8, ... Those rows are a multiple of 8 apart, so they share the swizzle,
// and every copy's addresses are the first copy's plus constants: a chunk costs a few adds per
// copy, not a division and a swizzle.
template <int THREADS> struct ChunkCopy {
    static constexpr int PASS_ROWS = THREADS / 8;
    static_assert(THREADS % 64 == 0, "a thread's rows must be a multiple of 8 apart");
    uint32_t dst;  // byte offset of the thread's first copy in a chunk's tile
    uint32_t src;  // element offset of its first copy in rows `stride` elements apart

    __device__ __forceinline__ void init(int tid, int stride) {
        const int row = tid >> 3, u = tid & 7;
        dst = swizzled(row, u);
        src = (uint32_t)(row * stride + u * 8);
    }
};

// This thread's copies of PLANES planes of ROWS rows (a multiple of PASS_ROWS) of one chunk:
// plane pl's first row from `rows + pl * src_plane` into the tile at `tile + pl * dst_plane`.
template <int PLANES, int ROWS, int THREADS, typename T>
__device__ __forceinline__ void copy_chunk(const ChunkCopy<THREADS>& c, unsigned char* tile, uint32_t dst_plane,
                                           const T* rows, size_t src_plane, int stride) {
    constexpr int PASS_ROWS = ChunkCopy<THREADS>::PASS_ROWS;
    static_assert(ROWS % PASS_ROWS == 0, "the threads' copies must tile the chunk");
#pragma unroll
    for (int pl = 0; pl < PLANES; ++pl)
#pragma unroll
        for (int j = 0; j < ROWS / PASS_ROWS; ++j)
            cp_async_16(tile + pl * dst_plane + c.dst + j * PASS_ROWS * ROW,
                        rows + pl * src_plane + c.src + (size_t)j * PASS_ROWS * stride);
}

#ifdef __CUDACC__  // inline PTX; on the CPU, tests/kernel_emu/cuda_emu_wgmma.hpp supplies these

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Makes this thread's generic-proxy shared-memory writes (stores, cp.async) visible to the
// async proxy (wgmma operand reads); each writer runs it before the barrier.
// Barrier `id` (1..15; 0 is __syncthreads') among `count` threads (a multiple of 32): lets the
// warpgroups of a block synchronise separately.
__device__ __forceinline__ void named_barrier(int id, int count) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Pins accumulator registers: reads after this see what the (asynchronous) wgmma wrote.
template <int N> __device__ __forceinline__ void fence_regs(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// The three products below, each specialised for f16 and bf16 operands by a macro whose TY is
// the operand type's PTX name ("f16", "bf16"); LAIC_WGMMA_TYPES applies a macro to both.
#define LAIC_WGMMA_TYPES(SPECIALISE) SPECIALISE(__half, "f16") SPECIALISE(__nv_bfloat16, "bf16")

// D (64 x 128, f32, registers) (+)= A (64 x 16, shared) * B (128 x 16, shared)^T.
template <typename TM> struct Wgmma;
#define LAIC_WGMMA_SS128(TM, TY)                                                                  \
    template <> struct Wgmma<TM> {                                                                \
        static __device__ __forceinline__ void run(float (&d)[64], uint64_t a, uint64_t b,        \
                                                   int accumulate) {                              \
            asm volatile(                                                                         \
                "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                       \
                "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " "                      \
                "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, " \
                "%64, %65, p, 1, 1, 0, 0;\n}\n"                                                   \
                : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
                : "l"(a), "l"(b), "r"(accumulate));                                               \
        }                                                                                         \
    };
LAIC_WGMMA_TYPES(LAIC_WGMMA_SS128)

// D (64 x 64, f32, registers) (+)= A (64 x 16, shared, K-major) * B (64 x 16, shared, K-major)^T.
template <typename TM> struct Wgmma64;
#define LAIC_WGMMA_SS64(TM, TY)                                                                   \
    template <> struct Wgmma64<TM> {                                                              \
        static __device__ __forceinline__ void run(float (&d)[32], uint64_t a, uint64_t b,        \
                                                   int accumulate) {                              \
            asm volatile(                                                                         \
                "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                       \
                "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " "                       \
                "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, " \
                "%32, %33, p, 1, 1, 0, 0;\n}\n"                                                   \
                : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
                : "l"(a), "l"(b), "r"(accumulate));                                               \
        }                                                                                         \
    };
LAIC_WGMMA_TYPES(LAIC_WGMMA_SS64)

// D (64 x 128, f32, registers) (+)= A (64 x 16, registers: the layout at the top) * B (16 x 128,
// shared): N-major (`descriptor_n_major`) when B_N_MAJOR is 1, K-major (`descriptor`) when 0.
template <typename TM, int B_N_MAJOR = 1> struct WgmmaRegA;
#define LAIC_WGMMA_RS128(TM, TY)                                                                  \
    template <int B_N_MAJOR> struct WgmmaRegA<TM, B_N_MAJOR> {                                    \
        static __device__ __forceinline__ void run(float (&d)[64], const uint32_t (&a)[4],        \
                                                   uint64_t b, int accumulate) {                  \
            asm volatile(                                                                         \
                "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                       \
                "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " "                      \
                "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, " \
                "{%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"                                  \
                : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate),            \
                  "n"(B_N_MAJOR));                                                                \
        }                                                                                         \
    };
LAIC_WGMMA_TYPES(LAIC_WGMMA_RS128)

#endif  // __CUDACC__

}  // namespace wg
}  // namespace laic
