// kernels/counting_sort.cuh on the emulated device (cuda_emu.hpp) against a sequential stable
// counting sort: members, cluster ranges and tasks, on labels of awkward sizes (n not a
// multiple of the chunk or of 32, empty clusters, one huge cluster, labels out of range),
// with every output poisoned first. Prints one line per case; exits non-zero on the first
// mismatch.

#include "cuda_emu.hpp"
#include "counting_sort.cuh"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

using laic::sort::SortParams;

namespace {

constexpr unsigned POISON = 0xdeadbeefu;

struct Case {
    const char* name;
    unsigned n, k, chunk, task_chunk;
    unsigned scan_threads;
    // Labels: uniform below k, or (skewed) half of them 0; `bad` of them k + something.
    bool skewed;
    unsigned bad;
};

int check(const char* what, const Case& c, const std::vector<unsigned>& got,
          const std::vector<unsigned>& want) {
    for (size_t i = 0; i < want.size(); ++i) {
        if (got[i] != want[i]) {
            std::fprintf(stderr, "%s: %s[%zu] = %u, expected %u\n", c.name, what, i, got[i],
                         want[i]);
            return 1;
        }
    }
    return 0;
}

int run(const Case& c, std::mt19937_64& rng) {
    std::vector<unsigned> labels(c.n);
    for (auto& l : labels) {
        l = (c.skewed && rng() % 2 == 0) ? 0 : (unsigned)(rng() % c.k);
    }
    for (unsigned b = 0; b < c.bad; ++b) labels[rng() % c.n] = c.k + (unsigned)(rng() % 3);

    const unsigned nchunks = c.n == 0 ? 1 : (c.n + c.chunk - 1) / c.chunk;
    const unsigned max_tasks = c.n / c.task_chunk + c.k;
    std::vector<unsigned> counts((size_t)c.k * nchunks, 0);
    std::vector<unsigned> starts(c.k + 1, POISON), tasks(c.k + 1, POISON);
    std::vector<unsigned> begin(max_tasks, POISON), end(max_tasks, POISON);
    std::vector<unsigned> members(c.n, POISON);
    const SortParams p{labels.data(), counts.data(), starts.data(), tasks.data(), begin.data(),
                       end.data(), members.data(), c.n, c.k, nchunks, c.chunk, c.task_chunk,
                       max_tasks};
    const unsigned walk_blocks = (nchunks * 32 + 255) / 256;
    emu::launch({walk_blocks}, {256}, [&] { laic::sort::walk<false>(p); });
    emu::launch({1}, {c.scan_threads}, [&] { laic::sort::scan_body(p); });
    emu::launch({walk_blocks}, {256}, [&] { laic::sort::walk<true>(p); });

    // The sequential reference.
    std::vector<unsigned> want_starts(c.k + 1, 0);
    for (unsigned l : labels)
        if (l < c.k) ++want_starts[l + 1];
    for (unsigned k = 0; k < c.k; ++k) want_starts[k + 1] += want_starts[k];
    const unsigned valid = want_starts[c.k];
    std::vector<unsigned> fill(want_starts.begin(), want_starts.end() - 1);
    std::vector<unsigned> want_members(c.n, POISON);
    for (unsigned i = 0; i < c.n; ++i)
        if (labels[i] < c.k) want_members[fill[labels[i]]++] = i;
    std::vector<unsigned> want_tasks(c.k + 1, 0), want_begin(max_tasks, 0), want_end(max_tasks, 0);
    unsigned t = 0;
    for (unsigned k = 0; k < c.k; ++k) {
        want_tasks[k] = t;
        for (unsigned s = want_starts[k]; s < want_starts[k + 1]; s += c.task_chunk, ++t) {
            want_begin[t] = s;
            want_end[t] = std::min(s + c.task_chunk, want_starts[k + 1]);
        }
    }
    want_tasks[c.k] = t;

    int bad = check("starts", c, starts, want_starts) + check("cluster_tasks", c, tasks, want_tasks) +
              check("task_begin", c, begin, want_begin) + check("task_end", c, end, want_end) +
              check("members", c, members, want_members);
    std::printf("%-28s n=%-6u k=%-5u chunk=%-5u chunks=%-5u tasks=%-5u valid=%-6u %s\n", c.name,
                c.n, c.k, c.chunk, nchunks, t, valid, bad ? "MISMATCH" : "ok");
    return bad;
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261127);
    const Case cases[] = {
        {"one point", 1, 1, 32, 256, 256, false, 0},
        {"one cluster", 1000, 1, 64, 256, 1024, false, 0},
        {"awkward sizes", 4321, 7, 96, 100, 96, false, 0},
        {"many chunks", 6001, 300, 32, 256, 256, false, 0},
        {"one big chunk", 9001, 1000, 16384, 256, 256, false, 0},
        {"skewed", 5011, 64, 160, 7, 160, true, 0},
        {"skewed, tiny tasks", 3000, 50, 128, 1, 256, true, 0},
        {"more clusters than points", 100, 500, 32, 256, 64, false, 0},
        {"labels out of range", 2999, 13, 64, 16, 1024, false, 57},
        {"most labels out of range", 500, 3, 32, 256, 32, false, 2000},
    };
    int bad = 0;
    for (const Case& c : cases) bad += run(c, rng);
    return bad ? 1 : 0;
}
