//! The LaIC pipeline and its result handle.

use super::context::LaicContext;
use super::types::{
    LaicClusterMetrics, LaicMatrix, LaicPipelineOptions, LaicProgressFn, matrix_from_c,
    progress_from_c,
};
use super::{guard, read_options, try_ref, try_slice, write_options};
use crate::error::{Error, LaicStatus, Result};
use crate::pipeline::{PipelineInput, PipelineResult};
use crate::progress::Progress;
use std::ffi::{CStr, CString, c_char, c_void};

/// The result of `laic_pipeline_run()`: an opaque handle read with the
/// `laic_pipeline_result_*` accessors and freed with `laic_pipeline_result_free()`. Pointers
/// the accessors return stay valid until the handle is freed. Thread safety: immutable; any
/// number of threads may read one result at the same time.
pub struct LaicPipelineResult {
    inner: PipelineResult,
    /// Cluster names as C strings, and per cluster an array of pointers into them.
    names: Vec<Vec<CString>>,
    name_ptrs: Vec<Vec<*const c_char>>,
}

/// Fills `options` with the defaults (those of the reference script: 10 clusters, automatic
/// centres, τ 0.02, q 2, τ_r 0.01, top-5, GradNorm, spherical centres with 3 restarts, 10
/// final restarts of at most 300 iterations, 3 names, seed 0). Pass
/// `sizeof(LaicPipelineOptions)` as `struct_size`.
///
/// # Safety
/// `options` is valid for writes of `struct_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_pipeline_options_default(
    options: *mut LaicPipelineOptions,
    struct_size: usize,
) -> LaicStatus {
    // SAFETY: forwarded from the caller.
    guard(|| unsafe {
        write_options(
            options,
            struct_size,
            LaicPipelineOptions::defaults(),
            "options",
        )
    })
}

/// Borrows `n` C strings as UTF-8.
///
/// # Safety
/// `names` holds `n` pointers, each NULL or a NUL-terminated string alive for `'a`.
unsafe fn strings_from_c<'a>(names: *const *const c_char, n: usize) -> Result<Vec<&'a str>> {
    // SAFETY: forwarded from the caller.
    let ptrs = unsafe { try_slice(names, n, "noun_names") }?;
    ptrs.iter()
        .enumerate()
        .map(|(i, &p)| {
            if p.is_null() {
                return Err(Error::invalid(format!("noun_names[{i}] is NULL")));
            }
            // SAFETY: non-null and NUL-terminated (caller contract).
            unsafe { CStr::from_ptr(p) }
                .to_str()
                .map_err(|_| Error::invalid(format!("noun_names[{i}] is not valid UTF-8")))
        })
        .collect()
}

/// Runs the LaIC pipeline (DESIGN.md §1 steps 2–8) on embeddings: image centres by k-means on
/// `train` (N_c×D; NULL = `images`), noun scores and selection (GradNorm or TAC; skipped for
/// `LAIC_FILTER_NONE`), retrieval of noun semantics for `images` (N×D), k-means on
/// [x, t̃] into `options->n_clusters` clusters, three names per cluster, and metrics when
/// `labels` is given.
///
/// `nouns` (M×D) may be NULL only with `LAIC_FILTER_NONE`. `noun_names` (M NUL-terminated
/// UTF-8 strings, may be NULL) gives the cluster names as strings. `labels` (may be NULL)
/// holds `labels_len` = N true labels. `options` may be NULL (defaults). `progress` (may be
/// NULL) is called with `user`, a `LAIC_STAGE_*` and the fraction done; a non-zero return
/// cancels (`LAIC_STATUS_CANCELLED`). On success `*out` holds a new result handle that the
/// caller frees with `laic_pipeline_result_free()`; on failure `*out` is left unchanged.
///
/// Errors: n_clusters = 0 or > N, n_centres = 0 or > N_c, no nouns with a filter, top_k = 0,
/// τ/τ_r <= 0, q < 1, labels_len != N, a names count that differs from M, NaN/Inf or zero
/// rows, D mismatch → `LAIC_STATUS_INVALID_ARGUMENT` with a message.
///
/// # Safety
/// Non-NULL pointers are valid for the sizes above; `out` is valid for one pointer write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_pipeline_run(
    ctx: *const LaicContext,
    images: *const LaicMatrix,
    train: *const LaicMatrix,
    nouns: *const LaicMatrix,
    noun_names: *const *const c_char,
    labels: *const i64,
    labels_len: usize,
    options: *const LaicPipelineOptions,
    progress: LaicProgressFn,
    user: *mut c_void,
    out: *mut *mut LaicPipelineResult,
) -> LaicStatus {
    guard(|| {
        // SAFETY (block): pointers are valid per the caller contract.
        unsafe {
            let ctx = &try_ref(ctx, "ctx")?.inner;
            let images = matrix_from_c(images, "images")?;
            let train = if train.is_null() {
                None
            } else {
                Some(matrix_from_c(train, "train")?)
            };
            let nouns = if nouns.is_null() {
                None
            } else {
                Some(matrix_from_c(nouns, "nouns")?)
            };
            let names = match (noun_names.is_null(), nouns) {
                (true, _) => None,
                (false, Some(t)) => Some(strings_from_c(noun_names, t.rows())?),
                (false, None) => return Err(Error::invalid("noun_names given without nouns")),
            };
            let labels = if labels.is_null() {
                if labels_len != 0 {
                    return Err(Error::invalid("labels is NULL but labels_len is not 0"));
                }
                None
            } else {
                Some(try_slice(labels, labels_len, "labels")?)
            };
            let opts =
                read_options(options, LaicPipelineOptions::defaults(), "options")?.to_rust()?;
            if out.is_null() {
                return Err(Error::invalid("out is NULL"));
            }
            let cb = progress_from_c(progress, user);
            let progress = match &cb {
                Some(f) => Progress::new(f),
                None => Progress::none(),
            };
            let input = PipelineInput {
                images,
                train,
                nouns,
                noun_names: names.as_deref(),
                labels,
            };
            let inner = ctx.run_pipeline(&input, &opts, progress)?;
            let names: Vec<Vec<CString>> = inner
                .cluster_names
                .iter()
                .map(|c| {
                    c.iter()
                        .map(|s| CString::new(s.replace('\0', " ")).unwrap_or_default())
                        .collect()
                })
                .collect();
            let name_ptrs = names
                .iter()
                .map(|c| c.iter().map(|s| s.as_ptr()).collect())
                .collect();
            *out = Box::into_raw(Box::new(LaicPipelineResult {
                inner,
                names,
                name_ptrs,
            }));
            Ok(())
        }
    })
}

/// Frees a result of `laic_pipeline_run()`. NULL is allowed and does nothing.
///
/// # Safety
/// `result` is NULL or a live handle, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_pipeline_result_free(result: *mut LaicPipelineResult) {
    if !result.is_null() {
        // SAFETY: `result` came from Box::into_raw in laic_pipeline_run (caller contract).
        let _ = guard(|| {
            drop(unsafe { Box::from_raw(result) });
            Ok(())
        });
    }
}

/// Writes `(pointer, count)` of a borrowed array.
///
/// # Safety
/// `out` and `out_len` are NULL or valid for one write each.
unsafe fn write_array<T>(slice: &[T], out: *mut *const T, out_len: *mut usize) -> Result<()> {
    if out.is_null() || out_len.is_null() {
        return Err(Error::invalid("out or out_len is NULL"));
    }
    // SAFETY: non-null and valid for a write (caller contract).
    unsafe {
        *out = slice.as_ptr();
        *out_len = slice.len();
    }
    Ok(())
}

/// The cluster of each image: `*out` points to `*out_len` = N labels in 0..n_clusters, owned
/// by the result.
///
/// # Safety
/// `result` is a live handle; `out` and `out_len` are valid for one write each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_pipeline_result_labels(
    result: *const LaicPipelineResult,
    out: *mut *const u32,
    out_len: *mut usize,
) -> LaicStatus {
    // SAFETY: forwarded from the caller.
    guard(|| unsafe { write_array(&try_ref(result, "result")?.inner.labels, out, out_len) })
}

/// The selected nouns: `*out` points to `*out_len` ascending noun indices (0 for
/// `LAIC_FILTER_NONE`), owned by the result.
///
/// # Safety
/// `result` is a live handle; `out` and `out_len` are valid for one write each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_pipeline_result_selected(
    result: *const LaicPipelineResult,
    out: *mut *const u32,
    out_len: *mut usize,
) -> LaicStatus {
    // SAFETY: forwarded from the caller.
    guard(|| unsafe { write_array(&try_ref(result, "result")?.inner.selected, out, out_len) })
}

/// Number of clusters and of image centres used (0 for `LAIC_FILTER_NONE`); either output may
/// be NULL.
///
/// # Safety
/// `result` is a live handle; non-NULL outputs are valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_pipeline_result_sizes(
    result: *const LaicPipelineResult,
    out_n_clusters: *mut usize,
    out_n_centres: *mut usize,
) -> LaicStatus {
    guard(|| {
        // SAFETY: forwarded from the caller; outputs checked for NULL.
        unsafe {
            let r = &try_ref(result, "result")?.inner;
            if !out_n_clusters.is_null() {
                *out_n_clusters = r.cluster_nouns.len();
            }
            if !out_n_centres.is_null() {
                *out_n_centres = r.n_centres;
            }
        }
        Ok(())
    })
}

/// The nouns naming cluster `cluster` (largest summed retrieval weight over its members
/// first): `*out` points to `*out_len` (<= n_names) noun indices, owned by the result.
///
/// # Safety
/// `result` is a live handle; `out` and `out_len` are valid for one write each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_pipeline_result_cluster_nouns(
    result: *const LaicPipelineResult,
    cluster: usize,
    out: *mut *const u32,
    out_len: *mut usize,
) -> LaicStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            let r = &try_ref(result, "result")?.inner;
            let c = r.cluster_nouns.get(cluster).ok_or_else(|| {
                Error::invalid(format!(
                    "cluster {cluster} out of range (there are {})",
                    r.cluster_nouns.len()
                ))
            })?;
            write_array(c, out, out_len)
        }
    })
}

/// The names of cluster `cluster` as strings: `*out` points to `*out_len` NUL-terminated UTF-8
/// strings, owned by the result. Needs `noun_names` to have been given (else
/// `LAIC_STATUS_INVALID_ARGUMENT`; use `laic_pipeline_result_cluster_nouns()`).
///
/// # Safety
/// `result` is a live handle; `out` and `out_len` are valid for one write each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_pipeline_result_cluster_names(
    result: *const LaicPipelineResult,
    cluster: usize,
    out: *mut *const *const c_char,
    out_len: *mut usize,
) -> LaicStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            let r = try_ref(result, "result")?;
            if r.names.is_empty() {
                return Err(Error::invalid(
                    "no noun_names were given to laic_pipeline_run",
                ));
            }
            let c = r.name_ptrs.get(cluster).ok_or_else(|| {
                Error::invalid(format!(
                    "cluster {cluster} out of range (there are {})",
                    r.name_ptrs.len()
                ))
            })?;
            write_array(c, out, out_len)
        }
    })
}

/// The k-means objective of the final clustering (sum of squared distances on [x, t̃]).
///
/// # Safety
/// `result` is a live handle; `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_pipeline_result_objective(
    result: *const LaicPipelineResult,
    out: *mut f64,
) -> LaicStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            let r = &try_ref(result, "result")?.inner;
            if out.is_null() {
                return Err(Error::invalid("out is NULL"));
            }
            *out = r.objective;
        }
        Ok(())
    })
}

/// ACC/NMI/ARI against the labels given to `laic_pipeline_run()` (else
/// `LAIC_STATUS_INVALID_ARGUMENT`).
///
/// # Safety
/// `result` is a live handle; `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_pipeline_result_metrics(
    result: *const LaicPipelineResult,
    out: *mut LaicClusterMetrics,
) -> LaicStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            let r = &try_ref(result, "result")?.inner;
            let m = r
                .metrics
                .ok_or_else(|| Error::invalid("no labels were given to laic_pipeline_run"))?;
            if out.is_null() {
                return Err(Error::invalid("out is NULL"));
            }
            *out = m.into();
        }
        Ok(())
    })
}
