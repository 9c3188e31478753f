"""Bad-input rows (read by tests/user_paths/test_bad_input.py): run records from elsewhere that are not of the
kinds mixsep writes (metrics.json not an object, a field of another type, per-pair scores that are not numbers),
and an image too large to decode (a small PNG of 10000x8900 black pixels, under PIL's own limit)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SEPARATE, MIX, REPORT = (["python", "-m", f"mixsep.{c}"] for c in ("separate", "mix", "report"))


def _record(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(text)
    return folder


def _scores(folder: Path, **arrays) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "scores.npz", **arrays)
    return folder


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def black_png(path: Path, width: int = 10000, height: int = 8900) -> Path:
    """An RGB PNG of black pixels, compressed row by row (a few hundred kB on disk, ~267 MB as pixels)."""
    packer, row = zlib.compressobj(9), bytes(1 + 3 * width)  # filter byte 0, then the row's zeros
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


SCORES = dict(pair=np.arange(4), mnist_psnr=np.ones(4), cifar_psnr=np.ones(4))

ROWS = [
    (
        "report-record-a-list",
        lambda t, r: REPORT + [str(_record(t / "dl" / "runA", "[]\n").parent)],
        "runA/metrics.json: a list, not a JSON object",
    ),
    (
        "report-record-field-kind",
        lambda t, r: REPORT + [str(_record(t / "dl" / "runA", '{"test/mnist_psnr": 30, "params": "x"}').parent)],
        'its field params is a string ("x"), not an integer',
    ),
    (
        "report-compare-scores-not-numbers",
        lambda t, r: (
            REPORT
            + [
                "--compare",
                str(_scores(t / "a", **SCORES)),
                str(_scores(t / "b", **{**SCORES, "cifar_psnr": ["x"] * 4})),
            ]
        ),
        "its cifar_psnr (<U1, shape (4,)) is not one number per pair",
    ),
    (
        "separate-image-too-large",
        lambda t, r: SEPARATE + [str(black_png(t / "big.png"))],
        "10000x8900 pixels, over mixsep's cap of 4096x4096",
    ),
    (
        "mix-image-too-large",
        lambda t, r: MIX + [str(black_png(t / "big.png")), str(black_png(t / "c.png", 32, 32)), "-o", str(t / "m.png")],
        "10000x8900 pixels, over mixsep's cap of 4096x4096",
    ),
]
