//! End to end: a folder of JPEGs → CLIP embeddings (`ClipModel::encode_image_files`), and where
//! the time goes, on a random full-size ViT-B/32 (weights written here, f16, to a temporary
//! folder).
//!
//! The photos are synthetic but compress like photos (2–2.8 bits per pixel): a smooth
//! two-colour gradient with a vignette, value-noise texture at four scales, soft-edged ellipses
//! and rectangles, a wavy patch and sensor-like noise, written by libjpeg-turbo's encoder (the
//! one inside mozjpeg, with its libjpeg-turbo profile: baseline, standard tables and Huffman
//! codes) at quality 90 with 4:2:0 chroma subsampling, as cameras, ImageNet and PIL's `save`
//! write them (checked in the frame header). The `image` crate's encoder would not do: it
//! writes 4:4:4 only (every component at full resolution, twice the blocks of 4:2:0), although
//! its documentation says 4:2:2. By default the sizes resemble a photo library: of every 16
//! images, 11 are 500×375 and 2 are 375×500 (ImageNet-like), 2 are 1600×1200 and 1 is
//! 4000×3000 (a phone photo).
//!
//! One JSON line per measurement (`{"bench":"clip_folder","what":…}`):
//!
//! - `decode_1t`, `preprocess_1t`: one thread, per size class, ms per image (decode: JPEG bytes
//!   in memory → RGB; preprocess: resize + centre crop + normalise of the decoded RGB);
//! - `prep_all_threads`: read + decode + preprocess of every file on all threads of the
//!   context (images/s): the CPU ceiling of the pipeline;
//! - `encode_pixels_input_check`: what the finiteness check of the public `encode_pixels`
//!   costs on 1024 images (timed on pixels whose last value is NaN: refused before encoding);
//! - `encode_only`: `ClipModel::encode_pixels` of one batch of preprocessed tensors (median
//!   wall; on CUDA also the device time of the forward pass, the input check, and the rest:
//!   converting the pixels to operands and uploading them (301 KB per image in f16), the
//!   download, syncs);
//! - `end_to_end`: `encode_image_files` on the folder (median wall images/s of 3 runs; on CUDA
//!   also the summed device time of every batch, read after each batch through the progress
//!   callback);
//! - `where`: per image, the single-thread ms of decode and preprocessing (weighted by the
//!   folder's mix), the encoder's and the upload's ms, and which stage bounds the pipeline.
//!
//! `cargo run --release --example clip_folder_bench -- [--device cpu|cuda] [--n N]
//! [--size WxH] [--threads T] [--quick] [--precision f16|bf16|f32] [--decode full|draft]
//! [--dir DIR]`
//! (`--decode draft`: JPEG drafts, `ImageDecode::Draft`, in every stage; every line says which)
//! (defaults: cuda, N = 4096 on CUDA and 48 on the CPU, the library mix, the context's default
//! threads; `--dir` writes the JPEGs there and keeps them). With `--device cuda` and no CUDA
//! device it prints `SKIPPED` and exits 0 (1 when `LAIC_REQUIRE_CUDA=1`).

#[path = "../tests/common/random_clip.rs"]
mod random_clip;

#[path = "common/mod.rs"]
mod common;

use common::median;

use laic::clip::preprocess::{ImageDecode, decode_rgb8_with, load_rgb8_with, preprocess_rgb8};
use laic::clip::{ClipDevice, ClipLoadOptions, ClipModel, ClipPrecision, ImageFileOptions};
use laic::{BackendKind, Context, ContextOptions, Progress};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// JPEG quality of the written photos.
const QUALITY: i32 = 90;
/// Distinct photos per size class; files beyond them repeat their bytes (decoding costs the
/// same, and writing stays quick).
const UNIQUE: usize = 24;
/// The library mix: sizes of every 16 consecutive images.
const MIX: [(usize, usize); 16] = [
    (500, 375),
    (500, 375),
    (375, 500),
    (500, 375),
    (1600, 1200),
    (500, 375),
    (500, 375),
    (500, 375),
    (4000, 3000),
    (500, 375),
    (375, 500),
    (500, 375),
    (1600, 1200),
    (500, 375),
    (500, 375),
    (500, 375),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dev {
    Cpu,
    Cuda,
}

struct Args {
    device: Dev,
    n: Option<usize>,
    size: Option<(usize, usize)>,
    threads: usize,
    quick: bool,
    precision: ClipPrecision,
    decode: ImageDecode,
    dir: Option<PathBuf>,
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "clip_folder_bench: {msg}\nusage: clip_folder_bench [--device cpu|cuda] [--n N] \
         [--size WxH] [--threads T] [--quick] [--precision f16|bf16|f32] \
         [--decode full|draft] [--dir DIR]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        device: Dev::Cuda,
        n: None,
        size: None,
        threads: 0,
        quick: false,
        precision: ClipPrecision::F16,
        decode: ImageDecode::Full,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--quick" => a.quick = true,
            "--device" => {
                a.device = match value().as_str() {
                    "cpu" => Dev::Cpu,
                    "cuda" => Dev::Cuda,
                    d => usage(&format!("unknown device {d}")),
                }
            }
            "--n" => a.n = Some(value().parse().unwrap_or_else(|_| usage("bad --n"))),
            "--threads" => a.threads = value().parse().unwrap_or_else(|_| usage("bad --threads")),
            "--size" => {
                let v = value();
                let (w, h) = v.split_once('x').unwrap_or_else(|| usage("--size is WxH"));
                let (w, h) = (w.parse(), h.parse());
                match (w, h) {
                    (Ok(w), Ok(h)) if w > 0 && h > 0 && w < 65500 && h < 65500 => {
                        a.size = Some((w, h))
                    }
                    _ => usage("--size is WxH, sides 1 to 65499"),
                }
            }
            "--precision" => {
                a.precision = match value().as_str() {
                    "f16" => ClipPrecision::F16,
                    "bf16" => ClipPrecision::Bf16,
                    "f32" => ClipPrecision::F32,
                    p => usage(&format!("unknown precision {p}")),
                }
            }
            "--decode" => {
                let v = value();
                a.decode = ImageDecode::from_name(&v)
                    .unwrap_or_else(|| usage(&format!("unknown decoding {v}")));
            }
            "--dir" => a.dir = Some(PathBuf::from(value())),
            f => usage(&format!("unknown argument {f}")),
        }
    }
    a
}

/// A photo-like `w × h` RGB image, deterministic in `seed`.
fn photo(w: usize, h: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut col = || -> [f32; 3] { std::array::from_fn(|_| rng.random_range(20.0..235.0)) };
    let (c0, c1) = (col(), col());
    let angle: f32 = rng.random_range(0.0..std::f32::consts::TAU);
    let (ux, uy) = (angle.cos(), angle.sin());
    let diag = ((w * w + h * h) as f32).sqrt();
    // Background: a gradient along (ux, uy) from c0 to c1, with a gentle vignette.
    let mut img = vec![0f32; 3 * w * h];
    for y in 0..h {
        let fy = y as f32 - h as f32 / 2.0;
        for x in 0..w {
            let fx = x as f32 - w as f32 / 2.0;
            let t = ((fx * ux + fy * uy) / diag + 0.5).clamp(0.0, 1.0);
            let v = 1.0 - 0.35 * (fx * fx + fy * fy) / (diag * diag / 4.0);
            for c in 0..3 {
                img[3 * (y * w + x) + c] = (c0[c] + (c1[c] - c0[c]) * t) * v;
            }
        }
    }
    // Shapes: soft-edged ellipses and rectangles of random colours, some translucent.
    let side = w.min(h) as f32;
    for _ in 0..rng.random_range(6..14) {
        let color: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0..255.0));
        let (cx, cy) = (
            rng.random_range(0.0..w as f32),
            rng.random_range(0.0..h as f32),
        );
        let (rx, ry) = (
            rng.random_range(0.04..0.3) * side,
            rng.random_range(0.04..0.3) * side,
        );
        let alpha: f32 = rng.random_range(0.5..1.0);
        let ellipse = rng.random_bool(0.6);
        let edge = rng.random_range(1.0..4.0f32);
        let (x0, x1) = (
            (cx - rx - edge).max(0.0) as usize,
            ((cx + rx + edge) as usize).min(w),
        );
        let (y0, y1) = (
            (cy - ry - edge).max(0.0) as usize,
            ((cy + ry + edge) as usize).min(h),
        );
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                // Signed distance (pixels, approximate) to the outline: < 0 inside.
                let d = if ellipse {
                    (((dx / rx).powi(2) + (dy / ry).powi(2)).sqrt() - 1.0) * rx.min(ry)
                } else {
                    (dx.abs() - rx).max(dy.abs() - ry)
                };
                let a = alpha * (0.5 - d / edge).clamp(0.0, 1.0);
                if a > 0.0 {
                    let p = &mut img[3 * (y * w + x)..][..3];
                    for c in 0..3 {
                        p[c] += (color[c] - p[c]) * a;
                    }
                }
            }
        }
    }
    // Texture everywhere: value noise (bilinearly interpolated random lattices) at four
    // scales relative to the image, so a larger photo samples the same kind of scene finer.
    for (cells, amp) in [(5.0f32, 22.0f32), (20.0, 14.0), (80.0, 12.0), (320.0, 18.0)] {
        let cell = side / cells;
        let (gw, gh) = (
            (w as f32 / cell) as usize + 2,
            (h as f32 / cell) as usize + 2,
        );
        let lattice: Vec<f32> = (0..gw * gh)
            .map(|_| rng.random_range(-1.0..1.0f32))
            .collect();
        let tint: [f32; 3] = std::array::from_fn(|_| amp * rng.random_range(0.7..1.0f32));
        for y in 0..h {
            let gy = y as f32 / cell;
            let (iy, fy) = (gy as usize, gy.fract());
            let (r0, r1) = (&lattice[iy * gw..][..gw], &lattice[(iy + 1) * gw..][..gw]);
            for x in 0..w {
                let gx = x as f32 / cell;
                let (ix, fx) = (gx as usize, gx.fract());
                let top = r0[ix] + (r0[ix + 1] - r0[ix]) * fx;
                let bottom = r1[ix] + (r1[ix + 1] - r1[ix]) * fx;
                let v = top + (bottom - top) * fy;
                let p = &mut img[3 * (y * w + x)..][..3];
                for c in 0..3 {
                    p[c] += v * tint[c];
                }
            }
        }
    }
    // A textured patch (foliage, fabric): two crossed waves.
    let (tx0, ty0) = (
        rng.random_range(0..w / 2 + 1),
        rng.random_range(0..h / 2 + 1),
    );
    let (tx1, ty1) = ((tx0 + w / 3 + 1).min(w), (ty0 + h / 3 + 1).min(h));
    let (kx, ky) = (
        rng.random_range(0.05..0.4f32) * 224.0 / side,
        rng.random_range(0.05..0.4f32) * 224.0 / side,
    );
    let wave_x: Vec<f32> = (tx0..tx1).map(|x| (x as f32 * kx * 7.0).sin()).collect();
    for y in ty0..ty1 {
        let wy = (y as f32 * ky * 5.0).cos();
        for (x, wx) in (tx0..tx1).zip(&wave_x) {
            let v = 28.0 * wx * wy;
            for c in 0..3 {
                img[3 * (y * w + x) + c] += v * (1.0 - 0.3 * c as f32);
            }
        }
    }
    // Sensor noise (triangular, ±16 levels), then 8 bits.
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    img.iter()
        .map(|&v| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let n = ((s & 0xff) as f32 + ((s >> 8) & 0xff) as f32) / 255.0 - 1.0;
            (v + 16.0 * n).round().clamp(0.0, 255.0) as u8
        })
        .collect()
}

unsafe extern "C" {
    /// C's `free`, for the buffer `jpeg_mem_dest` allocates.
    fn free(p: *mut std::ffi::c_void);
}

/// Encodes packed RGB as a baseline JPEG with libjpeg-turbo's defaults (4:2:0, standard
/// tables), at `quality`.
fn encode_jpeg(rgb: &[u8], w: usize, h: usize, quality: i32) -> Vec<u8> {
    use mozjpeg_sys::*;
    assert_eq!(rgb.len(), 3 * w * h);
    // SAFETY: libjpeg's documented compression sequence on zero-initialised plain C structs
    // that stay in place until `jpeg_destroy_compress`; the default error handler exits the
    // process on a fatal error (cannot happen for a valid RGB image of these sizes). Each row
    // pointer points into `rgb`, which outlives the calls; the output buffer is malloc'ed by
    // `jpeg_mem_dest`, copied out, then freed.
    unsafe {
        let mut err: jpeg_error_mgr = std::mem::zeroed();
        let mut cinfo: jpeg_compress_struct = std::mem::zeroed();
        cinfo.common.err = jpeg_std_error(&mut err);
        jpeg_CreateCompress(
            &mut cinfo,
            JPEG_LIB_VERSION,
            std::mem::size_of::<jpeg_compress_struct>(),
        );
        let mut buf: *mut u8 = std::ptr::null_mut();
        let mut size: c_ulong = 0;
        jpeg_mem_dest(&mut cinfo, &mut buf, &mut size);
        cinfo.image_width = w as u32;
        cinfo.image_height = h as u32;
        cinfo.input_components = 3;
        cinfo.in_color_space = J_COLOR_SPACE::JCS_RGB;
        // libjpeg-turbo's behaviour, not mozjpeg's (progressive, trellis, other tables).
        jpeg_c_set_int_param(
            &mut cinfo,
            J_INT_PARAM::JINT_COMPRESS_PROFILE,
            JCP_FASTEST as c_int,
        );
        jpeg_set_defaults(&mut cinfo);
        jpeg_set_quality(&mut cinfo, quality, 1);
        jpeg_start_compress(&mut cinfo, 1);
        while (cinfo.next_scanline as usize) < h {
            let row: JSAMPROW = rgb[cinfo.next_scanline as usize * 3 * w..].as_ptr();
            jpeg_write_scanlines(&mut cinfo, &row, 1);
        }
        jpeg_finish_compress(&mut cinfo);
        let out = std::slice::from_raw_parts(buf, size as usize).to_vec();
        jpeg_destroy_compress(&mut cinfo);
        free(buf.cast());
        out
    }
}

/// The luma sampling factors and baseline-ness of a JPEG's frame header: `(h, v, baseline)`.
fn frame_info(jpeg: &[u8]) -> (u8, u8, bool) {
    let mut i = 2;
    while i + 4 < jpeg.len() {
        assert_eq!(jpeg[i], 0xFF, "a marker");
        let marker = jpeg[i + 1];
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if (0xC0..=0xC2).contains(&marker) {
            // SOFn: length, precision, height, width, components, then id + sampling + table.
            let hv = jpeg[i + 4 + 7];
            return (hv >> 4, hv & 15, marker == 0xC0);
        }
        i += 2 + len;
    }
    panic!("no frame header")
}

/// What every line names: the model's device string and the decoding.
struct Label {
    device: String,
    decode: ImageDecode,
}

fn emit(mut v: Value, label: &Label) {
    let o = v.as_object_mut().expect("an object");
    let mut line = serde_json::Map::new();
    line.insert("bench".into(), json!("clip_folder"));
    line.insert("what".into(), o.remove("what").unwrap_or(Value::Null));
    line.insert("device".into(), json!(label.device));
    line.insert("decode".into(), json!(label.decode.name()));
    line.extend(std::mem::take(o));
    println!("{}", Value::Object(line));
}

/// Rounds for the JSON lines.
fn r3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// The smallest cosine between corresponding rows of `a` and `b` (rows of `d`).
fn min_cosine(a: &[f32], b: &[f32], d: usize) -> f64 {
    a.chunks(d)
        .zip(b.chunks(d))
        .map(|(x, y)| {
            let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
            for (&p, &q) in x.iter().zip(y) {
                let (p, q) = (p as f64, q as f64);
                xy += p * q;
                xx += p * p;
                yy += q * q;
            }
            xy / (xx * yy).sqrt()
        })
        .fold(1.0, f64::min)
}

fn main() {
    let args = parse_args();
    let backend = match args.device {
        Dev::Cpu => BackendKind::Cpu,
        Dev::Cuda => BackendKind::Cuda,
    };
    let ctx = common::context_or_skip(Context::with_options(&ContextOptions {
        backend,
        n_threads: args.threads,
        device: 0,
    }));
    let threads = ctx.install(rayon::current_num_threads);
    let n = args.n.unwrap_or(match (args.device, args.quick) {
        (Dev::Cpu, false) => 48,
        (Dev::Cpu, true) => 16,
        (Dev::Cuda, false) => 4096,
        (Dev::Cuda, true) => 2048,
    });
    assert!(n > 0, "--n must be > 0");

    // The photos: each file's size class, the distinct photos of each class, the files.
    let class_of = |i: usize| args.size.unwrap_or(MIX[i % MIX.len()]);
    let mut classes: Vec<(usize, usize)> = Vec::new();
    for i in 0..n {
        if !classes.contains(&class_of(i)) {
            classes.push(class_of(i));
        }
    }
    let count = |c: (usize, usize)| (0..n).filter(|&i| class_of(i) == c).count();
    let t = Instant::now();
    let jpegs: Vec<Vec<Vec<u8>>> = ctx.install(|| {
        classes
            .iter()
            .enumerate()
            .map(|(ci, &(w, h))| {
                (0..count((w, h)).min(UNIQUE))
                    .into_par_iter()
                    .map(|u| encode_jpeg(&photo(w, h, (ci * 1000 + u) as u64), w, h, QUALITY))
                    .collect()
            })
            .collect()
    });
    let (hs, vs, baseline) = frame_info(&jpegs[0][0]);
    assert!(
        (hs, vs, baseline) == (2, 2, true),
        "4:2:0 baseline expected, the encoder wrote luma {hs}×{vs}, baseline {baseline}"
    );
    let (dir, keep) = match &args.dir {
        Some(d) => (d.clone(), true),
        None => (
            std::env::temp_dir().join(format!("laic-folder-bench-{}", std::process::id())),
            false,
        ),
    };
    std::fs::create_dir_all(&dir).expect("the image folder");
    let mut seen = vec![0usize; classes.len()];
    let mut paths = Vec::with_capacity(n);
    let mut bytes_total = 0usize;
    for i in 0..n {
        let ci = classes.iter().position(|&c| c == class_of(i)).unwrap();
        let bytes = &jpegs[ci][seen[ci] % jpegs[ci].len()];
        seen[ci] += 1;
        let p = dir.join(format!("img_{i:05}.jpg"));
        std::fs::write(&p, bytes).expect("a JPEG is written");
        bytes_total += bytes.len();
        paths.push(p);
    }
    eprintln!(
        "wrote {n} JPEGs ({:.1} MB, {} distinct) to {} in {:.1} s; {threads} threads",
        bytes_total as f64 / 1e6,
        jpegs.iter().map(Vec::len).sum::<usize>(),
        dir.display(),
        t.elapsed().as_secs_f64()
    );

    let spec = random_clip::Spec::vit_b32();
    let model_dir = std::env::temp_dir().join(format!("laic-folder-model-{}", std::process::id()));
    let t = Instant::now();
    random_clip::write(&model_dir, &spec, safetensors::Dtype::F16, 1);
    let model = ClipModel::load_with_options(
        &ctx,
        &model_dir,
        &ClipLoadOptions {
            precision: args.precision,
            device: ClipDevice::Context,
        },
    )
    .expect("the model loads");
    let label = Label {
        device: model.device(),
        decode: args.decode,
    };
    let on_cuda = label.device.starts_with("cuda");
    let file_opts = ImageFileOptions {
        decode: args.decode,
        ..Default::default()
    };
    eprintln!(
        "random ViT-B/32 written and loaded on {} in {:.1} s",
        label.device,
        t.elapsed().as_secs_f64()
    );
    let s = model.image_size();
    let per = 3 * s * s;
    let d = model.embed_dim();

    // 1. One thread, per size class: decode (bytes in memory), preprocess (decoded RGB).
    let mut class_ms = Vec::new();
    for (ci, &(w, h)) in classes.iter().enumerate() {
        let files = &jpegs[ci];
        let mut out = vec![0f32; per];
        let (mut dec, mut pre) = (Vec::new(), Vec::new());
        let budget = if args.quick { 0.3 } else { 1.0 };
        let start = Instant::now();
        let mut k = 0;
        // At least 3 images, then until the time budget or 400 images.
        while k < 3 || (start.elapsed().as_secs_f64() < budget && k < 400) {
            let bytes = &files[k % files.len()];
            let t = Instant::now();
            let img = decode_rgb8_with(bytes, &file_opts, s).expect("decodes");
            dec.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            preprocess_rgb8(&img.as_ref(), s, &mut out).expect("preprocesses");
            pre.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(args.decode == ImageDecode::Draft || (img.width, img.height) == (w, h));
            k += 1;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (dm, pm) = (mean(&dec), mean(&pre));
        let bpp =
            files.iter().map(Vec::len).sum::<usize>() as f64 * 8.0 / (files.len() * w * h) as f64;
        emit(
            json!({"what":"decode_1t","size":format!("{w}x{h}"),"images":dec.len(),
                "ms_per_image":r3(dm),"median_ms":r3(median(dec.clone())),
                "mpix_per_s":r3((w * h) as f64 / dm / 1e3),"bits_per_pixel":r3(bpp),
                "subsampling":"4:2:0","quality":QUALITY}),
            &label,
        );
        emit(
            json!({"what":"preprocess_1t","size":format!("{w}x{h}"),"images":pre.len(),
                "ms_per_image":r3(pm),"median_ms":r3(median(pre))}),
            &label,
        );
        class_ms.push((count((w, h)), dm, pm));
    }
    let mix_decode = class_ms
        .iter()
        .map(|&(c, dm, _)| c as f64 * dm)
        .sum::<f64>()
        / n as f64;
    let mix_prep = class_ms
        .iter()
        .map(|&(c, _, pm)| c as f64 * pm)
        .sum::<f64>()
        / n as f64;

    // 2. Read + decode + preprocess of every file on all threads of the context.
    let prep_all = || {
        let t = Instant::now();
        ctx.install(|| {
            paths.par_iter().for_each_init(
                || vec![0f32; per],
                |out, p| {
                    let img = load_rgb8_with(p, &file_opts, s).expect("decodes");
                    preprocess_rgb8(&img.as_ref(), s, out).expect("preprocesses");
                },
            )
        });
        t.elapsed().as_secs_f64()
    };
    let prep_s = median(
        (0..if args.quick { 1 } else { 3 })
            .map(|_| prep_all())
            .collect(),
    );
    let prep_ips = n as f64 / prep_s;
    emit(
        json!({"what":"prep_all_threads","images":n,"threads":threads,"wall_s":r3(prep_s),
            "img_per_s":r3(prep_ips),
            "img_per_s_from_1t":r3(threads as f64 * 1e3 / (mix_decode + mix_prep))}),
        &label,
    );

    // 3. The encoder alone, on one batch of preprocessed tensors (the folder's first images,
    //    repeated up to a batch).
    let batch = if on_cuda {
        if args.quick { 256 } else { 1024 }
    } else {
        16
    };
    let mut pixels = vec![0f32; batch * per];
    ctx.install(|| {
        pixels.par_chunks_mut(per).enumerate().for_each(|(j, out)| {
            let img = load_rgb8_with(&paths[j % n], &file_opts, s).expect("decodes");
            preprocess_rgb8(&img.as_ref(), s, out).expect("preprocesses");
        })
    });
    // What the public call's input check costs per image: 1024 images (this batch repeated)
    // with the last pixel NaN are scanned to the end and refused before any encoding.
    let check_images = 1024;
    let check_ms = {
        let mut bad: Vec<f32> = pixels
            .iter()
            .copied()
            .cycle()
            .take(check_images * per)
            .collect();
        *bad.last_mut().unwrap() = f32::NAN;
        median(
            (0..3)
                .map(|_| {
                    let t = Instant::now();
                    let r = model.encode_pixels(&ctx, &bad, check_images, Progress::none());
                    assert!(r.is_err(), "a NaN pixel is refused");
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        )
    };
    emit(
        json!({"what":"encode_pixels_input_check","images":check_images,"ms":r3(check_ms)}),
        &label,
    );
    let scan_ms = check_ms * batch as f64 / check_images as f64;
    // Medians: 6 batches on CUDA (after a warm-up), 3 on the CPU (1 and 3 with --quick).
    let enc_reps = match (on_cuda, args.quick) {
        (true, false) => 6,
        (false, true) => 1,
        _ => 3,
    };
    let (mut wall, mut dev_ms) = (Vec::new(), Vec::new());
    let mut encoded = Vec::new();
    for i in 0..enc_reps + usize::from(on_cuda) {
        let t = Instant::now();
        encoded = model
            .encode_pixels(&ctx, &pixels, batch, Progress::none())
            .expect("images encode");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if on_cuda && i == 0 {
            continue; // warm-up (cuBLAS heuristics, allocations)
        }
        wall.push(ms);
        if on_cuda {
            dev_ms.push(laic::backend::cuda::last_clip_encode_ms().unwrap_or(f32::NAN) as f64);
        }
    }
    let wall_ms = median(wall);
    let mut line = json!({"what":"encode_only","batch":batch,"wall_ms":r3(wall_ms),
        "img_per_s_wall":r3(batch as f64 * 1e3 / wall_ms),"input_check_ms":r3(scan_ms)});
    let mut upload_ms_img = None;
    let mut encoder_ms_img = wall_ms / batch as f64;
    if on_cuda {
        let dm = median(dev_ms);
        let rest = wall_ms - dm - scan_ms;
        encoder_ms_img = dm / batch as f64;
        upload_ms_img = Some(rest / batch as f64);
        let o = line.as_object_mut().unwrap();
        o.insert("device_ms".into(), json!(r3(dm)));
        o.insert(
            "img_per_s_device".into(),
            json!(r3(batch as f64 * 1e3 / dm)),
        );
        o.insert("upload_etc_ms".into(), json!(r3(rest)));
        o.insert(
            "upload_gb_per_s".into(),
            json!(r3((batch * per * 4) as f64 / rest / 1e6)),
        );
    }
    emit(line, &label);

    // 4. End to end: encode_image_files on the folder; on CUDA the device time of each batch.
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let device_sum = Mutex::new((0f64, 0usize));
    let cb = |_: laic::Stage, _: f64| {
        if on_cuda {
            let mut g = device_sum.lock().unwrap();
            g.0 += laic::backend::cuda::last_clip_encode_ms().unwrap_or(f32::NAN) as f64;
            g.1 += 1;
        }
        true
    };
    let mut runs = Vec::new();
    let mut embeddings = Vec::new();
    for _ in 0..if args.quick { 1 } else { 3 } {
        *device_sum.lock().unwrap() = (0.0, 0);
        let t = Instant::now();
        embeddings = model
            .encode_image_files_with(&ctx, &refs, &file_opts, Progress::new(&cb))
            .expect("the folder encodes");
        runs.push((t.elapsed().as_secs_f64(), *device_sum.lock().unwrap()));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (e2e_s, (dev_sum_ms, batches)) = runs[runs.len() / 2];
    // The first images went through the encoder alone above: the same embeddings.
    let k = n.min(batch);
    let cos = min_cosine(&embeddings[..k * d], &encoded[..k * d], d);
    assert!(
        cos > 0.999,
        "end to end and encode_pixels disagree: cos {cos}"
    );
    let e2e_ips = n as f64 / e2e_s;
    let mut line = json!({"what":"end_to_end","images":n,"threads":threads,
        "wall_s":r3(e2e_s),"img_per_s":r3(e2e_ips),"min_cos_vs_encode_only":cos,
        "mix":if args.size.is_some() {"fixed"} else {"library"}});
    if on_cuda {
        let o = line.as_object_mut().unwrap();
        o.insert("batches".into(), json!(batches));
        o.insert("device_ms_sum".into(), json!(r3(dev_sum_ms)));
        o.insert(
            "device_busy_fraction".into(),
            json!(r3(dev_sum_ms / 1e3 / e2e_s)),
        );
    }
    emit(line, &label);

    // 5. Where the time goes, per image.
    let encoder_ips = 1e3 / (encoder_ms_img + upload_ms_img.unwrap_or(0.0));
    let bound = if prep_ips < encoder_ips {
        "cpu decode+preprocess"
    } else {
        "encoder"
    };
    emit(
        json!({"what":"where","images":n,"threads":threads,
            "decode_ms_1t":r3(mix_decode),"preprocess_ms_1t":r3(mix_prep),
            "cpu_ms_per_image_all_threads":r3(1e3 / prep_ips),
            "upload_ms":upload_ms_img.map(r3),"encoder_ms":r3(encoder_ms_img),
            "prep_img_per_s":r3(prep_ips),"encoder_img_per_s":r3(encoder_ips),
            "end_to_end_img_per_s":r3(e2e_ips),
            "end_to_end_vs_bound":r3(e2e_ips / prep_ips.min(encoder_ips)),"bound":bound}),
        &label,
    );

    let _ = std::fs::remove_dir_all(&model_dir);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
