"""Training entry: ``python -m mixsep.run model=resnet_dual`` fits, then tests the best checkpoint.

The run directory gets metrics.json, samples.png, loss.png, checkpoints/ (best + last) and logs.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mixsep.artifacts import SamplesAndCurves, save_loss_plot, write_test_outputs
from mixsep.errors import MixsepError

TEST_KEYS = ("test/mnist_psnr", "test/mnist_ssim", "test/cifar_psnr", "test/cifar_ssim")


def _prepare_wandb_env(cfg: DictConfig) -> None:
    """Offline W&B when there is no API key: never a login prompt, never a hang."""
    if "wandb" not in (cfg.get("logger") or {}) or os.environ.get("WANDB_MODE"):
        return
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    if not has_key:
        os.environ["WANDB_MODE"] = "offline"
        print("mixsep: no W&B API key found; logging to W&B offline (sync later with `wandb sync`).")


def build_loggers(cfg: DictConfig) -> list:
    _prepare_wandb_env(cfg)
    if os.environ.get("WANDB_MODE") == "disabled":
        return [instantiate(c) for k, c in (cfg.get("logger") or {}).items() if k != "wandb"]
    return [instantiate(c) for c in (cfg.get("logger") or {}).values()]


def build_module(model_cfg: DictConfig) -> L.LightningModule:
    # plain containers: the net's config is saved in the checkpoint and must load without omegaconf
    return instantiate(OmegaConf.to_container(model_cfg, resolve=True), _recursive_=False)


def train(cfg: DictConfig) -> dict:
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg.model)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=build_loggers(cfg) or False)

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    train_seconds = time.perf_counter() - start

    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_path if ckpt is not None and cfg.test_ckpt == "best" else ""
    tested = best or (ckpt.last_model_path if ckpt is not None else "") or None
    results = trainer.test(module, datamodule=datamodule, ckpt_path=tested)[0]

    extra = {
        "experiment": cfg.experiment_name,
        "train_seconds": round(train_seconds, 2),
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "seed": cfg.seed,
        "precision": str(cfg.trainer.get("precision")),
        "checkpoint": str(tested) if tested else None,
    }
    if not trainer.is_global_zero:
        return {**results, **extra}
    metrics = write_test_outputs(out, results, module, datamodule, cfg.samples, **extra)
    history = next((c for c in callbacks if isinstance(c, SamplesAndCurves)), None)
    if history is not None:
        save_loss_plot(out / "loss.png", history.history)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except MixsepError as err:  # a problem the user can fix: the message, not a traceback
        sys.exit(f"mixsep: {err}")
    return metrics.get("test/mnist_psnr")  # for Hydra sweepers that optimise a value


if __name__ == "__main__":
    main()
