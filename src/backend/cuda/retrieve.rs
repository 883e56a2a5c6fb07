//! Retrieval on CUDA: the launch wrapper of `kernels/retrieve.cu` and its host data path.
//!
//! A call packs the images (scale per row: (1/‖x‖ or 1)·log₂e/τ) and the nouns (1/‖t‖ or 1)
//! into operand layout on the device, runs the fused kernel, and copies t̃ back. f32 input is
//! packed as unit rows in f16 hi + lo instead (scales (1 or ‖x‖)·log₂e/τ and 1 or ‖t‖): 22
//! significant bits, where a bf16 hi + lo split of the raw rows keeps 16, too few for the
//! 1e-4 parity at τ_r = 0.01 (`scripts/emulate_retrieve.py`). The top
//! nouns per image (`0 < top_n <= 8`) come from a second kernel over the same packed operands
//! (`laic_retrieve_top_<dt>`); larger `top_n` runs on the CPU.
//!
//! On compute capability 9.0, unless `LAIC_CUDA_RETRIEVE_WGMMA=0`, f16 and bf16 rows of 129 to
//! 512 columns run `laic_retrieve_wg_*` (retrieve_wgmma.cu, wgmma) instead: same parameters,
//! same result, rows packed to 256 or 512 columns (on an H200, 50,000 images × 10,000 nouns ×
//! 512 f16 in 2.6 ms against the mma.sync kernel's 8.5 ms).

use super::operands::{self, Layout, PackKernels, Packed, RowValue};
use super::{CudaBackend, cuda_error, switched_on};
use crate::error::{Error, Result};
use crate::matrix::{Dtype, MatrixRef};
use crate::retrieve::{RetrieveOptions, RetrieveOut};
use cudarc::driver::{
    CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, PushKernelArg, sys,
};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Nouns per tile (`BN` in retrieve.cu).
const BN: usize = 32;
/// Column warps per row group (`WC`).
const WC: usize = 4;
/// Operand padding per shared row (`PAD`).
const PAD: usize = 8;
/// Column multiple of the packed operands (each column warp owns dp/4, a multiple of 16).
const COL_MULTIPLE: usize = 64;
/// Images are packed to a multiple of the largest block.
const ROW_MULTIPLE: usize = 64;

/// Block shapes: (m16 tiles per warp, row groups, largest padded D, name suffix), tried in
/// order; the first whose D limit and shared memory fit is used.
const CONFIGS: [(usize, usize, usize, &str); 4] = [
    (2, 2, 512, "32x2_d512"),
    (2, 1, 512, "32x1_d512"),
    (1, 2, 1024, "16x2_d1024"),
    (1, 1, 1024, "16x1_d1024"),
];

/// Images per block of the wgmma kernels (`wg::rt::BM` in retrieve_wgmma.cu); their noun tile
/// (`wg::rt::BN`) is [`TBN`], to which the nouns are packed anyway.
const WG_BM: usize = 64;
/// Packed widths of the wgmma kernels (`laic_retrieve_wg_<dt>_d<width>`), narrowest first.
const WG_WIDTHS: [usize; 2] = [256, 512];
/// Rows of at most this many columns stay on the mma.sync kernel: packing them to 256 columns
/// would more than double the work.
const WG_MIN_COLS: usize = 128;
/// The environment variable that, set to `0`, disables the wgmma kernels.
const WGMMA_ENV: &str = "LAIC_CUDA_RETRIEVE_WGMMA";

thread_local! {
    /// Set by each retrieval kernel launch on this thread: see [`last_retrieve_kernel`].
    static LAST_KERNEL: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// The block shape of the most recent CUDA retrieval kernel launched on this thread
/// (`"wg_d256"`, `"wg_d512"`: the wgmma kernels; `"32x2_d512"`, `"32x1_d512"`, `"16x2_d1024"`,
/// `"16x1_d1024"`: mma.sync), or `None` before the first. For tests and benchmarks.
pub fn last_retrieve_kernel() -> Option<&'static str> {
    LAST_KERNEL.with(Cell::get)
}

/// Whether retrievals on this process may use the wgmma kernels.
fn wgmma_requested() -> bool {
    switched_on(WGMMA_ENV)
}

/// Most top nouns per image the GPU kernel keeps (`TOPK` in retrieve.cu).
const TOPK: usize = 8;
/// Nouns per tile of the top-nouns kernel (`TBN`); its streamed chunks are 64 columns wide.
const TBN: usize = 64;
/// Images per block of the top-nouns kernel (16 rows per warp, 4 warps).
const TOP_BM: usize = 64;
/// Pipeline depth of the top-nouns kernel (`TSTAGES`).
const TSTAGES: usize = 3;

/// Device time of the last retrieval kernel, f32 bits (NaN: none yet).
static LAST_MS: AtomicU32 = AtomicU32::new(0x7fc0_0000);

/// Device milliseconds of the most recent CUDA retrieval kernel in this process (CUDA events
/// around the launch; packing and copies excluded), or `None` before the first or when the
/// most recent retrieval of a CUDA context ran on the CPU (top nouns asked for, rows too wide).
pub fn last_retrieve_kernel_ms() -> Option<f32> {
    Some(f32::from_bits(LAST_MS.load(Ordering::Relaxed))).filter(|v| !v.is_nan())
}

/// Marks the most recent retrieval as run on the CPU (so that `last_retrieve_kernel_ms` is
/// `None` until the next GPU launch).
pub(super) fn mark_cpu_fallback() {
    LAST_MS.store(0x7fc0_0000, Ordering::Relaxed);
}

/// `RetrieveParams` of retrieve.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RetrieveParams {
    images: u64,
    image_scale: u64,
    nouns: u64,
    noun_scale: u64,
    features: u64,
    n: u64,
    np: u64,
    mp: u64,
    m: i32,
    d: i32,
    dp: i32,
    reserved: i32,
}

/// `TopParams` of retrieve.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct TopParams {
    images: u64,
    image_scale: u64,
    nouns: u64,
    noun_scale: u64,
    top_index: u64,
    top_weight: u64,
    n: u64,
    np: u64,
    mtp: u64,
    m: i32,
    d: i32,
    dp: i32,
    top_n: i32,
}

// SAFETY: plain #[repr(C)] structs of integers with the C layout of retrieve.cu's
// `RetrieveParams` and `TopParams` (sizes checked by a test), passed by value.
unsafe impl DeviceRepr for RetrieveParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for TopParams {}

/// Shared memory of the top-nouns kernel: resident images and the noun-chunk pipeline.
fn top_smem_bytes(dp: usize, xpl: usize) -> usize {
    xpl * TOP_BM * (dp + PAD) * 2 + TSTAGES * xpl * TBN * (64 + PAD) * 2
}

/// The kernels of retrieve.cu and retrieve_wgmma.cu; indexed by dtype (f32, f16, bf16), then
/// config (`main`) or width (`wg`, by [`WG_WIDTHS`]).
pub(super) struct RetrieveKernels {
    pack: PackKernels,
    main: [[CudaFunction; 4]; 3],
    top: [CudaFunction; 3],
    /// `None`: no such kernel (f32), or the wgmma module is not loaded.
    wg: [[Option<CudaFunction>; 2]; 3],
    /// retrieve_wgmma.cu's operand-layout probe (with the wgmma kernels).
    probe: Option<CudaFunction>,
}

const DTYPES: [&str; 3] = ["f32", "f16", "bf16"];

/// The operand layout of retrieval's inputs: f16 and bf16 as they are, f32 as unit rows in
/// f16 hi + lo.
fn layout(dtype: Dtype) -> Layout {
    match dtype {
        Dtype::F32 => Layout::F32UnitF16,
        Dtype::F16 | Dtype::Bf16 => Layout::of(dtype),
    }
}

/// What the packed rows' values hold: the factor that turns a packed row into the row the
/// softmax is over (1/‖row‖ or 1 for the rows as given; 1 or ‖row‖ for unit rows).
fn row_value(layout: Layout, normalize: bool) -> RowValue {
    match (layout, normalize) {
        (Layout::F32UnitF16, true) => RowValue::One,
        (Layout::F32UnitF16, false) => RowValue::Norm,
        (_, true) => RowValue::InvNorm,
        (_, false) => RowValue::One,
    }
}

fn dtype_index(d: Dtype) -> usize {
    match d {
        Dtype::F32 => 0,
        Dtype::F16 => 1,
        Dtype::Bf16 => 2,
    }
}

/// The name of the wgmma kernel for `dtype` rows packed to `width` columns, if there is one.
fn wg_kernel_name(dtype: Dtype, width: usize) -> Option<String> {
    (dtype != Dtype::F32)
        .then(|| format!("laic_retrieve_wg_{}_d{width}", DTYPES[dtype_index(dtype)]))
}

impl RetrieveKernels {
    /// The kernels of `module` (retrieve.cu) and, when given, `wgmma` (retrieve_wgmma.cu).
    pub(super) fn load(
        module: &Arc<CudaModule>,
        wgmma: Option<&Arc<CudaModule>>,
    ) -> std::result::Result<Self, cudarc::driver::DriverError> {
        let f = |name: String| module.load_function(&name);
        let row = |dt: &str| -> std::result::Result<[CudaFunction; 4], _> {
            Ok([
                f(format!("laic_retrieve_{dt}_{}", CONFIGS[0].3))?,
                f(format!("laic_retrieve_{dt}_{}", CONFIGS[1].3))?,
                f(format!("laic_retrieve_{dt}_{}", CONFIGS[2].3))?,
                f(format!("laic_retrieve_{dt}_{}", CONFIGS[3].3))?,
            ])
        };
        // Optional (and off unless asked for): a module that lacks one leaves them all out.
        let wg = |m: &Arc<CudaModule>| {
            let mut k: [[Option<CudaFunction>; 2]; 3] = Default::default();
            for dtype in [Dtype::F16, Dtype::Bf16] {
                for (wi, &width) in WG_WIDTHS.iter().enumerate() {
                    if let Some(name) = wg_kernel_name(dtype, width) {
                        k[dtype_index(dtype)][wi] = Some(m.load_function(&name)?);
                    }
                }
            }
            Ok::<_, cudarc::driver::DriverError>((k, m.load_function("laic_retrieve_wg_probe")?))
        };
        let (wg, probe) = match wgmma.and_then(|m| wg(m).ok()) {
            Some((k, probe)) => (k, Some(probe)),
            None => Default::default(),
        };
        Ok(RetrieveKernels {
            wg,
            probe,
            pack: PackKernels::load(module, "laic_rt_pack")?,
            main: [row(DTYPES[0])?, row(DTYPES[1])?, row(DTYPES[2])?],
            top: [
                f(format!("laic_retrieve_top_{}", DTYPES[0]))?,
                f(format!("laic_retrieve_top_{}", DTYPES[1]))?,
                f(format!("laic_retrieve_top_{}", DTYPES[2]))?,
            ],
        })
    }
}

/// Which retrieval kernel a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// retrieve.cu (mma.sync), index into [`CONFIGS`].
    Mma(usize),
    /// retrieve_wgmma.cu (wgmma, sm_90a), index into [`WG_WIDTHS`].
    Wgmma(usize),
}

/// How one call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    kernel: Kernel,
    bm: usize,
    threads: u32,
    smem: usize,
    /// The packed width of both operands.
    dp: usize,
}

impl Plan {
    /// The kernel's block-shape name (see [`last_retrieve_kernel`]).
    fn name(&self) -> &'static str {
        match self.kernel {
            Kernel::Mma(c) => CONFIGS[c].3,
            Kernel::Wgmma(0) => "wg_d256",
            Kernel::Wgmma(_) => "wg_d512",
        }
    }
}

/// Shared memory of a wgmma block: 1024 bytes of slack for aligning the swizzled tiles, the
/// images, two noun stages (64 rows of `dp` 16-bit operands each), the two warpgroups' partial
/// logits (64 × 64 f32 each) and the column table (two tiles of 64 (s, log₂ s) pairs).
fn wg_smem_bytes(dp: usize) -> usize {
    1024 + 3 * WG_BM * dp * 2 + 2 * WG_BM * TBN * 4 + 2 * TBN * 2 * 4
}

/// The wgmma plan for `d` columns of `dtype` when a kernel for them is `available` (by dtype
/// index and [`WG_WIDTHS`]) and fits.
fn wg_plan(dtype: Dtype, d: usize, max_smem: usize, available: [bool; 2]) -> Option<Plan> {
    if dtype == Dtype::F32 || d <= WG_MIN_COLS {
        return None;
    }
    let wi = WG_WIDTHS.iter().position(|&w| d <= w)?;
    let dp = WG_WIDTHS[wi];
    let plan = Plan {
        kernel: Kernel::Wgmma(wi),
        bm: WG_BM,
        threads: 256,
        smem: wg_smem_bytes(dp),
        dp,
    };
    (available[wi] && plan.smem <= max_smem).then_some(plan)
}

impl RetrieveKernels {
    /// The plan of a call on `d` columns of `dtype`: a wgmma kernel when one is loaded and fits,
    /// unless `LAIC_CUDA_RETRIEVE_WGMMA=0` says no, else [`plan`]'s.
    fn choose(&self, dtype: Dtype, d: usize, max_smem: usize) -> Result<Plan> {
        let wg = &self.wg[dtype_index(dtype)];
        let available = [wg[0].is_some(), wg[1].is_some()];
        match wg_plan(dtype, d, max_smem, available).filter(|_| wgmma_requested()) {
            Some(p) => Ok(p),
            None => plan(dtype, d, max_smem),
        }
    }
}

/// One form of the wgmma operand-layout probe (`laic_retrieve_wg_probe`): a product whose every
/// element names the element of B it should be, read back and compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgmmaProbe {
    /// The operand form: `"register A x K-major B"` (register A alone: K-major B is the layout
    /// the other wgmma kernels read) or `"register A x N-major B"`.
    pub form: &'static str,
    /// Elements of the 64 × 128 product that differ from what the emulation computes.
    pub mismatches: usize,
    /// The first of them, as the element of B it holds against the one it should hold.
    pub first: Option<String>,
}

/// The element of the probe's B (128 k + n, k < 16, n < 128) that a product value holds.
fn probe_element(v: f32) -> String {
    if v.fract() == 0.0 && (0.0..2048.0).contains(&v) {
        format!("B[{}][{}]", v as u32 / 128, v as u32 % 128)
    } else {
        format!("{v} (no single element of B)")
    }
}

/// Runs the probe in both forms (None: the wgmma kernels are not loaded). Expected: D[m][n] =
/// 128 π(m mod 16) + n, π(r) = ((7r + 3) mod 16) xor (2 if r ≥ 8), as retrieve_wgmma.cu builds
/// A.
pub(super) fn wgmma_layout_probe(backend: &CudaBackend) -> Result<Option<Vec<WgmmaProbe>>> {
    let Some(f) = backend.retrieve.probe.as_ref() else {
        return Ok(None);
    };
    const SMEM: usize = 17 * 1024;
    let pi = |r: usize| ((7 * r + 3) % 16) ^ ((r >> 3) << 1);
    let mut probes = Vec::new();
    for (b_n_major, form) in [
        (0i32, "register A x K-major B"),
        (1, "register A x N-major B"),
    ] {
        let got = backend.with_stream(|stream: &Arc<CudaStream>| {
            let out = stream
                .alloc_zeros::<f32>(64 * 128)
                .map_err(|e| cuda_error("probe output", e))?;
            f.set_attribute(
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                SMEM as i32,
            )
            .map_err(|e| cuda_error("raising the kernel's shared-memory limit", e))?;
            let cfg = LaunchConfig {
                grid_dim: (1, 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: SMEM as u32,
            };
            // SAFETY: the probe writes exactly 64 × 128 f32 to `out` and reads nothing else.
            unsafe {
                stream
                    .launch_builder(f)
                    .arg(&out)
                    .arg(&b_n_major)
                    .launch(cfg)
            }
            .map_err(|e| cuda_error("launching the wgmma probe", e))?;
            stream
                .clone_dtoh(&out)
                .map_err(|e| cuda_error("copying the probe back", e))
        })?;
        let mut probe = WgmmaProbe {
            form,
            mismatches: 0,
            first: None,
        };
        for (i, &v) in got.iter().enumerate() {
            let (m, n) = (i / 128, i % 128);
            let want = (128 * pi(m % 16) + n) as f32;
            if v != want {
                probe.mismatches += 1;
                probe.first.get_or_insert_with(|| {
                    format!(
                        "D[{m}][{n}] = {}, expected {}",
                        probe_element(v),
                        probe_element(want)
                    )
                });
            }
        }
        probes.push(probe);
    }
    Ok(Some(probes))
}

/// Shared memory of a block: images, two noun stages, the weights, the row exchange.
fn smem_bytes(bm: usize, dp: usize, xpl: usize, ppl: usize) -> usize {
    xpl * bm * (dp + PAD) * 2
        + 2 * xpl * BN * (dp + PAD) * 2
        + ppl * bm * (BN + PAD) * 2
        + WC * bm * 4
}

/// The block shape for `d` columns of `dtype`, or an error when none fits (the caller falls
/// back to the CPU).
pub(super) fn plan(dtype: Dtype, d: usize, max_smem: usize) -> Result<Plan> {
    let dp = operands::round_up(d, COL_MULTIPLE);
    let xpl = layout(dtype).planes();
    let ppl = if dtype == Dtype::F16 { 1 } else { 2 };
    CONFIGS
        .iter()
        .enumerate()
        .filter(|(_, c)| dp <= c.2)
        .map(|(config, &(mt, wr, _, _))| {
            let bm = wr * mt * 16;
            Plan {
                kernel: Kernel::Mma(config),
                bm,
                threads: (wr * WC * 32) as u32,
                smem: smem_bytes(bm, dp, xpl, ppl),
                dp,
            }
        })
        .find(|p| p.smem <= max_smem)
        .ok_or_else(|| {
            Error::invalid(format!(
                "rows of {d} {dtype:?} elements are too wide for the CUDA retrieval kernel on \
                 this device ({max_smem} bytes of shared memory)"
            ))
        })
}

/// Whether the GPU kernels can run a call on `dtype` images and nouns of `d` columns with
/// `top_n` top nouns (else the backend uses the CPU).
pub(super) fn supported_shape(dtype: Dtype, d: usize, top_n: usize, max_smem: usize) -> bool {
    let top_fits = top_n == 0
        || (top_n <= TOPK
            && top_smem_bytes(operands::round_up(d, COL_MULTIPLE), layout(dtype).planes())
                <= max_smem);
    top_fits && plan(dtype, d, max_smem).is_ok()
}

/// Whether the GPU kernels can run this call (else the backend uses the CPU).
pub(super) fn supported(
    images: &MatrixRef<'_>,
    nouns: &MatrixRef<'_>,
    opts: &RetrieveOptions,
    max_smem: usize,
) -> bool {
    images.dtype() == nouns.dtype()
        && supported_shape(images.dtype(), images.cols(), opts.top_n, max_smem)
}

fn event(stream: &Arc<CudaStream>) -> Result<CudaEvent> {
    stream
        .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(|e| cuda_error("recording a CUDA event", e))
}

/// The top nouns of every image on the device: N × top_n indices and weights.
type TopBuffers = (CudaSlice<u32>, CudaSlice<f32>);

/// Enqueues the retrieval kernel on packed operands (images `x`, n of them, packed with the
/// row values of [`row_value`] times log₂e/τ; nouns `t`, m of them, packed to a multiple of
/// [`TBN`] rows), writing t̃ into `features` (n × d f32), and, when `top_n > 0`, the top-nouns
/// kernel. Returns the top-noun buffers and the events around the retrieval kernel.
#[allow(clippy::too_many_arguments)]
fn launch_packed(
    stream: &Arc<CudaStream>,
    kernels: &RetrieveKernels,
    plan: &Plan,
    dtype: Dtype,
    x: &Packed,
    t: &Packed,
    d: usize,
    top_n: usize,
    features: &CudaSlice<f32>,
) -> Result<(Option<TopBuffers>, CudaEvent, CudaEvent)> {
    let (n, m) = (x.rows, t.rows);
    let (xp, _g1) = x.data.device_ptr(stream);
    let (xs, _g2) = x.row_value.device_ptr(stream);
    let (tp, _g3) = t.data.device_ptr(stream);
    let (ts, _g4) = t.row_value.device_ptr(stream);
    let (fp, _g5) = features.device_ptr(stream);
    let params = RetrieveParams {
        images: xp,
        image_scale: xs,
        nouns: tp,
        noun_scale: ts,
        features: fp,
        n: n as u64,
        np: x.rows_padded as u64,
        mp: t.rows_padded as u64,
        m: m as i32,
        d: d as i32,
        dp: plan.dp as i32,
        reserved: 0,
    };
    let f = match plan.kernel {
        Kernel::Mma(c) => &kernels.main[dtype_index(dtype)][c],
        Kernel::Wgmma(w) => kernels.wg[dtype_index(dtype)][w]
            .as_ref()
            .ok_or_else(|| Error::Cuda("the wgmma retrieval kernel is not loaded".into()))?,
    };
    LAST_KERNEL.with(|k| k.set(Some(plan.name())));
    f.set_attribute(
        sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        plan.smem as i32,
    )
    .map_err(|e| cuda_error("raising the kernel's shared-memory limit", e))?;
    let cfg = LaunchConfig {
        grid_dim: ((x.rows_padded / plan.bm) as u32, 1, 1),
        block_dim: (plan.threads, 1, 1),
        shared_mem_bytes: plan.smem as u32,
    };
    let start = event(stream)?;
    // SAFETY: the parameters match the kernel's struct: images packed to np rows (a
    // multiple of every block's rows) and plan.dp columns with np scales, nouns to mp
    // rows (multiple of both kernels' noun tiles) with mp scales, features hold n × d f32.
    debug_assert!(x.rows_padded.is_multiple_of(plan.bm) && t.rows_padded.is_multiple_of(TBN));
    unsafe { stream.launch_builder(f).arg(&params).launch(cfg) }
        .map_err(|e| cuda_error("launching the retrieval kernel", e))?;
    let end = event(stream)?;
    if top_n == 0 {
        return Ok((None, start, end));
    }
    let ti = stream
        .alloc_zeros::<u32>(n * top_n)
        .map_err(|e| cuda_error("top indices", e))?;
    let tw = stream
        .alloc_zeros::<f32>(n * top_n)
        .map_err(|e| cuda_error("top weights", e))?;
    {
        let (ip, _g6) = ti.device_ptr(stream);
        let (wp, _g7) = tw.device_ptr(stream);
        let params = TopParams {
            images: xp,
            image_scale: xs,
            nouns: tp,
            noun_scale: ts,
            top_index: ip,
            top_weight: wp,
            n: n as u64,
            np: x.rows_padded as u64,
            mtp: t.rows_padded as u64,
            m: m as i32,
            d: d as i32,
            dp: plan.dp as i32,
            top_n: top_n as i32,
        };
        let smem = top_smem_bytes(plan.dp, x.layout.planes());
        let f = &kernels.top[dtype_index(dtype)];
        f.set_attribute(
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        )
        .map_err(|e| cuda_error("raising the kernel's shared-memory limit", e))?;
        let cfg = LaunchConfig {
            grid_dim: ((x.rows_padded / TOP_BM) as u32, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: smem as u32,
        };
        // SAFETY: as above; the nouns are packed to mtp rows (a multiple of TBN) with mtp
        // scales, the images to np rows (a multiple of TOP_BM), and the outputs hold
        // n × top_n elements with 1 <= top_n <= TOPK (checked by `supported_shape`).
        unsafe { stream.launch_builder(f).arg(&params).launch(cfg) }
            .map_err(|e| cuda_error("launching the top-nouns kernel", e))?;
    }
    Ok((Some((ti, tw)), start, end))
}

/// Enqueues the copies of the top-noun buffers to the host (empty without them).
fn download_top(stream: &Arc<CudaStream>, top: Option<TopBuffers>) -> Result<(Vec<u32>, Vec<f32>)> {
    let Some((ti, tw)) = top else {
        return Ok((Vec::new(), Vec::new()));
    };
    Ok((
        stream
            .clone_dtoh(&ti)
            .map_err(|e| cuda_error("copying the top nouns back", e))?,
        stream
            .clone_dtoh(&tw)
            .map_err(|e| cuda_error("copying the top weights back", e))?,
    ))
}

/// Waits for the retrieval and records the retrieval kernel's time.
fn finish(stream: &Arc<CudaStream>, start: &CudaEvent, end: &CudaEvent) -> Result<()> {
    stream
        .synchronize()
        .map_err(|e| cuda_error("the retrieval kernels failed", e))?;
    if let Ok(ms) = start.elapsed_ms(end) {
        LAST_MS.store(ms.to_bits(), Ordering::Relaxed);
    }
    Ok(())
}

/// Host inputs (validated, `supported`): packs both, runs the kernel, writes `out.features`.
pub(super) fn retrieve_host(
    backend: &CudaBackend,
    images: &MatrixRef<'_>,
    nouns: &MatrixRef<'_>,
    opts: &RetrieveOptions,
    out: RetrieveOut<'_>,
) -> Result<()> {
    let (n, d) = (images.rows(), images.cols());
    let dtype = images.dtype();
    let kernels = &backend.retrieve;
    let plan = kernels.choose(dtype, d, backend.max_smem)?;
    let layout = layout(dtype);
    let kind = row_value(layout, opts.normalize);
    let logit_scale = (std::f64::consts::LOG2_E / opts.tau as f64) as f32;
    let (host, (ti, tw)) = backend.with_stream(|stream: &Arc<CudaStream>| {
        let x = operands::pack_host(
            stream,
            &kernels.pack,
            images,
            layout,
            ROW_MULTIPLE,
            plan.dp,
            kind,
            logit_scale,
        )?;
        let t = operands::pack_host(
            stream,
            &kernels.pack,
            nouns,
            layout,
            TBN,
            plan.dp,
            kind,
            1.0,
        )?;
        let features = stream
            .alloc_zeros::<f32>(n * d)
            .map_err(|e| cuda_error("features", e))?;
        let (top, start, end) = launch_packed(
            stream, kernels, &plan, dtype, &x, &t, d, opts.top_n, &features,
        )?;
        let top = download_top(stream, top)?;
        let host = stream
            .clone_dtoh(&features)
            .map_err(|e| cuda_error("copying the features back", e))?;
        finish(stream, &start, &end)?;
        Ok((host, top))
    })?;
    out.features[..n * d].copy_from_slice(&host);
    out.top_indices[..ti.len()].copy_from_slice(&ti);
    out.top_weights[..tw.len()].copy_from_slice(&tw);
    Ok(())
}

/// Retrieval of f32 rows that live on the device (`supported_shape` for f32): the images
/// (n × d) over the nouns (m × d), both contiguous and exactly that long. Returns t̃ on the
/// device (n × d f32) and the top nouns on the host (n × `opts.top_n`).
pub(super) fn retrieve_device(
    backend: &CudaBackend,
    stream: &Arc<CudaStream>,
    images: &CudaSlice<f32>,
    nouns: &CudaSlice<f32>,
    d: usize,
    opts: &RetrieveOptions,
) -> Result<(CudaSlice<f32>, Vec<u32>, Vec<f32>)> {
    if !images.len().is_multiple_of(d) || !nouns.len().is_multiple_of(d) {
        return Err(Error::Internal(format!(
            "device retrieval: {} and {} floats are not rows of {d}",
            images.len(),
            nouns.len()
        )));
    }
    let (n, m) = (images.len() / d, nouns.len() / d);
    let plan = plan(Dtype::F32, d, backend.max_smem)?;
    let kernels = &backend.retrieve;
    let layout = layout(Dtype::F32);
    let kind = row_value(layout, opts.normalize);
    let logit_scale = (std::f64::consts::LOG2_E / opts.tau as f64) as f32;
    let x = operands::pack_f32(
        stream,
        &kernels.pack,
        images,
        n,
        d,
        layout,
        ROW_MULTIPLE,
        plan.dp,
        kind,
        logit_scale,
    )?;
    let t = operands::pack_f32(
        stream,
        &kernels.pack,
        nouns,
        m,
        d,
        layout,
        TBN,
        plan.dp,
        kind,
        1.0,
    )?;
    let features = stream
        .alloc_zeros::<f32>(n * d)
        .map_err(|e| cuda_error("features", e))?;
    let (top, start, end) = launch_packed(
        stream,
        kernels,
        &plan,
        Dtype::F32,
        &x,
        &t,
        d,
        opts.top_n,
        &features,
    )?;
    let (ti, tw) = download_top(stream, top)?;
    finish(stream, &start, &end)?;
    Ok((features, ti, tw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_struct_has_the_c_layout() {
        assert_eq!(std::mem::size_of::<RetrieveParams>(), 80);
        assert_eq!(std::mem::size_of::<TopParams>(), 88);
        // The top-nouns kernel fits wherever the main one does at D <= 1024 (f16) / 512 (f32).
        assert!(top_smem_bytes(1024, 1) <= 227 * 1024);
        assert!(top_smem_bytes(512, 2) <= 227 * 1024);
    }

    #[test]
    fn f32_input_is_packed_as_unit_rows() {
        assert_eq!(layout(Dtype::F32), Layout::F32UnitF16);
        assert_eq!(layout(Dtype::F16), Layout::F16);
        assert_eq!(layout(Dtype::Bf16), Layout::Bf16);
        let unit = Layout::F32UnitF16;
        assert_eq!(row_value(unit, true), RowValue::One);
        assert_eq!(row_value(unit, false), RowValue::Norm);
        assert_eq!(row_value(Layout::F16, true), RowValue::InvNorm);
        assert_eq!(row_value(Layout::Bf16, false), RowValue::One);
    }

    #[test]
    fn plans_fit_the_shared_memory_of_an_h100() {
        let h100 = 227 * 1024;
        let p = plan(Dtype::F16, 512, h100).unwrap();
        assert_eq!((p.bm, p.threads), (64, 256));
        let p = plan(Dtype::F32, 512, h100).unwrap();
        assert_eq!(p.bm, 32);
        assert!(p.smem <= h100);
        let p = plan(Dtype::F16, 768, h100).unwrap();
        assert_eq!(p.dp, 768);
        assert!(p.smem <= h100);
        assert_eq!(plan(Dtype::F16, 64, h100).unwrap().dp, 64);
        assert!(plan(Dtype::F32, 768, h100).is_err());
        assert!(plan(Dtype::F16, 2048, h100).is_err());
    }

    #[test]
    fn the_embedded_ptx_has_every_kernel_the_wrappers_load() {
        let Some(ptx) = super::super::kernels::RETRIEVE_PTX else {
            return;
        };
        for dt in DTYPES {
            for c in CONFIGS {
                let name = format!(".entry laic_retrieve_{dt}_{}(", c.3);
                assert!(ptx.contains(&name), "{name}");
            }
            assert!(ptx.contains(&format!(".entry laic_rt_pack_{dt}(")));
        }
        assert!(ptx.contains(".entry laic_rt_pack_f32_unit("));
        assert!(ptx.contains("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16"));
        for dt in DTYPES {
            assert!(ptx.contains(&format!(".entry laic_retrieve_top_{dt}(")));
        }
        // The sm_90a cubin of retrieve_wgmma.cu: exactly the kernels `load` asks for.
        let cubin = super::super::kernels::RETRIEVE_WGMMA_SM90A.expect("built with the PTX");
        let has = |name: &str| cubin.windows(name.len()).any(|w| w == name.as_bytes());
        for dtype in [Dtype::F32, Dtype::F16, Dtype::Bf16] {
            for width in WG_WIDTHS {
                let name = format!("laic_retrieve_wg_{}_d{width}\0", DTYPES[dtype_index(dtype)]);
                assert_eq!(has(&name), wg_kernel_name(dtype, width).is_some(), "{name}");
            }
        }
        assert!(has("laic_retrieve_wg_probe\0"));
    }

    #[test]
    fn probe_values_name_their_element_of_b() {
        assert_eq!(probe_element(130.0), "B[1][2]");
        assert_eq!(probe_element(2047.0), "B[15][127]");
        assert_eq!(probe_element(0.5), "0.5 (no single element of B)");
        assert_eq!(probe_element(4096.0), "4096 (no single element of B)");
    }

    #[test]
    fn wgmma_plans_fit_the_shared_memory_of_an_h100_and_pack_to_their_width() {
        let h100 = 227 * 1024;
        let both = [true; 2];
        let p = wg_plan(Dtype::F16, 512, h100, both).unwrap();
        assert_eq!((p.name(), p.bm, p.threads, p.dp), ("wg_d512", 64, 256, 512));
        // 1 KB slack, 64 KB of images, two 64 KB noun stages, 32 KB of partial logits, 1 KB of
        // column pairs: 1 KB under the H100's limit.
        assert_eq!(p.smem, 1024 + 65_536 + 131_072 + 32_768 + 1024);
        assert!(p.smem <= h100);
        let p = wg_plan(Dtype::Bf16, 300, h100, both).unwrap();
        assert_eq!((p.name(), p.dp), ("wg_d512", 512));
        let p = wg_plan(Dtype::Bf16, 129, h100, both).unwrap();
        assert_eq!((p.name(), p.dp), ("wg_d256", 256));
        // f32, narrow or wide rows, a kernel not loaded, too little shared memory: mma.sync.
        assert_eq!(wg_plan(Dtype::F32, 512, h100, both), None);
        assert_eq!(wg_plan(Dtype::F16, 128, h100, both), None);
        assert_eq!(wg_plan(Dtype::F16, 513, h100, both), None);
        assert_eq!(wg_plan(Dtype::F16, 512, h100, [true, false]), None);
        assert_eq!(wg_plan(Dtype::F16, 512, 160 * 1024, both), None);
        // The images are packed to whole blocks, the nouns to whole tiles.
        assert!(ROW_MULTIPLE.is_multiple_of(WG_BM));
        // Packing to the plan's width is packing to COL_MULTIPLE for the mma.sync plans.
        for d in [1, 64, 100, 512, 700] {
            let p = plan(Dtype::F16, d, h100).unwrap();
            assert_eq!(
                operands::round_up(d, p.dp),
                operands::round_up(d, COL_MULTIPLE)
            );
        }
    }
}
