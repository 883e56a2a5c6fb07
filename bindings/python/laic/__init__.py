"""laic — Language-assisted Image Clustering, Python bindings over the C ABI (``liblaic``).

GradNorm filters a noun corpus down to the nouns that describe a set of images::

    import laic
    scores, assign, conf = laic.gradnorm_scores(noun_emb, image_centers, tau=0.02)
    keep = laic.select_nouns(scores, assign, n_centers=len(image_centers), top_k=5)

The whole method, with names and metrics: ``laic.Pipeline(n_clusters).run(images, nouns, ...)``;
its stages: :func:`kmeans`, :func:`retrieve`, :func:`cluster_metrics`. Embeddings from a CLIP
model: ``with laic.ClipModel(path) as m: m.encode_texts([...]); m.encode_image_files([...])``.

Arrays are numpy float32/float16 (bfloat16 with ml_dtypes); failures raise :class:`LaicError`
subclasses carrying the library's message and status.
"""

from __future__ import annotations

from ._errors import (
    BufferTooSmallError,
    CancelledError,
    CudaError,
    DtypeError,
    FormatError,
    InternalError,
    InvalidArgumentError,
    LaicError,
    LaicIOError,
    LaicMemoryError,
    NoDeviceError,
    Status,
)
from ._ffi import lib as _lib
from .clip import ClipModel
from .context import Context, default_context, set_default_context
from .gradnorm import gradnorm_scores, gradnorm_scores_device, select_nouns
from .kmeans import KMeansResult, kmeans
from .metrics import ClusterMetrics, cluster_metrics
from .pipeline import Pipeline, PipelineResult
from .retrieve import RetrieveResult, retrieve

__version__ = "0.1.0"


def library_version() -> str:
    """The version of the loaded ``liblaic`` (``laic_version()``)."""
    return str(_lib().laic_version().decode())


def library_path() -> str:
    """The file the C library was loaded from."""
    return str(_lib().path)


__all__ = [
    "BufferTooSmallError",
    "CancelledError",
    "ClipModel",
    "ClusterMetrics",
    "Context",
    "CudaError",
    "DtypeError",
    "FormatError",
    "InternalError",
    "InvalidArgumentError",
    "KMeansResult",
    "LaicError",
    "LaicIOError",
    "LaicMemoryError",
    "NoDeviceError",
    "Pipeline",
    "PipelineResult",
    "RetrieveResult",
    "Status",
    "cluster_metrics",
    "default_context",
    "gradnorm_scores",
    "gradnorm_scores_device",
    "kmeans",
    "library_path",
    "library_version",
    "retrieve",
    "select_nouns",
    "set_default_context",
]
