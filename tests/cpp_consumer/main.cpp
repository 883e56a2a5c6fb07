// C++ test program for an installed laic: laic.hpp over liblaic, checked against a naive
// double-precision GradNorm (DESIGN.md §1.3) on random inputs whose sizes are not multiples of
// any kernel tile, plus selection, error paths and handle ownership. Built by
// tests/cpp_consumer/CMakeLists.txt (C++17 and C++20, shared and static) and by
// scripts/test-cpp.sh with plain pkg-config. Exit status 0 = all checks passed.
#include <laic.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace {

int g_checks = 0, g_failures = 0;

#define CHECK(cond)                                                              \
  do {                                                                           \
    ++g_checks;                                                                  \
    if (!(cond)) {                                                               \
      ++g_failures;                                                              \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                            \
  } while (0)

// Runs `body`, which must throw laic::Error with `status`; the message must be the library's
// (laic_last_error()) and contain `fragment`.
template <class F>
void expect_error(laic::Status status, const char* fragment, F body, int line) {
  ++g_checks;
  try {
    body();
    ++g_failures;
    std::fprintf(stderr, "line %d: expected laic::Error, nothing thrown\n", line);
  } catch (const laic::Error& e) {
    const std::string what = e.what();
    const bool ok = e.status() == status && !what.empty() &&
                    what.find(fragment) != std::string::npos;
    if (!ok) {
      ++g_failures;
      std::fprintf(stderr, "line %d: got status %d, message \"%s\" (want %d, \"%s\")\n", line,
                   static_cast<int>(e.status()), what.c_str(), static_cast<int>(status),
                   fragment);
    }
  }
}
#define EXPECT_ERROR(status, fragment, ...) \
  expect_error(status, fragment, [&] { __VA_ARGS__; }, __LINE__)

// IEEE binary16 <-> float, round to nearest even (test-side helpers; no _Float16 needed).
uint16_t to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0));
  if (x >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (x < 0x38800000u) {                                               // subnormal or zero
    const uint32_t mant = (x & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(x >> 23) + 13 + 1;
    if (shift > 24) return static_cast<uint16_t>(sign);
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = ((x - 0x38000000u) >> 13);
  const uint32_t rem = x & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float from_half(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ffu;
  float f;
  if (e == 0) {
    f = std::ldexp(static_cast<float>(m), -24);
  } else if (e == 31) {
    f = m ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    f = std::ldexp(static_cast<float>(m | 0x400u), static_cast<int>(e) - 25);
  }
  uint32_t x;
  std::memcpy(&x, &f, 4);
  x |= sign;
  std::memcpy(&f, &x, 4);
  return f;
}

struct Naive {
  std::vector<double> score, conf;
  std::vector<uint32_t> assign;
  std::vector<bool> near_tie;  // top two logits within 1e-4: argmax may differ in f32
};

// GradNorm in double over dense row-major M×D and K×D (values as the library sees them).
Naive naive_gradnorm(const std::vector<double>& t, const std::vector<double>& w, size_t m,
                     size_t k, size_t d, double tau, double q, bool uniform) {
  auto normalized = [d](std::vector<double> a, size_t rows) {
    for (size_t i = 0; i < rows; ++i) {
      double n = 0;
      for (size_t j = 0; j < d; ++j) n += a[i * d + j] * a[i * d + j];
      n = std::sqrt(n);
      for (size_t j = 0; j < d; ++j) a[i * d + j] /= n;
    }
    return a;
  };
  const std::vector<double> tn = normalized(t, m), wn = normalized(w, k);
  Naive out{std::vector<double>(m), std::vector<double>(m), std::vector<uint32_t>(m),
            std::vector<bool>(m)};
  std::vector<double> z(k), p(k);
  for (size_t i = 0; i < m; ++i) {
    for (size_t c = 0; c < k; ++c) {
      double s = 0;
      for (size_t j = 0; j < d; ++j) s += tn[i * d + j] * wn[c * d + j];
      z[c] = s / tau;
    }
    size_t best = 0;
    for (size_t c = 1; c < k; ++c)
      if (z[c] > z[best]) best = c;
    double second = -INFINITY;
    for (size_t c = 0; c < k; ++c)
      if (c != best) second = std::max(second, z[c]);
    double sum = 0;
    for (size_t c = 0; c < k; ++c) sum += (p[c] = std::exp(z[c] - z[best]));
    for (size_t c = 0; c < k; ++c) p[c] /= sum;
    double dist = 0, tnorm = 0;
    for (size_t c = 0; c < k; ++c) {
      const double target = uniform ? 1.0 / static_cast<double>(k) : (c == best ? 1.0 : 0.0);
      const double diff = std::fabs(p[c] - target);
      dist = std::isinf(q) ? std::max(dist, diff) : dist + std::pow(diff, q);
    }
    for (size_t j = 0; j < d; ++j) {
      const double a = std::fabs(tn[i * d + j]);
      tnorm = std::isinf(q) ? std::max(tnorm, a) : tnorm + std::pow(a, q);
    }
    if (!std::isinf(q)) {
      dist = std::pow(dist, 1 / q);
      tnorm = std::pow(tnorm, 1 / q);
    }
    out.score[i] = dist * tnorm;
    out.assign[i] = static_cast<uint32_t>(best);
    out.conf[i] = p[best];
    out.near_tie[i] = z[best] - second < 1e-4;
  }
  return out;
}

// Per centre, the top_k assigned nouns by (value, index); the union, sorted.
std::vector<uint32_t> naive_select(const std::vector<float>& v, const std::vector<uint32_t>& a,
                                   size_t k, size_t top_k, bool smallest) {
  std::set<uint32_t> keep;
  for (uint32_t c = 0; c < k; ++c) {
    std::vector<uint32_t> idx;
    for (uint32_t i = 0; i < v.size(); ++i)
      if (a[i] == c) idx.push_back(i);
    std::stable_sort(idx.begin(), idx.end(), [&](uint32_t x, uint32_t y) {
      return smallest ? v[x] < v[y] : v[x] > v[y];
    });
    for (size_t r = 0; r < idx.size() && r < top_k; ++r) keep.insert(idx[r]);
  }
  return {keep.begin(), keep.end()};
}

void compare(const laic::GradNormScores& got, const Naive& want, double rtol, const char* what) {
  size_t bad_assign = 0, bad_score = 0, bad_conf = 0, ties = 0;
  for (size_t i = 0; i < want.score.size(); ++i) {
    if (want.near_tie[i]) {
      ++ties;
      continue;
    }
    bad_assign += got.assignment[i] != want.assign[i];
    bad_score += std::fabs(got.scores[i] - want.score[i]) > rtol * std::fabs(want.score[i]) + 1e-7;
    bad_conf += std::fabs(got.confidence[i] - want.conf[i]) > 1e-5;
  }
  if (bad_assign || bad_score || bad_conf)
    std::fprintf(stderr, "%s: %zu assignments, %zu scores, %zu confidences differ (%zu ties)\n",
                 what, bad_assign, bad_score, bad_conf, ties);
  CHECK(bad_assign == 0);
  CHECK(bad_score == 0);
  CHECK(bad_conf == 0);
  CHECK(ties < want.score.size() / 10);
}

constexpr size_t M = 301, K = 37, D = 67;

void test_f32_contiguous(const laic::Context& ctx, std::mt19937& rng) {
  std::normal_distribution<float> g;
  std::vector<float> t(M * D), w(K * D);
  for (auto& x : t) x = g(rng);
  for (auto& x : w) x = g(rng);
  const std::vector<double> td(t.begin(), t.end()), wd(w.begin(), w.end());
  for (double q : {2.0, 1.0, 3.5, static_cast<double>(INFINITY)}) {
    for (bool uniform : {false, true}) {
      laic::GradNormOptions o;
      o.tau = 0.05;
      o.q = q;
      o.target = uniform ? laic::Target::Uniform : laic::Target::OneHot;
      const auto got = laic::gradnorm_scores(ctx, laic::Matrix(t.data(), M, D),
                                             laic::Matrix(w.data(), K, D), o);
      compare(got, naive_gradnorm(td, wd, M, K, D, 0.05, q, uniform), 2e-4, "f32");
      const bool smallest = !uniform;
      const auto order = smallest ? laic::Order::Smallest : laic::Order::Largest;
      const auto sel = laic::select_nouns(got, K, 3, order);
      CHECK(sel == naive_select(got.scores, got.assignment, K, 3, smallest));
      CHECK(std::is_sorted(sel.begin(), sel.end()) && !sel.empty());
    }
  }
}

void test_f16_row_strided(const laic::Context& ctx, std::mt19937& rng) {
  // Rows padded to D + 5 elements; the padding holds NaN so that reading it would show.
  const size_t stride = D + 5;
  std::normal_distribution<float> g;
  std::vector<uint16_t> t(M * stride, to_half(NAN)), w(K * stride, to_half(NAN));
  std::vector<double> td(M * D), wd(K * D);
  for (size_t i = 0; i < M; ++i)
    for (size_t j = 0; j < D; ++j) td[i * D + j] = from_half(t[i * stride + j] = to_half(g(rng)));
  for (size_t i = 0; i < K; ++i)
    for (size_t j = 0; j < D; ++j) wd[i * D + j] = from_half(w[i * stride + j] = to_half(g(rng)));
  const auto got = laic::gradnorm_scores(ctx, laic::Matrix(t.data(), laic::Dtype::F16, M, D, stride),
                                         laic::Matrix(w.data(), laic::Dtype::F16, K, D, stride));
  compare(got, naive_gradnorm(td, wd, M, K, D, 0.02, 2.0, false), 2e-4, "f16 strided");
  // Same values as f32, contiguous: the same result.
  std::vector<float> tf(td.begin(), td.end()), wf(wd.begin(), wd.end());
  const auto f32 = laic::gradnorm_scores(ctx, laic::Matrix(tf.data(), M, D),
                                         laic::Matrix(wf.data(), K, D));
  CHECK(f32.assignment == got.assignment);
  CHECK(f32.scores == got.scores);
}

void test_raw_outputs_and_errors(const laic::Context& ctx, std::mt19937& rng) {
  std::normal_distribution<float> g;
  std::vector<float> t(M * D), w(K * D);
  for (auto& x : t) x = g(rng);
  for (auto& x : w) x = g(rng);
  const laic::Matrix nouns(t.data(), M, D), centres(w.data(), K, D);

  // Optional outputs may be NULL; the scores equal the full call's.
  std::vector<float> scores(M, -1.0f);
  laic::gradnorm_scores(ctx, nouns, centres, {}, scores.data(), nullptr, nullptr, M);
  CHECK(scores == laic::gradnorm_scores(ctx, nouns, centres).scores);

  // Failures throw with the library's message and write nothing.
  std::vector<float> poison(M, 7.0f);
  std::vector<uint32_t> poison_a(M, 7u);
  EXPECT_ERROR(laic::Status::InvalidArgument, "columns",
               laic::gradnorm_scores(ctx, nouns, laic::Matrix(w.data(), K, D - 1), {},
                                     poison.data(), poison_a.data(), nullptr, M));
  CHECK(std::string(laic_last_error()).find("columns") != std::string::npos);
  laic::GradNormOptions bad;
  bad.tau = 0;
  EXPECT_ERROR(laic::Status::InvalidArgument, "tau",
               laic::gradnorm_scores(ctx, nouns, centres, bad, poison.data(), poison_a.data(),
                                     nullptr, M));
  bad = {};
  bad.q = 0.5;
  EXPECT_ERROR(laic::Status::InvalidArgument, "q", laic::gradnorm_scores(ctx, nouns, centres, bad));
  EXPECT_ERROR(laic::Status::BufferTooSmall, "outputs",
               laic::gradnorm_scores(ctx, nouns, centres, {}, poison.data(), poison_a.data(),
                                     nullptr, M - 1));
  t[5] = NAN;
  EXPECT_ERROR(laic::Status::InvalidArgument, "nouns",
               laic::gradnorm_scores(ctx, nouns, centres, {}, poison.data(), poison_a.data(),
                                     nullptr, M));
  CHECK(std::all_of(poison.begin(), poison.end(), [](float x) { return x == 7.0f; }));
  CHECK(std::all_of(poison_a.begin(), poison_a.end(), [](uint32_t x) { return x == 7u; }));
  EXPECT_ERROR(laic::Status::InvalidArgument, "nouns",
               laic::gradnorm_scores(ctx, laic::Matrix(t.data(), 0, D), centres));
  EXPECT_ERROR(laic::Status::InvalidArgument, "stride",
               laic::gradnorm_scores(ctx, laic::Matrix(t.data(), M, D, D - 3), centres));

  // Selection: a capacity the result does not fit, assignments out of range.
  std::vector<float> v = {0.3f, 0.1f, 0.2f, 0.5f, 0.4f};
  std::vector<uint32_t> a = {0, 0, 1, 1, 1};
  uint32_t out[2] = {99, 99};
  EXPECT_ERROR(laic::Status::BufferTooSmall, "out_indices",
               laic::select_nouns(v.data(), a.data(), 5, 2, 2, laic::Order::Smallest, out, 2));
  CHECK(out[0] == 99 && out[1] == 99);
  CHECK(laic::select_nouns(v.data(), a.data(), 5, 2, 1) == (std::vector<uint32_t>{1, 2}));
  // n_centres comes from the caller: a huge one must not be allocated for.
  CHECK(laic::select_nouns(v.data(), a.data(), 5, size_t{1} << 40, 1) ==
        (std::vector<uint32_t>{1, 2}));
  CHECK(laic::select_nouns(v.data(), a.data(), 5, 2, 2, laic::Order::Largest) ==
        (std::vector<uint32_t>{0, 1, 3, 4}));
  a[4] = 2;
  EXPECT_ERROR(laic::Status::InvalidArgument, "", laic::select_nouns(v.data(), a.data(), 5, 2, 2));
}

void test_context_ownership(std::mt19937& rng) {
  laic::Context a(laic::Backend::Cpu, 2);
  CHECK(a.backend() == laic::Backend::Cpu);
  const LaicContext* raw = a.get();
  laic::Context b(std::move(a));
  CHECK(a.get() == nullptr && b.get() == raw);
  // A moved-from context is NULL to the library: an error, not a crash.
  std::vector<float> t(4 * 3, 1.0f);
  EXPECT_ERROR(laic::Status::InvalidArgument, "ctx",
               laic::gradnorm_scores(a, laic::Matrix(t.data(), 4, 3), laic::Matrix(t.data(), 2, 3)));
  laic::Context c;
  c = std::move(b);
  CHECK(c.get() == raw && c.backend() == laic::Backend::Cpu);
  try {
    laic::Context cuda(laic::Backend::Cuda);
    CHECK(cuda.backend() == laic::Backend::Cuda);
  } catch (const laic::Error& e) {
    CHECK(e.status() == laic::Status::NoDevice);
    CHECK(std::string(e.what()) == laic_last_error());
  }
  (void)rng;
}

#ifdef LAIC_HPP_HAS_SPAN
void test_spans(const laic::Context& ctx, std::mt19937& rng) {
  std::normal_distribution<float> g;
  std::vector<float> t(M * D), w(K * D);
  for (auto& x : t) x = g(rng);
  for (auto& x : w) x = g(rng);
  const laic::Matrix nouns(std::span<const float>(t), M, D), centres(std::span<const float>(w), K, D);
  std::vector<float> s(M), c(M);
  std::vector<uint32_t> a(M);
  laic::gradnorm_scores(ctx, nouns, centres, {}, std::span<float>(s), std::span<uint32_t>(a),
                        std::span<float>(c));
  const auto want = laic::gradnorm_scores(ctx, nouns, centres);
  CHECK(s == want.scores && a == want.assignment && c == want.confidence);
  CHECK(laic::select_nouns(std::span<const float>(s), std::span<const uint32_t>(a), K, 2) ==
        laic::select_nouns(want, K, 2));
  std::vector<uint32_t> buf(K * 2);
  auto got = laic::select_nouns(std::span<const float>(s), std::span<const uint32_t>(a), K, 2,
                                laic::Order::Smallest, std::span<uint32_t>(buf));
  CHECK(std::vector<uint32_t>(got.begin(), got.end()) == laic::select_nouns(want, K, 2));
  EXPECT_ERROR(laic::Status::InvalidArgument, "needs",
               laic::Matrix(std::span<const float>(t).first(M * D - 1), M, D));
  EXPECT_ERROR(laic::Status::InvalidArgument, "assignment",
               laic::select_nouns(std::span<const float>(s).first(M - 1),
                                  std::span<const uint32_t>(a), K, 2));
  EXPECT_ERROR(laic::Status::BufferTooSmall, "outputs",
               laic::gradnorm_scores(ctx, nouns, centres, {}, std::span<float>(s).first(M - 1)));
}
#endif

}  // namespace

int main() {
  std::mt19937 rng(20261127);
  const std::string v = laic::version();
  CHECK(std::count(v.begin(), v.end(), '.') == 2);
#ifdef LAIC_EXPECTED_VERSION
  CHECK(v == LAIC_EXPECTED_VERSION);
#endif
  try {
    const laic::Context ctx(laic::Backend::Cpu);
    test_f32_contiguous(ctx, rng);
    test_f16_row_strided(ctx, rng);
    test_raw_outputs_and_errors(ctx, rng);
    test_context_ownership(rng);
#ifdef LAIC_HPP_HAS_SPAN
    test_spans(ctx, rng);
    std::printf("C++20: std::span overloads tested\n");
#endif
  } catch (const laic::Error& e) {
    std::fprintf(stderr, "unexpected laic::Error (status %d): %s\n", static_cast<int>(e.status()),
                 e.what());
    return 2;
  }
  std::printf("laic %s: %d checks, %d failed\n", v.c_str(), g_checks, g_failures);
  return g_failures ? 1 : 0;
}
