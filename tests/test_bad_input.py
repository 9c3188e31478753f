"""Bad input, one clear error each, nothing already written lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mixsep import load_separator
from mixsep.data import MixDataModule
from mixsep.errors import ConfigError, DataNotFoundError, TrainingDivergedError
from mixsep.run import train
from tests.conftest import run_cli
from tests.test_run import compose_cfg

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("bad", ["data.batch_size=1.5", "data.val_pairs=abc", "data.num_workers=-1"])
def test_wrong_data_types_are_config_errors(bad, tiny_overrides, tmp_path):
    with pytest.raises(ConfigError, match=bad.split("=")[0]):
        train(compose_cfg("config", tiny_overrides + [bad], tmp_path))


def test_callback_options_without_their_callback_are_a_config_error(tiny_overrides, tmp_path):
    # best_cpu_5min sets callbacks.ema options; callbacks=default then leaves them without a _target_
    overrides = tiny_overrides + ["experiment=best_cpu_5min", "callbacks=default"]
    with pytest.raises(ConfigError, match=r"callbacks\.ema .*callbacks=ema"):
        train(compose_cfg("config", overrides, tmp_path))


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
    assert str(tiny_root / "cifar10" / "train" / "zebra") in str(err.value) and "holds no images" in str(err.value)


def test_more_test_pairs_than_there_are_are_capped_and_said(tiny_overrides, tmp_path, caplog):
    metrics = train(compose_cfg("config", tiny_overrides + ["data.test_pairs=50"], tmp_path))
    assert metrics["test_pairs"] == 12 and not metrics["partial_test"]
    assert "data.test_pairs=50 is more than the 12 test pairs" in caplog.text


def test_an_unwritable_run_folder_is_a_config_error_and_loses_nothing(tiny_overrides, tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    with pytest.raises(ConfigError, match="cannot write to the run folder"):
        train(compose_cfg("config", tiny_overrides, blocker / "run"))
    assert blocker.read_text() == "keep me"


def test_a_diverging_run_stops_naming_the_step_and_keeps_earlier_checkpoints(tiny_overrides, tmp_path):
    train(compose_cfg("config", tiny_overrides, tmp_path))
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(TrainingDivergedError, match=r"at step \d+ .*model.lr=1e\+30"):
        train(
            compose_cfg(
                "config", tiny_overrides + ["model.lr=1e30", "ckpt_path=null", "trainer.max_epochs=3"], tmp_path
            )
        )
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


@pytest.mark.slow
def test_the_rich_progress_bar_completes_off_a_terminal(tiny_overrides, tmp_path):
    overrides = [o for o in tiny_overrides if not o.startswith("callbacks.progress_bar")] + ["trainer.max_epochs=2"]
    result = run_cli([*overrides, f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "metrics.json").exists()
    assert len(result.stdout.splitlines()) < 400  # final states only, no redraw per step
    assert "precision: bf16-mixed" in result.stdout or "precision: 32-true" in result.stdout  # said at start


def test_precision_auto_resolves_and_is_recorded(tiny_overrides, tmp_path):
    from mixsep.run import cpu_has_bf16

    metrics = train(compose_cfg("config", tiny_overrides, tmp_path))
    assert metrics["precision"] == ("bf16-mixed" if cpu_has_bf16() else "32-true")
    prior = compose_cfg("config", ["experiment=prior/conv_dual"], tmp_path)
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


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda tmp: [f"ckpt_path={_text_file(tmp)}"], "is not a readable checkpoint"),
        (lambda tmp: [f"ckpt_path={_truncated_checkpoint(tmp)}"], "is not a readable checkpoint"),
        (lambda tmp: [f"ckpt_path={_slim_export(tmp)}"], "holds no training state to resume"),
        (lambda tmp: ["model.lr=-1"], "model.lr=-1 must be a positive number"),
        (lambda tmp: ["model.lr=0"], "model.lr=0 must be a positive number"),
    ],
    ids=["ckpt-text-file", "ckpt-truncated", "ckpt-slim-export", "lr-negative", "lr-zero"],
)
def test_run_refuses_bad_input_in_one_line_and_keeps_earlier_files(make_bad, message, tiny_overrides, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("earlier result\n")
    result = run_cli(tiny_overrides + make_bad(tmp_path) + [f"hydra.run.dir={run}"])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("mixsep: ")]
    assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
    assert (run / "keep.txt").read_text() == "earlier result\n"


def test_an_unwritable_cache_costs_time_and_says_where(tiny_data_kwargs, monkeypatch, caplog):
    def read_only(*args, **kwargs):  # what torch.save raises on a read-only file system
        raise RuntimeError("File notes.pt cannot be opened: Read-only file system")

    monkeypatch.setattr("mixsep.data.torch.save", read_only)
    dm = MixDataModule(**tiny_data_kwargs)
    with caplog.at_level("WARNING", logger="mixsep"):
        dm.setup("fit")
    assert len(dm.splits.mnist_train) == 40  # the data is there all the same
    assert "could not write the data cache in" in caplog.text and tiny_data_kwargs["cache_dir"] in caplog.text


def _evaluate_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mixsep.evaluate", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.mark.slow
def test_evaluate_without_a_checkpoint_or_with_a_bad_value_says_one_line(tiny_overrides, tmp_path):
    data = [o for o in tiny_overrides if o.startswith("data.")] + [f"hydra.run.dir={tmp_path}"]
    missing = _evaluate_cli(data)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("mixsep: mixsep.evaluate needs a checkpoint: ckpt_path=")
    shipped = ROOT / "results" / "best_cpu" / "model.ckpt"
    bad = _evaluate_cli(
        [o for o in data if not o.startswith("data.batch_size")] + [f"ckpt_path={shipped}", "data.batch_size=1.5"]
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "Error in call to target" not in bad.stderr
    (line,) = [line for line in bad.stderr.splitlines() if line.startswith("mixsep: ")]
    assert "data.batch_size" in line


@pytest.mark.slow
def test_a_config_error_is_one_line_without_the_config_tree_before_it(tiny_overrides, tmp_path):
    result = run_cli(tiny_overrides + ["model.loss=bogus", f"hydra.run.dir={tmp_path}"])
    assert result.returncode != 0
    assert "└──" not in result.stdout + result.stderr  # the tree is not printed ...
    assert (tmp_path / "config_tree.txt").read_text().startswith("config")  # ... but saved
    assert [line for line in result.stderr.splitlines() if line.startswith("mixsep: ")] == [
        next(line for line in result.stderr.splitlines() if "model.loss='bogus'" in line)
    ]
