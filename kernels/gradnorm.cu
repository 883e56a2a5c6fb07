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

#include "tiles.cuh"

namespace laic {

constexpr int BN = 64;              // centres per tile
constexpr int BK = 64;              // embedding columns per streamed chunk
constexpr int STAGES = 3;           // cp.async pipeline depth
constexpr int PAD = 8;              // operand elements of padding per shared row (16 bytes)
constexpr int BSTRIDE = BK + PAD;   // shared row stride of a centre chunk

// Error bits in flags[0].
constexpr unsigned FLAG_NOUN_NONFINITE = 1u;
constexpr unsigned FLAG_NOUN_ZERO = 2u;
constexpr unsigned FLAG_CENTRE_NONFINITE = 4u;
constexpr unsigned FLAG_CENTRE_ZERO = 8u;

enum Power : int { POWER_ONE = 0, POWER_TWO = 1, POWER_INF = 2, POWER_GENERAL = 3 };

// Kernel parameters of the main kernel; mirrored by `GradNormParams` in
// src/backend/cuda/gradnorm.rs (same order, same C layout).
struct GradNormParams {
    const void* nouns;            // m rows of d input elements, noun_stride elements apart
    const void* centres;          // PLANES planes of kp x dp operands (packed by prep)
    const float* centre_scale;    // kp: 1/||w|| (normalize) or 1; 0 for padding rows
    float* scores;                // m
    unsigned* assignment;         // m
    float* confidence;            // m
    unsigned* flags;              // [0] error bits, [1] max noun L2 norm (float bits)
    unsigned long long m;
    unsigned long long noun_stride;
    int k;                        // real centres
    int kp;                       // padded to a multiple of BN
    int d;                        // real columns
    int dp;                       // padded to a multiple of BK
    float logit_scale;            // log2(e) / tau
    float q;
    int power;                    // Power
    int normalize;
    int uniform;
    int vec16;                    // rows may be read as 16-byte vectors (aligned, d*size % 16 == 0)
};

// Parameters of the centre-packing kernel; mirrored by `PrepParams` in Rust.
struct PrepParams {
    const void* src;              // rows x d input elements, stride elements apart
    void* dst;                    // PLANES planes of rows_padded x dp operands
    float* scale;                 // rows_padded
    unsigned* flags;              // [0] error bits, [2] max centre L2 norm (float bits)
    unsigned long long stride;
    int rows;
    int rows_padded;
    int d;
    int dp;
    int normalize;
    int reserved;
};

// Packs centres (one warp per row): converts to the operand type (split into two planes for
// f32), zero-pads to rows_padded x dp, and writes each row's logit scale.
template <typename TIn, typename TM, int PLANES>
__device__ __forceinline__ void prep_body(const PrepParams& p) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + warp;
    if (row >= p.rows_padded) return;
    const bool valid = row < p.rows;
    const TIn* src = static_cast<const TIn*>(p.src) + (valid ? (size_t)row * p.stride : 0);
    TM* dst = static_cast<TM*>(p.dst) + (size_t)row * p.dp;
    const size_t plane = (size_t)p.rows_padded * p.dp;
    float ss = 0.f;
    bool bad = false;
    for (int c = lane; c < p.dp; c += 32) {
        float v = (valid && c < p.d) ? to_f32(src[c]) : 0.f;
        if (!isfinite(v)) {
            bad = true;
            v = 0.f;
        }
        store_split<TM, PLANES>(dst + c, plane, v);
        ss = fmaf(v, v, ss);
    }
    ss = warp_sum(ss);
    bad = __any_sync(0xffffffffu, bad);
    if (lane == 0) {
        float scale = 0.f;
        if (valid) {
            scale = p.normalize ? (ss > 0.f ? 1.f / sqrtf(ss) : 0.f) : 1.f;
            if (bad) atomicOr(&p.flags[0], FLAG_CENTRE_NONFINITE);
            if (p.normalize && ss == 0.f) atomicOr(&p.flags[0], FLAG_CENTRE_ZERO);
            atomicMax(&p.flags[2], __float_as_uint(sqrtf(ss)));
        }
        p.scale[row] = scale;
    }
}

// x^q for x >= 0, out of line: general q is rare, and powf inlined into every unrolled element
// of the loader and the epilogue multiplies the code ptxas must assemble.
__device__ __noinline__ float pow_nonneg(float x, float q) { return x > 0.f ? powf(x, q) : 0.f; }

// Running sums of |x|, x^2, max |x| and (general q only) |x|^q: branch-free for q in {1, 2, inf},
// so that unrolled loops do not carry a four-way switch per element.
struct PowerSums {
    float s1 = 0.f, s2 = 0.f, mx = 0.f, sg = 0.f;
    __device__ __forceinline__ void add(float ax, bool general, float q) {
        s1 += ax;
        s2 = fmaf(ax, ax, s2);
        mx = fmaxf(mx, ax);
        if (general) sg += pow_nonneg(ax, q);
    }
    // The sum (or max) that `power` asks for.
    __device__ __forceinline__ float pick(int power) const {
        switch (power) {
            case POWER_ONE: return s1;
            case POWER_TWO: return s2;
            case POWER_INF: return mx;
            default: return sg;
        }
    }
};

// A unit of a noun row as loaded from global memory: 16 bytes (VEC) or one element.
template <typename TIn, bool VEC> struct Unit;
template <typename TIn> struct Unit<TIn, true> {
    using T = uint4;
    static constexpr int EPV = 16 / sizeof(TIn);
    static __device__ __forceinline__ T zero() { return make_uint4(0u, 0u, 0u, 0u); }
};
template <typename TIn> struct Unit<TIn, false> {
    using T = TIn;
    static constexpr int EPV = 1;
    static __device__ __forceinline__ T zero() { return from_f32_in<TIn>(0.f); }
};

// Loads this warp's WM nouns into the shared noun tile (operand planes, zero-padded to dp
// columns), computes each row's logit scale and ||t||_q into row_info, and raises the flags.
// RG rows at a time with U units per lane each, all loads issued before any is used, so that
// RG * U loads are in flight per lane (a block per SM cannot hide a row-by-row chain).
template <typename TIn, typename TM, int PLANES, int WM, bool VEC>
__device__ __forceinline__ void load_nouns(const GradNormParams& p, TM* As, size_t a_plane,
                                           int astride, float* row_info,
                                           unsigned long long row0, int warp, int lane) {
    using U8 = Unit<TIn, VEC>;
    using T = typename U8::T;
    constexpr int EPV = U8::EPV;
    constexpr int RG = 8;
    constexpr int UN = VEC ? 2 : 4;
    static_assert(WM % RG == 0, "rows per warp must be a multiple of the row group");
    const int nv = VEC ? p.d / EPV : p.d;    // units holding data (VEC: d % EPV == 0)
    const int nvp = p.dp / EPV;              // units per padded row
    float warp_max_norm = 0.f;
    bool bad_any = false, zero_any = false;
    for (int r0 = 0; r0 < WM; r0 += RG) {
        const T* src[RG];
        bool valid[RG], bad[RG];
        PowerSums acc[RG];
#pragma unroll
        for (int rr = 0; rr < RG; ++rr) {
            const unsigned long long gr = row0 + warp * WM + r0 + rr;
            valid[rr] = gr < p.m;
            src[rr] = reinterpret_cast<const T*>(static_cast<const TIn*>(p.nouns) +
                                                 (valid[rr] ? gr * p.noun_stride : 0ull));
            bad[rr] = false;
        }
        const bool general = p.power == POWER_GENERAL;
        for (int u0 = lane; u0 < nvp; u0 += 32 * UN) {
            T raw[RG][UN];
#pragma unroll
            for (int rr = 0; rr < RG; ++rr)
#pragma unroll
                for (int uu = 0; uu < UN; ++uu) {
                    const int u = u0 + uu * 32;
                    raw[rr][uu] = (valid[rr] && u < nv) ? src[rr][u] : U8::zero();
                }
#pragma unroll
            for (int rr = 0; rr < RG; ++rr)
#pragma unroll
                for (int uu = 0; uu < UN; ++uu) {
                    const int u = u0 + uu * 32;
                    if (u >= nvp) continue;
                    const TIn* e = reinterpret_cast<const TIn*>(&raw[rr][uu]);
                    TM* dst = As + (size_t)(warp * WM + r0 + rr) * astride + u * EPV;
#pragma unroll
                    for (int j = 0; j < EPV; ++j) {
                        // Scalar path: columns d..dp were zero-filled above (u >= nv).
                        float v = to_f32(e[j]);
                        if (!isfinite(v)) {
                            bad[rr] = true;
                            v = 0.f;
                        }
                        store_split<TM, PLANES>(dst + j, a_plane, v);
                        acc[rr].add(fabsf(v), general, p.q);
                    }
                }
        }
#pragma unroll
        for (int rr = 0; rr < RG; ++rr) {
            const int lr = warp * WM + r0 + rr;
            const float sum_sq = warp_sum(acc[rr].s2);
            const float own_q = acc[rr].pick(p.power);
            const float sum_q = p.power == POWER_INF ? warp_max(own_q) : warp_sum(own_q);
            const bool row_bad = __any_sync(0xffffffffu, bad[rr]);
            const float l2 = sqrtf(sum_sq);
            const float inv = p.normalize ? (sum_sq > 0.f ? 1.f / l2 : 0.f) : 1.f;
            float tq;
            switch (p.power) {
                case POWER_TWO: tq = l2; break;
                case POWER_GENERAL: tq = powf(sum_q, 1.f / p.q); break;
                default: tq = sum_q; break;
            }
            if (lane == 0) {
                row_info[2 * lr] = inv * p.logit_scale;
                row_info[2 * lr + 1] = tq * inv;
            }
            if (valid[rr]) {
                warp_max_norm = fmaxf(warp_max_norm, l2);
                bad_any |= row_bad;
                zero_any |= (p.normalize && sum_sq == 0.f);
            }
        }
    }
    if (lane == 0) {
        if (bad_any) atomicOr(&p.flags[0], FLAG_NOUN_NONFINITE);
        if (zero_any) atomicOr(&p.flags[0], FLAG_NOUN_ZERO);
        if (warp_max_norm > 0.f) atomicMax(&p.flags[1], __float_as_uint(warp_max_norm));
    }
}

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

    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int astride = p.dp + PAD;
    const size_t a_plane = (size_t)BM * astride;
    TM* As = reinterpret_cast<TM*>(smem_raw);
    TM* Bs = As + PLANES * a_plane;
    float* row_info = reinterpret_cast<float*>(Bs + STAGES * B_STAGE);  // BM x {scale, tnorm}

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const unsigned long long row0 = (unsigned long long)blockIdx.x * BM;

    // ---- Phase 1: this warp's WM nouns into shared memory, with their norms. ----
    if (p.vec16) {
        load_nouns<TIn, TM, PLANES, WM, true>(p, As, a_plane, astride, row_info, row0, warp, lane);
    } else {
        load_nouns<TIn, TM, PLANES, WM, false>(p, As, a_plane, astride, row_info, row0, warp, lane);
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
    float mx[R];        // running max (base-2 logits)
    int arg[R];         // its centre
    double rest[R];     // this lane's part of R (lane t == 0 also carries the old maxima)
    double restq[R];    // this lane's part of R_q
    double uacc[R];     // uniform target: this lane's part of sum |p - 1/K|^q (or max)
    float invz[R];      // uniform target: 1 / (1 + R) after the first pass
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const int lr = warp * WM + (i >> 1) * 16 + (i & 1) * 8 + g;
        rs[i] = row_info[2 * lr];
        mx[i] = -INFINITY;
        arg[i] = 0;
        rest[i] = 0.0;
        restq[i] = 0.0;
        uacc[i] = 0.0;
        invz[i] = 0.f;
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
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const int mt = i >> 1, h = i & 1;
            float z[NT][2];
            float tmax = -INFINITY;
            int targ = 0x7fffffff;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    const int col = colbase + nt * 8 + j;
                    float v = acc[mt][nt][2 * h + j] * rs[i] * cs[nt][j];
                    if (col >= p.k) v = -INFINITY;
                    z[nt][j] = v;
                    if (v > tmax) {
                        tmax = v;
                        targ = col;
                    }
                }
            }
            if (pass == 0) {
                quad_argmax(tmax, targ);
                int skip = -1;
                if (tmax > mx[i]) {
                    // The old max term (1 before rescaling) joins the non-max sums, once per row.
                    const float sh = mx[i] - tmax;
                    const float e = ex2(sh);
                    const float eq = p.power == POWER_TWO       ? e * e
                                     : p.power == POWER_GENERAL ? ex2(p.q * sh)
                                                                : e;
                    rest[i] = (rest[i] + own) * (double)e;
                    restq[i] = (restq[i] + own) * (double)eq;
                    mx[i] = tmax;
                    arg[i] = targ;
                    skip = targ;
                }
                const float m = mx[i];
                float s1 = 0.f, s2 = 0.f;
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                    for (int j = 0; j < 2; ++j) {
                        const int col = colbase + nt * 8 + j;
                        const float x = z[nt][j] - m;
                        const float e = col == skip ? 0.f : ex2(x);
                        s1 += e;
                        if (p.power == POWER_TWO) {
                            s2 = fmaf(e, e, s2);
                        } else if (p.power == POWER_GENERAL) {
                            s2 += col == skip ? 0.f : ex2(p.q * x);
                        }
                    }
                }
                rest[i] += (double)s1;
                restq[i] += (double)s2;
            } else {
                const float m = mx[i];
                PowerSums ps;
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                    for (int j = 0; j < 2; ++j) {
                        const int col = colbase + nt * 8 + j;
                        // Padding columns add |0 - 0| = 0: p is 0 there and so is the target.
                        const float dd =
                            col < p.k ? fabsf(ex2(z[nt][j] - m) * invz[i] - inv_k) : 0.f;
                        ps.add(dd, p.power == POWER_GENERAL, p.q);
                    }
                }
                const float su = ps.pick(p.power);
                uacc[i] = p.power == POWER_INF ? fmax(uacc[i], (double)su) : uacc[i] + (double)su;
            }
        }
        if (pass == 0 && p.uniform && tile == ntiles - 1) {
            // The normaliser of the first pass, for the second.
#pragma unroll
            for (int i = 0; i < R; ++i) {
                double tot = rest[i];
                tot += __shfl_xor_sync(0xffffffffu, tot, 1);
                tot += __shfl_xor_sync(0xffffffffu, tot, 2);
                invz[i] = (float)(1.0 / (1.0 + tot));
            }
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
        double r1 = rest[i], rq = restq[i], u = uacc[i];
        r1 += __shfl_xor_sync(0xffffffffu, r1, 1);
        r1 += __shfl_xor_sync(0xffffffffu, r1, 2);
        rq += __shfl_xor_sync(0xffffffffu, rq, 1);
        rq += __shfl_xor_sync(0xffffffffu, rq, 2);
        if (p.power == POWER_INF) {
            u = fmax(u, __shfl_xor_sync(0xffffffffu, u, 1));
            u = fmax(u, __shfl_xor_sync(0xffffffffu, u, 2));
        } else {
            u += __shfl_xor_sync(0xffffffffu, u, 1);
            u += __shfl_xor_sync(0xffffffffu, u, 2);
        }
        const int lr = warp * WM + (i >> 1) * 16 + (i & 1) * 8 + g;
        const unsigned long long gr = row0 + lr;
        if (t != 0 || gr >= p.m) continue;
        const double zs = 1.0 + r1;
        const double q = (double)p.q;
        double dist;
        if (!p.uniform) {
            switch (p.power) {
                case POWER_INF: dist = r1 / zs; break;
                case POWER_ONE: dist = 2.0 * r1 / zs; break;
                case POWER_TWO: {
                    const double a = r1 / zs;
                    dist = sqrt(rq / (zs * zs) + a * a);
                    break;
                }
                default: dist = pow(rq / pow(zs, q) + pow(r1 / zs, q), 1.0 / q); break;
            }
        } else {
            switch (p.power) {
                case POWER_TWO: dist = sqrt(u); break;
                case POWER_GENERAL: dist = pow(u, 1.0 / q); break;
                default: dist = u; break;
            }
        }
        const double tn = (double)row_info[2 * lr + 1];
        p.scores[gr] = (float)(dist * tn);
        p.assignment[gr] = (unsigned)arg[i];
        p.confidence[gr] = (float)(1.0 / zs);
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
