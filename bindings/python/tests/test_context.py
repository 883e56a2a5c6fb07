"""Context lifetime, backends, and concurrent use."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import laic


def problem(rng):
    return rng.standard_normal((150, 33)).astype(np.float32), rng.standard_normal((11, 33)).astype(
        np.float32
    )


def test_cpu_context_reports_cpu_and_gives_the_default_results(rng):
    nouns, centres = problem(rng)
    with laic.Context("cpu", n_threads=2) as ctx:
        assert ctx.backend == "cpu"
        got = laic.gradnorm_scores(nouns, centres, context=ctx)
    want = laic.gradnorm_scores(nouns, centres)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_closed_context_raises_and_close_is_idempotent(rng):
    nouns, centres = problem(rng)
    ctx = laic.Context("cpu")
    ctx.close()
    ctx.close()
    assert ctx.closed and "closed" in repr(ctx)
    with pytest.raises(laic.InvalidArgumentError, match="closed"):
        laic.gradnorm_scores(nouns, centres, context=ctx)


def test_context_manager_closes_on_exit():
    with laic.Context("cpu") as ctx:
        assert not ctx.closed
    assert ctx.closed


def test_cuda_context_is_cuda_or_raises_no_device_with_the_library_message():
    try:
        ctx = laic.Context("cuda")
    except laic.NoDeviceError as e:
        assert e.status == laic.Status.NO_DEVICE and e.message
        assert isinstance(e, RuntimeError)
    else:
        with ctx:
            assert ctx.backend == "cuda"


def test_auto_context_resolves_to_a_concrete_backend():
    with laic.Context("auto") as ctx:
        assert ctx.backend in ("cpu", "cuda")


def test_default_context_can_be_replaced_and_reset(rng):
    nouns, centres = problem(rng)
    saved = laic.default_context()
    try:
        with laic.Context("cpu", n_threads=1) as mine:
            laic.set_default_context(mine)
            assert laic.default_context() is mine
            got = laic.gradnorm_scores(nouns, centres)
        laic.set_default_context(None)
        fresh = laic.default_context()
        assert fresh is not mine and fresh.backend in ("cpu", "cuda")
    finally:
        laic.set_default_context(saved)
    with laic.Context("cpu") as cpu:
        want = laic.gradnorm_scores(nouns, centres, context=cpu)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_unknown_backend_raises():
    with pytest.raises(laic.InvalidArgumentError, match="backend"):
        laic.Context("tpu")  # type: ignore[arg-type]


def test_one_context_serves_many_threads(rng):
    nouns, centres = problem(rng)
    want = laic.gradnorm_scores(nouns, centres)
    results: list[tuple] = [()] * 6
    with laic.Context("cpu") as ctx:

        def work(i: int) -> None:
            results[i] = laic.gradnorm_scores(nouns, centres, context=ctx)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for r in results:
        for g, w in zip(r, want):
            np.testing.assert_array_equal(g, w)


def test_library_version_matches_the_package():
    assert laic.library_version() == laic.__version__
