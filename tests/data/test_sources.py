"""Other gray and colour sources than MNIST + CIFAR-10, in their real on-disk formats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mixsep.data.datamodule import MixDataModule
from mixsep.errors import ConfigError, DataNotFoundError
from mixsep.evaluate import evaluate
from mixsep.models.metrics import TEST_KEYS
from mixsep.run import train
from tests.helpers import make_folder, make_gray, report_main


@pytest.fixture
def other_root(tiny_root: Path) -> Path:
    """The tiny MNIST + CIFAR-10, plus FashionMNIST (idx) and an ImageFolder of 32x32 images."""
    make_gray(tiny_root, "FashionMNIST", 40, 12, seed=5)
    make_folder(tiny_root, "textures", 40, 14, seed=6)
    return tiny_root


def test_each_source_option_builds_its_class_and_names_itself(compose, tmp_path):
    """conf/data/{gray,color}/<name>.yaml picks the class by _target_; a name or an old config node without
    _target_ (as earlier runs and checkpoints wrote them) builds the same source."""
    from hydra.utils import instantiate

    from mixsep.data.sources import Cifar, ImageFolder, Svhn, TorchvisionGray, make_source, parse_pair

    expected = {
        "gray": {"mnist": TorchvisionGray, "fashion_mnist": TorchvisionGray, "kmnist": TorchvisionGray},
        "color": {"cifar10": Cifar, "cifar100": Cifar, "svhn": Svhn, "image_folder": ImageFolder},
    }
    for kind, options in expected.items():
        for name, cls in options.items():
            extra = ["data.color.folder=textures"] if name == "image_folder" else []
            node = compose("config", [f"data/{kind}={name}", *extra], tmp_path)["data"][kind]
            source = instantiate(node)
            assert type(source) is cls and source.kind == kind
            assert make_source(name if name != "image_folder" else dict(node), kind).label == source.label
    gray, color = parse_pair("fashion_mnist+image_folder:textures")
    assert (gray.label, color.label, color.folder) == ("fashion_mnist", "image_folder:textures", "textures")
    with pytest.raises(ConfigError, match="not a gray one"):
        make_source(Cifar(), "gray")


def test_the_default_pair_is_unchanged(tiny_data_kwargs, tmp_path):
    named = MixDataModule(**tiny_data_kwargs, gray="mnist", color={"name": "cifar10"})
    default = MixDataModule(**tiny_data_kwargs)
    named.setup("fit")
    default.setup("fit")
    assert torch.equal(named.test_pair_ids, default.test_pair_ids) and default.sources == "mnist+cifar10"
    assert torch.equal(named.splits.color_test, default.splits.color_test)
    assert sorted(p.name.split("_")[0] for p in (tmp_path / "cache").glob("*.pt")) == ["cifar"] * 2 + ["mnist"] * 2


def test_other_sources_load_with_their_own_cache_and_fixed_pairs(other_root, tiny_data_kwargs, tmp_path):
    textures = {"name": "image_folder", "folder": "textures"}
    dm = MixDataModule(**tiny_data_kwargs, gray="fashion_mnist", color=textures)
    dm.setup("fit")
    assert dm.sources == "fashion_mnist+image_folder:textures"
    assert dm.splits.gray_test.shape == (12, 1, 32, 32) and dm.splits.color_test.shape == (14, 3, 32, 32)
    assert len(dm.test_pair_ids) == 12  # min of the two test sets, a fixed pairing
    names = {p.name.split("_test")[0].split("_train")[0] for p in (tmp_path / "cache").glob("*.pt")}
    assert names == {"fashion_mnist", "image_folder-textures"}
    again = MixDataModule(**tiny_data_kwargs, gray="fashion_mnist", color=textures)
    again.setup("fit")
    assert torch.equal(again.test_pair_ids, dm.test_pair_ids)
    mnist = MixDataModule(**tiny_data_kwargs)
    mnist.setup("fit")
    assert not torch.equal(mnist.splits.gray_test, dm.splits.gray_test)


def test_cifar100_folder_and_svhn_files_are_read(tiny_root, tmp_path, monkeypatch):
    from scipy.io import savemat
    from torchvision.datasets import SVHN

    from mixsep.data.sources import Cifar, Svhn

    make_folder(tiny_root, "cifar100", 6, 4, seed=7, classes=("apple", "bee", "cloud"))
    assert Cifar("cifar100").load(tiny_root, False, False).shape == (4, 3, 32, 32)
    images = np.random.default_rng(8).integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    (tiny_root / "svhn").mkdir()
    savemat(tiny_root / "svhn" / "test_32x32.mat", {"X": images, "y": np.ones((5, 1), dtype=np.uint8)})
    monkeypatch.setattr(SVHN, "_check_integrity", lambda self: True)  # torchvision checks the real files' MD5
    svhn = Svhn().load(tiny_root, False, False)
    assert svhn.shape == (5, 3, 32, 32) and torch.equal(svhn[2].permute(1, 2, 0), torch.from_numpy(images[..., 2]))


def test_missing_source_names_its_paths_and_fixes(tiny_root, tiny_data_kwargs):
    dm = MixDataModule(**tiny_data_kwargs, gray="kmnist")
    with pytest.raises(DataNotFoundError) as err:
        dm.setup("fit")
    assert str(tiny_root / "KMNIST" / "raw") in str(err.value) and "data.download=true" in str(err.value)
    with pytest.raises(ConfigError, match="data/gray=emnist"):
        MixDataModule(**tiny_data_kwargs, gray="emnist")
    with pytest.raises(ConfigError, match="data.color.folder"):
        MixDataModule(**tiny_data_kwargs, color={"name": "image_folder"}).setup("fit")


def test_train_on_another_pair_and_score_across_sources(compose, other_root, tiny_overrides, tmp_path):
    data = [o for o in tiny_overrides if o.startswith("data.")]
    other = ["data/gray=fashion_mnist", "data/color=image_folder", "data.color.folder=textures"]
    metrics = train(compose("config", tiny_overrides + other + ["model=unet"], tmp_path / "run"))
    assert metrics["sources"] == "fashion_mnist+image_folder:textures"
    assert all(math.isfinite(metrics[k]) for k in TEST_KEYS)  # the gray slot is scored as test/mnist_*
    # cross-source: the same model on the default pair's fixed test pairs
    cross = evaluate(
        compose(
            "evaluate",
            data + [f"ckpt_path={metrics['checkpoint']}", "samples=2", "trainer.accelerator=cpu"],
            tmp_path / "cross",
        )
    )
    assert cross["sources"] == "mnist+cifar10" and cross["trained_on"] == "fashion_mnist+image_folder:textures"
    assert cross["test/mnist_psnr"] != pytest.approx(metrics["test/mnist_psnr"], abs=1e-3)


def test_report_never_ranks_different_source_pairs_together(tmp_path, other_root):
    for name, sources, psnr in (("a", "mnist+cifar10", 20.0), ("b", "fashion_mnist+cifar10", 30.0)):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "metrics.json").write_text(
            json.dumps(
                {
                    "model": name,
                    "params": 1,
                    "test_pairs": 12,
                    "sources": sources,
                    "test/mnist_psnr": psnr,
                    "test/cifar_psnr": psnr,
                    "test/mnist_ssim": 0.5,
                    "test/cifar_ssim": 0.5,
                }
            )
        )
    text = report_main(tmp_path / "runs", tmp_path, other_root)
    tables = {t.split(":")[0]: t for t in text.split("Scored on ")[1:]}
    fashion = tables["12 test pairs of fashion_mnist+cifar10"]
    assert "| b |" in fashion and "| a |" not in fashion and fashion.count("| baseline: ") == 2
    assert "| a |" in tables["12 test pairs of mnist+cifar10"]


def test_emnist_letters_load_upright_in_their_own_file_names_and_the_cache_is_reused(tiny_data_kwargs, tmp_path):
    from mixsep.data.sources import resize_mnist
    from tests.helpers import write_idx_images, write_idx_labels

    raw = Path(tiny_data_kwargs["root"]) / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(3)
    stored = {}
    for split, n in (("train", 40), ("test", 12)):
        stored[split] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        write_idx_images(raw / f"emnist-letters-{split}-images-idx3-ubyte", stored[split])
        write_idx_labels(raw / f"emnist-letters-{split}-labels-idx1-ubyte", rng.integers(1, 27, n))
    dm = MixDataModule(**tiny_data_kwargs, gray="emnist_letters")
    dm.setup("fit")
    assert dm.sources == "emnist_letters+cifar10"
    upright = resize_mnist(torch.from_numpy(stored["test"]).transpose(1, 2).contiguous())  # EMNIST is stored transposed
    assert torch.equal(dm.splits.gray_test, upright)
    cached = sorted((tmp_path / "cache").glob("emnist_letters_*.pt"))
    assert len(cached) == 2  # one per split, named after the source, keyed by its files
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = MixDataModule(**tiny_data_kwargs, gray="emnist_letters")
    again.setup("fit")  # decoded once: the cache is read, not written again
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "cache").glob("emnist_letters_*.pt"))] == stamps
    assert torch.equal(again.splits.gray_test, upright)


def test_a_link_inside_a_class_folder_is_never_followed(tiny_root, tmp_path):
    """A class folder is listed one level deep: a link back up (or to /) adds no file and no walk."""
    from mixsep.data.sources import list_image_folder

    split = tiny_root / "cifar10" / "train"
    before = list_image_folder(split)
    (split / "airplane" / "loop").symlink_to("..")
    (split / "airplane" / "root").symlink_to("/")
    assert list_image_folder(split) == before and len(before) == 40
