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


// The library keeps τ, q, tol in f32 and widens them for the C structs (0.02f != 0.02).
bool same(double a, double b) { return static_cast<float>(a) == static_cast<float>(b); }

// The C++ option structs repeat the library's defaults: they must not drift.
void test_defaults_match_the_library() {
  LaicKMeansOptions k;
  laic_kmeans_options_default(&k, sizeof k);
  const LaicKMeansOptions kc = laic::KMeansOptions{}.to_c();
  laic::KMeansOptions kd;
  CHECK(kd.n_clusters == k.n_clusters && kd.max_iter == k.max_iter && kd.n_redo == k.n_redo &&
        same(kd.tol, k.tol) && kd.seed == k.seed && static_cast<uint32_t>(kd.metric) == k.metric);
  CHECK(kc.n_clusters == k.n_clusters);
  LaicRetrieveOptions r;
  laic_retrieve_options_default(&r, sizeof r);
  laic::RetrieveOptions rd;
  CHECK(same(rd.tau, r.tau) && rd.normalize == (r.normalize != 0) && rd.top_n == r.top_n);
  LaicPipelineOptions p;
  laic_pipeline_options_default(&p, sizeof p);
  laic::PipelineOptions pd;
  CHECK(pd.n_clusters == p.n_clusters && pd.n_centres == p.n_centres && same(pd.tau, p.tau) &&
        same(pd.q, p.q) && same(pd.tau_r, p.tau_r) && pd.top_k == p.top_k &&
        static_cast<uint32_t>(pd.filter) == p.filter &&
        static_cast<uint32_t>(pd.centres_metric) == p.centres_metric &&
        pd.centres_n_redo == p.centres_n_redo && pd.n_redo == p.n_redo &&
        pd.max_iter == p.max_iter && pd.n_names == p.n_names && pd.seed == p.seed);
  LaicGradNormOptions g;
  laic_gradnorm_options_default(&g, sizeof g);
  laic::GradNormOptions gd;
  CHECK(same(gd.tau, g.tau) && same(gd.q, g.q) && static_cast<uint32_t>(gd.target) == g.target &&
        gd.normalize == (g.normalize != 0));
}

void test_metrics() {
  // Values from scikit-learn 1.9 (normalized_mutual_info_score, adjusted_rand_score).
  const int64_t y[] = {0, 0, 1, 1, 2, 2, 2}, p[] = {1, 1, 0, 0, 0, 2, 2};
  const auto m = laic::cluster_metrics(y, p, 7);
  CHECK(std::fabs(m.acc - 6.0 / 7.0) < 1e-12);
  CHECK(std::fabs(m.nmi - 0.7471790950662619) < 1e-12);
  CHECK(std::fabs(m.ari - 0.475) < 1e-12);
  const int64_t relabelled[] = {5, 5, -1, -1, 9, 9, 9};
  const auto perfect = laic::cluster_metrics(y, relabelled, 7);
  CHECK(perfect.acc == 1.0 && std::fabs(perfect.nmi - 1) < 1e-12 && std::fabs(perfect.ari - 1) < 1e-12);
  EXPECT_ERROR(laic::Status::InvalidArgument, "", laic::cluster_metrics(y, p, 0));
}

// Three separated blobs in D = 9: k-means, retrieval and the pipeline must find them.
void test_kmeans_retrieve_pipeline(const laic::Context& ctx, std::mt19937& rng) {
  const size_t n = 151, d = 9, k = 3;
  std::normal_distribution<float> g;
  std::vector<float> x(n * d);
  std::vector<int64_t> truth(n);
  for (size_t i = 0; i < n; ++i) {
    truth[i] = static_cast<int64_t>(i % k);
    for (size_t j = 0; j < d; ++j) x[i * d + j] = 0.05f * g(rng) + (j == 2 * (i % k) ? 1.0f : 0.0f);
  }
  const laic::Matrix xm(x.data(), n, d);

  laic::KMeansOptions ko;
  ko.n_clusters = k;
  ko.n_redo = 2;
  const auto km = laic::kmeans(ctx, xm, ko);
  double objective = 0;
  size_t wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    double best = INFINITY;
    uint32_t arg = 0;
    for (uint32_t c = 0; c < k; ++c) {
      double s = 0;
      for (size_t j = 0; j < d; ++j) {
        const double diff = double(x[i * d + j]) - km.centres[c * d + j];
        s += diff * diff;
      }
      if (s < best) best = s, arg = c;
    }
    objective += best;
    wrong += arg != km.labels[i];
  }
  CHECK(wrong == 0);
  CHECK(std::fabs(objective - km.objective) <= 1e-4 * objective);
  std::vector<int64_t> pred(km.labels.begin(), km.labels.end());
  CHECK(laic::cluster_metrics(truth.data(), pred.data(), n).acc == 1.0);
  ko.n_clusters = n + 1;
  EXPECT_ERROR(laic::Status::InvalidArgument, "", laic::kmeans(ctx, xm, ko));
  struct Cancel {
    static int32_t fn(void* user, LaicStage, double) { return ++*static_cast<int*>(user) > 0; }
  };
  int calls = 0;
  ko.n_clusters = k;
  EXPECT_ERROR(laic::Status::Cancelled, "", laic::kmeans(ctx, xm, ko, &Cancel::fn, &calls));
  CHECK(calls == 1);

  // Retrieval against a naive double computation; nouns = 5 rows of the images.
  const size_t m = 5;
  std::vector<float> t(x.begin(), x.begin() + m * d);
  laic::RetrieveOptions ro;
  ro.tau = 0.1;
  ro.top_n = 2;
  const auto rr = laic::retrieve(ctx, xm, laic::Matrix(t.data(), m, d), ro);
  double worst = 0;
  size_t bad_top = 0;
  auto norm = [d](const float* v) {
    double s = 0;
    for (size_t j = 0; j < d; ++j) s += double(v[j]) * v[j];
    return std::sqrt(s);
  };
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> a(m);
    double mx = -INFINITY, sum = 0;
    for (size_t r = 0; r < m; ++r) {
      double s = 0;
      for (size_t j = 0; j < d; ++j) s += double(x[i * d + j]) * t[r * d + j];
      a[r] = s / (norm(&x[i * d]) * norm(&t[r * d])) / 0.1;
      mx = std::max(mx, a[r]);
    }
    for (auto& v : a) sum += (v = std::exp(v - mx));
    for (auto& v : a) v /= sum;
    std::vector<double> f(d, 0.0);
    for (size_t r = 0; r < m; ++r)
      for (size_t j = 0; j < d; ++j) f[j] += a[r] * t[r * d + j] / norm(&t[r * d]);
    double fn = 0;
    for (double v : f) fn += v * v;
    fn = std::sqrt(fn);
    for (size_t j = 0; j < d; ++j)
      worst = std::max(worst, std::fabs(f[j] / fn - rr.features[i * d + j]));
    const size_t best = static_cast<size_t>(std::max_element(a.begin(), a.end()) - a.begin());
    bad_top += rr.top_indices[i * 2] != best ||
               std::fabs(rr.top_weights[i * 2] - a[best]) > 1e-5;
  }
  CHECK(worst < 1e-5);
  CHECK(bad_top == 0);

  // The pipeline with the blob rows as nouns, names and labels.
  const char* names[] = {"zero", "one", "two", "zero again", "one again"};
  laic::PipelineOptions po;
  po.n_clusters = k;
  po.n_centres = 6;
  po.top_k = 2;
  po.tau = 0.1;
  po.n_redo = 2;
  const laic::Matrix nouns(t.data(), m, d);
  const auto res = laic::pipeline_run(ctx, xm, &nouns, po, nullptr, names, truth.data());
  CHECK(res.n_clusters() == k && res.n_centres() == 6);
  CHECK(res.labels().size() == n);
  CHECK(res.metrics().acc == 1.0);
  const auto sel = res.selected();
  CHECK(!sel.empty() && std::is_sorted(sel.begin(), sel.end()));
  for (size_t c = 0; c < k; ++c) {
    const auto ids = res.cluster_nouns(c);
    const auto labels = res.cluster_names(c);
    CHECK(ids.size() == labels.size() && !ids.empty());
    for (size_t i = 0; i < ids.size() && i < labels.size(); ++i) CHECK(labels[i] == names[ids[i]]);
  }
  CHECK(res.objective() > 0);
  const auto bare = laic::pipeline_run(ctx, xm, &nouns, po);
  EXPECT_ERROR(laic::Status::InvalidArgument, "", bare.metrics());
  EXPECT_ERROR(laic::Status::InvalidArgument, "", bare.cluster_names(0));
  po.n_clusters = 0;
  EXPECT_ERROR(laic::Status::InvalidArgument, "", laic::pipeline_run(ctx, xm, &nouns, po));
}

// ClipModel on the committed random CLIP fixture (tests/fixtures/clip/hf, embed_dim 20):
// rows equal transformers' (tests/fixtures/clip/expected.json, tolerance as tests/clip.rs),
// are unit-norm, a batch row equals the prompt alone, errors carry the library's message,
// and the handle moves.
void test_clip(const laic::Context& ctx) {
  const std::string dir = LAIC_CLIP_FIXTURES;
  laic::ClipModel model(ctx, dir + "/hf");
  const size_t d = model.embed_dim();
  CHECK(d == 20);
  // expected.json: hf.text[0] ("a photo of a cat.") and hf.image[1] (img1.png).
  const float want_text[20] = {
      -1.22183844e-01f, -2.54258215e-02f, 1.70700505e-01f, -2.27171496e-01f, 1.09129794e-01f,
      8.34461004e-02f,  -1.52519450e-01f, -1.79679662e-01f, 1.35534450e-01f, -7.64526576e-02f,
      2.31105573e-02f,  3.30761133e-04f,  3.13780420e-02f,  2.75021821e-01f, -3.40552777e-01f,
      2.13692442e-01f,  -1.91224918e-01f, 4.02356505e-01f,  -5.84427595e-01f, -1.61973029e-01f};
  const float want_image[20] = {
      -4.89698574e-02f, 3.94973829e-02f,  2.13682383e-01f,  -3.23710769e-01f, -1.01239137e-01f,
      3.52807716e-02f,  -1.78751618e-01f, -3.61597508e-01f, 9.26374123e-02f,  3.34291339e-01f,
      -1.92526653e-01f, -3.26122999e-01f, 5.42833433e-02f,  -1.10357881e-01f, -1.12418756e-01f,
      1.38473243e-01f,  2.23474160e-01f,  -5.41359365e-01f, -5.41832596e-02f, 1.21466614e-01f};
  const std::vector<float> t = model.encode_texts(ctx, {"a photo of a cat.", "", "itap of a dog."});
  const std::vector<float> i = model.encode_image_files(
      ctx, {dir + "/images/img0.png", dir + "/images/img1.png"});
  CHECK(t.size() == 3 * d && i.size() == 2 * d);
  if (t.size() != 3 * d || i.size() != 2 * d) return;
  float err = 0;
  for (size_t j = 0; j < d; ++j)
    err = std::max({err, std::fabs(t[j] - want_text[j]), std::fabs(i[d + j] - want_image[j])});
  CHECK(err <= 1e-4f);
  for (size_t r = 0; r < 5; ++r) {
    const float* row = r < 3 ? &t[r * d] : &i[(r - 3) * d];
    double n2 = 0;
    for (size_t j = 0; j < d; ++j) n2 += double(row[j]) * row[j];
    CHECK(std::fabs(std::sqrt(n2) - 1.0) <= 1e-5);
  }
  const std::vector<float> alone = model.encode_texts(ctx, {"itap of a dog."});
  float diff = 0;
  for (size_t j = 0; j < d; ++j) diff = std::max(diff, std::fabs(alone[j] - t[2 * d + j]));
  CHECK(diff <= 1e-5f);
  // Decoded pixels: a flat grey 40x30 image twice, the second inside a wider buffer.
  std::vector<uint8_t> grey(30 * 40 * 3, 128), wide(30 * 50 * 3, 128);
  const LaicImageRgb8 imgs[2] = {{grey.data(), 40, 30, 120}, {wide.data(), 40, 30, 150}};
  const std::vector<float> g = model.encode_images_rgb8(ctx, imgs, 2);
  CHECK(g.size() == 2 * d && std::equal(g.begin(), g.begin() + d, g.begin() + d));
  int calls = 0;
  struct Counter {
    static int32_t fn(void* user, LaicStage stage, double) {
      ++*static_cast<int*>(user);
      return stage == LAIC_STAGE_TEXT_ENCODING ? 0 : 1;
    }
  };
  model.encode_texts(ctx, {"x"}, Counter::fn, &calls);
  CHECK(calls > 0);

  EXPECT_ERROR(laic::Status::Io, "no-such-model", laic::ClipModel(ctx, dir + "/no-such-model"));
  EXPECT_ERROR(laic::Status::Io, "missing.png",
               model.encode_image_files(ctx, {dir + "/images/missing.png"}));
  EXPECT_ERROR(laic::Status::InvalidArgument, "", model.encode_texts(ctx, {}));
  EXPECT_ERROR(laic::Status::Cancelled, "",
               model.encode_image_files(ctx, {dir + "/images/img0.png"}, Counter::fn, &calls));

  // Image file options: a sideways JPEG (EXIF orientation 6) turned upright differs from its
  // stored pixels, which equal orient1.jpg's; a large JPEG drafted differs; unreadable files
  // get statuses and zero rows when skipping.
  const std::string pre = dir + "/preprocess/";
  laic::ImageFileOptions upright;
  upright.exif_orientation = true;
  const auto plain = model.encode_image_files(ctx, {pre + "orient6.jpg", pre + "orient1.jpg"});
  const auto turned = model.encode_image_files(ctx, {pre + "orient6.jpg"}, upright);
  CHECK(plain.size() == 2 * d && turned.size() == d);
  if (plain.size() == 2 * d && turned.size() == d) {
    CHECK(std::equal(plain.begin(), plain.begin() + d, plain.begin() + d));
    CHECK(!std::equal(turned.begin(), turned.end(), plain.begin()));
  }
  laic::ImageFileOptions draft;
  draft.decode = laic::ImageDecode::Draft;
  CHECK(model.encode_image_files(ctx, {pre + "draft8.jpg"}, draft) !=
        model.encode_image_files(ctx, {pre + "draft8.jpg"}));
  const laic::ImageFileEmbeddings some = model.encode_image_files_skipping(
      ctx, {dir + "/images/img1.png", dir + "/images/missing.png"});
  CHECK(some.status.size() == 2 && some.status[0] == LAIC_STATUS_OK &&
        some.status[1] == LAIC_STATUS_IO);
  if (some.values.size() == 2 * d) {
    CHECK(std::equal(some.values.begin(), some.values.begin() + d, i.begin() + d));
    CHECK(std::all_of(some.values.begin() + d, some.values.end(), [](float v) { return v == 0; }));
  } else {
    CHECK(false);
  }

  laic::ClipModel moved(std::move(model));
  CHECK(model.get() == nullptr && moved.get() != nullptr);  // NOLINT(bugprone-use-after-move)
  CHECK(moved.embed_dim() == d);
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
    test_defaults_match_the_library();
    test_metrics();
    test_kmeans_retrieve_pipeline(ctx, rng);
    test_clip(ctx);
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
