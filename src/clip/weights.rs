//! CLIP weights from one memory-mapped `.safetensors` file, in the Hugging Face layout
//! (`text_model.*`, `vision_model.*`) or the OpenAI layout (`visual.*`,
//! `transformer.resblocks.*`, fused `in_proj_weight`, `x @ proj`), mapped to one internal
//! model ([`ClipWeights`]).
//!
//! f32 tensors whose data is 4-byte aligned are used in place (zero copy); f16 and bf16 tensors
//! are converted to f32 once here. Every tensor's dtype and shape is checked against the
//! config before any view of it exists; errors name the file and the tensor.

use super::config::{ClipActivation, ClipConfig, TextConfig, VisionConfig, infer_heads};
use crate::error::{Error, Result};
use memmap2::Mmap;
use safetensors::{Dtype as StDtype, SafeTensorError, SafeTensors};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A read-only f32 tensor: a view into the mapped file or an owned buffer.
pub(crate) struct Tensor {
    storage: Storage,
    #[cfg_attr(not(test), allow(dead_code))]
    shape: Vec<usize>,
}

enum Storage {
    /// `len` f32 values at byte `offset` of the mapping (4-byte aligned, little-endian host).
    Mapped {
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    },
    Owned(Vec<f32>),
}

impl Tensor {
    /// The elements, row-major.
    pub fn data(&self) -> &[f32] {
        match &self.storage {
            Storage::Owned(v) => v,
            Storage::Mapped { map, offset, len } => {
                let bytes = &map[*offset..*offset + len * 4];
                // SAFETY: the span lies in the mapping (checked when made), is 4-byte aligned
                // (checked when made), every bit pattern is a valid f32, and the mapping lives
                // as long as `self` (Arc) and is never written.
                unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const f32, *len) }
            }
        }
    }

    /// The shape.
    #[cfg(test)]
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn owned(data: Vec<f32>, shape: Vec<usize>) -> Self {
        Tensor {
            storage: Storage::Owned(data),
            shape,
        }
    }

    /// Whether the data is a view into the mapped file (no copy was made).
    #[cfg(test)]
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }
}

/// How a weight matrix is laid out in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MatrixLayout {
    /// `[out, in]`: `nn.Linear.weight`, used as `x · Wᵀ`.
    OutIn,
    /// `[in, out]`: OpenAI's `proj` and `text_projection`, used as `x @ W`.
    InOut,
}

/// A dense layer `y = x·W (+ b)`.
pub(crate) struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub layout: MatrixLayout,
    pub in_dim: usize,
    pub out_dim: usize,
}

/// Layer-norm parameters.
pub(crate) struct Norm {
    pub weight: Tensor,
    pub bias: Tensor,
}

/// One pre-LN residual block.
pub(crate) struct Block {
    pub ln1: Norm,
    /// Fused `[q; k; v]` projection, `[3·width, width]`.
    pub qkv: Linear,
    pub out: Linear,
    pub ln2: Norm,
    pub fc1: Linear,
    pub fc2: Linear,
}

/// The text tower.
pub(crate) struct TextWeights {
    pub token_embedding: Tensor,
    pub position_embedding: Tensor,
    pub blocks: Vec<Block>,
    pub final_ln: Norm,
    pub projection: Linear,
}

/// The image tower.
pub(crate) struct VisionWeights {
    /// The patch convolution as a `[width, 3·patch·patch]` matrix (channel, row, column order).
    pub patch: Linear,
    pub class_embedding: Tensor,
    pub position_embedding: Tensor,
    pub pre_ln: Norm,
    pub blocks: Vec<Block>,
    pub post_ln: Norm,
    pub projection: Linear,
}

/// A whole model, whatever its file layout.
pub(crate) struct ClipWeights {
    pub config: ClipConfig,
    pub layout: WeightLayout,
    /// The dtype of the file's weights (of its token embedding): what a GPU keeps by default.
    pub dtype: crate::matrix::Dtype,
    pub text: TextWeights,
    pub vision: VisionWeights,
}

/// Checkpoint layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// Hugging Face transformers' `CLIPModel`.
    HuggingFace,
    /// OpenAI's `clip` package (also open_clip's OpenAI-style models).
    OpenAi,
}

/// The opened file: its mapping and parsed header.
struct Source<'a> {
    path: &'a Path,
    map: &'a Arc<Mmap>,
    st: SafeTensors<'a>,
}

impl Source<'_> {
    fn fail(&self, msg: impl std::fmt::Display) -> Error {
        Error::Format(format!("{}: {msg}", self.path.display()))
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.st.tensor(name).ok().map(|t| t.shape().to_vec())
    }

    fn has(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    /// The tensor `name`, which must have `shape`, as f32.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let view = self
            .st
            .tensor(name)
            .map_err(|_| self.fail(format_args!("missing tensor {name}")))?;
        if view.shape() != shape {
            return Err(self.fail(format_args!(
                "tensor {name} has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        let bytes = view.data();
        let len: usize = shape.iter().product();
        let shape = shape.to_vec();
        match view.dtype() {
            StDtype::F32 => {
                let offset = bytes.as_ptr() as usize - self.map.as_ptr() as usize;
                if cfg!(target_endian = "little") && offset.is_multiple_of(4) {
                    Ok(Tensor {
                        storage: Storage::Mapped {
                            map: Arc::clone(self.map),
                            offset,
                            len,
                        },
                        shape,
                    })
                } else {
                    let v = bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    Ok(Tensor::owned(v, shape))
                }
            }
            StDtype::F16 => Ok(Tensor::owned(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                shape,
            )),
            StDtype::BF16 => Ok(Tensor::owned(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                shape,
            )),
            d => Err(self.fail(format_args!(
                "tensor {name} has dtype {d:?}; only F32, F16 and BF16 are supported"
            ))),
        }
    }

    fn norm(&self, prefix: &str, width: usize) -> Result<Norm> {
        Ok(Norm {
            weight: self.get(&format!("{prefix}.weight"), &[width])?,
            bias: self.get(&format!("{prefix}.bias"), &[width])?,
        })
    }

    /// An `nn.Linear` stored as `{prefix}.weight [out, in]` and `{prefix}.bias [out]`.
    fn linear(&self, prefix: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.get(&format!("{prefix}.weight"), &[out_dim, in_dim])?,
            bias: Some(self.get(&format!("{prefix}.bias"), &[out_dim])?),
            layout: MatrixLayout::OutIn,
            in_dim,
            out_dim,
        })
    }
}

/// Tensor shapes by name: what config inference reads.
trait Shapes {
    /// The shape of tensor `name`, if present.
    fn shape_of(&self, name: &str) -> Option<Vec<usize>>;
    /// An error about the file.
    fn error(&self, msg: String) -> Error;

    /// Counts `{prefix}{i}{suffix}` for i = 0, 1, ...
    fn count(&self, prefix: &str, suffix: &str) -> usize {
        (0..)
            .take_while(|i| self.shape_of(&format!("{prefix}{i}{suffix}")).is_some())
            .count()
    }

    /// Size of axis `axis` of tensor `name`, which must have `rank` dimensions.
    fn dim(&self, name: &str, axis: usize, rank: usize) -> Result<usize> {
        match self.shape_of(name) {
            Some(s) if s.len() == rank => Ok(s[axis]),
            Some(s) => Err(self.error(format!(
                "tensor {name} has shape {s:?}, expected {rank} dimensions"
            ))),
            None => Err(self.error(format!("missing tensor {name}"))),
        }
    }
}

impl Shapes for Source<'_> {
    fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        self.shape(name)
    }

    fn error(&self, msg: String) -> Error {
        self.fail(msg)
    }
}

/// Opens `path` (a `.safetensors` file), reads the config from `config` when given (the text
/// of a `config.json`) or infers it from the tensor shapes, and maps every tensor.
pub(crate) fn load(path: &Path, config: Option<&str>) -> Result<ClipWeights> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        context: path.display().to_string(),
        source,
    })?;
    // SAFETY: the file is mapped read-only; laic never writes it. Another process truncating
    // it while mapped would fault (SIGBUS): weights files are expected to stay unchanged while
    // loaded, as with every memory-mapped model loader.
    let map = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
        context: path.display().to_string(),
        source,
    })?;
    let map = Arc::new(map);
    let st = SafeTensors::deserialize(&map[..]).map_err(|e| header_error(path, &map, e))?;
    let src = Source {
        path,
        map: &map,
        st,
    };
    let layout = detect_layout(&src)?;
    let token_embedding = match layout {
        WeightLayout::HuggingFace => "text_model.embeddings.token_embedding.weight",
        WeightLayout::OpenAi => "token_embedding.weight",
    };
    let dtype = match src.st.tensor(token_embedding).map(|t| t.dtype()) {
        Ok(StDtype::F16) => crate::matrix::Dtype::F16,
        Ok(StDtype::BF16) => crate::matrix::Dtype::Bf16,
        _ => crate::matrix::Dtype::F32,
    };
    let config = match config {
        Some(text) => ClipConfig::from_hf_json(text)?,
        None => infer_config(&src, layout)?,
    };
    let (text, vision) = match layout {
        WeightLayout::HuggingFace => (hf_text(&src, &config)?, hf_vision(&src, &config)?),
        WeightLayout::OpenAi => (openai_text(&src, &config)?, openai_vision(&src, &config)?),
    };
    Ok(ClipWeights {
        config,
        layout,
        dtype,
        text,
        vision,
    })
}

/// Turns a header error into a message; for a file shorter than its header says, names the
/// first tensor whose bytes are missing.
fn header_error(path: &Path, bytes: &[u8], e: SafeTensorError) -> Error {
    let p = path.display();
    if let SafeTensorError::MetadataIncompleteBuffer = e
        && let Some(msg) = truncation_detail(bytes)
    {
        return Error::Format(format!("{p}: {msg}"));
    }
    Error::Format(format!("{p}: not a valid safetensors file: {e}"))
}

fn truncation_detail(bytes: &[u8]) -> Option<String> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let have = bytes.len() - 8 - n;
    let mut worst: Option<(u64, &str)> = None;
    for (name, info) in header.as_object()? {
        let end = info.get("data_offsets")?.get(1)?.as_u64()?;
        if end as usize > have && worst.is_none_or(|(e, _)| end < e) {
            worst = Some((end, name));
        }
    }
    match worst {
        Some((end, name)) => Some(format!(
            "file is truncated: tensor {name} ends at byte {end} of the data but only {have} bytes are present"
        )),
        None => Some(format!(
            "file has {have} bytes of data, more than its header describes"
        )),
    }
}

fn detect_layout(src: &Source<'_>) -> Result<WeightLayout> {
    if src.has("text_model.embeddings.token_embedding.weight") {
        Ok(WeightLayout::HuggingFace)
    } else if src.has("token_embedding.weight") && src.has("visual.class_embedding") {
        Ok(WeightLayout::OpenAi)
    } else {
        Err(src.fail(
            "not a CLIP checkpoint: neither text_model.embeddings.token_embedding.weight \
             (Hugging Face layout) nor token_embedding.weight with visual.class_embedding \
             (OpenAI layout) is present",
        ))
    }
}

/// The configuration implied by the tensor shapes (heads by [`infer_heads`]).
fn infer_config(src: &dyn Shapes, layout: WeightLayout) -> Result<ClipConfig> {
    let (tok, pos, block, ln, fc1, proj, proj_axis) = match layout {
        WeightLayout::HuggingFace => (
            "text_model.embeddings.token_embedding.weight",
            "text_model.embeddings.position_embedding.weight",
            "text_model.encoder.layers.",
            ".layer_norm1.weight",
            "text_model.encoder.layers.0.mlp.fc1.weight",
            "text_projection.weight",
            0,
        ),
        WeightLayout::OpenAi => (
            "token_embedding.weight",
            "positional_embedding",
            "transformer.resblocks.",
            ".ln_1.weight",
            "transformer.resblocks.0.mlp.c_fc.weight",
            "text_projection",
            1,
        ),
    };
    let (v_cls, v_patch, v_pos, v_block, v_fc1) = match layout {
        WeightLayout::HuggingFace => (
            "vision_model.embeddings.class_embedding",
            "vision_model.embeddings.patch_embedding.weight",
            "vision_model.embeddings.position_embedding.weight",
            "vision_model.encoder.layers.",
            "vision_model.encoder.layers.0.mlp.fc1.weight",
        ),
        WeightLayout::OpenAi => (
            "visual.class_embedding",
            "visual.conv1.weight",
            "visual.positional_embedding",
            "visual.transformer.resblocks.",
            "visual.transformer.resblocks.0.mlp.c_fc.weight",
        ),
    };
    let width = src.dim(tok, 1, 2)?;
    let v_width = src.dim(v_cls, 0, 1)?;
    let patch = src.dim(v_patch, 2, 4)?;
    let positions = src.dim(v_pos, 0, 2)?;
    let grid = (1..=positions)
        .find(|g| g * g + 1 >= positions)
        .unwrap_or(0);
    if grid * grid + 1 != positions {
        return Err(src.error(format!(
            "tensor {v_pos} has {positions} positions, not a square grid plus the class token"
        )));
    }
    let cfg = ClipConfig {
        text: TextConfig {
            vocab_size: src.dim(tok, 0, 2)?,
            width,
            layers: src.count(block, ln),
            heads: infer_heads(width, "text")?,
            intermediate: src.dim(fc1, 0, 2)?,
            max_positions: src.dim(pos, 0, 2)?,
            eot_token_id: super::config::EOT_TOKEN,
            activation: ClipActivation::QuickGelu,
            layer_norm_eps: 1e-5,
        },
        vision: VisionConfig {
            width: v_width,
            layers: src.count(v_block, ln),
            heads: infer_heads(v_width, "vision")?,
            intermediate: src.dim(v_fc1, 0, 2)?,
            image_size: grid * patch,
            patch_size: patch,
            activation: ClipActivation::QuickGelu,
            layer_norm_eps: 1e-5,
        },
        projection_dim: src.dim(proj, proj_axis, 2)?,
    };
    cfg.validate().map_err(|e| src.error(e.to_string()))?;
    Ok(cfg)
}

// ---- Hugging Face layout (transformers' modeling_clip.py names) ----

fn hf_block(src: &Source<'_>, prefix: &str, width: usize, inter: usize) -> Result<Block> {
    let attn = format!("{prefix}.self_attn");
    let q = src.linear(&format!("{attn}.q_proj"), width, width)?;
    let k = src.linear(&format!("{attn}.k_proj"), width, width)?;
    let v = src.linear(&format!("{attn}.v_proj"), width, width)?;
    // Fuse q, k, v into one [3·width, width] matrix: one GEMM instead of three.
    let cat = |parts: [&Tensor; 3]| {
        parts
            .iter()
            .flat_map(|t| t.data().iter().copied())
            .collect()
    };
    fn bias(l: &Linear) -> &Tensor {
        l.bias.as_ref().expect("linear has a bias")
    }
    let qkv = Linear {
        weight: Tensor::owned(
            cat([&q.weight, &k.weight, &v.weight]),
            vec![3 * width, width],
        ),
        bias: Some(Tensor::owned(
            cat([bias(&q), bias(&k), bias(&v)]),
            vec![3 * width],
        )),
        layout: MatrixLayout::OutIn,
        in_dim: width,
        out_dim: 3 * width,
    };
    Ok(Block {
        ln1: src.norm(&format!("{prefix}.layer_norm1"), width)?,
        qkv,
        out: src.linear(&format!("{attn}.out_proj"), width, width)?,
        ln2: src.norm(&format!("{prefix}.layer_norm2"), width)?,
        fc1: src.linear(&format!("{prefix}.mlp.fc1"), width, inter)?,
        fc2: src.linear(&format!("{prefix}.mlp.fc2"), inter, width)?,
    })
}

fn check_layers(src: &Source<'_>, prefix: &str, suffix: &str, want: usize) -> Result<()> {
    let have = src.count(prefix, suffix);
    if have != want {
        return Err(src.fail(format_args!(
            "{have} blocks under {prefix}*, the config says {want}"
        )));
    }
    Ok(())
}

fn hf_text(src: &Source<'_>, cfg: &ClipConfig) -> Result<TextWeights> {
    let t = &cfg.text;
    let p = "text_model";
    check_layers(
        src,
        "text_model.encoder.layers.",
        ".layer_norm1.weight",
        t.layers,
    )?;
    Ok(TextWeights {
        token_embedding: src.get(
            &format!("{p}.embeddings.token_embedding.weight"),
            &[t.vocab_size, t.width],
        )?,
        position_embedding: src.get(
            &format!("{p}.embeddings.position_embedding.weight"),
            &[t.max_positions, t.width],
        )?,
        blocks: (0..t.layers)
            .map(|i| {
                hf_block(
                    src,
                    &format!("{p}.encoder.layers.{i}"),
                    t.width,
                    t.intermediate,
                )
            })
            .collect::<Result<_>>()?,
        final_ln: src.norm(&format!("{p}.final_layer_norm"), t.width)?,
        projection: Linear {
            weight: src.get("text_projection.weight", &[cfg.projection_dim, t.width])?,
            bias: None,
            layout: MatrixLayout::OutIn,
            in_dim: t.width,
            out_dim: cfg.projection_dim,
        },
    })
}

fn patch_linear(src: &Source<'_>, name: &str, v: &VisionConfig) -> Result<Linear> {
    let p = v.patch_size;
    let t = src.get(name, &[v.width, 3, p, p])?;
    let shape = vec![v.width, 3 * p * p];
    let weight = Tensor {
        storage: t.storage,
        shape,
    };
    Ok(Linear {
        weight,
        bias: None,
        layout: MatrixLayout::OutIn,
        in_dim: 3 * p * p,
        out_dim: v.width,
    })
}

fn hf_vision(src: &Source<'_>, cfg: &ClipConfig) -> Result<VisionWeights> {
    let v = &cfg.vision;
    let p = "vision_model";
    check_layers(
        src,
        "vision_model.encoder.layers.",
        ".layer_norm1.weight",
        v.layers,
    )?;
    Ok(VisionWeights {
        patch: patch_linear(src, &format!("{p}.embeddings.patch_embedding.weight"), v)?,
        class_embedding: src.get(&format!("{p}.embeddings.class_embedding"), &[v.width])?,
        position_embedding: src.get(
            &format!("{p}.embeddings.position_embedding.weight"),
            &[v.tokens(), v.width],
        )?,
        // The checkpoint's own spelling.
        pre_ln: src.norm(&format!("{p}.pre_layrnorm"), v.width)?,
        blocks: (0..v.layers)
            .map(|i| {
                hf_block(
                    src,
                    &format!("{p}.encoder.layers.{i}"),
                    v.width,
                    v.intermediate,
                )
            })
            .collect::<Result<_>>()?,
        post_ln: src.norm(&format!("{p}.post_layernorm"), v.width)?,
        projection: Linear {
            weight: src.get("visual_projection.weight", &[cfg.projection_dim, v.width])?,
            bias: None,
            layout: MatrixLayout::OutIn,
            in_dim: v.width,
            out_dim: cfg.projection_dim,
        },
    })
}

// ---- OpenAI layout (clip/model.py names) ----

fn openai_block(src: &Source<'_>, prefix: &str, width: usize, inter: usize) -> Result<Block> {
    Ok(Block {
        ln1: src.norm(&format!("{prefix}.ln_1"), width)?,
        // nn.MultiheadAttention's fused in_proj is already [q; k; v] rows: used in place.
        qkv: Linear {
            weight: src.get(
                &format!("{prefix}.attn.in_proj_weight"),
                &[3 * width, width],
            )?,
            bias: Some(src.get(&format!("{prefix}.attn.in_proj_bias"), &[3 * width])?),
            layout: MatrixLayout::OutIn,
            in_dim: width,
            out_dim: 3 * width,
        },
        out: src.linear(&format!("{prefix}.attn.out_proj"), width, width)?,
        ln2: src.norm(&format!("{prefix}.ln_2"), width)?,
        fc1: src.linear(&format!("{prefix}.mlp.c_fc"), width, inter)?,
        fc2: src.linear(&format!("{prefix}.mlp.c_proj"), inter, width)?,
    })
}

fn openai_text(src: &Source<'_>, cfg: &ClipConfig) -> Result<TextWeights> {
    let t = &cfg.text;
    check_layers(src, "transformer.resblocks.", ".ln_1.weight", t.layers)?;
    Ok(TextWeights {
        token_embedding: src.get("token_embedding.weight", &[t.vocab_size, t.width])?,
        position_embedding: src.get("positional_embedding", &[t.max_positions, t.width])?,
        blocks: (0..t.layers)
            .map(|i| {
                openai_block(
                    src,
                    &format!("transformer.resblocks.{i}"),
                    t.width,
                    t.intermediate,
                )
            })
            .collect::<Result<_>>()?,
        final_ln: src.norm("ln_final", t.width)?,
        projection: Linear {
            weight: src.get("text_projection", &[t.width, cfg.projection_dim])?,
            bias: None,
            layout: MatrixLayout::InOut,
            in_dim: t.width,
            out_dim: cfg.projection_dim,
        },
    })
}

fn openai_vision(src: &Source<'_>, cfg: &ClipConfig) -> Result<VisionWeights> {
    let v = &cfg.vision;
    check_layers(
        src,
        "visual.transformer.resblocks.",
        ".ln_1.weight",
        v.layers,
    )?;
    Ok(VisionWeights {
        patch: patch_linear(src, "visual.conv1.weight", v)?,
        class_embedding: src.get("visual.class_embedding", &[v.width])?,
        position_embedding: src.get("visual.positional_embedding", &[v.tokens(), v.width])?,
        pre_ln: src.norm("visual.ln_pre", v.width)?,
        blocks: (0..v.layers)
            .map(|i| {
                openai_block(
                    src,
                    &format!("visual.transformer.resblocks.{i}"),
                    v.width,
                    v.intermediate,
                )
            })
            .collect::<Result<_>>()?,
        post_ln: src.norm("visual.ln_post", v.width)?,
        projection: Linear {
            weight: src.get("visual.proj", &[v.width, cfg.projection_dim])?,
            bias: None,
            layout: MatrixLayout::InOut,
            in_dim: v.width,
            out_dim: cfg.projection_dim,
        },
    })
}

/// Where the weights, config and tokenizer of a model are, given a folder or a file.
pub(crate) struct ModelFiles {
    /// The `.safetensors` file.
    pub weights: PathBuf,
    /// `config.json` beside it, if any.
    pub config: Option<PathBuf>,
    /// `tokenizer.json` beside it, if any.
    pub tokenizer: Option<PathBuf>,
}

impl ModelFiles {
    /// Resolves `path`: a `.safetensors` file, or a folder holding `model.safetensors` (or
    /// exactly one `*.safetensors` file).
    pub fn find(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            context: path.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let (dir, weights) = if meta.is_dir() {
            let preferred = path.join("model.safetensors");
            let weights = if preferred.is_file() {
                preferred
            } else {
                let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(io)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                    .collect();
                found.sort();
                match found.len() {
                    1 => found.pop().expect("one element"),
                    0 => {
                        return Err(Error::invalid(format!(
                            "{}: no .safetensors file in this folder",
                            path.display()
                        )));
                    }
                    _ => {
                        return Err(Error::invalid(format!(
                            "{}: several .safetensors files and no model.safetensors: name the file",
                            path.display()
                        )));
                    }
                }
            };
            (path.to_path_buf(), weights)
        } else {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            (dir, path.to_path_buf())
        };
        let beside = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        Ok(ModelFiles {
            weights,
            config: beside("config.json"),
            tokenizer: beside("tokenizer.json"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;
    use std::collections::HashMap;

    /// Writes a safetensors file of zero-filled tensors with the given names and shapes.
    fn write_file(
        dir: &Path,
        name: &str,
        tensors: &[(String, Vec<usize>)],
        dtype: StDtype,
    ) -> PathBuf {
        let bufs: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, s)| vec![0u8; s.iter().product::<usize>() * dtype.bitsize() / 8])
            .collect();
        let views: HashMap<String, TensorView<'_>> = tensors
            .iter()
            .zip(&bufs)
            .map(|((n, s), b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
            .collect();
        let path = dir.join(name);
        safetensors::serialize_to_file(views, None, &path).unwrap();
        path
    }

    /// Tensor names and shapes of an OpenAI-layout checkpoint of `cfg`.
    fn openai_tensors(cfg: &ClipConfig) -> Vec<(String, Vec<usize>)> {
        let (t, v, e) = (&cfg.text, &cfg.vision, cfg.projection_dim);
        let mut out = vec![
            ("token_embedding.weight".into(), vec![t.vocab_size, t.width]),
            (
                "positional_embedding".into(),
                vec![t.max_positions, t.width],
            ),
            ("ln_final.weight".into(), vec![t.width]),
            ("ln_final.bias".into(), vec![t.width]),
            ("text_projection".into(), vec![t.width, e]),
            ("logit_scale".into(), vec![]),
            ("visual.class_embedding".into(), vec![v.width]),
            (
                "visual.conv1.weight".into(),
                vec![v.width, 3, v.patch_size, v.patch_size],
            ),
            (
                "visual.positional_embedding".into(),
                vec![v.tokens(), v.width],
            ),
            ("visual.ln_pre.weight".into(), vec![v.width]),
            ("visual.ln_pre.bias".into(), vec![v.width]),
            ("visual.ln_post.weight".into(), vec![v.width]),
            ("visual.ln_post.bias".into(), vec![v.width]),
            ("visual.proj".into(), vec![v.width, e]),
        ];
        for (prefix, w, inter, n) in [
            ("transformer.resblocks", t.width, t.intermediate, t.layers),
            (
                "visual.transformer.resblocks",
                v.width,
                v.intermediate,
                v.layers,
            ),
        ] {
            for i in 0..n {
                let p = format!("{prefix}.{i}");
                for (s, shape) in [
                    ("ln_1.weight", vec![w]),
                    ("ln_1.bias", vec![w]),
                    ("ln_2.weight", vec![w]),
                    ("ln_2.bias", vec![w]),
                    ("attn.in_proj_weight", vec![3 * w, w]),
                    ("attn.in_proj_bias", vec![3 * w]),
                    ("attn.out_proj.weight", vec![w, w]),
                    ("attn.out_proj.bias", vec![w]),
                    ("mlp.c_fc.weight", vec![inter, w]),
                    ("mlp.c_fc.bias", vec![inter]),
                    ("mlp.c_proj.weight", vec![w, inter]),
                    ("mlp.c_proj.bias", vec![w]),
                ] {
                    out.push((format!("{p}.{s}"), shape));
                }
            }
        }
        out
    }

    fn tiny() -> ClipConfig {
        let mut c = ClipConfig::vit_base_patch32();
        c.text.width = 12;
        c.text.heads = 1;
        c.text.intermediate = 20;
        c.text.layers = 2;
        c.vision.width = 8;
        c.vision.heads = 1;
        c.vision.intermediate = 16;
        c.vision.layers = 1;
        c.vision.image_size = 64;
        c.projection_dim = 6;
        c
    }

    impl Shapes for HashMap<String, Vec<usize>> {
        fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
            self.get(name).cloned()
        }

        fn error(&self, msg: String) -> Error {
            Error::Format(msg)
        }
    }

    /// The config inferred from the shapes of an OpenAI-layout checkpoint of `cfg`.
    fn inferred(cfg: &ClipConfig) -> ClipConfig {
        let shapes: HashMap<String, Vec<usize>> = openai_tensors(cfg).into_iter().collect();
        infer_config(&shapes, WeightLayout::OpenAi).unwrap()
    }

    pub(crate) fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "laic-test-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn config_is_inferred_from_shapes_for_the_openai_presets() {
        for cfg in [
            ClipConfig::vit_base_patch32(),
            ClipConfig::vit_base_patch16(),
            ClipConfig::vit_large_patch14(),
        ] {
            assert_eq!(inferred(&cfg), cfg);
        }
        let t = tiny();
        assert_eq!(inferred(&t).text.width, 12);
    }

    #[test]
    fn load_maps_openai_layout_and_converts_half_precision() {
        let dir = tempdir("load");
        let cfg = tiny();
        for dtype in [StDtype::F32, StDtype::F16, StDtype::BF16] {
            let path = write_file(&dir, "m.safetensors", &openai_tensors(&cfg), dtype);
            let w = load(&path, None).unwrap();
            assert_eq!(w.config.text.width, 12);
            assert_eq!(w.text.blocks.len(), 2);
            assert_eq!(w.vision.patch.weight.shape(), &[8, 3 * 32 * 32]);
            assert_eq!(w.text.projection.layout, MatrixLayout::InOut);
            let want = match dtype {
                StDtype::F16 => crate::matrix::Dtype::F16,
                StDtype::BF16 => crate::matrix::Dtype::Bf16,
                _ => crate::matrix::Dtype::F32,
            };
            assert_eq!(w.dtype, want, "the file's dtype is recorded for the GPU");
            assert_eq!(
                w.text.blocks[0].qkv.weight.is_mapped(),
                dtype == StDtype::F32
            );
        }
    }

    #[test]
    fn errors_name_the_tensor() {
        let dir = tempdir("errors");
        let cfg = tiny();
        // Missing tensor.
        let mut t = openai_tensors(&cfg);
        t.retain(|(n, _)| n != "visual.transformer.resblocks.0.mlp.c_fc.bias");
        let p = write_file(&dir, "missing.safetensors", &t, StDtype::F32);
        let e = load(&p, None).err().unwrap().to_string();
        assert!(
            e.contains("missing tensor visual.transformer.resblocks.0.mlp.c_fc.bias"),
            "{e}"
        );
        // Wrong shape.
        let mut t = openai_tensors(&cfg);
        t.iter_mut()
            .find(|(n, _)| n == "transformer.resblocks.1.attn.out_proj.weight")
            .unwrap()
            .1 = vec![12, 11];
        let p = write_file(&dir, "shape.safetensors", &t, StDtype::F32);
        let e = load(&p, None).err().unwrap().to_string();
        assert!(
            e.contains("transformer.resblocks.1.attn.out_proj.weight has shape [12, 11]"),
            "{e}"
        );
        // Wrong dtype.
        let p = write_file(
            &dir,
            "dtype.safetensors",
            &openai_tensors(&cfg),
            StDtype::I32,
        );
        let e = load(&p, None).err().unwrap().to_string();
        assert!(e.contains("dtype I32"), "{e}");
        // Truncated file.
        let p = write_file(
            &dir,
            "trunc.safetensors",
            &openai_tensors(&cfg),
            StDtype::F32,
        );
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
        let e = load(&p, None).err().unwrap().to_string();
        assert!(e.contains("truncated") && e.contains("tensor "), "{e}");
        // A header that lies about an offset.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = &text[8..8 + n];
        let lied = header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[4,", 1);
        assert_ne!(lied, header);
        let mut liar = bytes[..8].to_vec();
        liar.extend_from_slice(lied.as_bytes());
        liar.extend_from_slice(&bytes[8 + n..]);
        std::fs::write(&p, &liar).unwrap();
        let e = load(&p, None).err().unwrap().to_string();
        assert!(e.contains("not a valid safetensors file"), "{e}");
        // Garbage and an empty file.
        std::fs::write(&p, b"this is not a safetensors file at all").unwrap();
        assert!(matches!(load(&p, None), Err(Error::Format(_))));
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(load(&p, None), Err(Error::Format(_))));
        // Not CLIP.
        let p = write_file(
            &dir,
            "other.safetensors",
            &[("x".into(), vec![2])],
            StDtype::F32,
        );
        let e = load(&p, None).err().unwrap().to_string();
        assert!(e.contains("not a CLIP checkpoint"), "{e}");
        // Config that disagrees with the tensors.
        let p = write_file(&dir, "cfg.safetensors", &openai_tensors(&cfg), StDtype::F32);
        let e = load(&p, Some("{}")).err().unwrap().to_string();
        assert!(e.contains("blocks under") || e.contains("has shape"), "{e}");
    }
}
