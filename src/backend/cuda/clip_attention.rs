//! The fused attention kernels of the CUDA CLIP encoders (`laic_clip_attention*` in
//! `kernels/clip.cu`): which one runs, its launch geometry and its launch.
//!
//! Attention of CLIP's short sequences (text ~10 tokens, ViT-B/32 50) is little work, but on
//! cuBLAS it takes two tiny strided-batched GEMMs per head and a softmax pass over a scores
//! buffer. The fused kernels take a block per (sequence, head) instead: one launch per block
//! layer, nothing between the projections but the output. Two of them:
//! - tensor cores (`laic_clip_attention_mma{8,16}_*`, f16/bf16 operands): mma.sync for Q Kᵀ
//!   and P V, the softmax in registers;
//! - CUDA cores (`laic_clip_attention_*`, every operand type): f32 scores and weights.
//!
//! Both passed the parity tests on an H200 (2026-11-28), where the tensor-core kernel made the
//! f16 towers 1.2x (images) and 1.24x (text) faster than with cuBLAS attention; the CUDA-core
//! kernel was slower than cuBLAS on the 50 image tokens. So the default is the tensor-core
//! kernel for f16/bf16 operands and cuBLAS for f32 ones; `LAIC_CLIP_ATTENTION` at load chooses
//! otherwise: `cublas`, `fused` (the default's choice, except that f32 operands take the CUDA-core
//! kernel) or `fused-simt` (CUDA cores for every operand type).

use super::cuda_error;
use crate::error::{Error, Result};
use cudarc::driver::{CudaFunction, CudaModule, CudaStream, LaunchConfig, PushKernelArg, sys};
use std::sync::Arc;

/// Longest sequence the fused kernels take (`ATT_MAX_SEQ` in kernels/clip_simt.cuh).
pub(crate) const MAX_SEQ: usize = 128;
/// Widest head the fused kernels take.
const MAX_HEAD: usize = 128;

/// Which kernel runs attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttentionKernel {
    /// Two strided-batched cuBLAS GEMMs per head around a softmax pass (any length).
    Cublas,
    /// The CUDA-core kernel.
    Simt,
    /// The tensor-core kernel.
    Mma,
}

impl AttentionKernel {
    /// The choice of `LAIC_CLIP_ATTENTION` (see the module documentation) for operands that
    /// can (`tensor_cores`) or cannot go through mma.sync.
    pub(crate) fn from_env(tensor_cores: bool) -> Self {
        Self::choose(
            std::env::var("LAIC_CLIP_ATTENTION").ok().as_deref(),
            tensor_cores,
        )
    }

    /// The kernel that `LAIC_CLIP_ATTENTION = setting` (`None`: unset; an unknown value counts
    /// as unset) chooses.
    fn choose(setting: Option<&str>, tensor_cores: bool) -> Self {
        match setting {
            Some("cublas") => AttentionKernel::Cublas,
            Some("fused-simt") => AttentionKernel::Simt,
            Some("fused") if !tensor_cores => AttentionKernel::Simt,
            _ if tensor_cores => AttentionKernel::Mma,
            _ => AttentionKernel::Cublas,
        }
    }
}

/// Launch shape of one fused attention call.
struct Geometry {
    warps: usize,
    smem: usize,
    /// Index into the tensor-core kernels (heads of up to 64 or 128 columns).
    mma: usize,
}

/// Shape of the CUDA-core kernel: K and V of one head as f32 rows of `round_up(hd, 32) + 4`
/// floats, and per warp one query row and one row of weights; two warps for up to 32 tokens.
fn simt_geometry(hd: usize, seq: usize) -> Geometry {
    let ld = hd.div_ceil(32) * 32 + 4;
    let warps = if seq <= 32 { 2 } else { 4 };
    Geometry {
        warps,
        smem: (2 * seq * ld + warps * (ld + MAX_SEQ)) * 4,
        mma: 0,
    }
}

/// Shape of the tensor-core kernel: Q, K and V of one head as `es`-byte operands, padded to
/// 16 rows and 16 columns with 8 elements of row padding; a warp per 16 query rows, at most 4.
fn mma_geometry(hd: usize, seq: usize, es: usize) -> Geometry {
    let (hdp, sp) = (hd.div_ceil(16) * 16, seq.div_ceil(16) * 16);
    Geometry {
        warps: (sp / 16).min(4),
        smem: 3 * sp * (hdp + 8) * es,
        mma: usize::from(hdp > 64),
    }
}

/// The CUDA-core kernel for operands named `suffix`.
fn simt_name(suffix: &str) -> String {
    format!("laic_clip_attention_{suffix}")
}

/// The tensor-core kernels for operands named `suffix` (heads of up to 64, up to 128 columns).
fn mma_names(suffix: &str) -> [String; 2] {
    [8, 16].map(|nt| format!("laic_clip_attention_mma{nt}_{suffix}"))
}

/// The loaded kernels of the chosen variant.
enum Kernels {
    /// The CUDA-core kernel.
    Simt(CudaFunction),
    /// The tensor-core kernels for heads of up to 64 and up to 128 columns (f16/bf16 only).
    Mma([CudaFunction; 2]),
}

/// The fused attention kernels of one operand type, as chosen at load.
pub(crate) struct FusedAttention {
    kernels: Kernels,
    /// Bytes per operand.
    es: usize,
}

impl FusedAttention {
    /// The kernels of `kind` for operands named `suffix` (`f32`, `f16`, `bf16`) of `es`
    /// bytes; `None` for [`AttentionKernel::Cublas`].
    pub(crate) fn load(
        module: &Arc<CudaModule>,
        suffix: &str,
        es: usize,
        kind: AttentionKernel,
    ) -> std::result::Result<Option<Self>, String> {
        let f = |name: &String| {
            module
                .load_function(name)
                .map_err(|e| format!("{name}: {e}"))
        };
        let kernels = match kind {
            AttentionKernel::Cublas => return Ok(None),
            AttentionKernel::Simt => Kernels::Simt(f(&simt_name(suffix))?),
            AttentionKernel::Mma => {
                let [n8, n16] = mma_names(suffix);
                Kernels::Mma([f(&n8)?, f(&n16)?])
            }
        };
        Ok(Some(FusedAttention { kernels, es }))
    }

    /// Which kernel runs.
    pub(crate) fn kind(&self) -> AttentionKernel {
        match self.kernels {
            Kernels::Simt(_) => AttentionKernel::Simt,
            Kernels::Mma(_) => AttentionKernel::Mma,
        }
    }

    /// Whether the fused kernel takes `seq` tokens of `heads` heads over `width` columns.
    pub(crate) fn takes(&self, width: usize, heads: usize, seq: usize) -> bool {
        (1..=MAX_SEQ).contains(&seq)
            && heads > 0
            && width.is_multiple_of(heads)
            && width / heads <= MAX_HEAD
    }

    fn geometry(&self, hd: usize, seq: usize) -> (Geometry, &CudaFunction) {
        match &self.kernels {
            Kernels::Mma(f) => {
                let g = mma_geometry(hd, seq, self.es);
                let func = &f[g.mma];
                (g, func)
            }
            Kernels::Simt(f) => (simt_geometry(hd, seq), f),
        }
    }

    /// Raises the shared-memory limit of the kernels the `towers` (width, heads, longest
    /// sequence) will use to what the most demanding of them needs; false when none fits or
    /// the device refuses (cuBLAS runs then).
    pub(crate) fn prepare(&self, towers: &[(usize, usize, usize)]) -> bool {
        // (kernel, bytes) with the largest need per kernel: two towers may share one.
        let mut needs: Vec<(&CudaFunction, usize)> = Vec::new();
        for &(width, heads, seq) in towers {
            let seq = seq.min(MAX_SEQ);
            if !self.takes(width, heads, seq) {
                continue;
            }
            let (g, f) = self.geometry(width / heads, seq);
            match needs.iter_mut().find(|(k, _)| std::ptr::eq(*k, f)) {
                Some((_, bytes)) => *bytes = (*bytes).max(g.smem),
                None => needs.push((f, g.smem)),
            }
        }
        !needs.is_empty()
            && needs.iter().all(|(f, bytes)| {
                f.set_attribute(
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    *bytes as i32,
                )
                .is_ok()
            })
    }

    /// Attention of `batch` sequences of `seq` tokens: `qkv` rows `[q | k | v]` (stride
    /// 3·width) into `attn` (stride `ld_attn`), causal when asked. The caller has checked
    /// [`Self::takes`] and called [`Self::prepare`] for this tower.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &self,
        stream: &Arc<CudaStream>,
        qkv: u64,
        attn: u64,
        batch: usize,
        seq: usize,
        width: usize,
        heads: usize,
        ld_attn: usize,
        causal: bool,
    ) -> Result<()> {
        let hd = width / heads;
        let blocks = batch * heads;
        if blocks > i32::MAX as usize {
            return Err(Error::invalid(format!(
                "{batch} sequences × {heads} heads are too many for one attention launch"
            )));
        }
        let (g, f) = self.geometry(hd, seq);
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (32 * g.warps as u32, 1, 1),
            shared_mem_bytes: g.smem as u32,
        };
        let (seq32, w32, h32) = (seq as i32, width as i32, heads as i32);
        let (ld64, causal) = (ld_attn as i64, causal as i32);
        let scale_log2 = std::f32::consts::LOG2_E / (hd as f32).sqrt();
        // SAFETY: qkv holds batch·seq rows of 3·width operands, attn batch·seq rows of stride
        // ld_attn ≥ width; seq and the head fit the kernel (`takes`) and the shared memory is
        // within the limit `prepare` raised for this tower's longest sequence.
        unsafe {
            stream
                .launch_builder(f)
                .arg(&qkv)
                .arg(&attn)
                .arg(&seq32)
                .arg(&w32)
                .arg(&h32)
                .arg(&ld64)
                .arg(&causal)
                .arg(&scale_log2)
                .launch(cfg)
        }
        .map(|_| ())
        .map_err(|e| cuda_error("launching laic_clip_attention", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_shapes_follow_the_kernel_layouts_and_fit_hopper() {
        // CUDA cores: two warps up to 32 tokens; ViT-B/32's 50 tokens as rows of 68 floats.
        assert_eq!(simt_geometry(64, 32).warps, 2);
        let g = simt_geometry(64, 50);
        assert_eq!((g.warps, g.smem), (4, (2 * 50 * 68 + 4 * (68 + 128)) * 4));
        // Rows of 13 columns take 36 floats (16-byte aligned, 4 mod 32).
        assert_eq!(
            simt_geometry(13, 17).smem,
            (2 * 17 * 36 + 2 * (36 + 128)) * 4
        );
        // Tensor cores: text (≤ 16 tokens) one warp, 50 tokens four tiles of 16 rows.
        let g = mma_geometry(64, 10, 2);
        assert_eq!((g.warps, g.smem, g.mma), (1, 3 * 16 * 72 * 2, 0));
        let g = mma_geometry(64, 50, 2);
        assert_eq!((g.warps, g.smem, g.mma), (4, 3 * 64 * 72 * 2, 0));
        assert_eq!(mma_geometry(65, 77, 2).mma, 1);
        assert_eq!(mma_geometry(13, 17, 2).smem, 3 * 32 * 24 * 2);
        // The widest cases stay within an H100's 227 KB per block.
        assert!(simt_geometry(MAX_HEAD, MAX_SEQ).smem <= 227 * 1024);
        assert!(mma_geometry(MAX_HEAD, MAX_SEQ, 2).smem <= 227 * 1024);
    }

    #[test]
    fn the_setting_chooses_the_kernel_and_tensor_cores_are_the_default() {
        use AttentionKernel::*;
        // (setting, choice for f16/bf16 operands, choice for f32 operands)
        for (setting, tensor_cores, f32) in [
            (None, Mma, Cublas),
            (Some("cublas"), Cublas, Cublas),
            (Some("fused"), Mma, Simt),
            (Some("fused-simt"), Simt, Simt),
            (Some("unknown"), Mma, Cublas),
        ] {
            assert_eq!(
                AttentionKernel::choose(setting, true),
                tensor_cores,
                "{setting:?}"
            );
            assert_eq!(AttentionKernel::choose(setting, false), f32, "{setting:?}");
        }
    }

    #[test]
    fn the_embedded_ptx_has_every_attention_kernel() {
        let Some(ptx) = super::super::kernels::CLIP_PTX else {
            return;
        };
        let entry = |name: &str| assert!(ptx.contains(&format!(".entry {name}(")), "{name}");
        for suffix in ["f32", "f16", "bf16"] {
            entry(&simt_name(suffix));
        }
        for suffix in ["f16", "bf16"] {
            mma_names(suffix).iter().for_each(|n| entry(n));
        }
    }
}
