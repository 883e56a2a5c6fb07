//! The CLIP C API: a model loaded and used through the exported functions, bad inputs
//! (NULLs, invalid UTF-8, corrupt files, unreadable images, small buffers), cancellation.

use laic::ffi::*;
use laic::{LaicStatus, Progress};
use std::ffi::{CStr, CString, c_char, c_void};
use std::path::Path;
use std::ptr::{null, null_mut};

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip")
}

fn last_error() -> String {
    // SAFETY: laic_last_error returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(laic_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn cstring(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

struct Handles {
    ctx: *mut LaicContext,
    model: *mut LaicClipModel,
}

impl Drop for Handles {
    fn drop(&mut self) {
        // SAFETY: both were made by laic and are freed once.
        unsafe {
            laic_clip_free(self.model);
            laic_context_free(self.ctx);
        }
    }
}

fn load(sub: &str) -> Handles {
    let mut ctx = null_mut();
    let mut model = null_mut();
    // SAFETY: valid pointers; the path is a NUL-terminated string.
    unsafe {
        // The CPU explicitly: these tests compare with the CPU towers bit for bit (on a GPU
        // machine AUTO would pick CUDA; tests/cuda_clip.rs covers that).
        let mut opts = std::mem::zeroed::<LaicContextOptions>();
        let size = std::mem::size_of::<LaicContextOptions>();
        assert_eq!(
            laic_context_options_default(&mut opts, size),
            LaicStatus::Ok
        );
        opts.backend = LAIC_BACKEND_CPU;
        assert_eq!(laic_context_create(&opts, &mut ctx), LaicStatus::Ok);
        let path = cstring(&fixtures().join(sub));
        assert_eq!(
            laic_clip_load(ctx, path.as_ptr(), &mut model),
            LaicStatus::Ok,
            "{}",
            last_error()
        );
    }
    Handles { ctx, model }
}

fn embed_dim(h: &Handles) -> usize {
    let mut d = 0usize;
    // SAFETY: live handle, valid out pointer.
    assert_eq!(
        unsafe { laic_clip_embed_dim(h.model, &mut d) },
        LaicStatus::Ok
    );
    d
}

#[test]
fn texts_and_images_through_the_c_api_match_the_rust_api() {
    let h = load("hf");
    let d = embed_dim(&h);
    assert_eq!(d, 20);
    let texts = [
        CString::new("a photo of a cat.").unwrap(),
        CString::new("").unwrap(),
    ];
    let ptrs: Vec<*const c_char> = texts.iter().map(|s| s.as_ptr()).collect();
    let mut out = vec![f32::NAN; 2 * d];
    // SAFETY: every pointer is valid for the sizes passed.
    let st = unsafe {
        laic_clip_encode_texts(
            h.ctx,
            h.model,
            ptrs.as_ptr(),
            2,
            None,
            null_mut(),
            out.as_mut_ptr(),
            out.len(),
        )
    };
    assert_eq!(st, LaicStatus::Ok, "{}", last_error());
    let ctx = laic::Context::cpu();
    let model = laic::clip::ClipModel::load(&ctx, &fixtures().join("hf")).unwrap();
    let want = model
        .encode_texts(&ctx, &["a photo of a cat.", ""], Progress::none())
        .unwrap();
    assert_eq!(out, want);

    let img = fixtures().join("images/img0.png");
    let path = cstring(&img);
    let paths = [path.as_ptr()];
    let mut from_file = vec![f32::NAN; d];
    // SAFETY: as above.
    let st = unsafe {
        laic_clip_encode_image_files(
            h.ctx,
            h.model,
            paths.as_ptr(),
            1,
            None,
            null_mut(),
            from_file.as_mut_ptr(),
            d,
        )
    };
    assert_eq!(st, LaicStatus::Ok, "{}", last_error());
    let rgb = laic::clip::preprocess::load_rgb8(&img).unwrap();
    let desc = LaicImageRgb8 {
        data: rgb.data.as_ptr(),
        width: rgb.width,
        height: rgb.height,
        row_stride: rgb.width * 3,
    };
    let mut from_rgb = vec![f32::NAN; d];
    // SAFETY: as above.
    let st = unsafe {
        laic_clip_encode_images_rgb8(
            h.ctx,
            h.model,
            &desc,
            1,
            None,
            null_mut(),
            from_rgb.as_mut_ptr(),
            d,
        )
    };
    assert_eq!(st, LaicStatus::Ok, "{}", last_error());
    assert_eq!(from_file, from_rgb);
    let norm: f32 = from_rgb.iter().map(|v| v * v).sum();
    assert!((norm - 1.0).abs() < 1e-5);
}

#[test]
fn load_options_choose_the_device_and_reject_unknown_values() {
    let h = load("hf");
    let path = cstring(&fixtures().join("hf"));
    // SAFETY: valid pointers throughout; the models made are freed once.
    unsafe {
        let mut opts = std::mem::zeroed::<LaicClipLoadOptions>();
        let size = std::mem::size_of::<LaicClipLoadOptions>();
        assert_eq!(
            laic_clip_load_options_default(&mut opts, size),
            LaicStatus::Ok
        );
        assert_eq!(opts.struct_size, size);
        assert_eq!(
            (opts.precision, opts.device, opts.cuda_device),
            (LAIC_CLIP_PRECISION_AUTO, LAIC_CLIP_DEVICE_CONTEXT, 0)
        );
        // The CPU device on any context: the same embeddings as laic_clip_load on the CPU.
        opts.device = LAIC_CLIP_DEVICE_CPU;
        opts.precision = LAIC_CLIP_PRECISION_F16;
        let mut model = null_mut();
        let st = laic_clip_load_with_options(h.ctx, path.as_ptr(), &opts, &mut model);
        assert_eq!(st, LaicStatus::Ok, "{}", last_error());
        let text = CString::new("a photo of a cat.").unwrap();
        let ptrs = [text.as_ptr()];
        let (mut a, mut b) = (vec![f32::NAN; 20], vec![f32::NAN; 20]);
        for (m, out) in [(model as *const _, &mut a), (h.model as *const _, &mut b)] {
            let st = laic_clip_encode_texts(
                h.ctx,
                m,
                ptrs.as_ptr(),
                1,
                None,
                null_mut(),
                out.as_mut_ptr(),
                20,
            );
            assert_eq!(st, LaicStatus::Ok, "{}", last_error());
        }
        assert_eq!(a, b);
        laic_clip_free(model);
        // NULL options are the defaults.
        let mut model = null_mut();
        let st = laic_clip_load_with_options(h.ctx, path.as_ptr(), null(), &mut model);
        assert_eq!(st, LaicStatus::Ok, "{}", last_error());
        laic_clip_free(model);
        // Unknown values name the field; nothing is written.
        for (precision, device, field) in [
            (7, LAIC_CLIP_DEVICE_CPU, "options.precision"),
            (LAIC_CLIP_PRECISION_AUTO, 9, "options.device"),
        ] {
            opts.precision = precision;
            opts.device = device;
            let mut model = null_mut();
            let st = laic_clip_load_with_options(h.ctx, path.as_ptr(), &opts, &mut model);
            assert_eq!(st, LaicStatus::InvalidArgument);
            assert!(last_error().contains(field), "{}", last_error());
            assert!(model.is_null());
        }
        // A CUDA device that does not exist.
        opts.precision = LAIC_CLIP_PRECISION_AUTO;
        opts.device = LAIC_CLIP_DEVICE_CUDA;
        opts.cuda_device = 1000;
        let mut model = null_mut();
        let st = laic_clip_load_with_options(h.ctx, path.as_ptr(), &opts, &mut model);
        assert_eq!(st, LaicStatus::NoDevice, "{}", last_error());
        assert!(model.is_null());
    }
}

#[test]
fn image_file_options_choose_the_decoding_and_reject_unknown_values() {
    let h = load("hf");
    let d = embed_dim(&h);
    let ctx = laic::Context::cpu();
    let model = laic::clip::ClipModel::load(&ctx, &fixtures().join("hf")).unwrap();
    // A 1803×2011 JPEG (drafted at 1/8) and a 403×301 one (too small to draft).
    let files = ["preprocess/draft8.jpg", "preprocess/landscape.jpg"].map(|f| fixtures().join(f));
    let owned: Vec<CString> = files.iter().map(|p| cstring(p)).collect();
    let paths: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let rust = |decode| {
        let opts = laic::clip::ImageFileOptions {
            decode,
            ..Default::default()
        };
        model
            .encode_image_files_with(&ctx, &refs, &opts, Progress::none())
            .unwrap()
    };
    let (full, draft) = (
        rust(laic::clip::ImageDecode::Full),
        rust(laic::clip::ImageDecode::Draft),
    );
    assert_ne!(full[..d], draft[..d]);
    assert_eq!(full[d..], draft[d..]);
    // SAFETY: valid pointers for the sizes passed.
    unsafe {
        let mut opts = std::mem::zeroed::<LaicImageFileOptions>();
        let size = std::mem::size_of::<LaicImageFileOptions>();
        assert_eq!(
            laic_image_file_options_default(&mut opts, size),
            LaicStatus::Ok
        );
        assert_eq!(
            (opts.struct_size, opts.decode, opts.exif_orientation),
            (size, LAIC_IMAGE_DECODE_FULL, 0)
        );
        let run = |opts: *const LaicImageFileOptions, out: &mut Vec<f32>| {
            laic_clip_encode_image_files_with_options(
                h.ctx,
                h.model,
                paths.as_ptr(),
                2,
                opts,
                null_mut(),
                None,
                null_mut(),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        // NULL options and the defaults decode in full; DRAFT as the Rust API.
        for (o, want) in [(null(), &full), (&opts as *const _, &full)] {
            let mut out = vec![f32::NAN; 2 * d];
            assert_eq!(run(o, &mut out), LaicStatus::Ok, "{}", last_error());
            assert_eq!(&out, want);
        }
        opts.decode = LAIC_IMAGE_DECODE_DRAFT;
        let mut out = vec![f32::NAN; 2 * d];
        assert_eq!(run(&opts, &mut out), LaicStatus::Ok, "{}", last_error());
        assert_eq!(out, draft);
        // An older caller's smaller struct keeps the defaults for the fields it lacks.
        let mut old = opts;
        old.struct_size = std::mem::size_of::<usize>();
        assert_eq!(run(&old, &mut out), LaicStatus::Ok, "{}", last_error());
        assert_eq!(out, full);
        // Unknown values and sizes are refused; nothing is written.
        for (decode, struct_size, field) in [
            (2, size, "options.decode"),
            (LAIC_IMAGE_DECODE_DRAFT, 0, "options.struct_size"),
        ] {
            opts.decode = decode;
            opts.struct_size = struct_size;
            let mut out = vec![-7.0f32; 2 * d];
            assert_eq!(run(&opts, &mut out), LaicStatus::InvalidArgument);
            assert!(last_error().contains(field), "{}", last_error());
            assert!(out.iter().all(|&v| v == -7.0));
        }
    }
}

#[test]
fn exif_orientation_is_an_option_of_the_image_file_call() {
    let h = load("hf");
    let d = embed_dim(&h);
    // orient6.jpg: stored sideways, EXIF orientation 6.
    let file = fixtures().join("preprocess/orient6.jpg");
    let path = cstring(&file);
    let paths = [path.as_ptr()];
    let ctx = laic::Context::cpu();
    let model = laic::clip::ClipModel::load(&ctx, &fixtures().join("hf")).unwrap();
    let rust = |exif_orientation| {
        let opts = laic::clip::ImageFileOptions {
            exif_orientation,
            ..Default::default()
        };
        model
            .encode_image_files_with(&ctx, &[file.as_path()], &opts, Progress::none())
            .unwrap()
    };
    // SAFETY: valid pointers for the sizes passed.
    unsafe {
        let mut opts = std::mem::zeroed::<LaicImageFileOptions>();
        let size = std::mem::size_of::<LaicImageFileOptions>();
        assert_eq!(
            laic_image_file_options_default(&mut opts, size),
            LaicStatus::Ok
        );
        for (flag, upright) in [(0, false), (1, true), (7, true)] {
            opts.exif_orientation = flag;
            let mut out = vec![f32::NAN; d];
            let st = laic_clip_encode_image_files_with_options(
                h.ctx,
                h.model,
                paths.as_ptr(),
                1,
                &opts,
                null_mut(),
                None,
                null_mut(),
                out.as_mut_ptr(),
                d,
            );
            assert_eq!(st, LaicStatus::Ok, "{}", last_error());
            assert_eq!(out, rust(upright), "flag {flag}");
        }
    }
    assert_ne!(rust(true), rust(false));
}

#[test]
fn with_file_status_unreadable_files_are_reported_and_the_rest_embedded() {
    let h = load("hf");
    let d = embed_dim(&h);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("clip-ffi-file-status");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.jpg");
    std::fs::write(&broken, b"\xFF\xD8\xFF\xE0 not really a JPEG").unwrap();
    let good = [
        fixtures().join("images/img0.png"),
        fixtures().join("images/img1.png"),
    ];
    let files = [
        good[0].clone(),
        dir.join("missing.png"),
        broken,
        good[1].clone(),
    ];
    let owned: Vec<CString> = files.iter().map(|p| cstring(p)).collect();
    let paths: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
    let ctx = laic::Context::cpu();
    let model = laic::clip::ClipModel::load(&ctx, &fixtures().join("hf")).unwrap();
    let refs: Vec<&Path> = good.iter().map(|p| p.as_path()).collect();
    let want = model
        .encode_image_files(&ctx, &refs, Progress::none())
        .unwrap();
    // SAFETY: valid pointers for the sizes passed.
    unsafe {
        let run = |status: *mut LaicStatus, out: &mut Vec<f32>| {
            laic_clip_encode_image_files_with_options(
                h.ctx,
                h.model,
                paths.as_ptr(),
                4,
                null(),
                status,
                None,
                null_mut(),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        let mut out = vec![f32::NAN; 4 * d];
        let mut status = [LaicStatus::Internal; 4];
        assert_eq!(
            run(status.as_mut_ptr(), &mut out),
            LaicStatus::Ok,
            "{}",
            last_error()
        );
        assert_eq!(
            status,
            [
                LaicStatus::Ok,
                LaicStatus::Io,
                LaicStatus::Format,
                LaicStatus::Ok
            ]
        );
        assert_eq!(out[..d], want[..d]);
        assert_eq!(out[3 * d..], want[d..]);
        assert!(out[d..3 * d].iter().all(|&v| v == 0.0));
        // Without statuses the first unreadable file fails the call; nothing is written.
        let mut out = vec![-7.0f32; 4 * d];
        assert_eq!(run(null_mut(), &mut out), LaicStatus::Io);
        assert!(last_error().contains("missing.png"), "{}", last_error());
        assert!(out.iter().all(|&v| v == -7.0));
        // A failing call (the output too small) writes no statuses either.
        let mut small = vec![-7.0f32; 4 * d - 1];
        let mut status = [LaicStatus::Internal; 4];
        assert_eq!(
            run(status.as_mut_ptr(), &mut small),
            LaicStatus::BufferTooSmall
        );
        assert_eq!(status, [LaicStatus::Internal; 4]);
        assert!(small.iter().all(|&v| v == -7.0));
    }
}

#[test]
fn bad_text_inputs_are_reported_and_nothing_is_written() {
    let h = load("hf");
    let d = embed_dim(&h);
    let good = CString::new("a cat").unwrap();
    let bad_utf8: &[u8] = b"caf\xe9\0";
    let ptrs = [good.as_ptr(), bad_utf8.as_ptr() as *const c_char];
    let mut out = vec![-7.0f32; 2 * d];
    // SAFETY: valid pointers for the sizes passed (or deliberately NULL).
    unsafe {
        let st = laic_clip_encode_texts(
            h.ctx,
            h.model,
            ptrs.as_ptr(),
            2,
            None,
            null_mut(),
            out.as_mut_ptr(),
            out.len(),
        );
        assert_eq!(st, LaicStatus::InvalidArgument);
        assert!(
            last_error().contains("texts[1] is not valid UTF-8"),
            "{}",
            last_error()
        );
        let with_null = [good.as_ptr(), null()];
        let st = laic_clip_encode_texts(
            h.ctx,
            h.model,
            with_null.as_ptr(),
            2,
            None,
            null_mut(),
            out.as_mut_ptr(),
            out.len(),
        );
        assert_eq!(st, LaicStatus::InvalidArgument);
        assert!(
            last_error().contains("texts[1] is NULL"),
            "{}",
            last_error()
        );
        let st = laic_clip_encode_texts(
            h.ctx,
            h.model,
            ptrs.as_ptr(),
            0,
            None,
            null_mut(),
            out.as_mut_ptr(),
            out.len(),
        );
        assert_eq!(st, LaicStatus::InvalidArgument);
        let st = laic_clip_encode_texts(
            h.ctx,
            h.model,
            ptrs.as_ptr(),
            1,
            None,
            null_mut(),
            out.as_mut_ptr(),
            d - 1,
        );
        assert_eq!(st, LaicStatus::BufferTooSmall);
        let st = laic_clip_encode_texts(
            h.ctx,
            h.model,
            ptrs.as_ptr(),
            1,
            None,
            null_mut(),
            null_mut(),
            d,
        );
        assert_eq!(st, LaicStatus::InvalidArgument);
        let st = laic_clip_encode_texts(
            h.ctx,
            null(),
            ptrs.as_ptr(),
            1,
            None,
            null_mut(),
            out.as_mut_ptr(),
            d,
        );
        assert_eq!(st, LaicStatus::InvalidArgument);
        let st = laic_clip_encode_texts(
            null(),
            h.model,
            ptrs.as_ptr(),
            1,
            None,
            null_mut(),
            out.as_mut_ptr(),
            d,
        );
        assert_eq!(st, LaicStatus::InvalidArgument);
        let st = laic_clip_embed_dim(null(), null_mut());
        assert_eq!(st, LaicStatus::InvalidArgument);
    }
    assert!(
        out.iter().all(|&v| v == -7.0),
        "outputs are written only on success"
    );
}

unsafe extern "C" fn cancel_after_first(user: *mut c_void, stage: LaicStage, fraction: f64) -> i32 {
    // SAFETY: the test passes a pointer to a Vec<(LaicStage, f64)>.
    let calls = unsafe { &mut *(user as *mut Vec<(LaicStage, f64)>) };
    calls.push((stage, fraction));
    1
}

#[test]
fn a_progress_callback_can_cancel() {
    let h = load("hf");
    let d = embed_dim(&h);
    let texts: Vec<CString> = (0..100)
        .map(|i| CString::new(format!("thing {i}")).unwrap())
        .collect();
    let ptrs: Vec<*const c_char> = texts.iter().map(|s| s.as_ptr()).collect();
    let mut out = vec![-7.0f32; 100 * d];
    let mut calls: Vec<(LaicStage, f64)> = Vec::new();
    // SAFETY: valid pointers; the callback reads `calls` through `user`.
    let st = unsafe {
        laic_clip_encode_texts(
            h.ctx,
            h.model,
            ptrs.as_ptr(),
            100,
            Some(cancel_after_first),
            &mut calls as *mut _ as *mut c_void,
            out.as_mut_ptr(),
            out.len(),
        )
    };
    assert_eq!(st, LaicStatus::Cancelled);
    assert_eq!(calls, vec![(LAIC_STAGE_TEXT_ENCODING, 0.64)]);
    assert!(out.iter().all(|&v| v == -7.0));
}

#[test]
fn bad_files_and_images_are_reported() {
    let h = load("openai");
    let d = embed_dim(&h);
    let dir = std::env::temp_dir().join(format!("laic-clip-ffi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = vec![-7.0f32; d];
    // SAFETY: valid pointers for the sizes passed (or deliberately NULL / wrong).
    unsafe {
        // Unreadable and undecodable image files.
        let junk = dir.join("junk.png");
        std::fs::write(&junk, b"\x89PNG\r\n\x1a\n broken").unwrap();
        let p = cstring(&junk);
        let st = laic_clip_encode_image_files(
            h.ctx,
            h.model,
            [p.as_ptr()].as_ptr(),
            1,
            None,
            null_mut(),
            out.as_mut_ptr(),
            d,
        );
        assert_eq!(st, LaicStatus::Format, "{}", last_error());
        assert!(last_error().contains("junk.png"));
        let p = cstring(&dir.join("missing.jpg"));
        let st = laic_clip_encode_image_files(
            h.ctx,
            h.model,
            [p.as_ptr()].as_ptr(),
            1,
            None,
            null_mut(),
            out.as_mut_ptr(),
            d,
        );
        assert_eq!(st, LaicStatus::Io, "{}", last_error());
        // RGB8 descriptors with bad sizes or NULL data.
        let px = [0u8; 12];
        for (data, w, hgt, stride) in [
            (px.as_ptr(), 0, 2, 6),
            (px.as_ptr(), 2, 2, 5),
            (null(), 2, 2, 6),
            (px.as_ptr(), usize::MAX / 2, 3, usize::MAX / 2),
        ] {
            let desc = LaicImageRgb8 {
                data,
                width: w,
                height: hgt,
                row_stride: stride,
            };
            let st = laic_clip_encode_images_rgb8(
                h.ctx,
                h.model,
                &desc,
                1,
                None,
                null_mut(),
                out.as_mut_ptr(),
                d,
            );
            assert_eq!(
                st,
                LaicStatus::InvalidArgument,
                "{w}×{hgt}/{stride}: {}",
                last_error()
            );
            assert!(last_error().contains("images[0]"), "{}", last_error());
        }
        // Corrupt, truncated and non-CLIP weight files; a NULL path.
        let mut model = null_mut();
        let bytes = std::fs::read(fixtures().join("hf/model.safetensors")).unwrap();
        let cut = dir.join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
        let p = cstring(&cut);
        assert_eq!(
            laic_clip_load(h.ctx, p.as_ptr(), &mut model),
            LaicStatus::Format
        );
        assert!(last_error().contains("truncated"), "{}", last_error());
        let mut garbage = bytes.clone();
        garbage[8..40].copy_from_slice(&[b'#'; 32]);
        std::fs::write(&cut, &garbage).unwrap();
        assert_eq!(
            laic_clip_load(h.ctx, p.as_ptr(), &mut model),
            LaicStatus::Format
        );
        assert_eq!(
            laic_clip_load(h.ctx, null(), &mut model),
            LaicStatus::InvalidArgument
        );
        let p = cstring(&dir.join("none"));
        assert_eq!(
            laic_clip_load(h.ctx, p.as_ptr(), &mut model),
            LaicStatus::Io
        );
        assert!(model.is_null(), "out is untouched on failure");
        laic_clip_free(null_mut());
    }
    assert!(out.iter().all(|&v| v == -7.0));
    std::fs::remove_dir_all(&dir).unwrap();
}
