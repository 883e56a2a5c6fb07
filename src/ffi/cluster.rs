//! k-means, retrieval and clustering metrics.

use super::context::LaicContext;
use super::types::{
    LaicClusterMetrics, LaicKMeansOptions, LaicMatrix, LaicProgressFn, LaicRetrieveOptions,
    matrix_from_c, progress_from_c,
};
use super::{guard, read_options, try_mut_slice, try_ref, try_slice, write_options};
use crate::error::{Error, LaicStatus};
use crate::progress::Progress;
use crate::retrieve::RetrieveOut;
use std::ffi::c_void;

/// Fills `options` with the defaults (8 clusters, Euclidean, 300 iterations, 10 restarts,
/// tol 1e-4, seed 0). Pass `sizeof(LaicKMeansOptions)` as `struct_size`.
///
/// # Safety
/// `options` is valid for writes of `struct_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_kmeans_options_default(
    options: *mut LaicKMeansOptions,
    struct_size: usize,
) -> LaicStatus {
    // SAFETY: forwarded from the caller.
    guard(|| unsafe {
        write_options(
            options,
            struct_size,
            LaicKMeansOptions::defaults(),
            "options",
        )
    })
}

/// k-means of the N rows of `x` (N×D, any dtype) into `options->n_clusters` = K clusters:
/// k-means++ seeding from `options->seed`, Lloyd iterations, `n_redo` restarts keeping the
/// lowest objective, empty clusters repaired with far points. Deterministic for a given seed
/// and backend.
///
/// Outputs: `out_labels` (`labels_len >= N` elements) the cluster of each row;
/// `out_centres` (`centres_len >= K*D` floats, row-major; may be NULL) the centres;
/// `out_objective` (may be NULL) the sum of distances to the centres (squared Euclidean, or
/// 1 − cos for the spherical metric). `progress` (may be NULL) is called with
/// `LAIC_STAGE_CLUSTERING` and `user`; a non-zero return cancels (`LAIC_STATUS_CANCELLED`).
///
/// Errors (nothing written): K = 0 or K > N, NaN/Inf rows, zero rows (spherical),
/// `max_iter`/`n_redo` = 0, short outputs (`LAIC_STATUS_BUFFER_TOO_SMALL`).
///
/// # Safety
/// Non-NULL pointers are valid for the sizes above; outputs do not overlap the inputs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_kmeans(
    ctx: *const LaicContext,
    x: *const LaicMatrix,
    options: *const LaicKMeansOptions,
    out_labels: *mut u32,
    labels_len: usize,
    out_centres: *mut f32,
    centres_len: usize,
    out_objective: *mut f64,
    progress: LaicProgressFn,
    user: *mut c_void,
) -> LaicStatus {
    guard(|| {
        // SAFETY (block): pointers are valid per the caller contract; helpers check NULL,
        // alignment and size overflow.
        unsafe {
            let ctx = &try_ref(ctx, "ctx")?.inner;
            let x = matrix_from_c(x, "x")?;
            let opts =
                read_options(options, LaicKMeansOptions::defaults(), "options")?.to_rust()?;
            let n = x.rows();
            if out_labels.is_null() {
                return Err(Error::invalid("out_labels is NULL"));
            }
            if labels_len < n {
                return Err(Error::BufferTooSmall {
                    what: "out_labels",
                    needed: n,
                    got: labels_len,
                });
            }
            let kd = opts.n_clusters.saturating_mul(x.cols());
            if !out_centres.is_null() && centres_len < kd {
                return Err(Error::BufferTooSmall {
                    what: "out_centres",
                    needed: kd,
                    got: centres_len,
                });
            }
            let cb = progress_from_c(progress, user);
            let progress = match &cb {
                Some(f) => Progress::new(f),
                None => Progress::none(),
            };
            let r = ctx.kmeans_with_progress(&x, &opts, progress)?;
            try_mut_slice(out_labels, n, "out_labels")?.copy_from_slice(&r.labels);
            if !out_centres.is_null() {
                try_mut_slice(out_centres, r.centres.len(), "out_centres")?
                    .copy_from_slice(&r.centres);
            }
            if !out_objective.is_null() {
                *out_objective = r.objective;
            }
            Ok(())
        }
    })
}

/// Fills `options` with the defaults (τ_r 0.01, normalise, no top nouns). Pass
/// `sizeof(LaicRetrieveOptions)` as `struct_size`.
///
/// # Safety
/// `options` is valid for writes of `struct_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_retrieve_options_default(
    options: *mut LaicRetrieveOptions,
    struct_size: usize,
) -> LaicStatus {
    // SAFETY: forwarded from the caller.
    guard(|| unsafe {
        write_options(
            options,
            struct_size,
            LaicRetrieveOptions::defaults(),
            "options",
        )
    })
}

/// Retrieval (DESIGN.md §1.5): for each of the N `images` (N×D) over the M `nouns` (M×D),
/// t̃ = normalize(softmax(x·Tᵀ/τ_r)·T), written to `out_features` (`features_len >= N*D`
/// floats, row-major). With `options->top_n = P > 0`, also the P nouns of largest weight per
/// image, best first, into `out_top_indices` and their softmax weights into `out_top_weights`
/// (each `top_len >= N*P` elements; both may be NULL when P = 0). One streaming pass over the
/// nouns; memory beyond the inputs is O(M·D + threads·128·(D + 256)) floats — never N×M.
///
/// Errors (nothing written): NULL inputs, D mismatch, NaN/Inf, zero rows when normalising,
/// τ_r <= 0, P > M, short outputs.
///
/// # Safety
/// Non-NULL pointers are valid for the sizes above; outputs do not overlap the inputs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_retrieve(
    ctx: *const LaicContext,
    images: *const LaicMatrix,
    nouns: *const LaicMatrix,
    options: *const LaicRetrieveOptions,
    out_features: *mut f32,
    features_len: usize,
    out_top_indices: *mut u32,
    out_top_weights: *mut f32,
    top_len: usize,
) -> LaicStatus {
    guard(|| {
        // SAFETY (block): pointers are valid per the caller contract.
        unsafe {
            let ctx = &try_ref(ctx, "ctx")?.inner;
            let images = matrix_from_c(images, "images")?;
            let nouns = matrix_from_c(nouns, "nouns")?;
            let opts =
                read_options(options, LaicRetrieveOptions::defaults(), "options")?.to_rust()?;
            if out_features.is_null() {
                return Err(Error::invalid("out_features is NULL"));
            }
            let top_needed = images.rows().saturating_mul(opts.top_n);
            if opts.top_n > 0 && (out_top_indices.is_null() || out_top_weights.is_null()) {
                return Err(Error::invalid(
                    "out_top_indices and out_top_weights must be given when top_n > 0",
                ));
            }
            let nd = images.rows().saturating_mul(images.cols());
            for (what, needed, got) in [
                ("out_features", nd, features_len),
                ("out_top_indices/out_top_weights", top_needed, top_len),
            ] {
                if got < needed {
                    return Err(Error::BufferTooSmall { what, needed, got });
                }
            }
            ctx.retrieve_into(
                &images,
                &nouns,
                &opts,
                RetrieveOut {
                    features: try_mut_slice(out_features, nd, "out_features")?,
                    top_indices: try_mut_slice(out_top_indices, top_needed, "out_top_indices")?,
                    top_weights: try_mut_slice(out_top_weights, top_needed, "out_top_weights")?,
                },
            )
        }
    })
}

/// ACC (best one-to-one mapping, exact Hungarian, any numbers of clusters and classes), NMI
/// (arithmetic normalisation) and ARI of `labels_pred` against `labels_true`, both `len > 0`
/// elements with any values, as scikit-learn defines them; written to `*out`.
///
/// # Safety
/// `labels_true` and `labels_pred` hold `len` elements; `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn laic_cluster_metrics(
    labels_true: *const i64,
    labels_pred: *const i64,
    len: usize,
    out: *mut LaicClusterMetrics,
) -> LaicStatus {
    guard(|| {
        if len == 0 {
            return Err(Error::invalid("len is 0: no labels to compare"));
        }
        // SAFETY (block): pointers are valid per the caller contract.
        unsafe {
            let t = try_slice(labels_true, len, "labels_true")?;
            let p = try_slice(labels_pred, len, "labels_pred")?;
            if out.is_null() {
                return Err(Error::invalid("out is NULL"));
            }
            *out = crate::metrics::cluster_metrics(t, p)?.into();
            Ok(())
        }
    })
}
