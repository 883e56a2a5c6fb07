// The passes of kernels/clip_simt.cuh between the CLIP encoders' GEMMs, for f32 operands, on
// the emulated device (cuda_emu.hpp) against f64: layer norm (gathered rows, strided output),
// softmax (causal and not), both activations, and the patch unfolding; launch shapes as
// src/backend/cuda/clip.rs (a warp per row in blocks of 256 threads; a block per row). Output
// padding is poisoned and must stay so. Prints one line per case; exits non-zero on the first
// failure.

#include "cuda_emu.hpp"
#include "clip_simt.cuh"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

constexpr float POISON = -12345.0f;

int verdict(const char* what, double err, double tol) {
    const bool ok = err <= tol;
    std::printf("%-34s max error %.2e %s\n", what, err, ok ? "ok" : "TOO LARGE");
    return ok ? 0 : 1;
}

int layernorm(std::mt19937_64& rng) {
    const int n_src = 13, w = 77, n_rows = 9, ld_out = 80;
    std::normal_distribution<float> normal(0.5f, 2.0f);
    std::vector<float> x((size_t)n_src * w), gamma(w), beta(w);
    for (auto& v : x) v = normal(rng);
    for (auto& v : gamma) v = normal(rng);
    for (auto& v : beta) v = normal(rng);
    std::vector<int> rows(n_rows);
    for (auto& r : rows) r = (int)(rng() % n_src);
    std::vector<float> out((size_t)n_rows * ld_out, POISON);
    const float eps = 1e-5f;
    emu::launch({(n_rows + 7) / 8}, {256}, [&] {
        laic_clip::layernorm<float>(x.data(), rows.data(), n_rows, w, gamma.data(), beta.data(), eps,
                                    out.data(), ld_out);
    });
    double err = 0.0;
    for (int r = 0; r < n_rows; ++r) {
        const float* xr = &x[(size_t)rows[r] * w];
        double mean = 0.0, var = 0.0;
        for (int j = 0; j < w; ++j) mean += xr[j];
        mean /= w;
        for (int j = 0; j < w; ++j) var += (xr[j] - mean) * (xr[j] - mean);
        const double inv = 1.0 / std::sqrt(var / w + eps);
        for (int j = 0; j < w; ++j)
            err = std::max(err, std::abs(out[(size_t)r * ld_out + j] - ((xr[j] - mean) * inv * gamma[j] + beta[j])));
        for (int j = w; j < ld_out; ++j)
            if (out[(size_t)r * ld_out + j] != POISON) return verdict("layernorm: padding written", 1.0, 0.0);
    }
    return verdict("layernorm (gathered rows)", err, 1e-4);
}

int softmax(bool causal, std::mt19937_64& rng) {
    const int seq = 45, n_rows = 2 * seq, ld = 48;
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> scores((size_t)n_rows * ld);
    for (auto& v : scores) v = normal(rng);
    std::vector<float> probs((size_t)n_rows * ld, POISON);
    emu::launch({(n_rows + 7) / 8}, {256},
                [&] { laic_clip::softmax<float>(scores.data(), probs.data(), n_rows, seq, ld, causal); });
    double err = 0.0;
    for (int r = 0; r < n_rows; ++r) {
        const int live = causal ? r % seq + 1 : seq;
        double m = -INFINITY, z = 0.0;
        for (int j = 0; j < live; ++j) m = std::max(m, (double)scores[(size_t)r * ld + j]);
        for (int j = 0; j < live; ++j) z += std::exp(scores[(size_t)r * ld + j] - m);
        for (int j = 0; j < seq; ++j) {
            const double want = j < live ? std::exp(scores[(size_t)r * ld + j] - m) / z : 0.0;
            err = std::max(err, std::abs(probs[(size_t)r * ld + j] - want));
        }
        for (int j = seq; j < ld; ++j)
            if (probs[(size_t)r * ld + j] != POISON) return verdict("softmax: padding written", 1.0, 0.0);
    }
    return verdict(causal ? "softmax (causal)" : "softmax", err, 1e-6);
}

int activation(int act, std::mt19937_64& rng) {
    const int rows = 11, cols = 300, ld = 301;
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> y((size_t)rows * ld);
    for (auto& v : y) v = normal(rng);
    const std::vector<float> x = y;
    emu::launch({rows}, {256}, [&] { laic_clip::activation<float>(y.data(), rows, cols, ld, act); });
    double err = 0.0;
    for (int r = 0; r < rows; ++r) {
        for (int c = 0; c < ld; ++c) {
            const double v = x[(size_t)r * ld + c];
            const double want = c >= cols ? v
                                : act == 0 ? v / (1.0 + std::exp(-1.702 * v))
                                           : 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
            err = std::max(err, std::abs(y[(size_t)r * ld + c] - want) / (1.0 + std::abs(want)));
        }
    }
    return verdict(act == 0 ? "quick_gelu" : "gelu (erf)", err, 1e-6);
}

int patches() {
    const int n = 2, s = 12, p = 4, g = s / p, k = 3 * p * p;
    std::vector<float> px((size_t)n * 3 * s * s);
    for (size_t i = 0; i < px.size(); ++i) px[i] = (float)i;
    const long long n_patches = (long long)n * g * g;
    std::vector<float> out((size_t)n_patches * k, POISON);
    emu::launch({(unsigned)n_patches}, {256}, [&] { laic_clip::patches<float>(px.data(), out.data(), n_patches, s, p, g); });
    double err = 0.0;
    for (int img = 0; img < n; ++img)
        for (int gy = 0; gy < g; ++gy)
            for (int gx = 0; gx < g; ++gx)
                for (int ch = 0; ch < 3; ++ch)
                    for (int ky = 0; ky < p; ++ky)
                        for (int kx = 0; kx < p; ++kx) {
                            const float want = px[(((size_t)img * 3 + ch) * s + gy * p + ky) * s + gx * p + kx];
                            const float got = out[((size_t)(img * g + gy) * g + gx) * k + (ch * p + ky) * p + kx];
                            err = std::max(err, (double)std::abs(got - want));
                        }
    return verdict("patches (CHW -> patch rows)", err, 0.0);
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261127);
    int bad = 0;
    bad += layernorm(rng);
    bad += softmax(false, rng);
    bad += softmax(true, rng);
    bad += activation(0, rng);
    bad += activation(1, rng);
    bad += patches();
    return bad ? 1 : 0;
}
