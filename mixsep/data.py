"""MNIST + CIFAR-10 mean-image data: decode once, cache as uint8 tensors, batch by indexing.

A batch leaves the DataLoader as two uint8 tensors ``(mnist, cifar)``: (B, 1, 32, 32) and (B, 3, 32, 32);
``on_after_batch_transfer`` turns them, on the training device, into ``(mix, mnist, cifar)`` float
tensors in [0, 1] with ``mix = (mnist + cifar) / 2``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

from mixsep.errors import ConfigError, DataNotFoundError  # noqa: F401  (DataNotFoundError: re-exported)
from mixsep.sources import (  # noqa: F401  (re-exported: mixsep.data is where users look for them)
    CIFAR_CLASSES,
    IMAGE_SUFFIXES,
    check_sources,
    cifar_layout,
    list_image_folder,
    load_cifar,
    load_color,
    load_gray,
    load_mnist,
    pair_label,
    resize_mnist,
    source_files,
    source_label,
    source_name,
)
from mixsep.symmetry import TRANSFORMS, dihedral

CACHE_VERSION = 3
# Fixed, independent of the run seed: every run and every model sees the same test pairs and the same
# held-out validation images.
TEST_PAIRING_SEED = 20240601
HOLDOUT_SEED = 20240602
TASKS = ("separate", "reconstruct", "denoise")


def default_data_root() -> str:
    return os.environ.get("MIXSEP_DATA_ROOT", "./data")


def default_cache_dir() -> str:
    from platformdirs import user_cache_dir

    return os.environ.get("MIXSEP_CACHE_DIR", user_cache_dir("mixsep"))


# --------------------------------------------------------------------------- cache
def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _cache_name(source, kind: str) -> str:
    """The default pair keeps its historical cache names (mnist, cifar); any other source its own."""
    name = source_name(source)
    if (kind, name) in (("gray", "mnist"), ("color", "cifar10")):
        return "mnist" if kind == "gray" else "cifar"
    return source_label(source).replace(":", "-")


def _source_signature(root: Path, source, kind: str, train: bool) -> dict:
    """What the cached tensor was built from: the source, and its files' names, sizes and mtimes."""
    files = source_files(root, source, kind, train)
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return {
        "version": CACHE_VERSION,
        "root": str(root.resolve()),
        "name": _cache_name(source, kind),
        "train": train,
        "files": len(files),
        "digest": h.hexdigest(),
    }


def _tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def cached_split(root: Path, cache_dir: Path, source, kind: str, train: bool, download: bool) -> torch.Tensor:
    """Decoded uint8 images of one split of a source (``kind`` gray or color), from the cache when it is
    valid, else decoded and cached."""
    name = _cache_name(source, kind)
    signature = _source_signature(root, source, kind, train)
    key = hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / f"{name}_{'train' if train else 'test'}_{key}.pt"
    if path.exists() and signature["files"] > 0:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            images = blob["images"]
            if blob["signature"] == json.dumps(signature, sort_keys=True) and blob["sha256"] == _tensor_digest(images):
                return images
        except Exception:
            pass  # corrupt or stale: rebuilt below
    images = (
        load_gray(root, source_name(source), train, download)
        if kind == "gray"
        else load_color(root, source, train, download)
    )
    if signature["files"] == 0:  # just downloaded: the signature can now see the files
        signature = _source_signature(root, source, kind, train)
        key = hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:16]
        path = cache_dir / f"{name}_{'train' if train else 'test'}_{key}.pt"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        torch.save(
            {"signature": json.dumps(signature, sort_keys=True), "sha256": _tensor_digest(images), "images": images},
            tmp,
        )
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # a read-only cache only costs time (torch.save: RuntimeError)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        logging.getLogger("mixsep").warning(
            f"could not write the data cache in {cache_dir} ({str(err).splitlines()[0]}): the data is decoded "
            "again next time; point data.cache_dir= (or MIXSEP_CACHE_DIR) at a writable folder to keep it"
        )
    return images


# --------------------------------------------------------------------------- pairs and batches
def fixed_test_pairs(n_mnist: int, n_cifar: int) -> torch.Tensor:
    """(N, 2) indices: MNIST test in a fixed random order, paired with CIFAR-10 test in its order
    (pair i = (perm[i], i)), the list itself in a fixed random order."""
    n = min(n_mnist, n_cifar)
    g = torch.Generator().manual_seed(TEST_PAIRING_SEED)
    pairs = torch.stack([torch.randperm(n_mnist, generator=g)[:n], torch.arange(n)], dim=1)
    # The list is in a fixed random order (the set of pairs is unchanged): the CIFAR-10 test set is
    # sorted by class, so a prefix (data.test_pairs=1000) would otherwise hold airplanes only.
    return pairs[torch.randperm(n, generator=g)]


def holdout_split(n: int, holdout: int, seed_offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed (train, val) index split of a training set: ``holdout`` images go to validation."""
    if not 0 < holdout < n:
        raise ConfigError(f"data.val_holdout={holdout} must be between 1 and the training set size - 1 ({n - 1})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(HOLDOUT_SEED + seed_offset))
    # validation ids stay in random order, so any prefix (data.val_pairs) mixes all classes
    return perm[holdout:].sort().values, perm[:holdout]


class PairBatches(Dataset):
    """Batch-level dataset: ``ds[pairs]`` with pairs an (B, 2) index tensor gathers a whole batch."""

    def __init__(self, mnist: torch.Tensor, cifar: torch.Tensor) -> None:
        self.mnist, self.cifar = mnist, cifar

    def __getitem__(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # index_select copies whole rows: about 5x faster than advanced indexing here
        pairs = pairs.to(self.mnist.device, non_blocking=True)
        return torch.index_select(self.mnist, 0, pairs[:, 0]), torch.index_select(self.cifar, 0, pairs[:, 1])

    def __len__(self) -> int:  # not used for sampling; Lightning only asks
        return len(self.mnist)


class FixedPairSampler(SequentialSampler):
    """Yields (B, 2) index batches over a fixed list of pairs, in order (each rank a strided share).

    A SequentialSampler (never shuffled): with ``trainer.overfit_batches`` Lightning keeps it as it is
    instead of swapping in one that yields single indices.
    """

    def __init__(self, pairs: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.pairs, self.batch_size = pairs[rank::world_size], batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self.pairs.split(self.batch_size)

    def __len__(self) -> int:
        return -(-len(self.pairs) // self.batch_size)


class RandomPairSampler(Sampler):
    """Random (MNIST, CIFAR) training pairs, re-drawn every epoch from (seed, epoch).

    Lightning calls ``set_epoch`` before each epoch (as for a DistributedSampler), so a resumed run
    draws the same pairs as an uninterrupted one. ``consumed`` counts the batches of the current epoch
    that reached training (the data module counts them); a run resumed from a mid-epoch checkpoint
    (``resume``) skips exactly those, so it trains on the rest of the pairs it would have seen.
    """

    def __init__(
        self,
        mnist_ids: torch.Tensor,
        cifar_ids: torch.Tensor,
        pairs_per_epoch: int,
        batch_size: int,
        seed: int,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.mnist_ids, self.cifar_ids = mnist_ids, cifar_ids
        self.rank, self.world_size = rank, world_size
        pairs_per_epoch = pairs_per_epoch // world_size  # every rank draws the same pairs, keeps its share
        self.pairs_per_epoch, self.batch_size, self.seed = pairs_per_epoch, batch_size, seed
        self.drop_last = drop_last and pairs_per_epoch >= batch_size
        self.epoch = 0
        self.consumed = 0
        self.resume: tuple[int, int] | None = None  # (epoch, batches already trained) of a mid-epoch checkpoint

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def draw(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        n = self.pairs_per_epoch * self.world_size
        m = self.mnist_ids[_cycled_perm(len(self.mnist_ids), n, g)]
        c = self.cifar_ids[_cycled_perm(len(self.cifar_ids), n, g)]
        return torch.stack([m, c], dim=1)[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[torch.Tensor]:
        pairs = self.draw(self.epoch)
        skip = 0
        if self.resume is not None and self.resume[0] <= self.epoch:  # kept until its epoch is iterated
            skip = self.resume[1] if self.resume[0] == self.epoch else 0
            self.resume = None
        self.consumed = skip
        for batch in pairs.split(self.batch_size)[skip:]:
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch

    def position(self) -> dict:
        return {"epoch": self.epoch, "batches": self.consumed}

    def resume_at(self, position: dict) -> None:
        self.resume = (int(position["epoch"]), int(position["batches"]))

    def __len__(self) -> int:
        if self.drop_last:
            return self.pairs_per_epoch // self.batch_size
        return -(-self.pairs_per_epoch // self.batch_size)


class ResumableLoader(DataLoader):
    """The training DataLoader, resumable in Lightning's sense (``state_dict``/``load_state_dict``): a
    checkpoint written mid-epoch records where the epoch stood. Lightning restores a loader's state only
    when it builds the loader after the restore; the data module's own state (which Lightning restores
    first) carries the same position for the other case (a schedule that counts the steps early)."""

    def state_dict(self) -> dict:
        return self.sampler.position()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.resume_at(state)


def _cycled_perm(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """k indices into range(n): whole random permutations, concatenated, so each image is used evenly."""
    reps = -(-k // n)
    return torch.cat([torch.randperm(n, generator=g) for _ in range(reps)])[:k]


@dataclass
class Splits:
    mnist_train: torch.Tensor
    cifar_train: torch.Tensor
    mnist_test: torch.Tensor
    cifar_test: torch.Tensor


def load_splits(
    root: str | Path, cache_dir: str | Path, download: bool = False, gray="mnist", color="cifar10"
) -> Splits:
    """Both sources' train and test splits. The fields keep the default pair's names: ``mnist_*`` is
    the gray source, ``cifar_*`` the colour source."""
    root, cache_dir = Path(root).expanduser(), Path(cache_dir).expanduser()
    get = lambda source, kind, train: cached_split(root, cache_dir, source, kind, train, download)  # noqa: E731
    return Splits(
        get(gray, "gray", True), get(color, "color", True), get(gray, "gray", False), get(color, "color", False)
    )


def to_float_batch(mnist_u8: torch.Tensor, cifar_u8: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """uint8 targets -> float (mix, mnist, cifar) in [0, 1], each (B, 3, 32, 32); MNIST's three equal
    channels are a broadcast view of its one stored channel."""
    mnist = mnist_u8.float().div_(255).expand(-1, 3, -1, -1)
    cifar = cifar_u8.float().div_(255)
    return (mnist + cifar) / 2, mnist, cifar


class MixDataModule(L.LightningDataModule):
    """Paired MNIST + CIFAR-10 mean images.

    ``task`` picks what a batch holds: ``separate`` (mix, mnist, cifar), ``reconstruct`` (cifar, cifar)
    or ``denoise`` (cifar + noise, cifar); the last two use CIFAR-10 only.
    """

    def __init__(
        self,
        root: str | None = None,
        cache_dir: str | None = None,
        download: bool = False,
        batch_size: int = 256,
        eval_batch_size: int = 500,
        num_workers: int = 0,
        train_pairs: int | None = None,
        val_pairs: int = 5000,
        test_pairs: int = 10000,
        val_holdout: int = 5000,
        seed: int = 0,
        task: str = "separate",
        noise_std: float = 0.1,
        cifar_train_noise: float = 0.0,
        data_on_device: bool = True,
        gray="mnist",
        color="cifar10",
        dihedral_augment: bool = False,
        color_flip: bool = False,
    ) -> None:
        super().__init__()
        gray = gray if isinstance(gray, str) else dict(gray)
        color = color if isinstance(color, str) else dict(color)
        check_sources(gray, color)
        self.gray, self.color = gray, color
        if task not in TASKS:
            raise ConfigError(f"data.task={task!r} is not one of {TASKS}")
        counts = {
            "batch_size": batch_size,
            "eval_batch_size": eval_batch_size,
            "val_pairs": val_pairs,
            "test_pairs": test_pairs,
            "val_holdout": val_holdout,
        }
        for name, v in counts.items():
            if not _is_count(v) or v < 1:
                raise ConfigError(f"data.{name} must be a positive integer, got {v!r}")
        if train_pairs is not None and (not _is_count(train_pairs) or train_pairs < 1):
            raise ConfigError(f"data.train_pairs must be a positive integer or null (= all), got {train_pairs!r}")
        if not _is_count(num_workers) or num_workers < 0:
            raise ConfigError(f"data.num_workers must be an integer >= 0, got {num_workers!r}")
        self.root = Path(root or default_data_root())
        self.cache_dir = Path(cache_dir or default_cache_dir())
        self.download, self.batch_size, self.eval_batch_size = download, batch_size, eval_batch_size
        self.num_workers, self.train_pairs, self.val_pairs = num_workers, train_pairs, val_pairs
        self.test_pairs, self.val_holdout, self.seed, self.task = test_pairs, val_holdout, seed, task
        self.noise_std, self.cifar_train_noise = noise_std, cifar_train_noise
        self.data_on_device, self.dihedral_augment, self.color_flip = data_on_device, dihedral_augment, color_flip
        self.splits: Splits | None = None

    def prepare_data(self) -> None:
        # Lightning calls this once (rank 0) before setup: download / decode / cache here, and keep the
        # tensors so that setup in the same process does not load them a second time.
        self._prepared = load_splits(self.root, self.cache_dir, self.download, self.gray, self.color)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        s = self.splits = getattr(self, "_prepared", None) or load_splits(
            self.root, self.cache_dir, self.download, self.gray, self.color
        )
        self._prepared = None
        self.mnist_train_ids, self.mnist_val_ids = holdout_split(len(s.mnist_train), self.val_holdout, 0)
        self.cifar_train_ids, self.cifar_val_ids = holdout_split(len(s.cifar_train), self.val_holdout, 1)
        n_val = min(self.val_pairs, self.val_holdout)
        self.val_pair_ids = torch.stack([self.mnist_val_ids[:n_val], self.cifar_val_ids[:n_val]], dim=1)
        all_test = fixed_test_pairs(len(s.mnist_test), len(s.cifar_test))
        if self.test_pairs > len(all_test):
            logging.getLogger("mixsep").warning(
                f"data.test_pairs={self.test_pairs} is more than the {len(all_test)} test pairs there are: "
                f"scoring all {len(all_test)}"
            )
        self.test_pair_ids = all_test[: self.test_pairs]
        n_all = (
            max(len(self.mnist_train_ids), len(self.cifar_train_ids))
            if self.task == "separate"
            else len(self.cifar_train_ids)
        )  # CIFAR-10-only tasks: one pass over its training images
        n_train = self.train_pairs or n_all
        trainer = getattr(self, "trainer", None)
        self.rank, self.world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        device = trainer.strategy.root_device if trainer else torch.device("cpu")
        if self.data_on_device and device.type == "cuda" and self.num_workers == 0:
            # the whole data set (~400 MB of uint8) lives on the GPU: batches never cross the bus
            self.splits = Splits(*(t.to(device) for t in (s.mnist_train, s.cifar_train, s.mnist_test, s.cifar_test)))
        self.train_sampler = RandomPairSampler(
            self.mnist_train_ids,
            self.cifar_train_ids,
            n_train,
            self.batch_size,
            self.seed,
            rank=self.rank,
            world_size=self.world_size,
        )

    @property
    def sources(self) -> str:
        """The source pair, e.g. ``mnist+cifar10`` (image_folder: ``image_folder:<folder>``)."""
        return pair_label(self.gray, self.color)

    def _loader(self, mnist: torch.Tensor, cifar: torch.Tensor, sampler: Sampler) -> DataLoader:
        loader = ResumableLoader if isinstance(sampler, RandomPairSampler) else DataLoader
        return loader(
            PairBatches(mnist, cifar),
            batch_size=None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        overfit = getattr(getattr(self, "trainer", None), "overfit_batches", 0) or 0
        if overfit:  # a fixed handful of training pairs, the same ones every epoch
            batches = int(overfit) if overfit >= 1 else max(1, int(overfit * len(self.train_sampler)))
            fixed = FixedPairSampler(self.train_sampler.draw(0)[: batches * self.batch_size], self.batch_size)
            return self._loader(self.splits.mnist_train, self.splits.cifar_train, fixed)
        return self._loader(self.splits.mnist_train, self.splits.cifar_train, self.train_sampler)

    def val_dataloader(self) -> DataLoader:
        sampler = FixedPairSampler(self.val_pair_ids, self.eval_batch_size, self.rank, self.world_size)
        return self._loader(self.splits.mnist_train, self.splits.cifar_train, sampler)

    def test_dataloader(self) -> DataLoader:
        sampler = FixedPairSampler(self.test_pair_ids, self.eval_batch_size, self.rank, self.world_size)
        return self._loader(self.splits.mnist_test, self.splits.cifar_test, sampler)

    def state_dict(self) -> dict:
        """Where the training epoch stands (saved in every checkpoint, restored before training resumes)."""
        sampler = getattr(self, "train_sampler", None)
        return {"train_position": sampler.position()} if sampler is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        if "train_position" in state_dict:
            self.setup("fit")
            self.train_sampler.resume_at(state_dict["train_position"])

    def fixed_batch(self, split: str, n: int, spread: bool = False) -> tuple[torch.Tensor, ...]:
        """n fixed ``val`` or ``test`` pairs as a float batch: the first n, or (``spread``) n evenly
        spaced ones, which for the test pairs means CIFAR-10 images of different classes."""
        s = self.splits
        mnist, cifar, ids = (
            (s.mnist_train, s.cifar_train, self.val_pair_ids)
            if split == "val"
            else (s.mnist_test, s.cifar_test, self.test_pair_ids)
        )
        ids = ids[torch.linspace(0, len(ids) - 1, min(n, len(ids))).long()] if spread else ids[:n]
        return self.make_batch(*PairBatches(mnist, cifar)[ids])

    def make_batch(self, mnist_u8: torch.Tensor, cifar_u8: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """uint8 targets -> the float batch of the task: (input, target_1[, target_2])."""
        if self.task == "separate":
            return to_float_batch(mnist_u8, cifar_u8)
        clean = cifar_u8.float().div_(255)
        if self.task == "reconstruct":
            return clean, clean
        # noise_std is given on the [-1, 1] scale; images here live in [0, 1] (half the scale). Only the
        # input is noisy. Outside training the noise is a function of the batch, so every run and every
        # model is scored on the same noisy inputs.
        training = self.trainer is not None and self.trainer.training
        if training:
            noise = torch.randn_like(clean)
        else:
            g = torch.Generator().manual_seed(TEST_PAIRING_SEED + int(cifar_u8[:, :, :4, :4].sum()))
            noise = torch.randn(clean.shape, generator=g).to(clean.device)
        return clean + noise * (self.noise_std / 2), clean

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and batch[0].dtype == torch.uint8):
            return batch
        trainer = self.trainer
        training = trainer is not None and trainer.training
        if training and not getattr(trainer, "overfit_batches", 0) and hasattr(self, "train_sampler"):
            self.train_sampler.consumed += 1  # this batch reached training: where a mid-epoch resume restarts
        if training and self.dihedral_augment:  # one of the 8 flips/rotations, the same for both sources
            k = int(torch.randint(TRANSFORMS, (1,)))
            batch = (dihedral(batch[0], k), dihedral(batch[1], k))
        if training and self.color_flip and self.task == "separate":
            batch = (batch[0], mirror_half(batch[1]))
        if self.task == "separate" and self.cifar_train_noise > 0 and training:
            return self._noisy_cifar_batch(*batch)
        return self.make_batch(*batch)

    def _noisy_cifar_batch(self, mnist_u8: torch.Tensor, cifar_u8: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Training augmentation: fine Gaussian grain on the CIFAR source (the target too), to stand in
        for the detail that the JPEG-compressed training images lost and the lossless test images keep."""
        mix, mnist, cifar = to_float_batch(mnist_u8, cifar_u8)
        cifar = (cifar + torch.randn_like(cifar) * self.cifar_train_noise).clamp_(0, 1)
        return (mnist + cifar) / 2, mnist, cifar


def mirror_half(images: torch.Tensor) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2: a mirrored photograph is still a natural one (a
    mirrored digit is not, so only the colour source is flipped): twice as many distinct colour images."""
    flip = torch.rand(len(images), device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


class PerItemPairDataset(Dataset):
    """The usual per-item pipeline of earlier reports, kept as a reference for tests and benchmarks.

    ``__getitem__`` builds PIL images, runs torchvision transforms (Resize 32, ToTensor, channel repeat)
    and averages the pair: per-item Python work that mixsep's batch gathers avoid.
    """

    def __init__(self, mnist_28: torch.Tensor, cifar: torch.Tensor, pairs: torch.Tensor) -> None:
        from torchvision import transforms as T

        self.mnist = mnist_28.numpy()  # (N, 28, 28) uint8, as in the idx files
        self.cifar = cifar.permute(0, 2, 3, 1).numpy()  # (N, 32, 32, 3) uint8
        self.pairs = pairs
        self.mnist_tf = T.Compose(
            [
                T.Resize((32, 32), interpolation=T.InterpolationMode.BILINEAR),
                T.ToTensor(),
                T.Lambda(lambda x: x.repeat(3, 1, 1)),
            ]
        )
        self.cifar_tf = T.ToTensor()

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m, c = self.pairs[i].tolist()
        mnist = self.mnist_tf(Image.fromarray(self.mnist[m]))
        cifar = self.cifar_tf(Image.fromarray(self.cifar[c]))
        return (mnist + cifar) / 2, mnist, cifar
