//! CLIP image preprocessing on the CPU: decode + resize + crop + normalise of a generated
//! 640×480 and 4000×3000 image, as JPEG (decoded in full, as a draft: 1/2 and 1/8 scale, and
//! turned by an EXIF orientation) and as PNG, and the bicubic resize + centre crop alone.
//! Quick by design (few samples): `cargo bench --bench preprocess`.

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

/// `jpeg` with an Exif APP1 segment (little-endian TIFF, IFD0 holding only the orientation)
/// inserted after its SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut app1 = b"Exif\0\0II*\0".to_vec();
    app1.extend_from_slice(&8u32.to_le_bytes()); // IFD0 right after the header
    app1.extend_from_slice(&1u16.to_le_bytes()); // one entry
    app1.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    app1.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    app1.extend_from_slice(&1u32.to_le_bytes());
    app1.extend_from_slice(&orientation.to_le_bytes());
    app1.extend_from_slice(&[0; 2 + 4]); // value padding, no next IFD
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
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
        // The same JPEG with an EXIF APP1 saying "turn 90° clockwise" (orientation 6), read
        // with exif_orientation: the decode plus the turn.
        let jpeg_exif6 = with_exif_orientation(&jpeg, 6);
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(&rgb, w as u32, h as u32, ExtendedColorType::Rgb8)
            .unwrap();
        let img = Rgb8Image::packed(&rgb, w, h).unwrap();
        g.bench_function(format!("resize_crop_224/{w}x{h}"), |b| {
            b.iter(|| resize_crop(black_box(&img), 224).unwrap())
        });
        let mut out = vec![0f32; 3 * 224 * 224];
        for (name, bytes, decode, exif_orientation) in [
            ("jpeg", &jpeg, ImageDecode::Full, false),
            ("jpeg-draft", &jpeg, ImageDecode::Draft, false),
            ("jpeg-exif6", &jpeg_exif6, ImageDecode::Full, true),
            ("png", &png, ImageDecode::Full, false),
        ] {
            let how = ImageFileOptions {
                decode,
                exif_orientation,
            };
            if exif_orientation {
                let turned = decode_rgb8_with(bytes, &how, 224).unwrap();
                assert_eq!((turned.width, turned.height), (h, w), "turned upright");
            }
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
