"""What the tests share: tiny datasets written in the real on-disk formats (so the real loading code is what
gets tested), the README's commands, a CLI run in a subprocess or in this process, a composed config."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import runpy
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
from PIL import Image

from mixsep.conf import CONF_DIR
from mixsep.data.sources import CIFAR_CLASSES

REAL_ROOT = os.environ.get("MIXSEP_DATA_ROOT", "")


def real_data_available() -> bool:
    root = Path(REAL_ROOT) if REAL_ROOT else None
    return (
        bool(root)
        and (root / "MNIST" / "raw").is_dir()
        and ((root / "cifar10" / "test").is_dir() or (root / "cifar-10-batches-py").is_dir())
    )


_skip_without_real_data = pytest.mark.skipif(
    not real_data_available(), reason="set MIXSEP_DATA_ROOT to the real MNIST + CIFAR-10"
)


def requires_real_data(test):
    """Real-data tests: skipped without MIXSEP_DATA_ROOT, and in the slow tier."""
    return pytest.mark.slow(_skip_without_real_data(test))


def write_idx_images(path: Path, images: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack(">IIII", 0x00000803, len(images), 28, 28))
        f.write(images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack(">II", 0x00000801, len(labels)))
        f.write(labels.astype(np.uint8).tobytes())


def make_mnist(root: Path, n_train: int, n_test: int, rng: np.random.Generator) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i in range(n):  # a bright random "stroke" on black, like a digit
            r, c = rng.integers(4, 20, size=2)
            images[i, r : r + 8, c : c + 3] = rng.integers(150, 256)
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, size=n))


def make_cifar_folder(root: Path, n_train: int, n_test: int, rng: np.random.Generator) -> None:
    for split, n, suffix in (("train", n_train, ".jpg"), ("test", n_test, ".png")):
        for i in range(n):
            cls = CIFAR_CLASSES[i % len(CIFAR_CLASSES)]
            folder = root / "cifar10" / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            img = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            Image.fromarray(img).save(folder / f"{i:05d}{suffix}")


def make_gray(root: Path, folder: str, n_train: int, n_test: int, seed: int) -> None:
    """A torchvision idx-layout gray source (FashionMNIST, KMNIST) at <root>/<folder>/raw/."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))


def make_folder(root: Path, folder: str, n_train: int, n_test: int, seed: int, classes=("cats", "dogs")) -> None:
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            path = root / folder / split / classes[i % len(classes)]
            path.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path / f"{i:04d}.png")


# the sizes that fit the tiny datasets (40 training and 12 test images per source)
TINY_SIZES = [
    "data.batch_size=8",
    "data.eval_batch_size=8",
    "data.val_pairs=8",
    "data.val_holdout=8",
    "data.test_pairs=12",
]


PROJECT_ROOT = Path(__file__).resolve().parents[1]


def tiny_run_overrides(folder: Path) -> list[str]:
    """Tiny MNIST + CIFAR-10 in their real on-disk formats under ``folder``, and the overrides of a CPU run on
    them (its decoded cache beside them, no progress bar)."""
    rng = np.random.default_rng(0)
    make_mnist(folder / "data", 40, 12, rng)
    make_cifar_folder(folder / "data", 40, 12, rng)
    return [
        f"data.root={folder / 'data'}",
        f"data.cache_dir={folder / 'cache'}",
        *TINY_SIZES,
        "trainer.accelerator=cpu",
        "callbacks.progress_bar.refresh_rate=0",
    ]


def run_cli(args: list[str], timeout: int = 600, **env) -> subprocess.CompletedProcess:
    """``python -m mixsep.run ARGS`` as a user types it (Hydra's -m goes before the overrides)."""
    multirun = ["-m"] if "-m" in args else []
    args = multirun + [a for a in args if a != "-m"]
    return subprocess.run(
        [sys.executable, "-m", "mixsep.run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_ROOT,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", **env},
    )


def run_here(argv: list[str], capfd) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` or ``python SCRIPT ARGS`` run in this process (no interpreter start, ~9 s of
    imports on a 2-core CPU), its output as a finished process's; ``capfd``: pytest's fixture."""
    capfd.readouterr()
    status = run_in_this_process(argv)
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(argv, status, out, err)


def run_cli_here(args: list[str], capfd) -> subprocess.CompletedProcess:
    """``run_cli``'s command run in this process, for tests whose subject is the sweep or the error, not the
    process."""
    multirun = ["-m"] if "-m" in args else []
    return run_here(["python", "-m", "mixsep.run", *multirun, *[a for a in args if a != "-m"]], capfd)


def wandb_records(path: Path) -> list:
    """The records of a W&B run file (``run-<id>.wandb``), read with W&B's own protobuf messages: a 7-byte
    header, then LevelDB-log blocks of 32 KiB whose chunks (7-byte headers) join into one record each."""
    from wandb.proto import wandb_internal_pb2

    data, block, records, parts = path.read_bytes(), 32768, [], b""
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos = 7
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            continue
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
    return records


README = PROJECT_ROOT / "README.md"


BENCHMARKS_README = PROJECT_ROOT / "benchmarks" / "README.md"
DOCS = PROJECT_ROOT / "docs"


def doc_pages() -> list[Path]:
    """README.md, the documentation's pages in mkdocs.yml's order, then benchmarks/README.md."""
    import yaml

    nav = yaml.safe_load((PROJECT_ROOT / "mkdocs.yml").read_text())["nav"]
    return [README, *(DOCS / next(iter(entry.values())) for entry in nav), BENCHMARKS_README]


def readme_commands(path: Path = README) -> list[str]:
    """The commands of a README's ```bash blocks as a user would paste them: comments dropped, continued
    lines joined, spaces normalised."""
    import re

    commands, block, pending = [], None, ""
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            block = line[3:].strip() if block is None else None
            continue
        if block != "bash":
            continue
        text = re.split(r"\s+#\s", " " + line, maxsplit=1)[0].strip()
        if not text or text.startswith("#"):
            continue
        if text.endswith("\\"):
            pending += text[:-1].strip() + " "
            continue
        commands.append(" ".join((pending + text).split()))
        pending = ""
    return commands


def readme_command(fragment: str) -> str:
    """The one command of the README and the documentation's pages that contains ``fragment``."""
    (command,) = {c for page in doc_pages() for c in readme_commands(page) if fragment in c}
    return command


def run_in_this_process(argv: list[str]) -> int:
    """``python -m MODULE ARGS``, ``python SCRIPT ARGS`` or ``mixsep COMMAND ARGS`` as they run (``__main__``),
    in this process: the exit status, with SystemExit's message printed as the interpreter prints it."""
    if argv[0] == "mixsep":  # the console script runs mixsep.COMMAND as python -m does (mixsep.cli)
        argv = ["python", "-m", f"mixsep.{argv[1]}", *argv[2:]]
    module = argv[2] if argv[1] == "-m" else None
    target, args = (module, argv[3:]) if module else (argv[1], argv[2:])
    saved_argv, root = sys.argv, logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    sys.argv = [target, *args]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module was imported before
            if module:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:  # as `python SCRIPT` does: the script's folder first on sys.path
                sys.path.insert(0, str(Path(target).resolve().parent))
                try:
                    runpy.run_path(target, run_name="__main__")
                finally:
                    sys.path.remove(str(Path(target).resolve().parent))
    except SystemExit as stop:
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
            return 1
        return stop.code or 0
    finally:
        sys.argv = saved_argv
        for handler in root.handlers:  # Hydra's handlers write to this command's (captured) streams
            if handler not in saved_handlers:
                handler.close()
        root.handlers, root.level = saved_handlers, saved_level
    return 0


CONF = CONF_DIR


def compose_config(name: str, overrides: list[str], out: Path):
    """A config composed as ``@hydra.main`` composes it, with its run folder at ``out``."""
    from hydra import compose, initialize_config_dir

    import mixsep.training.config  # noqa: F401  (mixsep's resolvers, which python -m mixsep.run registers)

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    cfg.paths.output_dir = str(out)  # what Hydra's ${hydra:runtime.output_dir} gives under @hydra.main
    with contextlib.suppress(OSError):  # and Hydra makes that folder before the task function runs
        out.mkdir(parents=True, exist_ok=True)
    return cfg


def report_main(folder: Path, tmp_path: Path, data_root: Path, *extra: str, chart: str = "c.png") -> str:
    """``python -m mixsep.report FOLDER`` with its baselines on the tiny data."""
    from mixsep.report import leaderboard as report

    return report.main(
        [
            str(folder),
            "--chart",
            str(tmp_path / chart),
            "--data-root",
            str(data_root),
            "--cache-dir",
            str(tmp_path / "cache"),
            *extra,
        ]
    )


def csv_rows(out: Path) -> list[dict]:
    """The rows of a run's CSV log (``<run dir>/csv/metrics.csv``)."""
    import csv

    with open(out / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def job_metrics(sweep: Path) -> dict[str, dict]:
    """The metrics.json of every job of a sweep folder, by job folder name."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))}


class PacedSteps(L.Callback):
    """``+callbacks.pace._target_=tests.helpers.PacedSteps +callbacks.pace.seconds=S``: a sleep after every
    training step, for a run that must outlast a scheduler's time limit without holding a core meanwhile."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args) -> None:
        time.sleep(self.seconds)
