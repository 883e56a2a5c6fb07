// kernels/kmeans.cu's partial sums of the k-means update (`laic_km_sums_<dt>`, a thread per
// SUM_COLS adjacent columns) on the emulated device (cuda_emu_mma.hpp), with the points packed
// by its own packing kernels as src/backend/cuda/kmeans.rs packs them (f16 and bf16 as they
// are, f32 as bf16 hi + lo), against the sums restated one column at a time in f64, members in
// index order, each the f32 value hi (+ lo): bit for bit. The values span a wide range of
// magnitudes (subnormal to near the largest), so that the f64 sums round and a different order
// of additions shows. Widths 33, 35, 100, 512, 768 (one and two column groups; the last thread
// with 1, 3 or all of its SUM_COLS columns below d); the packed width of kmeans.rs (a multiple
// of BK = 64) and the narrowest the kernel allows (a multiple of SUM_COLS, rows not padded, so
// that a read past a row of the last plane leaves the buffer: AddressSanitizer); tasks of every
// length mod SUM_UNROLL, of 1 member, of 256 and more, empty ones in between and at the end
// (the unused tasks). The partial sums start as NaN bytes with a guard row after them: columns
// from d on must stay unwritten. Prints one line per passing case; exits non-zero when one
// fails.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cuda_emu_mma.hpp"
#include "kmeans.cu"
#include "packing.hpp"

namespace {

using PackKernel = void (*)(const laic::PackParams);
using SumsKernel = void (*)(const laic::km::SumsParams);

struct Case {
    const char* dtype;
    int n, d, k;
    int dp_multiple;      // 64: kmeans.rs's packing (BK); SUM_COLS: the least the kernel allows
    size_t row_multiple;  // 128: kmeans.rs's ROW_MULTIPLE; 1: no padding rows
};

constexpr uint64_t POISON = 0x7ff4dead7ff4deadull;  // a signalling NaN's bytes

// One packed operand as a float.
template <class TM>
float operand(const std::vector<uint16_t>& data, size_t i) {
    TM t;
    std::memcpy(&t, &data[i], 2);
    return emu::to_float(t);
}

// A value of magnitude 2^lo .. 2^hi (or zero), of either sign.
float wide(std::mt19937_64& rng, int lo, int hi) {
    if (rng() % 16 == 0) return 0.f;
    const int e = lo + (int)(rng() % (unsigned)(hi - lo + 1));
    const float m = 1.f + (float)(rng() % (1u << 23)) / (float)(1u << 23);
    return (rng() % 2 ? -1.f : 1.f) * std::ldexp(m, e);
}

template <class TIn, class TM, int XPL>
int run(const Case& c, PackKernel pack, SumsKernel sums, int lo, int hi, std::mt19937_64& rng) {
    using namespace laic::km;
    const int n = c.n, d = c.d;
    const int dp = (int)emu::round_up(d, c.dp_multiple);
    std::vector<float> xf((size_t)n * d);
    for (auto& v : xf) v = wide(rng, lo, hi);
    const auto x_in = emu::rounded<TIn>(xf);
    const emu::Packed pts = emu::pack(pack, x_in, n, d, dp, XPL, c.row_multiple, laic::ROW_ONE, 1.f);

    // Members grouped by label, in index order within a cluster (as the counting sort leaves
    // them), cut into tasks of lengths from `cuts` (the cluster's rest last), with an empty task
    // after every fifth and 3 unused (empty) tasks at the end.
    std::vector<unsigned> labels(n);
    for (auto& l : labels) l = (unsigned)(rng() % (unsigned)c.k);
    std::vector<unsigned> members;
    std::vector<unsigned> starts{0};
    for (int k = 0; k < c.k; ++k) {
        for (int i = 0; i < n; ++i)
            if (labels[i] == (unsigned)k) members.push_back((unsigned)i);
        starts.push_back((unsigned)members.size());
    }
    // Every length mod SUM_UNROLL (8) once in ten.
    const unsigned cuts[] = {1, 7, 256, 9, 2, 300, 13, 3, 6, 5};
    std::vector<unsigned> begin, end;
    size_t cut = 0;
    int empty = 0, single = 0;
    unsigned longest = 0;
    for (int k = 0; k < c.k; ++k) {
        for (unsigned s = starts[k]; s < starts[k + 1];) {
            const unsigned len = std::min(cuts[cut++ % std::size(cuts)], starts[k + 1] - s);
            begin.push_back(s);
            end.push_back(s + len);
            single += len == 1;
            longest = std::max(longest, len);
            s += len;
            if (begin.size() % 5 == 0) {
                begin.push_back(s);
                end.push_back(s);
                ++empty;
            }
        }
    }
    for (int u = 0; u < 3; ++u, ++empty) {
        begin.push_back(0);
        end.push_back(0);
    }
    const int ntasks = (int)begin.size();

    // The partial sums, then a guard row: NaN bytes until written.
    std::vector<double> partial((size_t)(ntasks + 1) * d);
    for (auto& v : partial) std::memcpy(&v, &POISON, 8);
    const SumsParams p{pts.data.data(), members.data(), begin.data(), end.data(), partial.data(),
                       (unsigned long long)pts.rows_padded, ntasks, d, dp, 0};
    // src/backend/cuda/kmeans.rs `launch_sums`: a block per task and SUM_THREADS * SUM_COLS
    // columns.
    const unsigned groups = (unsigned)((d + SUM_THREADS * SUM_COLS - 1) / (SUM_THREADS * SUM_COLS));
    emu::launch({(unsigned)ntasks, groups}, {(unsigned)SUM_THREADS}, [&] { sums(p); });

    const size_t plane = pts.rows_padded * (size_t)dp;
    for (int t = 0; t < ntasks; ++t) {
        for (int j = 0; j < d; ++j) {
            double want = 0.0;
            for (unsigned m = begin[t]; m < end[t]; ++m) {
                const size_t off = (size_t)members[m] * dp + j;
                float v = operand<TM>(pts.data, off);
                if (XPL == 2) v += operand<TM>(pts.data, plane + off);
                want += (double)v;
            }
            const double got = partial[(size_t)t * d + j];
            if (std::memcmp(&got, &want, 8) != 0) {
                std::fprintf(stderr, "%s n=%d d=%d dp=%d: task %d (members %u..%u) column %d = %.17g, expected %.17g\n",
                             c.dtype, n, d, dp, t, begin[t], end[t], j, got, want);
                return 1;
            }
        }
    }
    for (int j = 0; j < d; ++j) {
        if (std::memcmp(&partial[(size_t)ntasks * d + j], &POISON, 8) != 0) {
            std::fprintf(stderr, "%s n=%d d=%d dp=%d: written past the last task's row (guard column %d)\n",
                         c.dtype, n, d, dp, j);
            return 1;
        }
    }
    std::printf("sums %-4s n=%-5d d=%-4d dp=%-4d np=%-5zu tasks=%-3d (%d empty, %d of one member, "
                "longest %u) ok\n",
                c.dtype, n, d, dp, pts.rows_padded, ntasks, empty, single, longest);
    return 0;
}

}  // namespace

int main() {
    using laic::km::SUM_COLS;
    std::mt19937_64 rng(20261127);
    int bad = 0;
    for (int d : {33, 100, 512, 768}) {
        // f16: subnormals to near the largest; bf16 and f32 (bf16 hi + lo): most of f32's range.
        bad += run<__half, __half, 1>({"f16", 777, d, 2, 64, 128}, laic_km_pack_f16, laic_km_sums_f16, -26, 14, rng);
        bad += run<__nv_bfloat16, __nv_bfloat16, 1>({"bf16", 701, d, 3, 64, 128}, laic_km_pack_bf16,
                                                    laic_km_sums_bf16, -100, 100, rng);
        bad += run<float, __nv_bfloat16, 2>({"f32", 659, d, 1, 64, 128}, laic_km_pack_f32, laic_km_sums_f32, -100,
                                            100, rng);
    }
    // The narrowest packing the kernel allows: rows of a multiple of SUM_COLS, no padding rows.
    bad += run<__half, __half, 1>({"f16", 611, 35, 2, SUM_COLS, 1}, laic_km_pack_f16, laic_km_sums_f16, -26, 14, rng);
    bad += run<__nv_bfloat16, __nv_bfloat16, 1>({"bf16", 503, 100, 1, SUM_COLS, 1}, laic_km_pack_bf16,
                                                laic_km_sums_bf16, -100, 100, rng);
    bad += run<float, __nv_bfloat16, 2>({"f32", 409, 35, 2, SUM_COLS, 1}, laic_km_pack_f32, laic_km_sums_f32, -100,
                                        100, rng);
    return bad ? 1 : 0;
}
