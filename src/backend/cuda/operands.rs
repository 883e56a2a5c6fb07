//! Operand packing (`kernels/operands.cuh`), shared by the k-means and retrieval wrappers:
//! a strided f32/f16/bf16 matrix in device memory becomes the tensor-core operand layout the
//! streaming kernels read with 16-byte copies (zero-padded rows and columns, f32 split into
//! bf16 hi + lo planes), with one f32 per row.

use super::cuda_error;
use crate::error::{Error, Result};
use crate::matrix::{Dtype, MatrixData, MatrixRef};
use cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    PushKernelArg,
};
use std::sync::Arc;

/// Rows packed per block of the packing kernel (256 threads, a warp per row).
const ROWS_PER_BLOCK: usize = 8;
/// Bytes of a host matrix uploaded per chunk.
const HOST_CHUNK_BYTES: usize = 256 << 20;

/// Parameters of the packing kernels: the C struct `PackParams` of operands.cuh.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct PackParams {
    src: u64,
    dst: u64,
    row_value: u64,
    stride: u64,
    rows: u64,
    rows_padded: u64,
    plane_stride: u64,
    d: i32,
    dp: i32,
    row_value_kind: i32,
    row_scale: f32,
}

// SAFETY: a plain #[repr(C)] struct of integers and floats with the C layout of
// operands.cuh's `PackParams` (size checked by a test), passed by value.
unsafe impl DeviceRepr for PackParams {}

/// What the f32 kept per packed row holds (`RowValue` in operands.cuh), times a scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowValue {
    /// 1.
    One = 0,
    /// 1/‖row‖ (0 for a zero row).
    InvNorm = 1,
    /// ‖row‖²/2.
    HalfSqNorm = 2,
    /// ‖row‖.
    Norm = 3,
}

/// Operand layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// f32 input as bf16 hi + lo (two planes).
    F32Split,
    /// f16 input, one f16 plane.
    F16,
    /// bf16 input, one bf16 plane.
    Bf16,
    /// f32 input rounded to one f16 plane.
    F32AsF16,
    /// f32 input scaled to unit rows, as f16 hi + lo (two planes); the row value is 1
    /// ([`RowValue::One`]) or the row's norm ([`RowValue::Norm`]).
    F32UnitF16,
}

impl Layout {
    /// The exact layout of an input dtype.
    pub(super) fn of(dtype: Dtype) -> Self {
        match dtype {
            Dtype::F32 => Layout::F32Split,
            Dtype::F16 => Layout::F16,
            Dtype::Bf16 => Layout::Bf16,
        }
    }

    /// Operand planes.
    pub(super) fn planes(self) -> usize {
        match self {
            Layout::F32Split | Layout::F32UnitF16 => 2,
            Layout::F16 | Layout::Bf16 | Layout::F32AsF16 => 1,
        }
    }

    /// Input dtype the layout reads.
    fn input(self) -> Dtype {
        match self {
            Layout::F32Split | Layout::F32AsF16 | Layout::F32UnitF16 => Dtype::F32,
            Layout::F16 => Dtype::F16,
            Layout::Bf16 => Dtype::Bf16,
        }
    }
}

/// The packing kernels of one module (`<prefix>_f32`, `_f16`, `_bf16`, `_f32_as_f16`,
/// `_f32_unit`).
pub(super) struct PackKernels {
    f32_split: CudaFunction,
    f16: CudaFunction,
    bf16: CudaFunction,
    f32_as_f16: CudaFunction,
    f32_unit: CudaFunction,
}

impl PackKernels {
    pub(super) fn load(
        module: &Arc<CudaModule>,
        prefix: &str,
    ) -> std::result::Result<Self, cudarc::driver::DriverError> {
        let f = |s: &str| module.load_function(&format!("{prefix}_{s}"));
        Ok(PackKernels {
            f32_split: f("f32")?,
            f16: f("f16")?,
            bf16: f("bf16")?,
            f32_as_f16: f("f32_as_f16")?,
            f32_unit: f("f32_unit")?,
        })
    }

    fn get(&self, layout: Layout) -> &CudaFunction {
        match layout {
            Layout::F32Split => &self.f32_split,
            Layout::F16 => &self.f16,
            Layout::Bf16 => &self.bf16,
            Layout::F32AsF16 => &self.f32_as_f16,
            Layout::F32UnitF16 => &self.f32_unit,
        }
    }
}

/// A packed matrix on the device.
pub(super) struct Packed {
    /// `planes` planes of `rows_padded × dp` 16-bit operands.
    pub(super) data: CudaSlice<u16>,
    /// `rows_padded` row values (0 for padding rows).
    pub(super) row_value: CudaSlice<f32>,
    pub(super) rows: usize,
    pub(super) rows_padded: usize,
    pub(super) dp: usize,
    pub(super) layout: Layout,
}

/// `x` rounded up to a multiple of `to`.
pub(super) fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// Allocates a packed matrix of `rows` rows (padded to `rows_padded`) and `dp` columns.
pub(super) fn alloc_packed(
    stream: &Arc<CudaStream>,
    layout: Layout,
    rows: usize,
    rows_padded: usize,
    dp: usize,
) -> Result<Packed> {
    if rows_padded > i32::MAX as usize || dp > i32::MAX as usize / 2 {
        return Err(Error::invalid(format!(
            "{rows} rows of {dp} columns are too many for the CUDA kernels"
        )));
    }
    let n = layout
        .planes()
        .checked_mul(rows_padded)
        .and_then(|x| x.checked_mul(dp))
        .ok_or_else(|| Error::invalid("packed operands overflow the address space"))?;
    // SAFETY: every element is written by the packing launches before any kernel reads it
    // (`pack_rows` covers rows 0..rows_padded of every plane, all dp columns).
    let data = unsafe { stream.alloc::<u16>(n) }.map_err(|e| cuda_error("packed operands", e))?;
    // SAFETY: as above, one value per padded row.
    let row_value =
        unsafe { stream.alloc::<f32>(rows_padded) }.map_err(|e| cuda_error("row values", e))?;
    Ok(Packed {
        data,
        row_value,
        rows,
        rows_padded,
        dp,
        layout,
    })
}

/// Packs rows `start..start + rows` of `dst` (and, when this is the last chunk, the padding
/// rows after them) from device memory at `src`.
///
/// # Safety
/// `src` is a device address of `rows` rows of `d` elements of `dst.layout`'s input dtype,
/// `stride` elements apart; `start + rows <= dst.rows`; `d <= dst.dp`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pack_rows(
    stream: &Arc<CudaStream>,
    kernels: &PackKernels,
    dst: &mut Packed,
    start: usize,
    src: u64,
    rows: usize,
    d: usize,
    stride: usize,
    kind: RowValue,
    scale: f32,
) -> Result<()> {
    let last = start + rows == dst.rows;
    let padded = if last { dst.rows_padded - start } else { rows };
    let plane_stride = (dst.rows_padded * dst.dp) as u64;
    let (base, _g1) = dst.data.device_ptr(stream);
    let (rv, _g2) = dst.row_value.device_ptr(stream);
    let params = PackParams {
        src,
        dst: base + (start * dst.dp * 2) as u64,
        row_value: rv + (start * 4) as u64,
        stride: stride as u64,
        rows: rows as u64,
        rows_padded: padded as u64,
        plane_stride,
        d: d as i32,
        dp: dst.dp as i32,
        row_value_kind: kind as i32,
        row_scale: scale,
    };
    let cfg = LaunchConfig {
        grid_dim: (padded.div_ceil(ROWS_PER_BLOCK) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the parameters match the kernel's struct; the kernel reads `rows` source rows
    // and writes `padded` packed rows of every plane (caller contract and allocation above).
    unsafe {
        stream
            .launch_builder(kernels.get(dst.layout))
            .arg(&params)
            .launch(cfg)
    }
    .map_err(|e| cuda_error("launching the packing kernel", e))?;
    Ok(())
}

/// Uploads a validated host matrix in chunks and packs it in `layout` (whose input dtype must
/// be the matrix's), padding the rows to a multiple of `row_multiple` and the columns to a
/// multiple of `col_multiple`.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_host(
    stream: &Arc<CudaStream>,
    kernels: &PackKernels,
    x: &MatrixRef<'_>,
    layout: Layout,
    row_multiple: usize,
    col_multiple: usize,
    kind: RowValue,
    scale: f32,
) -> Result<Packed> {
    debug_assert_eq!(layout.input(), x.dtype());
    let (n, d) = (x.rows(), x.cols());
    let mut packed = alloc_packed(
        stream,
        layout,
        n,
        round_up(n, row_multiple),
        round_up(d, col_multiple),
    )?;
    let row_bytes = x.row_stride() * x.dtype().size();
    let chunk = (HOST_CHUNK_BYTES / row_bytes.max(1)).clamp(1, n);
    for start in (0..n).step_by(chunk) {
        let len = chunk.min(n - start);
        let view = x.row_range(start, len);
        let dev = stream
            .clone_htod(as_bytes(view.data()))
            .map_err(|e| cuda_error("uploading a matrix", e))?;
        let (ptr, _g) = dev.device_ptr(stream);
        // SAFETY: `dev` holds the view's span (`len` rows of `d` elements, its stride).
        unsafe {
            pack_rows(
                stream,
                kernels,
                &mut packed,
                start,
                ptr,
                len,
                d,
                view.row_stride(),
                kind,
                scale,
            )?
        };
        // The upload buffer is freed at the end of the iteration: wait for the kernel.
        stream
            .synchronize()
            .map_err(|e| cuda_error("the packing kernel failed", e))?;
    }
    Ok(packed)
}

/// Packs a contiguous f32 matrix already on the device (`rows × d`: k-means centres, the
/// pipeline's rows) in `layout`.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_f32(
    stream: &Arc<CudaStream>,
    kernels: &PackKernels,
    dev: &CudaSlice<f32>,
    rows: usize,
    d: usize,
    layout: Layout,
    row_multiple: usize,
    col_multiple: usize,
    kind: RowValue,
    scale: f32,
) -> Result<Packed> {
    debug_assert_eq!(layout.input(), Dtype::F32);
    let mut packed = alloc_packed(
        stream,
        layout,
        rows,
        round_up(rows, row_multiple),
        round_up(d, col_multiple),
    )?;
    let (ptr, _g) = dev.device_ptr(stream);
    // SAFETY: `dev` holds `rows × d` contiguous f32 (caller's buffer of that size).
    unsafe {
        pack_rows(
            stream,
            kernels,
            &mut packed,
            0,
            ptr,
            rows,
            d,
            d,
            kind,
            scale,
        )?
    };
    Ok(packed)
}

/// The bytes of a host matrix's storage.
pub(super) fn as_bytes<'a>(data: MatrixData<'a>) -> &'a [u8] {
    let (ptr, len) = match data {
        MatrixData::F32(s) => (s.as_ptr() as *const u8, std::mem::size_of_val(s)),
        MatrixData::F16(s) => (s.as_ptr() as *const u8, std::mem::size_of_val(s)),
        MatrixData::Bf16(s) => (s.as_ptr() as *const u8, std::mem::size_of_val(s)),
    };
    // SAFETY: f32, f16 and bf16 have no padding; the bytes of an initialised slice are
    // initialised and live as long as the slice.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_params_have_the_c_layout() {
        // operands.cuh: 7 eight-byte fields then 4 four-byte ones.
        assert_eq!(std::mem::size_of::<PackParams>(), 72);
        assert_eq!(std::mem::align_of::<PackParams>(), 8);
    }

    #[test]
    fn layouts_have_their_planes_and_inputs() {
        assert_eq!(Layout::of(Dtype::F32), Layout::F32Split);
        assert_eq!(Layout::F32Split.planes(), 2);
        assert_eq!(Layout::F16.planes(), 1);
        assert_eq!(Layout::F32AsF16.input(), Dtype::F32);
        assert_eq!(Layout::F32UnitF16.planes(), 2);
        assert_eq!(Layout::F32UnitF16.input(), Dtype::F32);
        assert_eq!(round_up(65, 64), 128);
        assert_eq!(round_up(64, 64), 64);
    }
}
