// The host-side steps of a Lloyd iteration, on the device, for k-means calls whose centres stay
// on the GPU (src/backend/cuda/kmeans.rs): how many labels changed since the last assignment,
// and the centre update from the per-cluster sums (kmeans.cu) and sizes (counting_sort.cuh).
//
// The update computes what src/kmeans.rs's `update_centres` computes, bit for bit: the scale
// 1 / count (Euclidean) or 1 / ||sum|| (spherical, the squared norm added in column order),
// each new value (float)(sum * scale), and the squared move of each value added in column order
// (here per cluster; the host adds the clusters' moves in order). The f64 products and sums use
// the _rn intrinsics so that nvcc contracts nothing into an FMA.
//
// Only warp intrinsics, shared memory and atomicAdd: tests/kernel_emu runs this file on the CPU.
#pragma once

#include "counting_sort.cuh"  // laic::sort::warp_sum

namespace laic {
namespace lloyd {

// Mirrored by `ChangedParams` in src/backend/cuda/kmeans.rs.
struct ChangedParams {
    const unsigned* labels;        // n
    const unsigned* previous;      // n
    unsigned* changed;             // 1, zero before: how many labels differ
    unsigned long long n;
};

// Grid-stride count of the differing labels, one atomicAdd per warp.
__device__ __forceinline__ void changed_body(const ChangedParams& p) {
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    unsigned count = 0;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.n;
         i += stride) {
        count += p.labels[i] != p.previous[i];
    }
    count = laic::sort::warp_sum(count);
    if ((threadIdx.x & 31) == 0 && count) atomicAdd(p.changed, count);
}

// Mirrored by `UpdateParams` in src/backend/cuda/kmeans.rs.
struct UpdateParams {
    const double* sums;            // k x d
    const unsigned* starts;        // k + 1: cluster c has starts[c + 1] - starts[c] members
    const float* old_centres;      // k x d
    float* new_centres;            // k x d
    double* moved;                 // k: sum over the cluster's columns of (new - old)^2
    unsigned* empty;               // 1, zero before: clusters without members
    int k;
    int d;
    int spherical;
    int reserved;
};

constexpr int UPDATE_THREADS = 128;

// Adds `v` of every thread to `acc` in thread order (thread 0 adds the block's values one by one
// from shared memory); `part` holds UPDATE_THREADS values. Every thread must call it.
__device__ __forceinline__ double add_in_order(double acc, double v, int valid, double* part,
                                               double* total) {
    part[threadIdx.x] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int t = 0; t < valid; ++t) acc = __dadd_rn(acc, part[t]);
        *total = acc;
    }
    __syncthreads();
    acc = *total;
    __syncthreads();  // `part` and `total` may be rewritten
    return acc;
}

// Block c (UPDATE_THREADS threads) updates cluster c.
__device__ __forceinline__ void update_body(const UpdateParams& p) {
    __shared__ double part[UPDATE_THREADS];
    __shared__ double total;
    const int c = blockIdx.x;
    const unsigned long long row = (unsigned long long)c * p.d;
    const double* s = p.sums + row;
    const float* old = p.old_centres + row;
    float* out = p.new_centres + row;
    const unsigned count = p.starts[c + 1] - p.starts[c];
    if (count == 0 && threadIdx.x == 0) atomicAdd(p.empty, 1u);
    double scale = 0.0;
    if (p.spherical) {
        double sq = 0.0;
        for (int j0 = 0; j0 < p.d; j0 += UPDATE_THREADS) {
            const int j = j0 + threadIdx.x;
            const int valid = p.d - j0 < UPDATE_THREADS ? p.d - j0 : UPDATE_THREADS;
            sq = add_in_order(sq, j < p.d ? __dmul_rn(s[j], s[j]) : 0.0, valid, part, &total);
        }
        const double norm = sqrt(sq);
        scale = norm > 0.0 ? 1.0 / norm : 0.0;
    } else if (count > 0) {
        scale = 1.0 / (double)count;
    }
    double moved = 0.0;
    for (int j0 = 0; j0 < p.d; j0 += UPDATE_THREADS) {
        const int j = j0 + threadIdx.x;
        const int valid = p.d - j0 < UPDATE_THREADS ? p.d - j0 : UPDATE_THREADS;
        double m = 0.0;
        if (j < p.d) {
            // A centre without a new value (no members, or a zero sum) keeps the old one.
            const float v = scale == 0.0 ? old[j] : __double2float_rn(__dmul_rn(s[j], scale));
            const double diff = (double)__fsub_rn(v, old[j]);
            m = __dmul_rn(diff, diff);
            out[j] = v;
        }
        moved = add_in_order(moved, m, valid, part, &total);
    }
    if (threadIdx.x == 0) p.moved[c] = moved;
}

}  // namespace lloyd
}  // namespace laic
