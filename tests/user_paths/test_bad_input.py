"""Bad input, one clear error each, nothing already written lost."""

from __future__ import annotations

import importlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mixsep import load_separator
from mixsep.data.datamodule import MixDataModule
from mixsep.errors import ConfigError, DataNotFoundError, TrainingDivergedError
from mixsep.run import train
from tests.helpers import TINY_SIZES, compose_config, run_cli_here, run_in_this_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bad", ["data.num_workers=-1", "data.test_pairs=0"])  # wrong kinds: test_schema.py
def test_data_counts_out_of_range_are_config_errors(compose, bad, tiny_overrides, tmp_path):
    with pytest.raises(ConfigError, match=bad.split("=")[0]):
        train(compose("config", tiny_overrides + [bad], tmp_path))


def test_callback_options_without_their_callback_are_a_config_error(compose, tiny_overrides, tmp_path):
    # best_cpu_5min sets callbacks.ema options; callbacks=default then leaves them without a _target_
    overrides = tiny_overrides + ["experiment=best_cpu_5min", "callbacks=default"]
    with pytest.raises(ConfigError, match=r"callbacks\.ema .*callbacks=ema"):
        train(compose("config", overrides, tmp_path))


def test_a_wrong_size_image_is_named_with_its_size(tiny_root, tiny_data_kwargs):
    victim = sorted((tiny_root / "cifar10" / "test").rglob("*.png"))[2]
    Image.fromarray(np.zeros((28, 30, 3), dtype=np.uint8)).save(victim)
    with pytest.raises(DataNotFoundError) as err:
        MixDataModule(**tiny_data_kwargs).setup("fit")
    assert str(victim) in str(err.value) and "30x28" in str(err.value)


def test_an_empty_class_folder_is_named(tiny_root, tiny_data_kwargs):
    (tiny_root / "cifar10" / "train" / "zebra").mkdir()
    with pytest.raises(DataNotFoundError) as err:
        MixDataModule(**tiny_data_kwargs).setup("fit")
    assert str(tiny_root / "cifar10" / "train") in str(err.value) and "holds no images" in str(err.value)
    assert "classes zebra" in str(err.value)


def test_more_test_pairs_than_there_are_are_capped_and_said(compose, tiny_overrides, tmp_path, caplog):
    metrics = train(compose("config", tiny_overrides + ["data.test_pairs=50"], tmp_path))
    assert metrics["test_pairs"] == 12 and not metrics["partial_test"]
    assert "data.test_pairs=50 is more than the 12 test pairs" in caplog.text


def test_an_unwritable_run_folder_is_a_config_error_and_loses_nothing(compose, tiny_overrides, tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    from mixsep.cluster.job import Job

    cfg = compose("config", tiny_overrides, blocker / "run")
    with pytest.raises(SystemExit, match="mixsep: cannot write to the run folder"):
        with Job(blocker / "run", cfg.optimized_metric) as job:
            train(cfg, job)
    assert blocker.read_text() == "keep me"


def test_a_diverging_run_stops_naming_the_step_and_keeps_earlier_checkpoints(compose, tiny_overrides, tmp_path):
    train(compose("config", tiny_overrides, tmp_path))
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(TrainingDivergedError, match=r"at step \d+ .*model.lr=1e\+30"):
        train(compose("config", tiny_overrides + ["model.lr=1e30", "ckpt_path=null", "trainer.max_epochs=3"], tmp_path))
    assert last.read_bytes() == before  # the last good checkpoint is still there, untouched
    load_separator(last)


def test_a_failed_download_says_so_and_gives_the_offline_fix(tmp_path, monkeypatch):
    import torchvision.datasets

    # torchvision's own download, from a mirror that refuses at once (a closed port on this machine)
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    dm = MixDataModule(root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), download=True)
    with pytest.raises(DataNotFoundError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert "download through torchvision failed" in msg and "127.0.0.1" in msg
    assert "MIXSEP_DATA_ROOT" in msg and "data.download=true" not in msg
    assert not (tmp_path / "data").exists()  # no debris: the folder the download made is gone


def test_a_failed_download_of_another_source_leaves_the_data_root_as_it_was(tiny_root, tmp_path, monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])
    before = sorted(p.relative_to(tiny_root) for p in tiny_root.rglob("*"))
    dm = MixDataModule(root=str(tiny_root), cache_dir=str(tmp_path / "cache"), download=True, gray="fashion_mnist")
    with pytest.raises(DataNotFoundError):
        dm.setup("fit")
    assert sorted(p.relative_to(tiny_root) for p in tiny_root.rglob("*")) == before  # no FashionMNIST/raw/


@pytest.mark.slow
def test_the_rich_progress_bar_completes_off_a_terminal(tiny_overrides, tmp_path, capfd):
    overrides = [o for o in tiny_overrides if not o.startswith("callbacks.progress_bar")] + ["trainer.max_epochs=2"]
    result = run_cli_here([*overrides, f"hydra.run.dir={tmp_path}"], capfd)  # captured: not a terminal
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "metrics.json").exists()
    assert len(result.stdout.splitlines()) < 400  # final states only, no redraw per step
    assert "precision: bf16-mixed" in result.stdout or "precision: 32-true" in result.stdout  # said at start


def test_precision_auto_resolves_and_is_recorded(compose, tiny_overrides, tmp_path):
    from mixsep.training.hardware import cpu_has_bf16

    metrics = train(compose("config", tiny_overrides, tmp_path))
    assert metrics["precision"] == ("bf16-mixed" if cpu_has_bf16() else "32-true")
    prior = compose("config", ["experiment=prior/conv_dual"], tmp_path)
    assert prior.trainer.precision == "32-true"  # the earlier reports' presets keep fp32
    assert (
        torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["mixsep_precision"]
        == metrics["precision"]
    )


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.ckpt"
    path.write_text("not a checkpoint\n")
    return path


def _truncated_checkpoint(tmp_path: Path) -> Path:
    whole, path = tmp_path / "whole.ckpt", tmp_path / "truncated.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "optimizer_states": [], "loops": {}}, whole)
    path.write_bytes(whole.read_bytes()[:500])
    return path


def _slim_export(tmp_path: Path) -> Path:
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, path)
    return path


def test_an_unwritable_cache_costs_time_and_says_where(tiny_data_kwargs, monkeypatch, caplog):
    def read_only(*args, **kwargs):  # what torch.save raises on a read-only file system
        raise RuntimeError("File notes.pt cannot be opened: Read-only file system")

    monkeypatch.setattr("mixsep.data.datamodule.torch.save", read_only)
    dm = MixDataModule(**tiny_data_kwargs)
    with caplog.at_level("WARNING", logger="mixsep"):
        dm.setup("fit")
    assert len(dm.splits.gray_train) == 40  # the data is there all the same
    assert "could not write the data cache in" in caplog.text and tiny_data_kwargs["cache_dir"] in caplog.text


@pytest.mark.slow
def test_a_config_error_is_one_line_without_the_config_tree_before_it(tiny_overrides, tmp_path, capfd):
    result = run_cli_here(tiny_overrides + ["model.loss=bogus", f"hydra.run.dir={tmp_path}"], capfd)
    assert result.returncode != 0
    assert "└──" not in result.stdout + result.stderr  # the tree is not printed ...
    assert (tmp_path / "config_tree.txt").read_text().startswith("config")  # ... but saved
    assert [line for line in result.stderr.splitlines() if line.startswith("mixsep: ")] == [
        next(line for line in result.stderr.splitlines() if "model.loss='bogus'" in line)
    ]


# --------------------------------------------------------------------------- the table of bad inputs
# Every row: one entry point as a user types it, one thing wrong. Each must end with exactly one line
# "mixsep: …" that contains the row's words, a non-zero exit status, no traceback, no config tree, and the
# files of an earlier finished run in the folder it names (keep.txt, status.json) untouched.
TINY = [*TINY_SIZES, "trainer.max_epochs=1"]
SHIPPED = str(ROOT / "results" / "best_cpu" / "model.ckpt")


def _training_checkpoint(tmp: Path, model: str = "unet") -> Path:
    """A whole training checkpoint of another model kind, as mixsep.run writes one."""
    from mixsep.training.build import build_module

    cfg = compose_config("config", [f"model={model}"], tmp)
    module = build_module(cfg.model)
    path = tmp / f"{model}-last.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "optimizer_states": [],
            "loops": {},
            "pytorch-lightning_version": "2.6.6",
        },
        path,
    )
    return path


def _one_image_model(tmp: Path) -> Path:
    path = _training_checkpoint(tmp, "mean_ae")
    return path


def _other_version(tmp: Path) -> Path:
    """The shipped model with its parameters under names an older network used."""
    ckpt = torch.load(SHIPPED, map_location="cpu", weights_only=False)
    ckpt["state_dict"] = {k.replace("net.", "net.old_", 1): v for k, v in ckpt["state_dict"].items()}
    path = tmp / "old-version.ckpt"
    torch.save(ckpt, path)
    return path


def _file(tmp: Path) -> Path:
    path = tmp / "a-file"
    path.write_text("not a folder\n")
    return path


def _empty_root(tmp: Path) -> Path:
    (tmp / "empty").mkdir(exist_ok=True)
    return tmp / "empty"


def _image(tmp: Path, size: int, name: str = "img.png") -> Path:
    path = tmp / name
    Image.fromarray(np.zeros((size, size, 3), dtype=np.uint8)).save(path)
    return path


def _mount(tmp: Path, name: str, options: str) -> Path:
    """A small tmpfs (root only): a full disk, or a read-only folder that even root cannot write."""
    point = tmp / name
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): a full disk / read-only folder cannot be simulated")
    MOUNTS.append(point)
    return point


MOUNTS: list[Path] = []


def _full_disk_run(tmp: Path) -> Path:
    run = _mount(tmp, "full", "size=600k") / "run"
    run.mkdir()
    (run / "keep.txt").write_text("earlier result\n")  # (status.json: this run starts, then fails: it says so)
    return run


def _read_only(tmp: Path) -> Path:
    point = _mount(tmp, "ro", "size=1m")
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
    return point


LOCKS: list = []  # folder locks held by this process for a row, released after it


def _folder_in_use(run: Path) -> Path:
    """The earlier run's folder, claimed by a live job (this test process holds its lock, as a training does)."""
    from mixsep.record.status import FolderLock

    lock = FolderLock(run)
    lock.acquire()
    LOCKS.append(lock)
    return run


def _earlier_run(run: Path) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "keep.txt").write_text("earlier result\n")
    (run / "status.json").write_text('{"status": "completed", "objective": 30.0}\n')


RUN, EVALUATE = ["python", "-m", "mixsep.run"], ["python", "-m", "mixsep.evaluate"]
SEPARATE, MIX, REPORT = (
    ["python", "-m", "mixsep.separate"],
    ["python", "-m", "mixsep.mix"],
    ["python", "-m", "mixsep.report"],
)
# (id, command from the temporary folder and the earlier run folder, words the one line must hold)
BAD_INPUTS = [
    ("run-ckpt-text-file", lambda t, r: RUN + [f"ckpt_path={_text_file(t)}"], "is not a readable checkpoint"),
    ("run-ckpt-truncated", lambda t, r: RUN + [f"ckpt_path={_truncated_checkpoint(t)}"], "is not a readable"),
    ("run-ckpt-slim-export", lambda t, r: RUN + [f"ckpt_path={SHIPPED}"], "holds no training state to resume"),
    ("run-ckpt-missing", lambda t, r: RUN + [f"ckpt_path={t}/nothing.ckpt"], "does not exist"),
    ("run-ckpt-other-model", lambda t, r: RUN + [f"ckpt_path={_training_checkpoint(t)}"], "holds a unet model"),
    ("run-lr-negative", lambda t, r: RUN + ["model.lr=-1"], "lr=-1.0 must be a positive number"),
    ("run-lr-zero", lambda t, r: RUN + ["model.lr=0"], "lr=0.0 must be a positive number"),
    ("run-loss-unknown", lambda t, r: RUN + ["model.loss=bogus"], "model.loss='bogus' is not one of"),
    ("run-scheduler-unknown", lambda t, r: RUN + ["model.scheduler=bogus"], "model.scheduler='bogus'"),
    ("run-max-epochs-text", lambda t, r: RUN + ["trainer.max_epochs=abc"], "trainer.max_epochs"),
    ("run-max-time-negative", lambda t, r: RUN + ["trainer.max_time=-00:00:01:00"], "not a valid duration"),
    (
        "run-devices-too-many",
        lambda t, r: RUN + ["trainer.devices=99", "trainer.strategy=ddp"],
        f"trainer.devices=99 is more than the {os.cpu_count()} CPU cores of this machine",
    ),
    (
        "run-ddp-spawn",
        lambda t, r: RUN + ["trainer.devices=2", "trainer.strategy=ddp_spawn"],
        "trainer.strategy=ddp_spawn is not supported",
    ),
    ("run-test-pairs-zero", lambda t, r: RUN + ["data.test_pairs=0"], "data.test_pairs must be an integer >= 1"),
    ("run-batch-fraction", lambda t, r: RUN + ["data.batch_size=1.5"], "data.batch_size"),
    ("run-holdout-too-big", lambda t, r: RUN + ["data.val_holdout=5000"], "data.val_holdout=5000"),
    ("run-unknown-source-group", lambda t, r: RUN + ["data/gray=bogus"], "data/gray=bogus is not an option"),
    ("run-unknown-source-name", lambda t, r: RUN + ["data.color.name=bogus"], "bogus"),
    ("run-unknown-model", lambda t, r: RUN + ["model=bogus"], "model=bogus is not an option"),
    ("run-unknown-key", lambda t, r: RUN + ["bogus.key=3"], "bogus.key is no setting of this command"),
    (
        "run-mlflow-server-down",
        lambda t, r: RUN + ["logger=mlflow", "logger.mlflow.tracking_uri=http://127.0.0.1:9"],
        "the MLflow tracking server http://127.0.0.1:9 is not reachable",
    ),
    (
        "run-search-unknown-pruner",
        lambda t, r: RUN + ["-m", "hparams_search=optuna", "hydra.sweeper.pruner._target_=bogus"],
        "hydra.sweeper.pruner._target_=bogus is no class or function Python can import",
    ),
    (
        "run-unknown-net-class",
        lambda t, r: RUN + ["model.net.name=Bogus"],
        "not a registered network: UNetSeparator",
    ),
    ("run-model-batch-size", lambda t, r: RUN + ["model.batch_size=64"], "the training batch is data.batch_size"),
    ("run-model-batch-size-added", lambda t, r: RUN + ["+model.batch_size=64"], "takes no argument batch_size"),
    ("run-test-metric-objective", lambda t, r: RUN + ["optimized_metric=test/psnr"], "must be a validation"),
    ("run-callback-options-alone", lambda t, r: RUN + ["experiment=best_cpu_5min", "callbacks=default"], "_target_"),
    ("run-no-data-offline", lambda t, r: RUN + [f"data.root={_empty_root(t)}", "data.download=false"], "MNIST"),
    ("run-dir-is-a-file", lambda t, r: RUN + [f"hydra.run.dir={_file(t)}"], "is a file, not a folder"),
    ("run-dir-in-use", lambda t, r: RUN + [f"hydra.run.dir={_folder_in_use(r)}"], f"is in use by pid {os.getpid()}"),
    ("run-samples-negative", lambda t, r: RUN + ["samples=-3"], "samples=-3 must be a whole number >= 0"),
    (
        "run-seed-word",
        lambda t, r: RUN + ["seed=abc"],
        "seed=abc does not fit seed's type: Value 'abc' of type 'str' could not",
    ),
    ("run-switch-word", lambda t, r: RUN + ["model.compile=maybe"], "Value 'maybe' is not a valid bool"),
    (
        "run-switch-number",
        lambda t, r: RUN + ["data.color_flip=0.5"],
        "data.color_flip=0.5 does not fit data.color_flip's type: Value '0.5' is not a valid bool",
    ),
    ("run-lr-word", lambda t, r: RUN + ["model.lr=1e-3x"], "model.lr=1e-3x does not fit model.lr's type"),
    ("run-widths-word", lambda t, r: RUN + ["model.net.widths=wide"], "model.net.widths='wide' does not fit"),
    ("run-count-switch", lambda t, r: RUN + ["trainer.log_every_n_steps=true"], "Value 'True' of type 'bool'"),
    ("run-full-disk", lambda t, r: RUN + [f"hydra.run.dir={_full_disk_run(t)}"], "disk is full"),
    ("evaluate-no-ckpt", lambda t, r: EVALUATE, "mixsep.evaluate needs a model: ckpt_path="),
    ("evaluate-batch-fraction", lambda t, r: EVALUATE + [f"ckpt_path={SHIPPED}", "data.batch_size=1.5"], "batch_size"),
    ("evaluate-ckpt-text", lambda t, r: EVALUATE + [f"ckpt_path={_text_file(t)}"], "not a readable checkpoint"),
    ("evaluate-ckpt-missing", lambda t, r: EVALUATE + [f"ckpt_path={t}/nothing.ckpt"], "No model at"),
    ("evaluate-other-version", lambda t, r: EVALUATE + [f"ckpt_path={_other_version(t)}"], "another version"),
    ("evaluate-model-key", lambda t, r: EVALUATE + ["ckpt_path=x.ckpt", "model=unet"], "Could not override 'model'"),
    ("evaluate-trainer-key", lambda t, r: EVALUATE + ["ckpt_path=x.ckpt", "accelerator=cpu"], "trainer.accelerator="),
    ("separate-ckpt-text", lambda t, r: SEPARATE + [str(_image(t, 32)), "--ckpt", str(_text_file(t))], "readable"),
    (
        "separate-one-image-model",
        lambda t, r: SEPARATE + [str(_image(t, 32)), "--ckpt", str(_one_image_model(t))],
        "not the two sources",
    ),
    (
        "separate-other-version",
        lambda t, r: SEPARATE + [str(_image(t, 32)), "--ckpt", str(_other_version(t))],
        "another version",
    ),
    ("separate-missing-input", lambda t, r: SEPARATE + [f"{t}/nothing.png"], "no such file or folder"),
    (
        "separate-read-only-out",
        lambda t, r: SEPARATE + [str(_image(t, 32)), "--out", f"{_read_only(t)}/out"],
        "read-only",
    ),
    ("separate-1x1-resize", lambda t, r: SEPARATE + [str(_image(t, 1)), "--resize"], "at least 8x8"),
    ("separate-wrong-size", lambda t, r: SEPARATE + [str(_image(t, 20))], "--resize"),
    ("separate-unknown-flag", lambda t, r: SEPARATE + ["x.png", "--bogus"], "unrecognized arguments: --bogus"),
    ("mix-one-image", lambda t, r: MIX + [str(_image(t, 32)), "-o", f"{t}/m.png"], "give GRAY_IMAGE COLOR_IMAGE"),
    ("mix-missing-image", lambda t, r: MIX + [f"{t}/no.png", str(_image(t, 32)), "-o", f"{t}/m.png"], "no such image"),
    ("mix-test-pairs-zero", lambda t, r: MIX + ["--test-pairs", "0", "-o", f"{t}/pairs"], "'0' is not a whole number"),
    ("report-empty-folder", lambda t, r: REPORT + [str(_empty_root(t))], "no metrics.json under"),
    ("report-missing-folder", lambda t, r: REPORT + [f"{t}/nothing"], "no such folder"),
    ("report-compare-without-scores", lambda t, r: REPORT + ["--compare", str(r), str(r)], "no per-pair scores"),
    ("report-chart-read-only", lambda t, r: REPORT + [str(r), "--chart", f"{_read_only(t)}/c.png"], "read-only"),
]


# the table goes on in tests/user_paths/bad_rows_*.py, one file per topic (files from elsewhere, outputs, bundles,
# extensions), rows in the same form
for _rows in sorted(Path(__file__).parent.glob("bad_rows_*.py")):
    BAD_INPUTS += importlib.import_module(f"tests.user_paths.{_rows.stem}").ROWS


@pytest.fixture
def bad_input_env(tiny_root, tmp_path, monkeypatch):
    """Tiny data behind MIXSEP_DATA_ROOT, an earlier finished run in <tmp>/run, and the run folder of every
    mixsep.run row pointing there; mounts made by a row are taken down afterwards."""
    monkeypatch.setenv("MIXSEP_DATA_ROOT", str(tiny_root))
    monkeypatch.setenv("MIXSEP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    _earlier_run(run)
    (run / "metrics.json").write_text(
        '{"test/mnist_psnr": 30.0, "test/mnist_ssim": 0.9, "test/cifar_psnr": 30.0, "test/cifar_ssim": 0.9}\n'
    )
    yield run
    while MOUNTS:
        subprocess.run(["umount", "-l", str(MOUNTS.pop())], capture_output=True)
    while LOCKS:
        LOCKS.pop().release()


@pytest.mark.slow
@pytest.mark.parametrize("make_command, words", [row[1:] for row in BAD_INPUTS], ids=[row[0] for row in BAD_INPUTS])
def test_every_bad_input_is_one_line_and_loses_nothing(make_command, words, bad_input_env, tmp_path, capfd):
    run = bad_input_env
    argv = make_command(tmp_path, run)
    if argv[2] == "mixsep.run":
        folder = [a for a in argv if a.startswith("hydra.run.dir=")]
        argv = argv[:3] + TINY + argv[3:] + ([] if folder else [f"hydra.run.dir={run}"])  # the bad value last
        run = Path(folder[0].split("=", 1)[1]) if folder else run
    earlier = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} if run.is_dir() else {}
    status = run_in_this_process(argv)
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("mixsep: ")]
    assert status != 0, f"{argv}: exit 0\n{err[-2000:]}"
    assert len(lines) == 1 and words in lines[0], f"{argv}\n{err[-3000:]}"
    assert "Traceback" not in out + err, err[-3000:]
    if "hydra.run.dir=" in " ".join(argv) and "full" not in str(run):  # a full disk stops a run that had started
        assert "└──" not in out + err, "the config tree was printed before the error"
    for name, content in earlier.items():
        assert (run / name).read_bytes() == content, f"{name} in {run} was changed"


def test_the_table_has_at_least_30_bad_inputs_across_every_entry_point():
    entries = {row[0].split("-")[0] for row in BAD_INPUTS}
    assert len(BAD_INPUTS) >= 30 and len({row[0] for row in BAD_INPUTS}) == len(BAD_INPUTS)
    assert entries >= {"run", "evaluate", "separate", "mix", "report"}


def test_the_troubleshooting_page_lists_every_bad_input_with_its_line():
    """docs/troubleshooting.md: a row per row of this table (its id, then what the one line says), and no other."""
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in text.splitlines() if line.startswith("| `")}
    assert set(rows) == {row[0] for row in BAD_INPUTS}, "the page and the table of bad inputs differ"
    for name, _, words in BAD_INPUTS:
        words = as_documented(words)
        assert words.replace("|", "\\|") in rows[name], f"{name}: the page does not give {words!r}"


def as_documented(words: str) -> str:
    """The words of a row as the page gives them: what varies by machine as a placeholder."""
    return words.replace(f"the {os.cpu_count()} CPU cores", "the <cores> CPU cores").replace(
        f"pid {os.getpid()}", "pid <pid>"
    )
