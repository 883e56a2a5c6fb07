// CLIP encoders on CUDA (DESIGN.md §5): what cuBLAS does not do. The GEMMs (projections, MLP,
// and, for long sequences, attention scores and mixing) run in cuBLAS from
// src/backend/cuda/clip.rs; these kernels are the passes between them, and the fused attention
// of short sequences.
//
// Conventions (see src/backend/cuda/clip.rs):
// - T is the operand type of the GEMMs: float, __half or __nv_bfloat16. The residual stream x
//   is always f32 (rows x width, row stride width).
// - Linear biases ride inside the GEMMs: an operand buffer has row stride kp >= in + 1 with a
//   column of ones at `in` and zeros after it, and the weight carries the bias in that column.
//   So no kernel here adds a bias; the pad columns are written once when a buffer is made.
// - Every kernel takes its sizes as 64-bit row counts and 32-bit widths; a warp owns a row
//   where a row is reduced (layer norm, softmax, L2 norm).

#ifdef __CUDACC__  // on the CPU, tests/kernel_emu supplies the half types
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif
#include <stdint.h>

#include "clip_simt.cuh"  // the CUDA-core kernels' bodies (namespace laic_clip)
#include "operands.cuh"   // ldmatrix, mma.sync, pack2, quad reductions (namespace laic)

namespace laic_clip {

// Key chunks of 16 in the longest sequence the tensor-core attention takes.
constexpr int ATT_KCH = ATT_MAX_SEQ / 16;

// The same attention on tensor cores, for f16/bf16 operands and heads of at most 8 * NT
// columns (NT = 8: CLIP's 64; NT = 16: up to 128). A block per (sequence, head), a warp per 16
// query rows (warps loop over the row tiles). Q, K and V of the head are staged in shared
// memory as operands, zero-padded to sp = round_up(seq, 16) rows and hdp = round_up(hd, 16)
// columns, row stride hdp + 8 elements (the 8 rows one ldmatrix reads start in distinct 16-byte
// bank groups). Per row tile:
//   1. S = Q K^T with mma.sync m16n8k16 (f32 accumulation), 16 keys per step, only the key
//      chunks the tile's rows can see (causal: up to the tile's last row);
//   2. masked base-2 softmax in registers: row r's scores live in the 4 lanes of one quad
//      (rows g and g + 8 of the tile, g = lane / 4), so max and sum are quad reductions;
//   3. O = P V: the unnormalised weights 2^(z - max) <= 1 are rounded to the operand type
//      straight from the accumulators into A fragments (the C layout of two n8 tiles is the A
//      layout of one k16 step, as in FlashAttention-2), V through ldmatrix.trans;
//   4. O / sum written as the operand type.
// The weights are rounded to the operand type as in the cuBLAS path; the sum is f32.
template <typename T, int NT>
__device__ void attention_mma(const T* __restrict__ qkv, T* __restrict__ out, int seq,
                              int width, int heads, long long ld_out, int causal,
                              float scale_log2) {
  using laic::Mma;
  LAIC_DYNAMIC_SMEM(float4, att_smem);
  const int hd = width / heads;
  const int hdp = (hd + 15) & ~15;
  const int ld = hdp + 8;
  const int sp = (seq + 15) & ~15;
  T* qs = reinterpret_cast<T*>(att_smem);
  T* ks = qs + sp * ld;
  T* vs = ks + sp * ld;
  const long long b = blockIdx.x / heads;
  const int h = blockIdx.x - (int)(b * heads);
  const long long ldq = 3LL * width;
  const T* base = qkv + b * seq * ldq + (long long)h * hd;
  if ((hd & 7) == 0 && (width & 7) == 0) {
    // 16-byte loads: every row segment starts at a multiple of 8 elements of an aligned buffer.
    const int c8 = hdp >> 3;
    for (int idx = threadIdx.x; idx < sp * c8; idx += blockDim.x) {
      const int j = idx / c8, c = (idx - j * c8) << 3;
      uint4 q = make_uint4(0u, 0u, 0u, 0u), k = q, v = q;
      if (j < seq && c < hd) {
        const T* row = base + j * ldq + c;
        q = *reinterpret_cast<const uint4*>(row);
        k = *reinterpret_cast<const uint4*>(row + width);
        v = *reinterpret_cast<const uint4*>(row + 2 * width);
      }
      *reinterpret_cast<uint4*>(qs + j * ld + c) = q;
      *reinterpret_cast<uint4*>(ks + j * ld + c) = k;
      *reinterpret_cast<uint4*>(vs + j * ld + c) = v;
    }
  } else {
    const T zero = from_f<T>(0.f);
    for (int idx = threadIdx.x; idx < sp * hdp; idx += blockDim.x) {
      const int j = idx / hdp, d = idx - j * hdp;
      const bool in = j < seq && d < hd;
      const T* row = base + j * ldq + d;
      qs[j * ld + d] = in ? row[0] : zero;
      ks[j * ld + d] = in ? row[width] : zero;
      vs[j * ld + d] = in ? row[2 * width] : zero;
    }
  }
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int g = lane >> 2, t = lane & 3, mi = lane >> 3;
  for (int mt = warp; mt < (sp >> 4); mt += nw) {
    const int r0 = mt << 4;
    const int nk = ((causal ? min(seq, r0 + 16) : seq) + 15) >> 4;  // key chunks seen
    // s[c][n][e]: keys 16c + 8n + 2t + (e & 1) of rows r0 + g + 8 (e >> 1).
    float s[ATT_KCH][2][4];
#pragma unroll
    for (int c = 0; c < ATT_KCH; ++c)
#pragma unroll
      for (int n = 0; n < 2; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[c][n][e] = 0.f;
    for (int kc = 0; kc < (hdp >> 4); ++kc) {
      uint32_t a[4];
      laic::ldmatrix_x4(a, qs + (r0 + (lane & 15)) * ld + kc * 16 + (lane >> 4) * 8);
#pragma unroll
      for (int c = 0; c < ATT_KCH; ++c) {
        if (c < nk) {
          uint32_t bk[4];  // keys 16c..16c+7 (bk[0], bk[1]) and 16c+8.. (bk[2], bk[3])
          laic::ldmatrix_x4(bk, ks + (c * 16 + (mi >> 1) * 8 + (lane & 7)) * ld + kc * 16 +
                                    (mi & 1) * 8);
          Mma<T>::run(s[c][0], a, bk[0], bk[1]);
          Mma<T>::run(s[c][1], a, bk[2], bk[3]);
        }
      }
    }
    float m[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int c = 0; c < ATT_KCH; ++c) {
      if (c < nk) {
#pragma unroll
        for (int n = 0; n < 2; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = c * 16 + n * 8 + 2 * t + (e & 1);
            const int row = r0 + g + (e >> 1) * 8;
            const bool live = key < seq && (!causal || key <= row);
            s[c][n][e] = live ? s[c][n][e] * scale_log2 : -INFINITY;
            m[e >> 1] = fmaxf(m[e >> 1], s[c][n][e]);
          }
      }
    }
    // Key 0 is live for every row, so both maxima are finite.
    m[0] = laic::quad_max(m[0]);
    m[1] = laic::quad_max(m[1]);
    float l[2] = {0.f, 0.f};
#pragma unroll
    for (int c = 0; c < ATT_KCH; ++c) {
      if (c < nk) {
#pragma unroll
        for (int n = 0; n < 2; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            s[c][n][e] = laic::ex2(s[c][n][e] - m[e >> 1]);  // masked: 2^-inf = 0
            l[e >> 1] += s[c][n][e];
          }
      }
    }
    l[0] = laic::quad_sum(l[0]);
    l[1] = laic::quad_sum(l[1]);
    float o[NT][4];
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[n][e] = 0.f;
#pragma unroll
    for (int c = 0; c < ATT_KCH; ++c) {
      if (c < nk) {
        const uint32_t a[4] = {laic::pack2<T>(s[c][0][0], s[c][0][1]),
                               laic::pack2<T>(s[c][0][2], s[c][0][3]),
                               laic::pack2<T>(s[c][1][0], s[c][1][1]),
                               laic::pack2<T>(s[c][1][2], s[c][1][3])};
#pragma unroll
        for (int dc = 0; dc < NT / 2; ++dc) {
          if (dc < (hdp >> 4)) {
            uint32_t bv[4];  // head columns 16dc..16dc+7 (bv[0], bv[1]) and 16dc+8.. (bv[2], bv[3])
            laic::ldmatrix_x4_trans(bv, vs + (c * 16 + (mi & 1) * 8 + (lane & 7)) * ld +
                                            dc * 16 + (mi >> 1) * 8);
            Mma<T>::run(o[2 * dc], a, bv[0], bv[1]);
            Mma<T>::run(o[2 * dc + 1], a, bv[2], bv[3]);
          }
        }
      }
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = r0 + g + 8 * i;
      if (row >= seq) continue;
      const float inv = 1.0f / l[i];
      T* orow = out + (b * seq + row) * ld_out + (long long)h * hd;
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int d = n * 8 + 2 * t + e;
          if (d < hd) orow[d] = from_f<T>(o[n][2 * i + e] * inv);
        }
    }
  }
}

}  // namespace laic_clip

// L2-normalises each d-wide row of y (f32) in place; a zero row stays zero.
extern "C" __global__ void laic_clip_l2norm(float* __restrict__ y, long long n_rows, int d) {
  const long long r = laic_clip::warp_row();
  if (r >= n_rows) return;
  const int lane = threadIdx.x & 31;
  float* row = y + r * (long long)d;
  float s = 0.f;
  for (int j = lane; j < d; j += 32) s += row[j] * row[j];
  s = laic_clip::warp_sum(s);
  if (s > 0.f) {
    const float inv = 1.0f / sqrtf(s);
    for (int j = lane; j < d; j += 32) row[j] *= inv;
  }
}

#define LAIC_CLIP_KERNELS(SUFFIX, T)                                                          \
  extern "C" __global__ void laic_clip_layernorm_##SUFFIX(                                    \
      const float* x, const int* rows, long long n_rows, int w, const float* gamma,           \
      const float* beta, float eps, T* out, long long ld_out) {                               \
    laic_clip::layernorm<T>(x, rows, n_rows, w, gamma, beta, eps, out, ld_out);               \
  }                                                                                           \
  extern "C" __global__ void laic_clip_embed_tokens_##SUFFIX(                                 \
      const int* ids, long long n_rows, int seq, int w, const T* tok, const T* pos, float* x) { \
    laic_clip::embed_tokens<T>(ids, n_rows, seq, w, tok, pos, x);                             \
  }                                                                                           \
  extern "C" __global__ void laic_clip_vision_embed_##SUFFIX(                                 \
      const float* emb, const T* cls, const T* pos, long long n_rows, int tokens, int w,      \
      const float* gamma, const float* beta, float eps, float* x) {                           \
    laic_clip::vision_embed<T>(emb, cls, pos, n_rows, tokens, w, gamma, beta, eps, x);        \
  }                                                                                           \
  extern "C" __global__ void laic_clip_activation_##SUFFIX(T* y, long long rows, int cols,    \
                                                           long long ld, int act) {           \
    laic_clip::activation<T>(y, rows, cols, ld, act);                                         \
  }                                                                                           \
  extern "C" __global__ void laic_clip_softmax_##SUFFIX(                                      \
      const float* scores, T* probs, long long n_rows, int seq, int ld, int causal) {         \
    laic_clip::softmax<T>(scores, probs, n_rows, seq, ld, causal);                            \
  }                                                                                           \
  extern "C" __global__ void laic_clip_attention_##SUFFIX(                                    \
      const T* qkv, T* out, int seq, int width, int heads, long long ld_out, int causal,      \
      float scale_log2) {                                                                     \
    laic_clip::attention<T>(qkv, out, seq, width, heads, ld_out, causal, scale_log2);         \
  }                                                                                           \
  extern "C" __global__ void laic_clip_patches_##SUFFIX(const T* px, T* out,                  \
                                                        long long n_patches, int s, int p,    \
                                                        int g) {                              \
    laic_clip::patches<T>(px, out, n_patches, s, p, g);                                       \
  }                                                                                           \
  extern "C" __global__ void laic_clip_ones_column_##SUFFIX(T* buf, long long rows,           \
                                                            long long ld, int col) {          \
    laic_clip::ones_column<T>(buf, rows, ld, col);                                            \
  }

LAIC_CLIP_KERNELS(f32, float)
LAIC_CLIP_KERNELS(f16, __half)
LAIC_CLIP_KERNELS(bf16, __nv_bfloat16)

// The tensor-core attention for heads of up to 64 (NT = 8) and 128 (NT = 16) columns.
#define LAIC_CLIP_ATTENTION_MMA(SUFFIX, T, NT)                                                \
  extern "C" __global__ void laic_clip_attention_mma##NT##_##SUFFIX(                          \
      const T* qkv, T* out, int seq, int width, int heads, long long ld_out, int causal,      \
      float scale_log2) {                                                                     \
    laic_clip::attention_mma<T, NT>(qkv, out, seq, width, heads, ld_out, causal, scale_log2); \
  }

LAIC_CLIP_ATTENTION_MMA(f16, __half, 8)
LAIC_CLIP_ATTENTION_MMA(f16, __half, 16)
LAIC_CLIP_ATTENTION_MMA(bf16, __nv_bfloat16, 8)
LAIC_CLIP_ATTENTION_MMA(bf16, __nv_bfloat16, 16)
