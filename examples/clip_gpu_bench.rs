//! GPU throughput of the CLIP encoders on a random full-size ViT-B/32 (weights written here, f16,
//! to a temporary folder: nothing large is carried to the GPU machine), the two cases:
//!
//! - images: batches of 1024 preprocessed 3×224×224 tensors (`ClipModel::encode_pixels`);
//!   device time (CUDA events from after the upload to the embeddings) and wall time (with the
//!   input check, the conversion of the pixels to operands on the host threads, their upload
//!   — 308 MB per batch in f16 — and the download);
//! - text: prompts of realistic lengths (the 7 templates around nouns of 1–4 tokens, mean about
//!   10 tokens), length-bucketed by `ClipModel::encode_token_ids`; wall time.
//!
//! It also checks the GPU against the CPU towers of the same model on a few inputs (largest
//! relative error and smallest cosine per embedding). One JSON line per measurement, for
//! `scripts/gpu_table.py`; `scripts/clip_torch_gpu_bench.py` times transformers on the same
//! work in the same call (`scripts/gpu-check.sh`).
//!
//! `cargo run --release --example clip_gpu_bench -- [--quick] [--profile] [--precision f16|bf16|f32]`;
//! without a CUDA device it prints `SKIPPED` and exits 0 (1 when `LAIC_REQUIRE_CUDA=1`).
//!
//! `--profile` (with `LAIC_CLIP_PROFILE=1` in the environment, which makes the encoder record
//! an event after every step) prints where the device time of each tower goes, per forward
//! pass of the image batch and per text run, in fewer repetitions and without the throughput
//! lines (the events cost a little) or the CPU parity.
//! `LAIC_CLIP_ATTENTION=fused` selects the fused attention kernel (the device name says so).

#[path = "../tests/common/random_clip.rs"]
mod random_clip;

#[path = "common/mod.rs"]
mod common;

use common::median;

use laic::clip::{ClipDevice, ClipLoadOptions, ClipModel, ClipPrecision};
use laic::{BackendKind, Context, Progress};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use std::time::Instant;

/// Largest relative row error and smallest cosine of `got` against `want` (rows of `d`).
fn row_errors(got: &[f32], want: &[f32], d: usize) -> (f64, f64) {
    let (mut rel, mut cos) = (0f64, 1f64);
    for (g, w) in got.chunks(d).zip(want.chunks(d)) {
        let (mut dot, mut gg, mut ww, mut diff) = (0f64, 0f64, 0f64, 0f64);
        for (&a, &b) in g.iter().zip(w) {
            let (a, b) = (a as f64, b as f64);
            dot += a * b;
            gg += a * a;
            ww += b * b;
            diff += (a - b) * (a - b);
        }
        rel = rel.max(diff.sqrt() / ww.sqrt());
        cos = cos.min(dot / (gg.sqrt() * ww.sqrt()));
    }
    (rel, cos)
}

/// Prints the per-step device times recorded since the last call (`LAIC_CLIP_PROFILE=1`),
/// averaged over `runs`.
fn print_profile(device: &str, what: &str, runs: usize) {
    let steps = laic::backend::cuda::take_clip_profile();
    if steps.is_empty() {
        return;
    }
    let runs = runs.max(1) as f64;
    let total: f64 = steps.iter().map(|(_, ms)| ms).sum::<f64>() / runs;
    let fields: Vec<String> = steps
        .iter()
        .map(|(step, ms)| format!("\"{step}\":{:.3}", ms / runs))
        .collect();
    println!(
        "{{\"bench\":\"clip\",\"what\":\"profile_{what}\",\"device\":\"{device}\",\"device_ms\":{total:.3},\"steps_ms\":{{{}}}}}",
        fields.join(",")
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let profile = args.iter().any(|a| a == "--profile");
    let precision = match args
        .iter()
        .position(|a| a == "--precision")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.as_str())
    {
        Some("f32") => ClipPrecision::F32,
        Some("bf16") => ClipPrecision::Bf16,
        _ => ClipPrecision::F16,
    };
    let ctx = common::context_or_skip(Context::new(BackendKind::Cuda));
    let spec = random_clip::Spec::vit_b32();
    let dir = std::env::temp_dir().join(format!("laic-clip-bench-{}", std::process::id()));
    let t = Instant::now();
    random_clip::write(&dir, &spec, safetensors::Dtype::F16, 1);
    eprintln!(
        "wrote a random ViT-B/32 (f16) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let opts = ClipLoadOptions {
        precision,
        device: ClipDevice::Context,
    };
    let t = Instant::now();
    let model = ClipModel::load_with_options(&ctx, &dir, &opts).expect("the model loads");
    let load_s = t.elapsed().as_secs_f64();
    let device = model.device();
    eprintln!("loaded on {device} in {load_s:.2} s");
    let mut rng = StdRng::seed_from_u64(3);
    let s = model.image_size();
    let per = 3 * s * s;

    // Images: batches of 1024 (as the PyTorch anchor), device-resident compute and wall time.
    let batch = if quick { 128 } else { 1024 };
    let pixels: Vec<f32> = (0..batch * per)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let reps = if quick || profile { 3 } else { 10 };
    let mut dev_ms = Vec::new();
    let mut wall_ms = Vec::new();
    for i in 0..reps + 2 {
        if i == 2 {
            laic::backend::cuda::take_clip_profile(); // drop the warm-up passes
        }
        let t = Instant::now();
        let out = model
            .encode_pixels(&ctx, &pixels, batch, Progress::none())
            .expect("images encode");
        let wall = t.elapsed().as_secs_f64() * 1e3;
        assert!(out.iter().all(|v| v.is_finite()));
        if i >= 2 {
            wall_ms.push(wall);
            dev_ms.push(laic::backend::cuda::last_clip_encode_ms().unwrap_or(f32::NAN) as f64);
        }
    }
    let (dm, wm) = (median(dev_ms), median(wall_ms));
    // A profiled run's times carry the events' cost: it prints only the profile.
    if !profile {
        println!(
            "{{\"bench\":\"clip\",\"what\":\"image\",\"device\":\"{device}\",\"batch\":{batch},\"device_ms\":{dm:.3},\"wall_ms\":{wm:.3},\"img_per_s_device\":{:.1},\"img_per_s_wall\":{:.1}}}",
            batch as f64 / dm * 1e3,
            batch as f64 / wm * 1e3
        );
    }
    print_profile(&device, "image", reps);

    // Text: realistic lengths, length-bucketed.
    let n = if quick { 16384 } else { 262_144 };
    let prompts = random_clip::realistic_prompts(&mut rng, n);
    let mean_len = prompts.iter().map(|p| p.len()).sum::<usize>() as f64 / n as f64;
    let refs: Vec<&[u32]> = prompts.iter().map(|p| p.as_slice()).collect();
    let mut wall_ms = Vec::new();
    let text_runs = if quick || profile { 2 } else { 4 };
    for i in 0..text_runs {
        if i == 1 {
            laic::backend::cuda::take_clip_profile();
        }
        let t = Instant::now();
        let out = model
            .encode_token_ids(&ctx, &refs, Progress::none())
            .expect("texts encode");
        assert!(out.iter().all(|v| v.is_finite()));
        if i >= 1 {
            wall_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let wm = median(wall_ms);
    if !profile {
        println!(
            "{{\"bench\":\"clip\",\"what\":\"text_bucketed\",\"device\":\"{device}\",\"prompts\":{n},\"mean_tokens\":{mean_len:.2},\"wall_ms\":{wm:.3},\"prompts_per_s\":{:.1}}}",
            n as f64 / wm * 1e3
        );
    }
    print_profile(&device, "text", text_runs - 1);
    if profile {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    // Parity with the CPU towers of the same model on a few inputs.
    let cpu = ClipModel::load_with_options(
        &ctx,
        &dir,
        &ClipLoadOptions {
            precision: ClipPrecision::F32,
            device: ClipDevice::Cpu,
        },
    )
    .expect("the CPU model loads");
    let k = 4;
    let gi = model
        .encode_pixels(&ctx, &pixels[..k * per], k, Progress::none())
        .unwrap();
    let ci = cpu
        .encode_pixels(&ctx, &pixels[..k * per], k, Progress::none())
        .unwrap();
    let few: Vec<&[u32]> = refs[..64].to_vec();
    let gt = model
        .encode_token_ids(&ctx, &few, Progress::none())
        .unwrap();
    let ct = cpu.encode_token_ids(&ctx, &few, Progress::none()).unwrap();
    let d = model.embed_dim();
    let (ri, ci_) = row_errors(&gi, &ci, d);
    let (rt, ct_) = row_errors(&gt, &ct, d);
    println!(
        "{{\"bench\":\"clip\",\"what\":\"parity_vs_cpu\",\"device\":\"{device}\",\"image_max_rel\":{ri:.3e},\"image_min_cos\":{ci_:.7},\"text_max_rel\":{rt:.3e},\"text_min_cos\":{ct_:.7}}}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
