"""k-means, retrieval, metrics and the whole pipeline against numpy / scikit-learn / the
reference on the real CLIP ViT-B/32 features."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FEATURES

import laic


def l2n(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def dtd():
    st = pytest.importorskip("safetensors.numpy")
    path = FEATURES / "dtd.safetensors"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return st.load_file(str(path))


# --- metrics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, k_true, k_pred", [(50, 3, 3), (200, 5, 8), (300, 10, 4), (7, 1, 1), (120, 6, 6)]
)
def test_cluster_metrics_equal_scikit_learn_and_the_reference_acc(ref, rng, n, k_true, k_pred):
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    y = rng.integers(0, k_true, n)
    p = np.where(rng.random(n) < 0.6, y % k_pred, rng.integers(0, k_pred, n))
    m = laic.cluster_metrics(y, p)
    assert m.nmi == pytest.approx(normalized_mutual_info_score(y, p), abs=1e-12)
    assert m.ari == pytest.approx(adjusted_rand_score(y, p), abs=1e-12)
    assert m.acc == pytest.approx(ref.acc(y, p), abs=1e-12)


def test_cluster_metrics_accept_any_label_values_and_integer_dtypes():
    y = np.array([10, 10, -3, -3, 7], np.int32)
    p = np.array([2, 2, 0, 0, 0], np.uint8)
    m = laic.cluster_metrics(y, p)
    assert m.acc == pytest.approx(0.8) and 0 < m.nmi < 1 and m == laic.cluster_metrics(y, p)
    assert laic.cluster_metrics(y, y) == (1.0, 1.0, 1.0)


def test_cluster_metrics_errors():
    with pytest.raises(laic.InvalidArgumentError, match="labels_pred"):
        laic.cluster_metrics([1, 2, 3], [1, 2])
    with pytest.raises(laic.InvalidArgumentError) as e:
        laic.cluster_metrics(np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert e.value.message == laic._ffi.lib().last_error()
    with pytest.raises(laic.DtypeError):
        laic.cluster_metrics(np.zeros(3), np.zeros(3))


# --- k-means -----------------------------------------------------------------------------------


def test_kmeans_labels_centres_and_objective_are_consistent_and_match_scikit_learn(dtd):
    from sklearn.cluster import KMeans

    x = dtd["val_features"]  # f16
    xd = x.astype(np.float64)
    res = laic.kmeans(x, 47, n_redo=3, seed=0)
    assert res.labels.shape == (len(x),) and res.centers.shape == (47, 512)
    c = res.centers.astype(np.float64)
    d2 = (xd**2).sum(1)[:, None] - 2 * xd @ c.T + (c**2).sum(1)[None]
    np.testing.assert_array_equal(res.labels, d2.argmin(1))
    assert res.objective == pytest.approx(d2.min(1).sum(), rel=1e-4)
    sk = KMeans(47, n_init=1, random_state=0).fit(xd)
    assert res.objective <= 1.02 * sk.inertia_
    again = laic.kmeans(x, 47, n_redo=3, seed=0)
    np.testing.assert_array_equal(again.labels, res.labels)


def test_kmeans_spherical_objective_is_one_minus_cosine(dtd):
    x = dtd["val_features"][:300]
    res = laic.kmeans(x, 12, metric="spherical", n_redo=2, seed=3)
    cos = l2n(x) @ l2n(res.centers).T
    np.testing.assert_array_equal(res.labels, cos.argmax(1))
    assert res.objective == pytest.approx((1 - cos.max(1)).sum(), rel=1e-4)


def test_kmeans_progress_is_reported_and_can_cancel(rng):
    x = rng.standard_normal((400, 16)).astype(np.float32)
    seen: list[tuple[str, float]] = []
    laic.kmeans(x, 5, n_redo=2, progress=lambda s, f: seen.append((s, f)))
    assert seen and {s for s, _ in seen} == {"clustering"}
    assert all(0.0 <= f <= 1.0 for _, f in seen)
    with pytest.raises(laic.CancelledError) as e:
        laic.kmeans(x, 5, progress=lambda s, f: False)
    assert e.value.status == laic.Status.CANCELLED

    class Boom(Exception):
        pass

    def boom(stage: str, fraction: float) -> None:
        raise Boom(stage)

    with pytest.raises(Boom) as b:
        laic.kmeans(x, 5, progress=boom)
    assert isinstance(b.value.__cause__, laic.CancelledError)


def test_kmeans_errors_carry_the_library_message(rng):
    x = rng.standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(laic.InvalidArgumentError) as e:
        laic.kmeans(x, 11)
    assert e.value.message == laic._ffi.lib().last_error() and e.value.message
    with pytest.raises(laic.InvalidArgumentError, match="metric"):
        laic.kmeans(x, 2, metric="cosine")  # type: ignore[arg-type]


# --- retrieval ---------------------------------------------------------------------------------


def test_retrieve_matches_the_reference_formula(dtd, text_features):
    x, t = dtd["test_features"][:500], text_features[:300]
    a = l2n(x) @ l2n(t).T / 0.01
    a = np.exp(a - a.max(1, keepdims=True))
    a /= a.sum(1, keepdims=True)
    want = l2n(a @ l2n(t))
    res = laic.retrieve(x, t, tau=0.01, top_n=4)
    np.testing.assert_allclose(res.features, want, atol=2e-5)
    assert res.top_indices.shape == (500, 4) and res.top_weights.shape == (500, 4)
    best = np.argsort(-a, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(res.top_indices[:, 0], best[:, 0])
    np.testing.assert_allclose(res.top_weights, np.take_along_axis(a, best, 1), atol=1e-5)
    empty = laic.retrieve(x[::2], t, tau=0.01)
    assert empty.top_indices.shape == (250, 0)
    np.testing.assert_allclose(empty.features, want[::2], atol=2e-5)


def test_retrieve_errors(rng):
    x = rng.standard_normal((5, 8)).astype(np.float32)
    with pytest.raises(laic.InvalidArgumentError) as e:
        laic.retrieve(x, x[:, :4])
    assert e.value.message == laic._ffi.lib().last_error()
    with pytest.raises(laic.InvalidArgumentError):
        laic.retrieve(x, x, top_n=6)


# --- pipeline ----------------------------------------------------------------------------------


def test_pipeline_on_dtd_matches_the_reference_figures(dtd, text_features):
    import json

    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    names = json.loads((FEATURES / "imagenet1k_classes.json").read_text())
    y = dtd["test_labels"]
    stages: set[str] = set()
    res = laic.Pipeline(47, n_redo=3).run(
        dtd["test_features"],
        text_features,
        train=dtd["val_features"],
        noun_names=names,
        labels=y,
        progress=lambda s, f: stages.add(s),
    )
    assert res.n_clusters == 47 and res.n_centers == 112 and res.labels.shape == y.shape
    assert 0 < len(res.selected) <= 112 * 5 and np.all(np.diff(res.selected.astype(int)) > 0)
    assert res.metrics is not None
    # README of the data: GradNorm on dtd gives ACC 44.9, NMI 57.1, ARI 26.3 (seed-dependent
    # by a point or two).
    assert abs(res.metrics.acc - 0.449) < 0.03
    assert abs(res.metrics.nmi - 0.571) < 0.02
    assert abs(res.metrics.ari - 0.263) < 0.03
    assert res.metrics.nmi == pytest.approx(normalized_mutual_info_score(y, res.labels), abs=1e-9)
    assert res.metrics.ari == pytest.approx(adjusted_rand_score(y, res.labels), abs=1e-9)
    assert res.cluster_names is not None and len(res.cluster_names) == 47
    for nouns, labels in zip(res.cluster_nouns, res.cluster_names):
        assert [names[i] for i in nouns] == labels
        assert set(nouns.tolist()) <= set(res.selected.tolist())
    assert {"centres", "scores", "retrieval", "clustering"} <= stages


def test_pipeline_without_nouns_or_labels(dtd):
    res = laic.Pipeline(47, filter="none", n_redo=2).run(dtd["test_features"])
    assert res.metrics is None and res.cluster_names is None and len(res.selected) == 0
    assert res.n_centers == 0 and res.labels.max() < 47


def test_pipeline_errors(rng, text_features):
    x = rng.standard_normal((30, 512)).astype(np.float32)
    with pytest.raises(laic.InvalidArgumentError, match="noun_names"):
        laic.Pipeline(3).run(x, text_features, noun_names=["a", "b"])
    with pytest.raises(laic.InvalidArgumentError) as e:
        laic.Pipeline(31).run(x, text_features)
    assert e.value.message == laic._ffi.lib().last_error()
    with pytest.raises(laic.InvalidArgumentError) as e:
        laic.Pipeline(3).run(x, text_features, labels=np.zeros(29, np.int64))
    assert e.value.message == laic._ffi.lib().last_error()
    with pytest.raises(laic.InvalidArgumentError, match="filter"):
        laic.Pipeline(3, filter="best")  # type: ignore[arg-type]
    with pytest.raises(laic.CancelledError):
        laic.Pipeline(3).run(x, text_features, progress=lambda s, f: False)
