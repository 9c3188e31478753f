"""The READMEs are executable: every command in their ```bash blocks runs here, as written, with only size
overrides appended (a few pairs, one epoch, a test-pair prefix), in README order, in a sandbox folder whose
data root (MIXSEP_DATA_ROOT) holds tiny data sets in the real on-disk formats.

Every command needs an entry in COMMANDS: ``Run`` (with the size overrides it gets), ``Elsewhere`` (a test
that runs this very command, read from the README, with its own assertions) or ``Skip`` (what CI cannot
have, and why). A README command without an entry, or an entry without its command, fails
``test_every_readme_command_has_an_entry``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from tests.helpers import (
    CONF,
    DOCS,
    PROJECT_ROOT,
    REAL_ROOT,
    TINY_SIZES,
    doc_pages,
    make_cifar_folder,
    make_folder,
    make_gray,
    make_mnist,
    readme_commands,
    real_data_available,
    run_in_this_process,
)

TINY_DATA = TINY_SIZES
TINY = TINY_DATA + ["trainer.max_epochs=1"]
EAGER = "model.compile=false"  # a tiny run of a compiled recipe would spend a minute compiling


@dataclass
class Run:
    size: list[str] = field(default_factory=list)  # appended to the command
    subprocess: bool = False  # its own process (launchers, DDP, other programs); else in this process
    check: str | None = None  # name of a function below, called with the sandbox after the command
    real_data: bool = False  # the benchmarks: MNIST + CIFAR-10 of MIXSEP_DATA_ROOT (skipped without them)


@dataclass
class Elsewhere:
    test: str  # a test that runs this command, as the README writes it


@dataclass
class Skip:
    reason: str


NEEDS_GPU = "needs a CUDA GPU (CI has none); benchmarks/gpu_check.py runs the GPU path on a GPU machine"
COMMANDS: dict[str, Run | Elsewhere | Skip] = {
    # ---- README.md: Start
    "pip install .": Skip(
        "tests/user_paths/test_install.py builds the wheel of this checkout, installs it (not editable, the lock's "
        "core pins) into a fresh environment and runs run, evaluate, separate and report from an empty folder"
    ),
    # ---- Install
    'pip install ".[cluster,search]"': Skip("the extras' engines are tested in the checkout's [dev] environment"),
    'pip install -e ".[dev]"': Skip(".ci/run installs the same packages from the lock: uv sync --locked --extra dev"),
    "uv sync --locked --extra cluster --extra search": Skip(
        ".ci/run runs uv sync --locked --extra dev (every extra) on a clean clone; a second sync would replace "
        "the test environment"
    ),
    "uv export --frozen --extra cluster --no-hashes -o requirements.txt": Skip(
        "tests/user_paths/test_install.py exports the core's locked versions the same way and installs them"
    ),
    "pip install -r requirements.txt": Skip("tests/user_paths/test_install.py installs the exported core pins"),
    "uv lock": Skip("rewrites uv.lock from the package index (the network); test_install checks the lock offline"),
    "uv lock --upgrade-package lightning": Skip("needs the package index (the network)"),
    "python -m mixsep.run --config-dir my_configs experiment=mine": Elsewhere(
        "tests/user_paths/test_hydra_flags.py::test_the_readmes_own_config_commands_pick_the_users_experiment"
    ),
    'python -m mixsep.run "hydra.searchpath=[file://my_configs]" experiment=mine': Elsewhere(
        "tests/user_paths/test_hydra_flags.py::test_the_readmes_own_config_commands_pick_the_users_experiment"
    ),
    "python -m mixsep.run --cfg job --config-dir my_configs experiment=mine": Elsewhere(
        "tests/user_paths/test_hydra_flags.py::test_the_readmes_own_config_commands_pick_the_users_experiment"
    ),
    "pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu": Skip(
        "needs the network to PyTorch's CPU wheel index; CI installs from the package registry"
    ),
    "python -m mixsep.run experiment=fast_cpu": Run(TINY),
    "mixsep run experiment=fast_cpu": Run(TINY, check="fast_cpu_run"),
    "mixsep mix digit.png photo.png -o mix.png": Run(),
    "mixsep separate mix.png": Run(check="separated"),
    "mixsep report outputs/": Run(check="report"),
    "mixsep export outputs/fast_cpu/<time> fast_model --onnx": Run(check="fast_bundle"),
    "python -m mixsep.run model=resnet_dual": Run(TINY),
    "python -m mixsep.run model=resnet_dual trainer.max_time=00:00:30:00": Run(TINY),
    "ruff check . && ruff format --check .": Run(subprocess=True),
    "python -m pytest -q": Skip("this test suite itself"),
    'python -m pytest -q -m "not slow"': Skip("a subset of this test suite"),
    "python -m pytest -q -m gpu": Skip("a subset of this test suite; its tests skip without a CUDA GPU"),
    # ---- Your own networks, sources and scores (the README's example files: tests/user_paths/test_extensions.py)
    "python -m mixsep.run --config-dir my_configs experiment=toy": Elsewhere(
        "tests/user_paths/test_extensions.py::runs"
    ),
    "python -m mixsep.run --config-dir my_configs -m experiment=toy model=toy,unet": Elsewhere(
        "tests/user_paths/test_extensions.py::test_a_sweep_over_the_toy_family_and_the_unet"
    ),
    "MIXSEP_EXTENSIONS=toy_net python -m mixsep.separate mix.png --model outputs/toy/<time>/checkpoints/last.ckpt": (
        Elsewhere("tests/user_paths/test_extensions.py::test_the_toy_model_separates_an_image")
    ),
    "MIXSEP_EXTENSIONS=toy_source,toy_score python -m mixsep.report outputs/": Elsewhere(
        "tests/user_paths/test_extensions.py::test_the_report_ranks_old_and_new_runs_together_on_what_they_share"
    ),
    # ---- Data
    "python -m mixsep.run model=unet data/gray=fashion_mnist data/color=cifar100": Run(TINY, check="sources"),
    "python -m mixsep.evaluate ckpt_path=results/best_cpu/model.ckpt data/gray=fashion_mnist": Run(TINY_DATA),
    # ---- Running
    "python -m mixsep.run model=unet trainer.max_epochs=5 data.batch_size=256": Run(TINY),
    "python -m mixsep.run model=unet ckpt_path=outputs/unet/<time>/checkpoints/last.ckpt trainer.max_epochs=10": Run(
        TINY_DATA + ["trainer.max_epochs=2"], check="resumed"
    ),
    "python -m mixsep.run model=unet hydra.run.dir=outputs/unet/<time> trainer.max_epochs=10": Run(
        TINY_DATA + ["trainer.max_epochs=2"], check="resumed_in_place"
    ),
    "python -m mixsep.evaluate ckpt_path=outputs/unet/<time>/checkpoints/last.ckpt": Run(TINY_DATA),
    "python -m mixsep.run -m model=conv_dual,resnet_dual,single_sub": Run(TINY, check="multirun"),
    # compiled, as the recipe says, in test_run's test_tuned_presets_run_on_cpu (a cold compile takes a minute)
    "python -m mixsep.run experiment=best_cpu": Run(TINY + [EAGER]),
    "python -m mixsep.report outputs/": Run(check="report"),
    # ---- Debug runs, callbacks
    "python -m mixsep.run debug=fdr": Run(TINY_DATA),
    "python -m mixsep.run debug=limit": Run(TINY_DATA),
    "python -m mixsep.run debug=overfit": Run(TINY_DATA + ["trainer.max_epochs=2"]),
    "python -m mixsep.run debug=profiler": Run(TINY),
    "python -m mixsep.run callbacks=early_stopping callbacks.early_stopping.patience=3": Run(TINY),
    "python -m mixsep.run callbacks/progress_bar=tqdm": Run(TINY),
    # ---- Sweeps and clusters
    "python -m mixsep.run -m hydra/launcher=gpus model=conv_dual,resnet_dual,unet seed=0,1,2 trainer=gpu": Skip(
        NEEDS_GPU
        + "; tests/user_paths/test_ray.py runs the gpus launcher with pretend GPUs, alone and on a running head node"
    ),
    "ray start --head --port=6379 --num-gpus=2": Elsewhere(
        "tests/user_paths/test_ray.py::test_a_sweep_on_a_running_ray_cluster_gives_each_job_its_own_gpu_and_queues_the_rest"
    ),
    "ray start --address=HEAD:6379": Skip("needs a second machine to join the head node from"),
    "python -m mixsep.run -m hydra/launcher=gpus hydra.launcher.ray.init.address=auto model=unet seed=0,1": (
        Elsewhere(
            "tests/user_paths/test_ray.py::test_a_sweep_on_a_running_ray_cluster_gives_each_job_its_own_gpu_and_queues_the_rest"
        )
    ),
    "python -m mixsep.run -m hydra/launcher=slurm hydra.launcher.partition=gpu hydra.launcher.timeout_min=120 "
    "model=unet seed=0,1": Elsewhere(
        "tests/user_paths/test_slurm.py::test_slurm_sweep_survives_time_limits_and_preemption"
    ),
    "python -m mixsep.run -m hparams_search=optuna hydra.sweeper.n_trials=40 hydra/launcher=gpus "
    "hydra.sweeper.n_jobs=8 hydra.sweeper.storage=sqlite:///optuna.db": Skip(
        NEEDS_GPU
        + " (one per trial); tests/user_paths/test_sweeps.py runs the Optuna sweeper with its database on a CPU"
    ),
    "python -m mixsep.run -m hparams_search=optuna hydra.sweeper.pruner._target_=optuna.pruners.HyperbandPruner "
    "~hydra.sweeper.pruner.n_startup_trials ~hydra.sweeper.pruner.n_warmup_steps": Run(
        TINY + ["hydra.sweeper.n_trials=2", "trainer.max_epochs=1"], check="hyperband"
    ),
    "python -m mixsep.run logger=mlflow": Run(TINY, check="mlflow_local"),
    "python -m mixsep.run -m logger=mlflow logger.mlflow.tracking_uri=http://127.0.0.1:5000 model=conv_dual,unet": (
        Elsewhere(
            "tests/training/test_mlflow.py::test_a_sweep_logs_one_mlflow_run_per_job_and_a_resumed_job_continues_its_run"
        )
    ),
    "python -m mixsep.run trainer=ddp model=unet": Skip(NEEDS_GPU + " (trainer=ddp is the GPU preset)"),
    "python -m mixsep.run trainer=ddp trainer.accelerator=cpu trainer.devices=2": Elsewhere(
        "tests/user_paths/test_ddp.py::test_the_ddp_preset_on_two_cpu_processes_scores_every_test_pair_once"
    ),
    "python -m mixsep.run -m hydra/launcher=slurm hydra.launcher.gpus_per_node=4 hydra.launcher.tasks_per_node=4 "
    "trainer=ddp trainer.devices=4 model=unet": Skip("needs a SLURM node with 4 GPUs"),
    "python -m mixsep.report outputs/multirun/<time>": Run(check="sweep_report"),
    # ---- Separate your own images
    "python -m mixsep.separate my_folder/ --out results_dir --model outputs/unet/<time>/checkpoints/last.ckpt": Run(),
    "python -m mixsep.mix --test-pairs 100 -o pairs/": Run(["--test-pairs", "12"]),
    "python -m mixsep.separate pairs/mix": Run(),
    "python -m mixsep.export outputs/unet/<time> my_model --onnx": Run(check="bundle"),
    "python -m mixsep.separate mix.png --model my_model --out by_my_model": Run(),
    "python -m mixsep.evaluate ckpt_path=my_model": Run(TINY_DATA, check="bundle_scores"),
    # ---- Results
    "python -m mixsep.report results/ --chart results/leaderboard.png --overwrite": Run(),
    # ---- GPU check (README.md and benchmarks/README.md)
    "python benchmarks/gpu_check.py": Skip(NEEDS_GPU + "; tests/user_paths/test_gpu_check.py runs it with --quick"),
    "bash benchmarks/gpu_bundle.sh gpu_bundle": Skip("downloads wheels: needs the network"),
    "pip install --no-index --find-links gpu_bundle/wheels -r gpu_bundle/requirements.txt": Skip(
        "installs the bundle that gpu_bundle.sh downloads (network) on a GPU node"
    ),
    "python benchmarks/gpu_check.py --data gpu_bundle/data": Skip(NEEDS_GPU),
    # ---- benchmarks/README.md
    "python benchmarks/tta_shift.py --ckpt results/best_cpu/model.ckpt --pairs 1000": Run(
        ["--pairs", "16"], real_data=True
    ),
    "python benchmarks/throughput.py --model conv_dual": Run(
        ["--rounds", "1", "--pairs", "16", "--data-pairs", "256", "--batch-size", "16", "--warmup", "1"], real_data=True
    ),
    "python -m mixsep.report --compare benchmarks/compile_5min/compiled benchmarks/compile_5min/eager --on val": Run(),
    "python -m mixsep.report --compare benchmarks/compile_5min/compiled benchmarks/compile_5min/eager": Run(),
    "python -m mixsep.report --compare benchmarks/range_trained_30min results/best_cpu_range": Run(),
    "python -m mixsep.report --compare benchmarks/range_trained_30min results/best_cpu": Run(),
    "python -m mixsep.report --compare benchmarks/levers_30min/gate benchmarks/levers_30min/baseline --on val": Run(),
    "python -m mixsep.report --compare benchmarks/levers_30min/width40 benchmarks/levers_30min/baseline "
    "--on val": Run(),
    "python -m mixsep.report --compare benchmarks/levers_30min/width40 benchmarks/levers_30min/baseline": Run(),
    "python -m mixsep.report --compare benchmarks/range_trained_30min benchmarks/levers_30min/baseline --on val": Run(),
    "python -m mixsep.report --compare benchmarks/levers_30min/width40_range_after results/best_cpu_range": Run(),
    "python benchmarks/profile_step.py": Run(["--steps", "1", "--rounds", "1", *TINY_DATA, EAGER], subprocess=True),
    "python benchmarks/model_speed.py": Skip(
        "a benchmark timing fresh processes (about a minute); the agreement it prints is asserted by "
        "tests/user_paths/test_realdata.py, the commands it times by test_readme's separate entries"
    ),
    "python benchmarks/time_to_quality.py": Run(
        ["--max-minutes", "0.05", "--every", "2", "--recipe-steps", "1", "--val-pairs", "64", EAGER], real_data=True
    ),
    "python benchmarks/time_to_quality.py --experiment best_cpu_5min --compare best_cpu_v1 --max-minutes 5 "
    "--every-seconds 15 --plot benchmarks/quality_vs_time.png": Run(
        ["--max-minutes", "0.05", "--every-seconds", "1", "--recipe-steps", "1", "--val-pairs", "64", EAGER],
        check="frontier_plot",
        real_data=True,
    ),
    "python benchmarks/time_to_quality.py --experiment best_cpu_5min --max-minutes 5 --every-seconds 30 "
    '--variant "model.net.resize_range=true" --variant "model.net.attention=true" '
    "--plot benchmarks/quality_vs_time_levers.png": Run(
        ["--max-minutes", "0.05", "--every-seconds", "1", "--recipe-steps", "1", "--val-pairs", "64", EAGER],
        real_data=True,
    ),
    "python benchmarks/time_to_quality.py --experiment best_cpu_5min --max-minutes 5 --every-seconds 30 "
    '--variant "model.compile=false" --plot benchmarks/quality_vs_time_speed.png': Run(
        ["--max-minutes", "0.05", "--every-seconds", "1", "--recipe-steps", "1", "--val-pairs", "64", EAGER],
        real_data=True,
    ),
    # compiled: the compile is what this command measures
    "python benchmarks/time_to_quality.py --experiment best_cpu_5min --max-minutes 5 model.compile=true": Run(
        ["--max-minutes", "0.05", "--every", "2", "--recipe-steps", "1", "--val-pairs", "64"], real_data=True
    ),
}


def all_readme_commands() -> list[str]:
    return list(dict.fromkeys(c for page in doc_pages() for c in readme_commands(page)))


def test_every_documentation_page_is_in_the_site_and_its_commands_are_covered():
    """A page added to docs/ is in mkdocs.yml's nav (so doc_pages() runs its commands, which then need entries)."""
    pages = set(doc_pages())
    assert {p for p in (PROJECT_ROOT / "docs").glob("*.md")} <= pages, "docs/ pages missing from mkdocs.yml's nav"
    assert all(p.is_file() for p in pages)


def test_every_readme_command_has_an_entry():
    commands = all_readme_commands()
    missing = [c for c in commands if c not in COMMANDS]
    stale = [c for c in COMMANDS if c not in commands]
    assert not missing, f"README commands without an entry in tests/user_paths/test_readme.py: {missing}"
    assert not stale, f"entries for commands no README has any more: {stale}"
    for entry in COMMANDS.values():
        if isinstance(entry, Elsewhere):  # that test (or fixture) reads this command from the README
            path, name = entry.test.split("::")
            source = (PROJECT_ROOT / path).read_text()
            assert f"def {name}(" in source, entry.test
            body = source.split(f"def {name}(", 1)[1].split("\ndef ", 1)[0]
            assert "readme_command(" in body, f"{entry.test} must take the command from the README"


# --------------------------------------------------------------------------- the sandbox
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A folder to run the commands in: tiny data sets behind MIXSEP_DATA_ROOT (MNIST, CIFAR-10,
    Fashion-MNIST, a CIFAR-100 folder), a copy of results/ and benchmarks/, the images the README names."""
    home = tmp_path_factory.mktemp("readme")
    data, work = home / "data", home / "work"
    rng = np.random.default_rng(0)
    make_mnist(data, 40, 12, rng)
    make_cifar_folder(data, 40, 12, rng)
    make_gray(data, "FashionMNIST", 40, 12, seed=5)
    make_folder(data, "cifar100", 40, 12, seed=7, classes=("apple", "bee", "cloud"))
    work.mkdir()
    shutil.copytree(PROJECT_ROOT / "results", work / "results")
    shutil.copytree(PROJECT_ROOT / "benchmarks", work / "benchmarks", ignore=shutil.ignore_patterns("*.png"))
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(work / "digit.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(work / "photo.png")
    (work / "my_folder").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(work / "my_folder" / f"m{i}.png")
    env = {
        "MIXSEP_DATA_ROOT": str(data),
        "MIXSEP_CACHE_DIR": str(home / "cache"),
        "WANDB_MODE": "offline",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield work
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def newest(pattern: str, work: Path) -> Path:
    found = sorted(work.glob(pattern), key=lambda p: p.stat().st_mtime)
    assert found, f"nothing matches {pattern} in {work}"
    return found[-1]


def resolve(command: str, work: Path) -> str:
    """The README's placeholders: <time> is the run (or sweep) folder the earlier commands made."""
    if "outputs/multirun/<time>" in command:
        return command.replace("outputs/multirun/<time>", str(newest("outputs/multirun/*", work).relative_to(work)))
    if "outputs/fast_cpu/<time>" in command:
        run = newest("outputs/fast_cpu/*/metrics.json", work).parent
        return command.replace("outputs/fast_cpu/<time>", str(run.relative_to(work)))
    if "outputs/unet/<time>" in command:
        run = newest("outputs/unet/*/checkpoints/last.ckpt", work).parents[1]
        return command.replace("outputs/unet/<time>", str(run.relative_to(work)))
    return command


def in_order() -> list[str]:
    return [c for c in all_readme_commands() if isinstance(COMMANDS.get(c), Run)]


@pytest.mark.slow
@pytest.mark.parametrize("command", in_order(), ids=lambda c: c.replace("python -m mixsep.", "")[:60])
def test_readme_command_runs_as_written(command, sandbox, capfd, monkeypatch):
    entry = COMMANDS[command]
    monkeypatch.chdir(PROJECT_ROOT if command.startswith("ruff") else sandbox)
    if entry.real_data:
        if not real_data_available():
            pytest.skip("a benchmark: set MIXSEP_DATA_ROOT to the real MNIST + CIFAR-10")
        monkeypatch.setenv("MIXSEP_DATA_ROOT", REAL_ROOT)
        monkeypatch.delenv("MIXSEP_CACHE_DIR")  # the per-user cache of the real data
    text = resolve(command, sandbox) + "".join(f" {shlex.quote(a)}" for a in entry.size)
    if entry.subprocess:
        done = subprocess.run(text, shell=True, capture_output=True, text=True, timeout=600)
        status, out, err = done.returncode, done.stdout, done.stderr
    else:
        torch.manual_seed(0)
        status = run_in_this_process(shlex.split(text))
        out, err = capfd.readouterr()
    assert status == 0, f"{text}\nexit {status}\n{out[-2000:]}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    if entry.check:
        CHECKS[entry.check](sandbox, out + err)


# --------------------------------------------------------------------------- what some commands must leave
def check_sources(work: Path, output: str) -> None:
    metrics = json.loads((newest("outputs/unet/*/metrics.json", work)).read_text())
    assert metrics["sources"] == "fashion_mnist+cifar100"


def check_resumed(work: Path, output: str) -> None:
    metrics = json.loads((newest("outputs/unet/*/metrics.json", work)).read_text())
    assert metrics["resumed_from"] and metrics["epochs"] == 2


def check_resumed_in_place(work: Path, output: str) -> None:
    run = newest("outputs/unet/*/metrics.json", work).parent
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed"
    assert json.loads((run / "metrics.json").read_text())["resumed_from"].endswith("last.ckpt")


def check_multirun(work: Path, output: str) -> None:
    sweep = newest("outputs/multirun/*", work)
    models = sorted(json.loads(p.read_text())["model"] for p in sweep.glob("*/metrics.json"))
    assert models == ["conv_dual", "resnet_dual", "single_sub"]


def check_report(work: Path, output: str) -> None:
    assert "| run |" in output and "outputs/" in output
    assert (work / "outputs" / "leaderboard.png").is_file()  # the chart lands in the folder given


def check_sweep_report(work: Path, output: str) -> None:
    assert "**← pick**" in output and "completed" in output


def check_hyperband(work: Path, output: str) -> None:
    sweep = newest("outputs/multirun/*", work)
    assert (sweep / "optuna.journal").is_file() and (sweep / "optimization_results.yaml").is_file()
    assert OmegaConf.load(sweep / "multirun.yaml").hydra.sweeper.pruner._target_ == "optuna.pruners.HyperbandPruner"


def check_mlflow_local(work: Path, output: str) -> None:
    from mlflow.tracking import MlflowClient

    run_dir = newest("outputs/*/*/mlflow_run_id.txt", work).parent
    client = MlflowClient(f"sqlite:///{work / 'outputs' / 'mlflow.db'}")  # the local store under the run root
    run = client.get_run((run_dir / "mlflow_run_id.txt").read_text().strip())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.metrics["test/cifar_psnr"] == pytest.approx(metrics["test/cifar_psnr"], rel=1e-6)
    assert run.info.status == "FINISHED"  # the job's own status is its folder's status.json


def check_separated(work: Path, output: str) -> None:
    for name in ("mix.gray.png", "mix.color.png", "separations.png"):
        assert (work / "separated" / name).is_file()


def card_metrics(bundle: Path) -> dict[str, float]:
    """The test scores in a model card's YAML front matter (model-index), as a model hub reads them."""
    import yaml

    front = yaml.safe_load((bundle / "README.md").read_text().split("---\n")[1])
    (result,) = front["model-index"][0]["results"]
    return {m["name"]: m["value"] for m in result["metrics"]}


def check_fast_cpu_run(work: Path, output: str) -> None:
    run = newest("outputs/fast_cpu/*/metrics.json", work).parent
    assert {"metrics.json", "samples.png", "loss.png", "status.json"} <= {p.name for p in run.iterdir()}
    assert (run / "checkpoints" / "last.ckpt").is_file() and "wrote " in output and "test/mnist_psnr" in output


def check_fast_bundle(work: Path, output: str) -> None:
    files = {p.name for p in (work / "fast_model").iterdir()}
    assert {"model.safetensors", "config.json", "README.md", "model.onnx"} <= files, files


def check_bundle(work: Path, output: str) -> None:
    run = newest("outputs/unet/*/metrics.json", work).parent
    metrics = json.loads((run / "metrics.json").read_text())
    card = card_metrics(work / "my_model")
    assert card and all(card[key] == metrics[key] for key in card)  # the card's numbers are metrics.json's
    assert (work / "my_model" / "model.onnx").is_file() and "gives" in output and "exactly" in output


def check_bundle_scores(work: Path, output: str) -> None:
    scored = json.loads(newest("outputs/evaluate/*/metrics.json", work).read_text())
    for key, value in card_metrics(work / "my_model").items():
        assert scored[key] == pytest.approx(value, abs=1e-4)


def check_frontier_plot(work: Path, output: str) -> None:
    assert (work / "benchmarks" / "quality_vs_time.png").stat().st_size > 1000


CHECKS = {name[len("check_") :]: f for name, f in dict(globals()).items() if name.startswith("check_")}


# --------------------------------------------------------------------------- the knob table
def _cell_values(cell: str) -> set[str]:
    """The values a README cell names: words in backticks and bare numbers / words, normalised."""
    import re

    words = re.findall(r"`([^`]+)`|([-+]?\d[\d.e+-]*)|\b(true|false|null)\b", cell)
    return {_norm(next(w for w in group if w)) for group in words}


def _norm(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    try:
        return repr(float(str(value).replace(",", "")))
    except ValueError:
        return str(value)


def _raw(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def test_the_readme_knob_table_gives_the_configs_defaults(compose, tmp_path):
    """Every `data.*` / `model.*` / `trainer.*` row of README's "Config knobs": its default cell names the value
    the config composes to (with model=conv_dual, the default), and the value of every model that differs."""
    from omegaconf import OmegaConf

    text = (DOCS / "configs.md").read_text().split("## Config knobs", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1:3] for line in text.splitlines() if line.startswith("| `")]
    models = sorted(p.stem for p in (Path(CONF) / "model").glob("*.yaml") if not p.stem.startswith("_"))
    configs = {
        m: OmegaConf.to_container(compose("config", [f"model={m}"], tmp_path), resolve=False) for m in models
    }  # unresolved: an interpolation (e.g. ${oc.env:MIXSEP_DATA_ROOT,./data}) stays one
    checked = 0
    for key_cell, default_cell in rows:
        key = key_cell.strip().strip("`")
        if not key.startswith(("data.", "model.", "trainer.")) or key.endswith("*"):
            continue
        values = {m: _raw(cfg, key) for m, cfg in configs.items()}
        if any(v is None or isinstance(v, (dict, list)) or "${" in str(v) for v in values.values()):
            continue  # an interpolation or null: the README says what it means (e.g. "all", "per-user cache")
        named = _cell_values(default_cell)
        assert _norm(values["conv_dual"]) in named, (key, default_cell, values["conv_dual"])
        for model, value in values.items():
            assert _norm(value) in named, f"{key}: model={model} gives {value}, README says {default_cell.strip()}"
        checked += 1
    assert checked >= 13


def test_the_layout_map_names_every_file_of_the_package_and_only_those():
    """The README's map of mixsep/ (its Layout section) and the files on disk agree, both ways."""
    text = (DOCS / "development.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    mapped, folder = set(), ""
    for line in block.splitlines():
        if line.startswith("mixsep/"):
            folder = "mixsep/"
            continue
        if not line.startswith("  ") or not folder:
            folder = "" if line and not line.startswith(" ") else folder
            continue
        words = line.split()
        if line.startswith("  ") and not line.startswith("    ") and words[0].endswith("/"):
            folder = "mixsep/" + words[0]
            continue
        names = [w.rstrip(":;,") for w in words if w.rstrip(":;,").endswith(".py")]
        mapped |= {folder + n for n in names if "/" not in n}
    on_disk = {str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "mixsep").rglob("*.py")}
    on_disk -= {p for p in on_disk if p.endswith("__init__.py") and p != "mixsep/__init__.py"}
    on_disk -= {"mixsep/report/__main__.py"}
    assert mapped - on_disk == set(), "the README's layout names files that do not exist"
    assert on_disk - mapped == set(), "files missing from the README's layout map"


def test_the_data_table_lists_every_declared_source_and_every_source_config():
    """README "Data": a row per option of data/gray and data/color, the same as the declared sources
    (@register_source) and the config files that select them."""
    from mixsep.data.sources import SOURCE_CLASSES

    text = (DOCS / "data-and-models.md").read_text().split("## Data", 1)[1].split("\n## ", 1)[0]
    rows = {
        (kind, option)
        for kind, option in (
            (line.split("|")[1].strip(" `").removeprefix("data/"), line.split("|")[2].split("`")[1])
            for line in text.splitlines()
            if line.startswith("| `data/")
        )
    }
    declared = {(kind, option) for kind, options in SOURCE_CLASSES.items() for option in options}
    configs = {(kind, p.stem) for kind in ("gray", "color") for p in (Path(CONF) / "data" / kind).glob("*.yaml")}
    assert rows == declared == configs
