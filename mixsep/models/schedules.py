"""The learning-rate schedules of ``model.scheduler``, by name: torch's OneCycleLR and CosineAnnealingLR over the
trainer's steps, or the one-cycle curve laid over the clock of ``trainer.max_time`` (``onecycle_time``) or over
whichever budget ends first, the clock or the steps (``onecycle_budget``, the families' default)."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable

import lightning as L
from lightning.pytorch.callbacks import Timer
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, OneCycleLR

from mixsep.errors import ConfigError

ONECYCLE_WARMUP = 0.15  # share of the schedule spent warming up


def _onecycle(done: float) -> float:
    """OneCycleLR's learning-rate factor (cosine warm-up from 1/25 to 1, cosine annealing to 1/25e4) at the
    share ``done`` of the schedule."""
    start, peak, end = 1 / 25, 1.0, 1 / 25e4
    done = min(max(done, 0.0), 1.0)
    if done < ONECYCLE_WARMUP:
        low, high, t = start, peak, done / ONECYCLE_WARMUP
    else:
        low, high, t = peak, end, (done - ONECYCLE_WARMUP) / (1 - ONECYCLE_WARMUP)
    return high + (low - high) * (1 + math.cos(math.pi * t)) / 2


def onecycle_over_budget(trainer: L.Trainer, by_steps: bool = True) -> Callable[[int], float]:
    """LambdaLR's factor: the one-cycle curve over the share of ``trainer.max_time`` used (Lightning's Timer keeps
    it in the checkpoint, so a resumed run continues the curve) or, ``by_steps``, of the steps that ``max_epochs`` /
    ``max_steps`` allow, the larger of the two: it anneals when training ends, on a fast machine or a slow one."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    budget = None
    if timer is not None and timer.time_remaining() is not None:
        budget = timer.time_elapsed() + timer.time_remaining()
    steps = trainer.estimated_stepping_batches if by_steps else math.inf
    if budget is None and not math.isfinite(steps):
        raise ConfigError(
            "model.scheduler=onecycle_budget needs a budget: trainer.max_epochs, trainer.max_steps or trainer.max_time"
            if by_steps
            else "model.scheduler=onecycle_time spreads its schedule over the training time budget: set "
            "trainer.max_time (e.g. trainer.max_time=00:00:30:00), or use model.scheduler=onecycle"
        )

    def factor(step: int) -> float:  # a plain function: LambdaLR then leaves it (and the Timer) out of its state
        # as OneCycleLR: the last of the steps already trains at the final learning rate
        done = step / max(steps - 1, 1) if math.isfinite(steps) else 0.0
        return _onecycle(max(done, timer.time_elapsed() / budget) if budget else done)

    return factor


def _total_steps(trainer: L.Trainer) -> int:
    return int(trainer.estimated_stepping_batches)


SCHEDULES: dict[str, Callable[[Optimizer, L.Trainer, float], LRScheduler]] = {
    "onecycle": lambda opt, trainer, lr: OneCycleLR(
        opt, max_lr=lr, total_steps=_total_steps(trainer), pct_start=ONECYCLE_WARMUP
    ),
    "onecycle_time": lambda opt, trainer, lr: LambdaLR(opt, onecycle_over_budget(trainer, by_steps=False)),
    "onecycle_budget": lambda opt, trainer, lr: LambdaLR(opt, onecycle_over_budget(trainer)),
    "cosine": lambda opt, trainer, lr: CosineAnnealingLR(opt, T_max=_total_steps(trainer)),
}
SCHEDULERS = (None, *SCHEDULES)


def fit_to_new_budget(trainer: L.Trainer, lr: float) -> None:
    """A resumed run given a new budget (``trainer.max_epochs``, ``max_steps``): its restored step-counted schedule
    is laid over the new one from the step reached, so it anneals at the new end, not past the old one."""
    total, step = _total_steps(trainer), trainer.global_step
    for config in trainer.lr_scheduler_configs:
        old = config.scheduler
        if isinstance(old, CosineAnnealingLR):
            old.T_max = total
        if not isinstance(old, OneCycleLR) or old.total_steps == total or total <= step:
            continue
        with warnings.catch_warnings():  # stepping a fresh scheduler before the optimizer: on purpose
            warnings.simplefilter("ignore")
            new = OneCycleLR(old.optimizer, max_lr=lr, total_steps=total, pct_start=ONECYCLE_WARMUP)
            new.last_epoch = old.last_epoch - 1
            new.step()  # the learning rate (and momentum) of the step reached, on the new curve
        config.scheduler = new
        logging.getLogger("mixsep").info(
            f"resumed with a new budget: the one-cycle schedule now spans {total} steps (was {old.total_steps})"
        )
