"""The decoded data cache: each source's split decoded once into uint8 tensors, kept per user, keyed on the
source files and checked with a digest of its pixels."""

from __future__ import annotations

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


def _source_signature(root: Path, source: Source, train: bool) -> dict:
    """What the cached tensor was built from: the source, and its files' names, sizes and mtimes."""
    files = source.files(root, train)
    h, under_root = hashlib.sha256(), len(str(root)) + 1  # tens of thousands of files: str, not Path, methods
    for f in map(str, files):
        st = os.stat(f)
        h.update(f"{f[under_root:]}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return {
        "version": CACHE_VERSION,
        "root": str(root.resolve()),
        "name": source.cache_name,
        "train": train,
        "files": len(files),
        "digest": h.hexdigest(),
    }


def _tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def _cache_path(cache_dir: Path, source: Source, train: bool, signature: dict) -> Path:
    key = hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{source.cache_name}_{'train' if train else 'test'}_{key}.pt"


def cached_split(root: Path, cache_dir: Path, source: Source, train: bool, download: bool) -> torch.Tensor:
    """Decoded uint8 images of one split of a source, from the cache when it is valid, else decoded and cached."""
    signature = _source_signature(root, source, train)
    path = _cache_path(cache_dir, source, train, signature)
    if path.exists() and signature["files"] > 0:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            images = blob["images"]
            if blob["signature"] == json.dumps(signature, sort_keys=True) and blob["sha256"] == _tensor_digest(images):
                return images
        except Exception:
            pass  # corrupt or stale: rebuilt below
    split = "train" if train else "test"
    images = check_images(source, source.load(root, train, download), split)
    if signature["files"] == 0:  # just downloaded: the signature can now see the files
        signature = _source_signature(root, source, train)
        if signature["files"] == 0:  # else the cache could never tell a changed file, and decodes every run
            raise ConfigError(
                f"data/{source.kind}={source.label}: files() finds no files for the {split} split under {root}, "
                f"although load() read {len(images)} images: make files() return the files load() reads"
            )
        path = _cache_path(cache_dir, source, train, signature)
    blob = {"signature": json.dumps(signature, sort_keys=True), "sha256": _tensor_digest(images), "images": images}
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
    get = lambda source, train: cached_split(root, cache_dir, source, train, download)  # noqa: E731
    return Splits(get(gray, True), get(color, True), get(gray, False), get(color, False))
