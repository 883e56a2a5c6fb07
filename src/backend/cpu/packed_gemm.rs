//! A GEMM for operands that are reused many times: the right-hand operand `B` is packed once
//! into panels of [`NR`] columns (each panel stored k-major, padded with zeros past the last
//! column), and the left-hand operand `A` is read in place, row-major with any row stride. The
//! kernels stream many row blocks of images against the same nouns (or centres), so packing
//! `B` once for the whole call removes all per-tile packing. `A` is copied once ([`PackedA`]) into
//! groups of [`MR`] rows interleaved by depth, so the micro-kernel reads it from one pointer.
//!
//! The micro-kernel computes an `MR × NR` (6 × 16) block of `C` in twelve AVX2 registers with
//! FMA; a portable version (the reference, also used on CPUs without AVX2+FMA) does the same
//! sums. Single-threaded: callers parallelise over row blocks, so each output element is
//! always summed in the same order whatever the number of threads.

use super::vecmath::has_avx2_fma;

/// Columns per packed panel (two 8-lane vectors).
pub(crate) const NR: usize = 16;
/// Rows per micro-kernel call.
const MR: usize = 6;
/// Depth per pass: one panel slice of `KC × NR` floats (16 KiB) stays in L1 while every row
/// group of the block streams past it.
const KC: usize = 256;

/// One cache-line-aligned group of `NR` floats.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Lane([f32; NR]);

/// `B` (`k × n`) packed in panels of [`NR`] columns: panel `p` holds, for each `kk < k`, the
/// values `B[kk][p·NR .. p·NR + NR]` (zeros past column `n`).
pub(crate) struct PackedB {
    data: Vec<Lane>,
    k: usize,
    n: usize,
}

impl PackedB {
    /// Packs `B = Rᵀ` for `R` given as `n` rows of length `k` (row-major): the operand of
    /// `A · Rᵀ` (e.g. logits of images against noun rows).
    pub(crate) fn from_rows_transposed(r: &[f32], n: usize, k: usize) -> Self {
        assert!(r.len() >= n * k);
        let panels = n.div_ceil(NR);
        let mut data = vec![Lane([0.0; NR]); panels * k];
        for p in 0..panels {
            let cols = NR.min(n - p * NR);
            let panel = &mut data[p * k..(p + 1) * k];
            for c in 0..cols {
                let row = &r[(p * NR + c) * k..(p * NR + c + 1) * k];
                for (lane, &v) in panel.iter_mut().zip(row) {
                    lane.0[c] = v;
                }
            }
        }
        PackedB { data, k, n }
    }

    /// Packs `B` given row-major as `k` rows of length `n`: the operand of `A · B`.
    pub(crate) fn from_rows(b: &[f32], k: usize, n: usize) -> Self {
        assert!(b.len() >= k * n);
        let panels = n.div_ceil(NR);
        let mut data = vec![Lane([0.0; NR]); panels * k];
        for p in 0..panels {
            let cols = NR.min(n - p * NR);
            for (kk, lane) in data[p * k..(p + 1) * k].iter_mut().enumerate() {
                lane.0[..cols].copy_from_slice(&b[kk * n + p * NR..kk * n + p * NR + cols]);
            }
        }
        PackedB { data, k, n }
    }

    /// Number of panels, `⌈n / NR⌉`.
    pub(crate) fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }
}

/// `A` (`rows × kd`) copied into groups of [`MR`] rows, each stored depth-major (`kd × MR`,
/// the rows of a group side by side; zeros for the missing rows of the last group).
#[derive(Default)]
pub(crate) struct PackedA {
    data: Vec<f32>,
    rows: usize,
    kd: usize,
}

impl PackedA {
    /// Packs `rows` rows of `kd` values of `a` (row `r` starts at `a[r·lda]`), reusing the
    /// buffer.
    pub(crate) fn pack(&mut self, a: &[f32], lda: usize, rows: usize, kd: usize) {
        assert!(rows == 0 || a.len() >= (rows - 1) * lda + kd);
        let groups = rows.div_ceil(MR);
        self.data.resize(groups * MR * kd, 0.0);
        (self.rows, self.kd) = (rows, kd);
        if kd == 0 {
            return;
        }
        for (g, dst) in self.data.chunks_exact_mut(MR * kd).enumerate() {
            let mr = MR.min(rows - g * MR);
            let src = &a[g * MR * lda..];
            for (k, out) in dst.chunks_exact_mut(MR).enumerate() {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = if r < mr { src[r * lda + k] } else { 0.0 };
                }
            }
        }
    }
}

/// `C (=|+=) A · B[k0..k1, panels p0..p1]`.
///
/// `A` is packed with `k1 − k0` columns; `C` receives, for each row `r` of `A` and panel `p`,
/// the `NR` values at `c[r·ldc + (p − p0)·NR ..]` — padding columns included (they come out as
/// zeros when `C` is not accumulated). With `accumulate` the products are added to `C`, else
/// they replace it.
pub(crate) fn gemm_packed(
    a: &PackedA,
    b: &PackedB,
    (k0, k1): (usize, usize),
    (p0, p1): (usize, usize),
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let (rows, kd) = (a.rows, a.kd);
    assert!(k0 <= k1 && k1 <= b.k && k1 - k0 == kd && p0 <= p1 && p1 <= b.panels());
    assert!(ldc >= (p1 - p0) * NR);
    if rows == 0 || p0 == p1 {
        return;
    }
    assert!(c.len() >= (rows - 1) * ldc + (p1 - p0) * NR);
    if kd == 0 {
        if !accumulate {
            for r in 0..rows {
                c[r * ldc..r * ldc + (p1 - p0) * NR].fill(0.0);
            }
        }
        return;
    }
    let fast = has_avx2_fma();
    let ap = &a.data;
    for p in p0..p1 {
        for kc0 in (0..kd).step_by(KC) {
            let kc = KC.min(kd - kc0);
            let panel = &b.data[p * b.k + k0 + kc0..p * b.k + k0 + kc0 + kc];
            let add = accumulate || kc0 > 0;
            for r0 in (0..rows).step_by(MR) {
                let mr = MR.min(rows - r0);
                let a_blk = &ap[(r0 * kd + kc0 * MR)..(r0 * kd + (kc0 + kc) * MR)];
                let c_blk = &mut c[r0 * ldc + (p - p0) * NR..];
                block(fast, mr, kc, a_blk, panel, c_blk, ldc, add);
            }
        }
    }
}

/// One `mr × NR` block (`mr ≤ MR`) over depth `kc`, on the fastest kernel available.
#[allow(clippy::too_many_arguments)]
#[inline]
fn block(
    fast: bool,
    mr: usize,
    kc: usize,
    a: &[f32],
    b: &[Lane],
    c: &mut [f32],
    ldc: usize,
    add: bool,
) {
    debug_assert!(b.len() == kc && a.len() == kc * MR);
    debug_assert!(c.len() >= (mr - 1) * ldc + NR);
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: the CPU has AVX2 and FMA (`fast`); the slice lengths cover everything the
        // kernel reads (`kc × MR` values of `a`, `kc` lanes of `b`) and writes (`mr` rows of
        // `NR` values of `c` at stride `ldc`), as asserted above and by the caller.
        unsafe {
            let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
            match mr {
                6 => avx2::kernel::<6>(kc, a, b, c, ldc, add),
                5 => avx2::kernel::<5>(kc, a, b, c, ldc, add),
                4 => avx2::kernel::<4>(kc, a, b, c, ldc, add),
                3 => avx2::kernel::<3>(kc, a, b, c, ldc, add),
                2 => avx2::kernel::<2>(kc, a, b, c, ldc, add),
                _ => avx2::kernel::<1>(kc, a, b, c, ldc, add),
            }
        }
        return;
    }
    let _ = fast;
    portable(mr, kc, a, b, c, ldc, add);
}

/// The portable micro-kernel (the reference for the AVX2 one).
#[allow(clippy::too_many_arguments)]
fn portable(mr: usize, kc: usize, a: &[f32], b: &[Lane], c: &mut [f32], ldc: usize, add: bool) {
    let mut acc = [[0f32; NR]; MR];
    for (kk, lane) in b.iter().enumerate().take(kc) {
        for (r, acc_r) in acc.iter_mut().enumerate().take(mr) {
            let av = a[kk * MR + r];
            for (o, &bv) in acc_r.iter_mut().zip(&lane.0) {
                *o += av * bv;
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate().take(mr) {
        let out = &mut c[r * ldc..r * ldc + NR];
        if add {
            out.iter_mut().zip(acc_r).for_each(|(o, &v)| *o += v);
        } else {
            out.copy_from_slice(acc_r);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Lane, MR, NR};
    use std::arch::x86_64::*;

    /// `C[M × NR] (=|+=) Σ_k A[·, k] ⊗ B[k]`: two 8-lane accumulators per row.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `a` must be readable for `kc × MR` floats (depth-major,
    /// `M ≤ MR` rows used), `b` for `kc` lanes, and `c` writable for `M` rows of `NR` floats at
    /// stride `ldc`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel<const M: usize>(
        kc: usize,
        a: *const f32,
        b: *const Lane,
        c: *mut f32,
        ldc: usize,
        add: bool,
    ) {
        // SAFETY (whole body): every offset stays inside the extents promised by the caller.
        unsafe {
            let mut lo = [_mm256_setzero_ps(); M];
            let mut hi = [_mm256_setzero_ps(); M];
            for k in 0..kc {
                let bp = b.add(k) as *const f32;
                let b0 = _mm256_load_ps(bp);
                let b1 = _mm256_load_ps(bp.add(8));
                for r in 0..M {
                    let av = _mm256_broadcast_ss(&*a.add(k * MR + r));
                    lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
                    hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
                }
            }
            for r in 0..M {
                let out = c.add(r * ldc);
                if add {
                    lo[r] = _mm256_add_ps(lo[r], _mm256_loadu_ps(out));
                    hi[r] = _mm256_add_ps(hi[r], _mm256_loadu_ps(out.add(8)));
                }
                _mm256_storeu_ps(out, lo[r]);
                _mm256_storeu_ps(out.add(NR / 2), hi[r]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn packed_products_match_f64_on_odd_shapes_and_ranges() {
        let mut s = 7u64;
        for &(rows, k, n, lda_pad) in &[
            (1, 1, 1, 0),
            (13, 300, 37, 3),
            (6, 517, 16, 0),
            (31, 45, 90, 5),
        ] {
            let lda = k + lda_pad;
            let a: Vec<f32> = (0..rows * lda).map(|_| lcg(&mut s)).collect();
            let r: Vec<f32> = (0..n * k).map(|_| lcg(&mut s)).collect();
            // A · Rᵀ over all of k, panels 1.. (or all when there is one).
            let bt = PackedB::from_rows_transposed(&r, n, k);
            let p0 = usize::from(bt.panels() > 1);
            let ldc = (bt.panels() - p0) * NR + 2;
            let mut c = vec![f32::NAN; rows * ldc];
            let mut pa = PackedA::default();
            pa.pack(&a, lda, rows, k);
            gemm_packed(&pa, &bt, (0, k), (p0, bt.panels()), &mut c, ldc, false);
            for i in 0..rows {
                for j in p0 * NR..bt.panels() * NR {
                    let want: f64 = if j < n {
                        (0..k)
                            .map(|kk| a[i * lda + kk] as f64 * r[j * k + kk] as f64)
                            .sum()
                    } else {
                        0.0
                    };
                    let got = c[i * ldc + j - p0 * NR] as f64;
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{rows}×{k}×{n}: ({i},{j}) {got} vs {want}"
                    );
                }
            }
            // C += A2 · R[k0..kb, :], R read as kb × nb row-major, A2 rows × (kb − k0).
            let (kb, nb) = (n, k);
            let b = PackedB::from_rows(&r, kb, nb);
            let k0 = kb / 3;
            let lda2 = kb - k0 + lda_pad;
            let a2: Vec<f32> = (0..rows * lda2).map(|_| lcg(&mut s)).collect();
            let ldc = b.panels() * NR;
            let mut c = vec![1.0f32; rows * ldc];
            pa.pack(&a2, lda2, rows, kb - k0);
            gemm_packed(&pa, &b, (k0, kb), (0, b.panels()), &mut c, ldc, true);
            for i in 0..rows {
                for j in 0..nb {
                    let want: f64 = 1.0
                        + (k0..kb)
                            .map(|kk| a2[i * lda2 + kk - k0] as f64 * r[kk * nb + j] as f64)
                            .sum::<f64>();
                    let got = c[i * ldc + j] as f64;
                    assert!((got - want).abs() < 1e-4, "acc ({i},{j}) {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn portable_and_fast_kernels_agree() {
        let mut s = 3u64;
        let (rows, k, n) = (17, 333, 40);
        let a: Vec<f32> = (0..rows * k).map(|_| lcg(&mut s)).collect();
        let r: Vec<f32> = (0..n * k).map(|_| lcg(&mut s)).collect();
        let b = PackedB::from_rows_transposed(&r, n, k);
        let ldc = b.panels() * NR;
        let mut fast = vec![0f32; rows * ldc];
        let mut slow = vec![0f32; rows * ldc];
        let mut pa = PackedA::default();
        pa.pack(&a, k, rows, k);
        let ap = &pa.data;
        for p in 0..b.panels() {
            for r0 in (0..rows).step_by(MR) {
                let mr = MR.min(rows - r0);
                let panel = &b.data[p * k..(p + 1) * k];
                let a_blk = &ap[r0 * k..(r0 + MR) * k];
                let off = r0 * ldc + p * NR;
                block(
                    has_avx2_fma(),
                    mr,
                    k,
                    a_blk,
                    panel,
                    &mut fast[off..],
                    ldc,
                    false,
                );
                portable(mr, k, a_blk, panel, &mut slow[off..], ldc, false);
            }
        }
        let worst = fast
            .iter()
            .zip(&slow)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "worst {worst}");
    }
}
