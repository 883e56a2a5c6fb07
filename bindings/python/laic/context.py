"""Compute contexts: a backend (CPU or CUDA) and a CPU thread pool."""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Literal

from ._arrays import as_count
from ._errors import InvalidArgumentError, Status
from ._ffi import (
    BACKEND_AUTO,
    BACKEND_CPU,
    BACKEND_CUDA,
    LaicContext,
    LaicContextOptions,
    lib,
)
from ._handle import Handle

BackendName = Literal["auto", "cpu", "cuda"]
_BACKENDS = {"auto": BACKEND_AUTO, "cpu": BACKEND_CPU, "cuda": BACKEND_CUDA}
_BACKEND_NAMES = {BACKEND_CPU: "cpu", BACKEND_CUDA: "cuda"}


class Context(Handle):
    """A laic compute context (``LaicContext``).

    ``backend`` is ``"auto"`` (CUDA when a usable device is present, else the CPU), ``"cpu"``
    or ``"cuda"`` (:class:`NoDeviceError` when there is none). ``n_threads`` = 0 uses one CPU
    thread per core; ``device`` is the CUDA ordinal.

    A context is immutable and may be used from many threads at once. Use it as a context
    manager, or call :meth:`close`; it is also freed when garbage-collected::

        with laic.Context("cpu") as ctx:
            scores, assign, conf = laic.gradnorm_scores(nouns, centers, context=ctx)
    """

    _free_name = "laic_context_free"

    def __init__(self, backend: BackendName = "auto", n_threads: int = 0, device: int = 0) -> None:
        if backend not in _BACKENDS:
            raise InvalidArgumentError(
                f"invalid argument: backend must be one of {sorted(_BACKENDS)}, got {backend!r}",
                Status.INVALID_ARGUMENT,
            )
        raw = lib()
        opts = LaicContextOptions()
        raw.laic_context_options_default(ctypes.byref(opts), ctypes.sizeof(opts))
        opts.backend = _BACKENDS[backend]
        opts.n_threads = as_count(n_threads, "n_threads", 2**32 - 1)
        opts.device = as_count(device, "device", 2**32 - 1)
        handle = ctypes.POINTER(LaicContext)()
        raw.laic_context_create(ctypes.byref(opts), ctypes.byref(handle))
        self._adopt(raw, handle)

    @property
    def backend(self) -> Literal["cpu", "cuda"]:
        """The backend this context runs on (never ``"auto"``)."""
        out = ctypes.c_uint32()
        lib().laic_context_backend(self.handle, ctypes.byref(out))
        return _BACKEND_NAMES[out.value]  # type: ignore[return-value]

    def __repr__(self) -> str:
        return "<laic.Context closed>" if self.closed else f"<laic.Context backend={self.backend}>"


_default_lock = threading.Lock()
_default: Context | None = None


def default_context() -> Context:
    """The shared context used when a function gets ``context=None`` (backend ``"auto"``,
    all cores), created on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Context("auto")
    return _default


def set_default_context(context: Context | None) -> None:
    """Makes ``context`` the one used when a function gets ``context=None``; None goes back to
    a fresh ``"auto"`` context on next use. The previous default is not closed."""
    global _default
    with _default_lock:
        _default = context


def resolve(context: Context | None) -> Any:
    """The raw handle of ``context``, or of the default context."""
    return (context if context is not None else default_context()).handle
