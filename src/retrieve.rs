//! Retrieval of noun semantics for images (DESIGN.md §1.5): for each image x,
//! `a = softmax(x·Tᵀ/τ_r)` over the nouns T and `t̃ = normalize(a·T)`. The kernels live in the
//! backends ([`crate::backend::Backend::retrieve`]); this module holds the options, the
//! validation and the output buffers.

use crate::error::{Error, Result};
use crate::matrix::MatrixRef;

/// Options of [`crate::Context::retrieve`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrieveOptions {
    /// Softmax temperature τ_r > 0 (default 0.01). Any positive value is safe: the kernels
    /// only ever exponentiate non-positive numbers.
    pub tau: f32,
    /// L2-normalise image and noun rows first (default true).
    pub normalize: bool,
    /// How many nouns of largest weight to report per image (default 0: none).
    pub top_n: usize,
}

impl Default for RetrieveOptions {
    fn default() -> Self {
        RetrieveOptions {
            tau: 0.01,
            normalize: true,
            top_n: 0,
        }
    }
}

impl RetrieveOptions {
    /// Errors unless τ_r is finite and positive.
    pub fn validate(&self) -> Result<()> {
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(Error::invalid(format!(
                "tau_r must be finite and > 0, got {}",
                self.tau
            )));
        }
        Ok(())
    }
}

/// Caller-owned outputs of a retrieval.
#[derive(Debug)]
pub struct RetrieveOut<'a> {
    /// t̃ per image: N×D, row-major.
    pub features: &'a mut [f32],
    /// The `top_n` nouns of largest weight per image, best first: N×top_n (may be empty when
    /// `top_n` is 0).
    pub top_indices: &'a mut [u32],
    /// Their softmax weights: N×top_n.
    pub top_weights: &'a mut [f32],
}

/// Owned outputs of a retrieval.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieved {
    /// t̃ per image: N×D, row-major, unit rows.
    pub features: Vec<f32>,
    /// Columns D.
    pub dim: usize,
    /// Top nouns per image.
    pub top_n: usize,
    /// N×top_n noun indices, best first.
    pub top_indices: Vec<u32>,
    /// N×top_n softmax weights.
    pub top_weights: Vec<f32>,
}

impl Retrieved {
    /// Zeroed outputs for `n` images of width `d`.
    pub fn zeros(n: usize, d: usize, top_n: usize) -> Self {
        Retrieved {
            features: vec![0.0; n * d],
            dim: d,
            top_n,
            top_indices: vec![0; n * top_n],
            top_weights: vec![0.0; n * top_n],
        }
    }

    /// Mutable views for a backend to fill.
    pub fn as_out(&mut self) -> RetrieveOut<'_> {
        RetrieveOut {
            features: &mut self.features,
            top_indices: &mut self.top_indices,
            top_weights: &mut self.top_weights,
        }
    }
}

/// Checks everything a backend relies on before any output is written.
pub fn validate_inputs(
    images: &MatrixRef<'_>,
    nouns: &MatrixRef<'_>,
    opts: &RetrieveOptions,
    out: &RetrieveOut<'_>,
) -> Result<()> {
    opts.validate()?;
    let (n, d, m) = (images.rows(), images.cols(), nouns.rows());
    if nouns.cols() != d {
        return Err(Error::invalid(format!(
            "images have {d} columns but nouns have {}",
            nouns.cols()
        )));
    }
    if m > u32::MAX as usize {
        return Err(Error::invalid("more than 2^32 - 1 nouns"));
    }
    if opts.top_n > m {
        return Err(Error::invalid(format!(
            "top_n is {} but there are only {m} nouns",
            opts.top_n
        )));
    }
    let nd = n
        .checked_mul(d)
        .ok_or_else(|| Error::invalid("N×D overflows"))?;
    let nt = n
        .checked_mul(opts.top_n)
        .ok_or_else(|| Error::invalid("N×top_n overflows"))?;
    for (what, needed, got) in [
        ("features", nd, out.features.len()),
        ("top_indices", nt, out.top_indices.len()),
        ("top_weights", nt, out.top_weights.len()),
    ] {
        if got < needed {
            return Err(Error::BufferTooSmall { what, needed, got });
        }
    }
    let xn = images.check_rows("images", opts.normalize)?;
    let tn = nouns.check_rows("nouns", opts.normalize)?;
    let bound = if opts.normalize { 1.0 } else { xn * tn } / opts.tau as f64;
    if bound > 1e30 {
        return Err(Error::invalid(format!(
            "logits up to {bound:e} would overflow: reduce the input norms or raise tau_r"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Context;
    use rand::{Rng, SeedableRng};

    /// Naive f64 retrieval: full softmax row, weighted sum, normalisation.
    fn naive(
        x: &[f32],
        t: &[f32],
        n: usize,
        m: usize,
        d: usize,
        tau: f64,
    ) -> (Vec<f64>, Vec<Vec<f64>>) {
        let unit = |v: &[f32]| -> Vec<f64> {
            let s = v.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
            v.iter().map(|&a| a as f64 / s).collect()
        };
        let tn: Vec<Vec<f64>> = (0..m).map(|j| unit(&t[j * d..(j + 1) * d])).collect();
        let mut feats = Vec::new();
        let mut weights = Vec::new();
        for i in 0..n {
            let xi = unit(&x[i * d..(i + 1) * d]);
            let z: Vec<f64> = tn
                .iter()
                .map(|tj| xi.iter().zip(tj).map(|(a, b)| a * b).sum::<f64>() / tau)
                .collect();
            let mx = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = z.iter().map(|v| (v - mx).exp()).collect();
            let s: f64 = e.iter().sum();
            let a: Vec<f64> = e.iter().map(|v| v / s).collect();
            let mut f = vec![0f64; d];
            for (j, tj) in tn.iter().enumerate() {
                f.iter_mut().zip(tj).for_each(|(o, v)| *o += a[j] * v);
            }
            let nf = f.iter().map(|v| v * v).sum::<f64>().sqrt();
            feats.extend(f.iter().map(|v| v / nf));
            weights.push(a);
        }
        (feats, weights)
    }

    #[test]
    fn retrieval_matches_f64_including_tiny_temperatures() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for (n, m, d, tau) in [
            (203, 611, 45, 1.0f32),
            (203, 611, 45, 0.05),
            (203, 611, 45, 0.01),
            (203, 611, 45, 0.001),
            (77, 300, 512, 0.01),
            (77, 300, 512, 0.001),
        ] {
            let x: Vec<f32> = (0..n * d).map(|_| rng.random::<f32>() - 0.5).collect();
            let t: Vec<f32> = (0..m * d).map(|_| rng.random::<f32>() - 0.5).collect();
            let ctx = Context::cpu();
            {
                let opts = RetrieveOptions {
                    tau,
                    top_n: 3,
                    ..Default::default()
                };
                let r = ctx
                    .retrieve(
                        &MatrixRef::from_f32(&x, n, d).unwrap(),
                        &MatrixRef::from_f32(&t, m, d).unwrap(),
                        &opts,
                    )
                    .unwrap();
                let (want, w) = naive(&x, &t, n, m, d, tau as f64);
                let worst = r
                    .features
                    .iter()
                    .zip(&want)
                    .map(|(&a, &b)| (a as f64 - b).abs())
                    .fold(0f64, f64::max);
                assert!(worst < 1e-5, "tau {tau}: worst {worst}");
                for (i, wi) in w.iter().enumerate() {
                    let mut order: Vec<usize> = (0..m).collect();
                    order.sort_by(|&a, &b| wi[b].total_cmp(&wi[a]).then(a.cmp(&b)));
                    for s in 0..3 {
                        let j = r.top_indices[i * 3 + s] as usize;
                        assert!((wi[j] - wi[order[s]]).abs() < 1e-6, "tau {tau} image {i}");
                        assert!((r.top_weights[i * 3 + s] as f64 - wi[j]).abs() < 1e-5);
                    }
                }
            }
        }
    }

    #[test]
    fn half_inputs_and_strides_give_the_same_result() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (n, m, d) = (130, 300, 16);
        let x: Vec<f32> = (0..n * (d + 3))
            .map(|_| rng.random::<f32>() - 0.5)
            .collect();
        let t: Vec<f32> = (0..m * d).map(|_| rng.random::<f32>() - 0.5).collect();
        let xb: Vec<half::bf16> = x.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let ctx = Context::cpu();
        let tm = MatrixRef::from_f32(&t, m, d).unwrap();
        let opts = RetrieveOptions::default();
        let strided = crate::MatrixRef::new(crate::MatrixData::Bf16(&xb), n, d, d + 3).unwrap();
        let dense: Vec<f32> = strided.to_f32_vec();
        let a = ctx.retrieve(&strided, &tm, &opts).unwrap();
        let b = ctx
            .retrieve(&MatrixRef::from_f32(&dense, n, d).unwrap(), &tm, &opts)
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_retrieval_input_is_rejected_before_writing() {
        let x = [1.0f32, 0.0, 0.0, 1.0];
        let t = [1.0f32, 0.0, 0.0];
        let ctx = Context::cpu();
        let xm = MatrixRef::from_f32(&x, 2, 2).unwrap();
        let e = ctx
            .retrieve(
                &xm,
                &MatrixRef::from_f32(&t, 1, 3).unwrap(),
                &RetrieveOptions::default(),
            )
            .unwrap_err();
        assert!(e.to_string().contains("columns"), "{e}");
        let t2 = [1.0f32, 0.0];
        let tm = MatrixRef::from_f32(&t2, 1, 2).unwrap();
        for opts in [
            RetrieveOptions {
                tau: 0.0,
                ..Default::default()
            },
            RetrieveOptions {
                tau: f32::NAN,
                ..Default::default()
            },
            RetrieveOptions {
                top_n: 2,
                ..Default::default()
            },
        ] {
            assert!(ctx.retrieve(&xm, &tm, &opts).is_err(), "{opts:?}");
        }
        let zero = [0.0f32, 0.0, 1.0, 0.0];
        let e = ctx
            .retrieve(
                &MatrixRef::from_f32(&zero, 2, 2).unwrap(),
                &tm,
                &RetrieveOptions::default(),
            )
            .unwrap_err();
        assert!(e.to_string().contains("images row 0 is all zeros"), "{e}");
    }
}
