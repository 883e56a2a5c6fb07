//! The fused GradNorm kernel on the CPU.
//!
//! Nouns are cut into blocks (one rayon task each). A block is converted to f32 (and
//! normalised) once, then streamed against tiles of centres: `matrixmultiply::sgemm` fills a
//! small logit tile, and the epilogue folds it into the per-noun online statistics — running
//! max `m`, its index `ĉ`, and the sums of the *non-max* terms `R = Σ_{k≠ĉ} e^{z_k−m}`,
//! `R_q = Σ_{k≠ĉ} e^{q(z_k−m)}` (DESIGN.md §1.3: keeping them apart from the max term keeps tiny
//! tails that `1 + R` would round away). Only a block×tile of logits ever exists.

use super::vecmath::{exp_nonpos, simd_dispatch};
use crate::error::Result;
use crate::gradnorm::{GradNormOptions, GradNormOut, Target};
use crate::matrix::MatrixRef;
use rayon::prelude::*;

/// Nouns per rayon task.
const NOUN_BLOCK: usize = 128;
/// Centres per logit tile.
const CENTRE_TILE: usize = 320;

/// How the q-th power of a probability term is formed.
#[derive(Clone, Copy)]
enum Power {
    One,
    Two,
    Inf,
    General(f32),
}

impl Power {
    fn new(q: f32) -> Self {
        match q {
            1.0 => Power::One,
            2.0 => Power::Two,
            q if q.is_infinite() => Power::Inf,
            q => Power::General(q),
        }
    }
}

/// Running statistics of one noun over the centres seen so far.
#[derive(Clone, Copy)]
struct RowStats {
    max: f32,
    argmax: u32,
    rest: f64,
    rest_q: f64,
}

impl RowStats {
    const EMPTY: RowStats = RowStats {
        max: f32::NEG_INFINITY,
        argmax: 0,
        rest: 0.0,
        rest_q: 0.0,
    };
}

/// Scratch buffers of one worker.
struct Scratch {
    nouns: Vec<f32>,
    logits: Vec<f32>,
    stats: Vec<RowStats>,
}

/// L2-normalises each row of a contiguous `rows × d` buffer in place (rows are non-zero:
/// validated before the kernel runs).
pub(crate) fn normalize_rows(buf: &mut [f32], d: usize) {
    for row in buf.chunks_exact_mut(d) {
        let ss: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let inv = (1.0 / ss.sqrt()) as f32;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// `‖t‖_q` of a row, in f64.
fn q_norm(row: &[f32], power: Power, q: f32) -> f64 {
    match power {
        Power::One => row.iter().map(|&v| (v as f64).abs()).sum(),
        Power::Two => row
            .iter()
            .map(|&v| (v as f64) * (v as f64))
            .sum::<f64>()
            .sqrt(),
        Power::Inf => row.iter().fold(0f64, |a, &v| a.max((v as f64).abs())),
        Power::General(_) => {
            let q = q as f64;
            row.iter()
                .map(|&v| (v as f64).abs().powf(q))
                .sum::<f64>()
                .powf(1.0 / q)
        }
    }
}

/// Fills `logits` (`rows × cols`, row-major) with `alpha · A · Bᵀ`, where `A` is `rows × d`
/// and `B` is `cols × d`, both contiguous row-major.
pub(crate) fn gemm_abt(
    alpha: f32,
    a: &[f32],
    b: &[f32],
    rows: usize,
    cols: usize,
    d: usize,
    out: &mut [f32],
) {
    debug_assert!(a.len() >= rows * d && b.len() >= cols * d && out.len() >= rows * cols);
    // SAFETY: a is rows×d with strides (d, 1); b read as d×cols with strides (1, d); out is
    // rows×cols with strides (cols, 1); the lengths are checked above and do not alias.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            d,
            cols,
            alpha,
            a.as_ptr(),
            d as isize,
            1,
            b.as_ptr(),
            1,
            d as isize,
            0.0,
            out.as_mut_ptr(),
            cols as isize,
            1,
        );
    }
}

simd_dispatch! {
    /// Folds one tile of logits (first centre `k0`) into a noun's statistics.
    fn fold_tile(z: &mut [f32], k0: usize, power: Power, st: &mut RowStats) {
        let mut tile_max = f32::NEG_INFINITY;
        for &v in z.iter() {
            tile_max = tile_max.max(v);
        }
        // The index of the max term inside this tile, if this tile holds the noun's max.
        let mut skip = usize::MAX;
        if tile_max > st.max {
            let pos = z.iter().position(|&v| v == tile_max).unwrap_or(0);
            let shift = (st.max - tile_max) as f64;
            // The old max term (1 before rescaling) joins the non-max sums.
            let q = match power { Power::One => 1.0, Power::Two => 2.0, Power::Inf => 1.0, Power::General(q) => q as f64 };
            st.rest = (st.rest + 1.0) * shift.exp();
            st.rest_q = (st.rest_q + 1.0) * (q * shift).exp();
            st.max = tile_max;
            st.argmax = (k0 + pos) as u32;
            skip = pos;
        }
        let m = st.max;
        match power {
            Power::One | Power::Inf => {
                z.iter_mut().for_each(|v| *v = exp_nonpos(*v - m));
                if skip != usize::MAX { z[skip] = 0.0; }
                let s: f32 = sum(z);
                st.rest += s as f64;
                st.rest_q = st.rest;
            }
            Power::Two => {
                let (mut s1, mut s2) = ([0f32; 8], [0f32; 8]);
                if skip != usize::MAX { z[skip] = f32::NEG_INFINITY; }
                let mut chunks = z.chunks_exact(8);
                for c in &mut chunks {
                    for l in 0..8 {
                        let e = exp_nonpos(c[l] - m);
                        s1[l] += e;
                        s2[l] += e * e;
                    }
                }
                let (mut r1, mut r2) = (0f32, 0f32);
                for &v in chunks.remainder() {
                    let e = exp_nonpos(v - m);
                    r1 += e;
                    r2 += e * e;
                }
                st.rest += (s1.iter().sum::<f32>() + r1) as f64;
                st.rest_q += (s2.iter().sum::<f32>() + r2) as f64;
            }
            Power::General(q) => {
                let (mut s1, mut sq) = ([0f32; 8], [0f32; 8]);
                if skip != usize::MAX { z[skip] = f32::NEG_INFINITY; }
                let mut chunks = z.chunks_exact(8);
                for c in &mut chunks {
                    for l in 0..8 {
                        let x = c[l] - m;
                        s1[l] += exp_nonpos(x);
                        sq[l] += exp_nonpos(q * x);
                    }
                }
                let (mut r1, mut rq) = (0f32, 0f32);
                for &v in chunks.remainder() {
                    r1 += exp_nonpos(v - m);
                    rq += exp_nonpos(q * (v - m));
                }
                st.rest += (s1.iter().sum::<f32>() + r1) as f64;
                st.rest_q += (sq.iter().sum::<f32>() + rq) as f64;
            }
        }
    }
}

simd_dispatch! {
    /// Adds `Σ_k |p_k − 1/K|^q` (or the max, for q = ∞) of one tile to `acc`, where
    /// `p_k = e^{z_k − m} / Z`.
    fn fold_uniform_tile(z: &[f32], m: f32, inv_z: f32, inv_k: f32, power: Power, acc: &mut f64) {
        match power {
            Power::Inf => {
                let mut mx = 0f32;
                for &v in z { mx = mx.max((exp_nonpos(v - m) * inv_z - inv_k).abs()); }
                *acc = acc.max(mx as f64);
            }
            _ => {
                let mut s = [0f32; 8];
                let mut chunks = z.chunks_exact(8);
                for c in &mut chunks {
                    for l in 0..8 {
                        let d = (exp_nonpos(c[l] - m) * inv_z - inv_k).abs();
                        s[l] += match power { Power::One => d, Power::Two => d * d, Power::General(q) => d.powf(q), Power::Inf => 0.0 };
                    }
                }
                let mut r = 0f32;
                for &v in chunks.remainder() {
                    let d = (exp_nonpos(v - m) * inv_z - inv_k).abs();
                    r += match power { Power::One => d, Power::Two => d * d, Power::General(q) => d.powf(q), Power::Inf => 0.0 };
                }
                *acc += (s.iter().sum::<f32>() + r) as f64;
            }
        }
    }
}

simd_dispatch! {
    /// Sum of a slice with 8 partial sums (vectorises and loses less than a serial sum).
    fn sum(z: &[f32]) -> f32 {
        let mut s = [0f32; 8];
        let mut chunks = z.chunks_exact(8);
        for c in &mut chunks {
            for l in 0..8 { s[l] += c[l]; }
        }
        s.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
    }
}

/// Scores every noun against every centre (validated inputs) into `out`.
pub(crate) fn gradnorm_scores(
    nouns: &MatrixRef<'_>,
    centres: &MatrixRef<'_>,
    opts: &GradNormOptions,
    out: GradNormOut<'_>,
) -> Result<()> {
    let d = nouns.cols();
    let k = centres.rows();
    let mut w = centres.to_f32_vec();
    if opts.normalize {
        normalize_rows(&mut w, d);
    }
    let power = Power::new(opts.q);
    let alpha = 1.0 / opts.tau;
    let m = nouns.rows();
    let GradNormOut {
        scores,
        assignment,
        confidence,
    } = out;
    scores[..m]
        .par_chunks_mut(NOUN_BLOCK)
        .zip(assignment[..m].par_chunks_mut(NOUN_BLOCK))
        .zip(confidence[..m].par_chunks_mut(NOUN_BLOCK))
        .enumerate()
        .for_each_init(
            || Scratch {
                nouns: vec![0.0; NOUN_BLOCK * d],
                logits: vec![0.0; NOUN_BLOCK * CENTRE_TILE],
                stats: vec![RowStats::EMPTY; NOUN_BLOCK],
            },
            |scr, (block, ((scores, assignment), confidence))| {
                let rows = scores.len();
                let t = &mut scr.nouns[..rows * d];
                nouns.rows_to_f32(block * NOUN_BLOCK, t);
                if opts.normalize {
                    normalize_rows(t, d);
                }
                let stats = &mut scr.stats[..rows];
                stats.fill(RowStats::EMPTY);
                for k0 in (0..k).step_by(CENTRE_TILE) {
                    let kt = CENTRE_TILE.min(k - k0);
                    let logits = &mut scr.logits[..rows * kt];
                    gemm_abt(alpha, t, &w[k0 * d..(k0 + kt) * d], rows, kt, d, logits);
                    for (z, st) in logits.chunks_exact_mut(kt).zip(stats.iter_mut()) {
                        fold_tile(z, k0, power, st);
                    }
                }
                // The uniform target needs p_k for every k: a second pass over the centres.
                let mut uniform_acc = [0f64; NOUN_BLOCK];
                if opts.target == Target::Uniform {
                    let inv_k = 1.0 / k as f32;
                    for k0 in (0..k).step_by(CENTRE_TILE) {
                        let kt = CENTRE_TILE.min(k - k0);
                        let logits = &mut scr.logits[..rows * kt];
                        gemm_abt(alpha, t, &w[k0 * d..(k0 + kt) * d], rows, kt, d, logits);
                        for (r, z) in logits.chunks_exact(kt).enumerate() {
                            let inv_z = (1.0 / (1.0 + stats[r].rest)) as f32;
                            fold_uniform_tile(
                                z,
                                stats[r].max,
                                inv_z,
                                inv_k,
                                power,
                                &mut uniform_acc[r],
                            );
                        }
                    }
                }
                for r in 0..rows {
                    let st = stats[r];
                    let z = 1.0 + st.rest;
                    let tn = q_norm(&t[r * d..(r + 1) * d], power, opts.q);
                    let dist = match (opts.target, power) {
                        (Target::OneHot, Power::Inf) => st.rest / z,
                        (Target::OneHot, Power::One) => 2.0 * st.rest / z,
                        (Target::OneHot, Power::Two) => {
                            (st.rest_q / (z * z) + (st.rest / z).powi(2)).sqrt()
                        }
                        (Target::OneHot, Power::General(q)) => {
                            let q = q as f64;
                            (st.rest_q / z.powf(q) + (st.rest / z).powf(q)).powf(1.0 / q)
                        }
                        (Target::Uniform, Power::Inf) | (Target::Uniform, Power::One) => {
                            uniform_acc[r]
                        }
                        (Target::Uniform, Power::Two) => uniform_acc[r].sqrt(),
                        (Target::Uniform, Power::General(q)) => uniform_acc[r].powf(1.0 / q as f64),
                    };
                    scores[r] = (dist * tn) as f32;
                    assignment[r] = st.argmax;
                    confidence[r] = (1.0 / z) as f32;
                }
            },
        );
    Ok(())
}
