//! CLIP CPU throughput on a real-size model. Runs only when `LAIC_CLIP_MODEL` names a model
//! folder (for example a random ViT-B/32 from `tests/fixtures/make_clip_fixture.py --full DIR`);
//! otherwise it prints a note and measures nothing. `LAIC_BENCH_THREADS` sets the threads
//! (default 2, the size of the torch comparison in `scripts/clip_torch_bench.py`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use laic::clip::ClipModel;
use laic::{Context, ContextOptions, Progress};

/// Prompts as the pipeline makes them: the 7 templates of DESIGN.md §1 around nouns.
pub fn prompts(n: usize) -> Vec<String> {
    const TEMPLATES: [&str; 7] = [
        "itap of a {}.",
        "a bad photo of the {}.",
        "a origami {}.",
        "a photo of the large {}.",
        "a {} in a video game.",
        "art of the {}.",
        "a photo of the small {}.",
    ];
    const NOUNS: [&str; 12] = [
        "cat",
        "golden retriever",
        "airplane",
        "espresso machine",
        "sea lion",
        "three-toed sloth",
        "jack-o'-lantern",
        "mountain bike",
        "Granny Smith",
        "coral reef",
        "bullet train",
        "wooden spoon",
    ];
    (0..n)
        .map(|i| TEMPLATES[i % 7].replace("{}", NOUNS[(i / 7) % NOUNS.len()]))
        .collect()
}

fn bench(c: &mut Criterion) {
    let Some(dir) = std::env::var_os("LAIC_CLIP_MODEL") else {
        eprintln!("LAIC_CLIP_MODEL is not set: the CLIP benchmark needs a model folder; skipped");
        return;
    };
    let threads = std::env::var("LAIC_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let ctx = Context::with_options(&ContextOptions {
        n_threads: threads,
        ..Default::default()
    })
    .expect("a CPU context");
    let model = ClipModel::load(&ctx, dir.as_ref()).expect("the model loads");
    let s = model.image_size();

    let texts = prompts(256);
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let mut g = c.benchmark_group(format!("clip_cpu_{threads}t"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(refs.len() as u64));
    g.bench_function("text_256_prompts", |b| {
        b.iter(|| model.encode_texts(&ctx, &refs, Progress::none()).unwrap())
    });

    let n = 32;
    let pixels: Vec<f32> = (0..n * 3 * s * s)
        .map(|i| ((i * 2_654_435_761usize) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("images_32_preprocessed", |b| {
        b.iter(|| {
            model
                .encode_pixels(&ctx, &pixels, n, Progress::none())
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
