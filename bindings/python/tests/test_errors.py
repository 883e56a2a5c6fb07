"""Failures raise LaicError subclasses carrying the library's message and status."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import laic
from laic import _ffi


def small(rng, m=20, k=5, d=8, dtype=np.float32):
    return rng.standard_normal((m, d)).astype(dtype), rng.standard_normal((k, d)).astype(dtype)


def assert_library_error(err: laic.LaicError, status: laic.Status, *fragments: str):
    """The exception carries the status and exactly the library's message for this thread."""
    assert err.status == status
    assert str(err) == err.message == _ffi.lib().last_error()
    for f in fragments:
        assert f in err.message


def test_width_mismatch_raises_invalid_argument_with_the_library_message(rng):
    nouns, centres = small(rng)
    with pytest.raises(laic.InvalidArgumentError) as e:
        laic.gradnorm_scores(nouns, centres[:, :5])
    assert_library_error(e.value, laic.Status.INVALID_ARGUMENT, "8 columns", "5")
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"tau": 0.0}, "tau"), ({"tau": -1.0}, "tau"), ({"q": 0.5}, "q"), ({"tau": np.nan}, "tau")],
)
def test_bad_options_raise_with_the_library_message(rng, kwargs, fragment):
    nouns, centres = small(rng)
    with pytest.raises(laic.InvalidArgumentError) as e:
        laic.gradnorm_scores(nouns, centres, **kwargs)
    assert_library_error(e.value, laic.Status.INVALID_ARGUMENT, fragment)


def test_non_finite_inputs_raise_with_the_library_message(rng):
    nouns, centres = small(rng)
    nouns[3, 2] = np.inf
    with pytest.raises(laic.InvalidArgumentError) as e:
        laic.gradnorm_scores(nouns, centres)
    assert_library_error(e.value, laic.Status.INVALID_ARGUMENT, "nouns")


def test_empty_matrices_are_reported_by_the_library(rng):
    _, centres = small(rng)
    with pytest.raises(laic.InvalidArgumentError) as e:
        laic.gradnorm_scores(np.zeros((0, 8), np.float32), centres)
    assert_library_error(e.value, laic.Status.INVALID_ARGUMENT, "nouns")


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.complex64, np.bool_])
def test_unsupported_dtypes_raise_dtype_error(rng, dtype):
    nouns, centres = small(rng)
    with pytest.raises(laic.DtypeError) as e:
        laic.gradnorm_scores(nouns.astype(dtype), centres)
    assert e.value.status == laic.Status.INVALID_ARGUMENT
    assert "nouns" in str(e.value) and str(np.dtype(dtype)) in str(e.value)
    assert isinstance(e.value, TypeError) and isinstance(e.value, laic.InvalidArgumentError)


@pytest.mark.parametrize("shape", [(8,), (2, 3, 8), ()])
def test_arrays_that_are_not_2d_raise_invalid_argument(rng, shape):
    _, centres = small(rng)
    with pytest.raises(laic.InvalidArgumentError, match="2-D"):
        laic.gradnorm_scores(np.zeros(shape, np.float32), centres)


def test_unknown_target_and_order_raise_invalid_argument(rng):
    nouns, centres = small(rng)
    with pytest.raises(laic.InvalidArgumentError, match="target"):
        laic.gradnorm_scores(nouns, centres, target="onehot")  # type: ignore[arg-type]
    s, a, _ = laic.gradnorm_scores(nouns, centres)
    with pytest.raises(laic.InvalidArgumentError, match="order"):
        laic.select_nouns(s, a, 5, order="smallest_first")  # type: ignore[arg-type]


def test_select_nouns_reports_out_of_range_assignments_from_the_library(rng):
    values = rng.random(10).astype(np.float32)
    assign = np.arange(10, dtype=np.uint32) % 4
    with pytest.raises(laic.InvalidArgumentError) as e:
        laic.select_nouns(values, assign, n_centers=3)
    assert_library_error(e.value, laic.Status.INVALID_ARGUMENT)


def test_select_nouns_rejects_mismatched_lengths_negative_indices_and_float64(rng):
    values = rng.random(10).astype(np.float32)
    with pytest.raises(laic.InvalidArgumentError, match="assignment"):
        laic.select_nouns(values, np.zeros(9, np.uint32), 3)
    with pytest.raises(laic.InvalidArgumentError, match="assignment"):
        laic.select_nouns(values, -np.ones(10, np.int64), 3)
    with pytest.raises(laic.DtypeError, match="values"):
        laic.select_nouns(values.astype(np.float64), np.zeros(10, np.uint32), 3)


def test_select_nouns_with_no_nouns_is_reported_by_the_library():
    with pytest.raises(laic.InvalidArgumentError) as e:
        laic.select_nouns(np.zeros(0, np.float32), np.zeros(0, np.uint32), 3)
    assert_library_error(e.value, laic.Status.INVALID_ARGUMENT, "len")


def test_each_thread_sees_its_own_error_message(rng):
    """laic_last_error() is thread-local: concurrent failures keep their own messages."""
    nouns, centres = small(rng)
    messages: dict[int, str] = {}

    def fail(i: int) -> None:
        for _ in range(50):
            try:
                laic.gradnorm_scores(nouns, centres, tau=-float(i + 1))
            except laic.InvalidArgumentError as err:
                messages[i] = err.message
                if f"got -{i + 1}" not in err.message:
                    return

    threads = [threading.Thread(target=fail, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert f"got -{i + 1}" in messages[i], messages[i]


def test_status_without_a_specific_class_still_maps_to_laic_error():
    err = laic._errors.error_for(99, "from the future")
    assert type(err) is laic.LaicError and err.status == 99 and str(err) == "from the future"


@pytest.mark.parametrize("status", list(laic.Status)[1:])
def test_every_status_maps_to_a_laic_error_subclass(status):
    err = laic._errors.error_for(status, "m")
    assert isinstance(err, laic.LaicError) and err.status is status


@pytest.mark.parametrize(
    "n_centers, top_k, fragment",
    [
        (-1, 5, "n_centers"),
        (3, -2, "top_k"),
        (3.0, 5, "n_centers"),
        (0, 5, "n_centres"),
        (3, 0, "top_k"),
    ],
)
def test_select_nouns_rejects_bad_counts(n_centers, top_k, fragment):
    values = np.array([0.1, 0.2, 0.3], np.float32)
    with pytest.raises(laic.InvalidArgumentError, match=fragment):
        laic.select_nouns(values, np.zeros(3, np.uint32), n_centers, top_k)


def test_select_nouns_with_a_huge_centre_count_selects_normally():
    """The library must not size anything by n_centers (it once aborted on 2**40)."""
    values = np.array([0.5, 0.1, 0.3, 0.2], np.float32)
    assign = np.array([7, 7, 7, 2**31], np.uint32)
    np.testing.assert_array_equal(laic.select_nouns(values, assign, 2**40, 2), [1, 2, 3])


@pytest.mark.parametrize("kwargs", [{"n_threads": -1}, {"device": 2**32}, {"n_threads": 1.5}])
def test_context_rejects_bad_counts(kwargs):
    with pytest.raises(laic.InvalidArgumentError):
        laic.Context("cpu", **kwargs)
