"""Make mean images the way the training data does.

    python -m mixsep.mix GRAY_IMAGE COLOR_IMAGE -o mix.png
    python -m mixsep.mix --test-pairs N -o DIR      # N fixed test pairs: DIR/{mix,gray,color}/NNNNN.png

The gray image is resized 28x28 -> 32x32 like MNIST (PIL bilinear) and repeated to three channels;
the mean is rounded to 8 bits. Exported test pairs are the same fixed pairs ``mixsep.evaluate`` scores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mixsep.data.datamodule import MixDataModule, to_float_batch
from mixsep.data.sources import resize_mnist
from mixsep.errors import ArgumentParser, MixsepError, one_line_errors
from mixsep.report.sheet import to_png


def read_gray(path: Path) -> torch.Tensor:
    """(1, 1, 32, 32) uint8; a 28x28 image is resized exactly as MNIST is for training."""
    with Image.open(path) as img:
        gray = torch.from_numpy(np.asarray(img.convert("L")).copy())
    if tuple(gray.shape) == (28, 28):
        return resize_mnist(gray[None])
    if tuple(gray.shape) != (32, 32):
        raise MixsepError(f"{path}: the gray image is {gray.shape[1]}x{gray.shape[0]}; give a 28x28 or 32x32 one")
    return gray[None, None]


def read_color(path: Path) -> torch.Tensor:
    """(1, 3, 32, 32) uint8."""
    with Image.open(path) as img:
        rgb = torch.from_numpy(np.asarray(img.convert("RGB")).copy())
    if tuple(rgb.shape[:2]) != (32, 32):
        raise MixsepError(f"{path}: the colour image is {rgb.shape[1]}x{rgb.shape[0]}; give a 32x32 one")
    return rgb.permute(2, 0, 1)[None]


def export_test_pairs(n: int, out: Path, data_root: str | None, cache_dir: str | None) -> int:
    dm = MixDataModule(root=data_root, cache_dir=cache_dir, test_pairs=n, val_holdout=1)
    dm.setup("test")
    mix, gray, color = dm.fixed_batch("test", n)
    for i in range(len(mix)):
        for folder, images in (("mix", mix), ("gray", gray), ("color", color)):
            to_png(images[i], out / folder / f"{i:05d}.png")
    return len(mix)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m mixsep.mix", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", help="GRAY_IMAGE COLOR_IMAGE")
    parser.add_argument("-o", "--out", required=True, help="mix PNG to write (a folder with --test-pairs)")
    parser.add_argument("--test-pairs", type=int, help="export this many of the fixed test pairs instead")
    parser.add_argument("--data-root", default=None, help="for --test-pairs (default: MIXSEP_DATA_ROOT)")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    out = Path(args.out)
    with one_line_errors(os_error="{error}: check the two images, and that -o can be written"):
        if args.test_pairs is not None:
            if args.images or args.test_pairs < 1:
                parser.error("--test-pairs N (N >= 1) takes no images")
            count = export_test_pairs(args.test_pairs, out, args.data_root, args.cache_dir)
            print(f"mixsep.mix: wrote {count} test pairs to {out}/mix (inputs) and {out}/gray, {out}/color (truth)")
            return 0
        if len(args.images) != 2:
            parser.error("give GRAY_IMAGE COLOR_IMAGE (or --test-pairs N)")
        gray_path, color_path = map(Path, args.images)
        missing = [str(p) for p in (gray_path, color_path) if not p.is_file()]
        if missing:
            sys.exit(f"mixsep: no such image: {', '.join(missing)}")
        if out.resolve() in (gray_path.resolve(), color_path.resolve()):
            parser.error(f"-o {out} would overwrite an input")
        mix, _, _ = to_float_batch(read_gray(gray_path), read_color(color_path))  # the training data's mix
        to_png(mix[0], out)
        print(f"mixsep.mix: wrote {out}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
