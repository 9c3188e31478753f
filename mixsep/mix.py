"""Make mean images the way the training data does.

    python -m mixsep.mix GRAY_IMAGE COLOR_IMAGE -o mix.png
    python -m mixsep.mix --test-pairs N -o DIR      # N fixed test pairs: DIR/{mix,gray,color}/NNNNN.png

The gray image is resized 28x28 -> 32x32 like MNIST (PIL bilinear) and repeated to three channels;
the mean is rounded to 8 bits. Exported test pairs are the same fixed pairs ``mixsep.evaluate`` scores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mixsep.errors import MixsepError


def to_png(image: torch.Tensor, path: Path) -> None:
    """(3, H, W) float in [0, 1] -> 8-bit RGB PNG (rounded)."""
    array = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, "RGB").save(path)


def read_gray(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        gray = img.convert("L")
        if gray.size == (28, 28):
            gray = gray.resize((32, 32), Image.BILINEAR)  # as MNIST is resized for training
        if gray.size != (32, 32):
            raise MixsepError(f"{path}: the gray image is {gray.size[0]}x{gray.size[1]}; give a 28x28 or 32x32 one")
        return np.asarray(gray)


def read_color(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        if rgb.size != (32, 32):
            raise MixsepError(f"{path}: the colour image is {rgb.size[0]}x{rgb.size[1]}; give a 32x32 one")
        return np.asarray(rgb)


def mix_pair(gray: np.ndarray, color: np.ndarray) -> np.ndarray:
    """uint8 (32, 32) gray + uint8 (32, 32, 3) colour -> uint8 (32, 32, 3) mean, rounded."""
    total = gray.astype(np.uint16)[:, :, None] + color.astype(np.uint16)
    return ((total + 1) // 2).astype(np.uint8)  # round half up: (g + c) / 2 to the nearest 8-bit value


def export_test_pairs(n: int, out: Path, data_root: str | None, cache_dir: str | None) -> int:
    from mixsep.data import MixDataModule

    dm = MixDataModule(root=data_root, cache_dir=cache_dir, test_pairs=n, val_holdout=1)
    dm.setup("test")
    mix, gray, color = dm.fixed_batch("test", n)
    for i in range(len(mix)):
        name = f"{i:05d}.png"
        to_png(mix[i], out / "mix" / name)
        to_png(gray[i], out / "gray" / name)
        to_png(color[i], out / "color" / name)
    return len(mix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mixsep.mix", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", help="GRAY_IMAGE COLOR_IMAGE")
    parser.add_argument("-o", "--out", required=True, help="mix PNG to write (a folder with --test-pairs)")
    parser.add_argument("--test-pairs", type=int, help="export this many of the fixed test pairs instead")
    parser.add_argument("--data-root", default=None, help="for --test-pairs (default: MIXSEP_DATA_ROOT)")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        if args.test_pairs is not None:
            if args.images or args.test_pairs < 1:
                parser.error("--test-pairs N (N >= 1) takes no images")
            count = export_test_pairs(args.test_pairs, out, args.data_root, args.cache_dir)
            print(f"mixsep.mix: wrote {count} test pairs to {out}/mix (inputs) and {out}/gray, {out}/color (truth)")
            return 0
        if len(args.images) != 2:
            parser.error("give GRAY_IMAGE COLOR_IMAGE (or --test-pairs N)")
        gray_path, color_path = map(Path, args.images)
        if out.resolve() in (gray_path.resolve(), color_path.resolve()):
            parser.error(f"-o {out} would overwrite an input")
        mixed = mix_pair(read_gray(gray_path), read_color(color_path))
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mixed, "RGB").save(out)
        print(f"mixsep.mix: wrote {out}")
        return 0
    except (MixsepError, OSError) as err:
        print(f"mixsep.mix: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
