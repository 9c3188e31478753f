"""The tests' fixtures: tiny datasets in the real on-disk formats, their Hydra overrides, a config composer."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import TINY_SIZES, compose_config, make_cifar_folder, make_mnist

# files whose tests take minutes go first, so that no worker starts one of them at the end (--dist loadfile
# hands out whole files in this order, --no-loadscope-reorder keeps it); after the two clusters, which mostly wait,
# by their measured time in the suite (seconds, 2-core AMD EPYC, 2026-12-01): the longest first
LONGEST_FIRST = (
    "test_slurm.py",  # 250: SLURM's allocations, asleep most of it: first, beside the rest
    "test_ray.py",  # 190
    "test_install.py",  # 90: a wheel built and installed into a fresh environment, its commands in subprocesses
    "test_extensions.py",  # 120: a user's own network, source and score, each command in its own process
    "test_readme.py",  # 340
    "test_status.py",  # 125
    "test_run.py",  # 115
    "test_ddp.py",  # 115
    "test_mlflow.py",  # 115
    "test_sweeps.py",  # 105
    "test_bad_input.py",  # 95
    "test_debug.py",  # 95
    "test_realdata.py",  # 85
    "test_hydra_flags.py",  # 40
    "test_nets.py",  # 50
    "test_model_files.py",  # 25: crafted model files through every reader
    "test_gpu_check.py",  # 45
    "test_module.py",  # 40
    "test_search.py",  # 35
    "test_requeue.py",  # 35
    "test_separate.py",  # 25
    "test_prior.py",  # 25
    "test_callbacks.py",  # 20
    "test_dashboards.py",  # 15
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept


# the tests see the package's configs only: a developer's own ~/.config/mixsep (a cluster's launcher in its
# local/default.yaml) would change every run; a test that wants a user folder sets one
os.environ["MIXSEP_CONFIG_DIR"] = str(Path(tempfile.mkdtemp(prefix="mixsep-tests-")) / "no_user_config")

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each, their subprocesses too
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """MNIST (idx) + CIFAR-10 (ImageFolder): 40 train / 12 test images each."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    make_mnist(root, 40, 12, rng)
    make_cifar_folder(root, 40, 12, rng)
    return root


@pytest.fixture
def tiny_data_kwargs(tiny_root: Path, tmp_path: Path) -> dict:
    return dict(
        root=str(tiny_root),
        cache_dir=str(tmp_path / "cache"),
        batch_size=8,
        eval_batch_size=8,
        val_pairs=8,
        val_holdout=8,
        test_pairs=12,
    )


@pytest.fixture
def tiny_overrides(tiny_root: Path, tmp_path: Path) -> list[str]:
    """Hydra overrides for one tiny epoch on the tiny datasets."""
    return [
        f"data.root={tiny_root}",
        f"data.cache_dir={tmp_path / 'cache'}",
        *TINY_SIZES,
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1",
        "samples=4",
        "callbacks.progress_bar.refresh_rate=0",
    ]


@pytest.fixture(scope="session")
def compose():
    """``compose(name, overrides, out)``: a config composed as ``@hydra.main`` composes it, run folder ``out``."""
    return compose_config
