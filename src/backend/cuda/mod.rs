//! The CUDA backend: a cudarc context on one device, the PTX modules that build.rs embedded,
//! and one launch wrapper per kernel (beside the other wrappers of its stage).
//!
//! cudarc loads `libcuda` at run time (`dynamic-loading`), so the library links and runs on
//! machines without CUDA. cudarc panics when the library is missing, so
//! [`CudaBackend::new`] asks `is_culib_present()` before any CUDA call and also runs device
//! setup under `catch_unwind`: a machine without a driver, without a device, or a build without
//! kernels gives [`Error::NoDevice`] with the reason, and `BackendKind::Auto` falls back to
//! the CPU. Calls the kernels cannot take (rows too wide for shared memory, retrieval of more
//! than 8 top nouns, images and nouns of different dtypes) are delegated to the CPU backend.

pub(crate) mod clip;
mod clip_attention;
mod gradnorm;
mod kernels;
mod kmeans;
mod operands;
mod pipeline;
mod retrieve;

pub use clip::{last_clip_encode_ms, take_clip_profile};
pub use gradnorm::{last_gradnorm_config, last_gradnorm_kernel_ms};
pub use kernels::kernels_built;
pub use kmeans::{
    last_kmeans_assign_kernel, last_kmeans_assign_ms, last_kmeans_sums_ms, set_kmeans_on_device,
    set_kmeans_wgmma_disabled,
};
pub use retrieve::{WgmmaProbe, last_retrieve_kernel, last_retrieve_kernel_ms};

use super::cpu::CpuBackend;
use super::{Backend, BackendKind, HostSteps, KMeansSteps, PipelineStages};
use crate::error::{Error, Result};
use crate::gradnorm::{GradNormOptions, GradNormOut};
use crate::kmeans::{AssignOut, Metric};
use crate::matrix::{DeviceGradNormOut, DeviceMatrix, MatrixRef};
use crate::pipeline::PipelineInput;
use crate::retrieve::{RetrieveOptions, RetrieveOut};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, DriverError, LaunchConfig,
    PushKernelArg, sys,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

/// Lowest compute capability the kernels run on (cp.async, bf16 mma.sync: sm_80).
const MIN_COMPUTE_CAPABILITY: (i32, i32) = (8, 0);

/// The CUDA backend on one device. Calls from many threads are serialised on its stream.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    gradnorm: gradnorm::GradNormKernels,
    kmeans: kmeans::KMeansKernels,
    retrieve: retrieve::RetrieveKernels,
    rows: pipeline::RowKernels,
    /// Largest dynamic shared memory a block may opt into, in bytes.
    max_smem: usize,
    device_name: String,
    /// Serialises work on `stream` (scratch buffers are per call; the stream is shared).
    lock: Mutex<()>,
    cpu: CpuBackend,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.device_name)
            .field("ordinal", &self.ctx.ordinal())
            .finish()
    }
}

impl CudaBackend {
    /// Opens device `ordinal` and loads the kernels. Errors with [`Error::NoDevice`] (and the
    /// reason) when the library was built without kernels, no CUDA driver is installed, the
    /// device does not exist or is older than sm_80, or the driver rejects the PTX.
    pub fn new(ordinal: usize) -> Result<Self> {
        let Some(ptx) = kernels::GRADNORM_PTX else {
            return Err(Error::NoDevice(
                "this build of laic has no CUDA kernels (nvcc was not found when it was \
                 compiled; see scripts/install-nvcc.sh)"
                    .into(),
            ));
        };
        // SAFETY: only tries to dlopen libcuda; no CUDA call is made.
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::NoDevice(
                "no CUDA driver on this machine (libcuda could not be loaded)".into(),
            ));
        }
        match catch_unwind(AssertUnwindSafe(|| Self::setup(ordinal, ptx))) {
            Ok(r) => r,
            Err(panic) => Err(Error::NoDevice(format!(
                "CUDA setup failed: {}",
                panic_message(panic.as_ref())
            ))),
        }
    }

    fn setup(ordinal: usize, ptx: &str) -> Result<Self> {
        let no_device = |what: &str, e: DriverError| Error::NoDevice(format!("{what}: {e}"));
        let count = CudaContext::device_count().map_err(|e| no_device("cuInit failed", e))?;
        if count <= 0 {
            return Err(Error::NoDevice("the CUDA driver sees no device".into()));
        }
        if ordinal >= count as usize {
            return Err(Error::NoDevice(format!(
                "device {ordinal} requested but only {count} CUDA device(s) present"
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| no_device(&format!("cannot open CUDA device {ordinal}"), e))?;
        let cc = ctx
            .compute_capability()
            .map_err(|e| no_device("cannot read the compute capability", e))?;
        if cc < MIN_COMPUTE_CAPABILITY {
            return Err(Error::NoDevice(format!(
                "CUDA device {ordinal} has compute capability {}.{}; laic's kernels need {}.{}",
                cc.0, cc.1, MIN_COMPUTE_CAPABILITY.0, MIN_COMPUTE_CAPABILITY.1
            )));
        }
        let device_name = ctx.name().unwrap_or_else(|_| "unknown".into());
        let max_smem =
            ctx.attribute(
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
            )
            .map_err(|e| no_device("cannot read the shared-memory limit", e))? as usize;
        let module = |ptx: &str, cubin: Option<&'static [u8]>, what: &str| {
            // sm_90 loads the cubin made at build time (no JIT); anything else, or a driver
            // that refuses the cubin, JIT-compiles the PTX.
            let loaded = cubin.filter(|_| cc == (9, 0)).and_then(|bin| {
                ctx.load_module(cudarc::nvrtc::Ptx::from_binary(bin.to_vec()))
                    .ok()
            });
            match loaded {
                Some(m) => Ok(m),
                None => ctx
                    .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
                    .map_err(|e| {
                        no_device(&format!("the CUDA driver rejected laic's PTX ({what})"), e)
                    }),
            }
        };
        let missing = |e| no_device("cannot find a kernel in laic's PTX", e);
        // The wgmma kernels: H100/H200 only; without them the mma.sync kernels serve.
        let hopper_module = |cubin: Option<&'static [u8]>| {
            cubin.filter(|_| cc == (9, 0)).and_then(|bin| {
                ctx.load_module(cudarc::nvrtc::Ptx::from_binary(bin.to_vec()))
                    .ok()
            })
        };
        let gradnorm = gradnorm::GradNormKernels::load(
            &module(ptx, kernels::GRADNORM_SM90, "gradnorm")?,
            hopper_module(kernels::GRADNORM_WGMMA_SM90A).as_ref(),
        )
        .map_err(missing)?;
        let (Some(km_ptx), Some(rt_ptx)) = (kernels::KMEANS_PTX, kernels::RETRIEVE_PTX) else {
            return Err(Error::NoDevice("this build of laic lacks kernels".into()));
        };
        // The wgmma assignment kernels are used unless LAIC_CUDA_KMEANS_WGMMA=0.
        let km_module = module(km_ptx, kernels::KMEANS_SM90, "kmeans")?;
        let kmeans = kmeans::KMeansKernels::load(
            &km_module,
            hopper_module(kernels::KMEANS_WGMMA_SM90A).as_ref(),
        )
        .map_err(missing)?;
        let rows = pipeline::RowKernels::load(&km_module).map_err(missing)?;
        // The wgmma retrieval kernels are used unless LAIC_CUDA_RETRIEVE_WGMMA=0.
        let retrieve = retrieve::RetrieveKernels::load(
            &module(rt_ptx, kernels::RETRIEVE_SM90, "retrieve")?,
            hopper_module(kernels::RETRIEVE_WGMMA_SM90A).as_ref(),
        )
        .map_err(missing)?;
        let stream = ctx
            .new_stream()
            .map_err(|e| no_device("cannot create a CUDA stream", e))?;
        Ok(CudaBackend {
            ctx,
            stream,
            gradnorm,
            kmeans,
            retrieve,
            rows,
            max_smem,
            device_name,
            lock: Mutex::new(()),
            cpu: CpuBackend,
        })
    }

    /// The device's name as the driver reports it.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Runs the wgmma operand-layout probe of `kernels/retrieve_wgmma.cu` (A in registers, B
    /// K-major and N-major) and compares each product with what the CPU emulation computes:
    /// `None` when the wgmma kernels are not loaded (not an H100/H200). For device checks: a
    /// misread layout shows here by name, where the retrieval parity test only shows errors.
    pub fn wgmma_layout_probe(&self) -> Result<Option<Vec<WgmmaProbe>>> {
        retrieve::wgmma_layout_probe(self)
    }

    /// Runs `f` with the context bound to this thread and the stream to itself; panics inside
    /// (cudarc asserts) become [`Error::Cuda`].
    fn with_stream<R>(&self, f: impl FnOnce(&Arc<CudaStream>) -> Result<R>) -> Result<R> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_error("cannot bind the CUDA context", e))?;
        match catch_unwind(AssertUnwindSafe(|| f(&self.stream))) {
            Ok(r) => r,
            Err(panic) => Err(Error::Cuda(format!(
                "panic inside the CUDA backend: {}",
                panic_message(panic.as_ref())
            ))),
        }
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Cuda
    }

    fn as_cuda(&self) -> Option<&CudaBackend> {
        Some(self)
    }

    fn gradnorm_scores(
        &self,
        nouns: &MatrixRef<'_>,
        centres: &MatrixRef<'_>,
        opts: &GradNormOptions,
        out: GradNormOut<'_>,
    ) -> Result<()> {
        if self
            .gradnorm
            .plan(nouns.dtype(), nouns.cols(), self.max_smem)
            .is_err()
        {
            // Rows too wide for a shared-memory noun tile: the CPU kernel has no such limit.
            return self.cpu.gradnorm_scores(nouns, centres, opts, out);
        }
        self.with_stream(|stream| {
            gradnorm::scores_host(
                stream,
                &self.gradnorm,
                self.max_smem,
                nouns,
                centres,
                opts,
                out,
            )
        })
    }

    fn kmeans_assign(
        &self,
        x: &MatrixRef<'_>,
        centres: &[f32],
        metric: Metric,
        out: AssignOut<'_>,
    ) -> Result<()> {
        self.kmeans_steps(*x)?.assign(centres, metric, out)
    }

    fn distances(
        &self,
        x: &MatrixRef<'_>,
        centres: &[f32],
        metric: Metric,
        out: &mut [f32],
    ) -> Result<()> {
        self.kmeans_steps(*x)?.distances(centres, metric, out)
    }

    fn cluster_sums(
        &self,
        x: &MatrixRef<'_>,
        labels: &[u32],
        sums: &mut [f64],
        counts: &mut [u64],
    ) -> Result<()> {
        self.kmeans_steps(*x)?.cluster_sums(labels, sums, counts)
    }

    fn kmeans_steps<'a>(&'a self, x: MatrixRef<'a>) -> Result<Box<dyn KMeansSteps + 'a>> {
        if kmeans::plan(x.dtype(), x.cols(), self.max_smem).is_err() {
            // Rows too wide for a shared-memory point tile: the CPU kernels have no such limit.
            return Ok(Box::new(HostSteps {
                backend: &self.cpu,
                x,
            }));
        }
        Ok(Box::new(kmeans::CudaKMeans::new(self, &x)?))
    }

    fn pipeline_stages<'a>(
        &'a self,
        input: &PipelineInput<'a>,
    ) -> Result<Box<dyn PipelineStages + 'a>> {
        Ok(Box::new(pipeline::CudaStages::new(self, input)?))
    }

    fn retrieve(
        &self,
        images: &MatrixRef<'_>,
        nouns: &MatrixRef<'_>,
        opts: &RetrieveOptions,
        out: RetrieveOut<'_>,
    ) -> Result<()> {
        if !retrieve::supported(images, nouns, opts, self.max_smem) {
            retrieve::mark_cpu_fallback();
            return self.cpu.retrieve(images, nouns, opts, out);
        }
        retrieve::retrieve_host(self, images, nouns, opts, out)
    }

    unsafe fn gradnorm_scores_device(
        &self,
        nouns: &DeviceMatrix,
        centres: &DeviceMatrix,
        opts: &GradNormOptions,
        out: &DeviceGradNormOut,
    ) -> Result<()> {
        self.with_stream(|stream| {
            // SAFETY: forwarded from the caller (device spans valid, outputs disjoint).
            unsafe {
                gradnorm::scores_device(
                    stream,
                    &self.gradnorm,
                    self.max_smem,
                    nouns,
                    centres,
                    opts,
                    out,
                )
            }
        })
    }
}

/// Whether the path that the environment variable `name` switches is on: it is unless `name`
/// is `0`. The kernels and loops switched so passed the GPU tests and were the faster ones
/// (H200, 2026-11-28); `0` selects the path before them, kept for comparison and as a fallback.
pub(crate) fn switched_on(name: &str) -> bool {
    std::env::var(name).as_deref() != Ok("0")
}

/// A driver error as a laic error: out-of-memory becomes [`Error::OutOfMemory`], anything else
/// [`Error::Cuda`]; `what` says which step failed.
pub(crate) fn cuda_error(what: &str, e: DriverError) -> Error {
    if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        Error::OutOfMemory(format!("{what}: device memory exhausted ({e})"))
    } else {
        Error::Cuda(format!("{what}: {e}"))
    }
}

/// Enqueues the copy of a device buffer into a new host vector (complete after a sync); a
/// failure says `what` failed.
pub(super) fn download<T: DeviceRepr + Default + Clone>(
    stream: &Arc<CudaStream>,
    buf: &CudaSlice<T>,
    what: &str,
) -> Result<Vec<T>> {
    stream.clone_dtoh(buf).map_err(|e| cuda_error(what, e))
}

/// Waits for `stream`; a failure says `what` failed.
pub(super) fn sync(stream: &Arc<CudaStream>, what: &str) -> Result<()> {
    stream.synchronize().map_err(|e| cuda_error(what, e))
}

/// Launches `f` on `stream` with one parameter struct; a failed launch says `what` failed.
///
/// # Safety
/// `params` has the layout of the kernel's parameter struct, and every address in it is valid
/// for what the kernel reads and writes under `cfg`.
pub(super) unsafe fn launch_kernel<P: DeviceRepr>(
    stream: &Arc<CudaStream>,
    f: &CudaFunction,
    cfg: LaunchConfig,
    params: &P,
    what: &str,
) -> Result<()> {
    // SAFETY: the caller's contract.
    unsafe { stream.launch_builder(f).arg(params).launch(cfg) }.map_err(|e| cuda_error(what, e))?;
    Ok(())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
