//! CPU building blocks of the CLIP encoders: a multi-threaded GEMM over `matrixmultiply`
//! with a fused bias/activation epilogue, layer norm, quick_gelu, and multi-head attention with
//! an optional causal mask. All buffers are contiguous row-major f32.
//!
//! Threads come from the calling rayon pool (run inside [`crate::Context::install`]).

use super::weights::{Block, Linear, MatrixLayout, Norm};
use crate::backend::cpu::vecmath::{exp_nonpos, simd_dispatch};
use rayon::prelude::*;

/// A row-major matrix operand given by its first element and strides (in elements).
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    /// The elements; `data[i * row_stride + j * col_stride]` is element (i, j).
    pub data: &'a [f32],
    /// Elements between consecutive rows.
    pub row_stride: usize,
    /// Elements between consecutive columns.
    pub col_stride: usize,
}

/// What runs on each output element after `x·W + b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Nothing.
    Identity,
    /// `x · σ(1.702 x)` (OpenAI CLIP's `QuickGELU`).
    QuickGelu,
    /// `x · Φ(x)`, the exact (erf) GELU.
    Gelu,
}

/// A raw output pointer that rayon tasks may share; each task writes a disjoint block.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint blocks of the buffer (see `gemm`), never the same element.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Rows of output below which a GEMM is split by columns instead of rows.
const MIN_ROWS_PER_TASK: usize = 32;
/// Columns per task at least, when splitting by columns.
const MIN_COLS_PER_TASK: usize = 64;

/// `out (m×n, row stride n) = a (m×k) · b (k×n) + bias`, then `act`, on the rayon pool; with
/// `accumulate`, `out += a · b + bias` instead (a residual connection).
///
/// The work is cut into about one block per thread, by rows when there are many, else by
/// columns; each block is one `sgemm` call followed by its epilogue while still in cache.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    bias: Option<&[f32]>,
    act: Activation,
    accumulate: bool,
    out: &mut [f32],
) {
    assert!(out.len() >= m * n, "gemm output too short");
    // With `accumulate`, the bias and activation apply to the product only.
    assert!(!accumulate || act == Activation::Identity);
    if m == 0 || n == 0 {
        return;
    }
    let span = |o: &Operand<'_>, rows: usize, cols: usize| {
        (rows - 1) * o.row_stride + (cols - 1) * o.col_stride + 1
    };
    assert!(k > 0 && a.data.len() >= span(&a, m, k) && b.data.len() >= span(&b, k, n));
    if let Some(bias) = bias {
        assert!(bias.len() >= n);
    }
    let threads = rayon::current_num_threads().max(1);
    let flops = m * n * k;
    let (row_blocks, col_blocks) = if flops < 1 << 18 || threads == 1 {
        (1, 1)
    } else if m >= MIN_ROWS_PER_TASK * threads {
        (threads * 2, 1)
    } else {
        (1, (n / MIN_COLS_PER_TASK).clamp(1, threads * 2))
    };
    let rows_per = m.div_ceil(row_blocks);
    let cols_per = n.div_ceil(col_blocks).next_multiple_of(16).min(n);
    let out_ptr = OutPtr(out.as_mut_ptr());
    let task = |(r0, c0): (usize, usize)| {
        let rows = rows_per.min(m - r0);
        let cols = cols_per.min(n - c0);
        // SAFETY: a and b cover their spans (asserted above); the output block starting at
        // (r0, c0) of rows×cols with row stride n lies inside `out` and no other task writes it.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                k,
                cols,
                1.0,
                a.data.as_ptr().add(r0 * a.row_stride),
                a.row_stride as isize,
                a.col_stride as isize,
                b.data.as_ptr().add(c0 * b.col_stride),
                b.row_stride as isize,
                b.col_stride as isize,
                if accumulate { 1.0 } else { 0.0 },
                out_ptr.get().add(r0 * n + c0),
                n as isize,
                1,
            );
            for r in 0..rows {
                let row =
                    std::slice::from_raw_parts_mut(out_ptr.get().add((r0 + r) * n + c0), cols);
                epilogue(row, bias.map(|b| &b[c0..c0 + cols]), act);
            }
        }
    };
    let blocks: Vec<(usize, usize)> = (0..m)
        .step_by(rows_per)
        .flat_map(|r0| (0..n).step_by(cols_per).map(move |c0| (r0, c0)))
        .collect();
    if blocks.len() == 1 {
        task(blocks[0]);
    } else {
        blocks.into_par_iter().for_each(task);
    }
}

simd_dispatch! {
    /// Adds the bias and applies the activation to one output row.
    fn epilogue(row: &mut [f32], bias: Option<&[f32]>, act: Activation) {
        if let Some(bias) = bias {
            row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        }
        match act {
            Activation::Identity => {}
            Activation::QuickGelu => row.iter_mut().for_each(|v| *v = quick_gelu(*v)),
            Activation::Gelu => row.iter_mut().for_each(|v| *v = gelu(*v)),
        }
    }
}

/// `x · σ(1.702 x)` with an exp that vectorises; σ is formed from `e^{-|t|}` so it never
/// overflows.
#[inline(always)]
pub(crate) fn quick_gelu(x: f32) -> f32 {
    let t = 1.702 * x;
    let e = exp_nonpos(-t.abs());
    let s = if t >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    x * s
}

/// `x · Φ(x)` with `erf` by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let erf_abs = 1.0 - poly * exp_nonpos(-a * a);
    let erf = if z >= 0.0 { erf_abs } else { -erf_abs };
    0.5 * x * (1.0 + erf)
}

/// Parameters of a layer norm over the last dimension.
pub(crate) struct LayerNormParams<'a> {
    /// Scale γ (width).
    pub weight: &'a [f32],
    /// Shift β (width).
    pub bias: &'a [f32],
    /// ε added to the variance.
    pub eps: f32,
}

simd_dispatch! {
    /// Layer-normalises one row (two-pass mean and variance) into `out`.
    fn layer_norm_row(x: &[f32], p: &LayerNormParams<'_>, out: &mut [f32]) {
        let n = x.len() as f32;
        let mut s = [0f32; 8];
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            for l in 0..8 { s[l] += c[l]; }
        }
        let mean = (s.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()) / n;
        let mut s = [0f32; 8];
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            for l in 0..8 { let d = c[l] - mean; s[l] += d * d; }
        }
        let rest: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
        let var = (s.iter().sum::<f32>() + rest) / n;
        let inv = 1.0 / (var + p.eps).sqrt();
        for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(p.weight).zip(p.bias) {
            *o = (v - mean) * inv * g + b;
        }
    }
}

/// Layer-normalises each `width`-wide row of `x` into `out`, rows in parallel.
pub(crate) fn layer_norm(x: &[f32], width: usize, p: &LayerNormParams<'_>, out: &mut [f32]) {
    assert!(p.weight.len() == width && p.bias.len() == width && out.len() >= x.len());
    let rows = x.len() / width;
    let per = 16usize;
    x.par_chunks(width * per)
        .zip(out[..rows * width].par_chunks_mut(width * per))
        .for_each(|(xs, os)| {
            for (xr, or) in xs.chunks_exact(width).zip(os.chunks_exact_mut(width)) {
                layer_norm_row(xr, p, or);
            }
        });
}

simd_dispatch! {
    /// Softmax of `row[..len]` in place, scaling the inputs by `scale` first; `row[len..]` is
    /// set to 0 (the causally masked positions).
    fn softmax_prefix(row: &mut [f32], len: usize, scale: f32) {
        let (live, masked) = row.split_at_mut(len);
        masked.iter_mut().for_each(|v| *v = 0.0);
        let mut m = f32::NEG_INFINITY;
        for &v in live.iter() { m = m.max(v); }
        let mut s = 0f32;
        for v in live.iter_mut() {
            let e = exp_nonpos((*v - m) * scale);
            *v = e;
            s += e;
        }
        let inv = 1.0 / s;
        live.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Multi-head self-attention of `batch` sequences of `seq` tokens.
///
/// `qkv` holds, for each of the `batch·seq` tokens, the row `[q | k | v]` of width `3·width`
/// (heads side by side inside each part, as PyTorch's `MultiheadAttention` lays them out).
/// Writes the concatenated heads, `batch·seq × width`, into `out`. With `causal`, token `i`
/// attends only to tokens `0..=i` of its sequence.
pub(crate) fn attention(
    qkv: &[f32],
    batch: usize,
    seq: usize,
    width: usize,
    heads: usize,
    causal: bool,
    out: &mut [f32],
) {
    let hd = width / heads;
    assert!(hd * heads == width && qkv.len() >= batch * seq * 3 * width);
    assert!(out.len() >= batch * seq * width);
    let scale = 1.0 / (hd as f32).sqrt();
    let out_ptr = OutPtr(out.as_mut_ptr());
    (0..batch * heads).into_par_iter().for_each_init(
        || vec![0f32; seq * seq],
        |scores, bh| {
            let (b, h) = (bh / heads, bh % heads);
            let base = b * seq * 3 * width;
            let q = &qkv[base + h * hd..];
            let k = &qkv[base + width + h * hd..];
            let v = &qkv[base + 2 * width + h * hd..];
            // SAFETY: q, k and v are (seq × hd) blocks with row stride 3·width inside `qkv`
            // (length asserted above); `scores` is seq×seq.
            unsafe {
                matrixmultiply::sgemm(
                    seq,
                    hd,
                    seq,
                    1.0,
                    q.as_ptr(),
                    3 * width as isize,
                    1,
                    k.as_ptr(),
                    1,
                    3 * width as isize,
                    0.0,
                    scores.as_mut_ptr(),
                    seq as isize,
                    1,
                );
            }
            for (i, row) in scores.chunks_exact_mut(seq).enumerate() {
                softmax_prefix(row, if causal { i + 1 } else { seq }, scale);
            }
            // SAFETY: the output block of sequence b, head h (seq rows × hd columns, row
            // stride width) is written by this task only; `v` as above.
            unsafe {
                matrixmultiply::sgemm(
                    seq,
                    seq,
                    hd,
                    1.0,
                    scores.as_ptr(),
                    seq as isize,
                    1,
                    v.as_ptr(),
                    3 * width as isize,
                    1,
                    0.0,
                    out_ptr.get().add(b * seq * width + h * hd),
                    width as isize,
                    1,
                );
            }
        },
    );
}

/// L2-normalises each `width`-wide row in place (a zero row stays zero).
pub(crate) fn l2_normalize_rows(x: &mut [f32], width: usize) {
    for row in x.chunks_exact_mut(width) {
        let ss: f64 = row.iter().map(|&v| v as f64 * v as f64).sum();
        if ss > 0.0 {
            let inv = (1.0 / ss.sqrt()) as f32;
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

impl Linear {
    /// `out (rows × out_dim) = act(x (rows × in_dim) · W + b)`, or `out += x · W + b` with
    /// `accumulate`.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        rows: usize,
        act: Activation,
        accumulate: bool,
        out: &mut [f32],
    ) {
        let (i, o) = (self.in_dim, self.out_dim);
        let b = match self.layout {
            // W is [out, in]: element (k, j) of the k×n operand is W[j, k].
            MatrixLayout::OutIn => Operand {
                data: self.weight.data(),
                row_stride: 1,
                col_stride: i,
            },
            MatrixLayout::InOut => Operand {
                data: self.weight.data(),
                row_stride: o,
                col_stride: 1,
            },
        };
        let a = Operand {
            data: x,
            row_stride: i,
            col_stride: 1,
        };
        let bias = self.bias.as_ref().map(|t| t.data());
        gemm(rows, i, o, a, b, bias, act, accumulate, out);
    }
}

impl Norm {
    /// Layer-normalises the `width`-wide rows of `x` into `out`.
    pub(crate) fn forward(&self, x: &[f32], width: usize, eps: f32, out: &mut [f32]) {
        let p = LayerNormParams {
            weight: self.weight.data(),
            bias: self.bias.data(),
            eps,
        };
        layer_norm(x, width, &p, out);
    }
}

/// Sizes and options of a transformer tower.
#[derive(Clone, Copy)]
pub(crate) struct TowerShape {
    /// Residual width.
    pub width: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width.
    pub intermediate: usize,
    /// MLP non-linearity.
    pub act: Activation,
    /// Layer-norm ε.
    pub eps: f32,
    /// Causal attention mask (text) or none (vision).
    pub causal: bool,
}

/// Work buffers of one forward pass, grown on demand.
#[derive(Default)]
pub(crate) struct Scratch {
    h: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    mlp: Vec<f32>,
}

fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

impl Block {
    /// One pre-LN residual block on `x` (`batch·seq × width`) in place, as CLIP's
    /// `ResidualAttentionBlock` (clip/model.py) and transformers' `CLIPEncoderLayer`:
    /// `x += attn(ln_1(x))`, `x += mlp(ln_2(x))`.
    pub(crate) fn forward(
        &self,
        x: &mut [f32],
        batch: usize,
        seq: usize,
        s: &TowerShape,
        scratch: &mut Scratch,
    ) {
        let rows = batch * seq;
        let w = s.width;
        let h = grow(&mut scratch.h, rows * w);
        self.ln1.forward(x, w, s.eps, h);
        let qkv = grow(&mut scratch.qkv, rows * 3 * w);
        self.qkv.forward(h, rows, Activation::Identity, false, qkv);
        let attn = grow(&mut scratch.attn, rows * w);
        attention(qkv, batch, seq, w, s.heads, s.causal, attn);
        self.out.forward(attn, rows, Activation::Identity, true, x);
        let h = grow(&mut scratch.h, rows * w);
        self.ln2.forward(x, w, s.eps, h);
        let mlp = grow(&mut scratch.mlp, rows * s.intermediate);
        self.fc1.forward(h, rows, s.act, false, mlp);
        self.fc2.forward(mlp, rows, Activation::Identity, true, x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(rng: &mut impl Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
    }

    fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (x as f64 - y).abs())
            .fold(0.0, f64::max)
    }

    /// erf by Simpson's rule on 2/√π·e^{−t²} (error far below 1e-9 for the steps used).
    fn erf64(x: f64) -> f64 {
        let n = 4000;
        let h = x / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(x);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn gemm_matches_f64_for_both_weight_layouts_and_odd_sizes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for &(m, k, n) in &[(1, 5, 3), (7, 33, 130), (197, 65, 77), (3, 300, 1000)] {
            let a = random(&mut rng, m * k);
            let w = random(&mut rng, n * k); // [n, k] as nn.Linear stores it
            let bias = random(&mut rng, n);
            let mut want = vec![0f64; m * n];
            for i in 0..m {
                for j in 0..n {
                    let s: f64 = (0..k)
                        .map(|t| a[i * k + t] as f64 * w[j * k + t] as f64)
                        .sum();
                    want[i * n + j] = s + bias[j] as f64;
                }
            }
            // W as [n, k] (x·Wᵀ) and the same matrix stored transposed as [k, n] (x @ proj).
            let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
            for (b, label) in [
                (
                    Operand {
                        data: &w,
                        row_stride: 1,
                        col_stride: k,
                    },
                    "out×in",
                ),
                (
                    Operand {
                        data: &wt,
                        row_stride: n,
                        col_stride: 1,
                    },
                    "in×out",
                ),
            ] {
                let mut out = vec![f32::NAN; m * n];
                let a_op = Operand {
                    data: &a,
                    row_stride: k,
                    col_stride: 1,
                };
                pool.install(|| {
                    gemm(
                        m,
                        k,
                        n,
                        a_op,
                        b,
                        Some(&bias),
                        Activation::Identity,
                        false,
                        &mut out,
                    )
                });
                let err = max_abs_diff(&out, &want);
                assert!(err < 1e-4 * (k as f64).sqrt(), "{m}×{k}×{n} {label}: {err}");
            }
        }
    }

    #[test]
    fn activations_match_f64() {
        let mut worst_q = 0f64;
        let mut worst_g = 0f64;
        let mut x = -30.0f32;
        while x < 30.0 {
            let xd = x as f64;
            let q = xd / (1.0 + (-1.702 * xd).exp());
            let g = 0.5 * xd * (1.0 + erf64(xd / 2f64.sqrt()));
            worst_q = worst_q.max((quick_gelu(x) as f64 - q).abs() / (1.0 + q.abs()));
            worst_g = worst_g.max((gelu(x) as f64 - g).abs() / (1.0 + g.abs()));
            x += 0.0137;
        }
        assert!(worst_q < 1e-6, "quick_gelu {worst_q}");
        assert!(worst_g < 1e-6, "gelu {worst_g}");
        let mut row = [-100.0f32, 0.0, 100.0];
        epilogue(&mut row, None, Activation::QuickGelu);
        assert_eq!(row, [0.0, 0.0, 100.0]);
    }

    #[test]
    fn layer_norm_matches_f64() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let (rows, width) = (37, 83);
        let x: Vec<f32> = random(&mut rng, rows * width)
            .iter()
            .map(|v| v * 5.0 + 3.0)
            .collect();
        let (g, b) = (random(&mut rng, width), random(&mut rng, width));
        let p = LayerNormParams {
            weight: &g,
            bias: &b,
            eps: 1e-5,
        };
        let mut out = vec![0f32; rows * width];
        layer_norm(&x, width, &p, &mut out);
        let mut want = vec![0f64; rows * width];
        for r in 0..rows {
            let row = &x[r * width..(r + 1) * width];
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / width as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / width as f64;
            for j in 0..width {
                want[r * width + j] =
                    (row[j] as f64 - mean) / (var + 1e-5).sqrt() * g[j] as f64 + b[j] as f64;
            }
        }
        assert!(max_abs_diff(&out, &want) < 1e-5);
    }

    #[test]
    fn attention_matches_f64_with_and_without_causal_mask() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (batch, seq, width, heads) = (3, 13, 20, 4);
        let hd = width / heads;
        let qkv = random(&mut rng, batch * seq * 3 * width);
        for causal in [false, true] {
            let mut out = vec![f32::NAN; batch * seq * width];
            attention(&qkv, batch, seq, width, heads, causal, &mut out);
            let mut want = vec![0f64; batch * seq * width];
            for b in 0..batch {
                for h in 0..heads {
                    let at = |t: usize, part: usize, d: usize| {
                        qkv[(b * seq + t) * 3 * width + part * width + h * hd + d] as f64
                    };
                    for i in 0..seq {
                        let live = if causal { i + 1 } else { seq };
                        let s: Vec<f64> = (0..live)
                            .map(|j| {
                                (0..hd).map(|d| at(i, 0, d) * at(j, 1, d)).sum::<f64>()
                                    / (hd as f64).sqrt()
                            })
                            .collect();
                        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                        for d in 0..hd {
                            want[(b * seq + i) * width + h * hd + d] =
                                (0..live).map(|j| (s[j] - m).exp() / z * at(j, 2, d)).sum();
                        }
                    }
                }
            }
            let err = max_abs_diff(&out, &want);
            assert!(err < 1e-5, "causal={causal}: {err}");
        }
    }

    #[test]
    fn l2_normalize_gives_unit_rows_and_keeps_zero_rows() {
        let mut x = vec![3.0f32, 4.0, 0.0, 0.0];
        l2_normalize_rows(&mut x, 2);
        assert_eq!(x, vec![0.6, 0.8, 0.0, 0.0]);
    }
}
