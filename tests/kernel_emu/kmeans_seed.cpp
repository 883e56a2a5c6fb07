// kernels/kmeans_seed.cuh on the emulated device (cuda_emu.hpp): the block sums and candidate
// potentials against the same fixed-order sums computed sequentially (bit for bit), the picks
// against the host's k-means++ draw (`partition_point` over a sequential cumulative sum, as in
// src/kmeans.rs), and the accepted candidate's update of the nearest distances; for sizes that
// leave the last block, or its last threads, partly or wholly empty. Prints one line per case;
// exits non-zero on the first mismatch.

#include "cuda_emu.hpp"
#include "kmeans_seed.cuh"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using laic::seed::SEED_THREADS;
using laic::seed::SeedParams;

namespace {

bool same(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// `zero_head`: the first thread's points are all at distance 0 (chosen centres), so that the
// draw r = 0 tests where the cumulative sum first reaches its target.
int run(unsigned long long n, unsigned blocks, int trials, bool zero_head, std::mt19937_64& rng) {
    const unsigned long long range =
        ((n + blocks - 1) / blocks + SEED_THREADS - 1) / SEED_THREADS * SEED_THREADS;
    std::uniform_real_distribution<float> u(0.0f, 4.0f);
    std::vector<float> closest(n), cand(n * trials);
    for (auto& v : closest) v = rng() % 17 == 0 ? 0.0f : u(rng);
    for (auto& v : cand) v = u(rng);
    if (zero_head) std::fill(closest.begin(), closest.begin() + std::min(n, range / SEED_THREADS), 0.0f);
    std::vector<double> sub((size_t)blocks * SEED_THREADS, NAN), part((size_t)blocks * trials, NAN);
    std::vector<unsigned> draw_block(trials), picked(trials, 0xdeadbeefu);
    std::vector<double> draw_base(trials), draw_target(trials);
    SeedParams p{closest.data(), cand.data(), sub.data(), part.data(), draw_block.data(),
                 draw_base.data(), draw_target.data(), picked.data(), n, range, trials, 0};

    // The grouping of the sums: thread sub-ranges in index order, threads in order, blocks in
    // order.
    const unsigned long long len = range / SEED_THREADS;
    auto grouped = [&](auto value, std::vector<double>* thread_sums) {
        std::vector<double> block_sums(blocks);
        for (unsigned b = 0; b < blocks; ++b) {
            double bs = 0.0;
            for (int t = 0; t < SEED_THREADS; ++t) {
                double s = 0.0;
                for (unsigned long long i = b * range + t * len; i < std::min(n, b * range + (t + 1) * len); ++i)
                    s += value(i);
                if (thread_sums) (*thread_sums)[(size_t)b * SEED_THREADS + t] = s;
                bs += s;
            }
            block_sums[b] = bs;
        }
        return block_sums;
    };

    // 1. Sums of the nearest distances.
    emu::launch({blocks}, {SEED_THREADS}, [&] { laic::seed::sums_body(p); });
    std::vector<double> want_sub((size_t)blocks * SEED_THREADS);
    const auto want_part = grouped([&](unsigned long long i) { return (double)closest[i]; }, &want_sub);
    for (size_t e = 0; e < want_sub.size(); ++e) {
        if (!same(sub[e], want_sub[e])) {
            std::fprintf(stderr, "n=%llu: sub[%zu] = %.17g, expected %.17g\n", n, e, sub[e], want_sub[e]);
            return 1;
        }
    }
    for (unsigned b = 0; b < blocks; ++b) {
        if (!same(part[b], want_part[b])) {
            std::fprintf(stderr, "n=%llu: part[%u] = %.17g, expected %.17g\n", n, b, part[b], want_part[b]);
            return 1;
        }
    }

    // 2. Draws, as the host makes them from the block sums, against partition_point.
    std::vector<double> incl(blocks);
    double total = 0.0;
    for (unsigned b = 0; b < blocks; ++b) incl[b] = total += part[b];
    std::vector<double> cumsum(n);
    double acc = 0.0;
    for (unsigned long long i = 0; i < n; ++i) cumsum[i] = acc += closest[i];
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    for (int t = 0; t < trials; ++t) {
        const double r = (t == 0 ? 0.0 : unit(rng)) * total;
        const unsigned b = (unsigned)(std::partition_point(incl.begin(), incl.end(), [&](double c) { return c < r; }) - incl.begin());
        draw_block[t] = std::min(b, blocks - 1);
        draw_base[t] = draw_block[t] == 0 ? 0.0 : incl[draw_block[t] - 1];
        draw_target[t] = r;
    }
    emu::launch({1}, {32}, [&] { laic::seed::pick_body(p); });
    int bad = 0;
    for (int t = 0; t < trials; ++t) {
        const unsigned long long want = std::min<unsigned long long>(
            std::partition_point(cumsum.begin(), cumsum.end(), [&](double c) { return c < draw_target[t]; }) - cumsum.begin(),
            n - 1);
        if (picked[t] != want) {
            std::fprintf(stderr, "n=%llu draw %d (r = %.17g): picked %u, the host picks %llu\n", n, t,
                         draw_target[t], picked[t], want);
            bad = 1;
        }
    }
    if (bad) return 1;

    // 3. Potentials of the candidates.
    emu::launch({blocks}, {SEED_THREADS}, [&] { laic::seed::potentials_body(p); });
    for (int t = 0; t < trials; ++t) {
        const auto want = grouped([&](unsigned long long i) { return (double)std::min(closest[i], cand[i * trials + t]); },
                                  nullptr);
        for (unsigned b = 0; b < blocks; ++b) {
            if (!same(part[(size_t)b * trials + t], want[b])) {
                std::fprintf(stderr, "n=%llu: potential part[%u][%d] = %.17g, expected %.17g\n", n, b, t,
                             part[(size_t)b * trials + t], want[b]);
                return 1;
            }
        }
    }

    // 4. Accepting a candidate.
    p.best = trials - 1;
    std::vector<float> want_closest = closest;
    for (unsigned long long i = 0; i < n; ++i) want_closest[i] = std::min(closest[i], cand[i * trials + p.best]);
    emu::launch({2}, {64}, [&] { laic::seed::accept_body(p); });
    if (closest != want_closest) {
        std::fprintf(stderr, "n=%llu: the accepted candidate's distances differ\n", n);
        return 1;
    }
    std::printf("seed n=%-6llu blocks=%-3u range=%-5llu trials=%-2d ok\n", n, blocks, range, trials);
    return 0;
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261127);
    int bad = 0;
    bad += run(1, 1, 2, false, rng);
    bad += run(300, 1, 3, true, rng);
    bad += run(5003, 3, 9, true, rng);
    bad += run(20000, 7, 5, false, rng);
    bad += run(1000, 5, 4, true, rng);  // the last block holds no points
    return bad ? 1 : 0;
}
