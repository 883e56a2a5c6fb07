// k-means on tensor cores: the fused assignment step, distances to a few centres (k-means++
// candidates), and the per-cluster sums of the update step (DESIGN.md §1.4).
//
// Points are packed once per k-means call (operands.cuh: f16 and bf16 as they are, f32 split
// into bf16 hi + lo) and stay on the device for every iteration; the centres (f32, from the
// host's update step) are packed per iteration: rounded to f16 against f16 points, split into
// bf16 hi + lo against bf16 and f32 points. The assignment kernel is gradnorm.cu's streaming
// GEMM with an argmax epilogue: a block owns BM = WM * WARPS points (in shared memory), the
// packed centres stream through a STAGES-deep cp.async pipeline in BN x BK chunks, and after
// each BN-centre tile every point's best score s = <x, c> - ||c||^2 / 2 (Euclidean) or <x, c>
// (spherical) and its centre are folded into registers (lowest index on ties). Nothing N x K
// is stored. The winner's distance is then recomputed exactly in f32 from the point (shared
// memory) and the unrounded f32 centre: the tensor-core scores only choose the centre.
//
// Products per mma step: f16 points x f16 centres (1); bf16 points x (hi + lo) centres (2);
// f32 points (hi + lo) x (hi + lo) centres without lo*lo (3).

#include "counting_sort.cuh"
#include "kmeans_lloyd.cuh"
#include "kmeans_params.cuh"
#include "kmeans_seed.cuh"
#include "operands.cuh"
#include "rows.cuh"

namespace laic {
namespace km {

constexpr int BN = 64;              // centres per tile
constexpr int BK = 64;              // columns per streamed chunk
constexpr int STAGES = 3;           // cp.async pipeline depth
constexpr int PAD = 8;              // operand elements of padding per shared row (16 bytes)
constexpr int BSTRIDE = BK + PAD;   // shared row stride of a centre chunk
constexpr int DIST_CENTRES = 16;    // centres per distances launch

template <typename TM, int XPL, int CPL, int WM, int WARPS>
__device__ __forceinline__ void assign_body(const AssignParams& p) {
    constexpr int MT = WM / 16;
    constexpr int NT = BN / 8;
    constexpr int R = 2 * MT;
    constexpr int BM = WM * WARPS;
    constexpr int NTHREADS = WARPS * 32;
    constexpr int B_PLANE = BN * BSTRIDE;
    constexpr int B_STAGE = CPL * B_PLANE;
    constexpr int SEGS = BK / 8;

    LAIC_DYNAMIC_SMEM(unsigned char, smem_raw);
    const int astride = p.dp + PAD;
    const size_t a_plane = (size_t)BM * astride;
    TM* As = reinterpret_cast<TM*>(smem_raw);
    TM* Bs = As + XPL * a_plane;
    int* best_arg = reinterpret_cast<int*>(Bs + STAGES * B_STAGE);  // BM

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const unsigned long long row0 = (unsigned long long)blockIdx.x * BM;

    // ---- The block's points: one cp.async group (packed rows exist up to np). ----
    {
        const TM* pts = static_cast<const TM*>(p.points);
        const size_t p_plane = (size_t)p.np * p.dp;
        const int segs_row = p.dp / 8;
        const int total = XPL * BM * segs_row;
        for (int i = threadIdx.x; i < total; i += NTHREADS) {
            const int pl = i / (BM * segs_row);
            const int rem = i - pl * (BM * segs_row);
            const int r = rem / segs_row, s = rem - r * segs_row;
            cp_async_16(As + pl * a_plane + (size_t)r * astride + s * 8,
                        pts + pl * p_plane + (size_t)(row0 + r) * p.dp + s * 8);
        }
        cp_async_commit();
    }

    const int nchunks = p.dp / BK;
    const int ntiles = p.kp / BN;
    const int steps = ntiles * nchunks;
    const TM* cent = static_cast<const TM*>(p.centres);
    const size_t c_plane = (size_t)p.kp * p.dp;

    auto load_step = [&](int s) {
        const int chunk = s % nchunks;
        const int tile = s / nchunks;
        TM* dst = Bs + (s % STAGES) * B_STAGE;
        const TM* src = cent + (size_t)tile * BN * p.dp + chunk * BK;
        for (int i = threadIdx.x; i < CPL * BN * SEGS; i += NTHREADS) {
            const int pl = i / (BN * SEGS);
            const int rem = i - pl * (BN * SEGS);
            const int row = rem / SEGS, seg = rem % SEGS;
            cp_async_16(dst + pl * B_PLANE + row * BSTRIDE + seg * 8,
                        src + pl * c_plane + (size_t)row * p.dp + seg * 8);
        }
    };

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < steps) load_step(s);
        cp_async_commit();
    }

    float best[R];
    int arg[R];
#pragma unroll
    for (int i = 0; i < R; ++i) {
        best[i] = -INFINITY;
        arg[i] = 0x7fffffff;
    }
    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[mt][nt][j] = 0.f;
    float bias[NT][2];

    for (int s = 0; s < steps; ++s) {
        // Groups complete in order: the points' group and chunk s have landed.
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        {
            const int nx = s + STAGES - 1;
            if (nx < steps) load_step(nx);
            cp_async_commit();
        }
        const int chunk = s % nchunks;
        const int tile = s / nchunks;
        if (chunk == 0) {
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const float2 b2 =
                    __ldg(reinterpret_cast<const float2*>(p.bias + tile * BN + nt * 8 + 2 * t));
                bias[nt][0] = b2.x;
                bias[nt][1] = b2.y;
            }
        }
        const TM* bst = Bs + (s % STAGES) * B_STAGE;
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            uint32_t a[XPL][MT][4];
            uint32_t b[CPL][NT][2];
#pragma unroll
            for (int pl = 0; pl < XPL; ++pl) {
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    ldmatrix_x4(a[pl][mt],
                                As + pl * a_plane +
                                    (size_t)(warp * WM + mt * 16 + (lane & 15)) * astride +
                                    chunk * BK + kk * 16 + (lane >> 4) * 8);
                }
            }
#pragma unroll
            for (int pl = 0; pl < CPL; ++pl) {
#pragma unroll
                for (int np = 0; np < NT / 2; ++np) {
                    uint32_t r4[4];
                    ldmatrix_x4(r4, bst + pl * B_PLANE +
                                        (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * BSTRIDE +
                                        kk * 16 + ((lane >> 3) & 1) * 8);
                    b[pl][2 * np][0] = r4[0];
                    b[pl][2 * np][1] = r4[1];
                    b[pl][2 * np + 1][0] = r4[2];
                    b[pl][2 * np + 1][1] = r4[3];
                }
            }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                    Mma<TM>::run(acc[mt][nt], a[0][mt], b[0][nt][0], b[0][nt][1]);
                    if constexpr (CPL == 2) {
                        Mma<TM>::run(acc[mt][nt], a[0][mt], b[1][nt][0], b[1][nt][1]);
                    }
                    if constexpr (XPL == 2) {
                        Mma<TM>::run(acc[mt][nt], a[1][mt], b[0][nt][0], b[0][nt][1]);
                    }
                }
            }
        }

        if (chunk != nchunks - 1) continue;

        // ---- Epilogue of one centre tile: fold the scores into the running best. ----
        const int colbase = tile * BN + 2 * t;
#pragma unroll
        for (int i = 0; i < R; ++i) {
            const int mt = i >> 1, h = i & 1;
            // Columns ascend within a lane, so a strict > keeps the lowest index on ties.
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    const int col = colbase + nt * 8 + j;
                    const float v = acc[mt][nt][2 * h + j] - bias[nt][j];
                    if (col < p.k && v > best[i]) {
                        best[i] = v;
                        arg[i] = col;
                    }
                }
            }
        }
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[mt][nt][j] = 0.f;
    }
    cp_async_wait<0>();

    // ---- The winners: quad argmax, then the exact distance of each point to its centre. ----
#pragma unroll
    for (int i = 0; i < R; ++i) {
        quad_argmax(best[i], arg[i]);
        const int lr = warp * WM + (i >> 1) * 16 + (i & 1) * 8 + g;
        if (t == 0) best_arg[lr] = arg[i];
    }
    __syncwarp();
    for (int r = 0; r < WM; ++r) {
        const int lr = warp * WM + r;
        const unsigned long long gr = row0 + lr;
        if (gr >= p.n) break;
        const int c = best_arg[lr];
        const TM* xr = As + (size_t)lr * astride;
        const float* cr = p.centres_f32 + (size_t)c * p.d;
        float s = 0.f;
        for (int col = lane; col < p.d; col += 32) {
            float xv = to_f32(xr[col]);
            if constexpr (XPL == 2) xv += to_f32(xr[a_plane + col]);
            const float cv = __ldg(cr + col);
            if (p.spherical) {
                s = fmaf(xv, cv, s);
            } else {
                const float df = xv - cv;
                s = fmaf(df, df, s);
            }
        }
        s = warp_sum(s);
        if (lane == 0) {
            p.labels[gr] = (unsigned)c;
            p.dist[gr] = p.spherical ? fmaxf(1.f - s, 0.f) : s;
        }
    }
}

// Mirrored by `DistParams` in src/backend/cuda/kmeans.rs.
struct DistParams {
    const void* points;           // XPL planes of np x dp operands (packed)
    const float* centres;         // nc x d, contiguous f32
    float* out;                   // n x out_stride; columns col0 .. col0 + nc written
    unsigned long long n;
    unsigned long long np;
    int nc;                       // <= DIST_CENTRES
    int d;
    int dp;
    int out_stride;
    int col0;
    int spherical;
};

// One warp per point: distances to up to DIST_CENTRES centres, in f32 from the packed point
// and the unrounded centres (squared Euclidean distance, or 1 - <x, c> clamped at 0).
template <typename TM, int XPL>
__device__ __forceinline__ void distances_body(const DistParams& p) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const unsigned long long row = (unsigned long long)blockIdx.x * (blockDim.x >> 5) + warp;
    if (row >= p.n) return;
    const TM* xr = static_cast<const TM*>(p.points) + row * (unsigned long long)p.dp;
    const size_t plane = (size_t)p.np * p.dp;
    float s[DIST_CENTRES];
#pragma unroll
    for (int j = 0; j < DIST_CENTRES; ++j) s[j] = 0.f;
    for (int col = lane; col < p.d; col += 32) {
        float xv = to_f32(xr[col]);
        if constexpr (XPL == 2) xv += to_f32(xr[plane + col]);
#pragma unroll
        for (int j = 0; j < DIST_CENTRES; ++j) {
            if (j < p.nc) {
                const float cv = __ldg(p.centres + (size_t)j * p.d + col);
                if (p.spherical) {
                    s[j] = fmaf(xv, cv, s[j]);
                } else {
                    const float df = xv - cv;
                    s[j] = fmaf(df, df, s[j]);
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < DIST_CENTRES; ++j) {
        if (j < p.nc) {
            const float v = warp_sum(s[j]);
            if (lane == j) {
                p.out[row * (unsigned long long)p.out_stride + p.col0 + j] =
                    p.spherical ? fmaxf(1.f - v, 0.f) : v;
            }
        }
    }
}

// Mirrored by `SumsParams` in src/backend/cuda/kmeans.rs.
struct SumsParams {
    const void* points;           // XPL planes of np x dp operands (packed)
    const unsigned* members;      // point indices grouped by cluster, ascending within each
    const unsigned* task_begin;   // ntasks: first member of each task
    const unsigned* task_end;     // ntasks: one past its last member
    double* partial;              // ntasks x d
    unsigned long long np;
    int ntasks;
    int d;
    int dp;
    int reserved;
};

constexpr int SUM_THREADS = 128;
constexpr int SUM_COLS = 4;     // adjacent columns per thread of the partial sums
constexpr int SUM_UNROLL = 8;   // members whose loads a thread has in flight at once

// SUM_COLS adjacent operands of a packed row, read with one load (8 bytes of 16-bit operands).
template <typename TM>
struct alignas(SUM_COLS * sizeof(TM)) SumCols {
    TM v[SUM_COLS];
};

// Partial sums of the update step: block (task, column group of SUM_THREADS * SUM_COLS) adds its
// task's members in index order in f64 (a fixed order: the result does not depend on
// scheduling). A thread owns SUM_COLS adjacent columns and reads them with one load per plane
// and member: dp is a multiple of SUM_COLS (kmeans.rs packs to a multiple of BK), so the load
// is aligned and stays inside the packed row. It issues the loads of SUM_UNROLL members before
// adding them; every column still adds its members one at a time in index order, each as the
// f32 value to_f32(hi) (+ to_f32(lo)), so the sums do not depend on SUM_COLS or SUM_UNROLL.
template <typename TM, int XPL>
__device__ __forceinline__ void sums_body(const SumsParams& p) {
    const int task = blockIdx.x;
    const int col0 = (blockIdx.y * SUM_THREADS + threadIdx.x) * SUM_COLS;
    if (col0 >= p.d) return;
    const TM* pts = static_cast<const TM*>(p.points);
    const size_t plane = (size_t)p.np * p.dp;
    const unsigned b = p.task_begin[task], e = p.task_end[task];
    double s[SUM_COLS];
#pragma unroll
    for (int j = 0; j < SUM_COLS; ++j) s[j] = 0.0;
    for (unsigned m = b; m < e; m += SUM_UNROLL) {
        float v[SUM_UNROLL][SUM_COLS];
#pragma unroll
        for (int u = 0; u < SUM_UNROLL; ++u) {
            // Past the task's end the last member is read again (not added): no branches
            // between the loads.
            const unsigned mu = m + u < e ? m + u : e - 1;
            const size_t off = (size_t)p.members[mu] * p.dp + col0;
            const SumCols<TM> hi = *reinterpret_cast<const SumCols<TM>*>(pts + off);
#pragma unroll
            for (int j = 0; j < SUM_COLS; ++j) v[u][j] = to_f32(hi.v[j]);
            if constexpr (XPL == 2) {
                const SumCols<TM> lo = *reinterpret_cast<const SumCols<TM>*>(pts + plane + off);
#pragma unroll
                for (int j = 0; j < SUM_COLS; ++j) v[u][j] += to_f32(lo.v[j]);
            }
        }
#pragma unroll
        for (int u = 0; u < SUM_UNROLL; ++u) {
            if (m + u < e) {
#pragma unroll
                for (int j = 0; j < SUM_COLS; ++j) s[j] += (double)v[u][j];
            }
        }
    }
    // Columns from d on (packing zeros) are not written: in `partial` they are the next task's.
#pragma unroll
    for (int j = 0; j < SUM_COLS; ++j) {
        if (col0 + j < p.d) p.partial[(size_t)task * p.d + col0 + j] = s[j];
    }
}

// Mirrored by `ReduceParams` in src/backend/cuda/kmeans.rs.
struct ReduceParams {
    const double* partial;        // ntasks x d
    const unsigned* cluster_tasks;  // k + 1: the tasks of cluster c are [ct[c], ct[c + 1])
    double* sums;                 // k x d
    int k;
    int d;
};

}  // namespace km
}  // namespace laic

using laic::km::AssignParams;
using laic::km::DistParams;
using laic::km::ReduceParams;
using laic::km::SumsParams;

LAIC_PACK_ALL(laic_km_pack)

#define LAIC_KM_ASSIGN(NAME, TM, XPL, CPL, WM, WARPS)                                     \
    extern "C" __global__ void __launch_bounds__(WARPS * 32, 1) NAME(const AssignParams p) { \
        laic::km::assign_body<TM, XPL, CPL, WM, WARPS>(p);                                \
    }

#define LAIC_KM_ASSIGN_CONFIGS(DT, TM, XPL, CPL)                                          \
    LAIC_KM_ASSIGN(laic_km_assign_##DT##_32x4, TM, XPL, CPL, 32, 4)                       \
    LAIC_KM_ASSIGN(laic_km_assign_##DT##_16x4, TM, XPL, CPL, 16, 4)                       \
    LAIC_KM_ASSIGN(laic_km_assign_##DT##_16x2, TM, XPL, CPL, 16, 2)

LAIC_KM_ASSIGN_CONFIGS(f16, __half, 1, 1)
LAIC_KM_ASSIGN_CONFIGS(bf16, __nv_bfloat16, 1, 2)
LAIC_KM_ASSIGN_CONFIGS(f32, __nv_bfloat16, 2, 2)

#define LAIC_KM_SMALL(DT, TM, XPL)                                                        \
    extern "C" __global__ void __launch_bounds__(256)                                     \
        laic_km_distances_##DT(const DistParams p) {                                      \
        laic::km::distances_body<TM, XPL>(p);                                             \
    }                                                                                     \
    extern "C" __global__ void __launch_bounds__(laic::km::SUM_THREADS)                   \
        laic_km_sums_##DT(const SumsParams p) {                                           \
        laic::km::sums_body<TM, XPL>(p);                                                  \
    }

LAIC_KM_SMALL(f16, __half, 1)
LAIC_KM_SMALL(bf16, __nv_bfloat16, 1)
LAIC_KM_SMALL(f32, __nv_bfloat16, 2)

// The update step's grouping of the points by label (counting_sort.cuh): count and scatter
// with one warp per chunk of points, scan with one block of 1024 threads.
extern "C" __global__ void __launch_bounds__(256) laic_km_sort_count(const laic::sort::SortParams p) {
    laic::sort::walk<false>(p);
}
extern "C" __global__ void __launch_bounds__(1024) laic_km_sort_scan(const laic::sort::SortParams p) {
    laic::sort::scan_body(p);
}
extern "C" __global__ void __launch_bounds__(256) laic_km_sort_scatter(const laic::sort::SortParams p) {
    laic::sort::walk<true>(p);
}

// The rest of a Lloyd iteration whose centres stay on the device (kmeans_lloyd.cuh).
extern "C" __global__ void __launch_bounds__(256) laic_km_changed(const laic::lloyd::ChangedParams p) {
    laic::lloyd::changed_body(p);
}
extern "C" __global__ void __launch_bounds__(laic::lloyd::UPDATE_THREADS)
    laic_km_update(const laic::lloyd::UpdateParams p) {
    laic::lloyd::update_body(p);
}

// k-means++ seeding with the nearest distances on the device (kmeans_seed.cuh).
#define LAIC_KM_SEED(NAME, BODY, THREADS)                                                 \
    extern "C" __global__ void __launch_bounds__(THREADS) NAME(const laic::seed::SeedParams p) { \
        laic::seed::BODY(p);                                                              \
    }
LAIC_KM_SEED(laic_km_seed_sums, sums_body, laic::seed::SEED_THREADS)
LAIC_KM_SEED(laic_km_seed_potentials, potentials_body, laic::seed::SEED_THREADS)
LAIC_KM_SEED(laic_km_seed_pick, pick_body, 32)
LAIC_KM_SEED(laic_km_seed_accept, accept_body, 256)

// Per-cluster sums from the partial sums of its tasks, added in task order (grid: k x column
// groups of SUM_THREADS).
extern "C" __global__ void __launch_bounds__(laic::km::SUM_THREADS)
    laic_km_sums_reduce(const ReduceParams p) {
    const int c = blockIdx.x;
    const int col = blockIdx.y * laic::km::SUM_THREADS + threadIdx.x;
    if (col >= p.d) return;
    double s = 0.0;
    for (unsigned tk = p.cluster_tasks[c]; tk < p.cluster_tasks[c + 1]; ++tk) {
        s += p.partial[(size_t)tk * p.d + col];
    }
    p.sums[(size_t)c * p.d + col] = s;
}

// Row gathers and column sums of the pipeline's device-resident matrices (rows.cuh).
#define LAIC_ROWS_GATHER(DT, T)                                                           \
    extern "C" __global__ void __launch_bounds__(laic::rows::GATHER_WARPS * 32)           \
        laic_rows_gather_##DT(const laic::rows::GatherParams p) {                         \
        laic::rows::gather_body<T>(p);                                                    \
    }
LAIC_ROWS_GATHER(f32, float)
LAIC_ROWS_GATHER(f16, __half)
LAIC_ROWS_GATHER(bf16, __nv_bfloat16)

extern "C" __global__ void __launch_bounds__(laic::rows::COLUMN_THREADS)
    laic_rows_column_sums(const laic::rows::ColumnParams p) {
    laic::rows::column_sums_body(p);
}
