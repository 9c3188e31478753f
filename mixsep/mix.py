"""Make mean images the way the training data does.

    python -m mixsep.mix GRAY_IMAGE COLOR_IMAGE -o mix.png
    python -m mixsep.mix --test-pairs N -o DIR      # N fixed test pairs: DIR/{mix,gray,color}/NNNNN.png

A 28x28 gray image is resized to 32x32 like MNIST; images are read at their true values (``mixsep.images``) and
rounded to 8 bits, as the training data is. Outputs never replace an input, an earlier output only with
``--overwrite``, and a symbolic link is replaced, never written through.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from mixsep.data.datamodule import MixDataModule, to_float_batch
from mixsep.data.sources import resize_mnist
from mixsep.errors import ArgumentParser, MixsepError, one_line_errors, positive_int
from mixsep.files import check_outputs, refuse_linked_folder, write_atomically
from mixsep.images import read_image
from mixsep.sheet import to_png

FOLDERS = ("mix", "gray", "color")  # --test-pairs' subfolders
LUMA = np.array([0.299, 0.587, 0.114])  # PIL's (ITU-R 601) weights: a colour image given as the gray one


def read_8bit(path: Path, gray: bool) -> torch.Tensor:
    """(1, C, H, W) uint8 of the image at its true values (C = 1 for ``gray``, else 3), rounded as 8-bit data is."""
    picture = read_image(path)
    for note in picture.notes:
        print(f"mixsep.mix: {note}")
    values = picture.values.astype(np.float64)
    if gray:
        values = values[..., :1] if picture.gray else (values @ LUMA)[..., None]
    elif picture.gray:
        values = np.repeat(values, 3, axis=2)
    images = torch.from_numpy(np.round(values * 255).astype(np.uint8)).permute(2, 0, 1)[None]
    if gray and images.shape[2:] == (28, 28):
        return resize_mnist(images[:, 0])  # exactly as MNIST is resized for training
    if images.shape[2:] != (32, 32):
        what, sizes = ("gray", "a 28x28 or 32x32 one") if gray else ("colour", "a 32x32 one")
        raise MixsepError(f"{path}: the {what} image is {images.shape[3]}x{images.shape[2]}; give {sizes}")
    return images


def write_png(image: torch.Tensor, path: Path) -> None:
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
    batch = dm.fixed_batch("test", n)
    for i in range(len(batch[0])):
        for folder, images in zip(FOLDERS, batch):
            write_png(images[i], out / folder / f"{i:05d}.png")
    return len(batch[0])


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="mixsep mix", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", help="GRAY_IMAGE COLOR_IMAGE")
    parser.add_argument("-o", "--out", required=True, help="mix PNG to write (a folder with --test-pairs)")
    parser.add_argument("--test-pairs", type=positive_int, help="export this many of the fixed test pairs instead")
    parser.add_argument("--data-root", default=None, help="for --test-pairs (default: MIXSEP_DATA_ROOT)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier -o")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.test_pairs is not None and args.images:
        parser.error("--test-pairs N takes no images")
    if args.test_pairs is None and len(args.images) != 2:
        parser.error("give GRAY_IMAGE COLOR_IMAGE (or --test-pairs N)")
    with one_line_errors(os_error="{error}: check the two images, and that -o can be written"):
        if args.test_pairs is not None:
            count = export_test_pairs(args.test_pairs, out, args.data_root, args.cache_dir, args.overwrite)
            print(f"mixsep.mix: wrote {count} test pairs to {out}/mix (inputs) and {out}/gray, {out}/color (truth)")
            return 0
        gray_path, color_path = map(Path, args.images)
        if missing := [str(p) for p in (gray_path, color_path) if not p.is_file()]:
            sys.exit(f"mixsep: no such image: {', '.join(missing)}")
        if check_outputs([out], [gray_path, color_path], args.overwrite, "-o"):
            print(f"mixsep.mix: --overwrite: replacing {out}")
        mix, _, _ = to_float_batch(read_8bit(gray_path, gray=True), read_8bit(color_path, gray=False))
        write_png(mix[0], out)
        print(f"mixsep.mix: wrote {out}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
