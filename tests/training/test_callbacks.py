"""mixsep's callbacks and the Lightning ones its config adds: sample pictures and loss history, the learning
rate monitor, early stopping."""

from __future__ import annotations

import torch
import yaml

from mixsep.run import train
from tests.helpers import csv_rows


def test_whole_config_is_logged_and_learning_rate_monitored(compose, tiny_overrides, tmp_path):
    train(compose("config", tiny_overrides + ["model=unet", "model.scheduler=onecycle", "seed=3"], tmp_path))
    hparams = yaml.safe_load((tmp_path / "csv" / "hparams.yaml").read_text())
    assert hparams["model"]["net"]["width"] == 32 and hparams["data"]["val_pairs"] == 8
    assert hparams["trainer"]["max_epochs"] == 1 and hparams["seed"] == 3
    assert any(k.startswith("lr-") for k in csv_rows(tmp_path)[0])  # LearningRateMonitor with a scheduler
    assert (tmp_path / "config_tree.txt").read_text().startswith("config")


def test_loss_history_records_validation_psnr_per_source(compose, tiny_overrides, tmp_path):
    train(compose("config", tiny_overrides + ["trainer.max_epochs=2"], tmp_path))
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    history = next(v["history"] for k, v in ckpt["callbacks"].items() if k.startswith("SamplesAndCurves"))
    assert [e for e, _ in history["val/mnist_psnr"]] == [1, 2] and len(history["val/cifar_psnr"]) == 2


def test_early_stopping_watches_the_validation_objective_and_tqdm_is_available(compose, tiny_overrides, tmp_path):
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import EarlyStopping, TQDMProgressBar

    cfg = compose("config", tiny_overrides + ["callbacks=early_stopping", "callbacks/progress_bar=tqdm"], tmp_path)
    stopper = instantiate(cfg.callbacks.early_stopping)
    assert isinstance(stopper, EarlyStopping) and stopper.monitor == "val/psnr" and stopper.mode == "max"
    assert isinstance(instantiate(cfg.callbacks.progress_bar), TQDMProgressBar)
    metrics = train(cfg)
    assert metrics["epochs"] == 1


def test_a_run_that_logs_nowhere_still_trains_with_the_default_callbacks(compose, tiny_overrides, tmp_path):
    """The learning-rate monitor is in conf/callbacks/default.yaml; Lightning's own refuses a run without loggers."""
    cfg = compose("config", tiny_overrides + ["logger=none", "model.scheduler=onecycle"], tmp_path)
    assert cfg.callbacks.lr_monitor.logging_interval == "step"
    metrics = train(cfg)
    assert metrics["global_step"] > 0 and not (tmp_path / "csv").exists()
