"""Bad input, one clear error each, nothing already written lost."""

from __future__ import annotations

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
