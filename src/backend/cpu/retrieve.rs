//! The fused retrieval kernel on the CPU: t̃ = normalize(softmax(x·Tᵀ/τ)·T) per image.
//!
//! Images are cut into blocks (one rayon task each) and streamed against tiles of nouns, as
//! flash attention does. The nouns are packed once, in both layouts the two products need
//! ([`PackedB`]); per tile, the first product fills a block×tile of logits `z = x·t/τ` (τ folded
//! into the image rows); per image the epilogue keeps the running max `m` and the running sum
//! `l = Σ e^{z−m}`, rescales the accumulator when `m` grows, and turns the logits into
//! `e^{z−m}` ≤ 1 in place (vectorised exp); the second product adds those weights times the
//! noun tile to the accumulator. Every exponent is ≤ 0, so no τ overflows; nothing N×M is
//! stored. The softmax denominator cancels in the final normalisation, so `l` is only needed
//! for the weights of the top nouns.
//!
//! Precision: an f32 inner product of width D is off by about √D·2⁻²⁴·|z|, which at τ = 0.001
//! (|z| up to 1000) moves weights by 1e-4. When the logits can exceed [`REFINE_ABOVE`], every
//! noun whose f32 logit comes within [`REFINE_CUT`] of the running max — a superset of those
//! within the cut of the final max, the ones that carry the weight — is remembered; at the end
//! those within the cut of the final max get their logit recomputed from the unrounded inputs
//! with f64 accumulation, and the accumulator and the sum are corrected by the difference of
//! their weights, formed in f64. The rest keep their f32 value: each weighs less than e^-10 of
//! the largest, so their f32 error moves t̃ far below 1e-5 unless thousands of nouns crowd just
//! under that line.

use super::gradnorm::normalize_rows;
use super::packed_gemm::{NR, PackedA, PackedB, gemm_packed};
use super::rows_f32;
use super::vecmath::{exp_sub_sum, simd_dispatch};
use crate::matrix::MatrixRef;
use crate::retrieve::{RetrieveOptions, RetrieveOut};
use rayon::prelude::*;

/// Images per rayon task (a multiple of the micro-kernel's 6 rows). Each packed noun panel
/// comes from memory once per block and is then reused from L1 by all its rows, so blocks are
/// large; the image rows, logits and accumulator are read from L2/L3 at a low rate.
const IMAGE_BLOCK: usize = 192;
/// Nouns per logit tile (a multiple of the packed panel width).
const NOUN_TILE: usize = 256;
/// Logit magnitude above which near-max logits are refined in f64.
const REFINE_ABOVE: f64 = 16.0;
/// Logits within this distance of the running max are refined (weights down to e^-10 ≈ 5e-5
/// of the largest); the rest carry at most e^-10 of the max weight each, times f32 logit error.
const REFINE_CUT: f32 = 10.0;

/// Scratch buffers of one worker.
struct Scratch {
    rows: Vec<f32>,
    scaled: Vec<f32>,
    /// The scaled image rows and the weights of the current tile, packed.
    x_packed: PackedA,
    p_packed: PackedA,
    inv: Vec<f64>,
    /// Per image, the nouns remembered for refinement: (noun, f32 logit).
    cand: Vec<Vec<(u32, f32)>>,
    logits: Vec<f32>,
    acc: Vec<f32>,
    max: Vec<f32>,
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
    /// Calls `f(j, z_j)` for every `z_j ≥ cut`, in order, scanning eight at a time.
    fn for_each_at_least(z: &[f32], cut: f32, f: &mut dyn FnMut(usize, f32)) {
        let mut chunks = z.chunks_exact(8);
        let mut j0 = 0;
        for c in &mut chunks {
            let mut hit = false;
            for &v in c { hit |= v >= cut; }
            if hit {
                for (l, &v) in c.iter().enumerate() {
                    if v >= cut { f(j0 + l, v); }
                }
            }
            j0 += 8;
        }
        for (l, &v) in chunks.remainder().iter().enumerate() {
            if v >= cut { f(j0 + l, v); }
        }
    }
}

/// Inserts `(v, j)` into a sorted top list (best first; ties keep the entry already there,
/// which has the lower noun index) when it beats the last entry.
fn insert_top(top: &mut [(f64, u32)], v: f64, j: u32) {
    let last = top.len() - 1;
    if v > top[last].0 {
        let mut p = last;
        while p > 0 && v > top[p - 1].0 {
            top[p] = top[p - 1];
            p -= 1;
        }
        top[p] = (v, j);
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

/// Asks the CPU to start loading `row` into cache (a hint; no effect off x86-64).
#[inline]
fn prefetch_row(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(16) {
        // SAFETY: prefetching is a hint that never faults; the address is inside `row`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr() as *const i8
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
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
    // The raw nouns (for refinement), their f64 inverse norms, and the (normalised) copy the
    // products use, packed for both.
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
    let (t_logit, t_acc) = rayon::join(
        || PackedB::from_rows_transposed(t, m, d),
        || PackedB::from_rows(t, m, d),
    );
    let d_pad = t_acc.panels() * NR;
    let alpha = 1.0 / opts.tau;
    let alpha64 = 1.0 / opts.tau as f64;
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
                scaled: Vec::new(),
                x_packed: PackedA::default(),
                p_packed: PackedA::default(),
                inv: Vec::new(),
                cand: vec![Vec::new(); IMAGE_BLOCK],
                logits: vec![0.0; IMAGE_BLOCK * NOUN_TILE],
                acc: vec![0.0; IMAGE_BLOCK * d_pad],
                max: vec![0.0; IMAGE_BLOCK],
                sum: vec![0.0; IMAGE_BLOCK],
                top: vec![(f64::NEG_INFINITY, 0); IMAGE_BLOCK * top_n],
            },
            |scr, (block, ((feat, tidx), tw))| {
                let rows = feat.len() / d;
                let x_raw = rows_f32(images, block * IMAGE_BLOCK, rows, &mut scr.rows);
                inv_norms(x_raw, d, &mut scr.inv);
                let x_inv = &scr.inv;
                // The image rows the products use: normalised when asked, times 1/τ.
                scr.scaled.clear();
                scr.scaled.extend_from_slice(x_raw);
                for (row, &inv) in scr.scaled.chunks_exact_mut(d).zip(x_inv) {
                    let s = if opts.normalize {
                        (inv * alpha64) as f32
                    } else {
                        alpha
                    };
                    row.iter_mut().for_each(|v| *v *= s);
                }
                scr.x_packed.pack(&scr.scaled, d, rows, d);
                let x_max_norm = x_inv.iter().fold(0f64, |a, &v| a.max(1.0 / v));
                let bound = if opts.normalize {
                    alpha64
                } else {
                    alpha64 * x_max_norm * t_max_norm
                };
                let refine = bound > REFINE_ABOVE;
                // The logit of image r and noun j from the unrounded inputs, in f64.
                let refined = |r: usize, j: usize| -> f64 {
                    let tj = &t_raw[j * d..(j + 1) * d];
                    let e = dot_f64(&x_raw[r * d..(r + 1) * d], tj) * alpha64;
                    if opts.normalize {
                        e * x_inv[r] * t_inv[j]
                    } else {
                        e
                    }
                };
                let acc = &mut scr.acc[..rows * d_pad];
                acc.fill(0.0);
                let (mx, sm) = (&mut scr.max[..rows], &mut scr.sum[..rows]);
                mx.fill(f32::NEG_INFINITY);
                sm.fill(0.0);
                let top = &mut scr.top[..rows * top_n];
                top.fill((f64::NEG_INFINITY, 0));
                let cands = &mut scr.cand[..rows];
                cands.iter_mut().for_each(Vec::clear);
                for j0 in (0..m).step_by(NOUN_TILE) {
                    let nt = NOUN_TILE.min(m - j0);
                    let panels = (j0 / NR, (j0 + nt).div_ceil(NR));
                    let logits = &mut scr.logits[..rows * NOUN_TILE];
                    gemm_packed(
                        &scr.x_packed,
                        &t_logit,
                        (0, d),
                        panels,
                        logits,
                        NOUN_TILE,
                        false,
                    );
                    for (r, z) in logits.chunks_exact_mut(NOUN_TILE).enumerate() {
                        let z = &mut z[..nt];
                        let tile_max = max_of(z);
                        if tile_max > mx[r] {
                            if mx[r] > f32::NEG_INFINITY {
                                let scale = (mx[r] as f64 - tile_max as f64).exp();
                                sm[r] *= scale;
                                let scale = scale as f32;
                                acc[r * d_pad..(r + 1) * d_pad]
                                    .iter_mut()
                                    .for_each(|v| *v *= scale);
                            }
                            mx[r] = tile_max;
                            if refine {
                                let cut = tile_max - REFINE_CUT;
                                cands[r].retain(|&(_, v)| v >= cut);
                            }
                        }
                        let cand_cut = if refine {
                            mx[r] - REFINE_CUT
                        } else {
                            f32::INFINITY
                        };
                        let top_r = &mut top[r * top_n..(r + 1) * top_n];
                        let top_cut = top_r.last().map_or(f32::INFINITY, |&(v, _)| v as f32);
                        let cand_r = &mut cands[r];
                        for_each_at_least(z, cand_cut.min(top_cut), &mut |j, v| {
                            let j = (j0 + j) as u32;
                            if v >= cand_cut {
                                cand_r.push((j, v));
                            }
                            if !top_r.is_empty() {
                                insert_top(top_r, v as f64, j);
                            }
                        });
                        sm[r] += exp_sub_sum(z, mx[r]) as f64;
                    }
                    scr.p_packed.pack(logits, NOUN_TILE, rows, nt);
                    gemm_packed(
                        &scr.p_packed,
                        &t_acc,
                        (j0, j0 + nt),
                        (0, t_acc.panels()),
                        acc,
                        d_pad,
                        true,
                    );
                }
                let mut fixed: Vec<(u32, f32, f64)> = Vec::new();
                let mut best: Vec<(f64, u32)> = Vec::new();
                for r in 0..rows {
                    let a = &mut acc[r * d_pad..r * d_pad + d];
                    let mut mr = mx[r] as f64;
                    let mut l = sm[r];
                    fixed.clear();
                    if refine {
                        // Swap the f32 weight of every noun near the final max for its f64 one.
                        let cut = mx[r] - REFINE_CUT;
                        for &(j, z) in cands[r].iter().filter(|&&(_, z)| z >= cut) {
                            fixed.push((j, z, 0.0));
                        }
                        for i in 0..fixed.len() {
                            if let Some(&(next, _, _)) = fixed.get(i + 1) {
                                prefetch_row(&t_raw[next as usize * d..(next as usize + 1) * d]);
                            }
                            fixed[i].2 = refined(r, fixed[i].0 as usize);
                        }
                        let m_ref = fixed.iter().fold(mr, |a, &(_, _, e)| a.max(e));
                        if m_ref > mr {
                            let s = (mr - m_ref).exp();
                            l *= s;
                            a.iter_mut().for_each(|v| *v *= s as f32);
                            mr = m_ref;
                        }
                        for &(j, z, e) in &fixed {
                            let delta = (e - mr).exp() - (z as f64 - mr).exp();
                            l += delta;
                            // t_j is the raw row (just read by the refinement, so in cache)
                            // scaled to unit norm when normalising.
                            let s = if opts.normalize {
                                delta * t_inv[j as usize]
                            } else {
                                delta
                            };
                            let tj = &t_raw[j as usize * d..(j as usize + 1) * d];
                            a.iter_mut().zip(tj).for_each(|(o, &v)| *o += s as f32 * v);
                        }
                    }
                    let norm = a
                        .iter()
                        .map(|&v| (v as f64) * (v as f64))
                        .sum::<f64>()
                        .sqrt();
                    let inv = if norm > 0.0 { (1.0 / norm) as f32 } else { 0.0 };
                    feat[r * d..(r + 1) * d]
                        .iter_mut()
                        .zip(a.iter())
                        .for_each(|(o, &v)| *o = v * inv);
                    if top_n == 0 {
                        continue;
                    }
                    // The best nouns by refined logit: the refined ones and the f32 top list
                    // (refined too when refining), best first, ties to the lower index.
                    best.clear();
                    best.extend(fixed.iter().map(|&(j, _, e)| (e, j)));
                    for &(v, j) in &top[r * top_n..(r + 1) * top_n] {
                        if v == f64::NEG_INFINITY || fixed.iter().any(|f| f.0 == j) {
                            continue;
                        }
                        best.push((if refine { refined(r, j as usize) } else { v }, j));
                    }
                    best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                    for (s, &(v, j)) in best.iter().take(top_n).enumerate() {
                        tidx[r * top_n + s] = j;
                        tw[r * top_n + s] = ((v - mr).exp() / l) as f32;
                    }
                }
            },
        );
}
