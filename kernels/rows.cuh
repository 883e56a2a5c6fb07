// Row gathers and column sums over matrices that stay on the device between the pipeline's
// steps (src/backend/cuda/pipeline.rs): the selected nouns gathered as f32 rows, the joined
// rows [x, t~] assembled from two matrices, a few rows fetched for the host's k-means loops
// (seeds, refills of empty clusters), and the per-column sums behind k-means' tolerance (the
// mean per-feature variance).
//
// Plain loads and stores only: tests/kernel_emu runs this file on the CPU.
#pragma once

#include "tiles.cuh"  // to_f32

namespace laic {
namespace rows {

constexpr int GATHER_WARPS = 8;      // rows per block of the gather (a warp per row)
constexpr int COLUMN_THREADS = 256;  // columns per pass of a column-sums block

// Mirrored by `GatherParams` in src/backend/cuda/pipeline.rs.
struct GatherParams {
    const void* src;                // rows of the input type, src_stride elements apart
    const unsigned* index;          // rows of src to take, `rows` of them; null: row r is row r
    float* dst;                     // `rows` rows of f32, dst_stride elements apart
    unsigned long long rows;
    unsigned long long src_stride;
    unsigned long long dst_stride;
    int d;                          // columns copied per row
    int reserved;
};

// One warp per output row r: dst[r][0..d) = f32(src[index[r]][0..d)). The host checks every
// index against src's rows before the launch.
template <typename T>
__device__ __forceinline__ void gather_body(const GatherParams& p) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const unsigned long long r = (unsigned long long)blockIdx.x * GATHER_WARPS + warp;
    if (r >= p.rows) return;
    const unsigned long long from = p.index != nullptr ? p.index[r] : r;
    const T* src = static_cast<const T*>(p.src) + from * p.src_stride;
    float* dst = p.dst + r * p.dst_stride;
    for (int c = lane; c < p.d; c += 32) dst[c] = to_f32(src[c]);
}

// Mirrored by `ColumnParams` in src/backend/cuda/pipeline.rs.
struct ColumnParams {
    const float* src;               // rows x d, stride elements apart
    const double* mean;             // d column means, or null
    double* out;                    // gridDim.x x d partial sums
    unsigned long long rows;
    unsigned long long stride;
    unsigned long long rows_per_block;
    int d;
    int reserved;
};

// Block b sums rows [b * rows_per_block, (b + 1) * rows_per_block) of each column in row order,
// in f64: the values (mean null) or their squared deviations from the column's mean, into
// out[b][column]. A thread per column, so that a warp reads 32 consecutive floats of a row; the
// host adds the blocks' partials in block order (a fixed order: the same sums on every run).
__device__ __forceinline__ void column_sums_body(const ColumnParams& p) {
    const unsigned long long r0 = (unsigned long long)blockIdx.x * p.rows_per_block;
    const unsigned long long r1 = r0 + p.rows_per_block < p.rows ? r0 + p.rows_per_block : p.rows;
    for (int c = threadIdx.x; c < p.d; c += blockDim.x) {
        const double m = p.mean != nullptr ? p.mean[c] : 0.0;
        double s = 0.0;
        for (unsigned long long r = r0; r < r1; ++r) {
            const double v = (double)p.src[r * p.stride + c];
            if (p.mean != nullptr) {
                const double e = __dsub_rn(v, m);
                s = __dadd_rn(s, __dmul_rn(e, e));
            } else {
                s = __dadd_rn(s, v);
            }
        }
        p.out[(unsigned long long)blockIdx.x * p.d + c] = s;
    }
}

}  // namespace rows
}  // namespace laic
