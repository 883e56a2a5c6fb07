//! GradNorm on CUDA: launch wrappers of `kernels/gradnorm.cu` and the host/device data paths.
//!
//! A call packs the centres once (`laic_gradnorm_prep_*`: operand type, zero padding to
//! multiples of the tile sizes, per-centre logit scale), then runs the fused kernel
//! (`laic_gradnorm_<dtype>_<WM>x<WARPS>`) over the nouns. Both kernels raise bits in a small
//! device flag buffer for NaN/Inf, zero rows (when normalising) and record the largest row
//! norms, so device-resident inputs are validated like host ones before any output is written.

use super::cuda_error;
use crate::error::{Error, Result};
use crate::gradnorm::{GradNormOptions, GradNormOut, MAX_LOGIT, Target};
use crate::matrix::{DeviceGradNormOut, DeviceMatrix, Dtype, MatrixData, MatrixRef};
use cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    PushKernelArg, sys,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Device time of the last fused kernel launch(es) of a call, f32 bits (NaN: none yet).
static LAST_KERNEL_MS: AtomicU32 = AtomicU32::new(0x7fc0_0000);

/// Device time in milliseconds of the fused GradNorm kernel(s) of the most recent CUDA
/// GradNorm call in this process (CUDA events around the launches; centre packing and copies
/// excluded), or `None` before the first. For benchmarks.
pub fn last_gradnorm_kernel_ms() -> Option<f32> {
    Some(f32::from_bits(LAST_KERNEL_MS.load(Ordering::Relaxed))).filter(|v| !v.is_nan())
}

/// Block shape (index into CONFIGS) of the last fused kernel launch; u32::MAX: none yet.
static LAST_CONFIG: AtomicU32 = AtomicU32::new(u32::MAX);

/// The block shape (`"wg2"`: two warpgroups of wgmma; `"32x4"`: mma.sync, 32 nouns per warp,
/// 4 warps) of the most recent CUDA GradNorm
/// launch in this process, or `None` before the first. For benchmarks.
pub fn last_gradnorm_config() -> Option<&'static str> {
    CONFIGS
        .get(LAST_CONFIG.load(Ordering::Relaxed) as usize)
        .map(|c| c.1)
}

/// Events recorded around one launch.
type Timing = (cudarc::driver::CudaEvent, cudarc::driver::CudaEvent);

/// Milliseconds between the events of completed launches (the stream has been synchronised).
fn record_timings(timings: &[Timing]) {
    let total: f32 = timings
        .iter()
        .filter_map(|(a, b)| a.elapsed_ms(b).ok())
        .sum();
    LAST_KERNEL_MS.store(total.to_bits(), Ordering::Relaxed);
}

/// Centres per tile (`BN` in gradnorm.cu).
const BN: usize = 64;
/// Embedding columns per streamed chunk (`BK`).
const BK: usize = 64;
/// cp.async pipeline depth (`STAGES`).
const STAGES: usize = 3;
/// Padding of a shared-memory row in operand elements (`PAD`).
const PAD: usize = 8;
/// Centre rows packed per block of the prep kernel (256 threads, a warp per row).
const PREP_ROWS_PER_BLOCK: usize = 8;
/// Bytes of nouns uploaded per chunk on the host path.
const HOST_CHUNK_BYTES: usize = 256 << 20;

/// Centres per tile of the wgmma kernels (`wg::BN` in gradnorm_wgmma.cu).
const WG_BN: usize = 128;

/// A fused kernel's family and block shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// gradnorm.cu (mma.sync, any sm_80+ device): nouns per warp, warps per block.
    Mma { wm: usize, warps: usize },
    /// gradnorm_wgmma.cu (wgmma, sm_90a only): warpgroups of 64 nouns, centre pipeline
    /// stages (f32 input: 3, whatever this says), and whether each warpgroup streams the
    /// centres through stages of its own (`split`).
    Wg {
        groups: usize,
        stages: usize,
        split: bool,
    },
}

/// Block shapes of the fused kernels with their name suffixes, in the order they are tried;
/// the first that exists for the dtype and device and whose shared memory fits is used.
/// `wg2d`, `wg2s` (split streams, not yet run on a GPU) and `16x8` are only used when asked
/// for through `LAIC_CUDA_GRADNORM_CONFIG` (a tuning knob for `scripts/gpu-check.sh`), and so
/// are `wg2nofold` and `wg2nomma` (f16 only),
/// the diagnostic halves of `wg2` whose scores are meaningless (gradnorm_wgmma.cu says what
/// each leaves out).
const CONFIGS: [(Shape, &str); 10] = [
    (
        Shape::Wg {
            groups: 2,
            stages: 4,
            split: false,
        },
        "wg2",
    ),
    (
        Shape::Wg {
            groups: 2,
            stages: 6,
            split: false,
        },
        "wg2d",
    ),
    (
        Shape::Wg {
            groups: 1,
            stages: 4,
            split: false,
        },
        "wg1",
    ),
    (Shape::Mma { wm: 32, warps: 4 }, "32x4"),
    (Shape::Mma { wm: 16, warps: 8 }, "16x8"),
    (Shape::Mma { wm: 16, warps: 4 }, "16x4"),
    (Shape::Mma { wm: 16, warps: 2 }, "16x2"),
    (
        Shape::Wg {
            groups: 2,
            stages: 4,
            split: false,
        },
        "wg2nofold",
    ),
    (
        Shape::Wg {
            groups: 2,
            stages: 4,
            split: false,
        },
        "wg2nomma",
    ),
    (
        Shape::Wg {
            groups: 2,
            stages: 3,
            split: true,
        },
        "wg2s",
    ),
];
const DEFAULT_ORDER: [usize; 5] = [0, 2, 3, 5, 6];

/// Whether gradnorm_wgmma.cu has the kernel of this config for this dtype (f32 input, with
/// two operand planes, only fits one warpgroup; the diagnostic variants are f16 only).
fn wg_kernel_exists(dtype: Dtype, config: &str) -> bool {
    match config {
        "wg1" => true,
        "wg2nofold" | "wg2nomma" => dtype == Dtype::F16,
        // "wg2", "wg2d", "wg2s": 16-bit input
        _ => dtype != Dtype::F32,
    }
}

const FLAG_NOUN_NONFINITE: u32 = 1;
const FLAG_NOUN_ZERO: u32 = 2;
const FLAG_CENTRE_NONFINITE: u32 = 4;
const FLAG_CENTRE_ZERO: u32 = 8;

/// Parameters of the fused kernel: the C struct `GradNormParams` of gradnorm.cu, field for
/// field (device addresses as u64).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct GradNormParams {
    nouns: u64,
    centres: u64,
    centre_scale: u64,
    scores: u64,
    assignment: u64,
    confidence: u64,
    flags: u64,
    m: u64,
    noun_stride: u64,
    k: i32,
    kp: i32,
    d: i32,
    dp: i32,
    logit_scale: f32,
    q: f32,
    power: i32,
    normalize: i32,
    uniform: i32,
    /// Non-zero: noun rows may be read as 16-byte vectors.
    vec16: i32,
}

/// Parameters of the centre-packing kernel: the C struct `PrepParams` of gradnorm.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct PrepParams {
    src: u64,
    dst: u64,
    scale: u64,
    flags: u64,
    stride: u64,
    rows: i32,
    rows_padded: i32,
    d: i32,
    dp: i32,
    normalize: i32,
    reserved: i32,
}

// SAFETY: plain #[repr(C)] structs of integers and floats with the C layout of gradnorm.cu's
// structs (sizes checked by a test), passed by value as kernel parameters.
unsafe impl DeviceRepr for GradNormParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for PrepParams {}

/// The kernels of gradnorm.cu and gradnorm_wgmma.cu, indexed by input dtype (f32, f16, bf16)
/// and then by `CONFIGS` (None: no such kernel, or the wgmma module is not loaded).
pub(super) struct GradNormKernels {
    prep: [CudaFunction; 3],
    main: [[Option<CudaFunction>; CONFIGS.len()]; 3],
}

const DTYPES: [&str; 3] = ["f32", "f16", "bf16"];
const DTYPE_OF: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::Bf16];

fn dtype_index(d: Dtype) -> usize {
    match d {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::Bf16 => 2,
    }
}

impl GradNormKernels {
    /// The kernels of `module` (gradnorm.cu) and, when given, `wgmma` (gradnorm_wgmma.cu).
    pub(super) fn load(
        module: &Arc<CudaModule>,
        wgmma: Option<&Arc<CudaModule>>,
    ) -> std::result::Result<Self, cudarc::driver::DriverError> {
        let prep = [
            module.load_function(&format!("laic_gradnorm_prep_{}", DTYPES[0]))?,
            module.load_function(&format!("laic_gradnorm_prep_{}", DTYPES[1]))?,
            module.load_function(&format!("laic_gradnorm_prep_{}", DTYPES[2]))?,
        ];
        let mut main: [[Option<CudaFunction>; CONFIGS.len()]; 3] = Default::default();
        for (di, dt) in DTYPES.iter().enumerate() {
            for (ci, (shape, name)) in CONFIGS.iter().enumerate() {
                main[di][ci] = match *shape {
                    Shape::Mma { .. } => {
                        Some(module.load_function(&format!("laic_gradnorm_{dt}_{name}"))?)
                    }
                    Shape::Wg { .. } => match wgmma {
                        Some(m) if wg_kernel_exists(DTYPE_OF[di], name) => {
                            Some(m.load_function(&format!("laic_gradnorm_wg_{dt}_{name}"))?)
                        }
                        _ => None,
                    },
                };
            }
        }
        Ok(GradNormKernels { prep, main })
    }

    /// Which `CONFIGS` have a kernel for `dtype`.
    fn available(&self, dtype: Dtype) -> [bool; CONFIGS.len()] {
        let row = &self.main[dtype_index(dtype)];
        std::array::from_fn(|i| row[i].is_some())
    }

    /// The block shape for `d` columns of `dtype` on a device with `max_smem` bytes of
    /// shared memory per block, or an error when none fits.
    pub(super) fn plan(&self, dtype: Dtype, d: usize, max_smem: usize) -> Result<Plan> {
        plan(dtype, d, max_smem, &self.available(dtype))
    }
}

/// How one call runs: block shape, shared memory, padded width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    config: usize,
    /// Nouns per block.
    bm: usize,
    threads: u32,
    /// Dynamic shared memory per block, bytes.
    smem: usize,
    /// D padded to a multiple of BK.
    dp: usize,
    /// Operand planes: 2 for f32 input (bf16 hi + lo), else 1.
    planes: usize,
    /// The packed centres are padded to a multiple of this many rows.
    kp_align: usize,
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// Shared memory of a block shape: the resident noun tile, the centre pipeline, row info.
fn smem_bytes(shape: Shape, bm: usize, dp: usize, planes: usize) -> usize {
    match shape {
        Shape::Mma { .. } => {
            planes * bm * (dp + PAD) * 2 + STAGES * planes * BN * (BK + PAD) * 2 + bm * 2 * 4
        }
        Shape::Wg {
            groups,
            stages,
            split,
        } => {
            // 1024 bytes of slack for aligning the swizzled tiles; stages (f32: 3) of
            // 128 centres x 64 columns per plane, per warpgroup when split.
            let stages = if planes == 2 { 3 } else { stages };
            let streams = if split { groups } else { 1 };
            1024 + planes * bm * dp * 2 + streams * stages * planes * WG_BN * BK * 2 + bm * 2 * 4
        }
    }
}

/// The block shape for `d` columns of `dtype` under a shared-memory limit, among the
/// `available` kernels, or an error naming the limit when none fits (the caller falls back to
/// the CPU).
fn plan(
    dtype: Dtype,
    d: usize,
    max_smem: usize,
    available: &[bool; CONFIGS.len()],
) -> Result<Plan> {
    let dp = round_up(d, BK);
    let planes = if dtype == Dtype::F32 { 2 } else { 1 };
    let make = |config: usize| {
        let shape = CONFIGS[config].0;
        let (bm, threads, kp_align) = match shape {
            Shape::Mma { wm, warps } => (wm * warps, warps * 32, BN),
            Shape::Wg { groups, .. } => (64 * groups, groups * 128, WG_BN),
        };
        Plan {
            config,
            bm,
            threads: threads as u32,
            smem: smem_bytes(shape, bm, dp, planes),
            dp,
            planes,
            kp_align,
        }
    };
    if let Ok(name) = std::env::var("LAIC_CUDA_GRADNORM_CONFIG")
        && let Some(i) = CONFIGS.iter().position(|c| c.1 == name)
        && available[i]
    {
        let p = make(i);
        if p.smem <= max_smem {
            return Ok(p);
        }
    }
    DEFAULT_ORDER
        .iter()
        .filter(|&&i| available[i])
        .map(|&i| make(i))
        .find(|p| p.smem <= max_smem)
        .ok_or_else(|| {
            Error::invalid(format!(
                "rows of {d} {dtype:?} elements are too wide for the CUDA GradNorm kernel on this \
                 device ({} bytes of shared memory needed, {max_smem} available)",
                make(DEFAULT_ORDER[DEFAULT_ORDER.len() - 1]).smem
            ))
        })
}

fn power_code(q: f32) -> i32 {
    match q {
        1.0 => 0,
        2.0 => 1,
        q if q.is_infinite() => 2,
        _ => 3,
    }
}

/// Centres packed for the fused kernel.
struct PackedCentres {
    /// `planes` planes of `kp × dp` operands (16-bit).
    data: CudaSlice<u16>,
    /// `kp` logit scales.
    scale: CudaSlice<f32>,
    k: usize,
    kp: usize,
}

/// Launches `laic_gradnorm_prep_<dtype>` on `src` into fresh buffers.
///
/// # Safety
/// `src` is a device address of `rows` rows of `d` elements of `dtype`, `stride` elements
/// apart (the kernel reads element `(r, c)` for `r < rows`, `c < d` only); `flags` addresses
/// at least 4 u32. The kernel writes all of `planes × kp × dp` packed elements and `kp`
/// scales (both allocated here with exactly those sizes), with `kp = round_up(rows, plan.kp_align)` and
/// `dp = plan.dp`, using one warp per packed row and `ceil(kp / 8)` blocks of 256 threads.
#[allow(clippy::too_many_arguments)]
unsafe fn launch_prep(
    stream: &Arc<CudaStream>,
    kernels: &GradNormKernels,
    src: u64,
    dtype: Dtype,
    rows: usize,
    d: usize,
    stride: usize,
    normalize: bool,
    plan: &Plan,
    flags: u64,
) -> Result<PackedCentres> {
    let kp = round_up(rows, plan.kp_align);
    if kp > i32::MAX as usize / 2 || plan.dp > i32::MAX as usize / 2 {
        return Err(Error::invalid(format!(
            "{rows} centres of {d} columns are too many for the CUDA GradNorm kernel"
        )));
    }
    let n = plan
        .planes
        .checked_mul(kp)
        .and_then(|x| x.checked_mul(plan.dp))
        .ok_or_else(|| Error::invalid("packed centres overflow the address space"))?;
    // SAFETY: every element is written by the kernel before it is read (see above).
    let data = unsafe { stream.alloc::<u16>(n) }.map_err(|e| cuda_error("packed centres", e))?;
    // SAFETY: as above, `kp` scales.
    let scale = unsafe { stream.alloc::<f32>(kp) }.map_err(|e| cuda_error("centre scales", e))?;
    let params = {
        let (dst, _g1) = data.device_ptr(stream);
        let (sc, _g2) = scale.device_ptr(stream);
        PrepParams {
            src,
            dst,
            scale: sc,
            flags,
            stride: stride as u64,
            rows: rows as i32,
            rows_padded: kp as i32,
            d: d as i32,
            dp: plan.dp as i32,
            normalize: normalize as i32,
            reserved: 0,
        }
    };
    let cfg = LaunchConfig {
        grid_dim: (kp.div_ceil(PREP_ROWS_PER_BLOCK) as u32, 1, 1),
        block_dim: (32 * PREP_ROWS_PER_BLOCK as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let f = &kernels.prep[dtype_index(dtype)];
    // SAFETY: the parameter struct matches the kernel's; the sizes it relies on are above.
    unsafe { stream.launch_builder(f).arg(&params).launch(cfg) }
        .map_err(|e| cuda_error("launching the centre packing kernel", e))?;
    Ok(PackedCentres {
        data,
        scale,
        k: rows,
        kp,
    })
}

/// Launches the fused kernel for `m` nouns.
///
/// # Safety
/// `nouns` addresses `m` rows of `d` elements of `dtype`, `stride` elements apart (read only
/// at `r < m`, `c < d`); `scores`, `assignment`, `confidence` address `m` elements each
/// (written only at `r < m`); `flags` addresses 4 u32; `centres` was packed with the same
/// `plan` (its `dp`, `planes`) and `d`. The block shape `plan` fits the device's opt-in shared
/// memory (checked by [`plan`]); the grid is `ceil(m / plan.bm)` blocks of `plan.threads`.
#[allow(clippy::too_many_arguments)]
unsafe fn launch_gradnorm(
    stream: &Arc<CudaStream>,
    kernels: &GradNormKernels,
    plan: &Plan,
    dtype: Dtype,
    nouns: u64,
    m: usize,
    d: usize,
    stride: usize,
    centres: &PackedCentres,
    opts: &GradNormOptions,
    outputs: [u64; 3],
    flags: u64,
) -> Result<Timing> {
    let blocks = m.div_ceil(plan.bm);
    let steps = (centres.kp / BN) * (plan.dp / BK) * 2;
    if blocks > i32::MAX as usize || steps > i32::MAX as usize {
        return Err(Error::invalid(format!(
            "{m} nouns × {} centres are too many for one CUDA GradNorm launch",
            centres.k
        )));
    }
    let f = kernels.main[dtype_index(dtype)][plan.config]
        .as_ref()
        .ok_or_else(|| Error::Internal("a planned GradNorm kernel is not loaded".into()))?;
    LAST_CONFIG.store(plan.config as u32, Ordering::Relaxed);
    f.set_attribute(
        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        plan.smem as i32,
    )
    .map_err(|e| cuda_error("raising the kernel's shared-memory limit", e))?;
    let (cptr, _g1) = centres.data.device_ptr(stream);
    let (sptr, _g2) = centres.scale.device_ptr(stream);
    let params = GradNormParams {
        nouns,
        centres: cptr,
        centre_scale: sptr,
        scores: outputs[0],
        assignment: outputs[1],
        confidence: outputs[2],
        flags,
        m: m as u64,
        noun_stride: stride as u64,
        k: centres.k as i32,
        kp: centres.kp as i32,
        d: d as i32,
        dp: plan.dp as i32,
        logit_scale: (std::f64::consts::LOG2_E / opts.tau as f64) as f32,
        q: opts.q,
        power: power_code(opts.q),
        normalize: opts.normalize as i32,
        uniform: (opts.target == Target::Uniform) as i32,
        vec16: vec16_rows(nouns, stride, d, dtype) as i32,
    };
    let cfg = LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (plan.threads, 1, 1),
        shared_mem_bytes: plan.smem as u32,
    };
    let event = || {
        stream
            .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| cuda_error("recording a CUDA event", e))
    };
    let start = event()?;
    // SAFETY: the parameter struct matches the kernel's; the sizes it relies on are above.
    unsafe { stream.launch_builder(f).arg(&params).launch(cfg) }
        .map_err(|e| cuda_error("launching the GradNorm kernel", e))?;
    Ok((start, event()?))
}

/// Whether rows at `ptr`, `stride` elements apart, can be read as whole 16-byte vectors.
fn vec16_rows(ptr: u64, stride: usize, d: usize, dtype: Dtype) -> bool {
    let size = dtype.size();
    ptr.is_multiple_of(16) && (stride * size).is_multiple_of(16) && (d * size).is_multiple_of(16)
}

/// Turns the kernels' flag words into the error validation would have given on the host.
fn check_flags(flags: &[u32], opts: &GradNormOptions) -> Result<()> {
    let bits = flags[0];
    let checks = [
        (FLAG_NOUN_NONFINITE, "a nouns row contains NaN or Inf"),
        (
            FLAG_NOUN_ZERO,
            "a nouns row is all zeros and cannot be normalised",
        ),
        (FLAG_CENTRE_NONFINITE, "a centres row contains NaN or Inf"),
        (
            FLAG_CENTRE_ZERO,
            "a centres row is all zeros and cannot be normalised",
        ),
    ];
    for (bit, msg) in checks {
        if bits & bit != 0 {
            return Err(Error::invalid(msg));
        }
    }
    let tn = f32::from_bits(flags[1]) as f64;
    let wn = f32::from_bits(flags[2]) as f64;
    let bound = if opts.normalize { 1.0 } else { tn * wn } / opts.tau as f64;
    if bound > MAX_LOGIT {
        return Err(Error::invalid(format!(
            "logits up to {bound:e} would overflow: reduce the input norms or raise tau"
        )));
    }
    Ok(())
}

/// The bytes of a host matrix's storage.
fn as_bytes<'a>(data: MatrixData<'a>) -> &'a [u8] {
    let (ptr, len) = match data {
        MatrixData::F32(s) => (s.as_ptr() as *const u8, std::mem::size_of_val(s)),
        MatrixData::F16(s) => (s.as_ptr() as *const u8, std::mem::size_of_val(s)),
        MatrixData::Bf16(s) => (s.as_ptr() as *const u8, std::mem::size_of_val(s)),
    };
    // SAFETY: f32, f16 and bf16 have no padding; the bytes of an initialised slice are
    // initialised and live as long as the slice.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

fn alloc_zeros<T: DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    n: usize,
    what: &str,
) -> Result<CudaSlice<T>> {
    stream.alloc_zeros::<T>(n).map_err(|e| cuda_error(what, e))
}

fn sync(stream: &Arc<CudaStream>, what: &str) -> Result<()> {
    stream.synchronize().map_err(|e| cuda_error(what, e))
}

/// Host inputs (validated by the caller): uploads the centres once and the nouns in chunks,
/// and copies the outputs back; `out` is written only when everything succeeded.
pub(super) fn scores_host(
    stream: &Arc<CudaStream>,
    kernels: &GradNormKernels,
    max_smem: usize,
    nouns: &MatrixRef<'_>,
    centres: &MatrixRef<'_>,
    opts: &GradNormOptions,
    out: GradNormOut<'_>,
) -> Result<()> {
    let d = nouns.cols();
    let m = nouns.rows();
    let plan = kernels.plan(nouns.dtype(), d, max_smem)?;
    let flags = alloc_zeros::<u32>(stream, 4, "flags")?;
    let (fptr, _gf) = flags.device_ptr(stream);
    let d_centres = stream
        .clone_htod(as_bytes(centres.data()))
        .map_err(|e| cuda_error("uploading the centres", e))?;
    let packed = {
        let (cptr, _g) = d_centres.device_ptr(stream);
        // SAFETY: `d_centres` holds the whole span of the validated centres view.
        unsafe {
            launch_prep(
                stream,
                kernels,
                cptr,
                centres.dtype(),
                centres.rows(),
                d,
                centres.row_stride(),
                opts.normalize,
                &plan,
                fptr,
            )?
        }
    };
    let row_bytes = nouns.row_stride() * nouns.dtype().size();
    let chunk = (HOST_CHUNK_BYTES / row_bytes.max(1)).clamp(1, m);
    let d_scores = alloc_zeros::<f32>(stream, chunk, "scores")?;
    let d_assign = alloc_zeros::<u32>(stream, chunk, "assignments")?;
    let d_conf = alloc_zeros::<f32>(stream, chunk, "confidences")?;
    let outputs = {
        let (a, _g1) = d_scores.device_ptr(stream);
        let (b, _g2) = d_assign.device_ptr(stream);
        let (c, _g3) = d_conf.device_ptr(stream);
        [a, b, c]
    };
    let (mut scores, mut assign, mut conf) = (vec![0f32; m], vec![0u32; m], vec![0f32; m]);
    let mut timings = Vec::new();
    for start in (0..m).step_by(chunk) {
        let len = chunk.min(m - start);
        let view = nouns.row_range(start, len);
        let d_nouns = stream
            .clone_htod(as_bytes(view.data()))
            .map_err(|e| cuda_error("uploading the nouns", e))?;
        let (nptr, _gn) = d_nouns.device_ptr(stream);
        // SAFETY: `d_nouns` holds the span of `len` rows with the view's stride; the output
        // buffers hold `chunk >= len` elements; `packed` was made with this plan and d.
        timings.push(unsafe {
            launch_gradnorm(
                stream,
                kernels,
                &plan,
                nouns.dtype(),
                nptr,
                len,
                d,
                view.row_stride(),
                &packed,
                opts,
                outputs,
                fptr,
            )?
        });
        let copy = |what: &str, e| cuda_error(what, e);
        stream
            .memcpy_dtoh(&d_scores.slice(..len), &mut scores[start..start + len])
            .map_err(|e| copy("copying scores back", e))?;
        stream
            .memcpy_dtoh(&d_assign.slice(..len), &mut assign[start..start + len])
            .map_err(|e| copy("copying assignments back", e))?;
        stream
            .memcpy_dtoh(&d_conf.slice(..len), &mut conf[start..start + len])
            .map_err(|e| copy("copying confidences back", e))?;
        // The upload buffer is freed at the end of the iteration: wait for its readers.
        sync(stream, "the GradNorm kernel failed")?;
    }
    let host_flags = stream
        .clone_dtoh(&flags)
        .map_err(|e| cuda_error("reading the kernel flags", e))?;
    sync(stream, "reading the kernel flags")?;
    record_timings(&timings);
    check_flags(&host_flags, opts)?;
    out.scores[..m].copy_from_slice(&scores);
    out.assignment[..m].copy_from_slice(&assign);
    out.confidence[..m].copy_from_slice(&conf);
    Ok(())
}

/// Device inputs and outputs: scores into scratch buffers, validates through the flags, then
/// copies into the caller's buffers (which are untouched on failure).
///
/// # Safety
/// The addresses in `nouns`, `centres` and `out` are device memory of this context's device,
/// valid for the spans they describe (checked for shape by the caller).
pub(super) unsafe fn scores_device(
    stream: &Arc<CudaStream>,
    kernels: &GradNormKernels,
    max_smem: usize,
    nouns: &DeviceMatrix,
    centres: &DeviceMatrix,
    opts: &GradNormOptions,
    out: &DeviceGradNormOut,
) -> Result<()> {
    let d = nouns.cols;
    let m = nouns.rows;
    let plan = kernels.plan(nouns.dtype, d, max_smem)?;
    let flags = alloc_zeros::<u32>(stream, 4, "flags")?;
    let (fptr, _gf) = flags.device_ptr(stream);
    // SAFETY: `centres` describes a valid device span (caller contract).
    let packed = unsafe {
        launch_prep(
            stream,
            kernels,
            centres.ptr,
            centres.dtype,
            centres.rows,
            d,
            centres.row_stride,
            opts.normalize,
            &plan,
            fptr,
        )?
    };
    let d_scores = alloc_zeros::<f32>(stream, m, "scores")?;
    let d_assign = alloc_zeros::<u32>(stream, m, "assignments")?;
    let d_conf = alloc_zeros::<f32>(stream, m, "confidences")?;
    let (a, _g1) = d_scores.device_ptr(stream);
    let (b, _g2) = d_assign.device_ptr(stream);
    let (c, _g3) = d_conf.device_ptr(stream);
    // SAFETY: `nouns` describes a valid device span (caller contract); the scratch outputs
    // hold `m` elements each; `packed` was made with this plan and d.
    let timing = unsafe {
        launch_gradnorm(
            stream,
            kernels,
            &plan,
            nouns.dtype,
            nouns.ptr,
            m,
            d,
            nouns.row_stride,
            &packed,
            opts,
            [a, b, c],
            fptr,
        )?
    };
    let host_flags = stream
        .clone_dtoh(&flags)
        .map_err(|e| cuda_error("reading the kernel flags", e))?;
    sync(stream, "the GradNorm kernel failed")?;
    record_timings(&[timing]);
    check_flags(&host_flags, opts)?;
    let bytes = m * 4;
    for (dst, src, what) in [
        (out.scores, a, "copying scores"),
        (out.assignment, b, "copying assignments"),
        (out.confidence, c, "copying confidences"),
    ] {
        if dst != 0 {
            // SAFETY: `dst` holds `out.len >= m` elements of 4 bytes (caller contract); `src`
            // is a scratch buffer of `m` such elements.
            unsafe {
                cudarc::driver::result::memcpy_dtod_async(dst, src, bytes, stream.cu_stream())
            }
            .map_err(|e| cuda_error(what, e))?;
        }
    }
    sync(stream, "copying the outputs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_ptx_has_every_kernel_the_wrappers_load() {
        let Some(ptx) = super::super::kernels::GRADNORM_PTX else {
            return; // built without nvcc: nothing embedded (CI checks that it is)
        };
        for dt in DTYPES {
            assert!(
                ptx.contains(&format!(".entry laic_gradnorm_prep_{dt}(")),
                "prep {dt}"
            );
            for (shape, cfg) in CONFIGS {
                if let Shape::Mma { .. } = shape {
                    let name = format!(".entry laic_gradnorm_{dt}_{cfg}(");
                    assert!(ptx.contains(&name), "{name}");
                }
            }
        }
        assert!(ptx.contains("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"));
        assert!(ptx.contains("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"));
        assert!(ptx.contains("cp.async.cg.shared.global"));
        assert!(ptx.contains(".version 9.0") || ptx.contains(".version 8."));
    }

    #[test]
    fn parameter_structs_have_the_c_layout() {
        // gradnorm.cu: 9 eight-byte fields then 10 four-byte ones; 5 then 6.
        assert_eq!(std::mem::size_of::<GradNormParams>(), 112);
        assert_eq!(std::mem::size_of::<PrepParams>(), 64);
        assert_eq!(std::mem::align_of::<GradNormParams>(), 8);
    }

    #[test]
    fn the_embedded_sm90a_cubin_has_every_wgmma_kernel() {
        let Some(cubin) = super::super::kernels::GRADNORM_WGMMA_SM90A else {
            return; // built without nvcc
        };
        let has = |name: &str| cubin.windows(name.len()).any(|w| w == name.as_bytes());
        for (di, dt) in DTYPES.iter().enumerate() {
            for (shape, cfg) in CONFIGS {
                if let Shape::Wg { .. } = shape {
                    let name = format!("laic_gradnorm_wg_{dt}_{cfg}\0");
                    assert_eq!(has(&name), wg_kernel_exists(DTYPE_OF[di], cfg), "{name}");
                }
            }
        }
    }

    #[test]
    fn plans_fit_the_shared_memory_of_an_h100() {
        let h100 = 227 * 1024;
        let mma_only: [bool; CONFIGS.len()] =
            std::array::from_fn(|i| matches!(CONFIGS[i].0, Shape::Mma { .. }));
        let all = [true; CONFIGS.len()];
        let name = |p: &Plan| CONFIGS[p.config].1;
        let p = plan(Dtype::F16, 512, h100, &mma_only).unwrap();
        assert_eq!((p.bm, p.dp, p.planes, p.kp_align), (128, 512, 1, 64));
        assert!(p.smem <= h100);
        // f32 carries two operand planes: a smaller block.
        let p = plan(Dtype::F32, 512, h100, &mma_only).unwrap();
        assert_eq!((p.bm, p.planes), (64, 2));
        let p = plan(Dtype::F32, 1024, h100, &mma_only).unwrap();
        assert_eq!(p.bm, 32);
        assert!(p.smem <= h100);
        // Odd widths pad up to the chunk.
        assert_eq!(plan(Dtype::Bf16, 100, h100, &mma_only).unwrap().dp, 128);
        // Too wide for any block: an error naming the limit (the backend then uses the CPU).
        let e = plan(Dtype::F32, 8192, h100, &mma_only)
            .unwrap_err()
            .to_string();
        assert!(e.contains("too wide"), "{e}");
        // With the wgmma kernels: two warpgroups up to 512 columns, then one, then mma.sync.
        let p = plan(Dtype::F16, 512, h100, &all).unwrap();
        assert_eq!((name(&p), p.bm, p.kp_align), ("wg2", 128, 128));
        assert!(p.smem <= h100);
        assert_eq!(name(&plan(Dtype::Bf16, 768, h100, &all).unwrap()), "wg1");
        assert_eq!(name(&plan(Dtype::F16, 1024, h100, &all).unwrap()), "wg1");
        assert_eq!(name(&plan(Dtype::F16, 2048, h100, &all).unwrap()), "16x2");
        let p = plan(Dtype::F32, 512, h100, &all).unwrap();
        assert_eq!((name(&p), p.bm), ("wg1", 64));
        assert!(p.smem <= h100);
        assert_eq!(name(&plan(Dtype::F32, 768, h100, &all).unwrap()), "16x2");
        // Split streams fit 227 KB at 512 columns (6 stages of 16 KB beside the nouns).
        let wg2s = CONFIGS.iter().find(|c| c.1 == "wg2s").unwrap().0;
        assert_eq!(smem_bytes(wg2s, 128, 512, 1), 231_424);
        assert!(smem_bytes(wg2s, 128, 512, 1) <= h100);
        // The diagnostic kernels (meaningless scores) only run when asked for by name.
        assert!(
            DEFAULT_ORDER
                .iter()
                .all(|&i| !matches!(CONFIGS[i].1, "wg2nofold" | "wg2nomma"))
        );
    }

    #[test]
    fn vector_loads_only_on_aligned_whole_vectors() {
        assert!(vec16_rows(0x1000, 512, 512, Dtype::F16));
        assert!(vec16_rows(0x1000, 516, 512, Dtype::F32));
        assert!(
            !vec16_rows(0x1008, 512, 512, Dtype::F16),
            "base not aligned"
        );
        assert!(
            !vec16_rows(0x1000, 515, 512, Dtype::F16),
            "stride breaks alignment"
        );
        assert!(
            !vec16_rows(0x1000, 100, 100, Dtype::F16),
            "a partial last vector"
        );
        assert!(vec16_rows(0x1000, 104, 104, Dtype::Bf16));
    }

    #[test]
    fn flags_become_the_host_validation_errors() {
        let opts = GradNormOptions::default();
        assert!(check_flags(&[0, 1f32.to_bits(), 1f32.to_bits(), 0], &opts).is_ok());
        let e = check_flags(&[FLAG_NOUN_NONFINITE, 0, 0, 0], &opts).unwrap_err();
        assert!(e.to_string().contains("NaN"), "{e}");
        let e = check_flags(&[FLAG_CENTRE_ZERO, 0, 0, 0], &opts).unwrap_err();
        assert!(e.to_string().contains("all zeros"), "{e}");
        let raw = GradNormOptions {
            normalize: false,
            ..opts
        };
        let big = 1e17f32.to_bits();
        let e = check_flags(&[0, big, big, 0], &raw).unwrap_err();
        assert!(e.to_string().contains("overflow"), "{e}");
    }
}
