//! The backend seam: every compute backend (CPU, CUDA) implements the same few primitives.
//!
//! Inputs reach a backend already validated (shapes agree, values finite, outputs long enough),
//! so a backend only computes. The pipeline and the C ABI speak to backends only through
//! [`Backend`].

pub mod cpu;
pub mod cuda;

use crate::error::{Error, Result};
use crate::gradnorm::{GradNormOptions, GradNormOut, GradNormScores};
use crate::kmeans::{AssignOut, KMeansOptions, KMeansResult, Metric, Rows};
use crate::matrix::{DeviceGradNormOut, DeviceMatrix, MatrixRef};
use crate::pipeline::PipelineInput;
use crate::progress::{Progress, Stage};
use crate::retrieve::{RetrieveOptions, RetrieveOut};

/// The k-means primitives on one fixed set of rows (see [`Backend::kmeans_steps`]); each
/// method has the semantics of the [`Backend`] method of the same name on those rows.
pub trait KMeansSteps {
    /// [`Backend::kmeans_assign`] on the prepared rows.
    fn assign(&mut self, centres: &[f32], metric: Metric, out: AssignOut<'_>) -> Result<()>;

    /// [`Backend::distances`] on the prepared rows.
    fn distances(&mut self, centres: &[f32], metric: Metric, out: &mut [f32]) -> Result<()>;

    /// [`Backend::cluster_sums`] on the prepared rows.
    fn cluster_sums(&mut self, labels: &[u32], sums: &mut [f64], counts: &mut [u64]) -> Result<()>;

    /// Greedy k-means++ (`crate::kmeans::kmeans_plus_plus`) with `first` as the first centre's
    /// row and `uniform` drawing the candidates' numbers in [0, 1); `rows` is the f32 copy of
    /// the prepared rows (N×D), read for the chosen ones. Returns K×D centres. The default
    /// loops on the host over [`KMeansSteps::distances`]; a device backend may keep the nearest
    /// distances on the device.
    fn kmeans_plus_plus(
        &mut self,
        rows: &dyn Rows,
        k: usize,
        metric: Metric,
        first: usize,
        uniform: &mut dyn FnMut() -> f64,
    ) -> Result<Vec<f32>> {
        crate::kmeans::kmeans_plus_plus(self, rows, k, metric, first, uniform)
    }

    /// The Lloyd iterations of one restart from `centres` (K×D, K = `opts.n_clusters`) until
    /// the labels repeat, the squared centre shift falls to `tol` (already scaled), or
    /// `opts.max_iter`, then the assignment to the final centres; `rows` is the f32 copy of
    /// the prepared rows (N×D), read for the points that refill empty clusters, and `report`
    /// gets the fraction of `max_iter` done. The default loops on the host over the primitives
    /// above; a device backend may keep the centres and labels on the device between
    /// iterations.
    fn lloyd(
        &mut self,
        rows: &dyn Rows,
        centres: Vec<f32>,
        opts: &KMeansOptions,
        tol: f64,
        report: &dyn Fn(f64) -> Result<()>,
    ) -> Result<KMeansResult> {
        crate::kmeans::lloyd(self, rows, centres, opts, tol, report)
    }
}

/// [`KMeansSteps`] that call a backend's per-call primitives on host rows.
pub struct HostSteps<'a> {
    /// The backend whose primitives run.
    pub backend: &'a dyn Backend,
    /// The rows.
    pub x: MatrixRef<'a>,
}

impl KMeansSteps for HostSteps<'_> {
    fn assign(&mut self, centres: &[f32], metric: Metric, out: AssignOut<'_>) -> Result<()> {
        self.backend.kmeans_assign(&self.x, centres, metric, out)
    }

    fn distances(&mut self, centres: &[f32], metric: Metric, out: &mut [f32]) -> Result<()> {
        self.backend.distances(&self.x, centres, metric, out)
    }

    fn cluster_sums(&mut self, labels: &[u32], sums: &mut [f64], counts: &mut [u64]) -> Result<()> {
        self.backend.cluster_sums(&self.x, labels, sums, counts)
    }
}

/// The steps of one pipeline run (`crate::pipeline`, DESIGN.md §1) on matrices kept where the
/// backend computes (see [`Backend::pipeline_stages`]): the CPU keeps them in host memory; a
/// device backend uploads the inputs once and keeps the images' unit rows, the nouns and the
/// joined rows `[x, t̃]` on the device, so that only inputs and results cross the bus. The
/// pipeline calls [`PipelineStages::centres`], `scores`, `retrieve` and `cluster` in that
/// order (the first three only when it filters nouns), with validated options.
pub trait PipelineStages {
    /// Step 2: k-means of the training rows (the images when there are none) as `opts` say,
    /// reporting progress under `stage`.
    fn centres(
        &mut self,
        opts: &KMeansOptions,
        progress: &Progress<'_>,
        stage: Stage,
    ) -> Result<KMeansResult>;

    /// Step 3: the scores of every noun against `centres` (K×D f32, contiguous).
    fn scores(&mut self, centres: &[f32], opts: &GradNormOptions) -> Result<GradNormScores>;

    /// Steps 5–6: retrieval of each image's unit row over the nouns `selected` (indices into
    /// the nouns, in that order); the joined rows `[x, t̃]` become the rows of
    /// [`PipelineStages::cluster`]. Returns the `opts.top_n` heaviest nouns per image (N ×
    /// top_n indices into `selected`, best first) and their weights.
    fn retrieve(
        &mut self,
        selected: &[u32],
        opts: &RetrieveOptions,
    ) -> Result<(Vec<u32>, Vec<f32>)>;

    /// The final k-means, on the joined rows (on the images' unit rows when `retrieve` has not
    /// run), reporting progress under `stage`.
    fn cluster(
        &mut self,
        opts: &KMeansOptions,
        progress: &Progress<'_>,
        stage: Stage,
    ) -> Result<KMeansResult>;
}

/// Which backend a [`crate::Context`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// CUDA when a usable device is present, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA; creating a context errors with [`crate::Error::NoDevice`] when none is usable.
    Cuda,
}

/// The primitives a compute backend provides.
pub trait Backend: Send + Sync {
    /// This backend as the CUDA backend, when it is one (CLIP models loaded on a context use
    /// it to place their towers on the same device).
    fn as_cuda(&self) -> Option<&cuda::CudaBackend> {
        None
    }

    /// Short name ("cpu", "cuda").
    fn name(&self) -> &'static str;

    /// Which kind of backend this is (never [`BackendKind::Auto`]).
    fn kind(&self) -> BackendKind;

    /// GradNorm scores of every noun against the centres (DESIGN.md §1.3), one streaming pass
    /// over the centres (two for the uniform target), into `out` (first `nouns.rows()`
    /// elements of each buffer).
    fn gradnorm_scores(
        &self,
        nouns: &MatrixRef<'_>,
        centres: &MatrixRef<'_>,
        opts: &GradNormOptions,
        out: GradNormOut<'_>,
    ) -> Result<()>;

    /// The k-means assignment step: for every row `x_i` (N×D) the nearest of the K centres
    /// (`centres`, K×D contiguous f32) and its distance, into the first N elements of `out`.
    /// Euclidean: the squared distance ‖x − c‖²; spherical: 1 − ⟨x, c⟩ (rows and centres
    /// already unit-norm). Ties go to the lowest centre index. No N×K matrix is stored.
    fn kmeans_assign(
        &self,
        x: &MatrixRef<'_>,
        centres: &[f32],
        metric: Metric,
        out: AssignOut<'_>,
    ) -> Result<()>;

    /// Distances of every row of `x` (N×D) to each of a few centres (`centres`, C×D
    /// contiguous f32) into `out` (N×C, row-major), with the metric's distance as in
    /// [`Backend::kmeans_assign`]. Stores N×C: meant for small C (k-means++ candidates).
    fn distances(
        &self,
        x: &MatrixRef<'_>,
        centres: &[f32],
        metric: Metric,
        out: &mut [f32],
    ) -> Result<()>;

    /// The sums of the k-means update step: for each cluster `c < counts.len()`, the sum of
    /// the rows of `x` labelled `c` into `sums[c·D..(c+1)·D]` (f64) and their number into
    /// `counts[c]`. Every label is < `counts.len()`. The result does not depend on the number
    /// of threads.
    fn cluster_sums(
        &self,
        x: &MatrixRef<'_>,
        labels: &[u32],
        sums: &mut [f64],
        counts: &mut [u64],
    ) -> Result<()>;

    /// The k-means steps over the rows of `x` for one k-means call (seeding and every Lloyd
    /// iteration): a device backend uploads and packs the rows once here and keeps them on the
    /// device until the returned object is dropped; the CPU reads them in place.
    fn kmeans_steps<'a>(&'a self, x: MatrixRef<'a>) -> Result<Box<dyn KMeansSteps + 'a>>;

    /// The pipeline's steps on `input` (validated by the pipeline): the CPU runs them on host
    /// matrices ([`crate::pipeline::HostStages`]); a device backend uploads the inputs here and
    /// keeps the intermediates on the device until the returned object is dropped.
    fn pipeline_stages<'a>(
        &'a self,
        input: &PipelineInput<'a>,
    ) -> Result<Box<dyn PipelineStages + 'a>>;

    /// Retrieval (DESIGN.md §1.5): for every image x (N×D), t̃ = normalize(softmax(x·Tᵀ/τ)·T)
    /// over the nouns T (M×D) into `out.features` (N×D), and, when `opts.top_n > 0`, the
    /// `top_n` nouns of largest weight per image with their softmax weights. One streaming
    /// pass over the nouns; nothing N×M is stored.
    fn retrieve(
        &self,
        images: &MatrixRef<'_>,
        nouns: &MatrixRef<'_>,
        opts: &RetrieveOptions,
        out: RetrieveOut<'_>,
    ) -> Result<()>;

    /// GradNorm scores of matrices that already live in this backend's device memory, into
    /// device buffers. Only device backends implement it; the default says there is no device.
    ///
    /// The caller has checked the options, the shapes and the output length; the backend checks
    /// what it can only check on the device (finite values, non-zero rows when normalising,
    /// logits that cannot overflow) before any output is written.
    ///
    /// # Safety
    /// Every address in `nouns`, `centres` and `out` is device memory of this backend's device,
    /// valid for the span it describes, and the outputs do not overlap the inputs.
    unsafe fn gradnorm_scores_device(
        &self,
        nouns: &DeviceMatrix,
        centres: &DeviceMatrix,
        opts: &GradNormOptions,
        out: &DeviceGradNormOut,
    ) -> Result<()> {
        let _ = (nouns, centres, opts, out);
        Err(Error::NoDevice(format!(
            "the {} backend has no device memory: device-pointer scoring needs a CUDA context",
            self.name()
        )))
    }
}
