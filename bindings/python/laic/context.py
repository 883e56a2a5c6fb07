"""Compute contexts: a backend (CPU or CUDA) and a CPU thread pool."""

from __future__ import annotations

import ctypes
import threading
from types import TracebackType
from typing import Any, Literal

from ._errors import InvalidArgumentError, Status
from ._ffi import (
    BACKEND_AUTO,
    BACKEND_CPU,
    BACKEND_CUDA,
    LaicContext,
    LaicContextOptions,
    lib,
)

BackendName = Literal["auto", "cpu", "cuda"]
_BACKENDS = {"auto": BACKEND_AUTO, "cpu": BACKEND_CPU, "cuda": BACKEND_CUDA}
_BACKEND_NAMES = {BACKEND_CPU: "cpu", BACKEND_CUDA: "cuda"}


class Context:
    """A laic compute context (``LaicContext``).

    ``backend`` is ``"auto"`` (CUDA when a usable device is present, else the CPU), ``"cpu"``
    or ``"cuda"`` (:class:`NoDeviceError` when there is none). ``n_threads`` = 0 uses one CPU
    thread per core; ``device`` is the CUDA ordinal.

    A context is immutable and may be used from many threads at once. Use it as a context
    manager, or call :meth:`close`; it is also freed when garbage-collected::

        with laic.Context("cpu") as ctx:
            scores, assign, conf = laic.gradnorm_scores(nouns, centers, context=ctx)
    """

    def __init__(self, backend: BackendName = "auto", n_threads: int = 0, device: int = 0) -> None:
        if backend not in _BACKENDS:
            raise InvalidArgumentError(
                f"invalid argument: backend must be one of {sorted(_BACKENDS)}, got {backend!r}",
                Status.INVALID_ARGUMENT,
            )
        self._lib = lib()
        opts = LaicContextOptions()
        self._lib.laic_context_options_default(ctypes.byref(opts), ctypes.sizeof(opts))
        opts.backend = _BACKENDS[backend]
        opts.n_threads = n_threads
        opts.device = device
        handle = ctypes.POINTER(LaicContext)()
        self._lib.laic_context_create(ctypes.byref(opts), ctypes.byref(handle))
        self._handle: Any = handle

    @property
    def backend(self) -> Literal["cpu", "cuda"]:
        """The backend this context runs on (never ``"auto"``)."""
        out = ctypes.c_uint32()
        self._lib.laic_context_backend(self.handle, ctypes.byref(out))
        return _BACKEND_NAMES[out.value]  # type: ignore[return-value]

    @property
    def handle(self) -> Any:
        """The ``LaicContext*`` for raw calls; raises once the context is closed."""
        if not self._handle:
            raise InvalidArgumentError("invalid argument: context is closed", Status.INVALID_ARGUMENT)
        return self._handle

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return not self._handle

    def close(self) -> None:
        """Frees the context now (idempotent). Calls in flight on other threads must have
        returned."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._lib.laic_context_free(handle)

    def __enter__(self) -> Context:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone
            pass

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


def resolve(context: Context | None) -> Any:
    """The raw handle of ``context``, or of the default context."""
    return (context if context is not None else default_context()).handle
