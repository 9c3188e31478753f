"""Seconds of training until validation reaches the best earlier published honest result.

    python benchmarks/time_to_quality.py                      # default: experiment=fast_cpu
    python benchmarks/time_to_quality.py --experiment best_cpu

Trains with the real mixsep path (Hydra preset, Lightning Trainer, tensor-resident data) and validates
on 1,000 fixed validation pairs every ``--every`` steps. The clock counts training only (from the first
step; validation time is taken out) until MNIST >= 22.54 dB and CIFAR >= 17.01 dB PSNR (report 000,
50 epochs). For comparison it measures the report-000 recipe (conv_dual, batch 64, fp32, per-item
pipeline) for a while and extrapolates its 50-epoch schedule. Last line:
``seconds_to_baseline_quality=<float>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import Pipeline, build  # noqa: E402

from mixsep.run import build_module  # noqa: E402

TARGET = {"val/mnist_psnr": 22.54, "val/cifar_psnr": 17.01}
REPORT_000_EPOCHS, REPORT_000_PAIRS_PER_EPOCH = 50, 60000
CONF = Path(__file__).resolve().parents[1] / "conf"


class StopAtQuality(L.Callback):
    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.reached: float | None = None
        self.history: list[tuple[float, int, float, float]] = []
        self._t = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.train_seconds += time.perf_counter() - self._t

    def on_validation_end(self, trainer, module) -> None:
        m = {k: float(trainer.callback_metrics[k]) for k in TARGET}
        self.history.append((self.train_seconds, trainer.global_step, m["val/mnist_psnr"], m["val/cifar_psnr"]))
        print(f"  {self.train_seconds:7.1f} s  step {trainer.global_step:5d}  val MNIST {m['val/mnist_psnr']:.2f} dB"
              f"  CIFAR {m['val/cifar_psnr']:.2f} dB", flush=True)
        if all(m[k] >= v for k, v in TARGET.items()):
            self.reached = self.train_seconds
            trainer.should_stop = True


def mixsep_time(experiment: str, every: int, max_minutes: float) -> float | None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={experiment}", "data.val_pairs=1000",
                                                       "logger=none", "paths.output_dir=outputs/bench"])
    L.seed_everything(cfg.seed)
    dm = instantiate(cfg.data)
    module = build_module(cfg.model)
    stop = StopAtQuality()
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                        max_epochs=cfg.trainer.max_epochs, max_time={"minutes": max_minutes},
                        val_check_interval=every, check_val_every_n_epoch=None, num_sanity_val_steps=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[stop])
    print(f"mixsep, experiment={experiment}: model {cfg.model.name}, batch {cfg.data.batch_size}, "
          f"precision {cfg.trainer.precision}")
    trainer.fit(module, datamodule=dm)
    return stop.reached


def recipe_000_seconds(steps: int) -> tuple[float, float]:
    """Measured pairs/s of the report-000 recipe and its extrapolated 50-epoch time."""
    args = argparse.Namespace(model="conv_dual", batch_size=None, cpu=False)
    _, per_item = build(args)
    per_item.train_steps(3)
    rate, _ = per_item.train_steps(steps)
    return rate, REPORT_000_EPOCHS * REPORT_000_PAIRS_PER_EPOCH / rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="fast_cpu" if not torch.cuda.is_available() else "best_gpu")
    parser.add_argument("--every", type=int, default=20, help="validate every N training steps")
    parser.add_argument("--max-minutes", type=float, default=4.0)
    parser.add_argument("--recipe-steps", type=int, default=60, help="steps to measure the report-000 recipe")
    args = parser.parse_args()

    reached = mixsep_time(args.experiment, args.every, args.max_minutes)
    rate, recipe_s = recipe_000_seconds(args.recipe_steps)
    print()
    print(f"report-000 recipe (conv_dual, batch 64, fp32, per-item pipeline): {rate:.0f} pairs/s measured; "
          f"its {REPORT_000_EPOCHS} epochs x {REPORT_000_PAIRS_PER_EPOCH} pairs take {recipe_s:.0f} s (extrapolated)")
    if reached is None:
        print("mixsep did not reach the target within the time limit")
        print("seconds_to_baseline_quality=nan")
        return
    print(f"mixsep reaches MNIST >= {TARGET['val/mnist_psnr']} dB and CIFAR >= {TARGET['val/cifar_psnr']} dB "
          f"after {reached:.1f} s of training: {recipe_s / reached:.0f}x sooner than the report-000 recipe")
    print(f"seconds_to_baseline_quality={reached:.2f}")


if __name__ == "__main__":
    main()
