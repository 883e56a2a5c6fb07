"""The whole LaIC pipeline on embeddings (DESIGN.md §1 steps 2–8)."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ._arrays import as_count, as_matrix, as_vector
from ._errors import InvalidArgumentError, Status
from ._ffi import (
    FILTER_GRADNORM,
    FILTER_NONE,
    FILTER_TAC,
    N_CENTRES_AUTO,
    LaicClusterMetrics,
    LaicPipelineOptions,
    LaicPipelineResult,
    Library,
    lib,
)
from ._progress import ProgressCallback, progress_arg
from .context import Context, resolve
from .gradnorm import _choice
from .kmeans import METRICS, Metric
from .metrics import ClusterMetrics

Filter = Literal["gradnorm", "tac", "none"]
_FILTERS = {"gradnorm": FILTER_GRADNORM, "tac": FILTER_TAC, "none": FILTER_NONE}


@dataclass(frozen=True)
class PipelineResult:
    """What :meth:`Pipeline.run` found (copied out of the C result, which is freed)."""

    labels: npt.NDArray[np.uint32]
    """Cluster of each image, shape (N,)."""
    selected: npt.NDArray[np.uint32]
    """Indices of the selected nouns, ascending (empty for filter "none")."""
    n_clusters: int
    n_centers: int
    """Image centres used for the noun filter (0 for filter "none")."""
    objective: float
    """k-means objective of the final clustering on [x, t̃]."""
    cluster_nouns: list[npt.NDArray[np.uint32]]
    """Per cluster, the noun indices naming it (largest summed retrieval weight first)."""
    cluster_names: list[list[str]] | None
    """Per cluster, those nouns' names (when ``noun_names`` were given)."""
    metrics: ClusterMetrics | None
    """ACC/NMI/ARI against the ``labels`` given to :meth:`Pipeline.run`, else None."""


class Pipeline:
    """LaIC on embeddings: image centres by k-means on ``train`` (default: the images), noun
    scores and selection (GradNorm or TAC), retrieval of noun semantics for each image,
    k-means on [x, t̃], names per cluster, metrics when labels are given
    (``laic_pipeline_run``). The defaults are the reference script's.

    ``n_centers`` None means max(2·n_clusters, N_train/10).
    """

    def __init__(
        self,
        n_clusters: int = 10,
        *,
        n_centers: int | None = None,
        tau: float = 0.02,
        q: float = 2.0,
        tau_r: float = 0.01,
        top_k: int = 5,
        filter: Filter = "gradnorm",
        centers_metric: Metric = "spherical",
        centers_n_redo: int = 3,
        n_redo: int = 10,
        max_iter: int = 300,
        n_names: int = 3,
        seed: int = 0,
        context: Context | None = None,
    ) -> None:
        opts = LaicPipelineOptions()
        lib().laic_pipeline_options_default(ctypes.byref(opts), ctypes.sizeof(opts))
        u32 = 2**32 - 1
        opts.n_clusters = as_count(n_clusters, "n_clusters")
        opts.n_centres = (
            N_CENTRES_AUTO if n_centers is None else as_count(n_centers, "n_centers", 2**63 - 1)
        )
        opts.tau, opts.q, opts.tau_r = float(tau), float(q), float(tau_r)
        opts.top_k = as_count(top_k, "top_k", u32)
        opts.filter = _choice(_FILTERS, filter, "filter")
        opts.centres_metric = _choice(METRICS, centers_metric, "centers_metric")
        opts.centres_n_redo = as_count(centers_n_redo, "centers_n_redo", u32)
        opts.n_redo = as_count(n_redo, "n_redo", u32)
        opts.max_iter = as_count(max_iter, "max_iter", u32)
        opts.n_names = as_count(n_names, "n_names", u32)
        opts.seed = as_count(seed, "seed")
        self._options = opts
        self.context = context

    def run(
        self,
        images: npt.ArrayLike,
        nouns: npt.ArrayLike | None = None,
        *,
        train: npt.ArrayLike | None = None,
        noun_names: Sequence[str] | None = None,
        labels: npt.ArrayLike | None = None,
        progress: ProgressCallback | None = None,
    ) -> PipelineResult:
        """Clusters ``images`` (N×D) with the help of ``nouns`` (M×D; None only with filter
        "none"). ``train`` (N_c×D) gives the image centres; ``noun_names`` (M strings) the
        cluster names; ``labels`` (N integers) the metrics. ``progress(stage, fraction)``
        returning False cancels (:class:`CancelledError`)."""
        keep: list[Any] = []  # arrays whose memory the C call reads

        def matrix(value: Any, name: str) -> tuple[Any, int | None]:
            if value is None:
                return None, None
            m, owner = as_matrix(value, name)
            keep.append(owner)
            return ctypes.byref(m), m.rows  # byref keeps `m` alive

        images_arg, _ = matrix(images, "images")
        train_arg, _ = matrix(train, "train")
        nouns_arg, n_rows = matrix(nouns, "nouns")
        names_arg = None
        if noun_names is not None:
            # The C ABI reads one name per noun row: the count must be checked here.
            if isinstance(noun_names, str):
                raise InvalidArgumentError(
                    "invalid argument: noun_names must be a sequence of strings, not a string",
                    Status.INVALID_ARGUMENT,
                )
            if n_rows is None or len(noun_names) != n_rows:
                raise InvalidArgumentError(
                    f"invalid argument: noun_names has {len(noun_names)} names but there are "
                    f"{n_rows or 0} noun rows",
                    Status.INVALID_ARGUMENT,
                )
            encoded = [str(s).encode("utf-8") for s in noun_names]
            if any(b"\0" in b for b in encoded):
                raise InvalidArgumentError(
                    "invalid argument: noun_names contain a NUL character", Status.INVALID_ARGUMENT
                )
            names_arg = (ctypes.c_char_p * max(1, len(encoded)))(*encoded)
        label_arr = None if labels is None else as_vector(labels, "labels", np.int64)
        raw = lib()
        handle = ctypes.POINTER(LaicPipelineResult)()
        with progress_arg(progress) as cb:
            raw.laic_pipeline_run(
                resolve(self.context),
                images_arg,
                train_arg,
                nouns_arg,
                names_arg,
                None
                if label_arr is None
                else label_arr.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
                0 if label_arr is None else len(label_arr),
                ctypes.byref(self._options),
                cb,
                None,
                ctypes.byref(handle),
            )
        try:
            return _read_result(raw, handle, names_arg is not None, label_arr is not None)
        finally:
            raw.laic_pipeline_result_free(handle)


def _u32_array(raw_call: Any, *args: Any) -> npt.NDArray[np.uint32]:
    """Copies a ``(const uint32_t **out, size_t *len)`` accessor's array."""
    ptr = ctypes.POINTER(ctypes.c_uint32)()
    n = ctypes.c_size_t()
    raw_call(*args, ctypes.byref(ptr), ctypes.byref(n))
    if n.value == 0:
        return np.empty(0, dtype=np.uint32)
    return np.ctypeslib.as_array(ptr, shape=(n.value,)).copy()


def _read_result(raw: Library, h: Any, with_names: bool, with_labels: bool) -> PipelineResult:
    n_clusters, n_centres = ctypes.c_size_t(), ctypes.c_size_t()
    raw.laic_pipeline_result_sizes(h, ctypes.byref(n_clusters), ctypes.byref(n_centres))
    objective = ctypes.c_double()
    raw.laic_pipeline_result_objective(h, ctypes.byref(objective))
    nouns = [
        _u32_array(raw.laic_pipeline_result_cluster_nouns, h, c) for c in range(n_clusters.value)
    ]
    names = None
    if with_names:
        names = []
        for c in range(n_clusters.value):
            ptr = ctypes.POINTER(ctypes.c_char_p)()
            n = ctypes.c_size_t()
            raw.laic_pipeline_result_cluster_names(h, c, ctypes.byref(ptr), ctypes.byref(n))
            names.append([ptr[i].decode("utf-8") for i in range(n.value)])
    metrics = None
    if with_labels:
        m = LaicClusterMetrics()
        raw.laic_pipeline_result_metrics(h, ctypes.byref(m))
        metrics = ClusterMetrics._from_c(m)
    return PipelineResult(
        labels=_u32_array(raw.laic_pipeline_result_labels, h),
        selected=_u32_array(raw.laic_pipeline_result_selected, h),
        n_clusters=n_clusters.value,
        n_centers=n_centres.value,
        objective=objective.value,
        cluster_nouns=nouns,
        cluster_names=names,
        metrics=metrics,
    )
