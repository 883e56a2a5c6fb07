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

use super::preprocess::Rgb8Image;
use crate::backend::cpu::vecmath::simd_dispatch;
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
    /// Per output sample, `stride` weights, of which the first `spans[i].1` are used.
    weights: Vec<i32>,
    /// Weights reserved per output sample.
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
        let stride = support.ceil() as usize * 2 + 1;
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

simd_dispatch! {
    /// One row of the horizontal pass: `planes` holds the source row's three channels one
    /// after the other (`plane_len` bytes each, the first being column `x0`); `out` receives
    /// one RGB pixel per output sample of `taps`.
    fn horizontal_row(planes: &[u8], plane_len: usize, x0: usize, taps: &Taps, out: &mut [u8]) {
        for (i, px) in out.chunks_exact_mut(3).enumerate() {
            let (lo, k) = taps.of(i);
            for (c, v) in px.iter_mut().enumerate() {
                let src = &planes[c * plane_len + lo - x0..][..k.len()];
                // Pillow sums in `int`: 255 · Σ|w| · 2^22 stays below 2^31 for this kernel.
                let sum = src
                    .iter()
                    .zip(k)
                    .fold(HALF, |s, (&p, &w)| s.wrapping_add(i32::from(p).wrapping_mul(w)));
                *v = clip8(sum);
            }
        }
    }
}

simd_dispatch! {
    /// One row of the vertical pass: `rows[t]` is the source row weighed by `k[t]` (the same
    /// `out.len()` bytes of each); `acc` is scratch of `out.len()`.
    fn vertical_row(rows: &[&[u8]], k: &[i32], acc: &mut [i32], out: &mut [u8]) {
        acc.fill(HALF);
        for (src, &w) in rows.iter().zip(k) {
            for (a, &p) in acc.iter_mut().zip(*src) {
                *a = a.wrapping_add(i32::from(p).wrapping_mul(w));
            }
        }
        for (o, &a) in out.iter_mut().zip(acc.iter()) {
            *o = clip8(a);
        }
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
fn horizontal(src: &View<'_>, rows: Range<usize>, taps: &Taps) -> Vec<u8> {
    let cols = taps.input_range();
    let n = cols.len();
    let row_len = 3 * taps.spans.len();
    let mut out = vec![0u8; rows.len() * row_len];
    let mut planes = vec![0u8; 3 * n];
    for (y, o) in rows.zip(out.chunks_exact_mut(row_len)) {
        let (r, gb) = planes.split_at_mut(n);
        let (g, b) = gb.split_at_mut(n);
        for (((px, r), g), b) in src.row(y, &cols).chunks_exact(3).zip(r).zip(g).zip(b) {
            (*r, *g, *b) = (px[0], px[1], px[2]);
        }
        horizontal_row(&planes, n, cols.start, taps, o);
    }
    out
}

/// The vertical pass over columns `cols`: one row of `cols.len()` pixels per sample of `taps`.
fn vertical(src: &View<'_>, cols: Range<usize>, taps: &Taps) -> Vec<u8> {
    let row_len = 3 * cols.len();
    let mut out = vec![0u8; taps.spans.len() * row_len];
    let mut acc = vec![0i32; row_len];
    let mut rows = Vec::new();
    for (i, o) in out.chunks_exact_mut(row_len).enumerate() {
        let (lo, k) = taps.of(i);
        rows.clear();
        rows.extend((lo..lo + k.len()).map(|y| src.row(y, &cols)));
        vertical_row(&rows, k, &mut acc, o);
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
        (Some(h), None) => horizontal(&input, rows, &h),
        (None, Some(v)) => vertical(&input, cols, &v),
        (Some(h), Some(v)) if vertical_first => {
            // Only the columns the horizontal pass reads.
            let mid_cols = h.input_range();
            let mid = vertical(&input, mid_cols.clone(), &v);
            let mid = View {
                data: &mid,
                stride: 3 * mid_cols.len(),
                x0: mid_cols.start,
                y0: top,
            };
            horizontal(&mid, rows, &h)
        }
        (Some(h), Some(v)) => {
            // Only the rows the vertical pass reads (Pillow's `ybox_first..ybox_last`).
            let mid_rows = v.input_range();
            let mid = horizontal(&input, mid_rows.clone(), &h);
            let mid = View {
                data: &mid,
                stride: 3 * win_w,
                x0: left,
                y0: mid_rows.start,
            };
            vertical(&mid, cols, &v)
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
}
