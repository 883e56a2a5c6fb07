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
