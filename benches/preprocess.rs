//! CLIP image preprocessing on the CPU: decode + resize + crop + normalise of a generated
//! 640×480 and 4000×3000 image, as JPEG (decoded in full and as a draft: 1/2 and 1/8 scale)
//! and as PNG, and the bicubic resize + centre crop alone. Quick by design (few samples):
//! `cargo bench --bench preprocess`.

use criterion::{Criterion, criterion_group, criterion_main};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use laic::clip::Rgb8Image;
use laic::clip::preprocess::{
    ImageDecode, ImageFileOptions, decode_rgb8_with, preprocess_rgb8, resize_crop,
};
use std::hint::black_box;
use std::time::Duration;

/// A photo-like RGB image: smooth gradients and waves with a little deterministic noise.
fn photo(w: usize, h: usize) -> Vec<u8> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut data = Vec::with_capacity(3 * w * h);
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed % 17) as f32 - 8.0;
            let wave = (fx * 23.0).sin() * (fy * 17.0).cos() * 60.0;
            for c in 0..3 {
                let base = 40.0 + 150.0 * (fx * (c + 1) as f32 * 0.7 + fy * 0.5).fract();
                data.push((base + wave + noise).clamp(0.0, 255.0) as u8);
            }
        }
    }
    data
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("preprocess");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (w, h) in [(640usize, 480usize), (4000, 3000)] {
        let rgb = photo(w, h);
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, 90)
            .write_image(&rgb, w as u32, h as u32, ExtendedColorType::Rgb8)
            .unwrap();
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(&rgb, w as u32, h as u32, ExtendedColorType::Rgb8)
            .unwrap();
        let img = Rgb8Image::packed(&rgb, w, h).unwrap();
        g.bench_function(format!("resize_crop_224/{w}x{h}"), |b| {
            b.iter(|| resize_crop(black_box(&img), 224).unwrap())
        });
        let mut out = vec![0f32; 3 * 224 * 224];
        for (name, bytes, how) in [
            ("jpeg", &jpeg, ImageDecode::Full),
            ("jpeg-draft", &jpeg, ImageDecode::Draft),
            ("png", &png, ImageDecode::Full),
        ] {
            let how = ImageFileOptions {
                decode: how,
                ..Default::default()
            };
            g.bench_function(format!("decode/{name}/{w}x{h}"), |b| {
                b.iter(|| decode_rgb8_with(black_box(bytes), &how, 224).unwrap())
            });
            g.bench_function(format!("decode_preprocess/{name}/{w}x{h}"), |b| {
                b.iter(|| {
                    let d = decode_rgb8_with(black_box(bytes), &how, 224).unwrap();
                    preprocess_rgb8(&d.as_ref(), 224, &mut out).unwrap();
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
