"""Learning-rate schedules that need the trainer (``model.scheduler``): a one-cycle curve laid over the
wall-clock budget of ``trainer.max_time`` (``onecycle_time``), or over whichever budget ends first, the clock or
the steps of ``trainer.max_epochs`` / ``max_steps`` (``onecycle_budget``, the families' default)."""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.callbacks import Timer

from mixsep.errors import ConfigError

SCHEDULERS = (None, "onecycle", "onecycle_time", "onecycle_budget", "cosine")
ONECYCLE_WARMUP = 0.15  # share of the schedule spent warming up


def max_time_timer(trainer: L.Trainer) -> Timer:
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is None or timer.time_remaining() is None:
        raise ConfigError(
            "model.scheduler=onecycle_time spreads its schedule over the training time budget: set "
            "trainer.max_time (e.g. trainer.max_time=00:00:30:00), or use model.scheduler=onecycle"
        )
    return timer


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


def time_onecycle(timer: Timer):
    """OneCycleLR's learning-rate curve laid over wall-clock training time instead of steps, so the schedule
    ends exactly when ``trainer.max_time`` stops training, on a fast machine or a slow one. Lightning's Timer
    keeps the elapsed time in the checkpoint, so a resumed run continues the curve where it stopped."""
    budget = timer.time_elapsed() + timer.time_remaining()

    def factor(_step: int) -> float:  # a plain function: LambdaLR then leaves it (and the Timer) out of its state
        return _onecycle(timer.time_elapsed() / budget)

    return factor


def budget_onecycle(trainer: L.Trainer):
    """The one-cycle curve over whichever budget ends training first: the share of ``trainer.max_time`` used
    (when set) or the share of the steps that ``max_epochs`` / ``max_steps`` allow, the larger of the two. So
    ``python -m mixsep.run model=X`` anneals at its last epoch, and the same with ``trainer.max_time=...``
    anneals when the time is up, on any machine."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    budget = None
    if timer is not None and timer.time_remaining() is not None:
        budget = timer.time_elapsed() + timer.time_remaining()
    steps = trainer.estimated_stepping_batches
    if budget is None and not math.isfinite(steps):
        raise ConfigError(
            "model.scheduler=onecycle_budget needs a budget: trainer.max_epochs, trainer.max_steps or trainer.max_time"
        )

    def factor(step: int) -> float:
        # as OneCycleLR: the last of the steps already trains at the final learning rate
        done = step / max(steps - 1, 1) if math.isfinite(steps) else 0.0
        return _onecycle(max(done, timer.time_elapsed() / budget) if budget else done)

    return factor
