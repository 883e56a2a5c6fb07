//! The pipeline's steps on CUDA with the data on the device ([`CudaStages`], issue 8): the
//! images' unit rows go up once when the stages are made and the nouns once when first
//! needed; both k-means runs pack their points from device rows; GradNorm reads the resident
//! nouns; retrieval gathers the selected nouns as f32 rows on the device and writes t̃ there;
//! the joined rows `[x, t̃]` are assembled on the device (`kernels/rows.cuh`).
//!
//! What crosses the bus besides the inputs: the image centres (K_c × D) on their way to
//! GradNorm, the M scores back, the selected noun indices up, the top nouns per image back,
//! and per k-means call its results and what its loops exchange (the labels and distances of
//! each Lloyd iteration on the default host loop, the seeds' rows, the column sums behind the
//! tolerance: blocks × D f64).
//!
//! A step the device cannot take runs on the CPU on host copies, as `CudaBackend`'s per-call
//! primitives do: rows too wide for the kernels' shared memory, and retrieval of more top nouns
//! than its kernel keeps (`retrieve::supported_shape`); then the CPU's t̃ goes up to be joined. A training
//! set, or a Euclidean centres metric, makes the centres k-means pack the training rows from
//! the host (an input, uploaded once).

use super::kmeans::{self as cuda_kmeans, CudaKMeans};
use super::retrieve;
use super::{CudaBackend, cuda_error, download, launch_kernel, sync};
use crate::backend::{Backend, PipelineStages};
use crate::error::{Error, Result};
use crate::gradnorm::{self, GradNormOptions, GradNormScores};
use crate::kmeans::{self, KMeansOptions, KMeansResult, Metric, Rows};
use crate::matrix::{DeviceGradNormOut, DeviceMatrix, Dtype, MatrixRef};
use crate::pipeline::{PipelineInput, check_selected, retrieve_selected, unit_rows};
use crate::progress::{Progress, Stage};
use crate::retrieve::RetrieveOptions;
use cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr, DriverError,
    LaunchConfig,
};
use std::sync::Arc;

/// Rows per block of the gather (`GATHER_WARPS` in rows.cuh: a warp per row).
const GATHER_WARPS: usize = 8;
/// Threads of a column-sums block (`COLUMN_THREADS`).
const COLUMN_THREADS: u32 = 256;
/// Most blocks of the column sums (each sums a range of rows; their partials come back).
const COLUMN_BLOCKS: usize = 256;

/// `GatherParams` of rows.cuh.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct GatherParams {
    src: u64,
    index: u64,
    dst: u64,
    rows: u64,
    src_stride: u64,
    dst_stride: u64,
    d: i32,
    reserved: i32,
}

/// `ColumnParams` of rows.cuh.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct ColumnParams {
    src: u64,
    mean: u64,
    out: u64,
    rows: u64,
    stride: u64,
    rows_per_block: u64,
    d: i32,
    reserved: i32,
}

// SAFETY: plain #[repr(C)] structs of integers with the C layout of rows.cuh's
// `GatherParams` and `ColumnParams` (sizes checked by a test), passed by value.
unsafe impl DeviceRepr for GatherParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for ColumnParams {}

/// The kernels of rows.cuh (in kmeans.cu's module): the gathers by source dtype (f32, f16,
/// bf16) and the column sums.
pub(super) struct RowKernels {
    gather: [CudaFunction; 3],
    column_sums: CudaFunction,
}

impl RowKernels {
    pub(super) fn load(module: &Arc<CudaModule>) -> std::result::Result<Self, DriverError> {
        let f = |name: &str| module.load_function(name);
        Ok(RowKernels {
            gather: [
                f("laic_rows_gather_f32")?,
                f("laic_rows_gather_f16")?,
                f("laic_rows_gather_bf16")?,
            ],
            column_sums: f("laic_rows_column_sums")?,
        })
    }
}

/// Enqueues the gather of `rows` rows into f32 rows at `dst` (`dst_stride` floats apart),
/// `d` columns each: row r is row `index[r]` (a device array of `rows` u32; 0: row r) of the
/// `dtype` matrix at `src`, whose rows are `src_stride` elements apart.
///
/// # Safety
/// `src` holds every row the gather reads (d elements each), `index` (when not 0) `rows`
/// indices of such rows, and `dst` `rows` rows of `dst_stride` floats (the last one `d`).
#[allow(clippy::too_many_arguments)]
unsafe fn launch_gather(
    stream: &Arc<CudaStream>,
    kernels: &RowKernels,
    dtype: Dtype,
    src: u64,
    src_stride: usize,
    index: u64,
    rows: usize,
    d: usize,
    dst: u64,
    dst_stride: usize,
) -> Result<()> {
    let params = GatherParams {
        src,
        index,
        dst,
        rows: rows as u64,
        src_stride: src_stride as u64,
        dst_stride: dst_stride as u64,
        d: d as i32,
        reserved: 0,
    };
    let f = &kernels.gather[match dtype {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::Bf16 => 2,
    }];
    let cfg = LaunchConfig {
        grid_dim: (rows.div_ceil(GATHER_WARPS) as u32, 1, 1),
        block_dim: ((GATHER_WARPS * 32) as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the caller's contract; one warp per output row below `rows`.
    unsafe { launch_kernel(stream, f, cfg, &params, "launching the row gather") }
}

/// An f32 matrix on the device (N × D, contiguous) as the k-means loops read it: a few rows at
/// a time, gathered on the device and copied back.
struct DeviceRows<'a> {
    backend: &'a CudaBackend,
    buf: &'a CudaSlice<f32>,
    n: usize,
    d: usize,
}

impl Rows for DeviceRows<'_> {
    fn n_rows(&self) -> usize {
        self.n
    }

    fn dim(&self) -> usize {
        self.d
    }

    fn copy_rows(&self, idx: &[usize], out: &mut [f32]) -> Result<()> {
        if idx.is_empty() {
            return Ok(());
        }
        let index: Vec<u32> = idx
            .iter()
            .map(|&i| u32::try_from(i).ok().filter(|&i| (i as usize) < self.n))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::Internal(format!("a row index is not below {}", self.n)))?;
        let d = self.d;
        let host = self.backend.with_stream(|stream| {
            let dev_index = stream
                .clone_htod(&index)
                .map_err(|e| cuda_error("uploading row indices", e))?;
            let rows = stream
                .alloc_zeros::<f32>(idx.len() * d)
                .map_err(|e| cuda_error("gathered rows", e))?;
            let (sp, _g1) = self.buf.device_ptr(stream);
            let (ip, _g2) = dev_index.device_ptr(stream);
            let (rp, _g3) = rows.device_ptr(stream);
            // SAFETY: `buf` holds n × d f32 and every index is below n (checked above);
            // `rows` holds idx.len() × d f32.
            unsafe {
                launch_gather(
                    stream,
                    &self.backend.rows,
                    Dtype::F32,
                    sp,
                    d,
                    ip,
                    idx.len(),
                    d,
                    rp,
                    d,
                )
            }?;
            let host = download(stream, &rows, "copying rows back")?;
            sync(stream, "the row gather failed")?;
            Ok(host)
        })?;
        out[..host.len()].copy_from_slice(&host);
        Ok(())
    }
}

impl DeviceRows<'_> {
    /// The mean over the columns of the per-column variance (`kmeans::mean_variance`, the
    /// tolerance's scale), from two passes of f64 column sums on the device; the blocks'
    /// partials are added on the host in block order.
    fn mean_variance(&self) -> Result<f64> {
        let (n, d) = (self.n, self.d);
        let rows_per_block = n.div_ceil(COLUMN_BLOCKS).max(32);
        let blocks = n.div_ceil(rows_per_block);
        let column_totals = |partials: &[f64]| -> Vec<f64> {
            let mut total = vec![0f64; d];
            for block in partials.chunks_exact(d) {
                total.iter_mut().zip(block).for_each(|(t, &v)| *t += v);
            }
            total
        };
        let pass = |mean: Option<&[f64]>| -> Result<Vec<f64>> {
            self.backend.with_stream(|stream| {
                let dev_mean = match mean {
                    Some(m) => Some(
                        stream
                            .clone_htod(m)
                            .map_err(|e| cuda_error("uploading the column means", e))?,
                    ),
                    None => None,
                };
                let out = stream
                    .alloc_zeros::<f64>(blocks * d)
                    .map_err(|e| cuda_error("column sums", e))?;
                let (sp, _g1) = self.buf.device_ptr(stream);
                let (op, _g2) = out.device_ptr(stream);
                let mean_guard = dev_mean.as_ref().map(|m| m.device_ptr(stream));
                let params = ColumnParams {
                    src: sp,
                    mean: mean_guard.as_ref().map_or(0, |(p, _)| *p),
                    out: op,
                    rows: n as u64,
                    stride: d as u64,
                    rows_per_block: rows_per_block as u64,
                    d: d as i32,
                    reserved: 0,
                };
                let cfg = LaunchConfig {
                    grid_dim: (blocks as u32, 1, 1),
                    block_dim: (COLUMN_THREADS, 1, 1),
                    shared_mem_bytes: 0,
                };
                // SAFETY: `buf` holds n × d f32, `mean` (when given) d f64, `out` blocks × d
                // f64; block b reads rows below n and writes row b of `out`.
                unsafe {
                    launch_kernel(
                        stream,
                        &self.backend.rows.column_sums,
                        cfg,
                        &params,
                        "launching the column sums",
                    )
                }?;
                let host = download(stream, &out, "copying the column sums back")?;
                sync(stream, "the column sums failed")?;
                Ok(host)
            })
        };
        let mean: Vec<f64> = column_totals(&pass(None)?)
            .iter()
            .map(|s| s / n as f64)
            .collect();
        let squares = column_totals(&pass(Some(&mean))?);
        Ok(squares.iter().sum::<f64>() / (n as f64 * d as f64))
    }
}

/// The pipeline's matrices on the device (see the module's documentation).
pub(super) struct CudaStages<'a> {
    backend: &'a CudaBackend,
    input: PipelineInput<'a>,
    /// The images' unit rows, N × D f32.
    x: CudaSlice<f32>,
    /// The nouns as given (their bytes), once a step has needed them.
    nouns: Option<CudaSlice<u8>>,
    /// `[x, t̃]`, N × 2D f32, once retrieval has run.
    joined: Option<CudaSlice<f32>>,
}

impl<'a> CudaStages<'a> {
    /// Uploads the images' unit rows (computed on the host as the CPU pipeline computes them).
    pub(super) fn new(backend: &'a CudaBackend, input: &PipelineInput<'a>) -> Result<Self> {
        let x = unit_rows(&input.images);
        let x = backend.with_stream(|stream| {
            stream
                .clone_htod(&x)
                .map_err(|e| cuda_error("uploading the images", e))
        })?;
        Ok(CudaStages {
            backend,
            input: *input,
            x,
            nouns: None,
            joined: None,
        })
    }

    fn host_nouns(&self) -> Result<MatrixRef<'a>> {
        self.input
            .nouns
            .ok_or_else(|| Error::invalid("nouns: the noun set is empty"))
    }

    /// Uploads the nouns' bytes (their host stride kept) unless a step already has; returns
    /// their host view.
    fn upload_nouns(&mut self) -> Result<MatrixRef<'a>> {
        let nouns = self.host_nouns()?;
        if self.nouns.is_none() {
            let bytes = super::operands::as_bytes(nouns.data());
            let dev = self.backend.with_stream(|stream| {
                stream
                    .clone_htod(bytes)
                    .map_err(|e| cuda_error("uploading the nouns", e))
            })?;
            self.nouns = Some(dev);
        }
        Ok(nouns)
    }

    /// k-means (`opts`, validated) of the n × d f32 rows in `buf`, packed from the device; rows
    /// too wide for the kernels come back to the host and run on the CPU.
    fn kmeans_device_rows(
        &self,
        buf: &CudaSlice<f32>,
        d: usize,
        opts: &KMeansOptions,
        progress: &Progress<'_>,
        stage: Stage,
    ) -> Result<KMeansResult> {
        let n = self.input.images.rows();
        opts.validate(n).map_err(|e| e.in_arg("options"))?;
        let rows = DeviceRows {
            backend: self.backend,
            buf,
            n,
            d,
        };
        if cuda_kmeans::plan(Dtype::F32, d, self.backend.max_smem).is_err() {
            let host = self.backend.with_stream(|stream| {
                let host = download(stream, buf, "copying rows back")?;
                sync(stream, "copying rows back")?;
                Ok(host)
            })?;
            let x = MatrixRef::from_f32(&host[..n * d], n, d)?;
            return kmeans::run(&self.backend.cpu, &x, opts, progress, stage);
        }
        let tol = opts.tol * rows.mean_variance()?;
        let mut steps = CudaKMeans::from_device(self.backend, buf, n, d)?;
        kmeans::restarts(&mut steps, &rows, opts, tol, progress, stage)
    }
}

impl PipelineStages for CudaStages<'_> {
    fn centres(
        &mut self,
        opts: &KMeansOptions,
        progress: &Progress<'_>,
        stage: Stage,
    ) -> Result<KMeansResult> {
        match self.input.train {
            // The spherical k-means of the images normalises them as `x` was normalised.
            None if opts.metric == Metric::Spherical => {
                let d = self.input.images.cols();
                self.kmeans_device_rows(&self.x, d, opts, progress, stage)
            }
            train => {
                let train = train.unwrap_or(self.input.images);
                kmeans::run(self.backend, &train, opts, progress, stage)
            }
        }
    }

    fn scores(&mut self, centres: &[f32], opts: &GradNormOptions) -> Result<GradNormScores> {
        let host = self.host_nouns()?;
        let (m, d) = (host.rows(), host.cols());
        let w = MatrixRef::from_f32(centres, centres.len() / d, d)?;
        let mut out = GradNormScores::zeros(m);
        gradnorm::validate_inputs(&host, &w, opts, &out.as_out())?;
        let max_smem = self.backend.max_smem;
        if self
            .backend
            .gradnorm
            .plan(host.dtype(), d, max_smem)
            .is_err()
        {
            // Rows too wide for a shared-memory noun tile: the CPU kernel has no such limit.
            self.backend
                .cpu
                .gradnorm_scores(&host, &w, opts, out.as_out())?;
            return Ok(out);
        }
        let backend = self.backend;
        self.upload_nouns()?;
        let nouns = self.nouns.as_ref().expect("uploaded above");
        let (scores, assignment, confidence) = backend.with_stream(|stream| {
            let dev_w = stream
                .clone_htod(centres)
                .map_err(|e| cuda_error("uploading the centres", e))?;
            let alloc = |what: &str| {
                stream
                    .alloc_zeros::<f32>(m)
                    .map_err(|e| cuda_error(what, e))
            };
            let (d_scores, d_conf) = (alloc("scores")?, alloc("confidences")?);
            let d_assign = stream
                .alloc_zeros::<u32>(m)
                .map_err(|e| cuda_error("assignments", e))?;
            {
                let (np, _g1) = nouns.device_ptr(stream);
                let (wp, _g2) = dev_w.device_ptr(stream);
                let (sp, _g3) = d_scores.device_ptr(stream);
                let (ap, _g4) = d_assign.device_ptr(stream);
                let (cp, _g5) = d_conf.device_ptr(stream);
                let nouns = DeviceMatrix {
                    ptr: np,
                    rows: m,
                    cols: d,
                    row_stride: host.row_stride(),
                    dtype: host.dtype(),
                };
                let centres = DeviceMatrix {
                    ptr: wp,
                    rows: w.rows(),
                    cols: d,
                    row_stride: d,
                    dtype: Dtype::F32,
                };
                let out = DeviceGradNormOut {
                    scores: sp,
                    assignment: ap,
                    confidence: cp,
                    len: m,
                };
                // SAFETY: the nouns' bytes were uploaded whole (their stride as on the host),
                // the centres are k × d contiguous f32, and the outputs hold m elements each
                // in buffers of their own.
                unsafe {
                    super::gradnorm::scores_device(
                        stream,
                        &backend.gradnorm,
                        max_smem,
                        &nouns,
                        &centres,
                        opts,
                        &out,
                    )
                }?;
            }
            let scores = download(stream, &d_scores, "copying the scores back")?;
            let assignment = download(stream, &d_assign, "copying the assignments back")?;
            let confidence = download(stream, &d_conf, "copying the confidences back")?;
            sync(stream, "copying the scores back")?;
            Ok((scores, assignment, confidence))
        })?;
        Ok(GradNormScores {
            scores,
            assignment,
            confidence,
        })
    }

    fn retrieve(
        &mut self,
        selected: &[u32],
        opts: &RetrieveOptions,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        opts.validate()?;
        let (n, d) = (self.input.images.rows(), self.input.images.cols());
        let s = selected.len();
        check_selected(selected, self.host_nouns()?.rows())?;
        let backend = self.backend;
        let on_device = retrieve::supported_shape(Dtype::F32, d, opts.top_n, backend.max_smem);
        let (t, top) = if on_device {
            let host = self.upload_nouns()?;
            let nouns = self.nouns.as_ref().expect("uploaded above");
            let x = &self.x;
            let (t, ti, tw) = backend.with_stream(|stream| {
                let index = stream
                    .clone_htod(selected)
                    .map_err(|e| cuda_error("uploading the selected nouns", e))?;
                let t_sel = stream
                    .alloc_zeros::<f32>(s * d)
                    .map_err(|e| cuda_error("the selected nouns", e))?;
                {
                    let (np, _g1) = nouns.device_ptr(stream);
                    let (ip, _g2) = index.device_ptr(stream);
                    let (tp, _g3) = t_sel.device_ptr(stream);
                    // SAFETY: the nouns' bytes were uploaded whole (m rows, their host
                    // stride), every selected index is below m (checked above), and `t_sel`
                    // holds s × d f32.
                    unsafe {
                        launch_gather(
                            stream,
                            &backend.rows,
                            host.dtype(),
                            np,
                            host.row_stride(),
                            ip,
                            s,
                            d,
                            tp,
                            d,
                        )
                    }?;
                }
                retrieve::retrieve_device(backend, stream, x, &t_sel, d, opts)
            })?;
            (t, (ti, tw))
        } else {
            // The gated kernel or rows too wide: the CPU retrieves from host copies, and t̃
            // goes up to be joined.
            let x = unit_rows(&self.input.images);
            let r = retrieve_selected(&backend.cpu, &x, &self.host_nouns()?, selected, opts)?;
            let t = backend.with_stream(|stream| {
                stream
                    .clone_htod(&r.features)
                    .map_err(|e| cuda_error("uploading the retrieved features", e))
            })?;
            (t, (r.top_indices, r.top_weights))
        };
        // [x, t̃]: the two halves of each joined row gathered into place.
        let x = &self.x;
        let joined = backend.with_stream(|stream| {
            let joined = stream
                .alloc_zeros::<f32>(n * 2 * d)
                .map_err(|e| cuda_error("the joined rows", e))?;
            let (jp, g1) = joined.device_ptr(stream);
            for (half, src) in [x, &t].into_iter().enumerate() {
                let (sp, _g2) = src.device_ptr(stream);
                // SAFETY: `x` and `t` hold n × d f32; `joined` holds n rows of 2d f32, and
                // each half starts d × half floats into its row.
                unsafe {
                    launch_gather(
                        stream,
                        &backend.rows,
                        Dtype::F32,
                        sp,
                        d,
                        0,
                        n,
                        d,
                        jp + (half * d * 4) as u64,
                        2 * d,
                    )
                }?;
            }
            drop(g1);
            sync(stream, "joining the rows failed")?;
            Ok(joined)
        })?;
        self.joined = Some(joined);
        Ok(top)
    }

    fn cluster(
        &mut self,
        opts: &KMeansOptions,
        progress: &Progress<'_>,
        stage: Stage,
    ) -> Result<KMeansResult> {
        let d = self.input.images.cols();
        match &self.joined {
            Some(z) => self.kmeans_device_rows(z, 2 * d, opts, progress, stage),
            None => self.kmeans_device_rows(&self.x, d, opts, progress, stage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_structs_have_the_c_layout() {
        assert_eq!(std::mem::size_of::<GatherParams>(), 56);
        assert_eq!(std::mem::size_of::<ColumnParams>(), 56);
    }

    #[test]
    fn the_embedded_ptx_has_the_row_kernels() {
        let Some(ptx) = super::super::kernels::KMEANS_PTX else {
            return;
        };
        for name in [
            "laic_rows_gather_f32",
            "laic_rows_gather_f16",
            "laic_rows_gather_bf16",
            "laic_rows_column_sums",
        ] {
            assert!(ptx.contains(&format!(".entry {name}(")), "{name}");
        }
    }
}
