// A stable counting sort of point labels on the device, for the k-means update step: `members`
// lists the points grouped by label, in index order within each label (so the per-cluster
// sums are added in a fixed order and do not depend on scheduling), with each cluster's range
// and its tasks of at most `task_chunk` members for the sums kernels (kmeans.cu).
//
// Three kernels. `count`: one warp per chunk of `chunk` consecutive points counts each label
// into its column of a k x nchunks matrix (cluster-major). `scan`: one block scans the matrix
// exclusively (cell (c, b) = where chunk b's points of cluster c begin), derives the cluster
// ranges and lays out the tasks. `scatter`: the same walk as `count` puts every point at its
// place. A warp walks its chunk 32 points at a time in index order; the lanes holding the same
// label find each other with __match_any_sync, each takes its rank among them, and the lowest
// of them advances the warp's own cell: no atomics, and the order is stable.
//
// Labels >= k are left out: the host finds starts[k] < n and reports the error.
//
// Only warp intrinsics and shared memory: tests/kernel_emu runs this file on the CPU.
#pragma once

namespace laic {
namespace sort {

// Mirrored by `SortParams` in src/backend/cuda/kmeans.rs.
struct SortParams {
    const unsigned* labels;        // n
    unsigned* counts;              // k x nchunks, zero before `count`; cursors after `scan`
    unsigned* starts;              // k + 1: cluster c owns members[starts[c] .. starts[c + 1])
    unsigned* cluster_tasks;       // k + 1: cluster c owns tasks [ct[c], ct[c + 1])
    unsigned* task_begin;          // max_tasks; tasks past the last: begin = end = 0
    unsigned* task_end;            // max_tasks
    unsigned* members;             // n
    unsigned n;
    unsigned k;
    unsigned nchunks;              // k * nchunks < 2^32
    unsigned chunk;                // points per warp, a multiple of 32
    unsigned task_chunk;           // members per task, >= 1
    unsigned max_tasks;            // >= n / task_chunk + k
};

constexpr unsigned FULL = 0xffffffffu;
constexpr unsigned NO_LABEL = 0xffffffffu;

// `count` (SCATTER = false) or `scatter` (true): warp w walks points [w * chunk, (w + 1) * chunk).
template <bool SCATTER>
__device__ __forceinline__ void walk(const SortParams& p) {
    const unsigned long long warp = ((unsigned long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (warp >= p.nchunks) return;  // the whole warp (blockDim.x is a multiple of 32)
    const unsigned lane = threadIdx.x & 31;
    const unsigned long long begin = warp * p.chunk;
    const unsigned long long end = begin + p.chunk < p.n ? begin + p.chunk : p.n;
    for (unsigned long long base = begin; base < end; base += 32) {
        const unsigned long long i = base + lane;
        unsigned l = NO_LABEL;
        if (i < end) {
            l = p.labels[i];
            if (l >= p.k) l = NO_LABEL;
        }
        const unsigned group = __match_any_sync(FULL, l);
        unsigned* cell = l == NO_LABEL ? nullptr : p.counts + (unsigned long long)l * p.nchunks + warp;
        if (SCATTER) {
            if (cell) p.members[*cell + __popc(group & ((1u << lane) - 1u))] = (unsigned)i;
            __syncwarp();  // every lane has read its cell before the leader advances it
        }
        if (cell && lane == (unsigned)(__ffs(group) - 1)) *cell += __popc(group);
        __syncwarp();  // the update is visible to the lanes of the next step
    }
}

__device__ __forceinline__ unsigned warp_sum(unsigned v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
    return v;
}

__device__ __forceinline__ unsigned warp_inclusive_scan(unsigned v) {
    const unsigned lane = threadIdx.x & 31;
    for (unsigned o = 1; o < 32; o <<= 1) {
        const unsigned u = __shfl_up_sync(FULL, v, o);
        if (lane >= o) v += u;
    }
    return v;
}

// Exclusive scan of a[0 .. len) in place by the whole block (blockDim.x a multiple of 32, at
// most 1024); returns the total. Warp w scans its own contiguous segment, offset by the totals
// of the segments before it. `shared` holds 33 entries.
__device__ __forceinline__ unsigned block_exclusive_scan(unsigned* a, unsigned len, unsigned* shared) {
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const unsigned long long seg = ((len + nwarps - 1) / nwarps + 31) / 32 * 32;
    const unsigned long long b = warp * seg < len ? warp * seg : len;
    const unsigned long long e = b + seg < len ? b + seg : len;
    unsigned s = 0;
    for (unsigned long long i = b + lane; i < e; i += 32) s += a[i];
    s = warp_sum(s);
    if (lane == 0) shared[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned run = 0;
        for (unsigned w = 0; w < nwarps; ++w) {
            const unsigned t = shared[w];
            shared[w] = run;
            run += t;
        }
        shared[32] = run;
    }
    __syncthreads();
    unsigned run = shared[warp];
    for (unsigned long long base = b; base < e; base += 32) {
        const unsigned long long i = base + lane;
        const unsigned v = i < e ? a[i] : 0;
        const unsigned incl = warp_inclusive_scan(v);
        if (i < e) a[i] = run + incl - v;
        run += __shfl_sync(FULL, incl, 31);
    }
    const unsigned total = shared[32];
    __syncthreads();  // `shared` may be reused
    return total;
}

// `scan`: one block.
__device__ __forceinline__ void scan_body(const SortParams& p) {
    __shared__ unsigned shared[33];
    const unsigned total = block_exclusive_scan(p.counts, p.k * p.nchunks, shared);
    for (unsigned c = threadIdx.x; c < p.k; c += blockDim.x) {
        p.starts[c] = p.counts[(unsigned long long)c * p.nchunks];
    }
    if (threadIdx.x == 0) p.starts[p.k] = total;
    __syncthreads();
    for (unsigned c = threadIdx.x; c < p.k; c += blockDim.x) {
        p.cluster_tasks[c] = (p.starts[c + 1] - p.starts[c] + p.task_chunk - 1) / p.task_chunk;
    }
    __syncthreads();
    const unsigned ntasks = block_exclusive_scan(p.cluster_tasks, p.k, shared);
    if (threadIdx.x == 0) p.cluster_tasks[p.k] = ntasks;
    __syncthreads();
    for (unsigned c = threadIdx.x; c < p.k; c += blockDim.x) {
        const unsigned first = p.cluster_tasks[c], last = p.cluster_tasks[c + 1];
        const unsigned stop = p.starts[c + 1];
        for (unsigned t = first; t < last && t < p.max_tasks; ++t) {
            const unsigned b = p.starts[c] + (t - first) * p.task_chunk;
            p.task_begin[t] = b;
            p.task_end[t] = stop - b < p.task_chunk ? stop : b + p.task_chunk;
        }
    }
    for (unsigned t = ntasks + threadIdx.x; t < p.max_tasks; t += blockDim.x) {
        p.task_begin[t] = 0;
        p.task_end[t] = 0;
    }
}

}  // namespace sort
}  // namespace laic
