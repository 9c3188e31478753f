"""The mean-image data: batches leave the DataLoader as uint8 ``(gray, color)`` gathered by indexing, and become
float ``(mix, gray, color)`` in [0, 1], ``mix = (gray + color) / 2``, on the training device."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from mixsep.conf import CONF_DIR
from mixsep.data.augment import TRANSFORMS, dihedral, mirror_half, permute_channels
from mixsep.data.cache import Splits, default_cache_dir, load_splits
from mixsep.data.pairs import (
    FixedPairSampler,
    PairBatches,
    RandomPairSampler,
    ResumableLoader,
    fixed_test_pairs,
    holdout_split,
)
from mixsep.data.sources import Source, make_source
from mixsep.errors import ConfigError


def default_data_root() -> str:
    """``data.root`` as conf/data/default.yaml writes it (MIXSEP_DATA_ROOT, else ./data): the one place it is
    written, also for the commands that take no config (mix --test-pairs, report's baselines)."""
    from omegaconf import OmegaConf

    return str(OmegaConf.load(Path(CONF_DIR) / "data" / "default.yaml").root)


def to_float_batch(gray_u8: torch.Tensor, color_u8: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """uint8 targets -> float (mix, mnist, cifar) in [0, 1], each (B, 3, 32, 32); MNIST's three equal
    channels are a broadcast view of its one stored channel."""
    gray = gray_u8.float().div_(255).expand(-1, 3, -1, -1)
    color = color_u8.float().div_(255)
    return (gray + color) / 2, gray, color


# what the config schema's types (training/schema.py) cannot say: each count's least value (train_pairs: None = all)
COUNTS = ("batch_size", "eval_batch_size", "val_pairs", "test_pairs", "val_holdout", "train_pairs")
LEAST = {**dict.fromkeys(COUNTS, 1), "num_workers": 0}


class MixDataModule(L.LightningDataModule):
    """Paired MNIST + CIFAR-10 mean images: a batch is (mix, mnist, cifar)."""

    task = "separate"  # what metrics.json records as the task

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
        cifar_train_noise: float = 0.0,
        data_on_device: bool = True,
        gray: Source | str | dict = "mnist",
        color: Source | str | dict = "cifar10",
        dihedral_augment: bool = False,
        color_flip: bool = False,
        color_permute: bool = False,
    ) -> None:
        super().__init__()
        self.gray, self.color = make_source(gray, "gray"), make_source(color, "color")
        self.root, self.cache_dir = Path(root or default_data_root()), Path(cache_dir or default_cache_dir())
        self.download, self.batch_size, self.eval_batch_size = download, batch_size, eval_batch_size
        self.num_workers, self.train_pairs, self.val_pairs = num_workers, train_pairs, val_pairs
        self.test_pairs, self.val_holdout, self.seed = test_pairs, val_holdout, seed
        self.cifar_train_noise, self.data_on_device = cifar_train_noise, data_on_device
        self.dihedral_augment, self.color_flip, self.color_permute = dihedral_augment, color_flip, color_permute
        for name, least in LEAST.items():
            if (value := getattr(self, name)) is not None and not (isinstance(value, int) and value >= least):
                raise ConfigError(f"data.{name} must be an integer >= {least}, got {value!r}")
        self.splits: Splits | None = None

    def check(self) -> Splits:
        """The data, loaded once per process (downloaded, decoded and cached the first time), sizes it cannot give
        refused: run.py calls it before the run starts (and before its config is printed), Lightning before setup."""
        if self.splits is None:
            self.splits = load_splits(self.root, self.cache_dir, self.download, self.gray, self.color)
            for seed_offset, images in enumerate((self.splits.gray_train, self.splits.color_train)):
                holdout_split(len(images), self.val_holdout, seed_offset)
        return self.splits

    def prepare_data(self) -> None:  # Lightning calls this once (rank 0) before setup: the same process keeps them
        self.check()

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_sampler"):
            return
        s = self.check()
        self.mnist_train_ids, self.mnist_val_ids = holdout_split(len(s.gray_train), self.val_holdout, 0)
        self.cifar_train_ids, self.cifar_val_ids = holdout_split(len(s.color_train), self.val_holdout, 1)
        n_val = min(self.val_pairs, self.val_holdout)
        self.val_pair_ids = torch.stack([self.mnist_val_ids[:n_val], self.cifar_val_ids[:n_val]], dim=1)
        all_test = fixed_test_pairs(len(s.gray_test), len(s.color_test))
        if self.test_pairs > len(all_test):
            logging.getLogger("mixsep").warning(
                f"data.test_pairs={self.test_pairs} is more than the {len(all_test)} test pairs there are: "
                f"scoring all {len(all_test)}"
            )
        self.test_pair_ids = all_test[: self.test_pairs]
        n_train = self.train_pairs or self.epoch_size()
        trainer = getattr(self, "trainer", None)
        self.rank, self.world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        device = trainer.strategy.root_device if trainer else torch.device("cpu")
        if self.data_on_device and device.type == "cuda" and self.num_workers == 0:
            # the whole data set (~400 MB of uint8) lives on the GPU: batches never cross the bus
            self.splits = Splits(*(t.to(device) for t in (s.gray_train, s.color_train, s.gray_test, s.color_test)))
        self.train_sampler = RandomPairSampler(
            self.mnist_train_ids, self.cifar_train_ids, n_train, self.batch_size, self.seed, self.rank, self.world_size
        )

    def epoch_size(self) -> int:
        """Training pairs per epoch (data.train_pairs=null): every image of the larger training set once."""
        return max(len(self.mnist_train_ids), len(self.cifar_train_ids))

    @property
    def sources(self) -> str:
        """The source pair, e.g. ``mnist+cifar10`` (image_folder: ``image_folder:<folder>``)."""
        return f"{self.gray.label}+{self.color.label}"

    def _loader(self, gray: torch.Tensor, color: torch.Tensor, sampler: Sampler) -> DataLoader:
        loader = ResumableLoader if isinstance(sampler, RandomPairSampler) else DataLoader
        return loader(
            PairBatches(gray, color),
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
            return self._loader(self.splits.gray_train, self.splits.color_train, fixed)
        return self._loader(self.splits.gray_train, self.splits.color_train, self.train_sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits.gray_train, self.splits.color_train, self._eval_sampler(self.val_pair_ids))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits.gray_test, self.splits.color_test, self._eval_sampler(self.test_pair_ids))

    def _eval_sampler(self, pairs: torch.Tensor) -> FixedPairSampler:
        return FixedPairSampler(pairs, self.eval_batch_size, self.rank, self.world_size)

    def state_dict(self) -> dict:
        """Where the training epoch stands (saved in every checkpoint, restored before training resumes)."""
        sampler = getattr(self, "train_sampler", None)
        return {"train_position": sampler.position()} if sampler is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        if "train_position" in state_dict:
            self.setup("fit")
            self.train_sampler.resume_at(state_dict["train_position"])

    def fixed_batch(self, split: str, n: int, spread: bool = False) -> tuple[torch.Tensor, ...]:
        """The first n fixed ``val`` or ``test`` pairs as a float batch, or (``spread``) n evenly spaced ones."""
        s, val = self.splits, split == "val"
        gray, color = (s.gray_train, s.color_train) if val else (s.gray_test, s.color_test)
        ids = self.val_pair_ids if val else self.test_pair_ids
        ids = ids[torch.linspace(0, len(ids) - 1, min(n, len(ids))).long()] if spread else ids[:n]
        return self.make_batch(*PairBatches(gray, color)[ids])

    def make_batch(self, gray_u8: torch.Tensor, color_u8: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """uint8 sources -> the float batch (mix, mnist, cifar)."""
        return to_float_batch(gray_u8, color_u8)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and batch[0].dtype == torch.uint8):
            return batch
        trainer, (gray, color) = self.trainer, batch
        if trainer is None or not trainer.training:
            return self.make_batch(gray, color)
        if not getattr(trainer, "overfit_batches", 0) and hasattr(self, "train_sampler"):
            self.train_sampler.consumed += 1  # this batch reached training: where a mid-epoch resume restarts
        if self.dihedral_augment:  # one of the 8 flips/rotations, the same for both sources
            k = int(torch.randint(TRANSFORMS, (1,)))
            gray, color = dihedral(gray, k), dihedral(color, k)
        if self.color_flip:
            color = mirror_half(color)
        if self.color_permute:
            color = permute_channels(color)
        return self._noisy_cifar_batch(gray, color) if self.cifar_train_noise > 0 else self.make_batch(gray, color)

    def _noisy_cifar_batch(self, gray_u8: torch.Tensor, color_u8: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Gaussian grain on the training CIFAR images (the target too): the detail their JPEG lost, the PNGs keep."""
        mix, gray, color = to_float_batch(gray_u8, color_u8)
        color = (color + torch.randn_like(color) * self.cifar_train_noise).clamp_(0, 1)
        return (gray + color) / 2, gray, color
