// k-means++ seeding on the device (src/backend/cuda/kmeans.rs, `device_kmeans_plus_plus`): the
// distances of every point to its nearest chosen centre (`closest`) stay on the GPU, and per
// step only block sums, the candidates and their potentials cross to the host, which keeps the
// random draws and the choices (so the seeding follows the host's algorithm in src/kmeans.rs).
//
// Every sum has a fixed order, so a seed gives the same centres on every run: block b owns
// points [b * range, (b + 1) * range), its thread t the contiguous sub-range of range /
// SEED_THREADS points starting at b * range + t * (range / SEED_THREADS), summed in index order
// in f64; thread 0 then adds the block's SEED_THREADS sums in thread order. The host adds the
// blocks in block order. The cumulative sum that k-means++ samples from is read in the same
// grouping by `pick`.
//
// Only shared memory and __syncthreads: tests/kernel_emu runs this file on the CPU.
#pragma once

namespace laic {
namespace seed {

constexpr int SEED_THREADS = 256;

// Mirrored by `SeedParams` in src/backend/cuda/kmeans.rs.
struct SeedParams {
    float* closest;               // n: distance of each point to its nearest chosen centre
    const float* cand;            // n x trials (row stride trials): distances to the candidates
    double* sub;                  // blocks x SEED_THREADS: per-thread sums of `closest` (sums)
    double* part;                 // blocks x trials (sums: blocks): per-block sums
    const unsigned* draw_block;   // trials: the block in which the draw's target falls
    const double* draw_base;      // trials: the sum of `closest` over the blocks before it
    const double* draw_target;    // trials: the target r of the cumulative sum
    unsigned* picked;             // trials: the first point whose cumulative sum reaches r
    unsigned long long n;
    unsigned long long range;     // points per block, a multiple of SEED_THREADS
    int trials;
    int best;                     // update: the accepted candidate's column
};

// The calling thread's points [lo, hi).
__device__ __forceinline__ void thread_range(const SeedParams& p, unsigned block, unsigned thread,
                                             unsigned long long* lo, unsigned long long* hi) {
    const unsigned long long len = p.range / SEED_THREADS;
    const unsigned long long a = (unsigned long long)block * p.range + thread * len;
    *lo = a < p.n ? a : p.n;
    *hi = a + len < p.n ? a + len : p.n;
}

// Adds the block's per-thread values in thread order into *out (thread 0 writes).
__device__ __forceinline__ void block_sum_in_order(double v, double* out) {
    __shared__ double vals[SEED_THREADS];
    vals[threadIdx.x] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0.0;
        for (int t = 0; t < SEED_THREADS; ++t) s = __dadd_rn(s, vals[t]);
        *out = s;
    }
    __syncthreads();  // `vals` may be rewritten
}

// `sums` (grid: blocks): the per-thread and per-block sums of `closest`.
__device__ __forceinline__ void sums_body(const SeedParams& p) {
    unsigned long long lo, hi;
    thread_range(p, blockIdx.x, threadIdx.x, &lo, &hi);
    double s = 0.0;
    for (unsigned long long i = lo; i < hi; ++i) s = __dadd_rn(s, (double)p.closest[i]);
    p.sub[(unsigned long long)blockIdx.x * SEED_THREADS + threadIdx.x] = s;
    block_sum_in_order(s, p.part + blockIdx.x);
}

// `potentials` (grid: blocks): per block and candidate t, the sum of min(closest, cand[., t]).
__device__ __forceinline__ void potentials_body(const SeedParams& p) {
    unsigned long long lo, hi;
    thread_range(p, blockIdx.x, threadIdx.x, &lo, &hi);
    for (int t = 0; t < p.trials; ++t) {
        double s = 0.0;
        for (unsigned long long i = lo; i < hi; ++i) {
            const float c = p.cand[i * p.trials + t];
            const float d = p.closest[i];
            s = __dadd_rn(s, (double)(c < d ? c : d));
        }
        block_sum_in_order(s, p.part + (unsigned long long)blockIdx.x * p.trials + t);
    }
}

// `pick` (one thread per draw): the first point of the draw's block at which the cumulative
// sum, grouped as `sums` grouped it, reaches the target; the block's last point when rounding
// leaves it short, and n - 1 past the end.
__device__ __forceinline__ void pick_body(const SeedParams& p) {
    const int draw = blockIdx.x * blockDim.x + threadIdx.x;
    if (draw >= p.trials) return;
    const unsigned b = p.draw_block[draw];
    const double r = p.draw_target[draw];
    double acc = p.draw_base[draw];
    int t = 0;
    for (; t < SEED_THREADS - 1; ++t) {
        const double next = __dadd_rn(acc, p.sub[(unsigned long long)b * SEED_THREADS + t]);
        if (next >= r) break;
        acc = next;
    }
    unsigned long long lo, hi;
    thread_range(p, b, t, &lo, &hi);
    unsigned long long pick = hi > lo ? hi - 1 : lo;
    for (unsigned long long i = lo; i < hi; ++i) {
        acc = __dadd_rn(acc, (double)p.closest[i]);
        if (acc >= r) {
            pick = i;
            break;
        }
    }
    p.picked[draw] = (unsigned)(pick < p.n ? pick : p.n - 1);
}

// `accept` (grid-stride): closest = min(closest, cand[., best]).
__device__ __forceinline__ void accept_body(const SeedParams& p) {
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < p.n;
         i += stride) {
        const float c = p.cand[i * p.trials + p.best];
        if (c < p.closest[i]) p.closest[i] = c;
    }
}

}  // namespace seed
}  // namespace laic
