// Operand packing and extra tile helpers shared by kmeans.cu and retrieve.cu (tiles.cuh holds
// the helpers that gradnorm.cu shares with them).
//
// Packing turns a strided input matrix (f32, f16 or bf16) into the tensor-core operand layout
// the streaming kernels read with 16-byte cp.async: PLANES planes of rows_padded x dp elements
// (zero-padded rows and columns; f32 split into hi = bf16(x) and lo = bf16(x - hi)), plus one
// f32 per row (its inverse L2 norm, or half its squared norm, or 1).
#pragma once

#include "tiles.cuh"

namespace laic {

#ifdef __CUDACC__  // inline PTX; on the CPU, tests/kernel_emu supplies these
// Four 8x8 b16 matrices, transposed on the way (for a B operand stored k-major, [k][n]):
// lane l supplies the row address of matrix l/8, row l%8.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(smem)));
}

// Two 8x8 b16 matrices; lanes 0..15 supply the row addresses (matrix l/8, row l%8).
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(smem_addr(smem)));
}
#endif  // __CUDACC__

// Packs two f32 into a b16x2 register of operand type T (low half = first element, as the
// mma fragments expect).
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
}

// What the per-row value of a packed matrix holds.
enum RowValue : int { ROW_ONE = 0, ROW_INV_NORM = 1, ROW_HALF_SQNORM = 2, ROW_NORM = 3 };

// Parameters of the packing kernels; mirrored by `PackParams` in src/backend/cuda/operands.rs.
struct PackParams {
    const void* src;           // rows x d input elements, stride elements apart
    void* dst;                 // PLANES planes of rows_padded x dp operands
    float* row_value;          // rows_padded (may be null)
    unsigned long long stride;
    unsigned long long rows;
    unsigned long long rows_padded;
    unsigned long long plane_stride;  // elements between planes
    int d;
    int dp;
    int row_value_kind;        // RowValue
    float row_scale;           // multiplies the row value of real rows
};

// One warp per row: converts, splits, zero-pads, and writes the row value (0 for padding).
template <typename TIn, typename TM, int PLANES>
__device__ __forceinline__ void pack_body(const PackParams& p) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const unsigned long long row = (unsigned long long)blockIdx.x * (blockDim.x >> 5) + warp;
    if (row >= p.rows_padded) return;
    const bool valid = row < p.rows;
    const TIn* src = static_cast<const TIn*>(p.src) + (valid ? row * p.stride : 0ull);
    TM* dst = static_cast<TM*>(p.dst) + row * (unsigned long long)p.dp;
    const size_t plane = p.plane_stride;
    float ss = 0.f;
    for (int c = lane; c < p.dp; c += 32) {
        const float v = (valid && c < p.d) ? to_f32(src[c]) : 0.f;
        store_split<TM, PLANES>(dst + c, plane, v);
        ss = fmaf(v, v, ss);
    }
    ss = warp_sum(ss);
    if (lane == 0 && p.row_value != nullptr) {
        float v = 0.f;
        if (valid) {
            switch (p.row_value_kind) {
                case ROW_INV_NORM: v = ss > 0.f ? 1.f / sqrtf(ss) : 0.f; break;
                case ROW_HALF_SQNORM: v = 0.5f * ss; break;
                case ROW_NORM: v = sqrtf(ss); break;
                default: v = 1.f; break;
            }
            v *= p.row_scale;
        }
        p.row_value[row] = v;
    }
}

// One warp per row: the row scaled to unit L2 norm, split into hi + lo operands of type TM
// (f32 input as f16 hi + lo: 22 significant bits where a unit row's elements are not tiny),
// zero-padded; the row value is 1 (ROW_ONE) or the row's norm (ROW_NORM), times row_scale, and
// 0 for padding. The norm is formed from the row divided by its largest magnitude, so that no
// square overflows or underflows; a row whose largest magnitude is below FLT_MIN (subnormal or
// zero) packs as zeros with norm 0.
template <typename TIn, typename TM>
__device__ __forceinline__ void pack_unit_body(const PackParams& p) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const unsigned long long row = (unsigned long long)blockIdx.x * (blockDim.x >> 5) + warp;
    if (row >= p.rows_padded) return;
    const bool valid = row < p.rows;
    const TIn* src = static_cast<const TIn*>(p.src) + (valid ? row * p.stride : 0ull);
    TM* dst = static_cast<TM*>(p.dst) + row * (unsigned long long)p.dp;
    const size_t plane = p.plane_stride;
    float amax = 0.f;
    for (int c = lane; c < p.d && valid; c += 32) amax = fmaxf(amax, fabsf(to_f32(src[c])));
    amax = warp_max(amax);
    const float s = amax >= 1.17549435e-38f ? 1.f / amax : 0.f;
    float ss = 0.f;
    for (int c = lane; c < p.d && valid; c += 32) {
        const float v = to_f32(src[c]) * s;
        ss = fmaf(v, v, ss);
    }
    ss = warp_sum(ss);  // in [1, d] for a row with a normal largest magnitude
    const float inv = ss > 0.f ? s / sqrtf(ss) : 0.f;
    for (int c = lane; c < p.dp; c += 32) {
        const float v = (valid && c < p.d) ? to_f32(src[c]) * inv : 0.f;
        store_split<TM, 2>(dst + c, plane, v);
    }
    if (lane == 0 && p.row_value != nullptr) {
        float v = 0.f;
        if (valid) {
            v = p.row_value_kind == ROW_NORM ? (ss > 0.f ? amax * sqrtf(ss) : 0.f) : 1.f;
            v *= p.row_scale;
        }
        p.row_value[row] = v;
    }
}

}  // namespace laic

#define LAIC_PACK_UNIT(NAME, TIN, TM)                                                     \
    extern "C" __global__ void __launch_bounds__(256) NAME(const laic::PackParams p) {    \
        laic::pack_unit_body<TIN, TM>(p);                                                 \
    }

#define LAIC_PACK(NAME, TIN, TM, PLANES)                                                  \
    extern "C" __global__ void __launch_bounds__(256) NAME(const laic::PackParams p) {    \
        laic::pack_body<TIN, TM, PLANES>(p);                                              \
    }

// Operand layouts: f16 input -> one f16 plane; bf16 -> one bf16 plane; f32 -> bf16 hi + lo.
// `*_f32_as_f16`: f32 input rounded to one f16 plane (k-means centres against f16 points).
// `*_f32_unit`: f32 input scaled to unit rows, as f16 hi + lo (retrieval).
#define LAIC_PACK_ALL(PREFIX)                                                             \
    LAIC_PACK(PREFIX##_f32, float, __nv_bfloat16, 2)                                      \
    LAIC_PACK(PREFIX##_f16, __half, __half, 1)                                            \
    LAIC_PACK(PREFIX##_bf16, __nv_bfloat16, __nv_bfloat16, 1)                             \
    LAIC_PACK(PREFIX##_f32_as_f16, float, __half, 1)                                      \
    LAIC_PACK_UNIT(PREFIX##_f32_unit, float, __half)
