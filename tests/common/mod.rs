//! Helpers shared by the integration tests: seeded random data and an f64 GradNorm reference.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// A generator seeded from `LAIC_TEST_SEED` or the clock; the seed is printed so that a
/// failure can be replayed.
pub fn fresh_rng(test: &str) -> StdRng {
    let seed = std::env::var("LAIC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{test}: LAIC_TEST_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// `rows × d` standard normal values scaled per row by a factor in [0.5, 2).
pub fn gaussian_rows(rng: &mut StdRng, rows: usize, d: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(rows * d);
    for _ in 0..rows {
        let scale: f32 = rng.random_range(0.5..2.0);
        v.extend((0..d).map(|_| rng.sample::<f32, _>(StandardNormal) * scale));
    }
    v
}

/// GradNorm in f64, straight from the definition: `S = ‖p − target‖_q · ‖t‖_q`.
pub struct Reference {
    pub scores: Vec<f64>,
    pub assignment: Vec<u32>,
    pub confidence: Vec<f64>,
    /// Logit of each noun's best and second-best centre (for tie detection).
    pub top2: Vec<(f64, f64)>,
}

fn normalized(row: &[f32]) -> Vec<f64> {
    let r: Vec<f64> = row.iter().map(|&v| v as f64).collect();
    let n = r.iter().map(|v| v * v).sum::<f64>().sqrt();
    r.iter().map(|v| v / n).collect()
}

/// All logits `z[i][k] = ⟨t_i, w_k⟩/τ` in f64 (rows normalised in f64 first when asked), and
/// the f64 rows of the nouns.
pub fn logits(
    nouns: &[f32],
    centres: &[f32],
    d: usize,
    tau: f64,
    normalize: bool,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    use rayon::prelude::*;
    let prep = |m: &[f32]| -> Vec<Vec<f64>> {
        m.chunks_exact(d)
            .map(|r| {
                if normalize {
                    normalized(r)
                } else {
                    r.iter().map(|&v| v as f64).collect()
                }
            })
            .collect()
    };
    let (t, w) = (prep(nouns), prep(centres));
    let z = t
        .par_iter()
        .map(|row| {
            w.iter()
                .map(|c| c.iter().zip(row).map(|(a, b)| a * b).sum::<f64>() / tau)
                .collect()
        })
        .collect();
    (z, t)
}

pub fn reference(
    nouns: &[f32],
    centres: &[f32],
    d: usize,
    tau: f64,
    q: f64,
    uniform: bool,
    normalize: bool,
) -> Reference {
    let (z, t) = logits(nouns, centres, d, tau, normalize);
    reference_from_logits(&z, &t, q, uniform)
}

/// GradNorm from precomputed logits and f64 noun rows.
pub fn reference_from_logits(
    all_z: &[Vec<f64>],
    t: &[Vec<f64>],
    q: f64,
    uniform: bool,
) -> Reference {
    let mut out = Reference {
        scores: vec![],
        assignment: vec![],
        confidence: vec![],
        top2: vec![],
    };
    for (z, row) in all_z.iter().zip(t) {
        let k = z.len();
        let (mut c, mut m) = (0usize, f64::NEG_INFINITY);
        for (i, &v) in z.iter().enumerate() {
            if v > m {
                m = v;
                c = i;
            }
        }
        let second = z
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != c)
            .map(|(_, &v)| v)
            .fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let rest: f64 = e
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != c)
            .map(|(_, v)| v)
            .sum();
        let zsum = 1.0 + rest;
        let p: Vec<f64> = e.iter().map(|v| v / zsum).collect();
        // |p_k − target_k|, with 1 − p_ĉ written as rest / Z so that it keeps tiny tails.
        let diff: Vec<f64> = (0..k)
            .map(|i| {
                if uniform {
                    (p[i] - 1.0 / k as f64).abs()
                } else if i == c {
                    rest / zsum
                } else {
                    p[i]
                }
            })
            .collect();
        let norm = |v: &mut dyn Iterator<Item = f64>| -> f64 {
            if q.is_infinite() {
                v.fold(0.0, f64::max)
            } else {
                v.map(|x| x.powf(q)).sum::<f64>().powf(1.0 / q)
            }
        };
        let s = norm(&mut diff.iter().copied()) * norm(&mut row.iter().map(|v| v.abs()));
        out.scores.push(s);
        out.assignment.push(c as u32);
        out.confidence.push(1.0 / zsum);
        out.top2.push((m, second));
    }
    out
}
