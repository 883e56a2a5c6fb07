//! Inputs shared by the benchmarks.

use rand_distr::{Distribution, StandardNormal};

/// `rows × d` standard-normal values with every row scaled to unit L2 norm.
pub fn random_unit_rows(rng: &mut impl rand::Rng, rows: usize, d: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..rows * d)
        .map(|_| StandardNormal.sample(&mut *rng))
        .collect();
    for r in v.chunks_exact_mut(d) {
        let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
        r.iter_mut().for_each(|x| *x /= n);
    }
    v
}

/// With `LAIC_BENCH_QUICK=<reps>` set, runs `f` that many times, prints the wall and process
/// CPU seconds of each run (and the 1-minute load average, since the machine may be shared)
/// and returns true, so that a bench can skip criterion's ten samples for large sizes.
pub fn quick_timing(name: &str, mut f: impl FnMut()) -> bool {
    let Some(reps) = std::env::var("LAIC_BENCH_QUICK")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return false;
    };
    // utime + stime of this process in seconds (Linux; 0 elsewhere).
    let cpu = || -> f64 {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return 0.0;
        };
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (tick(11) + tick(12)) / 100.0
    };
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default()
    };
    for _ in 0..reps {
        let (t, c) = (std::time::Instant::now(), cpu());
        f();
        println!(
            "{name}: wall {:.3} s, cpu {:.2} s, load {}",
            t.elapsed().as_secs_f64(),
            cpu() - c,
            load()
        );
    }
    true
}
