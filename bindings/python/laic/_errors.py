"""Status codes of the C ABI and the exceptions they become.

This is the one place that maps a ``LaicStatus`` to a Python exception: :func:`error_for`.
A new status code needs one line in :class:`Status` and one in ``_EXCEPTIONS``.
"""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """``LaicStatus`` values (stable numbers, as in ``laic.h``)."""

    OK = 0
    INVALID_ARGUMENT = 1
    NO_DEVICE = 2
    CANCELLED = 3
    OUT_OF_MEMORY = 4
    BUFFER_TOO_SMALL = 5
    IO = 6
    FORMAT = 7
    CUDA = 8
    INTERNAL = 9


class LaicError(Exception):
    """A failed laic call.

    ``message`` is the library's own text (``laic_last_error()``), ``status`` the
    :class:`Status` it returned. ``str(err)`` is the message.
    """

    def __init__(self, message: str, status: Status | int = Status.INTERNAL) -> None:
        super().__init__(message)
        self.message = message
        try:
            self.status: Status | int = Status(status)
        except ValueError:  # a status newer than these bindings
            self.status = int(status)

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(LaicError, ValueError):
    """An argument was missing, out of range, inconsistent with another, or not finite."""


class DtypeError(InvalidArgumentError, TypeError):
    """An array has an element type the C ABI does not take (checked in Python)."""


class NoDeviceError(LaicError, RuntimeError):
    """The requested backend (CUDA) is not available on this machine."""


class CancelledError(LaicError):
    """A progress callback asked to stop."""


class LaicMemoryError(LaicError, MemoryError):
    """An allocation failed (host or device)."""


class BufferTooSmallError(LaicError, ValueError):
    """An output buffer was too small; nothing was written."""


class LaicIOError(LaicError, OSError):
    """A file could not be read or written."""


class FormatError(LaicError, ValueError):
    """A file or buffer is malformed."""


class CudaError(LaicError, RuntimeError):
    """A CUDA driver, kernel or library call failed."""


class InternalError(LaicError, RuntimeError):
    """A bug inside laic (a caught panic, a broken invariant)."""


_EXCEPTIONS: dict[int, type[LaicError]] = {
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.NO_DEVICE: NoDeviceError,
    Status.CANCELLED: CancelledError,
    Status.OUT_OF_MEMORY: LaicMemoryError,
    Status.BUFFER_TOO_SMALL: BufferTooSmallError,
    Status.IO: LaicIOError,
    Status.FORMAT: FormatError,
    Status.CUDA: CudaError,
    Status.INTERNAL: InternalError,
}


def error_for(status: int, message: str) -> LaicError:
    """The exception for a non-OK ``status`` with the library's ``message``."""
    return _EXCEPTIONS.get(status, LaicError)(message, status)
