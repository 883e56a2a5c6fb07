"""laic against shared/reference/laic_ref.py on real CLIP ViT-B/32 features."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATASETS

import laic

TOP_K = 5


def l2n(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("dataset", DATASETS)
def test_gradnorm_matches_reference_and_selects_the_same_nouns(
    ref, text_features, centres, dataset, dtype
):
    t, w = text_features, centres[dataset]
    k = len(w)
    s, c, pc = ref.gradnorm_scores(l2n(t), l2n(w), 0.02)
    expected = ref.select(s, c, k, TOP_K, smallest=True)

    scores, assign, conf = laic.gradnorm_scores(t.astype(dtype), w.astype(dtype), tau=0.02, q=2.0)

    assert scores.dtype == np.float32 and assign.dtype == np.uint32 and conf.dtype == np.float32
    np.testing.assert_array_equal(assign, c)
    np.testing.assert_allclose(scores, s, rtol=5e-5)
    np.testing.assert_allclose(conf, pc, rtol=0, atol=1e-5)
    selected = laic.select_nouns(scores, assign, k, TOP_K, order="smallest")
    np.testing.assert_array_equal(selected, expected)


@pytest.mark.parametrize("dataset", DATASETS)
def test_tac_confidence_selection_matches_reference(ref, text_features, centres, dataset):
    t, w = text_features, centres[dataset]
    k = len(w)
    _, c, pc = ref.gradnorm_scores(l2n(t), l2n(w), 1.0)
    expected = ref.select(pc, c, k, TOP_K, smallest=False)

    _, assign, conf = laic.gradnorm_scores(t, w, tau=1.0)

    np.testing.assert_array_equal(assign, c)
    np.testing.assert_allclose(conf, pc, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(laic.select_nouns(conf, assign, k, TOP_K, "largest"), expected)


def gradnorm_f64(t: np.ndarray, w: np.ndarray, tau: float, q: float, uniform: bool):
    """DESIGN.md §1.3 in float64, for any q in [1, inf] and both targets."""
    t, w = l2n(t), l2n(w)
    z = t @ w.T / tau
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    c = p.argmax(1)
    target = np.full_like(p, 1.0 / p.shape[1]) if uniform else np.eye(p.shape[1])[c]
    d = np.abs(p - target)
    if np.isinf(q):
        s = d.max(1) * np.abs(t).max(1)
    else:
        s = (d**q).sum(1) ** (1 / q) * (np.abs(t) ** q).sum(1) ** (1 / q)
    return s, c, p[np.arange(len(p)), c]


@pytest.mark.parametrize("uniform", [False, True], ids=["one_hot", "uniform"])
@pytest.mark.parametrize("q", [1.0, 3.5, np.inf])
def test_other_norm_orders_and_the_uniform_target_match_float64(text_features, centres, q, uniform):
    t, w = text_features, centres["oxford_pets"]
    s, c, pc = gradnorm_f64(t, w, 0.05, q, uniform)
    target = "uniform" if uniform else "one_hot"

    scores, assign, conf = laic.gradnorm_scores(t, w, tau=0.05, q=q, target=target)

    np.testing.assert_array_equal(assign, c)
    np.testing.assert_allclose(scores, s, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(conf, pc, atol=1e-5)
    order = "largest" if uniform else "smallest"
    sel_ref = sorted(
        {
            int(i)
            for kk in range(len(w))
            for i in np.flatnonzero(c == kk)[
                np.argsort(-s[c == kk] if uniform else s[c == kk], kind="stable")[:TOP_K]
            ]
        }
    )
    np.testing.assert_array_equal(laic.select_nouns(scores, assign, len(w), TOP_K, order), sel_ref)
