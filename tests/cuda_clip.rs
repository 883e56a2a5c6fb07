//! CLIP on CUDA: parity of the GPU towers with the CPU towers (random models at awkward sizes)
//! and with transformers (the committed fixtures), f32 within 1e-4, f16/bf16 within 2e-2
//! relative per embedding with cosine ≥ 0.9995; exact length bucketing; the C API on a CUDA
//! context. Tests that need a device print "SKIPPED: no CUDA device" and return where none is
//! usable, or fail when `LAIC_REQUIRE_CUDA=1` (set by `scripts/gpu-check.sh`). Each prints its
//! largest errors. `LAIC_CLIP_TRACE=1` makes the GPU towers compare every step of every block
//! with the CPU layers and print the differences (see src/backend/cuda/clip.rs).

#[path = "common/random_clip.rs"]
mod random_clip;

use laic::clip::{ClipDevice, ClipLoadOptions, ClipModel, ClipPrecision};
use laic::ffi::*;
use laic::{BackendKind, Context, Error, LaicStatus, Progress};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::Value;
use std::ffi::{CStr, CString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip")
}

fn say(msg: &str) {
    // Straight to stderr: libtest captures the output of passing tests.
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// A CUDA context, or `None` after printing why the calling test is skipped.
fn cuda_context(test: &str) -> Option<Context> {
    match Context::new(BackendKind::Cuda) {
        Ok(ctx) => Some(ctx),
        Err(Error::NoDevice(why)) => {
            if std::env::var("LAIC_REQUIRE_CUDA").as_deref() == Ok("1") {
                panic!("{test}: LAIC_REQUIRE_CUDA=1 but no CUDA device: {why}");
            }
            say(&format!("SKIPPED: no CUDA device ({test}: {why})"));
            None
        }
        Err(e) => panic!("{test}: unexpected error opening CUDA: {e}"),
    }
}

fn load(ctx: &Context, path: &Path, precision: ClipPrecision, device: ClipDevice) -> ClipModel {
    ClipModel::load_with_options(ctx, path, &ClipLoadOptions { precision, device }).unwrap_or_else(
        |e| {
            panic!(
                "loading {} ({precision:?}, {device:?}): {e}",
                path.display()
            )
        },
    )
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
        .unwrap()
}

fn rows(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Errors of `got` against `want` (rows of `d`): largest absolute difference, largest
/// relative row error ‖g − w‖/‖w‖, smallest cosine, and the first row/column of the largest
/// absolute difference.
#[derive(Debug)]
struct Errors {
    max_abs: f32,
    max_rel: f32,
    min_cos: f32,
    worst_row: usize,
    worst_col: usize,
}

fn errors(got: &[f32], want: &[f32], d: usize) -> Errors {
    assert_eq!(got.len(), want.len(), "output sizes differ");
    let mut e = Errors {
        max_abs: 0.0,
        max_rel: 0.0,
        min_cos: 1.0,
        worst_row: 0,
        worst_col: 0,
    };
    for (r, (g, w)) in got.chunks(d).zip(want.chunks(d)).enumerate() {
        let (mut dot, mut gg, mut ww, mut diff) = (0f64, 0f64, 0f64, 0f64);
        for (c, (&a, &b)) in g.iter().zip(w).enumerate() {
            let ad = (a - b).abs();
            if ad > e.max_abs || ad.is_nan() {
                e.max_abs = if ad.is_nan() { f32::INFINITY } else { ad };
                e.worst_row = r;
                e.worst_col = c;
            }
            dot += a as f64 * b as f64;
            gg += a as f64 * a as f64;
            ww += b as f64 * b as f64;
            diff += (a as f64 - b as f64).powi(2);
        }
        let rel = (diff.sqrt() / ww.sqrt().max(1e-30)) as f32;
        let cos = (dot / (gg.sqrt() * ww.sqrt()).max(1e-30)) as f32;
        e.max_rel = if rel.is_nan() {
            f32::INFINITY
        } else {
            e.max_rel.max(rel)
        };
        e.min_cos = if cos.is_nan() {
            -1.0
        } else {
            e.min_cos.min(cos)
        };
    }
    e
}

/// Asserts the tolerance of `precision`: f32 within `f32_abs`, else relative 2e-2 and cosine
/// ≥ 0.9995 per embedding. Prints the errors either way.
fn check(label: &str, precision: ClipPrecision, got: &[f32], want: &[f32], d: usize, f32_abs: f32) {
    let e = errors(got, want, d);
    say(&format!(
        "{label} [{precision:?}]: max abs error {:.3e} (row {}, col {}), max relative error {:.3e}, min cosine {:.7}",
        e.max_abs, e.worst_row, e.worst_col, e.max_rel, e.min_cos
    ));
    if precision == ClipPrecision::F32 {
        assert!(e.max_abs <= f32_abs, "{label}: {e:?}");
    } else {
        assert!(e.max_rel <= 2e-2 && e.min_cos >= 0.9995, "{label}: {e:?}");
    }
}

fn encode_fixture_inputs(model: &ClipModel, ctx: &Context, e: &Value) -> (Vec<f32>, Vec<f32>) {
    let prompts = strings(&e["prompts"]);
    let refs: Vec<&str> = prompts.iter().map(|s| s.as_str()).collect();
    let texts = model.encode_texts(ctx, &refs, Progress::none()).unwrap();
    let paths: Vec<PathBuf> = strings(&e["images"])
        .iter()
        .map(|s| fixtures().join("images").join(s))
        .collect();
    let prefs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let images = model
        .encode_image_files(ctx, &prefs, Progress::none())
        .unwrap();
    (texts, images)
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("laic-cuda-clip-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---------------------------------------------------------------------------------------------
// Without a device.
// ---------------------------------------------------------------------------------------------

#[test]
fn device_choice_follows_the_context_and_the_options() {
    let cpu = Context::cpu();
    let hf = fixtures().join("hf");
    let m = load(&cpu, &hf, ClipPrecision::F16, ClipDevice::Context);
    assert_eq!(m.device(), "cpu", "a CPU context keeps the CPU towers");
    let auto = Context::new(BackendKind::Auto).unwrap();
    let m = load(&auto, &hf, ClipPrecision::Auto, ClipDevice::Cpu);
    assert_eq!(
        m.device(),
        "cpu",
        "ClipDevice::Cpu is the CPU whatever the context"
    );
    let m = load(&auto, &hf, ClipPrecision::Auto, ClipDevice::Context);
    match auto.backend_name() {
        "cuda" => assert!(m.device().starts_with("cuda"), "{}", m.device()),
        _ => assert_eq!(m.device(), "cpu"),
    }
    let opts = ClipLoadOptions {
        precision: ClipPrecision::Auto,
        device: ClipDevice::Cuda(0),
    };
    match (
        Context::new(BackendKind::Cuda),
        ClipModel::load_with_options(&cpu, &hf, &opts),
    ) {
        (Ok(_), Ok(m)) => assert!(m.device().starts_with("cuda"), "{}", m.device()),
        (Err(Error::NoDevice(_)), Err(Error::NoDevice(why))) => assert!(!why.is_empty()),
        (a, b) => panic!(
            "CUDA context {:?} but explicit CUDA model {:?}",
            a.err(),
            b.err()
        ),
    }
    let opts = ClipLoadOptions {
        precision: ClipPrecision::Auto,
        device: ClipDevice::Cuda(1000),
    };
    assert!(matches!(
        ClipModel::load_with_options(&cpu, &hf, &opts),
        Err(Error::NoDevice(_))
    ));
}

#[test]
fn random_checkpoints_load_and_encode_on_the_cpu() {
    // What the GPU tests and the benchmark build: proves the generator here, so a device run
    // cannot fail on a malformed checkpoint. ViT-B/32 widths with one block per tower.
    let ctx = Context::cpu();
    let mut full = random_clip::Spec::vit_b32();
    full.text_layers = 1;
    full.vision_layers = 1;
    for (tag, spec, dtype) in [
        (
            "awkward",
            random_clip::Spec::awkward(),
            safetensors::Dtype::F32,
        ),
        ("b32", full, safetensors::Dtype::F16),
    ] {
        let dir = tempdir(tag);
        random_clip::write(&dir, &spec, dtype, 1);
        let m = load(&ctx, &dir, ClipPrecision::Auto, ClipDevice::Context);
        assert_eq!(m.embed_dim(), spec.projection);
        assert_eq!(m.config().vision.tokens(), spec.tokens());
        let mut rng = StdRng::seed_from_u64(2);
        let prompts = random_clip::prompts(&mut rng, 9, spec.max_positions, spec.vocab);
        let refs: Vec<&[u32]> = prompts.iter().map(|p| p.as_slice()).collect();
        let t = m.encode_token_ids(&ctx, &refs, Progress::none()).unwrap();
        let s = spec.image_size;
        let px: Vec<f32> = (0..3 * s * s)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let i = m.encode_pixels(&ctx, &px, 1, Progress::none()).unwrap();
        for row in t.chunks(spec.projection).chain(i.chunks(spec.projection)) {
            let n: f32 = row.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-4, "{tag}: norm² {n}");
        }
        // Embeddings of different prompts differ (the weights are not degenerate).
        assert!(t[..spec.projection] != t[spec.projection..2 * spec.projection]);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut rng = StdRng::seed_from_u64(3);
    let p = random_clip::realistic_prompts(&mut rng, 7000);
    let mean = p.iter().map(|p| p.len()).sum::<usize>() as f64 / p.len() as f64;
    assert!((9.0..11.0).contains(&mean), "mean prompt length {mean}");
    assert!(p.iter().all(|p| p[0] == 49406 && p[p.len() - 1] == 49407));
}

// ---------------------------------------------------------------------------------------------
// On a device.
// ---------------------------------------------------------------------------------------------

#[test]
fn cuda_towers_match_the_transformers_fixtures() {
    let Some(ctx) = cuda_context("cuda_towers_match_the_transformers_fixtures") else {
        return;
    };
    let e = expected();
    for (path, key, precision) in [
        ("hf", "hf", ClipPrecision::F32),
        ("openai/model.safetensors", "openai", ClipPrecision::F32),
        ("hf", "hf", ClipPrecision::F16),
        ("hf", "hf", ClipPrecision::Bf16),
        ("hf-f16", "hf", ClipPrecision::Auto),
    ] {
        let model = load(&ctx, &fixtures().join(path), precision, ClipDevice::Context);
        assert!(model.device().starts_with("cuda"), "{}", model.device());
        let d = model.embed_dim();
        let (t, i) = encode_fixture_inputs(&model, &ctx, &e);
        let label = format!("{path} vs transformers ({})", model.device());
        // hf-f16 holds f16 weights: its GPU run is f16 (Auto keeps the file's dtype).
        let p = if path == "hf-f16" {
            ClipPrecision::F16
        } else {
            precision
        };
        check(
            &format!("{label} text"),
            p,
            &t,
            &rows(&e[key]["text"]),
            d,
            1e-4,
        );
        check(
            &format!("{label} image"),
            p,
            &i,
            &rows(&e[key]["image"]),
            d,
            1e-4,
        );
    }
}

#[test]
fn cuda_towers_match_the_cpu_on_a_random_model_at_awkward_sizes() {
    let Some(ctx) = cuda_context("cuda_towers_match_the_cpu_on_a_random_model") else {
        return;
    };
    // Three image geometries: 17, 101 and 170 tokens (one, four and more than four keys per
    // lane of the fused attention kernel: the last runs on cuBLAS). The text tower (prompts up
    // to 77 tokens) is checked with the first.
    let base = random_clip::Spec::awkward();
    let geometries = [(48, 12), (50, 5), (39, 3)];
    for (g, &(image_size, patch)) in geometries.iter().enumerate() {
        let spec = random_clip::Spec {
            image_size,
            patch,
            ..base
        };
        say(&format!(
            "images {image_size}×{image_size}, {} tokens",
            spec.tokens()
        ));
        let dir = tempdir(&format!("awkward-{g}"));
        random_clip::write(&dir, &spec, safetensors::Dtype::F32, 17);
        let mut rng = StdRng::seed_from_u64(5);
        let prompts = random_clip::prompts(&mut rng, 300, spec.max_positions, spec.vocab);
        let refs: Vec<&[u32]> = prompts.iter().map(|p| p.as_slice()).collect();
        let s = spec.image_size;
        let n = 7;
        let pixels: Vec<f32> = (0..n * 3 * s * s)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let cpu = load(&ctx, &dir, ClipPrecision::F32, ClipDevice::Cpu);
        let want_t = cpu.encode_token_ids(&ctx, &refs, Progress::none()).unwrap();
        let want_i = cpu
            .encode_pixels(&ctx, &pixels, n, Progress::none())
            .unwrap();
        let d = cpu.embed_dim();
        for precision in [ClipPrecision::F32, ClipPrecision::F16, ClipPrecision::Bf16] {
            let gpu = load(&ctx, &dir, precision, ClipDevice::Context);
            if g == 0 {
                say(&format!("  {}", gpu.device()));
                // Small calls first, then larger ones: the work buffers grow between calls.
                let one = gpu
                    .encode_token_ids(&ctx, &refs[..1], Progress::none())
                    .unwrap();
                check(
                    "random model text, 1 prompt",
                    precision,
                    &one,
                    &want_t[..d],
                    d,
                    1e-4,
                );
                let t = gpu.encode_token_ids(&ctx, &refs, Progress::none()).unwrap();
                check(
                    "random model text, 300 prompts",
                    precision,
                    &t,
                    &want_t,
                    d,
                    1e-4,
                );
            }
            let two = gpu
                .encode_pixels(&ctx, &pixels[..2 * 3 * s * s], 2, Progress::none())
                .unwrap();
            check(
                "random model images, 2",
                precision,
                &two,
                &want_i[..2 * d],
                d,
                1e-4,
            );
            let i = gpu
                .encode_pixels(&ctx, &pixels, n, Progress::none())
                .unwrap();
            check("random model images, 7", precision, &i, &want_i, d, 1e-4);
            if let Some(ms) = laic::backend::cuda::last_clip_encode_ms() {
                say(&format!("  last device time {ms:.3} ms"));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn cuda_text_batches_equal_single_prompts() {
    let Some(ctx) = cuda_context("cuda_text_batches_equal_single_prompts") else {
        return;
    };
    let model = load(
        &ctx,
        &fixtures().join("hf"),
        ClipPrecision::F32,
        ClipDevice::Context,
    );
    let d = model.embed_dim();
    let mut rng = StdRng::seed_from_u64(9);
    let prompts = random_clip::prompts(&mut rng, 40, 77, 49408);
    let refs: Vec<&[u32]> = prompts.iter().map(|p| p.as_slice()).collect();
    let mut alone = Vec::new();
    for p in &refs {
        alone.extend(
            model
                .encode_token_ids(&ctx, &[p], Progress::none())
                .unwrap(),
        );
    }
    let batch = model
        .encode_token_ids(&ctx, &refs, Progress::none())
        .unwrap();
    let e = errors(&batch, &alone, d);
    say(&format!(
        "batched vs one prompt at a time (GPU, f32): max abs error {:.3e} (row {})",
        e.max_abs, e.worst_row
    ));
    assert!(e.max_abs <= 1e-5, "{e:?}");
}

#[test]
fn cuda_text_over_many_batches_matches_the_cpu_and_cancels_cleanly() {
    let Some(ctx) = cuda_context("cuda_text_over_many_batches_matches_the_cpu") else {
        return;
    };
    // Three GPU batches (4096 prompts each): batch i + 1 runs while batch i is handed over.
    let dir = fixtures().join("hf");
    let cpu = load(&ctx, &dir, ClipPrecision::F32, ClipDevice::Cpu);
    let mut rng = StdRng::seed_from_u64(21);
    let prompts = random_clip::prompts(&mut rng, 2 * 4096 + 777, 77, 49408);
    let refs: Vec<&[u32]> = prompts.iter().map(|p| p.as_slice()).collect();
    let want = cpu.encode_token_ids(&ctx, &refs, Progress::none()).unwrap();
    let d = cpu.embed_dim();
    for precision in [ClipPrecision::F32, ClipPrecision::F16] {
        let gpu = load(&ctx, &dir, precision, ClipDevice::Context);
        let seen = std::sync::Mutex::new(Vec::new());
        let record = |_: laic::Stage, f: f64| {
            seen.lock().unwrap().push(f);
            true
        };
        let got = gpu
            .encode_token_ids(&ctx, &refs, Progress::new(&record))
            .unwrap();
        check(
            "8969 prompts in three batches",
            precision,
            &got,
            &want,
            d,
            1e-4,
        );
        assert_eq!(seen.into_inner().unwrap().len(), 3);
        // Cancelled at the second hand-over (batch 2 in flight): an error, and the model
        // still encodes correctly afterwards.
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let stop =
            |_: laic::Stage, _: f64| calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 1;
        let e = gpu
            .encode_token_ids(&ctx, &refs, Progress::new(&stop))
            .unwrap_err();
        assert!(matches!(e, Error::Cancelled), "{e}");
        let again = gpu
            .encode_token_ids(&ctx, &refs[..5000], Progress::none())
            .unwrap();
        check(
            "5000 prompts after a cancel",
            precision,
            &again,
            &want[..5000 * d],
            d,
            1e-4,
        );
    }
}

#[test]
fn c_api_encodes_on_a_cuda_context() {
    if cuda_context("c_api_encodes_on_a_cuda_context").is_none() {
        return;
    }
    let e = expected();
    let prompts = strings(&e["prompts"]);
    let cstrs: Vec<CString> = prompts
        .iter()
        .map(|s| CString::new(s.as_str()).unwrap())
        .collect();
    let ptrs: Vec<*const std::ffi::c_char> = cstrs.iter().map(|c| c.as_ptr()).collect();
    let path = CString::new(fixtures().join("hf").to_str().unwrap()).unwrap();
    // SAFETY: valid pointers throughout; handles freed once at the end.
    unsafe {
        let mut opts = std::mem::zeroed::<LaicContextOptions>();
        let size = std::mem::size_of::<LaicContextOptions>();
        assert_eq!(
            laic_context_options_default(&mut opts, size),
            LaicStatus::Ok
        );
        opts.backend = LAIC_BACKEND_CUDA;
        let mut ctx = null_mut();
        assert_eq!(laic_context_create(&opts, &mut ctx), LaicStatus::Ok);
        let mut model = null_mut();
        let st = laic_clip_load(ctx, path.as_ptr(), &mut model);
        let msg = CStr::from_ptr(laic_last_error())
            .to_string_lossy()
            .into_owned();
        assert_eq!(st, LaicStatus::Ok, "{msg}");
        let d = 20;
        let mut out = vec![0f32; prompts.len() * d];
        let st = laic_clip_encode_texts(
            ctx,
            model,
            ptrs.as_ptr(),
            ptrs.len(),
            None,
            null_mut(),
            out.as_mut_ptr(),
            out.len(),
        );
        let msg = CStr::from_ptr(laic_last_error())
            .to_string_lossy()
            .into_owned();
        assert_eq!(st, LaicStatus::Ok, "{msg}");
        // The hf fixture is f32: a CUDA context runs it in f32.
        check(
            "C API on a CUDA context, text",
            ClipPrecision::F32,
            &out,
            &rows(&e["hf"]["text"]),
            d,
            1e-4,
        );
        laic_clip_free(model);
        laic_context_free(ctx);
        let _ = null::<u8>();
    }
}
