//! A random CLIP checkpoint in the Hugging Face layout (`model.safetensors` + `config.json`),
//! for GPU-vs-CPU parity tests at awkward sizes and for throughput benchmarks at full size
//! (ViT-B/32). Shared by `tests/cuda_clip.rs` and `examples/clip_gpu_bench.rs` (through
//! `#[path]`).
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use std::collections::HashMap;
use std::path::Path;

/// The sizes of a random CLIP.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub text_width: usize,
    pub text_heads: usize,
    pub text_inter: usize,
    pub text_layers: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub vision_width: usize,
    pub vision_heads: usize,
    pub vision_inter: usize,
    pub vision_layers: usize,
    pub image_size: usize,
    pub patch: usize,
    pub projection: usize,
}

impl Spec {
    /// OpenAI's ViT-B/32.
    pub fn vit_b32() -> Self {
        Spec {
            text_width: 512,
            text_heads: 8,
            text_inter: 2048,
            text_layers: 12,
            vocab: 49408,
            max_positions: 77,
            vision_width: 768,
            vision_heads: 12,
            vision_inter: 3072,
            vision_layers: 12,
            image_size: 224,
            patch: 32,
            projection: 512,
        }
    }

    /// Small and awkward: no width is a multiple of 8, head sizes 12 and 13, 4×4 patches of
    /// 12 pixels.
    pub fn awkward() -> Self {
        Spec {
            text_width: 36,
            text_heads: 3,
            text_inter: 100,
            text_layers: 2,
            vocab: 49408,
            max_positions: 77,
            vision_width: 52,
            vision_heads: 4,
            vision_inter: 92,
            vision_layers: 2,
            image_size: 48,
            patch: 12,
            projection: 27,
        }
    }

    pub fn tokens(&self) -> usize {
        let g = self.image_size / self.patch;
        g * g + 1
    }
}

fn config_json(s: &Spec) -> String {
    format!(
        r#"{{
  "model_type": "clip",
  "projection_dim": {proj},
  "text_config": {{
    "hidden_act": "quick_gelu", "hidden_size": {tw}, "intermediate_size": {ti},
    "layer_norm_eps": 1e-05, "max_position_embeddings": {mp}, "num_attention_heads": {th},
    "num_hidden_layers": {tl}, "vocab_size": {vocab}, "eos_token_id": 49407, "bos_token_id": 49406,
    "pad_token_id": 49407
  }},
  "vision_config": {{
    "hidden_act": "quick_gelu", "hidden_size": {vw}, "intermediate_size": {vi},
    "layer_norm_eps": 1e-05, "image_size": {img}, "patch_size": {patch},
    "num_attention_heads": {vh}, "num_hidden_layers": {vl}, "num_channels": 3
  }}
}}"#,
        proj = s.projection,
        tw = s.text_width,
        ti = s.text_inter,
        mp = s.max_positions,
        th = s.text_heads,
        tl = s.text_layers,
        vocab = s.vocab,
        vw = s.vision_width,
        vi = s.vision_inter,
        img = s.image_size,
        patch = s.patch,
        vh = s.vision_heads,
        vl = s.vision_layers,
    )
}

struct Writer {
    rng: StdRng,
    dtype: Dtype,
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
}

impl Writer {
    /// A tensor of N(mean, std²) values.
    fn add(&mut self, name: String, shape: Vec<usize>, mean: f32, std: f32) {
        let n: usize = shape.iter().product();
        let mut bytes = Vec::with_capacity(n * 4);
        for _ in 0..n {
            let v = mean + std * self.rng.sample::<f32, _>(StandardNormal);
            match self.dtype {
                Dtype::F16 => bytes.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                Dtype::BF16 => bytes.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                _ => bytes.extend_from_slice(&v.to_le_bytes()),
            }
        }
        self.tensors.push((name, shape, bytes));
    }

    fn linear(&mut self, prefix: &str, inp: usize, out: usize) {
        let std = 1.0 / (inp as f32).sqrt();
        self.add(format!("{prefix}.weight"), vec![out, inp], 0.0, std);
        self.add(format!("{prefix}.bias"), vec![out], 0.0, 0.1);
    }

    fn norm(&mut self, prefix: &str, w: usize) {
        self.add(format!("{prefix}.weight"), vec![w], 1.0, 0.1);
        self.add(format!("{prefix}.bias"), vec![w], 0.0, 0.1);
    }

    fn block(&mut self, prefix: &str, w: usize, inter: usize) {
        self.norm(&format!("{prefix}.layer_norm1"), w);
        for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            self.linear(&format!("{prefix}.self_attn.{p}"), w, w);
        }
        self.norm(&format!("{prefix}.layer_norm2"), w);
        self.linear(&format!("{prefix}.mlp.fc1"), w, inter);
        self.linear(&format!("{prefix}.mlp.fc2"), inter, w);
    }
}

/// Writes `dir/model.safetensors` (weights of `dtype`: F32, F16 or BF16) and
/// `dir/config.json` for a random CLIP of sizes `s`, seeded by `seed`. Weights are scaled so
/// that activations stay of order one through the blocks.
pub fn write(dir: &Path, s: &Spec, dtype: Dtype, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut w = Writer {
        rng: StdRng::seed_from_u64(seed),
        dtype,
        tensors: Vec::new(),
    };
    let t = "text_model";
    w.add(
        format!("{t}.embeddings.token_embedding.weight"),
        vec![s.vocab, s.text_width],
        0.0,
        0.5,
    );
    w.add(
        format!("{t}.embeddings.position_embedding.weight"),
        vec![s.max_positions, s.text_width],
        0.0,
        0.2,
    );
    for i in 0..s.text_layers {
        w.block(
            &format!("{t}.encoder.layers.{i}"),
            s.text_width,
            s.text_inter,
        );
    }
    w.norm(&format!("{t}.final_layer_norm"), s.text_width);
    let std = 1.0 / (s.text_width as f32).sqrt();
    w.add(
        "text_projection.weight".into(),
        vec![s.projection, s.text_width],
        0.0,
        std,
    );
    let v = "vision_model";
    let k = 3 * s.patch * s.patch;
    w.add(
        format!("{v}.embeddings.patch_embedding.weight"),
        vec![s.vision_width, 3, s.patch, s.patch],
        0.0,
        1.0 / (k as f32).sqrt(),
    );
    w.add(
        format!("{v}.embeddings.class_embedding"),
        vec![s.vision_width],
        0.0,
        0.5,
    );
    w.add(
        format!("{v}.embeddings.position_embedding.weight"),
        vec![s.tokens(), s.vision_width],
        0.0,
        0.2,
    );
    w.norm(&format!("{v}.pre_layrnorm"), s.vision_width);
    for i in 0..s.vision_layers {
        w.block(
            &format!("{v}.encoder.layers.{i}"),
            s.vision_width,
            s.vision_inter,
        );
    }
    w.norm(&format!("{v}.post_layernorm"), s.vision_width);
    let std = 1.0 / (s.vision_width as f32).sqrt();
    w.add(
        "visual_projection.weight".into(),
        vec![s.projection, s.vision_width],
        0.0,
        std,
    );
    let views: HashMap<String, TensorView<'_>> = w
        .tensors
        .iter()
        .map(|(n, shape, b)| (n.clone(), TensorView::new(dtype, shape.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), config_json(s)).unwrap();
}

/// `n` token sequences `[sot, …, eot]` with lengths spread over 2..=max (and a few with
/// tokens after the end-of-text token, which must not change anything).
pub fn prompts(rng: &mut StdRng, n: usize, max: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| {
            let len = 2 + (i * 7 + rng.random_range(0..5)) % (max - 1);
            let mut p = vec![49406u32];
            p.extend((1..len - 1).map(|_| rng.random_range(1..49000.min(vocab as u32))));
            p.push(49407);
            if i % 5 == 3 && len + 3 <= max {
                p.extend([320, 1125, 49407]);
            }
            p
        })
        .collect()
}

/// `n` prompts whose lengths follow the 7 CLIP templates around nouns of 1–4 tokens (mean
/// about 10 tokens, as the WordNet prompt set).
pub fn realistic_prompts(rng: &mut StdRng, n: usize) -> Vec<Vec<u32>> {
    // Template lengths in tokens including sot/eot, without the noun.
    const TEMPLATE_LEN: [usize; 7] = [6, 8, 5, 8, 8, 6, 8];
    (0..n)
        .map(|i| {
            let noun = 1 + (rng.random_range(0..10u32) as usize).min(9) / 3;
            let len = TEMPLATE_LEN[i % 7] + noun;
            let mut p = vec![49406u32];
            p.extend((1..len - 1).map(|_| rng.random_range(1..49000u32)));
            p.push(49407);
            p
        })
        .collect()
}
