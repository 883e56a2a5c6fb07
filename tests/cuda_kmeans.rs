//! CUDA k-means and retrieval against the CPU backend (issue 8): the assignment, distance and
//! update-step primitives on fresh random inputs of awkward sizes (N, K, D not multiples of
//! the tiles; K = 1; D ∈ {64, 512, 768}), whole k-means runs from the same seeds, retrieval,
//! the pipeline's steps on data kept on the device against the same steps on host copies, and
//! the pipeline on real CLIP features (Oxford-IIIT Pets, DTD, UCF101) against the CPU's.
//!
//! The assignment parity test runs twice, with the mma.sync kernel and with the default one
//! (the wgmma kernel on an H100/H200; kernels/kmeans_wgmma.cu), and every other test uses the
//! default; `LAIC_CUDA_KMEANS_WGMMA=0` keeps every test on mma.sync. Every other k-means run
//! seeds and iterates on the device unless `LAIC_CUDA_KMEANS_DEVICE=0`; the device seeding and
//! Lloyd loop are compared with the host loops in any case. Retrieval runs the wgmma kernel on
//! an H100/H200 unless `LAIC_CUDA_RETRIEVE_WGMMA=0`.
//!
//! Runs where a CUDA device is usable; elsewhere each test prints "SKIPPED: no CUDA device"
//! and returns, or fails when `LAIC_REQUIRE_CUDA=1` (set by `scripts/gpu-check.sh`). Every
//! test prints its largest error and, on failure, the first mismatch, so that one run's log
//! on the GPU machine is enough to debug from.

use half::{bf16, f16};
use laic::backend::cpu::CpuBackend;
use laic::backend::cuda::{
    last_kmeans_assign_kernel, set_kmeans_on_device, set_kmeans_wgmma_disabled,
};
use laic::backend::{Backend, PipelineStages};
use laic::gradnorm::{GradNormOptions, GradNormScores, Order, select_nouns};
use laic::kmeans::{AssignOut, HostRows, KMeansResult};
use laic::pipeline::{HostStages, PipelineInput};
use laic::retrieve::RetrieveOut;
use laic::{
    BackendKind, Context, Dtype, Error, KMeansOptions, MatrixData, MatrixRef, Metric, Progress,
    RetrieveOptions, Stage,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::io::Write;

/// A CUDA context, or `None` after printing why the calling test is skipped.
fn cuda_context(test: &str) -> Option<Context> {
    match Context::new(BackendKind::Cuda) {
        Ok(ctx) => Some(ctx),
        Err(Error::NoDevice(why)) => {
            if std::env::var("LAIC_REQUIRE_CUDA").as_deref() == Ok("1") {
                panic!("{test}: LAIC_REQUIRE_CUDA=1 but no CUDA device: {why}");
            }
            // Straight to the process's stderr: libtest captures the output of passing tests.
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED: no CUDA device ({test}: {why})"
            );
            None
        }
        Err(e) => panic!("{test}: unexpected error opening CUDA: {e}"),
    }
}

/// Prints a line to the process's stderr (seen in gpu-check logs even for passing tests).
fn report(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A seeded generator; the seed is printed so a failure can be replayed with LAIC_TEST_SEED.
fn rng(test: &str) -> StdRng {
    let seed = std::env::var("LAIC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    report(&format!("{test}: seed {seed}"));
    StdRng::seed_from_u64(seed)
}

fn normal_rows(rng: &mut StdRng, rows: usize, d: usize, scale: f32) -> Vec<f32> {
    (0..rows * d)
        .map(|_| {
            let v: f32 = StandardNormal.sample(rng);
            scale * v
        })
        .collect()
}

fn unit_rows(mut v: Vec<f32>, d: usize) -> Vec<f32> {
    for row in v.chunks_exact_mut(d) {
        let ss: f64 = row.iter().map(|&x| (x as f64) * (x as f64)).sum();
        let inv = (1.0 / ss.sqrt()) as f32;
        row.iter_mut().for_each(|x| *x *= inv);
    }
    v
}

/// Storage of a matrix in one dtype (values rounded once from f32).
enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

impl Store {
    fn new(v: &[f32], dtype: Dtype) -> Self {
        match dtype {
            Dtype::F32 => Store::F32(v.to_vec()),
            Dtype::F16 => Store::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            Dtype::Bf16 => Store::Bf16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }

    fn view(&self, rows: usize, cols: usize) -> MatrixRef<'_> {
        let data = match self {
            Store::F32(v) => MatrixData::F32(v),
            Store::F16(v) => MatrixData::F16(v),
            Store::Bf16(v) => MatrixData::Bf16(v),
        };
        MatrixRef::new(data, rows, cols, cols).unwrap()
    }
}

const DTYPES: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::Bf16];

/// f64 distance of row `x` to centre `c` under `metric`.
fn dist64(x: &[f32], c: &[f32], metric: Metric) -> f64 {
    match metric {
        Metric::Euclidean => x
            .iter()
            .zip(c)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum(),
        Metric::Spherical => (1.0
            - x.iter()
                .zip(c)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>())
        .max(0.0),
    }
}

fn sq_norm(x: &[f32]) -> f64 {
    x.iter().map(|&v| (v as f64) * (v as f64)).sum()
}

#[test]
fn assignment_matches_the_cpu_on_awkward_sizes() {
    let Some(ctx) = cuda_context("assignment") else {
        return;
    };
    let mut rng = rng("assignment");
    if std::env::var("LAIC_CUDA_KMEANS_WGMMA").as_deref() == Ok("0") {
        assignment_parity(&ctx, &mut rng, "mma.sync");
        return;
    }
    set_kmeans_wgmma_disabled(true);
    let mma = assignment_parity(&ctx, &mut rng, "mma.sync");
    set_kmeans_wgmma_disabled(false);
    let wg = assignment_parity(&ctx, &mut rng, "wgmma");
    assert_eq!(mma, 0, "the mma.sync pass ran a wgmma kernel");
    let device = ctx.backend().as_cuda().map(|c| c.device_name().to_string());
    let hopper = device
        .as_deref()
        .is_some_and(|n| n.contains("H100") || n.contains("H200"));
    report(&format!(
        "assign: the wgmma pass ran a wgmma kernel in {wg} cases ({device:?})"
    ));
    if hopper {
        assert!(
            wg > 0,
            "the wgmma kernel is on by default on {device:?} but none ran"
        );
    }
}

/// The assignment of every case against the CPU's; returns how many cases ran a wgmma kernel.
fn assignment_parity(ctx: &Context, rng: &mut StdRng, pass: &str) -> usize {
    let rng = &mut *rng;
    let gpu = ctx.backend();
    let cpu = CpuBackend;
    let mut wgmma_cases = 0;
    // (N, K, D): nothing a multiple of the 128-row / 64-centre / 64-column tiles, K = 1,
    // K crossing several centre tiles, D ∈ {64, 512, 768} and odd widths.
    let cases = [
        (1000, 1, 64),
        (777, 67, 512),
        (301, 130, 768),
        (1531, 300, 100),
        (129, 2, 33),
    ];
    for (n, k, d) in cases {
        for metric in [Metric::Euclidean, Metric::Spherical] {
            for dtype in DTYPES {
                // Points around the centres, so that labels are meaningful but not trivial.
                let mut c = normal_rows(rng, k, d, 1.0);
                let mut x = normal_rows(rng, n, d, 0.6);
                for i in 0..n {
                    let j = rng.random_range(0..k);
                    for t in 0..d {
                        x[i * d + t] += c[j * d + t];
                    }
                }
                if metric == Metric::Spherical {
                    x = unit_rows(x, d);
                    c = unit_rows(c, d);
                }
                let store = Store::new(&x, dtype);
                let xm = store.view(n, d);
                let xf = xm.to_f32_vec();
                let mut gl = vec![u32::MAX; n + 3];
                let mut gd = vec![f32::NAN; n + 3];
                gpu.kmeans_assign(
                    &xm,
                    &c,
                    metric,
                    AssignOut {
                        labels: &mut gl,
                        distances: &mut gd,
                    },
                )
                .unwrap();
                let kernel = last_kmeans_assign_kernel().unwrap_or("none");
                wgmma_cases += kernel.starts_with("wg") as usize;
                let mut cl = vec![0u32; n];
                let mut cd = vec![0f32; n];
                cpu.kmeans_assign(
                    &xm,
                    &c,
                    metric,
                    AssignOut {
                        labels: &mut cl,
                        distances: &mut cd,
                    },
                )
                .unwrap();
                assert!(
                    gl[n..].iter().all(|&l| l == u32::MAX) && gd[n..].iter().all(|v| v.is_nan()),
                    "wrote past N"
                );
                let (mut mismatches, mut max_err, mut first) = (0usize, 0f64, None);
                for i in 0..n {
                    let row = &xf[i * d..(i + 1) * d];
                    assert!(
                        gl[i] < k as u32,
                        "{dtype:?} {metric:?} n={n} k={k} d={d}: row {i} label {} unwritten",
                        gl[i]
                    );
                    assert!(gd[i].is_finite(), "row {i} distance unwritten");
                    let g = gl[i] as usize;
                    let dg = dist64(row, &c[g * d..(g + 1) * d], metric);
                    let scale = match metric {
                        Metric::Euclidean => sq_norm(row) + sq_norm(&c[g * d..(g + 1) * d]),
                        Metric::Spherical => 1.0,
                    };
                    let err = (gd[i] as f64 - dg).abs() / (dg + 1e-2 * scale);
                    max_err = max_err.max(err);
                    if gl[i] != cl[i] {
                        let cc = cl[i] as usize;
                        let dc = dist64(row, &c[cc * d..(cc + 1) * d], metric);
                        // A near tie: both centres within 1e-4 of the scale of each other.
                        if (dg - dc).abs() > 1e-4 * scale.max(1e-12) {
                            mismatches += 1;
                            first.get_or_insert(format!(
                                "row {i}: gpu {g} ({dg:.7}) cpu {cc} ({dc:.7})"
                            ));
                        }
                    }
                }
                report(&format!(
                    "assign [{pass}: {kernel}] {dtype:?} {metric:?} n={n} k={k} d={d}: max relative distance error {max_err:.2e}, label mismatches beyond ties {mismatches}"
                ));
                assert_eq!(
                    mismatches,
                    0,
                    "[{pass}: {kernel}] {dtype:?} {metric:?} n={n} k={k} d={d}: first {}",
                    first.unwrap_or_default()
                );
                assert!(
                    max_err < 1e-4,
                    "[{pass}: {kernel}] {dtype:?} {metric:?} n={n} k={k} d={d}: distance error {max_err:e}"
                );
            }
        }
    }
    wgmma_cases
}

#[test]
fn distances_and_cluster_sums_match_the_cpu() {
    let Some(ctx) = cuda_context("distances_sums") else {
        return;
    };
    let mut rng = rng("distances_sums");
    let gpu = ctx.backend();
    let cpu = CpuBackend;
    // 20,011 points: several chunks of the device counting sort (at least 4096 points each).
    for (n, c, d) in [
        (517, 5, 64),
        (300, 20, 512),
        (1003, 1, 768),
        (20_011, 37, 96),
    ] {
        for dtype in DTYPES {
            for metric in [Metric::Euclidean, Metric::Spherical] {
                let mut x = normal_rows(&mut rng, n, d, 1.0);
                let mut cen = normal_rows(&mut rng, c, d, 1.0);
                if metric == Metric::Spherical {
                    x = unit_rows(x, d);
                    cen = unit_rows(cen, d);
                }
                let store = Store::new(&x, dtype);
                let xm = store.view(n, d);
                let xf = xm.to_f32_vec();
                let mut g = vec![f32::NAN; n * c];
                gpu.distances(&xm, &cen, metric, &mut g).unwrap();
                let mut max_err = 0f64;
                for i in 0..n {
                    let row = &xf[i * d..(i + 1) * d];
                    for j in 0..c {
                        let want = dist64(row, &cen[j * d..(j + 1) * d], metric);
                        let scale = match metric {
                            Metric::Euclidean => sq_norm(row) + sq_norm(&cen[j * d..(j + 1) * d]),
                            Metric::Spherical => 1.0,
                        };
                        let got = g[i * c + j] as f64;
                        assert!(got.is_finite(), "({i}, {j}) unwritten");
                        let err = (got - want).abs() / (want + 1e-2 * scale);
                        max_err = max_err.max(err);
                        assert!(
                            err < 1e-4,
                            "{dtype:?} {metric:?} n={n} c={c} d={d}: ({i}, {j}) {got} vs {want}"
                        );
                    }
                }
                report(&format!(
                    "distances {dtype:?} {metric:?} n={n} c={c} d={d}: max relative error {max_err:.2e}"
                ));
            }
            // Update-step sums, with an empty cluster and one large one.
            let k = c + 2;
            let x = normal_rows(&mut rng, n, d, 1.0);
            let store = Store::new(&x, dtype);
            let xm = store.view(n, d);
            let labels: Vec<u32> = (0..n)
                .map(|i| {
                    if i % 3 == 0 {
                        0
                    } else {
                        rng.random_range(2..k as u32)
                    }
                })
                .collect();
            let (mut gs, mut gc) = (vec![f64::NAN; k * d], vec![u64::MAX; k]);
            let (mut cs, mut cc) = (vec![0f64; k * d], vec![0u64; k]);
            gpu.cluster_sums(&xm, &labels, &mut gs, &mut gc).unwrap();
            cpu.cluster_sums(&xm, &labels, &mut cs, &mut cc).unwrap();
            assert_eq!(gc, cc, "{dtype:?}: counts");
            assert_eq!(gc[1], 0);
            // f16/bf16 points enter exactly; f32 points through bf16 hi + lo (2^-17 relative).
            let tol = if dtype == Dtype::F32 { 1e-5 } else { 1e-12 };
            let xf = xm.to_f32_vec();
            let mut abs_sums = vec![0f64; k * d];
            for (i, &l) in labels.iter().enumerate() {
                for t in 0..d {
                    abs_sums[l as usize * d + t] += (xf[i * d + t] as f64).abs();
                }
            }
            let mut max_err = 0f64;
            for e in 0..k * d {
                assert!(gs[e].is_finite(), "sum {e} unwritten");
                let err = (gs[e] - cs[e]).abs() / (abs_sums[e] + 1e-30);
                max_err = max_err.max(if abs_sums[e] == 0.0 { gs[e].abs() } else { err });
            }
            report(&format!(
                "cluster sums {dtype:?} n={n} k={k} d={d}: max relative error {max_err:.2e}"
            ));
            assert!(max_err <= tol, "{dtype:?} n={n} k={k} d={d}: {max_err:e}");
            // A label out of range is an error, not a write out of bounds.
            let mut bad = labels.clone();
            bad[n / 2] = k as u32;
            let e = gpu.cluster_sums(&xm, &bad, &mut gs, &mut gc).unwrap_err();
            assert!(e.to_string().contains("not below"), "{e}");
        }
    }
}

/// `k` planted clusters of `per` points each, interleaved, in `d` dims.
fn planted(rng: &mut StdRng, k: usize, per: usize, d: usize, spread: f32) -> Vec<f32> {
    let centres = normal_rows(rng, k, d, 1.0);
    let mut x = Vec::with_capacity(k * per * d);
    for _ in 0..per {
        for c in 0..k {
            for t in 0..d {
                let v: f32 = StandardNormal.sample(rng);
                x.push(centres[c * d + t] + spread * v);
            }
        }
    }
    x
}

#[test]
fn kmeans_runs_reach_the_cpu_objective_from_the_same_seeds() {
    let Some(ctx) = cuda_context("kmeans_runs") else {
        return;
    };
    let mut rng = rng("kmeans_runs");
    let cpu = Context::cpu();
    for (k, per, d) in [(10, 211, 64), (7, 97, 512), (1, 50, 768)] {
        for metric in [Metric::Euclidean, Metric::Spherical] {
            for dtype in DTYPES {
                let x = planted(&mut rng, k, per, d, 0.3);
                let n = k * per;
                let store = Store::new(&x, dtype);
                let xm = store.view(n, d);
                let opts = KMeansOptions {
                    n_clusters: k.max(2).min(n),
                    metric,
                    n_redo: 2,
                    seed: rng.random(),
                    ..Default::default()
                };
                let t0 = std::time::Instant::now();
                let g = ctx.kmeans(&xm, &opts).unwrap();
                let tg = t0.elapsed().as_secs_f64();
                let c = cpu.kmeans(&xm, &opts).unwrap();
                let rel = (g.objective - c.objective).abs() / c.objective.abs().max(1e-12);
                let agree = g
                    .labels
                    .iter()
                    .zip(&c.labels)
                    .filter(|(a, b)| a == b)
                    .count();
                report(&format!(
                    "kmeans {dtype:?} {metric:?} n={n} k={} d={d}: objective gpu {:.6} cpu {:.6} (relative difference {rel:.2e}), iterations {} / {}, labels equal {agree}/{n}, gpu {tg:.2} s",
                    opts.n_clusters, g.objective, c.objective, g.n_iter, c.n_iter
                ));
                assert!(
                    rel <= 1e-4,
                    "{dtype:?} {metric:?} n={n} d={d}: objective {} vs {}",
                    g.objective,
                    c.objective
                );
                assert_eq!(g.labels.len(), n);
                assert!(g.labels.iter().all(|&l| (l as usize) < opts.n_clusters));
            }
        }
    }
}

#[test]
fn device_lloyd_iterations_follow_the_host_loop() {
    let Some(ctx) = cuda_context("device_lloyd") else {
        return;
    };
    let mut rng = rng("device_lloyd");
    // 9,001 points: several chunks of the device counting sort.
    let (k, per, d) = (23, 391, 96);
    let n = k * per;
    for metric in [Metric::Euclidean, Metric::Spherical] {
        for dtype in DTYPES {
            let mut x = planted(&mut rng, k, per, d, 0.6);
            if metric == Metric::Spherical {
                x = unit_rows(x, d);
            }
            let store = Store::new(&x, dtype);
            let xm = store.view(n, d);
            let data = xm.to_f32_vec();
            // Seeds: k - 1 random points and a copy of the first, which loses every tie and
            // so starts empty (the device loop then runs that update on the host).
            let mut seeds = Vec::with_capacity(k * d);
            for _ in 0..k - 1 {
                let i = rng.random_range(0..n);
                seeds.extend_from_slice(&data[i * d..(i + 1) * d]);
            }
            seeds.extend_from_within(..d);
            let opts = KMeansOptions {
                n_clusters: k,
                metric,
                max_iter: 40,
                ..Default::default()
            };
            let run = |device: bool| {
                set_kmeans_on_device(Some(device));
                let mut steps = ctx.backend().kmeans_steps(xm).unwrap();
                let r = steps.lloyd(
                    &HostRows::new(&data, d),
                    seeds.clone(),
                    &opts,
                    1e-9,
                    &|_| Ok(()),
                );
                set_kmeans_on_device(None);
                r.unwrap()
            };
            let host = run(false);
            let dev = run(true);
            let same_centres = host
                .centres
                .iter()
                .zip(&dev.centres)
                .filter(|(a, b)| a.to_bits() == b.to_bits())
                .count();
            report(&format!(
                "device lloyd {dtype:?} {metric:?} n={n} k={k} d={d}: iterations {} / {} (host), objective {:.6} / {:.6}, centre values equal {same_centres}/{}",
                dev.n_iter,
                host.n_iter,
                dev.objective,
                host.objective,
                k * d
            ));
            assert_eq!(dev.n_iter, host.n_iter, "{dtype:?} {metric:?}");
            assert_eq!(dev.labels, host.labels, "{dtype:?} {metric:?}");
            assert_eq!(same_centres, k * d, "{dtype:?} {metric:?}");
            assert_eq!(dev.objective, host.objective, "{dtype:?} {metric:?}");
        }
    }
}

#[test]
fn device_seeding_draws_the_host_seeds() {
    let Some(ctx) = cuda_context("device_seeding") else {
        return;
    };
    let mut rng = rng("device_seeding");
    // 20,011 points: 79 blocks of the seeding sums.
    for (n, k, d) in [(20_011, 50, 64), (777, 9, 512), (300, 1, 96)] {
        for metric in [Metric::Euclidean, Metric::Spherical] {
            for dtype in DTYPES {
                let mut x = normal_rows(&mut rng, n, d, 1.0);
                if metric == Metric::Spherical {
                    x = unit_rows(x, d);
                }
                let store = Store::new(&x, dtype);
                let xm = store.view(n, d);
                let data = xm.to_f32_vec();
                let seed: u64 = rng.random();
                let run = |device: bool| {
                    set_kmeans_on_device(Some(device));
                    let mut draws = StdRng::seed_from_u64(seed);
                    let first = draws.random_range(0..n);
                    let mut steps = ctx.backend().kmeans_steps(xm).unwrap();
                    let r = steps.kmeans_plus_plus(
                        &HostRows::new(&data, d),
                        k,
                        metric,
                        first,
                        &mut || draws.random::<f64>(),
                    );
                    set_kmeans_on_device(None);
                    r.unwrap()
                };
                let host = run(false);
                let dev = run(true);
                let same_rows = (0..k)
                    .filter(|&c| host[c * d..(c + 1) * d] == dev[c * d..(c + 1) * d])
                    .count();
                report(&format!(
                    "device seeding {dtype:?} {metric:?} n={n} k={k} d={d}: {same_rows}/{k} seeds as the host's"
                ));
                assert_eq!(dev.len(), k * d);
                assert_eq!(same_rows, k, "{dtype:?} {metric:?} n={n} k={k}");
            }
        }
    }
}

/// Every row of `v` (rows of `d`) times 2^u, u uniform in [-2, 2): norms up to 16× apart.
fn spread_norms(rng: &mut StdRng, mut v: Vec<f32>, d: usize) -> Vec<f32> {
    for row in v.chunks_exact_mut(d) {
        let s = 2f32.powf(rng.random_range(-2.0f32..2.0));
        row.iter_mut().for_each(|x| *x *= s);
    }
    v
}

/// One retrieval case on the GPU and the CPU: `None` when it agrees, else what went wrong.
/// `wgmma`: the wgmma kernels are on (and loaded), so every case they take must run on them.
fn retrieval_case(
    gpu: &dyn Backend,
    wgmma: bool,
    rng: &mut StdRng,
    (n, m, d): (usize, usize, usize),
    dtype: Dtype,
    (tau, normalize, top, spread): (f32, bool, usize, bool),
) -> Option<String> {
    let top_n = top.min(m);
    let mut x = normal_rows(rng, n, d, 1.0);
    let mut t = normal_rows(rng, m, d, 1.0);
    if !normalize {
        // Raw rows of norm ~1 (as features that are almost normalised).
        x = unit_rows(x, d);
        t = unit_rows(t, d);
        x.iter_mut().for_each(|v| *v *= 1.1);
        t.iter_mut().for_each(|v| *v *= 0.9);
    }
    if spread {
        x = spread_norms(rng, x, d);
        t = spread_norms(rng, t, d);
    }
    let (xs, ts) = (Store::new(&x, dtype), Store::new(&t, dtype));
    let (xm, tm) = (xs.view(n, d), ts.view(m, d));
    let opts = RetrieveOptions {
        tau,
        normalize,
        top_n,
    };
    let mut gf = vec![f32::NAN; n * d + 5];
    let mut gi = vec![u32::MAX; n * top_n + 2];
    let mut gw = vec![f32::NAN; n * top_n + 2];
    gpu.retrieve(
        &xm,
        &tm,
        &opts,
        RetrieveOut {
            features: &mut gf,
            top_indices: &mut gi,
            top_weights: &mut gw,
        },
    )
    .unwrap();
    let fallback = laic::backend::cuda::last_retrieve_kernel_ms().is_none();
    let kernel = if fallback {
        "cpu"
    } else {
        laic::backend::cuda::last_retrieve_kernel().unwrap_or("?")
    };
    let mut cf = vec![0f32; n * d];
    let mut ci = vec![0u32; n * top_n];
    let mut cw = vec![0f32; n * top_n];
    CpuBackend
        .retrieve(
            &xm,
            &tm,
            &opts,
            RetrieveOut {
                features: &mut cf,
                top_indices: &mut ci,
                top_weights: &mut cw,
            },
        )
        .unwrap();
    let case = format!(
        "retrieve {dtype:?} n={n} m={m} d={d} tau={tau} normalize={normalize} spread_norms={spread} top_n={top_n}"
    );
    if !gf[n * d..].iter().all(|v| v.is_nan()) {
        return Some(format!("{case}: wrote past N×D"));
    }
    if !gi[n * top_n..].iter().all(|&v| v == u32::MAX) {
        return Some(format!("{case}: wrote past N×top_n"));
    }
    let (mut max_err, mut worst) = (0f64, String::new());
    for i in 0..n {
        let (g, c) = (&gf[i * d..(i + 1) * d], &cf[i * d..(i + 1) * d]);
        if !g.iter().all(|v| v.is_finite()) {
            return Some(format!("{case}: row {i} unwritten or not finite"));
        }
        // Rows are unit vectors: the L2 distance is the relative error.
        let e = g
            .iter()
            .zip(c)
            .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        if e > max_err {
            max_err = e;
            worst = format!(
                "row {i} (block row {}): gpu {:?} cpu {:?}",
                i % 64,
                &g[..4.min(d)],
                &c[..4.min(d)]
            );
        }
    }
    let tol = if dtype == Dtype::F32 { 1e-4 } else { 2e-3 };
    // Top nouns: the same weight at every rank; the same noun unless the weights of the two
    // nouns are within the tolerance of each other (a near tie).
    let (mut max_w, mut swapped, mut top_first) = (0f64, 0usize, None);
    for e in 0..n * top_n {
        if !(gi[e] < m as u32 && gw[e].is_finite()) {
            return Some(format!("{case}: top {e} unwritten"));
        }
        let dw = (gw[e] as f64 - cw[e] as f64).abs();
        max_w = max_w.max(dw);
        if gi[e] != ci[e] {
            swapped += 1;
        }
        if dw > tol && top_first.is_none() {
            top_first = Some(format!(
                "image {} rank {}: gpu noun {} weight {} cpu noun {} weight {}",
                e / top_n,
                e % top_n,
                gi[e],
                gw[e],
                ci[e],
                cw[e]
            ));
        }
    }
    report(&format!(
        "{case} [{kernel}]: max relative error {max_err:.2e}, top weights max error {max_w:.2e}, top nouns swapped (near ties) {swapped}{}",
        if fallback {
            " (CPU fallback: no GPU kernel ran)"
        } else {
            ""
        }
    ));
    // Every case the kernels support must run on them: f32 rows wider than 512 are the only
    // CPU fallback here.
    if fallback && !(dtype == Dtype::F32 && d > 512) {
        return Some(format!(
            "{case}: ran on the CPU although a GPU kernel takes it"
        ));
    }
    // The wgmma kernels take f16 and bf16 rows of 129..=512 columns (retrieve.rs `wg_plan`).
    if wgmma && dtype != Dtype::F32 && d > 128 && d <= 512 && !kernel.starts_with("wg") {
        return Some(format!(
            "{case}: ran {kernel} although the wgmma kernel is on"
        ));
    }
    if max_err > tol {
        return Some(format!(
            "{case}: max relative error {max_err:e} > {tol:e}; worst {worst}"
        ));
    }
    if max_w > tol {
        return Some(format!(
            "{case}: top weights {max_w:e} > {tol:e}; first {}",
            top_first.unwrap_or_default()
        ));
    }
    None
}

#[test]
fn wgmma_operand_layouts_read_as_the_emulation_reads_them() {
    let Some(ctx) = cuda_context("wgmma probe") else {
        return;
    };
    let cuda = ctx.backend().as_cuda().expect("a CUDA context");
    let Some(probes) = cuda.wgmma_layout_probe().unwrap() else {
        report(&format!(
            "wgmma probe: not run, no wgmma kernels on {:?}",
            cuda.device_name()
        ));
        return;
    };
    for p in &probes {
        report(&format!(
            "wgmma probe: {}: {} of 8192 elements differ{}",
            p.form,
            p.mismatches,
            p.first
                .as_deref()
                .map(|f| format!(", first {f}"))
                .unwrap_or_default()
        ));
    }
    assert!(
        probes.iter().all(|p| p.mismatches == 0),
        "the wgmma operand layouts differ from the emulation's: {probes:?}"
    );
}

#[test]
fn retrieval_matches_the_cpu() {
    let Some(ctx) = cuda_context("retrieval") else {
        return;
    };
    let mut rng = rng("retrieval");
    // On an H100/H200, unless LAIC_CUDA_RETRIEVE_WGMMA=0, the f16 and bf16 cases of 129..=512
    // columns run the wgmma kernel (retrieve_wgmma.cu), the rest the mma.sync one.
    let device = ctx.backend().as_cuda().map(|c| c.device_name().to_string());
    let hopper = device
        .as_deref()
        .is_some_and(|n| n.contains("H100") || n.contains("H200"));
    let wgmma = hopper && std::env::var("LAIC_CUDA_RETRIEVE_WGMMA").as_deref() != Ok("0");
    report(&format!("retrieve: wgmma kernels on: {wgmma} ({device:?})"));
    // (N, M, D): N and M not multiples of the 64-image blocks and 32- or 64-noun tiles; M = 33
    // puts one noun in the last tile and N = 70 six images in the last block; one noun; D ∈
    // {64, 128, 300, 512, 768} (f32 at 768 runs on the CPU; 300 packs to 512 on wgmma).
    let sizes = [
        (333, 1001, 64),
        (130, 517, 512),
        (77, 130, 300),
        (65, 300, 768),
        (1, 1, 64),
        (70, 33, 64),
        (129, 95, 128),
    ];
    // (τ, normalise, top_n, noun and image norms spread 16× apart). Spread norms with
    // normalisation are the sharp test of the weights: the kernel that summed the raw noun
    // rows (H200, 2026-11-27) was 4-16 % off with N(0, 1) rows and ~80 % off with these.
    let options = [
        (0.01f32, true, 0, false),
        (0.05, true, 3, false),
        (0.02, false, 8, false),
        (0.01, true, 0, true),
        (0.1, false, 2, true),
    ];
    // Every case runs and reports before the test fails, so one log shows them all.
    let mut failures = Vec::new();
    for size in sizes {
        for dtype in DTYPES {
            for opt in options {
                if let Some(f) = retrieval_case(ctx.backend(), wgmma, &mut rng, size, dtype, opt) {
                    report(&format!("FAILED: {f}"));
                    failures.push(f);
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} retrieval cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The CLIP ViT-B/32 feature sets the GPU pipeline test runs on: Oxford Pets from the bundled
/// data, DTD and UCF101 from `LAIC_FEATURES_DIR` (gpu-check.sh sets it to the copies that
/// scripts/build-gpu-bin.sh makes; a set missing there is an error) or
/// `../shared/data/clip-vit-b32` beside the checkout (skipped when absent).
fn clip_feature_sets() -> Vec<(&'static str, std::path::PathBuf)> {
    use laic::data::bundled_dir;
    // The executable may run from another checkout (gpu-check.sh on the GPU machine runs in
    // the repository root): LAIC_DATA_DIR, then the compile-time data/, then ./data.
    let bundled = std::env::var_os("LAIC_DATA_DIR")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain([bundled_dir().to_path_buf(), "data".into()])
        .find(|d| d.join("oxford_pets.safetensors").is_file())
        .expect("data/oxford_pets.safetensors (set LAIC_DATA_DIR)");
    let mut sets = vec![("oxford_pets", bundled.join("oxford_pets.safetensors"))];
    let required = std::env::var_os("LAIC_FEATURES_DIR").map(std::path::PathBuf::from);
    let dir = required.clone().unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/clip-vit-b32")
    });
    for name in ["dtd", "ucf101"] {
        let path = dir.join(format!("{name}.safetensors"));
        if path.is_file() {
            sets.push((name, path));
        } else if required.is_some() {
            panic!("LAIC_FEATURES_DIR has no {}", path.display());
        } else {
            report(&format!(
                "SKIPPED: pipeline on {name} (no {})",
                path.display()
            ));
        }
    }
    sets
}

/// The pipeline on real CLIP features, every filter, on CUDA (data on the device between the
/// steps) and on the CPU: NMI within 0.5 points (issue 8).
#[test]
fn the_pipeline_on_clip_features_matches_the_cpu_pipeline() {
    let Some(ctx) = cuda_context("pipeline_clip_features") else {
        return;
    };
    use laic::data::{load_feature_set, load_imagenet_nouns};
    use laic::eval::run_feature_set;
    use laic::pipeline::{Filter, PipelineOptions};
    let sets = clip_feature_sets();
    let nouns_dir = sets[0].1.parent().expect("a directory").to_path_buf();
    let nouns = load_imagenet_nouns(&nouns_dir).unwrap();
    let filters = [Filter::None, Filter::Tac, Filter::GradNorm];
    let opts = PipelineOptions::default();
    for (name, path) in sets {
        let set = load_feature_set(&path).unwrap();
        let t0 = std::time::Instant::now();
        let g = run_feature_set(&ctx, name, &set, &nouns, &filters, &opts).unwrap();
        let tg = t0.elapsed().as_secs_f64();
        let t0 = std::time::Instant::now();
        let c = run_feature_set(&Context::cpu(), name, &set, &nouns, &filters, &opts).unwrap();
        let tc = t0.elapsed().as_secs_f64();
        report(&format!("pipeline {name}: cuda {tg:.2} s, cpu {tc:.2} s"));
        for f in filters {
            let gr = g.iter().find(|r| r.filter == f).unwrap();
            let cr = c.iter().find(|r| r.filter == f).unwrap();
            let (gn, cn) = (gr.metrics.nmi * 100.0, cr.metrics.nmi * 100.0);
            report(&format!(
                "pipeline {name} {}: NMI cuda {gn:.2} cpu {cn:.2} (difference {:.2})",
                f.name(),
                (gn - cn).abs()
            ));
            assert!(
                (gn - cn).abs() <= 0.5,
                "{name} {}: NMI {gn:.2} on CUDA vs {cn:.2} on the CPU",
                f.name()
            );
        }
    }
}

/// The results of one pipeline run's steps.
#[derive(Debug, PartialEq)]
struct StepResults {
    centres: KMeansResult,
    scores: GradNormScores,
    selected: Vec<u32>,
    top: (Vec<u32>, Vec<f32>),
    clusters: KMeansResult,
}

/// One pipeline run's steps, as `laic::pipeline` calls them: the centres, the scores of the
/// nouns against them, the selection, retrieval over the selected nouns, the final k-means.
fn pipeline_steps(
    stages: &mut dyn PipelineStages,
    k_c: usize,
    k: usize,
    top_n: usize,
) -> StepResults {
    let progress = Progress::none();
    let centres = stages
        .centres(
            &KMeansOptions {
                n_clusters: k_c,
                metric: Metric::Spherical,
                n_redo: 2,
                ..Default::default()
            },
            &progress,
            Stage::Centres,
        )
        .unwrap();
    let scores = stages
        .scores(&centres.centres, &GradNormOptions::default())
        .unwrap();
    let selected =
        select_nouns(&scores.scores, &scores.assignment, k_c, 3, Order::Smallest).unwrap();
    let top = stages
        .retrieve(
            &selected,
            &RetrieveOptions {
                top_n,
                ..Default::default()
            },
        )
        .unwrap();
    let clusters = stages
        .cluster(
            &KMeansOptions {
                n_clusters: k,
                n_redo: 2,
                ..Default::default()
            },
            &progress,
            Stage::Clustering,
        )
        .unwrap();
    StepResults {
        centres,
        scores,
        selected,
        top,
        clusters,
    }
}

/// The CUDA backend's pipeline steps keep the images' unit rows, the nouns and the joined rows
/// on the device (`src/backend/cuda/pipeline.rs`); run on the same backend, the host steps
/// upload host copies for every call. Both use the same kernels on the same values, so every
/// result must be equal: the centres k-means (seeds and refills read from device rows, the
/// tolerance from device column sums), the scores, the retrieval (device gather of the
/// selected nouns, or the CPU while its kernel is gated), and the final k-means on `[x, t̃]`
/// joined on the device. Also the k-means of the images alone (no retrieval).
#[test]
fn pipeline_steps_on_device_data_give_the_host_steps_results() {
    let Some(ctx) = cuda_context("pipeline_steps") else {
        return;
    };
    let mut rng = rng("pipeline_steps");
    for (n, m, d, dtype) in [
        (1501, 803, 100, Dtype::F16),
        (700, 333, 64, Dtype::F32),
        (257, 130, 77, Dtype::Bf16),
    ] {
        let x = normal_rows(&mut rng, n, d, 1.0);
        let t = normal_rows(&mut rng, m, d, 3.0);
        let (xs, ts) = (Store::new(&x, dtype), Store::new(&t, dtype));
        let mut input = PipelineInput::new(xs.view(n, d));
        input.nouns = Some(ts.view(m, d));
        let (k_c, k, top_n) = (n / 20, 7, 5);
        let backend = ctx.backend();
        let dev = pipeline_steps(
            backend.pipeline_stages(&input).unwrap().as_mut(),
            k_c,
            k,
            top_n,
        );
        let host = pipeline_steps(&mut HostStages::new(backend, &input), k_c, k, top_n);
        report(&format!(
            "pipeline steps {dtype:?} n={n} m={m} d={d}: centres objective {:.6} / {:.6} (host), {} / {} nouns selected, clusters objective {:.6} / {:.6}",
            dev.centres.objective,
            host.centres.objective,
            dev.selected.len(),
            host.selected.len(),
            dev.clusters.objective,
            host.clusters.objective
        ));
        assert_eq!(dev.centres, host.centres, "centres k-means, {dtype:?}");
        assert_eq!(dev.scores, host.scores, "scores, {dtype:?}");
        assert_eq!(dev.selected, host.selected, "selection, {dtype:?}");
        assert_eq!(dev.top, host.top, "top nouns, {dtype:?}");
        assert_eq!(dev.clusters, host.clusters, "final k-means, {dtype:?}");
        // The images alone (the pipeline without a noun filter).
        let opts = KMeansOptions {
            n_clusters: k,
            n_redo: 2,
            ..Default::default()
        };
        let progress = Progress::none();
        let dev = backend
            .pipeline_stages(&input)
            .unwrap()
            .cluster(&opts, &progress, Stage::Clustering)
            .unwrap();
        let host = HostStages::new(backend, &input)
            .cluster(&opts, &progress, Stage::Clustering)
            .unwrap();
        assert_eq!(dev, host, "k-means of the images, {dtype:?}");
    }
}
