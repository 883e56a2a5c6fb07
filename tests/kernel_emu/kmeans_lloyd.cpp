// kernels/kmeans_lloyd.cuh on the emulated device (cuda_emu.hpp): the centre update against
// the host's `update_centres` (src/kmeans.rs, restated below per cluster), bit for bit, for
// both metrics, widths that are not multiples of the block (1, 100, 300, 512), empty clusters
// and a cluster whose members sum to zero; and the count of changed labels. Prints one line
// per case; exits non-zero on the first mismatch.

#include "cuda_emu.hpp"
#include "kmeans_lloyd.cuh"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using laic::lloyd::ChangedParams;
using laic::lloyd::UpdateParams;

namespace {

// src/kmeans.rs `update_centres`, for one cluster: the new centre in place and its squared move.
double host_update(const double* s, unsigned count, bool spherical, float* centre, int d) {
    double scale = 0.0;
    if (spherical) {
        double sq = 0.0;
        for (int j = 0; j < d; ++j) sq += s[j] * s[j];
        const double norm = std::sqrt(sq);
        scale = norm > 0.0 ? 1.0 / norm : 0.0;
    } else if (count > 0) {
        scale = 1.0 / (double)count;
    }
    if (scale == 0.0) return 0.0;
    double shift = 0.0;
    for (int j = 0; j < d; ++j) {
        const float v = (float)(s[j] * scale);
        const double diff = (double)(v - centre[j]);
        shift += diff * diff;
        centre[j] = v;
    }
    return shift;
}

int update_case(int k, int d, bool spherical, std::mt19937_64& rng) {
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<unsigned> starts(k + 1, 0);
    for (int c = 0; c < k; ++c) {
        const unsigned size = c % 5 == 3 ? 0 : (unsigned)(rng() % 1000) + 1;
        starts[c + 1] = starts[c] + size;
    }
    std::vector<double> sums((size_t)k * d);
    for (int c = 0; c < k; ++c) {
        const unsigned size = starts[c + 1] - starts[c];
        for (int j = 0; j < d; ++j) {
            // Empty clusters and cluster 1 sum to zero.
            sums[(size_t)c * d + j] = size == 0 || c == 1 ? 0.0 : normal(rng) * std::sqrt((double)size);
        }
    }
    std::vector<float> old((size_t)k * d);
    for (auto& v : old) v = (float)normal(rng);
    std::vector<float> got((size_t)k * d, NAN);
    std::vector<double> moved(k, NAN);
    unsigned empty = 0;
    const UpdateParams p{sums.data(), starts.data(), old.data(), got.data(), moved.data(), &empty,
                         k, d, spherical ? 1 : 0, 0};
    emu::launch({(unsigned)k}, {laic::lloyd::UPDATE_THREADS}, [&] { laic::lloyd::update_body(p); });

    std::vector<float> want = old;
    unsigned want_empty = 0;
    for (int c = 0; c < k; ++c) {
        const unsigned count = starts[c + 1] - starts[c];
        want_empty += count == 0;
        const double shift = host_update(&sums[(size_t)c * d], count, spherical, &want[(size_t)c * d], d);
        if (std::memcmp(&shift, &moved[c], sizeof shift) != 0) {
            std::fprintf(stderr, "k=%d d=%d spherical=%d: moved[%d] = %.17g, expected %.17g\n", k, d,
                         spherical, c, moved[c], shift);
            return 1;
        }
    }
    if (std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) != 0) {
        for (size_t e = 0; e < want.size(); ++e) {
            if (std::memcmp(&want[e], &got[e], sizeof(float)) != 0) {
                std::fprintf(stderr, "k=%d d=%d spherical=%d: centre value %zu = %.9g, expected %.9g\n",
                             k, d, spherical, e, got[e], want[e]);
                break;
            }
        }
        return 1;
    }
    if (empty != want_empty) {
        std::fprintf(stderr, "k=%d d=%d: %u empty clusters counted, expected %u\n", k, d, empty, want_empty);
        return 1;
    }
    std::printf("update  k=%-4d d=%-4d %-9s empty=%-3u ok\n", k, d, spherical ? "spherical" : "euclidean",
                empty);
    return 0;
}

int changed_case(unsigned long long n, unsigned grid, std::mt19937_64& rng) {
    std::vector<unsigned> a(n), b(n);
    unsigned want = 0;
    for (unsigned long long i = 0; i < n; ++i) {
        a[i] = (unsigned)(rng() % 7);
        b[i] = rng() % 4 == 0 ? (unsigned)(rng() % 7) : a[i];
        want += a[i] != b[i];
    }
    unsigned changed = 0;
    const ChangedParams p{a.data(), b.data(), &changed, n};
    emu::launch({grid}, {256}, [&] { laic::lloyd::changed_body(p); });
    if (changed != want) {
        std::fprintf(stderr, "n=%llu: %u changed labels counted, expected %u\n", n, changed, want);
        return 1;
    }
    std::printf("changed n=%-6llu grid=%-3u changed=%-5u ok\n", n, grid, changed);
    return 0;
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261127);
    int bad = 0;
    for (bool spherical : {false, true}) {
        bad += update_case(7, 1, spherical, rng);
        bad += update_case(9, 100, spherical, rng);
        bad += update_case(6, 300, spherical, rng);
        bad += update_case(4, 512, spherical, rng);
    }
    bad += changed_case(1, 1, rng);
    bad += changed_case(5003, 3, rng);
    bad += changed_case(20000, 2, rng);
    return bad ? 1 : 0;
}
