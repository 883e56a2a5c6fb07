// laic-arch: sm_90a
// The k-means assignment step on Hopper tensor cores (wgmma): kmeans.cu's laic_km_assign with
// the same parameters (kmeans_params.cuh), the same operands and the same results, organised
// as gradnorm_wgmma.cu (DESIGN.md §1.4; NOTES.md "kmeans_wgmma.cu").
//
// - A block has NWG warpgroups of 128 threads; warpgroup w owns 64 points (BM = 64 NWG). The
//   block's points sit in shared memory for the whole kernel as 64-column chunks in the
//   128-byte-swizzled K-major layout that wgmma reads through matrix descriptors (wgmma.cuh),
//   copied there with cp.async from the packed rows (operands.cuh's layout, 16 bytes at a time
//   into their swizzled places).
// - Packed centres stream through a STAGES-deep cp.async pipeline in BN x 64 chunks (BN = 128,
//   the wgmma n), in the same layout; each chunk is 4 wgmma.m64n128k16 per warpgroup per
//   product (f16 points x f16 centres: 1; bf16 points x bf16 hi + lo centres: 2; f32 points
//   hi + lo x centres hi + lo without lo*lo: 3), issued asynchronously with f32 accumulation.
//   The points' chunk c travels in the cp.async group of step c, so the first products start
//   when the first 64 columns of points and centres have landed, not the whole row.
// - When a tile's products are complete (no wgmma in flight: reading accumulators of a group in
//   flight makes ptxas serialise every wgmma, see NOTES.md), each thread folds its 2 rows x 32
//   scores s = <x, c> - bias (bias = ||c||^2 / 2 Euclidean, 0 spherical; +inf for the padding
//   centres past k) into a running (best, index): ascending columns with a strict >, so the
//   lowest index wins ties, then an index-aware quad reduction at the end, as kmeans.cu.
// - The winner's distance is recomputed in f32 from the point (shared memory) and the unrounded
//   f32 centre, 8 rows of a warp at a time: the tensor-core scores only choose the centre.
// - Stage reuse as gradnorm_wgmma.cu: after issuing chunk s a warpgroup waits until only that
//   group is in flight; the barrier of the next step then frees stage s - 2 for all warpgroups,
//   which is refilled with chunk s + STAGES - 2. The step's chunk, tile and stage advance as
//   counters, and a thread's copies are its first copy's addresses plus constants
//   (wgmma.cuh's ChunkCopy).
// Built for sm_90a only (build.rs reads the first line); other GPUs use kmeans.cu.

#include "kmeans_params.cuh"
#include "wgmma.cuh"

namespace laic {
namespace wg {
namespace km {

using laic::km::AssignParams;

constexpr int BN = 128;  // centres per tile (the wgmma n)
constexpr int BK = 64;   // columns per chunk: one 128-byte swizzled row of operands

// What one block's steps share.
template <typename TM, int XPL, int CPL, int NWG, int STAGES> struct Assign {
    static constexpr int BM = 64 * NWG;
    static constexpr int NTHREADS = 128 * NWG;
    static constexpr int NT = BN / 8;
    static constexpr int PF = STAGES - 2;  // chunks in flight ahead of the one computed
    static_assert(PF >= 1, "the pipeline needs at least 3 stages");
    static constexpr uint32_t A_CHUNK = BM * ROW;  // bytes of 64 columns of one point plane
    static constexpr uint32_t B_PLANE = BN * ROW;
    static constexpr uint32_t B_STAGE = CPL * B_PLANE;

    const AssignParams& p;
    unsigned char* as;        // point planes
    unsigned char* bs;        // centre stages
    uint32_t bs_smem;         // their shared address
    uint32_t a_plane;         // bytes per point plane
    int nchunks, ntiles, steps;
    int t;
    unsigned long long row0;
    ChunkCopy<NTHREADS> copy;  // this thread's share of a chunk's copies (points and centres)
    // The next step to load (`load_next`): its index, chunk, stage and first centre element.
    int ld_step, ld_chunk, ld_stage;
    const TM* ld_src;
    int mma_stage;            // the stage of the next chunk to compute

    __device__ __forceinline__ void start() {
        copy.init(threadIdx.x, p.dp);
        ld_step = ld_chunk = ld_stage = mma_stage = 0;
        ld_src = static_cast<const TM*>(p.centres);
    }

    // The next step's copies (nothing past the last step): its centre chunk into its stage
    // and, during the first tile, the points' chunk of the same columns; then the load cursor
    // advances by one step.
    __device__ __forceinline__ void load_next() {
        if (ld_step < steps) {
            copy_chunk<CPL, BN>(copy, bs + ld_stage * B_STAGE, B_PLANE, ld_src, (size_t)p.kp * p.dp, p.dp);
            if (ld_step < nchunks) {
                // Packed rows exist up to np, a multiple of BM.
                copy_chunk<XPL, BM>(copy, as + ld_chunk * A_CHUNK, a_plane,
                                    static_cast<const TM*>(p.points) + row0 * p.dp + ld_chunk * BK,
                                    (size_t)p.np * p.dp, p.dp);
            }
        }
        ++ld_step;
        if (++ld_stage == STAGES) ld_stage = 0;
        ld_src += BK;
        if (++ld_chunk == nchunks) {
            // The next tile: its rows follow this tile's.
            ld_chunk = 0;
            ld_src += (size_t)(BN - 1) * p.dp;
        }
    }

    // One chunk's products into `acc` (the first chunk of a tile overwrites it), from stage
    // `mma_stage`, which then advances; `a_smem` is this warpgroup's first point row in chunk 0
    // of plane 0.
    __device__ __forceinline__ void mma_chunk(float (&acc)[64], int chunk, uint32_t a_smem) {
        const uint32_t a0 = a_smem + chunk * A_CHUNK;
        const uint32_t b0 = bs_smem + mma_stage * B_STAGE;
        if (++mma_stage == STAGES) mma_stage = 0;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            Wgmma<TM>::run(acc, descriptor(a0 + kk * 32), descriptor(b0 + kk * 32),
                           chunk > 0 || kk > 0);
            if constexpr (CPL == 2) {
                Wgmma<TM>::run(acc, descriptor(a0 + kk * 32), descriptor(b0 + B_PLANE + kk * 32), 1);
            }
            if constexpr (XPL == 2) {
                Wgmma<TM>::run(acc, descriptor(a0 + a_plane + kk * 32), descriptor(b0 + kk * 32), 1);
            }
        }
        wgmma_commit();
    }

    // The next step (its chunk: `chunk`): wait for it, refill the stage freed two steps ago
    // with the step PF ahead, issue its products.
    __device__ __forceinline__ void step(float (&acc)[64], int chunk, uint32_t a_smem) {
        cp_async_wait<PF - 1>();
        fence_proxy_async();
        __syncthreads();  // this chunk is in shared memory; the stage of two steps ago is free
        load_next();
        cp_async_commit();
        mma_chunk(acc, chunk, a_smem);
        wgmma_wait<1>();  // chunk s - 1 is consumed (for this warpgroup)
    }

    // The biases of this thread's 32 columns of `tile`; +inf past k, so that padding centres
    // score -inf and never win.
    __device__ __forceinline__ void load_bias(float (&b)[NT][2], int tile) const {
        const int colbase = tile * BN + 2 * t;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const int col = colbase + nt * 8;
            const float2 b2 = __ldg(reinterpret_cast<const float2*>(p.bias + col));
            b[nt][0] = col < p.k ? b2.x : INFINITY;
            b[nt][1] = col + 1 < p.k ? b2.y : INFINITY;
        }
    }

    // Folds a finished tile into the running best of this thread's two rows. Two chains per row
    // (the tile's first and second 64 columns) for independent work; within a chain columns
    // ascend and a strict > keeps the lowest index on ties, and the second chain (higher
    // columns) replaces the first only when strictly larger.
    __device__ __forceinline__ void fold(const float (&acc)[64], const float (&b)[NT][2], int tile,
                                         float (&best)[2], int (&arg)[2]) const {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float hb[2];
            int ha[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                hb[h] = -INFINITY;
                ha[h] = 0;
#pragma unroll
                for (int q = 0; q < NT / 2; ++q) {
                    const int nt = h * (NT / 2) + q;
#pragma unroll
                    for (int j = 0; j < 2; ++j) {
                        const float v = acc[4 * nt + 2 * i + j] - b[nt][j];
                        if (v > hb[h]) {
                            hb[h] = v;
                            ha[h] = nt * 8 + j;
                        }
                    }
                }
            }
            if (hb[1] > hb[0]) {
                hb[0] = hb[1];
                ha[0] = ha[1];
            }
            if (hb[0] > best[i]) {
                best[i] = hb[0];
                arg[i] = tile * BN + 2 * t + ha[0];
            }
        }
    }

    // Element (row, col) of point plane `pl` in the swizzled tile, as f32.
    __device__ __forceinline__ float point(int row, int col, int pl) const {
        const unsigned char* e = as + pl * a_plane + (col >> 6) * A_CHUNK +
                                 swizzled(row, (col & 63) >> 3) + (col & 7) * 2;
        return to_f32(*reinterpret_cast<const TM*>(e));
    }
};

template <typename TM, int XPL, int CPL, int NWG, int STAGES>
__device__ __forceinline__ void assign_body(const AssignParams& p) {
    using A = Assign<TM, XPL, CPL, NWG, STAGES>;
    LAIC_DYNAMIC_SMEM_ALIGNED(unsigned char, smem_raw, 1024);
    // Swizzled tiles need 1024-byte alignment; the host adds 1024 bytes of slack.
    unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;

    A c{p};
    c.nchunks = p.dp / BK;
    c.ntiles = p.kp / BN;
    c.steps = c.ntiles * c.nchunks;
    c.a_plane = (uint32_t)c.nchunks * A::A_CHUNK;
    c.as = smem;
    c.bs = smem + XPL * c.a_plane;
    c.bs_smem = smem_addr(c.bs);
    c.t = t;
    c.row0 = (unsigned long long)blockIdx.x * A::BM;
    int* best_arg = reinterpret_cast<int*>(c.bs + STAGES * A::B_STAGE);  // BM
    const uint32_t a_smem = smem_addr(c.as) + (warp >> 2) * 64 * ROW;

    c.start();
#pragma unroll
    for (int s = 0; s < A::PF; ++s) {
        c.load_next();
        cp_async_commit();
    }

    float best[2] = {-INFINITY, -INFINITY};
    int arg[2] = {0x7fffffff, 0x7fffffff};
    float acc[64];
    float bias[A::NT][2];
    for (int tile = 0; tile < c.ntiles; ++tile) {
        c.step(acc, 0, a_smem);
        c.load_bias(bias, tile);  // its latency hides behind the tile's products
        for (int k = 1; k < c.nchunks; ++k) c.step(acc, k, a_smem);
        wgmma_wait<0>();
        fence_regs(acc);
        c.fold(acc, bias, tile, best, arg);
    }
    cp_async_wait<0>();

    // ---- The winners: quad argmax, then the exact distance of each point to its centre. ----
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        quad_argmax(best[i], arg[i]);
        if (t == 0) best_arg[warp * 16 + g + 8 * i] = arg[i];
    }
    __syncwarp();
    // RG rows at a time, the column loop unrolled 4 times: up to 4 RG centre loads (L2) in
    // flight per lane, so that the phase costs a few L2 round trips per warp, not one per row.
    constexpr int RG = 8;
    for (int r0 = 0; r0 < 16; r0 += RG) {
        int cidx[RG];
        const float* cr[RG];
        float s[RG];
#pragma unroll
        for (int rr = 0; rr < RG; ++rr) {
            cidx[rr] = best_arg[warp * 16 + r0 + rr];
            // Only a row without any finite score keeps 0x7fffffff (written as is, as
            // kmeans.cu does); its distance then reads centre 0 instead of out of bounds.
            cr[rr] = p.centres_f32 + (size_t)(cidx[rr] < p.k ? cidx[rr] : 0) * p.d;
            s[rr] = 0.f;
        }
#pragma unroll 4
        for (int col = lane; col < p.d; col += 32) {
#pragma unroll
            for (int rr = 0; rr < RG; ++rr) {
                const int lr = warp * 16 + r0 + rr;
                float xv = c.point(lr, col, 0);
                if constexpr (XPL == 2) xv += c.point(lr, col, 1);
                const float cv = __ldg(cr[rr] + col);
                if (p.spherical) {
                    s[rr] = fmaf(xv, cv, s[rr]);
                } else {
                    const float df = xv - cv;
                    s[rr] = fmaf(df, df, s[rr]);
                }
            }
        }
#pragma unroll
        for (int rr = 0; rr < RG; ++rr) {
            const float v = warp_sum(s[rr]);
            const unsigned long long gr = c.row0 + warp * 16 + r0 + rr;
            if (lane == 0 && gr < p.n) {
                p.labels[gr] = (unsigned)cidx[rr];
                p.dist[gr] = p.spherical ? fmaxf(1.f - v, 0.f) : v;
            }
        }
    }
}

}  // namespace km
}  // namespace wg
}  // namespace laic

using laic::km::AssignParams;

#define LAIC_KM_WG_ASSIGN(NAME, TM, XPL, CPL, NWG, STAGES)                                   \
    extern "C" __global__ void __launch_bounds__(NWG * 128, 1) NAME(const AssignParams p) { \
        laic::wg::km::assign_body<TM, XPL, CPL, NWG, STAGES>(p);                             \
    }

// Kernels laic_km_wg_assign_<dtype>_wg<NWG>: f16 points x f16 centres, 4 stages; bf16 points x
// bf16 hi + lo centres (3 stages with two warpgroups, to fit 227 KB at D = 512); f32 points
// hi + lo x centres hi + lo, one warpgroup, 3 stages.
LAIC_KM_WG_ASSIGN(laic_km_wg_assign_f16_wg2, __half, 1, 1, 2, 4)
LAIC_KM_WG_ASSIGN(laic_km_wg_assign_f16_wg1, __half, 1, 1, 1, 4)
LAIC_KM_WG_ASSIGN(laic_km_wg_assign_bf16_wg2, __nv_bfloat16, 1, 2, 2, 3)
LAIC_KM_WG_ASSIGN(laic_km_wg_assign_bf16_wg1, __nv_bfloat16, 1, 2, 1, 4)
LAIC_KM_WG_ASSIGN(laic_km_wg_assign_f32_wg1, __nv_bfloat16, 2, 2, 1, 3)
