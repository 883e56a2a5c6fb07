"""CLIP models (``LaicClipModel``): text and image embeddings computed by the library."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from ._errors import InvalidArgumentError, Status
from ._ffi import LaicClipLoadOptions, LaicClipModel, LaicImageFileOptions, LaicImageRgb8, lib
from ._handle import Handle
from ._progress import ProgressCallback, progress_arg
from .context import Context, resolve

PathLike = Union[str, "os.PathLike[str]", "os.PathLike[bytes]", bytes]


def _invalid(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"invalid argument: {message}", Status.INVALID_ARGUMENT)


def _sequence(value: Any, name: str) -> Sequence[Any]:
    """``value`` as a list, refusing a bare string (a common slip for a list of one)."""
    if isinstance(value, (str, bytes, os.PathLike, np.ndarray)) or not isinstance(value, Sequence):
        raise _invalid(f"{name} must be a list, got {type(value).__name__}")
    return list(value)


def _c_strings(items: Sequence[bytes]) -> Any:
    """A ``const char *const[]`` over ``items`` (the bytes objects must outlive the call)."""
    arr = (ctypes.c_char_p * max(len(items), 1))()
    for i, b in enumerate(items):
        arr[i] = b
    return arr


def _text_bytes(texts: Sequence[Any]) -> list[bytes]:
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise _invalid(f"texts[{i}] must be a str, got {type(t).__name__}")
        try:
            b = t.encode("utf-8")
        except UnicodeEncodeError as e:
            raise _invalid(f"texts[{i}] cannot be encoded as UTF-8 ({e.reason})") from None
        if b"\0" in b:
            raise _invalid(f"texts[{i}] contains a NUL character")
        out.append(b)
    return out


def _path_bytes(paths: Sequence[Any]) -> list[bytes]:
    out = []
    for i, p in enumerate(paths):
        try:
            b = os.fsencode(p)
        except TypeError:
            raise _invalid(
                f"paths[{i}] must be a str, bytes or os.PathLike, got {type(p).__name__}"
            ) from None
        if b"\0" in b:
            raise _invalid(f"paths[{i}] contains a NUL character")
        out.append(b)
    return out


def _rgb8(image: Any, i: int) -> np.ndarray:
    """``image`` as an H×W×3 uint8 array whose pixels are 3 consecutive bytes and whose rows
    have a positive stride (other layouts are copied once)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise _invalid(f"images[{i}] must have dtype uint8, got {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise _invalid(f"images[{i}] must have shape (height, width, 3), got {arr.shape}")
    s0, s1, s2 = arr.strides
    if not (s2 == 1 and s1 == 3 and s0 >= 3 * arr.shape[1]):
        arr = np.ascontiguousarray(arr)
    return arr


class ClipModel(Handle):
    """A CLIP model loaded by the library (``laic_clip_load``).

    ``path`` is a folder holding ``model.safetensors`` (or one ``*.safetensors`` file), or the
    ``.safetensors`` file itself; ``config.json`` and ``tokenizer.json`` beside it are used when
    present. Both the Hugging Face layout (``openai/clip-vit-base-patch32``) and the OpenAI
    layout load, with f32, f16 or bf16 weights. ``context`` is used to load and, unless a call
    passes its own, to encode (None: the default context). ``device`` chooses where the towers
    run ("context": the context's device; "cpu"; "cuda": CUDA device ``cuda_device``) and
    ``precision`` their GPU operand type ("auto", "f32", "f16", "bf16").

    Every ``encode_*`` method returns an (n, :attr:`embed_dim`) float32 array of
    L2-normalised rows. A model is immutable and may be used from many threads at once. Use it
    as a context manager, or call :meth:`close`; it is also freed when garbage-collected::

        with laic.ClipModel("clip-vit-base-patch32") as model:
            nouns = model.encode_texts(["a photo of a cat.", "a photo of a dog."])
            images = model.encode_image_files(["cat.jpg", "dog.png"])
    """

    _free_name = "laic_clip_free"

    #: ``precision`` values: the GPU operand precision of the towers (auto: the weights' own
    #: 16-bit type, f16 for f32 weights).
    PRECISIONS = {"auto": 0, "f32": 1, "f16": 2, "bf16": 3}
    #: ``device`` values: the context's device, the CPU, or CUDA device ``cuda_device``.
    DEVICES = {"context": 0, "cpu": 1, "cuda": 2}
    #: ``decode`` values of :meth:`encode_image_files`: every pixel (PIL's), or large JPEGs
    #: at 1/2, 1/4 or 1/8 scale as after PIL's ``Image.draft("RGB", (224, 224))``.
    DECODES = {"full": 0, "draft": 1}

    def __init__(
        self,
        path: PathLike,
        context: Context | None = None,
        *,
        device: str = "context",
        precision: str = "auto",
        cuda_device: int = 0,
    ) -> None:
        if device not in self.DEVICES:
            raise ValueError(f"device must be one of {sorted(self.DEVICES)}, not {device!r}")
        if precision not in self.PRECISIONS:
            raise ValueError(
                f"precision must be one of {sorted(self.PRECISIONS)}, not {precision!r}"
            )
        (encoded,) = _path_bytes([path])
        raw = lib()
        opts = LaicClipLoadOptions()
        raw.laic_clip_load_options_default(ctypes.byref(opts), ctypes.sizeof(opts))
        opts.device = self.DEVICES[device]
        opts.precision = self.PRECISIONS[precision]
        opts.cuda_device = cuda_device
        handle = ctypes.POINTER(LaicClipModel)()
        raw.laic_clip_load_with_options(
            resolve(context), encoded, ctypes.byref(opts), ctypes.byref(handle)
        )
        self._adopt(raw, handle)
        self._context = context
        self.path = os.fsdecode(encoded)
        dim = ctypes.c_size_t()
        raw.laic_clip_embed_dim(handle, ctypes.byref(dim))
        self._embed_dim = dim.value

    @property
    def embed_dim(self) -> int:
        """Width of the embeddings (512 for ViT-B/32)."""
        self.handle  # noqa: B018 - raises once closed
        return self._embed_dim

    def _run(
        self,
        name: str,
        items: Any,
        n: int,
        context: Context | None,
        progress: ProgressCallback | None,
        *options: Any,
    ) -> npt.NDArray[np.float32]:
        """Calls ``name(ctx, model, items, n, *options, progress, NULL, out, out_len)``."""
        handle = self.handle
        out = np.empty((n, self._embed_dim), dtype=np.float32)
        ctx = resolve(context if context is not None else self._context)
        with progress_arg(progress) as cb:
            getattr(lib(), name)(
                ctx,
                handle,
                items,
                n,
                *options,
                cb,
                None,
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                out.size,
            )
        return out

    def encode_texts(
        self,
        texts: Sequence[str],
        context: Context | None = None,
        progress: ProgressCallback | None = None,
    ) -> npt.NDArray[np.float32]:
        """Embeds the prompts ``texts`` (``laic_clip_encode_texts``): row i is text i,
        tokenised with CLIP's tokenizer and cut at 77 tokens; "" is a valid prompt.
        ``progress`` is called as ``progress("text_encoding", fraction)`` after each batch;
        returning False cancels (:class:`CancelledError`)."""
        encoded = _text_bytes(_sequence(texts, "texts"))
        return self._run(
            "laic_clip_encode_texts", _c_strings(encoded), len(encoded), context, progress
        )

    def encode_image_files(
        self,
        paths: Sequence[PathLike],
        context: Context | None = None,
        progress: ProgressCallback | None = None,
        *,
        decode: str = "full",
        exif_orientation: bool = False,
    ) -> npt.NDArray[np.float32]:
        """Embeds image files (JPEG, PNG or WebP) with CLIP's preprocessing (shortest side
        resized to 224 bicubically, centre crop, normalisation)
        (``laic_clip_encode_image_files_with_options``). ``decode="draft"`` decodes JPEGs at
        least twice the input size at 1/2, 1/4 or 1/8 scale, as PIL after ``Image.draft``:
        several times faster on camera photos, slightly different embeddings.
        ``exif_orientation=True`` turns JPEGs upright by their EXIF tag, as
        ``ImageOps.exif_transpose`` (transformers ignores the tag).
        A missing file raises :class:`LaicIOError`, an undecodable one :class:`FormatError`,
        naming the file. ``progress`` is called as ``progress("image_encoding", fraction)``."""
        return self._encode_files(paths, context, progress, decode, exif_orientation, None)[0]

    def encode_image_files_skipping(
        self,
        paths: Sequence[PathLike],
        context: Context | None = None,
        progress: ProgressCallback | None = None,
        *,
        decode: str = "full",
        exif_orientation: bool = False,
    ) -> tuple[npt.NDArray[np.float32], dict[int, Status]]:
        """:meth:`encode_image_files` that goes on past files that cannot be read or decoded:
        returns the embeddings (zero rows for those files) and ``{index: Status.IO or
        Status.FORMAT}`` for them."""
        paths = _sequence(paths, "paths")
        status = (ctypes.c_int32 * max(len(paths), 1))()
        out, n = self._encode_files(paths, context, progress, decode, exif_orientation, status)
        return out, {i: Status(status[i]) for i in range(n) if status[i] != Status.OK}

    def _encode_files(
        self,
        paths: Sequence[PathLike],
        context: Context | None,
        progress: ProgressCallback | None,
        decode: str,
        exif_orientation: bool,
        status: Any,
    ) -> tuple[npt.NDArray[np.float32], int]:
        if decode not in self.DECODES:
            raise ValueError(f"decode must be one of {sorted(self.DECODES)}, not {decode!r}")
        encoded = _path_bytes(_sequence(paths, "paths"))
        opts = LaicImageFileOptions()
        lib().laic_image_file_options_default(ctypes.byref(opts), ctypes.sizeof(opts))
        opts.decode = self.DECODES[decode]
        opts.exif_orientation = int(bool(exif_orientation))
        out = self._run(
            "laic_clip_encode_image_files_with_options",
            _c_strings(encoded),
            len(encoded),
            context,
            progress,
            ctypes.byref(opts),
            status,
        )
        return out, len(encoded)

    def encode_images(
        self,
        images: Sequence[npt.ArrayLike],
        context: Context | None = None,
        progress: ProgressCallback | None = None,
    ) -> npt.NDArray[np.float32]:
        """Embeds decoded RGB images, each an H×W×3 uint8 array (rows may be strided, e.g.
        a crop ``img[10:200, 5:300]``; other layouts are copied once), with the same
        preprocessing as :meth:`encode_image_files` (``laic_clip_encode_images_rgb8``)."""
        arrays = [_rgb8(img, i) for i, img in enumerate(_sequence(images, "images"))]
        descs = (LaicImageRgb8 * max(len(arrays), 1))()
        for d, a in zip(descs, arrays):
            d.data = a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)) if a.size else None
            d.height, d.width = a.shape[0], a.shape[1]
            d.row_stride = a.strides[0] if a.size else 3 * a.shape[1]
        out = self._run("laic_clip_encode_images_rgb8", descs, len(arrays), context, progress)
        del arrays  # the pixels had to live until here
        return out

    def __repr__(self) -> str:
        if self.closed:
            return "<laic.ClipModel closed>"
        return f"<laic.ClipModel {self.path!r} embed_dim={self._embed_dim}>"
