"""Seconds of training until validation reaches given qualities: the time-to-quality frontier.

    python benchmarks/time_to_quality.py                                   # fast_cpu (GPU: best_gpu)
    python benchmarks/time_to_quality.py --experiment cpu_5min --compare best_cpu --max-minutes 5

Trains with the real mixsep path (Hydra preset, Lightning Trainer, tensor-resident data) and validates on 1,000
fixed validation pairs (``--val-pairs``) every ``--every`` steps. The clock counts training only (from the first
step; validation time is taken out, also from the time budget and the schedule laid over it). It records when both
sources first reach MNIST >= 22.54 dB and CIFAR >= 17.01 dB PSNR (report 000, 50 epochs: the baseline quality) and
each frontier level (25, 28, 30, 32, 33 dB on both), prints a table per preset, and draws ``quality_vs_time.png``
(validation PSNR against minutes, one line per preset, all measured in this one run). For comparison it measures the
report-000 recipe (conv_dual, batch 64, fp32, per-item pipeline) for a while and extrapolates its 50-epoch schedule.
Last lines: ``seconds_to_32db=<float>`` (the first preset) and ``seconds_to_baseline_quality=<float>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.trainer.states import RunningStage, TrainerFn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import build  # noqa: E402

from mixsep.conf import CONF_DIR  # noqa: E402
from mixsep.training.build import build_module  # noqa: E402
from mixsep.training.config import resolve_precision  # noqa: E402

TARGET = {"val/mnist_psnr": 22.54, "val/cifar_psnr": 17.01}
REPORT_000_EPOCHS, REPORT_000_PAIRS_PER_EPOCH = 50, 60000


FRONTIER_DB = (25.0, 28.0, 30.0, 32.0, 33.0)


class TrainingTimer(Timer):
    """Lightning's Timer with the validation inside fit taken out of its training clock: the time budget (and the
    one-cycle schedule laid over it) counts training only, as the quality clock does, however often it validates."""

    def __init__(self, duration: dict) -> None:
        super().__init__(duration)
        self.validation_seconds = 0.0

    def on_validation_end(self, trainer, module) -> None:
        super().on_validation_end(trainer, module)
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.validation_seconds += super().time_elapsed(RunningStage.VALIDATING)

    def time_elapsed(self, stage: str = RunningStage.TRAINING) -> float:
        elapsed = super().time_elapsed(stage)
        return elapsed - self.validation_seconds if stage == RunningStage.TRAINING else elapsed


class QualityClock(L.Callback):
    """Training seconds (validation excluded) at which the baseline quality and each frontier level are
    first reached on both sources; stops when the last level is reached."""

    def __init__(self) -> None:
        self.train_seconds = 0.0
        self.reached: float | None = None
        self.levels: dict[float, float] = {}
        self.history: list[tuple[float, int, float, float]] = []
        self._t = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.train_seconds += time.perf_counter() - self._t

    def on_validation_end(self, trainer, module) -> None:
        m = {k: float(trainer.callback_metrics[k]) for k in TARGET}
        self.history.append((self.train_seconds, trainer.global_step, m["val/mnist_psnr"], m["val/cifar_psnr"]))
        print(
            f"  {self.train_seconds:7.1f} s  step {trainer.global_step:5d}  val MNIST {m['val/mnist_psnr']:.2f} dB"
            f"  CIFAR {m['val/cifar_psnr']:.2f} dB",
            flush=True,
        )
        if self.reached is None and all(m[k] >= v for k, v in TARGET.items()):
            self.reached = self.train_seconds
        both = min(m.values())
        for level in FRONTIER_DB:
            if both >= level and level not in self.levels:
                self.levels[level] = self.train_seconds
        if len(self.levels) == len(FRONTIER_DB):
            trainer.should_stop = True


def mixsep_time(
    experiment: str, every: int | float, max_minutes: float, overrides: tuple = (), val_pairs: int = 1000
) -> QualityClock:
    """``every``: validate every N steps (int) or every N seconds of wall clock (float, for presets whose
    steps differ in size: one time grid for all). ``overrides``: more Hydra overrides (e.g. data sizes)."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                f"experiment={experiment}",
                f"data.val_pairs={val_pairs}",
                "logger=none",
                "paths.output_dir=outputs/bench",
                *overrides,
            ],
        )
    L.seed_everything(cfg.seed)
    # auto: bf16 where this machine has it, as mixsep.run does
    precision = resolve_precision(str(cfg.trainer.precision), cfg.trainer.get("accelerator"))
    dm = instantiate(cfg.data)
    module = build_module(cfg.model)
    clock = QualityClock()
    extra = [instantiate(c) for k, c in (cfg.get("callbacks") or {}).items() if k == "ema" and c]  # the recipe's EMA
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=precision,
        max_epochs=cfg.trainer.max_epochs,
        val_check_interval=every if isinstance(every, int) else {"seconds": every},
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[*extra, clock, TrainingTimer({"minutes": min(max_minutes, preset_minutes(cfg.trainer.max_time))})],
    )
    print(
        f"mixsep, experiment={experiment}: model {cfg.model.name}, batch {cfg.data.batch_size}, "
        f"precision {precision}, schedule {cfg.model.scheduler}, EMA {bool(extra)}"
    )
    trainer.fit(module, datamodule=dm)
    return clock


def preset_minutes(max_time: str | None) -> float:
    """A preset's own ``trainer.max_time`` (DD:HH:MM:SS) in minutes: a time-scheduled preset
    (``model.scheduler=onecycle_time``) lays its schedule over it, so the benchmark keeps it."""
    if not max_time:
        return float("inf")
    if not isinstance(max_time, str):  # {"minutes": 5}, as Lightning also takes it
        return timedelta(**max_time).total_seconds() / 60
    days, hours, minutes, seconds = (int(part) for part in max_time.split(":"))
    return days * 1440 + hours * 60 + minutes + seconds / 60


def frontier_table(name: str, clock: QualityClock) -> str:
    cells = " | ".join(f"{clock.levels[level]:.0f} s" if level in clock.levels else "-" for level in FRONTIER_DB)
    best = max((min(m, c) for _, _, m, c in clock.history), default=float("nan"))
    return f"| {name} | {cells} | {best:.2f} dB |"


def plot_frontier(path: Path, clocks: dict[str, QualityClock]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, clock in clocks.items():
        minutes = [s / 60 for s, _, _, _ in clock.history]
        ax.plot(minutes, [min(m, c) for _, _, m, c in clock.history], label=f"{name} (lower of the two sources)")
    for level in FRONTIER_DB:
        ax.axhline(level, color="gray", lw=0.5, ls=":")
    ax.set_xlabel("training minutes (2-core CPU)" if not torch.cuda.is_available() else "training minutes")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_ylim(bottom=20)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def recipe_000_seconds(steps: int) -> tuple[float, float]:
    """Measured pairs/s of the report-000 recipe and its extrapolated 50-epoch time."""
    args = argparse.Namespace(model="conv_dual", batch_size=None, cpu=False)
    _, per_item = build(args)
    per_item.train_steps(min(3, steps))  # warm-up
    rate, _ = per_item.train_steps(steps)
    return rate, REPORT_000_EPOCHS * REPORT_000_PAIRS_PER_EPOCH / rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="fast_cpu" if not torch.cuda.is_available() else "best_gpu")
    parser.add_argument("--compare", default="", help="comma-separated presets measured beside it")
    parser.add_argument("--every", type=int, default=20, help="validate every N training steps")
    parser.add_argument("--every-seconds", type=float, default=None, help="validate every N seconds instead")
    parser.add_argument("--max-minutes", type=float, default=4.0, help="training time cap (or the preset's max_time)")
    parser.add_argument("--recipe-steps", type=int, default=60, help="steps to measure the report-000 recipe")
    parser.add_argument("--val-pairs", type=int, default=1000, help="validation pairs of each measurement")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help='the experiment again with more overrides, measured beside it: "model.net.resize_range=true" '
        "(space-separated; repeat for more variants)",
    )
    parser.add_argument("--plot", default="quality_vs_time.png")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of every arm, after its variant's")
    args = parser.parse_args()

    names = [args.experiment] + [n for n in args.compare.split(",") if n]
    every = args.every if args.every_seconds is None else float(args.every_seconds)
    arms = {name: (name, tuple(args.overrides)) for name in names}
    more = {variant: (*variant.split(), *args.overrides) for variant in args.variant}
    arms.update({f"{args.experiment} {variant}": (args.experiment, overrides) for variant, overrides in more.items()})
    clocks = {
        label: mixsep_time(name, every, args.max_minutes, overrides, val_pairs=args.val_pairs)
        for label, (name, overrides) in arms.items()
    }
    rate, recipe_s = recipe_000_seconds(args.recipe_steps)
    print()
    print(f"Training seconds until validation PSNR >= level on both sources ({args.val_pairs:,} validation pairs):\n")
    print("| preset | " + " | ".join(f"{level:.0f} dB" for level in FRONTIER_DB) + " | best |")
    print("|---|" + "---:|" * (len(FRONTIER_DB) + 1))
    for name, clock in clocks.items():
        print(frontier_table(name, clock))
    plot_frontier(Path(args.plot), clocks)
    print(f"\n(plot: {args.plot})")
    print(
        f"report-000 recipe (conv_dual, batch 64, fp32, per-item pipeline): {rate:.0f} pairs/s measured; "
        f"its {REPORT_000_EPOCHS} epochs x {REPORT_000_PAIRS_PER_EPOCH} pairs take {recipe_s:.0f} s (extrapolated)"
    )
    first = clocks[args.experiment]
    if first.reached is not None:
        print(
            f"{args.experiment} reaches MNIST >= {TARGET['val/mnist_psnr']} dB and CIFAR >= "
            f"{TARGET['val/cifar_psnr']} dB after {first.reached:.1f} s of training: "
            f"{recipe_s / first.reached:.0f}x sooner than the report-000 recipe"
        )
    print(f"seconds_to_32db={first.levels.get(32.0, float('nan')):.2f}")
    print(f"seconds_to_baseline_quality={first.reached if first.reached is not None else float('nan'):.2f}")


if __name__ == "__main__":
    main()
