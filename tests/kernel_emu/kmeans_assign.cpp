// kernels/kmeans.cu's fused assignment (mma.sync; it ran on the H200) and kernels/
// kmeans_wgmma.cu's (wgmma; not yet run on a GPU) on the emulated device (cuda_emu_mma.hpp,
// cuda_emu_wgmma.hpp), with the points and centres packed by its own packing kernels as
// src/backend/cuda/kmeans.rs packs them (points in their dtype's layout, f32 as bf16 hi + lo;
// centres rounded to f16 against f16 points, bf16 hi + lo otherwise; bias ||c||^2 / 2 or 0),
// against the nearest centre in f64 on the same rounded points: the label is the f64 nearest
// centre or one whose distance is within 1e-5 of it (relative to the row's scale), and the
// distance is the exact f32 distance to the chosen centre (1e-5 relative). f16, bf16 and f32;
// N, K and D not multiples of the tiles; K = 1; Euclidean and spherical; the three mma.sync block
// shapes, including f32 rows of 1024 columns in 16x2 blocks (the pipeline's joined rows [x, t~]
// of CLIP ViT-B/32 features), and the wgmma kernels of every dtype. Prints one line per case; exits non-zero on the first failure.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_emu_wgmma.hpp"
#include "kmeans.cu"
// Its context is aggregate-initialised from the parameters alone (the rest zero).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include "kmeans_wgmma.cu"
#pragma GCC diagnostic pop
#include "packing.hpp"

namespace {

using PackKernel = void (*)(const laic::PackParams);

struct Case {
    const char* dtype;
    int n, k, d;
    bool spherical;
    const char* config;  // a block shape of kmeans.rs's CONFIGS or WG_CONFIGS
    PackKernel pack_points, pack_centres;  // kmeans.cu's packing entry points for the layouts
};

using AssignKernel = void (*)(const laic::km::AssignParams);

// How a kernel is launched (src/backend/cuda/kmeans.rs `plan`, `wg_plan` and their shared
// memory): points per block, threads, the centre padding, shared memory, the kernel.
struct Shape {
    int bm, threads, kp_align;
    size_t smem;
    AssignKernel kernel;
};

template <class TM, int XPL, int CPL, int WM, int WARPS>
Shape mma_shape(int dp) {
    using namespace laic::km;
    constexpr int BM = WM * WARPS;
    return {BM, WARPS * 32, BN,
            (size_t)XPL * BM * (dp + PAD) * 2 + (size_t)STAGES * CPL * BN * (BK + PAD) * 2 + (size_t)BM * 4,
            [](const AssignParams p) { assign_body<TM, XPL, CPL, WM, WARPS>(p); }};
}

template <int XPL, int CPL>
Shape wg_shape(int nwg, int stages, int dp, AssignKernel kernel) {
    const int bm = 64 * nwg;
    return {bm, 128 * nwg, laic::wg::km::BN,
            1024 + (size_t)XPL * bm * dp * 2 + (size_t)stages * CPL * laic::wg::km::BN * 64 * 2 + (size_t)bm * 4,
            kernel};
}

template <class TIn, class TM, int XPL, int CPL>
Shape shape_of(const char* config, int dp) {
    const std::string c = config;
    if (c == "32x4") return mma_shape<TM, XPL, CPL, 32, 4>(dp);
    if (c == "16x4") return mma_shape<TM, XPL, CPL, 16, 4>(dp);
    if (c == "16x2") return mma_shape<TM, XPL, CPL, 16, 2>(dp);
    if constexpr (std::is_same_v<TIn, __half>) {
        if (c == "wg2") return wg_shape<XPL, CPL>(2, 4, dp, laic_km_wg_assign_f16_wg2);
        if (c == "wg1") return wg_shape<XPL, CPL>(1, 4, dp, laic_km_wg_assign_f16_wg1);
    } else if constexpr (std::is_same_v<TIn, __nv_bfloat16>) {
        if (c == "wg2") return wg_shape<XPL, CPL>(2, 3, dp, laic_km_wg_assign_bf16_wg2);
        if (c == "wg1") return wg_shape<XPL, CPL>(1, 4, dp, laic_km_wg_assign_bf16_wg1);
    } else {
        if (c == "wg1") return wg_shape<XPL, CPL>(1, 3, dp, laic_km_wg_assign_f32_wg1);
    }
    emu::fail("no such block shape for this dtype");
}

template <class TIn, class TM, int XPL, int CPL>
int run(const Case& c, std::mt19937_64& rng) {
    using namespace laic::km;
    const int n = c.n, k = c.k, d = c.d;
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<float> xf((size_t)n * d), cf((size_t)k * d);
    for (auto& v : xf) v = normal(rng);
    for (auto& v : cf) v = normal(rng);
    auto unit = [&](std::vector<float>& v) {
        for (size_t r = 0; r < v.size() / d; ++r) {
            double s = 0;
            for (int j = 0; j < d; ++j) s += (double)v[r * d + j] * v[r * d + j];
            for (int j = 0; j < d; ++j) v[r * d + j] = (float)(v[r * d + j] / std::sqrt(s));
        }
    };
    if (c.spherical) {
        unit(xf);
        unit(cf);
    }
    const auto x_in = emu::rounded<TIn>(xf);
    const int dp = (int)emu::round_up(d, BK);
    const Shape shape = shape_of<TIn, TM, XPL, CPL>(c.config, dp);
    const emu::Packed points = emu::pack(c.pack_points, x_in, n, d, dp, XPL, 128, laic::ROW_ONE, 1.f);
    const emu::Packed centres = emu::pack(c.pack_centres, cf, k, d, dp, CPL, shape.kp_align, laic::ROW_HALF_SQNORM,
                                          c.spherical ? 0.f : 1.f);
    std::vector<unsigned> labels(n, ~0u);
    std::vector<float> dist(n, NAN);
    // Points packed to a multiple of 128 rows (ROW_MULTIPLE of src/backend/cuda/kmeans.rs),
    // centres to a multiple of the tile.
    const AssignParams p{points.data.data(), centres.data.data(), centres.row_value.data(), cf.data(),
                         labels.data(), dist.data(), (unsigned long long)n, points.rows_padded, k,
                         (int)centres.rows_padded, d, dp, c.spherical ? 1 : 0, 0};
    emu::launch({(unsigned)(points.rows_padded / shape.bm)}, {(unsigned)shape.threads}, [&] { shape.kernel(p); },
                shape.smem);

    double worst = 0;
    int near = 0;
    for (int i = 0; i < n; ++i) {
        std::vector<double> xi(d);
        double scale = 0;
        for (int j = 0; j < d; ++j) {
            xi[j] = emu::to_float(x_in[(size_t)i * d + j]);
            scale += xi[j] * xi[j];
        }
        auto distance = [&](int kk) {
            double s = 0;
            for (int j = 0; j < d; ++j) {
                const double cv = cf[(size_t)kk * d + j];
                s += c.spherical ? xi[j] * cv : (xi[j] - cv) * (xi[j] - cv);
            }
            return c.spherical ? std::max(1.0 - s, 0.0) : s;
        };
        int best = 0;
        for (int kk = 1; kk < k; ++kk)
            if (distance(kk) < distance(best)) best = kk;
        if (labels[i] >= (unsigned)k || !std::isfinite(dist[i])) {
            std::fprintf(stderr, "%s n=%d k=%d d=%d: point %d unwritten or out of range (label %u)\n", c.dtype, n, k, d, i,
                         labels[i]);
            return 1;
        }
        // The tensor-core scores only choose the centre: a different choice must be a near tie.
        const double gap = distance((int)labels[i]) - distance(best);
        const double tie = 1e-5 * (1.0 + scale);
        if (gap > tie) {
            std::fprintf(stderr, "%s n=%d k=%d d=%d spherical=%d: point %d labelled %u (distance %.9g), nearest %d (%.9g)\n",
                         c.dtype, n, k, d, c.spherical, i, labels[i], distance((int)labels[i]), best,
                         distance(best));
            return 1;
        }
        near += (int)labels[i] != best;
        const double want = distance((int)labels[i]);
        const double err = std::fabs(dist[i] - want) / std::max(want, 1e-3 * (1.0 + scale));
        worst = std::max(worst, err);
        if (err > 1e-5) {
            std::fprintf(stderr, "%s n=%d k=%d d=%d: point %d distance %.9g, exact %.9g (rel %.2e)\n", c.dtype,
                         n, k, d, i, dist[i], want, err);
            return 1;
        }
    }
    std::printf("assign %-4s %-4s n=%-5d k=%-4d d=%-5d %-9s near ties %d, max distance error %.2e ok\n",
                c.dtype, c.config, n, k, d, c.spherical ? "spherical" : "euclidean", near, worst);
    return 0;
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261127);
    int bad = 0;
    // f16 points meet f16 centres; bf16 points bf16 hi + lo centres; f32 points (hi + lo) too.
    const PackKernel f16 = laic_km_pack_f16, bf16 = laic_km_pack_bf16, f32 = laic_km_pack_f32,
                     f32_as_f16 = laic_km_pack_f32_as_f16;
    bad += run<__half, __half, 1, 1>({"f16", 300, 150, 64, false, "32x4", f16, f32_as_f16}, rng);
    bad += run<__half, __half, 1, 1>({"f16", 131, 1, 77, true, "16x4", f16, f32_as_f16}, rng);
    bad += run<__nv_bfloat16, __nv_bfloat16, 1, 2>({"bf16", 200, 70, 100, true, "16x2", bf16, f32}, rng);
    bad += run<float, __nv_bfloat16, 2, 2>({"f32", 150, 65, 129, false, "32x4", f32, f32}, rng);
    bad += run<float, __nv_bfloat16, 2, 2>({"f32", 70, 20, 1024, false, "16x2", f32, f32}, rng);
    // The wgmma kernels: 128-centre tiles, K past one and two tiles, several 64-column chunks.
    bad += run<__half, __half, 1, 1>({"f16", 300, 300, 200, false, "wg2", f16, f32_as_f16}, rng);
    bad += run<__half, __half, 1, 1>({"f16", 131, 1, 77, true, "wg1", f16, f32_as_f16}, rng);
    bad += run<__nv_bfloat16, __nv_bfloat16, 1, 2>({"bf16", 200, 200, 100, true, "wg2", bf16, f32}, rng);
    bad += run<__nv_bfloat16, __nv_bfloat16, 1, 2>({"bf16", 100, 129, 64, false, "wg1", bf16, f32}, rng);
    bad += run<float, __nv_bfloat16, 2, 2>({"f32", 150, 257, 129, false, "wg1", f32, f32}, rng);
    return bad ? 1 : 0;
}
