"""Lightning callbacks that mixsep adds to Lightning's own; each writes its own outputs."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torchvision.utils import make_grid

from mixsep.files import write_text_atomically
from mixsep.models.metrics import SOURCES
from mixsep.record.scores import SCORES_FILE, VAL_SCORES_FILE, write_scores
from mixsep.record.where import where_it_ran
from mixsep.sheet import save_samples, to_uint8
from mixsep.training.artifacts import save_loss_plot
from mixsep.training.hardware import describe_machine
from mixsep.training.loggers import picture_hook, show_picture

log = logging.getLogger("mixsep")


class BestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint keeping its best record when a run resumes into another folder (Lightning keeps it only in the
    same one): ``test_ckpt=best`` tests the whole run's best. Its paths were checked (``checked_trainer_state``)."""

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
    """Loss and validation PSNR per epoch (whatever the logger), drawn as ``<dirpath>/loss.png`` when fitting ends;
    sample separations to the loggers that show pictures after each validation (a row per image kind)."""

    def __init__(self, n_samples: int = 8, dirpath: str | None = None) -> None:
        self.n_samples, self.dirpath = n_samples, dirpath
        self.history: dict[str, list[tuple[int, float]]] = {"train": [], "val": []}

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.dirpath and trainer.is_global_zero:
            save_loss_plot(Path(self.dirpath) / "loss.png", self.history, str(module.hparams.get("loss", "mse")))

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._record(trainer, {"train": "train/loss_epoch"})

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # after the epoch's metrics are collected (at on_validation_epoch_end they are the previous epoch's)
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._record(trainer, {"val": "val/loss", **{f"val/{source}_psnr": f"val/{source}_psnr" for source in SOURCES}})
        dm = trainer.datamodule
        if dm is not None and trainer.is_global_zero and any(map(picture_hook, trainer.loggers)):
            cols, titles = picture_columns(module, dm.fixed_batch("val", self.n_samples, spread=True))
            grid = make_grid(torch.cat([c.float().cpu() for c in cols]), nrow=len(cols[0]), padding=1)
            # 8-bit pixels: W&B's own float conversion turns a [0, 1] float image black
            caption = "rows: " + " / ".join(titles)
            show_picture(trainer.loggers, "samples", to_uint8(grid[None])[0], trainer.global_step, caption)

    def _record(self, trainer: L.Trainer, curves: dict[str, str]) -> None:
        for curve, key in curves.items():
            if trainer.callback_metrics.get(key) is not None:
                point = (trainer.current_epoch + 1, float(trainer.callback_metrics[key]))
                self.history.setdefault(curve, []).append(point)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        history = state_dict.get("history")
        if isinstance(history, dict):  # a resumed checkpoint's curves: (epoch, finite number) points only
            curves = {str(k): [p for p in v if _is_point(p)] for k, v in history.items() if isinstance(v, list)}
            self.history = {"train": [], "val": [], **curves}


def _is_point(point: Any) -> bool:
    return (
        isinstance(point, (tuple, list))
        and len(point) == 2
        and type(point[0]) is int
        and isinstance(point[1], float)
        and math.isfinite(point[1])
    )


def picture_columns(module, batch: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], tuple[str, ...]]:
    """The module's own picture columns of a fixed batch, drawn in eval mode (the mode it was in is kept)."""
    was_training = module.training
    module.eval()
    try:
        return module.picture_columns(tuple(t.to(module.device) for t in batch))
    finally:
        module.train(was_training)


class TestOutputs(L.Callback):
    """When testing ends, in ``dirpath``: metrics.json (the test scores, ``record``, with ``where`` where it ran; also
    in ``metrics``), the per-pair scores and samples.png."""

    def __init__(self, dirpath: str | Path, n_samples: int, record: dict, where: bool = False) -> None:
        self.dirpath, self.n_samples, self.record, self.where = Path(dirpath), n_samples, record, where
        self.metrics: dict = {}

    def on_test_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        out, dm, results = self.dirpath, trainer.datamodule, trainer.callback_metrics  # those of this test
        scored = int(round(float(results.get("test/pairs", len(dm.test_pair_ids)))))
        self.metrics = {k: float(v) for k, v in results.items() if k != "test/pairs"} | {
            "model": module.hparams.get("name", "separator"),
            "params": sum(p.numel() for p in module.net.parameters()),
            "hardware": describe_machine(),
            "test_pairs": scored,  # the pairs really scored (fast_dev_run / limit_test_batches score fewer)
            "partial_test": scored < len(dm.test_pair_ids),
            "task": dm.task,
            "tta": bool(module.hparams.get("tta", False)),  # scored with the 8-transform self-ensemble?
            "tta_color": bool(module.hparams.get("tta_color", False)),  # ... with the 6 RGB orders'?
            "sources": dm.sources,  # gray+colour source pair; test/mnist_* scores the gray one
            **self.record,
            **(where_it_ran(trainer) if self.where else {}),
        }
        clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in self.metrics.items()}
        write_text_atomically(out / "metrics.json", json.dumps(clean, indent=2, sort_keys=True) + "\n")
        for stage, name in (("test", SCORES_FILE), ("val", VAL_SCORES_FILE)):
            scores = getattr(module, "per_pair_scores", {}).get(stage)
            if scores:  # one row per pair (every process's), in the fixed order of the pairs: for paired intervals
                write_scores(out / name, scores)
        save_samples(out / "samples.png", *picture_columns(module, dm.fixed_batch("test", self.n_samples, spread=True)))
        log.info(f"wrote {out / 'metrics.json'} and {out / 'samples.png'}")
        if self.metrics["partial_test"]:
            log.warning(
                f"partial test: {scored} of {len(dm.test_pair_ids)} test pairs scored "
                "(fast_dev_run / limit_test_batches); mixsep.report does not rank it"
            )
        for key in sorted(k for k in self.metrics if k.startswith(("test/", "oracle/"))):
            log.info(f"  {key:22s} {self.metrics[key]:.4f}")
