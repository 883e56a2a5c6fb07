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
// - A tile is folded into the statistics (fold_rows) when its products are complete, before
//   the next tile's first chunk is issued. Folding it while the next tile's products run into
//   a second accumulator set (measured on an H200, 2026-11-27: 2.09 ms against 1.90 ms at
//   K = 2000) makes ptxas serialise every wgmma (warning C7514: accumulator registers read
//   while a wgmma is in flight), which costs more than it saves.
// - Stage reuse: after issuing chunk s a warpgroup waits until only that group is in flight,
//   so chunk s - 1 is consumed; the barrier of the next step then frees stage s - 2 for all
//   warpgroups, which is refilled with chunk s + STAGES - 2.
// - A step's bookkeeping is a few adds: the chunk, tile and stage of the next load and of the
//   next products advance as counters (no division), and a thread's copies of a stage are its
//   first copy's addresses plus constants (wgmma.cuh's ChunkCopy): ~110 SASS instructions per
//   warp and step for f16 wg2, against ~360 when each step divided by the chunk and tile counts
//   (NOTES.md, "The step in SASS").
// Built for sm_90a only (build.rs reads the first line); other GPUs use gradnorm.cu.
// - Split streams (SPLIT, `wg2s`): each warpgroup streams the centres through its own stages
//   (3 each) and waits only for itself (a named barrier per warpgroup instead of
//   __syncthreads), so the warpgroups drift apart and one folds while the other's wgmma run.
//   Twice the centre traffic from L2; the same products and fold, so the same results.
//
// Two diagnostic variants (f16, two warpgroups; chosen only through
// LAIC_CUDA_GRADNORM_CONFIG, their scores are meaningless) split the time of a tile for
// scripts/gpu-check.sh: `nofold` (DIAG_NO_FOLD) keeps the centre stream and the products but
// reduces each tile to one max per thread instead of folding it; `nomma` (DIAG_NO_MMA) keeps
// the stream and the fold but issues no wgmma (the "products" are a fixed pattern whose max
// moves as rarely as real data's).

#include "gradnorm_common.cuh"
#include "wgmma.cuh"

namespace laic {
namespace wg {

constexpr int BN = 128;           // centres per tile (the wgmma n)
constexpr int BK = 64;            // columns per chunk: one 128-byte swizzled row of operands

// What a kernel computes: everything, or one of the diagnostic halves (see the top).
constexpr int DIAG_NONE = 0;
constexpr int DIAG_NO_FOLD = 1;
constexpr int DIAG_NO_MMA = 2;

// What one block's steps share.
template <typename TM, int PLANES, int NWG, int STAGES, int DIAG, bool SPLIT> struct Ctx {
    static constexpr int BM = 64 * NWG;
    static constexpr int NTHREADS = 128 * NWG;
    // Threads that load and wait for a stage: the block, or (split streams) one warpgroup.
    static constexpr int STREAM_THREADS = SPLIT ? 128 : NTHREADS;
    static constexpr int NT = BN / 8;
    static constexpr uint32_t B_PLANE = BN * ROW;
    static constexpr uint32_t B_STAGE = PLANES * B_PLANE;

    const GradNormParams& p;
    uint32_t a_smem;          // shared address of this warpgroup's rows in chunk 0, plane 0
    uint32_t a_plane;         // bytes per noun plane
    unsigned char* bs;        // centre stages (split streams: this warpgroup's)
    uint32_t bs_smem;         // their shared address
    int nchunks, ntiles, steps;
    int t;
    float rs[2];              // logit scales of this thread's two rows
    RowStats st[2];
    float own, inv_k;
    ChunkCopy<STREAM_THREADS> copy;  // this thread's share of a stage's copies
    // The next step to load (`load_next`): its index, chunk, stage and first centre element.
    int ld_step, ld_chunk, ld_tile, ld_stage;
    const TM* ld_src;
    int mma_stage;            // the stage of the next chunk to compute

    __device__ __forceinline__ void start(int stream_tid) {
        copy.init(stream_tid, p.dp);
        ld_step = ld_chunk = ld_tile = ld_stage = mma_stage = 0;
        ld_src = static_cast<const TM*>(p.centres);
    }

    // Loads the next step's centre chunk (nothing past the last step) into its stage, and
    // advances the load cursor by one step: next chunk, next tile, first tile again for the
    // second pass of the uniform target.
    __device__ __forceinline__ void load_next() {
        if (ld_step < steps) {
            copy_chunk<PLANES, BN>(copy, bs + ld_stage * B_STAGE, B_PLANE, ld_src, (size_t)p.kp * p.dp, p.dp);
        }
        ++ld_step;
        if (++ld_stage == STAGES) ld_stage = 0;
        ld_src += BK;
        if (++ld_chunk == nchunks) {
            ld_chunk = 0;
            if (++ld_tile == ntiles) ld_tile = 0;
            ld_src = static_cast<const TM*>(p.centres) + (size_t)ld_tile * BN * p.dp;
        }
    }

    // One chunk's products into `acc` (the first chunk of a tile overwrites it), from stage
    // `mma_stage`, which then advances.
    __device__ __forceinline__ void mma_chunk(float (&acc)[64], int chunk) {
        const uint32_t a0 = a_smem + chunk * (BM * ROW);
        const uint32_t b0 = bs_smem + mma_stage * B_STAGE;
        if (++mma_stage == STAGES) mma_stage = 0;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < (DIAG == DIAG_NO_MMA ? 0 : BK / 16); ++kk) {
            Wgmma<TM>::run(acc, descriptor(a0 + kk * 32), descriptor(b0 + kk * 32),
                           chunk > 0 || kk > 0);
            if constexpr (PLANES == 2) {
                Wgmma<TM>::run(acc, descriptor(a0 + kk * 32), descriptor(b0 + B_PLANE + kk * 32), 1);
                Wgmma<TM>::run(acc, descriptor(a0 + a_plane + kk * 32), descriptor(b0 + kk * 32), 1);
            }
        }
        wgmma_commit();
    }

    // Folds finished tile `ts` (counting both passes of the uniform target) into the statistics.
    __device__ __forceinline__ void epilogue(float (&acc)[64], int ts) {
        const int pass = ts >= ntiles ? 1 : 0;
        const int tile = ts - pass * ntiles;
        const int colbase = tile * BN + 2 * t;
        const bool padded = (tile + 1) * BN > p.k;  // the last tile
        if constexpr (DIAG == DIAG_NO_FOLD) {
            float mx = st[0].mx;
#pragma unroll
            for (int j = 0; j < 64; ++j) mx = fmaxf(mx, acc[j]);
            st[0].mx = mx;
            return;
        }
        if constexpr (DIAG == DIAG_NO_MMA) {
#pragma unroll
            for (int j = 0; j < 64; ++j) acc[j] = 0.01f * (float)((j * 37 + tile * 11 + t) & 63);
        }
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
            // Both rows of the thread at once (fold_rows interleaves their latencies).
            float z[2][HT][2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
#pragma unroll
                for (int nt = 0; nt < HT; ++nt)
#pragma unroll
                    for (int j = 0; j < 2; ++j)
                        z[i][nt][j] = acc[4 * (half * HT + nt) + 2 * i + j] * rs[i] * sc[nt][j];
                if (padded) mask_padding(z[i], colbase + half * HT * 8, p.k);
            }
            fold_rows(st, z, colbase + half * HT * 8, p, pass, own, inv_k);
        }
        if (pass == 0 && p.uniform && tile == ntiles - 1) {
            start_uniform_pass(st[0]);
            start_uniform_pass(st[1]);
        }
    }

    // The next step (its chunk: `chunk`): wait for it, refill the stage freed two steps ago
    // with the chunk STAGES - 2 steps ahead, issue its products.
    __device__ __forceinline__ void step(float (&cur)[64], int chunk) {
        constexpr int PF = STAGES - 2;  // chunks in flight ahead of the one computed
        cp_async_wait<PF - 1>();
        fence_proxy_async();
        // Chunk s is in shared memory; stage (s - 2) % STAGES is free.
        if constexpr (SPLIT) {
            named_barrier(1 + (threadIdx.x >> 7), 128);
        } else {
            __syncthreads();
        }
        load_next();
        cp_async_commit();
        mma_chunk(cur, chunk);
        wgmma_wait<1>();  // chunk s - 1 is consumed (for this warpgroup)
    }
};

template <typename TIn, typename TM, int PLANES, int NWG, int STAGES, int DIAG, bool SPLIT>
__device__ __forceinline__ void body(const GradNormParams& p) {
    using C = Ctx<TM, PLANES, NWG, STAGES, DIAG, SPLIT>;
    constexpr int STREAMS = SPLIT ? NWG : 1;
    constexpr int BM = C::BM;
    LAIC_DYNAMIC_SMEM_ALIGNED(unsigned char, smem_raw, 1024);
    // Swizzled tiles need 1024-byte alignment; the host adds 1024 bytes of slack.
    unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    const int nchunks = p.dp / BK;
    const uint32_t a_plane = (uint32_t)nchunks * BM * ROW;
    unsigned char* as = smem;
    unsigned char* bs = as + PLANES * a_plane;
    float* row_info = reinterpret_cast<float*>(bs + STREAMS * STAGES * C::B_STAGE);

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
    c.bs = SPLIT ? bs + (warp >> 2) * STAGES * C::B_STAGE : bs;
    c.bs_smem = smem_addr(c.bs);
    c.nchunks = nchunks;
    c.ntiles = p.kp / BN;
    c.steps = (p.uniform ? 2 : 1) * c.ntiles * nchunks;
    c.t = t;
    c.own = t == 0 ? 1.f : 0.f;
    c.inv_k = 1.f / (float)p.k;
    c.start(SPLIT ? threadIdx.x & 127 : threadIdx.x);

    // ---- Phase 2: stream the centres. ----
#pragma unroll
    for (int s = 0; s < STAGES - 2; ++s) {
        c.load_next();
        cp_async_commit();
    }
    fence_proxy_async();
    __syncthreads();  // row_info and the noun tile are complete
#pragma unroll
    for (int i = 0; i < 2; ++i) c.rs[i] = row_info[2 * (warp * 16 + g + 8 * i)];

    float acc[64];
    const int tiles = c.steps / nchunks;  // both passes of the uniform target
    for (int ts = 0; ts < tiles; ++ts) {
        if (ts > 0) {
            // The previous tile, with no wgmma in flight.
            wgmma_wait<0>();
            fence_regs(acc);
            c.epilogue(acc, ts - 1);
        }
        for (int k = 0; k < nchunks; ++k) c.step(acc, k);
    }
    wgmma_wait<0>();
    fence_regs(acc);
    c.epilogue(acc, tiles - 1);
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

#define LAIC_GRADNORM_WG_(NAME, TIN, TM, PLANES, NWG, STAGES, DIAG, SPLIT)                   \
    extern "C" __global__ void __launch_bounds__(NWG * 128, 1) NAME(const GradNormParams p) { \
        laic::wg::body<TIN, TM, PLANES, NWG, STAGES, DIAG, SPLIT>(p);                         \
    }
#define LAIC_GRADNORM_WG(NAME, TIN, TM, PLANES, NWG, STAGES, DIAG) \
    LAIC_GRADNORM_WG_(NAME, TIN, TM, PLANES, NWG, STAGES, DIAG, false)

// Kernels laic_gradnorm_wg_<dtype>_wg<NWG>[d|s] (d: 6 stages deep instead of 4; s: split
// streams, 3 stages per warpgroup), and the two diagnostic variants of f16 wg2.
LAIC_GRADNORM_WG(laic_gradnorm_wg_f16_wg2, __half, __half, 1, 2, 4, laic::wg::DIAG_NONE)
LAIC_GRADNORM_WG(laic_gradnorm_wg_f16_wg2d, __half, __half, 1, 2, 6, laic::wg::DIAG_NONE)
LAIC_GRADNORM_WG(laic_gradnorm_wg_f16_wg1, __half, __half, 1, 1, 4, laic::wg::DIAG_NONE)
LAIC_GRADNORM_WG(laic_gradnorm_wg_bf16_wg2, __nv_bfloat16, __nv_bfloat16, 1, 2, 4, laic::wg::DIAG_NONE)
LAIC_GRADNORM_WG(laic_gradnorm_wg_bf16_wg2d, __nv_bfloat16, __nv_bfloat16, 1, 2, 6, laic::wg::DIAG_NONE)
LAIC_GRADNORM_WG(laic_gradnorm_wg_bf16_wg1, __nv_bfloat16, __nv_bfloat16, 1, 1, 4, laic::wg::DIAG_NONE)
LAIC_GRADNORM_WG(laic_gradnorm_wg_f32_wg1, float, __nv_bfloat16, 2, 1, 3, laic::wg::DIAG_NONE)
LAIC_GRADNORM_WG(laic_gradnorm_wg_f16_wg2nofold, __half, __half, 1, 2, 4, laic::wg::DIAG_NO_FOLD)
LAIC_GRADNORM_WG(laic_gradnorm_wg_f16_wg2nomma, __half, __half, 1, 2, 4, laic::wg::DIAG_NO_MMA)
LAIC_GRADNORM_WG_(laic_gradnorm_wg_f16_wg2s, __half, __half, 1, 2, 3, laic::wg::DIAG_NONE, true)
LAIC_GRADNORM_WG_(laic_gradnorm_wg_bf16_wg2s, __nv_bfloat16, __nv_bfloat16, 1, 2, 3, laic::wg::DIAG_NONE, true)
