"""Separate mean images from files: ``python -m mixsep.separate INPUT [INPUT ...]``.

Per image ``<name>.gray.png`` and ``<name>.color.png``, and a contact sheet ``separations.png``; outputs never
replace an input, an earlier output only with --overwrite, and a link is replaced, never written through."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from mixsep.errors import ArgumentParser, MixsepError, one_line_errors, positive_int
from mixsep.files import check_outputs, refuse_linked_folder, write_atomically
from mixsep.images import read_image
from mixsep.pretrained import DEFAULT_MODEL

READABLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
SHEET_ROWS = 16
SHEET = "separations.png"
MIN_RESIZE = 8  # below this, "resizing to 32x32" invents the picture rather than separating one


def find_images(inputs: list[Path]) -> list[Path]:
    """Image files of the inputs, each once (a folder: its own image files, sorted; not those of subfolders such
    as an earlier separated/, nor hidden ones: a writer's temporary files, macOS's ._ files)."""
    unique: dict[Path, Path] = {}  # a file given twice (or inside a folder also given) is separated once
    for path in inputs:
        for file in sorted(filter(_is_image, path.iterdir())) if path.is_dir() else [path]:
            unique.setdefault(file.resolve(), file)
    return list(unique.values())


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in READABLE_SUFFIXES and not path.name.startswith(".")


def output_names(files: list[Path]) -> list[str]:
    """The name each file's outputs start with: its stem, or its whole file name where stems collide
    (a.png, a.jpg -> a.png, a.jpg), with -2, -3, ... if that too is taken. Case is ignored: some file
    systems do."""
    stems = Counter(f.stem.casefold() for f in files)
    taken, names = set(), []
    for path in files:
        name = path.stem if stems[path.stem.casefold()] == 1 else path.name
        unique, n = name, 1
        while unique.casefold() in taken:
            n += 1
            unique = f"{name}-{n}"
        taken.add(unique.casefold())
        names.append(unique)
    return names


def plan_outputs(files: list[Path], out: Path, overwrite: bool) -> list[tuple[Path, Path]]:
    """(gray, colour) output paths per file, checked before anything is written (``files.check_outputs``):
    none is an input, none exists unless ``overwrite``."""
    targets = [(out / f"{name}.gray.png", out / f"{name}.color.png") for name in output_names(files)]
    replaced = check_outputs([t for pair in targets for t in pair] + [out / SHEET], files, overwrite, "--out")
    if replaced:
        print(f"mixsep.separate: --overwrite: replacing {len(replaced)} earlier files in {out}")
    renamed = [f"{f.name} -> {gray.name}" for f, (gray, _) in zip(files, targets) if gray.name != f"{f.stem}.gray.png"]
    if renamed:
        shown = ", ".join(renamed[:4]) + (f" and {len(renamed) - 4} more" if len(renamed) > 4 else "")
        print(f"mixsep.separate: inputs whose names share a stem keep their whole names: {shown}")
    return targets


def read_mix(path: Path, resize: bool, say: Callable[[str], None]) -> tuple[np.ndarray, tuple[int, int]]:
    """(3, 32, 32) float in [0, 1] and the original size, read at its true values (``mixsep.images``); gray is
    repeated to three channels. ``say``: what was done to an image."""
    picture = read_image(path)
    for note in picture.notes:
        say(note)
    if picture.gray:
        say("gray input images are repeated to three channels")
    values = np.repeat(picture.values, 3, axis=2) if picture.gray else picture.values
    size = (values.shape[1], values.shape[0])
    if size != (32, 32) and (not resize or min(size) < MIN_RESIZE):
        fix = "pass --resize to resize it to 32x32 (the outputs are resized back)"
        if resize:
            fix = f"it is too small to separate (--resize needs at least {MIN_RESIZE}x{MIN_RESIZE})"
        raise MixsepError(f"{path} is {size[0]}x{size[1]}; mixsep separates 32x32 mean images: {fix}")
    if size != (32, 32):
        say("inputs that are not 32x32 are resized to 32x32 and the outputs back")
        values = np.stack([_resized(values[..., c]) for c in range(3)], axis=-1)
    return values.transpose(2, 0, 1).astype(np.float32), size


def _resized(channel: np.ndarray) -> np.ndarray:
    """One channel to 32x32 (PIL's bicubic in floating point: 16-bit values stay 16-bit), kept in [0, 1]."""
    small = Image.fromarray(channel.astype(np.float32), "F").resize((32, 32), Image.BICUBIC)
    return np.clip(np.asarray(small), 0, 1)


def load_runtime(model: Path, device: str, onnx: bool):
    """``separate(mixes) -> (gray, colour)`` on (B, 3, 32, 32) float32 arrays: the model under PyTorch, or
    (``onnx``) its bundle's model.onnx under ONNX Runtime, checked first (``onnx_graph.open_onnx``). Each loads
    the extensions of ``MIXSEP_EXTENSIONS`` (a network of one's own that the model names)."""
    if onnx:
        from mixsep.models.onnx_graph import open_onnx

        return open_onnx(model, device)
    import torch

    from mixsep.models.separator import load_separator

    separator = load_separator(model, device=device)
    if separator.test_time_ensemble:  # as the model's run tested: say what it costs
        print(f"mixsep.separate: {separator.test_time_ensemble}")
    return lambda mixes: tuple(o.cpu().numpy() for o in separator(torch.from_numpy(mixes)))


def separate_files(files: list[Path], out: Path, options: argparse.Namespace) -> tuple[int, list[str]]:
    """Separate every readable file with the command's ``options``; returns (how many were written, one line per
    file that failed). Every output is checked first (``plan_outputs``) and written whole (``write_atomically``)."""
    from rich.progress import track

    from mixsep.sheet import save_samples, to_png

    targets = dict(zip(files, plan_outputs(files, out, options.overwrite)))
    separate = load_runtime(options.model, options.device, options.onnx)
    out.mkdir(parents=True, exist_ok=True)
    say = functools.cache(lambda message: print(f"mixsep.separate: {message}"))  # each message once
    failed, sheet, written = [], [], 0  # sheet: its first rows (mix, gray, colour, file name)
    batch = options.batch_size
    for start in track(range(0, len(files), batch), "separating", disable=len(files) <= batch):
        read = {}
        for path in files[start : start + batch]:
            try:
                read[path] = read_mix(path, options.resize, say)
            except Exception as err:  # skipped, the others still processed (read_image says why it cannot read one)
                failed.append(str(err) if isinstance(err, MixsepError) else f"{path}: unreadable ({err!r})")
        if not read:
            continue
        mixes = np.stack([mix for mix, _ in read.values()])
        gray, color = separate(mixes)
        for i, (path, (_, size)) in enumerate(read.items()):
            for image, target in zip((gray[i], color[i]), targets[path]):
                write_atomically(target, lambda tmp, image=image, size=size: to_png(image, tmp, size), keep_suffix=True)
            if len(sheet) < SHEET_ROWS:
                sheet.append((mixes[i], gray[i], color[i], path.name))
        written += len(read)
    if sheet:
        *columns, names = zip(*sheet)
        draw = lambda tmp: save_samples(tmp, list(map(np.stack, columns)), ("mix", "gray", "colour"), list(names))
        write_atomically(out / SHEET, draw, keep_suffix=True)
    return written, failed


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="mixsep separate", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("inputs", nargs="+", type=Path, help="image files or folders of them")
    add("--model", "--ckpt", type=Path, default=DEFAULT_MODEL, help="a bundle folder or a checkpoint (default: ours)")
    add("--onnx", action="store_true", help="run the bundle's model.onnx with ONNX Runtime")
    add("--out", type=Path, default=None, help="output folder (default: separated/ next to the input)")
    add("--device", default="cpu", choices=("cpu", "cuda"))
    add("--resize", action="store_true", help="resize other sizes to 32x32 (outputs resized back)")
    add("--batch-size", type=positive_int, default=256, help="images a batch (a whole number >= 1)")
    add("--overwrite", action="store_true", help="replace the outputs of an earlier run in the output folder")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        sys.exit(f"mixsep: no such file or folder: {', '.join(missing)}")
    files = find_images(args.inputs)
    if not files:
        sys.exit(f"mixsep: no image files in {', '.join(map(str, args.inputs))}")
    first = args.inputs[0]
    out = args.out or ((first if first.is_dir() else first.parent) / "separated")
    start = time.perf_counter()
    with one_line_errors(os_error=f"cannot write to {out} ({{error}}): choose another --out"):
        if args.out is None:  # a folder mixsep chose: a link there was not named by the user
            refuse_linked_folder(out, "--out")
        written, failed = separate_files(files, out, args)
    for line in failed:
        print(f"mixsep: skipped {line}", file=sys.stderr)
    print(
        f"mixsep.separate: separated {written} of {len(files)} images in {time.perf_counter() - start:.1f} s "
        f"into {out} ({len(failed)} skipped)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
