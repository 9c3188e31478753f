"""Bad-input rows: a resumed checkpoint whose trainer state is not what mixsep.run writes. Each file is crafted from
a real one (a tiny run trained once per test session), copied under the row's temporary folder."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from tests.helpers import TINY_SIZES

RUN = ["python", "-m", "mixsep.run"]


def _real_run() -> Path:
    """A tiny run's folder, trained on the first call of this test session (the rows' data: MIXSEP_DATA_ROOT), in
    its own process: its output is not the row's."""
    folder = Path(tempfile.gettempdir()) / f"mixsep-bad-rows-resume-{os.getpid()}"
    if not (folder / "checkpoints" / "last.ckpt").is_file():
        overrides = [*TINY_SIZES, "trainer.max_epochs=1", "trainer.accelerator=cpu", "logger=none"]
        command = [sys.executable, *RUN[1:], *overrides, "callbacks.progress_bar.refresh_rate=0"]
        atexit.register(shutil.rmtree, folder, True)
        subprocess.run([*command, f"hydra.run.dir={folder}"], capture_output=True, check=True, timeout=600)
    return folder


def _crafted(t: Path, change: Callable[[dict], None]) -> Path:
    """The real run's last.ckpt, changed by ``change``, as ``<t>/download/last.ckpt``."""
    ckpt = torch.load(_real_run() / "checkpoints" / "last.ckpt", weights_only=True)
    change(ckpt)
    path = t / "download" / "last.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _deep_enough():
        torch.save(ckpt, path)
    return path


@contextlib.contextmanager
def _deep_enough():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # pickling a deeply nested list recurses
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def _nested(depth: int) -> list:
    nested: list = []
    for _ in range(depth):
        nested = [nested]
    return nested


def _loops_malformed(ckpt: dict) -> None:
    ckpt["loops"]["fit_loop"]["epoch_progress"]["total"]["ready"] = "many"


def _loops_method(ckpt: dict) -> None:
    # Lightning copies a progress counter's entries onto it: this one would replace its reset()
    ckpt["loops"]["fit_loop"]["epoch_progress"]["total"]["reset"] = 0


def _old_lightning(ckpt: dict) -> None:
    # Lightning migrates an older checkpoint after mixsep has checked it, moving entries into the callbacks' state
    ckpt["pytorch-lightning_version"] = "0.9.0"
    ckpt["checkpoint_callback_best_model_path"] = "/etc/passwd"


def _moment_of_another_shape(ckpt: dict) -> None:
    # torch's Optimizer.load_state_dict takes it; the first optimizer step would fail
    state = next(iter(ckpt["optimizer_states"][0]["state"].values()))
    state["exp_avg"] = torch.zeros(2, *state["exp_avg"].shape)


def _optimizer_malformed(ckpt: dict) -> None:
    ckpt["optimizer_states"][0]["param_groups"] = "adam"


def _optimizer_of_another_network(ckpt: dict) -> None:
    ckpt["optimizer_states"][0]["param_groups"][0]["params"].pop()


def _datamodule_malformed(ckpt: dict) -> None:
    ckpt["MixDataModule"] = {"train_position": {"epoch": "zero", "batches": 0}}


def _weight_of_another_shape(ckpt: dict) -> None:
    name, weight = next(iter(ckpt["state_dict"].items()))
    ckpt["state_dict"][name] = torch.zeros(weight.shape[0] + 1, *weight.shape[1:])


def _nested_lists(ckpt: dict) -> None:
    ckpt["callbacks"]["SamplesAndCurves"]["history"]["train"] = _nested(5000)


def _shared_levels(ckpt: dict) -> None:
    # 5 entries per level, each the same list one level down: a small file that is 5**25 entries to a walk
    level: list = []
    for _ in range(25):
        level = [level] * 5
    ckpt["callbacks"]["Foo"] = {"x": level}


def _scheduler_lambda_not_a_mapping(ckpt: dict) -> None:
    ckpt["lr_schedulers"][0]["lr_lambdas"] = [5]


def _scheduler_entry_over_a_method(ckpt: dict) -> None:
    ckpt["lr_schedulers"][0]["step"] = 3  # LambdaLR.load_state_dict copies it onto the scheduler: step() is gone


def _timer(seconds) -> Callable[[dict], None]:
    def change(ckpt: dict) -> None:
        ckpt["callbacks"]["Timer"] = {"time_elapsed": {"train": seconds, "validate": 0.0, "test": 0.0}}

    return change


def _meta(where: str) -> Callable[[dict], None]:
    def change(ckpt: dict) -> None:
        if where == "optimizer":
            state = next(iter(ckpt["optimizer_states"][0]["state"].values()))
            state["exp_avg"] = torch.empty_like(state["exp_avg"], device="meta")
        else:  # EMAWeightAveraging's trained weights beside the averaged ones
            ckpt["current_model_state"] = {k: torch.empty_like(v, device="meta") for k, v in ckpt["state_dict"].items()}

    return change


def _resume(change: Callable[[dict], None], *settings: str) -> Callable[[Path, Path], list[str]]:
    return lambda t, r: RUN + [f"ckpt_path={_crafted(t, change)}", *settings]


def _unchanged(ckpt: dict) -> None:
    pass


ROWS = [
    ("run-resume-loops-malformed", _resume(_loops_malformed), "loops.fit_loop.epoch_progress.total.ready is not"),
    ("run-resume-loops-method", _resume(_loops_method), "a progress counter has ready, started, processed"),
    ("run-resume-old-lightning", _resume(_old_lightning), "its pytorch-lightning_version is not one from 2.0.0"),
    # what torch's own load_state_dict refuses (weights, optimizer state), in its words, before the run starts
    (
        "run-resume-optimizer-malformed",
        _resume(_optimizer_malformed),
        "(ValueError: loaded state dict has a different number of parameter groups",
    ),
    (
        "run-resume-optimizer-other-net",
        _resume(_optimizer_of_another_network),
        "(ValueError: loaded state dict contains a parameter group that doesn't match",
    ),
    (
        "run-resume-optimizer-moment-shape",
        _resume(_moment_of_another_shape),
        "optimizer state exp_avg does not fit a parameter",
    ),
    (
        "run-resume-datamodule-malformed",
        _resume(_datamodule_malformed),
        "MixDataModule.train_position.epoch is not a whole number",
    ),
    ("run-resume-weight-other-shape", _resume(_weight_of_another_shape), "do not fit the networks"),
    (  # a whole checkpoint, resumed with other network settings than its own
        "run-resume-other-widths",
        _resume(_unchanged, "model.net.widths=[16,32,64,128]"),
        "(RuntimeError: Error(s) in loading state_dict for SeparationModule: size mismatch for net.",
    ),
    ("run-resume-nested-lists", _resume(_nested_lists), "more than 32 levels deep"),
    ("run-resume-shared-lists", _resume(_shared_levels), "more than 1,000,000 entries"),
    ("run-resume-scheduler-lambda", _resume(_scheduler_lambda_not_a_mapping), "lr_schedulers is not a list, each"),
    ("run-resume-scheduler-method", _resume(_scheduler_entry_over_a_method), "none of its methods"),
    ("run-resume-timer-word", _resume(_timer("x"), "trainer.max_time=00:00:05:00"), "time_elapsed.train is not"),
    ("run-resume-timer-negative", _resume(_timer(-3600.0), "trainer.max_time=00:00:05:00"), "from 0 to ten years"),
    ("run-resume-timer-huge", _resume(_timer(1e300)), "callbacks[Timer].time_elapsed.train is not a time"),
    ("run-resume-optimizer-meta", _resume(_meta("optimizer")), "optimizer_states holds a meta tensor"),
    ("run-resume-ema-meta", _resume(_meta("ema")), "current_model_state holds a meta tensor"),
]
