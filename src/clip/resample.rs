//! Pillow's bicubic resampling of 8-bit RGB images, bit for bit: the resize that
//! `Image.resize(size, Image.BICUBIC)` computes (Pillow's `libImaging/Resample.c`), restricted to
//! a window of the output.
//!
//! Pillow resamples in two separable passes, each rounded to 8 bits (the order is in
//! [`resize_window`]); a pass is skipped when its side keeps its length. Each output
//! sample is a weighted sum over the input samples within the filter's support (±2 input pixels,
//! widened by the scale when shrinking) around its centre `(i + 0.5) · in / out`; the weights
//! are the Catmull-Rom kernel (a = −0.5), normalised to sum to 1, then rounded to fixed point
//! with 22 fractional bits. A pass adds `2^21`, shifts right by 22 and clips to 0…255, so the
//! intermediate image is 8-bit as well. Every one of those roundings is reproduced here; a
//! float convolution, or fixed point with fewer bits, differs from PIL by a level on a fair
//! share of the pixels.
//!
//! Each output pixel depends only on its own index in the full output, so a window of the
//! output (a centre crop) costs only its own pixels and equals the same window of the full
//! resize.
//!
//! The sums are Pillow's `int` sums exactly, so they vectorise without changing a bit: with
//! AVX2 (detected at run time) the horizontal pass multiplies 16-bit pixel pairs by the
//! weights split into 16-bit halves (`vpmaddwd`), and the vertical pass multiplies 8 samples
//! of a row by one weight in `i32` lanes (`vpmulld`); the portable loops compute the same
//! bytes, and a randomized test holds the two to each other.

use super::preprocess::Rgb8Image;
use std::ops::Range;

/// Fractional bits of the fixed-point weights (Pillow's `PRECISION_BITS`, `32 − 8 − 2`).
const PRECISION_BITS: u32 = 22;

/// Pillow's bicubic kernel (`bicubic_filter`, a = −0.5); support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point weights of a window of output samples along one axis.
#[derive(Debug)]
struct Taps {
    /// Per output sample: the first input sample it reads and how many it reads.
    spans: Vec<(usize, usize)>,
    /// Per output sample, `stride` weights, of which the first `spans[i].1` are used; the
    /// rest are 0.
    weights: Vec<i32>,
    /// Weights reserved per output sample: a multiple of 4, and at least any span, so that
    /// every span rounded up to a multiple of 4 stays within its own sample's weights.
    stride: usize,
}

impl Taps {
    /// The weights of output samples `first..first + count` of a resize of `in_size` samples
    /// to `out_size` (Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc`, with the box
    /// being the whole input).
    fn new(in_size: usize, out_size: usize, first: usize, count: usize) -> Taps {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = 2.0 * filter_scale;
        // Pillow reserves `2 · ⌈support⌉ + 1` (no span is longer).
        let stride = (support.ceil() as usize * 2 + 1).next_multiple_of(4);
        let inv = 1.0 / filter_scale;
        let mut spans = Vec::with_capacity(count);
        let mut weights = vec![0i32; count * stride];
        let mut w = vec![0f64; stride];
        for (i, out) in (first..first + count).zip(weights.chunks_exact_mut(stride)) {
            let center = (i as f64 + 0.5) * scale;
            // C's (int) cast truncates; negatives clamp to 0 either way.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = hi - lo;
            let mut total = 0.0;
            for (x, wx) in w[..n].iter_mut().enumerate() {
                *wx = bicubic(((x + lo) as f64 - center + 0.5) * inv);
                total += *wx;
            }
            for (o, &wx) in out.iter_mut().zip(&w[..n]) {
                let wx = if total != 0.0 { wx / total } else { wx };
                let fixed = wx * (1u32 << PRECISION_BITS) as f64;
                // Rounded half away from zero, as Pillow's `(int)(±0.5 + w · 2^22)`.
                *o = if wx < 0.0 { fixed - 0.5 } else { fixed + 0.5 } as i32;
            }
            spans.push((lo, n));
        }
        Taps {
            spans,
            weights,
            stride,
        }
    }

    /// The weights of output sample `i` of the window, with the first input sample they read.
    fn of(&self, i: usize) -> (usize, &[i32]) {
        let (lo, n) = self.spans[i];
        (lo, &self.weights[i * self.stride..][..n])
    }

    /// The input samples that the whole window reads.
    fn input_range(&self) -> Range<usize> {
        let lo = self.spans.iter().map(|s| s.0).min().unwrap_or(0);
        let hi = self.spans.iter().map(|s| s.0 + s.1).max().unwrap_or(0);
        lo..hi
    }
}

/// Rounds a fixed-point sum to 8 bits as Pillow's `clip8` does (the sum already holds the
/// `2^21` rounding term): arithmetic shift, then clip.
#[inline(always)]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The rounding term every sum starts from.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// The inner loops, in portable code or with AVX2; both give the same bytes (the sums are
/// the same `i32` sums, wrapping alike, and the AVX2 clip saturates exactly as [`clip8`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernels {
    /// Portable scalar loops.
    Scalar,
    /// Explicit AVX2 loops (only when the CPU has AVX2).
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernels {
    /// The fastest kernels the running CPU supports.
    fn best() -> Kernels {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Kernels::Avx2;
        }
        Kernels::Scalar
    }

    /// Output pixel `i` of the horizontal pass in portable code: `row` holds the source row
    /// (packed RGB), its first pixel being column `x0`.
    #[inline]
    fn horizontal_pixel(row: &[u8], x0: usize, taps: &Taps, i: usize, px: &mut [u8]) {
        let (lo, k) = taps.of(i);
        let src = &row[3 * (lo - x0)..][..3 * k.len()];
        for (c, v) in px.iter_mut().enumerate() {
            // Pillow sums in `int`: 255 · Σ|w| · 2^22 stays below 2^31 for this kernel.
            let sum = src
                .iter()
                .skip(c)
                .step_by(3)
                .zip(k)
                .fold(HALF, |s, (&p, &w)| {
                    s.wrapping_add(i32::from(p).wrapping_mul(w))
                });
            *v = clip8(sum);
        }
    }

    /// One row of the horizontal pass in portable code: `row` holds the source row (packed
    /// RGB), its first pixel being column `x0`; `out` receives one RGB pixel per output
    /// sample of `taps`.
    fn horizontal_row_scalar(row: &[u8], x0: usize, taps: &Taps, out: &mut [u8]) {
        for (i, px) in out.chunks_exact_mut(3).enumerate() {
            Kernels::horizontal_pixel(row, x0, taps, i, px);
        }
    }

    /// One row of the vertical pass: `rows[t]` is the source row weighed by `k[t]` (the same
    /// `out.len()` bytes of each). `acc` is scratch of `out.len()` for the scalar loop.
    fn vertical_row(self, rows: &[&[u8]], k: &[i32], acc: &mut [i32], out: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        let done = match self {
            // SAFETY: the CPU has AVX2 (`Kernels::Avx2` is made only when it does).
            Kernels::Avx2 => unsafe { avx2::vertical_row(rows, k, out) },
            Kernels::Scalar => 0,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        let (acc, out) = (&mut acc[done..out.len()], &mut out[done..]);
        acc.fill(HALF);
        for (src, &w) in rows.iter().zip(k) {
            for (a, &p) in acc.iter_mut().zip(&src[done..]) {
                *a = a.wrapping_add(i32::from(p).wrapping_mul(w));
            }
        }
        for (o, &a) in out.iter_mut().zip(acc.iter()) {
            *o = clip8(a);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{HALF, PRECISION_BITS, Taps};
    use std::arch::x86_64::*;

    /// Eight fixed-point sums (holding the rounding term) shifted to integers. Packing them
    /// with signed saturation to `i16` (lossless: they are within ±2^9) and then unsigned to
    /// `u8` clips them exactly as [`super::clip8`].
    #[target_feature(enable = "avx2")]
    #[inline]
    fn shift(sum: __m256i) -> __m256i {
        _mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(sum)
    }

    /// Eight bytes of `r` from `at`, widened to `i32` lanes.
    ///
    /// # Safety
    /// `at + 8 ≤ r.len()`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn load8(r: &[u8], at: usize) -> __m256i {
        debug_assert!(at + 8 <= r.len());
        // SAFETY: the caller keeps the 8 bytes inside `r`.
        _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(r.as_ptr().add(at).cast()) })
    }

    /// Bits of a weight's low half: a weight `k` is `kh · 2^11 + kl` with `0 ≤ kl < 2^11`.
    const LOW_BITS: i32 = 11;

    /// The weights of [`Taps`] split into 16-bit halves for `vpmaddwd`, laid out for
    /// [`horizontal_row`]: per output sample, per group of 4 taps (the last padded with 0),
    /// 16 high halves `[kh0 kh1]×4 [kh2 kh3]×4`, then the 16 low halves alike.
    pub(super) struct SplitTaps {
        wide: Vec<i16>,
        /// Groups reserved per output sample.
        groups: usize,
    }

    impl SplitTaps {
        /// The split weights, or `None` if a weight's high half does not fit 16 bits (never
        /// for the bicubic kernel, whose weights stay below 2^23).
        pub(super) fn new(taps: &Taps) -> Option<SplitTaps> {
            let groups = taps.stride / 4;
            let mut wide = vec![0i16; taps.spans.len() * groups * 32];
            for (i, w) in wide.chunks_exact_mut(groups * 32).enumerate() {
                let padded = &taps.weights[i * taps.stride..][..taps.stride];
                for (t, &k) in padded.iter().enumerate() {
                    let high = i16::try_from(k >> LOW_BITS).ok()?;
                    let low = (k & ((1 << LOW_BITS) - 1)) as i16;
                    let at = 32 * (t / 4) + 8 * (t % 4 / 2) + t % 2;
                    for rep in 0..4 {
                        w[at + 2 * rep] = high;
                        w[at + 16 + 2 * rep] = low;
                    }
                }
            }
            Some(SplitTaps { wide, groups })
        }
    }

    /// [`super::Kernels::horizontal_row_scalar`] with AVX2: per output pixel, 4 input pixels
    /// at a time (one 16-byte load, 12 bytes used), widened to 16 bits with each channel's two
    /// neighbouring taps side by side, then `vpmaddwd` with the high and the low halves of the
    /// weights. The sums are the scalar ones modulo 2^32: `Σ k·p = 2^11 · Σ kh·p + Σ kl·p`,
    /// and no 16-bit product pair overflows (|kh·p| < 2^15 · 2^8). The last output pixels,
    /// whose loads would run past the end of `row`, take the scalar path.
    #[target_feature(enable = "avx2")]
    pub(super) fn horizontal_row(
        row: &[u8],
        x0: usize,
        taps: &Taps,
        split: &SplitTaps,
        out: &mut [u8],
    ) {
        let half = _mm_set1_epi32(HALF);
        // RGB of taps 0–3 → (R0 R1 G0 G1 B0 B1 0 0) (R2 R3 G2 G3 B2 B3 0 0).
        let pairs = _mm_setr_epi8(0, 3, 1, 4, 2, 5, -1, -1, 6, 9, 7, 10, 8, 11, -1, -1);
        for (i, px) in out.chunks_exact_mut(3).enumerate() {
            let (lo, n) = taps.spans[i];
            let groups = n.div_ceil(4);
            let start = 3 * (lo - x0);
            // The last load reads 16 bytes from `start + 12 · (groups − 1)`.
            if start + 12 * groups + 4 > row.len() {
                super::Kernels::horizontal_pixel(row, x0, taps, i, px);
                continue;
            }
            // Bounds-checked once: every load below lies inside `src` and `w`.
            let src = &row[start..][..12 * groups + 4];
            let w = &split.wide[i * split.groups * 32..][..32 * groups];
            let (mut high, mut low) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for g in 0..groups {
                // SAFETY: 12·g + 16 ≤ src.len() and 32·g + 32 ≤ w.len().
                let (p, wh, wl) = unsafe {
                    (
                        _mm_loadu_si128(src.as_ptr().add(12 * g).cast()),
                        _mm256_loadu_si256(w.as_ptr().add(32 * g).cast()),
                        _mm256_loadu_si256(w.as_ptr().add(32 * g + 16).cast()),
                    )
                };
                let p = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(p, pairs));
                high = _mm256_add_epi32(high, _mm256_madd_epi16(p, wh));
                low = _mm256_add_epi32(low, _mm256_madd_epi16(p, wl));
            }
            let acc = _mm256_add_epi32(_mm256_slli_epi32::<LOW_BITS>(high), low);
            let s = _mm_add_epi32(
                _mm256_castsi256_si128(acc),
                _mm256_extracti128_si256::<1>(acc),
            );
            let s = _mm_srai_epi32::<{ PRECISION_BITS as i32 }>(_mm_add_epi32(s, half));
            let s = _mm_packus_epi16(_mm_packs_epi32(s, s), s);
            let rgb = (_mm_cvtsi128_si32(s) as u32).to_le_bytes();
            px.copy_from_slice(&rgb[..3]);
        }
    }

    /// [`super::Kernels::vertical_row`] with AVX2, 32 bytes at a time, then 8; returns how
    /// many leading bytes of `out` it wrote.
    #[target_feature(enable = "avx2")]
    pub(super) fn vertical_row(rows: &[&[u8]], k: &[i32], out: &mut [u8]) -> usize {
        let len = out.len();
        assert!(rows.len() >= k.len() && rows[..k.len()].iter().all(|r| r.len() >= len));
        let half = _mm256_set1_epi32(HALF);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let mut x = 0;
        while x + 32 <= len {
            let mut acc = [half; 4];
            for (r, &w) in rows.iter().zip(k) {
                let w = _mm256_set1_epi32(w);
                for (q, a) in acc.iter_mut().enumerate() {
                    // SAFETY: x + 32 ≤ len, and every row holds at least `len` bytes.
                    let p = unsafe { load8(r, x + 8 * q) };
                    *a = _mm256_add_epi32(*a, _mm256_mullo_epi32(p, w));
                }
            }
            let [a, b, c, d] = [shift(acc[0]), shift(acc[1]), shift(acc[2]), shift(acc[3])];
            let v = _mm256_packus_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
            let v = _mm256_permutevar8x32_epi32(v, order);
            // SAFETY: x + 32 ≤ len = out.len().
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(x).cast(), v) };
            x += 32;
        }
        while x + 8 <= len {
            let mut acc = half;
            for (r, &w) in rows.iter().zip(k) {
                // SAFETY: x + 8 ≤ len, and every row holds at least `len` bytes.
                let p = unsafe { load8(r, x) };
                acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p, _mm256_set1_epi32(w)));
            }
            let a = shift(acc);
            let p = _mm_packs_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a));
            let v = _mm_packus_epi16(p, p);
            let bytes = (_mm_cvtsi128_si64(v) as u64).to_le_bytes();
            out[x..x + 8].copy_from_slice(&bytes);
            x += 8;
        }
        x
    }
}

/// RGB pixels addressed in the coordinates of a pass: pixel (x, y) is at
/// `data[(y − y0) · stride + 3 · (x − x0)..]`.
struct View<'a> {
    data: &'a [u8],
    stride: usize,
    x0: usize,
    y0: usize,
}

impl View<'_> {
    /// Pixels `cols` of row `y`.
    fn row(&self, y: usize, cols: &Range<usize>) -> &[u8] {
        &self.data[(y - self.y0) * self.stride + 3 * (cols.start - self.x0)..][..3 * cols.len()]
    }
}

/// Columns `cols` of rows `rows`, packed.
fn copy(src: &View<'_>, cols: Range<usize>, rows: Range<usize>) -> Vec<u8> {
    rows.flat_map(|y| src.row(y, &cols)).copied().collect()
}

/// The horizontal pass over rows `rows`: `rows.len()` rows of one pixel per sample of `taps`.
fn horizontal(kern: Kernels, src: &View<'_>, rows: Range<usize>, taps: &Taps) -> Vec<u8> {
    let cols = taps.input_range();
    let row_len = 3 * taps.spans.len();
    let mut out = vec![0u8; rows.len() * row_len];
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kern;
    #[cfg(target_arch = "x86_64")]
    let split = match kern {
        Kernels::Avx2 => avx2::SplitTaps::new(taps),
        Kernels::Scalar => None,
    };
    for (y, o) in rows.zip(out.chunks_exact_mut(row_len)) {
        let row = src.row(y, &cols);
        #[cfg(target_arch = "x86_64")]
        if let Some(split) = &split {
            // SAFETY: the CPU has AVX2 (`split` is made only for `Kernels::Avx2`).
            unsafe { avx2::horizontal_row(row, cols.start, taps, split, o) };
            continue;
        }
        Kernels::horizontal_row_scalar(row, cols.start, taps, o);
    }
    out
}

/// The vertical pass over columns `cols`: one row of `cols.len()` pixels per sample of `taps`.
fn vertical(kern: Kernels, src: &View<'_>, cols: Range<usize>, taps: &Taps) -> Vec<u8> {
    let row_len = 3 * cols.len();
    let mut out = vec![0u8; taps.spans.len() * row_len];
    let mut acc = vec![0i32; row_len];
    let mut rows = Vec::new();
    for (i, o) in out.chunks_exact_mut(row_len).enumerate() {
        let (lo, k) = taps.of(i);
        rows.clear();
        rows.extend((lo..lo + k.len()).map(|y| src.row(y, &cols)));
        kern.vertical_row(&rows, k, &mut acc, o);
    }
    out
}

/// The window `(left, top, win_w, win_h)` of `src` resized to `out_w × out_h` with Pillow's
/// bicubic filter, as packed RGB. When neither side changes length this is a plain copy, as
/// PIL's resize is.
///
/// The order of the passes is Pillow 13's: vertical first when the height shrinks by more
/// than twice as many pixels as the width does, else horizontal first. (Pillow 12 and
/// earlier always ran horizontal first; the two orders differ by a level here and there, on
/// the images where they differ at all.)
///
/// `src` must be valid ([`Rgb8Image::validate`]) and the window must lie inside
/// `out_w × out_h`.
pub(crate) fn resize_window(
    src: &Rgb8Image<'_>,
    out_size: (usize, usize),
    window: (usize, usize, usize, usize),
) -> Vec<u8> {
    resize_window_with(Kernels::best(), src, out_size, window)
}

/// [`resize_window`] with the given inner loops.
fn resize_window_with(
    kern: Kernels,
    src: &Rgb8Image<'_>,
    (out_w, out_h): (usize, usize),
    (left, top, win_w, win_h): (usize, usize, usize, usize),
) -> Vec<u8> {
    debug_assert!(src.validate().is_ok());
    debug_assert!(left + win_w <= out_w && top + win_h <= out_h);
    let (width, height) = (src.width, src.height);
    let horiz = (out_w != width).then(|| Taps::new(width, out_w, left, win_w));
    let vert = (out_h != height).then(|| Taps::new(height, out_h, top, win_h));
    let (cols, rows) = (left..left + win_w, top..top + win_h);
    let input = View {
        data: src.data,
        stride: src.row_stride,
        x0: 0,
        y0: 0,
    };
    // Pillow 13's `ImagingResampleInner` (sizes are below 2^24: no overflow).
    let vertical_first =
        height > out_h && (height - out_h) as i64 > 2 * (width as i64 - out_w as i64);
    match (horiz, vert) {
        (None, None) => copy(&input, cols, rows),
        (Some(h), None) => horizontal(kern, &input, rows, &h),
        (None, Some(v)) => vertical(kern, &input, cols, &v),
        (Some(h), Some(v)) if vertical_first => {
            // Only the columns the horizontal pass reads.
            let mid_cols = h.input_range();
            let mid = vertical(kern, &input, mid_cols.clone(), &v);
            let mid = View {
                data: &mid,
                stride: 3 * mid_cols.len(),
                x0: mid_cols.start,
                y0: top,
            };
            horizontal(kern, &mid, rows, &h)
        }
        (Some(h), Some(v)) => {
            // Only the rows the vertical pass reads (Pillow's `ybox_first..ybox_last`).
            let mid_rows = v.input_range();
            let mid = horizontal(kern, &input, mid_rows.clone(), &h);
            let mid = View {
                data: &mid,
                stride: 3 * win_w,
                x0: left,
                y0: mid_rows.start,
            };
            vertical(kern, &mid, cols, &v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_is_catmull_rom() {
        assert_eq!(bicubic(0.0), 1.0);
        assert_eq!(bicubic(1.0), 0.0);
        assert_eq!(bicubic(-2.0), 0.0);
        assert_eq!(bicubic(0.5), 0.5625);
        assert_eq!(bicubic(-1.5), -0.0625);
    }

    #[test]
    fn same_size_axis_is_the_identity() {
        let t = Taps::new(7, 7, 0, 7);
        for i in 0..7 {
            let (lo, k) = t.of(i);
            let one = k
                .iter()
                .enumerate()
                .filter(|&(_, &w)| w != 0)
                .map(|(j, &w)| (lo + j, w))
                .collect::<Vec<_>>();
            assert_eq!(one, vec![(i, 1 << PRECISION_BITS)]);
        }
    }

    #[test]
    fn windows_equal_the_full_resize() {
        let (w, h) = (53, 41);
        // A padded row stride, to check it is honoured.
        let stride = w * 3 + 5;
        let data: Vec<u8> = (0..stride * h).map(|i| (i * 97 % 251) as u8).collect();
        let src = Rgb8Image {
            data: &data,
            width: w,
            height: h,
            row_stride: stride,
        };
        let packed: Vec<u8> = (0..h)
            .flat_map(|y| data[y * stride..][..w * 3].to_vec())
            .collect();
        let packed = Rgb8Image::packed(&packed, w, h).unwrap();
        for (ow, oh) in [
            (20, 17),
            (120, 90),
            (53, 30),
            (25, 41),
            (53, 41),
            (50, 20),
            (60, 12),
        ] {
            let full = resize_window(&packed, (ow, oh), (0, 0, ow, oh));
            let (l, t, ww, wh) = (ow / 3, oh / 4, ow / 2, oh / 2);
            let win = resize_window(&src, (ow, oh), (l, t, ww, wh));
            for y in 0..wh {
                assert_eq!(
                    &win[y * ww * 3..][..ww * 3],
                    &full[((t + y) * ow + l) * 3..][..ww * 3],
                    "{ow}×{oh} row {y}"
                );
            }
        }
    }

    /// A random image of `w × h` with a padded stride: noise, so that sums overshoot and clip
    /// at both ends, with flat runs of 0 and 255 mixed in.
    fn random_image(rng: &mut impl rand::Rng, w: usize, h: usize) -> (Vec<u8>, usize) {
        let stride = 3 * w + rng.random_range(0..5);
        let data = (0..stride * h)
            .map(|_| match rng.random_range(0..8) {
                0 => 0,
                1 => 255,
                _ => rng.random(),
            })
            .collect();
        (data, stride)
    }

    #[test]
    fn simd_kernels_equal_the_scalar_ones() {
        use rand::{Rng, SeedableRng};
        let fast = Kernels::best();
        if fast == Kernels::Scalar {
            eprintln!("no SIMD kernels on this CPU: nothing to compare");
            return;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        // (input, output) sizes: 1×1 both ways, huge aspects, strong shrinks and upscales.
        let mut cases = vec![
            ((1, 1), (1, 1)),
            ((1, 1), (224, 224)),
            ((2, 1), (448, 224)),
            ((900, 1), (201_600, 224)),
            ((1, 700), (224, 156_800)),
            ((3, 1200), (224, 89_600)),
            ((1500, 7), (48_000, 224)),
            ((997, 13), (75, 1)),
            ((640, 480), (298, 224)),
            ((480, 640), (224, 298)),
            ((1000, 750), (37, 29)),
            ((33, 35), (224, 237)),
        ];
        for _ in 0..60 {
            let side = |rng: &mut rand::rngs::StdRng| match rng.random_range(0..4) {
                0 => rng.random_range(1..8),
                1 => rng.random_range(8..64),
                _ => rng.random_range(64..400),
            };
            let (w, h) = (side(&mut rng), side(&mut rng));
            let (ow, oh) = (side(&mut rng), side(&mut rng));
            cases.push(((w, h), (ow, oh)));
        }
        for ((w, h), (ow, oh)) in cases {
            let (data, stride) = random_image(&mut rng, w, h);
            let src = Rgb8Image {
                data: &data,
                width: w,
                height: h,
                row_stride: stride,
            };
            // A random window of at most 300 × 300 of the output.
            let (ww, wh) = (
                rng.random_range(1..=ow.min(300)),
                rng.random_range(1..=oh.min(300)),
            );
            let (l, t) = (rng.random_range(0..=ow - ww), rng.random_range(0..=oh - wh));
            let window = (l, t, ww, wh);
            let want = resize_window_with(Kernels::Scalar, &src, (ow, oh), window);
            let got = resize_window_with(fast, &src, (ow, oh), window);
            assert_eq!(want.len(), 3 * ww * wh);
            if let Some(i) = (0..want.len()).find(|&i| want[i] != got[i]) {
                panic!(
                    "{w}×{h} → {ow}×{oh}, window {window:?}: byte {i} is {} (scalar {})",
                    got[i], want[i]
                );
            }
        }
    }
}
