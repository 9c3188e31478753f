from __future__ import annotations

import os
import pickle
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from PIL import Image

from mixsep.cluster.job import Job
from mixsep.data import pairs as pairing
from mixsep.data import sources
from mixsep.data.datamodule import MixDataModule
from mixsep.errors import DataNotFoundError


def _dm(kwargs: dict, **over) -> MixDataModule:
    dm = MixDataModule(**{**kwargs, **over})
    dm.setup("fit")
    return dm


def _float(dm: MixDataModule, batch):
    return dm.on_after_batch_transfer(batch, 0)


def test_batches_have_shapes_ranges_and_mix_is_the_mean(tiny_data_kwargs):
    dm = _dm(tiny_data_kwargs)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        mix, mnist, cifar = _float(dm, next(iter(loader)))
        assert mix.shape == mnist.shape == cifar.shape == (8, 3, 32, 32)
        assert mix.dtype == torch.float32
        for t in (mix, mnist, cifar):
            assert t.min() >= 0 and t.max() <= 1
        torch.testing.assert_close(mix, (mnist + cifar) / 2)
        # MNIST is gray, repeated to three channels
        assert torch.equal(mnist[:, 0], mnist[:, 1]) and torch.equal(mnist[:, 1], mnist[:, 2])


def test_mnist_is_resized_with_pil_bilinear_and_cifar_read_in_class_then_name_order(tiny_root, tiny_data_kwargs):
    dm = _dm(tiny_data_kwargs)
    from torchvision.datasets import MNIST

    raw = MNIST(str(tiny_root), train=False).data[3].numpy()
    expected = np.asarray(Image.fromarray(raw).resize((32, 32), Image.BILINEAR))
    assert np.array_equal(dm.splits.gray_test[3, 0].numpy(), expected)
    files = sources.list_image_folder(tiny_root / "cifar10" / "test")
    assert [f.parent.name for f in files][:2] == ["airplane", "airplane"]
    assert np.array_equal(dm.splits.color_test[5].permute(1, 2, 0).numpy(), np.asarray(Image.open(files[5])))


def test_test_pairs_are_identical_whatever_the_run_seed(tiny_data_kwargs):
    a, b = _dm(tiny_data_kwargs, seed=1), _dm(tiny_data_kwargs, seed=999)
    assert torch.equal(a.test_pair_ids, b.test_pair_ids)
    assert torch.equal(a.val_pair_ids, b.val_pair_ids)
    ta, tb = next(iter(a.test_dataloader())), next(iter(b.test_dataloader()))
    assert all(torch.equal(x, y) for x, y in zip(ta, tb))
    # every CIFAR test image is used once, MNIST test images in a shuffled (not identity) order
    assert sorted(a.test_pair_ids[:, 1].tolist()) == list(range(12))
    assert a.test_pair_ids[:, 0].tolist() != list(range(12))


def test_test_pairs_option_takes_a_prefix_of_the_fixed_pairs(tiny_data_kwargs):
    full, short = _dm(tiny_data_kwargs), _dm(tiny_data_kwargs, test_pairs=5)
    assert torch.equal(short.test_pair_ids, full.test_pair_ids[:5])


def test_training_pairs_are_redrawn_every_epoch_and_reproducible(tiny_data_kwargs):
    dm = _dm(tiny_data_kwargs, seed=3)
    sampler = dm.train_sampler
    sampler.set_epoch(0)
    e0 = torch.cat(list(sampler))
    sampler.set_epoch(1)
    e1 = torch.cat(list(sampler))
    assert not torch.equal(e0, e1)
    sampler.set_epoch(0)
    assert torch.equal(torch.cat(list(sampler)), e0)  # a resumed run draws the same pairs
    other_seed = _dm(tiny_data_kwargs, seed=4).train_sampler
    other_seed.set_epoch(0)
    assert not torch.equal(torch.cat(list(other_seed)), e0)


def test_validation_images_are_held_out_of_training(tiny_data_kwargs):
    dm = _dm(tiny_data_kwargs)
    for train_ids, val_ids in ((dm.mnist_train_ids, dm.mnist_val_ids), (dm.cifar_train_ids, dm.cifar_val_ids)):
        assert len(val_ids) == 8
        assert not set(train_ids.tolist()) & set(val_ids.tolist())
    train_pairs = torch.cat(list(dm.train_sampler))
    assert not set(train_pairs[:, 0].tolist()) & set(dm.mnist_val_ids.tolist())
    assert not set(train_pairs[:, 1].tolist()) & set(dm.cifar_val_ids.tolist())
    assert set(dm.val_pair_ids[:, 0].tolist()) <= set(dm.mnist_val_ids.tolist())


def test_train_pairs_sets_the_epoch_length(tiny_data_kwargs):
    dm = _dm(tiny_data_kwargs, train_pairs=16)
    assert len(dm.train_dataloader()) == 2
    assert sum(len(b[0]) for b in dm.train_dataloader()) == 16


def test_ddp_ranks_split_the_pairs_without_overlap(tiny_data_kwargs):
    dm = _dm(tiny_data_kwargs)
    full = dm.train_sampler.draw(0)
    shards = [
        pairing.RandomPairSampler(
            dm.mnist_train_ids, dm.cifar_train_ids, len(full), 4, seed=0, rank=r, world_size=2
        ).draw(0)
        for r in range(2)
    ]
    assert torch.equal(torch.cat([shards[0][:, None], shards[1][:, None]], 1).reshape(-1, 2), full)


def test_missing_data_error_lists_paths_and_fixes(tmp_path):
    dm = MixDataModule(root=str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert "data.download=true" in msg and "data.root=" in msg
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in msg


def test_missing_cifar_is_reported_with_its_paths(tiny_root, tiny_data_kwargs):
    shutil.rmtree(tiny_root / "cifar10")
    with pytest.raises(DataNotFoundError) as err:
        _dm(tiny_data_kwargs)
    assert "cifar-10-batches-py" in str(err.value) and "data.download=true" in str(err.value)


def test_corrupt_image_gives_a_clear_error(tiny_root, tiny_data_kwargs):
    bad = next((tiny_root / "cifar10" / "test" / "bird").iterdir())
    bad.write_bytes(b"not a png")
    with pytest.raises(DataNotFoundError, match="unreadable"):
        _dm(tiny_data_kwargs)


def test_truncated_mnist_gives_a_clear_error(tiny_root, tiny_data_kwargs):
    f = tiny_root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(DataNotFoundError, match="MNIST"):
        _dm(tiny_data_kwargs)


def test_cache_is_reused_and_rebuilt_after_corruption(tiny_data_kwargs, monkeypatch):
    first = _dm(tiny_data_kwargs).splits
    cache = Path(tiny_data_kwargs["cache_dir"])
    files = sorted(cache.glob("*.pt"))
    assert len(files) == 4
    calls = []
    real_loader = sources.Cifar.load
    monkeypatch.setattr(sources.Cifar, "load", lambda *a: calls.append(a) or real_loader(*a))
    _dm(tiny_data_kwargs)
    assert calls == []  # served from the cache
    target = next(f for f in files if f.name.startswith("cifar_test"))
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    target.write_bytes(bytes(blob))
    again = _dm(tiny_data_kwargs).splits
    assert len(calls) == 1  # rebuilt from the images
    assert torch.equal(again.color_test, first.color_test)


def test_a_sigterm_while_the_cache_is_written_leaves_no_half_written_file(tiny_data_kwargs, monkeypatch):
    """A job stopped (a real SIGTERM, as a job's) while it writes the decoded cache: no file is left half-written,
    and the next run builds and uses the cache."""
    cache = Path(tiny_data_kwargs["cache_dir"])
    real_save = torch.save

    def save_then_sigterm(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(torch, "save", save_then_sigterm)
    with pytest.raises(SIGTERMException), Job(cache.parent / "job"):
        _dm(tiny_data_kwargs)
    assert sorted(cache.iterdir()) == []
    monkeypatch.undo()
    _dm(tiny_data_kwargs)
    assert len(list(cache.glob("*.pt"))) == 4 and len(list(cache.iterdir())) == 4


def test_cache_is_rebuilt_when_the_source_changes(tiny_root, tiny_data_kwargs):
    before = _dm(tiny_data_kwargs).splits.color_test.clone()
    f = sources.list_image_folder(tiny_root / "cifar10" / "test")[0]
    Image.fromarray(np.full((32, 32, 3), 7, dtype=np.uint8)).save(f)
    after = _dm(tiny_data_kwargs).splits.color_test
    assert (after[0] == 7).all() and not torch.equal(before, after)


def test_torchvision_archive_layout_is_detected_and_read(tiny_root, tiny_data_kwargs, monkeypatch):
    """The official pickled archive, as far as it can be faked: torchvision checks its md5 sums."""
    shutil.rmtree(tiny_root / "cifar10")
    base = tiny_root / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(1)
    arrays = {}
    for name, n in [(f"data_batch_{i}", 10) for i in range(1, 6)] + [("test_batch", 12)]:
        arrays[name] = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        with open(base / name, "wb") as f:
            pickle.dump({"data": arrays[name], "labels": [0] * n}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(sources.CIFAR_CLASSES)}, f)
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    assert sources.Cifar("cifar10").on_disk(tiny_root) == "archive"
    dm = _dm(tiny_data_kwargs)
    assert dm.splits.color_train.shape == (50, 3, 32, 32)
    expected = torch.from_numpy(arrays["test_batch"].reshape(12, 3, 32, 32))
    assert torch.equal(dm.splits.color_test, expected)


def test_bad_config_values_are_rejected(tiny_data_kwargs):
    with pytest.raises(ValueError, match="data.batch_size"):
        MixDataModule(**{**tiny_data_kwargs, "batch_size": 0})
    with pytest.raises(ValueError, match="val_holdout"):
        _dm(tiny_data_kwargs, val_holdout=1000)


def test_prefixes_of_the_fixed_pairs_mix_all_classes(tiny_data_kwargs):
    dm = _dm(tiny_data_kwargs)
    files = sources.list_image_folder(Path(tiny_data_kwargs["root"]) / "cifar10" / "test")
    classes = [files[i].parent.name for i in dm.test_pair_ids[:6, 1].tolist()]
    assert len(set(classes)) > 2  # the ImageFolder order is by class; the pair order is not
    assert sorted(dm.test_pair_ids[:, 1].tolist()) == list(range(12))  # still each CIFAR test image once
