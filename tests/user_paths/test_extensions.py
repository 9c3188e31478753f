"""A researcher's own network, gray source and score, each declared in one file of their own outside the package
(plus a YAML where Hydra selects it): the manual's example files (docs/extending.md), written
into a working folder with no edit inside mixsep, then trained, evaluated, reported beside a run made before the
score existed, compared, separated and swept against the U-Net with its commands. Each wrong declaration
is one ``mixsep:`` line before training. Nothing puts the working folder on Python's path: the extensions are
imported because they are named (their files in the current folder)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import DOCS, TINY_SIZES, make_cifar_folder, readme_command, run_here

pytestmark = pytest.mark.slow


def readme_files() -> dict[str, str]:
    """The manual's example files (docs/extending.md): its ```python and ```yaml blocks whose first line is
    ``# <path>``."""
    page = (DOCS / "extending.md").read_text()
    blocks = re.findall(r"```(?:python|yaml)\n# ([\w/.]+\.(?:py|yaml))[^\n]*\n(.*?)```", page, re.S)
    return dict(blocks)


FILES = readme_files()


TINY = [*TINY_SIZES, "trainer.max_epochs=1", "trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The researcher's working folder: three extension files, a config folder, tiny data (the toy source's own
    layout and a CIFAR-10 folder)."""
    work = tmp_path_factory.mktemp("extensions")
    assert {"toy_net.py", "toy_source.py", "toy_score.py", "my_configs/model/toy.yaml"} <= set(FILES)
    for name, text in FILES.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    rng = np.random.default_rng(0)
    (work / "data" / "toy_digits").mkdir(parents=True)
    for split, n in (("train", 40), ("test", 12)):
        np.save(work / "data" / "toy_digits" / f"{split}.npy", rng.integers(0, 256, (n, 32, 32), dtype=np.uint8))
    make_cifar_folder(work / "data", 40, 12, rng)
    return work


def typed(command: str, *more: str) -> tuple[list[str], dict[str, str]]:
    """A README command's arguments after ``python`` (``-m mixsep...``), ``more`` appended, and its ``VAR=value``
    prefix as an environment."""
    words = shlex.split(command)
    at = words.index("python")
    return [*words[at + 1 :], *more][1:], dict(w.split("=", 1) for w in words[:at])


def mixsep(work: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m mixsep.<command> ARGS`` from the working folder, as the researcher types it."""
    environment = {
        **os.environ,
        "MIXSEP_DATA_ROOT": str(work / "data"),
        "MIXSEP_CACHE_DIR": str(work / "cache"),
        "HYDRA_FULL_ERROR": "0",
        **env,
    }
    environment.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-m", *args], cwd=work, capture_output=True, text=True, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(folder):
    """A U-Net run on the toy source made before the score existed, then the README's run of the toy experiment."""
    mixsep(folder, "mixsep.run", "--config-dir", "my_configs", "model=unet", "model.net.width=8",
           "data/gray=toy_digits", "extensions=[toy_source]", *TINY, "hydra.run.dir=outputs/old")  # fmt: skip
    args, env = typed(readme_command("--config-dir my_configs experiment=toy"), *TINY, "hydra.run.dir=outputs/toy")
    mixsep(folder, *args, **env)
    return folder / "outputs" / "old", folder / "outputs" / "toy"


def test_a_toy_family_source_and_score_train_and_are_scored_like_the_built_in_ones(runs):
    old, toy = runs
    new = metrics(toy)
    assert new["model"] == "toy" and new["sources"] == "toy_digits+cifar10"
    for source in ("mnist", "cifar"):  # the gray and colour slots keep the keys users read
        assert 0 < new[f"test/{source}_mae"] < 1 and new[f"test/{source}_psnr"] > 0
        assert f"test/{source}_mae" not in metrics(old)
    scores = np.load(toy / "scores.npz")
    per_pair = scores["mnist_mae"]
    assert len(per_pair) == 12 and per_pair.mean() == pytest.approx(new["test/mnist_mae"], abs=1e-5)
    # the checkpoint names its network by its registered name, not an import path
    (best,) = (toy / "checkpoints").glob("best-*.ckpt")
    assert torch.load(best, weights_only=True)["hyper_parameters"]["net"]["name"] == "ToyNet"


def test_the_toy_run_evaluates_to_the_same_scores(folder, runs):
    _, toy = runs
    (best,) = (toy / "checkpoints").glob("best-*.ckpt")
    mixsep(folder, "mixsep.evaluate", "--config-dir", "my_configs", f"ckpt_path={best}", "data/gray=toy_digits",
           "extensions=[toy_net,toy_source,toy_score]", *TINY_SIZES, "hydra.run.dir=eval")  # fmt: skip
    again, first = metrics(folder / "eval"), metrics(toy)
    for key in ("test/mnist_psnr", "test/cifar_psnr", "test/mnist_mae", "test/cifar_mae"):
        assert again[key] == pytest.approx(first[key], abs=1e-4)


def test_the_report_ranks_old_and_new_runs_together_on_what_they_share(folder, runs, capfd, monkeypatch):
    old, toy = runs
    args, extensions = typed(readme_command("toy_score python -m mixsep.report"), "-o", "board.md")
    mixsep(folder, *args, "--data-root", "data", **extensions)
    board = (folder / "board.md").read_text()
    header = next(line for line in board.splitlines() if line.startswith("| # |"))
    assert "| MNIST PSNR | MNIST SSIM | MNIST MAE | CIFAR PSNR | CIFAR SSIM | CIFAR MAE |" in header
    rows = {
        line.split("|")[2].strip(): line for line in board.splitlines() if line.startswith("| ") and "outputs/" in line
    }
    assert set(rows) == {"outputs/old", "outputs/toy"}
    for line in rows.values():  # every row as many cells as the header: the columns line up
        assert line.count("|") == header.count("|")
    old_cells = [c.strip() for c in rows["outputs/old"].split("|")]
    assert old_cells[header.split("|").index(" MNIST MAE ")] == "-"
    toy_mae = metrics(toy)["test/mnist_mae"]
    assert f"{toy_mae:.4f}" in rows["outputs/toy"]

    monkeypatch.chdir(folder)  # in this process: a comparison imports nothing of the extensions
    compared = run_here(["python", "-m", "mixsep.report", "--compare", "outputs/toy", "outputs/old"], capfd).stdout
    assert "| mnist_psnr |" in compared and "| mnist_mae |" not in compared
    assert "Not compared (scored in one run only): cifar_mae, mnist_mae." in compared


def test_the_toy_model_separates_an_image(folder, runs, capfd, monkeypatch):
    _, toy = runs
    (best,) = (toy / "checkpoints").glob("best-*.ckpt")
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "mix.png")
    command = readme_command("python -m mixsep.separate mix.png --model outputs/toy")
    args, env = typed(command.replace("outputs/toy/<time>/checkpoints/last.ckpt", str(best)))
    monkeypatch.chdir(folder)  # in this process (a network's registration changes nothing else), from its folder
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    done = run_here(["python", "-m", *args], capfd)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("mix.gray.png", "mix.color.png"):
        assert Image.open(folder / "separated" / name).size == (32, 32)


def test_a_sweep_over_the_toy_family_and_the_unet(folder):
    args, env = typed(readme_command("-m experiment=toy model=toy,unet"), "model.net.width=8", *TINY)
    mixsep(folder, *args, "hydra.sweep.dir=sweep", **env)
    jobs = {metrics(path.parent)["model"]: metrics(path.parent) for path in (folder / "sweep").glob("*/metrics.json")}
    assert set(jobs) == {"toy", "unet"} and all("test/mnist_mae" in job for job in jobs.values())
    table = mixsep(
        folder, "mixsep.report", "sweep", "--data-root", "data", MIXSEP_EXTENSIONS="toy_source,toy_score"
    ).stdout
    assert "MNIST MAE" in table


BAD = {  # a wrong declaration (its file, a model YAML naming it or overrides) and the one line it ends with
    "bad_net": (
        "from torch import nn\nfrom mixsep.models.registry import register_network\n\n\n"
        "@register_network\nclass OneOutput(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 6, 1)\n\n    def forward(self, mix):\n        return self.conv(mix)\n",
        ["model=bad"],
        "mixsep: model.net (OneOutput) gives [(2, 6, 32, 32)] for a (2, 3, 32, 32) batch: a separator returns",
    ),
    "bad_source": (
        FILES["toy_source.py"]
        .replace("ToyDigits", "NoFiles")
        .replace('("toy_digits",)', '("no_files",)')
        .replace('name: str = "toy_digits"', 'name: str = "no_files"')
        .replace("return [path] if path.is_file() else []", "return []"),
        ["data.gray._target_=bad_source.NoFiles", "data.gray.name=no_files"],
        "mixsep: data/gray=no_files: files() finds no files for the train split",
    ),
    "bad_option_kind": (  # the network's own type hints declare its options' kinds
        FILES["toy_net.py"].replace("ToyNet", "KindNet"),  # its own name: the README's ToyNet may be registered
        ["model.net.name=KindNet", "+model.net.width=wide"],
        "mixsep: model.net.width='wide' does not fit KindNet's width",
    ),
    "old_net_key": (  # Hydra's import path where a network is named: one line naming the key that names it
        "",
        ["~model.net.name", "+model.net._target_=elsewhere.OneOutput"],
        "mixsep: model.net names its network under _target_ (elsewhere.OneOutput), Hydra's import path: name it",
    ),
    "bad_import": (
        "import torch\n\nraise RuntimeError('the weights file is missing')\n",
        [],
        "mixsep: extension bad_import fails on import (",
    ),
    "bad_score": (
        "import torch\nfrom mixsep.models.metrics import Score, register_score\n\n"
        "register_score(Score('psnr', lambda pred, target: torch.zeros(len(pred))))\n",
        [],
        "mixsep: a score named 'psnr' is already declared: choose another name",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_wrong_declaration_is_one_line_before_training(folder, tmp_path, capfd, monkeypatch, name):
    text, overrides, message = BAD[name]
    (tmp_path / f"{name}.py").write_text(text)
    (tmp_path / "configs" / "model").mkdir(parents=True)
    (tmp_path / "configs" / "model" / "bad.yaml").write_text(
        "defaults:\n  - _module\n  - _self_\nname: bad\nnet:\n  name: OneOutput\n"
    )
    monkeypatch.chdir(tmp_path)  # the named file in the current folder is imported from there, by its path
    monkeypatch.setenv("MIXSEP_DATA_ROOT", str(folder / "data"))
    monkeypatch.setenv("MIXSEP_CACHE_DIR", str(tmp_path / "cache"))
    args = ["--config-dir", "configs", f"extensions=[{name}]", *overrides, *TINY, "hydra.run.dir=run"]
    done = run_here(["python", "-m", "mixsep.run", *args], capfd)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr[-2000:]
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))
