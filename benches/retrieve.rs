//! Retrieval on the CPU (2 threads) at the size of the PyTorch anchor: N = 50,000 images,
//! M = 10,000 nouns, D = 512, f32, τ_r = 0.006 (`../shared/anchors/cpu_anchors.py`:
//! `normalize(softmax(X @ S.T / 0.006) @ S)`, torch 10.5 s). `LAIC_BENCH_SMALL=1` runs a
//! tenth of N; `LAIC_BENCH_QUICK=3` times three runs
//! without criterion (wall and CPU seconds).

mod common;

use common::random_unit_rows;
use criterion::{Criterion, criterion_group, criterion_main};
use laic::{Context, ContextOptions, MatrixRef, RetrieveOptions};
use rand::SeedableRng;

fn bench(c: &mut Criterion) {
    let small = std::env::var_os("LAIC_BENCH_SMALL").is_some();
    let (n, m, d) = if small {
        (5_000, 10_000, 512)
    } else {
        (50_000, 10_000, 512)
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x = random_unit_rows(&mut rng, n, d);
    let t = random_unit_rows(&mut rng, m, d);
    let ctx = Context::with_options(&ContextOptions {
        n_threads: 2,
        ..Default::default()
    })
    .unwrap();
    let (xm, tm) = (
        MatrixRef::from_f32(&x, n, d).unwrap(),
        MatrixRef::from_f32(&t, m, d).unwrap(),
    );
    let opts = RetrieveOptions {
        tau: 0.006,
        ..Default::default()
    };
    let name = format!("f32_N{n}_M{m}_D{d}_tau0.006");
    if common::quick_timing(&name, || {
        std::hint::black_box(ctx.retrieve(&xm, &tm, &opts).unwrap());
    }) {
        return;
    }
    let mut g = c.benchmark_group("retrieve_cpu_2threads");
    g.sample_size(10);
    g.bench_function(name, |b| b.iter(|| ctx.retrieve(&xm, &tm, &opts).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
