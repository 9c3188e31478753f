"""Hydra's command line in mixsep's Hydra apps (``mixsep.run``, ``mixsep.evaluate``, ``python -m mixsep``), every
flag as Hydra documents it, and a user's own config folder on the search path (``--config-dir``,
``hydra.searchpath``, the per-user folder ``$MIXSEP_CONFIG_DIR``): its options chosen by name and checked like
the package's own. Each command runs in this process, from an empty folder."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import readme_command, run_here

pytestmark = pytest.mark.slow

MINE = """# @package _global_
defaults:
  - override /model: unet
experiment_name: mine
model:
  net:
    width: 8
"""


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working folder with ``my_configs/experiment/mine.yaml`` in it, and a per-user config folder that
    does not exist (unless a test makes it)."""
    (tmp_path / "my_configs" / "experiment").mkdir(parents=True)
    (tmp_path / "my_configs" / "experiment" / "mine.yaml").write_text(MINE)
    (tmp_path / "my_configs" / "mine_primary.yaml").write_text(
        "defaults:\n  - config\n  - _self_\nexperiment_name: primary_mine\n"
    )
    monkeypatch.setenv("MIXSEP_CONFIG_DIR", str(tmp_path / "user_config"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def job_config(stdout: str) -> dict:
    return yaml.safe_load(stdout)


PACKAGE_CONF = Path(__file__).resolve().parents[2] / "conf"


# (the command's arguments, a check of what it printed): each runs nothing, writes nothing
FLAGS = {
    "--cfg job": lambda out: job_config(out)["model"]["name"] == "conv_dual" and "hydra" not in job_config(out),
    "-c job": lambda out: job_config(out)["experiment_name"] == "${model.name}",
    "--cfg job --resolve": lambda out: job_config(out)["experiment_name"] == "conv_dual",
    "--cfg hydra": lambda out: set(job_config(out)) == {"hydra"} and "launcher" in job_config(out)["hydra"],
    "--cfg all": lambda out: {"hydra", "model", "data", "trainer"} <= set(job_config(out)),
    "--cfg job --package trainer": lambda out: out.startswith("# @package trainer") and "max_epochs" in job_config(out),
    "-c job -p model.net": lambda out: job_config(out)["name"] == "ConvSkipDual",
    "--cfg job model=unet trainer.max_epochs=3": lambda out: (
        job_config(out)["model"]["name"] == "unet" and job_config(out)["trainer"]["max_epochs"] == 3
    ),
    "model=unet --cfg job seed=3": lambda out: (
        job_config(out)["model"]["name"] == "unet" and job_config(out)["seed"] == 3
    ),  # flags among the overrides: argparse's intermixed reading
    "--info searchpath": lambda out: f"file://{PACKAGE_CONF}" in out and "mixsep-user" in out,
    "--info defaults": lambda out: "model/conv_dual" in out and "trainer/default" in out,
    "--info config": lambda out: "Config search path" in out and "model:" in out,
    "--help": lambda out: "== Configuration groups ==" in out and "experiment: best_cpu" in out,
    "--hydra-help": lambda out: "Hydra (" in out and "--config-dir" in out,
    "--version": lambda out: out.startswith("Hydra 1."),
    "--cfg job --config-dir my_configs experiment=mine": lambda out: (
        job_config(out)["experiment_name"] == "mine" and job_config(out)["model"]["net"]["width"] == 8
    ),
    "--cfg job -cd my_configs experiment=mine": lambda out: job_config(out)["model"]["name"] == "unet",
    "--cfg job hydra.searchpath=[file://my_configs] experiment=mine": lambda out: (
        job_config(out)["experiment_name"] == "mine"
    ),
    "--cfg job --config-dir my_configs --config-name mine_primary": lambda out: (
        job_config(out)["experiment_name"] == "primary_mine" and job_config(out)["model"]["name"] == "conv_dual"
    ),
    "--help --config-dir my_configs": lambda out: "experiment: best_cpu" in out and "mine" in out,
}


# every flag through mixsep.run; python -m mixsep (the same app) with a few
CASES = [(flags, "mixsep.run") for flags in FLAGS] + [
    (flags, "mixsep")
    for flags in ("--cfg job", "--info searchpath", "--cfg job --config-dir my_configs experiment=mine")
]


@pytest.mark.parametrize("flags, module", CASES)
def test_hydras_flags_print_what_hydra_documents_and_run_nothing(work, capfd, flags, module):
    done = run_here(["python", "-m", module, *shlex.split(flags)], capfd)
    assert done.returncode == 0, done.stderr[-2000:]
    assert FLAGS[flags](done.stdout), done.stdout[:2000]
    assert not (work / "outputs").exists() and not (work / "multirun").exists()


EVALUATE_FLAGS = {
    "--cfg job": lambda out: job_config(out)["ckpt_path"] == "???" and "data" in job_config(out),
    "--cfg job --resolve data.test_pairs=12": lambda out: job_config(out)["data"]["test_pairs"] == 12,
    "-c job -p data.gray": lambda out: out.startswith("# @package data.gray"),
    "--help": lambda out: "evaluate is powered by Hydra" in out,
    "--info searchpath": lambda out: "mixsep-user" in out,
}


@pytest.mark.parametrize("flags", list(EVALUATE_FLAGS))
def test_evaluate_takes_hydras_flags_too(work, capfd, flags):
    done = run_here(["python", "-m", "mixsep.evaluate", *shlex.split(flags)], capfd)
    assert done.returncode == 0, done.stderr[-2000:]
    assert EVALUATE_FLAGS[flags](done.stdout), done.stdout[:2000]


def test_the_per_user_folder_adds_groups_and_its_local_default_applies_to_every_run(work, capfd, monkeypatch):
    user = work / "user_config"
    (user / "experiment").mkdir(parents=True)
    (user / "experiment" / "tiny_mine.yaml").write_text("# @package _global_\ntrainer:\n  max_epochs: 7\n")
    (user / "local").mkdir()
    (user / "local" / "default.yaml").write_text("# @package _global_\nseed: 41\n")
    done = run_here(["python", "-m", "mixsep.run", "--cfg", "job", "experiment=tiny_mine"], capfd)
    assert done.returncode == 0, done.stderr[-2000:]
    config = job_config(done.stdout)
    assert config["trainer"]["max_epochs"] == 7 and config["seed"] == 41
    searchpath = run_here(["python", "-m", "mixsep.run", "--info", "searchpath"], capfd)
    assert f"file://{user}" in searchpath.stdout


BAD = {
    # a user's options are listed beside the package's when a name is wrong
    "--config-dir my_configs experiment=mien": "mixsep: experiment=mien is not an option of experiment: choose one "
    "of best_cpu, best_cpu_5min, best_cpu_v1, best_gpu, fast_cpu, mine",
    "--config-dir no_such_folder experiment=mine": "mixsep: Additional config directory '{work}/no_such_folder' not "
    "found",
    "hydra.searchpath=[file://no_such_folder] experiment=mine": "mixsep: hydra.searchpath names no_such_folder, which "
    "is no folder",
    "hydra.searchpath=[pkg://no_such_package] experiment=mine": "mixsep: hydra.searchpath names no_such_package, "
    "which is no folder (file://DIR) or package",
    "experiment=mine": "mixsep: experiment=mine is not an option of experiment: choose one of best_cpu,",
    "--cfg job model=unett": "mixsep: model=unett is not an option of model: choose one of",
    "--cfg job trainer.max_epocs=3": "mixsep: trainer.max_epocs is no setting of this command: check its spelling",
    "--cfg job max_epochs=3": "mixsep: max_epochs is not a key of this command: it is a trainer setting, "
    "trainer.max_epochs=...",
    # a plugin whose package is not installed: its class (_target_), or a config its package would register
    "-m --config-dir my_configs hydra/launcher=nowhere": "mixsep: hydra_plugins.nowhere_launcher.NowhereLauncher "
    "needs nowhere-launcher, which is not installed: pip install nowhere-launcher",
    "-m --config-dir my_configs hydra/launcher=elsewhere": "mixsep: hydra/launcher=elsewhere needs "
    "hydra-nowhere-launcher, which is not installed: pip install hydra-nowhere-launcher",
}

PLUGINS_NOT_INSTALLED = {
    "hydra/launcher/nowhere.yaml": "_target_: hydra_plugins.nowhere_launcher.NowhereLauncher\n",
    "hydra/launcher/elsewhere.yaml": "defaults:\n  - nowhere_slurm\n  - _self_\n\n_target_: hydra_plugins.x.Y\n",
}


@pytest.mark.parametrize("flags", list(BAD))
def test_a_wrong_name_is_one_line_with_the_users_options_listed(work, capfd, flags):
    for name, text in PLUGINS_NOT_INSTALLED.items():
        (work / "my_configs" / name).parent.mkdir(parents=True, exist_ok=True)
        (work / "my_configs" / name).write_text(text)
    done = run_here(["python", "-m", "mixsep.run", *shlex.split(flags)], capfd)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(BAD[flags].format(work=work)), done.stderr[-2000:]
    assert not (work / "outputs").exists()


def test_an_engine_of_an_extra_that_is_not_installed_is_one_line_naming_the_extra(work, capfd, monkeypatch):
    """Optuna missing (None in sys.modules: what Python does without it) as Hydra builds the search's sampler."""
    monkeypatch.setitem(sys.modules, "optuna", None)
    done = run_here(["python", "-m", "mixsep.run", "hparams_search=optuna"], capfd)
    expected = "hydra.sweeper.sampler._target_=optuna.samplers.TPESampler needs optuna, which is not installed"
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        f'mixsep: {expected}: pip install "mixsep[search]"'
    ], done.stderr[-2000:]
    assert not (work / "outputs").exists()


@pytest.mark.parametrize("launcher, plugin", [("slurm", "hydra_submitit_launcher"), ("gpus", "hydra_ray_launcher")])
def test_a_launcher_whose_plugin_is_not_installed_is_one_line_naming_the_extra(work, launcher, plugin):
    """The launcher plugin missing from a fresh process (its configs are registered when Hydra scans its plugins):
    what tests/user_paths/test_install.py sees from a wheel installed without mixsep[cluster]."""
    argv = ["mixsep.run", "-m", f"hydra/launcher={launcher}"]
    run = f"import runpy, sys; sys.modules['hydra_plugins.{plugin}'] = None; sys.argv = {argv}; "
    done = subprocess.run(
        [sys.executable, "-c", run + "runpy.run_module('mixsep.run', run_name='__main__')"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    needs = f"hydra/launcher={launcher} needs {plugin.replace('_', '-')}, which is not installed"
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [f'mixsep: {needs}: pip install "mixsep[cluster]"'], done.stderr[-2000:]
    assert not (work / "outputs").exists()


def test_the_readmes_own_config_commands_pick_the_users_experiment(work, capfd, tiny_overrides):
    """README "Your own configs": the experiment in ``my_configs`` runs through ``--config-dir`` and through
    ``hydra.searchpath``, and ``--cfg job`` prints it."""
    shown = readme_command("--cfg job --config-dir my_configs")
    done = run_here(shlex.split(shown), capfd)
    assert done.returncode == 0 and job_config(done.stdout)["experiment_name"] == "mine", done.stderr[-2000:]
    for i, fragment in enumerate(
        ["run --config-dir my_configs experiment=mine", "hydra.searchpath=[file://my_configs]"]
    ):
        command = shlex.split(readme_command(fragment))
        done = run_here([*command, *tiny_overrides, f"hydra.run.dir=run{i}"], capfd)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads((work / f"run{i}" / "metrics.json").read_text())["model"] == "unet"
        assert yaml.safe_load((work / f"run{i}" / ".hydra" / "config.yaml").read_text())["experiment_name"] == "mine"


def test_the_long_multirun_flag_sweeps(work, capfd, tiny_overrides):
    args = ["--multirun", "model=conv_dual,unet", *tiny_overrides, "hydra.sweep.dir=sweep"]
    done = run_here(["python", "-m", "mixsep.run", *args], capfd)
    assert done.returncode == 0, done.stderr[-2000:]
    models = sorted(json.loads(path.read_text())["model"] for path in (work / "sweep").glob("*/metrics.json"))
    assert models == ["conv_dual", "unet"]
