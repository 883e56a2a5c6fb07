"""Base class of the Python objects that own a C handle (``LaicContext*``, and later
``LaicClipModel*`` or pipeline results): unique ownership, ``close()``, context-manager use,
freeing on garbage collection, and an error instead of a NULL handle after ``close()``."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ._errors import InvalidArgumentError, Status
from ._ffi import Library


class Handle:
    """Owns one C handle, freed by the library function named ``_free_name``.

    Subclasses create the handle in ``__init__`` and pass it to :meth:`_adopt`.
    """

    _free_name: str = ""
    _handle: Any = None
    _lib: Library | None = None

    def _adopt(self, lib: Library, handle: Any) -> None:
        self._lib = lib
        self._handle = handle

    @property
    def handle(self) -> Any:
        """The raw C handle for ``lib()`` calls; raises once closed."""
        if not self._handle:
            raise InvalidArgumentError(
                f"invalid argument: {type(self).__name__} is closed", Status.INVALID_ARGUMENT
            )
        return self._handle

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or creation failed)."""
        return not self._handle

    def close(self) -> None:
        """Frees the handle now (idempotent). Calls in flight on other threads must have
        returned."""
        handle, self._handle = self._handle, None
        if handle and self._lib is not None:
            getattr(self._lib, self._free_name)(handle)

    def __enter__(self) -> Any:
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
