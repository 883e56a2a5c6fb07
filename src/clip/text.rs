//! The text tower on the CPU: token and position embeddings, pre-LN blocks with a causal mask,
//! the final layer norm at the first end-of-text token, the projection (transformers'
//! `CLIPTextTransformer` + `text_projection`; OpenAI's `CLIP.encode_text`).
//!
//! A batch is only as long as its longest prompt: with a causal mask, the state of a token
//! depends only on the tokens before it, so the padding that 77-token batches carry after the
//! end-of-text token changes nothing that is pooled.

use super::config::{ClipActivation, TextConfig};
use super::layers::{Activation, Scratch, TowerShape, l2_normalize_rows};
use super::weights::TextWeights;
use crate::error::{Error, Result};

pub(crate) fn activation(a: ClipActivation) -> Activation {
    match a {
        ClipActivation::QuickGelu => Activation::QuickGelu,
        ClipActivation::Gelu => Activation::Gelu,
    }
}

/// Checks one prompt's token ids and returns the position that is pooled (the first
/// end-of-text token).
pub(crate) fn pool_position(ids: &[u32], cfg: &TextConfig) -> Result<usize> {
    if ids.len() > cfg.max_positions {
        return Err(Error::invalid(format!(
            "a prompt has {} tokens, more than the context length {}",
            ids.len(),
            cfg.max_positions
        )));
    }
    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= cfg.vocab_size) {
        return Err(Error::invalid(format!(
            "token id {bad} is outside the vocabulary of {} tokens",
            cfg.vocab_size
        )));
    }
    ids.iter()
        .position(|&t| t == cfg.eot_token_id)
        .ok_or_else(|| {
            Error::invalid(format!(
                "a prompt has no end-of-text token ({})",
                cfg.eot_token_id
            ))
        })
}

/// Encodes a batch of tokenised prompts (each with its end-of-text token, checked by
/// [`pool_position`]) into `out` (`prompts.len() × projection_dim`, L2-normalised rows).
pub(crate) fn encode(
    w: &TextWeights,
    cfg: &TextConfig,
    projection_dim: usize,
    prompts: &[&[u32]],
    out: &mut [f32],
) -> Result<()> {
    let batch = prompts.len();
    let width = cfg.width;
    let pools = prompts
        .iter()
        .map(|p| pool_position(p, cfg))
        .collect::<Result<Vec<_>>>()?;
    // Tokens after the end-of-text token cannot reach it: the batch stops at the last pool.
    let seq = pools.iter().map(|p| p + 1).max().unwrap_or(0);
    if batch == 0 {
        return Ok(());
    }
    let tok = w.token_embedding.data();
    let pos = w.position_embedding.data();
    let mut x = vec![0f32; batch * seq * width];
    for (b, ids) in prompts.iter().enumerate() {
        for t in 0..seq {
            // Positions past a short prompt's end hold token 0: they are never attended to by
            // the pooled token.
            let id = ids.get(t).copied().unwrap_or(0) as usize;
            let row = &mut x[(b * seq + t) * width..][..width];
            let (e, p) = (&tok[id * width..][..width], &pos[t * width..][..width]);
            row.iter_mut()
                .zip(e.iter().zip(p))
                .for_each(|(r, (a, c))| *r = a + c);
        }
    }
    let shape = TowerShape {
        width,
        heads: cfg.heads,
        intermediate: cfg.intermediate,
        act: activation(cfg.activation),
        eps: cfg.layer_norm_eps,
        causal: true,
    };
    let mut scratch = Scratch::default();
    for block in &w.blocks {
        block.forward(&mut x, batch, seq, &shape, &mut scratch);
    }
    // Final layer norm of the pooled tokens only (the norm is per token).
    let mut pooled = vec![0f32; batch * width];
    for (b, &p) in pools.iter().enumerate() {
        pooled[b * width..][..width].copy_from_slice(&x[(b * seq + p) * width..][..width]);
    }
    let mut normed = vec![0f32; batch * width];
    w.final_ln
        .forward(&pooled, width, cfg.layer_norm_eps, &mut normed);
    let out = &mut out[..batch * projection_dim];
    w.projection
        .forward(&normed, batch, Activation::Identity, false, out);
    l2_normalize_rows(out, projection_dim);
    Ok(())
}
