"""Lightning callbacks that mixsep adds to Lightning's own; each writes its own outputs."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torchvision.utils import make_grid

from mixsep.models.metrics import SOURCES
from mixsep.record.where import where_it_ran
from mixsep.training.artifacts import picture_columns, save_loss_plot, write_test_outputs
from mixsep.training.loggers import picture_hook


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint that keeps its best-checkpoint record when a run resumes into another
    folder (``ckpt_path=<old run>/checkpoints/last.ckpt``): best score and best path carry over, so
    "best" still means best of the whole run and ``test_ckpt=best`` tests the true best.

    Lightning restores that record only when the checkpoint folder is unchanged. Files of the earlier
    folder are never deleted (``AtomicCheckpointIO`` removes only files inside this run's folder), and the
    record's paths were checked before this sees them (``checkpoints.checked_trainer_state``: only files in this
    run's folder or the resumed checkpoint's, never a URL), so its ``isfile`` looks nowhere else.
    """

    @property
    def state_key(self) -> str:  # the same key as ModelCheckpoint: checkpoints of either restore into both
        return "ModelCheckpoint" + super().state_key[len(type(self).__qualname__) :]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:
            return
        kept = {path: score for path, score in (state_dict.get("best_k_models") or {}).items() if os.path.isfile(path)}
        if state_dict.get("best_model_path") and os.path.isfile(state_dict["best_model_path"]):
            self.best_model_score = state_dict["best_model_score"]
            self.best_k_models = kept
            self.kth_best_model_path = state_dict.get("kth_best_model_path", "") if kept else ""
            self.kth_value = state_dict.get("kth_value", self.kth_value)
        else:  # the earlier best file is gone: start the record afresh rather than point at nothing
            self.best_model_path = ""


class SamplesAndCurves(L.Callback):
    """Records train/val loss per epoch (whatever the logger) and draws it as ``<dirpath>/loss.png`` when
    fitting ends; logs sample separations to every logger that shows pictures after every validation."""

    def __init__(self, n_samples: int = 8, dirpath: str | None = None) -> None:
        self.n_samples, self.dirpath = n_samples, dirpath
        self.history: dict[str, list[tuple[int, float]]] = {"train": [], "val": []}

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.dirpath and trainer.is_global_zero:
            save_loss_plot(Path(self.dirpath) / "loss.png", self.history, str(module.hparams.get("loss", "mse")))

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get("train/loss_epoch")
        if value is not None:
            self.history["train"].append((trainer.current_epoch + 1, float(value)))

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # after the epoch's metrics are collected (at on_validation_epoch_end they are the previous epoch's)
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get("val/loss")
        if value is not None:
            self.history["val"].append((trainer.current_epoch + 1, float(value)))
        for key in (f"val/{source}_psnr" for source in SOURCES):
            if key in trainer.callback_metrics:
                self.history.setdefault(key, []).append(
                    (trainer.current_epoch + 1, float(trainer.callback_metrics[key]))
                )
        self._log_images(trainer, module)

    def _log_images(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """The fixed validation samples (one row per image kind: mix, true and predicted of each source; one
        column per pair) to every logger that shows pictures, as 8-bit RGB pictures each validation epoch."""
        shows = [hook for logger in trainer.loggers if (hook := picture_hook(logger))]
        dm = trainer.datamodule
        if not shows or dm is None or not trainer.is_global_zero:
            return
        cols, titles = picture_columns(module, dm.fixed_batch("val", self.n_samples, spread=True))
        grid = make_grid(torch.cat([c.float().cpu() for c in cols]), nrow=len(cols[0]), padding=1)
        # 8-bit pixels: W&B's own float conversion turns a [0, 1] float image black
        pixels = grid.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        for show in shows:
            show("samples", pixels, trainer.global_step, "rows: " + " / ".join(titles))

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        history = state_dict.get("history")
        if isinstance(history, dict):  # a resumed checkpoint's curves: (epoch, finite number) points only
            curves = {str(k): [p for p in v if _is_point(p)] for k, v in history.items() if isinstance(v, list)}
            self.history = {"train": [], "val": [], **curves}


class TestOutputs(L.Callback):
    """When testing ends: metrics.json (the test scores and ``record``, what was run; with ``where``, where it ran),
    the per-pair scores and samples.png in ``dirpath`` (``training.artifacts.write_test_outputs``); ``metrics``
    holds what metrics.json says."""

    def __init__(self, dirpath: str | Path, n_samples: int, record: dict, where: bool = False) -> None:
        self.dirpath, self.n_samples, self.record, self.where = Path(dirpath), n_samples, record, where
        self.metrics: dict = {}

    def on_test_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # the metrics logged by this test (Lightning resets them when a stage starts)
            record = {**self.record, **(where_it_ran(trainer) if self.where else {})}
            results, dm = dict(trainer.callback_metrics), trainer.datamodule
            self.metrics = write_test_outputs(self.dirpath, results, module, dm, self.n_samples, **record)


def _is_point(point: Any) -> bool:
    return (
        isinstance(point, (tuple, list))
        and len(point) == 2
        and type(point[0]) is int
        and isinstance(point[1], float)
        and math.isfinite(point[1])
    )
