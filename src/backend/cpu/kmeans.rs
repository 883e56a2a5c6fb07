//! The k-means primitives on the CPU: the assignment step as a blocked GEMM with a fused
//! argmax (the centres are packed once per call; only a block of rows × all centres of inner
//! products ever exists, never N×K), and the per-cluster sums of the update step as parallel
//! partial sums in a fixed order.

use super::gemm::gemm_abt;
use super::packed_gemm::{NR, PackedA, PackedB, gemm_packed};
use super::rows_f32;
use super::vecmath::simd_dispatch;
use crate::kmeans::{AssignOut, Metric};
use crate::matrix::MatrixRef;
use rayon::prelude::*;

/// Rows per rayon task of the assignment (a multiple of the micro-kernel's 6 rows).
const ASSIGN_BLOCK: usize = 96;
/// Rows per rayon task of [`distances`].
const ROW_BLOCK: usize = 256;
/// Members per partial sum of the update.
const SUM_CHUNK: usize = 2048;

/// Scratch buffers of one assignment worker.
struct Scratch {
    rows: Vec<f32>,
    packed: PackedA,
    logits: Vec<f32>,
    best: Vec<(f32, u32)>,
}

simd_dispatch! {
    /// Folds one tile of scores `z_k − h_k` (first centre `k0`) into a row's best
    /// (largest score, lowest index on ties).
    fn fold_best(z: &[f32], h: &[f32], k0: usize, best: &mut (f32, u32)) {
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut chunks = z.chunks_exact(8).zip(h.chunks_exact(8));
        for (zc, hc) in &mut chunks {
            for l in 0..8 {
                lanes[l] = lanes[l].max(zc[l] - hc[l]);
            }
        }
        let mut tile_max = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let tail = z.len() - z.len() % 8;
        for j in tail..z.len() {
            tile_max = tile_max.max(z[j] - h[j]);
        }
        if tile_max > best.0 {
            let pos = (0..z.len()).find(|&j| z[j] - h[j] == tile_max).unwrap_or(0);
            *best = (tile_max, (k0 + pos) as u32);
        }
    }
}

simd_dispatch! {
    /// `acc += row`, widened to f64.
    fn add_to_f64(acc: &mut [f64], row: &[f32]) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v as f64;
        }
    }
}

/// Nearest centre of every row of `x` (validated: finite, `centres` is K×D contiguous f32).
pub(crate) fn assign(x: &MatrixRef<'_>, centres: &[f32], metric: Metric, out: AssignOut<'_>) {
    let d = x.cols();
    let k = centres.len() / d;
    let n = x.rows();
    // Euclidean: argmin ‖x − c‖² = argmax ⟨x, c⟩ − ‖c‖²/2; spherical: argmax ⟨x, c⟩.
    let half_norms: Vec<f32> = match metric {
        Metric::Euclidean => centres
            .chunks_exact(d)
            .map(|c| (0.5 * c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>()) as f32)
            .collect(),
        Metric::Spherical => vec![0.0; k],
    };
    let packed = PackedB::from_rows_transposed(centres, k, d);
    let k_pad = packed.panels() * NR;
    let AssignOut { labels, distances } = out;
    labels[..n]
        .par_chunks_mut(ASSIGN_BLOCK)
        .zip(distances[..n].par_chunks_mut(ASSIGN_BLOCK))
        .enumerate()
        .for_each_init(
            || Scratch {
                rows: Vec::new(),
                packed: PackedA::default(),
                logits: vec![0.0; ASSIGN_BLOCK * k_pad],
                best: vec![(f32::NEG_INFINITY, 0); ASSIGN_BLOCK],
            },
            |scr, (block, (labels, distances))| {
                let rows = labels.len();
                let xb = rows_f32(x, block * ASSIGN_BLOCK, rows, &mut scr.rows);
                let best = &mut scr.best[..rows];
                best.fill((f32::NEG_INFINITY, 0));
                let logits = &mut scr.logits[..rows * k_pad];
                let panels = (0, packed.panels());
                scr.packed.pack(xb, d, rows, d);
                gemm_packed(&scr.packed, &packed, (0, d), panels, logits, k_pad, false);
                for (z, b) in logits.chunks_exact(k_pad).zip(best.iter_mut()) {
                    fold_best(&z[..k], &half_norms, 0, b);
                }
                for (r, &(score, label)) in best.iter().enumerate() {
                    labels[r] = label;
                    distances[r] = match metric {
                        Metric::Spherical => (1.0 - score).max(0.0),
                        Metric::Euclidean => {
                            let row = &xb[r * d..(r + 1) * d];
                            let sq: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
                            (sq - 2.0 * score as f64).max(0.0) as f32
                        }
                    };
                }
            },
        );
}

/// Distances of every row of `x` to each of the C centres into `out` (N×C).
pub(crate) fn distances(x: &MatrixRef<'_>, centres: &[f32], metric: Metric, out: &mut [f32]) {
    let d = x.cols();
    let c = centres.len() / d;
    let n = x.rows();
    let sq_norms: Vec<f32> = centres
        .chunks_exact(d)
        .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() as f32)
        .collect();
    out[..n * c]
        .par_chunks_mut(ROW_BLOCK * c)
        .enumerate()
        .for_each_init(Vec::new, |scratch, (block, out)| {
            let rows = out.len() / c;
            let xb = rows_f32(x, block * ROW_BLOCK, rows, scratch);
            gemm_abt(1.0, xb, centres, rows, c, d, out);
            for (r, o) in out.chunks_exact_mut(c).enumerate() {
                match metric {
                    Metric::Spherical => o.iter_mut().for_each(|v| *v = (1.0 - *v).max(0.0)),
                    Metric::Euclidean => {
                        let row = &xb[r * d..(r + 1) * d];
                        let sq: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
                        for (v, &cn) in o.iter_mut().zip(&sq_norms) {
                            *v = (sq - 2.0 * *v as f64 + cn as f64).max(0.0) as f32;
                        }
                    }
                }
            }
        });
}

/// Per-cluster sums (K×D, f64) and member counts of the rows of `x` under `labels`
/// (validated: every label < K). Members are grouped by cluster in index order and summed in
/// chunks of fixed size in parallel; the partial sums are added in a fixed order, so the
/// result does not depend on the number of threads.
pub(crate) fn cluster_sums(
    x: &MatrixRef<'_>,
    labels: &[u32],
    sums: &mut [f64],
    counts: &mut [u64],
) {
    let d = x.cols();
    let k = counts.len();
    let n = x.rows();
    // Counting sort of row indices by label.
    let mut starts = vec![0usize; k + 1];
    for &l in &labels[..n] {
        starts[l as usize + 1] += 1;
    }
    for c in 0..k {
        starts[c + 1] += starts[c];
    }
    let mut fill = starts.clone();
    let mut members = vec![0u32; n];
    for (i, &l) in labels[..n].iter().enumerate() {
        members[fill[l as usize]] = i as u32;
        fill[l as usize] += 1;
    }
    let mut tasks = Vec::new();
    for c in 0..k {
        for s in (starts[c]..starts[c + 1]).step_by(SUM_CHUNK) {
            tasks.push((c, s, (s + SUM_CHUNK).min(starts[c + 1])));
        }
    }
    let partials: Vec<Vec<f64>> = tasks
        .par_iter()
        .map_init(Vec::new, |scratch, &(_, s, e)| {
            let mut acc = vec![0f64; d];
            for &i in &members[s..e] {
                add_to_f64(&mut acc, rows_f32(x, i as usize, 1, scratch));
            }
            acc
        })
        .collect();
    sums.fill(0.0);
    for (&(c, _, _), p) in tasks.iter().zip(&partials) {
        sums[c * d..(c + 1) * d]
            .iter_mut()
            .zip(p)
            .for_each(|(s, &v)| *s += v);
    }
    for c in 0..k {
        counts[c] = (starts[c + 1] - starts[c]) as u64;
    }
}
