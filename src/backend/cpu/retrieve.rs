//! The fused retrieval kernel on the CPU: t̃ = normalize(softmax(x·Tᵀ/τ)·T) per image.
//!
//! Images are cut into blocks (one rayon task each) and streamed against tiles of nouns, as
//! flash attention does: `gemm_abt` fills a block×tile of logits; per image the epilogue keeps
//! the running max `m` and the running sum `l = Σ e^{z−m}`, rescales the accumulator when `m`
//! grows, and turns the logits into `e^{z−m}` ≤ 1 in place; a second GEMM adds those weights
//! times the noun tile to the accumulator. Every exponent is ≤ 0, so no τ overflows; nothing
//! N×M is stored. The softmax denominator cancels in the final normalisation, so `l` is only
//! needed for the weights of the top nouns.
//!
//! Precision: an f32 inner product of width D is off by about √D·2⁻²⁴·|z|, which at τ = 0.001
//! (|z| up to 1000) moves weights by 1e-4. When the logits can exceed [`REFINE_ABOVE`], the
//! logits within [`REFINE_CUT`] of the running max — the ones that carry the weight — are
//! recomputed from the unrounded inputs with f64 accumulation, and weights are formed from f64
//! differences to the max. The rest keep their f32 value: each weighs less than e^-10 of the
//! largest, so their f32 error moves t̃ far below 1e-5 unless thousands of nouns crowd just
//! under that line.

use super::gemm::{gemm_ab_acc, gemm_abt};
use super::gradnorm::normalize_rows;
use super::rows_f32;
use super::vecmath::{exp_nonpos, simd_dispatch};
use crate::matrix::MatrixRef;
use crate::retrieve::{RetrieveOptions, RetrieveOut};
use rayon::prelude::*;

/// Images per rayon task.
const IMAGE_BLOCK: usize = 128;
/// Nouns per logit tile.
const NOUN_TILE: usize = 256;
/// Logit magnitude above which near-max logits are refined in f64.
const REFINE_ABOVE: f64 = 16.0;
/// Logits within this distance of the running max are refined (weights down to e^-10 ≈ 5e-5
/// of the largest); the rest carry at most e^-10 of the max weight each, times f32 logit error.
const REFINE_CUT: f32 = 10.0;

/// Scratch buffers of one worker.
struct Scratch {
    rows: Vec<f32>,
    normed: Vec<f32>,
    inv: Vec<f64>,
    cand: Vec<(usize, f64)>,
    logits: Vec<f32>,
    acc: Vec<f32>,
    max: Vec<f64>,
    sum: Vec<f64>,
    /// Per image, the best `top_n` (logit, noun) pairs, best first.
    top: Vec<(f64, u32)>,
}

simd_dispatch! {
    /// Largest element of a slice.
    fn max_of(z: &[f32]) -> f32 {
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut chunks = z.chunks_exact(8);
        for c in &mut chunks {
            for l in 0..8 { lanes[l] = lanes[l].max(c[l]); }
        }
        let m = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        chunks.remainder().iter().copied().fold(m, f32::max)
    }
}

simd_dispatch! {
    /// Replaces each `z` by `e^{z−m}` (all `z ≤ m`) and returns their sum.
    fn exp_shift_sum(z: &mut [f32], m: f32) -> f32 {
        let mut lanes = [0f32; 8];
        let mut chunks = z.chunks_exact_mut(8);
        for c in &mut chunks {
            for l in 0..8 {
                let e = exp_nonpos(c[l] - m);
                c[l] = e;
                lanes[l] += e;
            }
        }
        let mut s = 0f32;
        for v in chunks.into_remainder() {
            *v = exp_nonpos(*v - m);
            s += *v;
        }
        lanes.iter().sum::<f32>() + s
    }
}

/// Merges one tile of logits `m + z_j` (first noun `j0`) into a sorted top list (best first;
/// ties keep the lower noun index, which is seen first).
fn update_top(z: &[f32], m: f64, j0: usize, top: &mut [(f64, u32)]) {
    let last = top.len() - 1;
    for (j, &d) in z.iter().enumerate() {
        let v = m + d as f64;
        if v > top[last].0 {
            let mut p = last;
            while p > 0 && v > top[p - 1].0 {
                top[p] = top[p - 1];
                p -= 1;
            }
            top[p] = (v, (j0 + j) as u32);
        }
    }
}

simd_dispatch! {
    /// Inner product of two f32 rows accumulated in f64.
    fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
        let mut lanes = [0f64; 8];
        let mut chunks = a.chunks_exact(8).zip(b.chunks_exact(8));
        for (x, y) in &mut chunks {
            for l in 0..8 { lanes[l] += x[l] as f64 * y[l] as f64; }
        }
        let tail = a.len() - a.len() % 8;
        let mut s = 0f64;
        for j in tail..a.len() { s += a[j] as f64 * b[j] as f64; }
        lanes.iter().sum::<f64>() + s
    }
}

/// `1/‖row‖` in f64 of each row of a contiguous buffer.
fn inv_norms(buf: &[f32], d: usize, out: &mut Vec<f64>) {
    out.clear();
    out.extend(buf.chunks_exact(d).map(|r| {
        let ss: f64 = r.iter().map(|&v| (v as f64) * (v as f64)).sum();
        1.0 / ss.sqrt()
    }));
}

/// Retrieval of every image against every noun (validated inputs) into `out`.
pub(crate) fn retrieve(
    images: &MatrixRef<'_>,
    nouns: &MatrixRef<'_>,
    opts: &RetrieveOptions,
    out: RetrieveOut<'_>,
) {
    let d = images.cols();
    let m = nouns.rows();
    let n = images.rows();
    let top_n = opts.top_n;
    // The raw nouns (for refinement), their f64 inverse norms and the normalised copy the
    // GEMMs use.
    let t_raw = nouns.to_f32_vec();
    let mut t_inv = Vec::new();
    inv_norms(&t_raw, d, &mut t_inv);
    let t_max_norm = t_inv.iter().fold(0f64, |a, &v| a.max(1.0 / v));
    let t_norm: Option<Vec<f32>> = opts.normalize.then(|| {
        let mut t = t_raw.clone();
        normalize_rows(&mut t, d);
        t
    });
    let t = t_norm.as_deref().unwrap_or(&t_raw);
    let alpha = 1.0 / opts.tau;
    let RetrieveOut {
        features,
        top_indices,
        top_weights,
    } = out;
    let feature_blocks = features[..n * d].par_chunks_mut(IMAGE_BLOCK * d);
    // Top outputs may be empty (top_n = 0): give every block an empty slice then.
    let (ti, tw) = (&mut top_indices[..n * top_n], &mut top_weights[..n * top_n]);
    let top_chunk = (IMAGE_BLOCK * top_n).max(1);
    let blocks = n.div_ceil(IMAGE_BLOCK);
    let mut ti_blocks: Vec<&mut [u32]> = ti.chunks_mut(top_chunk).collect();
    let mut tw_blocks: Vec<&mut [f32]> = tw.chunks_mut(top_chunk).collect();
    ti_blocks.resize_with(blocks, Default::default);
    tw_blocks.resize_with(blocks, Default::default);
    feature_blocks
        .zip(ti_blocks.into_par_iter())
        .zip(tw_blocks.into_par_iter())
        .enumerate()
        .for_each_init(
            || Scratch {
                rows: Vec::new(),
                normed: Vec::new(),
                inv: Vec::new(),
                cand: Vec::new(),
                logits: vec![0.0; IMAGE_BLOCK * NOUN_TILE],
                acc: vec![0.0; IMAGE_BLOCK * d],
                max: vec![0.0; IMAGE_BLOCK],
                sum: vec![0.0; IMAGE_BLOCK],
                top: vec![(f64::NEG_INFINITY, 0); IMAGE_BLOCK * top_n],
            },
            |scr, (block, ((feat, tidx), tw))| {
                let rows = feat.len() / d;
                let x_raw = rows_f32(images, block * IMAGE_BLOCK, rows, &mut scr.rows);
                inv_norms(x_raw, d, &mut scr.inv);
                let x_inv = &scr.inv;
                let xb: &[f32] = if opts.normalize {
                    scr.normed.clear();
                    scr.normed.extend_from_slice(x_raw);
                    normalize_rows(&mut scr.normed, d);
                    &scr.normed
                } else {
                    x_raw
                };
                // Refinement: logits as computed from the raw rows, in f64.
                let (x_scale, t_scale) = if opts.normalize {
                    (Some(x_inv.as_slice()), Some(t_inv.as_slice()))
                } else {
                    (None, None)
                };
                let x_max_norm = x_inv.iter().fold(0f64, |a, &v| a.max(1.0 / v));
                let bound = if opts.normalize {
                    alpha as f64
                } else {
                    alpha as f64 * x_max_norm * t_max_norm
                };
                let refine = bound > REFINE_ABOVE;
                let acc = &mut scr.acc[..rows * d];
                acc.fill(0.0);
                let (mx, sm) = (&mut scr.max[..rows], &mut scr.sum[..rows]);
                mx.fill(f64::NEG_INFINITY);
                sm.fill(0.0);
                let top = &mut scr.top[..rows * top_n];
                top.fill((f64::NEG_INFINITY, 0));
                let cand = &mut scr.cand;
                for j0 in (0..m).step_by(NOUN_TILE) {
                    let nt = NOUN_TILE.min(m - j0);
                    let tile = &t[j0 * d..(j0 + nt) * d];
                    let logits = &mut scr.logits[..rows * nt];
                    gemm_abt(alpha, xb, tile, rows, nt, d, logits);
                    for (r, z) in logits.chunks_exact_mut(nt).enumerate() {
                        let m_old = mx[r];
                        let tile_max = max_of(z);
                        let mut m_new = m_old.max(tile_max as f64);
                        cand.clear();
                        if refine {
                            let cut = (m_new as f32) - REFINE_CUT;
                            let xr = &x_raw[r * d..(r + 1) * d];
                            for (j, &v) in z.iter().enumerate() {
                                if v >= cut {
                                    let tj = &t_raw[(j0 + j) * d..(j0 + j + 1) * d];
                                    let mut e = dot_f64(xr, tj) * alpha as f64;
                                    if let (Some(xs), Some(ts)) = (x_scale, t_scale) {
                                        e *= xs[r] * ts[j0 + j];
                                    }
                                    cand.push((j, e));
                                }
                            }
                            m_new = cand.iter().fold(m_old, |a, &(_, e)| a.max(e));
                        }
                        if m_new > m_old {
                            if m_old > f64::NEG_INFINITY {
                                let scale = (m_old - m_new).exp();
                                sm[r] *= scale;
                                let scale = scale as f32;
                                acc[r * d..(r + 1) * d].iter_mut().for_each(|v| *v *= scale);
                            }
                            mx[r] = m_new;
                        }
                        let mf = mx[r] as f32;
                        z.iter_mut().for_each(|v| *v = (*v - mf).min(0.0));
                        for &(j, e) in cand.iter() {
                            z[j] = (e - mx[r]) as f32;
                        }
                        if top_n > 0 {
                            update_top(z, mx[r], j0, &mut top[r * top_n..(r + 1) * top_n]);
                        }
                        sm[r] += exp_shift_sum(z, 0.0) as f64;
                    }
                    gemm_ab_acc(logits, tile, rows, nt, d, acc);
                }
                for r in 0..rows {
                    let a = &acc[r * d..(r + 1) * d];
                    let norm = a
                        .iter()
                        .map(|&v| (v as f64) * (v as f64))
                        .sum::<f64>()
                        .sqrt();
                    let inv = if norm > 0.0 { (1.0 / norm) as f32 } else { 0.0 };
                    feat[r * d..(r + 1) * d]
                        .iter_mut()
                        .zip(a)
                        .for_each(|(o, &v)| *o = v * inv);
                    for (s, &(z, j)) in top[r * top_n..(r + 1) * top_n].iter().enumerate() {
                        tidx[r * top_n + s] = j;
                        tw[r * top_n + s] = ((z - mx[r]).exp() / sm[r]) as f32;
                    }
                }
            },
        );
}
