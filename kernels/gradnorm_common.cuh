// What both GradNorm kernels share (DESIGN.md §1.3): the parameter structs, centre packing,
// the noun loader, and the online statistics of one noun row folded tile by tile.
//
// The statistics per noun, in base-2 logits z: the running max m and its centre (lowest index on
// ties), R = sum_{k != argmax} 2^{z_k - m} and R_q = sum_{k != argmax} 2^{q (z_k - m)}, kept
// apart from the max term exactly as the CPU kernel (src/backend/cpu/gradnorm.rs) does, so that
// confident nouns keep tails that 1 + R would round away. Each tile's terms are summed in f32
// relative to the tile's own largest non-max term and rescaled into the f64 sums: relative to m
// they would underflow f32 (2^{q (z - m)} < 2^-126 already at q = 3.5, z - m = -36).
#pragma once

#include "tiles.cuh"

namespace laic {

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
    int kp;                       // padded to a multiple of the kernel's centre tile
    int d;                        // real columns
    int dp;                       // padded to a multiple of 64
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
//
// `dst(row, col)` is the shared-memory address of element (row, col) of the first operand plane
// (the second plane, f32 input only, is `a_plane` elements further); a unit of EPV <= 8
// elements starting at a multiple of EPV must be contiguous there.
template <typename TIn, typename TM, int PLANES, int WM, bool VEC, typename Dst>
__device__ __forceinline__ void load_nouns(const GradNormParams& p, Dst dst_of, size_t a_plane,
                                           float* row_info, unsigned long long row0, int warp,
                                           int lane) {
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
                    TM* dst = dst_of(warp * WM + r0 + rr, u * EPV);
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


// 2^x as a double for x <= 0, accurate down to the double range: f32's ex2 flushes results
// below 2^-126, which the rescaled sums must keep. 0 for x = -inf (and below 2^-1000).
__device__ __forceinline__ double exp2_wide(float x) {
    if (!(x > -1000.f)) return 0.0;
    const float whole = floorf(x);
    return ldexp((double)ex2(x - whole), (int)whole);
}

// Online statistics of one noun row, held by the 4 lanes of an mma quad; each lane sums its
// own columns, lane 0 also carries the displaced maxima (`own`).
struct RowStats {
    float mx = -INFINITY;   // running max (base-2 logits)
    int arg = 0;            // its centre
    double rest = 0.0;      // this lane's part of R
    double restq = 0.0;     // this lane's part of R_q
    double uacc = 0.0;      // uniform target: this lane's part of sum |p - 1/K|^q (or max)
    float invz = 0.f;       // uniform target: 1 / (1 + R) after the first pass
};

// Marks this lane's padding columns (colbase + 8 nt + j >= k) of a tile as -inf. Only the
// last tile has any: callers test that once per tile, so full tiles pay nothing per element.
template <int NT>
__device__ __forceinline__ void mask_padding(float (&z)[NT][2], int colbase, int k) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int j = 0; j < 2; ++j)
            if (colbase + nt * 8 + j >= k) z[nt][j] = -INFINITY;
}

// Largest of this lane's logits.
template <int NT>
__device__ __forceinline__ float lane_max(const float (&z)[NT][2]) {
    float m = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) m = fmaxf(m, fmaxf(z[nt][0], z[nt][1]));
    return m;
}

// This tile's sums of 2^(z - ref) (s1) and, for q = 2 or general q, of their q-th powers (s2),
// in column order. The power is tested once, outside the element loop: a test per element
// (and its predicate kept across the MUFU) was most of the fold's instructions.
template <int NT>
__device__ __forceinline__ void tile_sums(const float (&z)[NT][2], float ref, int power, float q,
                                          float& s1, float& s2) {
    s1 = 0.f;
    s2 = 0.f;
    if (power == POWER_TWO) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const float e = ex2(z[nt][j] - ref);
                s1 += e;
                s2 = fmaf(e, e, s2);
            }
    } else if (power == POWER_GENERAL) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const float x = z[nt][j] - ref;
                s1 += ex2(x);
                s2 += ex2(q * x);
            }
    } else {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int j = 0; j < 2; ++j) s1 += ex2(z[nt][j] - ref);
    }
}

// Folds one tile of R rows into their statistics. `z[r][nt][j]` is this lane's logit of row r
// and column colbase + 8 nt + j (base 2, -inf for padding columns: see mask_padding); all 4
// lanes of the quad call this together. Pass 0 updates max, argmax, R, R_q; pass 1 (uniform
// target) sums |p - 1/K|^q. Pass 0 may set the new max's logit to -inf (it is not one of the
// tile's R terms).
//
// Pass 0 costs a max, one subtraction, one ex2 and one or two adds per logit: the argmax is
// looked for only in a tile that moves a row's max (a few tiles of a row), and the new max
// leaves the sums as a -inf logit, whose ex2 is 0, rather than as a test per element.
//
// Each row takes the same operations in the same order whatever R is (the same results bit
// for bit), but the rows' steps are interleaved: their maxima, shuffles, exponentials and sums
// are independent chains that can overlap, and one warp vote covers all R rows, where R calls
// of one row each would wait out each other's latencies.
template <int R, int NT>
__device__ __forceinline__ void fold_rows(RowStats (&st)[R], float (&z)[R][NT][2], int colbase,
                                          const GradNormParams& p, int pass, float own,
                                          float inv_k) {
    const bool two = p.power == POWER_TWO, general = p.power == POWER_GENERAL;
    if (pass == 0) {
        float tmax[R], ref[R];  // ref: the largest non-max term, where the max does not move
        bool moved[R];
        bool any_moved = false;
#pragma unroll
        for (int r = 0; r < R; ++r) tmax[r] = lane_max(z[r]);
#pragma unroll
        for (int r = 0; r < R; ++r) {
            tmax[r] = quad_max(tmax[r]);
            moved[r] = tmax[r] > st[r].mx;
            ref[r] = tmax[r];
            any_moved |= moved[r];
        }
        // Warp-uniform branch: the shuffles below need every lane of the warp. A row that no
        // lane moved goes through it unchanged (its ref is its tmax again).
        if (__any_sync(0xffffffffu, any_moved)) {
            // Each new max's column: the lowest that holds it (as a strict > in column order).
            int targ[R];
#pragma unroll
            for (int r = 0; r < R; ++r) {
                targ[r] = 0x7fffffff;
#pragma unroll
                for (int nt = NT - 1; nt >= 0; --nt)
#pragma unroll
                    for (int j = 1; j >= 0; --j)
                        if (z[r][nt][j] == tmax[r]) targ[r] = colbase + nt * 8 + j;
            }
#pragma unroll
            for (int r = 0; r < R; ++r) targ[r] = min(targ[r], __shfl_xor_sync(0xffffffffu, targ[r], 1));
#pragma unroll
            for (int r = 0; r < R; ++r) targ[r] = min(targ[r], __shfl_xor_sync(0xffffffffu, targ[r], 2));
#pragma unroll
            for (int r = 0; r < R; ++r) {
                if (!moved[r]) continue;
                // The old max term (1 before rescaling) joins the non-max sums, once per row.
                const float sh = st[r].mx - tmax[r];
                const double e = exp2_wide(sh);
                const double eq = two ? e * e : general ? exp2_wide(p.q * sh) : e;
                st[r].rest = (st[r].rest + own) * e;
                st[r].restq = (st[r].restq + own) * eq;
                st[r].mx = tmax[r];
                st[r].arg = targ[r];
                // This tile's non-max terms: all but the new max.
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int j = 0; j < 2; ++j)
                        if (colbase + nt * 8 + j == targ[r]) z[r][nt][j] = -INFINITY;
            }
#pragma unroll
            for (int r = 0; r < R; ++r) ref[r] = quad_max(lane_max(z[r]));
        }
        // Relative to the largest of them. A row with nothing but the max (and padding) in
        // this tile (ref = -inf) gets garbage sums here and adds nothing below.
        float s1[R], s2[R];
#pragma unroll
        for (int r = 0; r < R; ++r) tile_sums(z[r], ref[r], p.power, p.q, s1[r], s2[r]);
#pragma unroll
        for (int r = 0; r < R; ++r) {
            if (ref[r] == -INFINITY) continue;
            const float sh = ref[r] - st[r].mx;
            const double w = exp2_wide(sh);
            st[r].rest += (double)s1[r] * w;
            if (two) {
                st[r].restq += (double)s2[r] * (w * w);
            } else if (general) {
                st[r].restq += (double)s2[r] * exp2_wide(p.q * sh);
            }
        }
    } else {
#pragma unroll
        for (int r = 0; r < R; ++r) {
            PowerSums ps;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    // Padding columns add |0 - 0| = 0: p is 0 there and so is the target.
                    const float dd = colbase + nt * 8 + j < p.k
                                         ? fabsf(ex2(z[r][nt][j] - st[r].mx) * st[r].invz - inv_k)
                                         : 0.f;
                    ps.add(dd, general, p.q);
                }
            const float su = ps.pick(p.power);
            st[r].uacc = p.power == POWER_INF ? fmax(st[r].uacc, (double)su) : st[r].uacc + (double)su;
        }
    }
}

// fold_rows of one row.
template <int NT>
__device__ __forceinline__ void fold_tile(RowStats& st, float (&z)[NT][2], int colbase,
                                          const GradNormParams& p, int pass, float own,
                                          float inv_k) {
    fold_rows<1, NT>(reinterpret_cast<RowStats(&)[1]>(st), reinterpret_cast<float(&)[1][NT][2]>(z),
                     colbase, p, pass, own, inv_k);
}

__device__ __forceinline__ double quad_sum_f64(double v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    v += __shfl_xor_sync(0xffffffffu, v, 2);
    return v;
}

// After the first pass of the uniform target: the normaliser 1 / (1 + R) for the second.
__device__ __forceinline__ void start_uniform_pass(RowStats& st) {
    st.invz = (float)(1.0 / (1.0 + quad_sum_f64(st.rest)));
}

// Combines the quad's statistics and (lane t == 0, real rows) writes score, centre and
// confidence of row `gr`; `tnorm` is ||t||_q (times 1/||t||_2 when normalising).
__device__ __forceinline__ void finish_row(const RowStats& st, const GradNormParams& p,
                                           unsigned long long gr, float tnorm, int t) {
    const double r1 = quad_sum_f64(st.rest), rq = quad_sum_f64(st.restq);
    double u = st.uacc;
    if (p.power == POWER_INF) {
        u = fmax(u, __shfl_xor_sync(0xffffffffu, u, 1));
        u = fmax(u, __shfl_xor_sync(0xffffffffu, u, 2));
    } else {
        u = quad_sum_f64(u);
    }
    if (t != 0 || gr >= p.m) return;
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
    p.scores[gr] = (float)(dist * (double)tnorm);
    p.assignment[gr] = (unsigned)st.arg;
    p.confidence[gr] = (float)(1.0 / zs);
}

}  // namespace laic
