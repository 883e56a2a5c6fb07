"""Python progress callbacks for the C ``LaicProgressFn``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._errors import CancelledError
from ._ffi import PROGRESS

STAGES = {
    0: "centres",
    1: "scores",
    2: "retrieval",
    3: "clustering",
    4: "naming",
    5: "text_encoding",
    6: "image_encoding",
}

#: ``progress(stage, fraction)``: stage is "centres", "scores", "retrieval", "clustering",
#: "naming", "text_encoding" or "image_encoding"; fraction in [0, 1]. Returning ``False``
#: cancels (:class:`CancelledError`); an exception raised inside cancels too and is re-raised
#: from the laic call.
ProgressCallback = Callable[[str, float], "bool | None"]


class _Progress:
    def __init__(self, fn: ProgressCallback) -> None:
        self.fn = fn
        self.error: BaseException | None = None
        self.c_fn = PROGRESS(self._call)  # referenced for as long as this object lives

    def _call(self, user: Any, stage: int, fraction: float) -> int:
        try:
            return 1 if self.fn(STAGES.get(stage, str(stage)), fraction) is False else 0
        except BaseException as e:  # noqa: BLE001 - handed back to the caller below
            self.error = e
            return 1


@contextmanager
def progress_arg(fn: ProgressCallback | None) -> Iterator[Any]:
    """Yields the C callback for ``fn`` (NULL for None), alive for the ``with`` block; an
    exception raised by ``fn`` is re-raised in place of the resulting CancelledError."""
    if fn is None:
        yield PROGRESS()
        return
    p = _Progress(fn)
    try:
        yield p.c_fn
    except CancelledError as cancelled:
        if p.error is not None:
            raise p.error from cancelled
        raise
