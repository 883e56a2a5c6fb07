//! CLIP model configuration: presets of the OpenAI checkpoints, `config.json` parsing (the
//! Hugging Face `CLIPConfig` format), and inference from tensor shapes when no config exists.

use crate::error::{Error, Result};
use serde::Deserialize;

/// The element-wise non-linearity of the MLP blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipActivation {
    /// `x · σ(1.702 x)`: every OpenAI CLIP checkpoint.
    QuickGelu,
    /// The exact (erf) GELU: some LAION checkpoints.
    Gelu,
}

impl ClipActivation {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "quick_gelu" => Ok(ClipActivation::QuickGelu),
            "gelu" => Ok(ClipActivation::Gelu),
            other => Err(Error::Format(format!(
                "config.json: hidden_act \"{other}\" is not supported (quick_gelu, gelu)"
            ))),
        }
    }
}

/// The text transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    /// Token vocabulary size (49,408 for CLIP's BPE).
    pub vocab_size: usize,
    /// Residual width.
    pub width: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Hidden width of the MLP.
    pub intermediate: usize,
    /// Context length (77).
    pub max_positions: usize,
    /// The token whose final state is pooled (the first end-of-text token, 49407).
    pub eot_token_id: u32,
    /// MLP non-linearity.
    pub activation: ClipActivation,
    /// Layer-norm ε.
    pub layer_norm_eps: f32,
}

/// The vision transformer.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    /// Residual width.
    pub width: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Hidden width of the MLP.
    pub intermediate: usize,
    /// Input side in pixels (square).
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// MLP non-linearity.
    pub activation: ClipActivation,
    /// Layer-norm ε.
    pub layer_norm_eps: f32,
}

impl VisionConfig {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens per image: the class token and one per patch.
    pub fn tokens(&self) -> usize {
        self.grid() * self.grid() + 1
    }
}

/// A whole CLIP model.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    /// The text encoder.
    pub text: TextConfig,
    /// The image encoder.
    pub vision: VisionConfig,
    /// Width of the shared embedding space.
    pub projection_dim: usize,
}

/// The end-of-text token of CLIP's BPE vocabulary.
pub const EOT_TOKEN: u32 = 49407;
/// The start-of-text token of CLIP's BPE vocabulary.
pub const SOT_TOKEN: u32 = 49406;

fn text(width: usize, layers: usize, heads: usize) -> TextConfig {
    TextConfig {
        vocab_size: 49408,
        width,
        layers,
        heads,
        intermediate: 4 * width,
        max_positions: 77,
        eot_token_id: EOT_TOKEN,
        activation: ClipActivation::QuickGelu,
        layer_norm_eps: 1e-5,
    }
}

fn vision(width: usize, layers: usize, heads: usize, patch_size: usize) -> VisionConfig {
    VisionConfig {
        width,
        layers,
        heads,
        intermediate: 4 * width,
        image_size: 224,
        patch_size,
        activation: ClipActivation::QuickGelu,
        layer_norm_eps: 1e-5,
    }
}

impl ClipConfig {
    /// ViT-B/32 (`openai/clip-vit-base-patch32`).
    pub fn vit_base_patch32() -> Self {
        ClipConfig {
            text: text(512, 12, 8),
            vision: vision(768, 12, 12, 32),
            projection_dim: 512,
        }
    }

    /// ViT-B/16 (`openai/clip-vit-base-patch16`).
    pub fn vit_base_patch16() -> Self {
        ClipConfig {
            text: text(512, 12, 8),
            vision: vision(768, 12, 12, 16),
            projection_dim: 512,
        }
    }

    /// ViT-L/14 (`openai/clip-vit-large-patch14`).
    pub fn vit_large_patch14() -> Self {
        ClipConfig {
            text: text(768, 12, 12),
            vision: vision(1024, 24, 16, 14),
            projection_dim: 768,
        }
    }

    /// Parses a Hugging Face `config.json` (`CLIPConfig`: `text_config`, `vision_config`,
    /// `projection_dim`). Missing fields take transformers' defaults (those of ViT-B/32).
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let raw: HfConfig = serde_json::from_str(text)
            .map_err(|e| Error::Format(format!("config.json is not a CLIP config: {e}")))?;
        let d = ClipConfig::vit_base_patch32();
        let t = raw.text_config;
        let v = raw.vision_config;
        // transformers' legacy configs say eos_token_id = 2 and pool at the largest id, which
        // in CLIP's vocabulary is the end-of-text token.
        let eot = match t.eos_token_id {
            None | Some(2) => EOT_TOKEN,
            Some(id) => id,
        };
        let cfg = ClipConfig {
            text: TextConfig {
                vocab_size: t.vocab_size.unwrap_or(d.text.vocab_size),
                width: t.hidden_size.unwrap_or(d.text.width),
                layers: t.num_hidden_layers.unwrap_or(d.text.layers),
                heads: t.num_attention_heads.unwrap_or(d.text.heads),
                intermediate: t.intermediate_size.unwrap_or(d.text.intermediate),
                max_positions: t.max_position_embeddings.unwrap_or(d.text.max_positions),
                eot_token_id: eot,
                activation: ClipActivation::parse(t.hidden_act.as_deref().unwrap_or("quick_gelu"))?,
                layer_norm_eps: t.layer_norm_eps.unwrap_or(1e-5),
            },
            vision: VisionConfig {
                width: v.hidden_size.unwrap_or(d.vision.width),
                layers: v.num_hidden_layers.unwrap_or(d.vision.layers),
                heads: v.num_attention_heads.unwrap_or(d.vision.heads),
                intermediate: v.intermediate_size.unwrap_or(d.vision.intermediate),
                image_size: v.image_size.unwrap_or(d.vision.image_size),
                patch_size: v.patch_size.unwrap_or(d.vision.patch_size),
                activation: ClipActivation::parse(v.hidden_act.as_deref().unwrap_or("quick_gelu"))?,
                layer_norm_eps: v.layer_norm_eps.unwrap_or(1e-5),
            },
            projection_dim: raw.projection_dim.unwrap_or(d.projection_dim),
        };
        if v.num_channels.is_some_and(|c| c != 3) {
            return Err(Error::Format(
                "config.json: vision_config.num_channels must be 3".into(),
            ));
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that the sizes are consistent (heads divide widths, patches tile the image).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Format(format!("clip config: {m}")));
        let t = &self.text;
        let v = &self.vision;
        for (what, w, h) in [("text", t.width, t.heads), ("vision", v.width, v.heads)] {
            if w == 0 || h == 0 || !w.is_multiple_of(h) {
                return bad(format!("{what} width {w} is not a multiple of {h} heads"));
            }
        }
        if t.layers == 0 || v.layers == 0 || t.intermediate == 0 || v.intermediate == 0 {
            return bad("layer counts and MLP widths must be > 0".into());
        }
        if t.vocab_size == 0 || t.max_positions < 2 || t.eot_token_id as usize >= t.vocab_size {
            return bad(format!(
                "text vocabulary {} / context {} / end-of-text token {} are inconsistent",
                t.vocab_size, t.max_positions, t.eot_token_id
            ));
        }
        if v.patch_size == 0 || v.image_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return bad(format!(
                "image size {} is not a multiple of patch size {}",
                v.image_size, v.patch_size
            ));
        }
        if self.projection_dim == 0 {
            return bad("projection_dim must be > 0".into());
        }
        Ok(())
    }
}

/// Attention heads when no config says: OpenAI's CLIP uses 64-wide heads
/// (`heads = width // 64`); narrower test models get one head.
pub(crate) fn infer_heads(width: usize, what: &str) -> Result<usize> {
    match width {
        0 => Err(Error::Format(format!("{what} width is 0"))),
        w if w < 64 => Ok(1),
        w if w.is_multiple_of(64) => Ok(w / 64),
        w => Err(Error::Format(format!(
            "cannot infer the heads of a {what} transformer of width {w} (not a multiple of 64): \
             put a config.json beside the weights"
        ))),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HfConfig {
    text_config: HfTextConfig,
    vision_config: HfVisionConfig,
    projection_dim: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HfTextConfig {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_attention_heads: Option<usize>,
    num_hidden_layers: Option<usize>,
    max_position_embeddings: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f32>,
    eos_token_id: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct HfVisionConfig {
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_attention_heads: Option<usize>,
    num_hidden_layers: Option<usize>,
    image_size: Option<usize>,
    patch_size: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f32>,
    num_channels: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_config_json_of_vit_l14_parses_to_the_preset() {
        // The fields of openai/clip-vit-large-patch14's config.json that matter.
        let json = r#"{
          "architectures": ["CLIPModel"], "projection_dim": 768,
          "text_config": {"hidden_size": 768, "intermediate_size": 3072,
            "num_attention_heads": 12, "num_hidden_layers": 12, "eos_token_id": 2,
            "hidden_act": "quick_gelu", "max_position_embeddings": 77, "vocab_size": 49408},
          "vision_config": {"hidden_size": 1024, "intermediate_size": 4096,
            "num_attention_heads": 16, "num_hidden_layers": 24, "image_size": 224,
            "patch_size": 14, "hidden_act": "quick_gelu"}
        }"#;
        assert_eq!(
            ClipConfig::from_hf_json(json).unwrap(),
            ClipConfig::vit_large_patch14()
        );
    }

    #[test]
    fn config_json_errors_name_the_problem() {
        let e = ClipConfig::from_hf_json("{\"text_config\": 3}").unwrap_err();
        assert!(e.to_string().contains("config.json"), "{e}");
        let e = ClipConfig::from_hf_json(r#"{"text_config": {"hidden_act": "relu"}}"#).unwrap_err();
        assert!(e.to_string().contains("relu"), "{e}");
        let e = ClipConfig::from_hf_json(r#"{"vision_config": {"num_attention_heads": 7}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("7 heads"), "{e}");
    }

    #[test]
    fn heads_follow_openai_rule() {
        assert_eq!(infer_heads(512, "text").unwrap(), 8);
        assert_eq!(infer_heads(1024, "vision").unwrap(), 16);
        assert_eq!(infer_heads(12, "text").unwrap(), 1);
        assert!(infer_heads(100, "text").is_err());
    }
}
