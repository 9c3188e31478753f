"""Make mean images the way the training data does.

    python -m mixsep.mix GRAY_IMAGE COLOR_IMAGE -o mix.png
    python -m mixsep.mix --test-pairs N -o DIR      # N fixed test pairs: DIR/{mix,gray,color}/NNNNN.png

The gray image is resized 28x28 -> 32x32 like MNIST (PIL bilinear) and repeated to three channels;
the mean is rounded to 8 bits. Exported test pairs are the same fixed pairs ``mixsep.evaluate`` scores.
Images are read at their true values (``mixsep.images``: 16-bit, palettes, alpha, ...) and rounded to 8 bits as
the training data is. Outputs never replace an input, an earlier output only with ``--overwrite``, and a symbolic
link is replaced, never written through.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from mixsep.data.datamodule import MixDataModule, to_float_batch
from mixsep.data.sources import resize_mnist
from mixsep.errors import ArgumentParser, MixsepError, one_line_errors
from mixsep.files import check_outputs, refuse_linked_folder, write_atomically
from mixsep.images import read_image
from mixsep.sheet import to_png

FOLDERS = ("mix", "gray", "color")  # --test-pairs' subfolders
LUMA = np.array([0.299, 0.587, 0.114])  # PIL's (ITU-R 601) weights: a colour image given as the gray one


def eight_bit(path: Path, gray: bool) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 of the image at its true values, rounded as 8-bit training data is."""
    picture = read_image(path)
    for note in picture.notes:
        print(f"mixsep.mix: {note}")
    values = picture.values.astype(np.float64)
    if gray:
        values = values[..., 0] if picture.gray else values @ LUMA
    elif picture.gray:
        values = np.repeat(values, 3, axis=2)
    return np.round(values * 255).astype(np.uint8)


def read_gray(path: Path) -> torch.Tensor:
    """(1, 1, 32, 32) uint8; a 28x28 image is resized exactly as MNIST is for training."""
    gray = torch.from_numpy(eight_bit(path, gray=True))
    if tuple(gray.shape) == (28, 28):
        return resize_mnist(gray[None])
    if tuple(gray.shape) != (32, 32):
        raise MixsepError(f"{path}: the gray image is {gray.shape[1]}x{gray.shape[0]}; give a 28x28 or 32x32 one")
    return gray[None, None]


def read_color(path: Path) -> torch.Tensor:
    """(1, 3, 32, 32) uint8."""
    rgb = torch.from_numpy(eight_bit(path, gray=False))
    if tuple(rgb.shape[:2]) != (32, 32):
        raise MixsepError(f"{path}: the colour image is {rgb.shape[1]}x{rgb.shape[0]}; give a 32x32 one")
    return rgb.permute(2, 0, 1)[None]


def write_png(image, path: Path) -> None:
    """``to_png`` written whole, replacing (never writing through) a link at ``path``."""
    write_atomically(path, lambda tmp: to_png(image, tmp), keep_suffix=True)


def export_test_pairs(n: int, out: Path, data_root: str | None, cache_dir: str | None, overwrite: bool) -> int:
    for folder in FOLDERS:  # mixsep names these, the user only ``out``
        refuse_linked_folder(out / folder, "-o")
    targets = [out / folder / f"{i:05d}.png" for i in range(n) for folder in FOLDERS]
    if replaced := check_outputs(targets, [], overwrite, "-o"):
        print(f"mixsep.mix: --overwrite: replacing {len(replaced)} earlier files in {out}")
    dm = MixDataModule(root=data_root, cache_dir=cache_dir, test_pairs=n, val_holdout=1)
    dm.setup("test")
    mix, gray, color = dm.fixed_batch("test", n)
    for i in range(len(mix)):
        for folder, images in zip(FOLDERS, (mix, gray, color)):
            write_png(images[i], out / folder / f"{i:05d}.png")
    return len(mix)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="mixsep mix", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", help="GRAY_IMAGE COLOR_IMAGE")
    parser.add_argument("-o", "--out", required=True, help="mix PNG to write (a folder with --test-pairs)")
    parser.add_argument("--test-pairs", type=int, help="export this many of the fixed test pairs instead")
    parser.add_argument("--data-root", default=None, help="for --test-pairs (default: MIXSEP_DATA_ROOT)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier -o")
    args = parser.parse_args(argv)
    out = Path(args.out)
    with one_line_errors(os_error="{error}: check the two images, and that -o can be written"):
        if args.test_pairs is not None:
            if args.images or args.test_pairs < 1:
                parser.error("--test-pairs N (N >= 1) takes no images")
            count = export_test_pairs(args.test_pairs, out, args.data_root, args.cache_dir, args.overwrite)
            print(f"mixsep.mix: wrote {count} test pairs to {out}/mix (inputs) and {out}/gray, {out}/color (truth)")
            return 0
        if len(args.images) != 2:
            parser.error("give GRAY_IMAGE COLOR_IMAGE (or --test-pairs N)")
        gray_path, color_path = map(Path, args.images)
        missing = [str(p) for p in (gray_path, color_path) if not p.is_file()]
        if missing:
            sys.exit(f"mixsep: no such image: {', '.join(missing)}")
        if check_outputs([out], [gray_path, color_path], args.overwrite, "-o"):
            print(f"mixsep.mix: --overwrite: replacing {out}")
        mix, _, _ = to_float_batch(read_gray(gray_path), read_color(color_path))  # the training data's mix
        write_png(mix[0], out)
        print(f"mixsep.mix: wrote {out}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
