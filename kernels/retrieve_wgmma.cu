// laic-arch: sm_90a
// Fused retrieval on Hopper tensor cores (wgmma): retrieve.cu's laic_retrieve_* with the same
// parameters (retrieve_params.cuh), the same packed operands and the same result,
// t~ = normalize(softmax(x . T^T / tau) . T) per image, for f16 and bf16 rows of 256 or 512
// padded columns (NOTES.md "retrieve_wgmma.cu").
//
// - A block owns 64 images (the wgmma m) and runs two warpgroups. Its images sit in shared
//   memory for the whole kernel as 64-column chunks in the 128-byte-swizzled K-major layout
//   (wgmma.cuh); the packed nouns stream through two stages in tiles of 64 nouns, in the same
//   layout, with cp.async.
// - Warpgroup h owns half of the columns, h * DP/2 .. (h + 1) * DP/2, for both products: it
//   forms the tile's logits over its half of the columns (m64n64k16 products, both operands in
//   shared memory), the two halves meet in shared memory (each warpgroup adds the other's
//   partial logits to its own: the same sums, bit for bit, since IEEE addition commutes), and
//   each then runs the same online softmax on the whole 64 x 64 tile and adds P . T over its
//   own output columns (m64n128k16 with the weights P in registers, straight from the logit
//   accumulators, and the noun tile read N-major from the same shared stage: no transposed
//   copy). A thread holds DP/4 f32 accumulators of the output (128 at D = 512).
// - The exponent of noun j is e = z + log2(s_j) with z = <x, t_j> * s_x * s_j (retrieve.cu
//   explains why: the product sums the packed rows t_j, the softmax weighs t_j * s_j). The
//   first warp writes (s_j, log2 s_j) of the next tile's columns to shared memory while the
//   logit products run, 64 logarithms per tile instead of one per logit and thread.
// - The running max of each row only grows; the accumulators are rescaled only by the rows
//   whose max the tile moved. Weights p = 2^(e - m) <= 1 enter the product as f16 (f16 input)
//   or as bf16 hi + lo (bf16 input; a bf16 weight alone is 2^-9 off), as in retrieve.cu.
// - At the end each row's squared norm is the sum of the two halves', and the row is written
//   divided by its norm (rows of zero weight stay zero).
// Built for sm_90a only (build.rs reads the first line); other GPUs, f32 input and other
// widths use retrieve.cu.

#include "operands.cuh"
#include "retrieve_params.cuh"
#include "wgmma.cuh"

namespace laic {
namespace wg {
namespace rt {

using laic::rt::RetrieveParams;

constexpr int BM = 64;                 // images per block
constexpr int BN = 64;                 // nouns per tile
constexpr int NTHREADS = 256;          // two warpgroups
constexpr uint32_t CHUNK = 64 * ROW;   // bytes of 64 columns of 64 rows (images or nouns)

template <typename TM, int PPL, int DP>
__device__ __forceinline__ void retrieve_body(const RetrieveParams& p) {
    constexpr int CHUNKS = DP / 64;    // 64-column chunks of a row
    constexpr int HCH = CHUNKS / 2;    // chunks of a warpgroup's half
    constexpr int OT = DP / 256;       // m64n128 output tiles of a warpgroup
    constexpr uint32_t STAGE = CHUNKS * CHUNK;
    static_assert(DP == 256 || DP == 512, "a warpgroup's output is one or two m64n128 tiles");

    LAIC_DYNAMIC_SMEM_ALIGNED(unsigned char, smem_raw, 1024);
    // Swizzled tiles need 1024-byte alignment; the host adds 1024 bytes of slack.
    unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    unsigned char* xs = smem;                                  // CHUNKS chunks of images
    unsigned char* ts = xs + CHUNKS * CHUNK;                   // 2 stages of a noun tile
    float4* xchg = reinterpret_cast<float4*>(ts + 2 * STAGE);  // [2][8][128] partial logits
    float4* cols = xchg + 2 * 8 * 128;                         // [2][BN/2] column pairs
    const uint32_t xs_smem = smem_addr(xs), ts_smem = smem_addr(ts);

    const int half = threadIdx.x >> 7;  // this warpgroup's columns: half * DP/2 ..
    const int wt = threadIdx.x & 127;
    const int warp = wt >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const unsigned long long row0 = (unsigned long long)blockIdx.x * BM;
    const int ntiles = (int)(p.mp / BN);

    ChunkCopy<NTHREADS> copy;
    copy.init(threadIdx.x, DP);
    const TM* nouns = static_cast<const TM*>(p.nouns);
    auto load_tile = [&](int tile) {
        unsigned char* dst = ts + (tile & 1) * STAGE;
        const TM* src = nouns + (size_t)tile * BN * DP;
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) copy_chunk<1, BN>(copy, dst + c * CHUNK, 0, src + c * 64, 0, DP);
    };
    // (s_j, log2 s_j) of the column pairs of `tile` (the first warp; mp scales exist).
    auto load_cols = [&](int tile) {
        if (threadIdx.x < BN / 2) {
            const int col = tile * BN + 2 * threadIdx.x;
            const float2 s = __ldg(reinterpret_cast<const float2*>(p.noun_scale + col));
            cols[(tile & 1) * (BN / 2) + threadIdx.x] = float4{s.x, log2f(s.x), s.y, log2f(s.y)};
        }
    };

    {
        const TM* images = static_cast<const TM*>(p.images) + row0 * DP;
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) copy_chunk<1, BM>(copy, xs + c * CHUNK, 0, images + c * 64, 0, DP);
    }
    load_tile(0);
    cp_async_commit();
    load_cols(0);

    float rs[2], mx[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        rs[i] = __ldg(p.image_scale + row0 + 16 * warp + g + 8 * i);
        mx[i] = -INFINITY;
    }
    float o[OT][64];
#pragma unroll
    for (int ot = 0; ot < OT; ++ot)
#pragma unroll
        for (int r = 0; r < 64; ++r) o[ot][r] = 0.f;

    for (int tile = 0; tile < ntiles; ++tile) {
        cp_async_wait<0>();
        fence_proxy_async();
        __syncthreads();  // the tile and its columns landed; everyone is done with tile - 1
        if (tile + 1 < ntiles) load_tile(tile + 1);
        cp_async_commit();
        const uint32_t stage = ts_smem + (tile & 1) * STAGE;

        // ---- Logits over this warpgroup's half of the columns. ----
        float s[32];
        wgmma_fence();
#pragma unroll
        for (int c = 0; c < HCH; ++c)
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                const uint32_t off = (half * HCH + c) * CHUNK + kk * 32;
                Wgmma64<TM>::run(s, descriptor(xs_smem + off), descriptor(stage + off), c > 0 || kk > 0);
            }
        wgmma_commit();
        if (tile + 1 < ntiles) load_cols(tile + 1);  // behind the products
        wgmma_wait<0>();
        fence_regs(s);

        // ---- The two halves' sums: this thread's elements, same place in both warpgroups. ----
        float4* mine = xchg + half * 1024 + wt;
#pragma unroll
        for (int r = 0; r < 8; ++r) mine[r * 128] = float4{s[4 * r], s[4 * r + 1], s[4 * r + 2], s[4 * r + 3]};
        __syncthreads();
        const float4* other = xchg + (1 - half) * 1024 + wt;
#pragma unroll
        for (int r = 0; r < 8; ++r) {
            const float4 v = other[r * 128];
            s[4 * r] += v.x;
            s[4 * r + 1] += v.y;
            s[4 * r + 2] += v.z;
            s[4 * r + 3] += v.w;
        }

        // ---- Exponents, the rows' new max, weights; accumulators rescaled where it moved. ----
        const float4* ct = cols + (tile & 1) * (BN / 2);
        const bool last = tile + 1 == ntiles;
        float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            const float4 c = ct[4 * nt + t];  // columns 8 nt + 2 t and + 1
            const int col = tile * BN + 8 * nt + 2 * t;
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                float e0 = fmaf(s[4 * nt + 2 * i] * rs[i], c.x, c.y);
                float e1 = fmaf(s[4 * nt + 2 * i + 1] * rs[i], c.z, c.w);
                if (last) {  // padding nouns weigh nothing
                    if (col >= p.m) e0 = -INFINITY;
                    if (col + 1 >= p.m) e1 = -INFINITY;
                }
                s[4 * nt + 2 * i] = e0;
                s[4 * nt + 2 * i + 1] = e1;
                tmax[i] = fmaxf(tmax[i], fmaxf(e0, e1));
            }
        }
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const float mnew = fmaxf(mx[i], quad_max(tmax[i]));
            // -inf only while every noun so far weighs nothing: no -inf - -inf = NaN then.
            const float msafe = mnew == -INFINITY ? 0.f : mnew;
            if (mnew > mx[i]) {
                const float alpha = ex2(mx[i] - msafe);  // 0 on the row's first finite tile
#pragma unroll
                for (int ot = 0; ot < OT; ++ot)
#pragma unroll
                    for (int nt = 0; nt < 16; ++nt) {
                        o[ot][4 * nt + 2 * i] *= alpha;
                        o[ot][4 * nt + 2 * i + 1] *= alpha;
                    }
            }
            mx[i] = mnew;
#pragma unroll
            for (int nt = 0; nt < 8; ++nt) {
                s[4 * nt + 2 * i] = ex2(s[4 * nt + 2 * i] - msafe);
                s[4 * nt + 2 * i + 1] = ex2(s[4 * nt + 2 * i + 1] - msafe);
            }
        }
        // The weights as A operands: k step kk is accumulator columns 16 kk .. 16 kk + 15.
        uint32_t a[PPL][4][4];
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const float p0 = s[8 * kk + 2 * q], p1 = s[8 * kk + 2 * q + 1];
                a[0][kk][q] = pack2<TM>(p0, p1);
                if constexpr (PPL == 2) {
                    const float h0 = to_f32(from_f32<TM>(p0)), h1 = to_f32(from_f32<TM>(p1));
                    a[1][kk][q] = pack2<TM>(p0 - h0, p1 - h1);
                }
            }

        // ---- O += P . T over this warpgroup's output columns. ----
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
#pragma unroll
            for (int ot = 0; ot < OT; ++ot) {
                // Nouns 16 kk .. of output columns (half * HCH + 2 ot) * 64 ..: two chunks.
                const uint64_t b = descriptor_n_major(stage + (half * HCH + 2 * ot) * CHUNK + kk * 16 * ROW, CHUNK);
#pragma unroll
                for (int pl = 0; pl < PPL; ++pl) WgmmaRegA<TM>::run(o[ot], a[pl][kk], b, 1);
            }
        wgmma_commit();
        wgmma_wait<0>();
#pragma unroll
        for (int ot = 0; ot < OT; ++ot) fence_regs(o[ot]);
    }

    // ---- Normalise and write. ----
    float ss[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        float v = 0.f;
#pragma unroll
        for (int ot = 0; ot < OT; ++ot)
#pragma unroll
            for (int nt = 0; nt < 16; ++nt) {
                v = fmaf(o[ot][4 * nt + 2 * i], o[ot][4 * nt + 2 * i], v);
                v = fmaf(o[ot][4 * nt + 2 * i + 1], o[ot][4 * nt + 2 * i + 1], v);
            }
        ss[i] = quad_sum(v);
    }
    float* red = reinterpret_cast<float*>(xchg);  // [2][BM]: the halves' squared norms
    __syncthreads();  // everyone is done with the exchange buffer
    if (t == 0) {
#pragma unroll
        for (int i = 0; i < 2; ++i) red[half * BM + 16 * warp + g + 8 * i] = ss[i];
    }
    __syncthreads();
    const bool even = (p.d & 1) == 0;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int r = 16 * warp + g + 8 * i;
        const float tot = red[r] + red[BM + r];
        const float inv = tot > 0.f ? rsqrtf(tot) : 0.f;
        const unsigned long long gr = row0 + r;
        if (gr >= p.n) continue;
        float* out = p.features + gr * (unsigned long long)p.d;
#pragma unroll
        for (int ot = 0; ot < OT; ++ot)
#pragma unroll
            for (int nt = 0; nt < 16; ++nt) {
                const int col = half * (DP / 2) + ot * 128 + nt * 8 + 2 * t;
                const float v0 = o[ot][4 * nt + 2 * i] * inv, v1 = o[ot][4 * nt + 2 * i + 1] * inv;
                if (even && col + 1 < p.d) {
                    *reinterpret_cast<float2*>(out + col) = float2{v0, v1};
                } else {
                    if (col < p.d) out[col] = v0;
                    if (col + 1 < p.d) out[col + 1] = v1;
                }
            }
    }
}

// ---------------------------------------------------------------------------------------------
// A probe of the two operand forms that only this kernel uses, A in registers and B N-major, so
// that a device run tells a misread layout from any other parity failure: one warpgroup, one
// m64n128k16 product of A[m][k] = (k == pi(m % 16)), from registers, by B[k][n] = 128 k + n
// (exact in f16), so D[m][n] = 128 pi(m % 16) + n, for the permutation
// pi(r) = ((7 r + 3) % 16) ^ (2 [r >= 8]) (its ones fall in all four 8 x 8 blocks of A, on even
// and odd k, and pi(r + 8) != pi(r) + 8, so a swapped register or half of one shows; the
// identity, or any affine permutation, would not). B is stored K-major (b_n_major = 0: the layout the
// other wgmma kernels read, verified on the H200, so this form checks register A alone) or
// N-major (1). D is written as out[128 m + n] by the accumulator layout (also verified).
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ void probe_body(float* out, int b_n_major) {
    LAIC_DYNAMIC_SMEM_ALIGNED(unsigned char, smem_raw, 1024);
    unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    // K-major: 128 rows n of k 0..15 (the first two 16-byte units of each row); N-major: 16 rows
    // k of 64 n per 2048-byte atom, two atoms.
    for (int i = threadIdx.x; i < 16 * 128; i += 128) {
        const int k = i / 128, n = i % 128;
        const uint32_t off = b_n_major ? (uint32_t)(n / 64) * 2048 + swizzled(k, (n % 64) / 8) + (n % 8) * 2
                                       : swizzled(n, k / 8) + (k % 8) * 2;
        *reinterpret_cast<__half*>(smem + off) = __float2half_rn((float)(128 * k + n));
    }
    fence_proxy_async();
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    uint32_t a[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        const int row = 16 * warp + g + 8 * (q & 1), col = 8 * (q >> 1) + 2 * t;
        const int r = row % 16, one = ((7 * r + 3) % 16) ^ ((r >> 3) << 1);  // pi(r)
        a[q] = pack2<__half>(col == one ? 1.f : 0.f, col + 1 == one ? 1.f : 0.f);
    }
    float d[64];
    const uint32_t b = smem_addr(smem);
    wgmma_fence();
    if (b_n_major) {
        WgmmaRegA<__half, 1>::run(d, a, descriptor_n_major(b, 2048), 0);
    } else {
        WgmmaRegA<__half, 0>::run(d, a, descriptor(b), 0);
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_regs(d);
#pragma unroll
    for (int nt = 0; nt < 16; ++nt)
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 2; ++j) out[(16 * warp + g + 8 * i) * 128 + 8 * nt + 2 * t + j] = d[4 * nt + 2 * i + j];
}

}  // namespace rt
}  // namespace wg
}  // namespace laic

using laic::rt::RetrieveParams;

#define LAIC_RETRIEVE_WG(NAME, TM, PPL, DP)                                                     \
    extern "C" __global__ void __launch_bounds__(laic::wg::rt::NTHREADS, 1) NAME(const RetrieveParams p) { \
        laic::wg::rt::retrieve_body<TM, PPL, DP>(p);                                           \
    }

// Kernels laic_retrieve_wg_<dtype>_d<DP>: rows packed to DP columns (256 or 512).
LAIC_RETRIEVE_WG(laic_retrieve_wg_f16_d512, __half, 1, 512)
LAIC_RETRIEVE_WG(laic_retrieve_wg_f16_d256, __half, 1, 256)
LAIC_RETRIEVE_WG(laic_retrieve_wg_bf16_d512, __nv_bfloat16, 2, 512)
LAIC_RETRIEVE_WG(laic_retrieve_wg_bf16_d256, __nv_bfloat16, 2, 256)

// The operand-layout probe: 128 threads, 17 KB of dynamic shared memory, out holds 64 x 128.
extern "C" __global__ void __launch_bounds__(128, 1) laic_retrieve_wg_probe(float* out, int b_n_major) {
    laic::wg::rt::probe_body(out, b_n_major);
}
