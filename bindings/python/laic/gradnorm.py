"""GradNorm scoring of nouns against image centres, and selection of the positive nouns."""

from __future__ import annotations

import ctypes
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ._arrays import as_count, as_matrix, as_vector, pointer
from ._errors import InvalidArgumentError, Status
from ._ffi import (
    DTYPE_F16,
    DTYPE_F32,
    ORDER_LARGEST,
    ORDER_SMALLEST,
    TARGET_ONE_HOT,
    TARGET_UNIFORM,
    LaicGradNormOptions,
    LaicMatrix,
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


_DEVICE_DTYPES = {"<f4": DTYPE_F32, "<f2": DTYPE_F16}


def _invalid(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"invalid argument: {message}", Status.INVALID_ARGUMENT)


def _cuda_interface(obj: Any, name: str) -> dict[str, Any]:
    iface = getattr(obj, "__cuda_array_interface__", None)
    if not isinstance(iface, dict):
        raise _invalid(
            f"{name} must be a CUDA array exposing __cuda_array_interface__ (CuPy, PyTorch, "
            f"Numba), got {type(obj).__name__}"
        )
    return iface


def _device_matrix(obj: Any, name: str) -> LaicMatrix:
    iface = _cuda_interface(obj, name)
    shape, typestr, strides = tuple(iface["shape"]), iface["typestr"], iface.get("strides")
    if len(shape) != 2:
        raise _invalid(f"{name} must be 2-D, got shape {shape}")
    if typestr not in _DEVICE_DTYPES:
        raise _invalid(f"{name} must be float32 or float16 on the device, got {typestr!r}")
    item = int(typestr[2:])
    rows, cols = shape
    if strides is None:
        row_stride = cols
    else:
        s0, s1 = strides
        if (s1 != item and cols > 1) or s0 <= 0 or s0 % item:
            raise _invalid(
                f"{name} must have contiguous, equally spaced rows, got strides {strides}"
            )
        row_stride = s0 // item
    return LaicMatrix(iface["data"][0], rows, cols, row_stride, _DEVICE_DTYPES[typestr])


def _device_vector(obj: Any, name: str, typestr: str) -> tuple[int, int]:
    iface = _cuda_interface(obj, name)
    shape, strides = tuple(iface["shape"]), iface.get("strides")
    if len(shape) != 1 or iface["typestr"] != typestr:
        raise _invalid(f"{name} must be 1-D {typestr}, got shape {shape}, {iface['typestr']!r}")
    if strides is not None and strides != (int(typestr[2:]),) and shape[0] > 1:
        raise _invalid(f"{name} must be contiguous, got strides {strides}")
    return iface["data"][0], shape[0]


def gradnorm_scores_device(
    nouns: Any,
    centers: Any,
    scores: Any,
    assignment: Any = None,
    confidence: Any = None,
    tau: float = 0.02,
    q: float = 2.0,
    target: Target = "one_hot",
    normalize: bool = True,
    context: Context | None = None,
) -> None:
    """GradNorm scores of data already on the GPU (``laic_gradnorm_scores_device``): as
    :func:`gradnorm_scores`, but every array is a CUDA array of the context's device
    (anything with ``__cuda_array_interface__``: CuPy, PyTorch, Numba), and the results are
    written into ``scores`` (float32, M), ``assignment`` (uint32, M) and ``confidence``
    (float32, M); the last two may be None. ``nouns``/``centers`` are float32 or float16 with
    contiguous, equally spaced rows. Synchronise the stream that wrote the inputs first. Needs
    a CUDA context (a CPU one raises :class:`NoDeviceError`)."""
    n_mat = _device_matrix(nouns, "nouns")
    c_mat = _device_matrix(centers, "centers")
    d_scores, out_len = _device_vector(scores, "scores", "<f4")
    outs: list[int | None] = []
    for obj, name, typestr in [
        (assignment, "assignment", "<u4"),
        (confidence, "confidence", "<f4"),
    ]:
        if obj is None:
            outs.append(None)
            continue
        ptr, n = _device_vector(obj, name, typestr)
        if n != out_len:
            raise _invalid(f"{name} has {n} elements but scores has {out_len}")
        outs.append(ptr)
    opts = LaicGradNormOptions()
    raw = lib()
    raw.laic_gradnorm_options_default(ctypes.byref(opts), ctypes.sizeof(opts))
    opts.tau = float(tau)
    opts.q = float(q)
    opts.target = _choice(_TARGETS, target, "target")
    opts.normalize = 1 if normalize else 0
    raw.laic_gradnorm_scores_device(
        resolve(context),
        ctypes.byref(n_mat),
        ctypes.byref(c_mat),
        ctypes.byref(opts),
        d_scores,
        outs[0],
        outs[1],
        out_len,
    )


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
