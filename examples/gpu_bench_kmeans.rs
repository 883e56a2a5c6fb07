//! GPU benchmark of the CUDA k-means and retrieval kernels at the sizes of issue 8: one
//! spherical k-means iteration (assignment + update-step sums) at N = 1,281,167, K = 2000,
//! D = 512 with f16 and f32 input, and retrieval of 50,000 images against 10,000 nouns,
//! D = 512, f16 (τ = 0.006, as `../shared/anchors/torch_anchors.py`).
//!
//! One JSON line per case: device time of the kernels (median of CUDA-event timings), the
//! whole call's wall time (host↔device copies included), and the error against the CPU backend
//! on a sample of rows; then, per dtype, the wall time per iteration of whole Lloyd iterations
//! with the host loop and with the device loop (the default), and of k-means++
//! seeding of 200 centres with each. Run by
//! `scripts/gpu-check.sh`; PyTorch's times for the same work come from
//! `scripts/torch_kmeans_anchor.py` in the same call.
//!
//! `cargo run --release --example gpu_bench_kmeans -- [--quick] [--label NAME] [--kmeans-only]
//! [--retrieve-only] [--iteration-only]` (`--iteration-only`: no Lloyd loops and no seeding, for
//! a profiler);
//! without a CUDA device it prints `SKIPPED` and exits 0 (1 when `LAIC_REQUIRE_CUDA=1`). The
//! label (default `default`) and the assignment kernel that ran (`assign_kernel`: `wg2`/`wg1`
//! for the wgmma kernels, the default on an H100/H200 unless `LAIC_CUDA_KMEANS_WGMMA=0`, else
//! the mma.sync block shape) go into each k-means line; the label and the retrieval kernel that
//! ran (`kernel`: `wg_d512` for the wgmma kernel, the default there unless
//! `LAIC_CUDA_RETRIEVE_WGMMA=0`, else the mma.sync block shape) into the retrieval line.

#[path = "common/mod.rs"]
mod common;

use common::median;

use half::f16;
use laic::backend::cpu::CpuBackend;
use laic::backend::cuda::{
    last_kmeans_assign_kernel, last_kmeans_assign_ms, last_kmeans_sums_ms, last_retrieve_kernel,
    last_retrieve_kernel_ms, set_kmeans_on_device,
};
use laic::backend::{Backend, KMeansSteps};
use laic::kmeans::{AssignOut, HostRows};
use laic::retrieve::RetrieveOut;
use laic::{BackendKind, Context, Dtype, Error, KMeansOptions, MatrixRef, Metric, RetrieveOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use std::time::Instant;

const D: usize = 512;
const CHECK_ROWS: usize = 4096;

/// Timed assignment + update-sum calls per dtype (after one warm-up call).
const ITERATION_REPS: usize = 5;

/// Lloyd iterations run through [`laic::backend::KMeansSteps::lloyd`].
const LLOYD_ITERS: usize = 6;

/// Whole Lloyd iterations (assignment, update, convergence test: what one iteration of a
/// k-means call costs) with the host loop and with the device loop, from the same centres: one
/// JSON line each with the wall time per iteration (the initial upload and the final
/// assignment and copies included, spread over the iterations). Then the device loop's
/// marginal iteration, what PyTorch's iteration is timed as: the difference between runs of
/// 2 × [`LLOYD_ITERS`] and [`LLOYD_ITERS`] iterations over the difference in iterations (loop
/// `"device, marginal"`). `data` is the f32 rows.
fn lloyd_iterations(
    steps: &mut dyn KMeansSteps,
    data: &[f32],
    centres: &[f32],
    dtype: Dtype,
    label: &str,
) {
    let (n, k) = (data.len() / D, centres.len() / D);
    let mut run = |device: bool, max_iter: usize| {
        let opts = KMeansOptions {
            n_clusters: k,
            metric: Metric::Spherical,
            max_iter,
            ..Default::default()
        };
        set_kmeans_on_device(Some(device));
        let t0 = Instant::now();
        let r = steps.lloyd(
            &HostRows::new(data, D),
            centres.to_vec(),
            &opts,
            0.0,
            &|_| Ok(()),
        );
        let wall = t0.elapsed().as_secs_f64() * 1e3;
        set_kmeans_on_device(None);
        r.map(|r| (wall, r))
    };
    let line = |name: &str, iterations: usize, ms_per_iter: f64, objective: f64| {
        println!(
            "{{\"bench\":\"kmeans_lloyd\",\"label\":\"{label}\",\"loop\":\"{name}\",\"dtype\":\"{dtype:?}\",\"n\":{n},\"k\":{k},\"d\":{D},\"iterations\":{iterations},\"ms_per_iter\":{ms_per_iter:.4},\"objective\":{objective:.6}}}"
        )
    };
    let mut device_run = None;
    for (device, name) in [(false, "host"), (true, "device")] {
        match run(device, LLOYD_ITERS) {
            Err(e) => json_error("kmeans_lloyd", dtype, &e),
            Ok((wall, r)) => {
                line(name, r.n_iter, wall / r.n_iter as f64, r.objective);
                if device {
                    device_run = Some((wall, r.n_iter));
                }
            }
        }
    }
    let Some((wall, iters)) = device_run else {
        return;
    };
    match run(true, 2 * LLOYD_ITERS) {
        Err(e) => json_error("kmeans_lloyd", dtype, &e),
        // Converged within the shorter run: no marginal iteration to time.
        Ok((_, r)) if r.n_iter <= iters => {}
        Ok((wall2, r)) => line(
            "device, marginal",
            r.n_iter - iters,
            (wall2 - wall) / (r.n_iter - iters) as f64,
            r.objective,
        ),
    }
}

/// Centres drawn by the seeding benchmark (the host loop downloads N × (2 + ⌊ln K⌋) distances
/// per centre: K = 2000 would take minutes).
const SEED_CENTRES: usize = 200;

/// k-means++ seeding of [`SEED_CENTRES`] centres with the host loop and with the device loop,
/// from the same draws: one JSON line each with the wall time, and whether the two chose the
/// same centres.
fn seeding(steps: &mut dyn KMeansSteps, data: &[f32], dtype: Dtype, label: &str) {
    let n = data.len() / D;
    let mut chosen = Vec::new();
    for (device, name) in [(false, "host"), (true, "device")] {
        set_kmeans_on_device(Some(device));
        let mut draws = StdRng::seed_from_u64(7);
        let first = draws.random_range(0..n);
        let t0 = Instant::now();
        let rows = HostRows::new(data, D);
        let r = steps.kmeans_plus_plus(&rows, SEED_CENTRES, Metric::Spherical, first, &mut || {
            draws.random::<f64>()
        });
        let wall = t0.elapsed().as_secs_f64() * 1e3;
        set_kmeans_on_device(None);
        match r {
            Err(e) => json_error("kmeans_seed", dtype, &e),
            Ok(c) => {
                chosen.push(c);
                let same = chosen.len() == 2 && chosen[0] == chosen[1];
                println!(
                    "{{\"bench\":\"kmeans_seed\",\"label\":\"{label}\",\"loop\":\"{name}\",\"dtype\":\"{dtype:?}\",\"n\":{n},\"k\":{SEED_CENTRES},\"d\":{D},\"ms\":{wall:.1},\"same_as_host\":{same}}}"
                );
            }
        }
    }
}

/// Unit rows from N(0, 1), generated in parallel (1.28 M × 512 in a few seconds).
fn random_unit_rows(seed: u64, rows: usize, d: usize) -> Vec<f32> {
    let mut v = vec![0f32; rows * d];
    v.par_chunks_mut(d * 1024)
        .enumerate()
        .for_each(|(chunk, block)| {
            let mut rng = StdRng::seed_from_u64(seed ^ (chunk as u64).wrapping_mul(0x9e37_79b9));
            for row in block.chunks_exact_mut(d) {
                let mut ss = 0f32;
                for x in row.iter_mut() {
                    *x = StandardNormal.sample(&mut rng);
                    ss += *x * *x;
                }
                let inv = 1.0 / ss.sqrt();
                row.iter_mut().for_each(|x| *x *= inv);
            }
        });
    v
}

fn json_error(bench: &str, dtype: Dtype, e: &Error) {
    println!(
        "{{\"bench\":\"{bench}\",\"dtype\":\"{dtype:?}\",\"error\":\"{}\"}}",
        e.to_string().replace('"', "'")
    );
}

fn kmeans_iteration(
    ctx: &Context,
    x32: &[f32],
    n: usize,
    k: usize,
    dtype: Dtype,
    label: &str,
    iteration_only: bool,
) {
    let xh: Vec<f16>;
    let xm = match dtype {
        Dtype::F16 => {
            xh = x32.par_iter().map(|&v| f16::from_f32(v)).collect();
            MatrixRef::from_f16(&xh, n, D)
        }
        _ => MatrixRef::from_f32(x32, n, D),
    }
    .expect("valid view");
    // Centres: K rows of the data, spread over it.
    let centres: Vec<f32> = (0..k)
        .flat_map(|j| {
            let i = j * (n / k);
            xm.row_range(i, 1).to_f32_vec()
        })
        .collect();
    let t0 = Instant::now();
    let mut steps = match ctx.backend().kmeans_steps(xm) {
        Ok(s) => s,
        Err(e) => return json_error("kmeans_iter", dtype, &e),
    };
    let prepare_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut labels = vec![0u32; n];
    let mut dist = vec![0f32; n];
    let mut sums = vec![0f64; k * D];
    let mut counts = vec![0u64; k];
    let (mut kernel, mut assign, mut upd, mut call) = (vec![], vec![], vec![], vec![]);
    for rep in 0..ITERATION_REPS + 1 {
        let t0 = Instant::now();
        let r = steps
            .assign(
                &centres,
                Metric::Spherical,
                AssignOut {
                    labels: &mut labels,
                    distances: &mut dist,
                },
            )
            .and_then(|_| steps.cluster_sums(&labels, &mut sums, &mut counts));
        let wall = t0.elapsed().as_secs_f64() * 1e3;
        if let Err(e) = r {
            return json_error("kmeans_iter", dtype, &e);
        }
        if rep > 0 {
            let a = last_kmeans_assign_ms().unwrap_or(f32::NAN) as f64;
            let s = last_kmeans_sums_ms().unwrap_or(f32::NAN) as f64;
            assign.push(a);
            upd.push(s);
            kernel.push(a + s);
            call.push(wall);
        }
    }
    let assign_kernel = last_kmeans_assign_kernel().unwrap_or("none");
    if !iteration_only {
        lloyd_iterations(steps.as_mut(), x32, &centres, dtype, label);
    }
    if label == "default" && !iteration_only {
        // The seeding does not use the assignment kernel that other labels choose.
        seeding(steps.as_mut(), x32, dtype, label);
    }
    drop(steps);
    // Accuracy on a sample: the CPU's assignment of the first rows to the same centres.
    let rows = CHECK_ROWS.min(n);
    let mut cl = vec![0u32; rows];
    let mut cd = vec![0f32; rows];
    CpuBackend
        .kmeans_assign(
            &xm.row_range(0, rows),
            &centres,
            Metric::Spherical,
            AssignOut {
                labels: &mut cl,
                distances: &mut cd,
            },
        )
        .expect("cpu assignment");
    let mismatched = (0..rows).filter(|&i| cl[i] != labels[i]).count();
    let max_err = (0..rows)
        .filter(|&i| cl[i] == labels[i])
        .map(|i| (dist[i] as f64 - cd[i] as f64).abs())
        .fold(0f64, f64::max);
    let kernel_ms = median(kernel);
    let tflops = 2.0 * n as f64 * k as f64 * D as f64 / (median(assign.clone()) * 1e-3) / 1e12;
    println!(
        "{{\"bench\":\"kmeans_iter\",\"label\":\"{label}\",\"assign_kernel\":\"{assign_kernel}\",\"dtype\":\"{dtype:?}\",\"n\":{n},\"k\":{k},\"d\":{D},\"kernel_ms\":{kernel_ms:.4},\"assign_ms\":{:.4},\"sums_ms\":{:.4},\"call_ms\":{:.4},\"prepare_ms\":{prepare_ms:.1},\"assign_tflops\":{tflops:.1},\"max_abs_dist_err\":{max_err:.3e},\"assign_mismatch\":{mismatched},\"checked_rows\":{rows}}}",
        median(assign),
        median(upd),
        median(call)
    );
}

fn retrieval(ctx: &Context, n: usize, m: usize, reps: usize, seed: u64, label: &str) {
    let x: Vec<f16> = random_unit_rows(seed, n, D)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let t: Vec<f16> = random_unit_rows(seed ^ 1, m, D)
        .into_iter()
        .map(f16::from_f32)
        .collect();
    let xm = MatrixRef::from_f16(&x, n, D).expect("valid");
    let tm = MatrixRef::from_f16(&t, m, D).expect("valid");
    let opts = RetrieveOptions {
        tau: 0.006,
        normalize: true,
        top_n: 0,
    };
    let mut out = vec![0f32; n * D];
    let (mut kernel, mut call) = (vec![], vec![]);
    for rep in 0..reps + 2 {
        let t0 = Instant::now();
        let r = ctx.backend().retrieve(
            &xm,
            &tm,
            &opts,
            RetrieveOut {
                features: &mut out,
                top_indices: &mut [],
                top_weights: &mut [],
            },
        );
        let wall = t0.elapsed().as_secs_f64() * 1e3;
        if let Err(e) = r {
            return json_error("retrieve", Dtype::F16, &e);
        }
        if rep >= 2 {
            kernel.push(last_retrieve_kernel_ms().unwrap_or(f32::NAN) as f64);
            call.push(wall);
        }
    }
    let rows = 512.min(n);
    let mut want = vec![0f32; rows * D];
    CpuBackend
        .retrieve(
            &xm.row_range(0, rows),
            &tm,
            &opts,
            RetrieveOut {
                features: &mut want,
                top_indices: &mut [],
                top_weights: &mut [],
            },
        )
        .expect("cpu retrieval");
    let max_err = (0..rows)
        .map(|i| {
            (0..D)
                .map(|j| (out[i * D + j] as f64 - want[i * D + j] as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .fold(0f64, f64::max);
    let kernel_ms = median(kernel);
    let tflops = 4.0 * n as f64 * m as f64 * D as f64 / (kernel_ms * 1e-3) / 1e12;
    let kernel = last_retrieve_kernel().unwrap_or("cpu");
    println!(
        "{{\"bench\":\"retrieve\",\"label\":\"{label}\",\"kernel\":\"{kernel}\",\"dtype\":\"F16\",\"n\":{n},\"m\":{m},\"d\":{D},\"kernel_ms\":{kernel_ms:.4},\"call_ms\":{:.4},\"tflops\":{tflops:.1},\"max_rel_err\":{max_err:.3e},\"checked_rows\":{rows}}}",
        median(call)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let kmeans_only = args.iter().any(|a| a == "--kmeans-only");
    let retrieve_only = args.iter().any(|a| a == "--retrieve-only");
    let iteration_only = args.iter().any(|a| a == "--iteration-only");
    let label = args
        .iter()
        .position(|a| a == "--label")
        .and_then(|i| args.get(i + 1))
        .map_or("default", String::as_str);
    let ctx = common::context_or_skip(Context::new(BackendKind::Cuda));
    let seed: u64 = rand::rng().random();
    let (n, k) = if quick {
        (65_536, 2000)
    } else {
        (1_281_167, 2000)
    };
    if !retrieve_only {
        let x = random_unit_rows(seed, n, D);
        for dtype in [Dtype::F16, Dtype::F32] {
            kmeans_iteration(&ctx, &x, n, k, dtype, label, iteration_only);
        }
    }
    if kmeans_only {
        return;
    }
    let (n, m) = if quick {
        (4096, 10_000)
    } else {
        (50_000, 10_000)
    };
    retrieval(&ctx, n, m, 10, seed, label);
}
