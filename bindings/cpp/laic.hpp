// laic.hpp — header-only C++17 wrapper of the laic C API (laic.h).
//
// - Failures throw laic::Error, which carries the library's message (laic_last_error()) and
//   the laic::Status it returned.
// - Handles are move-only RAII objects (laic::Context); nothing needs an explicit free.
// - Inputs are pointer + extents (laic::Matrix); compiled as C++20, std::span overloads are
//   added, and as C++23 with <stdfloat>, std::float16_t / std::bfloat16_t matrices.
// - Outputs are caller-allocated (raw overloads) or returned in std::vector.
//
// Link with liblaic (CMake: find_package(laic) + target_link_libraries(app laic::laic);
// pkg-config: `pkg-config --cflags --libs laic`).
#ifndef LAIC_HPP
#define LAIC_HPP

#include "laic.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#if __cplusplus >= 202002L && __has_include(<span>)
#include <span>
#define LAIC_HPP_HAS_SPAN 1
#endif
#if __cplusplus > 202002L && __has_include(<stdfloat>)
#include <stdfloat>
#endif

namespace laic {

/// LaicStatus as a scoped enum (same stable numbers).
enum class Status : int {
  Ok = LAIC_STATUS_OK,
  InvalidArgument = LAIC_STATUS_INVALID_ARGUMENT,
  NoDevice = LAIC_STATUS_NO_DEVICE,
  Cancelled = LAIC_STATUS_CANCELLED,
  OutOfMemory = LAIC_STATUS_OUT_OF_MEMORY,
  BufferTooSmall = LAIC_STATUS_BUFFER_TOO_SMALL,
  Io = LAIC_STATUS_IO,
  Format = LAIC_STATUS_FORMAT,
  Cuda = LAIC_STATUS_CUDA,
  Internal = LAIC_STATUS_INTERNAL,
};

/// A failed laic call: what() is the library's message, status() the code it returned.
class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  Status status() const noexcept { return status_; }

 private:
  Status status_;
};

/// Throws laic::Error for a non-OK status, with laic_last_error() of this thread.
inline void check(LaicStatus status) {
  if (status != LAIC_STATUS_OK) {
    const char* msg = laic_last_error();
    throw Error(static_cast<Status>(status), msg ? msg : "");
  }
}

/// The library version ("MAJOR.MINOR.PATCH").
inline std::string version() { return laic_version(); }

namespace detail {
template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const noexcept { Free(p); }
};
/// Unique ownership of a C handle freed by `Free` (every laic *_free is NULL-safe).
template <class T, void (*Free)(T*)>
using Handle = std::unique_ptr<T, Deleter<T, Free>>;

[[noreturn]] inline void invalid(const std::string& message) {
  throw Error(Status::InvalidArgument, "invalid argument: " + message);
}
}  // namespace detail

enum class Backend : uint32_t { Auto = LAIC_BACKEND_AUTO, Cpu = LAIC_BACKEND_CPU, Cuda = LAIC_BACKEND_CUDA };
enum class Dtype : uint32_t { F32 = LAIC_DTYPE_F32, F16 = LAIC_DTYPE_F16, BF16 = LAIC_DTYPE_BF16 };
enum class Target : uint32_t { OneHot = LAIC_TARGET_ONE_HOT, Uniform = LAIC_TARGET_UNIFORM };
enum class Order : uint32_t { Smallest = LAIC_ORDER_SMALLEST, Largest = LAIC_ORDER_LARGEST };
enum class Metric : uint32_t { Euclidean = LAIC_METRIC_EUCLIDEAN, Spherical = LAIC_METRIC_SPHERICAL };
enum class Filter : uint32_t { GradNorm = LAIC_FILTER_GRADNORM, Tac = LAIC_FILTER_TAC, None = LAIC_FILTER_NONE };
enum class ImageDecode : uint32_t { Full = LAIC_IMAGE_DECODE_FULL, Draft = LAIC_IMAGE_DECODE_DRAFT };

/// A borrowed row-major matrix (a LaicMatrix): `rows` rows of `cols` elements, consecutive rows
/// `row_stride` elements apart (0 = `cols`). The memory must outlive the calls using it.
/// f16/bf16 data are passed as their 16-bit patterns (any 2-byte type, e.g. uint16_t).
struct Matrix {
  LaicMatrix raw;

  Matrix(const float* data, size_t rows, size_t cols, size_t row_stride = 0)
      : Matrix(data, Dtype::F32, rows, cols, row_stride) {}
  Matrix(const void* data, Dtype dtype, size_t rows, size_t cols, size_t row_stride = 0)
      : raw{data, rows, cols, row_stride ? row_stride : cols, static_cast<LaicDtype>(dtype)} {}
#if defined(__STDCPP_FLOAT16_T__)
  Matrix(const std::float16_t* data, size_t rows, size_t cols, size_t row_stride = 0)
      : Matrix(data, Dtype::F16, rows, cols, row_stride) {}
#endif
#if defined(__STDCPP_BFLOAT16_T__)
  Matrix(const std::bfloat16_t* data, size_t rows, size_t cols, size_t row_stride = 0)
      : Matrix(data, Dtype::BF16, rows, cols, row_stride) {}
#endif
#ifdef LAIC_HPP_HAS_SPAN
  /// A matrix over `data`, checked to hold every element it describes.
  Matrix(std::span<const float> data, size_t rows, size_t cols, size_t row_stride = 0)
      : Matrix(data.data(), rows, cols, row_stride) {
    require(data.size());
  }
  /// As above for f16/bf16 bit patterns.
  Matrix(std::span<const uint16_t> data, Dtype dtype, size_t rows, size_t cols,
         size_t row_stride = 0)
      : Matrix(data.data(), dtype, rows, cols, row_stride) {
    if (dtype == Dtype::F32) detail::invalid("a span of uint16_t holds f16 or bf16, not f32");
    require(data.size());
  }

 private:
  void require(size_t have) const {
    if (raw.rows == 0 || raw.cols == 0) return;  // the library reports empty matrices
    const size_t need = (raw.rows - 1) * raw.row_stride + raw.cols;
    if (raw.row_stride < raw.cols || (raw.rows - 1) > (SIZE_MAX - raw.cols) / raw.row_stride)
      return;  // the library reports bad strides and overflow
    if (have < need)
      detail::invalid("matrix span holds " + std::to_string(have) + " elements, " +
                      std::to_string(raw.rows) + "x" + std::to_string(raw.cols) +
                      " with row stride " + std::to_string(raw.row_stride) + " needs " +
                      std::to_string(need));
  }
#endif
};

/// A compute context (backend + CPU thread pool), uniquely owned. Thread safety: a context
/// is immutable; any number of threads may use one at the same time.
class Context {
 public:
  /// `n_threads` 0 = one per core; `device` is the CUDA ordinal. Backend::Cuda without a
  /// usable device throws Error with Status::NoDevice.
  explicit Context(Backend backend = Backend::Auto, uint32_t n_threads = 0, uint32_t device = 0) {
    LaicContextOptions o;
    check(laic_context_options_default(&o, sizeof o));
    o.backend = static_cast<LaicBackend>(backend);
    o.n_threads = n_threads;
    o.device = device;
    LaicContext* raw = nullptr;
    check(laic_context_create(&o, &raw));
    handle_.reset(raw);
  }

  /// The backend this context runs on (Cpu or Cuda, never Auto).
  Backend backend() const {
    uint32_t out = 0;
    check(laic_context_backend(get(), &out));
    return static_cast<Backend>(out);
  }

  /// The C handle (still owned by this object); NULL after a move.
  const LaicContext* get() const noexcept { return handle_.get(); }

 private:
  detail::Handle<LaicContext, laic_context_free> handle_;
};

/// GradNorm options (DESIGN.md §1.3); the defaults are laic_gradnorm_options_default()'s.
struct GradNormOptions {
  double tau = 0.02;            ///< softmax temperature > 0
  double q = 2.0;               ///< norm order >= 1, INFINITY for the max norm
  Target target = Target::OneHot;
  bool normalize = true;        ///< L2-normalise noun and centre rows first

  LaicGradNormOptions to_c() const {
    LaicGradNormOptions o;
    check(laic_gradnorm_options_default(&o, sizeof o));
    o.tau = tau;
    o.q = q;
    o.target = static_cast<LaicTarget>(target);
    o.normalize = normalize ? 1u : 0u;
    return o;
  }
};

/// Per-noun GradNorm outputs.
struct GradNormScores {
  std::vector<float> scores;        ///< S_q
  std::vector<uint32_t> assignment; ///< centre with the largest logit
  std::vector<float> confidence;    ///< its softmax probability
};

/// GradNorm scores of M nouns (M×D) against K centres (K×D) into caller buffers of `out_len`
/// >= M elements; `assignment` and `confidence` may be NULL. Nothing is written on failure.
inline void gradnorm_scores(const Context& ctx, const Matrix& nouns, const Matrix& centres,
                            const GradNormOptions& options, float* scores, uint32_t* assignment,
                            float* confidence, size_t out_len) {
  const LaicGradNormOptions o = options.to_c();
  check(laic_gradnorm_scores(ctx.get(), &nouns.raw, &centres.raw, &o, scores, assignment,
                             confidence, out_len));
}

/// GradNorm scores, returned in vectors.
inline GradNormScores gradnorm_scores(const Context& ctx, const Matrix& nouns,
                                      const Matrix& centres,
                                      const GradNormOptions& options = {}) {
  const size_t m = nouns.raw.rows;
  GradNormScores out{std::vector<float>(m), std::vector<uint32_t>(m), std::vector<float>(m)};
  gradnorm_scores(ctx, nouns, centres, options, out.scores.data(), out.assignment.data(),
                  out.confidence.data(), m);
  return out;
}

/// Noun selection into `out` of `capacity` elements; returns the number written. A capacity of
/// min(len, n_centres * top_k) always suffices; a smaller one that the result does not fit
/// throws Status::BufferTooSmall.
inline size_t select_nouns(const float* values, const uint32_t* assignment, size_t len,
                           size_t n_centres, size_t top_k, Order order, uint32_t* out,
                           size_t capacity) {
  size_t count = 0;
  check(laic_select_nouns(values, assignment, len, n_centres, top_k,
                          static_cast<LaicOrder>(order), out, capacity, &count));
  return count;
}

/// Per centre, the `top_k` assigned nouns whose values rank first; the union, sorted.
inline std::vector<uint32_t> select_nouns(const float* values, const uint32_t* assignment,
                                          size_t len, size_t n_centres, size_t top_k = 5,
                                          Order order = Order::Smallest) {
  size_t cap = len;
  if (n_centres != 0 && top_k <= SIZE_MAX / n_centres && n_centres * top_k < cap)
    cap = n_centres * top_k;
  std::vector<uint32_t> out(cap ? cap : 1);
  out.resize(select_nouns(values, assignment, len, n_centres, top_k, order, out.data(),
                          out.size()));
  return out;
}

/// Selection from GradNorm outputs with the order their target implies.
inline std::vector<uint32_t> select_nouns(const GradNormScores& s, size_t n_centres,
                                          size_t top_k = 5, Order order = Order::Smallest) {
  if (s.assignment.size() != s.scores.size())
    detail::invalid("scores and assignment differ in length");
  return select_nouns(s.scores.data(), s.assignment.data(), s.scores.size(), n_centres, top_k,
                      order);
}


// ---- k-means, retrieval, metrics ---------------------------------------------------------

/// ACC / NMI / ARI, each a fraction (1 = perfect).
struct ClusterMetrics {
  double acc = 0, nmi = 0, ari = 0;
};

/// ACC (Hungarian), NMI (arithmetic) and ARI of `pred` against `truth`, `len` labels each.
inline ClusterMetrics cluster_metrics(const int64_t* truth, const int64_t* pred, size_t len) {
  LaicClusterMetrics m{};
  check(laic_cluster_metrics(truth, pred, len, &m));
  return {m.acc, m.nmi, m.ari};
}

/// k-means options; the defaults are laic_kmeans_options_default()'s except n_clusters,
/// which the caller gives.
struct KMeansOptions {
  size_t n_clusters = 8;
  Metric metric = Metric::Euclidean;
  uint32_t max_iter = 300;
  uint32_t n_redo = 10;
  double tol = 1e-4;
  uint64_t seed = 0;

  LaicKMeansOptions to_c() const {
    LaicKMeansOptions o;
    check(laic_kmeans_options_default(&o, sizeof o));
    o.n_clusters = n_clusters;
    o.metric = static_cast<LaicMetric>(metric);
    o.max_iter = max_iter;
    o.n_redo = n_redo;
    o.tol = tol;
    o.seed = seed;
    return o;
  }
};

struct KMeansResult {
  std::vector<uint32_t> labels;  ///< cluster per row (N)
  std::vector<float> centres;    ///< K×D, row-major
  double objective = 0;          ///< squared Euclidean distances, or 1 − cos, summed
};

/// k-means of the rows of `x`. `progress`/`user` as in laic.h (NULL = none).
inline KMeansResult kmeans(const Context& ctx, const Matrix& x, const KMeansOptions& options,
                           LaicProgressFn progress = nullptr, void* user = nullptr) {
  const LaicKMeansOptions o = options.to_c();
  KMeansResult r;
  r.labels.resize(x.raw.rows);
  r.centres.resize(options.n_clusters * x.raw.cols);
  check(laic_kmeans(ctx.get(), &x.raw, &o, r.labels.data(), r.labels.size(), r.centres.data(),
                    r.centres.size(), &r.objective, progress, user));
  return r;
}

/// Retrieval options (laic_retrieve_options_default()'s defaults).
struct RetrieveOptions {
  double tau = 0.01;      ///< τ_r > 0
  bool normalize = true;  ///< L2-normalise image and noun rows first
  uint32_t top_n = 0;     ///< nouns of largest weight reported per image

  LaicRetrieveOptions to_c() const {
    LaicRetrieveOptions o;
    check(laic_retrieve_options_default(&o, sizeof o));
    o.tau = tau;
    o.normalize = normalize ? 1u : 0u;
    o.top_n = top_n;
    return o;
  }
};

struct RetrieveResult {
  std::vector<float> features;        ///< N×D, t̃ per image
  std::vector<uint32_t> top_indices;  ///< N×top_n, best first
  std::vector<float> top_weights;     ///< N×top_n
};

/// For each image x: t̃ = normalize(softmax(x·Tᵀ/τ_r)·T) over the nouns T.
inline RetrieveResult retrieve(const Context& ctx, const Matrix& images, const Matrix& nouns,
                               const RetrieveOptions& options = {}) {
  const LaicRetrieveOptions o = options.to_c();
  const size_t n = images.raw.rows, p = options.top_n;
  RetrieveResult r{std::vector<float>(n * images.raw.cols), std::vector<uint32_t>(n * p),
                   std::vector<float>(n * p)};
  check(laic_retrieve(ctx.get(), &images.raw, &nouns.raw, &o, r.features.data(),
                      r.features.size(), p ? r.top_indices.data() : nullptr,
                      p ? r.top_weights.data() : nullptr, n * p));
  return r;
}

// ---- the pipeline --------------------------------------------------------------------------

/// Pipeline options (the reference script's defaults, as laic_pipeline_options_default()).
struct PipelineOptions {
  size_t n_clusters = 10;
  int64_t n_centres = LAIC_N_CENTRES_AUTO;  ///< or K_c >= 1
  double tau = 0.02;
  double q = 2.0;
  double tau_r = 0.01;
  uint32_t top_k = 5;
  Filter filter = Filter::GradNorm;
  Metric centres_metric = Metric::Spherical;
  uint32_t centres_n_redo = 3;
  uint32_t n_redo = 10;
  uint32_t max_iter = 300;
  uint32_t n_names = 3;
  uint64_t seed = 0;

  LaicPipelineOptions to_c() const {
    LaicPipelineOptions o;
    check(laic_pipeline_options_default(&o, sizeof o));
    o.n_clusters = n_clusters;
    o.n_centres = n_centres;
    o.tau = tau;
    o.q = q;
    o.tau_r = tau_r;
    o.top_k = top_k;
    o.filter = static_cast<LaicFilter>(filter);
    o.centres_metric = static_cast<LaicMetric>(centres_metric);
    o.centres_n_redo = centres_n_redo;
    o.n_redo = n_redo;
    o.max_iter = max_iter;
    o.n_names = n_names;
    o.seed = seed;
    return o;
  }
};

/// The result of pipeline_run(), uniquely owned; accessors copy out of it. Thread safety:
/// immutable, readable from many threads.
class PipelineResult {
 public:
  explicit PipelineResult(LaicPipelineResult* raw) : handle_(raw) {}

  std::vector<uint32_t> labels() const { return array(laic_pipeline_result_labels); }
  std::vector<uint32_t> selected() const { return array(laic_pipeline_result_selected); }
  size_t n_clusters() const {
    size_t k = 0;
    check(laic_pipeline_result_sizes(get(), &k, nullptr));
    return k;
  }
  size_t n_centres() const {
    size_t k = 0;
    check(laic_pipeline_result_sizes(get(), nullptr, &k));
    return k;
  }
  std::vector<uint32_t> cluster_nouns(size_t cluster) const {
    const uint32_t* p = nullptr;
    size_t n = 0;
    check(laic_pipeline_result_cluster_nouns(get(), cluster, &p, &n));
    return std::vector<uint32_t>(p, p + n);
  }
  /// Needs noun names to have been given to pipeline_run().
  std::vector<std::string> cluster_names(size_t cluster) const {
    const char* const* p = nullptr;
    size_t n = 0;
    check(laic_pipeline_result_cluster_names(get(), cluster, &p, &n));
    return std::vector<std::string>(p, p + n);
  }
  double objective() const {
    double v = 0;
    check(laic_pipeline_result_objective(get(), &v));
    return v;
  }
  /// Needs labels to have been given to pipeline_run().
  ClusterMetrics metrics() const {
    LaicClusterMetrics m{};
    check(laic_pipeline_result_metrics(get(), &m));
    return {m.acc, m.nmi, m.ari};
  }
  const LaicPipelineResult* get() const noexcept { return handle_.get(); }

 private:
  using Accessor = LaicStatus (*)(const LaicPipelineResult*, const uint32_t**, size_t*);
  std::vector<uint32_t> array(Accessor f) const {
    const uint32_t* p = nullptr;
    size_t n = 0;
    check(f(get(), &p, &n));
    return std::vector<uint32_t>(p, p + n);
  }
  detail::Handle<LaicPipelineResult, laic_pipeline_result_free> handle_;
};

/// Runs the pipeline on `images` (N×D). `nouns` may be NULL only with Filter::None, `train`
/// NULL means the images; `noun_names` (NULL or one string per noun row) and `labels` (NULL or
/// N labels) are optional. `progress`/`user` as in laic.h.
inline PipelineResult pipeline_run(const Context& ctx, const Matrix& images, const Matrix* nouns,
                                   const PipelineOptions& options = {},
                                   const Matrix* train = nullptr,
                                   const char* const* noun_names = nullptr,
                                   const int64_t* labels = nullptr,
                                   LaicProgressFn progress = nullptr, void* user = nullptr) {
  const LaicPipelineOptions o = options.to_c();
  LaicPipelineResult* out = nullptr;
  check(laic_pipeline_run(ctx.get(), &images.raw, train ? &train->raw : nullptr,
                          nouns ? &nouns->raw : nullptr, noun_names, labels,
                          labels ? images.raw.rows : 0, &o, progress, user, &out));
  return PipelineResult(out);
}

/// How ClipModel::encode_image_files reads files (LaicImageFileOptions); the defaults are
/// transformers' preprocessing exactly.
struct ImageFileOptions {
  ImageDecode decode = ImageDecode::Full;  ///< Draft: large JPEGs at 1/2, 1/4, 1/8 scale (PIL's draft)
  bool exif_orientation = false;           ///< turn JPEGs upright by their EXIF tag

  LaicImageFileOptions to_c() const {
    LaicImageFileOptions o;
    check(laic_image_file_options_default(&o, sizeof o));
    o.decode = static_cast<LaicImageDecode>(decode);
    o.exif_orientation = exif_orientation ? 1u : 0u;
    return o;
  }
};

/// Embeddings of image files some of which could not be read
/// (ClipModel::encode_image_files_skipping).
struct ImageFileEmbeddings {
  std::vector<float> values;       ///< n × embed_dim; zero rows where status is not Ok
  std::vector<LaicStatus> status;  ///< per file: LAIC_STATUS_OK, _IO or _FORMAT
};

/// A CLIP model (laic_clip_load), uniquely owned. `path` is a folder holding
/// model.safetensors (config.json, tokenizer.json optional) or the .safetensors file itself;
/// Hugging Face and OpenAI layouts, f32/f16/bf16 weights. Every encode_* returns n ×
/// embed_dim() floats, row-major, L2-normalised rows. Thread safety: immutable once loaded;
/// any number of threads may encode with one model at the same time.
class ClipModel {
 public:
  ClipModel(const Context& ctx, const std::string& path) {
    LaicClipModel* raw = nullptr;
    check(laic_clip_load(ctx.get(), path.c_str(), &raw));
    handle_.reset(raw);
  }

  /// Width of the embeddings (512 for ViT-B/32).
  size_t embed_dim() const {
    size_t d = 0;
    check(laic_clip_embed_dim(get(), &d));
    return d;
  }

  /// Embeds `texts` (row i = text i). `progress`/`user` as in laic.h (NULL = none).
  std::vector<float> encode_texts(const Context& ctx, const std::vector<std::string>& texts,
                                  LaicProgressFn progress = nullptr,
                                  void* user = nullptr) const {
    return encode(ctx, texts, progress, user, laic_clip_encode_texts);
  }

  /// Embeds image files (JPEG, PNG, WebP) with CLIP's preprocessing.
  std::vector<float> encode_image_files(const Context& ctx,
                                        const std::vector<std::string>& paths,
                                        LaicProgressFn progress = nullptr,
                                        void* user = nullptr) const {
    return encode(ctx, paths, progress, user, laic_clip_encode_image_files);
  }

  /// encode_image_files with a choice of decoding and of EXIF orientation.
  std::vector<float> encode_image_files(const Context& ctx,
                                        const std::vector<std::string>& paths,
                                        const ImageFileOptions& options,
                                        LaicProgressFn progress = nullptr,
                                        void* user = nullptr) const {
    return encode_files(ctx, paths, options, nullptr, progress, user);
  }

  /// Embeds the files that can be read; the others get LAIC_STATUS_IO or _FORMAT and zero
  /// rows instead of failing the call.
  ImageFileEmbeddings encode_image_files_skipping(const Context& ctx,
                                                  const std::vector<std::string>& paths,
                                                  const ImageFileOptions& options = {},
                                                  LaicProgressFn progress = nullptr,
                                                  void* user = nullptr) const {
    ImageFileEmbeddings out;
    out.status.resize(paths.size());
    out.values = encode_files(ctx, paths, options, out.status.data(), progress, user);
    return out;
  }

  /// Embeds `n` decoded RGB8 images (borrowed LaicImageRgb8 descriptors).
  std::vector<float> encode_images_rgb8(const Context& ctx, const LaicImageRgb8* images,
                                        size_t n, LaicProgressFn progress = nullptr,
                                        void* user = nullptr) const {
    std::vector<float> out(n * embed_dim());
    check(laic_clip_encode_images_rgb8(ctx.get(), get(), images, n, progress, user, out.data(),
                                       out.size()));
    return out;
  }

  /// The C handle (still owned by this object); NULL after a move.
  const LaicClipModel* get() const noexcept { return handle_.get(); }

 private:
  using EncodeFn = LaicStatus (*)(const LaicContext*, const LaicClipModel*, const char* const*,
                                  size_t, LaicProgressFn, void*, float*, size_t);
  static std::vector<const char*> c_strings(const std::vector<std::string>& items) {
    std::vector<const char*> ptrs;
    ptrs.reserve(items.size());
    for (const std::string& s : items) ptrs.push_back(s.c_str());
    return ptrs;
  }

  std::vector<float> encode(const Context& ctx, const std::vector<std::string>& items,
                            LaicProgressFn progress, void* user, EncodeFn fn) const {
    const std::vector<const char*> ptrs = c_strings(items);
    std::vector<float> out(items.size() * embed_dim());
    check(fn(ctx.get(), get(), ptrs.data(), ptrs.size(), progress, user, out.data(), out.size()));
    return out;
  }

  std::vector<float> encode_files(const Context& ctx, const std::vector<std::string>& paths,
                                  const ImageFileOptions& options, LaicStatus* status,
                                  LaicProgressFn progress, void* user) const {
    const LaicImageFileOptions o = options.to_c();
    const std::vector<const char*> ptrs = c_strings(paths);
    std::vector<float> out(paths.size() * embed_dim());
    check(laic_clip_encode_image_files_with_options(ctx.get(), get(), ptrs.data(), ptrs.size(),
                                                    &o, status, progress, user, out.data(),
                                                    out.size()));
    return out;
  }

  detail::Handle<LaicClipModel, laic_clip_free> handle_;
};

#ifdef LAIC_HPP_HAS_SPAN
/// GradNorm into spans: `out_len` is the smallest non-empty span; an empty assignment or
/// confidence span means "not wanted".
inline void gradnorm_scores(const Context& ctx, const Matrix& nouns, const Matrix& centres,
                            const GradNormOptions& options, std::span<float> scores,
                            std::span<uint32_t> assignment = {},
                            std::span<float> confidence = {}) {
  size_t len = scores.size();
  if (!assignment.empty() && assignment.size() < len) len = assignment.size();
  if (!confidence.empty() && confidence.size() < len) len = confidence.size();
  gradnorm_scores(ctx, nouns, centres, options, scores.data(),
                  assignment.empty() ? nullptr : assignment.data(),
                  confidence.empty() ? nullptr : confidence.data(), len);
}

/// Selection over spans of equal length.
inline std::vector<uint32_t> select_nouns(std::span<const float> values,
                                          std::span<const uint32_t> assignment,
                                          size_t n_centres, size_t top_k = 5,
                                          Order order = Order::Smallest) {
  if (values.size() != assignment.size())
    detail::invalid("values has " + std::to_string(values.size()) +
                    " elements but assignment has " + std::to_string(assignment.size()));
  return select_nouns(values.data(), assignment.data(), values.size(), n_centres, top_k, order);
}

/// Selection into a caller span; returns the prefix written.
inline std::span<uint32_t> select_nouns(std::span<const float> values,
                                        std::span<const uint32_t> assignment, size_t n_centres,
                                        size_t top_k, Order order, std::span<uint32_t> out) {
  if (values.size() != assignment.size())
    detail::invalid("values has " + std::to_string(values.size()) +
                    " elements but assignment has " + std::to_string(assignment.size()));
  return out.first(select_nouns(values.data(), assignment.data(), values.size(), n_centres,
                                top_k, order, out.data(), out.size()));
}
#endif

}  // namespace laic

#endif  // LAIC_HPP
