"""Each source's split decoded once into uint8 tensors and kept per user: one ``torch.save`` of a dict, keyed on the
source's files (names, sizes, mtimes) and checked with a digest of its pixels when read back."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from mixsep.data.sources import Source, check_images
from mixsep.errors import ConfigError
from mixsep.files import write_atomically

CACHE_VERSION = 3


def default_cache_dir() -> str:
    from platformdirs import user_cache_dir

    return os.environ.get("MIXSEP_CACHE_DIR", user_cache_dir("mixsep"))


def _signature(root: Path, cache_dir: Path, source: Source, train: bool) -> tuple[str, int, Path]:
    """What the cached tensor is built from (the source, its files' names, sizes and mtimes), how many files, and
    where it is kept."""
    files = source.files(root, train)
    h, under_root = hashlib.sha256(), len(str(root)) + 1  # tens of thousands of files: str, not Path, methods
    for f in map(str, files):
        st = os.stat(f)
        h.update(f"{f[under_root:]}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    fields = {"version": CACHE_VERSION, "root": str(root.resolve()), "name": source.cache_name, "train": train}
    signature = json.dumps({**fields, "files": len(files), "digest": h.hexdigest()}, sort_keys=True)
    key = hashlib.sha256(signature.encode()).hexdigest()[:16]
    return signature, len(files), cache_dir / f"{source.cache_name}_{'train' if train else 'test'}_{key}.pt"


def _digest(images: torch.Tensor) -> str:
    return hashlib.sha256(images.numpy().tobytes()).hexdigest()


def cached_split(root: Path, cache_dir: Path, source: Source, train: bool, download: bool) -> torch.Tensor:
    """Decoded uint8 images of one split of a source, from the cache when it is valid, else decoded and cached."""
    signature, count, path = _signature(root, cache_dir, source, train)
    if count and path.exists():
        with contextlib.suppress(Exception):  # corrupt or stale: decoded again below
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob["signature"] == signature and blob["sha256"] == _digest(blob["images"]):
                return blob["images"]
    split = "train" if train else "test"
    images = check_images(source, source.load(root, train, download), split)
    if not count:  # just downloaded: the signature can now see the files
        signature, count, path = _signature(root, cache_dir, source, train)
        if not count:  # else the cache could never tell a changed file, and decodes every run
            raise ConfigError(
                f"data/{source.kind}={source.label}: files() finds no files for the {split} split under {root}, "
                f"although load() read {len(images)} images: make files() return the files load() reads"
            )
    blob = {"signature": signature, "sha256": _digest(images), "images": images}
    try:  # whatever ends the write (a SIGTERM's exit included), no half-written file is left behind
        write_atomically(path, lambda tmp: torch.save(blob, tmp))
    except (OSError, RuntimeError) as err:  # a read-only cache only costs time (torch.save: RuntimeError)
        logging.getLogger("mixsep").warning(
            f"could not write the data cache in {cache_dir} ({str(err).splitlines()[0]}): the data is decoded "
            "again next time; point data.cache_dir= (or MIXSEP_CACHE_DIR) at a writable folder to keep it"
        )
    return images


@dataclass
class Splits:
    gray_train: torch.Tensor
    color_train: torch.Tensor
    gray_test: torch.Tensor
    color_test: torch.Tensor


def load_splits(root: str | Path, cache_dir: str | Path, download: bool, gray: Source, color: Source) -> Splits:
    """Both sources' train and test splits: ``gray_*`` (MNIST in the default pair), ``color_*`` (CIFAR-10)."""
    root, cache_dir = Path(root).expanduser(), Path(cache_dir).expanduser()
    splits = [cached_split(root, cache_dir, s, train, download) for train in (True, False) for s in (gray, color)]
    return Splits(*splits)
