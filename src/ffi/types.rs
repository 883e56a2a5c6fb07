//! Plain C types of the ABI and their conversion into the Rust API's types.
//!
//! Enumerations that callers pass in are `uint32_t` typedefs with `#define`d values, so that an
//! out-of-range value is a reported error rather than undefined behaviour.

use super::try_ref;
use crate::backend::BackendKind;
use crate::error::{Error, Result};
use crate::gradnorm::{Order, Target};
use crate::matrix::{DeviceMatrix, Dtype, MatrixData, MatrixRef, span_len};
use std::ffi::c_void;

/// Element type of a [`LaicMatrix`]: one of the `LAIC_DTYPE_*` values.
pub type LaicDtype = u32;
/// IEEE 754 binary32 (`float`).
pub const LAIC_DTYPE_F32: LaicDtype = 0;
/// IEEE 754 binary16 (`_Float16`, numpy `float16`).
pub const LAIC_DTYPE_F16: LaicDtype = 1;
/// bfloat16.
pub const LAIC_DTYPE_BF16: LaicDtype = 2;

/// Compute backend of a context: one of the `LAIC_BACKEND_*` values.
pub type LaicBackend = u32;
/// CUDA when a usable device is present, else the CPU.
pub const LAIC_BACKEND_AUTO: LaicBackend = 0;
/// The CPU.
pub const LAIC_BACKEND_CPU: LaicBackend = 1;
/// CUDA; `LAIC_STATUS_NO_DEVICE` when no usable device.
pub const LAIC_BACKEND_CUDA: LaicBackend = 2;

/// Target of the GradNorm cross-entropy: one of the `LAIC_TARGET_*` values.
pub type LaicTarget = u32;
/// One-hot on the assigned centre (default): small score = positive noun.
pub const LAIC_TARGET_ONE_HOT: LaicTarget = 0;
/// Uniform over centres (Huang et al. 2021): large score = positive noun.
pub const LAIC_TARGET_UNIFORM: LaicTarget = 1;

/// Which end of a ranking `laic_select_nouns()` keeps: one of the `LAIC_ORDER_*` values.
pub type LaicOrder = u32;
/// Keep the smallest values (GradNorm scores, one-hot target).
pub const LAIC_ORDER_SMALLEST: LaicOrder = 0;
/// Keep the largest values (uniform-target scores, TAC confidences).
pub const LAIC_ORDER_LARGEST: LaicOrder = 1;

/// A borrowed row-major matrix: element (i, j) is at `data + (i * row_stride + j) * size(dtype)`.
/// `data` must be aligned to its element size; `row_stride >= cols` (in elements).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaicMatrix {
    /// First element of the first row.
    pub data: *const c_void,
    /// Number of rows (> 0).
    pub rows: usize,
    /// Number of columns (> 0).
    pub cols: usize,
    /// Elements between the starts of consecutive rows (>= cols).
    pub row_stride: usize,
    /// One of `LAIC_DTYPE_*`.
    pub dtype: LaicDtype,
}

/// Options of `laic_context_create()`. Fill with `laic_context_options_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaicContextOptions {
    /// `sizeof(LaicContextOptions)` as the caller was compiled with.
    pub struct_size: usize,
    /// One of `LAIC_BACKEND_*` (default AUTO).
    pub backend: LaicBackend,
    /// CPU threads; 0 (default) = one per core, shared with other contexts.
    pub n_threads: u32,
    /// CUDA device ordinal (default 0).
    pub device: u32,
}

/// Options of `laic_gradnorm_scores()`. Fill with `laic_gradnorm_options_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LaicGradNormOptions {
    /// `sizeof(LaicGradNormOptions)` as the caller was compiled with.
    pub struct_size: usize,
    /// Softmax temperature τ > 0 (default 0.02).
    pub tau: f64,
    /// Norm order q >= 1, `INFINITY` for the max norm (default 2).
    pub q: f64,
    /// One of `LAIC_TARGET_*` (default one-hot).
    pub target: LaicTarget,
    /// Non-zero: L2-normalise noun and centre rows first (default 1).
    pub normalize: u32,
}

impl LaicContextOptions {
    pub(crate) fn defaults() -> Self {
        LaicContextOptions {
            struct_size: std::mem::size_of::<Self>(),
            backend: LAIC_BACKEND_AUTO,
            n_threads: 0,
            device: 0,
        }
    }

    pub(crate) fn to_rust(self) -> Result<crate::ContextOptions> {
        let backend = match self.backend {
            LAIC_BACKEND_AUTO => BackendKind::Auto,
            LAIC_BACKEND_CPU => BackendKind::Cpu,
            LAIC_BACKEND_CUDA => BackendKind::Cuda,
            b => return Err(Error::invalid(format!("unknown backend {b}"))),
        };
        Ok(crate::ContextOptions {
            backend,
            n_threads: self.n_threads as usize,
            device: self.device as usize,
        })
    }
}

impl LaicGradNormOptions {
    pub(crate) fn defaults() -> Self {
        let d = crate::GradNormOptions::default();
        LaicGradNormOptions {
            struct_size: std::mem::size_of::<Self>(),
            tau: d.tau as f64,
            q: d.q as f64,
            target: LAIC_TARGET_ONE_HOT,
            normalize: d.normalize as u32,
        }
    }

    pub(crate) fn to_rust(self) -> Result<crate::GradNormOptions> {
        let target = match self.target {
            LAIC_TARGET_ONE_HOT => Target::OneHot,
            LAIC_TARGET_UNIFORM => Target::Uniform,
            t => return Err(Error::invalid(format!("unknown target {t}"))),
        };
        // tau and q are checked after the narrowing: a tau that rounds to 0 in f32 is rejected.
        let opts = crate::GradNormOptions {
            tau: self.tau as f32,
            q: self.q as f32,
            target,
            normalize: self.normalize != 0,
        };
        opts.validate()?;
        Ok(opts)
    }
}

/// Converts a `LaicOrder`.
pub(crate) fn order_from_c(order: LaicOrder) -> Result<Order> {
    match order {
        LAIC_ORDER_SMALLEST => Ok(Order::Smallest),
        LAIC_ORDER_LARGEST => Ok(Order::Largest),
        o => Err(Error::invalid(format!("unknown order {o}"))),
    }
}

/// Borrows a C matrix as a validated [`MatrixRef`].
///
/// # Safety
/// `m` is NULL or points to a `LaicMatrix` whose `data` is valid for reads of the span it
/// describes, for the lifetime `'a`.
pub(crate) unsafe fn matrix_from_c<'a>(m: *const LaicMatrix, what: &str) -> Result<MatrixRef<'a>> {
    // SAFETY: forwarded from the caller.
    let m = unsafe { try_ref(m, what) }?;
    if m.rows == 0 || m.cols == 0 {
        return Err(Error::invalid(format!(
            "{what} has {}×{} elements: both must be > 0",
            m.rows, m.cols
        )));
    }
    if m.row_stride < m.cols {
        return Err(Error::invalid(format!(
            "{what}: row stride {} is smaller than the number of columns {}",
            m.row_stride, m.cols
        )));
    }
    let len = span_len(m.rows, m.cols, m.row_stride).map_err(|e| e.in_arg(what))?;
    let what_data = format!("{what}.data");
    // SAFETY (all arms): the caller guarantees `len` readable elements at `data`; try_slice
    // checks NULL, alignment and the byte size.
    let data = unsafe {
        match m.dtype {
            LAIC_DTYPE_F32 => {
                MatrixData::F32(super::try_slice(m.data as *const f32, len, &what_data)?)
            }
            LAIC_DTYPE_F16 => MatrixData::F16(super::try_slice(
                m.data as *const half::f16,
                len,
                &what_data,
            )?),
            LAIC_DTYPE_BF16 => MatrixData::Bf16(super::try_slice(
                m.data as *const half::bf16,
                len,
                &what_data,
            )?),
            d => return Err(Error::invalid(format!("{what}: unknown dtype {d}"))),
        }
    };
    MatrixRef::new(data, m.rows, m.cols, m.row_stride).map_err(|e| e.in_arg(what))
}

/// Reads a C matrix whose `data` is a device (GPU) address as a [`DeviceMatrix`], checking
/// everything that can be checked without touching the memory.
///
/// # Safety
/// `m` is NULL or points to a readable `LaicMatrix`.
pub(crate) unsafe fn device_matrix_from_c(
    m: *const LaicMatrix,
    what: &str,
) -> Result<DeviceMatrix> {
    // SAFETY: forwarded from the caller.
    let m = unsafe { try_ref(m, what) }?;
    let dtype = match m.dtype {
        LAIC_DTYPE_F32 => Dtype::F32,
        LAIC_DTYPE_F16 => Dtype::F16,
        LAIC_DTYPE_BF16 => Dtype::Bf16,
        d => return Err(Error::invalid(format!("{what}: unknown dtype {d}"))),
    };
    let dm = DeviceMatrix {
        ptr: m.data as u64,
        rows: m.rows,
        cols: m.cols,
        row_stride: m.row_stride,
        dtype,
    };
    dm.validate(what)?;
    Ok(dm)
}
