"""The usual per-item pipeline, for comparison only: a Dataset that builds each pair on its own (resize the
28x28 digit, repeat it to 3 channels, mix), batched by a DataLoader's collate."""

from __future__ import annotations

import torch
from PIL import Image
from torch.utils.data import Dataset


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
