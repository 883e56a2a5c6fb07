// The fused attention kernels of the CLIP encoders on the emulated device, against
// softmax(q K^T / sqrt(hd)) V in f64 on the same rounded inputs: the CUDA-core kernel
// (kernels/clip_simt.cuh, `laic_clip_attention_f32`, what LAIC_CLIP_ATTENTION=fused-simt
// selects) and the tensor-core kernel for f16 and bf16 (kernels/clip.cu,
// `laic_clip_attention_mma{8,16}_*`, what LAIC_CLIP_ATTENTION=fused selects; through
// cuda_emu_mma.hpp). Shapes: CLIP's text (77 tokens, causal, 8 heads of 64) and ViT-B/32
// (50 tokens, 12 heads of 64), one token, the longest sequence with the widest head, and heads
// of 13, 30 and 72 columns. Launch geometry as `simt_geometry` / `mma_geometry` in
// src/backend/cuda/clip_attention.rs; shared memory starts as NaN and the output's padding
// columns are poisoned and must stay so. Prints one line per case; exits non-zero on the first
// failure.

#include "cuda_emu_mma.hpp"
#include "clip.cu"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <type_traits>
#include <vector>

namespace {

// T = float: the CUDA-core kernel; __half, __nv_bfloat16: the tensor-core one. `bound`: the
// largest error allowed, relative to the largest output.
template <class T>
int run(const char* name, int batch, int seq, int width, int heads, bool causal, double bound,
        std::mt19937_64& rng) {
    const int hd = width / heads;
    const long long ld_out = width + 3;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<T> qkv((size_t)batch * seq * 3 * width);
    for (auto& v : qkv) v = emu::from_float<T>(normal(rng));
    const T poison = emu::from_float<T>(-12345.0f);
    std::vector<T> out((size_t)batch * seq * ld_out, poison);
    const float scale_log2 = 1.4426950408889634f / std::sqrt((float)hd);
    const dim3 grid{(unsigned)(batch * heads)};
    if constexpr (std::is_same_v<T, float>) {
        const int ld = (hd + 31) / 32 * 32 + 4;
        const int warps = seq <= 32 ? 2 : 4;
        const size_t smem = (size_t)(2 * seq * ld + warps * (ld + laic_clip::ATT_MAX_SEQ)) * 4;
        emu::launch(grid, {(unsigned)(32 * warps)}, [&] {
            laic_clip::attention<float>(qkv.data(), out.data(), seq, width, heads, ld_out, causal ? 1 : 0,
                                        scale_log2);
        }, smem);
    } else {
        const int hdp = (hd + 15) / 16 * 16, sp = (seq + 15) / 16 * 16;
        const int warps = std::min(sp / 16, 4);
        const size_t smem = (size_t)3 * sp * (hdp + 8) * sizeof(T);
        emu::launch(grid, {(unsigned)(32 * warps)}, [&] {
            if (hdp > 64)
                laic_clip::attention_mma<T, 16>(qkv.data(), out.data(), seq, width, heads, ld_out,
                                                causal ? 1 : 0, scale_log2);
            else
                laic_clip::attention_mma<T, 8>(qkv.data(), out.data(), seq, width, heads, ld_out,
                                               causal ? 1 : 0, scale_log2);
        }, smem);
    }

    auto at = [&](int b, int j, int part, int c) {
        return (double)emu::to_float(qkv[((size_t)b * seq + j) * 3 * width + part * width + c]);
    };
    double max_err = 0.0, max_ref = 0.0;
    for (int b = 0; b < batch; ++b) {
        for (int h = 0; h < heads; ++h) {
            for (int i = 0; i < seq; ++i) {
                const int live = causal ? i + 1 : seq;
                std::vector<double> s(live);
                double m = -INFINITY;
                for (int j = 0; j < live; ++j) {
                    double dot = 0.0;
                    for (int c = 0; c < hd; ++c) dot += at(b, i, 0, h * hd + c) * at(b, j, 1, h * hd + c);
                    s[j] = dot / std::sqrt((double)hd);
                    m = std::max(m, s[j]);
                }
                double z = 0.0;
                for (auto& v : s) z += v = std::exp(v - m);
                for (int c = 0; c < hd; ++c) {
                    double o = 0.0;
                    for (int j = 0; j < live; ++j) o += s[j] / z * at(b, j, 2, h * hd + c);
                    const double got = emu::to_float(out[((size_t)b * seq + i) * ld_out + h * hd + c]);
                    if (!std::isfinite(got)) {
                        std::fprintf(stderr, "%s seq=%d hd=%d: out[%d][%d][%d] = %g\n", name, seq, hd, b, i,
                                     h * hd + c, got);
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
            if (emu::to_float(out[r * ld_out + c]) != emu::to_float(poison)) {
                std::fprintf(stderr, "%s seq=%d hd=%d: padding column %lld of row %d written\n", name, seq,
                             hd, c, r);
                return 1;
            }
    const double rel = max_err / max_ref;
    const bool ok = rel <= bound;
    std::printf("attention %-4s batch=%d seq=%-3d width=%-3d heads=%-2d hd=%-3d %-9s max error %.1e of %.2f %s\n",
                name, batch, seq, width, heads, hd, causal ? "causal" : "bidirect.", max_err, max_ref,
                ok ? "ok" : "TOO LARGE");
    return ok ? 0 : 1;
}


// Bounds relative to the largest output: f32 2e-6; the tensor-core kernels round the weights
// and the output to the operand type (f16: 2^-11, bf16: 2^-8 each): 4 units of that.
template <class T>
int shapes(const char* name, double bound, std::mt19937_64& rng) {
    int bad = 0;
    bad += run<T>(name, 1, 77, 512, 8, true, bound, rng);    // CLIP text
    bad += run<T>(name, 1, 50, 768, 12, false, bound, rng);  // ViT-B/32
    bad += run<T>(name, 3, 1, 64, 1, true, bound, rng);
    bad += run<T>(name, 1, 128, 256, 2, false, bound, rng);  // the longest sequence, the widest head
    bad += run<T>(name, 2, 33, 90, 3, false, bound, rng);    // heads of 30 columns
    bad += run<T>(name, 1, 7, 26, 2, true, bound, rng);      // heads of 13 columns
    bad += run<T>(name, 1, 20, 144, 2, true, bound, rng);    // heads of 72 columns (mma: NT = 16)
    return bad;
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261127);
    int bad = shapes<float>("f32", 2e-6, rng);
    bad += shapes<__half>("f16", 4.0 / 2048, rng);
    bad += shapes<__nv_bfloat16>("bf16", 4.0 / 256, rng);
    return bad ? 1 : 0;
}
