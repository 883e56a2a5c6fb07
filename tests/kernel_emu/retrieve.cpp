// kernels/retrieve.cu's fused retrieval (tensor cores; its fix of the session-3 parity failure
// has not run on a GPU) and retrieve_wgmma.cu's (Hopper wgmma, not yet run on a GPU either) on
// the emulated device (cuda_emu_mma.hpp, cuda_emu_wgmma.hpp), packed by its own packing
// kernels exactly as src/backend/cuda/retrieve.rs `retrieve_host` packs them, against
// t~ = normalize(softmax(x . T^T / tau) . T) in f64 from the same rounded inputs; then the top
// nouns per image (`laic_retrieve_top_*`) against the f64 softmax weights. f16, bf16
// and f32 (unit rows in f16 hi + lo), with and without normalisation, noun norms spread 16x
// apart (what the fix is about), N, M and D not multiples of the tiles, and both block shapes
// (D <= 512 and D <= 1024); the wgmma kernel at both of its widths (256 and 512 packed columns),
// odd D among them. The kernel before the fix (commit cca695c, which failed on the H200)
// fails every normalised case here by 0.1-0.2 per unit feature. Prints one line per case; exits
// non-zero on the first failure.

#include "cuda_emu_wgmma.hpp"
#include "retrieve.cu"
#include "retrieve_wgmma.cu"
#include "packing.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

enum class Dt { F32, F16, Bf16 };

struct Config {
    void (*kernel)(const laic::rt::RetrieveParams);
    int bm, threads;
};

// Which retrieval kernel a case runs: retrieve.cu's (and its top nouns), or retrieve_wgmma.cu's.
enum class Kernel { Mma, Wgmma };

// The wgmma kernel for `dp` packed columns, as src/backend/cuda/retrieve.rs `wg_plan` picks it,
// and its shared memory (1024 bytes of alignment slack, images, two noun stages, the partial
// logits, the column table).
Config wgmma_config(Dt dt, int dp, size_t& smem) {
    smem = 1024 + 3 * (size_t)(dp / 64) * 64 * 128 + 2 * 8 * 128 * 16 + 2 * 32 * 16;
    if (dt == Dt::F16) return {dp == 512 ? laic_retrieve_wg_f16_d512 : laic_retrieve_wg_f16_d256, 64, 256};
    return {dp == 512 ? laic_retrieve_wg_bf16_d512 : laic_retrieve_wg_bf16_d256, 64, 256};
}

template <class TIn>
int run(const char* name, Dt dt, size_t n, size_t m, int d, bool normalize, std::mt19937_64& rng,
        Kernel kernel = Kernel::Mma) {
    const float tau = 0.01f;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> spread(-2.0f, 2.0f);
    std::vector<float> xf(n * d), tf(m * d);
    // Rows as given: images of norm ~0.01, so that the logits <x, t>/tau spread over a few
    // units (noun norms times N(0, 1)) instead of picking one noun.
    const float x_scale = normalize ? 1.0f : 0.01f / std::sqrt((float)d);
    for (auto& v : xf) v = x_scale * normal(rng);
    for (size_t j = 0; j < m; ++j) {
        const float s = std::exp2(spread(rng));
        for (int c = 0; c < d; ++c) tf[j * d + c] = s * normal(rng);
    }
    const std::vector<TIn> x = emu::rounded<TIn>(xf), t = emu::rounded<TIn>(tf);

    // retrieve_host: layouts, row values, packing multiples, block shape.
    const int dp = (int)emu::round_up(d, 64);
    const int planes = dt == Dt::F32 ? 2 : 1, ppl = dt == Dt::F16 ? 1 : 2;
    const int kind = dt == Dt::F32 ? (normalize ? laic::ROW_ONE : laic::ROW_NORM)
                                   : (normalize ? laic::ROW_INV_NORM : laic::ROW_ONE);
    const float logit_scale = (float)(1.4426950408889634 / (double)tau);
    void (*pack_kernel)(const laic::PackParams) = dt == Dt::F32   ? laic_rt_pack_f32_unit
                                                  : dt == Dt::F16 ? laic_rt_pack_f16
                                                                  : laic_rt_pack_bf16;
    const emu::Packed xp = emu::pack(pack_kernel, x, n, d, dp, planes, 64, kind, logit_scale);
    const emu::Packed tp = emu::pack(pack_kernel, t, m, d, dp, planes, 64, kind, 1.0f);
    Config cfg;
    const bool wide = dp > 512;
    if (dt == Dt::F16) cfg = wide ? Config{laic_retrieve_f16_16x2_d1024, 32, 256} : Config{laic_retrieve_f16_32x2_d512, 64, 256};
    else if (dt == Dt::Bf16) cfg = wide ? Config{laic_retrieve_bf16_16x2_d1024, 32, 256} : Config{laic_retrieve_bf16_32x2_d512, 64, 256};
    else cfg = wide ? Config{laic_retrieve_f32_16x2_d1024, 32, 256} : Config{laic_retrieve_f32_32x2_d512, 64, 256};
    size_t smem = (size_t)planes * cfg.bm * (dp + 8) * 2 + 2 * (size_t)planes * 32 * (dp + 8) * 2 +
                  (size_t)ppl * cfg.bm * (32 + 8) * 2 + 4 * (size_t)cfg.bm * 4;
    if (kernel == Kernel::Wgmma) {
        if (dt == Dt::F32 || (dp != 256 && dp != 512)) {
            std::fprintf(stderr, "%s: no wgmma retrieval kernel for this case\n", name);
            return 1;
        }
        cfg = wgmma_config(dt, dp, smem);
    }
    std::vector<float> out(n * d, NAN);
    const laic::rt::RetrieveParams p{xp.data.data(), xp.row_value.data(), tp.data.data(), tp.row_value.data(),
                                     out.data(), n, xp.rows_padded, tp.rows_padded, (int)m, d, dp, 0};
    emu::launch({(unsigned)(xp.rows_padded / cfg.bm)}, {(unsigned)cfg.threads}, [&] { cfg.kernel(p); }, smem);

    // f64 reference on the rounded inputs; the softmax weights kept for the top nouns.
    double max_err = 0.0;
    std::vector<std::vector<double>> weights(n);
    for (size_t i = 0; i < n; ++i) {
        std::vector<double> xi(d);
        double xn = 0.0;
        for (int c = 0; c < d; ++c) xn += (xi[c] = emu::to_float(x[i * d + c])) * xi[c];
        xn = std::sqrt(xn);
        std::vector<double> z(m), tn(m);
        double zmax = -INFINITY;
        for (size_t j = 0; j < m; ++j) {
            double dot = 0.0, ss = 0.0;
            for (int c = 0; c < d; ++c) {
                const double v = emu::to_float(t[j * d + c]);
                dot += xi[c] * v;
                ss += v * v;
            }
            tn[j] = std::sqrt(ss);
            z[j] = (normalize ? dot / (xn * tn[j]) : dot) / tau;
            zmax = std::max(zmax, z[j]);
        }
        std::vector<double> f(d, 0.0);
        double l = 0.0;
        for (size_t j = 0; j < m; ++j) {
            const double e = std::exp(z[j] - zmax);
            l += e;
            const double w = e / (normalize ? tn[j] : 1.0);
            for (int c = 0; c < d; ++c) f[c] += w * emu::to_float(t[j * d + c]);
        }
        weights[i].resize(m);
        for (size_t j = 0; j < m; ++j) weights[i][j] = std::exp(z[j] - zmax) / l;
        double fn = 0.0;
        for (double v : f) fn += v * v;
        fn = std::sqrt(fn);
        for (int c = 0; c < d; ++c) {
            const double got = out[i * d + c];
            if (!std::isfinite(got)) {
                std::fprintf(stderr, "%s: feature (%zu, %d) = %g\n", name, i, c, got);
                return 1;
            }
            max_err = std::max(max_err, std::abs(got - f[c] / fn));
        }
    }
    // The bounds are 1e-4 (f32) and 2e-3 (f16, bf16). bf16 is held to 1e-4 here: its
    // weights enter as bf16 hi + lo (~1e-6 off in practice), and the bf16 hi alone is ~2.6e-4
    // off, within 2e-3 but a lost lo plane all the same.
    const double tol = dt == Dt::F16 ? 2e-3 : 1e-4;
    if (kernel == Kernel::Wgmma) {
        const bool ok = max_err <= tol;
        std::printf("retrieve %-5s n=%-3zu m=%-3zu d=%-3d dp=%-4d %-10s wgmma  error %.1e (bound %.0e) %s\n", name, n,
                    m, d, dp, normalize ? "normalised" : "as given", max_err, tol, ok ? "ok" : "TOO LARGE");
        return ok ? 0 : 1;
    }
    // The top nouns (naming): `laic_retrieve_top_*` on the same packed operands.
    const int top_n = m % 2 ? 5 : 8;
    std::vector<unsigned> top_index(n * top_n, 0xdeadbeefu);
    std::vector<float> top_weight(n * top_n, NAN);
    void (*top_kernel)(const laic::rt::TopParams) = dt == Dt::F32   ? laic_retrieve_top_f32
                                                    : dt == Dt::F16 ? laic_retrieve_top_f16
                                                                    : laic_retrieve_top_bf16;
    const laic::rt::TopParams tparams{xp.data.data(), xp.row_value.data(), tp.data.data(),
                                      tp.row_value.data(), top_index.data(), top_weight.data(), n,
                                      xp.rows_padded, tp.rows_padded, (int)m, d, dp, top_n};
    const size_t top_smem = (size_t)planes * 64 * (dp + 8) * 2 + 3 * (size_t)planes * 64 * (64 + 8) * 2;
    emu::launch({(unsigned)(xp.rows_padded / 64)}, {128}, [&] { top_kernel(tparams); }, top_smem);
    double top_err = 0.0;
    int swapped = 0;
    for (size_t i = 0; i < n; ++i) {
        const std::vector<double>& w = weights[i];
        std::vector<size_t> order(m);
        for (size_t j = 0; j < m; ++j) order[j] = j;
        std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return w[a] > w[b]; });
        for (int k = 0; k < top_n; ++k) {
            const unsigned got = top_index[i * top_n + k];
            if (got >= m) {
                std::fprintf(stderr, "%s: top noun %d of image %zu is %u\n", name, k, i, got);
                return 1;
            }
            // The same noun, or one whose weight is within the tolerance (a near tie).
            if (got != order[k]) {
                ++swapped;
                if (std::abs(w[got] - w[order[k]]) > 2e-3) {
                    std::fprintf(stderr, "%s: top noun %d of image %zu is %u (weight %.6f), expected %zu (%.6f)\n",
                                 name, k, i, got, w[got], order[k], w[order[k]]);
                    return 1;
                }
            }
            top_err = std::max(top_err, std::abs(top_weight[i * top_n + k] - w[got]));
        }
    }

    const bool ok = max_err <= tol && top_err <= 2e-3;
    std::printf("retrieve %-5s n=%-3zu m=%-3zu d=%-3d dp=%-4d %-10s mma    error %.1e (bound %.0e), top %d: weights %.1e, %d near ties %s\n",
                name, n, m, d, dp, normalize ? "normalised" : "as given", max_err, tol, top_n, top_err, swapped,
                ok ? "ok" : "TOO LARGE");
    return ok ? 0 : 1;
}

// retrieve_wgmma.cu's operand-layout probe (what a device run reads first if the wgmma kernel
// fails): D[m][n] = 128 pi(m % 16) + n, pi(r) = ((7 r + 3) % 16) ^ (2 [r >= 8]), for B K-major
// and N-major.
int probe(int b_n_major) {
    std::vector<float> out(64 * 128, NAN);
    emu::launch({1}, {128}, [&] { laic_retrieve_wg_probe(out.data(), b_n_major); }, 17 * 1024);
    int bad = 0;
    for (int m = 0; m < 64; ++m)
        for (int n = 0; n < 128; ++n) bad += out[m * 128 + n] != (float)(128 * (((7 * (m % 16) + 3) % 16) ^ (((m % 16) >> 3) << 1)) + n);
    std::printf("retrieve wgmma probe: register A x %s B: %d of 8192 elements differ %s\n",
                b_n_major ? "N-major" : "K-major", bad, bad ? "WRONG" : "ok");
    return bad ? 1 : 0;
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261127);
    int bad = probe(0) + probe(1);
    bad += run<__half>("f16", Dt::F16, 77, 101, 100, true, rng);
    bad += run<__half>("f16", Dt::F16, 40, 70, 64, false, rng);
    bad += run<__nv_bfloat16>("bf16", Dt::Bf16, 77, 101, 100, true, rng);
    bad += run<float>("f32", Dt::F32, 77, 101, 100, true, rng);
    bad += run<float>("f32", Dt::F32, 33, 65, 77, false, rng);
    bad += run<__half>("f16", Dt::F16, 20, 40, 600, true, rng);  // the D <= 1024 shape
    // The wgmma kernel: both widths, partial blocks and tiles, three and five tiles, odd D,
    // one noun.
    bad += run<__half>("f16", Dt::F16, 77, 101, 512, true, rng, Kernel::Wgmma);
    bad += run<__half>("f16", Dt::F16, 130, 150, 200, false, rng, Kernel::Wgmma);
    bad += run<__nv_bfloat16>("bf16", Dt::Bf16, 65, 130, 459, true, rng, Kernel::Wgmma);
    bad += run<__nv_bfloat16>("bf16", Dt::Bf16, 40, 64, 256, true, rng, Kernel::Wgmma);
    bad += run<__half>("f16", Dt::F16, 20, 1, 255, true, rng, Kernel::Wgmma);
    bad += run<__half>("f16", Dt::F16, 64, 300, 512, true, rng, Kernel::Wgmma);  // 5 tiles
    return bad ? 1 : 0;
}
