"""Input images (files from elsewhere: data) at the values they mean, whatever encoding PIL opens: 8- and 16-bit
gray, 1-bit, palettes, CMYK, YCbCr, 32-bit floats in [0, 1]; transparent pixels composited onto black, said once.
What has no honest value range (32-bit integers, floats outside [0, 1], LAB, HSV, ...) is refused in one line."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from mixsep.errors import MixsepError

SAVE_INSTEAD = "save it as an 8- or 16-bit gray or RGB PNG"
COMPOSITED = "images with transparent pixels are composited onto black (transparent = 0)"
EXIF_ORIENTATION = 0x0112
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# PIL gives these formats' 16-bit gray as mode I, scaled to 0..65535 (a PGM's maxval included)
SIXTEEN_BIT_AS_I = ("PNG", "PPM")
# modes PIL converts without changing what the values mean (RGBX: padding; 1: 0/255; CMYK: PIL's exact inverse)
LOSSLESS_TO = {"1": "L", "RGBX": "RGB", "CMYK": "RGB", "RGBa": "RGBA", "PA": "RGBA"}
# mixsep separates 32x32 images (--resize takes others): a bigger one is refused from its header, before its
# pixels are decoded (a small, well-compressed PNG under PIL's own limit still decodes to gigabytes of floats)
MAX_SIDE = 4096
MAX_PIXELS = MAX_SIDE * MAX_SIDE


class Picture(NamedTuple):
    values: np.ndarray  # (H, W, C) float32 in [0, 1]; C = 1 (gray) or 3 (RGB)
    notes: tuple[str, ...]  # what was done that the user should hear of (said once per command)

    @property
    def gray(self) -> bool:
        return self.values.shape[2] == 1


def read_image(path) -> Picture:
    """The first frame of ``path``, turned upright as its EXIF orientation says, at its true values."""
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise MixsepError(
                    f"{path}: {img.width}x{img.height} pixels, over mixsep's cap of {MAX_SIDE}x{MAX_SIDE} "
                    f"({MAX_PIXELS:,} pixels): mixsep separates 32x32 images (--resize takes others up to the cap); "
                    "resize it first"
                )
            img.load()
            notes = ["only the first frame of multi-frame images is read"] if getattr(img, "n_frames", 1) > 1 else []
            image_format = img.format  # before a transposed copy loses it
            if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
                notes.append("images with an EXIF orientation are turned upright first")
                img = ImageOps.exif_transpose(img)
            channels, alpha = _channels(img, image_format, path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise MixsepError(f"{path}: not an image PIL can read ({type(err).__name__}: {err})") from err
    channels = channels[..., None] if channels.ndim == 2 else channels
    if alpha is not None and alpha.min() < 1:
        channels = channels * alpha[..., None]
        notes.append(COMPOSITED)
    return Picture(channels.astype(np.float32), tuple(notes))


def _channels(img: Image.Image, image_format: str | None, path) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W) or (H, W, C) float64 in [0, 1], and the alpha (H, W) or None."""
    transparent = img.info.get("transparency")
    if img.mode in ("P", "L", "RGB") and transparent is not None:  # a palette or one value means "transparent"
        img = img.convert("LA" if img.mode == "L" else "RGBA")
    elif img.mode == "P":
        img = img.convert("RGB")
        rgb = np.asarray(img)
        if (rgb == rgb[..., :1]).all():  # a gray palette: a gray image
            img = img.convert("L")
    img = img.convert(LOSSLESS_TO[img.mode]) if img.mode in LOSSLESS_TO else img
    mode, pixels = img.mode, np.asarray(img)
    if mode in ("L", "RGB"):
        return pixels / 255, None
    if mode in ("LA", "RGBA"):
        return pixels[..., :-1] / 255, pixels[..., -1] / 255
    if mode == "I" and (image_format not in SIXTEEN_BIT_AS_I or pixels.min() < 0 or pixels.max() > 65535):
        raise MixsepError(
            f"{path}: a 32-bit integer image (PIL mode I, {image_format}): its value range is not known; {SAVE_INSTEAD}"
        )
    if mode in (*SIXTEEN_BIT_MODES, "I"):
        alpha = (pixels != transparent).astype(np.float64) if isinstance(transparent, int) else None
        return pixels / 65535, alpha
    if mode == "F":
        return _unit_floats(pixels, path), None
    if mode == "YCbCr":
        return _ycbcr_to_rgb(pixels), None
    raise MixsepError(f"{path}: PIL reads it as mode {mode}, which has no value range mixsep can trust; {SAVE_INSTEAD}")


def _unit_floats(pixels: np.ndarray, path) -> np.ndarray:
    """32-bit floats mean values in [0, 1] (nothing else says which range they use); others are refused."""
    if not np.isfinite(pixels).all():
        raise MixsepError(f"{path}: a 32-bit float image with NaN or infinite values; {SAVE_INSTEAD}")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0 or high > 1:
        raise MixsepError(
            f"{path}: a 32-bit float image with values from {low:g} to {high:g}; mixsep reads float images in "
            f"[0, 1]: scale it to [0, 1], or {SAVE_INSTEAD}"
        )
    return pixels.astype(np.float64)


def _ycbcr_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """JPEG's (JFIF) full-range YCbCr in floating point (PIL's own conversion rounds twice: off by up to 3/255)."""
    y, cb, cr = (pixels[..., i].astype(np.float64) for i in range(3))
    cb, cr = cb - 128, cr - 128
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return np.clip(rgb / 255, 0, 1)
