"""The raw C ABI: ctypes mirrors of the structs in ``laic.h``, the library loader, and one
declarative table of function signatures.

Every function whose return type is :data:`STATUS` raises the matching :class:`LaicError`
(with ``laic_last_error()``) on failure, through one ``errcheck`` hook, so wrappers never test
status codes themselves. To expose a new C function, add its structs here and one line to
:data:`SIGNATURES`; it is then ``lib().laic_new_function``.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from ctypes import (
    POINTER,
    c_char_p,
    c_double,
    c_int,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any

from ._errors import error_for

# --- enum-like constants (uint32 typedefs + #defines in laic.h) -------------------------------

DTYPE_F32 = 0
DTYPE_F16 = 1
DTYPE_BF16 = 2

BACKEND_AUTO = 0
BACKEND_CPU = 1
BACKEND_CUDA = 2

TARGET_ONE_HOT = 0
TARGET_UNIFORM = 1

ORDER_SMALLEST = 0
ORDER_LARGEST = 1

METRIC_EUCLIDEAN = 0
METRIC_SPHERICAL = 1

FILTER_GRADNORM = 0
FILTER_TAC = 1
FILTER_NONE = 2

STAGE_CENTRES = 0
STAGE_SCORES = 1
STAGE_RETRIEVAL = 2
STAGE_CLUSTERING = 3
STAGE_NAMING = 4
STAGE_TEXT_ENCODING = 5
STAGE_IMAGE_ENCODING = 6

N_CENTRES_AUTO = -1


# --- structs -----------------------------------------------------------------------------------


class LaicMatrix(ctypes.Structure):
    """``LaicMatrix``: a borrowed row-major matrix; ``row_stride`` is in elements."""

    _fields_ = [
        ("data", c_void_p),
        ("rows", c_size_t),
        ("cols", c_size_t),
        ("row_stride", c_size_t),
        ("dtype", c_uint32),
    ]


class LaicContextOptions(ctypes.Structure):
    """``LaicContextOptions``."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("backend", c_uint32),
        ("n_threads", c_uint32),
        ("device", c_uint32),
    ]


class LaicGradNormOptions(ctypes.Structure):
    """``LaicGradNormOptions``."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("tau", c_double),
        ("q", c_double),
        ("target", c_uint32),
        ("normalize", c_uint32),
    ]


class LaicKMeansOptions(ctypes.Structure):
    """``LaicKMeansOptions``."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("n_clusters", c_size_t),
        ("metric", c_uint32),
        ("max_iter", c_uint32),
        ("n_redo", c_uint32),
        ("tol", c_double),
        ("seed", c_uint64),
    ]


class LaicRetrieveOptions(ctypes.Structure):
    """``LaicRetrieveOptions``."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("tau", c_double),
        ("normalize", c_uint32),
        ("top_n", c_uint32),
    ]


class LaicClusterMetrics(ctypes.Structure):
    """``LaicClusterMetrics``."""

    _fields_ = [("acc", c_double), ("nmi", c_double), ("ari", c_double)]


class LaicPipelineOptions(ctypes.Structure):
    """``LaicPipelineOptions``."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("n_clusters", c_size_t),
        ("n_centres", c_int64),
        ("tau", c_double),
        ("q", c_double),
        ("tau_r", c_double),
        ("top_k", c_uint32),
        ("filter", c_uint32),
        ("centres_metric", c_uint32),
        ("centres_n_redo", c_uint32),
        ("n_redo", c_uint32),
        ("max_iter", c_uint32),
        ("n_names", c_uint32),
        ("seed", c_uint64),
    ]


class LaicImageRgb8(ctypes.Structure):
    """``LaicImageRgb8``: a borrowed 8-bit RGB image; pixel (x, y) is the 3 bytes at
    ``data + y * row_stride + 3 * x``."""

    _fields_ = [
        ("data", POINTER(ctypes.c_uint8)),
        ("width", c_size_t),
        ("height", c_size_t),
        ("row_stride", c_size_t),
    ]


class LaicClipLoadOptions(ctypes.Structure):
    """``LaicClipLoadOptions``: where a CLIP model's towers run and at which GPU precision."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("precision", ctypes.c_uint32),
        ("device", ctypes.c_uint32),
        ("cuda_device", ctypes.c_uint32),
    ]


class LaicImageFileOptions(ctypes.Structure):
    """``LaicImageFileOptions``: how image files are decoded (full, or JPEG drafts; EXIF
    orientation applied or not)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("decode", ctypes.c_uint32),
        ("exif_orientation", ctypes.c_uint32),
    ]


class LaicClipModel(ctypes.Structure):
    """Opaque ``LaicClipModel`` (only ever used through a pointer)."""


class LaicContext(ctypes.Structure):
    """Opaque ``LaicContext`` (only ever used through a pointer)."""


class LaicPipelineResult(ctypes.Structure):
    """Opaque ``LaicPipelineResult`` (only ever used through a pointer)."""


#: ``LaicProgressFn``: ``int32_t (*)(void *user, LaicStage stage, double fraction)``.
PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int32, c_void_p, c_uint32, c_double)


#: Marks a function returning ``LaicStatus``: it is declared ``int`` and raises on non-zero.
STATUS = object()

_f32p = POINTER(ctypes.c_float)
_u32p = POINTER(c_uint32)
_ctxp = POINTER(LaicContext)
_resp = POINTER(LaicPipelineResult)
_matp = POINTER(LaicMatrix)
_i64p = POINTER(c_int64)
_u32pp = POINTER(_u32p)
_sizep = POINTER(c_size_t)
_clipp = POINTER(LaicClipModel)

#: name -> (return type, argument types), in the order of ``laic.h``.
SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "laic_last_error": (c_char_p, []),
    "laic_version": (c_char_p, []),
    "laic_clip_load": (STATUS, [_ctxp, c_char_p, POINTER(_clipp)]),
    "laic_clip_load_options_default": (STATUS, [POINTER(LaicClipLoadOptions), c_size_t]),
    "laic_clip_load_with_options": (
        STATUS,
        [_ctxp, c_char_p, POINTER(LaicClipLoadOptions), POINTER(_clipp)],
    ),
    "laic_clip_free": (None, [_clipp]),
    "laic_clip_embed_dim": (STATUS, [_clipp, _sizep]),
    "laic_clip_encode_texts": (
        STATUS,
        [_ctxp, _clipp, POINTER(c_char_p), c_size_t, PROGRESS, c_void_p, _f32p, c_size_t],
    ),
    "laic_clip_encode_image_files": (
        STATUS,
        [_ctxp, _clipp, POINTER(c_char_p), c_size_t, PROGRESS, c_void_p, _f32p, c_size_t],
    ),
    "laic_image_file_options_default": (STATUS, [POINTER(LaicImageFileOptions), c_size_t]),
    "laic_clip_encode_image_files_with_options": (
        STATUS,
        [
            _ctxp,
            _clipp,
            POINTER(c_char_p),
            c_size_t,
            POINTER(LaicImageFileOptions),
            POINTER(ctypes.c_int32),
            PROGRESS,
            c_void_p,
            _f32p,
            c_size_t,
        ],
    ),
    "laic_clip_encode_images_rgb8": (
        STATUS,
        [
            _ctxp,
            _clipp,
            POINTER(LaicImageRgb8),
            c_size_t,
            PROGRESS,
            c_void_p,
            _f32p,
            c_size_t,
        ],
    ),
    "laic_kmeans_options_default": (STATUS, [POINTER(LaicKMeansOptions), c_size_t]),
    "laic_kmeans": (
        STATUS,
        [
            _ctxp,
            _matp,
            POINTER(LaicKMeansOptions),
            _u32p,
            c_size_t,
            _f32p,
            c_size_t,
            POINTER(c_double),
            PROGRESS,
            c_void_p,
        ],
    ),
    "laic_retrieve_options_default": (STATUS, [POINTER(LaicRetrieveOptions), c_size_t]),
    "laic_retrieve": (
        STATUS,
        [
            _ctxp,
            _matp,
            _matp,
            POINTER(LaicRetrieveOptions),
            _f32p,
            c_size_t,
            _u32p,
            _f32p,
            c_size_t,
        ],
    ),
    "laic_cluster_metrics": (STATUS, [_i64p, _i64p, c_size_t, POINTER(LaicClusterMetrics)]),
    "laic_context_options_default": (STATUS, [POINTER(LaicContextOptions), c_size_t]),
    "laic_context_create": (STATUS, [POINTER(LaicContextOptions), POINTER(_ctxp)]),
    "laic_context_free": (None, [_ctxp]),
    "laic_context_backend": (STATUS, [_ctxp, _u32p]),
    "laic_gradnorm_options_default": (STATUS, [POINTER(LaicGradNormOptions), c_size_t]),
    "laic_gradnorm_scores": (
        STATUS,
        [
            _ctxp,
            POINTER(LaicMatrix),
            POINTER(LaicMatrix),
            POINTER(LaicGradNormOptions),
            _f32p,
            _u32p,
            _f32p,
            c_size_t,
        ],
    ),
    "laic_gradnorm_scores_device": (
        STATUS,
        [
            _ctxp,
            POINTER(LaicMatrix),
            POINTER(LaicMatrix),
            POINTER(LaicGradNormOptions),
            c_void_p,
            c_void_p,
            c_void_p,
            c_size_t,
        ],
    ),
    "laic_select_nouns": (
        STATUS,
        [_f32p, _u32p, c_size_t, c_size_t, c_size_t, c_uint32, _u32p, c_size_t, POINTER(c_size_t)],
    ),
    "laic_pipeline_options_default": (STATUS, [POINTER(LaicPipelineOptions), c_size_t]),
    "laic_pipeline_run": (
        STATUS,
        [
            _ctxp,
            _matp,
            _matp,
            _matp,
            POINTER(c_char_p),
            _i64p,
            c_size_t,
            POINTER(LaicPipelineOptions),
            PROGRESS,
            c_void_p,
            POINTER(_resp),
        ],
    ),
    "laic_pipeline_result_free": (None, [_resp]),
    "laic_pipeline_result_labels": (STATUS, [_resp, _u32pp, _sizep]),
    "laic_pipeline_result_selected": (STATUS, [_resp, _u32pp, _sizep]),
    "laic_pipeline_result_sizes": (STATUS, [_resp, _sizep, _sizep]),
    "laic_pipeline_result_cluster_nouns": (STATUS, [_resp, c_size_t, _u32pp, _sizep]),
    "laic_pipeline_result_cluster_names": (
        STATUS,
        [_resp, c_size_t, POINTER(POINTER(c_char_p)), _sizep],
    ),
    "laic_pipeline_result_objective": (STATUS, [_resp, POINTER(c_double)]),
    "laic_pipeline_result_metrics": (STATUS, [_resp, POINTER(LaicClusterMetrics)]),
}


# --- loading -----------------------------------------------------------------------------------

if sys.platform == "darwin":
    LIBRARY_NAME = "liblaic.dylib"
elif sys.platform == "win32":
    LIBRARY_NAME = "laic.dll"
else:
    LIBRARY_NAME = "liblaic.so"


def library_candidates() -> list[Path]:
    """Where the library is looked for, in order: ``$LAIC_LIBRARY``, the package folder, and
    (when the package is imported from a source checkout) ``target/release`` of the checkout."""
    env = os.environ.get("LAIC_LIBRARY")
    if env:
        return [Path(env)]
    here = Path(__file__).resolve().parent
    out = [here / LIBRARY_NAME]
    root = here.parent.parent.parent
    if (root / "Cargo.toml").is_file():
        target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
        out.append(target / "release" / LIBRARY_NAME)
    return out


class Library:
    """The loaded ``liblaic`` with every function of :data:`SIGNATURES` that it exports bound
    as an attribute of the same name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._dll = ctypes.CDLL(str(path))
        for name, (restype, argtypes) in SIGNATURES.items():
            try:
                fn = getattr(self._dll, name)
            except AttributeError:
                continue  # an older library: the wrapper says so when called
            fn.argtypes = argtypes
            if restype is STATUS:
                fn.restype = c_int
                fn.errcheck = self._check
            else:
                fn.restype = restype
            setattr(self, name, fn)

    def has(self, name: str) -> bool:
        """Whether the loaded library exports ``name`` (and it is in :data:`SIGNATURES`)."""
        return name in self.__dict__

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not bound in __init__.
        if name in SIGNATURES:
            raise AttributeError(
                f"{self.path} does not export {name}: the library is older than these bindings"
            )
        raise AttributeError(f"no C function {name} is declared in laic._ffi.SIGNATURES")

    def last_error(self) -> str:
        """``laic_last_error()`` as text."""
        raw = self.laic_last_error()
        return raw.decode("utf-8", "replace") if raw else ""

    def _check(self, status: int, func: Any, args: tuple[Any, ...]) -> int:
        # Runs on the calling thread right after the call, so the thread-local message is ours.
        if status != 0:
            raise error_for(status, self.last_error())
        return status


_lock = threading.Lock()
_lib: Library | None = None


def lib() -> Library:
    """The process-wide :class:`Library`, loaded on first use."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                tried = library_candidates()
                for path in tried:
                    if path.is_file():
                        _lib = Library(path)
                        break
                else:
                    where = ", ".join(str(p) for p in tried)
                    raise OSError(
                        f"liblaic not found (looked at {where}); build it with "
                        "`cargo build --release` or set LAIC_LIBRARY to its path"
                    )
    return _lib
