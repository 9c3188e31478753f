"""Bad-input rows (read by tests/user_paths/test_bad_input.py): outputs that would go where they should not (a
link, an earlier output, an input, a linked folder mixsep did not get from the user) and image encodings without
an honest value range. The earlier run folder ``r`` is where links point and inputs live: its files are checked
unchanged after each row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SEPARATE, MIX, REPORT = (["python", "-m", f"mixsep.{c}"] for c in ("separate", "mix", "report"))


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def _linked(link: Path, target: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=target.is_dir())
    return link


def _input_with_linked_output(t: Path, r: Path) -> Path:
    """t/in/x.png, whose output t/in/separated/x.gray.png is a link to a file of the earlier run."""
    _linked(t / "in" / "separated" / "x.gray.png", r / "keep.txt")
    return _png(t / "in" / "x.png")


def _input_with_linked_output_folder(t: Path, r: Path) -> Path:
    """t/x.png, whose default output folder t/separated is a link to the earlier run's folder."""
    _linked(t / "separated", r)
    return _png(t / "x.png")


def _earlier_output_in(r: Path) -> Path:
    _png(r / "x.gray.png", seed=1)
    return r


def _inputs_named_like_outputs(r: Path) -> Path:
    _png(r / "x.png")
    _png(r / "separations.png", seed=1)
    return r


def _int32_tiff(t: Path) -> Path:
    Image.fromarray(np.full((32, 32), 70000, np.int32), "I").save(t / "int32.tif")
    return t / "int32.tif"


def _float_tiff(t: Path) -> Path:
    Image.fromarray(np.full((28, 28), 4.0, np.float32), "F").save(t / "float.tif")
    return t / "float.tif"


ROWS = [
    (
        "separate-link-in-output",
        lambda t, r: SEPARATE + [str(_input_with_linked_output(t, r))],
        "x.gray.png already exists: add --overwrite",
    ),
    (
        "separate-linked-output-folder",
        lambda t, r: SEPARATE + [str(_input_with_linked_output_folder(t, r)), "--overwrite"],
        "separated is a symbolic link",
    ),
    (
        "separate-earlier-output",
        lambda t, r: SEPARATE + [str(_png(t / "x.png")), "--out", str(_earlier_output_in(r))],
        "already exists: add --overwrite to replace it, or choose another --out",
    ),
    (
        "separate-out-is-input-folder",
        lambda t, r: SEPARATE + [str(_inputs_named_like_outputs(r)), "--out", str(r), "--overwrite"],
        "separations.png would replace an input: choose another --out",
    ),
    ("separate-image-32-bit-int", lambda t, r: SEPARATE + [str(_int32_tiff(t))], "32-bit integer image"),
    (
        "mix-link-out",
        lambda t, r: (
            MIX + [str(_png(t / "g.png")), str(_png(t / "c.png")), "-o", str(_linked(t / "m.png", r / "keep.txt"))]
        ),
        "m.png already exists: add --overwrite",
    ),
    (
        "mix-out-is-input",
        lambda t, r: MIX + [str(_png(t / "g.png")), str(_png(t / "c.png")), "-o", f"{t}/g.png", "--overwrite"],
        "g.png would replace an input: choose another -o",
    ),
    (
        "mix-linked-pairs-folder",
        lambda t, r: MIX + ["--test-pairs", "2", "-o", str(_linked(t / "pairs" / "gray", r).parent)],
        "gray is a symbolic link",
    ),
    (
        "mix-image-float-out-of-range",
        lambda t, r: MIX + [str(_float_tiff(t)), str(_png(t / "c.png")), "-o", f"{t}/m.png"],
        "scale it to [0, 1]",
    ),
    (
        "report-link-output",
        lambda t, r: REPORT + [str(r), "-o", str(_linked(t / "board.md", r / "keep.txt")), "--overwrite"],
        "board.md is a symbolic link",
    ),
    (
        "report-earlier-chart",
        lambda t, r: REPORT + [str(r), "--chart", str(_png(t / "old.png"))],
        "old.png already exists: add --overwrite",
    ),
    (
        "report-output-is-run-record",
        lambda t, r: REPORT + [str(r), "-o", f"{r}/metrics.json", "--overwrite"],
        "is a run record the report reads",
    ),
]


def _linked_outputs(tmp: Path) -> Path:
    """The start folder's outputs/ as a symbolic link to a folder elsewhere (a downloaded folder's trick)."""
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    if not (tmp / "outputs").is_symlink():
        (tmp / "outputs").symlink_to(elsewhere)
    return tmp / "outputs"


BUNDLE = Path(__file__).resolve().parents[2] / "mixsep" / "pretrained" / "best_cpu_range"
ROWS.append(
    (
        "evaluate-outputs-is-a-link",
        lambda t, r: [str(_linked_outputs(t)) and "python", "-m", "mixsep.evaluate", f"ckpt_path={BUNDLE}"],
        "outputs in the folder this command starts in is a symbolic link",
    )
)
