// Fused retrieval on tensor cores (DESIGN.md §1.5): for every image x,
// t~ = normalize(softmax(x . T^T / tau) . T), flash-attention style: the nouns T stream through
// shared memory in tiles of BN, the logits of a tile are formed on tensor cores, the running
// max of each image's exponents (base 2) is kept, the tile's weights p = 2^(e - m) <= 1 go to
// shared memory as operands, and the f32 accumulator O (images x D, in registers) is rescaled
// when the max grows and gets P . T added on tensor cores. Nothing N x M is stored; the
// softmax denominator cancels in the final normalisation.
//
// T here is the packed noun rows, while t~ sums the rows the softmax is over, packed row j
// times its scale s_j (1/||t_j|| or 1 for f16 and bf16 input; 1 or ||t_j|| for the unit rows
// of f32 input): the exponent of noun j is therefore e = z + log2(s_j), not the logit z alone
// (issue 8's parity failure: the sum of raw rows put weights off by the spread of the noun
// norms, 4-16 % at D = 64-512; kernels/NOTES.md).
//
// Work split: a block owns BM = WR * MT * 16 images and runs WR x WC warps. Warp (wr, wc)
// forms the logits of its row group's MT * 16 images against nouns wc * 8 .. wc * 8 + 7 of
// each tile (the four column warps exchange their row maxima through shared memory), and owns
// output columns wc * dp / 4 .. (wc + 1) * dp / 4 of the accumulator for those images, so a
// thread holds MT * dp / 32 * 4 / 8 accumulators (128 at D = 512, MT = 2).
//
// Precision: f16 and bf16 inputs enter the logit product as they are (exact products, f32
// sums). f32 inputs are packed as unit rows split into f16 hi + lo (three products; 22
// significant bits: a bf16 hi + lo split of the raw rows, 16 bits, was 1-2e-4 off an f64
// reference at tau = 0.006-0.01, D = 64, the tolerance's size). The weights enter the second
// product as f16 (f16 input: 2^-11 relative) or split into hi + lo (bf16 hi + lo for bf16
// input, f16 hi + lo for f32 input). Logits are scaled after the product:
// z = <x, t> * s_x * s_t with s_x = (1/||x|| or 1) * log2(e) / tau, s_t = 1/||t|| or 1 for
// f16 and bf16 input, and s_x = (1 or ||x||) * log2(e) / tau, s_t = 1 or ||t|| for the unit
// rows of f32 input.

#include "operands.cuh"
#include "retrieve_params.cuh"

namespace laic {
namespace rt {

constexpr int BN = 32;              // nouns per tile
constexpr int WC = 4;               // column warps (each: 8 nouns of a tile, dp/4 columns)
constexpr int PAD = 8;              // operand elements of padding per shared row
constexpr int PSTRIDE = BN + PAD;   // shared row stride of the weights

template <typename TM, int XPL, int PPL, int MT, int WR, int NTO>
__device__ __forceinline__ void retrieve_body(const RetrieveParams& p) {
    constexpr int BM = WR * MT * 16;
    constexpr int NTHREADS = WR * WC * 32;
    constexpr int R = 2 * MT;

    LAIC_DYNAMIC_SMEM(unsigned char, smem_raw);
    const int xstride = p.dp + PAD;
    const size_t x_plane = (size_t)BM * xstride;
    const size_t t_plane = (size_t)BN * xstride;
    constexpr size_t p_plane = (size_t)BM * PSTRIDE;
    TM* Xs = reinterpret_cast<TM*>(smem_raw);
    TM* Ts = Xs + XPL * x_plane;                  // 2 stages x XPL planes
    TM* Ps = Ts + 2 * XPL * t_plane;              // PPL planes
    float* red = reinterpret_cast<float*>(Ps + PPL * p_plane);  // WC x BM

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wr = warp / WC, wc = warp % WC;
    const int g = lane >> 2, t = lane & 3;
    const unsigned long long row0 = (unsigned long long)blockIdx.x * BM;
    const int segs_row = p.dp / 8;

    // ---- The block's images: one cp.async group. ----
    {
        const TM* src = static_cast<const TM*>(p.images);
        const size_t plane = (size_t)p.np * p.dp;
        const int total = XPL * BM * segs_row;
        for (int i = threadIdx.x; i < total; i += NTHREADS) {
            const int pl = i / (BM * segs_row);
            const int rem = i - pl * (BM * segs_row);
            const int r = rem / segs_row, s = rem - r * segs_row;
            cp_async_16(Xs + pl * x_plane + (size_t)r * xstride + s * 8,
                        src + pl * plane + (size_t)(row0 + r) * p.dp + s * 8);
        }
    }
    const TM* nouns = static_cast<const TM*>(p.nouns);
    const size_t n_plane = (size_t)p.mp * p.dp;
    auto load_tile = [&](int tile) {
        TM* dst = Ts + (tile & 1) * XPL * t_plane;
        const int total = XPL * BN * segs_row;
        for (int i = threadIdx.x; i < total; i += NTHREADS) {
            const int pl = i / (BN * segs_row);
            const int rem = i - pl * (BN * segs_row);
            const int r = rem / segs_row, s = rem - r * segs_row;
            cp_async_16(dst + pl * t_plane + (size_t)r * xstride + s * 8,
                        nouns + pl * n_plane + ((size_t)tile * BN + r) * p.dp + s * 8);
        }
    };
    load_tile(0);
    cp_async_commit();

    const int ntiles = (int)(p.mp / BN);
    const int nto = p.dp / 32;                      // n8 output tiles of this warp (<= NTO)
    const int ocol0 = wc * (p.dp / 4);              // first output column of this warp
    const int wrow0 = wr * MT * 16;                 // first row of this warp's row group

    float rs[R], mx[R];
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const unsigned long long gr = row0 + wrow0 + (i >> 1) * 16 + (i & 1) * 8 + g;
        rs[i] = __ldg(p.image_scale + gr);
        mx[i] = -INFINITY;
    }
    float o[MT][NTO][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NTO; ++nt)
#pragma unroll
            for (int j = 0; j < 4; ++j) o[mt][nt][j] = 0.f;

    for (int tile = 0; tile < ntiles; ++tile) {
        cp_async_wait<0>();
        __syncthreads();  // tile (and the images) landed; everyone is done with tile - 1
        if (tile + 1 < ntiles) load_tile(tile + 1);
        cp_async_commit();
        const TM* ts = Ts + (tile & 1) * XPL * t_plane;

        // ---- Logits of this warp's 8 nouns. ----
        float s[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int j = 0; j < 4; ++j) s[mt][j] = 0.f;
        for (int k32 = 0; k32 < p.dp / 32; ++k32) {
            uint32_t b[XPL][4];  // k steps 2 * k32 (b[0], b[1]) and 2 * k32 + 1 (b[2], b[3])
#pragma unroll
            for (int pl = 0; pl < XPL; ++pl) {
                ldmatrix_x4(b[pl], ts + pl * t_plane + (size_t)(wc * 8 + (lane & 7)) * xstride +
                                       k32 * 32 + (lane >> 3) * 8);
            }
#pragma unroll
            for (int h = 0; h < 2; ++h) {
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    uint32_t a[XPL][4];
#pragma unroll
                    for (int pl = 0; pl < XPL; ++pl) {
                        ldmatrix_x4(a[pl], Xs + pl * x_plane +
                                               (size_t)(wrow0 + mt * 16 + (lane & 15)) * xstride +
                                               k32 * 32 + h * 16 + (lane >> 4) * 8);
                    }
                    Mma<TM>::run(s[mt], a[0], b[0][2 * h], b[0][2 * h + 1]);
                    if constexpr (XPL == 2) {
                        Mma<TM>::run(s[mt], a[0], b[1][2 * h], b[1][2 * h + 1]);
                        Mma<TM>::run(s[mt], a[1], b[0][2 * h], b[0][2 * h + 1]);
                    }
                }
            }
        }
        const int col0 = tile * BN + wc * 8 + 2 * t;
        const float2 ns = __ldg(reinterpret_cast<const float2*>(p.noun_scale + col0));
        // The accumulator sums the PACKED noun rows, which are t_j, not t_j / ||t_j||: the
        // weight of noun j must carry its scale s_j, so the exponent does (log2(0) = -inf:
        // a zero noun weighs nothing).
        const float lns0 = log2f(ns.x), lns1 = log2f(ns.y);
        float z[MT][4];
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const int mt = i >> 1, h = i & 1;
            float wm = -INFINITY;
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const float v = (col0 + j < p.m)
                                    ? fmaf(s[mt][2 * h + j] * rs[i], j ? ns.y : ns.x,
                                           j ? lns1 : lns0)
                                    : -INFINITY;
                z[mt][2 * h + j] = v;
                wm = fmaxf(wm, v);
            }
            wm = quad_max(wm);
            if (t == 0) red[wc * BM + wrow0 + mt * 16 + h * 8 + g] = wm;
        }
        __syncthreads();  // the column warps' tile maxima

        // ---- Weights into shared memory, accumulator rescaled. ----
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const int mt = i >> 1, h = i & 1;
            const int lr = wrow0 + mt * 16 + h * 8 + g;
            float mnew = mx[i];
#pragma unroll
            for (int c = 0; c < WC; ++c) mnew = fmaxf(mnew, red[c * BM + lr]);
            // -inf only while every noun so far weighs nothing: no -inf - -inf = NaN then.
            const float msafe = mnew == -INFINITY ? 0.f : mnew;
            const float alpha = ex2(mx[i] - msafe);  // 0 on the first tile (mx = -inf)
            mx[i] = mnew;
            const float p0 = ex2(z[mt][2 * h] - msafe);
            const float p1 = ex2(z[mt][2 * h + 1] - msafe);
            TM* prow = Ps + (size_t)lr * PSTRIDE + wc * 8 + 2 * t;
            *reinterpret_cast<uint32_t*>(prow) = pack2<TM>(p0, p1);
            if constexpr (PPL == 2) {
                const float h0 = to_f32(from_f32<TM>(p0)), h1 = to_f32(from_f32<TM>(p1));
                *reinterpret_cast<uint32_t*>(prow + p_plane) = pack2<TM>(p0 - h0, p1 - h1);
            }
#pragma unroll
            for (int nt = 0; nt < NTO; ++nt) {
                o[mt][nt][2 * h] *= alpha;
                o[mt][nt][2 * h + 1] *= alpha;
            }
        }
        __syncthreads();  // the weights of the whole tile

        // ---- O += P . T over this warp's output columns. ----
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
            uint32_t a[PPL][MT][4];
#pragma unroll
            for (int pl = 0; pl < PPL; ++pl)
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
                    ldmatrix_x4(a[pl][mt], Ps + pl * p_plane +
                                               (wrow0 + mt * 16 + (lane & 15)) * PSTRIDE +
                                               kk * 16 + (lane >> 4) * 8);
#pragma unroll
            for (int np2 = 0; np2 < NTO / 2; ++np2) {
                if (2 * np2 >= nto) break;
                uint32_t b[XPL][4];
#pragma unroll
                for (int pl = 0; pl < XPL; ++pl) {
                    const int mi = lane >> 3;
                    ldmatrix_x4_trans(b[pl], ts + pl * t_plane +
                                                 (size_t)(kk * 16 + (mi & 1) * 8 + (lane & 7)) *
                                                     xstride +
                                                 ocol0 + np2 * 16 + (mi >> 1) * 8);
                }
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                    for (int hh = 0; hh < 2; ++hh) {
                        float(&acc)[4] = o[mt][2 * np2 + hh];
                        Mma<TM>::run(acc, a[0][mt], b[0][2 * hh], b[0][2 * hh + 1]);
                        if constexpr (XPL == 2) {
                            Mma<TM>::run(acc, a[0][mt], b[1][2 * hh], b[1][2 * hh + 1]);
                        }
                        if constexpr (PPL == 2) {
                            Mma<TM>::run(acc, a[1][mt], b[0][2 * hh], b[0][2 * hh + 1]);
                        }
                    }
                }
            }
        }
    }

    // ---- Normalise and write. ----
    float ss[R];
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const int mt = i >> 1, h = i & 1;
        float v = 0.f;
#pragma unroll
        for (int nt = 0; nt < NTO; ++nt) {
            if (nt < nto) {
                v = fmaf(o[mt][nt][2 * h], o[mt][nt][2 * h], v);
                v = fmaf(o[mt][nt][2 * h + 1], o[mt][nt][2 * h + 1], v);
            }
        }
        ss[i] = quad_sum(v);
    }
    __syncthreads();  // everyone is done reading red (tile maxima)
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const int lr = wrow0 + (i >> 1) * 16 + (i & 1) * 8 + g;
        if (t == 0) red[wc * BM + lr] = ss[i];
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const int mt = i >> 1, h = i & 1;
        const int lr = wrow0 + mt * 16 + h * 8 + g;
        const unsigned long long gr = row0 + lr;
        float tot = 0.f;
#pragma unroll
        for (int c = 0; c < WC; ++c) tot += red[c * BM + lr];
        const float inv = tot > 0.f ? rsqrtf(tot) : 0.f;
        if (gr >= p.n) continue;
        float* out = p.features + gr * (unsigned long long)p.d;
#pragma unroll
        for (int nt = 0; nt < NTO; ++nt) {
            if (nt < nto) {
                const int col = ocol0 + nt * 8 + 2 * t;
                if (col < p.d) out[col] = o[mt][nt][2 * h] * inv;
                if (col + 1 < p.d) out[col + 1] = o[mt][nt][2 * h + 1] * inv;
            }
        }
    }
}


// ---------------------------------------------------------------------------------------------
// Top nouns per image (for naming): a second streaming pass over the nouns with the logits on
// tensor cores (the same operands as above) and, per image, the online softmax statistics
// (max m and sum l of 2^(z - m)) and a sorted list of the TOPK largest logits in each lane
// (value descending, index ascending on ties, as the CPU's update_top), merged over the quad
// at the end. Writes top_n <= TOPK (noun index, softmax weight) pairs per image.
// ---------------------------------------------------------------------------------------------

constexpr int TOPK = 8;
constexpr int TBN = 64;             // nouns per tile
constexpr int TBK = 64;             // columns per streamed chunk
constexpr int TSTAGES = 3;
constexpr int TBSTRIDE = TBK + PAD;

// Mirrored by `TopParams` in src/backend/cuda/retrieve.rs.
struct TopParams {
    const void* images;           // XPL planes of np x dp operands (packed)
    const float* image_scale;     // np: (1/||x|| or 1) * log2(e) / tau
    const void* nouns;            // XPL planes of mtp x dp operands (packed, mtp % TBN == 0)
    const float* noun_scale;      // mtp
    unsigned* top_index;          // n x top_n
    float* top_weight;            // n x top_n
    unsigned long long n;
    unsigned long long np;        // multiple of the block's BM
    unsigned long long mtp;
    int m;
    int d;
    int dp;
    int top_n;                    // 1 ..= TOPK
};

// (v, c) goes before (w, e): larger value, or equal value and lower index.
__device__ __forceinline__ bool before(float v, int c, float w, int e) {
    return v > w || (v == w && c < e);
}

template <typename TM, int XPL, int WM, int WARPS>
__device__ __forceinline__ void top_body(const TopParams& p) {
    constexpr int MT = WM / 16;
    constexpr int NT = TBN / 8;
    constexpr int R = 2 * MT;
    constexpr int BM = WM * WARPS;
    constexpr int NTHREADS = WARPS * 32;
    constexpr int B_PLANE = TBN * TBSTRIDE;
    constexpr int B_STAGE = XPL * B_PLANE;
    constexpr int SEGS = TBK / 8;

    LAIC_DYNAMIC_SMEM(unsigned char, smem_raw);
    const int astride = p.dp + PAD;
    const size_t a_plane = (size_t)BM * astride;
    TM* As = reinterpret_cast<TM*>(smem_raw);
    TM* Bs = As + XPL * a_plane;

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const unsigned long long row0 = (unsigned long long)blockIdx.x * BM;
    {
        const TM* src = static_cast<const TM*>(p.images);
        const size_t plane = (size_t)p.np * p.dp;
        const int segs_row = p.dp / 8;
        const int total = XPL * BM * segs_row;
        for (int i = threadIdx.x; i < total; i += NTHREADS) {
            const int pl = i / (BM * segs_row);
            const int rem = i - pl * (BM * segs_row);
            const int r = rem / segs_row, s = rem - r * segs_row;
            cp_async_16(As + pl * a_plane + (size_t)r * astride + s * 8,
                        src + pl * plane + (size_t)(row0 + r) * p.dp + s * 8);
        }
        cp_async_commit();
    }
    const int nchunks = p.dp / TBK;
    const int ntiles = (int)(p.mtp / TBN);
    const int steps = ntiles * nchunks;
    const TM* nouns = static_cast<const TM*>(p.nouns);
    const size_t n_plane = (size_t)p.mtp * p.dp;
    auto load_step = [&](int s) {
        const int chunk = s % nchunks;
        const int tile = s / nchunks;
        TM* dst = Bs + (s % TSTAGES) * B_STAGE;
        const TM* src = nouns + (size_t)tile * TBN * p.dp + chunk * TBK;
        for (int i = threadIdx.x; i < XPL * TBN * SEGS; i += NTHREADS) {
            const int pl = i / (TBN * SEGS);
            const int rem = i - pl * (TBN * SEGS);
            const int row = rem / SEGS, seg = rem % SEGS;
            cp_async_16(dst + pl * B_PLANE + row * TBSTRIDE + seg * 8,
                        src + pl * n_plane + (size_t)row * p.dp + seg * 8);
        }
    };
#pragma unroll
    for (int s = 0; s < TSTAGES - 1; ++s) {
        if (s < steps) load_step(s);
        cp_async_commit();
    }

    float rs[R], mx[R], sum[R];
    float tv[R][TOPK];
    int ti[R][TOPK];
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const unsigned long long gr = row0 + warp * WM + (i >> 1) * 16 + (i & 1) * 8 + g;
        rs[i] = __ldg(p.image_scale + gr);
        mx[i] = -INFINITY;
        sum[i] = 0.f;
#pragma unroll
        for (int k = 0; k < TOPK; ++k) {
            tv[i][k] = -INFINITY;
            ti[i][k] = 0x7fffffff;
        }
    }
    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[mt][nt][j] = 0.f;
    float ns[NT][2];

    for (int s = 0; s < steps; ++s) {
        cp_async_wait<TSTAGES - 2>();
        __syncthreads();
        {
            const int nx = s + TSTAGES - 1;
            if (nx < steps) load_step(nx);
            cp_async_commit();
        }
        const int chunk = s % nchunks;
        const int tile = s / nchunks;
        if (chunk == 0) {
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const float2 v = __ldg(
                    reinterpret_cast<const float2*>(p.noun_scale + tile * TBN + nt * 8 + 2 * t));
                ns[nt][0] = v.x;
                ns[nt][1] = v.y;
            }
        }
        const TM* bst = Bs + (s % TSTAGES) * B_STAGE;
#pragma unroll
        for (int kk = 0; kk < TBK / 16; ++kk) {
            uint32_t a[XPL][MT][4];
            uint32_t b[XPL][NT][2];
#pragma unroll
            for (int pl = 0; pl < XPL; ++pl) {
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    ldmatrix_x4(a[pl][mt],
                                As + pl * a_plane +
                                    (size_t)(warp * WM + mt * 16 + (lane & 15)) * astride +
                                    chunk * TBK + kk * 16 + (lane >> 4) * 8);
                }
#pragma unroll
                for (int np2 = 0; np2 < NT / 2; ++np2) {
                    uint32_t r4[4];
                    ldmatrix_x4(r4, bst + pl * B_PLANE +
                                        (np2 * 16 + (lane & 7) + ((lane >> 4) << 3)) * TBSTRIDE +
                                        kk * 16 + ((lane >> 3) & 1) * 8);
                    b[pl][2 * np2][0] = r4[0];
                    b[pl][2 * np2][1] = r4[1];
                    b[pl][2 * np2 + 1][0] = r4[2];
                    b[pl][2 * np2 + 1][1] = r4[3];
                }
            }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                    Mma<TM>::run(acc[mt][nt], a[0][mt], b[0][nt][0], b[0][nt][1]);
                    if constexpr (XPL == 2) {
                        Mma<TM>::run(acc[mt][nt], a[0][mt], b[1][nt][0], b[1][nt][1]);
                        Mma<TM>::run(acc[mt][nt], a[1][mt], b[0][nt][0], b[0][nt][1]);
                    }
                }
            }
        }
        if (chunk != nchunks - 1) continue;

        const int colbase = tile * TBN + 2 * t;
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const int mt = i >> 1, h = i & 1;
            float z[NT][2];
            float tmax = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    const int col = colbase + nt * 8 + j;
                    const float v =
                        col < p.m ? acc[mt][nt][2 * h + j] * rs[i] * ns[nt][j] : -INFINITY;
                    z[nt][j] = v;
                    tmax = fmaxf(tmax, v);
                }
            }
            const float mnew = fmaxf(mx[i], quad_max(tmax));
            float e = 0.f;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    const int col = colbase + nt * 8 + j;
                    e += ex2(z[nt][j] - mnew);
                    float v = z[nt][j];
                    int c = col;
                    if (col < p.m && before(v, c, tv[i][TOPK - 1], ti[i][TOPK - 1])) {
#pragma unroll
                        for (int k = 0; k < TOPK; ++k) {
                            if (before(v, c, tv[i][k], ti[i][k])) {
                                const float fv = tv[i][k];
                                const int fc = ti[i][k];
                                tv[i][k] = v;
                                ti[i][k] = c;
                                v = fv;
                                c = fc;
                            }
                        }
                    }
                }
            }
            sum[i] = sum[i] * ex2(mx[i] - mnew) + e;
            mx[i] = mnew;
        }
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[mt][nt][j] = 0.f;
    }
    cp_async_wait<0>();

    // Merge the quad's four lists: top_n rounds of "largest head wins, its lane pops".
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const float total = quad_sum(sum[i]);
        const unsigned long long gr = row0 + warp * WM + (i >> 1) * 16 + (i & 1) * 8 + g;
        for (int s = 0; s < p.top_n; ++s) {
            float hv = tv[i][0];
            int hc = ti[i][0];
            quad_argmax(hv, hc);
            if (ti[i][0] == hc) {
#pragma unroll
                for (int k = 0; k < TOPK - 1; ++k) {
                    tv[i][k] = tv[i][k + 1];
                    ti[i][k] = ti[i][k + 1];
                }
                tv[i][TOPK - 1] = -INFINITY;
                ti[i][TOPK - 1] = 0x7fffffff;
            }
            if (t == 0 && gr < p.n) {
                p.top_index[gr * p.top_n + s] = (unsigned)hc;
                p.top_weight[gr * p.top_n + s] = ex2(hv - mx[i]) / total;
            }
        }
    }
}

}  // namespace rt
}  // namespace laic

using laic::rt::RetrieveParams;
using laic::rt::TopParams;

LAIC_PACK_ALL(laic_rt_pack)

#define LAIC_RETRIEVE(NAME, TM, XPL, PPL, MT, WR, NTO)                                    \
    extern "C" __global__ void __launch_bounds__(WR * laic::rt::WC * 32, 1)               \
        NAME(const RetrieveParams p) {                                                    \
        laic::rt::retrieve_body<TM, XPL, PPL, MT, WR, NTO>(p);                            \
    }

// Shapes: <rows per warp>x<row groups>_d<max D>.
#define LAIC_RETRIEVE_CONFIGS(DT, TM, XPL, PPL)                                           \
    LAIC_RETRIEVE(laic_retrieve_##DT##_32x2_d512, TM, XPL, PPL, 2, 2, 16)                 \
    LAIC_RETRIEVE(laic_retrieve_##DT##_32x1_d512, TM, XPL, PPL, 2, 1, 16)                 \
    LAIC_RETRIEVE(laic_retrieve_##DT##_16x2_d1024, TM, XPL, PPL, 1, 2, 32)                \
    LAIC_RETRIEVE(laic_retrieve_##DT##_16x1_d1024, TM, XPL, PPL, 1, 1, 32)

LAIC_RETRIEVE_CONFIGS(f16, __half, 1, 1)
LAIC_RETRIEVE_CONFIGS(bf16, __nv_bfloat16, 1, 2)
LAIC_RETRIEVE_CONFIGS(f32, __half, 2, 2)  // unit rows as f16 hi + lo (laic_rt_pack_f32_unit)

#define LAIC_RETRIEVE_TOP(DT, TM, XPL)                                                    \
    extern "C" __global__ void __launch_bounds__(128, 1)                                  \
        laic_retrieve_top_##DT(const TopParams p) {                                       \
        laic::rt::top_body<TM, XPL, 16, 4>(p);                                            \
    }

LAIC_RETRIEVE_TOP(f16, __half, 1)
LAIC_RETRIEVE_TOP(bf16, __nv_bfloat16, 1)
LAIC_RETRIEVE_TOP(f32, __half, 2)
