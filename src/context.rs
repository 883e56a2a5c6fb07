//! [`Context`]: the backend and thread pool that every operation runs on.

use crate::backend::cpu::CpuBackend;
use crate::backend::cuda::CudaBackend;
use crate::backend::{Backend, BackendKind};
use crate::error::{Error, Result};
use crate::gradnorm::{self, GradNormOptions, GradNormOut, GradNormScores};
use crate::kmeans::{self, KMeansOptions, KMeansResult};
use crate::matrix::{DeviceGradNormOut, DeviceMatrix, MatrixRef};
use crate::pipeline::{self, PipelineInput, PipelineOptions, PipelineResult};
use crate::progress::{Progress, Stage};
use crate::retrieve::{self, RetrieveOptions, RetrieveOut, Retrieved};

/// How a [`Context`] is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextOptions {
    /// Which backend to use.
    pub backend: BackendKind,
    /// CPU worker threads; 0 uses rayon's global pool (one thread per core).
    pub n_threads: usize,
    /// CUDA device ordinal.
    pub device: usize,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            backend: BackendKind::Auto,
            n_threads: 0,
            device: 0,
        }
    }
}

/// A backend plus a CPU thread pool. Immutable once made: one context may be shared by many
/// threads, and every method may be called concurrently.
pub struct Context {
    backend: Box<dyn Backend>,
    pool: Option<rayon::ThreadPool>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("backend", &self.backend.name())
            .finish()
    }
}

impl Context {
    /// A context on `backend` with the default thread pool.
    pub fn new(backend: BackendKind) -> Result<Self> {
        Self::with_options(&ContextOptions {
            backend,
            ..Default::default()
        })
    }

    /// A CPU context (never fails).
    pub fn cpu() -> Self {
        Context {
            backend: Box::new(CpuBackend),
            pool: None,
        }
    }

    /// A context as `opts` describe. [`BackendKind::Auto`] takes CUDA device `opts.device`
    /// when it is usable and the CPU otherwise; [`BackendKind::Cuda`] errors with
    /// [`Error::NoDevice`] and the reason (no kernels in this build, no driver, no such device)
    /// when it is not.
    pub fn with_options(opts: &ContextOptions) -> Result<Self> {
        let backend: Box<dyn Backend> = match opts.backend {
            BackendKind::Cpu => Box::new(CpuBackend),
            BackendKind::Auto => match CudaBackend::new(opts.device) {
                Ok(cuda) => Box::new(cuda),
                Err(_) => Box::new(CpuBackend),
            },
            BackendKind::Cuda => Box::new(CudaBackend::new(opts.device)?),
        };
        let pool = match opts.n_threads {
            0 => None,
            n => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| Error::Internal(format!("cannot start {n} threads: {e}")))?,
            ),
        };
        Ok(Context { backend, pool })
    }

    /// The backend's short name ("cpu", "cuda").
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Runs `f` inside this context's thread pool.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// GradNorm scores of `nouns` (M×D) against `centres` (K×D) into caller buffers of at
    /// least M elements each. Validates everything before writing anything.
    pub fn gradnorm_scores_into(
        &self,
        nouns: &MatrixRef<'_>,
        centres: &MatrixRef<'_>,
        opts: &GradNormOptions,
        out: GradNormOut<'_>,
    ) -> Result<()> {
        self.install(|| {
            gradnorm::validate_inputs(nouns, centres, opts, &out)?;
            self.backend.gradnorm_scores(nouns, centres, opts, out)
        })
    }

    /// GradNorm scores of `nouns` (M×D) against `centres` (K×D).
    pub fn gradnorm_scores(
        &self,
        nouns: &MatrixRef<'_>,
        centres: &MatrixRef<'_>,
        opts: &GradNormOptions,
    ) -> Result<GradNormScores> {
        let mut out = GradNormScores::zeros(nouns.rows());
        self.gradnorm_scores_into(nouns, centres, opts, out.as_out())?;
        Ok(out)
    }

    /// k-means of the rows of `x` (N×D) into `opts.n_clusters` clusters: k-means++ seeding,
    /// Lloyd iterations, `opts.n_redo` restarts keeping the lowest objective. Deterministic
    /// for a given seed and backend.
    pub fn kmeans(&self, x: &MatrixRef<'_>, opts: &KMeansOptions) -> Result<KMeansResult> {
        self.kmeans_with_progress(x, opts, Progress::none())
    }

    /// [`Context::kmeans`] reporting [`Stage::Clustering`] progress; the callback may cancel.
    pub fn kmeans_with_progress(
        &self,
        x: &MatrixRef<'_>,
        opts: &KMeansOptions,
        progress: Progress<'_>,
    ) -> Result<KMeansResult> {
        self.install(|| kmeans::run(self.backend(), x, opts, &progress, Stage::Clustering))
    }

    /// Retrieval of `images` (N×D) over `nouns` (M×D) into caller buffers (N×D features,
    /// N×top_n indices and weights). Validates everything before writing anything.
    pub fn retrieve_into(
        &self,
        images: &MatrixRef<'_>,
        nouns: &MatrixRef<'_>,
        opts: &RetrieveOptions,
        out: RetrieveOut<'_>,
    ) -> Result<()> {
        self.install(|| {
            retrieve::validate_inputs(images, nouns, opts, &out)?;
            self.backend.retrieve(images, nouns, opts, out)
        })
    }

    /// Retrieval: t̃ = normalize(softmax(x·Tᵀ/τ_r)·T) for every image x, and optionally the
    /// top nouns of each image with their weights.
    pub fn retrieve(
        &self,
        images: &MatrixRef<'_>,
        nouns: &MatrixRef<'_>,
        opts: &RetrieveOptions,
    ) -> Result<Retrieved> {
        let mut out = Retrieved::zeros(images.rows(), images.cols(), opts.top_n);
        self.retrieve_into(images, nouns, opts, out.as_out())?;
        Ok(out)
    }

    /// The whole LaIC pipeline on embeddings (DESIGN.md §1, steps 2–8).
    pub fn run_pipeline(
        &self,
        input: &PipelineInput<'_>,
        opts: &PipelineOptions,
        progress: Progress<'_>,
    ) -> Result<PipelineResult> {
        self.install(|| pipeline::run(self, input, opts, &progress))
    }

    /// GradNorm scores of matrices already in device memory, into device buffers: for callers
    /// whose data lives on the GPU (no round trip through the host). Needs a CUDA context.
    ///
    /// Checks the options, shapes, pointers and `out.len` first; the device checks values
    /// (NaN/Inf, zero rows when normalising, logit overflow) before anything is written, so
    /// on error the outputs are untouched. Returns after the outputs are written. Inputs must
    /// be ready (synchronise the stream that produced them first).
    ///
    /// # Safety
    /// Every address is device memory of this context's device, valid for the span it
    /// describes; the outputs hold `out.len` elements each and do not overlap the inputs.
    pub unsafe fn gradnorm_scores_device(
        &self,
        nouns: &DeviceMatrix,
        centres: &DeviceMatrix,
        opts: &GradNormOptions,
        out: &DeviceGradNormOut,
    ) -> Result<()> {
        opts.validate()?;
        nouns.validate("nouns")?;
        centres.validate("centres")?;
        if nouns.cols != centres.cols {
            return Err(Error::invalid(format!(
                "nouns have {} columns but centres have {}",
                nouns.cols, centres.cols
            )));
        }
        if centres.rows > u32::MAX as usize {
            return Err(Error::invalid("more than 2^32 - 1 centres"));
        }
        if out.len < nouns.rows {
            return Err(Error::BufferTooSmall {
                what: "outputs",
                needed: nouns.rows,
                got: out.len,
            });
        }
        if out.scores == 0 {
            return Err(Error::invalid("scores: device pointer is NULL"));
        }
        for (what, ptr) in [
            ("scores", out.scores),
            ("assignment", out.assignment),
            ("confidence", out.confidence),
        ] {
            if !ptr.is_multiple_of(4) {
                return Err(Error::invalid(format!(
                    "{what}: device pointer is not aligned to 4 bytes"
                )));
            }
        }
        // SAFETY: forwarded from the caller.
        unsafe {
            self.backend
                .gradnorm_scores_device(nouns, centres, opts, out)
        }
    }
}
