"""Every encoding PIL opens is read at the values it means (``mixsep.images.read_image``), tested against an
8-bit reference of the same picture (equal within 1/255), or refused with one line saying what to save instead.
Files are written to disk in each encoding and read back as ``separate`` and ``mix`` read them."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from mixsep.errors import MixsepError
from mixsep.images import COMPOSITED, read_image
from tests.helpers import run_here

RNG = np.random.default_rng(43)
GRAY = RNG.integers(0, 256, (32, 32), dtype=np.uint8)  # the 8-bit references
RGB = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (32, 32), dtype=np.uint8)
ALPHA[0, 0], ALPHA[0, 1] = 0, 255  # fully transparent and fully opaque pixels among the partial ones
PALETTE = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
INDICES = RNG.integers(0, 256, (32, 32), dtype=np.uint8)


def png_chunks(path: Path, width: int, height: int, color_type: int, rows: np.ndarray) -> None:
    """A PNG written byte by byte (PIL cannot write 16-bit RGB): IHDR, one IDAT of unfiltered rows, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rows)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def palette_image(indices: np.ndarray, palette: np.ndarray) -> Image.Image:
    img = Image.fromarray(indices, "P")
    img.putpalette(palette.reshape(-1).tolist())
    return img


# (name, file name, how it is written, the 8-bit reference it must equal)
def _gray_l(p):
    Image.fromarray(GRAY, "L").save(p)


def _gray_16(p):  # mode I;16, what PIL gives for a 16-bit gray PNG or TIFF
    Image.fromarray(GRAY.astype(np.uint16) * 257).save(p)


def _gray_16b(p):
    Image.frombytes("I;16B", (32, 32), (GRAY.astype(np.uint16) * 257).astype(">u2").tobytes()).save(p)


def _gray_pgm12(p):  # maxval 4095: PIL gives mode I, scaled to 16 bits
    twelve = np.round(GRAY / 255 * 4095).astype(">u2")
    p.write_bytes(b"P5 32 32 4095\n" + twelve.tobytes())


def _gray_float(p):
    Image.fromarray((GRAY / 255).astype(np.float32), "F").save(p)


def _gray_palette(p):
    palette_image(GRAY, np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)).save(p)


def _gray_la_opaque(p):
    Image.fromarray(np.stack([GRAY, np.full_like(GRAY, 255)], -1), "LA").save(p)


def _one_bit(p):
    Image.fromarray(GRAY > 127).save(p)


def _rgb(p):
    Image.fromarray(RGB).save(p)


RGB16 = RGB.astype(np.uint16) * 257 + np.where(RGB < 255, 200, 0).astype(np.uint16)  # not all multiples of 257


def _rgb_16(p):  # PIL opens it as 8-bit RGB (its high bytes): within 1/255 of the 16-bit values
    png_chunks(p, 32, 32, 2, RGB16.reshape(32, 96))


def _rgba_opaque(p):
    Image.fromarray(np.dstack([RGB, np.full_like(GRAY, 255)]), "RGBA").save(p)


def _palette(p):
    palette_image(INDICES, PALETTE).save(p)


def _cmyk(p):
    Image.fromarray(RGB).convert("CMYK").save(p)


GRAY16_CLEAR = int(GRAY[5, 5]) * 257  # the 16-bit gray value a tRNS chunk makes transparent
GRAY_REF, BW_REF, RGB_REF = GRAY / 255, (GRAY > 127).astype(float), RGB / 255
ENCODINGS = [
    ("8-bit gray (L)", "g.png", _gray_l, GRAY_REF),
    ("16-bit gray PNG (I;16)", "g16.png", _gray_16, GRAY_REF),
    ("16-bit gray TIFF (I;16)", "g16.tif", _gray_16, GRAY_REF),
    ("16-bit big-endian gray TIFF (I;16B)", "g16b.tif", _gray_16b, GRAY_REF),
    ("16-bit gray PGM (I)", "g16.pgm", _gray_16, GRAY_REF),
    ("12-bit gray PGM (I, maxval 4095)", "g12.pgm", _gray_pgm12, GRAY_REF),
    ("32-bit float gray TIFF in [0, 1] (F)", "f.tif", _gray_float, GRAY_REF),
    ("gray palette (P)", "gp.png", _gray_palette, GRAY_REF),
    ("opaque gray with alpha (LA)", "la.png", _gray_la_opaque, GRAY_REF),
    ("1-bit (1)", "bw.png", _one_bit, BW_REF),
    ("8-bit RGB PNG", "c.png", _rgb, RGB_REF),
    ("8-bit RGB TIFF", "c.tif", _rgb, RGB_REF),
    ("8-bit RGB BMP", "c.bmp", _rgb, RGB_REF),
    ("16-bit RGB PNG", "c16.png", _rgb_16, RGB16 / 65535),
    ("opaque RGBA", "rgba.png", _rgba_opaque, RGB_REF),
    ("colour palette (P)", "p.png", _palette, PALETTE[INDICES] / 255),
    ("colour palette GIF (P)", "p.gif", _palette, PALETTE[INDICES] / 255),
    ("CMYK TIFF", "cmyk.tif", _cmyk, RGB_REF),
]
if features.check("webp"):
    ENCODINGS.append(("lossless WebP", "c.webp", lambda p: Image.fromarray(RGB).save(p, lossless=True), RGB_REF))


@pytest.mark.parametrize("name, write, reference", [e[1:] for e in ENCODINGS], ids=[e[0] for e in ENCODINGS])
def test_each_encoding_reads_as_its_8_bit_reference(name, write, reference, tmp_path):
    path = tmp_path / name
    write(path)
    picture = read_image(path)
    values = picture.values[..., 0] if reference.ndim == 2 else picture.values
    assert picture.gray == (reference.ndim == 2)
    assert values.shape == reference.shape and np.abs(values - reference).max() <= 1 / 255 + 1e-6
    assert picture.notes == ()  # nothing was done that needs saying


def test_a_16_bit_gray_png_was_read_nearly_white_and_now_separates_as_its_8_bit_twin(tmp_path, capfd):
    _gray_l(tmp_path / "g8.png")
    _gray_16(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as img:  # the old reader: PIL's convert("L") clips 16-bit values
        old = np.asarray(img.convert("L"))
    assert img.mode == "I;16" and (old == 255).mean() > 0.95 and (GRAY == 255).mean() < 0.01
    for name in ("g8", "g16"):
        done = run_here(
            ["python", "-m", "mixsep.separate", str(tmp_path / f"{name}.png"), "--out", str(tmp_path / name)], capfd
        )
        assert done.returncode == 0, done.stderr[-3000:]
    for source in ("gray", "color"):
        eight, sixteen = (read_image(tmp_path / n / f"{n}.{source}.png").values for n in ("g8", "g16"))
        assert np.array_equal(eight, sixteen)


def test_ycbcr_is_read_in_floating_point_within_its_own_rounding(tmp_path):
    r, g, b = (RGB[..., i].astype(float) for i in range(3))  # JPEG's (JFIF) YCbCr of the reference, rounded
    y = 0.299 * r + 0.587 * g + 0.114 * b
    ycc = np.stack([y, 128 + (b - y) / 1.772, 128 + (r - y) / 1.402], axis=-1)
    path = tmp_path / "ycc.tif"
    Image.fromarray(np.clip(np.round(ycc), 0, 255).astype(np.uint8), "YCbCr").save(path)
    with Image.open(path) as img:
        assert img.mode == "YCbCr"
        pil = np.asarray(img.convert("RGB")) / 255
    # Y, Cb and Cr are themselves rounded to 8 bits: up to 1.4/255 from the reference in R and B
    assert np.abs(read_image(path).values - RGB_REF).max() <= 1.5 / 255
    assert np.abs(pil - RGB_REF).max() > 1.5 / 255  # PIL's own conversion rounds in fixed point


@pytest.mark.parametrize(
    "mode, write",
    [
        ("LA", lambda p: Image.fromarray(np.stack([GRAY, ALPHA], -1), "LA").save(p)),
        ("RGBA", lambda p: Image.fromarray(np.dstack([RGB, ALPHA]), "RGBA").save(p)),
        ("PA", lambda p: palette_image(INDICES, PALETTE).save(p, transparency=bytes(ALPHA[0]))),
        ("L+tRNS", lambda p: Image.fromarray(GRAY, "L").save(p, transparency=int(GRAY[5, 5]))),
        (
            "I;16+tRNS",
            lambda p: Image.fromarray(GRAY.astype(np.uint16) * 257).save(p, transparency=int(GRAY[5, 5]) * 257),
        ),
    ],
)
def test_transparent_pixels_are_composited_onto_black_and_said(mode, write, tmp_path):
    path = tmp_path / "a.png"
    write(path)
    with Image.open(path) as img:
        rgba = np.asarray(img.convert("RGBA")) / 255 if mode != "I;16+tRNS" else None
    if rgba is None:  # PIL's RGBA of a 16-bit image clips: the reference is the 8-bit twin's
        expected, alpha = GRAY_REF[..., None], (GRAY != GRAY[5, 5])[..., None]
    else:
        expected, alpha = rgba[..., :3], rgba[..., 3:]
    picture = read_image(path)
    values = np.repeat(picture.values, 3, axis=2) if picture.gray and rgba is not None else picture.values
    assert alpha.min() == 0 and np.abs(values - expected * alpha).max() <= 1 / 255 + 1e-6
    assert picture.notes == (COMPOSITED,)


@pytest.mark.parametrize(
    "write, words",
    [
        (lambda p: Image.fromarray(GRAY.astype(np.int32) * 70000, "I").save(p), "32-bit integer image"),
        (lambda p: Image.fromarray((GRAY * 4.0).astype(np.float32), "F").save(p), "values from 0 to 1020"),
        (lambda p: Image.fromarray(np.full((32, 32), np.nan, np.float32), "F").save(p), "NaN or infinite"),
        (lambda p: Image.fromarray(RGB).convert("LAB").save(p), "mode LAB"),
    ],
    ids=["32-bit-int", "float-out-of-range", "float-nan", "lab"],
)
def test_encodings_without_an_honest_range_are_refused_naming_what_to_save(write, words, tmp_path):
    path = tmp_path / "x.tif"
    write(path)
    with pytest.raises(MixsepError) as refused:
        read_image(path)
    assert words in str(refused.value) and "save it as an 8- or 16-bit gray or RGB PNG" in str(refused.value)


def test_mix_reads_a_16_bit_gray_image_as_its_8_bit_twin(tmp_path, capfd):
    _gray_l(tmp_path / "g8.png")
    _gray_16(tmp_path / "g16.png")
    _rgb(tmp_path / "c.png")
    for name in ("g8", "g16"):
        done = run_here(["python", "-m", "mixsep.mix", str(tmp_path / f"{name}.png"), str(tmp_path / "c.png"),
                         "-o", str(tmp_path / f"m_{name}.png")], capfd)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    assert np.array_equal(read_image(tmp_path / "m_g8.png").values, read_image(tmp_path / "m_g16.png").values)
