// Fused GradNorm scoring on tensor cores (DESIGN.md §1.3).
//
// One thread block owns BM = WM * WARPS nouns; each warp owns WM of them (FlashAttention-2
// layout: a row's statistics live in the 4 lanes of one mma quad). The block's nouns are loaded
// once into shared memory (converted to the tensor-core operand type, f32 split into hi + lo
// bf16 planes); the packed centres stream through shared memory in BN x BK chunks with a
// STAGES-deep cp.async pipeline; ldmatrix feeds mma.sync m16n8k16 with f32 accumulation. After
// each BN-centre tile the epilogue folds the logits into the online statistics held in
// registers: running max m (base-2 units), its index (lowest on ties), and the sums of the
// non-max terms R = sum_{k != argmax} e^{z_k - m} and R_q = sum e^{q (z_k - m)}, kept apart
// from the max term exactly as the CPU kernel (src/backend/cpu/gradnorm.rs) does. Only the
// score, assigned centre and confidence of each noun are written: nothing M x K exists.
//
// The uniform target runs the same stream a second time (a second pass over the centres) to
// sum |p_k - 1/K|^q with the final max and normaliser of the first pass.
//
// Logits are formed as z = <t, w> * (1/||t||) * (1/||w||) * log2(e) / tau: the dot product of
// the raw inputs (exact products of f16/bf16 values, f32 sums) scaled afterwards, so that
// normalisation costs no precision.

#include "gradnorm_common.cuh"

namespace laic {

constexpr int BN = 64;              // centres per tile
constexpr int BK = 64;              // embedding columns per streamed chunk
constexpr int STAGES = 3;           // cp.async pipeline depth
constexpr int PAD = 8;              // operand elements of padding per shared row (16 bytes)
constexpr int BSTRIDE = BK + PAD;   // shared row stride of a centre chunk

template <typename TIn, typename TM, int PLANES, int WM, int WARPS>
__device__ __forceinline__ void gradnorm_body(const GradNormParams& p) {
    constexpr int MT = WM / 16;         // m16 tiles per warp
    constexpr int NT = BN / 8;          // n8 tiles per centre tile
    constexpr int R = 2 * MT;           // accumulator rows per thread
    constexpr int BM = WM * WARPS;      // nouns per block
    constexpr int NTHREADS = WARPS * 32;
    constexpr int B_PLANE = BN * BSTRIDE;
    constexpr int B_STAGE = PLANES * B_PLANE;
    constexpr int SEGS = BK / 8;        // 16-byte segments per chunk row

    LAIC_DYNAMIC_SMEM(unsigned char, smem_raw);
    const int astride = p.dp + PAD;
    const size_t a_plane = (size_t)BM * astride;
    TM* As = reinterpret_cast<TM*>(smem_raw);
    TM* Bs = As + PLANES * a_plane;
    float* row_info = reinterpret_cast<float*>(Bs + STAGES * B_STAGE);  // BM x {scale, tnorm}

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const unsigned long long row0 = (unsigned long long)blockIdx.x * BM;

    // ---- Phase 1: this warp's WM nouns into shared memory, with their norms. ----
    auto dst = [&](int row, int col) { return As + (size_t)row * astride + col; };
    if (p.vec16) {
        load_nouns<TIn, TM, PLANES, WM, true>(p, dst, a_plane, row_info, row0, warp, lane);
    } else {
        load_nouns<TIn, TM, PLANES, WM, false>(p, dst, a_plane, row_info, row0, warp, lane);
    }

    // ---- Phase 2: stream the centres. ----
    const int nchunks = p.dp / BK;
    const int ntiles = p.kp / BN;
    const int passes = p.uniform ? 2 : 1;
    const int steps = passes * ntiles * nchunks;
    const TM* cent = static_cast<const TM*>(p.centres);
    const size_t c_plane = (size_t)p.kp * p.dp;

    auto load_step = [&](int s) {
        const int chunk = s % nchunks;
        const int tile = (s / nchunks) % ntiles;
        TM* dst = Bs + (s % STAGES) * B_STAGE;
        const TM* src = cent + (size_t)tile * BN * p.dp + chunk * BK;
        for (int i = threadIdx.x; i < PLANES * BN * SEGS; i += NTHREADS) {
            const int pl = i / (BN * SEGS);
            const int rem = i - pl * (BN * SEGS);
            const int row = rem / SEGS, seg = rem % SEGS;
            cp_async_16(dst + pl * B_PLANE + row * BSTRIDE + seg * 8,
                        src + pl * c_plane + (size_t)row * p.dp + seg * 8);
        }
    };

    // Start the pipeline before waiting for phase 1, so the first chunks are in flight.
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < steps) load_step(s);
        cp_async_commit();
    }
    __syncthreads();  // row_info and the noun tile are complete

    float rs[R];        // logit scale of each of this thread's rows
    RowStats st[R];
#pragma unroll
    for (int i = 0; i < R; ++i) {
        rs[i] = row_info[2 * (warp * WM + (i >> 1) * 16 + (i & 1) * 8 + g)];
    }

    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[mt][nt][j] = 0.f;

    float cs[NT][2];  // centre scales of this lane's columns in the current tile
    const float inv_k = 1.f / (float)p.k;
    const float own = t == 0 ? 1.f : 0.f;

    for (int s = 0; s < steps; ++s) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();  // chunk s has landed for everyone; stage (s-1) % STAGES is free
        {
            const int nx = s + STAGES - 1;
            if (nx < steps) load_step(nx);
            cp_async_commit();
        }
        const int chunk = s % nchunks;
        const int tile = (s / nchunks) % ntiles;
        const int pass = s / (nchunks * ntiles);
        if (chunk == 0) {
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const float2 c2 = __ldg(reinterpret_cast<const float2*>(
                    p.centre_scale + tile * BN + nt * 8 + 2 * t));
                cs[nt][0] = c2.x;
                cs[nt][1] = c2.y;
            }
        }

        const TM* bst = Bs + (s % STAGES) * B_STAGE;
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            uint32_t a[PLANES][MT][4];
            uint32_t b[PLANES][NT][2];
#pragma unroll
            for (int pl = 0; pl < PLANES; ++pl) {
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    ldmatrix_x4(a[pl][mt], As + pl * a_plane +
                                               (size_t)(warp * WM + mt * 16 + (lane & 15)) * astride +
                                               chunk * BK + kk * 16 + (lane >> 4) * 8);
                }
#pragma unroll
                for (int np = 0; np < NT / 2; ++np) {
                    uint32_t r4[4];
                    ldmatrix_x4(r4, bst + pl * B_PLANE +
                                        (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * BSTRIDE +
                                        kk * 16 + ((lane >> 3) & 1) * 8);
                    b[pl][2 * np][0] = r4[0];
                    b[pl][2 * np][1] = r4[1];
                    b[pl][2 * np + 1][0] = r4[2];
                    b[pl][2 * np + 1][1] = r4[3];
                }
            }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                    Mma<TM>::run(acc[mt][nt], a[0][mt], b[0][nt][0], b[0][nt][1]);
                    if constexpr (PLANES == 2) {
                        Mma<TM>::run(acc[mt][nt], a[0][mt], b[1][nt][0], b[1][nt][1]);
                        Mma<TM>::run(acc[mt][nt], a[1][mt], b[0][nt][0], b[0][nt][1]);
                    }
                }
            }
        }

        if (chunk != nchunks - 1) continue;

        // ---- Epilogue of one centre tile. ----
        const int colbase = tile * BN + 2 * t;
        const bool padded = (tile + 1) * BN > p.k;  // the last tile
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const int mt = i >> 1, h = i & 1;
            float z[NT][2];
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int j = 0; j < 2; ++j) z[nt][j] = acc[mt][nt][2 * h + j] * rs[i] * cs[nt][j];
            if (padded) mask_padding(z, colbase, p.k);
            fold_tile(st[i], z, colbase, p, pass, own, inv_k);
        }
        if (pass == 0 && p.uniform && tile == ntiles - 1) {
#pragma unroll
            for (int i = 0; i < R; ++i) start_uniform_pass(st[i]);
        }
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[mt][nt][j] = 0.f;
    }
    cp_async_wait<0>();

    // ---- Finalise: one lane per row writes score, assignment, confidence. ----
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const int lr = warp * WM + (i >> 1) * 16 + (i & 1) * 8 + g;
        finish_row(st[i], p, row0 + lr, row_info[2 * lr + 1], t);
    }
}

}  // namespace laic

using laic::GradNormParams;
using laic::PrepParams;

#define LAIC_PREP(NAME, TIN, TM, PLANES)                                                  \
    extern "C" __global__ void __launch_bounds__(256) NAME(const PrepParams p) {          \
        laic::prep_body<TIN, TM, PLANES>(p);                                              \
    }

LAIC_PREP(laic_gradnorm_prep_f32, float, __nv_bfloat16, 2)
LAIC_PREP(laic_gradnorm_prep_f16, __half, __half, 1)
LAIC_PREP(laic_gradnorm_prep_bf16, __nv_bfloat16, __nv_bfloat16, 1)

#define LAIC_GRADNORM(NAME, TIN, TM, PLANES, WM, WARPS)                                   \
    extern "C" __global__ void __launch_bounds__(WARPS * 32, 1) NAME(const GradNormParams p) { \
        laic::gradnorm_body<TIN, TM, PLANES, WM, WARPS>(p);                               \
    }

#define LAIC_GRADNORM_CONFIGS(DT, TIN, TM, PLANES)                                         \
    LAIC_GRADNORM(laic_gradnorm_##DT##_32x4, TIN, TM, PLANES, 32, 4)                       \
    LAIC_GRADNORM(laic_gradnorm_##DT##_16x8, TIN, TM, PLANES, 16, 8)                       \
    LAIC_GRADNORM(laic_gradnorm_##DT##_16x4, TIN, TM, PLANES, 16, 4)                       \
    LAIC_GRADNORM(laic_gradnorm_##DT##_16x2, TIN, TM, PLANES, 16, 2)

LAIC_GRADNORM_CONFIGS(f32, float, __nv_bfloat16, 2)
LAIC_GRADNORM_CONFIGS(f16, __half, __half, 1)
LAIC_GRADNORM_CONFIGS(bf16, __nv_bfloat16, __nv_bfloat16, 1)
