"""Report 004's CIFAR-10-only batches: ``data.task=reconstruct`` (cifar, cifar) or ``denoise`` (cifar + noise,
cifar), on the same cached images, holdout and fixed test pairs as the mean images."""

from __future__ import annotations

import torch

from mixsep.data.datamodule import MixDataModule
from mixsep.data.pairs import TEST_PAIRING_SEED
from mixsep.errors import ConfigError

TASKS = ("reconstruct", "denoise")


class CifarTaskDataModule(MixDataModule):
    def __init__(self, task: str = "reconstruct", noise_std: float = 0.1, **kwargs) -> None:
        if task not in TASKS:
            raise ConfigError(f"data.task={task!r} is not one of {TASKS} (mean images: the default data module)")
        super().__init__(**kwargs)
        self.task, self.noise_std = task, noise_std

    def epoch_size(self) -> int:
        return len(self.cifar_train_ids)  # one pass over CIFAR-10's training images

    def make_batch(self, gray_u8: torch.Tensor, color_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clean = color_u8.float().div_(255)
        if self.task == "reconstruct":
            return clean, clean
        # noise_std is given on the [-1, 1] scale; images here live in [0, 1] (half the scale). Only the
        # input is noisy. Outside training the noise is a function of the batch, so every run and every
        # model is scored on the same noisy inputs.
        if self.trainer is not None and self.trainer.training:
            noise = torch.randn_like(clean)
        else:
            g = torch.Generator().manual_seed(TEST_PAIRING_SEED + int(color_u8[:, :, :4, :4].sum()))
            noise = torch.randn(clean.shape, generator=g).to(clean.device)
        return clean + noise * (self.noise_std / 2), clean
