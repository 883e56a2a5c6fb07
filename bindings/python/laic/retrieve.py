"""Retrieval of noun semantics for images (DESIGN.md §1.5)."""

from __future__ import annotations

import ctypes
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ._arrays import as_count, as_matrix, pointer
from ._ffi import LaicRetrieveOptions, lib
from .context import Context, resolve


class RetrieveResult(NamedTuple):
    """Result of :func:`retrieve`."""

    features: npt.NDArray[np.float32]
    """t̃ per image, shape (N, D), L2-normalised."""
    top_indices: npt.NDArray[np.uint32]
    """The ``top_n`` nouns of largest weight per image, best first, shape (N, top_n)."""
    top_weights: npt.NDArray[np.float32]
    """Their softmax weights, shape (N, top_n)."""


def retrieve(
    images: npt.ArrayLike,
    nouns: npt.ArrayLike,
    tau: float = 0.01,
    normalize: bool = True,
    top_n: int = 0,
    context: Context | None = None,
) -> RetrieveResult:
    """For each image x (rows of ``images``, N×D) over the nouns T (M×D):
    a = softmax(x·Tᵀ/τ), t̃ = normalize(a·T) (``laic_retrieve``), streaming over the nouns
    (nothing N×M is stored). With ``top_n`` = P > 0, also the P nouns of largest weight."""
    i_mat, i_arr = as_matrix(images, "images")
    n_mat, n_arr = as_matrix(nouns, "nouns")
    raw = lib()
    opts = LaicRetrieveOptions()
    raw.laic_retrieve_options_default(ctypes.byref(opts), ctypes.sizeof(opts))
    opts.tau = float(tau)
    opts.normalize = 1 if normalize else 0
    opts.top_n = as_count(top_n, "top_n", 2**32 - 1)
    n, d, p = i_mat.rows, i_mat.cols, opts.top_n
    features = np.empty((n, d), dtype=np.float32)
    top_indices = np.empty((n, p), dtype=np.uint32)
    top_weights = np.empty((n, p), dtype=np.float32)
    raw.laic_retrieve(
        resolve(context),
        ctypes.byref(i_mat),
        ctypes.byref(n_mat),
        ctypes.byref(opts),
        pointer(features, ctypes.c_float),
        features.size,
        pointer(top_indices, ctypes.c_uint32) if p else None,
        pointer(top_weights, ctypes.c_float) if p else None,
        n * p,
    )
    del i_arr, n_arr
    return RetrieveResult(features, top_indices, top_weights)
