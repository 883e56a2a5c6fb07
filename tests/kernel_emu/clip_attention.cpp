// The fused attention of kernels/clip_simt.cuh (`laic_clip_attention_f32`, the CUDA-core
// kernel that LAIC_CLIP_ATTENTION=fused-simt selects) on the emulated device (cuda_emu.hpp),
// against softmax(q K^T / sqrt(hd)) V in f64: CLIP's text (77 tokens, causal, 8 heads of 64)
// and ViT-B/32 (50 tokens, 12 heads of 64) shapes, one token, the longest sequence with the
// widest head, and heads that are not a multiple of 4 columns. Launch geometry as
// `simt_geometry` in src/backend/cuda/clip_attention.rs; shared memory starts as NaN and the
// output's padding columns are poisoned and must stay so. Prints one line per case; exits
// non-zero on the first failure.

#include "cuda_emu.hpp"
#include "clip_simt.cuh"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

int run(int batch, int seq, int width, int heads, bool causal, std::mt19937_64& rng) {
    const int hd = width / heads;
    const long long ld_out = width + 3;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> qkv((size_t)batch * seq * 3 * width);
    for (auto& v : qkv) v = normal(rng);
    const float poison = -12345.0f;
    std::vector<float> out((size_t)batch * seq * ld_out, poison);

    const int ld = (hd + 31) / 32 * 32 + 4;
    const int warps = seq <= 32 ? 2 : 4;
    const size_t smem = (size_t)(2 * seq * ld + warps * (ld + laic_clip::ATT_MAX_SEQ)) * 4;
    const float scale_log2 = 1.4426950408889634f / std::sqrt((float)hd);
    emu::launch({(unsigned)(batch * heads)}, {(unsigned)(32 * warps)},
                [&] {
                    laic_clip::attention<float>(qkv.data(), out.data(), seq, width, heads, ld_out,
                                                causal ? 1 : 0, scale_log2);
                },
                smem);

    double max_err = 0.0, max_ref = 0.0;
    for (int b = 0; b < batch; ++b) {
        for (int h = 0; h < heads; ++h) {
            for (int i = 0; i < seq; ++i) {
                const float* q = &qkv[((size_t)b * seq + i) * 3 * width + h * hd];
                const int live = causal ? i + 1 : seq;
                std::vector<double> s(live);
                double m = -INFINITY;
                for (int j = 0; j < live; ++j) {
                    const float* kr = &qkv[((size_t)b * seq + j) * 3 * width + width + h * hd];
                    double dot = 0.0;
                    for (int c = 0; c < hd; ++c) dot += (double)q[c] * kr[c];
                    s[j] = dot / std::sqrt((double)hd);
                    m = std::max(m, s[j]);
                }
                double z = 0.0;
                for (auto& v : s) z += v = std::exp(v - m);
                for (int c = 0; c < hd; ++c) {
                    double o = 0.0;
                    for (int j = 0; j < live; ++j)
                        o += s[j] / z * qkv[((size_t)b * seq + j) * 3 * width + 2 * width + h * hd + c];
                    const double got = out[((size_t)b * seq + i) * ld_out + h * hd + c];
                    if (!std::isfinite(got)) {
                        std::fprintf(stderr, "seq=%d hd=%d: out[%d][%d][%d] = %g\n", seq, hd, b, i, h * hd + c, got);
                        return 1;
                    }
                    max_err = std::max(max_err, std::abs(got - o));
                    max_ref = std::max(max_ref, std::abs(o));
                }
            }
        }
    }
    for (int r = 0; r < batch * seq; ++r)
        for (long long c = width; c < ld_out; ++c)
            if (out[r * ld_out + c] != poison) {
                std::fprintf(stderr, "seq=%d hd=%d: padding column %lld of row %d written\n", seq, hd, c, r);
                return 1;
            }
    const double rel = max_err / max_ref;
    const bool ok = rel < 2e-6;
    std::printf("attention batch=%d seq=%-3d width=%-3d heads=%-2d hd=%-3d %-10s max error %.2e of %.2f %s\n",
                batch, seq, width, heads, hd, causal ? "causal" : "bidirect.", max_err, max_ref,
                ok ? "ok" : "TOO LARGE");
    return ok ? 0 : 1;
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261127);
    int bad = 0;
    bad += run(1, 77, 512, 8, true, rng);    // CLIP text
    bad += run(1, 50, 768, 12, false, rng);  // ViT-B/32
    bad += run(3, 1, 64, 1, true, rng);
    bad += run(1, 128, 256, 2, false, rng);  // the longest sequence, the widest head
    bad += run(2, 33, 90, 3, false, rng);    // heads of 30 columns
    bad += run(1, 7, 26, 2, true, rng);      // heads of 13 columns
    return bad ? 1 : 0;
}
