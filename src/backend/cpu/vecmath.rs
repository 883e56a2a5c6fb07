//! Small vectorisable helpers for the fused epilogues: an `exp` without a libm call, so that
//! loops over tiles compile to SIMD, and a runtime switch to AVX2+FMA code.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Adding and subtracting 1.5·2²³ rounds an f32 of magnitude below 2²² to the nearest integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x` for `x ≤ 0`, about 2 ulp, branch-free so that loops over it vectorise; returns 0 below
/// −87 (where f32 leaves the normal range).
#[inline(always)]
pub fn exp_nonpos(x: f32) -> f32 {
    let xc = x.max(-87.0);
    let n = (xc * LOG2E + ROUND_MAGIC) - ROUND_MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // Taylor polynomial of e^r on |r| ≤ ln2/2, degree 7 (truncation < 1e-8 relative).
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < -87.0 { 0.0 } else { p * scale }
}

/// Whether the running CPU has AVX2 and FMA (checked once).
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `$name(args) -> ret` that runs `$body` compiled for AVX2+FMA when the CPU has them
/// and for the baseline target otherwise. The body must be `#[inline(always)]`-friendly code.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            if $crate::backend::cpu::vecmath::has_avx2_fma() {
                // SAFETY: the CPU supports AVX2 and FMA (checked above).
                return unsafe { avx2($($arg),*) };
            }
            generic($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// Replaces each `z` by `e^{z−m}` (every `z ≤ m`, so no exponent is positive) and returns
/// their sum; explicit AVX2+FMA code when the CPU has it (the same polynomial as
/// [`exp_nonpos`], rounded with fused multiply-adds), [`exp_nonpos`] otherwise.
pub fn exp_sub_sum(z: &mut [f32], m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above).
        return unsafe { avx2::exp_sub_sum(z, m) };
    }
    z.iter_mut()
        .map(|v| {
            *v = exp_nonpos(*v - m);
            *v
        })
        .sum()
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{LN2_HI, LN2_LO, LOG2E, ROUND_MAGIC, exp_nonpos};
    use std::arch::x86_64::*;

    /// `e^x` of eight `x ≤ 0` (0 below −87), as [`exp_nonpos`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn exp8(x: __m256) -> __m256 {
        let lo = _mm256_set1_ps(-87.0);
        let xc = _mm256_max_ps(x, lo);
        let magic = _mm256_set1_ps(ROUND_MAGIC);
        let nm = _mm256_fmadd_ps(xc, _mm256_set1_ps(LOG2E), magic);
        let n = _mm256_sub_ps(nm, magic);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), xc);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        // 2^n from the integer in the low mantissa bits of `nm` (|n| ≤ 126).
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_sub_epi32(_mm256_castps_si256(nm), _mm256_castps_si256(magic)),
            _mm256_set1_epi32(127),
        ));
        let e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
        // Zero where x < −87 (and for −∞); NaN stays NaN through the comparison's false.
        let keep = _mm256_cmp_ps::<_CMP_NLT_UQ>(x, lo);
        _mm256_and_ps(e, keep)
    }

    /// See [`super::exp_sub_sum`].
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_sub_sum(z: &mut [f32], m: f32) -> f32 {
        let mv = _mm256_set1_ps(m);
        let mut sum = _mm256_setzero_ps();
        let mut chunks = z.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: `c` holds exactly 8 floats.
            unsafe {
                let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mv));
                _mm256_storeu_ps(c.as_mut_ptr(), e);
                sum = _mm256_add_ps(sum, e);
            }
        }
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        let mut s: f32 = lanes.iter().sum();
        for v in chunks.into_remainder() {
            *v = exp_nonpos(*v - m);
            s += *v;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_over_its_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let want = (x as f64).exp();
            let got = exp_nonpos(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpos(0.0), 1.0);
        assert_eq!(exp_nonpos(-88.0), 0.0);
        assert_eq!(exp_nonpos(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn vector_exp_matches_f64_and_the_scalar_one() {
        let xs: Vec<f32> = (0..70_000).map(|i| -(i as f32) * 0.001_3).collect();
        let mut z = xs.clone();
        z.push(f32::NEG_INFINITY);
        z.push(-88.0);
        let s = exp_sub_sum(&mut z, 0.0);
        let mut want_sum = 0f64;
        for (i, &x) in xs.iter().enumerate() {
            let want = (x as f64).exp();
            want_sum += if x < -87.0 { 0.0 } else { want };
            if x >= -87.0 {
                let rel = ((z[i] as f64 - want) / want).abs();
                assert!(rel < 4e-7, "x {x}: {} vs {want}", z[i]);
            } else {
                assert_eq!(z[i], 0.0);
            }
        }
        assert_eq!(&z[xs.len()..], &[0.0, 0.0]);
        assert!(((s as f64 - want_sum) / want_sum).abs() < 1e-5);
        // A shift by m, with a remainder that is not a multiple of 8.
        let mut z: Vec<f32> = vec![3.0, 2.5, -1.0, 3.0, 0.0, 1.0, 2.0, 2.9, 3.0, -40.0, 1.5];
        let want: Vec<f32> = z.iter().map(|&v| exp_nonpos(v - 3.0)).collect();
        exp_sub_sum(&mut z, 3.0);
        for (a, b) in z.iter().zip(&want) {
            assert!((a - b).abs() <= 2.0 * f32::EPSILON * b.abs(), "{a} vs {b}");
        }
    }
}
