// kernels/rows.cuh on the emulated device (cuda_emu.hpp, cuda_emu_mma.hpp for the half types):
// the row gather (f32, f16 and bf16 sources, an index list with repeats and out of order or
// none, source and destination strides wider than the rows, row counts that are not multiples
// of a block's warps, widths that are not multiples of a warp) against the element conversion,
// with the destination's gaps between rows left untouched; and the column sums, plain and of
// squared deviations, against sequential f64 sums per block of rows, bit for bit (widths below
// and above a block's threads, a last block of fewer rows, one block for all rows). Prints one
// line per case; exits non-zero on the first failure.

#include "cuda_emu_mma.hpp"
#include "rows.cuh"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using laic::rows::ColumnParams;
using laic::rows::GatherParams;

namespace {

constexpr float SENTINEL = -12345.f;

template <class T>
int gather_case(const char* name, size_t src_rows, size_t rows, int d, size_t src_stride,
                size_t dst_stride, bool indexed, std::mt19937_64& rng) {
    std::normal_distribution<float> normal(0.f, 1.f);
    std::vector<T> src(src_rows * src_stride);
    for (auto& v : src) v = emu::from_float<T>(normal(rng));
    std::vector<unsigned> index(rows);
    for (size_t r = 0; r < rows; ++r) {
        // Out of order, with repeats (every fifth row repeats the one before).
        index[r] = r % 5 == 4 && r > 0 ? index[r - 1] : (unsigned)(rng() % src_rows);
    }
    std::vector<float> dst(rows * dst_stride, SENTINEL);
    const GatherParams p{src.data(), indexed ? index.data() : nullptr, dst.data(), rows,
                         src_stride, dst_stride, d, 0};
    const unsigned grid = (unsigned)((rows + laic::rows::GATHER_WARPS - 1) / laic::rows::GATHER_WARPS);
    emu::launch({grid}, {laic::rows::GATHER_WARPS * 32}, [&] { laic::rows::gather_body<T>(p); });
    for (size_t r = 0; r < rows; ++r) {
        const size_t from = indexed ? index[r] : r;
        for (size_t c = 0; c < dst_stride; ++c) {
            const float want = c < (size_t)d ? emu::to_float(src[from * src_stride + c]) : SENTINEL;
            const float got = dst[r * dst_stride + c];
            if (std::memcmp(&want, &got, sizeof want) != 0) {
                std::fprintf(stderr, "gather %s rows=%zu d=%d: dst[%zu][%zu] = %g, expected %g\n", name,
                             rows, d, r, c, got, want);
                return 1;
            }
        }
    }
    std::printf("gather %-4s rows=%-5zu d=%-4d src_stride=%-4zu dst_stride=%-4zu index=%d ok\n", name,
                rows, d, src_stride, dst_stride, indexed);
    return 0;
}

int column_case(size_t rows, int d, size_t stride, size_t rows_per_block, std::mt19937_64& rng) {
    std::normal_distribution<float> normal(0.5f, 2.f);
    std::vector<float> src(rows * stride);
    for (auto& v : src) v = normal(rng);
    const size_t blocks = (rows + rows_per_block - 1) / rows_per_block;
    std::vector<double> mean(d);
    for (int c = 0; c < d; ++c) mean[c] = normal(rng);
    for (bool deviations : {false, true}) {
        std::vector<double> out(blocks * d, NAN);
        const ColumnParams p{src.data(), deviations ? mean.data() : nullptr, out.data(), rows, stride,
                             rows_per_block, d, 0};
        emu::launch({(unsigned)blocks}, {laic::rows::COLUMN_THREADS},
                    [&] { laic::rows::column_sums_body(p); });
        for (size_t b = 0; b < blocks; ++b) {
            for (int c = 0; c < d; ++c) {
                double want = 0.0;
                for (size_t r = b * rows_per_block; r < rows && r < (b + 1) * rows_per_block; ++r) {
                    const double v = (double)src[r * stride + c];
                    want += deviations ? (v - mean[c]) * (v - mean[c]) : v;
                }
                if (std::memcmp(&want, &out[b * d + c], sizeof want) != 0) {
                    std::fprintf(stderr,
                                 "column sums rows=%zu d=%d deviations=%d: block %zu column %d = %.17g, "
                                 "expected %.17g\n",
                                 rows, d, deviations, b, c, out[b * d + c], want);
                    return 1;
                }
            }
        }
    }
    std::printf("columns rows=%-5zu d=%-4d stride=%-4zu rows_per_block=%-4zu blocks=%-3zu ok\n", rows,
                d, stride, rows_per_block, blocks);
    return 0;
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261127);
    int bad = 0;
    bad += gather_case<float>("f32", 50, 37, 77, 80, 154, true, rng);
    bad += gather_case<float>("f32", 300, 300, 64, 64, 128, false, rng);
    bad += gather_case<__half>("f16", 1000, 13, 512, 520, 512, true, rng);
    bad += gather_case<__nv_bfloat16>("bf16", 9, 41, 33, 40, 35, true, rng);
    bad += gather_case<float>("f32", 1, 1, 1, 1, 1, true, rng);
    bad += column_case(1001, 77, 80, 128, rng);
    bad += column_case(517, 300, 300, 64, rng);
    bad += column_case(33, 1, 2, 100, rng);
    return bad ? 1 : 0;
}
