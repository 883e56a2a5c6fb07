//! k-means on CUDA: launch wrappers of `kernels/kmeans.cu` and the device-resident k-means
//! steps of one k-means call.
//!
//! [`CudaKMeans`] uploads and packs the rows once (f16/bf16 as they are, f32 split into
//! bf16 hi + lo) and keeps them, the label and distance buffers on the device for the seeding
//! and every Lloyd iteration. By default (see [`set_kmeans_on_device`]) k-means++ keeps the
//! nearest distances on the device, and the Lloyd loop the centres and labels: per iteration
//! assignment, the grouping of the points by label (a stable counting sort,
//! `kernels/counting_sort.cuh`), each cluster's members added in index order in f64 and the
//! centre update run there, and only the iteration's counters and centre moves come back. An
//! iteration that empties a cluster repairs it on the host as `src/kmeans.rs` does. With
//! `LAIC_CUDA_KMEANS_DEVICE=0` both loops run on the host (`src/kmeans.rs`) over the device
//! primitives: per assignment the centres go up and the labels and distances come back, per
//! update the K×D f64 sums and the cluster sizes. Either way the GPU and the CPU run the same
//! algorithm from the same seeds.
//!
//! The assignment runs `laic_km_wg_assign_*` (kmeans_wgmma.cu, wgmma) on compute capability 9.0
//! unless `LAIC_CUDA_KMEANS_WGMMA=0`, else `laic_km_assign_*` (kmeans.cu, mma.sync, any sm_80+
//! device): same parameters, same results (on an H200 the wgmma kernel assigned 1,281,167 f16
//! points to 2000 centres 3.6x faster, 5.1 against 18.5 ms).

use super::operands::{self, Layout, PackKernels, Packed, RowValue};
use super::{CudaBackend, cuda_error, download, launch_kernel, switched_on, sync};
use crate::backend::KMeansSteps;
use crate::error::{Error, Result};
use crate::kmeans::{
    self, AssignOut, KMeansOptions, KMeansResult, Metric, Rows, repair_empty, update_centres,
};
use crate::matrix::{Dtype, MatrixRef};
use cudarc::driver::{
    CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr,
    LaunchConfig, sys,
};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Centres per tile (`BN` in kmeans.cu).
const BN: usize = 64;
/// Columns per streamed chunk (`BK`).
const BK: usize = 64;
/// cp.async pipeline depth (`STAGES`).
const STAGES: usize = 3;
/// Padding of a shared-memory row in operand elements (`PAD`).
const PAD: usize = 8;
/// Centres per distances launch (`DIST_CENTRES`).
const DIST_CENTRES: usize = 16;
/// Threads per block of the sums kernels (`SUM_THREADS`).
const SUM_THREADS: usize = 128;
/// Adjacent columns per thread of the partial sums (`SUM_COLS`; the reduction has one).
const SUM_COLS: usize = 4;
/// Members per partial sum of the update.
const SUM_CHUNK: usize = 256;
/// Points per warp of the counting sort, at least (`chunk` in counting_sort.cuh).
const SORT_CHUNK: usize = 4096;
/// Most cells of the counting sort's K × chunks count matrix (more clusters: longer chunks).
const SORT_CELLS: usize = 1 << 22;
/// Threads per block of the counting sort's count and scatter kernels.
const SORT_THREADS: usize = 256;
/// Threads per block of the seeding sums (`SEED_THREADS` in kmeans_seed.cuh).
const SEED_THREADS: usize = 256;
/// Most blocks of the seeding sums (the host adds their sums per step).
const SEED_BLOCKS: usize = 1024;
/// Threads per block of the centre update (`UPDATE_THREADS` in kmeans_lloyd.cuh).
const UPDATE_THREADS: u32 = 128;
/// Threads of the counting sort's scan kernel (one block).
const SORT_SCAN_THREADS: u32 = 1024;
/// Points are packed to a multiple of the largest block.
const ROW_MULTIPLE: usize = 128;

/// Block shapes of the assignment kernel: (rows per warp, warps, name suffix), tried in order.
const CONFIGS: [(usize, usize, &str); 3] = [(32, 4, "32x4"), (16, 4, "16x4"), (16, 2, "16x2")];

/// Centres per tile of the wgmma kernels (`wg::km::BN` in kmeans_wgmma.cu).
const WG_BN: usize = 128;
/// Block shapes of the wgmma assignment kernels: (warpgroups of 64 points, name suffix), tried
/// in order.
const WG_CONFIGS: [(usize, &str); 2] = [(2, "wg2"), (1, "wg1")];
/// The environment variable that, set to `0`, disables the wgmma assignment kernels.
const WGMMA_ENV: &str = "LAIC_CUDA_KMEANS_WGMMA";
/// The environment variable that, set to `0`, runs k-means++ and the Lloyd loop on the host
/// over the device primitives.
const ON_DEVICE_ENV: &str = "LAIC_CUDA_KMEANS_DEVICE";

// Every block's points lie inside the packed rows.
const _: () = assert!(ROW_MULTIPLE.is_multiple_of(64 * WG_CONFIGS[0].0));
// The partial sums read SUM_COLS columns at once: the packed width (a multiple of BK) holds
// whole groups of them.
const _: () = assert!(BK.is_multiple_of(SUM_COLS));

/// The centre pipeline depth of the wgmma kernel with `groups` warpgroups for `dtype` points,
/// or `None` when kmeans_wgmma.cu has no such kernel (f32 points, two planes, only fit one
/// warpgroup; bf16 with two warpgroups fits 3 stages of hi + lo centres).
fn wg_stages(dtype: Dtype, groups: usize) -> Option<usize> {
    match (dtype, groups) {
        (Dtype::F16, 1 | 2) | (Dtype::Bf16, 1) => Some(4),
        (Dtype::Bf16, 2) | (Dtype::F32, 1) => Some(3),
        _ => None,
    }
}

thread_local! {
    /// Set by [`set_kmeans_wgmma_disabled`].
    static WGMMA_DISABLED: Cell<bool> = const { Cell::new(false) };
    /// Set by each assignment launch; read by [`last_kmeans_assign_kernel`].
    static LAST_ASSIGN_KERNEL: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// Set by [`set_kmeans_on_device`].
    static ON_DEVICE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Chooses for k-means calls started on this thread whether the k-means++ seeding and the
/// Lloyd iterations keep their state (nearest distances; centres and labels) on the device
/// (`Some(true)`) or loop on the host over the device primitives (`Some(false)`), or, with
/// `None` (the default), on the device unless `LAIC_CUDA_KMEANS_DEVICE=0` (on an H200 the device
/// loops gave the host loops' seeds, labels and centres bit for bit, k-means++ 25x and a Lloyd
/// iteration 2.8x faster at 1,281,167 × 2000 × 512 f16). For tests and benchmarks that compare
/// the two in one process.
pub fn set_kmeans_on_device(choice: Option<bool>) {
    ON_DEVICE.with(|c| c.set(choice));
}

/// Whether k-means calls started on this thread seed and iterate on the device.
fn on_device_requested() -> bool {
    ON_DEVICE
        .with(Cell::get)
        .unwrap_or_else(|| switched_on(ON_DEVICE_ENV))
}

/// Keeps (`true`) k-means calls started on this thread on the mma.sync assignment kernel where
/// the wgmma one would run; `false` restores the default. For
/// tests and benchmarks that compare the two kernels in one process.
pub fn set_kmeans_wgmma_disabled(disabled: bool) {
    WGMMA_DISABLED.with(|c| c.set(disabled));
}

/// The block shape of the most recent CUDA k-means assignment launched on this thread
/// (`"wg2"`, `"wg1"`: the wgmma kernels; `"32x4"`, `"16x4"`, `"16x2"`: mma.sync), or `None`
/// before the first. For tests and benchmarks.
pub fn last_kmeans_assign_kernel() -> Option<&'static str> {
    LAST_ASSIGN_KERNEL.with(Cell::get)
}

/// Whether k-means calls started on this thread may use the wgmma assignment kernels.
fn wgmma_requested() -> bool {
    switched_on(WGMMA_ENV) && !WGMMA_DISABLED.with(Cell::get)
}

/// Device time of the last assignment kernel, f32 bits (NaN: none yet).
static LAST_ASSIGN_MS: AtomicU32 = AtomicU32::new(0x7fc0_0000);
/// Device time of the last update-step kernels (partial sums and their reduction).
static LAST_SUMS_MS: AtomicU32 = AtomicU32::new(0x7fc0_0000);

/// Device milliseconds of the most recent CUDA k-means assignment kernel in this process
/// (CUDA events around the launch; packing and copies excluded), or `None` before the first.
pub fn last_kmeans_assign_ms() -> Option<f32> {
    Some(f32::from_bits(LAST_ASSIGN_MS.load(Ordering::Relaxed))).filter(|v| !v.is_nan())
}

/// Device milliseconds of the most recent CUDA k-means update-step kernels (per-cluster sums),
/// or `None` before the first.
pub fn last_kmeans_sums_ms() -> Option<f32> {
    Some(f32::from_bits(LAST_SUMS_MS.load(Ordering::Relaxed))).filter(|v| !v.is_nan())
}

/// `AssignParams` of kmeans.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct AssignParams {
    points: u64,
    centres: u64,
    bias: u64,
    centres_f32: u64,
    labels: u64,
    dist: u64,
    n: u64,
    np: u64,
    k: i32,
    kp: i32,
    d: i32,
    dp: i32,
    spherical: i32,
    reserved: i32,
}

/// `DistParams` of kmeans.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct DistParams {
    points: u64,
    centres: u64,
    out: u64,
    n: u64,
    np: u64,
    nc: i32,
    d: i32,
    dp: i32,
    out_stride: i32,
    col0: i32,
    spherical: i32,
}

/// `SumsParams` of kmeans.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct SumsParams {
    points: u64,
    members: u64,
    task_begin: u64,
    task_end: u64,
    partial: u64,
    np: u64,
    ntasks: i32,
    d: i32,
    dp: i32,
    reserved: i32,
}

/// `ReduceParams` of kmeans.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct ReduceParams {
    partial: u64,
    cluster_tasks: u64,
    sums: u64,
    k: i32,
    d: i32,
}

/// `SortParams` of counting_sort.cuh.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct SortParams {
    labels: u64,
    counts: u64,
    starts: u64,
    cluster_tasks: u64,
    task_begin: u64,
    task_end: u64,
    members: u64,
    n: u32,
    k: u32,
    nchunks: u32,
    chunk: u32,
    task_chunk: u32,
    max_tasks: u32,
}

/// `ChangedParams` of kmeans_lloyd.cuh.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct ChangedParams {
    labels: u64,
    previous: u64,
    changed: u64,
    n: u64,
}

/// `UpdateParams` of kmeans_lloyd.cuh.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct UpdateParams {
    sums: u64,
    starts: u64,
    old_centres: u64,
    new_centres: u64,
    moved: u64,
    empty: u64,
    k: i32,
    d: i32,
    spherical: i32,
    reserved: i32,
}

/// `SeedParams` of kmeans_seed.cuh.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct SeedParams {
    closest: u64,
    cand: u64,
    sub: u64,
    part: u64,
    draw_block: u64,
    draw_base: u64,
    draw_target: u64,
    picked: u64,
    n: u64,
    range: u64,
    trials: i32,
    best: i32,
}

// SAFETY: plain #[repr(C)] structs of integers and floats with the C layout of kmeans.cu's
// structs (sizes checked by a test), passed by value as kernel parameters.
unsafe impl DeviceRepr for AssignParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for DistParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for SumsParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for ReduceParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for SortParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for ChangedParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for UpdateParams {}
// SAFETY: as above.
unsafe impl DeviceRepr for SeedParams {}

/// The kernels of kmeans.cu and kmeans_wgmma.cu; per-dtype arrays are indexed f32, f16, bf16.
pub(super) struct KMeansKernels {
    pub(super) pack: PackKernels,
    assign: [[CudaFunction; 3]; 3],
    /// By `WG_CONFIGS`; `None`: no such kernel, or the wgmma module is not loaded.
    wg_assign: [[Option<CudaFunction>; WG_CONFIGS.len()]; 3],
    distances: [CudaFunction; 3],
    sums: [CudaFunction; 3],
    reduce: CudaFunction,
    /// The counting sort: count, scan, scatter.
    sort: [CudaFunction; 3],
    changed: CudaFunction,
    update: CudaFunction,
    seed_sums: CudaFunction,
    seed_potentials: CudaFunction,
    seed_pick: CudaFunction,
    seed_accept: CudaFunction,
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

impl KMeansKernels {
    /// The kernels of `module` (kmeans.cu) and, when given, `wgmma` (kmeans_wgmma.cu).
    pub(super) fn load(
        module: &Arc<CudaModule>,
        wgmma: Option<&Arc<CudaModule>>,
    ) -> std::result::Result<Self, cudarc::driver::DriverError> {
        let f = |name: String| module.load_function(&name);
        let assign = |dt: &str| -> std::result::Result<[CudaFunction; 3], _> {
            Ok([
                f(format!("laic_km_assign_{dt}_{}", CONFIGS[0].2))?,
                f(format!("laic_km_assign_{dt}_{}", CONFIGS[1].2))?,
                f(format!("laic_km_assign_{dt}_{}", CONFIGS[2].2))?,
            ])
        };
        let each = |what: &str| -> std::result::Result<[CudaFunction; 3], _> {
            Ok([
                f(format!("laic_km_{what}_{}", DTYPES[0]))?,
                f(format!("laic_km_{what}_{}", DTYPES[1]))?,
                f(format!("laic_km_{what}_{}", DTYPES[2]))?,
            ])
        };
        // The wgmma kernels are optional (and off unless asked for): a module that lacks one
        // leaves them all out rather than failing the backend.
        let wg = |m: &Arc<CudaModule>| {
            let mut k: [[Option<CudaFunction>; WG_CONFIGS.len()]; 3] = Default::default();
            for (di, dt) in DTYPES.iter().enumerate() {
                for (ci, (groups, name)) in WG_CONFIGS.iter().enumerate() {
                    if wg_stages(DTYPE_OF[di], *groups).is_some() {
                        k[di][ci] =
                            Some(m.load_function(&format!("laic_km_wg_assign_{dt}_{name}"))?);
                    }
                }
            }
            Ok::<_, cudarc::driver::DriverError>(k)
        };
        let wg_assign = wgmma.and_then(|m| wg(m).ok()).unwrap_or_default();
        Ok(KMeansKernels {
            pack: PackKernels::load(module, "laic_km_pack")?,
            assign: [assign(DTYPES[0])?, assign(DTYPES[1])?, assign(DTYPES[2])?],
            wg_assign,
            distances: each("distances")?,
            sums: each("sums")?,
            reduce: f("laic_km_sums_reduce".into())?,
            sort: [
                f("laic_km_sort_count".into())?,
                f("laic_km_sort_scan".into())?,
                f("laic_km_sort_scatter".into())?,
            ],
            changed: f("laic_km_changed".into())?,
            update: f("laic_km_update".into())?,
            seed_sums: f("laic_km_seed_sums".into())?,
            seed_potentials: f("laic_km_seed_potentials".into())?,
            seed_pick: f("laic_km_seed_pick".into())?,
            seed_accept: f("laic_km_seed_accept".into())?,
        })
    }
}

/// Operand layout of the centres against points of `dtype`: f16 points meet f16 centres (one
/// product; the winner's distance is recomputed exactly), bf16 and f32 points meet bf16 hi + lo.
fn centre_layout(dtype: Dtype) -> Layout {
    match dtype {
        Dtype::F16 => Layout::F32AsF16,
        Dtype::Bf16 | Dtype::F32 => Layout::F32Split,
    }
}

/// Which assignment kernel a plan launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AssignKernel {
    /// kmeans.cu (mma.sync), index into `CONFIGS`.
    Mma(usize),
    /// kmeans_wgmma.cu (wgmma, sm_90a), index into `WG_CONFIGS`.
    Wg(usize),
}

/// How the assignment runs: kernel, block shape and shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Plan {
    kernel: AssignKernel,
    bm: usize,
    threads: u32,
    smem: usize,
    dp: usize,
    /// The packed centres are padded to a multiple of this many rows (the kernel's tile).
    bn: usize,
}

impl Plan {
    /// The block shape's name (as [`last_kmeans_assign_kernel`] reports it).
    fn name(&self) -> &'static str {
        match self.kernel {
            AssignKernel::Mma(c) => CONFIGS[c].2,
            AssignKernel::Wg(c) => WG_CONFIGS[c].1,
        }
    }
}

/// Shared memory of a block: the resident points, the centre pipeline, the winners.
fn smem_bytes(bm: usize, dp: usize, xpl: usize, cpl: usize) -> usize {
    xpl * bm * (dp + PAD) * 2 + STAGES * cpl * BN * (BK + PAD) * 2 + bm * 4
}

/// Shared memory of a wgmma block: 1024 bytes of slack for aligning the swizzled tiles, the
/// resident points, `stages` chunks of 128 centres x 64 columns per plane, the winners.
fn wg_smem_bytes(bm: usize, dp: usize, xpl: usize, cpl: usize, stages: usize) -> usize {
    1024 + xpl * bm * dp * 2 + stages * cpl * WG_BN * BK * 2 + bm * 4
}

/// The first wgmma block shape among the `available` ones (by `WG_CONFIGS`) whose shared memory
/// fits, or `None`.
fn wg_plan(
    dtype: Dtype,
    d: usize,
    max_smem: usize,
    available: &[bool; WG_CONFIGS.len()],
) -> Option<Plan> {
    let dp = operands::round_up(d, BK);
    let xpl = Layout::of(dtype).planes();
    let cpl = centre_layout(dtype).planes();
    WG_CONFIGS
        .iter()
        .enumerate()
        .filter(|&(i, _)| available[i])
        .filter_map(|(i, &(groups, _))| {
            let stages = wg_stages(dtype, groups)?;
            let bm = 64 * groups;
            Some(Plan {
                kernel: AssignKernel::Wg(i),
                bm,
                threads: (128 * groups) as u32,
                smem: wg_smem_bytes(bm, dp, xpl, cpl, stages),
                dp,
                bn: WG_BN,
            })
        })
        .find(|p| p.smem <= max_smem)
}

/// The first block shape whose shared memory fits, or an error naming the limit (the caller
/// falls back to the CPU).
pub(super) fn plan(dtype: Dtype, d: usize, max_smem: usize) -> Result<Plan> {
    let dp = operands::round_up(d, BK);
    let xpl = Layout::of(dtype).planes();
    let cpl = centre_layout(dtype).planes();
    let make = |config: usize| {
        let (wm, warps, _) = CONFIGS[config];
        Plan {
            kernel: AssignKernel::Mma(config),
            bm: wm * warps,
            threads: (warps * 32) as u32,
            smem: smem_bytes(wm * warps, dp, xpl, cpl),
            dp,
            bn: BN,
        }
    };
    (0..CONFIGS.len())
        .map(make)
        .find(|p| p.smem <= max_smem)
        .ok_or_else(|| {
            Error::invalid(format!(
                "rows of {d} {dtype:?} elements are too wide for the CUDA k-means kernel on this \
                 device ({} bytes of shared memory needed, {max_smem} available)",
                make(CONFIGS.len() - 1).smem
            ))
        })
}

/// The k-means steps of one k-means call with the rows on the device.
pub(super) struct CudaKMeans<'a> {
    backend: &'a CudaBackend,
    points: Packed,
    dtype: Dtype,
    n: usize,
    d: usize,
    plan: Plan,
    labels: CudaSlice<u32>,
    dist: CudaSlice<f32>,
    /// Buffers of the update step, allocated by its first call.
    update: Option<UpdateBuffers>,
}

fn event(stream: &Arc<CudaStream>) -> Result<CudaEvent> {
    stream
        .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(|e| cuda_error("recording a CUDA event", e))
}

fn store_ms(cell: &AtomicU32, start: &CudaEvent, end: &CudaEvent) {
    if let Ok(ms) = start.elapsed_ms(end) {
        cell.store(ms.to_bits(), Ordering::Relaxed);
    }
}

impl KMeansKernels {
    /// The assignment plan for `d` columns of `dtype`: a wgmma kernel when one is loaded and fits,
    /// unless `LAIC_CUDA_KMEANS_WGMMA=0` (or [`set_kmeans_wgmma_disabled`]) says no, else
    /// the mma.sync kernel of [`plan`].
    fn choose(&self, dtype: Dtype, d: usize, max_smem: usize) -> Result<Plan> {
        let row = &self.wg_assign[dtype_index(dtype)];
        let available: [bool; WG_CONFIGS.len()] = std::array::from_fn(|i| row[i].is_some());
        match wg_plan(dtype, d, max_smem, &available).filter(|_| wgmma_requested()) {
            Some(p) => Ok(p),
            None => plan(dtype, d, max_smem),
        }
    }
}

impl<'a> CudaKMeans<'a> {
    /// Uploads and packs the rows of `x` (validated, finite).
    pub(super) fn new(backend: &'a CudaBackend, x: &MatrixRef<'_>) -> Result<Self> {
        let (d, dtype) = (x.cols(), x.dtype());
        let plan = backend.kmeans.choose(dtype, d, backend.max_smem)?;
        backend.with_stream(|stream| {
            let points = operands::pack_host(
                stream,
                &backend.kmeans.pack,
                x,
                Layout::of(dtype),
                ROW_MULTIPLE,
                BK,
                RowValue::One,
                1.0,
            )?;
            Self::with_points(backend, stream, points, dtype, d, plan)
        })
    }

    /// Packs `n` rows of `d` f32 (finite) that already live on the device, contiguous in
    /// `rows`: nothing crosses the bus.
    pub(super) fn from_device(
        backend: &'a CudaBackend,
        rows: &CudaSlice<f32>,
        n: usize,
        d: usize,
    ) -> Result<Self> {
        if rows.len() < n * d {
            return Err(Error::Internal(format!(
                "k-means on device rows: {} floats hold fewer than {n} rows of {d}",
                rows.len()
            )));
        }
        let plan = backend.kmeans.choose(Dtype::F32, d, backend.max_smem)?;
        backend.with_stream(|stream| {
            let points = operands::pack_f32(
                stream,
                &backend.kmeans.pack,
                rows,
                n,
                d,
                Layout::of(Dtype::F32),
                ROW_MULTIPLE,
                BK,
                RowValue::One,
                1.0,
            )?;
            Self::with_points(backend, stream, points, Dtype::F32, d, plan)
        })
    }

    /// The steps on packed points, with their label and distance buffers.
    fn with_points(
        backend: &'a CudaBackend,
        stream: &Arc<CudaStream>,
        points: Packed,
        dtype: Dtype,
        d: usize,
        plan: Plan,
    ) -> Result<Self> {
        let n = points.rows;
        let labels = stream
            .alloc_zeros::<u32>(n)
            .map_err(|e| cuda_error("labels", e))?;
        let dist = stream
            .alloc_zeros::<f32>(n)
            .map_err(|e| cuda_error("distances", e))?;
        sync(stream, "packing the points")?;
        Ok(CudaKMeans {
            backend,
            points,
            dtype,
            n,
            d,
            plan,
            labels,
            dist,
            update: None,
        })
    }

    /// Enqueues the copies of the label and distance buffers to the host.
    fn labels_and_distances(&self, stream: &Arc<CudaStream>) -> Result<(Vec<u32>, Vec<f32>)> {
        Ok((
            download(stream, &self.labels, "copying the labels back")?,
            download(stream, &self.dist, "copying the distances back")?,
        ))
    }

    /// Uploads `centres` (C×D f32, contiguous).
    fn upload_centres(&self, stream: &Arc<CudaStream>, centres: &[f32]) -> Result<CudaSlice<f32>> {
        stream
            .clone_htod(centres)
            .map_err(|e| cuda_error("uploading the centres", e))
    }

    /// Enqueues the assignment of the rows to the `k` device centres (k × d f32) into the
    /// label and distance buffers. Returns the packed centres (keep them until the stream has
    /// run the kernel) and the events around the kernel.
    fn launch_assign(
        &self,
        stream: &Arc<CudaStream>,
        centres: &CudaSlice<f32>,
        k: usize,
        metric: Metric,
    ) -> Result<(Packed, CudaEvent, CudaEvent)> {
        let (n, d) = (self.n, self.d);
        let kernels = &self.backend.kmeans;
        let plan = self.plan;
        let dti = dtype_index(self.dtype);
        let spherical = metric == Metric::Spherical;
        let packed = operands::pack_f32(
            stream,
            &kernels.pack,
            centres,
            k,
            d,
            centre_layout(self.dtype),
            plan.bn,
            BK,
            RowValue::HalfSqNorm,
            if spherical { 0.0 } else { 1.0 },
        )?;
        if packed.rows_padded > i32::MAX as usize {
            return Err(Error::invalid(format!("{k} centres are too many for CUDA")));
        }
        let start = {
            let (pp, _g1) = self.points.data.device_ptr(stream);
            let (cp, _g2) = packed.data.device_ptr(stream);
            let (bp, _g3) = packed.row_value.device_ptr(stream);
            let (cf, _g4) = centres.device_ptr(stream);
            let (lp, _g5) = self.labels.device_ptr(stream);
            let (dp, _g6) = self.dist.device_ptr(stream);
            let params = AssignParams {
                points: pp,
                centres: cp,
                bias: bp,
                centres_f32: cf,
                labels: lp,
                dist: dp,
                n: n as u64,
                np: self.points.rows_padded as u64,
                k: k as i32,
                kp: packed.rows_padded as i32,
                d: d as i32,
                dp: plan.dp as i32,
                spherical: spherical as i32,
                reserved: 0,
            };
            let f = match plan.kernel {
                AssignKernel::Mma(c) => &kernels.assign[dti][c],
                AssignKernel::Wg(c) => kernels.wg_assign[dti][c]
                    .as_ref()
                    .ok_or_else(|| Error::Cuda("the wgmma k-means kernel is not loaded".into()))?,
            };
            f.set_attribute(
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                plan.smem as i32,
            )
            .map_err(|e| cuda_error("raising the kernel's shared-memory limit", e))?;
            let cfg = LaunchConfig {
                grid_dim: ((self.points.rows_padded / plan.bm) as u32, 1, 1),
                block_dim: (plan.threads, 1, 1),
                shared_mem_bytes: plan.smem as u32,
            };
            let start = event(stream)?;
            // SAFETY: the parameters match the kernel's struct (both kernels take kmeans_params.cuh's
            // AssignParams): the points are packed to np = a multiple of every block's rows and
            // plan.dp columns, the centres to kp rows (multiple of the kernel's tile, plan.bn)
            // and dp columns with kp biases, `centres` holds k × d f32, and the label and distance
            // buffers hold n elements; the grid covers np / bm blocks.
            unsafe {
                launch_kernel(
                    stream,
                    f,
                    cfg,
                    &params,
                    "launching the k-means assignment kernel",
                )
            }?;
            start
        };
        let end = event(stream)?;
        LAST_ASSIGN_KERNEL.with(|c| c.set(Some(plan.name())));
        Ok((packed, start, end))
    }

    /// The update buffers for `k` clusters (allocated when `k` changes).
    fn update_buffers(&mut self, k: usize) -> Result<()> {
        if self.update.as_ref().is_none_or(|u| u.k != k) {
            self.update = None; // frees the old buffers first
            let (n, d) = (self.n, self.d);
            self.update = Some(
                self.backend
                    .with_stream(|s| UpdateBuffers::new(s, n, k, d))?,
            );
        }
        Ok(())
    }

    /// Enqueues the update step's sums for the labels in the label buffer: the counting sort
    /// into the members, cluster starts and tasks, then the partial and per-cluster sums, all in
    /// the update buffers (allocated for k clusters). Returns the events around the kernels.
    fn launch_sums(&mut self, stream: &Arc<CudaStream>) -> Result<(CudaEvent, CudaEvent)> {
        let (n, d) = (self.n, self.d);
        let kernels = &self.backend.kmeans;
        let dti = dtype_index(self.dtype);
        let u = self.update.as_mut().expect("update buffers allocated");
        let k = u.k;
        let col_groups = d.div_ceil(SUM_THREADS) as u32;
        let sum_col_groups = d.div_ceil(SUM_THREADS * SUM_COLS) as u32;
        stream
            .memset_zeros(&mut u.counts)
            .map_err(|e| cuda_error("clearing the label counts", e))?;
        let start = event(stream)?;
        {
            let (lp, _g1) = self.labels.device_ptr(stream);
            let (cp, _g2) = u.counts.device_ptr(stream);
            let (sp, _g3) = u.starts.device_ptr(stream);
            let (tp, _g4) = u.cluster_tasks.device_ptr(stream);
            let (bp, _g5) = u.task_begin.device_ptr(stream);
            let (ep, _g6) = u.task_end.device_ptr(stream);
            let (mp, _g7) = u.members.device_ptr(stream);
            let params = SortParams {
                labels: lp,
                counts: cp,
                starts: sp,
                cluster_tasks: tp,
                task_begin: bp,
                task_end: ep,
                members: mp,
                n: n as u32,
                k: k as u32,
                nchunks: u.nchunks as u32,
                chunk: u.chunk as u32,
                task_chunk: SUM_CHUNK as u32,
                max_tasks: u.max_tasks as u32,
            };
            let walk = LaunchConfig {
                grid_dim: ((u.nchunks * 32).div_ceil(SORT_THREADS) as u32, 1, 1),
                block_dim: (SORT_THREADS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            let scan = LaunchConfig {
                grid_dim: (1, 1, 1),
                block_dim: (SORT_SCAN_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            for (f, cfg, what) in [
                (&kernels.sort[0], walk, "launching the label count kernel"),
                (&kernels.sort[1], scan, "launching the label scan kernel"),
                (
                    &kernels.sort[2],
                    walk,
                    "launching the member scatter kernel",
                ),
            ] {
                // SAFETY: the parameters match counting_sort.cuh's SortParams: n labels
                // and members, the k × nchunks counts (zeroed above; k · nchunks < 2^32),
                // k + 1 starts and cluster tasks, max_tasks ≥ n / SUM_CHUNK + k task
                // bounds; warp w < nchunks reads labels [w · chunk, (w + 1) · chunk) ∩
                // [0, n) and the count cells of its own column.
                unsafe { launch_kernel(stream, f, cfg, &params, what) }?;
            }
        }
        {
            let (pp, _g1) = self.points.data.device_ptr(stream);
            let (mp, _g2) = u.members.device_ptr(stream);
            let (bp, _g3) = u.task_begin.device_ptr(stream);
            let (ep, _g4) = u.task_end.device_ptr(stream);
            let (pa, _g5) = u.partial.device_ptr(stream);
            let params = SumsParams {
                points: pp,
                members: mp,
                task_begin: bp,
                task_end: ep,
                partial: pa,
                np: self.points.rows_padded as u64,
                ntasks: u.max_tasks as i32,
                d: d as i32,
                dp: self.plan.dp as i32,
                reserved: 0,
            };
            let cfg = LaunchConfig {
                grid_dim: (u.max_tasks as u32, sum_col_groups, 1),
                block_dim: (SUM_THREADS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: task t < max_tasks reads members[begin[t]..end[t]] (< n, points
            // packed; unused tasks are empty), columns below plan.dp (a multiple of BK, so of
            // SUM_COLS) of their packed rows, and writes row t of the max_tasks × d partial
            // sums.
            unsafe {
                launch_kernel(
                    stream,
                    &kernels.sums[dti],
                    cfg,
                    &params,
                    "launching the k-means sums kernel",
                )
            }?;
        }
        {
            let (pa, _g1) = u.partial.device_ptr(stream);
            let (cp, _g2) = u.cluster_tasks.device_ptr(stream);
            let (sp, _g3) = u.sums.device_ptr(stream);
            let params = ReduceParams {
                partial: pa,
                cluster_tasks: cp,
                sums: sp,
                k: k as i32,
                d: d as i32,
            };
            let cfg = LaunchConfig {
                grid_dim: (k as u32, col_groups, 1),
                block_dim: (SUM_THREADS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: cluster c reads the partial rows of its tasks (< the scan's task
            // count ≤ max_tasks) and writes row c of the k × d sums.
            unsafe {
                launch_kernel(
                    stream,
                    &kernels.reduce,
                    cfg,
                    &params,
                    "launching the k-means reduce kernel",
                )
            }?;
        }
        let end = event(stream)?;
        Ok((start, end))
    }

    /// Enqueues, after clearing `state.flags`: the count of the labels that differ from
    /// `state.previous` into `flags[0]` (when `compare`), and the centre update from the update
    /// buffers' sums and starts (`state.centres` → `state.next`, per-cluster squared moves into
    /// `state.moved`, empty clusters counted into `flags[1]`).
    fn launch_lloyd_rest(
        &self,
        stream: &Arc<CudaStream>,
        compare: bool,
        state: &mut DeviceLloyd,
        spherical: bool,
    ) -> Result<()> {
        let (n, d) = (self.n, self.d);
        let kernels = &self.backend.kmeans;
        let u = self.update.as_ref().expect("update buffers allocated");
        stream
            .memset_zeros(&mut state.flags)
            .map_err(|e| cuda_error("clearing the iteration's counters", e))?;
        let (fp, _g0) = state.flags.device_ptr(stream);
        if compare {
            let (lp, _g1) = self.labels.device_ptr(stream);
            let (pp, _g2) = state.previous.device_ptr(stream);
            let params = ChangedParams {
                labels: lp,
                previous: pp,
                changed: fp,
                n: n as u64,
            };
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(256).clamp(1, 1024) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: both label buffers hold n elements; `flags` holds 2 counters.
            unsafe {
                launch_kernel(
                    stream,
                    &kernels.changed,
                    cfg,
                    &params,
                    "launching the changed-labels kernel",
                )
            }?;
        }
        let (sp, _g3) = u.sums.device_ptr(stream);
        let (tp, _g4) = u.starts.device_ptr(stream);
        let (op, _g5) = state.centres.device_ptr(stream);
        let (np, _g6) = state.next.device_ptr(stream);
        let (mp, _g7) = state.moved.device_ptr(stream);
        let params = UpdateParams {
            sums: sp,
            starts: tp,
            old_centres: op,
            new_centres: np,
            moved: mp,
            empty: fp + 4,
            k: u.k as i32,
            d: d as i32,
            spherical: spherical as i32,
            reserved: 0,
        };
        let cfg = LaunchConfig {
            grid_dim: (u.k as u32, 1, 1),
            block_dim: (UPDATE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: block c < k reads row c of the k × d sums and old centres, starts[c..=c + 1]
        // (k + 1), writes row c of the new centres and moved[c] (k), and counts into flags[1].
        unsafe {
            launch_kernel(
                stream,
                &kernels.update,
                cfg,
                &params,
                "launching the centre update kernel",
            )
        }?;
        Ok(())
    }

    /// [`KMeansSteps::lloyd`] with the centres and labels on the device: per iteration the
    /// assignment, the count of changed labels, the sums and the centre update run back to
    /// back and only the counters and the K per-cluster moves come back. An iteration that
    /// leaves a cluster empty runs its update on the host (`repair_empty`, `update_centres`:
    /// the labels, distances, sums and centres come back, the centres go up again). The
    /// labels, distances and centres come back at the end.
    fn device_lloyd(
        &mut self,
        rows: &dyn Rows,
        mut centres: Vec<f32>,
        opts: &KMeansOptions,
        tol: f64,
        report: &dyn Fn(f64) -> Result<()>,
    ) -> Result<KMeansResult> {
        let (n, d, k) = (self.n, self.d, opts.n_clusters);
        let metric = opts.metric;
        self.update_buffers(k)?;
        let backend = self.backend;
        let mut state = backend.with_stream(|stream| {
            let alloc = |what: &str| {
                stream
                    .alloc_zeros::<f32>(k * d)
                    .map_err(|e| cuda_error(what, e))
            };
            Ok(DeviceLloyd {
                centres: self.upload_centres(stream, &centres)?,
                next: alloc("the next centres")?,
                moved: stream
                    .alloc_zeros::<f64>(k)
                    .map_err(|e| cuda_error("the centre moves", e))?,
                flags: stream
                    .alloc_zeros::<u32>(2)
                    .map_err(|e| cuda_error("the iteration's counters", e))?,
                previous: stream
                    .alloc_zeros::<u32>(n)
                    .map_err(|e| cuda_error("the previous labels", e))?,
            })
        })?;
        let mut assigned_to_current = false;
        let mut n_iter = 0;
        for it in 0..opts.max_iter {
            n_iter = it + 1;
            // Assignment, changed labels (none to compare with in the first iteration), sums
            // and update, then one wait.
            let (flags, moved) = backend.with_stream(|stream| {
                let (_packed, a0, a1) = self.launch_assign(stream, &state.centres, k, metric)?;
                let (s0, s1) = self.launch_sums(stream)?;
                let spherical = metric == Metric::Spherical;
                self.launch_lloyd_rest(stream, it > 0, &mut state, spherical)?;
                let flags = download(
                    stream,
                    &state.flags,
                    "copying the iteration's counters back",
                )?;
                let moved = download(stream, &state.moved, "copying the centre moves back")?;
                sync(stream, "a k-means iteration on the device failed")?;
                store_ms(&LAST_ASSIGN_MS, &a0, &a1);
                store_ms(&LAST_SUMS_MS, &s0, &s1);
                Ok((flags, moved))
            })?;
            if it > 0 && flags[0] == 0 {
                assigned_to_current = true;
                break;
            }
            let shift = if flags[1] == 0 {
                std::mem::swap(&mut state.centres, &mut state.next);
                moved.iter().sum::<f64>()
            } else {
                self.host_update(rows, &mut state, &mut centres, metric)?
            };
            std::mem::swap(&mut self.labels, &mut state.previous);
            report((it + 1) as f64 / opts.max_iter as f64)?;
            if shift <= tol {
                break;
            }
        }
        let (labels, dist, centres) = backend.with_stream(|stream| {
            if !assigned_to_current {
                let (_packed, a0, a1) = self.launch_assign(stream, &state.centres, k, metric)?;
                sync(stream, "the k-means assignment kernel failed")?;
                store_ms(&LAST_ASSIGN_MS, &a0, &a1);
            }
            let (labels, dist) = self.labels_and_distances(stream)?;
            let centres = download(stream, &state.centres, "copying the centres back")?;
            sync(stream, "copying the k-means result back")?;
            Ok((labels, dist, centres))
        })?;
        Ok(KMeansResult {
            objective: dist.iter().map(|&v| v as f64).sum(),
            labels,
            centres,
            dim: d,
            n_iter,
            best_run: 0,
        })
    }

    /// The update of an iteration that left a cluster empty, on the host as in
    /// `src/kmeans.rs`: the labels, distances, sums, sizes and current centres come back, the
    /// repaired centres go up into `state.centres`. Returns the squared shift.
    fn host_update(
        &mut self,
        rows: &dyn Rows,
        state: &mut DeviceLloyd,
        centres: &mut Vec<f32>,
        metric: Metric,
    ) -> Result<f64> {
        let (n, d) = (self.n, self.d);
        let u = self.update.as_ref().expect("update buffers allocated");
        let k = u.k;
        let (labels, dist, mut sums, starts, current) = self.backend.with_stream(|stream| {
            let (labels, dist) = self.labels_and_distances(stream)?;
            let sums = download(stream, &u.sums, "copying the sums back")?;
            let starts = download(stream, &u.starts, "copying the cluster sizes back")?;
            let current = download(stream, &state.centres, "copying the centres back")?;
            sync(stream, "copying an iteration back")?;
            Ok((labels, dist, sums, starts, current))
        })?;
        let mut counts = vec![0u64; k];
        sizes_from_starts(&starts, n, &mut counts)?;
        *centres = current;
        repair_empty(rows, &labels, &dist, &mut sums, &mut counts)?;
        let shift = update_centres(&sums, &counts, metric, centres, d);
        self.backend.with_stream(|stream| {
            stream
                .memcpy_htod(centres.as_slice(), &mut state.centres)
                .map_err(|e| cuda_error("uploading the centres", e))
        })?;
        Ok(shift)
    }
}

impl CudaKMeans<'_> {
    /// Enqueues the distances of every row to the `c` device centres (c × d f32) into `out`
    /// (n × c, row-major).
    fn launch_distances(
        &self,
        stream: &Arc<CudaStream>,
        centres: &CudaSlice<f32>,
        c: usize,
        metric: Metric,
        out: &CudaSlice<f32>,
    ) -> Result<()> {
        let (n, d) = (self.n, self.d);
        let kernels = &self.backend.kmeans;
        let (pp, _g1) = self.points.data.device_ptr(stream);
        let (cf, _g2) = centres.device_ptr(stream);
        let (op, _g3) = out.device_ptr(stream);
        for c0 in (0..c).step_by(DIST_CENTRES) {
            let params = DistParams {
                points: pp,
                centres: cf + (c0 * d * 4) as u64,
                out: op,
                n: n as u64,
                np: self.points.rows_padded as u64,
                nc: DIST_CENTRES.min(c - c0) as i32,
                d: d as i32,
                dp: self.plan.dp as i32,
                out_stride: c as i32,
                col0: c0 as i32,
                spherical: (metric == Metric::Spherical) as i32,
            };
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(8) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: one warp per point below n; centres c0..c0 + nc of `centres` (c × d
            // f32) and columns c0..c0 + nc of the n × c output are in bounds.
            unsafe {
                launch_kernel(
                    stream,
                    &kernels.distances[dtype_index(self.dtype)],
                    cfg,
                    &params,
                    "launching the k-means distances kernel",
                )
            }?;
        }
        Ok(())
    }

    /// [`KMeansSteps::kmeans_plus_plus`] with the nearest distances on the device
    /// (`kernels/kmeans_seed.cuh`): per step the block sums of the nearest distances come back
    /// for the host's draws, the device finds the drawn points, the candidates' rows go up,
    /// and the candidates' potentials come back for the host's choice. Same draws and
    /// choices as the host loop; the sums are grouped by block (fixed order: a seed gives the
    /// same centres on every run).
    fn device_kmeans_plus_plus(
        &mut self,
        rows: &dyn Rows,
        k: usize,
        metric: Metric,
        first: usize,
        uniform: &mut dyn FnMut() -> f64,
    ) -> Result<Vec<f32>> {
        let (n, d) = (self.n, self.d);
        let trials = 2 + (k as f64).ln() as usize;
        let (range, blocks) = seed_blocks(n);
        let kernels = &self.backend.kmeans;
        let mut centres = vec![0f32; d];
        rows.copy_rows(&[first], &mut centres)?;
        centres.reserve((k - 1) * d);
        let bufs = self.backend.with_stream(|stream| {
            let f32s = |len: usize| stream.alloc_zeros::<f32>(len.max(1));
            let f64s = |len: usize| stream.alloc_zeros::<f64>(len.max(1));
            let u32s = |len: usize| stream.alloc_zeros::<u32>(len.max(1));
            let alloc = || -> std::result::Result<SeedBuffers, cudarc::driver::DriverError> {
                Ok(SeedBuffers {
                    closest: f32s(n)?,
                    cand: f32s(n * trials)?,
                    sub: f64s(blocks * SEED_THREADS)?,
                    part: f64s(blocks * trials)?,
                    draw_block: u32s(trials)?,
                    draw_base: f64s(trials)?,
                    draw_target: f64s(trials)?,
                    picked: u32s(trials)?,
                })
            };
            let bufs = alloc().map_err(|e| cuda_error("the seeding buffers", e))?;
            let dev_first = self.upload_centres(stream, &centres)?;
            self.launch_distances(stream, &dev_first, 1, metric, &bufs.closest)?;
            sync(stream, "the first seed's distances failed")?;
            Ok(bufs)
        })?;
        let mut bufs = bufs;
        let mut accepted: Option<usize> = None;
        for _ in 1..k {
            // The previous step's choice, then the block sums of the nearest distances.
            let part = self.backend.with_stream(|stream| {
                if let Some(best) = accepted {
                    let cfg = LaunchConfig {
                        grid_dim: (n.div_ceil(256).clamp(1, 1024) as u32, 1, 1),
                        block_dim: (256, 1, 1),
                        shared_mem_bytes: 0,
                    };
                    bufs.launch(stream, &kernels.seed_accept, cfg, n, range, trials, best)?;
                }
                let cfg = seed_grid(blocks);
                bufs.launch(stream, &kernels.seed_sums, cfg, n, range, trials, 0)?;
                let part = download(stream, &bufs.part, "copying the seeding sums back")?;
                sync(stream, "the seeding sums failed")?;
                Ok(part)
            })?;
            let mut incl = Vec::with_capacity(blocks);
            let mut total = 0f64;
            for &p in &part[..blocks] {
                total += p;
                incl.push(total);
            }
            // The host's draws (as in the host loop: r = u · total), found on the device.
            let (mut draw_block, mut draw_base, mut draw_target) = (vec![], vec![], vec![]);
            for _ in 0..trials {
                let r = uniform() * total;
                let b = incl.partition_point(|&c| c < r).min(blocks - 1);
                draw_block.push(b as u32);
                draw_base.push(if b == 0 { 0.0 } else { incl[b - 1] });
                draw_target.push(r);
            }
            let cands = self.backend.with_stream(|stream| {
                let up = |e| cuda_error("uploading the draws", e);
                stream
                    .memcpy_htod(&draw_block, &mut bufs.draw_block)
                    .map_err(up)?;
                stream
                    .memcpy_htod(&draw_base, &mut bufs.draw_base)
                    .map_err(up)?;
                stream
                    .memcpy_htod(&draw_target, &mut bufs.draw_target)
                    .map_err(up)?;
                let cfg = LaunchConfig {
                    grid_dim: (trials.div_ceil(32) as u32, 1, 1),
                    block_dim: (32, 1, 1),
                    shared_mem_bytes: 0,
                };
                bufs.launch(stream, &kernels.seed_pick, cfg, n, range, trials, 0)?;
                let picked = download(stream, &bufs.picked, "copying the drawn points back")?;
                sync(stream, "the seeding draws failed")?;
                Ok(picked)
            })?;
            let cands: Vec<usize> = cands[..trials].iter().map(|&i| i as usize).collect();
            // The candidates' potentials: Σ min(nearest, distance to the candidate).
            let mut cand_rows = vec![0f32; trials * d];
            rows.copy_rows(&cands, &mut cand_rows)?;
            let part = self.backend.with_stream(|stream| {
                let dev_rows = self.upload_centres(stream, &cand_rows)?;
                self.launch_distances(stream, &dev_rows, trials, metric, &bufs.cand)?;
                let cfg = seed_grid(blocks);
                bufs.launch(stream, &kernels.seed_potentials, cfg, n, range, trials, 0)?;
                let part = download(stream, &bufs.part, "copying the potentials back")?;
                sync(stream, "the seeding potentials failed")?;
                Ok(part)
            })?;
            let mut best: Option<(f64, usize)> = None;
            for t in 0..trials {
                let pot: f64 = (0..blocks).map(|b| part[b * trials + t]).sum();
                if best.is_none_or(|(p, _)| pot < p) {
                    best = Some((pot, t));
                }
            }
            let (_, t) = best.expect("at least two trials");
            centres.extend_from_slice(&cand_rows[t * d..(t + 1) * d]);
            accepted = Some(t);
        }
        Ok(centres)
    }
}

/// Blocks of the seeding sums for `n` points: (points per block, a multiple of
/// `SEED_THREADS`; blocks), at most `SEED_BLOCKS` blocks of at least `SEED_THREADS` points.
fn seed_blocks(n: usize) -> (usize, usize) {
    let range = n
        .div_ceil(SEED_BLOCKS)
        .max(1)
        .next_multiple_of(SEED_THREADS);
    (range, n.div_ceil(range).max(1))
}

/// The launch of the seeding kernels that run a block per range of points.
fn seed_grid(blocks: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (SEED_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The device buffers of [`CudaKMeans::device_kmeans_plus_plus`] (`SeedParams` of
/// kmeans_seed.cuh).
struct SeedBuffers {
    closest: CudaSlice<f32>,
    cand: CudaSlice<f32>,
    sub: CudaSlice<f64>,
    part: CudaSlice<f64>,
    draw_block: CudaSlice<u32>,
    draw_base: CudaSlice<f64>,
    draw_target: CudaSlice<f64>,
    picked: CudaSlice<u32>,
}

impl SeedBuffers {
    /// Launches one of the seeding kernels on these buffers.
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        stream: &Arc<CudaStream>,
        f: &CudaFunction,
        cfg: LaunchConfig,
        n: usize,
        range: usize,
        trials: usize,
        best: usize,
    ) -> Result<()> {
        let (cl, _g1) = self.closest.device_ptr(stream);
        let (ca, _g2) = self.cand.device_ptr(stream);
        let (su, _g3) = self.sub.device_ptr(stream);
        let (pa, _g4) = self.part.device_ptr(stream);
        let (db, _g5) = self.draw_block.device_ptr(stream);
        let (ds, _g6) = self.draw_base.device_ptr(stream);
        let (dt, _g7) = self.draw_target.device_ptr(stream);
        let (pk, _g8) = self.picked.device_ptr(stream);
        let params = SeedParams {
            closest: cl,
            cand: ca,
            sub: su,
            part: pa,
            draw_block: db,
            draw_base: ds,
            draw_target: dt,
            picked: pk,
            n: n as u64,
            range: range as u64,
            trials: trials as i32,
            best: best as i32,
        };
        // SAFETY: the buffers were allocated for n points, `trials` candidates and
        // n.div_ceil(range) ≤ the grid's blocks of SEED_THREADS threads (`seed_blocks`); the
        // kernels stay inside them (kmeans_seed.cuh: thread ranges are clamped to n, draws
        // to `trials`, the accepted column is < trials).
        unsafe {
            launch_kernel(
                stream,
                f,
                cfg,
                &params,
                "launching a k-means seeding kernel",
            )
        }?;
        Ok(())
    }
}

/// The device state of [`CudaKMeans::device_lloyd`].
struct DeviceLloyd {
    /// The current centres, k × d f32.
    centres: CudaSlice<f32>,
    /// The centres the update writes, swapped with `centres` after a device update.
    next: CudaSlice<f32>,
    /// Per cluster, the squared move of its centre (k f64).
    moved: CudaSlice<f64>,
    /// The labels that changed, then the empty clusters.
    flags: CudaSlice<u32>,
    /// The labels of the previous assignment.
    previous: CudaSlice<u32>,
}

impl KMeansSteps for CudaKMeans<'_> {
    fn assign(&mut self, centres: &[f32], metric: Metric, out: AssignOut<'_>) -> Result<()> {
        let n = self.n;
        let k = centres.len() / self.d;
        let (labels, dist) = self.backend.with_stream(|stream| {
            let dev_c = self.upload_centres(stream, centres)?;
            let (_packed, start, end) = self.launch_assign(stream, &dev_c, k, metric)?;
            let (labels, dist) = self.labels_and_distances(stream)?;
            sync(stream, "the k-means assignment kernel failed")?;
            store_ms(&LAST_ASSIGN_MS, &start, &end);
            Ok((labels, dist))
        })?;
        out.labels[..n].copy_from_slice(&labels);
        out.distances[..n].copy_from_slice(&dist);
        Ok(())
    }

    fn lloyd(
        &mut self,
        rows: &dyn Rows,
        centres: Vec<f32>,
        opts: &KMeansOptions,
        tol: f64,
        report: &dyn Fn(f64) -> Result<()>,
    ) -> Result<KMeansResult> {
        if on_device_requested() {
            self.device_lloyd(rows, centres, opts, tol, report)
        } else {
            kmeans::lloyd(self, rows, centres, opts, tol, report)
        }
    }

    fn distances(&mut self, centres: &[f32], metric: Metric, out: &mut [f32]) -> Result<()> {
        let (n, c) = (self.n, centres.len() / self.d);
        let host = self.backend.with_stream(|stream| {
            let dev_c = self.upload_centres(stream, centres)?;
            let dev_out = stream
                .alloc_zeros::<f32>(n * c)
                .map_err(|e| cuda_error("distances", e))?;
            self.launch_distances(stream, &dev_c, c, metric, &dev_out)?;
            let host = download(stream, &dev_out, "copying the distances back")?;
            sync(stream, "the k-means distances kernel failed")?;
            Ok(host)
        })?;
        out[..n * c].copy_from_slice(&host);
        Ok(())
    }

    fn kmeans_plus_plus(
        &mut self,
        rows: &dyn Rows,
        k: usize,
        metric: Metric,
        first: usize,
        uniform: &mut dyn FnMut() -> f64,
    ) -> Result<Vec<f32>> {
        if on_device_requested() {
            self.device_kmeans_plus_plus(rows, k, metric, first, uniform)
        } else {
            kmeans::kmeans_plus_plus(self, rows, k, metric, first, uniform)
        }
    }

    fn cluster_sums(&mut self, labels: &[u32], sums: &mut [f64], counts: &mut [u64]) -> Result<()> {
        let (n, d, k) = (self.n, self.d, counts.len());
        self.update_buffers(k)?;
        let backend = self.backend;
        let (host_sums, starts) = backend.with_stream(|stream| {
            stream
                .memcpy_htod(&labels[..n], &mut self.labels)
                .map_err(|e| cuda_error("uploading the labels", e))?;
            let (start, end) = self.launch_sums(stream)?;
            let u = self.update.as_ref().expect("allocated above");
            let host_sums = download(stream, &u.sums, "copying the sums back")?;
            let starts = download(stream, &u.starts, "copying the cluster sizes back")?;
            sync(stream, "the k-means update kernels failed")?;
            store_ms(&LAST_SUMS_MS, &start, &end);
            Ok((host_sums, starts))
        })?;
        sums[..k * d].copy_from_slice(&host_sums);
        sizes_from_starts(&starts, n, counts)
    }
}

/// Cluster sizes from the counting sort's cluster starts (k + 1), checking that all `n`
/// points were grouped (a label ≥ k is left out by the sort).
fn sizes_from_starts(starts: &[u32], n: usize, counts: &mut [u64]) -> Result<()> {
    let k = counts.len();
    if starts[k] as usize != n {
        return Err(Error::Internal(format!(
            "the k-means update grouped {} of {n} points: a label is not below {k}",
            starts[k]
        )));
    }
    for c in 0..k {
        counts[c] = (starts[c + 1] - starts[c]) as u64;
    }
    Ok(())
}

/// Chunking of the counting sort for `n` labels below `k`: (points per warp, a multiple of 32;
/// chunks). At least [`SORT_CHUNK`] points per warp, and at most [`SORT_CELLS`] cells in the
/// k × chunks count matrix unless one chunk already has more.
fn sort_chunks(n: usize, k: usize) -> (usize, usize) {
    let wanted = (n / SORT_CHUNK).min(SORT_CELLS / k).max(1);
    let chunk = n.div_ceil(wanted).max(1).next_multiple_of(32);
    (chunk, n.div_ceil(chunk).max(1))
}

/// The device buffers of the update step for one number of clusters, kept across the Lloyd
/// iterations of a k-means call.
struct UpdateBuffers {
    k: usize,
    chunk: usize,
    nchunks: usize,
    /// Tasks the sums kernel is launched for: at least n / SUM_CHUNK + k.
    max_tasks: usize,
    counts: CudaSlice<u32>,
    starts: CudaSlice<u32>,
    cluster_tasks: CudaSlice<u32>,
    task_begin: CudaSlice<u32>,
    task_end: CudaSlice<u32>,
    members: CudaSlice<u32>,
    partial: CudaSlice<f64>,
    sums: CudaSlice<f64>,
}

impl UpdateBuffers {
    fn new(stream: &Arc<CudaStream>, n: usize, k: usize, d: usize) -> Result<Self> {
        let (chunk, nchunks) = sort_chunks(n, k);
        let max_tasks = n / SUM_CHUNK + k;
        if n > u32::MAX as usize || k * nchunks > u32::MAX as usize || max_tasks > i32::MAX as usize
        {
            return Err(Error::invalid(format!(
                "{n} points in {k} clusters are too many for the CUDA k-means update"
            )));
        }
        let u32s = |len: usize, what: &str| {
            stream
                .alloc_zeros::<u32>(len.max(1))
                .map_err(|e| cuda_error(what, e))
        };
        let f64s = |len: usize, what: &str| {
            stream
                .alloc_zeros::<f64>(len.max(1))
                .map_err(|e| cuda_error(what, e))
        };
        Ok(UpdateBuffers {
            k,
            chunk,
            nchunks,
            max_tasks,
            counts: u32s(k * nchunks, "label counts")?,
            starts: u32s(k + 1, "cluster starts")?,
            cluster_tasks: u32s(k + 1, "cluster tasks")?,
            task_begin: u32s(max_tasks, "tasks")?,
            task_end: u32s(max_tasks, "tasks")?,
            members: u32s(n, "members")?,
            partial: f64s(max_tasks * d, "partial sums")?,
            sums: f64s(k * d, "sums")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_structs_have_the_c_layout() {
        assert_eq!(std::mem::size_of::<AssignParams>(), 88);
        assert_eq!(std::mem::size_of::<DistParams>(), 64);
        assert_eq!(std::mem::size_of::<SumsParams>(), 64);
        assert_eq!(std::mem::size_of::<ReduceParams>(), 32);
        assert_eq!(std::mem::size_of::<SortParams>(), 80);
        assert_eq!(std::mem::size_of::<ChangedParams>(), 32);
        assert_eq!(std::mem::size_of::<UpdateParams>(), 64);
        assert_eq!(std::mem::size_of::<SeedParams>(), 88);
    }

    #[test]
    fn the_counting_sort_chunks_cover_the_points_in_a_bounded_matrix() {
        for (n, k) in [
            (1, 1),
            (31, 3),
            (4096, 1),
            (4097, 7),
            (1_281_167, 2000),
            (1_281_167, 100_000),
            (10_000_000, 1_000_000),
            (5000, 5000),
        ] {
            let (chunk, nchunks) = sort_chunks(n, k);
            assert!(chunk.is_multiple_of(32) && chunk >= 32, "{n} {k}: {chunk}");
            assert!(
                nchunks * chunk >= n && (nchunks - 1) * chunk < n.max(1),
                "{n} {k}"
            );
            assert!(
                chunk >= SORT_CHUNK.min(n.next_multiple_of(32)),
                "{n} {k}: {chunk}"
            );
            assert!(k * nchunks <= SORT_CELLS.max(k), "{n} {k}: {nchunks}");
        }
        assert_eq!(sort_chunks(1_281_167, 2000), (4128, 311));
    }

    #[test]
    fn plans_fit_the_shared_memory_of_an_h100() {
        let h100 = 227 * 1024;
        let p = plan(Dtype::F16, 512, h100).unwrap();
        assert_eq!((p.name(), p.bm, p.dp, p.bn), ("32x4", 128, 512, 64));
        let p = plan(Dtype::F32, 512, h100).unwrap();
        assert_eq!(p.bm, 64);
        assert!(p.smem <= h100);
        let p = plan(Dtype::F16, 768, h100).unwrap();
        assert!(p.smem <= h100, "{p:?}");
        assert_eq!(plan(Dtype::Bf16, 100, h100).unwrap().dp, 128);
        let e = plan(Dtype::F32, 8192, h100).unwrap_err().to_string();
        assert!(e.contains("too wide"), "{e}");
    }

    #[test]
    fn the_embedded_ptx_has_every_kernel_the_wrappers_load() {
        let Some(ptx) = super::super::kernels::KMEANS_PTX else {
            return;
        };
        for dt in DTYPES {
            for (_, _, cfg) in CONFIGS {
                let name = format!(".entry laic_km_assign_{dt}_{cfg}(");
                assert!(ptx.contains(&name), "{name}");
            }
            for what in ["distances", "sums", "pack"] {
                let name = format!(".entry laic_km_{what}_{dt}(");
                assert!(ptx.contains(&name), "{name}");
            }
        }
        assert!(ptx.contains(".entry laic_km_pack_f32_as_f16("));
        assert!(ptx.contains(".entry laic_km_sums_reduce("));
        for what in [
            "sort_count",
            "sort_scan",
            "sort_scatter",
            "changed",
            "update",
        ] {
            let name = format!(".entry laic_km_{what}(");
            assert!(ptx.contains(&name), "{name}");
        }
        // The sm_90a cubin of kmeans_wgmma.cu: exactly the kernels `load` asks for.
        let cubin = super::super::kernels::KMEANS_WGMMA_SM90A.expect("built with the PTX");
        let has = |name: &str| cubin.windows(name.len()).any(|w| w == name.as_bytes());
        for (di, dt) in DTYPES.iter().enumerate() {
            for (groups, cfg) in WG_CONFIGS {
                let name = format!("laic_km_wg_assign_{dt}_{cfg}\0");
                assert_eq!(
                    has(&name),
                    wg_stages(DTYPE_OF[di], groups).is_some(),
                    "{name}"
                );
            }
        }
        assert!(has(".nv.info.laic_km_wg_assign_f16_wg2"));
    }

    #[test]
    fn wgmma_plans_fit_the_shared_memory_of_an_h100() {
        let h100 = 227 * 1024;
        let all = [true; WG_CONFIGS.len()];
        let name = |p: Option<Plan>| p.map(|p| p.name());
        let p = wg_plan(Dtype::F16, 512, h100, &all).unwrap();
        assert_eq!(
            (p.name(), p.bm, p.threads, p.bn, p.dp),
            ("wg2", 128, 256, 128, 512)
        );
        // 1 KB slack, 128 KB of points, 4 stages of 16 KB, 512 B of winners.
        assert_eq!(p.smem, 1024 + 131_072 + 65_536 + 512);
        // bf16: hi + lo centres, 3 stages to fit two warpgroups at D = 512.
        let p = wg_plan(Dtype::Bf16, 512, h100, &all).unwrap();
        assert_eq!((p.name(), p.smem), ("wg2", 1024 + 131_072 + 98_304 + 512));
        assert!(p.smem <= h100);
        // f32: two point planes, one warpgroup.
        let p = wg_plan(Dtype::F32, 512, h100, &all).unwrap();
        assert_eq!((p.name(), p.bm, p.threads), ("wg1", 64, 128));
        assert!(p.smem <= h100, "{p:?}");
        assert_eq!(name(wg_plan(Dtype::F16, 768, h100, &all)), Some("wg1"));
        assert_eq!(name(wg_plan(Dtype::Bf16, 768, h100, &all)), Some("wg1"));
        assert_eq!(name(wg_plan(Dtype::F16, 1024, h100, &all)), Some("wg1"));
        // Too wide for shared memory, or no kernel loaded: the mma.sync kernel's plan.
        assert_eq!(name(wg_plan(Dtype::F16, 2048, h100, &all)), None);
        assert_eq!(name(wg_plan(Dtype::F32, 768, h100, &all)), None);
        assert_eq!(
            name(wg_plan(Dtype::F16, 512, h100, &[false, true])),
            Some("wg1")
        );
        assert_eq!(name(wg_plan(Dtype::F16, 512, h100, &[false; 2])), None);
        // Odd widths pad up to the chunk; the centre tile is the wgmma n.
        let p = wg_plan(Dtype::Bf16, 100, h100, &all).unwrap();
        assert_eq!((p.dp, p.bn), (128, 128));
        // Every block shape lies inside the packed rows.
        for (groups, _) in WG_CONFIGS {
            assert!(ROW_MULTIPLE.is_multiple_of(64 * groups));
        }
    }

    #[test]
    fn the_wgmma_kernel_is_used_unless_switched_off() {
        // The environment variable is not set in `cargo test` (CI): the kernel is on; a
        // thread-local switch can still turn it off.
        let env_off = std::env::var(WGMMA_ENV).as_deref() == Ok("0");
        assert_eq!(wgmma_requested(), !env_off);
        set_kmeans_wgmma_disabled(true);
        assert!(!wgmma_requested());
        set_kmeans_wgmma_disabled(false);
        assert_eq!(wgmma_requested(), !env_off);
        assert_eq!(last_kmeans_assign_kernel(), None);
    }
}
