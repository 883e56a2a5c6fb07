//! One spherical k-means iteration on the CPU (2 threads) at the size of the PyTorch anchor:
//! N = 200,000 rows, K = 500 centres, D = 512, f32 (`../shared/anchors/cpu_anchors.py`:
//! `(X @ C.T).argmax(1)` then normalised `index_add_`, torch 1.03 s). The iteration is the
//! assignment primitive (blocked GEMM + fused argmax) plus the per-cluster sums and the
//! normalisation of the new centres. `LAIC_BENCH_SMALL=1` runs a tenth of N;
//! `LAIC_BENCH_QUICK=3` times three runs without criterion (wall and CPU seconds).

mod common;

use common::random_unit_rows;
use criterion::{Criterion, criterion_group, criterion_main};
use laic::kmeans::AssignOut;
use laic::{Context, ContextOptions, MatrixRef, Metric};
use rand::SeedableRng;

fn bench(c: &mut Criterion) {
    let small = std::env::var_os("LAIC_BENCH_SMALL").is_some();
    let (n, k, d) = if small {
        (20_000, 500, 512)
    } else {
        (200_000, 500, 512)
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x = random_unit_rows(&mut rng, n, d);
    let centres = random_unit_rows(&mut rng, k, d);
    let ctx = Context::with_options(&ContextOptions {
        n_threads: 2,
        ..Default::default()
    })
    .unwrap();
    let xm = MatrixRef::from_f32(&x, n, d).unwrap();
    let mut labels = vec![0u32; n];
    let mut dist = vec![0f32; n];
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0u64; k];
    let mut new_centres = vec![0f32; k * d];
    let mut iteration = || {
        ctx.install(|| {
            let be = ctx.backend();
            be.kmeans_assign(
                &xm,
                &centres,
                Metric::Spherical,
                AssignOut {
                    labels: &mut labels,
                    distances: &mut dist,
                },
            )
            .unwrap();
            be.cluster_sums(&xm, &labels, &mut sums, &mut counts)
                .unwrap();
        });
        for (s, o) in sums.chunks_exact(d).zip(new_centres.chunks_exact_mut(d)) {
            let norm = s.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-30);
            o.iter_mut()
                .zip(s)
                .for_each(|(o, &v)| *o = (v / norm) as f32);
        }
    };
    let name = format!("spherical_iteration_N{n}_K{k}_D{d}");
    if common::quick_timing(&name, &mut iteration) {
        return;
    }
    let mut g = c.benchmark_group("kmeans_cpu_2threads");
    g.sample_size(10);
    g.bench_function(name, |b| b.iter(&mut iteration));
    g.finish();
}
criterion_group!(benches, bench);
criterion_main!(benches);
