"""Which images are paired: the fixed test pairs, the held-out validation images, the training pairs drawn
each epoch (resumable mid-epoch), and the batches gathered from them by indexing."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

from mixsep.errors import ConfigError

TEST_PAIRING_SEED = 20240601
HOLDOUT_SEED = 20240602


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

    def __init__(self, gray: torch.Tensor, color: torch.Tensor) -> None:
        self.gray, self.color = gray, color

    def __getitem__(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # index_select copies whole rows: about 5x faster than advanced indexing here
        pairs = pairs.to(self.gray.device, non_blocking=True)
        return torch.index_select(self.gray, 0, pairs[:, 0]), torch.index_select(self.color, 0, pairs[:, 1])

    def __len__(self) -> int:  # not used for sampling; Lightning only asks
        return len(self.gray)


class FixedPairSampler(SequentialSampler):
    """(B, 2) index batches over a fixed list of pairs, in order, each rank a strided share. A SequentialSampler:
    with ``trainer.overfit_batches`` Lightning keeps it rather than swap in one that yields single indices."""

    def __init__(self, pairs: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.pairs, self.batch_size = pairs[rank::world_size], batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self.pairs.split(self.batch_size)

    def __len__(self) -> int:
        return -(-len(self.pairs) // self.batch_size)


class RandomPairSampler(Sampler):
    """Random (MNIST, CIFAR) training pairs, re-drawn every epoch from (seed, epoch) (Lightning calls ``set_epoch``).
    ``consumed``: the batches of this epoch that reached training; a run resumed mid-epoch skips exactly those."""

    def __init__(
        self, mnist_ids, cifar_ids, pairs_per_epoch: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.mnist_ids, self.cifar_ids, self.seed = mnist_ids, cifar_ids, seed
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        self.pairs_per_epoch = pairs_per_epoch // world_size  # every rank draws the same pairs, keeps its share
        self.drop_last = self.pairs_per_epoch >= batch_size  # a short last batch only when there is no whole one
        self.epoch, self.consumed = 0, 0
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
        skip = 0
        if self.resume is not None and self.resume[0] <= self.epoch:  # kept until its epoch is iterated
            skip = self.resume[1] if self.resume[0] == self.epoch else 0
            self.resume = None
        self.consumed = skip
        yield from self.draw(self.epoch).split(self.batch_size)[skip : len(self)]

    def position(self) -> dict:
        return {"epoch": self.epoch, "batches": self.consumed}

    def resume_at(self, position: dict) -> None:
        self.resume = (int(position["epoch"]), int(position["batches"]))

    def __len__(self) -> int:
        if self.drop_last:
            return self.pairs_per_epoch // self.batch_size
        return -(-self.pairs_per_epoch // self.batch_size)


class ResumableLoader(DataLoader):
    """The training DataLoader, resumable in Lightning's sense: a mid-epoch checkpoint records where the epoch stood
    (restored when the loader is built after the restore; else the data module's own state carries it)."""

    def state_dict(self) -> dict:
        return self.sampler.position()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.resume_at(state)


def _cycled_perm(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """k indices into range(n): whole random permutations, concatenated, so each image is used evenly."""
    return torch.cat([torch.randperm(n, generator=g) for _ in range(-(-k // n))])[:k]
