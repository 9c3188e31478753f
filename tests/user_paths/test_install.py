"""A regular install, as a new user gets it: the wheel and the sdist built from this checkout, the wheel (not
editable) installed with the locked versions of the core (no extras) into a fresh environment, and mixsep's
commands run from an empty folder: a short training run on the real data (tiny data without it), evaluate of
that run, separate with the default model, report; an engine whose extra is missing is one line. And the lock:
pyproject.toml and uv.lock agree, and a disagreement is caught."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import (
    PROJECT_ROOT,
    REAL_ROOT,
    make_cifar_folder,
    make_mnist,
    real_data_available,
)

pytestmark = pytest.mark.slow

UV = [sys.executable, "-m", "uv"]


def uv(*args: str, cwd: Path = PROJECT_ROOT, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([*UV, *args], cwd=cwd, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel installed into a fresh environment with the lock's core versions: (python, dist folder)."""
    home = tmp_path_factory.mktemp("install")
    dist, env = home / "dist", home / "env"
    uv("build", "--sdist", "--wheel", "--out-dir", str(dist))
    locked = home / "core.txt"  # the lock's versions of the core: no extras, not mixsep itself
    uv("export", "--frozen", "--no-emit-project", "--no-hashes", "--no-header", "--output-file", str(locked))
    uv("venv", "--python", sys.executable, str(env))
    python = env / "bin" / "python"
    (wheel,) = dist.glob("mixsep-*.whl")
    uv("pip", "install", "--python", str(python), "--requirement", str(locked), str(wheel))
    return python, dist


def mixsep(python: Path, work: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """A command of the installed mixsep from ``work``: nothing of the checkout on its path."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(python), *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        env={**clean, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0", **(env or {})},
    )


def test_the_wheel_holds_the_configs_and_the_default_model_and_the_sdist_the_tests(installed):
    _, dist = installed
    (wheel,) = dist.glob("mixsep-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mixsep/conf/config.yaml" in names and "mixsep/conf/experiment/fast_cpu.yaml" in names
    assert {
        f"mixsep/pretrained/best_cpu_range/{f}" for f in ("model.safetensors", "config.json", "model.onnx")
    } <= names
    assert "hydra_plugins/mixsep_plugins/search_path.py" in names
    assert not any(n.startswith(("tests/", "results/")) for n in names)
    (sdist,) = dist.glob("mixsep-*.tar.gz")
    members = {m.split("/", 1)[1] for m in tarfile.open(sdist).getnames() if "/" in m}
    assert {"tests/conftest.py", "tests/user_paths/test_install.py", "conf/config.yaml", "uv.lock"} <= members


def test_an_installed_mixsep_trains_evaluates_separates_and_reports_from_an_empty_folder(installed, tmp_path):
    python, _ = installed
    work = tmp_path / "work"
    work.mkdir()
    where = mixsep(python, work, "-c", "import mixsep, sys; print(mixsep.__file__)")
    assert where.returncode == 0 and str(python.parents[1]) in where.stdout, where.stdout + where.stderr
    if real_data_available():
        data, sizes = REAL_ROOT, ["data.train_pairs=256", "data.val_pairs=64", "data.test_pairs=128"]
    else:
        rng = np.random.default_rng(0)
        data = str(tmp_path / "data")
        make_mnist(Path(data), 40, 12, rng)
        make_cifar_folder(Path(data), 40, 12, rng)
        sizes = ["data.val_pairs=8", "data.val_holdout=8", "data.test_pairs=12"]
    env = {"MIXSEP_DATA_ROOT": data, "MIXSEP_CONFIG_DIR": str(tmp_path / "no_user_config")}
    train = mixsep(
        python, work, "-m", "mixsep.run", "model=conv_dual", "trainer=cpu", "trainer.max_epochs=1",
        "data.batch_size=32", *sizes, "callbacks.progress_bar.refresh_rate=0", "hydra.run.dir=run", env=env,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics["test/mnist_psnr"] > 10 and metrics["test/cifar_psnr"] > 10

    (best,) = (work / "run" / "checkpoints").glob("best-*.ckpt")
    scored = mixsep(python, work, "-m", "mixsep.evaluate", f"ckpt_path={best}", *sizes, "hydra.run.dir=eval", env=env)
    assert scored.returncode == 0, scored.stderr[-3000:]
    again = json.loads((work / "eval" / "metrics.json").read_text())
    assert again["test/mnist_psnr"] == pytest.approx(metrics["test/mnist_psnr"], abs=1e-3)

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(work / "mix.png")
    command = str(python.parent / "mixsep")  # the installed console script, as its own python runs it
    split = mixsep(python, work, command, "separate", "mix.png", env=env)  # the default model, package data
    assert split.returncode == 0, split.stderr[-3000:]
    for name in ("mix.gray.png", "mix.color.png"):
        assert Image.open(work / "separated" / name).size == (32, 32)

    report = mixsep(python, work, command, "report", "run", "-o", "leaderboard.md", env=env)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "conv_dual" in (work / "leaderboard.md").read_text()


ENGINES = [
    (
        ["-m", "mixsep.run", "-m", "hydra/launcher=slurm"],
        "hydra/launcher=slurm needs hydra-submitit-launcher",
        "cluster",
    ),
    (["-m", "mixsep.run", "-m", "hydra/launcher=gpus"], "hydra/launcher=gpus needs hydra-ray-launcher", "cluster"),
    (
        ["-m", "mixsep.run", "hparams_search=optuna"],
        "hydra.sweeper.sampler._target_=optuna.samplers.TPESampler needs optuna",
        "search",
    ),
    (["-m", "mixsep.run", "logger=mlflow", "hydra.run.dir=run"], "logger=mlflow needs mlflow", "mlflow"),
]


@pytest.mark.parametrize("args, message, extra", ENGINES, ids=[e[2] + ":" + e[0][-1] for e in ENGINES])
def test_an_engine_whose_extra_is_missing_is_one_line_naming_the_install(installed, tmp_path, args, message, extra):
    python, _ = installed
    done = mixsep(python, tmp_path, *args)
    assert done.returncode == 1
    expected = f'mixsep: {message}, which is not installed: pip install "mixsep[{extra}]"'
    assert done.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()  # the logger is built before any training


def test_the_lock_agrees_with_pyproject_and_a_disagreement_is_caught(tmp_path):
    uv("lock", "--check", "--offline")
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    # a dependency dropped from pyproject.toml. The check re-resolves every platform and Python the lock covers
    # (Windows, 3.14, ...), whose metadata a fresh machine's cache lacks: it reads them from the registry, which
    # CI reaches (offline, a fresh cache fails with "No solution found" instead of saying the lock is stale)
    pyproject.write_text(pyproject.read_text().replace('    "matplotlib>=3.7",\n', ""))
    changed = subprocess.run([*UV, "lock", "--check"], cwd=tmp_path, capture_output=True, text=True)
    assert changed.returncode != 0 and "needs to be updated" in changed.stderr, changed.stderr
