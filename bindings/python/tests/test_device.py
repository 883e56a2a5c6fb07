"""gradnorm_scores_device: argument checking of CUDA-array inputs (anything exposing
``__cuda_array_interface__``) and the library's refusal of a CPU context. The GPU results
themselves are checked by the Rust CUDA tests; no CUDA array library is installed here."""

from __future__ import annotations

import numpy as np
import pytest

import laic


class FakeCudaArray:
    """Describes host memory through ``__cuda_array_interface__``; the library must refuse a
    CPU context before it would ever read it."""

    def __init__(self, arr: np.ndarray, strides=None, typestr=None):
        self.arr = arr
        self.__cuda_array_interface__ = {
            "shape": arr.shape,
            "typestr": typestr or arr.dtype.str,
            "data": (arr.ctypes.data, False),
            "strides": strides,
            "version": 3,
        }


@pytest.fixture
def cpu():
    with laic.Context("cpu") as ctx:
        yield ctx


def args(m=7, k=3, d=5, dtype=np.float32):
    return (
        FakeCudaArray(np.ones((m, d), dtype)),
        FakeCudaArray(np.ones((k, d), dtype)),
        FakeCudaArray(np.zeros(m, np.float32)),
        FakeCudaArray(np.zeros(m, np.uint32)),
        FakeCudaArray(np.zeros(m, np.float32)),
    )


def test_cpu_context_is_refused_with_no_device(cpu):
    n, c, s, a, f = args()
    with pytest.raises(laic.NoDeviceError):
        laic.gradnorm_scores_device(n, c, s, a, f, context=cpu)
    with pytest.raises(laic.NoDeviceError):
        laic.gradnorm_scores_device(*args(dtype=np.float16)[:3], context=cpu)
    assert not s.arr.any() and not a.arr.any()


def test_inputs_without_the_cuda_interface_or_with_bad_layouts_are_invalid(cpu):
    n, c, s, a, f = args()
    with pytest.raises(laic.InvalidArgumentError, match="__cuda_array_interface__"):
        laic.gradnorm_scores_device(np.ones((7, 5), np.float32), c, s, context=cpu)
    with pytest.raises(laic.InvalidArgumentError, match="centers.*float32 or float16"):
        laic.gradnorm_scores_device(n, FakeCudaArray(np.ones((3, 5))), s, context=cpu)
    with pytest.raises(laic.InvalidArgumentError, match="nouns must be 2-D"):
        laic.gradnorm_scores_device(FakeCudaArray(np.ones(5, np.float32)), c, s, context=cpu)
    cols = FakeCudaArray(np.ones((7, 5), np.float32), strides=(4, 28))
    with pytest.raises(laic.InvalidArgumentError, match="rows"):
        laic.gradnorm_scores_device(cols, c, s, context=cpu)
    with pytest.raises(laic.InvalidArgumentError, match="assignment has 6"):
        laic.gradnorm_scores_device(n, c, s, FakeCudaArray(np.zeros(6, np.uint32)), context=cpu)
    with pytest.raises(laic.InvalidArgumentError, match="confidence must be 1-D <f4"):
        laic.gradnorm_scores_device(n, c, s, a, FakeCudaArray(np.zeros(7)), context=cpu)
