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

namespace {

size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

template <class TIn>
std::vector<TIn> as(const std::vector<float>& v) {
    std::vector<TIn> o;
    for (float x : v) o.push_back(emu::from_float<TIn>(x));
    return o;
}

// Packs rows x d of `src` (stride d) as PLANES planes of rows_padded x dp operands of TM, with
// the row values of `kind` times `scale`, by operands.cuh's packing kernel.
template <class TIn, class TM, int PLANES>
void pack(const TIn* src, size_t rows, size_t rows_padded, int d, int dp, int kind, float scale,
          std::vector<uint16_t>& data, std::vector<float>& row_value) {
    data.assign((size_t)PLANES * rows_padded * dp, 0xffff);
    row_value.assign(rows_padded, NAN);
    const laic::PackParams p{src, data.data(), row_value.data(), (unsigned long long)d, rows,
                             rows_padded, (unsigned long long)(rows_padded * dp), d, dp, kind, scale};
    emu::launch({(unsigned)((rows_padded + 7) / 8)}, {256}, [&] { laic::pack_body<TIn, TM, PLANES>(p); });
}

struct Case {
    const char* dtype;
    int n, k, d;
    bool spherical;
    int wm, warps;
};

template <class TIn, class TM, int XPL, int CPL, class TC, int WM, int WARPS>
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
    const auto x_in = as<TIn>(xf);
    constexpr int BM = WM * WARPS;
    const size_t np = round_up(n, 128);  // ROW_MULTIPLE
    const int dp = (int)round_up(d, BK);
    const size_t kp = round_up(k, BN);
    std::vector<uint16_t> points, centres;
    std::vector<float> unused, bias;
    pack<TIn, TM, XPL>(x_in.data(), n, np, d, dp, laic::ROW_ONE, 1.f, points, unused);
    pack<float, TC, CPL>(cf.data(), k, kp, d, dp, laic::ROW_HALF_SQNORM, c.spherical ? 0.f : 1.f,
                         centres, bias);
    std::vector<unsigned> labels(n, ~0u);
    std::vector<float> dist(n, NAN);
    const AssignParams p{points.data(), centres.data(), bias.data(), cf.data(), labels.data(),
                         dist.data(), (unsigned long long)n, np, k, (int)kp, d, dp,
                         c.spherical ? 1 : 0, 0};
    const size_t smem = (size_t)XPL * BM * (dp + PAD) * 2 + (size_t)STAGES * CPL * BN * (BK + PAD) * 2 +
                        (size_t)BM * 4;
    emu::launch({(unsigned)(np / BM)}, {WARPS * 32},
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

template <class TIn, class TM, int XPL, int CPL, class TC>
int run(const Case& c, std::mt19937_64& rng) {
    if (c.wm == 32) return run_case<TIn, TM, XPL, CPL, TC, 32, 4>(c, rng);
    if (c.warps == 4) return run_case<TIn, TM, XPL, CPL, TC, 16, 4>(c, rng);
    return run_case<TIn, TM, XPL, CPL, TC, 16, 2>(c, rng);
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261127);
    int bad = 0;
    // f16 points meet f16 centres; bf16 points bf16 hi + lo centres; f32 points (hi + lo) too.
    bad += run<__half, __half, 1, 1, __half>({"f16", 300, 150, 64, false, 32, 4}, rng);
    bad += run<__half, __half, 1, 1, __half>({"f16", 131, 1, 77, true, 16, 4}, rng);
    bad += run<__nv_bfloat16, __nv_bfloat16, 1, 2, __nv_bfloat16>({"bf16", 200, 70, 100, true, 16, 2}, rng);
    bad += run<float, __nv_bfloat16, 2, 2, __nv_bfloat16>({"f32", 150, 65, 129, false, 32, 4}, rng);
    bad += run<float, __nv_bfloat16, 2, 2, __nv_bfloat16>({"f32", 70, 20, 1024, false, 16, 2}, rng);
    return bad ? 1 : 0;
}
