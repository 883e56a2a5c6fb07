"""numpy arrays -> C ABI arguments, copying only when the ABI cannot describe the layout."""

from __future__ import annotations

import ctypes
import operator
from typing import Any, cast

import numpy as np

from ._errors import DtypeError, InvalidArgumentError, Status
from ._ffi import DTYPE_BF16, DTYPE_F16, DTYPE_F32, LaicMatrix

#: numpy dtype name -> LAIC_DTYPE_*. ``bfloat16`` is ml_dtypes' name (optional dependency).
_MATRIX_DTYPES = {"float32": DTYPE_F32, "float16": DTYPE_F16, "bfloat16": DTYPE_BF16}


def _invalid(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"invalid argument: {message}", Status.INVALID_ARGUMENT)


def _dtype_code(arr: np.ndarray, name: str) -> int:
    code = _MATRIX_DTYPES.get(arr.dtype.name)
    if code is None:
        raise DtypeError(
            f"invalid argument: {name} has dtype {arr.dtype}; laic takes float32, float16 or "
            f"bfloat16 (convert with {name}.astype(numpy.float32))",
            Status.INVALID_ARGUMENT,
        )
    return code


def as_matrix(value: Any, name: str) -> tuple[LaicMatrix, np.ndarray]:
    """A ``LaicMatrix`` describing ``value`` and the array that owns its memory (keep it alive
    for the call).

    2-D float32/float16/bfloat16 arrays whose rows are contiguous and equally spaced (C order,
    row slices ``a[::2]``, column ranges ``a[:, 10:300]``) are passed without a copy; other
    layouts (column steps, Fortran order, negative strides, misaligned data) and non-native
    byte order are copied once. Zero-sized arrays are passed as they are: the library reports
    them.
    """
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.ndim != 2:
        raise _invalid(f"{name} must be a 2-D array (rows × columns), got shape {arr.shape}")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    code = _dtype_code(arr, name)
    rows, cols = arr.shape
    item = arr.dtype.itemsize
    if rows == 0 or cols == 0:
        return LaicMatrix(None, rows, cols, cols, code), arr
    if not _rows_describable(arr):
        arr = np.ascontiguousarray(arr)
    row_stride = arr.strides[0] // item if rows > 1 else cols
    matrix = LaicMatrix(arr.ctypes.data, rows, cols, row_stride, code)
    return matrix, arr


def _rows_describable(arr: np.ndarray) -> bool:
    """Whether ``LaicMatrix`` (contiguous rows, a row stride in elements >= cols) can describe
    ``arr`` in place."""
    rows, cols = arr.shape
    item = arr.dtype.itemsize
    s0, s1 = arr.strides
    if arr.ctypes.data % item:
        return False
    if cols > 1 and s1 != item:
        return False
    if rows > 1 and (s0 <= 0 or s0 % item or s0 // item < cols):
        return False
    return True


def as_vector(value: Any, name: str, dtype: type) -> np.ndarray:
    """``value`` as a 1-D C-contiguous array of exactly ``dtype`` (copied only if needed)."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.ndim != 1:
        raise _invalid(f"{name} must be a 1-D array, got shape {arr.shape}")
    want = np.dtype(dtype)
    if arr.dtype != want:
        if want.kind in "iu" and arr.dtype.kind in "iu":
            # Integers (indices, labels): any integer type whose values fit.
            info = np.iinfo(cast(Any, want))
            lo, hi = int(info.min), int(info.max)
            if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
                raise _invalid(f"{name} has values outside [{lo}, {hi}]")
            arr = arr.astype(want)
        else:
            raise DtypeError(
                f"invalid argument: {name} has dtype {arr.dtype}; laic takes {want} here "
                f"(convert with {name}.astype(numpy.{want}))",
                Status.INVALID_ARGUMENT,
            )
    return np.ascontiguousarray(arr)


def as_count(value: Any, name: str, limit: int = 2**64 - 1) -> int:
    """A non-negative integer argument (ctypes would wrap a negative one silently)."""
    try:
        n = operator.index(value)
    except TypeError:
        raise InvalidArgumentError(
            f"invalid argument: {name} must be an integer, got {value!r}", Status.INVALID_ARGUMENT
        ) from None
    if not 0 <= n <= limit:
        raise _invalid(f"{name} must be in [0, {limit}], got {n}")
    return n


def pointer(arr: np.ndarray | None, ctype: type) -> Any:
    """A ctypes pointer to the first element of ``arr`` (NULL for None)."""
    if arr is None:
        return None
    return arr.ctypes.data_as(ctypes.POINTER(ctype))
