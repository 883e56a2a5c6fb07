"""k-means (k-means++ seeding, Lloyd iterations, restarts) on the library's backends."""

from __future__ import annotations

import ctypes
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from ._arrays import as_count, as_matrix, pointer
from ._ffi import METRIC_EUCLIDEAN, METRIC_SPHERICAL, LaicKMeansOptions, lib
from ._progress import ProgressCallback, progress_arg
from .context import Context, resolve
from .gradnorm import _choice

Metric = Literal["euclidean", "spherical"]
METRICS = {"euclidean": METRIC_EUCLIDEAN, "spherical": METRIC_SPHERICAL}


class KMeansResult(NamedTuple):
    """Result of :func:`kmeans`."""

    labels: npt.NDArray[np.uint32]
    """Cluster of each row, shape (N,)."""
    centers: npt.NDArray[np.float32]
    """Cluster centres, shape (K, D)."""
    objective: float
    """Sum of squared distances (Euclidean) or of 1 − cos (spherical) to the centres."""


def kmeans(
    x: npt.ArrayLike,
    n_clusters: int,
    metric: Metric = "euclidean",
    max_iter: int = 300,
    n_redo: int = 10,
    tol: float = 1e-4,
    seed: int = 0,
    context: Context | None = None,
    progress: ProgressCallback | None = None,
) -> KMeansResult:
    """k-means of the N rows of ``x`` (N×D float32/float16/bfloat16) into ``n_clusters``
    clusters (``laic_kmeans``): k-means++ seeding from ``seed``, at most ``max_iter`` Lloyd
    iterations, ``n_redo`` restarts keeping the lowest objective, ``tol`` relative to the mean
    per-feature variance. Deterministic for a given seed and backend. ``progress`` is called
    as ``progress("clustering", fraction)``; returning False cancels."""
    mat, arr = as_matrix(x, "x")
    raw = lib()
    opts = LaicKMeansOptions()
    raw.laic_kmeans_options_default(ctypes.byref(opts), ctypes.sizeof(opts))
    opts.n_clusters = as_count(n_clusters, "n_clusters")
    opts.metric = _choice(METRICS, metric, "metric")
    opts.max_iter = as_count(max_iter, "max_iter", 2**32 - 1)
    opts.n_redo = as_count(n_redo, "n_redo", 2**32 - 1)
    opts.tol = float(tol)
    opts.seed = as_count(seed, "seed")
    n, d, k = mat.rows, mat.cols, opts.n_clusters
    labels = np.empty(n, dtype=np.uint32)
    centers = np.empty((k, d), dtype=np.float32)
    objective = ctypes.c_double()
    with progress_arg(progress) as cb:
        raw.laic_kmeans(
            resolve(context),
            ctypes.byref(mat),
            ctypes.byref(opts),
            pointer(labels, ctypes.c_uint32),
            n,
            pointer(centers, ctypes.c_float),
            centers.size,
            ctypes.byref(objective),
            cb,
            None,
        )
    del arr
    return KMeansResult(labels, centers, objective.value)
