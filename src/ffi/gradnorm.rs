//! GradNorm scoring and noun selection.

use super::context::LaicContext;
use super::types::{
    LaicGradNormOptions, LaicMatrix, LaicOrder, device_matrix_from_c, matrix_from_c, order_from_c,
};
use super::{guard, read_options, try_mut_slice, try_ref, try_slice, write_options};
use crate::error::{Error, LaicStatus};
use crate::gradnorm::{GradNormOut, select_nouns};
use crate::matrix::DeviceGradNormOut;

/// Fills `options` with the defaults (τ 0.02, q 2, one-hot target, normalise). Pass
/// `sizeof(LaicGradNormOptions)` as `struct_size`; nothing past it is written.
///
/// # Safety
/// `options` is valid for writes of `struct_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_gradnorm_options_default(
    options: *mut LaicGradNormOptions,
    struct_size: usize,
) -> LaicStatus {
    // SAFETY: forwarded from the caller.
    guard(|| unsafe {
        write_options(
            options,
            struct_size,
            LaicGradNormOptions::defaults(),
            "options",
        )
    })
}

/// GradNorm scores of M nouns against K image centres (DESIGN.md §1.3).
///
/// `nouns` is M×D, `centres` is K×D (any dtype, any row stride). For each noun i:
/// `out_scores[i]` = S_q (small = positive for the one-hot target, large for uniform),
/// `out_assignment[i]` = the centre with the largest logit (lowest index on ties),
/// `out_confidence[i]` = its softmax probability p_ĉ. Each output holds `out_len >= M`
/// elements; `out_assignment` and `out_confidence` may be NULL when not wanted. `options` may
/// be NULL (defaults). Memory beyond the inputs: O(threads · (128·D + 128·320) + K·D) floats —
/// never an M×K matrix.
///
/// Errors (nothing written): NULL inputs, zero sizes, D mismatch, NaN/Inf, zero rows when
/// normalising, τ <= 0, q < 1, `out_len < M` (`LAIC_STATUS_BUFFER_TOO_SMALL`).
///
/// # Safety
/// Every non-NULL pointer is valid for the sizes above; outputs do not overlap the inputs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_gradnorm_scores(
    ctx: *const LaicContext,
    nouns: *const LaicMatrix,
    centres: *const LaicMatrix,
    options: *const LaicGradNormOptions,
    out_scores: *mut f32,
    out_assignment: *mut u32,
    out_confidence: *mut f32,
    out_len: usize,
) -> LaicStatus {
    guard(|| {
        // SAFETY (block): pointers are valid per the caller contract; helpers check NULL,
        // alignment and size overflow.
        unsafe {
            let ctx = &try_ref(ctx, "ctx")?.inner;
            let nouns = matrix_from_c(nouns, "nouns")?;
            let centres = matrix_from_c(centres, "centres")?;
            let opts =
                read_options(options, LaicGradNormOptions::defaults(), "options")?.to_rust()?;
            let m = nouns.rows();
            if out_len < m {
                return Err(Error::BufferTooSmall {
                    what: "outputs",
                    needed: m,
                    got: out_len,
                });
            }
            let scores = try_mut_slice(out_scores, m, "out_scores")?;
            if scores.is_empty() {
                return Err(Error::invalid("out_scores is NULL"));
            }
            // Optional outputs go to scratch buffers when NULL.
            let (mut assign_tmp, mut conf_tmp) = (Vec::new(), Vec::new());
            let assignment = if out_assignment.is_null() {
                assign_tmp.resize(m, 0);
                &mut assign_tmp[..]
            } else {
                try_mut_slice(out_assignment, m, "out_assignment")?
            };
            let confidence = if out_confidence.is_null() {
                conf_tmp.resize(m, 0.0);
                &mut conf_tmp[..]
            } else {
                try_mut_slice(out_confidence, m, "out_confidence")?
            };
            ctx.gradnorm_scores_into(
                &nouns,
                &centres,
                &opts,
                GradNormOut {
                    scores,
                    assignment,
                    confidence,
                },
            )
        }
    })
}

/// GradNorm scores of data already on the GPU: like `laic_gradnorm_scores()`, but
/// `nouns->data`, `centres->data` and the three outputs are CUDA device pointers (of the
/// context's device, in its primary context, e.g. from `cudaMalloc`), so nothing crosses PCIe.
/// Needs a context on `LAIC_BACKEND_CUDA` (or AUTO that found a device); a CPU context gives
/// `LAIC_STATUS_NO_DEVICE`.
///
/// Inputs must be ready: synchronise the stream that wrote them before the call. The call
/// returns after the outputs are written. Values are validated on the device (NaN/Inf, zero
/// rows when normalising, logit overflow) before any output is written: on an error status
/// the outputs are untouched. `d_assignment` and `d_confidence` may be NULL.
///
/// # Safety
/// The device pointers are valid for the spans described (`out_len` elements per output) and
/// the outputs do not overlap the inputs; host pointers (`ctx`, `nouns`, `centres`, `options`)
/// are valid for reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_gradnorm_scores_device(
    ctx: *const LaicContext,
    nouns: *const LaicMatrix,
    centres: *const LaicMatrix,
    options: *const LaicGradNormOptions,
    d_scores: *mut f32,
    d_assignment: *mut u32,
    d_confidence: *mut f32,
    out_len: usize,
) -> LaicStatus {
    guard(|| {
        // SAFETY (block): host pointers are valid per the caller contract; device pointers are
        // only passed on, never dereferenced on the host.
        unsafe {
            let ctx = &try_ref(ctx, "ctx")?.inner;
            let nouns = device_matrix_from_c(nouns, "nouns")?;
            let centres = device_matrix_from_c(centres, "centres")?;
            let opts =
                read_options(options, LaicGradNormOptions::defaults(), "options")?.to_rust()?;
            ctx.gradnorm_scores_device(
                &nouns,
                &centres,
                &opts,
                &DeviceGradNormOut {
                    scores: d_scores as u64,
                    assignment: d_assignment as u64,
                    confidence: d_confidence as u64,
                    len: out_len,
                },
            )
        }
    })
}

/// Selects positive nouns: per centre, the `top_k` nouns assigned to it whose `values` rank
/// first (`LAIC_ORDER_SMALLEST` for one-hot GradNorm scores, `LAIC_ORDER_LARGEST` for
/// uniform-target scores or TAC confidences; ties to the lower index). Writes the union,
/// sorted by noun index, to `out_indices` and its size to `*out_count`.
///
/// `values` and `assignment` hold `len` elements (assignments < `n_centres`). The result has
/// at most `min(len, n_centres * top_k)` indices: `out_capacity` of that size always suffices;
/// a smaller one that the result does not fit gives `LAIC_STATUS_BUFFER_TOO_SMALL` and writes
/// nothing.
///
/// # Safety
/// Pointers are valid for the sizes above.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_select_nouns(
    values: *const f32,
    assignment: *const u32,
    len: usize,
    n_centres: usize,
    top_k: usize,
    order: LaicOrder,
    out_indices: *mut u32,
    out_capacity: usize,
    out_count: *mut usize,
) -> LaicStatus {
    guard(|| {
        if len == 0 {
            return Err(Error::invalid("len is 0: no nouns to select from"));
        }
        // SAFETY (block): pointers are valid per the caller contract.
        unsafe {
            let values = try_slice(values, len, "values")?;
            let assignment = try_slice(assignment, len, "assignment")?;
            let order = order_from_c(order)?;
            if out_count.is_null() {
                return Err(Error::invalid("out_count is NULL"));
            }
            let selected = select_nouns(values, assignment, n_centres, top_k, order)?;
            if selected.len() > out_capacity {
                return Err(Error::BufferTooSmall {
                    what: "out_indices",
                    needed: selected.len(),
                    got: out_capacity,
                });
            }
            let out = try_mut_slice(out_indices, selected.len(), "out_indices")?;
            out.copy_from_slice(&selected);
            *out_count = selected.len();
            Ok(())
        }
    })
}
