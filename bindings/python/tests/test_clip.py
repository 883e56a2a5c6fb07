"""ClipModel on the committed random CLIP fixtures (``tests/fixtures/clip``, made by
``tests/fixtures/make_clip_fixture.py`` from transformers' CLIPModel): embeddings equal the
fixture's expected values, shapes, normalisation, layouts, errors, progress, lifetime."""

from __future__ import annotations

import json
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

import laic

FIXTURES = REPO / "tests" / "fixtures" / "clip"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
PROMPTS: list[str] = EXPECTED["prompts"]
IMAGES: list[Path] = [FIXTURES / "images" / name for name in EXPECTED["images"]]
TOL = 1e-4  # as tests/clip.rs: f32 weights against transformers


def read_png_rgb8(path: Path) -> np.ndarray:
    """Decodes a non-interlaced 8-bit RGB PNG (the fixtures' format) without Pillow."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    assert header is not None
    w, h, depth, colour, _, _, interlace = header
    assert (depth, colour, interlace) == (8, 2, 0), header
    raw = zlib.decompress(idat)
    stride, bpp = 3 * w, 3
    out = np.zeros((h, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, dtype=np.int32)
        for x in range(stride):
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[x] = (line[x] + pred) & 0xFF
        out[y] = cur
        prev = cur
    return out.astype(np.uint8).reshape(h, w, 3)


@pytest.fixture(scope="module")
def model():
    with laic.ClipModel(FIXTURES / "hf") as m:
        yield m


@pytest.fixture(scope="module")
def decoded():
    return [read_png_rgb8(p) for p in IMAGES]


def assert_close(got: np.ndarray, want, tol: float = TOL) -> None:
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape and got.dtype == np.float32
    err = float(np.max(np.abs(got.astype(np.float64) - want)))
    assert err <= tol, f"max error {err}"


def assert_unit_rows(x: np.ndarray) -> None:
    np.testing.assert_allclose(np.linalg.norm(x.astype(np.float64), axis=1), 1.0, atol=1e-5)


def test_hf_layout_texts_and_image_files_equal_transformers(model):
    assert model.embed_dim == 20
    t = model.encode_texts(PROMPTS)
    i = model.encode_image_files(IMAGES)
    assert t.shape == (len(PROMPTS), 20) and i.shape == (len(IMAGES), 20)
    assert_close(t, EXPECTED["hf"]["text"])
    assert_close(i, EXPECTED["hf"]["image"])
    assert_unit_rows(t)
    assert_unit_rows(i)


def test_openai_layout_file_with_inferred_config_equals_transformers():
    with laic.Context("cpu", n_threads=3) as ctx:
        with laic.ClipModel(str(FIXTURES / "openai" / "model.safetensors"), context=ctx) as m:
            assert_close(m.encode_texts(PROMPTS), EXPECTED["openai"]["text"])
            assert_close(
                m.encode_image_files([str(p) for p in IMAGES]), EXPECTED["openai"]["image"]
            )


def test_load_options_choose_the_device_and_reject_unknown_values():
    # On the CPU the precision does not apply: an explicit CPU model equals transformers.
    with laic.ClipModel(FIXTURES / "hf", device="cpu", precision="bf16") as m:
        assert_close(m.encode_texts(PROMPTS), EXPECTED["hf"]["text"])
    with pytest.raises(ValueError, match="device"):
        laic.ClipModel(FIXTURES / "hf", device="gpu")
    with pytest.raises(ValueError, match="precision"):
        laic.ClipModel(FIXTURES / "hf", precision="f8")


def test_draft_decoding_is_chosen_by_name_and_checked(model):
    # A 1803×2011 JPEG decodes at 1/8 scale as a draft; a 403×301 one in full either way.
    big, small = FIXTURES / "preprocess" / "draft8.jpg", FIXTURES / "preprocess" / "landscape.jpg"
    full = model.encode_image_files([big, small])
    draft = model.encode_image_files([big, small], decode="draft")
    np.testing.assert_array_equal(model.encode_image_files([big, small], decode="full"), full)
    assert not np.array_equal(draft[0], full[0])
    np.testing.assert_array_equal(draft[1], full[1])
    assert_unit_rows(draft)
    with pytest.raises(ValueError, match="decode"):
        model.encode_image_files([small], decode="fast")


def test_exif_orientation_turns_a_sideways_jpeg_upright(model):
    # orient6.jpg is stored sideways with EXIF orientation 6, orient1.jpg the same pixels upright.
    sideways = FIXTURES / "preprocess" / "orient6.jpg"
    stored = FIXTURES / "preprocess" / "orient1.jpg"
    plain = model.encode_image_files([sideways, stored])
    upright = model.encode_image_files([sideways, stored], exif_orientation=True)
    np.testing.assert_array_equal(plain[0], plain[1])
    assert not np.array_equal(upright[0], plain[0])
    np.testing.assert_array_equal(upright[1], plain[1])
    out, failed = model.encode_image_files_skipping([sideways], exif_orientation=True)
    np.testing.assert_array_equal(out[0], upright[0])
    assert failed == {}


def test_skipping_reports_unreadable_files_and_embeds_the_rest(model, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    files = [IMAGES[0], tmp_path / "missing.png", broken, IMAGES[1]]
    out, failed = model.encode_image_files_skipping(files, decode="draft")
    assert failed == {1: laic.Status.IO, 2: laic.Status.FORMAT}
    np.testing.assert_array_equal(out[[0, 3]], model.encode_image_files([IMAGES[0], IMAGES[1]]))
    assert not out[1:3].any()
    with pytest.raises(laic.LaicIOError, match="missing.png"):
        model.encode_image_files(files)
    with pytest.raises(laic.InvalidArgumentError, match="nothing to encode"):
        model.encode_image_files_skipping([])


def test_f16_weights_are_within_two_percent():
    with laic.ClipModel(FIXTURES / "hf-f16") as m:
        for got, want in [
            (m.encode_texts(PROMPTS), EXPECTED["hf"]["text"]),
            (m.encode_image_files(IMAGES), EXPECTED["hf"]["image"]),
        ]:
            diff = np.linalg.norm(got.astype(np.float64) - np.asarray(want), axis=1)
            assert float(diff.max()) <= 2e-2


def test_decoded_images_equal_files_for_every_layout(model, decoded):
    from_files = model.encode_image_files(IMAGES)
    np.testing.assert_array_equal(model.encode_images(decoded), from_files)
    # Row-strided views are read in place; others (non-contiguous pixels, a reversed image)
    # are copied: each must equal the same pixels given contiguously.
    big = [np.pad(img, ((3, 4), (5, 6), (0, 0))) for img in decoded]
    crops = [b[3:-4, 5:-6] for b in big]
    assert not crops[0].flags.c_contiguous
    np.testing.assert_array_equal(model.encode_images(crops), from_files)
    planar = [np.ascontiguousarray(img.transpose(2, 0, 1)).transpose(1, 2, 0) for img in decoded]
    np.testing.assert_array_equal(model.encode_images(planar), from_files)
    flipped = [img[::-1] for img in decoded]
    np.testing.assert_array_equal(
        model.encode_images(flipped), model.encode_images([f.copy() for f in flipped])
    )
    assert not np.array_equal(model.encode_images(flipped), from_files)


def test_one_prompt_alone_equals_its_row_in_a_batch(model):
    batch = model.encode_texts(PROMPTS)
    for k in (0, 3, len(PROMPTS) - 1):
        np.testing.assert_allclose(model.encode_texts([PROMPTS[k]])[0], batch[k], atol=1e-5)


def test_progress_reports_and_cancels(model):
    seen: list[tuple[str, float]] = []
    model.encode_texts(PROMPTS, progress=lambda s, f: seen.append((s, f)))
    assert seen and {s for s, _ in seen} == {"text_encoding"} and seen[-1][1] == 1.0
    seen.clear()
    model.encode_image_files(IMAGES, progress=lambda s, f: seen.append((s, f)))
    assert seen and {s for s, _ in seen} == {"image_encoding"} and seen[-1][1] == 1.0
    with pytest.raises(laic.CancelledError):
        model.encode_texts(PROMPTS, progress=lambda s, f: False)

    class Boom(Exception):
        pass

    def boom(stage, fraction):
        raise Boom(stage)

    with pytest.raises(Boom, match="image_encoding"):
        model.encode_image_files(IMAGES, progress=boom)


def test_bad_paths_raise_with_the_library_message(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(laic.LaicIOError) as e:
        laic.ClipModel(missing)
    assert str(missing) in str(e.value) and e.value.status == laic.Status.IO
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(laic.FormatError):
        laic.ClipModel(bad)


def test_bad_image_files_name_the_file(model, tmp_path):
    with pytest.raises(laic.LaicIOError, match="missing.png"):
        model.encode_image_files([IMAGES[0], tmp_path / "missing.png"])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"definitely not an image")
    with pytest.raises(laic.FormatError, match="junk.png"):
        model.encode_image_files([junk])


def test_invalid_inputs_raise(model, decoded):
    with pytest.raises(laic.InvalidArgumentError):
        model.encode_texts([])  # the library refuses n == 0
    with pytest.raises(laic.InvalidArgumentError, match="list"):
        model.encode_texts("a photo of a cat.")
    with pytest.raises(laic.InvalidArgumentError, match=r"texts\[1\]"):
        model.encode_texts(["ok", 3])
    with pytest.raises(laic.InvalidArgumentError, match=r"texts\[0\].*UTF-8"):
        model.encode_texts(["\ud800"])
    with pytest.raises(laic.InvalidArgumentError, match="NUL"):
        model.encode_texts(["a\0b"])
    with pytest.raises(laic.InvalidArgumentError, match=r"paths\[0\]"):
        model.encode_image_files([42])
    with pytest.raises(laic.InvalidArgumentError, match="uint8"):
        model.encode_images([decoded[0].astype(np.float32)])
    with pytest.raises(laic.InvalidArgumentError, match=r"images\[1\].*shape"):
        model.encode_images([decoded[0], decoded[1][:, :, :2]])
    with pytest.raises(laic.InvalidArgumentError, match=r"1"):
        model.encode_images([decoded[0], np.zeros((0, 5, 3), np.uint8)])
    with pytest.raises(laic.InvalidArgumentError):
        model.encode_images([])
    assert isinstance(laic.InvalidArgumentError("x", laic.Status.INVALID_ARGUMENT), ValueError)


def test_threads_share_one_model(model):
    want = model.encode_texts(PROMPTS)
    results: list[np.ndarray] = []

    def work():
        results.append(model.encode_texts(PROMPTS))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_context_manager_closes_and_close_is_idempotent():
    with laic.ClipModel(FIXTURES / "hf") as m:
        assert not m.closed and "embed_dim=20" in repr(m)
    assert m.closed and "closed" in repr(m)
    m.close()
    with pytest.raises(laic.InvalidArgumentError, match="closed"):
        m.encode_texts(["x"])
    with pytest.raises(laic.InvalidArgumentError, match="closed"):
        _ = m.embed_dim


def test_every_c_function_of_the_header_is_declared_and_bound():
    import re

    from laic import _ffi

    header = (REPO / "include" / "laic.h").read_text(encoding="utf-8")
    declared = set(re.findall(r"^[A-Za-z][\w \*]*?\b(laic_\w+)\(", header, re.MULTILINE))
    assert "laic_clip_encode_images_rgb8" in declared and len(declared) > 20
    assert declared == set(_ffi.SIGNATURES)
    raw = _ffi.lib()
    assert [name for name in sorted(declared) if not raw.has(name)] == []
