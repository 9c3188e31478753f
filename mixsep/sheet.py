"""Contact sheets: one row per pair (or input file), one column per image kind (samples.png, separations.png).
Drawn with PIL alone: a sheet of a few dozen images in an eighth of matplotlib's time, and no torch needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def to_uint8(images) -> np.ndarray:
    """Images (B, 3, H, W) in [0, 1] (a torch tensor or an array) -> (B, H, W, 3) uint8, rounded."""
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    return (np.clip(np.asarray(images, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)


def to_png(image, path: Path, size: tuple[int, int] = (32, 32)) -> None:
    """(3, H, W) in [0, 1] (a tensor or an array) -> 8-bit RGB PNG (rounded), resized (bicubic) to ``size``."""
    picture = Image.fromarray(to_uint8(image[None])[0], "RGB")
    if size != picture.size:
        picture = picture.resize(size, Image.BICUBIC)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def save_samples(path: str | Path, columns: list, titles: tuple[str, ...], row_labels=None, scale: int = 4) -> None:
    """``columns``: images (B, 3, H, W) in [0, 1], each pixel drawn as a ``scale`` x ``scale`` block;
    ``row_labels`` (e.g. the input file names) at the left of each row."""
    font = ImageFont.load_default(11)  # a scalable font (FreeType), not the fixed bitmap one
    pictures = [to_uint8(c) for c in columns]
    rows, (height, width) = len(pictures[0]), pictures[0].shape[1:3]
    gap, header = 8, 20
    cell = max(width * scale, *(int(font.getlength(t)) + 4 for t in titles))
    left = max((int(font.getlength(label)) + gap for label in row_labels or []), default=0)
    sheet = Image.new(
        "RGB", (left + gap + len(columns) * (cell + gap), header + rows * (height * scale + gap)), "white"
    )
    draw = ImageDraw.Draw(sheet)
    for c, (pixels, title) in enumerate(zip(pictures, titles)):
        x = left + gap + c * (cell + gap)
        draw.text((x + cell // 2, header // 2), title, fill="black", font=font, anchor="mm")
        for r in range(rows):
            tile = Image.fromarray(pixels[r]).resize((width * scale, height * scale), Image.NEAREST)
            sheet.paste(tile, (x + (cell - width * scale) // 2, header + r * (height * scale + gap)))
    for r, label in enumerate(row_labels or []):
        y = header + r * (height * scale + gap) + height * scale // 2
        draw.text((left - gap // 2, y), label, fill="black", font=font, anchor="rm")
    sheet.save(path)
