//! Plain C types of the ABI and their conversion into the Rust API's types.
//!
//! Enumerations that callers pass in are `uint32_t` typedefs with `#define`d values, so that an
//! out-of-range value is a reported error rather than undefined behaviour.

use super::try_ref;
use crate::backend::BackendKind;
use crate::error::{Error, Result};
use crate::gradnorm::{Order, Target};
use crate::kmeans::Metric;
use crate::matrix::{DeviceMatrix, Dtype, MatrixData, MatrixRef, span_len};
use crate::pipeline::Filter;
use std::ffi::c_void;

/// Element type of a [`LaicMatrix`]: one of the `LAIC_DTYPE_*` values.
pub type LaicDtype = u32;
/// IEEE 754 binary32 (`float`).
pub const LAIC_DTYPE_F32: LaicDtype = 0;
/// IEEE 754 binary16 (`_Float16`, numpy `float16`).
pub const LAIC_DTYPE_F16: LaicDtype = 1;
/// bfloat16.
pub const LAIC_DTYPE_BF16: LaicDtype = 2;

/// Compute backend of a context: one of the `LAIC_BACKEND_*` values.
pub type LaicBackend = u32;
/// CUDA when a usable device is present, else the CPU.
pub const LAIC_BACKEND_AUTO: LaicBackend = 0;
/// The CPU.
pub const LAIC_BACKEND_CPU: LaicBackend = 1;
/// CUDA; `LAIC_STATUS_NO_DEVICE` when no usable device.
pub const LAIC_BACKEND_CUDA: LaicBackend = 2;

/// Target of the GradNorm cross-entropy: one of the `LAIC_TARGET_*` values.
pub type LaicTarget = u32;
/// One-hot on the assigned centre (default): small score = positive noun.
pub const LAIC_TARGET_ONE_HOT: LaicTarget = 0;
/// Uniform over centres (Huang et al. 2021): large score = positive noun.
pub const LAIC_TARGET_UNIFORM: LaicTarget = 1;

/// Which end of a ranking `laic_select_nouns()` keeps: one of the `LAIC_ORDER_*` values.
pub type LaicOrder = u32;
/// Keep the smallest values (GradNorm scores, one-hot target).
pub const LAIC_ORDER_SMALLEST: LaicOrder = 0;
/// Keep the largest values (uniform-target scores, TAC confidences).
pub const LAIC_ORDER_LARGEST: LaicOrder = 1;

/// A borrowed row-major matrix: element (i, j) is at `data + (i * row_stride + j) * size(dtype)`.
/// `data` must be aligned to its element size; `row_stride >= cols` (in elements).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaicMatrix {
    /// First element of the first row.
    pub data: *const c_void,
    /// Number of rows (> 0).
    pub rows: usize,
    /// Number of columns (> 0).
    pub cols: usize,
    /// Elements between the starts of consecutive rows (>= cols).
    pub row_stride: usize,
    /// One of `LAIC_DTYPE_*`.
    pub dtype: LaicDtype,
}

/// Operand precision of a CLIP model's towers on a GPU: one of the `LAIC_CLIP_PRECISION_*`
/// values. The CPU towers always compute in f32.
pub type LaicClipPrecision = u32;
/// The weights file's own dtype (f16/bf16 files stay f16/bf16, f32 files f32).
pub const LAIC_CLIP_PRECISION_AUTO: LaicClipPrecision = 0;
/// f32 operands (no TF32).
pub const LAIC_CLIP_PRECISION_F32: LaicClipPrecision = 1;
/// f16 operands, f32 accumulation and residual stream.
pub const LAIC_CLIP_PRECISION_F16: LaicClipPrecision = 2;
/// bf16 operands, f32 accumulation and residual stream.
pub const LAIC_CLIP_PRECISION_BF16: LaicClipPrecision = 3;

/// Where a CLIP model's towers run: one of the `LAIC_CLIP_DEVICE_*` values.
pub type LaicClipDevice = u32;
/// The context's backend (CUDA on a CUDA context, else the CPU).
pub const LAIC_CLIP_DEVICE_CONTEXT: LaicClipDevice = 0;
/// The CPU, whatever the context.
pub const LAIC_CLIP_DEVICE_CPU: LaicClipDevice = 1;
/// CUDA device `cuda_device` (`LAIC_STATUS_NO_DEVICE` when it cannot be used).
pub const LAIC_CLIP_DEVICE_CUDA: LaicClipDevice = 2;

/// Options of `laic_clip_load_with_options()`. Fill with `laic_clip_load_options_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaicClipLoadOptions {
    /// `sizeof(LaicClipLoadOptions)` as the caller was compiled with.
    pub struct_size: usize,
    /// One of `LAIC_CLIP_PRECISION_*` (default AUTO).
    pub precision: LaicClipPrecision,
    /// One of `LAIC_CLIP_DEVICE_*` (default CONTEXT).
    pub device: LaicClipDevice,
    /// CUDA device ordinal for `LAIC_CLIP_DEVICE_CUDA` (default 0).
    pub cuda_device: u32,
}

impl LaicClipLoadOptions {
    pub(crate) fn defaults() -> Self {
        LaicClipLoadOptions {
            struct_size: std::mem::size_of::<Self>(),
            precision: LAIC_CLIP_PRECISION_AUTO,
            device: LAIC_CLIP_DEVICE_CONTEXT,
            cuda_device: 0,
        }
    }

    pub(crate) fn to_rust(self) -> Result<crate::clip::ClipLoadOptions> {
        use crate::clip::{ClipDevice, ClipPrecision};
        let precision = match self.precision {
            LAIC_CLIP_PRECISION_AUTO => ClipPrecision::Auto,
            LAIC_CLIP_PRECISION_F32 => ClipPrecision::F32,
            LAIC_CLIP_PRECISION_F16 => ClipPrecision::F16,
            LAIC_CLIP_PRECISION_BF16 => ClipPrecision::Bf16,
            p => {
                return Err(Error::invalid(format!(
                    "options.precision: unknown value {p}"
                )));
            }
        };
        let device = match self.device {
            LAIC_CLIP_DEVICE_CONTEXT => ClipDevice::Context,
            LAIC_CLIP_DEVICE_CPU => ClipDevice::Cpu,
            LAIC_CLIP_DEVICE_CUDA => ClipDevice::Cuda(self.cuda_device as usize),
            d => return Err(Error::invalid(format!("options.device: unknown value {d}"))),
        };
        Ok(crate::clip::ClipLoadOptions { precision, device })
    }
}

/// How image files are decoded: one of the `LAIC_IMAGE_DECODE_*` values.
pub type LaicImageDecode = u32;
/// Every pixel, as PIL's `Image.open(..).convert("RGB")` (what transformers' preprocessing
/// sees; the default).
pub const LAIC_IMAGE_DECODE_FULL: LaicImageDecode = 0;
/// JPEGs at least twice the model's input size on both sides decode at 1/2, 1/4 or 1/8 scale
/// inside libjpeg's IDCT, as PIL does after `Image.draft("RGB", (size, size))`: several times
/// faster on camera photos, slightly different pixels. Other files decode in full.
pub const LAIC_IMAGE_DECODE_DRAFT: LaicImageDecode = 1;

/// Options of `laic_clip_encode_image_files_with_options()`. Fill with
/// `laic_image_file_options_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaicImageFileOptions {
    /// `sizeof(LaicImageFileOptions)` as the caller was compiled with.
    pub struct_size: usize,
    /// One of `LAIC_IMAGE_DECODE_*` (default FULL).
    pub decode: LaicImageDecode,
    /// Non-zero: turn JPEGs upright by their EXIF orientation tag, as PIL's
    /// `ImageOps.exif_transpose` (default 0: the tag is ignored, as transformers' preprocessing
    /// ignores it).
    pub exif_orientation: u32,
}

impl LaicImageFileOptions {
    pub(crate) fn defaults() -> Self {
        LaicImageFileOptions {
            struct_size: std::mem::size_of::<Self>(),
            decode: LAIC_IMAGE_DECODE_FULL,
            exif_orientation: 0,
        }
    }

    pub(crate) fn to_rust(self) -> Result<crate::clip::ImageFileOptions> {
        use crate::clip::ImageDecode;
        let decode = match self.decode {
            LAIC_IMAGE_DECODE_FULL => ImageDecode::Full,
            LAIC_IMAGE_DECODE_DRAFT => ImageDecode::Draft,
            d => return Err(Error::invalid(format!("options.decode: unknown value {d}"))),
        };
        Ok(crate::clip::ImageFileOptions {
            decode,
            exif_orientation: self.exif_orientation != 0,
        })
    }
}

/// Options of `laic_context_create()`. Fill with `laic_context_options_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaicContextOptions {
    /// `sizeof(LaicContextOptions)` as the caller was compiled with.
    pub struct_size: usize,
    /// One of `LAIC_BACKEND_*` (default AUTO).
    pub backend: LaicBackend,
    /// CPU threads; 0 (default) = one per core, shared with other contexts.
    pub n_threads: u32,
    /// CUDA device ordinal (default 0).
    pub device: u32,
}

/// Options of `laic_gradnorm_scores()`. Fill with `laic_gradnorm_options_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaicGradNormOptions {
    /// `sizeof(LaicGradNormOptions)` as the caller was compiled with.
    pub struct_size: usize,
    /// Softmax temperature τ > 0 (default 0.02).
    pub tau: f64,
    /// Norm order q >= 1, `INFINITY` for the max norm (default 2).
    pub q: f64,
    /// One of `LAIC_TARGET_*` (default one-hot).
    pub target: LaicTarget,
    /// Non-zero: L2-normalise noun and centre rows first (default 1).
    pub normalize: u32,
}

impl LaicContextOptions {
    pub(crate) fn defaults() -> Self {
        LaicContextOptions {
            struct_size: std::mem::size_of::<Self>(),
            backend: LAIC_BACKEND_AUTO,
            n_threads: 0,
            device: 0,
        }
    }

    pub(crate) fn to_rust(self) -> Result<crate::ContextOptions> {
        let backend = match self.backend {
            LAIC_BACKEND_AUTO => BackendKind::Auto,
            LAIC_BACKEND_CPU => BackendKind::Cpu,
            LAIC_BACKEND_CUDA => BackendKind::Cuda,
            b => return Err(Error::invalid(format!("unknown backend {b}"))),
        };
        Ok(crate::ContextOptions {
            backend,
            n_threads: self.n_threads as usize,
            device: self.device as usize,
        })
    }
}

impl LaicGradNormOptions {
    pub(crate) fn defaults() -> Self {
        let d = crate::GradNormOptions::default();
        LaicGradNormOptions {
            struct_size: std::mem::size_of::<Self>(),
            tau: d.tau as f64,
            q: d.q as f64,
            target: LAIC_TARGET_ONE_HOT,
            normalize: d.normalize as u32,
        }
    }

    pub(crate) fn to_rust(self) -> Result<crate::GradNormOptions> {
        let target = match self.target {
            LAIC_TARGET_ONE_HOT => Target::OneHot,
            LAIC_TARGET_UNIFORM => Target::Uniform,
            t => return Err(Error::invalid(format!("unknown target {t}"))),
        };
        // tau and q are checked after the narrowing: a tau that rounds to 0 in f32 is rejected.
        let opts = crate::GradNormOptions {
            tau: self.tau as f32,
            q: self.q as f32,
            target,
            normalize: self.normalize != 0,
        };
        opts.validate()?;
        Ok(opts)
    }
}

/// Converts a `LaicOrder`.
pub(crate) fn order_from_c(order: LaicOrder) -> Result<Order> {
    match order {
        LAIC_ORDER_SMALLEST => Ok(Order::Smallest),
        LAIC_ORDER_LARGEST => Ok(Order::Largest),
        o => Err(Error::invalid(format!("unknown order {o}"))),
    }
}

/// Borrows a C matrix as a validated [`MatrixRef`].
///
/// # Safety
/// `m` is NULL or points to a `LaicMatrix` whose `data` is valid for reads of the span it
/// describes, for the lifetime `'a`.
pub(crate) unsafe fn matrix_from_c<'a>(m: *const LaicMatrix, what: &str) -> Result<MatrixRef<'a>> {
    // SAFETY: forwarded from the caller.
    let m = unsafe { try_ref(m, what) }?;
    if m.rows == 0 || m.cols == 0 {
        return Err(Error::invalid(format!(
            "{what} has {}×{} elements: both must be > 0",
            m.rows, m.cols
        )));
    }
    if m.row_stride < m.cols {
        return Err(Error::invalid(format!(
            "{what}: row stride {} is smaller than the number of columns {}",
            m.row_stride, m.cols
        )));
    }
    let len = span_len(m.rows, m.cols, m.row_stride).map_err(|e| e.in_arg(what))?;
    let what_data = format!("{what}.data");
    // SAFETY (all arms): the caller guarantees `len` readable elements at `data`; try_slice
    // checks NULL, alignment and the byte size.
    let data = unsafe {
        match m.dtype {
            LAIC_DTYPE_F32 => {
                MatrixData::F32(super::try_slice(m.data as *const f32, len, &what_data)?)
            }
            LAIC_DTYPE_F16 => MatrixData::F16(super::try_slice(
                m.data as *const half::f16,
                len,
                &what_data,
            )?),
            LAIC_DTYPE_BF16 => MatrixData::Bf16(super::try_slice(
                m.data as *const half::bf16,
                len,
                &what_data,
            )?),
            d => return Err(Error::invalid(format!("{what}: unknown dtype {d}"))),
        }
    };
    MatrixRef::new(data, m.rows, m.cols, m.row_stride).map_err(|e| e.in_arg(what))
}

/// Distance of a k-means: one of the `LAIC_METRIC_*` values.
pub type LaicMetric = u32;
/// Squared Euclidean distance on the rows as given (as scikit-learn's KMeans).
pub const LAIC_METRIC_EUCLIDEAN: LaicMetric = 0;
/// Cosine distance on L2-normalised rows; centres are normalised means.
pub const LAIC_METRIC_SPHERICAL: LaicMetric = 1;

/// Noun filter of the pipeline: one of the `LAIC_FILTER_*` values.
pub type LaicFilter = u32;
/// GradNorm: per centre the `top_k` assigned nouns of smallest gradient norm.
pub const LAIC_FILTER_GRADNORM: LaicFilter = 0;
/// TAC: per centre the `top_k` assigned nouns of largest softmax confidence at τ = 1.
pub const LAIC_FILTER_TAC: LaicFilter = 1;
/// No nouns: k-means on the image features alone.
pub const LAIC_FILTER_NONE: LaicFilter = 2;

/// Stage reported to a progress callback: one of the `LAIC_STAGE_*` values.
pub type LaicStage = u32;
/// k-means on the training images for the image centres.
pub const LAIC_STAGE_CENTRES: LaicStage = 0;
/// Noun scoring and selection.
pub const LAIC_STAGE_SCORES: LaicStage = 1;
/// Retrieval of noun semantics for the images.
pub const LAIC_STAGE_RETRIEVAL: LaicStage = 2;
/// The final (or a stand-alone) k-means.
pub const LAIC_STAGE_CLUSTERING: LaicStage = 3;
/// Cluster names and metrics.
pub const LAIC_STAGE_NAMING: LaicStage = 4;
/// CLIP text encoding (`laic_clip_encode_texts()`).
pub const LAIC_STAGE_TEXT_ENCODING: LaicStage = 5;
/// CLIP image encoding (`laic_clip_encode_image_files()`, `laic_clip_encode_images_rgb8()`).
pub const LAIC_STAGE_IMAGE_ENCODING: LaicStage = 6;

/// `n_centres` value asking for the default max(2·n_clusters, N_c/10).
pub const LAIC_N_CENTRES_AUTO: i64 = -1;

/// A progress callback: `user` is the pointer given with it, `stage` one of `LAIC_STAGE_*`,
/// `fraction` in [0, 1]. Return 0 to go on, anything else to cancel (the call then returns
/// `LAIC_STATUS_CANCELLED`). Called from one thread at a time, not necessarily the caller's.
pub type LaicProgressFn =
    Option<unsafe extern "C" fn(user: *mut c_void, stage: LaicStage, fraction: f64) -> i32>;

/// Options of `laic_kmeans()`. Fill with `laic_kmeans_options_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaicKMeansOptions {
    /// `sizeof(LaicKMeansOptions)` as the caller was compiled with.
    pub struct_size: usize,
    /// Number of clusters K, 1 <= K <= N (default 8).
    pub n_clusters: usize,
    /// One of `LAIC_METRIC_*` (default Euclidean).
    pub metric: LaicMetric,
    /// Most Lloyd iterations per restart (default 300).
    pub max_iter: u32,
    /// Restarts; the lowest objective wins (default 10).
    pub n_redo: u32,
    /// Convergence tolerance relative to the mean per-feature variance (default 1e-4).
    pub tol: f64,
    /// Seed of the k-means++ seeding (default 0).
    pub seed: u64,
}

/// Options of `laic_retrieve()`. Fill with `laic_retrieve_options_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaicRetrieveOptions {
    /// `sizeof(LaicRetrieveOptions)` as the caller was compiled with.
    pub struct_size: usize,
    /// Softmax temperature τ_r > 0 (default 0.01); any positive value is overflow-safe.
    pub tau: f64,
    /// Non-zero: L2-normalise image and noun rows first (default 1).
    pub normalize: u32,
    /// Nouns of largest weight reported per image (default 0), at most M.
    pub top_n: u32,
}

/// Options of `laic_pipeline_run()`. Fill with `laic_pipeline_options_default()`; the
/// defaults are those of the reference script.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaicPipelineOptions {
    /// `sizeof(LaicPipelineOptions)` as the caller was compiled with.
    pub struct_size: usize,
    /// Number of clusters, 1 <= n_clusters <= N (default 10).
    pub n_clusters: usize,
    /// Image centres K_c >= 1, or `LAIC_N_CENTRES_AUTO` (default) for max(2·n_clusters, N_c/10).
    pub n_centres: i64,
    /// GradNorm temperature τ > 0 (default 0.02; TAC always uses 1).
    pub tau: f64,
    /// GradNorm norm order q >= 1 (default 2).
    pub q: f64,
    /// Retrieval temperature τ_r > 0 (default 0.01).
    pub tau_r: f64,
    /// Nouns kept per centre, >= 1 (default 5).
    pub top_k: u32,
    /// One of `LAIC_FILTER_*` (default GradNorm).
    pub filter: LaicFilter,
    /// Distance of the centres k-means, one of `LAIC_METRIC_*` (default spherical).
    pub centres_metric: LaicMetric,
    /// Restarts of the centres k-means (default 3).
    pub centres_n_redo: u32,
    /// Restarts of the final k-means (default 10).
    pub n_redo: u32,
    /// Most iterations per k-means restart (default 300).
    pub max_iter: u32,
    /// Names per cluster (default 3).
    pub n_names: u32,
    /// Seed of both k-means runs (default 0).
    pub seed: u64,
}

/// Clustering scores against true labels, each a fraction (1 = perfect).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaicClusterMetrics {
    /// Accuracy under the best one-to-one cluster-to-class mapping (Hungarian).
    pub acc: f64,
    /// Normalised mutual information (arithmetic mean of the entropies).
    pub nmi: f64,
    /// Adjusted Rand index.
    pub ari: f64,
}

impl From<crate::ClusterMetrics> for LaicClusterMetrics {
    fn from(m: crate::ClusterMetrics) -> Self {
        LaicClusterMetrics {
            acc: m.acc,
            nmi: m.nmi,
            ari: m.ari,
        }
    }
}

/// Converts a `LaicMetric`.
pub(crate) fn metric_from_c(m: LaicMetric) -> Result<Metric> {
    match m {
        LAIC_METRIC_EUCLIDEAN => Ok(Metric::Euclidean),
        LAIC_METRIC_SPHERICAL => Ok(Metric::Spherical),
        m => Err(Error::invalid(format!("unknown metric {m}"))),
    }
}

fn metric_to_c(m: Metric) -> LaicMetric {
    match m {
        Metric::Euclidean => LAIC_METRIC_EUCLIDEAN,
        Metric::Spherical => LAIC_METRIC_SPHERICAL,
    }
}

impl LaicKMeansOptions {
    pub(crate) fn defaults() -> Self {
        let d = crate::KMeansOptions::default();
        LaicKMeansOptions {
            struct_size: std::mem::size_of::<Self>(),
            n_clusters: d.n_clusters,
            metric: metric_to_c(d.metric),
            max_iter: d.max_iter as u32,
            n_redo: d.n_redo as u32,
            tol: d.tol,
            seed: d.seed,
        }
    }

    pub(crate) fn to_rust(self) -> Result<crate::KMeansOptions> {
        Ok(crate::KMeansOptions {
            n_clusters: self.n_clusters,
            metric: metric_from_c(self.metric)?,
            max_iter: self.max_iter as usize,
            n_redo: self.n_redo as usize,
            tol: self.tol,
            seed: self.seed,
        })
    }
}

impl LaicRetrieveOptions {
    pub(crate) fn defaults() -> Self {
        let d = crate::RetrieveOptions::default();
        LaicRetrieveOptions {
            struct_size: std::mem::size_of::<Self>(),
            tau: d.tau as f64,
            normalize: d.normalize as u32,
            top_n: d.top_n as u32,
        }
    }

    pub(crate) fn to_rust(self) -> Result<crate::RetrieveOptions> {
        let opts = crate::RetrieveOptions {
            tau: self.tau as f32,
            normalize: self.normalize != 0,
            top_n: self.top_n as usize,
        };
        opts.validate()?;
        Ok(opts)
    }
}

impl LaicPipelineOptions {
    pub(crate) fn defaults() -> Self {
        let d = crate::PipelineOptions::default();
        LaicPipelineOptions {
            struct_size: std::mem::size_of::<Self>(),
            n_clusters: d.n_clusters,
            n_centres: LAIC_N_CENTRES_AUTO,
            tau: d.tau as f64,
            q: d.q as f64,
            tau_r: d.tau_r as f64,
            top_k: d.top_k as u32,
            filter: LAIC_FILTER_GRADNORM,
            centres_metric: metric_to_c(d.centres_metric),
            centres_n_redo: d.centres_n_redo as u32,
            n_redo: d.n_redo as u32,
            max_iter: d.max_iter as u32,
            n_names: d.n_names as u32,
            seed: d.seed,
        }
    }

    pub(crate) fn to_rust(self) -> Result<crate::PipelineOptions> {
        let filter = match self.filter {
            LAIC_FILTER_GRADNORM => Filter::GradNorm,
            LAIC_FILTER_TAC => Filter::Tac,
            LAIC_FILTER_NONE => Filter::None,
            f => return Err(Error::invalid(format!("unknown filter {f}"))),
        };
        let n_centres = match self.n_centres {
            LAIC_N_CENTRES_AUTO => None,
            k if k < 0 => {
                return Err(Error::invalid(format!(
                    "n_centres is {k}: use a positive count or LAIC_N_CENTRES_AUTO"
                )));
            }
            k => Some(k as usize),
        };
        Ok(crate::PipelineOptions {
            n_clusters: self.n_clusters,
            n_centres,
            tau: self.tau as f32,
            q: self.q as f32,
            top_k: self.top_k as usize,
            tau_r: self.tau_r as f32,
            centres_metric: metric_from_c(self.centres_metric)?,
            centres_n_redo: self.centres_n_redo as usize,
            max_iter: self.max_iter as usize,
            n_redo: self.n_redo as usize,
            seed: self.seed,
            filter,
            n_names: self.n_names as usize,
        })
    }
}

/// Wraps a C progress callback as a Rust one (`None` when `f` is NULL).
pub(crate) fn progress_from_c(
    f: LaicProgressFn,
    user: *mut c_void,
) -> Option<impl Fn(crate::Stage, f64) -> bool + Sync> {
    let user = user as usize;
    f.map(|f| {
        move |stage: crate::Stage, fraction: f64| {
            // SAFETY: the caller of the laic function guarantees that `f` may be called with
            // `user` during the call.
            unsafe { f(user as *mut c_void, stage as LaicStage, fraction) == 0 }
        }
    })
}

/// Reads a C matrix whose `data` is a device (GPU) address as a [`DeviceMatrix`], checking
/// everything that can be checked without touching the memory.
///
/// # Safety
/// `m` is NULL or points to a readable `LaicMatrix`.
pub(crate) unsafe fn device_matrix_from_c(
    m: *const LaicMatrix,
    what: &str,
) -> Result<DeviceMatrix> {
    // SAFETY: forwarded from the caller.
    let m = unsafe { try_ref(m, what) }?;
    let dtype = match m.dtype {
        LAIC_DTYPE_F32 => Dtype::F32,
        LAIC_DTYPE_F16 => Dtype::F16,
        LAIC_DTYPE_BF16 => Dtype::Bf16,
        d => return Err(Error::invalid(format!("{what}: unknown dtype {d}"))),
    };
    let dm = DeviceMatrix {
        ptr: m.data as u64,
        rows: m.rows,
        cols: m.cols,
        row_stride: m.row_stride,
        dtype,
    };
    dm.validate(what)?;
    Ok(dm)
}
