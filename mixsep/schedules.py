"""Learning-rate schedules that need the trainer (``model.scheduler``): a one-cycle curve laid over the
wall-clock budget of ``trainer.max_time``."""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.callbacks import Timer

from mixsep.errors import ConfigError

SCHEDULERS = (None, "onecycle", "onecycle_time", "cosine")
ONECYCLE_WARMUP = 0.15  # share of the schedule spent warming up


def max_time_timer(trainer: L.Trainer) -> Timer:
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is None or timer.time_remaining() is None:
        raise ConfigError(
            "model.scheduler=onecycle_time spreads its schedule over the training time budget: set "
            "trainer.max_time (e.g. trainer.max_time=00:00:30:00), or use model.scheduler=onecycle"
        )
    return timer


def time_onecycle(timer: Timer):
    """OneCycleLR's learning-rate curve (cosine warm-up to ``lr``, cosine annealing to ``lr / 25e4``) laid
    over wall-clock training time instead of steps, so the schedule ends exactly when ``trainer.max_time``
    stops training, on a fast machine or a slow one. Lightning's Timer keeps the elapsed time in the
    checkpoint, so a resumed run continues the curve where it stopped."""
    budget = timer.time_elapsed() + timer.time_remaining()
    start, peak, end = 1 / 25, 1.0, 1 / 25e4

    def factor(_step: int) -> float:  # a plain function: LambdaLR then leaves it (and the Timer) out of its state
        done = min(timer.time_elapsed() / budget, 1.0)
        if done < ONECYCLE_WARMUP:
            low, high, t = start, peak, done / ONECYCLE_WARMUP
        else:
            low, high, t = peak, end, (done - ONECYCLE_WARMUP) / (1 - ONECYCLE_WARMUP)
        return high + (low - high) * (1 + math.cos(math.pi * t)) / 2

    return factor
