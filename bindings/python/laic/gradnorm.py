"""GradNorm scoring of nouns against image centres, and selection of the positive nouns."""

from __future__ import annotations

import ctypes
from typing import Literal

import numpy as np
import numpy.typing as npt

from ._arrays import as_count, as_matrix, as_vector, pointer
from ._errors import InvalidArgumentError, Status
from ._ffi import (
    ORDER_LARGEST,
    ORDER_SMALLEST,
    TARGET_ONE_HOT,
    TARGET_UNIFORM,
    LaicGradNormOptions,
    lib,
)
from .context import Context, resolve

Target = Literal["one_hot", "uniform"]
Order = Literal["smallest", "largest"]
_TARGETS = {"one_hot": TARGET_ONE_HOT, "uniform": TARGET_UNIFORM}
_ORDERS = {"smallest": ORDER_SMALLEST, "largest": ORDER_LARGEST}


def _choice(table: dict[str, int], value: str, name: str) -> int:
    if value not in table:
        raise InvalidArgumentError(
            f"invalid argument: {name} must be one of {sorted(table)}, got {value!r}",
            Status.INVALID_ARGUMENT,
        )
    return table[value]


def gradnorm_scores(
    nouns: npt.ArrayLike,
    centers: npt.ArrayLike,
    tau: float = 0.02,
    q: float = 2.0,
    target: Target = "one_hot",
    normalize: bool = True,
    context: Context | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint32], npt.NDArray[np.float32]]:
    """GradNorm scores of M nouns against K image centres (``laic_gradnorm_scores``).

    Args:
        nouns: M×D text embeddings, float32, float16 or bfloat16 (ml_dtypes).
        centers: K×D image centres, same dtypes (need not match ``nouns``).
        tau: softmax temperature τ > 0.
        q: norm order q >= 1; ``math.inf`` for the max norm.
        target: ``"one_hot"`` (small score = positive noun) or ``"uniform"`` (the original
            GradNorm of Huang et al. 2021: large score = positive).
        normalize: L2-normalise noun and centre rows first.
        context: the :class:`Context` to run on; None uses :func:`default_context`.

    Returns:
        ``(scores, assignment, confidence)``: float32 S_q per noun, uint32 index of the centre
        with the largest logit (lowest index on ties), float32 softmax probability of that
        centre.

    Arrays whose rows are contiguous and equally spaced are read in place; other layouts are
    copied once. Raises :class:`InvalidArgumentError` with the library's message for bad
    shapes, non-finite values, τ <= 0 or q < 1, and :class:`DtypeError` for other dtypes.
    """
    n_mat, n_arr = as_matrix(nouns, "nouns")
    c_mat, c_arr = as_matrix(centers, "centers")
    opts = LaicGradNormOptions()
    raw = lib()
    raw.laic_gradnorm_options_default(ctypes.byref(opts), ctypes.sizeof(opts))
    opts.tau = float(tau)
    opts.q = float(q)
    opts.target = _choice(_TARGETS, target, "target")
    opts.normalize = 1 if normalize else 0
    m = n_mat.rows
    scores = np.empty(m, dtype=np.float32)
    assignment = np.empty(m, dtype=np.uint32)
    confidence = np.empty(m, dtype=np.float32)
    raw.laic_gradnorm_scores(
        resolve(context),
        ctypes.byref(n_mat),
        ctypes.byref(c_mat),
        ctypes.byref(opts),
        pointer(scores, ctypes.c_float),
        pointer(assignment, ctypes.c_uint32),
        pointer(confidence, ctypes.c_float),
        m,
    )
    del n_arr, c_arr  # kept alive across the call above
    return scores, assignment, confidence


def select_nouns(
    values: npt.ArrayLike,
    assignment: npt.ArrayLike,
    n_centers: int,
    top_k: int = 5,
    order: Order = "smallest",
) -> npt.NDArray[np.uint32]:
    """Positive nouns: per centre, the ``top_k`` nouns assigned to it whose ``values`` rank
    first (``laic_select_nouns``); ties go to the lower index.

    Args:
        values: float32 score per noun (``gradnorm_scores``' scores or confidences).
        assignment: centre per noun, any integer dtype with values in ``[0, n_centers)``.
        n_centers: number of centres K.
        top_k: nouns kept per centre.
        order: ``"smallest"`` for one-hot GradNorm scores, ``"largest"`` for uniform-target
            scores or TAC confidences.

    Returns:
        The union of the kept nouns' indices, sorted, as uint32.
    """
    vals = as_vector(values, "values", np.float32)
    assign = as_vector(assignment, "assignment", np.uint32)
    code = _choice(_ORDERS, order, "order")
    n_centers = as_count(n_centers, "n_centers")
    top_k = as_count(top_k, "top_k")
    n = len(vals)
    if len(assign) != n:
        raise InvalidArgumentError(
            f"invalid argument: values has {n} elements but assignment has {len(assign)}",
            Status.INVALID_ARGUMENT,
        )
    capacity = max(1, min(n, n_centers * top_k))
    out = np.empty(capacity, dtype=np.uint32)
    count = ctypes.c_size_t()
    lib().laic_select_nouns(
        pointer(vals, ctypes.c_float),
        pointer(assign, ctypes.c_uint32),
        n,
        n_centers,
        top_k,
        code,
        pointer(out, ctypes.c_uint32),
        capacity,
        ctypes.byref(count),
    )
    return out[: count.value].copy() if count.value < capacity else out


__all__ = ["gradnorm_scores", "select_nouns"]
