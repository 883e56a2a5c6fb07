// kernels/kmeans.cu's fused assignment (mma.sync; it ran on the H200) on the emulated device
// (cuda_emu_mma.hpp), with the points and centres packed by its own packing kernels as
// src/backend/cuda/kmeans.rs packs them (points in their dtype's layout, f32 as bf16 hi + lo;
// centres rounded to f16 against f16 points, bf16 hi + lo otherwise; bias ||c||^2 / 2 or 0),
// against the nearest centre in f64 on the same rounded points: the label is the f64 nearest
// centre or one whose distance is within 1e-5 of it (relative to the row's scale), and the
// distance is the exact f32 distance to the chosen centre (1e-5 relative). f16, bf16 and f32;
// N, K and D not multiples of the tiles; K = 1; Euclidean and spherical; the three block shapes,
// including f32 rows of 1024 columns in 16x2 blocks (the pipeline's joined rows [x, t~] of
// CLIP ViT-B/32 features). Prints one line per case; exits non-zero on the first failure.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cuda_emu_mma.hpp"
#include "kmeans.cu"
#include "packing.hpp"

namespace {

using PackKernel = void (*)(const laic::PackParams);

struct Case {
    const char* dtype;
    int n, k, d;
    bool spherical;
    int wm, warps;
    PackKernel pack_points, pack_centres;  // kmeans.cu's packing entry points for the layouts
};

template <class TIn, class TM, int XPL, int CPL, int WM, int WARPS>
int run_case(const Case& c, std::mt19937_64& rng) {
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
    constexpr int BM = WM * WARPS;
    const int dp = (int)emu::round_up(d, BK);
    const emu::Packed points = emu::pack(c.pack_points, x_in, n, d, dp, XPL, 128, laic::ROW_ONE, 1.f);
    const emu::Packed centres =
        emu::pack(c.pack_centres, cf, k, d, dp, CPL, BN, laic::ROW_HALF_SQNORM, c.spherical ? 0.f : 1.f);
    std::vector<unsigned> labels(n, ~0u);
    std::vector<float> dist(n, NAN);
    // Points packed to a multiple of 128 rows (ROW_MULTIPLE of src/backend/cuda/kmeans.rs),
    // centres to a multiple of the tile.
    const AssignParams p{points.data.data(), centres.data.data(), centres.row_value.data(), cf.data(),
                         labels.data(), dist.data(), (unsigned long long)n, points.rows_padded, k,
                         (int)centres.rows_padded, d, dp, c.spherical ? 1 : 0, 0};
    const size_t smem = (size_t)XPL * BM * (dp + PAD) * 2 + (size_t)STAGES * CPL * BN * (BK + PAD) * 2 +
                        (size_t)BM * 4;
    emu::launch({(unsigned)(points.rows_padded / BM)}, {WARPS * 32},
                [&] { assign_body<TM, XPL, CPL, WM, WARPS>(p); }, smem);

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
    std::printf("assign %-4s %dx%d n=%-5d k=%-4d d=%-5d %-9s near ties %d, max distance error %.2e ok\n",
                c.dtype, WM, WARPS, n, k, d, c.spherical ? "spherical" : "euclidean", near, worst);
    return 0;
}

template <class TIn, class TM, int XPL, int CPL>
int run(const Case& c, std::mt19937_64& rng) {
    if (c.wm == 32) return run_case<TIn, TM, XPL, CPL, 32, 4>(c, rng);
    if (c.warps == 4) return run_case<TIn, TM, XPL, CPL, 16, 4>(c, rng);
    return run_case<TIn, TM, XPL, CPL, 16, 2>(c, rng);
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261127);
    int bad = 0;
    // f16 points meet f16 centres; bf16 points bf16 hi + lo centres; f32 points (hi + lo) too.
    const PackKernel f16 = laic_km_pack_f16, bf16 = laic_km_pack_bf16, f32 = laic_km_pack_f32,
                     f32_as_f16 = laic_km_pack_f32_as_f16;
    bad += run<__half, __half, 1, 1>({"f16", 300, 150, 64, false, 32, 4, f16, f32_as_f16}, rng);
    bad += run<__half, __half, 1, 1>({"f16", 131, 1, 77, true, 16, 4, f16, f32_as_f16}, rng);
    bad += run<__nv_bfloat16, __nv_bfloat16, 1, 2>({"bf16", 200, 70, 100, true, 16, 2, bf16, f32}, rng);
    bad += run<float, __nv_bfloat16, 2, 2>({"f32", 150, 65, 129, false, 32, 4, f32, f32}, rng);
    bad += run<float, __nv_bfloat16, 2, 2>({"f32", 70, 20, 1024, false, 16, 2, f32, f32}, rng);
    return bad ? 1 : 0;
}
