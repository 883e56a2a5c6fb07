//! GradNorm scoring on the CPU at the size of the PyTorch anchor
//! (M = 146,347 nouns, K = 2000 centres, D = 512, f32; `../shared/anchors/`).
//! `LAIC_BENCH_SMALL=1` runs a smaller size for a quick look.

use criterion::{Criterion, criterion_group, criterion_main};
use laic::{Context, GradNormOptions, MatrixRef};
use rand::{Rng, SeedableRng};

fn random_unit_rows(rng: &mut impl Rng, rows: usize, d: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..rows * d).map(|_| rng.random::<f32>() - 0.5).collect();
    for r in v.chunks_exact_mut(d) {
        let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        r.iter_mut().for_each(|x| *x /= n);
    }
    v
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bench(c: &mut Criterion) {
    let small = std::env::var_os("LAIC_BENCH_SMALL").is_some();
    let (m, k, d) = if small {
        (14_634, 2000, 512)
    } else {
        (146_347, 2000, 512)
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let nouns = random_unit_rows(&mut rng, m, d);
    let centres = random_unit_rows(&mut rng, k, d);
    let ctx = Context::cpu();
    let (t, w) = (
        MatrixRef::from_f32(&nouns, m, d).unwrap(),
        MatrixRef::from_f32(&centres, k, d).unwrap(),
    );
    // Peak resident memory beyond the inputs, for one scoring (Linux: VmHWM).
    let before = peak_rss_kib();
    let scores = ctx
        .gradnorm_scores(&t, &w, &GradNormOptions::default())
        .unwrap();
    if let (Some(a), Some(b)) = (before, peak_rss_kib()) {
        let outputs = scores.scores.len() * 12 / 1024;
        eprintln!(
            "peak extra memory while scoring: {:.1} MiB (of which outputs {:.1} MiB)",
            (b - a) as f64 / 1024.0,
            outputs as f64 / 1024.0
        );
    }
    let mut g = c.benchmark_group("gradnorm_cpu");
    g.sample_size(10);
    g.bench_function(format!("f32_M{m}_K{k}_D{d}_q2"), |b| {
        b.iter(|| {
            ctx.gradnorm_scores(&t, &w, &GradNormOptions::default())
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
