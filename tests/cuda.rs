//! The CUDA backend: backend choice without a device (runs everywhere), and GPU-vs-CPU parity
//! of the fused GradNorm kernel (runs where a CUDA device is usable; elsewhere each such test
//! prints "SKIPPED: no CUDA device" and returns, or fails when `LAIC_REQUIRE_CUDA=1`, which
//! `scripts/gpu-check.sh` sets on the GPU machine).

use half::{bf16, f16};
use laic::ffi::*;
use laic::{
    BackendKind, Context, DeviceGradNormOut, DeviceMatrix, Dtype, Error, GradNormOptions,
    GradNormScores, LaicStatus, MatrixData, MatrixRef, Target,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use std::ffi::CStr;
use std::io::Write;

fn last_error() -> String {
    // SAFETY: laic_last_error returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(laic_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// A CUDA context, or `None` after printing why the calling test is skipped.
fn cuda_context(test: &str) -> Option<Context> {
    match Context::new(BackendKind::Cuda) {
        Ok(ctx) => Some(ctx),
        Err(Error::NoDevice(why)) => {
            if std::env::var("LAIC_REQUIRE_CUDA").as_deref() == Ok("1") {
                panic!("{test}: LAIC_REQUIRE_CUDA=1 but no CUDA device: {why}");
            }
            // Straight to the process's stderr: libtest captures print!/eprint! of passing
            // tests, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr().lock(),
                "SKIPPED: no CUDA device ({test}: {why})"
            );
            None
        }
        Err(e) => panic!("{test}: unexpected error opening CUDA: {e}"),
    }
}

/// A seeded generator; the seed is printed so a failure can be replayed with LAIC_TEST_SEED.
fn rng(test: &str) -> StdRng {
    let seed = std::env::var("LAIC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    println!("{test}: seed {seed}");
    StdRng::seed_from_u64(seed)
}

// ---------------------------------------------------------------------------------------------
// Without a device (this is what runs on machines without a GPU).
// ---------------------------------------------------------------------------------------------

#[test]
fn auto_takes_cuda_exactly_when_cuda_is_usable() {
    let auto = Context::new(BackendKind::Auto).expect("AUTO never fails");
    match Context::new(BackendKind::Cuda) {
        Ok(_) => assert_eq!(auto.backend_name(), "cuda"),
        Err(Error::NoDevice(why)) => {
            assert_eq!(auto.backend_name(), "cpu", "AUTO falls back to the CPU");
            assert!(!why.is_empty());
            // The fallback computes what the CPU backend computes, bit for bit.
            let mut rng = rng("auto_fallback");
            let (m, k, d) = (37, 11, 20);
            let nv = random_rows(&mut rng, m, d, d);
            let cv = random_rows(&mut rng, k, d, d);
            let n = MatrixRef::from_f32(&nv, m, d).unwrap();
            let c = MatrixRef::from_f32(&cv, k, d).unwrap();
            let opts = GradNormOptions::default();
            let a = auto.gradnorm_scores(&n, &c, &opts).unwrap();
            let b = Context::cpu().gradnorm_scores(&n, &c, &opts).unwrap();
            assert_eq!(a, b);
            if !laic::backend::cuda::kernels_built() {
                assert!(why.contains("no CUDA kernels"), "{why}");
            }
        }
        Err(e) => panic!("CUDA gave {e}, not NoDevice"),
    }
}

#[test]
fn kernels_are_built_where_the_build_had_nvcc() {
    // CI installs nvcc and sets LAIC_EXPECT_CUDA_KERNELS=1: a build that silently lost its
    // kernels must fail there, not pass as a CPU-only build.
    if std::env::var("LAIC_EXPECT_CUDA_KERNELS").as_deref() == Ok("1") {
        assert!(
            laic::backend::cuda::kernels_built(),
            "LAIC_EXPECT_CUDA_KERNELS=1 but this build has no CUDA kernels"
        );
    }
}

#[test]
fn c_abi_cuda_gives_no_device_and_auto_falls_back() {
    let has_cuda = Context::new(BackendKind::Cuda).is_ok();
    let mut opts = std::mem::MaybeUninit::<LaicContextOptions>::uninit();
    // SAFETY: opts is valid for writes of its size; handles are freed below.
    unsafe {
        assert_eq!(
            laic_context_options_default(
                opts.as_mut_ptr(),
                std::mem::size_of::<LaicContextOptions>()
            ),
            LaicStatus::Ok
        );
        let mut opts = opts.assume_init();
        opts.backend = LAIC_BACKEND_CUDA;
        let mut ctx: *mut LaicContext = std::ptr::null_mut();
        let status = laic_context_create(&opts, &mut ctx);
        if has_cuda {
            assert_eq!(status, LaicStatus::Ok);
            laic_context_free(ctx);
        } else {
            assert_eq!(status, LaicStatus::NoDevice);
            assert!(ctx.is_null(), "nothing written on failure");
            assert!(last_error().starts_with("no device: "), "{}", last_error());
        }

        opts.backend = LAIC_BACKEND_AUTO;
        assert_eq!(laic_context_create(&opts, &mut ctx), LaicStatus::Ok);
        let mut kind = 99u32;
        assert_eq!(laic_context_backend(ctx, &mut kind), LaicStatus::Ok);
        let expected = if has_cuda {
            LAIC_BACKEND_CUDA
        } else {
            LAIC_BACKEND_CPU
        };
        assert_eq!(kind, expected);
        laic_context_free(ctx);
    }
}

#[test]
fn device_entry_point_needs_a_cuda_context() {
    let mut ctx: *mut LaicContext = std::ptr::null_mut();
    let mut opts = std::mem::MaybeUninit::<LaicContextOptions>::uninit();
    // SAFETY: valid pointers; the device pointers are never dereferenced by a CPU context.
    unsafe {
        laic_context_options_default(opts.as_mut_ptr(), std::mem::size_of::<LaicContextOptions>());
        let mut opts = opts.assume_init();
        opts.backend = LAIC_BACKEND_CPU;
        assert_eq!(laic_context_create(&opts, &mut ctx), LaicStatus::Ok);
        // Plausible-looking device addresses: the CPU backend must refuse before using them.
        let m = LaicMatrix {
            data: 0x7f00_0000_0000usize as *const std::ffi::c_void,
            rows: 10,
            cols: 8,
            row_stride: 8,
            dtype: LAIC_DTYPE_F16,
        };
        let c = LaicMatrix { rows: 3, ..m };
        let out = 0x7f10_0000_0000usize as *mut f32;
        let status = laic_gradnorm_scores_device(
            ctx,
            &m,
            &c,
            std::ptr::null(),
            out,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            10,
        );
        assert_eq!(status, LaicStatus::NoDevice, "{}", last_error());
        assert!(last_error().contains("CUDA context"), "{}", last_error());
        // Argument checks come first and name the argument.
        let bad = LaicMatrix {
            data: std::ptr::null(),
            ..m
        };
        let status = laic_gradnorm_scores_device(
            ctx,
            &bad,
            &c,
            std::ptr::null(),
            out,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            10,
        );
        assert_eq!(status, LaicStatus::InvalidArgument);
        assert!(last_error().contains("nouns"), "{}", last_error());
        let status = laic_gradnorm_scores_device(
            ctx,
            &m,
            &c,
            std::ptr::null(),
            out,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            9,
        );
        assert_eq!(status, LaicStatus::BufferTooSmall, "{}", last_error());
        laic_context_free(ctx);
    }
}

// ---------------------------------------------------------------------------------------------
// GPU vs CPU parity (skipped without a device).
// ---------------------------------------------------------------------------------------------

/// Random rows with per-row scales and a shared component, so that logits spread out and some
/// nouns are confident (tiny scores) and some are not.
fn random_rows(rng: &mut StdRng, rows: usize, d: usize, stride: usize) -> Vec<f32> {
    let shared: Vec<f32> = (0..d).map(|_| StandardNormal.sample(rng)).collect();
    let mut v = vec![0f32; (rows - 1) * stride + d];
    for r in 0..rows {
        let scale = 0.2 + 3.0 * rng.random::<f32>();
        let mix = rng.random::<f32>();
        for c in 0..d {
            let x: f32 = StandardNormal.sample(rng);
            v[r * stride + c] = scale * (x + mix * shared[c]);
        }
        // Padding elements carry poison: they must never be read.
        for c in d..stride.min(v.len() - r * stride) {
            v[r * stride + c] = f32::NAN;
        }
    }
    v
}

/// Storage of one matrix in any dtype.
enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

impl Store {
    fn new(v: &[f32], dtype: Dtype) -> Self {
        match dtype {
            Dtype::F32 => Store::F32(v.to_vec()),
            Dtype::F16 => Store::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            Dtype::Bf16 => Store::Bf16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }

    fn view(&self, rows: usize, cols: usize, stride: usize) -> MatrixRef<'_> {
        let data = match self {
            Store::F32(v) => MatrixData::F32(v),
            Store::F16(v) => MatrixData::F16(v),
            Store::Bf16(v) => MatrixData::Bf16(v),
        };
        MatrixRef::new(data, rows, cols, stride).unwrap()
    }
}

/// Logit of noun `i` against centre `k` in f64 (for deciding whether an assignment differs
/// only because of a near tie).
fn logit(n: &MatrixRef<'_>, c: &MatrixRef<'_>, i: usize, k: usize, opts: &GradNormOptions) -> f64 {
    let d = n.cols();
    let (mut a, mut b) = (vec![0f32; d], vec![0f32; d]);
    n.row_to_f32(i, &mut a);
    c.row_to_f32(k, &mut b);
    let dot: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let scale = if opts.normalize {
        norm(&a) * norm(&b)
    } else {
        1.0
    };
    dot / scale / opts.tau as f64
}

/// Compares GPU outputs with the CPU's: every output written (poisoned first), scores within
/// `tol` relative, assignments equal unless the two centres' logits nearly tie.
#[allow(clippy::too_many_arguments)]
fn compare(
    what: &str,
    gpu: &GradNormScores,
    cpu: &GradNormScores,
    nouns: &MatrixRef<'_>,
    centres: &MatrixRef<'_>,
    opts: &GradNormOptions,
    tol: f64,
) -> f64 {
    let mut worst = 0f64;
    let mut ties = 0;
    for i in 0..cpu.scores.len() {
        let (gs, cs) = (gpu.scores[i], cpu.scores[i]);
        assert!(gs.is_finite(), "{what}: noun {i} score {gs} (unwritten?)");
        assert!(
            gpu.confidence[i].is_finite(),
            "{what}: noun {i} confidence unwritten"
        );
        let (ga, ca) = (gpu.assignment[i], cpu.assignment[i]);
        if ga != ca {
            assert!(
                (ga as usize) < centres.rows(),
                "{what}: noun {i} assignment {ga} out of range"
            );
            let gap = (logit(nouns, centres, i, ga as usize, opts)
                - logit(nouns, centres, i, ca as usize, opts))
            .abs();
            assert!(
                gap < 2e-3,
                "{what}: noun {i} assigned {ga} on the GPU, {ca} on the CPU; logit gap {gap}"
            );
            ties += 1;
            continue;
        }
        let scale = (cs as f64).abs().max(1e-30);
        let err = (gs as f64 - cs as f64).abs() / scale;
        let cerr = (gpu.confidence[i] as f64 - cpu.confidence[i] as f64).abs()
            / (cpu.confidence[i] as f64).max(1e-30);
        worst = worst.max(err).max(cerr);
        assert!(
            err <= tol && cerr <= tol,
            "{what}: noun {i}: score {gs} vs {cs} (rel {err:e}), confidence {} vs {} (rel \
             {cerr:e}), tolerance {tol:e}",
            gpu.confidence[i],
            cpu.confidence[i]
        );
    }
    assert!(
        ties * 100 <= cpu.scores.len().max(100),
        "{what}: {ties} ties"
    );
    worst
}

fn poisoned(m: usize) -> GradNormScores {
    GradNormScores {
        scores: vec![f32::NAN; m],
        assignment: vec![u32::MAX; m],
        confidence: vec![f32::NAN; m],
    }
}

/// The relative tolerance on scores and confidences: 1e-4 for f32 input (carried through the
/// tensor cores as two bf16 planes, ~2^-17 relative per operand), 2e-3 for f16/bf16. Both are
/// stated for logits up to 1/tau = 50 (unit rows, the default tau); an error in a logit moves
/// the scores by the same relative amount, and the split's error grows with the logit, so for
/// un-normalised rows the bound scales with the largest possible logit ||t|| ||w|| / tau.
fn tolerance(
    dtype: Dtype,
    nouns: &MatrixRef<'_>,
    centres: &MatrixRef<'_>,
    opts: &GradNormOptions,
) -> f64 {
    let base = match dtype {
        Dtype::F32 => 1e-4,
        Dtype::F16 | Dtype::Bf16 => 2e-3,
    };
    if opts.normalize {
        return base;
    }
    let max_norm = |m: &MatrixRef<'_>| {
        let mut row = vec![0f32; m.cols()];
        (0..m.rows())
            .map(|i| {
                m.row_to_f32(i, &mut row);
                row.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
            })
            .fold(0f64, f64::max)
    };
    let max_logit = max_norm(nouns) * max_norm(centres) / opts.tau as f64;
    base * (max_logit / 50.0).max(1.0)
}

/// Scores on the CPU and (outputs poisoned first) on the GPU, compares them within the
/// dtype's tolerance and prints the largest relative error.
fn score_on_both(
    gpu: &Context,
    cpu: &Context,
    n: &MatrixRef<'_>,
    c: &MatrixRef<'_>,
    opts: &GradNormOptions,
    what: &str,
) {
    let want = cpu.gradnorm_scores(n, c, opts).unwrap();
    let mut got = poisoned(n.rows());
    gpu.gradnorm_scores_into(n, c, opts, got.as_out())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let worst = compare(
        what,
        &got,
        &want,
        n,
        c,
        opts,
        tolerance(n.dtype(), n, c, opts),
    );
    println!("{what}: max relative error {worst:.2e}");
}

#[test]
fn gpu_matches_cpu_on_awkward_sizes() {
    let Some(gpu) = cuda_context("gpu_matches_cpu_on_awkward_sizes") else {
        return;
    };
    let cpu = Context::cpu();
    let mut rng = rng("gpu_matches_cpu_on_awkward_sizes");
    // (M, K, D, extra stride): not multiples of the tiles, K = 1, K > 8192, the CLIP widths.
    let shapes = [
        (1000, 77, 512, 0),
        (333, 1, 64, 0),
        (130, 8200, 64, 3),
        (129, 300, 768, 0),
        (97, 130, 1024, 0),
        (200, 65, 100, 5),
        (17, 2000, 512, 0),
    ];
    for dtype in [Dtype::F16, Dtype::Bf16, Dtype::F32] {
        for &(m, k, d, extra) in &shapes {
            let stride = d + extra;
            let nv = random_rows(&mut rng, m, d, stride);
            let cv = random_rows(&mut rng, k, d, d);
            let (ns, cs) = (Store::new(&nv, dtype), Store::new(&cv, dtype));
            let (n, c) = (ns.view(m, d, stride), cs.view(k, d, d));
            let opts = GradNormOptions::default();
            let what = format!("{dtype:?} M={m} K={k} D={d} stride={stride}");
            score_on_both(&gpu, &cpu, &n, &c, &opts, &what);
        }
    }
}

#[test]
fn gpu_matches_cpu_for_every_norm_and_target() {
    let Some(gpu) = cuda_context("gpu_matches_cpu_for_every_norm_and_target") else {
        return;
    };
    let cpu = Context::cpu();
    let mut rng = rng("gpu_matches_cpu_for_every_norm_and_target");
    let (m, k, d) = (301, 203, 96);
    for dtype in [Dtype::F16, Dtype::F32] {
        let nv = random_rows(&mut rng, m, d, d);
        let cv = random_rows(&mut rng, k, d, d);
        let (ns, cs) = (Store::new(&nv, dtype), Store::new(&cv, dtype));
        let (n, c) = (ns.view(m, d, d), cs.view(k, d, d));
        for q in [1.0, 2.0, 3.5, f32::INFINITY] {
            for target in [Target::OneHot, Target::Uniform] {
                for (normalize, tau) in [(true, 0.02), (true, 0.5), (false, 4.0)] {
                    let opts = GradNormOptions {
                        tau,
                        q,
                        target,
                        normalize,
                    };
                    score_on_both(&gpu, &cpu, &n, &c, &opts, &format!("{dtype:?} {opts:?}"));
                }
            }
        }
    }
}

/// Uploads `v` to the device as `dtype`.
fn upload(
    stream: &std::sync::Arc<cudarc::driver::CudaStream>,
    v: &[f32],
    dtype: Dtype,
) -> cudarc::driver::CudaSlice<u8> {
    let bytes: Vec<u8> = match dtype {
        Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F16 => v
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::Bf16 => v
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect(),
    };
    stream.clone_htod(&bytes).unwrap()
}

#[test]
fn device_pointer_path_matches_cpu_and_validates_on_the_device() {
    use cudarc::driver::{CudaContext, DevicePtr};
    let Some(gpu) = cuda_context("device_pointer_path_matches_cpu_and_validates_on_the_device")
    else {
        return;
    };
    let cpu = Context::cpu();
    let mut rng = rng("device_pointer_path");
    // The backend uses the device's primary context; so does this.
    let cu = CudaContext::new(0).unwrap();
    let stream = cu.default_stream();
    let (m, k, d, stride) = (517, 129, 512, 520);
    for dtype in [Dtype::F16, Dtype::Bf16, Dtype::F32] {
        let nv = random_rows(&mut rng, m, d, stride);
        let cv = random_rows(&mut rng, k, d, d);
        let (ns, cs) = (Store::new(&nv, dtype), Store::new(&cv, dtype));
        let opts = GradNormOptions::default();
        let want = cpu
            .gradnorm_scores(&ns.view(m, d, stride), &cs.view(k, d, d), &opts)
            .unwrap();
        let dn = upload(&stream, &nv, dtype);
        let dc = upload(&stream, &cv, dtype);
        let poison = poisoned(m);
        let ds = stream.clone_htod(&poison.scores).unwrap();
        let da = stream.clone_htod(&poison.assignment).unwrap();
        let dconf = stream.clone_htod(&poison.confidence).unwrap();
        stream.synchronize().unwrap();
        let (np, _g1) = dn.device_ptr(&stream);
        let (cp, _g2) = dc.device_ptr(&stream);
        let (sp, _g3) = ds.device_ptr(&stream);
        let (ap, _g4) = da.device_ptr(&stream);
        let (fp, _g5) = dconf.device_ptr(&stream);
        let nouns = DeviceMatrix {
            ptr: np,
            rows: m,
            cols: d,
            row_stride: stride,
            dtype,
        };
        let centres = DeviceMatrix {
            ptr: cp,
            rows: k,
            cols: d,
            row_stride: d,
            dtype,
        };
        let out = DeviceGradNormOut {
            scores: sp,
            assignment: ap,
            confidence: fp,
            len: m,
        };
        // SAFETY: every address is a live allocation of the described size on device 0.
        unsafe { gpu.gradnorm_scores_device(&nouns, &centres, &opts, &out) }.unwrap();
        let got = GradNormScores {
            scores: stream.clone_dtoh(&ds).unwrap(),
            assignment: stream.clone_dtoh(&da).unwrap(),
            confidence: stream.clone_dtoh(&dconf).unwrap(),
        };
        stream.synchronize().unwrap();
        let what = format!("device path {dtype:?}");
        let worst = compare(
            &what,
            &got,
            &want,
            &ns.view(m, d, stride),
            &cs.view(k, d, d),
            &opts,
            tolerance(dtype, &ns.view(m, d, stride), &cs.view(k, d, d), &opts),
        );
        println!("{what}: max relative error {worst:.2e}");

        // A NaN on the device is found there; the outputs stay as they were.
        let mut bad = nv.clone();
        bad[7 * stride + 3] = f32::NAN;
        let dbad = upload(&stream, &bad, dtype);
        let (bp, _g6) = dbad.device_ptr(&stream);
        let poison_again = stream.clone_htod(&poison.scores).unwrap();
        let (pp, _g7) = poison_again.device_ptr(&stream);
        stream.synchronize().unwrap();
        let out_bad = DeviceGradNormOut { scores: pp, ..out };
        // SAFETY: as above.
        let e = unsafe {
            gpu.gradnorm_scores_device(
                &DeviceMatrix { ptr: bp, ..nouns },
                &centres,
                &opts,
                &out_bad,
            )
        }
        .unwrap_err();
        assert_eq!(e.status(), LaicStatus::InvalidArgument, "{e}");
        assert!(e.to_string().contains("NaN"), "{e}");
        let untouched = stream.clone_dtoh(&poison_again).unwrap();
        stream.synchronize().unwrap();
        assert!(
            untouched.iter().all(|x| x.is_nan()),
            "outputs written on error"
        );

        // An output that cannot be allocated is OUT_OF_MEMORY, not a crash: 2^38 nouns need
        // 1 TiB of scratch outputs (the pointers are never read: allocation fails first).
        let huge = DeviceMatrix {
            rows: 1 << 38,
            row_stride: d,
            ..nouns
        };
        let out_huge = DeviceGradNormOut {
            len: 1 << 38,
            ..out
        };
        // SAFETY: the kernel never runs; only the allocation is attempted.
        let e =
            unsafe { gpu.gradnorm_scores_device(&huge, &centres, &opts, &out_huge) }.unwrap_err();
        assert_eq!(e.status(), LaicStatus::OutOfMemory, "{e}");
    }
}
