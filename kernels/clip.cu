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

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "operands.cuh"  // ldmatrix, mma.sync, pack2, quad reductions (namespace laic)

namespace laic_clip {

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The row a warp owns: blocks of 256 threads, 8 rows each.
__device__ __forceinline__ long long warp_row() {
  return (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
}

// Layer norm of one row whose j-th value is get(j) (two passes over the values: mean, then
// the variance of the deviations, as the CPU layer does), written as OutT to out[0..w). The
// scale and shift are f32 whatever the operand type (as autocast keeps layer norms in f32): a
// bf16-rounded gamma alone moves a random model's embeddings by 1.5e-2.
template <typename OutT, typename Get>
__device__ __forceinline__ void ln_row(Get get, int w, const float* gamma, const float* beta,
                                       float eps, OutT* out) {
  const int lane = threadIdx.x & 31;
  float s = 0.f;
  for (int j = lane; j < w; j += 32) s += get(j);
  const float mean = warp_sum(s) / (float)w;
  float q = 0.f;
  for (int j = lane; j < w; j += 32) {
    const float d = get(j) - mean;
    q += d * d;
  }
  const float inv = 1.0f / sqrtf(warp_sum(q) / (float)w + eps);
  for (int j = lane; j < w; j += 32) {
    out[j] = from_f<OutT>((get(j) - mean) * inv * gamma[j] + beta[j]);
  }
}

// out[r] = LN(x[src(r)]) for r < n_rows, src(r) = rows ? rows[r] : r (rows: the pooled tokens).
template <typename T>
__device__ void layernorm(const float* __restrict__ x, const int* __restrict__ rows,
                          long long n_rows, int w, const float* __restrict__ gamma,
                          const float* __restrict__ beta, float eps, T* __restrict__ out,
                          long long ld_out) {
  const long long r = warp_row();
  if (r >= n_rows) return;
  const long long src = rows ? (long long)rows[r] : r;
  const float* xr = x + src * (long long)w;
  ln_row<T>([&](int j) { return xr[j]; }, w, gamma, beta, eps, out + r * ld_out);
}

// x[r] = tok[ids[r]] + pos[r % seq] (text embeddings; the residual stream starts here).
template <typename T>
__device__ void embed_tokens(const int* __restrict__ ids, long long n_rows, int seq, int w,
                             const T* __restrict__ tok, const T* __restrict__ pos,
                             float* __restrict__ x) {
  const long long r = warp_row();
  if (r >= n_rows) return;
  const int lane = threadIdx.x & 31;
  const T* e = tok + (long long)ids[r] * w;
  const T* p = pos + (long long)(r % seq) * w;
  float* xr = x + r * (long long)w;
  for (int j = lane; j < w; j += 32) xr[j] = to_f(e[j]) + to_f(p[j]);
}

// x[r] = pre_LN([class; patches][t] + pos[t]) for r = image * tokens + t: the image tokens
// before the first block. emb holds the patch embeddings (f32, image-major, grid*grid rows per
// image).
template <typename T>
__device__ void vision_embed(const float* __restrict__ emb, const T* __restrict__ cls,
                             const T* __restrict__ pos, long long n_rows, int tokens, int w,
                             const float* __restrict__ gamma,
                             const float* __restrict__ beta, float eps,
                             float* __restrict__ x) {
  const long long r = warp_row();
  if (r >= n_rows) return;
  const long long img = r / tokens;
  const int t = (int)(r % tokens);
  const T* p = pos + (long long)t * w;
  if (t == 0) {
    ln_row<float>([&](int j) { return to_f(cls[j]) + to_f(p[j]); }, w, gamma, beta, eps,
                     x + r * (long long)w);
  } else {
    const float* e = emb + (img * (tokens - 1) + (t - 1)) * (long long)w;
    ln_row<float>([&](int j) { return e[j] + to_f(p[j]); }, w, gamma, beta, eps,
                     x + r * (long long)w);
  }
}

// In place y = act(y) on rows x cols (row stride ld); act 0: quick_gelu x*sigmoid(1.702x),
// 1: the exact (erf) GELU. Blocks stride over rows, threads over columns (no division per
// element).
template <typename T>
__device__ void activation(T* __restrict__ y, long long rows, int cols, long long ld, int act) {
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    T* row = y + r * ld;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      const float v = to_f(row[c]);
      const float o = act == 0 ? v / (1.0f + expf(-1.702f * v))
                               : 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
      row[c] = from_f<T>(o);
    }
  }
}

// Softmax of each row of scores (already scaled; n_rows rows of seq live columns, row stride
// ld) into probs (same layout). With causal, row r attends to columns 0..=(r % seq); the
// masked columns get 0.
template <typename T>
__device__ void softmax(const float* __restrict__ scores, T* __restrict__ probs,
                        long long n_rows, int seq, int ld, int causal) {
  const long long r = warp_row();
  if (r >= n_rows) return;
  const int lane = threadIdx.x & 31;
  const int live = causal ? (int)(r % seq) + 1 : seq;
  const float* s = scores + r * (long long)ld;
  T* p = probs + r * (long long)ld;
  float m = -INFINITY;
  for (int j = lane; j < live; j += 32) m = fmaxf(m, s[j]);
  m = warp_max(m);
  float z = 0.f;
  for (int j = lane; j < live; j += 32) z += expf(s[j] - m);
  const float inv = 1.0f / warp_sum(z);
  for (int j = lane; j < seq; j += 32) p[j] = from_f<T>(j < live ? expf(s[j] - m) * inv : 0.f);
}

// Longest sequence and widest head of the fused attention (`attention`): each lane holds the
// scores of ATT_MAX_SEQ / 32 keys. Longer sequences run on cuBLAS.
constexpr int ATT_MAX_SEQ = 128;
constexpr int ATT_SLOTS = ATT_MAX_SEQ / 32;

// Multi-head attention of one (sequence, head) per block, for seq <= ATT_MAX_SEQ and a head
// width hd <= 128: out[i] = softmax(q_i K^T / sqrt(hd)) V, causal when
// asked (row i sees keys 0..=i). qkv rows are [q | k | v] (row stride 3*width, head h at
// columns h*hd of each third), out rows have stride ld_out (head h at columns h*hd).
//
// The cuBLAS path needs two strided-batched GEMMs per head around a softmax pass and a
// scores buffer; for CLIP's short sequences (text ~10 tokens, ViT-B/32 50) those GEMMs are
// tiny and their launches dominate. Here K and V of the head are staged once in shared memory
// as f32 (row stride ld = round_up(hd, 32) + 4 floats: 16-byte reads of 8 consecutive rows
// hit distinct banks; K and q zero-padded to a multiple of 4 columns), and a warp takes one
// query row at a time:
//   1. q_i (pre-scaled by log2(e)/sqrt(hd)) into the warp's row of shared memory;
//   2. lane l scores keys l, l+32, ... (float4 dot products, q broadcast), max and sum over
//      the warp, probabilities in f32 (exp2 of base-2 scores) to the warp's row of p;
//   3. lane l sums p_j v_j over the live keys for head columns l, l+32, ... and writes them.
// Everything after the operand loads is f32 (the cuBLAS path rounds the probabilities to the
// operand type).
template <typename T>
__device__ void attention(const T* __restrict__ qkv, T* __restrict__ out, int seq, int width,
                          int heads, long long ld_out, int causal, float scale_log2) {
  extern __shared__ float4 att_smem[];
  const int hd = width / heads;
  const int ld = ((hd + 31) & ~31) + 4;
  const int nw = blockDim.x >> 5;
  float* ks = reinterpret_cast<float*>(att_smem);
  float* vs = ks + seq * ld;
  float* qs = vs + seq * ld;     // nw rows of ld floats
  float* ps = qs + nw * ld;      // nw rows of ATT_MAX_SEQ floats
  const long long b = blockIdx.x / heads;
  const int h = blockIdx.x - (int)(b * heads);
  const long long ldq = 3LL * width;
  const T* base = qkv + b * seq * ldq + (long long)h * hd;
  const int hd4 = (hd + 3) >> 2;  // float4 columns of K and q
  const int hdp = hd4 << 2;
  for (int idx = threadIdx.x; idx < seq * hdp; idx += blockDim.x) {
    const int j = idx / hdp, d = idx - j * hdp;
    const T* row = base + j * ldq;
    ks[j * ld + d] = d < hd ? to_f(row[width + d]) : 0.f;
    if (d < hd) vs[j * ld + d] = to_f(row[2 * width + d]);
  }
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* q = qs + warp * ld;
  float* p = ps + warp * ATT_MAX_SEQ;
  const float4* q4 = reinterpret_cast<const float4*>(q);
  for (int i = warp; i < seq; i += nw) {
    const T* qrow = base + (long long)i * ldq;
    for (int d = lane; d < hdp; d += 32) q[d] = d < hd ? to_f(qrow[d]) * scale_log2 : 0.f;
    __syncwarp();
    const int live = causal ? i + 1 : seq;
    const int slots = (live + 31) >> 5;  // the same on every lane
    // Lanes past the live keys read a valid row (clamped) and are masked after.
    const float4* kr[ATT_SLOTS];
#pragma unroll
    for (int t = 0; t < ATT_SLOTS; ++t) {
      kr[t] = reinterpret_cast<const float4*>(ks + min(lane + 32 * t, seq - 1) * ld);
    }
    float s[ATT_SLOTS] = {};
    for (int c = 0; c < hd4; ++c) {
      const float4 qv = q4[c];
#pragma unroll
      for (int t = 0; t < ATT_SLOTS; ++t) {
        if (t < slots) {
          const float4 kv = kr[t][c];
          s[t] = fmaf(kv.x, qv.x, s[t]);
          s[t] = fmaf(kv.y, qv.y, s[t]);
          s[t] = fmaf(kv.z, qv.z, s[t]);
          s[t] = fmaf(kv.w, qv.w, s[t]);
        }
      }
    }
    float m = -INFINITY;
#pragma unroll
    for (int t = 0; t < ATT_SLOTS; ++t) {
      if (lane + 32 * t < live) m = fmaxf(m, s[t]);
    }
    m = warp_max(m);
    float z = 0.f;
#pragma unroll
    for (int t = 0; t < ATT_SLOTS; ++t) {
      s[t] = lane + 32 * t < live ? exp2f(s[t] - m) : 0.f;
      z += s[t];
    }
    const float inv = 1.0f / warp_sum(z);
#pragma unroll
    for (int t = 0; t < ATT_SLOTS; ++t) {
      if (lane + 32 * t < live) p[lane + 32 * t] = s[t] * inv;
    }
    __syncwarp();
    T* orow = out + (b * seq + i) * ld_out + (long long)h * hd;
    for (int d = lane; d < hd; d += 32) {
      float o0 = 0.f, o1 = 0.f;
      int j = 0;
      for (; j + 1 < live; j += 2) {
        o0 = fmaf(p[j], vs[j * ld + d], o0);
        o1 = fmaf(p[j + 1], vs[(j + 1) * ld + d], o1);
      }
      if (j < live) o0 = fmaf(p[j], vs[j * ld + d], o0);
      orow[d] = from_f<T>(o0 + o1);
    }
    __syncwarp();  // q and p are rewritten by the next row
  }
}

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
  extern __shared__ float4 att_smem[];
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

// Unfolds images (n x 3 x s x s, CHW, already operands: the host converts them) into patch
// rows (n*g*g rows of 3*p*p in (channel, row, column) order, the order of the convolution
// weights). Blocks stride over patch rows, threads over the row.
template <typename T>
__device__ void patches(const T* __restrict__ px, T* __restrict__ out, long long n_patches,
                        int s, int p, int g) {
  const int k = 3 * p * p;
  const int pp = p * p;
  for (long long r = blockIdx.x; r < n_patches; r += gridDim.x) {
    const long long img = r / (g * g);
    const int patch = (int)(r - img * g * g);
    const int gy = patch / g, gx = patch % g;
    const T* src = px + img * 3LL * s * s + (long long)(gy * p) * s + gx * p;
    T* dst = out + r * k;
    for (int c = threadIdx.x; c < k; c += blockDim.x) {
      const int ch = c / pp, rem = c - ch * pp;
      const int ky = rem / p, kx = rem - ky * p;
      dst[c] = src[(long long)ch * s * s + (long long)ky * s + kx];
    }
  }
}

// Sets column col of each of rows rows (row stride ld) to 1: the column that multiplies the
// biases.
template <typename T>
__device__ void ones_column(T* __restrict__ buf, long long rows, long long ld, int col) {
  for (long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x; r < rows;
       r += (long long)gridDim.x * blockDim.x) {
    buf[r * ld + col] = from_f<T>(1.0f);
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
