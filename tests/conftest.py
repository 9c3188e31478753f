"""Tiny datasets written in the real on-disk formats, so the real loading code is what gets tested."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mixsep.data import CIFAR_CLASSES

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


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """MNIST (idx) + CIFAR-10 (ImageFolder): 40 train / 12 test images each."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    make_mnist(root, 40, 12, rng)
    make_cifar_folder(root, 40, 12, rng)
    return root


@pytest.fixture
def tiny_data_kwargs(tiny_root: Path, tmp_path: Path) -> dict:
    return dict(
        root=str(tiny_root),
        cache_dir=str(tmp_path / "cache"),
        batch_size=8,
        eval_batch_size=8,
        val_pairs=8,
        val_holdout=8,
        test_pairs=12,
    )


@pytest.fixture
def tiny_overrides(tiny_root: Path, tmp_path: Path) -> list[str]:
    """Hydra overrides for one tiny epoch on the tiny datasets."""
    return [
        f"data.root={tiny_root}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "data.batch_size=8",
        "data.eval_batch_size=8",
        "data.val_pairs=8",
        "data.val_holdout=8",
        "data.test_pairs=12",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1",
        "samples=4",
        "callbacks.progress_bar.refresh_rate=0",
    ]


PROJECT_ROOT = Path(__file__).resolve().parents[1]


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
