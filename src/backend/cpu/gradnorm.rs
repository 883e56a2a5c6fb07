//! The fused GradNorm kernel on the CPU.
//!
//! Nouns are cut into blocks (one rayon task each). A block is converted to f32 (and
//! normalised) once, then streamed against tiles of centres: `gemm` fills a
//! small logit tile, and the epilogue folds it into the per-noun online statistics — running
//! max `m`, its index `ĉ`, and the sums of the *non-max* terms `R = Σ_{k≠ĉ} e^{z_k−m}`,
//! `R_q = Σ_{k≠ĉ} e^{q(z_k−m)}` (DESIGN.md §1.3: keeping them apart from the max term keeps tiny
//! tails that `1 + R` would round away). Only a block×tile of logits ever exists.

use super::gemm::gemm_abt;
use super::vecmath::{exp_nonpos, simd_dispatch};
use crate::error::Result;
use crate::gradnorm::{GradNormOptions, GradNormOut, Target};
use crate::matrix::MatrixRef;
use rayon::prelude::*;

/// Nouns per rayon task.
const NOUN_BLOCK: usize = 512;
/// Centres per logit tile.
const CENTRE_TILE: usize = 320;
/// Below this temperature the logit tiles are computed in f64 (about half the speed): an f32
/// GEMM's rounding (~5e-8 on a dot), divided by τ, would move scores by more than 1e-5.
const PRECISE_BELOW_TAU: f32 = 0.02;

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

/// The exponent q of the `R_q` sum (1 for q = ∞, where `R_q` is not used).
fn q_of(power: Power) -> f64 {
    match power {
        Power::One | Power::Inf => 1.0,
        Power::Two => 2.0,
        Power::General(q) => q as f64,
    }
}

/// Running statistics of one noun over the centres seen so far.
#[derive(Clone, Copy)]
struct RowStats {
    max: f64,
    argmax: u32,
    rest: f64,
    rest_q: f64,
}

impl RowStats {
    const EMPTY: RowStats = RowStats {
        max: f64::NEG_INFINITY,
        argmax: 0,
        rest: 0.0,
        rest_q: 0.0,
    };
}

/// Scratch buffers of one worker.
struct Scratch {
    nouns: Vec<f32>,
    logits: Vec<f32>,
    /// f64 copies for the precise path (empty otherwise).
    nouns64: Vec<f64>,
    logits64: Vec<f64>,
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

/// Rows of `buf` widened to f64 and, when asked, L2-normalised in f64.
fn to_f64_rows(buf: &[f32], d: usize, normalize: bool) -> Vec<f64> {
    let mut out: Vec<f64> = buf.iter().map(|&v| v as f64).collect();
    if normalize {
        for row in out.chunks_exact_mut(d) {
            let inv = 1.0 / row.iter().map(|v| v * v).sum::<f64>().sqrt();
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
    out
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

simd_dispatch! {
    /// Folds one tile of dot products (first centre `k0`; logits are `alpha = 1/τ` times
    /// them) into a noun's statistics. Working in dot units keeps f32 rounding at the scale
    /// of the dots, not of logits as large as 1/τ. The tile's terms are summed relative to its
    /// largest non-max dot `r` and scaled by `e^{α(r − m)}` in f64: f32 exponentials would
    /// otherwise underflow (e^{qx} below e^{-87}) exactly for the confident nouns that matter.
    fn fold_tile(z: &mut [f32], k0: usize, alpha: f32, power: Power, st: &mut RowStats) {
        let mut tile_max = f32::NEG_INFINITY;
        for &v in z.iter() {
            tile_max = tile_max.max(v);
        }
        let mut reference = tile_max;
        if tile_max as f64 > st.max {
            let pos = z.iter().position(|&v| v == tile_max).unwrap_or(0);
            let shift = (st.max - tile_max as f64) * alpha as f64;
            // The old max term (1 before rescaling) joins the non-max sums.
            st.rest = (st.rest + 1.0) * shift.exp();
            st.rest_q = (st.rest_q + 1.0) * (q_of(power) * shift).exp();
            st.max = tile_max as f64;
            st.argmax = (k0 + pos) as u32;
            // The new max is not a "rest" term: drop it and find the largest remaining dot.
            z[pos] = f32::NEG_INFINITY;
            reference = f32::NEG_INFINITY;
            for &v in z.iter() {
                reference = reference.max(v);
            }
            if reference == f32::NEG_INFINITY {
                return;
            }
        }
        // z becomes x = α(z − r) ≤ 0, then the sums of e^x and e^{qx}: simple loops that
        // vectorise (a `match` inside the loop would not).
        for v in z.iter_mut() {
            *v = (*v - reference) * alpha;
        }
        let (s1, sq) = match power {
            Power::One | Power::Inf => {
                let s1 = sum_by(z, exp_nonpos);
                (s1, s1)
            }
            Power::Two => {
                z.iter_mut().for_each(|v| *v = exp_nonpos(*v));
                (sum_by(z, |e| e), sum_by(z, |e| e * e))
            }
            Power::General(q) => (sum_by(z, exp_nonpos), sum_by(z, |x| exp_nonpos(q * x))),
        };
        let offset = (reference as f64 - st.max) * alpha as f64;
        st.rest += s1 as f64 * offset.exp();
        st.rest_q += sq as f64 * (q_of(power) * offset).exp();
    }
}

/// `Σ f(v)` over a slice with 8 partial sums (vectorises, and loses less than a serial sum).
#[inline(always)]
fn sum_by(z: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut s = [0f32; 8];
    let mut chunks = z.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            s[l] += f(c[l]);
        }
    }
    s.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

/// Adds `Σ_k |p_k − 1/K|^q` (or the max, for q = ∞) of one tile to `acc`, where
/// `p_k = e^{α(z_k − m)} / Z` (dots `z`, first centre `k0`), and `p_ĉ = 1/Z`. In f64: the
/// differences `p_k − 1/K` cancel, and f32 rounding of `p_k` would show in the score.
fn fold_uniform_tile<T: Copy + Into<f64>>(
    z: &[T],
    k0: usize,
    alpha: f64,
    st: &RowStats,
    inv_k: f64,
    power: Power,
    acc: &mut f64,
) {
    let argmax_pos = (st.argmax as usize).wrapping_sub(k0);
    let (m, inv_z) = (st.max, 1.0 / (1.0 + st.rest));
    for (j, &v) in z.iter().enumerate() {
        let p = if j == argmax_pos {
            inv_z
        } else {
            ((v.into() - m) * alpha).exp() * inv_z
        };
        let d = (p - inv_k).abs();
        match power {
            Power::Inf => *acc = acc.max(d),
            Power::One => *acc += d,
            Power::Two => *acc += d * d,
            Power::General(q) => *acc += d.powf(q as f64),
        }
    }
}

/// Folds one f64 tile of dot products into a noun's statistics: the precise twin of
/// [`fold_tile`], in scalar f64.
fn fold_tile_f64(z: &[f64], k0: usize, alpha: f64, power: Power, st: &mut RowStats) {
    let tile_max = z.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v));
    let mut skip = usize::MAX;
    if tile_max > st.max {
        let pos = z.iter().position(|&v| v == tile_max).unwrap_or(0);
        let shift = (st.max - tile_max) * alpha;
        st.rest = (st.rest + 1.0) * shift.exp();
        st.rest_q = (st.rest_q + 1.0) * (q_of(power) * shift).exp();
        st.max = tile_max;
        st.argmax = (k0 + pos) as u32;
        skip = pos;
    }
    let q = q_of(power);
    for (j, &v) in z.iter().enumerate() {
        if j != skip {
            let x = (v - st.max) * alpha;
            st.rest += x.exp();
            st.rest_q += (q * x).exp();
        }
    }
}

/// Dot product accumulated in f64.
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
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
    let precise = opts.tau < PRECISE_BELOW_TAU;
    // The precise path normalises in f64 too: f32 rounding of unit vectors moves logits of
    // |z| ≈ 1/τ by ~1e-6.
    let w64 = if precise {
        to_f64_rows(&w, d, opts.normalize)
    } else {
        Vec::new()
    };
    if opts.normalize {
        normalize_rows(&mut w, d);
    }
    let power = Power::new(opts.q);
    let alpha = 1.0 / opts.tau;
    let alpha64 = 1.0 / opts.tau as f64;
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
                nouns64: vec![0.0; if precise { NOUN_BLOCK * d } else { 0 }],
                logits64: vec![0.0; if precise { NOUN_BLOCK * CENTRE_TILE } else { 0 }],
                stats: vec![RowStats::EMPTY; NOUN_BLOCK],
            },
            |scr, (block, ((scores, assignment), confidence))| {
                let rows = scores.len();
                let t = &mut scr.nouns[..rows * d];
                nouns.rows_to_f32(block * NOUN_BLOCK, t);
                let t64 = &mut scr.nouns64[..if precise { rows * d } else { 0 }];
                if precise {
                    t64.copy_from_slice(&to_f64_rows(t, d, opts.normalize));
                }
                if opts.normalize {
                    normalize_rows(t, d);
                }
                let stats = &mut scr.stats[..rows];
                stats.fill(RowStats::EMPTY);
                if precise {
                    for k0 in (0..k).step_by(CENTRE_TILE) {
                        let kt = CENTRE_TILE.min(k - k0);
                        let logits = &mut scr.logits64[..rows * kt];
                        gemm_abt(1.0, t64, &w64[k0 * d..(k0 + kt) * d], rows, kt, d, logits);
                        for (z, st) in logits.chunks_exact(kt).zip(stats.iter_mut()) {
                            fold_tile_f64(z, k0, alpha64, power, st);
                        }
                    }
                } else {
                    for k0 in (0..k).step_by(CENTRE_TILE) {
                        let kt = CENTRE_TILE.min(k - k0);
                        let logits = &mut scr.logits[..rows * kt];
                        gemm_abt(1.0, t, &w[k0 * d..(k0 + kt) * d], rows, kt, d, logits);
                        for (z, st) in logits.chunks_exact_mut(kt).zip(stats.iter_mut()) {
                            fold_tile(z, k0, alpha, power, st);
                        }
                    }
                    // The max dot decides every term e^{α(z_k − m)}, and in f32 it carries the
                    // GEMM's rounding (~1e-7 of a dot near 1, times α = 1/τ). Recompute it in f64
                    // and rescale the sums to it: confident nouns keep f64-like accuracy.
                    for (r, st) in stats.iter_mut().enumerate() {
                        let c = st.argmax as usize;
                        let m = dot_f64(&t[r * d..(r + 1) * d], &w[c * d..(c + 1) * d]);
                        let shift = (st.max - m) * alpha64;
                        st.rest *= shift.exp();
                        st.rest_q *= (q_of(power) * shift).exp();
                        st.max = m;
                    }
                }
                // The uniform target needs p_k for every k: a second pass over the centres.
                let mut uniform_acc = [0f64; NOUN_BLOCK];
                if opts.target == Target::Uniform {
                    let inv_k = 1.0 / k as f64;
                    for k0 in (0..k).step_by(CENTRE_TILE) {
                        let kt = CENTRE_TILE.min(k - k0);
                        if precise {
                            let logits = &mut scr.logits64[..rows * kt];
                            gemm_abt(1.0, t64, &w64[k0 * d..(k0 + kt) * d], rows, kt, d, logits);
                            for (r, z) in logits.chunks_exact(kt).enumerate() {
                                fold_uniform_tile(
                                    z,
                                    k0,
                                    alpha64,
                                    &stats[r],
                                    inv_k,
                                    power,
                                    &mut uniform_acc[r],
                                );
                            }
                            continue;
                        }
                        let logits = &mut scr.logits[..rows * kt];
                        gemm_abt(1.0, t, &w[k0 * d..(k0 + kt) * d], rows, kt, d, logits);
                        for (r, z) in logits.chunks_exact(kt).enumerate() {
                            fold_uniform_tile(
                                z,
                                k0,
                                alpha64,
                                &stats[r],
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
