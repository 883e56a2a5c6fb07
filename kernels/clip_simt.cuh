// The CUDA-core kernels of the CLIP encoders (kernels/clip.cu, which instantiates them for
// float, __half and __nv_bfloat16 operands): layer norm, token and patch embeddings,
// activations, softmax, the fused attention of short sequences on CUDA cores, patch
// extraction, the bias column. See clip.cu for the conventions.
//
// Only warp shuffles, shared memory and float math: tests/kernel_emu runs this file on the CPU
// (the half types come from cuda_fp16.h under nvcc, from the emulation on the CPU, which then
// defines LAIC_EMU_HALF_TYPES).
#pragma once

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#include "dynamic_smem.cuh"

namespace laic_clip {

__device__ __forceinline__ float to_f(float v) { return v; }
#if defined(__CUDACC__) || defined(LAIC_EMU_HALF_TYPES)
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
#endif

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
#if defined(__CUDACC__) || defined(LAIC_EMU_HALF_TYPES)
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
#endif

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
  LAIC_DYNAMIC_SMEM(float4, att_smem);
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
