"""Clustering metrics against true labels."""

from __future__ import annotations

import ctypes
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ._arrays import as_vector, pointer
from ._errors import InvalidArgumentError, Status
from ._ffi import LaicClusterMetrics, lib


class ClusterMetrics(NamedTuple):
    """Clustering scores, each a fraction (1 = perfect)."""

    acc: float
    """Accuracy under the best one-to-one cluster-to-class mapping (Hungarian)."""
    nmi: float
    """Normalised mutual information (arithmetic mean of the entropies)."""
    ari: float
    """Adjusted Rand index."""

    @classmethod
    def _from_c(cls, m: LaicClusterMetrics) -> ClusterMetrics:
        return cls(m.acc, m.nmi, m.ari)


def cluster_metrics(labels_true: npt.ArrayLike, labels_pred: npt.ArrayLike) -> ClusterMetrics:
    """ACC, NMI and ARI of ``labels_pred`` against ``labels_true`` (integer arrays of equal
    length, any values), as scikit-learn defines NMI and ARI (``laic_cluster_metrics``)."""
    t = as_vector(labels_true, "labels_true", np.int64)
    p = as_vector(labels_pred, "labels_pred", np.int64)
    if len(t) != len(p):
        raise InvalidArgumentError(
            f"invalid argument: labels_true has {len(t)} elements but labels_pred has {len(p)}",
            Status.INVALID_ARGUMENT,
        )
    out = LaicClusterMetrics()
    lib().laic_cluster_metrics(
        pointer(t, ctypes.c_int64), pointer(p, ctypes.c_int64), len(t), ctypes.byref(out)
    )
    return ClusterMetrics._from_c(out)
