"""Array layouts and dtypes: what is read in place, what is copied, and that results agree."""

from __future__ import annotations

import numpy as np
import pytest

import laic
from laic._arrays import as_matrix


def random_problem(rng: np.random.Generator, m: int = 203, k: int = 29, d: int = 67):
    return rng.standard_normal((m, d)).astype(np.float32), rng.standard_normal((k, d)).astype(
        np.float32
    )


def assert_same_result(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a,
        lambda a: a[::3],
        lambda a: a[:, 5:40],
        lambda a: a[1::2, 3:],
    ],
    ids=["c_contiguous", "row_step", "column_range", "row_step_column_range"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_row_strided_views_are_read_in_place(rng, view, dtype):
    base = rng.standard_normal((50, 64)).astype(dtype)
    v = view(base)
    matrix, owner = as_matrix(v, "nouns")
    assert owner is v
    assert matrix.data == v.ctypes.data
    assert matrix.row_stride == (v.strides[0] // v.itemsize if v.shape[0] > 1 else v.shape[1])
    assert (matrix.rows, matrix.cols) == v.shape


@pytest.mark.parametrize(
    "view",
    [lambda a: a[:, ::2], lambda a: np.asfortranarray(a), lambda a: a[::-1]],
    ids=["column_step", "fortran_order", "negative_stride"],
)
def test_layouts_the_abi_cannot_describe_are_copied(rng, view):
    v = view(rng.standard_normal((40, 30)).astype(np.float32))
    matrix, owner = as_matrix(v, "nouns")
    assert owner is not v and owner.flags.c_contiguous
    np.testing.assert_array_equal(owner, v)
    assert matrix.row_stride == v.shape[1]


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a[::2],
        lambda a: a[:, 3:50],
        lambda a: a[:, ::2],
        lambda a: np.asfortranarray(a),
        lambda a: a[::-1],
    ],
    ids=["row_step", "column_range", "column_step", "fortran_order", "negative_stride"],
)
def test_non_contiguous_inputs_give_the_same_scores_as_contiguous_copies(rng, view):
    nouns, centres = random_problem(rng, m=301, d=70)
    v, cv = view(nouns), view(centres)
    got = laic.gradnorm_scores(v, cv, tau=0.1)
    want = laic.gradnorm_scores(np.ascontiguousarray(v), np.ascontiguousarray(cv), tau=0.1)
    assert_same_result(got, want)


def test_float16_inputs_equal_float32_inputs_of_the_same_values(rng):
    nouns, centres = random_problem(rng)
    n16, c16 = nouns.astype(np.float16), centres.astype(np.float16)
    got = laic.gradnorm_scores(n16, c16)
    want = laic.gradnorm_scores(n16.astype(np.float32), c16.astype(np.float32))
    assert_same_result(got, want)


def test_mixed_dtypes_are_accepted(rng):
    nouns, centres = random_problem(rng)
    got = laic.gradnorm_scores(nouns.astype(np.float16), centres)
    want = laic.gradnorm_scores(nouns.astype(np.float16).astype(np.float32), centres)
    assert_same_result(got, want)


def test_bfloat16_inputs_equal_float32_inputs_of_the_same_values(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    nouns, centres = random_problem(rng)
    nb, cb = nouns.astype(ml_dtypes.bfloat16), centres.astype(ml_dtypes.bfloat16)
    assert as_matrix(nb, "nouns")[1] is nb
    got = laic.gradnorm_scores(nb, cb)
    want = laic.gradnorm_scores(nb.astype(np.float32), cb.astype(np.float32))
    assert_same_result(got, want)


def test_big_endian_input_is_converted(rng):
    nouns, centres = random_problem(rng)
    got = laic.gradnorm_scores(nouns.astype(">f4"), centres)
    assert_same_result(got, laic.gradnorm_scores(nouns, centres))


def test_select_nouns_accepts_int64_assignments_and_strided_values(rng):
    nouns, centres = random_problem(rng)
    scores, assign, _ = laic.gradnorm_scores(nouns, centres)
    padded = np.zeros(2 * len(scores), dtype=np.float32)
    padded[::2] = scores
    got = laic.select_nouns(padded[::2], assign.astype(np.int64), len(centres), 3)
    np.testing.assert_array_equal(got, laic.select_nouns(scores, assign, len(centres), 3))
    assert got.dtype == np.uint32 and np.all(np.diff(got.astype(np.int64)) > 0)
