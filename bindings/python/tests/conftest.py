"""Shared fixtures: the real CLIP ViT-B/32 features and the reference implementation.

The data live in ``shared/`` beside the repository (``<repo>/../shared``, as in CI) or wherever
``LAIC_SHARED_DIR`` points; tests that need them are skipped, with the path, when absent, or
fail when ``LAIC_REQUIRE_SHARED=1`` (CI).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import laic

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SHARED = Path(os.environ.get("LAIC_SHARED_DIR", REPO.parent / "shared"))
FEATURES = SHARED / "data" / "clip-vit-b32"
REFERENCE = SHARED / "reference" / "laic_ref.py"
CENTRES = HERE / "data" / "centres_clip-vit-b32.safetensors"
DATASETS = ["dtd", "oxford_pets", "ucf101"]


# Tests compare results bit for bit across dtypes and layouts, which holds within one backend:
# run them on the CPU unless LAIC_TEST_BACKEND says otherwise ("auto", "cuda").
laic.set_default_context(laic.Context(os.environ.get("LAIC_TEST_BACKEND", "cpu")))  # type: ignore[arg-type]


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"laic default context: {laic.default_context()!r} (LAIC_TEST_BACKEND)",
        f"laic library: {laic.library_path()} (version {laic.library_version()})",
        f"shared data: {FEATURES} "
        + ("(found)" if FEATURES.is_dir() else "(absent: the real-data tests skip)"),
    ]


def _need(path: Path) -> None:
    if not path.exists():
        why = f"{path} is absent (set LAIC_SHARED_DIR or clone the repo beside shared/)"
        if os.environ.get("LAIC_REQUIRE_SHARED") == "1":
            pytest.fail(why + " and LAIC_REQUIRE_SHARED=1")
        pytest.skip(why)


@pytest.fixture(scope="session")
def ref() -> ModuleType:
    """``shared/reference/laic_ref.py`` as a module."""
    _need(REFERENCE)
    pytest.importorskip("sklearn")
    pytest.importorskip("scipy")
    spec = importlib.util.spec_from_file_location("laic_ref", REFERENCE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def text_features() -> np.ndarray:
    """The 1000 ImageNet class-name embeddings, float16 [1000, 512] as stored."""
    _need(FEATURES)
    st = pytest.importorskip("safetensors.numpy")
    return st.load_file(str(FEATURES / "imagenet1k_text.safetensors"))["text_features"]


@pytest.fixture(scope="session")
def centres() -> dict[str, np.ndarray]:
    """Fixed image centres per dataset, float16 (see make_centres.py)."""
    st = pytest.importorskip("safetensors.numpy")
    return st.load_file(str(CENTRES))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
