//! The CLIP encoders on CUDA: weights uploaded once, cuBLAS GEMMs with f32 accumulation, and
//! the launch wrappers of `kernels/clip.cu` for the passes between them.
//!
//! Numerics: the GEMM operands (weights and the activations fed to GEMMs) are of one operand
//! type — f32, f16 or bf16 ([`crate::clip::ClipPrecision`]); products accumulate in f32; the
//! residual stream, layer norms (statistics and parameters), softmax and the output embeddings
//! are f32.
//!
//! Layout tricks that save passes:
//! - every biased linear layer is stored as `[out, kp]` with its bias in column `in` and zeros
//!   after it (`kp = ⌈(in + 1) / 8⌉·8`); the activation buffers it multiplies carry a column of
//!   ones there (written once, when the buffer is made). The GEMM adds the bias.
//! - the attention output projection and the second MLP layer accumulate into the f32 residual
//!   stream (`beta = 1`): the residual adds are free.
//! - attention runs per head as two strided-batched GEMMs (scores in f32 with the 1/√d scale
//!   as alpha; probabilities times values) around one softmax launch over all heads; with the
//!   causal mask the masked probabilities are exact zeros. Sequences of up to 128 tokens
//!   instead take one fused kernel per layer where the operands are f16/bf16, or where
//!   `LAIC_CLIP_ATTENTION` asks (see [`super::clip_attention`]).
//! - a text batch is only as long as its longest prompt (to its end-of-text token): exact under
//!   the causal mask, and the caller sorts prompts by length so batches carry little padding.
//!
//! `LAIC_CLIP_TRACE=1` at load time keeps the f32 weights on the host and, on every encode,
//! compares the device state after each step of each block with the CPU layers run on the same
//! input, printing the largest difference per step to stderr (for debugging a device run from
//! one log).

use super::clip_attention::{AttentionKernel, FusedAttention};
use super::{CudaBackend, cuda_error, kernels, panic_message};
use crate::clip::encode_token_batches_one_by_one;
use crate::clip::layers::{self, Activation, Scratch as CpuScratch, TowerShape};
use crate::clip::weights::{Block, ClipWeights, Linear, MatrixLayout, Norm};
use crate::clip::{ClipActivation, ClipCompute, ClipConfig, ClipPrecision};
use crate::error::{Error, Result};
use crate::matrix::Dtype;
use cudarc::cublas::{CudaBlas, result as blas, sys as bsys};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig,
    PinnedHostSlice, PushKernelArg,
};
use rayon::prelude::*;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Prompts per forward pass of the text tower on the GPU.
pub(crate) const TEXT_BATCH: usize = 4096;
/// Images per forward pass of the image tower on the GPU.
pub(crate) const IMAGE_BATCH: usize = 1024;

/// Device time of the last encode (f32 bits; NaN: none yet).
static LAST_ENCODE_MS: AtomicU32 = AtomicU32::new(0x7fc0_0000);

/// Device time in milliseconds of the most recent CUDA CLIP forward pass in this process
/// (CUDA events from after the inputs were uploaded to after the normalised embeddings were
/// computed; the copies in and out are excluded), or `None` before the first. For benchmarks.
pub fn last_clip_encode_ms() -> Option<f32> {
    Some(f32::from_bits(LAST_ENCODE_MS.load(Ordering::Relaxed))).filter(|v| !v.is_nan())
}

/// Summed device time per step of the forward passes since the last [`take_clip_profile`]
/// (milliseconds, steps in the order first seen).
static PROFILE: Mutex<Vec<(&'static str, f64)>> = Mutex::new(Vec::new());

/// The device time of each step of the CUDA CLIP forward passes run since the last call
/// (milliseconds summed over the passes, steps in the order they run: embeddings, each kind of
/// block step, the head), and resets the sums. Empty unless a model was loaded with
/// `LAIC_CLIP_PROFILE=1`, which records a CUDA event after every step (the events serialise
/// nothing, but cost a little host time). For benchmarks: where the time of a tower goes.
pub fn take_clip_profile() -> Vec<(&'static str, f64)> {
    std::mem::take(&mut *PROFILE.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The GEMM operand type of a model on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operand {
    F32,
    F16,
    Bf16,
}

impl Operand {
    fn size(self) -> usize {
        match self {
            Operand::F32 => 4,
            Operand::F16 | Operand::Bf16 => 2,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Operand::F32 => "f32",
            Operand::F16 => "f16",
            Operand::Bf16 => "bf16",
        }
    }

    fn cuda(self) -> bsys::cudaDataType {
        match self {
            Operand::F32 => bsys::cudaDataType::CUDA_R_32F,
            Operand::F16 => bsys::cudaDataType::CUDA_R_16F,
            Operand::Bf16 => bsys::cudaDataType::CUDA_R_16BF,
        }
    }

    /// `v` as little-endian bytes of this type (round to nearest even).
    fn encode(self, v: &[f32]) -> Vec<u8> {
        let mut out = vec![0u8; v.len() * self.size()];
        self.encode_into(v, &mut out);
        out
    }

    /// Writes `v` into `out` (`v.len()` values of this type) as [`Self::encode`] does, in
    /// parallel blocks on the current rayon pool.
    fn encode_into(self, v: &[f32], out: &mut [u8]) {
        const BLOCK: usize = 1 << 14;
        let es = self.size();
        out[..v.len() * es]
            .par_chunks_mut(BLOCK * es)
            .zip(v.par_chunks(BLOCK))
            .for_each(|(o, v)| {
                let o = o.chunks_exact_mut(es);
                match self {
                    Operand::F32 => o
                        .zip(v)
                        .for_each(|(o, x)| o.copy_from_slice(&x.to_le_bytes())),
                    Operand::F16 => o.zip(v).for_each(|(o, &x)| {
                        o.copy_from_slice(&half::f16::from_f32(x).to_le_bytes())
                    }),
                    Operand::Bf16 => o.zip(v).for_each(|(o, &x)| {
                        o.copy_from_slice(&half::bf16::from_f32(x).to_le_bytes())
                    }),
                }
            });
    }
}

/// The operand type for a requested precision and the dtype of the weights file.
fn resolve(precision: ClipPrecision, file: Dtype) -> Operand {
    match (precision, file) {
        (ClipPrecision::F32, _) | (ClipPrecision::Auto, Dtype::F32) => Operand::F32,
        (ClipPrecision::F16, _) | (ClipPrecision::Auto, Dtype::F16) => Operand::F16,
        (ClipPrecision::Bf16, _) | (ClipPrecision::Auto, Dtype::Bf16) => Operand::Bf16,
    }
}

/// `x` rounded up to a multiple of `to`.
fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// Row stride of an operand buffer feeding a biased layer with `in_dim` inputs: room for the
/// ones column, 16-byte aligned rows.
fn padded(in_dim: usize) -> usize {
    round_up(in_dim + 1, 8)
}

/// A device allocation and its address.
struct DevBuf {
    _mem: CudaSlice<u8>,
    ptr: u64,
    bytes: usize,
}

impl DevBuf {
    /// `bytes` zeroed bytes.
    fn zeros(stream: &Arc<CudaStream>, bytes: usize, what: &str) -> Result<Self> {
        let mem = stream
            .alloc_zeros::<u8>(bytes.max(16))
            .map_err(|e| cuda_error(&format!("allocating {what} ({bytes} bytes)"), e))?;
        let ptr = {
            let (p, _sync) = mem.device_ptr(stream);
            p
        };
        Ok(DevBuf {
            _mem: mem,
            ptr,
            bytes,
        })
    }

    /// A copy of `data`.
    fn upload(stream: &Arc<CudaStream>, data: &[u8], what: &str) -> Result<Self> {
        let buf = Self::zeros(stream, data.len(), what)?;
        // SAFETY: the allocation holds at least data.len() bytes; the copy is ordered on the
        // stream before any use of the buffer, and `data` outlives it (synchronous for
        // pageable host memory).
        unsafe { cudarc::driver::result::memcpy_htod_async(buf.ptr, data, stream.cu_stream()) }
            .map_err(|e| cuda_error(&format!("uploading {what}"), e))?;
        Ok(buf)
    }
}

/// A buffer that grows on demand (contents are not kept when it grows).
#[derive(Default)]
struct Grow {
    buf: Option<DevBuf>,
}

impl Grow {
    /// The address of at least `bytes` zeroed-at-creation bytes, and whether the buffer was
    /// (re)made by this call.
    fn get(&mut self, stream: &Arc<CudaStream>, bytes: usize, what: &str) -> Result<(u64, bool)> {
        if let Some(b) = &self.buf
            && b.bytes >= bytes
        {
            return Ok((b.ptr, false));
        }
        self.buf = None; // free before allocating the larger one
        let b = DevBuf::zeros(stream, bytes, what)?;
        let p = b.ptr;
        self.buf = Some(b);
        Ok((p, true))
    }
}

/// A linear layer on the device: `W` as `[out, ld]` of the operand type, the bias (if any) in
/// column `in_dim`, GEMM depth `k` (`ld` when biased, else `in_dim`).
struct DevLinear {
    w: DevBuf,
    out: usize,
    k: usize,
    ld: usize,
}

/// Layer-norm parameters on the device, f32 whatever the operand type (they are tiny, and a
/// bf16-rounded scale is the largest single error of a bf16 tower).
struct DevNorm {
    gamma: DevBuf,
    beta: DevBuf,
}

struct DevBlock {
    ln1: DevNorm,
    qkv: DevLinear,
    out: DevLinear,
    ln2: DevNorm,
    fc1: DevLinear,
    fc2: DevLinear,
}

struct DevText {
    tok: DevBuf,
    pos: DevBuf,
    blocks: Vec<DevBlock>,
    final_ln: DevNorm,
    proj: DevLinear,
}

struct DevVision {
    patch: DevLinear,
    cls: DevBuf,
    pos: DevBuf,
    pre_ln: DevNorm,
    blocks: Vec<DevBlock>,
    post_ln: DevNorm,
    proj: DevLinear,
}

/// The kernels of clip.cu for one operand type.
struct Kernels {
    layernorm: CudaFunction,
    embed_tokens: CudaFunction,
    vision_embed: CudaFunction,
    activation: CudaFunction,
    softmax: CudaFunction,
    patches: CudaFunction,
    ones_column: CudaFunction,
    l2norm: CudaFunction,
}

impl Kernels {
    fn load(module: &Arc<CudaModule>, op: Operand) -> std::result::Result<Self, String> {
        let f = |name: &str| {
            let full = format!("laic_clip_{name}_{}", op.suffix());
            module
                .load_function(&full)
                .map_err(|e| format!("{full}: {e}"))
        };
        Ok(Kernels {
            layernorm: f("layernorm")?,
            embed_tokens: f("embed_tokens")?,
            vision_embed: f("vision_embed")?,
            activation: f("activation")?,
            softmax: f("softmax")?,
            patches: f("patches")?,
            ones_column: f("ones_column")?,
            l2norm: module
                .load_function("laic_clip_l2norm")
                .map_err(|e| format!("laic_clip_l2norm: {e}"))?,
        })
    }
}

/// Sizes of a tower's blocks.
#[derive(Clone, Copy)]
struct Shape {
    width: usize,
    heads: usize,
    inter: usize,
    /// 0: quick_gelu, 1: gelu (clip.cu's `activation`).
    act: i32,
    eps: f32,
    causal: bool,
}

/// Work buffers of one tower (grown on demand, kept between calls).
#[derive(Default)]
struct Work {
    x: Grow,
    h: Grow,
    qkv: Grow,
    scores: Grow,
    probs: Grow,
    attn: Grow,
    mlp: Grow,
    pooled: Grow,
    emb: Grow,
    ids: Grow,
    pools: Grow,
    px: Grow,
    /// Page-locked (write-combined) staging for the pixels, in the operand type.
    px_staging: Option<PinnedHostSlice<u8>>,
    patches: Grow,
    patch_emb: Grow,
}

/// Addresses of the buffers of one forward pass.
#[derive(Clone, Copy)]
struct Bufs {
    x: u64,
    h: u64,
    qkv: u64,
    scores: u64,
    probs: u64,
    attn: u64,
    mlp: u64,
}

/// A forward pass enqueued on the stream: its embeddings on the device (`rows` f32 at `emb`)
/// and the events around its compute.
struct Pass {
    emb: u64,
    rows: usize,
    start: cudarc::driver::CudaEvent,
    end: cudarc::driver::CudaEvent,
}

/// Host copies kept for `LAIC_CLIP_TRACE`.
struct Trace {
    weights: ClipWeights,
}

/// The CLIP towers on one CUDA device.
pub(crate) struct CudaClip {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    op: Operand,
    config: ClipConfig,
    text: DevText,
    vision: DevVision,
    /// Serialises encodes (the work buffers and the stream are shared).
    work: Mutex<(Work, Work)>,
    /// The fused attention kernel short sequences take, if one was chosen at load.
    fused: Option<FusedAttention>,
    /// Page-locked landing buffers of finished text calls, kept for the next
    /// ([`ClipCompute::encode_token_batches`]).
    landing: Mutex<Vec<PinnedHostSlice<f32>>>,
    /// With `LAIC_CLIP_PROFILE=1`: an event after each step of the running forward pass.
    profile: Option<Mutex<Vec<(&'static str, cudarc::driver::CudaEvent)>>>,
    trace: Option<Trace>,
    device_name: String,
}

// SAFETY: every use of the stream, the cuBLAS handle and the device buffers happens with the
// `work` mutex held (encodes) or during construction; the raw device addresses are plain
// integers that are only dereferenced by work ordered on `stream`.
unsafe impl Send for CudaClip {}
// SAFETY: as above.
unsafe impl Sync for CudaClip {}

impl CudaClip {
    /// Uploads `weights` to the device of `backend` as `precision` (resolved against the
    /// file's dtype) and loads the kernels.
    pub(crate) fn new(
        backend: &CudaBackend,
        weights: ClipWeights,
        precision: ClipPrecision,
    ) -> Result<Self> {
        let ptx = Self::available()?;
        let ctx = backend.ctx.clone();
        let device_name = backend.device_name().to_string();
        let op = resolve(precision, weights.dtype);
        match catch_unwind(AssertUnwindSafe(|| {
            Self::setup(ctx, ptx, weights, op, device_name)
        })) {
            Ok(r) => r,
            Err(panic) => Err(Error::Cuda(format!(
                "CUDA CLIP setup failed: {}",
                panic_message(panic.as_ref())
            ))),
        }
    }

    /// Whether CLIP can run on CUDA at all in this process: the kernels were built and cuBLAS
    /// can be loaded (else [`Error::NoDevice`] with the reason). Returns the PTX.
    pub(crate) fn available() -> Result<&'static str> {
        let Some(ptx) = kernels::CLIP_PTX else {
            return Err(Error::NoDevice(
                "this build of laic has no CUDA kernels (nvcc was not found when it was compiled)"
                    .into(),
            ));
        };
        // SAFETY: only tries to dlopen libcublas.
        if !unsafe { bsys::is_culib_present() } {
            return Err(Error::NoDevice(
                "cuBLAS (libcublas) could not be loaded: CLIP on CUDA needs it (set \
                 LD_LIBRARY_PATH to the CUDA libraries)"
                    .into(),
            ));
        }
        Ok(ptx)
    }

    fn setup(
        ctx: Arc<CudaContext>,
        ptx: &str,
        weights: ClipWeights,
        op: Operand,
        device_name: String,
    ) -> Result<Self> {
        ctx.bind_to_thread()
            .map_err(|e| cuda_error("cannot bind the CUDA context", e))?;
        let cc = ctx
            .compute_capability()
            .map_err(|e| cuda_error("cannot read the compute capability", e))?;
        let cubin = kernels::CLIP_SM90.filter(|_| cc == (9, 0)).and_then(|bin| {
            ctx.load_module(cudarc::nvrtc::Ptx::from_binary(bin.to_vec()))
                .ok()
        });
        let module = match cubin {
            Some(m) => m,
            None => ctx
                .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
                .map_err(|e| cuda_error("the CUDA driver rejected laic's PTX (clip)", e))?,
        };
        let k = Kernels::load(&module, op)
            .map_err(|e| Error::Cuda(format!("cannot find a kernel in laic's PTX (clip): {e}")))?;
        let stream = ctx
            .new_stream()
            .map_err(|e| cuda_error("cannot create a CUDA stream", e))?;
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| Error::Cuda(format!("cannot create a cuBLAS handle: {e:?}")))?;
        let up = Uploader {
            stream: &stream,
            op,
        };
        let text = up.text(&weights)?;
        let vision = up.vision(&weights)?;
        stream
            .synchronize()
            .map_err(|e| cuda_error("uploading the CLIP weights", e))?;
        let trace = std::env::var("LAIC_CLIP_TRACE")
            .is_ok_and(|v| v == "1")
            .then_some(());
        let config = weights.config.clone();
        let kind = AttentionKernel::from_env(op != Operand::F32);
        let fused = FusedAttention::load(&module, op.suffix(), op.size(), kind)
            .map_err(|e| Error::Cuda(format!("cannot find a kernel in laic's PTX (clip): {e}")))?
            .filter(|f| {
                f.prepare(&[
                    (
                        config.text.width,
                        config.text.heads,
                        config.text.max_positions,
                    ),
                    (
                        config.vision.width,
                        config.vision.heads,
                        config.vision.tokens(),
                    ),
                ])
            });
        Ok(CudaClip {
            ctx,
            stream,
            blas,
            k,
            op,
            config,
            text,
            vision,
            work: Mutex::new((Work::default(), Work::default())),
            fused,
            landing: Mutex::new(Vec::new()),
            profile: std::env::var("LAIC_CLIP_PROFILE")
                .is_ok_and(|v| v == "1")
                .then(|| Mutex::new(Vec::new())),
            trace: trace.map(|_| Trace { weights }),
            device_name,
        })
    }

    /// Runs `f` with the context bound and the work buffers locked; panics become errors.
    fn with_work<R>(&self, f: impl FnOnce(&mut Work, &mut Work) -> Result<R>) -> Result<R> {
        let mut guard = self.work.lock().unwrap_or_else(|p| p.into_inner());
        self.ctx
            .bind_to_thread()
            .map_err(|e| cuda_error("cannot bind the CUDA context", e))?;
        let (text, vision) = &mut *guard;
        match catch_unwind(AssertUnwindSafe(|| f(text, vision))) {
            Ok(r) => r,
            Err(panic) => Err(Error::Cuda(format!(
                "panic inside the CUDA CLIP encoder: {}",
                panic_message(panic.as_ref())
            ))),
        }
    }

    fn text_shape(&self) -> Shape {
        let t = &self.config.text;
        Shape {
            width: t.width,
            heads: t.heads,
            inter: t.intermediate,
            act: act_code(t.activation),
            eps: t.layer_norm_eps,
            causal: true,
        }
    }

    fn vision_shape(&self) -> Shape {
        let v = &self.config.vision;
        Shape {
            width: v.width,
            heads: v.heads,
            inter: v.intermediate,
            act: act_code(v.activation),
            eps: v.layer_norm_eps,
            causal: false,
        }
    }

    // ---- launch wrappers of clip.cu (one per kernel) ----

    /// Warp-per-row launch shape: 8 rows per 256-thread block.
    fn rows_cfg(rows: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (rows.div_ceil(8) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// Block-per-row launch shape (blocks stride over the rows beyond 2^20).
    fn block_rows_cfg(rows: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (rows.clamp(1, 1 << 20) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// Grid-stride launch shape over `n` elements.
    fn elems_cfg(n: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (n.div_ceil(256).clamp(1, 1 << 20) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// `out[r] = LN(x[rows ? rows[r] : r])` for `n` rows (`rows`: 0 for none).
    #[allow(clippy::too_many_arguments)]
    fn layernorm(
        &self,
        x: u64,
        rows: u64,
        n: usize,
        w: usize,
        norm: &DevNorm,
        eps: f32,
        out: u64,
        ld_out: usize,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let (n64, w32, ld) = (n as i64, w as i32, ld_out as i64);
        // SAFETY: x holds the rows named (n rows or the rows listed, `w` f32 each), gamma/beta
        // `w` operands, out `n` rows of stride ld_out ≥ w; all on this stream.
        unsafe {
            self.stream
                .launch_builder(&self.k.layernorm)
                .arg(&x)
                .arg(&rows)
                .arg(&n64)
                .arg(&w32)
                .arg(&norm.gamma.ptr)
                .arg(&norm.beta.ptr)
                .arg(&eps)
                .arg(&out)
                .arg(&ld)
                .launch(Self::rows_cfg(n))
        }
        .map(|_| ())
        .map_err(|e| cuda_error("launching laic_clip_layernorm", e))
    }

    fn embed_tokens(&self, ids: u64, n: usize, seq: usize, x: u64) -> Result<()> {
        let t = &self.text;
        let (n64, s32, w32) = (n as i64, seq as i32, self.config.text.width as i32);
        // SAFETY: ids holds n in-vocabulary ids; tok/pos are the uploaded tables; x n rows.
        unsafe {
            self.stream
                .launch_builder(&self.k.embed_tokens)
                .arg(&ids)
                .arg(&n64)
                .arg(&s32)
                .arg(&w32)
                .arg(&t.tok.ptr)
                .arg(&t.pos.ptr)
                .arg(&x)
                .launch(Self::rows_cfg(n))
        }
        .map(|_| ())
        .map_err(|e| cuda_error("launching laic_clip_embed_tokens", e))
    }

    fn vision_embed(&self, emb: u64, n_rows: usize, x: u64) -> Result<()> {
        let v = &self.vision;
        let c = &self.config.vision;
        let (n64, t32, w32, eps) = (
            n_rows as i64,
            c.tokens() as i32,
            c.width as i32,
            c.layer_norm_eps,
        );
        // SAFETY: emb holds n_rows/tokens·grid² patch rows of width f32; x n_rows rows.
        unsafe {
            self.stream
                .launch_builder(&self.k.vision_embed)
                .arg(&emb)
                .arg(&v.cls.ptr)
                .arg(&v.pos.ptr)
                .arg(&n64)
                .arg(&t32)
                .arg(&w32)
                .arg(&v.pre_ln.gamma.ptr)
                .arg(&v.pre_ln.beta.ptr)
                .arg(&eps)
                .arg(&x)
                .launch(Self::rows_cfg(n_rows))
        }
        .map(|_| ())
        .map_err(|e| cuda_error("launching laic_clip_vision_embed", e))
    }

    fn activation(&self, y: u64, rows: usize, cols: usize, ld: usize, act: i32) -> Result<()> {
        let (r64, c32, ld64) = (rows as i64, cols as i32, ld as i64);
        // SAFETY: y holds rows rows of stride ld ≥ cols operands.
        unsafe {
            self.stream
                .launch_builder(&self.k.activation)
                .arg(&y)
                .arg(&r64)
                .arg(&c32)
                .arg(&ld64)
                .arg(&act)
                .launch(Self::block_rows_cfg(rows))
        }
        .map(|_| ())
        .map_err(|e| cuda_error("launching laic_clip_activation", e))
    }

    fn softmax(
        &self,
        scores: u64,
        probs: u64,
        rows: usize,
        seq: usize,
        ld: usize,
        causal: bool,
    ) -> Result<()> {
        let (r64, s32, ld32, c32) = (rows as i64, seq as i32, ld as i32, causal as i32);
        // SAFETY: scores (f32) and probs (operands) hold rows rows of stride ld ≥ seq.
        unsafe {
            self.stream
                .launch_builder(&self.k.softmax)
                .arg(&scores)
                .arg(&probs)
                .arg(&r64)
                .arg(&s32)
                .arg(&ld32)
                .arg(&c32)
                .launch(Self::rows_cfg(rows))
        }
        .map(|_| ())
        .map_err(|e| cuda_error("launching laic_clip_softmax", e))
    }

    fn patches(&self, px: u64, out: u64, n_images: usize) -> Result<()> {
        let c = &self.config.vision;
        let n_patches = n_images * c.grid() * c.grid();
        let (n64, s32, p32, g32) = (
            n_patches as i64,
            c.image_size as i32,
            c.patch_size as i32,
            c.grid() as i32,
        );
        // SAFETY: px holds n_images images of 3·s·s operands; out n_patches rows of 3·p·p.
        unsafe {
            self.stream
                .launch_builder(&self.k.patches)
                .arg(&px)
                .arg(&out)
                .arg(&n64)
                .arg(&s32)
                .arg(&p32)
                .arg(&g32)
                .launch(Self::block_rows_cfg(n_patches))
        }
        .map(|_| ())
        .map_err(|e| cuda_error("launching laic_clip_patches", e))
    }

    fn ones_column(&self, buf: u64, rows: usize, ld: usize, col: usize) -> Result<()> {
        let (r64, ld64, c32) = (rows as i64, ld as i64, col as i32);
        // SAFETY: buf holds rows rows of stride ld > col operands.
        unsafe {
            self.stream
                .launch_builder(&self.k.ones_column)
                .arg(&buf)
                .arg(&r64)
                .arg(&ld64)
                .arg(&c32)
                .launch(Self::elems_cfg(rows))
        }
        .map(|_| ())
        .map_err(|e| cuda_error("launching laic_clip_ones_column", e))
    }

    fn l2norm(&self, y: u64, rows: usize, d: usize) -> Result<()> {
        let (r64, d32) = (rows as i64, d as i32);
        // SAFETY: y holds rows rows of d f32.
        unsafe {
            self.stream
                .launch_builder(&self.k.l2norm)
                .arg(&y)
                .arg(&r64)
                .arg(&d32)
                .launch(Self::rows_cfg(rows))
        }
        .map(|_| ())
        .map_err(|e| cuda_error("launching laic_clip_l2norm", e))
    }

    // ---- cuBLAS ----

    /// `out (rows × n, row stride ldo) = x (rows × k, stride ldx) · Wᵀ + beta · out`, W `n × k`
    /// (row stride ldw), operands of the model's type, f32 accumulation; `out` is f32 when
    /// `out_f32`, else of the operand type.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        rows: usize,
        n: usize,
        k: usize,
        x: u64,
        ldx: usize,
        w: u64,
        ldw: usize,
        out: u64,
        ldo: usize,
        out_f32: bool,
        beta: f32,
    ) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        let t = self.op.cuda();
        let ct = if out_f32 {
            bsys::cudaDataType::CUDA_R_32F
        } else {
            t
        };
        let alpha = 1f32;
        // Column-major view: outᵀ (n × rows) = W (as kᵀ×n, transposed) · xᵀ (k × rows).
        // SAFETY: the buffers hold the spans described (checked by the callers' sizing);
        // alpha/beta are host f32 as CUBLAS_COMPUTE_32F expects.
        unsafe {
            blas::gemm_ex(
                *self.blas.handle(),
                bsys::cublasOperation_t::CUBLAS_OP_T,
                bsys::cublasOperation_t::CUBLAS_OP_N,
                n as i32,
                rows as i32,
                k as i32,
                &alpha as *const f32 as *const _,
                w as *const _,
                t,
                ldw as i32,
                x as *const _,
                t,
                ldx as i32,
                &beta as *const f32 as *const _,
                out as *mut _,
                ct,
                ldo as i32,
                bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| Error::Cuda(format!("cublasGemmEx ({rows}×{k}·{k}×{n}): {e:?}")))
    }

    /// The fused attention kernel, if it takes `seq` tokens of shape `s`.
    fn fused_for(&self, s: &Shape, seq: usize) -> Option<&FusedAttention> {
        self.fused
            .as_ref()
            .filter(|f| f.takes(s.width, s.heads, seq))
    }

    /// Multi-head attention of `batch` sequences of `seq` tokens: `qkv` rows `[q | k | v]`
    /// (stride 3·width, no bias left to add) into `attn` (stride `ld_attn`).
    fn attention(
        &self,
        s: &Shape,
        batch: usize,
        seq: usize,
        b: &Bufs,
        ld_attn: usize,
    ) -> Result<()> {
        if let Some(f) = self.fused_for(s, seq) {
            let (w, h) = (s.width, s.heads);
            return f.run(
                &self.stream,
                b.qkv,
                b.attn,
                batch,
                seq,
                w,
                h,
                ld_attn,
                s.causal,
            );
        }
        let (w, heads) = (s.width, s.heads);
        let hd = w / heads;
        let sp = round_up(seq, 8);
        let es = self.op.size() as u64;
        let ldq = 3 * w;
        let t = self.op.cuda();
        let scale = 1.0 / (hd as f32).sqrt();
        let (one, zero) = (1f32, 0f32);
        let head_scores = (batch * seq * sp) as u64;
        let fail = |what: &str, e: cudarc::cublas::result::CublasError| {
            Error::Cuda(format!(
                "cublasGemmStridedBatchedEx ({what}, batch {batch}, seq {seq}): {e:?}"
            ))
        };
        for h in 0..heads {
            let q = b.qkv + (h * hd) as u64 * es;
            let kk = b.qkv + (w + h * hd) as u64 * es;
            let sc = b.scores + h as u64 * head_scores * 4;
            // scoresᵀ (keys × queries, col-major) = K · Qᵀ: row-major scores[i][j] = q_i·k_j.
            // SAFETY: per sequence, q/k are seq rows of stride 3w inside qkv; scores seq rows of
            // stride sp inside this head's block.
            unsafe {
                blas::gemm_strided_batched_ex(
                    *self.blas.handle(),
                    bsys::cublasOperation_t::CUBLAS_OP_T,
                    bsys::cublasOperation_t::CUBLAS_OP_N,
                    seq as i32,
                    seq as i32,
                    hd as i32,
                    &scale as *const f32 as *const _,
                    kk as *const _,
                    t,
                    ldq as i32,
                    (seq * ldq) as i64,
                    q as *const _,
                    t,
                    ldq as i32,
                    (seq * ldq) as i64,
                    &zero as *const f32 as *const _,
                    sc as *mut _,
                    bsys::cudaDataType::CUDA_R_32F,
                    sp as i32,
                    (seq * sp) as i64,
                    batch as i32,
                    bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .map_err(|e| fail("scores", e))?;
        }
        self.softmax(b.scores, b.probs, heads * batch * seq, seq, sp, s.causal)?;
        for h in 0..heads {
            let v = b.qkv + (2 * w + h * hd) as u64 * es;
            let p = b.probs + h as u64 * head_scores * es;
            let o = b.attn + (h * hd) as u64 * es;
            // outᵀ (hd × queries) = Vᵀ · Pᵀ: row-major out[i][d] = Σ_j P[i][j]·v_j[d].
            // SAFETY: v seq rows of stride 3w; p seq rows of stride sp; o seq rows of stride
            // ld_attn, this head's hd columns.
            unsafe {
                blas::gemm_strided_batched_ex(
                    *self.blas.handle(),
                    bsys::cublasOperation_t::CUBLAS_OP_N,
                    bsys::cublasOperation_t::CUBLAS_OP_N,
                    hd as i32,
                    seq as i32,
                    seq as i32,
                    &one as *const f32 as *const _,
                    v as *const _,
                    t,
                    ldq as i32,
                    (seq * ldq) as i64,
                    p as *const _,
                    t,
                    sp as i32,
                    (seq * sp) as i64,
                    &zero as *const f32 as *const _,
                    o as *mut _,
                    t,
                    ld_attn as i32,
                    (seq * ld_attn) as i64,
                    batch as i32,
                    bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .map_err(|e| fail("values", e))?;
        }
        Ok(())
    }

    /// Grows the block buffers of `work` for `batch × seq` tokens of shape `s`.
    fn block_bufs(&self, work: &mut Work, s: &Shape, batch: usize, seq: usize) -> Result<Bufs> {
        let st = &self.stream;
        let rows = batch * seq;
        let es = self.op.size();
        let (kw, ki) = (padded(s.width), padded(s.inter));
        let sp = round_up(seq, 8);
        let x = work.x.get(st, rows * s.width * 4, "the residual stream")?.0;
        let (h, fresh_h) = work.h.get(st, rows * kw * es, "layer-norm outputs")?;
        let qkv = work.qkv.get(st, rows * 3 * s.width * es, "q, k, v")?.0;
        // The scores and probabilities of the cuBLAS attention (the fused kernel needs none).
        let (scores, probs) = if self.fused_for(s, seq).is_some() {
            (0, 0)
        } else {
            let head_scores = s.heads * batch * seq * sp;
            (
                work.scores.get(st, head_scores * 4, "attention scores")?.0,
                work.probs
                    .get(st, head_scores * es, "attention probabilities")?
                    .0,
            )
        };
        let (attn, fresh_a) = work.attn.get(st, rows * kw * es, "attention outputs")?;
        let (mlp, fresh_m) = work.mlp.get(st, rows * ki * es, "MLP activations")?;
        // The ones columns that multiply the biases, over the whole (new) buffer.
        if fresh_h {
            self.ones_column(
                h,
                work.h.buf.as_ref().map_or(0, |b| b.bytes) / (kw * es),
                kw,
                s.width,
            )?;
        }
        if fresh_a {
            self.ones_column(
                attn,
                work.attn.buf.as_ref().map_or(0, |b| b.bytes) / (kw * es),
                kw,
                s.width,
            )?;
        }
        if fresh_m {
            self.ones_column(
                mlp,
                work.mlp.buf.as_ref().map_or(0, |b| b.bytes) / (ki * es),
                ki,
                s.inter,
            )?;
        }
        Ok(Bufs {
            x,
            h,
            qkv,
            scores,
            probs,
            attn,
            mlp,
        })
    }

    /// One pre-LN residual block on the residual stream `b.x` (`batch·seq × width`).
    fn block(&self, blk: &DevBlock, s: &Shape, batch: usize, seq: usize, b: &Bufs) -> Result<()> {
        let rows = batch * seq;
        let w = s.width;
        let (kw, ki) = (padded(w), padded(s.inter));
        self.layernorm(b.x, 0, rows, w, &blk.ln1, s.eps, b.h, kw)?;
        self.mark("layer norms")?;
        let l = &blk.qkv;
        self.gemm(
            rows,
            l.out,
            l.k,
            b.h,
            kw,
            l.w.ptr,
            l.ld,
            b.qkv,
            3 * w,
            false,
            0.0,
        )?;
        self.mark("gemm qkv")?;
        self.attention(s, batch, seq, b, kw)?;
        self.mark("attention")?;
        let l = &blk.out;
        self.gemm(
            rows, l.out, l.k, b.attn, kw, l.w.ptr, l.ld, b.x, w, true, 1.0,
        )?;
        self.mark("gemm out + residual")?;
        self.layernorm(b.x, 0, rows, w, &blk.ln2, s.eps, b.h, kw)?;
        self.mark("layer norms")?;
        let l = &blk.fc1;
        self.gemm(
            rows, l.out, l.k, b.h, kw, l.w.ptr, l.ld, b.mlp, ki, false, 0.0,
        )?;
        self.mark("gemm fc1")?;
        self.activation(b.mlp, rows, s.inter, ki, s.act)?;
        self.mark("activation")?;
        let l = &blk.fc2;
        self.gemm(
            rows, l.out, l.k, b.mlp, ki, l.w.ptr, l.ld, b.x, w, true, 1.0,
        )?;
        self.mark("gemm fc2 + residual")
    }

    /// Final layer norm of the pooled rows, projection and L2 normalisation of the pass begun
    /// at `start`, into `work.emb` (enqueued, not waited for).
    #[allow(clippy::too_many_arguments)]
    fn head(
        &self,
        work: &mut Work,
        x: u64,
        pools: u64,
        n: usize,
        width: usize,
        eps: f32,
        ln: &DevNorm,
        proj: &DevLinear,
        start: cudarc::driver::CudaEvent,
    ) -> Result<Pass> {
        let st = &self.stream;
        let es = self.op.size();
        let d = proj.out;
        let pooled = work.pooled.get(st, n * width * es, "pooled tokens")?.0;
        let emb = work.emb.get(st, n * d * 4, "embeddings")?.0;
        self.layernorm(x, pools, n, width, ln, eps, pooled, width)?;
        self.gemm(
            n, d, proj.k, pooled, width, proj.w.ptr, proj.ld, emb, d, true, 0.0,
        )?;
        self.l2norm(emb, n, d)?;
        self.mark("head")?;
        Ok(Pass {
            emb,
            rows: n * d,
            start,
            end: self.timing_event()?,
        })
    }

    /// Copies the embeddings of `pass` into `out` and waits for them.
    fn download_embeddings(&self, pass: &Pass, out: &mut [f32]) -> Result<()> {
        let st = &self.stream;
        // SAFETY: pass.emb holds pass.rows f32 (made by `head`), and out at least as many
        // (checked by the callers); the copy is synchronous for pageable memory and waited for.
        unsafe {
            cudarc::driver::result::memcpy_dtoh_async(
                &mut out[..pass.rows],
                pass.emb,
                st.cu_stream(),
            )
        }
        .map_err(|e| cuda_error("downloading the embeddings", e))?;
        st.synchronize()
            .map_err(|e| cuda_error("running the CLIP encoder", e))?;
        self.finish_pass(pass);
        Ok(())
    }

    /// Records the device time of a finished pass (and its profile, when profiling).
    fn finish_pass(&self, pass: &Pass) {
        if let Ok(ms) = pass.start.elapsed_ms(&pass.end) {
            LAST_ENCODE_MS.store(ms.to_bits(), Ordering::Relaxed);
        }
        self.flush_profile(&pass.start);
    }

    /// Enqueues the text tower on `prompts` (a batch only as long as its longest prompt, up to
    /// its end-of-text token) and returns the pass (its embeddings in `work.emb`).
    fn enqueue_text(&self, work: &mut Work, prompts: &[&[u32]]) -> Result<Pass> {
        let cfg = &self.config.text;
        let batch = prompts.len();
        // Pool at the first end-of-text token; the batch ends at the last one.
        let pools: Vec<usize> = prompts
            .iter()
            .map(|p| {
                p.iter()
                    .position(|&t| t == cfg.eot_token_id)
                    .unwrap_or(p.len().saturating_sub(1))
            })
            .collect();
        let seq = pools.iter().map(|p| p + 1).max().unwrap_or(1);
        let mut ids = vec![0i32; batch * seq];
        for (b, p) in prompts.iter().enumerate() {
            for (t, &id) in p.iter().take(seq).enumerate() {
                ids[b * seq + t] = id as i32;
            }
        }
        let pool_rows: Vec<i32> = pools
            .iter()
            .enumerate()
            .map(|(b, &p)| (b * seq + p) as i32)
            .collect();
        let s = self.text_shape();
        let id_ptr = self.upload_into(&mut work.ids, as_bytes(&ids), "token ids")?;
        let pool_ptr = self.upload_into(&mut work.pools, as_bytes(&pool_rows), "pool rows")?;
        let b = self.block_bufs(work, &s, batch, seq)?;
        let start = self.start_pass()?;
        self.embed_tokens(id_ptr, batch * seq, seq, b.x)?;
        self.mark("embeddings")?;
        let cpu = self.trace.as_ref().map(|t| &t.weights.text.blocks[..]);
        if let Some(t) = &self.trace {
            // The embeddings on the CPU, as text::encode forms them.
            let (tok, pos) = (
                t.weights.text.token_embedding.data(),
                t.weights.text.position_embedding.data(),
            );
            let w = s.width;
            let mut x = vec![0f32; batch * seq * w];
            for (r, &id) in ids.iter().enumerate() {
                for j in 0..w {
                    x[r * w + j] = tok[id as usize * w + j] + pos[(r % seq) * w + j];
                }
            }
            let dev = self.download(b.x, batch * seq * w)?;
            trace_report("text", "embeddings", &dev, &x);
        }
        self.blocks("text", &self.text.blocks, cpu, &s, batch, seq, &b)?;
        let t = &self.text;
        self.head(
            work,
            b.x,
            pool_ptr,
            batch,
            s.width,
            s.eps,
            &t.final_ln,
            &t.proj,
            start,
        )
    }

    /// A page-locked host buffer of at least `len` f32 that the device copies into: one kept
    /// from an earlier call if one is large enough, else a new one (cached memory: the host
    /// reads it, so not write-combined).
    fn landing_buffer(&self, len: usize) -> Result<PinnedHostSlice<f32>> {
        {
            let mut kept = self.landing.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = kept.iter().position(|b| b.len() >= len) {
                return Ok(kept.swap_remove(i));
            }
            kept.clear(); // too small for this call: freed rather than kept growing
        }
        // SAFETY: the contents start unset; every read follows a device copy into them.
        unsafe { self.ctx.alloc_pinned_with_flags::<f32>(len.max(1), 0) }
            .map_err(|e| cuda_error(&format!("allocating {len} page-locked floats"), e))
    }

    /// Waits until the embeddings of batch `j` have landed in `buf` and hands them to `sink`.
    fn hand_over(
        &self,
        buf: &PinnedHostSlice<f32>,
        pass: &Pass,
        landed: &cudarc::driver::CudaEvent,
        j: usize,
        sink: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        landed
            .synchronize()
            .map_err(|e| cuda_error("running the CLIP encoder", e))?;
        self.finish_pass(pass);
        let rows = buf
            .as_slice()
            .map_err(|e| cuda_error("a page-locked buffer", e))?;
        sink(j, &rows[..pass.rows])
    }

    /// The event a forward pass's device time starts from (dropping the marks of a pass that
    /// failed, when profiling).
    fn start_pass(&self) -> Result<cudarc::driver::CudaEvent> {
        if let Some(p) = &self.profile {
            p.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        self.timing_event()
    }

    /// When profiling, records the end of `step` (its time runs from the previous mark).
    fn mark(&self, step: &'static str) -> Result<()> {
        if let Some(p) = &self.profile {
            let ev = self.timing_event()?;
            p.lock().unwrap_or_else(|p| p.into_inner()).push((step, ev));
        }
        Ok(())
    }

    /// When profiling, adds the times between `start` and the marks of the finished forward
    /// pass to [`PROFILE`].
    fn flush_profile(&self, start: &cudarc::driver::CudaEvent) {
        let Some(p) = &self.profile else { return };
        let marks = std::mem::take(&mut *p.lock().unwrap_or_else(|p| p.into_inner()));
        let mut sums = PROFILE.lock().unwrap_or_else(|p| p.into_inner());
        let mut prev = start;
        for (step, ev) in &marks {
            let ms = prev.elapsed_ms(ev).unwrap_or(f32::NAN) as f64;
            match sums.iter_mut().find(|(s, _)| s == step) {
                Some((_, t)) => *t += ms,
                None => sums.push((step, ms)),
            }
            prev = ev;
        }
    }

    fn timing_event(&self) -> Result<cudarc::driver::CudaEvent> {
        self.stream
            .record_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| cuda_error("recording an event", e))
    }

    /// Uploads `data` into a grown buffer and returns its address.
    fn upload_into(&self, g: &mut Grow, data: &[u8], what: &str) -> Result<u64> {
        let (p, _) = g.get(&self.stream, data.len(), what)?;
        // SAFETY: the buffer holds at least data.len() bytes; ordered on the stream.
        unsafe { cudarc::driver::result::memcpy_htod_async(p, data, self.stream.cu_stream()) }
            .map_err(|e| cuda_error(&format!("uploading {what}"), e))?;
        Ok(p)
    }

    /// Uploads `pixels` as operands (converted on the host threads into a page-locked staging
    /// buffer: half the bytes of f32 for f16/bf16, and a direct DMA instead of the driver's
    /// pageable staging) and returns their device address. The same values as converting on
    /// the device (round to nearest even). Where page-locked memory cannot be had, the
    /// converted pixels go up from ordinary memory.
    fn upload_pixels(&self, work: &mut Work, pixels: &[f32]) -> Result<u64> {
        let bytes = pixels.len() * self.op.size();
        if work.px_staging.as_ref().is_none_or(|b| b.len() < bytes) {
            work.px_staging = None; // free the smaller one first
            // SAFETY: the contents start unset; they are written below before any copy.
            work.px_staging = unsafe { self.ctx.alloc_pinned::<u8>(bytes.max(1)) }.ok();
        }
        let Some(staging) = work.px_staging.as_mut() else {
            let converted = self.op.encode(pixels);
            return self.upload_into(&mut work.px, &converted, "pixels");
        };
        let staging = staging
            .as_mut_slice()
            .map_err(|e| cuda_error("a page-locked buffer", e))?;
        self.op.encode_into(pixels, staging);
        let (dst, _) = work.px.get(&self.stream, bytes, "pixels")?;
        // SAFETY: dst holds `bytes`; the staging buffer is not written again before the copy
        // has finished (waited for right here, so an error later cannot leave it in flight).
        unsafe {
            cudarc::driver::result::memcpy_htod_async(
                dst,
                &staging[..bytes],
                self.stream.cu_stream(),
            )
        }
        .map_err(|e| cuda_error("uploading the pixels", e))?;
        self.stream
            .synchronize()
            .map_err(|e| cuda_error("uploading the pixels", e))?;
        Ok(dst)
    }

    /// Copies `n` f32 from the device.
    fn download(&self, ptr: u64, n: usize) -> Result<Vec<f32>> {
        let mut v = vec![0f32; n];
        self.stream
            .synchronize()
            .map_err(|e| cuda_error("tracing", e))?;
        // SAFETY: ptr holds n f32 (the caller's buffer); synchronised below.
        unsafe {
            cudarc::driver::result::memcpy_dtoh_async(&mut v[..], ptr, self.stream.cu_stream())
        }
        .map_err(|e| cuda_error("tracing", e))?;
        self.stream
            .synchronize()
            .map_err(|e| cuda_error("tracing", e))?;
        Ok(v)
    }

    /// Copies `rows × cols` operands (row stride ld) from the device as f32.
    fn download_op(&self, ptr: u64, rows: usize, cols: usize, ld: usize) -> Result<Vec<f32>> {
        let es = self.op.size();
        let mut raw = vec![0u8; rows * ld * es];
        self.stream
            .synchronize()
            .map_err(|e| cuda_error("tracing", e))?;
        // SAFETY: ptr holds rows·ld operands; synchronised below.
        unsafe {
            cudarc::driver::result::memcpy_dtoh_async(&mut raw[..], ptr, self.stream.cu_stream())
        }
        .map_err(|e| cuda_error("tracing", e))?;
        self.stream
            .synchronize()
            .map_err(|e| cuda_error("tracing", e))?;
        let mut out = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                let b = &raw[(r * ld + c) * es..][..es];
                out.push(match self.op {
                    Operand::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    Operand::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
                    Operand::Bf16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
                });
            }
        }
        Ok(out)
    }

    /// Runs the blocks, tracing each step against the CPU layers when tracing is on.
    #[allow(clippy::too_many_arguments)]
    fn blocks(
        &self,
        tower: &str,
        dev: &[DevBlock],
        cpu: Option<&[Block]>,
        s: &Shape,
        batch: usize,
        seq: usize,
        b: &Bufs,
    ) -> Result<()> {
        let Some(cpu) = cpu else {
            for blk in dev {
                self.block(blk, s, batch, seq, b)?;
            }
            return Ok(());
        };
        let rows = batch * seq;
        let w = s.width;
        let (kw, ki) = (padded(w), padded(s.inter));
        let mut x = self.download(b.x, rows * w)?;
        let shape = TowerShape {
            width: w,
            heads: s.heads,
            intermediate: s.inter,
            act: if s.act == 0 {
                Activation::QuickGelu
            } else {
                Activation::Gelu
            },
            eps: s.eps,
            causal: s.causal,
        };
        let report = |what: String, dev: &[f32], cpu: &[f32]| trace_report(tower, &what, dev, cpu);
        let mut scratch = CpuScratch::default();
        for (i, (blk, cb)) in dev.iter().zip(cpu).enumerate() {
            // The device steps one by one, compared with the CPU step on the device's input.
            let x_in = self.download(b.x, rows * w)?;
            self.layernorm(b.x, 0, rows, w, &blk.ln1, s.eps, b.h, kw)?;
            let mut h = vec![0f32; rows * w];
            cb.ln1.forward(&x_in, w, s.eps, &mut h);
            report(
                format!("block {i} ln1"),
                &self.download_op(b.h, rows, w, kw)?,
                &h,
            );
            let l = &blk.qkv;
            self.gemm(
                rows,
                l.out,
                l.k,
                b.h,
                kw,
                l.w.ptr,
                l.ld,
                b.qkv,
                3 * w,
                false,
                0.0,
            )?;
            let h_dev = self.download_op(b.h, rows, w, kw)?;
            let mut qkv = vec![0f32; rows * 3 * w];
            cb.qkv
                .forward(&h_dev, rows, Activation::Identity, false, &mut qkv);
            let qkv_dev = self.download_op(b.qkv, rows, 3 * w, 3 * w)?;
            report(format!("block {i} qkv"), &qkv_dev, &qkv);
            self.attention(s, batch, seq, b, kw)?;
            let mut attn = vec![0f32; rows * w];
            layers::attention(&qkv_dev, batch, seq, w, s.heads, s.causal, &mut attn);
            let attn_dev = self.download_op(b.attn, rows, w, kw)?;
            report(format!("block {i} attention"), &attn_dev, &attn);
            let l = &blk.out;
            self.gemm(
                rows, l.out, l.k, b.attn, kw, l.w.ptr, l.ld, b.x, w, true, 1.0,
            )?;
            let mut x1 = x_in.clone();
            cb.out
                .forward(&attn_dev, rows, Activation::Identity, true, &mut x1);
            let x1_dev = self.download(b.x, rows * w)?;
            report(format!("block {i} x + attn"), &x1_dev, &x1);
            self.layernorm(b.x, 0, rows, w, &blk.ln2, s.eps, b.h, kw)?;
            cb.ln2.forward(&x1_dev, w, s.eps, &mut h);
            report(
                format!("block {i} ln2"),
                &self.download_op(b.h, rows, w, kw)?,
                &h,
            );
            let l = &blk.fc1;
            self.gemm(
                rows, l.out, l.k, b.h, kw, l.w.ptr, l.ld, b.mlp, ki, false, 0.0,
            )?;
            self.activation(b.mlp, rows, s.inter, ki, s.act)?;
            let h_dev = self.download_op(b.h, rows, w, kw)?;
            let mut mlp = vec![0f32; rows * s.inter];
            cb.fc1.forward(&h_dev, rows, shape.act, false, &mut mlp);
            let mlp_dev = self.download_op(b.mlp, rows, s.inter, ki)?;
            report(format!("block {i} fc1+act"), &mlp_dev, &mlp);
            let l = &blk.fc2;
            self.gemm(
                rows, l.out, l.k, b.mlp, ki, l.w.ptr, l.ld, b.x, w, true, 1.0,
            )?;
            let mut x2 = x1_dev.clone();
            cb.fc2
                .forward(&mlp_dev, rows, Activation::Identity, true, &mut x2);
            report(
                format!("block {i} x + mlp"),
                &self.download(b.x, rows * w)?,
                &x2,
            );
            // And the CPU block run end to end from the CPU's own state.
            cb.forward(&mut x, batch, seq, &shape, &mut scratch);
            report(
                format!("block {i} (CPU chain from the embeddings)"),
                &self.download(b.x, rows * w)?,
                &x,
            );
        }
        Ok(())
    }
}

/// Prints the largest difference between a device state and the CPU's (`LAIC_CLIP_TRACE`).
fn trace_report(tower: &str, what: &str, dev: &[f32], cpu: &[f32]) {
    let (mut worst, mut at) = (0f32, 0usize);
    for (i, (a, c)) in dev.iter().zip(cpu).enumerate() {
        let d = (a - c).abs();
        if d > worst || d.is_nan() {
            worst = d;
            at = i;
            if d.is_nan() {
                break;
            }
        }
    }
    let scale = cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!(
        "clip-trace {tower} {what}: max |gpu - cpu| {worst:.3e} at {at} (gpu {}, cpu {}), \
         max |cpu| {scale:.3e}, {} values",
        dev.get(at).copied().unwrap_or(f32::NAN),
        cpu.get(at).copied().unwrap_or(f32::NAN),
        dev.len().min(cpu.len())
    );
}

/// The image tokens before the first block, on the CPU (as `vision::encode` forms them).
fn cpu_vision_embed(w: &ClipWeights, pixels: &[f32], n: usize) -> Vec<f32> {
    let c = &w.config.vision;
    let (s, p, g, width) = (c.image_size, c.patch_size, c.grid(), c.width);
    let (tokens, k) = (c.tokens(), 3 * p * p);
    let mut patches = vec![0f32; n * g * g * k];
    for (r, row) in patches.chunks_mut(k).enumerate() {
        let (img, patch) = (r / (g * g), r % (g * g));
        let (gy, gx) = (patch / g, patch % g);
        for ch in 0..3 {
            for ky in 0..p {
                let src = &pixels[img * 3 * s * s + ch * s * s + (gy * p + ky) * s + gx * p..][..p];
                row[(ch * p + ky) * p..][..p].copy_from_slice(src);
            }
        }
    }
    let mut emb = vec![0f32; n * g * g * width];
    w.vision
        .patch
        .forward(&patches, n * g * g, Activation::Identity, false, &mut emb);
    let (cls, pos) = (
        w.vision.class_embedding.data(),
        w.vision.position_embedding.data(),
    );
    let mut x = vec![0f32; n * tokens * width];
    for (r, row) in x.chunks_mut(width).enumerate() {
        let (img, t) = (r / tokens, r % tokens);
        let e = if t == 0 {
            cls
        } else {
            &emb[(img * g * g + t - 1) * width..][..width]
        };
        for j in 0..width {
            row[j] = e[j] + pos[t * width + j];
        }
    }
    let mut out = vec![0f32; x.len()];
    w.vision
        .pre_ln
        .forward(&x, width, c.layer_norm_eps, &mut out);
    out
}

fn act_code(a: ClipActivation) -> i32 {
    match a {
        ClipActivation::QuickGelu => 0,
        ClipActivation::Gelu => 1,
    }
}

impl ClipCompute for CudaClip {
    fn encode_tokens(&self, prompts: &[&[u32]], out: &mut [f32]) -> Result<()> {
        let batch = prompts.len();
        if batch == 0 {
            return Ok(());
        }
        let d = self.config.projection_dim;
        if out.len() < batch * d {
            return Err(Error::Internal("CLIP output buffer too short".into()));
        }
        self.with_work(|work, _| {
            let pass = self.enqueue_text(work, prompts)?;
            self.download_embeddings(&pass, out)
        })?;
        if let Some(t) = &self.trace {
            let c = &t.weights.config;
            let mut want = vec![0f32; batch * d];
            crate::clip::text::encode(&t.weights.text, &c.text, d, prompts, &mut want)?;
            trace_report(
                "text",
                "embeddings out (CPU end to end)",
                &out[..batch * d],
                &want,
            );
        }
        Ok(())
    }

    /// Runs batch i + 1 on the device while the host hands batch i to `sink`: each batch's
    /// embeddings are copied into one of two page-locked buffers, and only that copy is waited
    /// for. The work buffers are locked while a batch is enqueued, not while `sink` runs.
    /// Tracing and profiling need one pass at a time: they take the one-by-one default.
    fn encode_token_batches(
        &self,
        batches: &[Vec<&[u32]>],
        d: usize,
        sink: &mut dyn FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        if batches.len() < 2 || self.trace.is_some() || self.profile.is_some() {
            return encode_token_batches_one_by_one(self, batches, d, sink);
        }
        let rows = batches.iter().map(Vec::len).max().unwrap_or(0) * d;
        let (Ok(a), Ok(b)) = (self.landing_buffer(rows), self.landing_buffer(rows)) else {
            // No page-locked memory to be had: one batch at a time, through ordinary memory.
            return encode_token_batches_one_by_one(self, batches, d, sink);
        };
        let mut landing = [a, b];
        let mut pending: Option<(usize, Pass, cudarc::driver::CudaEvent)> = None;
        let run = (|| {
            for (i, batch) in batches.iter().enumerate() {
                if batch.is_empty() {
                    return Err(Error::Internal("an empty batch of prompts".into()));
                }
                let dst = landing[i % 2]
                    .as_mut_slice()
                    .map_err(|e| cuda_error("a page-locked buffer", e))?;
                let (pass, landed) = self.with_work(|work, _| {
                    let pass = self.enqueue_text(work, batch)?;
                    // SAFETY: dst holds `rows` ≥ pass.rows f32 and is neither read nor written
                    // by the host until `landed` (recorded after the copy) has been waited for;
                    // the other buffer is the only one the host touches meanwhile.
                    unsafe {
                        cudarc::driver::result::memcpy_dtoh_async(
                            &mut dst[..pass.rows],
                            pass.emb,
                            self.stream.cu_stream(),
                        )
                    }
                    .map_err(|e| cuda_error("downloading the embeddings", e))?;
                    Ok((pass, self.timing_event()?))
                })?;
                if let Some((j, prev, prev_landed)) = pending.replace((i, pass, landed)) {
                    self.hand_over(&landing[j % 2], &prev, &prev_landed, j, sink)?;
                }
            }
            if let Some((j, prev, prev_landed)) = pending.take() {
                self.hand_over(&landing[j % 2], &prev, &prev_landed, j, sink)?;
            }
            Ok(())
        })();
        // No copy may still be writing into the buffers once they are reused or freed: after
        // an error, wait for the stream (and if even that fails, never free them).
        if run.is_err() && self.stream.synchronize().is_err() {
            std::mem::forget(landing);
            return run;
        }
        self.landing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(landing);
        run
    }

    fn encode_pixels(&self, pixels: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let c = &self.config.vision;
        let d = self.config.projection_dim;
        let per = 3 * c.image_size * c.image_size;
        if pixels.len() < n * per || out.len() < n * d {
            return Err(Error::Internal(
                "CLIP pixel or output buffer too short".into(),
            ));
        }
        let s = self.vision_shape();
        let tokens = c.tokens();
        let g2 = c.grid() * c.grid();
        let k = 3 * c.patch_size * c.patch_size;
        let es = self.op.size();
        let pool_rows: Vec<i32> = (0..n).map(|i| (i * tokens) as i32).collect();
        self.with_work(|_, work| {
            let st = &self.stream;
            let px = self.upload_pixels(work, &pixels[..n * per])?;
            let pool_ptr = self.upload_into(&mut work.pools, as_bytes(&pool_rows), "pool rows")?;
            let patches = work.patches.get(st, n * g2 * k * es, "patches")?.0;
            let emb = work
                .patch_emb
                .get(st, n * g2 * s.width * 4, "patch embeddings")?
                .0;
            let b = self.block_bufs(work, &s, n, tokens)?;
            let start = self.start_pass()?;
            self.patches(px, patches, n)?;
            let v = &self.vision;
            self.gemm(
                n * g2,
                s.width,
                v.patch.k,
                patches,
                k,
                v.patch.w.ptr,
                v.patch.ld,
                emb,
                s.width,
                true,
                0.0,
            )?;
            self.vision_embed(emb, n * tokens, b.x)?;
            self.mark("embeddings")?;
            if let Some(t) = &self.trace {
                let x = cpu_vision_embed(&t.weights, &pixels[..n * per], n);
                let dev = self.download(b.x, n * tokens * s.width)?;
                trace_report("vision", "embeddings + pre-LN", &dev, &x);
            }
            let cpu = self.trace.as_ref().map(|t| &t.weights.vision.blocks[..]);
            self.blocks("vision", &v.blocks, cpu, &s, n, tokens, &b)?;
            let pass = self.head(
                work, b.x, pool_ptr, n, s.width, s.eps, &v.post_ln, &v.proj, start,
            )?;
            self.download_embeddings(&pass, out)?;
            if let Some(t) = &self.trace {
                let c = &t.weights.config;
                let mut want = vec![0f32; n * d];
                crate::clip::vision::encode(
                    &t.weights.vision,
                    &c.vision,
                    d,
                    &pixels[..n * per],
                    n,
                    &mut want,
                );
                trace_report(
                    "vision",
                    "embeddings out (CPU end to end)",
                    &out[..n * d],
                    &want,
                );
            }
            Ok(())
        })
    }

    fn batch_sizes(&self) -> (usize, usize) {
        (TEXT_BATCH, IMAGE_BATCH)
    }

    fn device(&self) -> String {
        let attention = match self.fused.as_ref().map(|f| f.kind()) {
            Some(AttentionKernel::Mma) => ", fused attention",
            Some(_) => ", fused attention on CUDA cores",
            None => "",
        };
        format!(
            "cuda ({}, {}{attention})",
            self.device_name,
            self.op.suffix()
        )
    }
}

/// The bytes of a slice of plain numbers.
fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: T is a plain number type (i32, f32) without padding; the byte view covers
    // exactly the slice's memory and lives as long as it.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// Converts host weights to the operand type and uploads them.
struct Uploader<'a> {
    stream: &'a Arc<CudaStream>,
    op: Operand,
}

impl Uploader<'_> {
    fn buf(&self, v: &[f32], what: &str) -> Result<DevBuf> {
        DevBuf::upload(self.stream, &self.op.encode(v), what)
    }

    fn norm(&self, n: &Norm, what: &str) -> Result<DevNorm> {
        let f32_buf = |v: &[f32]| DevBuf::upload(self.stream, &Operand::F32.encode(v), what);
        Ok(DevNorm {
            gamma: f32_buf(n.weight.data())?,
            beta: f32_buf(n.bias.data())?,
        })
    }

    /// `[out, ld]` row-major with the bias (if any) in column `in_dim`.
    fn linear(&self, l: &Linear, what: &str) -> Result<DevLinear> {
        let (i, o) = (l.in_dim, l.out_dim);
        let w = l.weight.data();
        let ld = if l.bias.is_some() { padded(i) } else { i };
        let mut m = vec![0f32; o * ld];
        for r in 0..o {
            let row = &mut m[r * ld..][..ld];
            match l.layout {
                MatrixLayout::OutIn => row[..i].copy_from_slice(&w[r * i..][..i]),
                MatrixLayout::InOut => {
                    for (c, v) in row[..i].iter_mut().enumerate() {
                        *v = w[c * o + r];
                    }
                }
            }
            if let Some(b) = &l.bias {
                row[i] = b.data()[r];
            }
        }
        Ok(DevLinear {
            w: self.buf(&m, what)?,
            out: o,
            k: ld,
            ld,
        })
    }

    fn block(&self, b: &Block, what: &str) -> Result<DevBlock> {
        Ok(DevBlock {
            ln1: self.norm(&b.ln1, what)?,
            qkv: self.linear(&b.qkv, what)?,
            out: self.linear(&b.out, what)?,
            ln2: self.norm(&b.ln2, what)?,
            fc1: self.linear(&b.fc1, what)?,
            fc2: self.linear(&b.fc2, what)?,
        })
    }

    fn text(&self, w: &ClipWeights) -> Result<DevText> {
        let t = &w.text;
        Ok(DevText {
            tok: self.buf(t.token_embedding.data(), "the token embedding")?,
            pos: self.buf(t.position_embedding.data(), "the text positions")?,
            blocks: t
                .blocks
                .iter()
                .map(|b| self.block(b, "a text block"))
                .collect::<Result<_>>()?,
            final_ln: self.norm(&t.final_ln, "the final layer norm")?,
            proj: self.linear(&t.projection, "the text projection")?,
        })
    }

    fn vision(&self, w: &ClipWeights) -> Result<DevVision> {
        let v = &w.vision;
        Ok(DevVision {
            patch: self.linear(&v.patch, "the patch embedding")?,
            cls: self.buf(v.class_embedding.data(), "the class embedding")?,
            pos: self.buf(v.position_embedding.data(), "the image positions")?,
            pre_ln: self.norm(&v.pre_ln, "the pre-layer norm")?,
            blocks: v
                .blocks
                .iter()
                .map(|b| self.block(b, "an image block"))
                .collect::<Result<_>>()?,
            post_ln: self.norm(&v.post_ln, "the post-layer norm")?,
            proj: self.linear(&v.projection, "the image projection")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_resolves_against_the_file_dtype() {
        assert_eq!(resolve(ClipPrecision::Auto, Dtype::F16), Operand::F16);
        assert_eq!(resolve(ClipPrecision::Auto, Dtype::Bf16), Operand::Bf16);
        assert_eq!(resolve(ClipPrecision::Auto, Dtype::F32), Operand::F32);
        assert_eq!(resolve(ClipPrecision::Bf16, Dtype::F32), Operand::Bf16);
        assert_eq!(resolve(ClipPrecision::F32, Dtype::F16), Operand::F32);
    }

    #[test]
    fn operands_encode_little_endian() {
        assert_eq!(
            Operand::F16.encode(&[1.0, -2.0]),
            vec![0x00, 0x3c, 0x00, 0xc0]
        );
        assert_eq!(Operand::Bf16.encode(&[1.0]), vec![0x80, 0x3f]);
        assert_eq!(Operand::F32.encode(&[1.0]), 1f32.to_le_bytes().to_vec());
        assert_eq!(padded(768), 776);
        assert_eq!(padded(7), 8);
        assert_eq!(padded(8), 16);
    }

    #[test]
    fn parallel_encoding_equals_the_value_by_value_conversion() {
        // Several parallel blocks and a ragged end; ties, subnormals and overflow included.
        let n = 3 * (1 << 14) + 5;
        let mut v: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
        v[7] = 1.0 + f32::EPSILON * 4096.0; // an f16 tie
        v[1 << 14] = 1e-6; // f16 subnormal
        v[n - 1] = 1e6; // f16 overflow: inf
        for op in [Operand::F32, Operand::F16, Operand::Bf16] {
            let want: Vec<u8> = v
                .iter()
                .flat_map(|&x| match op {
                    Operand::F32 => x.to_le_bytes().to_vec(),
                    Operand::F16 => half::f16::from_f32(x).to_le_bytes().to_vec(),
                    Operand::Bf16 => half::bf16::from_f32(x).to_le_bytes().to_vec(),
                })
                .collect();
            let mut got = vec![0xAAu8; want.len() + 3];
            op.encode_into(&v, &mut got);
            assert_eq!(&got[..want.len()], &want[..], "{op:?}");
            assert_eq!(
                &got[want.len()..],
                &[0xAA; 3],
                "{op:?}: wrote past the values"
            );
        }
    }
}
