// laic-arch: sm_90a
// Fused GradNorm on Hopper tensor cores (wgmma), the fast path on H100/H200 (DESIGN.md §1.3).
//
// The same computation as gradnorm.cu (same parameters, same online statistics from
// gradnorm_common.cuh), organised for sm_90a:
// - A block has NWG warpgroups of 128 threads; warpgroup w owns 64 nouns (BM = 64 NWG). The
//   block's nouns sit in shared memory for the whole kernel as 64-column chunks in the
//   128-byte-swizzled K-major layout that wgmma reads through matrix descriptors.
// - Packed centres stream through a STAGES-deep cp.async pipeline in BN x 64 chunks, stored in
//   the same swizzled layout; each chunk is 4 (f32 input: 12) wgmma.m64n128k16 per warpgroup,
//   issued asynchronously with f32 accumulation.
// - A tile is folded into the statistics (fold_tile) when its products are complete, before
//   the next tile's first chunk is issued. Folding it while the next tile's products run into
//   a second accumulator set (measured on an H200, 2026-11-27: 2.09 ms against 1.90 ms at
//   K = 2000) makes ptxas serialise every wgmma (warning C7514: accumulator registers read
//   while a wgmma is in flight), which costs more than it saves.
// - Stage reuse: after issuing chunk s a warpgroup waits until only that group is in flight,
//   so chunk s - 1 is consumed; the barrier of the next step then frees stage s - 2 for all
//   warpgroups, which is refilled with chunk s + STAGES - 2.
// Built for sm_90a only (build.rs reads the first line); other GPUs use gradnorm.cu.

#include "gradnorm_common.cuh"

namespace laic {
namespace wg {

constexpr int BN = 128;           // centres per tile (the wgmma n)
constexpr int BK = 64;            // columns per chunk: one 128-byte swizzled row of operands
constexpr int ROW = 128;          // bytes per chunk row

// Byte offset of 16-byte unit u (0..7) of row r in a 128-byte-swizzled tile whose base is
// 1024-byte aligned: the unit index is XORed with the row's position in its 8-row group.
__device__ __forceinline__ uint32_t swizzled(int r, int u) {
    return (uint32_t)(r * ROW + ((u ^ (r & 7)) << 4));
}

// wgmma matrix descriptor of a K-major, 128-byte-swizzled operand starting at shared address
// `addr`: 8-row groups 1024 bytes apart (stride byte offset); the leading byte offset is unused
// by swizzled K-major layouts (set to 16 bytes, encoded 1).
__device__ __forceinline__ uint64_t descriptor(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) |
           ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Makes this thread's generic-proxy shared-memory writes (stores, cp.async) visible to the
// async proxy (wgmma operand reads); each writer runs it before the barrier.
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
// Pins accumulator registers: reads after this see what the (asynchronous) wgmma wrote.
__device__ __forceinline__ void fence_regs(float (&d)[64]) {
#pragma unroll
    for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// D (64 x 128, f32, registers) (+)= A (64 x 16, shared) * B (128 x 16, shared)^T.
template <typename TM> struct Wgmma;
template <> struct Wgmma<__half> {
    static __device__ __forceinline__ void run(float (&d)[64], uint64_t a, uint64_t b,
                                               int accumulate) {
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
            "%64, %65, p, 1, 1, 0, 0;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
            : "l"(a), "l"(b), "r"(accumulate));
    }
};

template <> struct Wgmma<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float (&d)[64], uint64_t a, uint64_t b,
                                               int accumulate) {
        asm volatile(
            "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
            "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
            "%64, %65, p, 1, 1, 0, 0;\n}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
            : "l"(a), "l"(b), "r"(accumulate));
    }
};

// What one block's steps share.
template <typename TM, int PLANES, int NWG, int STAGES> struct Ctx {
    static constexpr int BM = 64 * NWG;
    static constexpr int NTHREADS = 128 * NWG;
    static constexpr int NT = BN / 8;
    static constexpr uint32_t B_PLANE = BN * ROW;
    static constexpr uint32_t B_STAGE = PLANES * B_PLANE;

    const GradNormParams& p;
    uint32_t a_smem;          // shared address of this warpgroup's rows in chunk 0, plane 0
    uint32_t a_plane;         // bytes per noun plane
    unsigned char* bs;        // centre stages
    int nchunks, ntiles, steps;
    int t;
    float rs[2];              // logit scales of this thread's two rows
    RowStats st[2];
    float own, inv_k;

    __device__ __forceinline__ void load_step(int s) const {
        if (s >= steps) return;
        const int chunk = s % nchunks;
        const int tile = (s / nchunks) % ntiles;
        unsigned char* dst = bs + (s % STAGES) * B_STAGE;
        const TM* src = static_cast<const TM*>(p.centres) + (size_t)tile * BN * p.dp + chunk * BK;
        const size_t c_plane = (size_t)p.kp * p.dp;
        for (int i = threadIdx.x; i < PLANES * BN * 8; i += NTHREADS) {
            const int pl = i / (BN * 8);
            const int rem = i - pl * (BN * 8);
            const int row = rem >> 3, u = rem & 7;
            cp_async_16(dst + pl * B_PLANE + swizzled(row, u),
                        src + pl * c_plane + (size_t)row * p.dp + u * 8);
        }
    }

    // One chunk's products into `acc` (the first chunk of a tile overwrites it).
    __device__ __forceinline__ void mma_chunk(float (&acc)[64], int s) const {
        const int chunk = s % nchunks;
        const uint32_t a0 = a_smem + chunk * (BM * ROW);
        const uint32_t b0 = smem_addr(bs) + (s % STAGES) * B_STAGE;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            Wgmma<TM>::run(acc, descriptor(a0 + kk * 32), descriptor(b0 + kk * 32),
                           chunk > 0 || kk > 0);
            if constexpr (PLANES == 2) {
                Wgmma<TM>::run(acc, descriptor(a0 + kk * 32), descriptor(b0 + B_PLANE + kk * 32), 1);
                Wgmma<TM>::run(acc, descriptor(a0 + a_plane + kk * 32), descriptor(b0 + kk * 32), 1);
            }
        }
        wgmma_commit();
    }

    // Folds a finished tile (global step index of any of its chunks: `s`) into the statistics.
    __device__ __forceinline__ void epilogue(float (&acc)[64], int s) {
        const int tile = (s / nchunks) % ntiles;
        const int pass = s / (nchunks * ntiles);
        const int colbase = tile * BN + 2 * t;
        // Each row's logits in base-2 units (-inf for padding columns), half a tile at a time
        // into fresh registers: redefining accumulator registers, or spilling them for want of
        // registers, would make ptxas serialise the wgmma pipeline.
        constexpr int HT = NT / 2;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            float sc[HT][2];
#pragma unroll
            for (int nt = 0; nt < HT; ++nt) {
                const float2 c2 = __ldg(reinterpret_cast<const float2*>(
                    p.centre_scale + colbase + (half * HT + nt) * 8));
                sc[nt][0] = c2.x;
                sc[nt][1] = c2.y;
            }
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                float z[HT][2];
#pragma unroll
                for (int nt = 0; nt < HT; ++nt)
#pragma unroll
                    for (int j = 0; j < 2; ++j) {
                        const int col = colbase + (half * HT + nt) * 8 + j;
                        const float v = acc[4 * (half * HT + nt) + 2 * i + j] * rs[i] * sc[nt][j];
                        z[nt][j] = col < p.k ? v : -INFINITY;
                    }
                fold_tile<HT>(st[i], [&](int nt, int j) { return z[nt][j]; },
                              colbase + half * HT * 8, p, pass, own, inv_k);
            }
        }
        if (pass == 0 && p.uniform && tile == ntiles - 1) {
            start_uniform_pass(st[0]);
            start_uniform_pass(st[1]);
        }
    }

    // Chunk s: wait for it, refill the stage freed two steps ago, issue its products.
    __device__ __forceinline__ void step(float (&cur)[64], int s) const {
        constexpr int PF = STAGES - 2;  // chunks in flight ahead of the one computed
        cp_async_wait<PF - 1>();
        fence_proxy_async();
        __syncthreads();  // chunk s is in shared memory; stage (s - 2) % STAGES is free
        load_step(s + PF);
        cp_async_commit();
        mma_chunk(cur, s);
        wgmma_wait<1>();  // chunk s - 1 is consumed (for this warpgroup)
    }
};

template <typename TIn, typename TM, int PLANES, int NWG, int STAGES>
__device__ __forceinline__ void body(const GradNormParams& p) {
    using C = Ctx<TM, PLANES, NWG, STAGES>;
    constexpr int BM = C::BM;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    // Swizzled tiles need 1024-byte alignment; the host adds 1024 bytes of slack.
    unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    const int nchunks = p.dp / BK;
    const uint32_t a_plane = (uint32_t)nchunks * BM * ROW;
    unsigned char* as = smem;
    unsigned char* bs = as + PLANES * a_plane;
    float* row_info = reinterpret_cast<float*>(bs + STAGES * C::B_STAGE);

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const unsigned long long row0 = (unsigned long long)blockIdx.x * BM;

    // ---- Phase 1: the block's nouns (16 rows per warp) into the swizzled noun tile. ----
    auto dst = [&](int row, int col) {
        return reinterpret_cast<TM*>(as + (size_t)(col >> 6) * (BM * ROW) +
                                     swizzled(row, (col & 63) >> 3)) +
               (col & 7);
    };
    const size_t a_plane_elems = a_plane / sizeof(TM);
    if (p.vec16) {
        load_nouns<TIn, TM, PLANES, 16, true>(p, dst, a_plane_elems, row_info, row0, warp, lane);
    } else {
        load_nouns<TIn, TM, PLANES, 16, false>(p, dst, a_plane_elems, row_info, row0, warp, lane);
    }

    C c{p};
    c.a_smem = smem_addr(as) + (warp >> 2) * 64 * ROW;
    c.a_plane = a_plane;
    c.bs = bs;
    c.nchunks = nchunks;
    c.ntiles = p.kp / BN;
    c.steps = (p.uniform ? 2 : 1) * c.ntiles * nchunks;
    c.t = t;
    c.own = t == 0 ? 1.f : 0.f;
    c.inv_k = 1.f / (float)p.k;

    // ---- Phase 2: stream the centres. ----
#pragma unroll
    for (int s = 0; s < STAGES - 2; ++s) {
        c.load_step(s);
        cp_async_commit();
    }
    fence_proxy_async();
    __syncthreads();  // row_info and the noun tile are complete
#pragma unroll
    for (int i = 0; i < 2; ++i) c.rs[i] = row_info[2 * (warp * 16 + g + 8 * i)];

    float acc[64];
    for (int s0 = 0; s0 < c.steps; s0 += nchunks) {
        if (s0 > 0) {
            // The previous tile, with no wgmma in flight.
            wgmma_wait<0>();
            fence_regs(acc);
            c.epilogue(acc, s0 - 1);
        }
        for (int k = 0; k < nchunks; ++k) c.step(acc, s0 + k);
    }
    wgmma_wait<0>();
    fence_regs(acc);
    c.epilogue(acc, c.steps - 1);
    cp_async_wait<0>();

    // ---- Finalise: one lane per row writes score, assignment, confidence. ----
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int lr = warp * 16 + g + 8 * i;
        finish_row(c.st[i], p, row0 + lr, row_info[2 * lr + 1], t);
    }
}

}  // namespace wg
}  // namespace laic

using laic::GradNormParams;

#define LAIC_GRADNORM_WG(NAME, TIN, TM, PLANES, NWG, STAGES)                                  \
    extern "C" __global__ void __launch_bounds__(NWG * 128, 1) NAME(const GradNormParams p) { \
        laic::wg::body<TIN, TM, PLANES, NWG, STAGES>(p);                                      \
    }

// Kernels laic_gradnorm_wg_<dtype>_wg<NWG>[d] (d: 6 stages deep instead of 4).
LAIC_GRADNORM_WG(laic_gradnorm_wg_f16_wg2, __half, __half, 1, 2, 4)
LAIC_GRADNORM_WG(laic_gradnorm_wg_f16_wg2d, __half, __half, 1, 2, 6)
LAIC_GRADNORM_WG(laic_gradnorm_wg_f16_wg1, __half, __half, 1, 1, 4)
LAIC_GRADNORM_WG(laic_gradnorm_wg_bf16_wg2, __nv_bfloat16, __nv_bfloat16, 1, 2, 4)
LAIC_GRADNORM_WG(laic_gradnorm_wg_bf16_wg2d, __nv_bfloat16, __nv_bfloat16, 1, 2, 6)
LAIC_GRADNORM_WG(laic_gradnorm_wg_bf16_wg1, __nv_bfloat16, __nv_bfloat16, 1, 1, 4)
LAIC_GRADNORM_WG(laic_gradnorm_wg_f32_wg1, float, __nv_bfloat16, 2, 1, 3)
