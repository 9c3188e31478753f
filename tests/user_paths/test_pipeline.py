"""The tensor-resident pipeline against the usual per-item pipeline: same pairs, same pixels."""

from __future__ import annotations

import pytest
import torch
from torchvision.datasets import MNIST

from benchmarks.per_item import PerItemPairDataset
from mixsep.data.datamodule import MixDataModule


def _dm(kwargs, **over) -> MixDataModule:
    dm = MixDataModule(**{**kwargs, **over})
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("split", ["train", "test"])
def test_fast_batches_equal_the_per_item_reference_exactly(tiny_root, tiny_data_kwargs, split):
    dm = _dm(tiny_data_kwargs)
    train = split == "train"
    mnist_28 = MNIST(str(tiny_root), train=train).data
    cifar = dm.splits.color_train if train else dm.splits.color_test
    if train:
        dm.train_sampler.set_epoch(2)
        pair_batches = list(dm.train_sampler)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(2)
    else:
        pair_batches = list(dm.test_dataloader().sampler)
        loader = dm.test_dataloader()
    reference = PerItemPairDataset(mnist_28, cifar, torch.cat(pair_batches))
    k = 0
    for batch in loader:
        fast = dm.on_after_batch_transfer(batch, 0)
        for j in range(len(fast[0])):
            expected = reference[k]
            for a, b in zip(fast, expected):
                assert torch.equal(a[j], b)
            k += 1
    assert k == len(reference)


def test_batches_land_on_the_requested_device_and_dtype(tiny_data_kwargs):
    dm = _dm(tiny_data_kwargs)
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].dtype == torch.uint8  # 4x less to move to the accelerator than float
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    moved = dm.on_after_batch_transfer(tuple(t.to(device) for t in batch), 0)
    assert all(t.device.type == device.type and t.dtype == torch.float32 for t in moved)


def test_train_noise_augmentation_only_touches_training_cifar(tiny_data_kwargs):
    dm = _dm(tiny_data_kwargs, cifar_train_noise=0.05)
    batch = next(iter(dm.train_dataloader()))

    class Stage:
        training = True

    dm.trainer = Stage()
    mix, mnist, cifar = dm.on_after_batch_transfer(batch, 0)
    clean_mix, clean_mnist, clean_cifar = dm.make_batch(*batch)
    assert torch.equal(mnist, clean_mnist) and not torch.equal(cifar, clean_cifar)
    torch.testing.assert_close(mix, (mnist + cifar) / 2)
    Stage.training = False
    assert all(
        torch.equal(a, b) for a, b in zip(dm.on_after_batch_transfer(batch, 0), (clean_mix, clean_mnist, clean_cifar))
    )
