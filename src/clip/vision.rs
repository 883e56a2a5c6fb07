//! The image tower on the CPU: the patch convolution as one GEMM over unfolded patches, the
//! class token, positions, the pre-LN (`pre_layrnorm`), the blocks, the post-LN of the class
//! token, the projection (transformers' `CLIPVisionTransformer` + `visual_projection`;
//! OpenAI's `VisionTransformer`).

use super::config::VisionConfig;
use super::layers::{Activation, Scratch, TowerShape, l2_normalize_rows};
use super::text::activation;
use super::weights::VisionWeights;
use rayon::prelude::*;

/// Encodes `n` preprocessed images (`n × 3 × S × S`, CHW, normalised) into `out`
/// (`n × projection_dim`, L2-normalised rows).
pub(crate) fn encode(
    w: &VisionWeights,
    cfg: &VisionConfig,
    projection_dim: usize,
    pixels: &[f32],
    n: usize,
    out: &mut [f32],
) {
    let (s, p, g, width) = (cfg.image_size, cfg.patch_size, cfg.grid(), cfg.width);
    let tokens = cfg.tokens();
    let k = 3 * p * p;
    assert!(pixels.len() >= n * 3 * s * s && out.len() >= n * projection_dim);
    if n == 0 {
        return;
    }
    // Unfold every patch into a row in (channel, row, column) order, the order of the
    // convolution kernel's [width, 3, p, p] weights.
    let mut patches = vec![0f32; n * g * g * k];
    patches.par_chunks_mut(k).enumerate().for_each(|(r, row)| {
        let (img, patch) = (r / (g * g), r % (g * g));
        let (gy, gx) = (patch / g, patch % g);
        let image = &pixels[img * 3 * s * s..];
        for c in 0..3 {
            for ky in 0..p {
                let src = &image[c * s * s + (gy * p + ky) * s + gx * p..][..p];
                row[(c * p + ky) * p..][..p].copy_from_slice(src);
            }
        }
    });
    let mut embedded = vec![0f32; n * g * g * width];
    w.patch.forward(
        &patches,
        n * g * g,
        Activation::Identity,
        false,
        &mut embedded,
    );
    drop(patches);
    // [class; patches] + positions.
    let cls = w.class_embedding.data();
    let pos = w.position_embedding.data();
    let mut x = vec![0f32; n * tokens * width];
    x.par_chunks_mut(tokens * width)
        .enumerate()
        .for_each(|(img, seq)| {
            for (t, row) in seq.chunks_exact_mut(width).enumerate() {
                let e = if t == 0 {
                    cls
                } else {
                    &embedded[(img * g * g + t - 1) * width..][..width]
                };
                let ps = &pos[t * width..][..width];
                row.iter_mut()
                    .zip(e.iter().zip(ps))
                    .for_each(|(r, (a, b))| *r = a + b);
            }
        });
    drop(embedded);
    let mut h = vec![0f32; x.len()];
    w.pre_ln.forward(&x, width, cfg.layer_norm_eps, &mut h);
    let mut x = h;
    let shape = TowerShape {
        width,
        heads: cfg.heads,
        intermediate: cfg.intermediate,
        act: activation(cfg.activation),
        eps: cfg.layer_norm_eps,
        causal: false,
    };
    let mut scratch = Scratch::default();
    for block in &w.blocks {
        block.forward(&mut x, n, tokens, &shape, &mut scratch);
    }
    let mut cls_rows = vec![0f32; n * width];
    for img in 0..n {
        cls_rows[img * width..][..width].copy_from_slice(&x[img * tokens * width..][..width]);
    }
    let mut normed = vec![0f32; n * width];
    w.post_ln
        .forward(&cls_rows, width, cfg.layer_norm_eps, &mut normed);
    let out = &mut out[..n * projection_dim];
    w.projection
        .forward(&normed, n, Activation::Identity, false, out);
    l2_normalize_rows(out, projection_dim);
}
